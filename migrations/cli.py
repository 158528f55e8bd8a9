"""`sand-es migrate`: list and run the keyspace migrations, straight on etcd.

The etcd settings are the agent's (`ETCD_HOSTS`, `ETCD_PREFIX`, the TLS variables),
which `--etcd-hosts` and `--prefix` override. A refusal prints `error: <message>`
on stderr and exits 1; warnings go to stderr too, so stdout holds only the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar

import msgspec
import typer

from migrations import MIGRATIONS
from migrations.base import Context, EtcdKeyspace
from migrations.runner import Result, Status, run_one, selected, statuses
from migrations.sandkeys import DEFAULT_SAND_PREFIX
from sand_es.config import EtcdSettings
from sand_es.errors import SandError
from sand_es.etcdlog import EtcdLog

T = TypeVar("T")

app = typer.Typer(
    help="Numbered, idempotent, forward-only migrations of the etcd keyspace (migrations/README.md).",
    no_args_is_help=True,
)

EtcdHosts = Annotated[
    str | None, typer.Option("--etcd-hosts", help="etcd endpoints (default: ETCD_HOSTS).", show_default=False)
]
Prefix = Annotated[
    str | None,
    typer.Option("--prefix", help="The sand-es log's prefix (default: ETCD_PREFIX).", show_default=False),
]


@app.command("list")
def list_(
    etcd_hosts: EtcdHosts = None,
    prefix: Prefix = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON array instead of text.")] = False,
) -> None:
    """List the migrations, and whether and when each ran."""
    found = _execute(etcd_hosts, prefix, DEFAULT_SAND_PREFIX, lambda c: statuses(c, MIGRATIONS))
    if json:
        typer.echo(msgspec.json.encode(found).decode())
        return
    for status in found:
        typer.echo(_status_line(status))


@app.command("run")
def run_(
    number: Annotated[
        int | None, typer.Argument(help="Only this migration (default: every one not run).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be appended; append and record nothing.")
    ] = False,
    sand_prefix: Annotated[
        str, typer.Option("--sand-prefix", help="Where the Go SAND keyspace to import is.")
    ] = DEFAULT_SAND_PREFIX,
    etcd_hosts: EtcdHosts = None,
    prefix: Prefix = None,
) -> None:
    """Run the migrations not run yet (or one of them), each once, in order."""
    _execute(etcd_hosts, prefix, sand_prefix, lambda c: _run_and_print(c, number, dry_run))


async def _run_and_print(context: Context, number: int | None, dry_run: bool) -> None:
    # Each result is printed as soon as it is known: a later refusal must not hide
    # what the migrations before it did.
    for migration in selected(MIGRATIONS, number):
        _print_result(await run_one(context, migration, dry_run=dry_run))


def _status_line(status: Status) -> str:
    head = f"{status.number:04d}  {status.name}"
    if status.record is None:
        return f"{head}  not run  ({status.description})"
    record = status.record
    return f"{head}  ran {record.ran_at.isoformat()} by {record.by}: {record.summary}"


def _print_result(result: Result) -> None:
    state = {"ran": "", "skipped": "skipped: ", "planned": "dry run, nothing appended: "}[result.state]
    typer.echo(f"{result.number:04d} {result.name}: {state}{result.report.summary}")
    for line in result.report.lines:
        typer.echo(f"  {line}")
    for warning in result.report.warnings:
        typer.echo(f"warning: {warning}", err=True)


def _execute(
    etcd_hosts: str | None, prefix: str | None, sand_prefix: str, action: Callable[[Context], Awaitable[T]]
) -> T:
    overrides = {"ETCD_HOSTS": etcd_hosts, "ETCD_PREFIX": prefix}
    environ = {**os.environ, **{name: value for name, value in overrides.items() if value is not None}}
    try:
        settings = EtcdSettings.from_env(environ)
        return asyncio.run(_with_context(settings, sand_prefix, action))
    except SandError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


async def _with_context(
    settings: EtcdSettings, sand_prefix: str, action: Callable[[Context], Awaitable[T]]
) -> T:
    async with _context(settings, sand_prefix) as context:
        return await action(context)


@contextlib.asynccontextmanager
async def _context(settings: EtcdSettings, sand_prefix: str) -> AsyncIterator[Context]:
    log = await EtcdLog.connect(settings)
    try:
        keyspace = EtcdKeyspace(log.kv, timeout=settings.read_timeout)
        yield Context(
            log=log, keyspace=keyspace, prefix=settings.prefix, by=_operator(), sand_prefix=sand_prefix
        )
    finally:
        await log.close()


def _operator() -> str:
    """Who runs the migration, for its record and its events' actor: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
