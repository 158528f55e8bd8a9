"""What a migration is, what it works on, and where the record of its run is kept.

A migration has a number, a name and a description, and two coroutines on a `Context`:
`plan` (a dry run: what it would append, and the warnings) and `run`. The runner
(`migrations.runner`) records each run under the log's prefix,

    <prefix>/migrations/0001    {"name": …, "ran_at": …, "by": …, "summary": …}

and never runs a recorded migration again. A migration itself must be safe to re-run
after an interruption (see `migrations.chunked`): the record is written only once it
has finished, so a run cut short leaves no record and is simply run again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import grpc
import grpc.aio
import msgspec
from etcd3aio import EtcdError, prefix_range_end
from etcd3aio.kv import KVService

from migrations.sandkeys import DEFAULT_SAND_PREFIX
from sand_es.errors import LogUnavailable
from sand_es.events import Event
from sand_es.ports import EventLog

_PAGE: Final = 1000


class Fact(msgspec.Struct, frozen=True):
    """One event a migration appends, with when it happened and where it comes from."""

    event: Event
    at: datetime
    source: str = ""


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What a plan or a run did (or would do): one summary, a line per event, warnings."""

    summary: str
    lines: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


class MigrationRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The stored proof that a migration ran."""

    name: str
    ran_at: datetime
    by: str
    summary: str


class Keyspace(Protocol):
    """Raw access to the etcd keyspace, for what is not an event: sources and records."""

    async def range(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every key under `prefix` and its value, in key order, as of one revision."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The value of one key, or None."""
        ...

    async def create(self, key: str, value: bytes) -> bool:
        """Write a key that does not exist yet; False (nothing written) if it exists."""
        ...


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Context:
    """What a migration works on: the log, the raw keyspace, and who runs it.

    `sand_prefix` is where migrations reading a Go SAND keyspace find it.
    """

    log: EventLog
    keyspace: Keyspace
    prefix: str
    by: str
    sand_prefix: str = DEFAULT_SAND_PREFIX
    clock: Callable[[], datetime] = field(default=utc_now)


class Migration(Protocol):
    """A numbered, forward-only move of the keyspace."""

    @property
    def number(self) -> int:
        """Its place in the order; also its record's key (`0001`)."""
        ...

    @property
    def name(self) -> str:
        """A short slug (`import-sand`)."""
        ...

    @property
    def description(self) -> str:
        """One sentence for `sand-es migrate list`."""
        ...

    async def plan(self, context: Context) -> Report:
        """What `run` would do, appending nothing; raises `Rejected` if it would refuse."""
        ...

    async def run(self, context: Context) -> Report:
        """Do it (resuming an interrupted run); raises `Rejected` if it refuses."""
        ...


def record_key(prefix: str, number: int) -> str:
    """Where the record of migration `number` lives under the log's prefix."""
    return f"{prefix}/migrations/{number:04d}"


_record_decoder = msgspec.json.Decoder(MigrationRecord)


async def read_record(context: Context, number: int) -> MigrationRecord | None:
    """The record of a migration's run, or None if it has not run."""
    raw = await context.keyspace.get(record_key(context.prefix, number))
    return None if raw is None else _record_decoder.decode(raw)


async def write_record(context: Context, number: int, record: MigrationRecord) -> bool:
    """Store the record; False if one is there already (a concurrent run finished first)."""
    return await context.keyspace.create(record_key(context.prefix, number), msgspec.json.encode(record))


class EtcdKeyspace:
    """`Keyspace` on etcd3aio's KV service (the log's own client: `EtcdLog.kv`)."""

    def __init__(self, kv: KVService, *, timeout: float = 10.0) -> None:
        self._kv = kv
        self._timeout = timeout

    async def range(self, prefix: str) -> list[tuple[str, bytes]]:
        # Paged, every page pinned to the first one's revision: one consistent picture
        # even while other writers carry on.
        start, end = prefix.encode(), prefix_range_end(prefix.encode())
        revision, found = 0, []
        while True:
            response = await self._call(
                self._kv.get(start, range_end=end, revision=revision, limit=_PAGE, timeout=self._timeout)
            )
            revision = revision or response.header.revision
            found += [(kv.key.decode(), bytes(kv.value)) for kv in response.kvs]
            if not response.more:
                return found
            start = response.kvs[-1].key + b"\0"

    async def get(self, key: str) -> bytes | None:
        response = await self._call(self._kv.get(key, timeout=self._timeout))
        return bytes(response.kvs[0].value) if response.kvs else None

    async def create(self, key: str, value: bytes) -> bool:
        response = await self._call(
            self._kv.txn(
                [KVService.txn_compare_version(key, 0)],
                [KVService.txn_op_put(key, value)],
                timeout=self._timeout,
            )
        )
        return bool(response.succeeded)

    @staticmethod
    async def _call(call: Any) -> Any:
        try:
            return await call
        except (TimeoutError, EtcdError) as exc:
            raise LogUnavailable(f"etcd unreachable: {exc}") from exc
        except grpc.aio.AioRpcError as exc:
            code: grpc.StatusCode = exc.code()
            raise LogUnavailable(f"etcd failed: {code.name} {exc.details()}") from exc
