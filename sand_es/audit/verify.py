"""`verify`: every stored event decodes, the history obeys the rules, and the chain is unbroken.

The verifier is fed the stored events in key order, exactly as etcd holds them, and
stops at the first finding: the seq and revision to look at, and why.

What it checks, event by event:
- **numbering**: seqs run 1, 2, 3… without a gap (a gap is a deleted event);
- **decoding**: every value decodes with today's codec (and its upcasters);
- **the chain** (`sand_es.events.chain`): each event's `prev` is the digest of the stored
  bytes before it (event 1: empty), and the head names the last event and its digest. An
  edited, deleted or moved event breaks a link. A broken link between two events says that
  one of them changed, and revisions say which: a key rewritten after its successor was
  written has a higher mod_revision than it. Events stored before the chain existed (no
  `prev` key at all) are accepted only as the log's first events, and reported as
  unchained;
- **the rules**, by folding into a small state of its own rather than through the
  projections, which are lenient on purpose (an agent must start even on an imperfect
  log): no network created twice, no VNI held by two networks, no address held twice in a
  network or outside its range, nothing deactivated, activated or removed that does not
  exist, no endpoint added to a deleted or unknown network, no network deleted with
  endpoints left in it.

The hot loop is written for speed: locals, one typed decode, endpoint events (99 in 100)
checked inline while all is well; whatever looks wrong goes to the event's rule method,
which checks again and says why. A million events take about 3 µs each here, on top of
reading them (see `bench/audit.py`).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from socket import AF_INET, inet_pton
from typing import Any, Final, Protocol

import msgspec

from sand_es.errors import LogCorrupt
from sand_es.events import (
    CODEC,
    EVENT_TYPES,
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Envelope,
    Event,
    NetworkCreated,
    NetworkDeleted,
    tag_of,
)
from sand_es.events.chain import GENESIS
from sand_es.events.upcast import CURRENT_VERSIONS

_PREV_KEY: Final = b'"prev":'


class StoredEvent(Protocol):
    """One event as stored: its number, the revision that wrote it, its exact bytes."""

    @property
    def seq(self) -> int: ...

    @property
    def rev(self) -> int: ...

    @property
    def value(self) -> bytes: ...


class Head(msgspec.Struct, frozen=True, kw_only=True):
    """What the head key holds, and the revision that last wrote it."""

    seq: int
    digest: str
    revision: int


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """The first thing wrong: where (`seq`, `revision`: 0 when unknown) and why."""

    seq: int
    revision: int
    reason: str


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """What a verification went through."""

    events: int
    first_revision: int
    last_revision: int
    last_digest: str
    unchained: int
    """How many of the first events predate the chain (no `prev`): not tamper-evident."""
    networks: int
    endpoints: int


class _Network:
    __slots__ = ("addresses", "base", "broadcast", "gateway", "vni")

    def __init__(self, vni: int, base: int, broadcast: int, gateway: int) -> None:
        self.vni = vni
        self.base = base
        self.broadcast = broadcast
        self.gateway = gateway
        self.addresses: dict[int, str] = {}


class _Broken(Exception):
    """A rule broken by the event being checked (the verifier adds where)."""


# `CODEC.decode` split in two for the hot loop: the common case (today's schema) is one
# typed decode here; anything else (another version, a value that does not fit) goes
# through the codec itself, upcasters and errors included, so the result is the codec's.
_envelopes: Final = msgspec.json.Decoder(Envelope)
_CURRENT: Final = {kind: CURRENT_VERSIONS[tag_of(kind)] for kind in EVENT_TYPES}


def _short(digest: str) -> str:
    return digest[:12] if digest else "(none)"


class Verifier:
    """Checks stored events fed in order; `feed` and `finish` return the first finding."""

    def __init__(self) -> None:
        self._seq = 0
        self._rev = 0
        self._digest = GENESIS
        self._first_rev = 0
        self._chained = False
        self._unchained = 0
        self._networks: dict[str, _Network] = {}
        self._deleted: dict[str, int] = {}
        self._vnis: dict[int, str] = {}
        self._endpoints: dict[str, tuple[str, int]] = {}
        self._removed: dict[str, int] = {}
        self.finding: Finding | None = None
        self._rules: dict[type[Event], Callable[[Event, int], None]] = {
            NetworkCreated: self._network_created,  # type: ignore[dict-item]
            NetworkDeleted: self._network_deleted,  # type: ignore[dict-item]
            EndpointAdded: self._endpoint_added,  # type: ignore[dict-item]
            EndpointActivated: self._endpoint_activated,  # type: ignore[dict-item]
            EndpointDeactivated: self._endpoint_deactivated,  # type: ignore[dict-item]
            EndpointRemoved: self._endpoint_removed,  # type: ignore[dict-item]
        }

    @property
    def seq(self) -> int:
        """The last event checked."""
        return self._seq

    def feed(self, events: Sequence[StoredEvent]) -> Finding | None:
        """Check the next events; the first finding (then every later call returns it too)."""
        if self.finding is not None:
            return self.finding
        if not self._first_rev and events:
            self._first_rev = events[0].rev
        typed, current, decode, from_bytes = _envelopes.decode, _CURRENT, CODEC.decode, int.from_bytes
        sha256, rules, networks, endpoints = hashlib.sha256, self._rules, self._networks, self._endpoints
        removed = self._removed
        seq, rev, digest = self._seq, self._rev, self._digest
        chained, unchained = self._chained, self._unchained
        try:
            for stored in events:
                raw, number = stored.value, stored.seq
                if number != seq + 1:
                    return self._found(self._gap(seq, stored))
                try:
                    try:
                        envelope = typed(raw)
                    except msgspec.MsgspecError:
                        envelope = decode(raw)
                    else:
                        if envelope.v != current[type(envelope.data)]:
                            envelope = decode(raw)
                except LogCorrupt as exc:
                    return self._found(Finding(seq=number, revision=stored.rev, reason=f"undecodable: {exc}"))
                prev = envelope.prev
                if prev != digest:
                    # Stored before the chain existed (no `prev` key at all): only at the start.
                    if prev or chained or _PREV_KEY in raw:
                        return self._found(self._broken_link(seq, rev, digest, stored, prev))
                    unchained += 1
                elif prev:
                    chained = True
                data: Any = envelope.data
                kind = type(data)
                try:
                    # Endpoint events (99 in 100) are checked inline when all is well; anything
                    # odd goes to the event's rule, which checks again and says why.
                    if kind is EndpointActivated or kind is EndpointDeactivated:
                        found = endpoints.get(data.endpoint_id)
                        if found is None or found[0] != data.network_id:
                            rules[kind](data, number)
                    elif kind is EndpointAdded:
                        network = networks.get(data.network_id)
                        try:
                            address = from_bytes(
                                inet_pton(AF_INET, data.target_veth_ip.partition("/")[0]), "big"
                            )
                        except OSError:
                            address = -1
                        if (
                            network is None
                            or data.endpoint_id in endpoints
                            or not network.base < address < network.broadcast
                            or address == network.gateway
                            or address in network.addresses
                        ):
                            rules[kind](data, number)
                        else:
                            network.addresses[address] = data.endpoint_id
                            endpoints[data.endpoint_id] = (data.network_id, address)
                    elif kind is EndpointRemoved:
                        found = endpoints.get(data.endpoint_id)
                        ip = data.target_veth_ip
                        try:
                            named = from_bytes(inet_pton(AF_INET, ip.partition("/")[0]), "big") if ip else -2
                        except OSError:
                            named = -1
                        if found is None or found[0] != data.network_id or named not in (-2, found[1]):
                            rules[kind](data, number)
                        else:
                            del networks[found[0]].addresses[found[1]]
                            del endpoints[data.endpoint_id]
                            removed[data.endpoint_id] = number
                    else:
                        rules[kind](data, number)
                except _Broken as why:
                    return self._found(Finding(seq=number, revision=stored.rev, reason=str(why)))
                seq, rev, digest = number, stored.rev, sha256(raw).hexdigest()
        finally:
            self._seq, self._rev, self._digest = seq, rev, digest
            self._chained, self._unchained = chained, unchained
        return None

    def finish(self, head: Head | None) -> Finding | None:
        """Check the head against the last event (`head`: None when there is no head key)."""
        if self.finding is not None:
            return self.finding
        if head is None:
            if self._seq:
                return self._found(
                    Finding(
                        seq=self._seq,
                        revision=self._rev,
                        reason="events are stored but the head key is missing",
                    )
                )
            return None
        if head.seq > self._seq:
            missing = self._seq + 1
            return self._found(
                Finding(
                    seq=missing,
                    revision=head.revision,
                    reason=f"the head names event {head.seq} but the log ends at event {self._seq}: "
                    f"event{'s' if head.seq > missing else ''} {_span(missing, head.seq)} "
                    f"{'are' if head.seq > missing else 'is'} missing (deleted?)",
                )
            )
        if head.seq < self._seq:  # the reader stops at the head: only a caller feeding more sees this
            return self._found(
                Finding(
                    seq=head.seq + 1,
                    revision=head.revision,
                    reason=f"events after the head (seq {head.seq}) are stored",
                )
            )
        if head.digest == self._digest or (not head.digest and not self._chained):
            if head.revision == self._rev or not self._seq:
                return None
            # Every append writes its events and the head in one transaction: a head of
            # another revision was written on its own, which is how a log cut short
            # (its last events deleted, the head rewritten to match) gives itself away.
            return self._found(
                Finding(
                    seq=self._seq,
                    revision=head.revision,
                    reason=f"the head was written at revision {head.revision}, apart from event {self._seq} "
                    f"(revision {self._rev}): it was rewritten on its own (later events deleted?)",
                )
            )
        if not head.digest:
            reason = f"the head names event {head.seq} without its digest, but the log is chained"
        elif self._rev > head.revision:
            reason = (
                f"event {self._seq} was rewritten at revision {self._rev}, after the head (revision "
                f"{head.revision}): it hashes to {_short(self._digest)}, the head names {_short(head.digest)}"
            )
        else:
            reason = (
                f"the head names digest {_short(head.digest)} for event {head.seq}, which hashes to "
                f"{_short(self._digest)} (event {head.seq} or the head was edited)"
            )
        return self._found(Finding(seq=self._seq, revision=max(self._rev, head.revision), reason=reason))

    def summary(self) -> Summary:
        """What was checked so far."""
        return Summary(
            events=self._seq,
            first_revision=self._first_rev,
            last_revision=self._rev,
            last_digest=self._digest,
            unchained=self._unchained,
            networks=len(self._networks),
            endpoints=len(self._endpoints),
        )

    # -- the chain ----------------------------------------------------------

    def _found(self, finding: Finding) -> Finding:
        self.finding = finding
        return finding

    def _gap(self, last: int, stored: StoredEvent) -> Finding:
        missing = last + 1
        if stored.seq <= last:
            reason = f"event {stored.seq} comes again after event {last} (keys out of order)"
            return Finding(seq=stored.seq, revision=stored.rev, reason=reason)
        plural = stored.seq > missing + 1
        return Finding(
            seq=missing,
            revision=stored.rev,
            reason=f"event{'s' if plural else ''} {_span(missing, stored.seq - 1)} "
            f"{'are' if plural else 'is'} missing: the log jumps from {last} to {stored.seq} (deleted?)",
        )

    def _broken_link(self, last: int, last_rev: int, digest: str, stored: StoredEvent, prev: str) -> Finding:
        if last == 0:
            return Finding(
                seq=stored.seq,
                revision=stored.rev,
                reason=f"event 1 names a predecessor ({_short(prev)}): events before it were removed, "
                "or it was moved here",
            )
        if not prev:
            return Finding(
                seq=stored.seq,
                revision=stored.rev,
                reason=f"event {stored.seq} does not link to event {last} (no prev): it was rewritten "
                "by something that does not chain",
            )
        if last_rev > stored.rev:
            return Finding(
                seq=last,
                revision=last_rev,
                reason=f"event {last} was rewritten at revision {last_rev}, after event {stored.seq} "
                f"(revision {stored.rev}): it hashes to {_short(digest)}, event {stored.seq} names "
                f"{_short(prev)}",
            )
        return Finding(
            seq=stored.seq,
            revision=stored.rev,
            reason=f"event {stored.seq} does not follow event {last}: it names {_short(prev)}, event {last} "
            f"hashes to {_short(digest)} (event {stored.seq} was edited or moved, or an event before it "
            "was removed)",
        )

    # -- the rules ----------------------------------------------------------

    def _network_created(self, e: NetworkCreated, seq: int) -> None:
        if e.network_id in self._networks:
            raise _Broken(f"network {e.network_id} created again while it exists")
        holder = self._vnis.get(e.vxlan_vni)
        if holder is not None:
            raise _Broken(f"VNI {e.vxlan_vni} given to network {e.network_id} is held by network {holder}")
        try:
            base, broadcast = _range(e.ip_range)
            gateway = _address(e.gateway)
        except ValueError as exc:
            raise _Broken(f"network {e.network_id} has an unreadable range or gateway: {exc}") from None
        self._networks[e.network_id] = _Network(e.vxlan_vni, base, broadcast, gateway)
        self._vnis[e.vxlan_vni] = e.network_id
        self._deleted.pop(e.network_id, None)

    def _network_deleted(self, e: NetworkDeleted, seq: int) -> None:
        network = self._live_network(e.network_id, "deleted")
        if network.addresses:
            some = next(iter(network.addresses.values()))
            raise _Broken(
                f"network {e.network_id} deleted with {len(network.addresses)} endpoint(s) left in it "
                f"(e.g. {some})"
            )
        del self._networks[e.network_id]
        del self._vnis[network.vni]
        self._deleted[e.network_id] = seq

    def _endpoint_added(self, e: EndpointAdded, seq: int) -> None:
        network = self._live_network(e.network_id, f"given endpoint {e.endpoint_id}")
        if e.endpoint_id in self._endpoints:
            raise _Broken(f"endpoint {e.endpoint_id} added again while it exists")
        try:
            address = _address(e.target_veth_ip)
        except ValueError as exc:
            raise _Broken(f"endpoint {e.endpoint_id}: {exc}") from None
        if not network.base < address < network.broadcast or address == network.gateway:
            raise _Broken(
                f"endpoint {e.endpoint_id} got {e.target_veth_ip}, outside network {e.network_id}'s "
                "range or reserved (network, broadcast or gateway address)"
            )
        holder = network.addresses.get(address)
        if holder is not None:
            raise _Broken(
                f"address {e.target_veth_ip} given to endpoint {e.endpoint_id} is held by endpoint {holder}"
            )
        network.addresses[address] = e.endpoint_id
        self._endpoints[e.endpoint_id] = (e.network_id, address)

    def _endpoint_activated(self, e: EndpointActivated, seq: int) -> None:
        self._live_endpoint(e.endpoint_id, e.network_id, "endpoint.activated")

    def _endpoint_deactivated(self, e: EndpointDeactivated, seq: int) -> None:
        self._live_endpoint(e.endpoint_id, e.network_id, "endpoint.deactivated")

    def _endpoint_removed(self, e: EndpointRemoved, seq: int) -> None:
        network_id, address = self._live_endpoint(e.endpoint_id, e.network_id, "endpoint.removed")
        if e.target_veth_ip:
            try:
                named = _address(e.target_veth_ip)
            except ValueError as exc:
                raise _Broken(f"endpoint {e.endpoint_id}: {exc}") from None
            if named != address:
                raise _Broken(
                    f"removal of endpoint {e.endpoint_id} frees {e.target_veth_ip}, "
                    f"but it holds {ipaddress.IPv4Address(address)}"
                )
        del self._networks[network_id].addresses[address]
        del self._endpoints[e.endpoint_id]
        self._removed[e.endpoint_id] = seq

    def _live_network(self, network_id: str, doing: str) -> _Network:
        network = self._networks.get(network_id)
        if network is not None:
            return network
        deleted = self._deleted.get(network_id)
        when = f"deleted at seq {deleted}" if deleted is not None else "never created"
        raise _Broken(f"network {network_id} {doing}, but it was {when}")

    def _live_endpoint(self, endpoint_id: str, network_id: str, what: str) -> tuple[str, int]:
        found = self._endpoints.get(endpoint_id)
        if found is None:
            removed = self._removed.get(endpoint_id)
            when = f"removed at seq {removed}" if removed is not None else "never added"
            raise _Broken(f"{what} for endpoint {endpoint_id}, which was {when}")
        if found[0] != network_id:
            raise _Broken(
                f"{what} for endpoint {endpoint_id} names network {network_id}; it is in {found[0]}"
            )
        return found


def _address(cidr: str) -> int:
    """The address part of `a.b.c.d/nn` as an integer (as IPAM's `address_of`, inlined: hot)."""
    try:
        return int.from_bytes(inet_pton(AF_INET, cidr.partition("/")[0]), "big")
    except OSError:
        raise ValueError(f"not an IPv4 address: {cidr!r}") from None


def _range(cidr: str) -> tuple[int, int]:
    """(network, broadcast) addresses of `a.b.c.d/nn` as integers (`ipaddress` costs 20 µs: hot too)."""
    address, _, length = cidr.partition("/")
    if not length.isdigit() or not 0 <= int(length) <= 32:
        raise ValueError(f"not an IPv4 range: {cidr!r}")
    mask = (0xFFFFFFFF << (32 - int(length))) & 0xFFFFFFFF
    base = _address(address) & mask
    return base, base | (~mask & 0xFFFFFFFF)


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}..{last}"
