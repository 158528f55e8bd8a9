"""Go SAND's etcd keyspace, read into typed records (pure: keys and values in, records out).

SAND (v1.0.1 to v1.1.4) keeps, under its prefix (default `/sc-net`):

    /network/<nid>                        a network
    /network-endpoints/<nid>/<eid>        an endpoint, as its network lists it
    /node-endpoints/<host>/<eid>          the same endpoint, as its host lists it
    /ipalloc/<nid>                        the network's address bitset
    /nodes/<host>/networks/<nid>          "this host ensured that network" (derived)
    /nodes-networks/<nid>/<host>          the same link, the other way round (derived)
    /docker-networks/<id>, /docker-endpoints/<id>   Docker plugin bindings

An endpoint is written to its two keys by separate puts, so an agent that died in
between left them different, or left only one: both copies are read and merged here,
the owner's (`/node-endpoints/`) winning, since that is the one SAND acts on when the
owner restarts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar

import msgspec

from sand_es.errors import Invalid

DEFAULT_SAND_PREFIX = "/sc-net"

T = TypeVar("T")


class SandNetwork(msgspec.Struct, frozen=True, kw_only=True):
    """`/network/<nid>`, with SAND's JSON names (`mtu` only if a fork stored one)."""

    id: str
    created_at: datetime
    name: str = ""
    type: str = "overlay"
    ns_handle_path: str = ""
    vxlan_vni: int = 0
    ip_range: str = ""
    gateway: str = ""
    mtu: int | None = None


class SandEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """`/network-endpoints/<nid>/<eid>` and `/node-endpoints/<host>/<eid>` (same record)."""

    id: str
    network_id: str
    created_at: datetime
    hostname: str = ""
    host_ip: str = ""
    api_hostname: str = ""  # SAND v1.1.0+ only
    target_netns_path: str = ""
    overlay_veth_name: str = ""
    overlay_veth_mac: str = ""
    target_veth_name: str = ""
    target_veth_mac: str = ""
    target_veth_ip: str = ""
    active: bool = False


class SandPool(msgspec.Struct, frozen=True, kw_only=True):
    """`/ipalloc/<nid>`: the addresses SAND's allocator marked as taken."""

    id: str
    address_range: str
    address_count: int = 0
    bit_set: str = ""


class Sourced(msgspec.Struct, frozen=True):
    """A record and the key it was read from (messages name the key)."""

    key: str
    record: SandEndpoint


