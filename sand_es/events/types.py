"""The events of the log: what happened, in the past tense, never edited.

Rules these types follow (msgspec's schema-evolution guide):
- every event is frozen, keyword-only and carries an explicit tag, so renaming a
  Python class never breaks the stored log;
- events only grow: a new field gets a default, an existing field never changes
  type or meaning; a change of meaning is a new event (or a new schema version with
  an upcaster in `sand_es.events.upcast`);
- field names are SAND's JSON names wherever SAND has the field, so an event reads
  like the SAND record it replaces.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

#: Largest VNI the VXLAN header can carry (24 bits).
VNI_LIMIT: Final = 2**24 - 1

Vni = Annotated[int, Meta(ge=1, le=VNI_LIMIT)]
Mtu = Annotated[int, Meta(ge=576, le=9000)]
Identifier = Annotated[str, Meta(min_length=1, max_length=64)]
InterfaceName = Annotated[str, Meta(max_length=15)]


class _Event(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    gc=False,
    tag_field="event",
    forbid_unknown_fields=False,
):
    """Base of every event: frozen, keyword-only, tagged under the `event` key."""


class NetworkCreated(_Event, tag="network.created", frozen=True, kw_only=True):
    """A network was defined: its address range, gateway and VXLAN identifier are now taken.

    `ns_handle_path` is the overlay namespace path as the creating agent computed it
    (kept for SAND's API, which reports it); each host derives its own from its config.
    """

    network_id: Identifier
    name: str
    type: str = "overlay"
    ip_range: str
    gateway: str
    vxlan_vni: Vni
    mtu: Mtu = 1450
    ns_handle_path: str = ""


class NetworkDeleted(_Event, tag="network.deleted", frozen=True, kw_only=True):
    """A network (with no endpoint left) was removed; its VNI and address pool are free."""

    network_id: Identifier


class EndpointAdded(_Event, tag="endpoint.added", frozen=True, kw_only=True):
    """An endpoint was given an address in a network on a host; it is not wired yet.

    Device names and MACs are chosen when the endpoint is added and never change,
    so that an agent restarting recognises the devices it made.
    """

    endpoint_id: Identifier
    network_id: Identifier
    hostname: str
    host_ip: str
    api_hostname: str = ""
    target_veth_ip: str
    target_veth_mac: str
    target_veth_name: InterfaceName
    overlay_veth_name: InterfaceName
    overlay_veth_mac: str
    mtu: Mtu = 1450


class EndpointActivated(_Event, tag="endpoint.activated", frozen=True, kw_only=True):
    """An endpoint is to be wired into the network namespace at `target_netns_path`."""

    endpoint_id: Identifier
    network_id: Identifier
    target_netns_path: str


class EndpointDeactivated(_Event, tag="endpoint.deactivated", frozen=True, kw_only=True):
    """An endpoint is unplugged (its namespace vanished, or it was asked to); it keeps its address."""

    endpoint_id: Identifier
    network_id: Identifier
    reason: str = ""


class EndpointRemoved(_Event, tag="endpoint.removed", frozen=True, kw_only=True):
    """An endpoint is gone: its devices are removed and its address is free again."""

    endpoint_id: Identifier
    network_id: Identifier
    target_veth_ip: str = ""


Event = (
    NetworkCreated
    | NetworkDeleted
    | EndpointAdded
    | EndpointActivated
    | EndpointDeactivated
    | EndpointRemoved
)

#: Every event class, for code that needs to enumerate them (codec, audit tools).
EVENT_TYPES: Final[tuple[type[Event], ...]] = (
    NetworkCreated,
    NetworkDeleted,
    EndpointAdded,
    EndpointActivated,
    EndpointDeactivated,
    EndpointRemoved,
)


def tag_of(event_type: type[Event]) -> str:
    """The stored type tag of an event class."""
    tag = event_type.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{event_type.__name__} has no explicit string tag")
    return tag
