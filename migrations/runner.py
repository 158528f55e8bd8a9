"""Running migrations in order, once each, and reporting which ran."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from migrations.base import Context, Migration, MigrationRecord, Report, read_record, write_record
from sand_es.errors import NotFound

State = Literal["ran", "skipped", "planned"]


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """A migration and the record of its run (None: not run yet)."""

    number: int
    name: str
    description: str
    record: MigrationRecord | None


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """What `run` did with one migration: ran it, skipped it (recorded), or planned it (dry run)."""

    number: int
    name: str
    state: State
    report: Report
    record: MigrationRecord | None = None


async def statuses(context: Context, migrations: Sequence[Migration]) -> list[Status]:
    """Every migration, in order, with its record if it ran."""
    return [
        Status(
            number=m.number,
            name=m.name,
            description=m.description,
            record=await read_record(context, m.number),
        )
        for m in migrations
    ]


async def run(
    context: Context, migrations: Sequence[Migration], *, number: int | None = None, dry_run: bool = False
) -> list[Result]:
    """Run `number` (or every migration, in order) unless recorded; stop at the first refusal.

    A dry run plans instead and records nothing.
    """
    return [await run_one(context, migration, dry_run=dry_run) for migration in selected(migrations, number)]


def selected(migrations: Sequence[Migration], number: int | None) -> list[Migration]:
    """Migration `number` (`NotFound` if none has it), or all of them; in order."""
    ordered = sorted(migrations, key=lambda m: m.number)
    if number is None:
        return ordered
    chosen = [m for m in ordered if m.number == number]
    if not chosen:
        known = ", ".join(f"{m.number:04d}" for m in ordered)
        raise NotFound(f"no migration {number:04d} (known: {known})")
    return chosen


async def run_one(context: Context, migration: Migration, *, dry_run: bool = False) -> Result:
    """Run (or plan) one migration unless it is recorded; record the run."""
    recorded = await read_record(context, migration.number)
    if recorded is not None:
        report = Report(
            summary=f"already ran at {recorded.ran_at.isoformat()} by {recorded.by}: {recorded.summary}"
        )
        return Result(
            number=migration.number, name=migration.name, state="skipped", report=report, record=recorded
        )
    if dry_run:
        report = await migration.plan(context)
        return Result(number=migration.number, name=migration.name, state="planned", report=report)
    report = await migration.run(context)
    record = MigrationRecord(
        name=migration.name, ran_at=context.clock(), by=context.by, summary=report.summary
    )
    if not await write_record(context, migration.number, record):
        # Another run of the same migration finished first; its record stands.
        record = await read_record(context, migration.number) or record
    return Result(number=migration.number, name=migration.name, state="ran", report=report, record=record)
