"""The etcd log under faults: restarts, compaction, lost replies, names, TLS.

Each workaround for an etcd3aio defect (notes/etcd-client.md §0) has a test here
that fails without it; where the defect itself is cheap to show, a canary test
shows that the scenario really triggers it in the pinned library.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from etcd3aio import Etcd3Client, prefix_range_end

from sand_es.commands import CreateNetwork
from sand_es.config import EtcdSettings, parse_hosts
from sand_es.errors import LogUnavailable, OutcomeUnknown
from sand_es.etcdlog import EtcdLog
from sand_es.events import CODEC, START, NetworkCreated, Position, Record
from sand_es.ports import PendingCommand
from sand_es.service import Service
from sand_es.views import LiveViews
from tests.support.etcd_server import EtcdServer, TlsFiles
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.etcd

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PREFIX = "/sand-es"


def network_command(n: int) -> PendingCommand:
    event = NetworkCreated(
        network_id=f"net-{n}", name=f"n{n}", ip_range="198.18.0.0/24", gateway="198.18.0.1/24", vxlan_vni=n
    )
    envelope = CODEC.envelope(event, event_id=f"e{n}", at=AT, actor="host-a", command_id=f"c{n}")
    return PendingCommand(f"c{n}", (envelope,))


async def connect(url: str, **settings: object) -> EtcdLog:
    return await EtcdLog.connect(EtcdSettings(hosts=parse_hosts(url), prefix=PREFIX, **settings))  # type: ignore[arg-type]


async def fill(log: EtcdLog, count: int, *, per_append: int = 60) -> Position:
    """Append `count` one-event commands, `per_append` per transaction."""
    position = START
    for first in range(1, count + 1, per_append):
        batch = [network_command(n) for n in range(first, min(first + per_append, count + 1))]
        position = (await log.append(batch, expected=position))[-1].position
    return position


async def collect(
    tail: AsyncIterator[list[Record]], count: int, on_batch: Callable[[int], None]
) -> list[int]:
    seqs: list[int] = []
    async for batch in tail:
        seqs.extend(r.seq for r in batch)
        on_batch(len(seqs))
        if len(seqs) >= count:
            break
    return seqs


@pytest.fixture
async def fresh_log(fresh_etcd: EtcdServer) -> AsyncIterator[EtcdLog]:
    log = await connect(fresh_etcd.url)
    yield log
    await log.close()


class TestTailAcrossRestarts:
    async def test_etcd_killed_during_catch_up(self, fresh_etcd: EtcdServer, fresh_log: EtcdLog) -> None:
        """A tail far behind loses nothing and repeats nothing when etcd dies mid catch-up."""
        await fill(fresh_log, 5000)
        reader = EtcdLog(fresh_log._client, prefix=PREFIX, page_size=250, prefetch=1)
        killed = False

        def kill_once(seen: int) -> None:
            nonlocal killed
            if not killed:
                killed = True
                fresh_etcd.kill()
                fresh_etcd.restart()

        seqs = await asyncio.wait_for(collect(reader.tail(START), 5000, kill_once), timeout=60)
        assert list(range(1, 5001)) == seqs

    async def test_etcd_killed_during_a_live_tail(self, fresh_etcd: EtcdServer, fresh_log: EtcdLog) -> None:
        """Appends made before and after an etcd restart all reach a live tail, once each."""
        position = await fill(fresh_log, 10)
        tail = asyncio.create_task(collect(fresh_log.tail(START), 20, lambda _: None))
        await asyncio.sleep(0.3)
        fresh_etcd.kill()
        fresh_etcd.restart()
        writer = await connect(fresh_etcd.url)
        await writer.head()  # reads retry while gRPC reconnects; an append is sent once
        for n in range(11, 21):
            position = (await writer.append([network_command(n)], expected=position))[-1].position
        await writer.close()
        assert list(range(1, 21)) == await asyncio.wait_for(tail, timeout=30)

    async def test_library_watch_resumes_from_the_store_head(self, fresh_etcd: EtcdServer) -> None:
        """Canary: etcd3aio's own reconnect during a catch-up skips events (why the tail pages)."""
        client = Etcd3Client([fresh_etcd.endpoint])
        await client.connect()
        assert client.kv is not None
        assert client.watch is not None
        kv = client.kv
        for first in range(0, 3000, 100):  # one revision per key, as a real history has
            await asyncio.gather(*[kv.put(f"/k/{first + i:05d}", b"x") for i in range(100)])
        seen = 0
        stream = client.watch.watch("/k/", range_end=prefix_range_end("/k/"), start_revision=1)

        async def watch() -> None:
            nonlocal seen
            async for response in stream:
                if seen and not response.events:
                    continue
                if seen == 0 and response.events:
                    fresh_etcd.kill()
                    fresh_etcd.restart()
                seen += len(response.events)
                if seen >= 3000:
                    return

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(watch(), timeout=4)
        assert seen < 3000
        await client.close()


