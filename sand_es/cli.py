"""`sand-es`: the operator's command line (a composition root, like the agent).

Today it talks straight to etcd; the agent's HTTP commands and the audit tools
join it as they are built.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Annotated

import msgspec
import typer

from sand_es import __version__, daemon, logs
from sand_es.config import AgentSettings, EtcdSettings
from sand_es.errors import SandError
from sand_es.etcdlog import EtcdLog
from sand_es.views import LiveViews

app = typer.Typer(
    help="sand-es: SAND's overlay networks, as an event log on etcd.",
    no_args_is_help=True,
    add_completion=False,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


class Status(msgspec.Struct, frozen=True):
    """What `sand-es status` reports."""

    prefix: str
    seq: int
    revision: int
    networks: int
    endpoints: int
    active_endpoints: int
    replay_seconds: float


@app.command()
def version() -> None:
    """Print the version of this sand-es."""
    typer.echo(__version__)


@app.command()
def status(json: JsonFlag = False) -> None:
    """Replay the log from etcd (ETCD_* settings) and summarise what it holds."""
    try:
        report = asyncio.run(_status(EtcdSettings.from_env(os.environ)))
    except SandError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if json:
        typer.echo(msgspec.json.encode(report).decode())
        return
    typer.echo(
        f"log {report.prefix}: {report.seq} events (revision {report.revision}), "
        f"{report.networks} networks, {report.endpoints} endpoints "
        f"({report.active_endpoints} active); replayed in {report.replay_seconds:.3f} s"
    )


async def _status(settings: EtcdSettings) -> Status:
    log = await EtcdLog.connect(settings)
    try:
        started = time.perf_counter()
        snapshot = await LiveViews().catch_up(log)
        elapsed = time.perf_counter() - started
    finally:
        await log.close()
    endpoints = snapshot.endpoints.endpoints.values()
    return Status(
        prefix=settings.prefix,
        seq=snapshot.position.seq,
        revision=snapshot.position.rev,
        networks=len(snapshot.networks.networks),
        endpoints=len(endpoints),
        active_endpoints=sum(1 for e in endpoints if e.active),
        replay_seconds=round(elapsed, 6),
    )


@app.command()
def agent() -> None:
    """Run the agent: replay and tail the log, serve SAND's API (settings from the environment)."""
    try:
        settings = AgentSettings.from_env(os.environ, default_hostname=socket.gethostname())
    except SandError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    logs.configure(format=settings.log_format, level=settings.log_level)
    try:
        asyncio.run(daemon.run(settings))
    except SandError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def main() -> None:
    """Console entry point."""
    app()
