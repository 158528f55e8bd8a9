"""Migrations on a real etcd: the Go SAND fixture imported into a sand-es log, and `sand-es migrate`."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest

from migrations import MIGRATIONS
from migrations.base import Context, EtcdKeyspace, MigrationRecord, read_record
from migrations.m0001_import_sand import prepare
from migrations.runner import run, statuses
from sand_es.commands import AddEndpoint, CreateNetwork
from sand_es.config import EtcdSettings, parse_hosts
from sand_es.errors import Conflicting, Invalid, NotFound
from sand_es.etcdlog import EtcdLog
from sand_es.events import START, Record
from sand_es.ports import EventLog, TxnLimits
from sand_es.projections import EMPTY, Snapshot, fold
from sand_es.service import Service
from sand_es.views import LiveViews
from tests.support.etcd_server import EtcdServer
from tests.support.sand_fixture import LEAKED, fixture_kvs, fixture_records

pytestmark = pytest.mark.etcd

RAN_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
OPERATOR = "ops@bastion"
DEMO = LEAKED[0]


@pytest.fixture
async def context(etcd_server: EtcdServer, etcd_prefix: str) -> AsyncIterator[Context]:
    """An empty sand-es log, and the SAND fixture loaded under a SAND prefix of this test's own."""
    settings = EtcdSettings(hosts=parse_hosts(etcd_server.url), prefix=f"{etcd_prefix}/sand-es")
    log = await EtcdLog.connect(settings)
    sand_prefix = f"{etcd_prefix}/sc-net"
    await load_sand(log, sand_prefix)
    yield Context(
        log=log,
        keyspace=EtcdKeyspace(log.kv),
        prefix=settings.prefix,
        by=OPERATOR,
        sand_prefix=sand_prefix,
        clock=lambda: RAN_AT,
    )
    await log.close()


async def load_sand(log: EtcdLog, sand_prefix: str) -> None:
    for key, value in fixture_kvs(sand_prefix):
        await log.kv.put(key, value)


def etcd_of(context: Context) -> EtcdLog:
    """The context's log as the etcd log it is (for raw writes to the keyspace)."""
    assert isinstance(context.log, EtcdLog)
    return context.log


async def read_all(log: EventLog) -> list[Record]:
    return [record async for page in log.read(START) for record in page]


async def replay(log: EventLog) -> Snapshot:
    return fold(EMPTY, await read_all(log))


class TestImportKeepsEverything:
    """After the import, the views hold the fixture's networks and endpoints, key by key."""

    async def test_every_network_and_vni(self, context: Context) -> None:
        """Each `/network/<id>` is a network with its name, range, gateway, VNI and namespace path."""
        await run(context, MIGRATIONS)
        snapshot = await replay(context.log)
        sand = fixture_records("network")
        assert sand.keys() == snapshot.networks.networks.keys()
        for nid, record in sand.items():
            network = snapshot.networks.networks[nid]
            keys = ("name", "type", "ip_range", "gateway", "vxlan_vni", "ns_handle_path")
            assert [record[k] for k in keys] == [getattr(network, k) for k in keys]
            assert nid == snapshot.vnis.owners[record["vxlan_vni"]]

    async def test_every_endpoint_address_and_mac(self, context: Context) -> None:
        """Each endpoint keeps host, address, MAC, device names and state, and holds its address."""
        await run(context, MIGRATIONS)
        snapshot = await replay(context.log)
        for kind in ("network-endpoints", "node-endpoints"):
            sand = fixture_records(kind)
            assert sand.keys() == snapshot.endpoints.endpoints.keys()
            for eid, record in sand.items():
                endpoint = snapshot.endpoints.endpoints[eid]
                keys = ("network_id", "hostname", "host_ip", "target_veth_ip", "target_veth_mac", "active")
                assert [record[k] for k in keys] == [getattr(endpoint, k) for k in keys]
                assert record["target_netns_path"] == endpoint.target_netns_path
                for name in ("target_veth_name", "overlay_veth_name", "overlay_veth_mac"):
                    assert record[name] in ("", getattr(endpoint, name))
                pool = snapshot.addresses.pools[record["network_id"]]
                assert eid == pool.holder(int(ipaddress.IPv4Interface(record["target_veth_ip"]).ip))

    async def test_leaked_address_is_free_and_reported(self, context: Context) -> None:
        """The deleted endpoint's address is listed as a leak, and sand-es hands it out again."""
        [result] = await run(context, MIGRATIONS)
        assert any(LEAKED[1] in w and "leaked allocation not imported" in w for w in result.report.warnings)
        service = Service(context.log, LiveViews(), actor="hostA")
        try:
            outcome = await service.execute(AddEndpoint(network_id=DEMO, hostname="hostA"))
        finally:
            await service.close()
        assert f"{LEAKED[1]}/24" == outcome.records[0].envelope.data.target_veth_ip  # type: ignore[union-attr]


