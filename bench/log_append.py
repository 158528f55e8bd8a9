"""Commands per second and latency of `Service.execute(CreateNetwork(...))` on a real etcd.

One agent (an `EtcdLog`, its `LiveViews` following the log's tail, and a `Service`) runs
CreateNetwork commands from 1, 8 and 32 concurrent callers, each level on a fresh key
prefix and after a warm-up. A caller's latency is the wall time of one `execute` (decide,
group commit in one etcd transaction, fold into the views). The baseline, measured in the
same run against the same etcd, is a raw etcd3aio `kv.put` of a ~500-byte value: one at a
time (latency) and 32 in flight (puts per second).

    .venv/bin/python bench/log_append.py                # the default run
    .venv/bin/python bench/log_append.py --levels 1,8,32,64 --commands-c1 1000

The last stdout line is a JSON object (see docs/benchmarks.md for its keys).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from _common import EtcdServer, bench_etcd, connect, machine, ms, percentile, progress, ratio, run_main
from etcd3aio import Etcd3Client
from etcd3aio._protobuf import Compare
from etcd3aio.kv import KVService

from sand_es.commands import CreateNetwork
from sand_es.etcdlog import EtcdLog
from sand_es.service import Service
from sand_es.views import LiveViews

TARGET_CPS_C32 = 1000.0
TARGET_P50_MS_C1 = 5.0
PUT_VALUE = b"v" * 500


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--levels", default="1,8,32", help="comma list of concurrency levels (default 1,8,32)"
    )
    parser.add_argument("--commands-c1", type=int, default=500, help="measured commands at concurrency 1")
    parser.add_argument("--commands", type=int, default=3000, help="measured commands at every other level")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up commands before each level")
    parser.add_argument("--puts", type=int, default=1000, help="sequential baseline puts (after warm-up)")
    parser.add_argument("--puts-c32", type=int, default=5000, help="baseline puts with 32 in flight")
    parser.add_argument(
        "--no-tail",
        dest="tail",
        action="store_false",
        help="do not run the views' tail (a real agent always follows the log)",
    )
    args = parser.parse_args()
    args.levels = [int(level) for level in args.levels.split(",") if level.strip()]
    if not args.levels or min(args.levels) < 1:
        parser.error("--levels needs positive integers")
    for name in ("commands_c1", "commands", "puts", "puts_c32"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


async def _run_concurrently(
    concurrency: int, total: int, one: Callable[[int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run `one(i)` for i in range(total) from `concurrency` callers; (elapsed, latencies)."""
    counter = itertools.count()
    latencies: list[float] = []

    async def caller() -> None:
        while (i := next(counter)) < total:
            started = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(min(concurrency, total))))
    return time.perf_counter() - started, latencies


# -- baseline -----------------------------------------------------------------------------------


async def _baseline(client: Etcd3Client, args: argparse.Namespace) -> dict[str, Any]:
    kv = client.kv
    assert kv is not None
    run = uuid.uuid4().hex[:8]

    async def put(i: int) -> None:
        await kv.put(f"/bench/put/{run}/{i:08d}".encode(), PUT_VALUE)

    await _run_concurrently(1, 100, put)
    _, sequential = await _run_concurrently(1, args.puts, put)
    progress(
        f"baseline put, sequential: p50 {ms(percentile(sequential, 50))} ms, "
        f"p99 {ms(percentile(sequential, 99))} ms over {args.puts} puts"
    )
    elapsed, in_flight = await _run_concurrently(32, args.puts_c32, put)
    puts_c32 = args.puts_c32 / elapsed
    progress(f"baseline put, 32 in flight: {puts_c32:.0f} puts/s, p50 {ms(percentile(in_flight, 50))} ms")

    # An append of one CreateNetwork is a transaction of that shape: compare the head's
    # mod_revision and the command key's absence, put the event, the command key and the head.
    head = f"/bench/txn/{run}/head".encode()
    await kv.put(head, b"0")

    async def txn(i: int) -> None:
        current = (await kv.get(head)).kvs[0].mod_revision if i == 0 else txn_state["rev"]
        response = await kv.txn(
            [
                Compare(result=Compare.EQUAL, target=Compare.MOD, key=head, mod_revision=current),
                KVService.txn_compare_version(f"/bench/txn/{run}/commands/{i}".encode(), 0),
            ],
            [
                KVService.txn_op_put(f"/bench/txn/{run}/events/{i:016d}".encode(), PUT_VALUE),
                KVService.txn_op_put(f"/bench/txn/{run}/commands/{i}".encode(), b'{"first":1,"count":1}'),
                KVService.txn_op_put(head, str(i).encode()),
            ],
        )
        assert response.succeeded
        txn_state["rev"] = response.header.revision

    txn_state: dict[str, int] = {}
    _, txns = await _run_concurrently(1, args.puts, txn)
    progress(f"baseline append-shaped txn, sequential: p50 {ms(percentile(txns, 50))} ms")
    return {
        "baseline_put_p50_ms": ms(percentile(sequential, 50)),
        "baseline_put_p99_ms": ms(percentile(sequential, 99)),
        "baseline_puts_c32": round(puts_c32, 1),
        "baseline_put_p50_ms_c32": ms(percentile(in_flight, 50)),
        "baseline_txn_p50_ms": ms(percentile(txns, 50)),
    }


