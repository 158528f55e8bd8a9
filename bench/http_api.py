"""Latency and throughput of the agent's HTTP API, through uvicorn on loopback.

Starts its own etcd, then a real agent (`sand-es agent`, a subprocess, LOG_LEVEL=warning,
LOG_FORMAT=json) on a free loopback port, waits for `GET /health` = 200, and measures
with httpx:

- sequential, one keep-alive `httpx.Client`: `GET /version` (the baseline: HTTP +
  uvicorn + Starlette, no service, no etcd), `POST /networks` (one CreateNetwork: decide,
  append to etcd, fold), `GET /networks/{id}`, and `GET /networks` with 1000 networks;
- 32 concurrent tasks, each on its own keep-alive connection of a bare asyncio HTTP/1.1
  client (`RawConnection`, cheap enough that the agent, not the client, is the limit):
  `GET /version`, `GET /networks/{id}` (reads) and `POST /networks` (writes), requests/s;
  then the same three series through one `httpx.AsyncClient` with a pool of 32
  connections (`httpx_pool_…` keys), which this machine's client CPU caps far lower.

CPU seconds of the agent, of etcd and of this process are read around every measured
series (`/proc/<pid>/stat`), and reported per request.

Every network gets its own /28 inside 198.18.0.0/15 (networks are only stored). Then, in
this process, the `GET /networks` handler on an in-memory log with the same 1000
networks is timed piece by piece (building the bodies, encoding, the whole ASGI call)
and profiled with cProfile, to show where its time goes.

    .venv/bin/python bench/http_api.py
    .venv/bin/python bench/http_api.py --posts 1000 --requests-c32 5000 --no-profile

The last stdout line is a JSON object (see docs/benchmarks.md for its keys).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib.util
import io
import ipaddress
import itertools
import os
import pstats
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
from _common import REPO_ROOT, EtcdServer, bench_etcd, machine, ms, percentile, progress, ratio, run_main
from starlette.applications import Starlette

from sand_es import logs
from sand_es.commands import CreateNetwork
from sand_es.config import AgentSettings, EtcdSettings
from sand_es.daemon import policy_of
from sand_es.http import schemas, views
from sand_es.http.app import create_app
from sand_es.memlog import MemoryLog
from sand_es.service import Service
from sand_es.views import LiveViews
from tests.e2e.agents import agent_environment

TARGET_POST_P50_MS: Final = 5.0
GO_AGENT_POST_P50_MS: Final = 26.0  # the figure for SAND's Go agent, not measured here
AGENT_COMMAND: Final = [sys.executable, "-c", "from sand_es.cli import main; main()", "agent"]
READY_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
CONCURRENCY: Final = 32
# Every network gets its own /28 of 198.18.0.0/15 (RFC 2544's benchmarking range): 8192 blocks.
RANGE_BASE: Final = int(ipaddress.IPv4Address("198.18.0.0"))
RANGE_BLOCK: Final = 16
RANGE_BLOCKS: Final = 2**17 // RANGE_BLOCK


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", type=int, default=1000, help="sequential GET /version (baseline)")
    parser.add_argument("--posts", type=int, default=500, help="sequential POST /networks measured")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests before each series")
    parser.add_argument("--networks", type=int, default=1000, help="networks present for GET /networks")
    parser.add_argument("--lists", type=int, default=200, help="sequential GET /networks measured")
    parser.add_argument("--shows", type=int, default=1000, help="sequential GET /networks/{id} measured")
    parser.add_argument(
        "--requests-c32", type=int, default=3000, help="requests per series at concurrency 32"
    )
    parser.add_argument(
        "--httpx-requests-c32",
        type=int,
        default=1000,
        help="requests per series at concurrency 32 through one httpx.AsyncClient pool (0 skips)",
    )
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the in-process breakdown and cProfile of GET /networks",
    )
    args = parser.parse_args()
    for name in ("versions", "posts", "networks", "lists", "shows", "requests_c32"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.httpx_requests_c32 < 0:
        parser.error("--warmup and --httpx-requests-c32 cannot be negative")
    if args.networks < args.posts + args.warmup:
        parser.error("--networks must be at least --posts + --warmup (the posts count among them)")
    writes = args.networks + 3 * max(args.warmup, CONCURRENCY) + args.requests_c32 + args.httpx_requests_c32
    if writes > RANGE_BLOCKS:
        parser.error(f"at most {RANGE_BLOCKS} networks fit in 198.18.0.0/15 as /28s")
    return args


# -- the agent --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc; NaN if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    # After the ')' that ends the command name, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Agent:
    """One `sand-es agent` subprocess on loopback, its stderr in a temporary file."""

    def __init__(self, etcd: EtcdServer, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = log_dir / "agent.stderr"
        variables = {
            "ETCD_HOSTS": etcd.url,
            "ETCD_PREFIX": f"/bench-http-{uuid.uuid4().hex[:8]}",
            "HTTP_HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PEER_HOSTNAME": "bench-agent",
            "PEER_IP": "127.0.0.1",
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
        }
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                AGENT_COMMAND,
                cwd=REPO_ROOT,
                env=agent_environment(variables),  # nothing of this shell's agent settings
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self) -> float:
        """Poll `GET /health` until 200 (bounded); the seconds it took."""
        started = time.monotonic()
        deadline = started + READY_TIMEOUT
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the agent exited with {self.process.returncode}:\n{self.stderr_tail()}"
                    )
                try:
                    if client.get("/health").status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"the agent was not ready after {READY_TIMEOUT:g} s:\n{self.stderr_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, wait up to 10 s, then SIGKILL; the exit status. Only ever our own PID."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                progress(f"the agent (pid {self.pid}) ignored SIGTERM for {STOP_TIMEOUT:g} s: SIGKILL")
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        return self.process.returncode


@contextmanager
def running_agent(etcd: EtcdServer) -> Iterator[Agent]:
    """An agent on `etcd`, stopped by PID however the block ends."""
    with tempfile.TemporaryDirectory(prefix="sand-es-bench-http-") as log_dir:
        agent = Agent(etcd, Path(log_dir))
        try:
            progress(f"agent started (pid {agent.pid}) on {agent.url}; waiting for GET /health = 200")
            took = agent.wait_ready()
            progress(f"agent ready after {took:.2f} s")
            yield agent
        finally:
            status = agent.stop()
            progress(f"agent (pid {agent.pid}) stopped, exit status {status}")
            lines = agent.stderr_tail(1000).splitlines()
            errors = [line for line in lines if '"level": "error"' in line or '"level": "critical"' in line]
            if errors:
                progress(f"the agent logged {len(errors)} error line(s), the last: {errors[-1][:300]}")


# -- requests ---------------------------------------------------------------------------------------


class Ranges:
    """Distinct /28 blocks of 198.18.0.0/15, handed out in order."""

    def __init__(self) -> None:
        self._next = itertools.count()

    def take(self) -> str:
        i = next(self._next)
        if i >= RANGE_BLOCKS:
            raise RuntimeError("198.18.0.0/15 has no /28 left")
        return f"{ipaddress.IPv4Address(RANGE_BASE + i * RANGE_BLOCK)}/28"


def _check(response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code}, "
            f"expected {status}: {response.text[:300]}"
        )
    return response


def _sequential(count: int, one: Callable[[int], None]) -> list[float]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        one(i)
        latencies.append(time.perf_counter() - started)
    return latencies


async def _concurrently(
    concurrency: int, total: int, one: Callable[[int, int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run `one(task, i)` for i in range(total) from `concurrency` tasks; (elapsed, latencies)."""
    counter = itertools.count()
    latencies: list[float] = []

    async def caller(task: int) -> None:
        while (i := next(counter)) < total:
            started = time.perf_counter()
            await one(task, i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller(task) for task in range(min(concurrency, total))))
    return time.perf_counter() - started, latencies