class TestOnlyOnce:
    """The record, the refusal of a non-empty log, and the dry run."""

    async def test_run_is_recorded_then_skipped(self, context: Context) -> None:
        """The run writes `<prefix>/migrations/0001`; a second run is skipped and appends nothing."""
        [first] = await run(context, MIGRATIONS)
        head = await context.log.head()
        [again] = await run(context, MIGRATIONS, number=1)
        record = await read_record(context, 1)
        expected = MigrationRecord(
            name="import-sand", ran_at=RAN_AT, by=OPERATOR, summary=first.report.summary
        )
        assert (expected, "ran", "skipped") == (record, first.state, again.state)
        assert (head, 7) == (await context.log.head(), head.seq)
        raw = await context.keyspace.get(f"{context.prefix}/migrations/0001")
        assert {"name", "ran_at", "by", "summary"} == set(json.loads(raw or b"{}"))

    async def test_dry_run_appends_and_records_nothing(self, context: Context) -> None:
        """A dry run lists the 7 events it would append and leaves the log and the records alone."""
        [result] = await run(context, MIGRATIONS, dry_run=True)
        assert ("planned", 7) == (result.state, len(result.report.lines))
        assert all(line.startswith("migration:0001:0 {") for line in result.report.lines)
        assert (START, None) == (await context.log.head(), await read_record(context, 1))

    async def test_non_empty_log_is_refused(self, context: Context) -> None:
        """A log already in use is refused whole: nothing appended, nothing recorded."""
        service = Service(context.log, LiveViews(), actor="hostA")
        try:
            await service.execute(CreateNetwork(ip_range="198.51.100.0/24"))
        finally:
            await service.close()
        head = await context.log.head()
        with pytest.raises(Conflicting, match="is not empty"):
            await run(context, MIGRATIONS)
        assert (head, None) == (await context.log.head(), await read_record(context, 1))

    async def test_broken_keyspace_is_refused(self, context: Context) -> None:
        """A second network on VNI 1 stops the import before anything is appended."""
        demo = fixture_records("network")[DEMO]
        twin = {**demo, "id": "33333333-3333-4333-8333-333333333333", "ip_range": "10.9.0.0/24"}
        twin["gateway"] = "10.9.0.1/24"
        await etcd_of(context).kv.put(f"{context.sand_prefix}/network/{twin['id']}", json.dumps(twin))
        with pytest.raises(Invalid, match="VNI 1 is used by networks"):
            await run(context, MIGRATIONS)
        assert START == await context.log.head()

    async def test_missing_sand_keyspace_is_refused(self, context: Context) -> None:
        """A SAND prefix with no network is refused rather than recorded as imported."""
        nowhere = dataclasses.replace(context, sand_prefix=f"{context.sand_prefix}-nope")
        with pytest.raises(NotFound, match="nothing to import"):
            await run(nowhere, MIGRATIONS)
        assert None is await read_record(context, 1)


