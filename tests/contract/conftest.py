"""The adapters under contract: the in-memory log and the etcd log on a real etcd."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from sand_es.config import EtcdSettings, parse_hosts
from sand_es.etcdlog import EtcdLog, open_client
from sand_es.events import CODEC, Codec
from sand_es.memlog import MemoryLog
from sand_es.ports import EventLog
from tests.support.etcd_server import EtcdServer


@dataclass
class LogUnderTest:
    """A log adapter, and a way to slip raw bytes into it as the next event."""

    log: EventLog
    store_raw: Callable[[bytes], Awaitable[None]]


LogFactory = Callable[..., Awaitable[LogUnderTest]]


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def make_log(request: pytest.FixtureRequest) -> AsyncIterator[LogFactory]:
    """Builds logs of one adapter kind (`codec`, `page_size` as keywords); closes them after."""
    opened: list[EventLog] = []

    async def memory(*, codec: Codec = CODEC, page_size: int = 1000) -> LogUnderTest:
        log = MemoryLog(codec=codec, page_size=page_size)
        opened.append(log)

        async def store_raw(raw: bytes) -> None:
            log.store_raw(raw)

        return LogUnderTest(log, store_raw)

    async def etcd(*, codec: Codec = CODEC, page_size: int = 1000) -> LogUnderTest:
        server: EtcdServer = request.getfixturevalue("etcd_server")
        prefix: str = request.getfixturevalue("etcd_prefix")
        client = await open_client(EtcdSettings(hosts=parse_hosts(server.url)))
        log = EtcdLog(client, prefix=prefix, codec=codec, page_size=page_size, owns_client=True)
        opened.append(log)

        async def store_raw(raw: bytes) -> None:
            head = await log.head()
            seq = head.seq + 1
            await log.kv.put(f"{prefix}/events/{seq:016d}", raw)
            await log.kv.put(f"{prefix}/head", str(seq))

        return LogUnderTest(log, store_raw)

    yield memory if request.param == "memory" else etcd
    for log in opened:
        await log.close()