class RawConnection:
    """A bare HTTP/1.1 keep-alive connection on asyncio streams: the cheapest load generator.

    It writes a request and reads the status line, the headers and a Content-Length body
    (uvicorn always sends one for these routes), nothing else: ~0.05 ms of CPU a request,
    where `httpx` needs 0.4 ms (sync) to 2.6 ms (an `AsyncClient` pool with 32 in flight).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + (body or b""))
        async with asyncio.timeout(30):
            lines = (await self._reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                elif name.strip().lower() == b"transfer-encoding":
                    raise RuntimeError(f"{method} {path}: a chunked response, which this client cannot read")
            content = await self._reader.readexactly(length)
        return int(lines[0].split()[1]), content

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class CpuMeter:
    """CPU seconds used by the agent, etcd and this process over a phase."""

    def __init__(self, agent_pid: int, etcd_pid: int) -> None:
        self._pids = {"agent": agent_pid, "etcd": etcd_pid}

    def _now(self) -> dict[str, float]:
        return {name: _cpu_seconds(pid) for name, pid in self._pids.items()} | {"client": time.process_time()}

    @contextmanager
    def phase(self, into: dict[str, float]) -> Iterator[None]:
        before = self._now()
        yield
        after = self._now()
        into.update({name: after[name] - before[name] for name in after})


def _per_request(cpu: dict[str, float], requests: int) -> dict[str, float]:
    return {name: ms(seconds / requests) for name, seconds in cpu.items()}


def _summary(name: str, latencies: list[float]) -> str:
    return (
        f"{name}: p50 {ms(percentile(latencies, 50))} ms, p99 {ms(percentile(latencies, 99))} ms "
        f"over {len(latencies)}"
    )


def _sequential_phase(
    agent: Agent, meter: CpuMeter, ranges: Ranges, args: argparse.Namespace
) -> tuple[dict[str, Any], list[str]]:
    result: dict[str, Any] = {}
    cpu: dict[str, dict[str, float]] = {}
    ids: list[str] = []
    with httpx.Client(base_url=agent.url, timeout=30.0) as client:

        def version(_: int) -> None:
            _check(client.get("/version"), 200)

        def create(_: int) -> None:
            body = _check(client.post("/networks", json={"ip_range": ranges.take()}), 201).json()
            ids.append(body["network"]["id"])

        def show(i: int) -> None:
            _check(client.get(f"/networks/{ids[i % len(ids)]}"), 200)

        listed: list[int] = []

        def list_all(_: int) -> None:
            listed.append(len(_check(client.get("/networks"), 200).content))

        _sequential(args.warmup, version)
        with meter.phase(cpu.setdefault("version", {})):
            versions = _sequential(args.versions, version)
        progress(_summary("GET /version, sequential", versions))

        _sequential(args.warmup, create)
        with meter.phase(cpu.setdefault("post", {})):
            posts = _sequential(args.posts, create)
        progress(_summary("POST /networks, sequential", posts))

        missing = args.networks - len(ids)
        progress(f"creating {missing} more networks (unmeasured) to reach {args.networks}")
        _sequential(missing, create)
        present = len(_check(client.get("/networks"), 200).json()["networks"])
        if present != args.networks:
            raise RuntimeError(f"GET /networks lists {present} networks, expected {args.networks}")

        _sequential(min(args.warmup, 10), list_all)
        with meter.phase(cpu.setdefault("list", {})):
            lists = _sequential(args.lists, list_all)
        progress(_summary(f"GET /networks with {args.networks} networks, sequential", lists))

        _sequential(args.warmup, show)
        with meter.phase(cpu.setdefault("show", {})):
            shows = _sequential(args.shows, show)
        progress(_summary("GET /networks/{id}, sequential", shows))

    count = args.networks
    result |= {
        "version_p50_ms": ms(percentile(versions, 50)),
        "version_p99_ms": ms(percentile(versions, 99)),
        "post_networks_p50_ms": ms(percentile(posts, 50)),
        "post_networks_p99_ms": ms(percentile(posts, 99)),
        f"get_networks_{count}_p50_ms": ms(percentile(lists, 50)),
        f"get_networks_{count}_p99_ms": ms(percentile(lists, 99)),
        f"get_networks_{count}_bytes": listed[-1],
        "get_network_p50_ms": ms(percentile(shows, 50)),
        "get_network_p99_ms": ms(percentile(shows, 99)),
        "cpu_ms_per_request": {
            "version": _per_request(cpu["version"], args.versions),
            "post_networks": _per_request(cpu["post"], args.posts),
            f"get_networks_{count}": _per_request(cpu["list"], args.lists),
            "get_network": _per_request(cpu["show"], args.shows),
        },
    }
    return result, ids


Send = Callable[[int, str, str, bytes | None], Awaitable[tuple[int, bytes]]]


async def _concurrent_series(
    send: Send,
    label: str,
    prefix: str,
    total: int,
    meter: CpuMeter,
    ranges: Ranges,
    ids: list[str],
    warmup: int,
) -> dict[str, Any]:
    """GET /version, GET /networks/{id} and POST /networks from 32 tasks, `total` requests each."""
    shuffled = random.Random(1).sample(ids, len(ids))

    def expect(status: int) -> Callable[[int, str, str, bytes | None], Awaitable[None]]:
        async def one(task: int, method: str, path: str, body: bytes | None) -> None:
            got, content = await send(task, method, path, body)
            if got != status:
                raise RuntimeError(f"{method} {path}: {got}, expected {status}: {content[:300]!r}")

        return one

    ok, created = expect(200), expect(201)

    async def version(task: int, _: int) -> None:
        await ok(task, "GET", "/version", None)

    async def show(task: int, i: int) -> None:
        await ok(task, "GET", f"/networks/{shuffled[i % len(shuffled)]}", None)

    async def create(task: int, _: int) -> None:
        await created(task, "POST", "/networks", b'{"ip_range":"%s"}' % ranges.take().encode())

    result: dict[str, Any] = {}
    cpu: dict[str, dict[str, float]] = {}
    series: list[tuple[str, str, Callable[[int, int], Awaitable[None]]]] = [
        ("version", "GET /version", version),
        ("read", "GET /networks/{id}", show),
        ("write", "POST /networks", create),
    ]
    for key, name, one in series:
        # Every connection used once at least, and the path warmed up.
        await _concurrently(CONCURRENCY, max(warmup, CONCURRENCY), one)
        with meter.phase(cpu.setdefault(key, {})):
            elapsed, latencies = await _concurrently(CONCURRENCY, total, one)
        rps = total / elapsed
        progress(
            f"{label}, {name}, {CONCURRENCY} concurrent: {rps:.0f} requests/s; {_summary(name, latencies)}"
        )
        key_prefix = prefix + {"version": "version_", "read": "", "write": "write_"}[key]
        result |= {
            f"{key_prefix}rps_c32": round(rps, 1),
            f"{key_prefix}p50_ms_c32": ms(percentile(latencies, 50)),
            f"{key_prefix}p99_ms_c32": ms(percentile(latencies, 99)),
        }
    result[f"{prefix}cpu_ms_per_request_c32"] = {key: _per_request(cpu[key], total) for key in cpu}
    return result


async def _concurrent_phase(
    agent: Agent, meter: CpuMeter, ranges: Ranges, ids: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    connections = [await RawConnection.open(agent.port) for _ in range(CONCURRENCY)]
    try:

        async def raw(task: int, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
            return await connections[task].request(method, path, body)

        result |= await _concurrent_series(
            raw, "raw client", "", args.requests_c32, meter, ranges, ids, args.warmup
        )
    finally:
        for connection in connections:
            await connection.close()
    if args.httpx_requests_c32:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=agent.url, timeout=30.0, limits=limits) as client:

            async def pooled(task: int, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
                response = await client.request(method, path, content=body, headers=headers)
                return response.status_code, response.content

            result |= await _concurrent_series(
                pooled, "httpx pool", "httpx_pool_", args.httpx_requests_c32, meter, ranges, ids, args.warmup
            )
    with httpx.Client(base_url=agent.url, timeout=30.0) as client:
        result["networks_at_end"] = len(_check(client.get("/networks"), 200).json()["networks"])
    return result


# -- in-process breakdown of GET /networks -----------------------------------------------------------


def _asgi(
    app: Any, method: str, path: str, status: int, body: Callable[[], bytes] | None = None
) -> Callable[[], Awaitable[bytes]]:
    """One request through the whole Starlette app (middleware included), without a socket."""
    headers = [(b"host", b"127.0.0.1")]
    if body is not None:
        headers.append((b"content-type", b"application/json"))
    scope_template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 9999),
    }

    async def call() -> bytes:
        request_body = b"" if body is None else body()
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": request_body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != status:
                raise RuntimeError(f"{method} {path}: {message['status']}, expected {status}")
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        scope = dict(scope_template)
        scope["headers"] = [*headers, (b"content-length", str(len(request_body)).encode())]
        await app(scope, receive, send)
        return b"".join(chunks)

    return call


def _best_of(rounds: int, count: int, one: Callable[[], object]) -> float:
    """The best mean seconds of one call, over `rounds` rounds of `count` calls."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            one()
        best = min(best, (time.perf_counter() - started) / count)
    return best