class TestInterrupted:
    """An import cut between two appends resumes where it stopped."""

    async def test_resumes_without_duplicates(self, context: Context) -> None:
        """With the first chunk already appended, a run adds the others once; the views match a clean run."""
        context.log.limits = TxnLimits(max_ops=5)  # 3 events an append: 3 chunks for the fixture
        prepared = await prepare(context)
        await context.log.append(prepared.commands[:1], START)
        [result] = await run(context, MIGRATIONS)
        records = await read_all(context.log)
        expected_ids = [c.command_id for c in prepared.commands for _ in c.envelopes]
        assert (3, expected_ids) == (len(prepared.commands), [r.envelope.command_id for r in records])
        assert [e.data for c in prepared.commands for e in c.envelopes] == [r.envelope.data for r in records]
        assert "1 of them already done by an interrupted run" in result.report.summary

    async def test_changed_source_is_refused_on_resume(self, context: Context) -> None:
        """If SAND changed since the interrupted run, the chunk in the log differs: refused, nothing added."""
        context.log.limits = TxnLimits(max_ops=5)
        prepared = await prepare(context)
        await context.log.append(prepared.commands[:1], START)
        renamed = {**fixture_records("network")[DEMO], "name": "renamed"}
        await etcd_of(context).kv.put(f"{context.sand_prefix}/network/{DEMO}", json.dumps(renamed))
        head = await context.log.head()
        with pytest.raises(Conflicting, match="the source changed"):
            await run(context, MIGRATIONS)
        assert head == await context.log.head()


class TestStatuses:
    async def test_list_shows_ran_or_not(self, context: Context) -> None:
        """Before the run the import has no record; after it, its record."""
        [before] = await statuses(context, MIGRATIONS)
        await run(context, MIGRATIONS)
        [after] = await statuses(context, MIGRATIONS)
        assert (1, "import-sand", None) == (before.number, before.name, before.record)
        assert after.record is not None
        assert OPERATOR == after.record.by


def sand_es(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from sand_es.cli import main; main()", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestCli:
    """`sand-es migrate list|run` as an operator types it."""

    @pytest.fixture
    async def sand(self, etcd_server: EtcdServer, etcd_prefix: str) -> dict[str, str]:
        """The fixture loaded under this test's SAND prefix; the environment that reaches etcd."""
        log = await EtcdLog.connect(EtcdSettings(hosts=parse_hosts(etcd_server.url), prefix=etcd_prefix))
        try:
            await load_sand(log, f"{etcd_prefix}/sc-net")
        finally:
            await log.close()
        return {"ETCD_HOSTS": etcd_server.url, "ETCD_PREFIX": f"{etcd_prefix}/sand-es"}

    def test_dry_run_then_run_then_list(self, sand: dict[str, str], etcd_prefix: str) -> None:
        """Dry run prints 7 events and the leak; run imports; list and a second run show it ran."""
        where = ("--sand-prefix", f"{etcd_prefix}/sc-net")
        dry = sand_es("migrate", "run", "--dry-run", *where, env=sand)
        assert 0 == dry.returncode, dry.stderr
        assert 7 == sum(1 for line in dry.stdout.splitlines() if line.startswith("  migration:0001:0 "))
        assert f"warning: leaked allocation not imported: {LEAKED[1]}" in dry.stderr
        assert "not run" in sand_es("migrate", "list", env=sand).stdout

        ran = sand_es("migrate", "run", "1", *where, env=sand)
        assert 0 == ran.returncode, ran.stderr
        assert "0001 import-sand: imported 2 networks and 3 endpoints (2 active)" in ran.stdout

        listed = sand_es("migrate", "list", "--json", env=sand)
        [status] = msgspec.json.decode(listed.stdout)
        assert (1, "import-sand") == (status["number"], status["record"]["name"])
        again = sand_es("migrate", "run", *where, env=sand)
        assert 0 == again.returncode, again.stderr
        assert again.stdout.startswith("0001 import-sand: skipped: already ran")

    def test_refusal_exits_1_with_the_message(self, sand: dict[str, str], etcd_prefix: str) -> None:
        """A refused import (no SAND keyspace there) prints `error: …` and exits 1."""
        result = sand_es("migrate", "run", "--sand-prefix", f"{etcd_prefix}/elsewhere", env=sand)
        assert 1 == result.returncode
        assert result.stderr.startswith("error: no SAND network under")

    def test_options_override_the_environment(
        self, sand: dict[str, str], etcd_server: EtcdServer, etcd_prefix: str
    ) -> None:
        """`--etcd-hosts` and `--prefix` replace ETCD_HOSTS and ETCD_PREFIX."""
        options = ("--etcd-hosts", etcd_server.url, "--prefix", f"{etcd_prefix}/other")
        result = sand_es("migrate", "list", *options, env={"ETCD_HOSTS": "http://192.0.2.1:1"})
        assert 0 == result.returncode, result.stderr
        assert result.stdout.startswith("0001  import-sand  not run")
