"""Appending a migration's events in chunks that a re-run can resume.

etcd takes at most 128 operations and about 1.5 MiB per transaction (`TxnLimits`), so
a large migration is several appends, and a crash can stop it between two. Each chunk
is one command with a deterministic id (`migration:0001:<index>`): the log refuses an
id it already holds (`Conflict.known_commands`), so a re-run skips the chunks that
landed, after checking they hold the very events it would append, and goes on with the
rest. Nothing is appended twice, and a source that changed in between is refused
rather than half-mixed.

Chunks keep their units whole (an endpoint's `added` and `activated` stay together)
and in order, so every prefix of the migration is itself a consistent log.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Final

import msgspec

from migrations.base import Fact
from sand_es.errors import Conflict, Conflicting, ConflictRetriesExhausted, Invalid, OutcomeUnknown
from sand_es.events import CODEC, START, Envelope, Position, Record
from sand_es.ports import EventLog, PendingCommand, TxnLimits

#: Bytes an event costs in a transaction beyond its encoded envelope: its key, the
#: `prev` digest the log adds, and protobuf framing (generous on purpose).
EVENT_OVERHEAD: Final = 256
#: Appends tried per chunk while other writers move the head.
ATTEMPTS: Final = 10

_IDS: Final = uuid.UUID("4f0b6a52-8d3e-4a57-9d0f-5a1e2c7b9e10")


def command_prefix(number: int) -> str:
    """The command-id prefix of migration `number`'s chunks."""
    return f"migration:{number:04d}:"


def chunk(
    units: Sequence[Sequence[Fact]], limits: TxnLimits, *, number: int, actor: str
) -> list[PendingCommand]:
    """Units of facts packed, in order, into commands that each fit one append."""
    max_events = limits.max_ops - limits.ops(1, 0)
    commands: list[PendingCommand] = []
    current: list[Fact] = []
    size = 0
    for unit in units:
        unit_size = sum(_size(fact) for fact in unit)
        if len(unit) > max_events or unit_size > limits.max_bytes:
            raise Invalid(f"{unit[0].source or 'a unit'}: too large for one etcd transaction")
        if len(current) + len(unit) > max_events or size + unit_size > limits.max_bytes:
            commands.append(_command(current, number, len(commands), actor))
            current, size = [], 0
        current += unit
        size += unit_size
    if current:
        commands.append(_command(current, number, len(commands), actor))
    return commands


def _command(facts: Sequence[Fact], number: int, index: int, actor: str) -> PendingCommand:
    command_id = f"{command_prefix(number)}{index}"
    return PendingCommand(
        command_id=command_id,
        envelopes=tuple(_envelope(fact, command_id, i, actor) for i, fact in enumerate(facts)),
    )


def _envelope(fact: Fact, command_id: str, index: int, actor: str) -> Envelope:
    # Ids derived from the command make a re-run build the very same envelopes.
    event_id = str(uuid.uuid5(_IDS, f"{command_id}/{index}"))
    return CODEC.envelope(fact.event, event_id=event_id, at=fact.at, actor=actor, command_id=command_id)


def _size(fact: Fact) -> int:
    return len(CODEC.encode(_envelope(fact, "migration:0000:0", 0, "x" * 64))) + EVENT_OVERHEAD


async def foreign_record(log: EventLog, prefix: str, after: Position = START) -> Record | None:
    """The first record after `after` that no command of `prefix` appended, if any."""
    async for page in log.read(after):
        for record in page:
            if not record.envelope.command_id.startswith(prefix):
                return record
    return None


async def append_resumably(log: EventLog, commands: Sequence[PendingCommand], *, prefix: str) -> int:
    """Append every command not yet in the log; the number of commands that were already there.

    Other writers must keep off the log meanwhile: if one appends between two chunks,
    the migration stops with `Conflicting` rather than interleave with it.
    """
    skipped = 0
    for command in commands:
        if not await _append(log, command, prefix):
            skipped += 1
    return skipped


async def _append(log: EventLog, command: PendingCommand, prefix: str) -> bool:
    """True if appended now, False if an earlier run had appended it."""
    for _ in range(ATTEMPTS):
        expected = await log.head()
        try:
            await log.append([command], expected)
        except Conflict as exc:
            if command.command_id in exc.known_commands:
                await _check_same(log, command)
                return False
            await _check_no_intruder(log, expected, prefix)
            continue
        except OutcomeUnknown:
            # The reply was lost: learn whether it landed instead of appending blindly.
            if await log.lookup_command(command.command_id) is None:
                continue
            await _check_same(log, command)
        return True
    raise ConflictRetriesExhausted(f"{command.command_id}: the log kept moving; try again")


async def _check_same(log: EventLog, command: PendingCommand) -> None:
    held = await log.lookup_command(command.command_id)
    stored = [] if held is None else [r.envelope.data for r in held.records]
    if stored != [e.data for e in command.envelopes]:
        raise Conflicting(
            f"the log holds {command.command_id} from an earlier run, with other events than this run "
            "would append: the source changed since that run was interrupted. Nothing more was "
            "appended; see migrations/README.md (an interrupted import)"
        )


async def _check_no_intruder(log: EventLog, expected: Position, prefix: str) -> None:
    intruder = await foreign_record(log, prefix, expected)
    if intruder is not None:
        raise Conflicting(
            f"another writer appended to the log during the migration (event {intruder.seq}, "
            f"{intruder.envelope.type} by {intruder.envelope.actor}): stop every agent on this "
            "prefix, then see migrations/README.md"
        )


def describe(commands: Sequence[PendingCommand]) -> list[str]:
    """One line per event: its command id and its data as stored (the dry run's output)."""
    return [
        f"{command.command_id} {msgspec.json.encode(envelope.data).decode()}"
        for command in commands
        for envelope in command.envelopes
    ]


def event_count(commands: Sequence[PendingCommand]) -> int:
    """How many events the commands carry."""
    return sum(len(c.envelopes) for c in commands)
