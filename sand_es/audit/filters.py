"""Which events `sand-es audit log` and `GET /events` show, and how one event is shown.

A filter is a conjunction: an event is shown when it passes every criterion given.
The host criterion needs history: only `endpoint.added` names the endpoint's host,
while the endpoint's later events (activated, deactivated, removed) name the endpoint
alone. `HostIndex` remembers every endpoint's host (an endpoint never changes host),
and is fed the log from its start, so that an endpoint removed long ago is still
placed on its host.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

import msgspec

from sand_es.errors import Invalid
from sand_es.events import (
    EVENT_TYPES,
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Envelope,
    Event,
    NetworkCreated,
    NetworkDeleted,
    Position,
    Record,
    tag_of,
)

#: Every event type tag, in the order the events are defined.
TAGS: Final = tuple(tag_of(kind) for kind in EVENT_TYPES)


class EventFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What to show; every criterion left at None (or empty) lets every event through.

    `host` matches the event's actor (the agent that appended it) or, for an endpoint
    event, the endpoint's host. Times and revisions are inclusive bounds.
    """

    network_id: str | None = None
    endpoint_id: str | None = None
    host: str | None = None
    types: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    from_revision: int | None = None
    to_revision: int | None = None

    def checked(self) -> EventFilter:
        """The filter with ids in canonical (lower) case; `Invalid` for one that cannot make sense."""
        unknown = sorted(self.types - set(TAGS))
        if unknown:
            raise Invalid(f"unknown event type {', '.join(unknown)}: expected one of {', '.join(TAGS)}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise Invalid(f"since ({self.since.isoformat()}) is after until ({self.until.isoformat()})")
        low, high = self.from_revision, self.to_revision
        if low is not None and high is not None and low > high:
            raise Invalid(f"from-revision {low} is after to-revision {high}")
        return msgspec.structs.replace(
            self,
            network_id=self.network_id.lower() if self.network_id else None,
            endpoint_id=self.endpoint_id.lower() if self.endpoint_id else None,
            host=self.host or None,
        )

    @property
    def needs_hosts(self) -> bool:
        """Whether matching needs a `HostIndex` (the host criterion)."""
        return self.host is not None


class HostIndex:
    """Every endpoint ever added, with its host: fed the log in order, from its start."""

    __slots__ = ("_hosts", "position")

    def __init__(self) -> None:
        self._hosts: dict[str, str] = {}
        self.position = Position()

    def learn(self, records: Iterable[Record]) -> None:
        """Remember the host of every endpoint these records add."""
        hosts = self._hosts
        last = None
        for record in records:
            last = record
            data = record.envelope.data
            if type(data) is EndpointAdded:
                hosts[data.endpoint_id] = data.hostname
        if last is not None:
            self.position = last.position

    def host_of(self, endpoint_id: str) -> str | None:
        """The host of an endpoint the index has seen added, or None."""
        return self._hosts.get(endpoint_id)


class Matcher:
    """`EventFilter` applied to records; give it a `HostIndex` when the filter has a host."""

    __slots__ = ("_filter", "_hosts")

    def __init__(self, event_filter: EventFilter, hosts: HostIndex | None = None) -> None:
        if event_filter.needs_hosts and hosts is None:
            raise ValueError("a host filter needs a HostIndex")
        self._filter = event_filter
        self._hosts = hosts

    def __call__(self, record: Record) -> bool:
        f = self._filter
        envelope = record.envelope
        data = envelope.data
        if f.from_revision is not None and record.rev < f.from_revision:
            return False
        if f.to_revision is not None and record.rev > f.to_revision:
            return False
        if f.types and envelope.type not in f.types:
            return False
        if f.network_id is not None and data.network_id != f.network_id:
            return False
        if f.endpoint_id is not None and endpoint_of(data) != f.endpoint_id:
            return False
        if f.since is not None and envelope.at < f.since:
            return False
        if f.until is not None and envelope.at > f.until:
            return False
        return f.host is None or self._on_host(envelope, f.host)

    def _on_host(self, envelope: Envelope, host: str) -> bool:
        if envelope.actor == host:
            return True
        data = envelope.data
        if type(data) is EndpointAdded:
            return data.hostname == host
        endpoint_id = endpoint_of(data)
        return (
            endpoint_id is not None and self._hosts is not None and self._hosts.host_of(endpoint_id) == host
        )


def endpoint_of(event: Event) -> str | None:
    """The endpoint an event concerns, if it concerns one."""
    if isinstance(event, EndpointAdded | EndpointActivated | EndpointDeactivated | EndpointRemoved):
        return event.endpoint_id
    return None


class EventRow(msgspec.Struct, frozen=True, kw_only=True):
    """One event as the audit tool and `GET /events` show it (a JSON line of `log --output json`)."""

    seq: int
    revision: int
    at: datetime
    actor: str
    command_id: str
    type: str
    id: str
    data: Event


def row(record: Record) -> EventRow:
    """The shown form of a record."""
    envelope = record.envelope
    return EventRow(
        seq=record.seq,
        revision=record.rev,
        at=envelope.at,
        actor=envelope.actor,
        command_id=envelope.command_id,
        type=envelope.type,
        id=envelope.id,
        data=envelope.data,
    )


def summary(event: Event) -> str:
    """The few fields that say what an event did, for one line of a table."""
    match event:
        case NetworkCreated():
            return (
                f"network={event.network_id} name={event.name} range={event.ip_range} vni={event.vxlan_vni}"
            )
        case NetworkDeleted():
            return f"network={event.network_id}"
        case EndpointAdded():
            return (
                f"endpoint={event.endpoint_id} network={event.network_id} host={event.hostname} "
                f"ip={event.target_veth_ip} mac={event.target_veth_mac}"
            )
        case EndpointActivated():
            return f"endpoint={event.endpoint_id} network={event.network_id} ns={event.target_netns_path}"
        case EndpointDeactivated():
            reason = f" reason={event.reason!r}" if event.reason else ""
            return f"endpoint={event.endpoint_id} network={event.network_id}{reason}"
        case EndpointRemoved():
            ip = f" ip={event.target_veth_ip}" if event.target_veth_ip else ""
            return f"endpoint={event.endpoint_id} network={event.network_id}{ip}"
    raise AssertionError(f"unhandled event {type(event).__name__}")  # pragma: no cover


#: Column widths of `table_line` (seq, revision, time, actor, type); the summary takes the rest.
_WIDTHS: Final = (8, 9, 27, 16, 20)
TABLE_HEADER: Final = (
    "  ".join(
        name.ljust(width) for name, width in zip(("SEQ", "REV", "AT", "ACTOR", "TYPE"), _WIDTHS, strict=True)
    )
    + "  WHAT"
)


def table_line(record: Record) -> str:
    """One record as a line of fixed-width columns: `log` streams, so widths cannot follow the data."""
    envelope = record.envelope
    at = envelope.at.isoformat().replace("+00:00", "Z")
    cells = (str(record.seq), str(record.rev), at, envelope.actor, envelope.type)
    return "  ".join(c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=True)) + "  " + summary(envelope.data)
