"""How fast a new endpoint on one host reaches the other host's kernel.

A rig of two hosts (`tests/support/rig.py`), both agents with default settings, one
network (198.18.0.0/22) with one endpoint on host 2, so that host 2 has the network's
overlay namespace. Before the trials, a netlink socket is opened inside that namespace
and bound to RTMGRP_NEIGH; a thread blocks on it and stamps every RTM_NEWNEIGH with
`time.perf_counter()` as it arrives (event driven: nothing polls the kernel).

Each trial sends `POST /endpoints` to host 1's agent for a fresh container namespace
(made beforehand, not timed). Convergence is the time from sending the POST until host
2's overlay namespace has announced both entries for the new endpoint: the neighbour
(AF_INET, NDA_DST = its IP, its MAC, permanent) and the FDB entry (AF_BRIDGE,
NDA_LLADDR = its MAC, NDA_DST = host 1's underlay IP).

The baseline, in the same trials, is the POST's own latency on host 1 (its agent
answers once it has wired the endpoint into its own kernel). A few warm-up trials come
first, unmeasured (the first also creates host 1's overlay namespace); `--existing K`
puts K endpoints on host 1 before them, not measured, to see how convergence grows
with the state of the hosts.

    .venv/bin/python bench/convergence.py                  # 50 trials, ~5 s
    .venv/bin/python bench/convergence.py --existing 800 --log-dir /tmp/conv

Needs root. The last stdout line is a JSON object (see docs/benchmarks.md for its keys).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from _common import machine, ms, percentile, progress, ratio, run_main
from _rig import Rig, bench_rig, kernel_passes, log_size
from pyroute2.netlink import NETLINK_ROUTE
from pyroute2.netlink.rtnl import RTM_NEWNEIGH, RTMGRP_NEIGH
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from tests.support.netns import in_netns, netns_path

TARGET_P50_MS: Final = 15.0
TARGET_P99_MS: Final = 50.0
NETWORK_RANGE: Final = "198.18.0.0/22"
TRIAL_TIMEOUT: Final = 10.0
NUD_PERMANENT: Final = 0x80
AF_BRIDGE: Final = 7


class MonitorError(RuntimeError):
    """The monitor's socket failed (an overrun: ENOBUFS), or an entry is not what was expected."""


class NeighbourMonitor:
    """Every RTM_NEWNEIGH of one namespace, stamped with `time.perf_counter()` on arrival.

    Keeps the first sighting of each neighbour (by IP: its MAC and state) and of each
    FDB entry (by MAC: its VTEP). `wait()` sleeps on a condition the reading thread
    notifies. The socket is opened inside the namespace and stays bound to it.
    """

    def __init__(self, netns: str) -> None:
        with in_netns(netns):
            self._sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
            )
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._sock.bind((0, RTMGRP_NEIGH))
        except BaseException:
            self._close_fds()
            raise
        self._cond = threading.Condition()
        self._neighbours: dict[str, tuple[float, str | None, int]] = {}
        self._fdb: dict[str, tuple[float, str | None]] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="neighbour-monitor", daemon=True)
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the thread and close the socket."""
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        self._close_fds()

    def _close_fds(self) -> None:
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _read(self) -> None:
        marshal = MarshalRtnl()
        try:
            while True:
                ready, _, _ = select.select([self._sock.fileno(), self._wake_r], [], [])
                if self._wake_r in ready:
                    return
                data = self._sock.recv(1 << 16)
                seen = time.perf_counter()
                with self._cond:
                    for msg in marshal.parse(data):
                        if msg["header"]["type"] != RTM_NEWNEIGH:
                            continue
                        if msg["family"] == socket.AF_INET and msg.get("NDA_DST"):
                            entry = (seen, msg.get("NDA_LLADDR"), msg["state"])
                            self._neighbours.setdefault(msg.get("NDA_DST"), entry)
                        elif msg["family"] == AF_BRIDGE and msg.get("NDA_LLADDR"):
                            self._fdb.setdefault(msg.get("NDA_LLADDR"), (seen, msg.get("NDA_DST")))
                    self._cond.notify_all()
        except BaseException as exc:  # reported to the waiter: an overrun would lose entries
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def wait(self, ip: str, mac: str, vtep: str, *, timeout: float) -> tuple[float, float]:
        """When the neighbour `ip` → `mac` and the FDB entry `mac` → `vtep` arrived (perf_counter)."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._error is not None or (ip in self._neighbours and mac in self._fdb), timeout
            ):
                seen = {True: "seen", False: "missing"}
                raise TimeoutError(
                    f"within {timeout:g} s: neighbour {ip} {seen[ip in self._neighbours]}, "
                    f"FDB {mac} {seen[mac in self._fdb]}"
                )
            if self._error is not None:
                raise MonitorError(f"the netlink monitor failed: {self._error!r}")
            neighbour_at, lladdr, state = self._neighbours[ip]
            fdb_at, dst = self._fdb[mac]
        if lladdr != mac or not state & NUD_PERMANENT:
            raise MonitorError(
                f"neighbour {ip}: lladdr {lladdr}, state {state:#x}; expected {mac}, permanent"
            )
        if dst != vtep:
            raise MonitorError(f"FDB {mac}: dst {dst}, expected {vtep}")
        return neighbour_at, fdb_at


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=50, help="measured trials (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured trials first (default 3)")
    parser.add_argument(
        "--existing", type=int, default=0, help="endpoints on host 1 in the network before the warm-up"
    )
    parser.add_argument("--log-dir", type=Path, help="keep the agents' logs there (default: a temp dir)")
    args = parser.parse_args()
    if args.trials < 1 or args.warmup < 1 or args.existing < 0:
        parser.error("--trials and --warmup must be at least 1, --existing not negative")
    if args.existing + args.trials + args.warmup > 1000:
        parser.error("--existing + --trials + --warmup: at most 1000 (the network is a /22)")
    return args


