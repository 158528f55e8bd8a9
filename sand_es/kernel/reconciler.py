"""The kernel projection's loop: views in, netlink out, one pass at a time.

A pass computes the desired state of the latest snapshot, plans against what the
kernel holds, applies the plan and records how far it got. What the kernel holds is
*observed* (dumped through netlink) on the first pass, on a timer, and after a
failure; in between it is *believed*: the last observation with the applied
operations folded in (`simulate`), so a pass triggered by an event costs no dump and
converges in milliseconds. The timer's full passes repair drift; what they find to
do is counted as repairs (it should stay 0).

Nothing is planned, hence nothing deleted, before the views have replayed the whole
history: an agent that is still catching up would see most of its devices as unwanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import msgspec
import structlog

from sand_es.events.records import Position
from sand_es.kernel.apply import Report, apply
from sand_es.kernel.desired import desired
from sand_es.kernel.model import HostConfig, HostState
from sand_es.kernel.netlink import Netlink
from sand_es.kernel.observe import observe
from sand_es.kernel.plan import plan, simulate
from sand_es.views import LiveViews

log = structlog.get_logger(__name__)

Deactivate = Callable[[str, str], Awaitable[None]]
"""Mark a local endpoint inactive through the log: (endpoint id, reason)."""

PassKind = Literal["boot", "event", "resync", "retry"]
_RETRY_INITIAL: Final = 0.5


class KernelStats(msgspec.Struct, kw_only=True):
    """Counters of the kernel projection, for `/health` and the logs (`applied_seq` -1: no pass yet)."""

    applied_seq: int = -1
    passes: int = 0
    full_passes: int = 0
    ops: int = 0
    repairs: int = 0
    failures: int = 0
    deactivated: int = 0
    last_pass_ms: float = 0.0


class Reconciler:
    """Keeps this host's kernel state converged on the views."""

    def __init__(
        self,
        views: LiveViews,
        config: HostConfig,
        *,
        deactivate: Deactivate,
        resync_interval: float = 30.0,
        netlink: Netlink | None = None,
    ) -> None:
        self._views = views
        self._config = config
        self._deactivate = deactivate
        self._resync_interval = resync_interval
        self._netlink = netlink or Netlink(config)
        self._believed: HostState | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._retry_delay = 0.0
        self.stats = KernelStats()

    async def run(self) -> None:
        """Pass after pass until cancelled: on each new position, on the timer, and to retry failures."""
        await self._views.caught_up.wait()
        kind: PassKind = "boot"
        try:
            while True:
                try:
                    await self.reconcile(kind)
                except Exception as exc:  # the agent keeps serving; the kernel is retried
                    log.error("kernel pass failed", kind=kind, error=repr(exc))
                    self.stats.failures += 1
                    self._believed = None
                    self._retry_delay = self._next_retry_delay()
                kind = await self._next_trigger()
        finally:
            self._netlink.close()

    async def wait_applied(self, position: Position) -> None:
        """Return once a pass has covered `position` (bound it with `asyncio.timeout`)."""
        if self.stats.applied_seq >= position.seq:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((position.seq, waiter))
        await waiter

    async def reconcile(self, kind: PassKind) -> Report:
        """One pass over the latest snapshot."""
        started = time.perf_counter()
        snapshot = self._views.current
        wanted = desired(snapshot, self._config)
        full = kind != "event" or self._believed is None
        before = await observe(self._netlink, self._config, wanted) if full else self._believed
        assert before is not None
        ops = plan(wanted, before)
        report = await apply(self._netlink, ops)
        self._believed = simulate(before, report.done)
        for gone in report.vanished:
            reason = f"target namespace {gone.target_netns} no longer exists"
            await self._mark_inactive(gone.endpoint_id, reason)
        if report.failed and not report.vanished:
            self._believed = None  # observe again: what failed half-way is unknown
            self._retry_delay = self._next_retry_delay()
        else:
            self._retry_delay = 0.0
        self._count(kind, full, seq=snapshot.position.seq, ops_count=len(ops), report=report, started=started)
        self._publish(snapshot.position.seq)
        return report

    def _next_retry_delay(self) -> float:
        return min(max(self._retry_delay * 2, _RETRY_INITIAL), self._resync_interval)

    async def _next_trigger(self) -> PassKind:
        """Wait for a new position, the retry delay or the resync timer, whichever comes first."""
        delay = self._retry_delay or self._resync_interval
        next_seq = Position(seq=self.stats.applied_seq + 1, rev=0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._views.wait_for(next_seq)
                return "event"
        return "retry" if self._retry_delay else "resync"

    async def _mark_inactive(self, endpoint_id: str, reason: str) -> None:
        try:
            await self._deactivate(endpoint_id, reason)
        except Exception as exc:  # the next pass meets the same veth and tries again
            log.warning("could not mark endpoint inactive", endpoint_id=endpoint_id, error=repr(exc))
            return
        self.stats.deactivated += 1
        log.info("endpoint marked inactive", endpoint_id=endpoint_id, reason=reason)

    def _count(
        self, kind: PassKind, full: bool, *, seq: int, ops_count: int, report: Report, started: float
    ) -> None:
        stats = self.stats
        stats.passes += 1
        stats.ops += len(report.done)
        stats.failures += len(report.failed)
        stats.last_pass_ms = round((time.perf_counter() - started) * 1000, 2)
        repairs = ops_count if kind == "resync" else 0
        stats.repairs += repairs
        if full:
            stats.full_passes += 1
        for failure in report.failed:
            log.warning("kernel operation failed", op=repr(failure.op), reason=failure.reason)
        log.info(
            "kernel pass",
            kind=kind,
            seq=seq,  # the position this pass planned from
            observed=full,
            ops=ops_count,
            done=len(report.done),
            failed=len(report.failed),
            repairs=repairs,
            ms=stats.last_pass_ms,
        )

    def _publish(self, seq: int) -> None:
        self.stats.applied_seq = max(self.stats.applied_seq, seq)
        still: list[tuple[int, asyncio.Future[None]]] = []
        for wanted, waiter in self._waiters:
            if wanted <= self.stats.applied_seq:
                if not waiter.done():
                    waiter.set_result(None)
            elif not waiter.done():
                still.append((wanted, waiter))
        self._waiters = still
