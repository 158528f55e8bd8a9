"""The application service: decide on the latest snapshot, append, retry on conflict.

Commands are queued to one writer task per agent, which commits them in groups:
it decides every queued command in turn on a private copy of the snapshot (each
decision sees the ones before it, so two commands of one group never take the
same VNI or address), then appends the whole group in one etcd transaction. While
that transaction is in flight new commands queue up and form the next group, so
a busy agent commits many commands per round trip and an idle one adds no delay.

If another agent appended first, the transaction fails on its head compare:
the writer reads what is new, decides the group again and retries. Whatever the
outcome, a caller's future resolves only once the agent's views include its
events (read-your-writes).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import stamina
import structlog

from sand_es.commands import DEFAULT_POLICY, Command, Policy, decide
from sand_es.errors import (
    Conflict,
    ConflictRetriesExhausted,
    InfraError,
    Invalid,
    KeyReused,
    LogUnavailable,
    OutcomeUnknown,
    Rejected,
)
from sand_es.events import CODEC, Codec, Envelope, Position, Record
from sand_es.ports import EventLog, PendingCommand
from sand_es.projections import Snapshot, SnapshotBuilder
from sand_es.views import LiveViews

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def new_uuid() -> str:
    """The default id factory."""
    return str(uuid.uuid4())


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a command did: its id, the records it appended (maybe none) and the views after."""

    command_id: str
    records: tuple[Record, ...]
    snapshot: Snapshot
    replayed: bool = False

    @property
    def position(self) -> Position:
        """Where the command's last event landed (or the views' position if it appended none)."""
        return self.records[-1].position if self.records else self.snapshot.position


def fingerprint(command: Command) -> str:
    """What identifies a request: its command, encoded (two retries of one request match)."""
    return hashlib.sha256(msgspec.json.encode(command)).hexdigest()[:32]


class _Pending:
    __slots__ = ("command", "command_id", "fingerprint", "future", "new_id")

    def __init__(self, command: Command, command_id: str, new_id: str) -> None:
        self.command = command
        self.command_id = command_id
        self.new_id = new_id
        self.fingerprint = fingerprint(command)
        self.future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        # Its caller may have gone away (see `execute`): retrieve the error anyway, so
        # asyncio does not report it as never retrieved.
        self.future.add_done_callback(lambda f: f.cancelled() or f.exception())


def _settle(pending: _Pending, answer: Outcome | BaseException) -> None:
    """Answer a command once; a future already answered (or cancelled) is left alone."""
    if pending.future.done():
        return
    if isinstance(answer, BaseException):
        pending.future.set_exception(answer)
    else:
        pending.future.set_result(answer)


class _Group:
    """One round's decisions: commands to append together, and answers needing no append."""

    __slots__ = ("answers", "ids", "members")

    def __init__(self) -> None:
        self.members: list[tuple[_Pending, PendingCommand]] = []
        self.answers: list[tuple[_Pending, Rejected | None]] = []
        self.ids: frozenset[str] = frozenset()

    def add(self, pending: _Pending, command: PendingCommand) -> None:
        self.members.append((pending, command))
        self.ids |= {pending.command_id}


