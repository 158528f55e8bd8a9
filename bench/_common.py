"""What the benchmarks share: a throwaway etcd, a client, progress lines and the result line.

Every benchmark starts its own etcd on free loopback ports with its own temporary data
directory (the test suite's `EtcdServer`), or its own namespace rig (`bench/_rig.py`),
and removes it all when it ends, also on an error, Ctrl-C or SIGTERM. Progress goes to
stderr; the result is one JSON object, the last line of stdout, so `... | tail -n 1 | jq`
always works.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import structlog  # noqa: E402
from etcd3aio import Etcd3Client  # noqa: E402

from sand_es.config import EtcdSettings, parse_hosts  # noqa: E402
from sand_es.etcdlog import open_client  # noqa: E402
from tests.support.etcd_server import ETCD_BINARY, EtcdServer  # noqa: E402

__all__ = [
    "REPO_ROOT",
    "EtcdServer",
    "bench_etcd",
    "connect",
    "emit",
    "machine",
    "ms",
    "percentile",
    "progress",
    "ratio",
    "run_main",
    "sigterm_unwinds",
]

# sand_es logs through structlog, whose default logger prints to stdout: keep stdout for
# the result line and let only warnings through, to stderr.
structlog.configure(
    wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    logger_factory=structlog.PrintLoggerFactory(sys.stderr),
)

_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One human-readable progress line on stderr, stamped with the seconds since start."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """Print the result: one JSON object, the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=False), flush=True)


def run_main(
    body: Callable[[], dict[str, Any]],
    *,
    interrupted: str = "interrupted: etcd is stopped and its data directory removed",
) -> None:
    """Run a benchmark and print its result line; Ctrl-C or SIGTERM exits with status 130."""
    try:
        result = body()
    except KeyboardInterrupt:
        progress(interrupted)
        raise SystemExit(130) from None
    emit(result)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so `with` blocks clean up.
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Inside the block, SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so cleanups run."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def bench_etcd(extra_args: Sequence[str] = ()) -> Iterator[EtcdServer]:
    """A fresh single-member etcd on loopback, stopped and deleted however the block ends."""
    with sigterm_unwinds():
        progress("starting etcd on a free loopback port")
        with EtcdServer(extra_args=extra_args) as server:
            progress(f"etcd is up at {server.url} (data in {server.data_dir})")
            try:
                yield server
            finally:
                progress("stopping etcd and removing its data directory")


async def connect(server: EtcdServer) -> Etcd3Client:
    """A new etcd3aio client, configured exactly as the daemon configures its own."""
    return await open_client(EtcdSettings(hosts=parse_hosts(server.url)))


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (0..100), linearly interpolated between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    """Seconds to milliseconds, rounded for the result line."""
    return round(seconds * 1000, 3)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator rounded for the result line (NaN if the denominator is 0)."""
    return round(numerator / denominator, 3) if denominator else math.nan


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        etcd = subprocess.run(
            [str(ETCD_BINARY), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        etcd = "unknown"
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "etcd": etcd.removeprefix("etcd Version: "),
        "load_1m": round(os.getloadavg()[0], 2),
        # Peak resident memory of this process (ru_maxrss is in KiB on Linux).
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
