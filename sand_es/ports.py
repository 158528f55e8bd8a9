"""The ports of the core: what the application service needs from a log.

Two adapters implement `EventLog`: `sand_es.etcdlog` (the real one) and
`sand_es.memlog` (in memory, for tests and demos). One contract suite
(`tests/contract/`) holds both to the same behaviour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import msgspec

from sand_es.events import Envelope, Position, Record


class PendingCommand(msgspec.Struct, frozen=True):
    """One command's events, waiting to be appended under its id.

    `fingerprint` identifies the request the id was given with, so that the id reused
    for another request can be told from a retry (empty: not recorded).
    """

    command_id: str
    envelopes: tuple[Envelope, ...]
    fingerprint: str = ""


class CommandRecord(msgspec.Struct, frozen=True):
    """A command the log holds: the records it appended and its request's fingerprint."""

    records: tuple[Record, ...]
    fingerprint: str = ""


class TxnLimits(msgspec.Struct, frozen=True):
    """What one append may carry: etcd allows 128 operations and 1.5 MiB per transaction."""

    max_ops: int = 128
    # Below etcd's 1.5 MiB request limit, leaving room for keys and framing.
    max_bytes: int = 1_000_000

    def ops(self, commands: int, events: int) -> int:
        """Operations an append of that many commands and events takes (the head key is one)."""
        return events + commands + 1

    def check(self, commands: Sequence[PendingCommand], size: int) -> None:
        """Refuse, before sending, an append etcd would refuse (`size`: bytes of the values)."""
        events = sum(len(c.envelopes) for c in commands)
        if self.ops(len(commands), events) > self.max_ops:
            raise ValueError(
                f"an append of {len(commands)} commands and {events} events exceeds {self.max_ops} operations"
            )
        if size > self.max_bytes:
            raise ValueError(f"an append of {size} bytes exceeds {self.max_bytes} bytes")


class EventLog(Protocol):
    """An append-only, totally ordered log of events with optimistic concurrency."""

    limits: TxnLimits

    async def head(self) -> Position:
        """The position of the last event appended (`START` for an empty log)."""
        ...

    async def append(self, commands: Sequence[PendingCommand], expected: Position) -> list[Record]:
        """Append every command's events atomically, if the log is still at `expected`.

        Returns the appended records in order. Raises `Conflict` if anything was
        appended after `expected` or if a command id is already in the log (nothing
        is appended then), `OutcomeUnknown` if the append may or may not have been
        committed, and `LogUnavailable` if it certainly was not.
        """
        ...

    def read(self, after: Position) -> AsyncIterator[list[Record]]:
        """Every record after `after`, in pages, as of one point in time."""
        ...

    def tail(self, after: Position) -> AsyncIterator[list[Record]]:
        """Every record after `after`, then each new one as it is appended, forever.

        Survives restarts of the store and compaction of its history: no record is
        skipped and none is delivered twice.
        """
        ...

    async def lookup_command(self, command_id: str) -> CommandRecord | None:
        """What a command appended, or None if the log does not hold it."""
        ...

    async def close(self) -> None:
        """Release connections; tails end."""
        ...
