"""SAND's records as sand-es events, and the check that they make a sound log (pure).

The events are built directly, not decided: a decider would hand out new VNIs,
addresses and device names, and the point is to keep SAND's. What the deciders
would have checked is checked instead on the result, by folding it into the views
(`check`): a VNI held by two networks, an address or MAC held by two endpoints of a
network, an endpoint of a missing network, an address outside its range or reserved.
Any of these refuses the whole import; nothing is appended.

What is deliberately not carried over:
- allocation bits no endpoint holds (`Leak`): SAND's API never frees an address,
  so every endpoint deleted through it left its bit set. sand-es derives its pools
  from the endpoints, so those addresses are free again after the import;
- the host links (`/nodes/…`, `/nodes-networks/…`): sand-es derives them too;
- the Docker plugin's bindings: sand-es has no Docker plugin;
- a network that cannot be represented (bad range, gateway, type…) and that no
  endpoint uses: SAND could not use it either (a creation that failed half-way).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final, TypeVar

import msgspec

from migrations.base import Fact
from migrations.sandkeys import SandKeyspace, SandNetwork, SandPool, Sourced, allocated_ordinals
from sand_es.commands import naming, parsing
from sand_es.errors import Invalid
from sand_es.events import (
    CODEC,
    EndpointActivated,
    EndpointAdded,
    Event,
    NetworkCreated,
    Record,
)
from sand_es.projections import EMPTY, Snapshot, fold
from sand_es.projections.ipam import address_of

DEFAULT_MTU: Final = 1450
#: How many problems an error message lists before saying "and N more".
SHOWN: Final = 20

E = TypeVar("E", bound=Event)


class Leak(msgspec.Struct, frozen=True):
    """An address SAND's allocator marks as taken that no endpoint holds: not imported."""

    network_id: str
    network_name: str
    address: str

    def __str__(self) -> str:
        return (
            f"leaked allocation not imported: {self.address} in network {self.network_id} "
            f"({self.network_name}) is marked taken in SAND but held by no endpoint; it is free in sand-es"
        )


