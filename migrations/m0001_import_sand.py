"""0001 import-sand: a Go SAND keyspace, appended to an empty sand-es log as events.

Reads every key under the SAND prefix (default `/sc-net`) at one etcd revision,
translates networks and endpoints into events keeping their ids, VNIs, addresses,
MACs and device names (`migrations.sandmap`), checks the result by folding it, and
appends it in chunks a re-run can resume (`migrations.chunked`).

Importing twice is impossible: the runner's record stops a second run, and the
import refuses a log that holds anything but its own chunks (an interrupted run's),
so it can neither land on top of a cluster already in use nor be repeated after
the record was removed by hand.
"""

from __future__ import annotations

from typing import Final

import msgspec

from migrations.base import Context, Report
from migrations.chunked import append_resumably, chunk, command_prefix, describe, event_count, foreign_record
from migrations.sandkeys import read_keyspace
from migrations.sandmap import Translation, check, translate
from sand_es.errors import Conflicting, Invalid, NotFound
from sand_es.ports import PendingCommand

NUMBER: Final = 1


class Prepared(msgspec.Struct, frozen=True):
    """An import ready to append: its commands, what they carry, and what an earlier run left."""

    commands: tuple[PendingCommand, ...]
    translation: Translation
    resumed: bool


class ImportSand:
    """Migration 0001: import a Go SAND keyspace."""

    number = NUMBER
    name = "import-sand"
    description = "Import a Go SAND keyspace (networks, endpoints, VNIs, IPs, MACs) into an empty log"

    async def plan(self, context: Context) -> Report:
        prepared = await prepare(context)
        t, count = prepared.translation, event_count(prepared.commands)
        summary = (
            f"would import {_counts(t)} from {context.sand_prefix} as {count} events "
            f"in {len(prepared.commands)} append(s) into {context.prefix}"
        )
        if prepared.resumed:
            summary += "; the log holds chunks of an interrupted run, which would be checked and skipped"
        return Report(summary=summary, lines=tuple(describe(prepared.commands)), warnings=_warnings(t))

    async def run(self, context: Context) -> Report:
        prepared = await prepare(context)
        skipped = await append_resumably(context.log, prepared.commands, prefix=command_prefix(NUMBER))
        t, count, appends = prepared.translation, event_count(prepared.commands), len(prepared.commands)
        detail = f"{count} events in {appends} append(s)"
        if skipped:
            detail += f", {skipped} of them already done by an interrupted run"
        summary = f"imported {_counts(t)} from {context.sand_prefix} ({detail})"
        return Report(summary=summary, warnings=_warnings(t))


async def prepare(context: Context) -> Prepared:
    """Everything the import would append, checked; raises `Rejected` if it must not run."""
    _check_prefixes(context)
    resumed = await _check_target(context)
    kvs = await context.keyspace.range(f"{context.sand_prefix}/")
    keyspace = read_keyspace(context.sand_prefix, kvs)
    if not keyspace.networks:
        raise NotFound(f"no SAND network under {context.sand_prefix}/network/: nothing to import")
    translation = translate(keyspace)
    check(translation)
    commands = chunk(translation.units, context.log.limits, number=NUMBER, actor=context.by)
    return Prepared(tuple(commands), translation, resumed)


def _check_prefixes(context: Context) -> None:
    sand = context.sand_prefix
    if not sand.startswith("/") or sand.endswith("/"):
        raise Invalid(f"SAND prefix {sand!r}: expected an absolute key prefix such as /sc-net")
    if sand == context.prefix:
        raise Invalid(f"the sand-es log and the SAND keyspace cannot share the prefix {sand}")


async def _check_target(context: Context) -> bool:
    """Whether an interrupted run left chunks; refuses a log holding anything else."""
    prefix = command_prefix(NUMBER)
    intruder = await foreign_record(context.log, prefix)
    if intruder is not None:
        head = await context.log.head()
        raise Conflicting(
            f"the sand-es log under {context.prefix} is not empty ({head.seq} events; event {intruder.seq} "
            f"is a {intruder.envelope.type} by {intruder.envelope.actor}): "
            "the SAND import only runs into an empty log"
        )
    return (await context.log.head()).seq > 0


def _counts(t: Translation) -> str:
    return f"{t.networks} networks and {t.endpoints} endpoints ({t.active} active)"


def _warnings(t: Translation) -> tuple[str, ...]:
    return (*t.warnings, *(str(leak) for leak in t.leaks))
