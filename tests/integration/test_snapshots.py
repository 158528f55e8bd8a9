"""Projection snapshots in a real etcd: stored, found, checked, and never trusted blindly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from structlog.testing import capture_logs

from sand_es.commands import AddEndpoint, CreateNetwork
from sand_es.config import EtcdSettings, parse_hosts
from sand_es.etcdlog import EtcdLog
from sand_es.projections import EMPTY, Snapshot
from sand_es.service import Service
from sand_es.snapshots import Meta, SnapshotStore, write_every
from sand_es.views import LiveViews
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.etcd


class Cluster:
    """One writer (log, views, service) on a prefix of its own."""

    def __init__(self, log: EtcdLog) -> None:
        self.log = log
        self.views = LiveViews()
        self.service = Service(log, self.views, actor="host-a")
        self.follower = asyncio.create_task(self.views.follow(log))
        self.ids: set[str] = set()

    async def grow(self, networks: int, endpoints_each: int = 2) -> None:
        for n in range(networks):
            outcome = await self.service.execute(CreateNetwork(ip_range=f"198.18.{len(self.ids) + n}.0/24"))
            network_id = outcome.snapshot.networks.networks.keys() - self.ids
            self.ids |= network_id
            for _ in range(endpoints_each):
                await self.service.execute(AddEndpoint(network_id=next(iter(network_id)), hostname="host-a"))

    async def close(self) -> None:
        self.follower.cancel()
        await asyncio.gather(self.follower, return_exceptions=True)
        await self.service.close()
        await self.log.close()


@pytest.fixture
async def cluster(etcd_server: EtcdServer, etcd_prefix: str) -> AsyncIterator[Cluster]:
    settings = EtcdSettings(hosts=parse_hosts(etcd_server.url), prefix=etcd_prefix)
    made = Cluster(await EtcdLog.connect(settings))
    await asyncio.wait_for(made.views.caught_up.wait(), timeout=10)
    yield made
    await made.close()


async def replayed(log: EtcdLog, start: Snapshot = EMPTY) -> Snapshot:
    views = LiveViews(start)
    return await views.catch_up(log)


async def test_a_stored_snapshot_loads_back_identical(cluster: Cluster) -> None:
    await cluster.grow(3)
    store = SnapshotStore(cluster.log)
    meta = await store.save(cluster.views.current)
    assert meta is not None
    loaded = await store.load_newest()
    assert loaded == cluster.views.current
    assert loaded is not None
    assert loaded.position == cluster.views.current.position  # digest included: appends can chain on


async def test_starting_from_a_snapshot_then_tailing_equals_a_full_replay(cluster: Cluster) -> None:
    await cluster.grow(2)
    store = SnapshotStore(cluster.log)
    await store.save(cluster.views.current)
    await cluster.grow(2)
    loaded = await store.load_newest()
    assert loaded is not None
    assert await replayed(cluster.log, loaded) == await replayed(cluster.log)


async def test_an_agent_started_from_a_snapshot_can_write(cluster: Cluster) -> None:
    """Its position carries the last digest, so its appends extend the chain."""
    await cluster.grow(1)
    store = SnapshotStore(cluster.log)
    await store.save(cluster.views.current)
    loaded = await store.load_newest()
    assert loaded is not None
    views = LiveViews(loaded)
    views.caught_up.set()
    service = Service(cluster.log, views, actor="host-b")
    try:
        outcome = await service.execute(CreateNetwork(ip_range="198.18.99.0/24"))
    finally:
        await service.close()
    assert outcome.records[0].envelope.prev == loaded.position.digest


async def test_a_big_snapshot_is_stored_in_parts(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sand_es.snapshots.PART_BYTES", 100)
    monkeypatch.setattr("sand_es.snapshots._PARTS_PER_READ", 2)
    await cluster.grow(3)
    meta = await SnapshotStore(cluster.log).save(cluster.views.current)
    assert meta is not None
    assert meta.parts > 3
    assert await SnapshotStore(cluster.log).load_newest() == cluster.views.current


@pytest.mark.parametrize("damage", ["part", "schema", "other-history", "meta"])
async def test_a_bad_snapshot_is_ignored_with_a_warning_and_the_older_one_used(
    cluster: Cluster, damage: str
) -> None:
    store = SnapshotStore(cluster.log, keep=5)
    await cluster.grow(1)
    older = cluster.views.current
    await store.save(older)
    await cluster.grow(1)
    newer = await store.save(cluster.views.current)
    assert newer is not None
    base = f"{cluster.log.prefix}/snapshots/{str(newer.seq).zfill(16)}/"
    kv = cluster.log.kv
    match damage:
        case "part":
            await kv.put(f"{base}part/000000", b"\x00garbage")
        case "schema":
            await kv.put(f"{base}meta", msgspec.json.encode(msgspec.structs.replace(newer, schema="v0-old")))
        case "other-history":
            await kv.put(f"{base}meta", msgspec.json.encode(msgspec.structs.replace(newer, digest="0" * 64)))
        case _:
            await kv.put(f"{base}meta", b"{not json")
    with capture_logs() as logs:
        loaded = await store.load_newest()
    assert loaded == older
    assert any(entry["event"].startswith("snapshot ignored") for entry in logs)


async def test_old_snapshots_are_pruned(cluster: Cluster) -> None:
    store = SnapshotStore(cluster.log, keep=2)
    for _ in range(4):
        await cluster.grow(1, endpoints_each=0)
        await store.save(cluster.views.current)
    metas = await store.metas()
    assert [m.seq for m in metas] == sorted((m.seq for m in metas), reverse=True)
    assert len(metas) == 2
    assert metas[0].seq == cluster.views.position.seq


async def test_agents_write_a_snapshot_every_n_events(cluster: Cluster) -> None:
    store = SnapshotStore(cluster.log)
    writer = asyncio.create_task(write_every(cluster.views, store, every=5))
    try:
        await cluster.grow(3)  # 9 events
        await asyncio.sleep(1)  # the writer stores in the background
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    [meta] = await store.metas()
    assert isinstance(meta, Meta)
    assert meta.seq >= 5
