"""How fast an agent rebuilds its views from a long log on a real etcd.

Writes N synthetic events through `EtcdLog.append` (126 events per transaction, the most
one etcd transaction of 128 operations can carry next to its command key and the head),
forming a valid, realistic history: about 1 % NetworkCreated, then endpoints added (most
activated at once), toggled, and removed, spread over networks and hosts. Then, each time
with a new (cold) client:

- rebuild: `LiveViews().catch_up(log)`, i.e. paged etcd reads + decode + fold, for the
  library's default page size/prefetch and for every other `--pages` setting;
- raw read: the same paged range reads with etcd3aio alone, no decode (the baseline);
- decode: `CODEC.decode` of the raw values; fold: `fold(EMPTY, records)` of the decoded ones;
- at scale: `Service.execute(AddEndpoint)` and `Service.execute(CreateNetwork)` on the
  rebuilt views (the cost of one command once the state is large).

    .venv/bin/python bench/replay.py                      # 100 000 events
    .venv/bin/python bench/replay.py --events 1000000     # the big run (a few minutes)

The last stdout line is a JSON object (see docs/benchmarks.md for its keys).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import inspect
import ipaddress
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from _common import EtcdServer, bench_etcd, connect, machine, ms, percentile, progress, ratio, run_main
from etcd3aio import Etcd3Client

from sand_es.commands import AddEndpoint, CreateNetwork
from sand_es.commands.naming import overlay_veth_mac, overlay_veth_name, target_veth_mac, target_veth_name
from sand_es.etcdlog import EtcdLog
from sand_es.events import (
    CODEC,
    START,
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Envelope,
    Event,
    NetworkCreated,
    Position,
    Record,
    chain,
    tag_of,
)
from sand_es.ports import PendingCommand
from sand_es.projections import EMPTY, Snapshot, fold
from sand_es.service import Service
from sand_es.snapshots import SnapshotStore
from sand_es.views import LiveViews

TARGET_REBUILD_S_1M: Final = 10.0
TARGET_SNAPSHOT_START_S: Final = 1.0
EVENTS_PER_APPEND: Final = 126  # + 1 command key + 1 head = 128 operations
PREFIX: Final = "/bench/replay"
_DEFAULTS = inspect.signature(EtcdLog.__init__).parameters
LIBRARY_PAGE_SIZE: Final[int] = _DEFAULTS["page_size"].default
LIBRARY_PREFETCH: Final[int] = _DEFAULTS["prefetch"].default


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="events to write (default 100 000)")
    parser.add_argument(
        "--pages",
        default="2000/4,5000/4,10000/2",
        help="page_size/prefetch settings to rebuild with (the library default is always included)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="timed rebuilds and raw reads per setting")
    parser.add_argument("--hosts", type=int, default=50, help="hosts the endpoints are spread over")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic history")
    parser.add_argument("--samples", type=int, default=20, help="commands executed at scale, per kind")
    args = parser.parse_args()
    if args.events < 1 or args.rounds < 1 or args.hosts < 1 or args.samples < 0:
        parser.error("--events, --rounds and --hosts must be positive, --samples not negative")
    pages = [(LIBRARY_PAGE_SIZE, LIBRARY_PREFETCH)]
    for item in args.pages.split(","):
        size, _, prefetch = item.strip().partition("/")
        try:
            setting = (int(size), int(prefetch or LIBRARY_PREFETCH))
        except ValueError:
            parser.error(f"--pages: {item!r} is not page_size/prefetch")
        if min(setting) < 1:
            parser.error(f"--pages: {item!r} is not page_size/prefetch")
        if setting not in pages:
            pages.append(setting)
    args.pages = pages
    return args


# -- the synthetic history -------------------------------------------------------------------


@dataclass
class _Network:
    network_id: str
    base: int
    prefix: int
    next_free: int
    freed: list[int] = field(default_factory=list)

    def take(self) -> int:
        """The lowest free address, as `Pool.next_free` would choose it."""
        if self.freed:
            return heapq.heappop(self.freed)
        address = self.next_free
        self.next_free += 1
        return address


@dataclass
class _Endpoint:
    endpoint_id: str
    network: _Network
    hostname: str
    address: int
    active: bool


class History:
    """A seeded, valid stream of (event, actor, command_id): every event applies to what exists.

    Networks get VNIs 1..k and /16 ranges in 10.0.0.0/8 (ranges repeat past 256 networks:
    overlays are isolated, and nothing here is ever routed). Endpoints take the lowest free
    address of their network, like the decider; most are activated by the command that adds
    them; later ones toggle (deactivate or re-activate) or remove a random live endpoint.
    """

    NETWORK_EVERY: Final = 100  # ~1 % of the events are NetworkCreated
    ACTIVATE_ON_ADD: Final = 0.9
    P_ADD: Final = 0.62
    P_TOGGLE: Final = 0.19  # the rest removes

    def __init__(self, *, seed: int, hosts: int) -> None:
        self._rng = random.Random(seed)
        self._hosts = [(f"host-{i:03d}", f"192.168.{i // 250}.{i % 250 + 1}") for i in range(hosts)]
        self._networks: list[_Network] = []
        self._endpoints: list[_Endpoint] = []  # live ones; removal swaps with the last
        self._index: dict[str, int] = {}
        self._emitted = 0
        self._clock = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        self.mix: Counter[str] = Counter()

    @property
    def networks(self) -> int:
        """Networks created so far."""
        return len(self._networks)

    @property
    def live_endpoints(self) -> int:
        """Endpoints added and not removed so far."""
        return len(self._endpoints)

    def expected(self, events: int) -> dict[str, int]:
        """What `_describe` must find in views rebuilt from the history written so far."""
        addresses = [e.address for e in self._endpoints]
        return {
            "seq": events,
            "networks": len(self._networks),
            "endpoints": len(self._endpoints),
            "active_endpoints": sum(1 for e in self._endpoints if e.active),
            "allocated_addresses": len(addresses),
            "address_checksum": sum(addresses) % 1_000_000_007,
        }

    def envelopes(self) -> Iterator[Envelope]:
        """An endless stream of envelopes; each command's events come out together."""
        while True:
            command_id = self._uuid()
            for event, actor in self._command():
                self._clock += timedelta(microseconds=self._rng.randrange(100, 20_000))
                self.mix[tag_of(type(event))] += 1
                self._emitted += 1
                yield CODEC.envelope(
                    event, event_id=self._uuid(), at=self._clock, actor=actor, command_id=command_id
                )

    def _command(self) -> list[tuple[Event, str]]:
        if not self._networks or self._emitted >= len(self._networks) * self.NETWORK_EVERY:
            return [self._create_network()]
        draw = self._rng.random()
        if draw < self.P_ADD or not self._endpoints:
            return self._add_endpoint()
        endpoint = self._endpoints[self._rng.randrange(len(self._endpoints))]
        if draw < self.P_ADD + self.P_TOGGLE:
            return [self._toggle(endpoint)]
        return [self._remove(endpoint)]

    def _create_network(self) -> tuple[Event, str]:
        n = len(self._networks)
        network_id = self._uuid()
        base = int(ipaddress.IPv4Address(f"10.{n % 256}.0.0"))
        self._networks.append(_Network(network_id, base, 16, next_free=base + 2))
        event = NetworkCreated(
            network_id=network_id,
            name=f"net-sc-{network_id}",
            ip_range=f"{ipaddress.IPv4Address(base)}/16",
            gateway=f"{ipaddress.IPv4Address(base + 1)}/16",
            vxlan_vni=n + 1,
            ns_handle_path=f"/var/run/netns/sc-ns-{network_id}",
        )
        return event, self._rng.choice(self._hosts)[0]

    def _add_endpoint(self) -> list[tuple[Event, str]]:
        network = self._rng.choice(self._networks)
        hostname, host_ip = self._rng.choice(self._hosts)
        endpoint_id = self._uuid()
        address = network.take()
        ip = ipaddress.IPv4Address(address)
        added = EndpointAdded(
            endpoint_id=endpoint_id,
            network_id=network.network_id,
            hostname=hostname,
            host_ip=host_ip,
            target_veth_ip=f"{ip}/{network.prefix}",
            target_veth_mac=target_veth_mac(ip),
            target_veth_name=target_veth_name(endpoint_id),
            overlay_veth_name=overlay_veth_name(endpoint_id),
            overlay_veth_mac=overlay_veth_mac(endpoint_id),
        )
        endpoint = _Endpoint(endpoint_id, network, hostname, address, active=False)
        self._index[endpoint_id] = len(self._endpoints)
        self._endpoints.append(endpoint)
        events: list[tuple[Event, str]] = [(added, hostname)]
        if self._rng.random() < self.ACTIVATE_ON_ADD:
            events.append((self._activate(endpoint), hostname))
        return events

    def _activate(self, endpoint: _Endpoint) -> Event:
        endpoint.active = True
        return EndpointActivated(
            endpoint_id=endpoint.endpoint_id,
            network_id=endpoint.network.network_id,
            target_netns_path=f"/var/run/docker/netns/{self._rng.getrandbits(48):012x}",
        )

    def _toggle(self, endpoint: _Endpoint) -> tuple[Event, str]:
        if not endpoint.active:
            return self._activate(endpoint), endpoint.hostname
        endpoint.active = False
        event = EndpointDeactivated(
            endpoint_id=endpoint.endpoint_id,
            network_id=endpoint.network.network_id,
            reason=self._rng.choice(("network namespace vanished", "requested by the API")),
        )
        return event, endpoint.hostname

    def _remove(self, endpoint: _Endpoint) -> tuple[Event, str]:
        at = self._index.pop(endpoint.endpoint_id)
        last = self._endpoints.pop()
        if last is not endpoint:
            self._endpoints[at] = last
            self._index[last.endpoint_id] = at
        heapq.heappush(endpoint.network.freed, endpoint.address)
        event = EndpointRemoved(
            endpoint_id=endpoint.endpoint_id,
            network_id=endpoint.network.network_id,
            target_veth_ip=f"{ipaddress.IPv4Address(endpoint.address)}/{endpoint.network.prefix}",
        )
        return event, endpoint.hostname

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