class Translation(msgspec.Struct, frozen=True, kw_only=True):
    """The events of an import, in units kept whole (a network; an endpoint and its activation)."""

    units: tuple[tuple[Fact, ...], ...]
    networks: int
    endpoints: int
    active: int
    leaks: tuple[Leak, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def facts(self) -> list[Fact]:
        """Every fact, in order."""
        return [fact for unit in self.units for fact in unit]


def translate(keyspace: SandKeyspace) -> Translation:
    """The events equivalent to a SAND keyspace; raises `Invalid` listing what cannot be imported."""
    problems, warnings = list(keyspace.problems), list(keyspace.warnings)
    networks = _networks(keyspace, problems, warnings)
    created = {nid: _as(fact.event, NetworkCreated) for nid, fact in networks.items()}
    units: list[tuple[Fact, ...]] = [(fact,) for fact in networks.values()]
    added: list[EndpointAdded] = []
    for sourced in keyspace.endpoints.values():
        try:
            unit = endpoint_facts(sourced, created.get(sourced.record.network_id), warnings)
        except Invalid as exc:
            problems.append(f"{sourced.key}: {exc}")
            continue
        units.append(unit)
        added.append(_as(unit[0].event, EndpointAdded))
    leaks = find_leaks(keyspace, created, added, warnings)
    warnings += _not_imported(keyspace)
    if problems:
        raise Invalid(
            listing("the SAND keyspace cannot be imported as it is (nothing was appended)", problems)
        )
    return Translation(
        units=in_time_order(units),
        networks=len(networks),
        endpoints=len(added),
        active=sum(len(unit) - 1 for unit in units[len(networks) :]),
        leaks=tuple(leaks),
        warnings=tuple(warnings),
    )


def in_time_order(units: Sequence[tuple[Fact, ...]]) -> tuple[tuple[Fact, ...], ...]:
    """Units in the order SAND created them, each endpoint after its network.

    The log then reads like SAND's history, and `audit` can cut it at a time: the state
    "as of" a time is everything before the first event stamped later. An endpoint
    whose agent's clock was behind its network's creator's is placed right after that
    network, never before it (its own time is kept in its events).
    """
    network_at = {u[0].event.network_id: u[0].at for u in units if isinstance(u[0].event, NetworkCreated)}

    def key(unit: tuple[Fact, ...]) -> tuple[datetime, int, str]:
        first = unit[0]
        if isinstance(first.event, NetworkCreated):
            return first.at, 0, first.event.network_id
        after = network_at.get(first.event.network_id, first.at)
        return max(first.at, after), 1, first.source

    return tuple(sorted(units, key=key))


def _networks(keyspace: SandKeyspace, problems: list[str], warnings: list[str]) -> dict[str, Fact]:
    used = {sourced.record.network_id for sourced in keyspace.endpoints.values()}
    facts: dict[str, Fact] = {}
    for nid, (key, record) in sorted(keyspace.networks.items()):
        try:
            facts[nid] = Fact(network_event(record), _utc(record.created_at), key)
        except Invalid as exc:
            if nid in used:
                problems.append(f"{key}: {exc}")
            else:
                warnings.append(f"{key}: {exc}; no endpoint uses it, so it is not imported")
    return facts


def network_event(record: SandNetwork) -> NetworkCreated:
    """`network.created` for a SAND network, keeping its id, name, range, gateway, VNI and MTU."""
    if record.type != "overlay":
        raise Invalid(f"invalid network type {record.type!r}: only 'overlay' exists")
    ip_range = parsing.ip_range(record.ip_range)
    gateway = parsing.gateway(record.gateway, ip_range)
    return _valid(
        NetworkCreated(
            network_id=record.id,
            name=record.name,
            type=record.type,
            ip_range=str(ip_range),
            gateway=f"{gateway}/{ip_range.prefixlen}",
            vxlan_vni=record.vxlan_vni,
            mtu=DEFAULT_MTU if record.mtu is None else record.mtu,
            ns_handle_path=record.ns_handle_path,
        )
    )


def endpoint_facts(sourced: Sourced, network: NetworkCreated | None, warnings: list[str]) -> tuple[Fact, ...]:
    """`endpoint.added` for a SAND endpoint, then `endpoint.activated` if it is active.

    SAND names devices and learns the overlay MAC only when it wires an endpoint, so a
    passive endpoint has none: it gets the names and MAC sand-es would give it.
    """
    e, at = sourced.record, _utc(sourced.record.created_at)
    if not e.hostname:
        raise Invalid("the endpoint's hostname is empty")
    added = _valid(
        EndpointAdded(
            endpoint_id=e.id,
            network_id=e.network_id,
            hostname=e.hostname,
            host_ip=parsing.host_ip(e.host_ip),
            api_hostname=e.api_hostname,
            target_veth_ip=_interface(e.target_veth_ip),
            target_veth_mac=parsing.mac_address(e.target_veth_mac),
            target_veth_name=e.target_veth_name or naming.target_veth_name(e.id),
            overlay_veth_name=e.overlay_veth_name or naming.overlay_veth_name(e.id),
            overlay_veth_mac=parsing.mac_address(e.overlay_veth_mac or naming.overlay_veth_mac(e.id)),
            mtu=DEFAULT_MTU if network is None else network.mtu,
        )
    )
    if not e.active:
        return (Fact(added, at, sourced.key),)
    if not e.target_netns_path:
        warnings.append(f"{sourced.key}: active without a target_netns_path; imported as inactive")
        return (Fact(added, at, sourced.key),)
    activated = EndpointActivated(
        endpoint_id=e.id, network_id=e.network_id, target_netns_path=parsing.netns_path(e.target_netns_path)
    )
    return Fact(added, at, sourced.key), Fact(activated, at, sourced.key)


def _interface(text: str) -> str:
    try:
        interface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise Invalid(f"invalid target_veth_ip {text!r}: expected an IPv4 address with its prefix") from None
    if "/" not in text:
        raise Invalid(f"invalid target_veth_ip {text!r}: the prefix length is missing")
    return str(interface)


def _valid(event: E) -> E:
    """The event if it fits its stored schema (VNI range, MTU, name lengths…); `Invalid` if not."""
    try:
        return msgspec.convert(msgspec.to_builtins(event), type(event))
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc)) from None


def _as(event: Event, kind: type[E]) -> E:
    assert isinstance(event, kind)
    return event


def _utc(at: datetime) -> datetime:
    # Go writes the agent's local offset; a naive time can only come from a hand-edit.
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def find_leaks(
    keyspace: SandKeyspace,
    networks: dict[str, NetworkCreated],
    added: Sequence[EndpointAdded],
    warnings: list[str],
) -> list[Leak]:
    """Addresses SAND marks as taken that no endpoint holds (warning about pools out of step)."""
    held: dict[str, dict[int, str]] = defaultdict(dict)
    for e in added:
        held[e.network_id][address_of(e.target_veth_ip)] = e.endpoint_id
    leaks: list[Leak] = []
    for nid, network in networks.items():
        pool = keyspace.pools.get(nid)
        if pool is not None:
            leaks += _pool_leaks(keyspace.prefix, network, pool, held[nid], warnings)
    for nid in sorted(keyspace.pools.keys() - networks.keys()):
        warnings.append(f"{keyspace.prefix}/ipalloc/{nid}: the pool of no imported network; not imported")
    return leaks