# -- the service ----------------------------------------------------------------------------------


def _ip_range(i: int) -> str:
    # Distinct /24s (10.0.0.0/24 … 10.255.255.0/24), as distinct networks would have.
    return f"10.{(i >> 8) & 255}.{i & 255}.0/24"


async def _level(
    client: Etcd3Client, concurrency: int, commands: int, args: argparse.Namespace
) -> dict[str, Any]:
    prefix = f"/bench/append/c{concurrency}-{uuid.uuid4().hex[:8]}"
    log = EtcdLog(client, prefix=prefix)
    views = LiveViews()
    follower = asyncio.create_task(views.follow(log)) if args.tail else None
    if follower is not None:
        await views.caught_up.wait()
    service = Service(log, views, actor="bench-agent")
    revisions: set[int] = set()
    ranges = itertools.count()

    async def create(_: int) -> None:
        outcome = await service.execute(CreateNetwork(ip_range=_ip_range(next(ranges))))
        revisions.add(outcome.records[-1].rev)

    try:
        await _run_concurrently(concurrency, args.warmup, create)
        revisions.clear()
        elapsed, latencies = await _run_concurrently(concurrency, commands, create)
        networks = len(views.current.networks.networks)
        if networks != args.warmup + commands:
            raise RuntimeError(f"the views hold {networks} networks, expected {args.warmup + commands}")
    finally:
        await service.close()
        if follower is not None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        await log.close()
    cps = commands / elapsed
    result = {
        f"p50_ms_c{concurrency}": ms(percentile(latencies, 50)),
        f"p99_ms_c{concurrency}": ms(percentile(latencies, 99)),
        f"cps_c{concurrency}": round(cps, 1),
        f"commands_per_append_c{concurrency}": round(commands / max(len(revisions), 1), 2),
    }
    progress(
        f"c{concurrency}: {commands} commands in {elapsed:.2f} s = {cps:.0f} cmd/s, "
        f"p50 {result[f'p50_ms_c{concurrency}']} ms, p99 {result[f'p99_ms_c{concurrency}']} ms, "
        f"{result[f'commands_per_append_c{concurrency}']} commands per append"
    )
    return result


async def _run(server: EtcdServer, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"bench": "log_append", "tail": args.tail, "warmup": args.warmup}
    client = await connect(server)
    try:
        baseline = await _baseline(client, args)
        for concurrency in args.levels:
            commands = args.commands_c1 if concurrency == 1 else args.commands
            result[f"commands_c{concurrency}"] = commands
            result |= await _level(client, concurrency, commands, args)
    finally:
        await client.close()
    result |= baseline
    if "p50_ms_c1" in result:
        result["ratio_p50_c1_vs_put"] = ratio(result["p50_ms_c1"], baseline["baseline_put_p50_ms"])
        result["ratio_p50_c1_vs_txn"] = ratio(result["p50_ms_c1"], baseline["baseline_txn_p50_ms"])
    if "cps_c32" in result:
        result["ratio_cps_c32_vs_puts_c32"] = ratio(result["cps_c32"], baseline["baseline_puts_c32"])
    result["target_cps_c32"] = TARGET_CPS_C32
    result["target_p50_ms_c1"] = TARGET_P50_MS_C1
    result["machine"] = machine()
    return result


def _main() -> dict[str, Any]:
    args = _parse_args()
    with bench_etcd() as server:
        return asyncio.run(_run(server, args))


if __name__ == "__main__":
    run_main(_main)