async def _write(client: Etcd3Client, history: History, events: int) -> dict[str, Any]:
    """Append `events` envelopes, building the next batch while etcd commits the last."""
    log = EtcdLog(client, prefix=PREFIX, append_timeout=30.0)
    stream = history.envelopes()
    position: Position = START
    produced = batches = 0
    started = last_report = time.perf_counter()

    def batch() -> tuple[Envelope, ...]:
        nonlocal produced
        size = min(EVENTS_PER_APPEND, events - produced)
        produced += size
        return tuple(next(stream) for _ in range(size))

    pending = batch()
    while pending:
        append = asyncio.ensure_future(log.append([PendingCommand(f"batch-{batches}", pending)], position))
        await asyncio.sleep(0)  # let the append encode and send its transaction…
        pending = batch()  # …and build the next batch while etcd commits it
        position = (await append)[-1].position
        batches += 1
        if time.perf_counter() - last_report > 5:
            last_report = time.perf_counter()
            rate = position.seq / (last_report - started)
            progress(f"wrote {position.seq} / {events} events ({rate:.0f} events/s)")
    elapsed = time.perf_counter() - started
    progress(f"wrote {position.seq} events in {batches} appends, {elapsed:.1f} s ({events / elapsed:.0f}/s)")
    return {"write_s": round(elapsed, 3), "write_events_per_s": round(events / elapsed), "appends": batches}


