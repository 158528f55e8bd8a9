"""The snapshot: every view at one log position, and the fold that advances it.

`fold(snapshot, records)` is the only way views move. It is pure: the snapshot
passed in is never changed, and the one returned reflects every record after the
snapshot's position. Records at or before that position are skipped, so a record
delivered twice (a watch redelivery, a catch-up overlapping the tail, an agent
folding its own append before the watch shows it) changes nothing. A record that
would leave a hole in the sequence is refused: views never skip an event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import msgspec

from sand_es.errors import LogCorrupt
from sand_es.events import EVENT_TYPES, Envelope, Event, Position, Record
from sand_es.projections.cow import Handlers
from sand_es.projections.endpoints import EndpointCatalog, EndpointCatalogBuilder
from sand_es.projections.ipam import AddressTable, AddressTableBuilder
from sand_es.projections.networks import NetworkCatalog, NetworkCatalogBuilder
from sand_es.projections.peers import PeerMap, PeerMapBuilder
from sand_es.projections.vnis import VniTable, VniTableBuilder


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Every view of the log, all at `position`."""

    position: Position = Position()
    networks: NetworkCatalog = NetworkCatalog()
    endpoints: EndpointCatalog = EndpointCatalog()
    vnis: VniTable = VniTable()
    addresses: AddressTable = AddressTable()
    peers: PeerMap = PeerMap()


EMPTY = Snapshot()


class SnapshotBuilder:
    """Applies records one by one to working copies of every view.

    Use `fold` for a batch at hand; use a builder directly to fold a long read page
    by page and publish a single snapshot at the end.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self._start = snapshot
        self._seq = snapshot.position.seq
        self._rev = snapshot.position.rev
        self._digest = snapshot.position.digest
        self._networks = NetworkCatalogBuilder(snapshot.networks)
        self._endpoints = EndpointCatalogBuilder(snapshot.endpoints)
        self._vnis = VniTableBuilder(snapshot.vnis)
        self._addresses = AddressTableBuilder(snapshot.addresses)
        self._peers = PeerMapBuilder(snapshot.peers)
        self._routes = _routes(self._networks, self._endpoints, self._vnis, self._addresses, self._peers)

    @property
    def position(self) -> Position:
        """The position of the last record applied."""
        return Position(self._seq, self._rev, self._digest)

    def add(self, records: Iterable[Record]) -> None:
        """Apply every record after the current position, refusing gaps."""
        routes, seq, rev, digest = self._routes, self._seq, self._rev, self._digest
        try:
            for record in records:
                if record.seq <= seq:
                    continue
                if record.seq != seq + 1:
                    raise LogCorrupt(f"log gap: event {seq + 1} missing before {record.seq}")
                envelope = record.envelope
                for handle in routes[type(envelope.data)]:
                    handle(envelope)
                seq, rev, digest = record.seq, record.rev, record.digest
        finally:
            self._seq, self._rev, self._digest = seq, rev, digest

    def build(self) -> Snapshot:
        """The snapshot reached so far."""
        position = self.position
        if position == self._start.position:
            return self._start
        self._start = Snapshot(
            position=position,
            networks=self._networks.freeze(position),
            endpoints=self._endpoints.freeze(position),
            vnis=self._vnis.freeze(position),
            addresses=self._addresses.freeze(position),
            peers=self._peers.freeze(position),
        )
        return self._start

    def peek(self) -> Snapshot:
        """The snapshot reached so far, sharing the builder's tables without copying them.

        For a caller that reads it and lets it go before adding more records (the
        service deciding a group of commands one after the other): the next `add`
        may change what it shows. Use `build` for a snapshot to keep.
        """
        position = self.position
        return Snapshot(
            position=position,
            networks=self._networks.peek(position),
            endpoints=self._endpoints.peek(position),
            vnis=self._vnis.peek(position),
            addresses=self._addresses.peek(position),
            peers=self._peers.peek(position),
        )


class _Builder(Protocol):
    def handlers(self) -> Handlers: ...


def _routes(*builders: _Builder) -> dict[type[Event], list[Callable[[Envelope], None]]]:
    """Event type -> the handler of each view it concerns (a replay calls no other code)."""
    tables = [builder.handlers() for builder in builders]
    return {kind: [table[kind] for table in tables if kind in table] for kind in EVENT_TYPES}


def fold(snapshot: Snapshot, records: Iterable[Record]) -> Snapshot:
    """The snapshot after applying `records` to `snapshot`."""
    builder = SnapshotBuilder(snapshot)
    builder.add(records)
    return builder.build()