class SandKeyspace(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the import needs from one SAND keyspace, read at one revision."""

    prefix: str
    networks: dict[str, tuple[str, SandNetwork]]
    endpoints: dict[str, Sourced]
    pools: dict[str, SandPool]
    docker_keys: tuple[str, ...] = ()
    docker_endpoints: tuple[str, ...] = ()
    derived_keys: int = 0
    ignored_keys: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


class _Docker(msgspec.Struct, frozen=True):
    """A `/docker-endpoints/` value: Go field names (no json tags), only the one we report."""

    SandEndpointID: str = ""


class _Reader:
    """Sorts the keys of one keyspace by kind; collects what cannot be read as problems."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.networks: dict[str, tuple[str, SandNetwork]] = {}
        self.by_network: dict[str, Sourced] = {}
        self.by_node: dict[str, Sourced] = {}
        self.pools: dict[str, SandPool] = {}
        self.docker_keys: list[str] = []
        self.docker_endpoints: list[str] = []
        self.derived = 0
        self.ignored: list[str] = []
        self.problems: list[str] = []

    def add(self, key: str, value: bytes) -> None:
        parts = key[len(self.prefix) :].split("/")[1:]
        match parts:
            case ["network", nid]:
                self._network(key, nid, value)
            case ["network-endpoints", nid, eid]:
                self._endpoint(key, eid, value, self.by_network, ("network_id", nid))
            case ["node-endpoints", host, eid]:
                self._endpoint(key, eid, value, self.by_node, ("hostname", host))
            case ["ipalloc", nid]:
                pool = self._decode(key, value, SandPool)
                if pool is not None:
                    self.pools[nid] = pool
            case ["nodes", _, "networks", _] | ["nodes-networks", _, _]:
                self.derived += 1
            case ["docker-networks", _]:
                self.docker_keys.append(key)
            case ["docker-endpoints", _]:
                self.docker_keys.append(key)
                binding = self._decode(key, value, _Docker)
                if binding is not None and binding.SandEndpointID:
                    self.docker_endpoints.append(binding.SandEndpointID)
            case _:
                self.ignored.append(key)

    def _network(self, key: str, nid: str, value: bytes) -> None:
        network = self._decode(key, value, SandNetwork)
        if network is None:
            return
        if network.id != nid:
            self.problems.append(f"{key}: the record's id {network.id!r} differs from its key")
            return
        self.networks[nid] = (key, network)

    def _endpoint(
        self, key: str, eid: str, value: bytes, into: dict[str, Sourced], parent: tuple[str, str]
    ) -> None:
        endpoint = self._decode(key, value, SandEndpoint)
        if endpoint is None:
            return
        field, expected = parent
        if endpoint.id != eid or getattr(endpoint, field) != expected:
            self.problems.append(f"{key}: the record's id or {field} differs from its key")
            return
        into[eid] = Sourced(key, endpoint)

    def _decode(self, key: str, value: bytes, kind: type[T]) -> T | None:
        try:
            return msgspec.json.decode(value, type=kind)
        except msgspec.DecodeError as exc:
            self.problems.append(f"{key}: not a SAND {kind.__name__.removeprefix('Sand').lower()}: {exc}")
            return None


def read_keyspace(prefix: str, kvs: Iterable[tuple[str, bytes]]) -> SandKeyspace:
    """The SAND records among `kvs` (every key under `prefix`, read at one revision)."""
    reader = _Reader(prefix)
    for key, value in kvs:
        reader.add(key, value)
    endpoints, warnings = merge_copies(reader.by_network, reader.by_node)
    return SandKeyspace(
        prefix=prefix,
        networks=reader.networks,
        endpoints=endpoints,
        pools=reader.pools,
        docker_keys=tuple(reader.docker_keys),
        docker_endpoints=tuple(reader.docker_endpoints),
        derived_keys=reader.derived,
        ignored_keys=tuple(reader.ignored),
        warnings=tuple(warnings),
        problems=tuple(reader.problems),
    )


def merge_copies(
    by_network: dict[str, Sourced], by_node: dict[str, Sourced]
) -> tuple[dict[str, Sourced], list[str]]:
    """One record per endpoint from its two copies, and a warning for each pair out of step.

    An endpoint found under one key only is still imported: it holds an address and a
    MAC that a live container may be using, and dropping it would let sand-es hand them
    out again. It can be deleted through sand-es afterwards, which frees its address.
    """
    merged: dict[str, Sourced] = {}
    warnings: list[str] = []
    for eid in sorted(by_network.keys() | by_node.keys()):
        network_copy, node_copy = by_network.get(eid), by_node.get(eid)
        chosen = node_copy or network_copy
        assert chosen is not None  # one of the two exists by construction
        merged[eid] = chosen
        if network_copy is None or node_copy is None:
            warnings.append(
                f"endpoint {eid} is only under {chosen.key} (a SAND write cut half-way); imported as it is"
            )
        elif network_copy.record != node_copy.record:
            warnings.append(
                f"endpoint {eid}: {network_copy.key} and {node_copy.key} differ; "
                f"the owner's copy ({node_copy.key}) is imported"
            )
    return merged, warnings


def allocated_ordinals(pool: SandPool) -> list[int]:
    """The positions set in an `/ipalloc` bitset (bit i is the range's i-th address).

    bits-and-blooms' JSON form: base64 (URL alphabet, padded) of a big-endian uint64
    bit count, then big-endian uint64 words; bit i is bit i % 64 of word i // 64.
    """
    try:
        raw = base64.urlsafe_b64decode(pool.bit_set)
    except (binascii.Error, ValueError) as exc:
        raise Invalid(f"bit_set is not base64: {exc}") from None
    if len(raw) < 8 or len(raw) % 8:
        raise Invalid(f"bit_set has {len(raw)} bytes, not a whole number of 64-bit words")
    length = int.from_bytes(raw[:8], "big")
    words = [int.from_bytes(raw[i : i + 8], "big") for i in range(8, len(raw), 8)]
    return [
        index * 64 + bit
        for index, word in enumerate(words)
        for bit in range(64)
        if word >> bit & 1 and index * 64 + bit < length
    ]