# -- reading it back -------------------------------------------------------------------------


async def _rebuild(server: EtcdServer, page_size: int, prefetch: int) -> tuple[float, Snapshot]:
    """`LiveViews().catch_up(log)` with a new client: (seconds, snapshot)."""
    client = await connect(server)
    try:
        log = EtcdLog(client, prefix=PREFIX, page_size=page_size, prefetch=prefetch, read_timeout=60.0)
        started = time.perf_counter()
        snapshot = await LiveViews().catch_up(log)
        return time.perf_counter() - started, snapshot
    finally:
        await client.close()


async def _snapshot_start(
    server: EtcdServer, snapshot: Snapshot, expected: dict[str, int], rounds: int
) -> dict[str, Any]:
    """Store the views as a snapshot, then time an agent's start from it: load, check, decode, catch up."""
    client = await connect(server)
    try:
        log = EtcdLog(client, prefix=PREFIX, read_timeout=60.0)
        store = SnapshotStore(log)
        # The fold above was fed records without digests; an agent's views carry the head's.
        snapshot = msgspec.structs.replace(snapshot, position=await log.head())
        started = time.perf_counter()
        meta = await store.save(snapshot)
        save_s = time.perf_counter() - started
    finally:
        await client.close()
    if meta is None:
        raise RuntimeError("a snapshot at this position existed already")
    progress(f"snapshot stored: {meta.size} bytes in {meta.parts} parts, {save_s:.2f} s")
    starts = []
    for round_ in range(1, rounds + 1):
        gc.collect()
        client = await connect(server)
        try:
            log = EtcdLog(client, prefix=PREFIX, read_timeout=60.0)
            started = time.perf_counter()
            loaded = await SnapshotStore(log).load_newest()
            if loaded is None:
                raise RuntimeError("the stored snapshot was not loaded")
            views = LiveViews(loaded)
            await views.catch_up(log)
            starts.append(time.perf_counter() - started)
        finally:
            await client.close()
        _check(views.current, expected, "the views started from the snapshot")
        progress(f"round {round_}: start from snapshot: {starts[-1]:.2f} s")
        del views, loaded
    return {
        "snapshot_start_s": round(min(starts), 3),
        "snapshot_start_s_runs": [round(t, 3) for t in starts],
        "snapshot_bytes": meta.size,
        "snapshot_save_s": round(save_s, 3),
        "target_snapshot_start_s": TARGET_SNAPSHOT_START_S,
    }


