"""Resumable chunked appends (`migrations.chunked`) on the in-memory log, with writers in the way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from migrations.base import Fact
from migrations.chunked import append_resumably, chunk, command_prefix
from sand_es.errors import Conflicting, OutcomeUnknown
from sand_es.events import CODEC, START, NetworkCreated, Position, Record
from sand_es.memlog import MemoryLog
from sand_es.ports import PendingCommand, TxnLimits

AT = datetime(2026, 11, 27, tzinfo=UTC)
PREFIX = command_prefix(1)


def commands(count: int) -> list[PendingCommand]:
    """`count` one-event chunks of migration 0001."""
    units = [
        (Fact(NetworkCreated(network_id=f"n{i}", name="x", ip_range="r", gateway="g", vxlan_vni=i + 1), AT),)
        for i in range(count)
    ]
    return chunk(units, TxnLimits(max_ops=3), number=1, actor="ops")


def foreign() -> PendingCommand:
    envelope = CODEC.envelope(
        NetworkCreated(network_id="other", name="x", ip_range="r", gateway="g", vxlan_vni=99),
        event_id="e",
        at=AT,
        actor="hostA",
        command_id="an-agent's-command",
    )
    return PendingCommand(command_id="an-agent's-command", envelopes=(envelope,))


class Interfering(MemoryLog):
    """A memory log where something happens just before the n-th append call goes through."""

    def __init__(self, before: int, sneak: Sequence[PendingCommand] = (), lose_reply: bool = False) -> None:
        super().__init__()
        self.calls, self.before, self.sneak, self.lose_reply = 0, before, sneak, lose_reply

    async def append(self, commands: Sequence[PendingCommand], expected: Position) -> list[Record]:
        self.calls += 1
        if self.calls == self.before and self.sneak:
            await super().append(self.sneak, await self.head())
        records = await super().append(commands, expected)
        if self.calls == self.before and self.lose_reply:
            raise OutcomeUnknown("reply lost")
        return records


async def command_ids(log: MemoryLog) -> list[str]:
    return [r.envelope.command_id async for page in log.read(START) for r in page]


class TestAppendResumably:
    """Each chunk lands once, whatever happened around it; a stranger's write stops the migration."""

    async def test_appends_every_chunk_in_order(self) -> None:
        """On a quiet log every chunk is appended, none counted as already there."""
        log = MemoryLog()
        assert 0 == await append_resumably(log, commands(3), prefix=PREFIX)
        assert [f"{PREFIX}{i}" for i in range(3)] == await command_ids(log)

    async def test_chunk_of_a_concurrent_run_is_skipped(self) -> None:
        """A chunk another run of the same migration appended first is checked and skipped."""
        chunks = commands(3)
        log = Interfering(before=2, sneak=chunks[1:2])
        assert 1 == await append_resumably(log, chunks, prefix=PREFIX)
        assert [f"{PREFIX}{i}" for i in range(3)] == await command_ids(log)

    async def test_lost_reply_is_resolved_by_reading_back(self) -> None:
        """An append whose reply was lost is looked up, found, and not appended again."""
        log = Interfering(before=1, lose_reply=True)
        assert 0 == await append_resumably(log, commands(2), prefix=PREFIX)
        assert [f"{PREFIX}0", f"{PREFIX}1"] == await command_ids(log)

    async def test_another_writer_stops_the_migration(self) -> None:
        """An agent appending between two chunks makes the migration stop with `Conflicting`."""
        log = Interfering(before=2, sneak=[foreign()])
        with pytest.raises(Conflicting, match="another writer appended"):
            await append_resumably(log, commands(3), prefix=PREFIX)
        assert [f"{PREFIX}0", "an-agent's-command"] == await command_ids(log)

    async def test_different_chunk_under_the_same_id_is_refused(self) -> None:
        """A chunk id the log holds with other events (the source changed) is refused."""
        log = MemoryLog()
        await log.append(commands(1), START)
        changed = chunk(
            [(Fact(NetworkCreated(network_id="m", name="y", ip_range="r", gateway="g", vxlan_vni=5), AT),)],
            TxnLimits(),
            number=1,
            actor="ops",
        )
        with pytest.raises(Conflicting, match="the source changed"):
            await append_resumably(log, changed, prefix=PREFIX)
