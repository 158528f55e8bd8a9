"""`sand-es audit`: the log's history, read straight from etcd (no agent needed).

The etcd settings are the agent's (`ETCD_HOSTS`, `ETCD_PREFIX`, the TLS variables);
`--etcd-hosts` and `--prefix` override them. Results go to stdout (a table, or JSON
with `--output json`); errors, warnings and the progress bar go to stderr, so JSON
output can be piped as it is. The bar shows only when stderr is a terminal.

Exit status: 0 done; 1 the command failed (or `verify` found a problem); 2 bad
settings or options (and for `verify`: the log could not be checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, Final, NoReturn, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sand_es.audit import diff as diffs
from sand_es.audit import dump, state
from sand_es.audit.filters import TABLE_HEADER, EventFilter, HostIndex, Matcher, row, table_line
from sand_es.audit.history import CorruptHead, EtcdHistory, PinnedHead, snapshots_at
from sand_es.audit.verify import Finding, Summary, Verifier
from sand_es.audit.when import AtRevision, Point, parse_point, parse_time
from sand_es.config import EtcdSettings
from sand_es.errors import ConfigError, Invalid, LogCorrupt, NotFound, SandError
from sand_es.etcdlog import EtcdLog
from sand_es.events import START, Record
from sand_es.projections import Snapshot
from sand_es.views import no_cyclic_gc

T = TypeVar("T")

app = typer.Typer(
    help=(
        "Audit the log straight from etcd: list and filter its events, replay the state at any "
        "revision or time, diff two points, verify its rules and its tamper-evidence chain, "
        "export and import it. Settings: ETCD_HOSTS, ETCD_PREFIX and the TLS variables, as for "
        "the agent. Exit status 0 done, 1 failed (verify: a problem found), 2 bad settings or "
        "options (verify: the log could not be checked)."
    ),
    no_args_is_help=True,
)


class Output(enum.StrEnum):
    """How results are printed."""

    table = "table"
    json = "json"


EtcdHosts = Annotated[
    str | None, typer.Option("--etcd-hosts", help="etcd endpoints (default: ETCD_HOSTS).", show_default=False)
]
Prefix = Annotated[
    str | None,
    typer.Option("--prefix", help="The log's key prefix (default: ETCD_PREFIX).", show_default=False),
]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table (text) or json (JSON lines for log).")
]
NoProgress = Annotated[
    bool, typer.Option("--no-progress", help="No progress bar (it shows only when stderr is a terminal).")
]

_encoder: Final = msgspec.json.Encoder()


# -- log ------------------------------------------------------------------------------------


@app.command("log")
def log_(
    network: Annotated[str | None, typer.Option("--network", help="Only events of this network.")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Only events of this endpoint.")] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Only events appended by this host (the event's actor) or about an endpoint on it "
            "(the endpoint's hostname, from its endpoint.added): either matches.",
        ),
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only events of this type, e.g. network.created (repeatable)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only events stamped at or after: ISO time, or a time ago (90s, 1h, 2d)."
        ),
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only events stamped at or before it.")] = None,
    from_revision: Annotated[
        int | None,
        typer.Option("--from-revision", min=1, help="Only events written at this revision or later."),
    ] = None,
    to_revision: Annotated[
        int | None,
        typer.Option("--to-revision", min=1, help="Only events written at this revision or before."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then keep printing new events as they are appended.")
    ] = False,
    output: OutputOption = Output.table,
    no_progress: NoProgress = False,
    etcd_hosts: EtcdHosts = None,
    prefix: Prefix = None,
) -> None:
    """List events, oldest first, filtered (every filter given must match).

    JSON lines carry seq, revision, at, actor, command_id, type, id and data (the event).
    """
    now = datetime.now(UTC)
    event_filter = _checked(
        lambda: EventFilter(
            network_id=network,
            endpoint_id=endpoint,
            host=host,
            types=frozenset(types or ()),
            since=None if since is None else parse_time(since, now=now),
            until=None if until is None else parse_time(until, now=now),
            from_revision=from_revision,
            to_revision=to_revision,
        ).checked()
    )
    # `log` prints as it reads: a bar would fight the lines on a terminal.
    progress = not no_progress and not sys.stdout.isatty()
    _run(etcd_hosts, prefix, lambda h: _log(h, event_filter, follow, output, progress))


async def _log(
    history: EtcdHistory, event_filter: EventFilter, follow: bool, output: Output, bar: bool
) -> None:
    pinned = await history.pinned_head()
    head = pinned.position
    hosts = HostIndex() if event_filter.needs_hosts else None
    matcher = Matcher(event_filter, hosts)
    start = START
    if hosts is None and event_filter.from_revision is not None:
        # Without a host to place endpoints on, nothing before the range is needed.
        start = await history.position_at(event_filter.from_revision - 1, head)
    last = head.seq
    if event_filter.to_revision is not None:
        last = (await history.position_at(event_filter.to_revision, head)).seq
    if output is Output.table:
        _write(TABLE_HEADER + "\n")

    def show(page: list[Record]) -> None:
        if hosts is not None:
            hosts.learn(page)
        if output is Output.json:
            lines = [_encoder.encode(row(r)) for r in page if matcher(r)]
            _write(b"".join(line + b"\n" for line in lines))
        else:
            _write("".join(table_line(r) + "\n" for r in page if matcher(r)))

    with _Bar("reading", total=last - start.seq, enabled=bar) as progress:
        async for page in history.records(start, last):
            show(page)
            progress.advance(len(page))
    if not follow or (event_filter.to_revision is not None and event_filter.to_revision <= head.rev):
        return
    sys.stdout.flush()
    async for page in history.log.tail(head):
        show(page)
        sys.stdout.flush()
        if event_filter.to_revision is not None and page[-1].rev > event_filter.to_revision:
            return


# -- replay and diff -------------------------------------------------------------------------


@app.command()
def replay(
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="A revision (digits), or a time (ISO, or a time ago: 1h): the log up to the first "
            "event stamped after it.",
            show_default=False,
        ),
    ],
    output: OutputOption = Output.table,
    no_progress: NoProgress = False,
    etcd_hosts: EtcdHosts = None,
    prefix: Prefix = None,
) -> None:
    """The whole state at one point: networks, endpoints, VNIs, IPAM per network, peers per host."""
    point = _checked(lambda: parse_point(at, now=datetime.now(UTC)))

    async def action(history: EtcdHistory) -> None:
        [snapshot] = await _fold(history, [point], bar=not no_progress)
        result = state.state_of(snapshot)
        _write(_encoder.encode(result) + b"\n" if output is Output.json else state.render(result) + "\n")

    _run(etcd_hosts, prefix, action)


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="The earlier point: a revision or a time.", show_default=False)],
    b: Annotated[str, typer.Argument(help="The later point: a revision or a time.", show_default=False)],
    output: OutputOption = Output.table,
    no_progress: NoProgress = False,
    etcd_hosts: EtcdHosts = None,
    prefix: Prefix = None,
) -> None:
    """What changed from A to B: networks, endpoints, VNIs, addresses and peers added, removed, changed."""
    now = datetime.now(UTC)
    points = _checked(lambda: [parse_point(a, now=now), parse_point(b, now=now)])

    async def action(history: EtcdHistory) -> None:
        before, after = await _fold(history, points, bar=not no_progress)
        result = diffs.diff(before, after)
        _write(_encoder.encode(result) + b"\n" if output is Output.json else diffs.render(result) + "\n")

    _run(etcd_hosts, prefix, action)


async def _fold(history: EtcdHistory, points: list[Point], *, bar: bool) -> list[Snapshot]:
    """The snapshot at each point, reading the log once and no further than needed."""
    pinned = await history.pinned_head()
    head = pinned.position
    for point in points:
        if isinstance(point, AtRevision) and point.revision > pinned.revision:
            raise NotFound(f"revision {point.revision} is beyond etcd's current revision {pinned.revision}")
    last = head.seq
    if all(isinstance(p, AtRevision) for p in points):
        revisions = [p.revision for p in points if isinstance(p, AtRevision)]
        last = (await history.position_at(max(revisions), head)).seq
    with no_cyclic_gc(), _Bar("replaying", total=last, enabled=bar) as progress:
        return await snapshots_at(history.records(START, last), points, on_page=progress.advance)


# -- verify ----------------------------------------------------------------------------------


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    """What `verify --output json` prints."""

    ok: bool
    finding: Finding | None
    summary: Summary
    head_seq: int
    head_revision: int
    seconds: float
    events_per_second: float


@app.command()
def verify(
    output: OutputOption = Output.table,
    no_progress: NoProgress = False,
    etcd_hosts: EtcdHosts = None,
    prefix: Prefix = None,
) -> None:
    """Decode every event, check the rules by folding, and check the tamper-evidence chain.

    Exit 0 with a summary when all holds; 1 with the first offending seq and revision, and
    why; 2 when the log could not be read.
    """
    report = _run(etcd_hosts, prefix, lambda h: _verify(h, bar=not no_progress), failure_code=2)
    if output is Output.json:
        _write(_encoder.encode(report) + b"\n")
    else:
        _write(_verify_text(report) + "\n")
    if not report.ok:
        raise typer.Exit(1)


async def _verify(history: EtcdHistory, *, bar: bool) -> VerifyReport:
    started = time.perf_counter()
    verifier = Verifier()
    try:
        pinned = await history.pinned_head()
    except CorruptHead as exc:
        return _report(verifier, None, Finding(seq=0, revision=exc.revision, reason=str(exc)), started)
    head = pinned.position
    finding = None
    with no_cyclic_gc(), _Bar("verifying", total=head.seq, enabled=bar) as progress:
        async for page in history.raw(START, head.seq):
            finding = verifier.feed(page)
            if finding is not None:
                break
            progress.advance(len(page))
    finding = finding or verifier.finish(pinned.head)
    if finding is None:
        beyond = await history.first_event_after(head.seq, pinned.revision)
        if beyond is not None:
            key, revision = beyond
            finding = Finding(
                seq=head.seq + 1,
                revision=revision,
                reason=f"{key} is stored beyond the head (event {head.seq}): written without the head, "
                "or the head was rolled back",
            )
    return _report(verifier, pinned, finding, started)


def _report(
    verifier: Verifier, pinned: PinnedHead | None, finding: Finding | None, started: float
) -> VerifyReport:
    seconds = time.perf_counter() - started
    summary = verifier.summary()
    head = None if pinned is None else pinned.head
    return VerifyReport(
        ok=finding is None,
        finding=finding,
        summary=summary,
        head_seq=0 if head is None else head.seq,
        head_revision=0 if head is None else head.revision,
        seconds=round(seconds, 3),
        events_per_second=round(verifier.seq / seconds) if seconds else 0.0,
    )


def _verify_text(report: VerifyReport) -> str:
    s = report.summary
    speed = f"{report.seconds:.2f} s, {report.events_per_second:.0f} events/s"
    if report.finding is not None:
        f = report.finding
        where = f"seq {f.seq}" + (f" (revision {f.revision})" if f.revision else "")
        return f"FAILED at {where}: {f.reason}\n(checked {s.events} events before it; {speed})"
    if not s.events:
        return f"OK: the log is empty ({speed})"
    lines = [
        f"OK: {s.events} events verified ({speed}): numbering, decoding, rules and chain",
        f"head: seq {report.head_seq} at revision {report.head_revision}, digest {s.last_digest}",
        f"state: {s.networks} networks, {s.endpoints} endpoints",
    ]
    if s.unchained:
        lines.append(
            f"warning: the first {s.unchained} events were stored before the chain existed: "
            "they are not tamper-evident"
        )
    lines.append("keep the head digest elsewhere: a log rewritten as a whole can only be caught against it")
    return "\n".join(lines)


# -- export and import -----------------------------------------------------------------------


@app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="Where to write the dump ('-': stdout).", show_default=False)],
    no_progress: NoProgress = False,
    etcd_hosts: EtcdHosts = None,
    prefix: Prefix = None,
) -> None:
    """Dump the log to a portable, versioned file (JSON lines, values byte for byte)."""
    summary = _run(etcd_hosts, prefix, lambda h: _export(h, file, bar=not no_progress))
    typer.echo(summary, err=True)


async def _export(history: EtcdHistory, file: Path, *, bar: bool) -> str:
    pinned = await history.pinned_head()
    head = pinned.position
    header = dump.Header(
        prefix=history.keys.prefix,
        head=None if pinned.raw is None else bytes(pinned.raw).decode(),
        events=head.seq,
        revision=pinned.revision,
        exported_at=datetime.now(UTC),
    )
    commands = others = 0
    with _output_file(file) as out:
        out.write(dump.header_line(header))
        seq = 0
        with _Bar("exporting", total=head.seq, enabled=bar) as progress:
            async for page in history.raw(START, head.seq):
                for stored in page:
                    if stored.seq != seq + 1:
                        raise LogCorrupt(
                            f"event {seq + 1} is missing: a damaged log cannot be exported "
                            "(see `sand-es audit verify`)"
                        )
                    seq = stored.seq
                    out.write(dump.event_line(stored.seq, stored.rev, stored.value))
                progress.advance(len(page))
        if seq != head.seq:
            raise LogCorrupt(f"the head names event {head.seq}, the log ends at {seq}: a damaged log")
        async for commands_page in history.commands():
            for command_id, value in commands_page:
                # Read now rather than pinned (a long export may outlive the pin's
                # compaction): a command appended since names events past the head.
                if _command_within(value, head.seq):
                    out.write(dump.command_line(command_id, value))
                    commands += 1
        async for key, value in history.other_keys():
            out.write(dump.key_line(key, value))
            others += 1
        out.write(dump.footer_line(dump.Footer(events=seq, commands=commands, keys=others)))
    return (
        f"exported {seq} events, {commands} command keys and {others} other keys of {history.keys.prefix} "
        f"(revision {pinned.revision}) to {file}"
    )


class _CommandKey(msgspec.Struct):
    first: int
    count: int


_command_decoder: Final = msgspec.json.Decoder(_CommandKey)


def _command_within(value: bytes, last_seq: int) -> bool:
    try:
        where = _command_decoder.decode(value)
    except msgspec.MsgspecError:
        return True  # not ours to judge here: kept as it is (verify reads the events only)
    return where.first + where.count - 1 <= last_seq


@contextlib.contextmanager
def _output_file(file: Path) -> Iterator[IO[bytes]]:
    """`file` written through a temporary name, renamed once complete: a failed export leaves no dump."""
    if str(file) == "-":
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    partial = file.with_name(file.name + ".partial")
    try:
        with partial.open("wb") as out:
            yield out
        partial.replace(file)
    finally:
        partial.unlink(missing_ok=True)


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(help="A dump written by export.", exists=True, dir_okay=False, show_default=False),
    ],
    no_progress: NoProgress = False,
    etcd_hosts: EtcdHosts = None,
    prefix: Prefix = None,
) -> None:
    """Restore a dump into an EMPTY prefix (refused otherwise, nothing written).

    The file is checked whole before anything is written; the head is written last, with
    the last event, so agents see nothing until the log is complete. Import into a prefix
    no agent uses, then verify it and point agents at it.
    """
    summary = _run(etcd_hosts, prefix, lambda h: _import(h, file, bar=not no_progress))
    typer.echo(summary)


async def _import(history: EtcdHistory, file: Path, *, bar: bool) -> str:
    header: dump.Header | None = None
    with file.open("rb") as lines:
        for item in dump.read_lines(lines):  # the whole file, before writing anything
            if isinstance(item, dump.Header):
                header = item
    assert header is not None  # read_lines raises on a file without one
    found = await history.key_count()
    if found:
        raise Invalid(
            f"{history.keys.prefix}/ holds {found} key(s): import writes only into an empty prefix "
            "(nothing was written)"
        )
    events = 0
    with file.open("rb") as lines, _Bar("importing", total=header.events, enabled=bar) as progress:

        def written(batch: dump.Batch) -> None:
            nonlocal events
            count = sum(1 for key, _ in batch.puts if key.startswith(history.keys.events))
            events += count
            progress.advance(count)

        transactions = await history.write_all(
            dump.plan(dump.read_lines(lines), history.keys), on_written=written
        )
    return (
        f"imported {events} events into {history.keys.prefix} in {transactions} transactions "
        f"(from {header.prefix}, exported at revision {header.revision}); "
        f"check it with: sand-es audit verify --prefix {history.keys.prefix}"
    )


# -- the shell's plumbing --------------------------------------------------------------------


class _Bar:
    """A progress bar on stderr (rich), or nothing when it is disabled or stderr is not a terminal."""

    def __init__(self, description: str, *, total: int, enabled: bool) -> None:
        console = Console(stderr=True)
        self._progress: Progress | None = None
        if enabled and console.is_terminal and total > 0:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("events"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._task = self._progress.add_task(description, total=total)

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, count: int) -> None:
        """`count` more events done."""
        if self._progress is not None:
            self._progress.advance(self._task, count)


def _write(text: str | bytes) -> None:
    if isinstance(text, bytes):
        sys.stdout.buffer.write(text)
    else:
        sys.stdout.write(text)


def _checked(build: Callable[[], T]) -> T:
    """Options parsed; an impossible one is a usage error (exit 2)."""
    try:
        return build()
    except Invalid as exc:
        _fail(str(exc), code=2)


def _run(
    etcd_hosts: str | None,
    prefix: str | None,
    action: Callable[[EtcdHistory], Awaitable[T]],
    *,
    failure_code: int = 1,
) -> T:
    """Connect with the agent's settings (options first), run `action`, and turn errors into exits."""
    overrides = {"ETCD_HOSTS": etcd_hosts, "ETCD_PREFIX": prefix}
    environ = {**os.environ, **{name: value for name, value in overrides.items() if value is not None}}
    try:
        settings = EtcdSettings.from_env(environ)
    except ConfigError as exc:
        _fail(str(exc), code=2)
    try:
        return asyncio.run(_connected(settings, action))
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other Unix tools do.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except SandError as exc:
        _fail(str(exc), code=failure_code)
    except KeyboardInterrupt:
        _fail("interrupted", code=130)


async def _connected(settings: EtcdSettings, action: Callable[[EtcdHistory], Awaitable[T]]) -> T:
    async with _history(settings) as history:
        result = await action(history)
        sys.stdout.flush()
        return result


@contextlib.asynccontextmanager
async def _history(settings: EtcdSettings) -> AsyncIterator[EtcdHistory]:
    log = await EtcdLog.connect(settings)
    try:
        yield EtcdHistory(log, timeout=settings.read_timeout)
    finally:
        await log.close()


def _fail(message: str, *, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