class TestCompaction:
    async def test_consumer_stopped_across_compaction_catches_up(self, fresh_etcd: EtcdServer) -> None:
        """A consumer stopped while the history is compacted resumes with every event, once."""
        log = await connect(fresh_etcd.url)
        stopped_at = await fill(log, 50, per_append=5)
        await fill_more(log, stopped_at, 51, 120)
        fresh_etcd.compact(fresh_etcd.head_revision())
        seqs = await asyncio.wait_for(collect(log.tail(stopped_at), 70, lambda _: None), timeout=20)
        assert list(range(51, 121)) == seqs
        await log.close()

    async def test_library_watch_from_compacted_revision_hangs(self, fresh_etcd: EtcdServer) -> None:
        """Canary: etcd3aio reports compaction as a cancelled response, then goes silent."""
        log = await connect(fresh_etcd.url)
        stopped_at = await fill(log, 20, per_append=5)
        await fill_more(log, stopped_at, 21, 40)
        fresh_etcd.compact(fresh_etcd.head_revision())
        watch = log._client.watch
        assert watch is not None
        responses = []

        async def naive() -> None:
            async for response in watch.watch(
                f"{PREFIX}/events/",
                range_end=prefix_range_end(f"{PREFIX}/events/"),
                start_revision=stopped_at.rev + 1,
            ):
                responses.append(response)

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(naive(), timeout=2)
        assert any(r.canceled and r.compact_revision for r in responses)
        assert not any(r.events for r in responses)
        await log.close()


async def fill_more(log: EtcdLog, position: Position, first: int, last: int) -> Position:
    for n in range(first, last + 1):
        position = (await log.append([network_command(n)], expected=position))[-1].position
    return position


class TestUnknownOutcome:
    async def test_lost_reply_is_reported_as_unknown_not_as_failure(self, fresh_etcd: EtcdServer) -> None:
        """An append whose reply is lost raises OutcomeUnknown, though etcd committed it."""
        async with TcpProxy("127.0.0.1", fresh_etcd.client_port) as proxy:
            log = await connect(f"http://{proxy.endpoint}", append_timeout=1.0)
            await log.head()
            proxy.swallow_replies()
            with pytest.raises(OutcomeUnknown):
                await log.append([network_command(1)], expected=START)
            await log.close()
        direct = await connect(fresh_etcd.url)
        found = await direct.lookup_command("c1")
        assert [1] == [r.seq for r in (found.records if found else ())]
        await direct.close()

    async def test_service_resolves_a_lost_reply_by_reading_back(self, fresh_etcd: EtcdServer) -> None:
        """The service acknowledges a command whose reply was lost, and it is in the log once."""
        async with TcpProxy("127.0.0.1", fresh_etcd.client_port) as proxy:
            log = await connect(f"http://{proxy.endpoint}", append_timeout=1.0)
            views = LiveViews()
            await views.catch_up(log)
            service = Service(log, views, actor="host-a")
            proxy.swallow_replies()
            restore = asyncio.get_running_loop().call_later(1.5, proxy.restore)
            outcome = await asyncio.wait_for(service.execute(CreateNetwork(name="lost-reply")), timeout=30)
            restore.cancel()
            await service.close()
            await log.close()
        direct = await connect(fresh_etcd.url)
        records = [r async for page in direct.read(START) for r in page]
        assert [outcome.command_id] == [r.envelope.command_id for r in records]
        assert len(records) == 1
        await direct.close()

    async def test_paused_etcd_makes_an_append_unknown_within_its_deadline(
        self, fresh_etcd: EtcdServer
    ) -> None:
        """With etcd frozen, an append gives up at its deadline instead of hanging."""
        log = await connect(fresh_etcd.url, append_timeout=0.5)
        await log.head()
        fresh_etcd.pause()
        try:
            with pytest.raises(OutcomeUnknown):
                await asyncio.wait_for(log.append([network_command(1)], expected=START), timeout=5)
        finally:
            fresh_etcd.resume()
        await log.close()