class RawRows:
    """What a raw read brings back, column by column (no per-row objects): seqs, values, revisions."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.values: list[bytes] = []
        self.revisions: list[int] = []


async def _raw_read(server: EtcdServer, page_size: int, prefetch: int) -> tuple[float, RawRows]:
    """The log's paged reads (same bounds, window and pinned revision) with etcd3aio alone."""
    client = await connect(server)
    try:
        kv = client.kv
        assert kv is not None
        events = f"{PREFIX}/events/".encode()
        skip = len(events)

        def key(seq: int) -> bytes:
            return events + str(seq).zfill(16).encode()

        async def page(first: int, end: int, revision: int) -> Any:
            return (await kv.get(key(first), range_end=key(end), revision=revision, timeout=60.0)).kvs

        started = time.perf_counter()
        head = await kv.get(f"{PREFIX}/head".encode())
        pin, last = head.header.revision, chain.parse_head(head.kvs[0].value)[0]
        rows = RawRows()
        window: deque[asyncio.Future[Any]] = deque()
        ahead = 1
        while ahead <= last or window:
            while len(window) < prefetch and ahead <= last:
                end = min(ahead + page_size, last + 1)
                window.append(asyncio.ensure_future(page(ahead, end, pin)))
                ahead = end
            for item in await window.popleft():
                rows.seqs.append(int(item.key[skip:]))
                rows.values.append(item.value)
                rows.revisions.append(item.mod_revision)
        return time.perf_counter() - started, rows
    finally:
        await client.close()


def _describe(snapshot: Snapshot) -> dict[str, int]:
    peers = snapshot.peers.networks
    pools = snapshot.addresses.pools.values()
    return {
        "seq": snapshot.position.seq,
        "networks": len(snapshot.networks.networks),
        "endpoints": len(snapshot.endpoints.endpoints),
        "active_endpoints": sum(len(p) for hosts in peers.values() for p in hosts.values()),
        "allocated_addresses": sum(len(pool.allocated) for pool in pools),
        "address_checksum": sum(sum(pool.allocated) for pool in pools) % 1_000_000_007,
    }


def _check(snapshot: Snapshot, expected: dict[str, int], what: str) -> None:
    got = _describe(snapshot)
    if got != expected:
        raise RuntimeError(f"{what} does not match the history written: {got} != {expected}")


async def _execute_at_scale(
    server: EtcdServer, snapshot: Snapshot, samples: int, hostname: str
) -> dict[str, Any]:
    """Latency of single commands (one caller) once the views are as large as the log."""
    if samples == 0:
        return {}
    client = await connect(server)
    log = EtcdLog(client, prefix=PREFIX)
    # The fold was fed records without digests; an agent's views carry the head's.
    snapshot = msgspec.structs.replace(snapshot, position=await log.head())
    service = Service(log, LiveViews(snapshot), actor="bench-agent")
    network_id = next(iter(snapshot.networks.networks))
    try:
        adds: list[float] = []
        creates: list[float] = []
        for i in range(samples):
            started = time.perf_counter()
            await service.execute(
                AddEndpoint(
                    network_id=network_id,
                    hostname=hostname,
                    activate=True,
                    target_netns_path=f"/var/run/docker/netns/bench{i:04d}",
                )
            )
            adds.append(time.perf_counter() - started)
            started = time.perf_counter()
            await service.execute(CreateNetwork(ip_range=f"172.{16 + i // 256 % 16}.{i % 256}.0/24"))
            creates.append(time.perf_counter() - started)
    finally:
        await service.close()
        await client.close()
    result = {
        "add_endpoint_p50_ms_at_scale": ms(percentile(adds, 50)),
        "create_network_p50_ms_at_scale": ms(percentile(creates, 50)),
    }
    progress(
        f"at scale, one caller: AddEndpoint p50 {result['add_endpoint_p50_ms_at_scale']} ms, "
        f"CreateNetwork p50 {result['create_network_p50_ms_at_scale']} ms"
    )
    return result