async def _breakdown(networks: int) -> dict[str, Any]:
    """Time the pieces of `GET /networks` in this process, on an in-memory log."""
    # The agent's own logging set-up (LOG_LEVEL=warning, JSON), as in the subprocess.
    logs.configure(format="json", level="warning")
    settings = AgentSettings(etcd=EtcdSettings(), hostname="bench-agent", host_ip="127.0.0.1")
    live = LiveViews()
    live.caught_up.set()
    service = Service(MemoryLog(), live, actor=settings.hostname, policy=policy_of(settings))
    app = create_app(service, settings)
    try:
        return await _breakdown_on(app, service, live, settings, networks)
    finally:
        await service.close()


async def _breakdown_on(
    app: Starlette, service: Service, live: LiveViews, settings: AgentSettings, networks: int
) -> dict[str, Any]:
    ranges = Ranges()
    for _ in range(networks):
        await service.execute(CreateNetwork(ip_range=ranges.take()))
    table = live.current.networks.networks
    if len(table) != networks:
        raise RuntimeError(f"the in-memory views hold {len(table)} networks, expected {networks}")
    encoder = msgspec.json.Encoder()

    def build() -> schemas.NetworksResponse:
        return schemas.NetworksResponse(
            networks=[
                views.network(table[k], netns_path=settings.netns_path, netns_prefix=settings.netns_prefix)
                for k in sorted(table)
            ]
        )

    built = build()
    get_all = _asgi(app, "GET", "/networks", 200)
    get_version = _asgi(app, "GET", "/version", 200)
    post = _asgi(app, "POST", "/networks", 201, lambda: b'{"ip_range":"%s"}' % ranges.take().encode())

    # A timed loop of awaits, without the event loop's scheduling in between.
    async def asgi_mean(call: Callable[[], Awaitable[bytes]], count: int) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(count):
                await call()
            best = min(best, (time.perf_counter() - started) / count)
        return best

    sorted_s = _best_of(3, 50, lambda: sorted(table))
    build_s = _best_of(3, 50, build)
    encode_s = _best_of(3, 50, lambda: encoder.encode(built))
    asgi_s = await asgi_mean(get_all, 50)
    version_s = await asgi_mean(get_version, 500)
    body = await get_all()

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(50):
        await get_all()
    profiler.disable()
    post_s = await asgi_mean(post, 100)  # last: it adds networks
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(12)
    progress("cProfile of 50 in-process GET /networks, by own time:\n" + text.getvalue().strip())
    total = sum(row[2] for row in stats.stats.values())
    top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:8]
    return {
        "inproc_networks": networks,
        "inproc_get_networks_ms": ms(asgi_s),
        "inproc_version_ms": ms(version_s),
        "inproc_post_networks_ms": ms(post_s),
        "inproc_sorted_ids_ms": ms(sorted_s),
        "inproc_build_bodies_ms": ms(build_s),
        "inproc_encode_ms": ms(encode_s),
        "inproc_body_bytes": len(body),
        "inproc_profile_top_tottime_pct": {
            f"{Path(file).name}:{line}({func})": round(100 * row[2] / total, 1)
            for (file, line, func), row in top
        },
    }