def _pool_leaks(
    prefix: str, network: NetworkCreated, pool: SandPool, held: dict[int, str], warnings: list[str]
) -> list[Leak]:
    key = f"{prefix}/ipalloc/{network.network_id}"
    ip_range = ipaddress.IPv4Network(network.ip_range)
    if pool.address_range != network.ip_range:
        warnings.append(f"{key}: range {pool.address_range} is not the network's; leaks not looked for")
        return []
    try:
        ordinals = allocated_ordinals(pool)
    except Invalid as exc:
        warnings.append(f"{key}: {exc}; leaks not looked for")
        return []
    base = int(ip_range.network_address)
    reserved = {base, int(ip_range.broadcast_address), address_of(network.gateway)}
    marked = {base + ordinal for ordinal in ordinals}
    for address in sorted(held.keys() - marked):
        warnings.append(
            f"{key}: {ipaddress.IPv4Address(address)} (endpoint {held[address]}) is not marked taken "
            "in SAND's allocator; imported as held by its endpoint"
        )
    if ip_range.prefixlen < 24 and marked != reserved | held.keys():
        # SAND's ordinal arithmetic is wrong below /24: explicit addresses set the wrong bit.
        warnings.append(
            f"{key}: a range wider than /24, where SAND misplaces bits; the leaks listed may be off"
        )
    return [
        Leak(network.network_id, network.name, str(ipaddress.IPv4Address(address)))
        for address in sorted(marked - reserved - held.keys())
    ]


def _not_imported(keyspace: SandKeyspace) -> list[str]:
    warnings = [f"{key}: not a SAND key this import knows; ignored" for key in keyspace.ignored_keys]
    if keyspace.docker_keys:
        bound = sorted(set(keyspace.docker_endpoints))
        warnings.append(
            f"{len(keyspace.docker_keys)} Docker plugin binding(s) under {keyspace.prefix}/docker-networks/ "
            f"and /docker-endpoints/ not imported: sand-es has no Docker plugin. The SAND endpoints "
            f"Docker made are imported (their addresses and MACs stay taken): {', '.join(bound) or 'none'}; "
            "see migrations/README.md before starting sand-es agents on their hosts"
        )
    return warnings


def listing(headline: str, problems: Sequence[str]) -> str:
    """A headline and the first `SHOWN` problems, one per line."""
    shown = [f"  - {p}" for p in problems[:SHOWN]]
    if len(problems) > SHOWN:
        shown.append(f"  … and {len(problems) - SHOWN} more")
    return "\n".join([f"{headline}:", *shown])


def check(translation: Translation) -> Snapshot:
    """The views the import leads to; raises `Invalid` if they break an invariant of sand-es."""
    snapshot = fold(EMPTY, _records(translation.facts))
    added = [f.event for f in translation.facts if isinstance(f.event, EndpointAdded)]
    problems = [*_vni_problems(snapshot), *_endpoint_problems(snapshot, added)]
    if problems:
        raise Invalid(listing("the SAND keyspace breaks sand-es's rules (nothing was appended)", problems))
    return snapshot


def _records(facts: Iterable[Fact]) -> list[Record]:
    return [
        Record(seq, 0, CODEC.envelope(f.event, event_id=str(seq), at=f.at, actor="check", command_id="check"))
        for seq, f in enumerate(facts, start=1)
    ]


def _vni_problems(snapshot: Snapshot) -> list[str]:
    vnis = snapshot.vnis
    shared = [vni for vni, holders in sorted(vnis.holders.items()) if holders > 1]
    users = {vni: sorted(n for n, v in vnis.of_network.items() if v == vni) for vni in shared}
    return [f"VNI {vni} is used by networks {', '.join(networks)}" for vni, networks in users.items()]


def _endpoint_problems(snapshot: Snapshot, added: Sequence[EndpointAdded]) -> list[str]:
    problems: list[str] = []
    overlay_names: dict[tuple[str, str, str], str] = {}
    for e in added:
        problems += _address_problems(snapshot, e)
        mac_holder = snapshot.endpoints.holder_of_mac(e.network_id, e.target_veth_mac)
        if mac_holder != e.endpoint_id and snapshot.networks.get(e.network_id) is not None:
            problems.append(f"MAC {e.target_veth_mac} is used by endpoints {e.endpoint_id} and {mac_holder}")
        # Both ends of a network's veths sit in one overlay namespace per host.
        other = overlay_names.setdefault((e.hostname, e.network_id, e.overlay_veth_name), e.endpoint_id)
        if other != e.endpoint_id:
            device = f"device {e.overlay_veth_name} on {e.hostname}"
            problems.append(f"{device} belongs to endpoints {other} and {e.endpoint_id}")
    return problems


def _address_problems(snapshot: Snapshot, e: EndpointAdded) -> list[str]:
    pool = snapshot.addresses.get(e.network_id)
    if snapshot.networks.get(e.network_id) is None or pool is None:
        return [f"endpoint {e.endpoint_id} belongs to network {e.network_id}, which is not imported"]
    address = address_of(e.target_veth_ip)
    where = f"endpoint {e.endpoint_id}'s address {e.target_veth_ip}"
    if not pool.contains(address) or int(e.target_veth_ip.partition("/")[2]) != pool.prefix:
        return [f"{where} is not in its network's range"]
    if pool.is_reserved(address):
        return [f"{where} is its network's own, broadcast or gateway address"]
    holder = pool.holder(address)
    if holder != e.endpoint_id:
        return [
            f"address {e.target_veth_ip} in network {e.network_id} is held by {e.endpoint_id} and {holder}"
        ]
    return []
