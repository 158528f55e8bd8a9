"""`sand-es`: the operator's command line (a composition root, like the agent).

`status` talks straight to etcd and `agent` runs the agent. The other verbs are
those of SAND's `sand-agent-cli`, with its flags and `SAND_*` variables, over the
agent's HTTP API (`sand_es.client`). Unlike SAND's CLI they exit 1 on an error,
with `error: <the API's message>` on stderr, and every verb that prints data takes
`--json` to print one JSON document instead of text.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import msgspec
import typer

from sand_es import __version__, daemon, logs
from sand_es.client import DEFAULT_TIMEOUT, DEFAULT_URL, SandApiError, SandClient, SandClientError
from sand_es.config import AgentSettings, EtcdSettings
from sand_es.errors import SandError
from sand_es.etcdlog import EtcdLog
from sand_es.http.schemas import (
    Endpoint,
    EndpointResponse,
    EndpointsResponse,
    Network,
    NetworkResponse,
    NetworksResponse,
)
from sand_es.views import LiveViews

app = typer.Typer(
    help=(
        "sand-es: SAND's overlay networks, as an event log on etcd.\n\n"
        "The network-* and endpoint-* verbs (and version) are SAND's sand-agent-cli verbs: "
        "they call the agent at --api-url and exit 1 with 'error: <message>' on stderr if it fails. "
        "Each verb that prints data takes --json: one JSON document, the API's own envelope "
        '(e.g. {"networks": ...}; {} for the deletes, which the API answers with no body).'
    ),
    no_args_is_help=True,
    add_completion=False,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
ApiJsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (the API's envelope) instead of text.")
]


class Status(msgspec.Struct, frozen=True):
    """What `sand-es status` reports."""

    prefix: str
    seq: int
    revision: int
    networks: int
    endpoints: int
    active_endpoints: int
    replay_seconds: float


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_DURATION_PART.pattern})+")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (`500ms`, `30s`, `1m30s`) or a bare number of seconds (`30`)."""
    text = text.strip()
    if re.fullmatch(_NUMBER, text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        seconds = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    else:
        raise ValueError(f"{text!r} is not a duration such as 30, 30s, 1m or 500ms")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be positive")
    return seconds


def _duration_option(value: str | float) -> float:
    """`--timeout`'s parser; typer hands it the default as a float, and a bad value is a usage error."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


class ApiOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Where the HTTP verbs find the agent, and how they talk to it (the global options)."""

    url: str = DEFAULT_URL
    timeout: float = DEFAULT_TIMEOUT
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None


def _tls_file(flag: str, envvar: str, what: str) -> Any:
    return typer.Option(
        flag, envvar=envvar, exists=True, dir_okay=False, readable=True, help=what, show_default=False
    )


@app.callback()
def _options(
    ctx: typer.Context,
    api_url: Annotated[
        str, typer.Option("--api-url", envvar="SAND_API_URL", help="The agent's API.")
    ] = DEFAULT_URL,
    cert_file: Annotated[
        Path | None,
        _tls_file("--cert-file", "SAND_CERT_FILE", "Client certificate for an mTLS agent (with --key-file)."),
    ] = None,
    key_file: Annotated[
        Path | None, _tls_file("--key-file", "SAND_KEY_FILE", "Key of the client certificate.")
    ] = None,
    ca_file: Annotated[
        Path | None,
        _tls_file("--ca-file", "SAND_CA_FILE", "CA that signed the agent's certificate (https URLs)."),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            envvar="SAND_TIMEOUT",
            parser=_duration_option,
            metavar="DURATION",
            show_default=False,
            help="Timeout of each request: 30, 30s, 1m, 500ms… (default 30s).",
        ),
    ] = DEFAULT_TIMEOUT,
) -> None:
    if (cert_file is None) != (key_file is None):
        raise typer.BadParameter("--cert-file and --key-file go together", param_hint="--cert-file")
    ctx.obj = ApiOptions(
        url=api_url, timeout=timeout, cert_file=cert_file, key_file=key_file, ca_file=ca_file
    )


@app.command()
def version(ctx: typer.Context, json: ApiJsonFlag = False) -> None:
    """Print the versions of this client and of the agent at --api-url."""
    if not json:
        typer.echo(f"Client version: {__version__}")
    with _api(ctx) as client:
        server = client.version()
    if json:
        _print_json({"client_version": __version__, "server_version": server})
        return
    typer.echo(f"Server version: {server}")


@app.command("network-list")
def network_list(ctx: typer.Context, json: ApiJsonFlag = False) -> None:
    """List every network of the cluster."""
    with _api(ctx) as client:
        networks = client.networks()
    if json:
        _print_json(NetworksResponse(networks=networks))
    elif not networks:
        typer.echo("No existing network")
    else:
        typer.echo(_networks_table(networks))


@app.command("network-create")
def network_create(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Name (default net-sc-<id>).")] = None,
    ip_range: Annotated[
        str | None,
        typer.Option("--ip-range", help="CIDR endpoints get addresses from (default 10.0.0.0/24)."),
    ] = None,
    gateway: Annotated[
        str | None, typer.Option("--gateway", help="Gateway with its prefix (default: first address).")
    ] = None,
    json: ApiJsonFlag = False,
) -> None:
    """Create a network."""
    with _api(ctx) as client:
        network = client.network_create(name=name, ip_range=ip_range, gateway=gateway)
    if json:
        _print_json(NetworkResponse(network=network))
        return
    typer.echo("New network created:")
    typer.echo(_networks_table([network]))