# -- the run ----------------------------------------------------------------------------------------


def _uvicorn_flavour() -> dict[str, str]:
    """What uvicorn's 'auto' settings pick in this environment (the agent inherits it)."""
    return {
        "uvicorn_http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "uvicorn_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
    }


def _main() -> dict[str, Any]:
    args = _parse_args()
    result: dict[str, Any] = {
        "bench": "http_api",
        "posts": args.posts,
        "networks": args.networks,
        "requests_c32": args.requests_c32,
        "warmup": args.warmup,
    } | _uvicorn_flavour()
    ranges = Ranges()
    with bench_etcd() as server, running_agent(server) as agent:
        meter = CpuMeter(agent.pid, server.pid)
        sequential, ids = _sequential_phase(agent, meter, ranges, args)
        result |= sequential
        result |= asyncio.run(_concurrent_phase(agent, meter, ranges, ids, args))
        agent_rss = Path(f"/proc/{agent.pid}/status").read_text()
        result["agent_max_rss_mb"] = next(
            round(int(line.split()[1]) / 1024) for line in agent_rss.splitlines() if line.startswith("VmHWM:")
        )
    count = args.networks
    result["ratio_post_p50_vs_version"] = ratio(result["post_networks_p50_ms"], result["version_p50_ms"])
    result[f"ratio_get_networks_{count}_p50_vs_version"] = ratio(
        result[f"get_networks_{count}_p50_ms"], result["version_p50_ms"]
    )
    result["ratio_rps_c32_vs_version"] = ratio(result["rps_c32"], result["version_rps_c32"])
    result["ratio_write_rps_c32_vs_version"] = ratio(result["write_rps_c32"], result["version_rps_c32"])
    if "httpx_pool_rps_c32" in result:
        result["ratio_httpx_pool_rps_c32_vs_raw"] = ratio(result["httpx_pool_rps_c32"], result["rps_c32"])
    if args.profile:
        progress(f"in-process breakdown of GET /networks with {count} networks (MemoryLog, no socket)")
        result |= asyncio.run(_breakdown(count))
    result["target_post_networks_p50_ms"] = TARGET_POST_P50_MS
    result["go_agent_post_networks_p50_ms"] = GO_AGENT_POST_P50_MS
    result["machine"] = machine()
    return result


if __name__ == "__main__":
    run_main(_main)
