"""IPAM: the address pool of every network and which endpoint holds which address.

Unlike SAND's Go allocator this one handles any prefix from /8 to /30 (SAND's
ordinal arithmetic is wrong below /24) and frees an endpoint's address when the
endpoint is removed (SAND's API never does). The network address, the broadcast
address and the gateway are never handed out.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import cast

import msgspec

from sand_es.events import (
    EndpointAdded,
    EndpointRemoved,
    Envelope,
    NetworkCreated,
    NetworkDeleted,
    Position,
)
from sand_es.projections.cow import CowMap, Handlers
from sand_es.projections.sharded import ShardedCowMap


class Pool(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One network's IPv4 pool; addresses are kept as integers.

    `hint` is a lower bound of the first free address, kept by the fold so that
    allocating in a large, mostly full pool does not rescan it from the start.
    """

    base: int
    prefix: int
    gateway: int
    allocated: Mapping[int, str] = {}
    hint: int = 0

    @property
    def broadcast(self) -> int:
        """The last address of the range."""
        return self.base + (1 << (32 - self.prefix)) - 1

    @property
    def capacity(self) -> int:
        """How many addresses endpoints can get in all (range minus 3 reserved)."""
        return (1 << (32 - self.prefix)) - 3

    def contains(self, address: int) -> bool:
        """Whether the address lies inside the range."""
        return self.base <= address <= self.broadcast

    def is_reserved(self, address: int) -> bool:
        """Network, broadcast and gateway addresses are never given to endpoints."""
        return address in (self.base, self.broadcast, self.gateway)

    def holder(self, address: int) -> str | None:
        """The endpoint holding the address, if any."""
        return self.allocated.get(address)

    def next_free(self) -> int | None:
        """The lowest address an endpoint can get, or None when the pool is full."""
        if len(self.allocated) >= self.capacity:
            return None
        address = max(self.hint, self.base + 1)
        while address < self.broadcast:
            if address != self.gateway and address not in self.allocated:
                return address
            address += 1
        return None


def pool_of(ip_range: str, gateway: str) -> Pool:
    """The empty pool of a range and its gateway (both as stored in NetworkCreated)."""
    network = ipaddress.IPv4Network(ip_range, strict=False)
    gateway_ip = ipaddress.IPv4Interface(gateway).ip
    return Pool(
        base=int(network.network_address),
        prefix=network.prefixlen,
        gateway=int(gateway_ip),
        hint=int(network.network_address) + 1,
    )


def address_of(cidr: str) -> int:
    """The address part of `a.b.c.d/nn` (or of a bare address) as an integer."""
    # inet_pton is ~15x faster than ipaddress, and a replay calls this for every
    # endpoint added or removed; it accepts exactly the dotted quads ipaddress does.
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, cidr.partition("/")[0]), "big")
    except OSError:
        raise ValueError(f"not an IPv4 address: {cidr!r}") from None


class AddressTable(msgspec.Struct, frozen=True, kw_only=True):
    """Pools by network id, as of `position`."""

    position: Position = Position()
    pools: Mapping[str, Pool] = {}

    def get(self, network_id: str) -> Pool | None:
        """The pool of a network, or None."""
        return self.pools.get(network_id)


class _PoolWork:
    __slots__ = ("allocated", "hint", "pool")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.allocated = CowMap(pool.allocated)
        self.hint = pool.hint

    def take(self, address: int, endpoint_id: str) -> None:
        self.allocated.set(address, endpoint_id)
        while self.hint in self.allocated or self.hint == self.pool.gateway:
            self.hint += 1

    def release(self, address: int, endpoint_id: str) -> None:
        if self.allocated.get(address) == endpoint_id:
            self.allocated.discard(address)
            self.hint = min(self.hint, address)

    def release_endpoint(self, endpoint_id: str) -> None:
        # Only for a removal event that does not name the address (hand-made logs).
        for address, holder in self.allocated.items():
            if holder == endpoint_id:
                self.release(address, endpoint_id)

    def freeze(self) -> Pool:
        return msgspec.structs.replace(self.pool, allocated=self.allocated.freeze(), hint=self.hint)

    def peek(self) -> Pool:
        return msgspec.structs.replace(self.pool, allocated=self.allocated.peek(), hint=self.hint)


class AddressTableBuilder:
    """Folds events into the next `AddressTable`."""

    def __init__(self, view: AddressTable) -> None:
        self._pools = ShardedCowMap(view.pools)
        self._touched: dict[str, _PoolWork] = {}

    def handlers(self) -> Handlers:
        """The function applying each event type this view changes on."""
        return {
            NetworkCreated: self._on_network_created,
            NetworkDeleted: self._on_network_deleted,
            EndpointAdded: self._on_endpoint_added,
            EndpointRemoved: self._on_endpoint_removed,
        }

    def _on_network_created(self, envelope: Envelope) -> None:
        e = cast(NetworkCreated, envelope.data)
        self._touched.pop(e.network_id, None)
        self._pools.set(e.network_id, pool_of(e.ip_range, e.gateway))

    def _on_network_deleted(self, envelope: Envelope) -> None:
        network_id = cast(NetworkDeleted, envelope.data).network_id
        self._touched.pop(network_id, None)
        self._pools.discard(network_id)

    def _on_endpoint_added(self, envelope: Envelope) -> None:
        e = cast(EndpointAdded, envelope.data)
        work = self._work(e.network_id)
        if work is not None:
            work.take(address_of(e.target_veth_ip), e.endpoint_id)

    def _on_endpoint_removed(self, envelope: Envelope) -> None:
        e = cast(EndpointRemoved, envelope.data)
        work = self._work(e.network_id)
        if work is None:
            return
        if e.target_veth_ip:
            work.release(address_of(e.target_veth_ip), e.endpoint_id)
        else:
            work.release_endpoint(e.endpoint_id)

    def freeze(self, position: Position) -> AddressTable:
        """The view reached, stamped with `position`."""
        for network_id, work in self._touched.items():
            self._pools.set(network_id, work.freeze())
        self._touched.clear()
        return AddressTable(position=position, pools=self._pools.freeze())

    def peek(self, position: Position) -> AddressTable:
        """The view so far, sharing this builder's tables: valid only until the next event."""
        for network_id, work in self._touched.items():
            self._pools.set(network_id, work.peek())
        return AddressTable(position=position, pools=self._pools.peek())

    def _work(self, network_id: str) -> _PoolWork | None:
        work = self._touched.get(network_id)
        if work is None:
            pool = self._pools.get(network_id)
            if pool is None:
                return None
            work = self._touched[network_id] = _PoolWork(pool)
        return work
