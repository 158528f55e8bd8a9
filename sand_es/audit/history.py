"""The audit tool's I/O: reading the log's past from etcd (or any `EventLog`), writing an import.

`EtcdHistory` reads what the pure modules judge: the head with the store revision it
was read at, events (decoded or as stored bytes) up to a given seq, the command keys,
and finds the last event at or before a revision by binary search on point reads
(seq and revision grow together, so ~20 reads find it in a million events).
`LogHistory` offers the reading part over any `EventLog` by scanning (the in-memory log
of the tests).

`snapshot_at` and `snapshots_at` fold the log up to points of its past.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import grpc
import grpc.aio
import msgspec
from etcd3aio import EtcdError, prefix_range_end
from etcd3aio.kv import KVService

from sand_es.audit.dump import DERIVED, LOG_PARTS, Batch, Keys, is_other_key
from sand_es.audit.verify import Head
from sand_es.audit.when import AtRevision, Point
from sand_es.errors import Conflicting, LogCorrupt, LogUnavailable, OutcomeUnknown
from sand_es.etcdlog import EtcdLog, RawEvent
from sand_es.events import START, Position, Record
from sand_es.events.chain import parse_head
from sand_es.ports import EventLog
from sand_es.projections import EMPTY, Snapshot, SnapshotBuilder

_COMMAND_PAGE = 1000


class PinnedHead(msgspec.Struct, frozen=True, kw_only=True):
    """The head as read at store revision `revision` (`head` None: an empty log)."""

    revision: int
    head: Head | None
    raw: bytes | None

    @property
    def position(self) -> Position:
        """The position of the last event (START for an empty log)."""
        if self.head is None:
            return START
        return Position(self.head.seq, self.head.revision, self.head.digest)


class CorruptHead(LogCorrupt):
    """The head key holds something that is not `<seq> <digest>`."""

    def __init__(self, message: str, *, revision: int) -> None:
        super().__init__(message)
        self.revision = revision


class History(Protocol):
    """What the HTTP routes read the past through."""

    async def pinned_head(self) -> PinnedHead:
        """The head and the store's revision."""
        ...

    async def position_at(self, revision: int, head: Position) -> Position:
        """The last event written at `revision` or before (START if none)."""
        ...

    def records(self, after: Position, last_seq: int) -> AsyncIterator[list[Record]]:
        """The records after `after` up to `last_seq` included, in pages."""
        ...


async def _rpc(call: Awaitable[Any]) -> Any:
    """A read's answer; etcd's failures as `LogUnavailable` (the audit tool does not retry)."""
    try:
        return await call
    except (TimeoutError, EtcdError) as exc:
        raise LogUnavailable(f"etcd unreachable: {exc}") from exc
    except grpc.aio.AioRpcError as exc:
        raise LogUnavailable(f"etcd read failed: {exc.code().name} {exc.details()}") from exc


async def _truncated(pages: AsyncIterator[list[Any]], last_seq: int) -> AsyncIterator[list[Any]]:
    """Pages cut at `last_seq` (the reader's head may be further: stop there)."""
    async with contextlib.aclosing(pages):  # type: ignore[type-var]
        async for page in pages:
            if page[-1].seq <= last_seq:
                yield page
                continue
            kept = [item for item in page if item.seq <= last_seq]
            if kept:
                yield kept
            return