class Service:
    """Executes commands against the log for one agent."""

    def __init__(
        self,
        log_: EventLog,
        views: LiveViews,
        *,
        actor: str,
        policy: Policy = DEFAULT_POLICY,
        codec: Codec = CODEC,
        clock: Clock = utc_now,
        new_id: IdFactory = new_uuid,
        max_conflicts: int = 50,
        resolve_timeout: float = 15.0,
    ) -> None:
        self._log = log_
        self._views = views
        self._actor = actor
        self._policy = policy
        self._codec = codec
        self._clock = clock
        self._new_id = new_id
        self._max_conflicts = max_conflicts
        self._resolve_timeout = resolve_timeout
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    @property
    def views(self) -> LiveViews:
        """The views this service decides on."""
        return self._views

    async def execute(self, command: Command, *, command_id: str | None = None) -> Outcome:
        """Carry out a command; raises `Rejected` or `InfraError`.

        A `command_id` makes the call idempotent: if the log already holds that
        command, its original outcome is returned and nothing is appended again; if
        it holds another command under that id, `KeyReused` is raised.
        """
        if command_id is not None:
            done = await self._replay(command_id, fingerprint(command))
            if done is not None:
                return done
        pending = _Pending(command, command_id or self._new_id(), self._new_id())
        self._ensure_writer()
        await self._queue.put(pending)
        # shield: a caller that goes away (an HTTP client hanging up) must not cancel
        # the future the writer answers; the command goes on, as it would in etcd.
        return await asyncio.shield(pending.future)

    async def close(self) -> None:
        """Stop the writer; queued commands fail with `LogUnavailable`."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        while not self._queue.empty():
            _settle(self._queue.get_nowait(), LogUnavailable("the agent is shutting down"))

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    async def _write_forever(self) -> None:
        waiting: deque[_Pending] = deque()
        try:
            while True:
                if not waiting:
                    waiting.append(await self._queue.get())
                while not self._queue.empty():
                    waiting.append(self._queue.get_nowait())
                try:
                    await self._commit_group(waiting)
                except InfraError as exc:  # etcd failed while settling: answer, keep the writer alive
                    self._fail(list(waiting), waiting, exc)
                except Exception as exc:
                    log.exception("writer failed on a group")
                    self._fail(list(waiting), waiting, exc)
        except asyncio.CancelledError:
            for pending in waiting:
                _settle(pending, LogUnavailable("the agent is shutting down"))
            raise

    async def _commit_group(self, waiting: deque[_Pending]) -> None:
        """Commit as many waiting commands as one append can carry, and answer the rest."""
        head_checked = False
        for _ in range(self._max_conflicts):
            snapshot = self._views.current
            group = self._decide_group(snapshot, waiting)
            if not group.members:
                # Refusals and no-ops were decided without an append to prove the views
                # current: another agent's write may not have reached this one's tail yet
                # (a network created there a moment ago). Check the head before answering.
                if not head_checked and await self._log.head() != snapshot.position:
                    head_checked = True
                    await self._views.catch_up(self._log)
                    continue
                self._answer(group, snapshot, waiting)
                return
            try:
                records = await self._log.append([c for _, c in group.members], expected=snapshot.position)
            except Conflict as conflict:
                await self._settle_known(conflict.known_commands, waiting)
                await self._views.catch_up(self._log)
                continue
            except OutcomeUnknown as exc:
                if not await self._settle_unknown(group, waiting, exc):
                    continue
            except InfraError as exc:
                self._fail([p for p, _ in group.members], waiting, exc)
            else:
                self._views.advance(records)
                self._succeed(group, records, waiting)
            # The refusals and no-ops of the group were decided on the same snapshot;
            # an append that went through proves it was the head.
            self._answer(group, snapshot, waiting)
            return
        exhausted = ConflictRetriesExhausted(
            f"other agents kept appending; gave up after {self._max_conflicts} attempts"
        )
        self._fail(list(waiting), waiting, exhausted)

    def _decide_group(self, snapshot: Snapshot, waiting: deque[_Pending]) -> _Group:
        """Decide waiting commands in order on a private snapshot, up to the append limits.

        Each decision sees the effects of those before it in the group. A command id
        already in the group (the same command sent twice at once) waits for the
        group's outcome instead of being decided again.
        """
        limits = self._log.limits
        speculative = SnapshotBuilder(snapshot)
        group = _Group()
        events = size = 0
        unfolded: list[Record] = []
        for pending in waiting:
            if pending.command_id in group.ids:
                continue
            # Fold the previous member's events only now that another command is to be
            # decided: a lone command (the common case when idle) costs no speculative
            # fold at all, only the one that publishes it.
            speculative.add(unfolded)
            unfolded = []
            try:
                # peek, not build: the decider reads the snapshot and lets it go, so
                # the group's speculative state is not copied for every command.
                decided = decide(
                    speculative.peek(), pending.command, new_id=pending.new_id, policy=self._policy
                )
            except Rejected as rejection:
                group.answers.append((pending, rejection))
                continue
            if not decided:
                group.answers.append((pending, None))
                continue
            envelopes = tuple(self._envelope(event, pending.command_id) for event in decided)
            cost = sum(len(self._codec.encode(e)) for e in envelopes)
            over = limits.ops(len(group.members) + 1, events + len(envelopes)) > limits.max_ops
            if over or size + cost > limits.max_bytes:
                if not group.members:  # larger than an append on its own: it can never go in
                    group.answers.append((pending, Invalid("the command is too large for one append")))
                    continue
                break
            group.add(pending, PendingCommand(pending.command_id, envelopes, pending.fingerprint))
            first = speculative.position.seq + 1
            unfolded = [Record(first + i, 0, e) for i, e in enumerate(envelopes)]
            events, size = events + len(envelopes), size + cost
        return group

    def _answer(self, group: _Group, snapshot: Snapshot, waiting: deque[_Pending]) -> None:
        """Answer the refusals and no-ops of a group."""
        for pending, rejection in group.answers:
            if rejection is not None:
                self._fail([pending], waiting, rejection)
                continue
            waiting.remove(pending)
            _settle(pending, Outcome(command_id=pending.command_id, records=(), snapshot=snapshot))

    def _envelope(self, event: object, command_id: str) -> Envelope:
        return self._codec.envelope(
            event,  # type: ignore[arg-type]
            event_id=self._new_id(),
            at=self._clock(),
            actor=self._actor,
            command_id=command_id,
        )

    def _succeed(self, group: _Group, records: list[Record], waiting: deque[_Pending]) -> None:
        snapshot = self._views.current
        at = 0
        for pending, command in group.members:
            mine = tuple(records[at : at + len(command.envelopes)])
            at += len(command.envelopes)
            waiting.remove(pending)
            _settle(pending, Outcome(command_id=pending.command_id, records=mine, snapshot=snapshot))
            for twin in [p for p in waiting if p.command_id == pending.command_id]:
                waiting.remove(twin)
                if twin.fingerprint != pending.fingerprint:
                    reused = f"command id {twin.command_id!r} was already used for a different request"
                    _settle(twin, KeyReused(reused))
                    continue
                _settle(
                    twin, Outcome(command_id=twin.command_id, records=mine, snapshot=snapshot, replayed=True)
                )

    def _fail(self, pendings: list[_Pending], waiting: deque[_Pending], error: Exception) -> None:
        for pending in pendings:
            if pending in waiting:
                waiting.remove(pending)
            _settle(pending, error)

    async def _settle_known(self, known: frozenset[str], waiting: deque[_Pending]) -> None:
        """Answer commands the log already holds with their original outcome."""
        for pending in [p for p in waiting if p.command_id in known]:
            try:
                outcome = await self._replay(pending.command_id, pending.fingerprint)
            except KeyReused as reused:
                waiting.remove(pending)
                _settle(pending, reused)
                continue
            waiting.remove(pending)
            if outcome is not None:
                _settle(pending, outcome)
            else:  # the command key exists but its events do not: a damaged log
                _settle(pending, LogUnavailable(f"command {pending.command_id} is unreadable"))

    async def _settle_unknown(self, group: _Group, waiting: deque[_Pending], exc: OutcomeUnknown) -> bool:
        """Learn whether an unconfirmed append went through by reading back its command keys.

        Returns True when the group is settled (answered), False when it certainly
        did not land and must be decided again. Never re-sends blindly: a retry
        carries the same command ids, which the log refuses to take twice.
        """
        first = group.members[0][0].command_id
        try:
            async for attempt in stamina.retry_context(
                on=LogUnavailable,
                attempts=None,
                timeout=self._resolve_timeout,
                wait_max=1.0,
                wait_jitter=0.05,
            ):
                with attempt:
                    landed = await self._log.lookup_command(first)
        except LogUnavailable:
            unknown = OutcomeUnknown(
                f"etcd did not confirm the write and cannot be reached to check it ({exc}); "
                "the command may or may not have been applied: retry it with the same Idempotency-Key"
            )
            self._fail([p for p, _ in group.members], waiting, unknown)
            return True
        if landed is None:
            log.info("unconfirmed append did not land; deciding again", command_id=first)
            return False
        log.info("unconfirmed append landed", command_id=first)
        await self._settle_known(group.ids, waiting)
        return True

    async def _replay(self, command_id: str, fingerprint: str) -> Outcome | None:
        found = await self._log.lookup_command(command_id)
        if found is None:
            return None
        if found.fingerprint and found.fingerprint != fingerprint:
            raise KeyReused(f"command id {command_id!r} was already used for a different request")
        records = found.records
        snapshot = self._views.current
        if records and snapshot.position.seq < records[-1].seq:  # the tail is behind: read what is new
            snapshot = await self._views.catch_up(self._log)
        return Outcome(command_id=command_id, records=records, snapshot=snapshot, replayed=True)
