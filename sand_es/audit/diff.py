"""What changed between two points of the log: added, removed and changed, view by view.

`diff(before, after)` compares two snapshots through their `State`s, keyed so that a
change reads naturally: a network or endpoint by id (changed: which fields, from what
to what), a VNI by number (changed: another network holds it), an address by network
and IP (changed: another endpoint holds it), a peer by host, network and endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from sand_es.audit.state import AddressRow, State, VniRow, state_of
from sand_es.projections import Endpoint, Network, Peer, Snapshot

T = TypeVar("T", bound=msgspec.Struct)


class FieldChange(msgspec.Struct, frozen=True, kw_only=True):
    """One field's value before and after."""

    field: str
    before: Any
    after: Any


class Changed(msgspec.Struct, frozen=True, kw_only=True):
    """Something present at both points, with different fields."""

    key: str
    fields: list[FieldChange]


class Section(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One view's changes; `added` and `removed` hold the whole records."""

    added: list[T]
    removed: list[T]
    changed: list[Changed]

    @property
    def empty(self) -> bool:
        """Whether nothing changed in this view."""
        return not (self.added or self.removed or self.changed)


class Side(msgspec.Struct, frozen=True, kw_only=True):
    """Where a side of the diff stands in the log."""

    seq: int
    revision: int


class Diff(msgspec.Struct, frozen=True, kw_only=True):
    """Every change from `before` to `after`."""

    before: Side
    after: Side
    networks: Section[Network]
    endpoints: Section[Endpoint]
    vnis: Section[VniRow]
    addresses: Section[AddressRow]
    peers: Section[Peer]

    @property
    def empty(self) -> bool:
        """Whether the two points hold the same state."""
        return all(s.empty for s in (self.networks, self.endpoints, self.vnis, self.addresses, self.peers))


def diff(before: Snapshot, after: Snapshot) -> Diff:
    """The changes from one snapshot to another (either may be the later one)."""
    return diff_states(state_of(before), state_of(after))


def diff_states(before: State, after: State) -> Diff:
    """The changes from one state to another."""
    return Diff(
        before=Side(seq=before.seq, revision=before.revision),
        after=Side(seq=after.seq, revision=after.revision),
        networks=_section(before.networks, after.networks, lambda n: n.network_id),
        endpoints=_section(before.endpoints, after.endpoints, lambda e: e.endpoint_id),
        vnis=_section(before.vnis, after.vnis, lambda v: str(v.vni)),
        addresses=_section(
            [a for p in before.pools for a in p.addresses],
            [a for p in after.pools for a in p.addresses],
            lambda a: f"{a.network_id} {a.ip}",
        ),
        peers=_section(
            [p for h in before.peers for p in h.peers],
            [p for h in after.peers for p in h.peers],
            lambda p: f"{p.hostname} {p.network_id} {p.endpoint_id}",
        ),
    )


def _section(before: Iterable[T], after: Iterable[T], key: Callable[[T], str]) -> Section[T]:
    old: Mapping[str, T] = {key(item): item for item in before}
    new: Mapping[str, T] = {key(item): item for item in after}
    changed = []
    for k, item in new.items():
        previous = old.get(k)
        if previous is not None and previous is not item and previous != item:
            changed.append(Changed(key=k, fields=_fields(previous, item)))
    return Section(
        added=[item for k, item in new.items() if k not in old],
        removed=[item for k, item in old.items() if k not in new],
        changed=changed,
    )


def _fields(before: msgspec.Struct, after: msgspec.Struct) -> list[FieldChange]:
    return [
        FieldChange(field=name, before=getattr(before, name), after=getattr(after, name))
        for name in before.__struct_fields__
        if getattr(before, name) != getattr(after, name)
    ]


def render(result: Diff) -> str:
    """The diff as text: one line per change, `+` added, `-` removed, `~` changed."""
    head = (
        f"from seq {result.before.seq} (revision {result.before.revision}) "
        f"to seq {result.after.seq} (revision {result.after.revision})"
    )
    if result.empty:
        return f"{head}: no change"
    lines = [head]
    lines += _lines(
        "networks", result.networks, lambda n: f"{n.network_id} {n.name} {n.ip_range} vni {n.vxlan_vni}"
    )
    lines += _lines(
        "endpoints",
        result.endpoints,
        lambda e: (
            f"{e.endpoint_id} network {e.network_id} host {e.hostname} ip {e.target_veth_ip}"
            f"{' active' if e.active else ''}"
        ),
    )
    lines += _lines("vnis", result.vnis, lambda v: f"{v.vni} network {v.network_id}")
    lines += _lines(
        "addresses", result.addresses, lambda a: f"{a.ip} network {a.network_id} endpoint {a.endpoint_id}"
    )
    lines += _lines(
        "peers",
        result.peers,
        lambda p: f"{p.hostname} network {p.network_id} endpoint {p.endpoint_id} {p.ip}",
    )
    return "\n".join(lines)


def _lines(title: str, section: Section[T], describe: Callable[[T], str]) -> list[str]:
    if section.empty:
        return []
    lines = [
        f"{title}: +{len(section.added)} -{len(section.removed)} ~{len(section.changed)}",
    ]
    lines += [f"  + {describe(item)}" for item in section.added]
    lines += [f"  - {describe(item)}" for item in section.removed]
    for change in section.changed:
        fields = ", ".join(f"{c.field} {c.before!r} → {c.after!r}" for c in change.fields)
        lines.append(f"  ~ {change.key}: {fields}")
    return lines