class EtcdHistory:
    """The log of one prefix in etcd, for the audit tool."""

    def __init__(self, log: EtcdLog, *, timeout: float = 10.0) -> None:
        self.log = log
        self.keys = Keys(log.prefix)
        self._timeout = timeout

    async def pinned_head(self) -> PinnedHead:
        """Read the head; `LogCorrupt` if it holds something that is not a head."""
        response = await _rpc(self.log.kv.get(self.keys.head, timeout=self._timeout))
        revision = response.header.revision
        if not response.kvs:
            return PinnedHead(revision=revision, head=None, raw=None)
        kv = response.kvs[0]
        try:
            seq, digest = parse_head(kv.value)
        except (ValueError, UnicodeDecodeError):
            raise CorruptHead(
                f"the head key (revision {kv.mod_revision}) holds {bytes(kv.value)[:60]!r}, "
                "not '<seq> <digest>'",
                revision=int(kv.mod_revision),
            ) from None
        return PinnedHead(
            revision=revision, head=Head(seq=seq, digest=digest, revision=kv.mod_revision), raw=kv.value
        )

    async def event_revision(self, seq: int) -> int | None:
        """The revision that wrote event `seq`, None if it is not stored."""
        response = await _rpc(self.log.kv.get(self.keys.event(seq), keys_only=True, timeout=self._timeout))
        return int(response.kvs[0].mod_revision) if response.kvs else None

    async def position_at(self, revision: int, head: Position) -> Position:
        """The last event written at `revision` or before, by binary search on seq."""
        if revision >= head.rev:
            return head
        low, low_rev, high = 0, 0, head.seq  # rev(low) <= revision < rev(high)
        while high - low > 1:
            middle = (low + high) // 2
            found = await self.event_revision(middle)
            if found is None:
                raise LogCorrupt(f"event {middle} is missing (run `sand-es audit verify`)")
            if found <= revision:
                low, low_rev = middle, found
            else:
                high = middle
        return Position(low, low_rev)

    def records(self, after: Position, last_seq: int) -> AsyncIterator[list[Record]]:
        """Decoded records after `after`, up to `last_seq`."""
        return _truncated(self.log.read(after), last_seq)

    def raw(self, after: Position, last_seq: int) -> AsyncIterator[list[RawEvent]]:
        """Stored events after `after`, up to `last_seq`, as their exact bytes."""
        return _truncated(self.log.read_raw(after), last_seq)

    async def commands(self, revision: int = 0) -> AsyncIterator[list[tuple[str, bytes]]]:
        """Every command key (id, stored value) as of `revision` (0: now), in pages."""
        start, end = self.keys.commands, prefix_range_end(self.keys.commands)
        while True:
            response = await _rpc(
                self.log.kv.get(
                    start, range_end=end, revision=revision, limit=_COMMAND_PAGE, timeout=self._timeout
                )
            )
            kvs = response.kvs
            if not kvs:
                return
            yield [(bytes(kv.key[len(self.keys.commands) :]).decode(), bytes(kv.value)) for kv in kvs]
            if not response.more:
                return
            start = bytes(kvs[-1].key) + b"\0"

    async def other_keys(self) -> AsyncIterator[tuple[str, bytes]]:
        """Every key under the prefix that is not part of the log or derived (`dump.is_other_key`).

        Walks the prefix in key order and jumps over each big subtree (events,
        commands, snapshots) as soon as it meets it, so it never reads the log itself.
        """
        root = self.keys.root
        start, end = root, prefix_range_end(root)
        subtrees = tuple(part for part in LOG_PARTS + DERIVED if part.endswith("/"))
        while True:
            response = await _rpc(self.log.kv.get(start, range_end=end, limit=100, timeout=self._timeout))
            if not response.kvs:
                return
            for kv in response.kvs:
                relative = bytes(kv.key[len(root) :]).decode(errors="replace")
                subtree = next((part for part in subtrees if relative.startswith(part)), None)
                if subtree is not None:
                    start = prefix_range_end(root + subtree.encode())
                    break
                if is_other_key(relative):
                    yield relative, bytes(kv.value)
                start = bytes(kv.key) + b"\0"
            else:
                if not response.more:
                    return

    async def first_event_after(self, seq: int, revision: int) -> tuple[str, int] | None:
        """The first key under `events/` beyond event `seq` as of `revision` (key, mod_revision), if any."""
        response = await _rpc(
            self.log.kv.get(
                self.keys.event(seq + 1),
                range_end=prefix_range_end(self.keys.events),
                revision=revision,
                limit=1,
                keys_only=True,
                timeout=self._timeout,
            )
        )
        if not response.kvs:
            return None
        kv = response.kvs[0]
        return bytes(kv.key).decode(errors="replace"), int(kv.mod_revision)

    async def key_count(self) -> int:
        """How many keys the prefix holds (events, commands, head, snapshots: anything)."""
        response = await _rpc(
            self.log.kv.get(
                self.keys.root,
                range_end=prefix_range_end(self.keys.root),
                count_only=True,
                timeout=self._timeout,
            )
        )
        return int(response.count)

    async def write(self, batch: Batch) -> int:
        """One import transaction; returns its revision.

        The first compares the whole prefix with "empty", every later one the head with
        "absent" (an agent's append always writes the head): an import never mixes with
        another writer. Sent once: a retry of a transaction that did land would fail its
        compare and look like a foreign write.
        """
        keys = self.keys
        if batch.first:
            compare = [KVService.txn_compare_version(keys.root, 0, range_end=prefix_range_end(keys.root))]
        else:
            compare = [KVService.txn_compare_version(keys.head, 0)]
        success = [KVService.txn_op_put(key, value) for key, value in batch.puts]
        try:
            response = await self.log.kv.txn(compare, success, [], timeout=self._timeout, max_attempts=1)
        except (TimeoutError, EtcdError, grpc.aio.AioRpcError) as exc:
            raise OutcomeUnknown(f"an import transaction may or may not have landed: {exc}") from exc
        if not response.succeeded:
            raise Conflicting(
                f"someone else wrote under {keys.prefix}/ during the import"
                if not batch.first
                else f"{keys.prefix}/ is not empty"
            )
        return int(response.header.revision)

    async def write_all(
        self,
        batches: Iterable[Batch],
        *,
        in_flight: int = 4,
        on_written: Callable[[Batch], None] | None = None,
    ) -> int:
        """Every import transaction; returns how many.

        The first runs alone (it is the one that checks the prefix is empty: nothing may
        be written before it succeeds), the middle ones `in_flight` at a time (etcd
        commits them in parallel; their order does not matter, each checks that no head
        appeared), and the last (the head) alone once every other one has landed.
        """
        running: set[asyncio.Task[Batch]] = set()
        written = 0

        async def one(batch: Batch) -> Batch:
            await self.write(batch)
            return batch

        async def settle(at_most: int) -> None:
            nonlocal written
            while len(running) > at_most:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.discard(task)
                    batch = task.result()  # the first failure ends the import
                    written += 1
                    if on_written is not None:
                        on_written(batch)

        try:
            for batch in batches:
                if batch.first or batch.last:
                    await settle(0)
                    running.add(asyncio.ensure_future(one(batch)))
                    await settle(0)
                else:
                    await settle(in_flight - 1)
                    running.add(asyncio.ensure_future(one(batch)))
            await settle(0)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        return written