def _pass_ms(passes: list[dict[str, Any]], pct: float) -> float:
    return round(percentile([float(p["ms"]) for p in passes], pct), 3)


def _run(rig: Rig, args: argparse.Namespace) -> dict[str, Any]:
    total = args.warmup + args.trials
    rig.start_agent(1)
    rig.start_agent(2)
    progress(f"agents of {rig.host(1).name} and {rig.host(2).name} are up; making {total + 1} containers")
    [remote] = rig.targets(["remote"])
    containers = rig.targets([f"c{i:04d}" for i in range(total)])
    vtep = rig.host(1).ip
    convergence: list[float] = []
    neighbour_times: list[float] = []
    fdb_times: list[float] = []
    post_times: list[float] = []
    before_answer = 0
    with rig.client(1) as client, rig.client(2) as client_2:
        network = client.network_create(name="bench-convergence", ip_range=NETWORK_RANGE)
        on_2 = client_2.endpoint_create(network_id=network.id, ns_handle_path=remote)
        overlay_2 = netns_path(f"{rig.host(2).prefix}{network.id}")
        progress(f"network {network.id}: endpoint {on_2.target_veth_ip} on host 2; monitoring {overlay_2}")
        if args.existing:
            progress(f"adding {args.existing} endpoints on host 1 first (not measured)")
            for container in rig.targets([f"e{i:04d}" for i in range(args.existing)]):
                client.endpoint_create(network_id=network.id, ns_handle_path=container)
        with NeighbourMonitor(overlay_2) as monitor:
            since = {1: 0, 2: 0}
            for trial in range(total):
                if trial == args.warmup:
                    since = {index: log_size(rig, index) for index in (1, 2)}
                    progress(f"warmed up; {args.trials} measured trials")
                sent = time.perf_counter()
                endpoint = client.endpoint_create(network_id=network.id, ns_handle_path=containers[trial])
                answered = time.perf_counter()
                ip = endpoint.target_veth_ip.split("/")[0]
                neighbour_at, fdb_at = monitor.wait(ip, endpoint.target_veth_mac, vtep, timeout=TRIAL_TIMEOUT)
                if trial < args.warmup:
                    continue
                converged = max(neighbour_at, fdb_at) - sent
                convergence.append(converged)
                neighbour_times.append(neighbour_at - sent)
                fdb_times.append(fdb_at - sent)
                post_times.append(answered - sent)
                before_answer += max(neighbour_at, fdb_at) < answered
                done = trial - args.warmup + 1
                if done % 10 == 0:
                    progress(
                        f"{done}/{args.trials}: convergence p50 {ms(percentile(convergence, 50))} ms, "
                        f"POST p50 {ms(percentile(post_times, 50))} ms"
                    )
    passes = {index: kernel_passes(rig, index, since=since[index]) for index in (1, 2)}
    event_passes = {
        index: [p for p in found if p.get("kind") == "event" and p.get("ops")]
        for index, found in passes.items()
    }
    result: dict[str, Any] = {
        "bench": "convergence",
        "trials": args.trials,
        "warmup": args.warmup,
        "existing": args.existing,
        "p50_ms": ms(percentile(convergence, 50)),
        "p99_ms": ms(percentile(convergence, 99)),
        "max_ms": ms(max(convergence)),
        "neighbour_p50_ms": ms(percentile(neighbour_times, 50)),
        "fdb_p50_ms": ms(percentile(fdb_times, 50)),
        "converged_before_answer": before_answer,
        "baseline_post_p50_ms": ms(percentile(post_times, 50)),
        "baseline_post_p99_ms": ms(percentile(post_times, 99)),
        "ratio_p50": ratio(percentile(convergence, 50), percentile(post_times, 50)),
        "ratio_p99": ratio(percentile(convergence, 99), percentile(post_times, 99)),
        "host1_passes": len(event_passes[1]),
        "host1_pass_p50_ms": _pass_ms(event_passes[1], 50),
        "host2_passes": len(event_passes[2]),
        "host2_pass_p50_ms": _pass_ms(event_passes[2], 50),
        "host2_pass_p99_ms": _pass_ms(event_passes[2], 99),
        "target_p50_ms": TARGET_P50_MS,
        "target_p99_ms": TARGET_P99_MS,
        "machine": machine(),
    }
    progress(
        f"convergence p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; POST p50 "
        f"{result['baseline_post_p50_ms']} ms; host 2 pass p50 {result['host2_pass_p50_ms']} ms"
    )
    return result


def _main() -> dict[str, Any]:
    args = _parse_args()
    with bench_rig(2, log_dir=args.log_dir) as rig:
        return _run(rig, args)


if __name__ == "__main__":
    run_main(_main, interrupted="interrupted: the rig is torn down")
