"""An in-memory `EventLog`, held to the same contract as the etcd one.

For tests of everything above the log, and for demos without etcd. It fakes etcd's
revision counter, so positions look the same as with etcd.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import msgspec

from sand_es.errors import Conflict, LogCorrupt
from sand_es.events import CODEC, START, Codec, Position, Record, chain
from sand_es.ports import CommandRecord, PendingCommand, TxnLimits


class MemoryLog:
    """An `EventLog` in a list. Events go through the codec, as they would in etcd."""

    def __init__(self, *, codec: Codec = CODEC, page_size: int = 1000) -> None:
        self.limits = TxnLimits()
        self._codec = codec
        self._page_size = page_size
        # (revision, encoded envelope, its digest), index = seq - 1
        self._stored: list[tuple[int, bytes, str]] = []
        self._commands: dict[str, tuple[int, int, str]] = {}  # command id -> (first seq, count, fingerprint)
        self._revision = 0
        self._changed = asyncio.Condition()
        self._closed = False

    async def head(self) -> Position:
        if not self._stored:
            return START
        revision, _, last_digest = self._stored[-1]
        return Position(len(self._stored), revision, last_digest)

    async def append(self, commands: Sequence[PendingCommand], expected: Position) -> list[Record]:
        self.limits.check(commands, sum(len(self._codec.encode(e)) for c in commands for e in c.envelopes))
        known = frozenset(c.command_id for c in commands if c.command_id in self._commands)
        if known:
            raise Conflict("command already appended", known_commands=known)
        if await self.head() != expected:
            raise Conflict(f"log moved past {expected}")
        self._revision += 1
        records = []
        prev = expected.digest
        for command in commands:
            self._commands[command.command_id] = (
                len(self._stored) + 1,
                len(command.envelopes),
                command.fingerprint,
            )
            for envelope in command.envelopes:
                raw = self._codec.encode(msgspec.structs.replace(envelope, prev=prev))
                prev = chain.digest(raw)
                self._stored.append((self._revision, raw, prev))
                records.append(self._record(len(self._stored)))
        async with self._changed:
            self._changed.notify_all()
        return records

    async def read(self, after: Position) -> AsyncIterator[list[Record]]:
        last = len(self._stored)
        _check_not_behind(last, after)
        for start in range(after.seq + 1, last + 1, self._page_size):
            yield [self._record(seq) for seq in range(start, min(start + self._page_size, last + 1))]

    async def tail(self, after: Position) -> AsyncIterator[list[Record]]:
        _check_not_behind(len(self._stored), after)
        seq = after.seq
        while not self._closed:
            if seq < len(self._stored):
                batch = [self._record(s) for s in range(seq + 1, len(self._stored) + 1)]
                seq = batch[-1].seq
                yield batch
                continue
            async with self._changed:
                await self._changed.wait()

    async def lookup_command(self, command_id: str) -> CommandRecord | None:
        found = self._commands.get(command_id)
        if found is None:
            return None
        first, count, fingerprint = found
        return CommandRecord(tuple(self._record(seq) for seq in range(first, first + count)), fingerprint)

    async def close(self) -> None:
        self._closed = True
        async with self._changed:
            self._changed.notify_all()

    def store_raw(self, raw: bytes) -> None:
        """Append stored bytes as they are (for tests of old or damaged events)."""
        self._revision += 1
        self._stored.append((self._revision, raw, chain.digest(raw)))

    def _record(self, seq: int) -> Record:
        revision, raw, raw_digest = self._stored[seq - 1]
        return Record(seq, revision, self._codec.decode(raw), raw_digest)


def _check_not_behind(last: int, after: Position) -> None:
    if last < after.seq:
        raise LogCorrupt(f"the log ends at event {last} but this reader has applied {after.seq}")