NetworkId = Annotated[str, typer.Option("--network", "-n", help="ID of the network.", show_default=False)]


@app.command("network-show")
def network_show(ctx: typer.Context, network: NetworkId, json: ApiJsonFlag = False) -> None:
    """Show one network."""
    with _api(ctx) as client:
        found = client.network_show(network)
    if json:
        _print_json(NetworkResponse(network=found))
    else:
        typer.echo(_networks_table([found]))


@app.command("network-delete")
def network_delete(ctx: typer.Context, network: NetworkId, json: ApiJsonFlag = False) -> None:
    """Delete a network; refused while it has endpoints, on any host."""
    with _api(ctx) as client:
        client.network_delete(network)
    if json:
        _print_json({})
    else:
        typer.echo(f"Network {network} deleted")


@app.command("endpoint-list")
def endpoint_list(
    ctx: typer.Context,
    network: Annotated[str | None, typer.Option("--network", "-n", help="Only this network's.")] = None,
    hostname: Annotated[
        str | None, typer.Option("--hostname", help="Only this host's; 'all' (or nothing) for every host.")
    ] = None,
    json: ApiJsonFlag = False,
) -> None:
    """List endpoints, by network, by host, by both, or all of them."""
    with _api(ctx) as client:
        endpoints = client.endpoints(network_id=network, hostname=None if hostname == "all" else hostname)
    if json:
        _print_json(EndpointsResponse(endpoints=endpoints))
    elif not endpoints:
        typer.echo("No endpoint")
    else:
        typer.echo(_endpoints_table(endpoints))


@app.command("endpoint-create")
def endpoint_create(
    ctx: typer.Context,
    network: NetworkId,
    ns: Annotated[
        str | None,
        typer.Option("--ns", help="Namespace handle to plug it into; without it the endpoint is passive."),
    ] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="A fixed IPv4 address in the range.")] = None,
    mac: Annotated[str | None, typer.Option("--mac", help="A fixed MAC address.")] = None,
    json: ApiJsonFlag = False,
) -> None:
    """Create an endpoint on the agent's host, active in --ns if given."""
    with _api(ctx) as client:
        endpoint = client.endpoint_create(
            network_id=network, ns_handle_path=ns, ipv4_address=ip, mac_address=mac
        )
    if json:
        _print_json(EndpointResponse(endpoint=endpoint))
        return
    typer.echo("New endpoint created:")
    typer.echo(_endpoints_table([endpoint]))


@app.command("endpoint-delete")
def endpoint_delete(
    ctx: typer.Context,
    endpoint: Annotated[
        str, typer.Option("--endpoint", "-e", help="ID of the endpoint.", show_default=False)
    ],
    json: ApiJsonFlag = False,
) -> None:
    """Delete an endpoint (through any agent) and free its address."""
    with _api(ctx) as client:
        client.endpoint_delete(endpoint)
    if json:
        _print_json({})
    else:
        typer.echo(f"Endpoint {endpoint} deleted")


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


@contextlib.contextmanager
def _api(ctx: typer.Context) -> Iterator[SandClient]:
    """A client built from the global options; its errors end the command with exit status 1."""
    options = ctx.find_object(ApiOptions) or ApiOptions()
    try:
        client = SandClient(
            options.url,
            timeout=options.timeout,
            cert_file=_str(options.cert_file),
            key_file=_str(options.key_file),
            ca_file=_str(options.ca_file),
        )
    except ValueError as exc:
        _fail(str(exc), code=2)
    try:
        with client:
            yield client
    except SandApiError as exc:
        _fail(exc.message)
    except SandClientError as exc:
        _fail(str(exc))


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _fail(message: str, *, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _print_json(document: object) -> None:
    typer.echo(msgspec.json.encode(document).decode())


def _networks_table(networks: Sequence[Network]) -> str:
    return _table(
        ("ID", "NAME", "RANGE", "GATEWAY", "VNI"),
        [(n.id, n.name, n.ip_range, n.gateway, str(n.vxlan_vni)) for n in networks],
    )


def _endpoints_table(endpoints: Sequence[Endpoint]) -> str:
    return _table(
        ("STATE", "ID", "NETWORK", "HOSTNAME", "IP", "MAC", "NS"),
        [
            (
                "ACTIVE" if e.active else "PASSIVE",
                e.id,
                e.network_id,
                e.hostname,
                e.target_veth_ip,
                e.target_veth_mac,
                e.target_netns_path or "-",
            )
            for e in endpoints
        ],
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (header, *rows)
    )


def main() -> None:
    """Console entry point."""
    app()


# `sand-es migrate list|run`: the keyspace migrations (migrations/README.md). Imported
# here, at the end, so the group stays one self-contained block of this module.
from migrations.cli import app as _migrate_app  # noqa: E402

app.add_typer(_migrate_app, name="migrate")

# `sand-es audit log|replay|diff|verify|export|import`: the log's history straight from
# etcd (sand_es/audit/). Imported here, at the end, as one self-contained block.
from sand_es.audit.cli import app as _audit_app  # noqa: E402

app.add_typer(_audit_app, name="audit")