class LogHistory:
    """The reading part of `EtcdHistory` over any `EventLog`, by scanning it from the start."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    async def pinned_head(self) -> PinnedHead:
        position = await self.log.head()
        if position.seq == 0:
            return PinnedHead(revision=position.rev, head=None, raw=None)
        head = Head(seq=position.seq, digest=position.digest, revision=position.rev)
        return PinnedHead(revision=position.rev, head=head, raw=None)

    async def position_at(self, revision: int, head: Position) -> Position:
        if revision >= head.rev:
            return head
        found = START
        async with contextlib.aclosing(self.log.read(START)) as pages:  # type: ignore[type-var]
            async for page in pages:
                for record in page:
                    if record.rev > revision:
                        return found
                    found = record.position
        return found

    def records(self, after: Position, last_seq: int) -> AsyncIterator[list[Record]]:
        return _truncated(self.log.read(after), last_seq)


def history_of(log: EventLog) -> EtcdHistory | LogHistory:
    """The fastest reader of the past `log` allows."""
    return EtcdHistory(log) if isinstance(log, EtcdLog) else LogHistory(log)


def _first_past(point: Point, page: Sequence[Record], start: int) -> int:
    """The index of the first record of `page[start:]` past `point` (len(page) if none)."""
    if isinstance(point, AtRevision):
        if page[-1].rev <= point.revision:  # revisions only grow: the whole page is in
            return len(page)
        return next((n for n in range(start, len(page)) if page[n].rev > point.revision), len(page))
    # Stamps are the agents' clocks and may step back: look at every record.
    return next((n for n in range(start, len(page)) if page[n].envelope.at > point.time), len(page))


async def snapshots_at(
    pages: AsyncIterator[list[Record]],
    points: Sequence[Point],
    *,
    on_page: Callable[[int], None] | None = None,
) -> list[Snapshot]:
    """The state at each point, folding the log once: every event before the first one past it.

    A time is a cut in log order, not a filter: the first event stamped after it ends
    the state, so the result is always a state the agents really went through.
    """
    builder = SnapshotBuilder(EMPTY)
    found: dict[int, Snapshot] = {}
    async with contextlib.aclosing(pages):  # type: ignore[type-var]
        async for page in pages:
            start = 0
            while start < len(page) and len(found) < len(points):
                cuts = {i: _first_past(points[i], page, start) for i in range(len(points)) if i not in found}
                cut = min(cuts.values())
                builder.add(page[start:cut])
                if cut == len(page):
                    break
                reached = builder.build()
                found.update((i, reached) for i, at in cuts.items() if at == cut)
                start = cut
            if on_page is not None:
                on_page(len(page))
            if len(found) == len(points):
                break
    final = builder.build()
    return [found.get(i, final) for i in range(len(points))]


async def snapshot_at(history: History, revision: int, *, base: Snapshot = EMPTY) -> Snapshot:
    """The state as of `revision`, folded from `base` (which must be at or before it)."""
    pinned = await history.pinned_head()
    target = await history.position_at(revision, pinned.position)
    if base.position.seq > target.seq:
        base = EMPTY
    if base.position.seq == target.seq:
        return base
    builder = SnapshotBuilder(base)
    async for page in history.records(base.position, target.seq):
        builder.add(page)
    return builder.build()