class TestEndpoints:
    async def test_host_names_and_schemes_in_etcd_hosts_work(self, etcd_server: EtcdServer) -> None:
        """ETCD_HOSTS entries with a scheme and a host name reach etcd (resolved here)."""
        # glibc matches /etc/hosts names case-insensitively; etcd3aio only rewrites "localhost".
        url = f"http://LocalHost:{etcd_server.client_port}"
        log = await EtcdLog.connect(EtcdSettings(hosts=parse_hosts(url), prefix="/names-test"))
        assert await log.head() >= START
        await log.close()

    async def test_library_refuses_host_names(self, etcd_server: EtcdServer) -> None:
        """Canary: etcd3aio alone cannot dial a host name or a URL."""
        for endpoint in (
            f"LocalHost:{etcd_server.client_port}",
            f"http://127.0.0.1:{etcd_server.client_port}",
        ):
            client = Etcd3Client([endpoint])
            await client.connect()
            assert client.kv is not None
            with pytest.raises(Exception, match=r"target uri is not valid|Failed to create channel"):
                await client.kv.get("/x", timeout=2, max_attempts=1)
            await client.close()

    async def test_a_dead_endpoint_in_the_list_is_skipped(self, etcd_server: EtcdServer) -> None:
        """With one dead member listed first, reads and appends still go through."""
        dead = EtcdServer()
        dead.start()
        dead_port = dead.client_port
        dead.close()
        hosts = f"http://127.0.0.1:{dead_port},http://127.0.0.1:{etcd_server.client_port}"
        log = await EtcdLog.connect(EtcdSettings(hosts=parse_hosts(hosts), prefix="/dead-test"))
        for _ in range(5):
            await log.head()
        await log.close()


class TestTls:
    def settings(
        self, server: EtcdServer, tls: TlsFiles, *, cert: bool = True, foreign: bool = False
    ) -> EtcdSettings:
        env = {
            "ETCD_HOSTS": f"https://localhost:{server.client_port}",
            "ETCD_PREFIX": "/tls-test",
            "ETCD_CACERT": str(tls.ca_cert),
            "ETCD_READ_TIMEOUT": "1",  # a refused handshake looks like an outage: don't wait long
        }
        if cert:
            env["ETCD_TLS_CERT"] = str(tls.foreign_client_cert if foreign else tls.client_cert)
            env["ETCD_TLS_KEY"] = str(tls.foreign_client_key if foreign else tls.client_key)
        return EtcdSettings.from_env(env)

    async def test_mutual_tls_appends_and_reads(self, tls_etcd: EtcdServer, tls_files: TlsFiles) -> None:
        """With the CA and a client certificate from ETCD_* files, the log works over mTLS."""
        log = await EtcdLog.connect(self.settings(tls_etcd, tls_files))
        appended = await log.append([network_command(1)], expected=START)
        assert appended == [r async for page in log.read(START) for r in page]
        await log.close()

    @pytest.mark.parametrize(
        ("cert", "foreign"), [(False, False), (True, True)], ids=["no-cert", "foreign-ca"]
    )
    async def test_without_a_trusted_client_certificate_etcd_is_unavailable(
        self, tls_etcd: EtcdServer, tls_files: TlsFiles, cert: bool, foreign: bool
    ) -> None:
        """No client certificate, or one from another CA, is refused as LogUnavailable."""
        log = await EtcdLog.connect(self.settings(tls_etcd, tls_files, cert=cert, foreign=foreign))
        with pytest.raises(LogUnavailable):
            await log.head()
        await log.close()
