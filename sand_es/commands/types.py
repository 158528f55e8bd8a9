"""Commands: what a caller asks for. A closed, tagged union decided by `decide`."""

from __future__ import annotations

from typing import Final

import msgspec


class _Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="command"):
    """Base of every command."""


class CreateNetwork(_Command, tag="create_network", frozen=True, kw_only=True):
    """Define a network. Absent fields take SAND's defaults.

    `ip_range` defaults to 10.0.0.0/24 (or to the range of `gateway` when only the
    gateway is given); `gateway` to the first host address with the range's prefix;
    `name` to `net-sc-<id>`; `network_id` to a fresh id.
    """

    network_id: str | None = None
    name: str | None = None
    type: str = "overlay"
    ip_range: str | None = None
    gateway: str | None = None
    mtu: int | None = None


class DeleteNetwork(_Command, tag="delete_network", frozen=True, kw_only=True):
    """Remove a network that has no endpoint left."""

    network_id: str


class AddEndpoint(_Command, tag="add_endpoint", frozen=True, kw_only=True):
    """Give an endpoint an address in a network, owned by the host named here.

    With `activate`, the endpoint is also to be wired into `target_netns_path` now.
    `ipv4_address` (bare or with the pool's prefix) and `mac_address` are honoured
    when given and free.
    """

    network_id: str
    hostname: str
    host_ip: str = ""
    api_hostname: str = ""
    ipv4_address: str | None = None
    mac_address: str | None = None
    activate: bool = False
    target_netns_path: str | None = None


class RemoveEndpoint(_Command, tag="remove_endpoint", frozen=True, kw_only=True):
    """Remove an endpoint and free its address, whichever host owns it."""

    endpoint_id: str


class ActivateEndpoint(_Command, tag="activate_endpoint", frozen=True, kw_only=True):
    """Wire an existing endpoint into a network namespace."""

    endpoint_id: str
    target_netns_path: str


class DeactivateEndpoint(_Command, tag="deactivate_endpoint", frozen=True, kw_only=True):
    """Unplug an endpoint, keeping its address; `reason` is recorded for operators."""

    endpoint_id: str
    reason: str = ""


Command = CreateNetwork | DeleteNetwork | AddEndpoint | RemoveEndpoint | ActivateEndpoint | DeactivateEndpoint


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """The agent settings decisions depend on."""

    max_vni: int = 999_999
    default_mtu: int = 1450
    netns_path: str = "/var/run/netns"
    netns_prefix: str = "sc-ns-"


DEFAULT_POLICY: Final = Policy()
