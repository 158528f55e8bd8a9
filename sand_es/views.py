"""The agent's live views: the latest snapshot, kept current from the log.

Two things move it: the tail (every agent's appends, as etcd delivers them) and
this agent's own appends (folded as soon as they commit, so the writer can decide
its next batch without waiting for the watch). Both go through the pure `fold`,
which skips what it has already seen, so the two never double-apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterable, Iterator

import stamina
import structlog

from sand_es.errors import LogUnavailable
from sand_es.events import Position, Record
from sand_es.ports import EventLog
from sand_es.projections import EMPTY, Snapshot, SnapshotBuilder, fold

log = structlog.get_logger(__name__)


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk replay.

    A replay allocates millions of objects that all survive, and CPython's collector
    walks every tracked object at each full collection: on a million-event log that
    walking took as long as the fold itself. The views hold no reference cycles, so
    nothing is lost by collecting after the replay instead of during it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class LiveViews:
    """The current snapshot, with a way to wait for a position."""

    def __init__(self, snapshot: Snapshot = EMPTY) -> None:
        self._current = snapshot
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.caught_up = asyncio.Event()

    @property
    def current(self) -> Snapshot:
        """The latest snapshot (immutable: safe to hold while the views move on)."""
        return self._current

    @property
    def position(self) -> Position:
        """The position of the latest snapshot."""
        return self._current.position

    def advance(self, records: Iterable[Record]) -> Snapshot:
        """Fold records into the current snapshot and wake whoever waits for them."""
        self._publish(fold(self._current, records))
        return self._current

    async def wait_for(self, position: Position) -> Snapshot:
        """The first snapshot at or past `position` (read-your-writes on another agent).

        Bound it with `asyncio.timeout`: it waits for the tail as long as it takes.
        """
        if self._current.position.seq < position.seq:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((position.seq, waiter))
            await waiter
        return self._current

    async def catch_up(self, log_: EventLog) -> Snapshot:
        """Read everything after the current position and publish it as one snapshot.

        The pages are folded into a private builder, so nobody ever sees a snapshot
        that holds part of a transaction's events.
        """
        builder = SnapshotBuilder(self._current)
        with no_cyclic_gc():
            async for records in log_.read(self._current.position):
                builder.add(records)
            self._publish(builder.build())
        return self._current

    async def follow(self, log_: EventLog) -> None:
        """Catch up, then apply the tail until cancelled.

        An agent may start before etcd does (a host booting): the first catch-up is
        retried for as long as it takes, and writes stay refused meanwhile.
        """
        async for attempt in stamina.retry_context(
            on=LogUnavailable, attempts=None, timeout=None, wait_initial=0.2, wait_max=5.0, wait_jitter=0.1
        ):
            with attempt:
                await self.catch_up(log_)
        self.caught_up.set()
        log.info("views caught up", seq=self.position.seq, rev=self.position.rev)
        async for records in log_.tail(self.position):
            self.advance(records)

    def _publish(self, snapshot: Snapshot) -> None:
        # The log is linear: a snapshot further along holds everything an earlier one does.
        if snapshot.position.seq <= self._current.position.seq:
            return
        self._current = snapshot
        seq = snapshot.position.seq
        still: list[tuple[int, asyncio.Future[None]]] = []
        for wanted, waiter in self._waiters:
            if wanted <= seq:
                if not waiter.done():
                    waiter.set_result(None)
            elif not waiter.done():
                still.append((wanted, waiter))
        self._waiters = still
