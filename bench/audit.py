"""How fast the audit tool reads a long log on a real etcd: verify, export, import.

Writes N synthetic events (`bench/replay.py`'s history: valid, busy-cluster shaped, 126
events per append, chained by `EtcdLog` as every append is), then, each with a new client:

- raw read: `EtcdLog.read_raw` alone, every page, nothing checked (the bound for the rest);
- verify: what `sand-es audit verify` does (decode, rules, chain, head), `--rounds` times;
- export: what `sand-es audit export` does, to a temporary file (deleted after);
- import: that file into an empty prefix (`sand-es audit import`), then a verify of the copy;
- replay: the state at the head (`sand-es audit replay --at <head revision>`: read, decode, fold).

    .venv/bin/python bench/audit.py                      # 200 000 events
    .venv/bin/python bench/audit.py --events 1000000     # the big run

The last stdout line is a JSON object (with `events`, `verify_events_per_s`, `log_filter_s`);
the target is verify >= 200 000 events/s. `log_filter_s`: `log --network N --type endpoint.added -o json`
over the whole log.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from _common import EtcdServer, bench_etcd, machine, progress, run_main
from replay import History

from sand_es.audit.cli import Output, _export, _fold, _import, _verify
from sand_es.audit.cli import _log as _audit_log
from sand_es.audit.filters import EventFilter
from sand_es.audit.history import EtcdHistory
from sand_es.audit.when import AtRevision
from sand_es.config import EtcdSettings, parse_hosts
from sand_es.etcdlog import EtcdLog
from sand_es.events import CODEC, START, Position
from sand_es.ports import PendingCommand

TARGET_VERIFY_EVENTS_PER_S: Final = 200_000
EVENTS_PER_APPEND: Final = 126
PREFIX: Final = "/bench/audit"
COPY: Final = "/bench/audit-copy"


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="events written before reading them back")
    parser.add_argument("--rounds", type=int, default=2, help="timed verifies (best kept)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hosts", type=int, default=50)
    return parser.parse_args()


async def _log(server: EtcdServer, prefix: str) -> EtcdLog:
    return await EtcdLog.connect(
        EtcdSettings(hosts=parse_hosts(server.url), prefix=prefix, append_timeout=30.0, read_timeout=30.0)
    )


async def _write(server: EtcdServer, events: int, args: argparse.Namespace) -> float:
    log = await _log(server, PREFIX)
    stream = History(seed=args.seed, hosts=args.hosts).envelopes()
    position: Position = START
    started = last_report = time.perf_counter()
    try:
        for batch in range(0, events, EVENTS_PER_APPEND):
            envelopes = tuple(next(stream) for _ in range(min(EVENTS_PER_APPEND, events - batch)))
            position = (await log.append([PendingCommand(f"batch-{batch}", envelopes)], position))[
                -1
            ].position
            if time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                progress(f"wrote {position.seq} / {events} events")
    finally:
        await log.close()
    return time.perf_counter() - started


async def _raw_read(server: EtcdServer) -> tuple[float, int]:
    log = await _log(server, PREFIX)
    try:
        started, count = time.perf_counter(), 0
        async for page in log.read_raw(START):
            count += len(page)
        return time.perf_counter() - started, count
    finally:
        await log.close()


async def _timed_verify(server: EtcdServer, prefix: str) -> dict[str, Any]:
    log = await _log(server, prefix)
    try:
        report = await _verify(EtcdHistory(log, timeout=30.0), bar=False)
    finally:
        await log.close()
    if not report.ok:
        raise SystemExit(f"verify failed: {report.finding}")
    return {
        "seconds": report.seconds,
        "events_per_s": report.events_per_second,
        "events": report.summary.events,
    }


async def _timed(server: EtcdServer, prefix: str, action: Any) -> float:
    log = await _log(server, prefix)
    try:
        started = time.perf_counter()
        await action(EtcdHistory(log, timeout=30.0))
        return time.perf_counter() - started
    finally:
        await log.close()


async def _timed_log_filter(server: EtcdServer) -> tuple[float, int]:
    """`sand-es audit log --network N --type endpoint.added -o json` over the whole log, output counted."""
    log = await _log(server, PREFIX)
    try:
        first = await log.read_raw(START).__anext__()
        network_id = CODEC.decode(first[0].value).data.network_id  # type: ignore[union-attr]
        event_filter = EventFilter(network_id=network_id, types=frozenset({"endpoint.added"})).checked()
        sink = io.BytesIO()
        wrapper = io.TextIOWrapper(sink, encoding="utf-8")
        saved, sys.stdout = sys.stdout, wrapper
        try:
            started = time.perf_counter()
            await _audit_log(EtcdHistory(log, timeout=30.0), event_filter, False, Output.json, False)
            elapsed = time.perf_counter() - started
        finally:
            wrapper.flush()
            sys.stdout = saved
        return elapsed, sink.getvalue().count(b"\n")
    finally:
        await log.close()


async def _run(server: EtcdServer, args: argparse.Namespace) -> dict[str, Any]:
    progress(f"writing {args.events} events")
    write_s = await _write(server, args.events, args)
    progress(f"wrote them in {write_s:.1f} s")
    raw_s, count = await _raw_read(server)
    progress(f"raw read: {count} events in {raw_s:.2f} s")
    verifies = []
    for round_ in range(args.rounds):
        verifies.append(await _timed_verify(server, PREFIX))
        progress(f"verify round {round_ + 1}: {verifies[-1]}")
    best = min(verifies, key=lambda v: v["seconds"])
    with tempfile.TemporaryDirectory(prefix="sand-es-bench-audit-") as directory:
        dump = Path(directory) / "dump.jsonl"
        export_s = await _timed(server, PREFIX, lambda h: _export(h, dump, bar=False))
        size = dump.stat().st_size
        progress(f"export: {export_s:.2f} s, {size / 1e6:.1f} MB")
        import_s = await _timed(server, COPY, lambda h: _import(h, dump, bar=False))
        progress(f"import: {import_s:.2f} s")
    copy = await _timed_verify(server, COPY)

    async def replay(history: EtcdHistory) -> None:
        head = (await history.pinned_head()).revision
        [snapshot] = await _fold(history, [AtRevision(head)], bar=False)
        assert snapshot.position.seq == args.events

    replay_s = await _timed(server, PREFIX, replay)
    progress(f"replay at the head: {replay_s:.2f} s")
    log_filter_s, shown = await _timed_log_filter(server)
    progress(
        f"log --network <one network> --type endpoint.added -o json: {log_filter_s:.2f} s, {shown} lines"
    )
    return {
        "events": args.events,
        "verify_s": best["seconds"],
        "verify_events_per_s": best["events_per_s"],
        "verify_runs": [v["seconds"] for v in verifies],
        "raw_read_s": round(raw_s, 3),
        "raw_read_events_per_s": round(count / raw_s),
        "verify_vs_raw_read": round(best["seconds"] / raw_s, 3),
        "export_s": round(export_s, 3),
        "export_events_per_s": round(args.events / export_s),
        "export_mb": round(size / 1e6, 1),
        "import_s": round(import_s, 3),
        "import_events_per_s": round(args.events / import_s),
        "copy_verify_s": copy["seconds"],
        "replay_s": round(replay_s, 3),
        "log_filter_s": round(log_filter_s, 3),
        "log_filter_lines": shown,
        "log_filter_events_per_s": round(args.events / log_filter_s),
        "replay_events_per_s": round(args.events / replay_s),
        "write_s": round(write_s, 3),
        "target_verify_events_per_s": TARGET_VERIFY_EVENTS_PER_S,
        "machine": machine(),
    }


def _main() -> dict[str, Any]:
    args = _parse_args()
    with bench_etcd() as server:
        return asyncio.run(_run(server, args))


if __name__ == "__main__":
    run_main(_main)