async def _run(server: EtcdServer, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"bench": "replay", "events": args.events}
    history = History(seed=args.seed, hosts=args.hosts)
    client = await connect(server)
    try:
        result |= await _write(client, history, args.events)
    finally:
        await client.close()
    result["mix"] = dict(sorted(history.mix.items()))
    progress(f"history: {history.networks} networks, {history.live_endpoints} live endpoints")
    progress(f"event mix: {result['mix']}")
    expected = history.expected(args.events)
    # An agent that starts holds none of the bench's bookkeeping: drop it, or every full
    # garbage collection during the timed reads would walk it too.
    del history

    # Rebuilds and raw reads alternate, so that a slow spell of the machine hits both.
    default = f"{LIBRARY_PAGE_SIZE}/{LIBRARY_PREFETCH}"
    rebuilds: dict[str, list[float]] = {f"{s}/{p}": [] for s, p in args.pages}
    raw_reads: list[float] = []
    rows = RawRows()
    for round_ in range(1, args.rounds + 1):
        # Each round starts with another setting, so that none is always the first one read.
        turn = (round_ - 1) % len(args.pages)
        for size, prefetch in args.pages[turn:] + args.pages[:turn]:
            gc.collect()
            seconds, snapshot = await _rebuild(server, size, prefetch)
            _check(snapshot, expected, "the rebuilt views")
            del snapshot
            rebuilds[f"{size}/{prefetch}"].append(seconds)
            progress(
                f"round {round_}: rebuild with page_size={size} prefetch={prefetch}: {seconds:.2f} s "
                f"({args.events / seconds:.0f} events/s)"
            )
        rows = RawRows()
        gc.collect()
        seconds, rows = await _raw_read(server, LIBRARY_PAGE_SIZE, LIBRARY_PREFETCH)
        if rows.seqs != list(range(1, args.events + 1)):
            raise RuntimeError(f"the raw read found {len(rows.seqs)} events, expected 1..{args.events}")
        raw_reads.append(seconds)
        progress(f"round {round_}: raw read with page_size={default}: {seconds:.2f} s")

    gc.collect()
    started = time.perf_counter()
    envelopes = [CODEC.decode(value) for value in rows.values]
    decode_s = time.perf_counter() - started
    progress(f"decode: {decode_s:.2f} s ({args.events / decode_s:.0f} events/s)")
    records = [
        Record(seq, rev, envelope)
        for seq, rev, envelope in zip(rows.seqs, rows.revisions, envelopes, strict=True)
    ]
    del rows, envelopes
    gc.collect()
    started = time.perf_counter()
    snapshot = fold(EMPTY, records)
    fold_s = time.perf_counter() - started
    progress(f"fold: {fold_s:.2f} s ({args.events / fold_s:.0f} events/s)")
    del records
    _check(snapshot, expected, "fold(EMPTY, records)")

    best = {name: min(times) for name, times in rebuilds.items()}
    rebuild_s, raw_read_s = best[default], min(raw_reads)
    result |= {
        "fold_events_per_s": round(args.events / fold_s),
        "rebuild_s": round(rebuild_s, 3),
        "rebuild_events_per_s": round(args.events / rebuild_s),
        "raw_read_s": round(raw_read_s, 3),
        "rebuild_vs_raw_read": ratio(rebuild_s, raw_read_s),
        "decode_events_per_s": round(args.events / decode_s),
        "fold_s": round(fold_s, 3),
        "decode_s": round(decode_s, 3),
        "page_size": LIBRARY_PAGE_SIZE,
        "prefetch": LIBRARY_PREFETCH,
        "rebuild_s_runs": [round(t, 3) for t in rebuilds[default]],
        "raw_read_s_runs": [round(t, 3) for t in raw_reads],
        "pages_sweep_s": {name: [round(t, 3) for t in times] for name, times in rebuilds.items()},
        "best_pages": min(best, key=lambda name: best[name]),
        "views": expected,
    }
    result |= await _snapshot_start(server, snapshot, expected, args.rounds)
    result["snapshot_vs_full_replay"] = ratio(result["snapshot_start_s"], rebuild_s)
    result |= await _execute_at_scale(server, snapshot, args.samples, hostname="host-000")
    result["target_rebuild_s_1m"] = TARGET_REBUILD_S_1M
    result["rebuild_s_per_1m_events"] = round(rebuild_s * 1_000_000 / args.events, 3)
    return result


def _main() -> dict[str, Any]:
    args = _parse_args()
    with bench_etcd() as server:
        result = asyncio.run(_run(server, args))
    result["machine"] = machine()
    return result


if __name__ == "__main__":
    run_main(_main)
