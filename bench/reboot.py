"""How long a rebooted host's agent takes to rebuild its whole overlay from the log.

A rig of two hosts (`tests/support/rig.py`), both agents with default settings, 10
networks (198.18.<k>.0/24) and 1000 endpoints spread evenly over both hosts and all
networks, each in its own container namespace (made in one `ip -batch`, not timed;
the endpoints go through the API, with progress lines). Host 1 then holds 10 overlay
namespaces, 500 veth pairs, and a neighbour plus an FDB entry for each of host 2's 500
endpoints.

A reboot of host 1 is simulated: its agent is killed (SIGKILL), every overlay namespace
of host 1 is deleted (its veth pairs die with them; the containers survive, as the
containers of a rebooted host would be recreated by their runtime before the agent
asks for them), the kernel's deferred cleanup of those namespaces is waited for until
no container holds its veth end any more, then `--settle` seconds more (not timed).
Measured: from spawning the agent again until host 1 has rebuilt everything, i.e.
`GET /health` (polled every 20 ms) shows `kernel.applied_seq` ≥ `seq` and
`kernel.passes` ≥ 1. Then, not timed, the kernel is checked once: every local
endpoint's interface up with its IP, MAC and MTU in its container, and every overlay
namespace holding exactly the neighbour and FDB entries of host 2's endpoints in that
network; the run fails if anything is missing.

The baseline, in the same run and each round, is the same agent started with
`KERNEL=off` until `GET /health` answers 200: process start, imports, catch-up from
etcd (pure replay) and the HTTP server, with no kernel work. Both times come from the
rig's `start_agent`, which polls `/health` every 50 ms.

    .venv/bin/python bench/reboot.py                            # ~1 min
    .venv/bin/python bench/reboot.py --endpoints 2000 --networks 20 --rounds 1 --log-dir /tmp/rb

Needs root. The last stdout line is a JSON object (see docs/benchmarks.md for its keys).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from _common import machine, ms, percentile, progress, ratio, run_main
from _rig import Rig, bench_rig, check_interface, kernel_passes, log_size, wait_applied
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from sand_es.http.schemas import Endpoint, Network
from tests.support.netns import delete_netns, in_netns

TARGET_REBUILD_S: Final = 30.0
REBUILD_TIMEOUT: Final = 300.0
CLEANUP_TIMEOUT: Final = 120.0
MAX_PER_NETWORK: Final = 253  # a /24 without its gateway


@dataclass(frozen=True)
class Placed:
    """One endpoint as the bench made it: where, and what the agent answered."""

    host: int
    container: str
    network: Network
    endpoint: Endpoint


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--endpoints", type=int, default=1000, help="endpoints over both hosts (default 1000)"
    )
    parser.add_argument("--networks", type=int, default=10, help="networks, 198.18.<k>.0/24 (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="reboots measured (default 3)")
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="idle seconds after the cleanup, before the starts (default 3)",
    )
    parser.add_argument("--log-dir", type=Path, help="keep the agents' logs there (default: a temp dir)")
    args = parser.parse_args()
    if not 1 <= args.networks <= 256:
        parser.error("--networks: 1 to 256")
    if args.endpoints < 2 or args.rounds < 1 or args.settle < 0:
        parser.error("--endpoints must be at least 2, --rounds at least 1, --settle not negative")
    if -(-args.endpoints // args.networks) > MAX_PER_NETWORK:
        parser.error(f"--endpoints: at most {MAX_PER_NETWORK} per network")
    return args


def _populate(rig: Rig, args: argparse.Namespace) -> list[Placed]:
    """The networks and endpoints, through the API: endpoint i on host 1 + i % 2, network (i // 2) % N."""
    containers = rig.targets([f"c{i:05d}" for i in range(args.endpoints)])
    progress(f"{args.endpoints} container namespaces made; creating {args.networks} networks")
    placed: list[Placed] = []
    with rig.client(1) as client_1, rig.client(2) as client_2:
        clients = {1: client_1, 2: client_2}
        networks = [
            client_1.network_create(name=f"bench-reboot-{k}", ip_range=f"198.18.{k}.0/24")
            for k in range(args.networks)
        ]
        started = time.perf_counter()
        latencies: list[float] = []
        for i, container in enumerate(containers):
            host, network = 1 + i % 2, networks[(i // 2) % args.networks]
            sent = time.perf_counter()
            endpoint = clients[host].endpoint_create(network_id=network.id, ns_handle_path=container)
            latencies.append(time.perf_counter() - sent)
            if not endpoint.active:
                raise RuntimeError(f"endpoint {endpoint.id} in {container} was answered inactive")
            placed.append(Placed(host, container, network, endpoint))
            if (i + 1) % 100 == 0 or i + 1 == len(containers):
                recent = latencies[-100:]
                progress(
                    f"{i + 1}/{args.endpoints} endpoints in {time.perf_counter() - started:.1f} s "
                    f"(POST p50 of the last {len(recent)}: {ms(percentile(recent, 50))} ms)"
                )
    return placed


def _await_cleanup(local: list[Placed]) -> float:
    """Wait until no container holds its veth end (freed with the overlay namespaces); seconds."""
    started = time.perf_counter()
    remaining = list(local)
    while remaining:
        remaining = [p for p in remaining if _has_link(p.container, p.endpoint.target_veth_name)]
        if not remaining:
            break
        if time.perf_counter() - started > CLEANUP_TIMEOUT:
            raise TimeoutError(
                f"{len(remaining)} veth ends still in their containers after {CLEANUP_TIMEOUT:g} s"
            )
        time.sleep(0.05)
    return time.perf_counter() - started


def _has_link(netns: str, name: str) -> bool:
    with in_netns(netns):
        ipr = IPRoute()
    try:
        ipr.link("get", ifname=name)
    except NetlinkError:
        return False
    finally:
        ipr.close()
    return True


def _verify(rig: Rig, placed: list[Placed]) -> None:
    """Host 1's kernel holds every local interface and every remote peer's entries; else raise."""
    local = [p for p in placed if p.host == 1]
    for p in local:
        endpoint = p.endpoint
        check_interface(
            p.container,
            endpoint.target_veth_name,
            endpoint.target_veth_ip,
            mac=endpoint.target_veth_mac,
            mtu=p.network.mtu,
        )
    vtep = rig.host(2).ip
    prefix = rig.host(1).prefix
    networks = {p.network.id: p.network for p in placed}
    expected_namespaces = sorted(f"{prefix}{network_id}" for network_id in {p.network.id for p in local})
    if rig.overlay_namespaces(1) != expected_namespaces:
        raise RuntimeError(
            f"host 1's overlay namespaces: {rig.overlay_namespaces(1)}, not {expected_namespaces}"
        )
    for network_id in networks:
        remote = [p.endpoint for p in placed if p.host == 2 and p.network.id == network_id]
        wanted_neighbours = {(e.target_veth_ip.split("/")[0], e.target_veth_mac) for e in remote}
        wanted_fdb = {(e.target_veth_mac, vtep) for e in remote}
        namespace = f"{prefix}{network_id}"
        neighbours = {(n.ip, n.mac) for n in rig.neighbours(namespace)}
        fdb = {(f.mac, f.dst) for f in rig.fdb(namespace) if f.dst}
        if neighbours != wanted_neighbours or fdb != wanted_fdb:
            raise RuntimeError(
                f"{namespace}: {len(wanted_neighbours - neighbours)} neighbours missing, "
                f"{len(neighbours - wanted_neighbours)} unexpected; {len(wanted_fdb - fdb)} FDB entries "
                f"missing, {len(fdb - wanted_fdb)} unexpected"
            )


def _reboot(rig: Rig, placed: list[Placed], round_: int, settle: float) -> dict[str, Any]:
    """Kill host 1's agent, delete its overlay namespaces, time the KERNEL=off start, then the rebuild."""
    local = [p for p in placed if p.host == 1]
    rig.kill_agent(1)
    overlays = rig.overlay_namespaces(1)
    for name in overlays:
        delete_netns(name)
    cleanup_s = _await_cleanup(local)
    progress(f"round {round_}: agent killed, {len(overlays)} overlay namespaces deleted ({cleanup_s:.2f} s)")
    time.sleep(settle)  # the kernel tears namespaces down in deferred work: let it finish first

    started = time.perf_counter()
    rig.start_agent(1, KERNEL="off")
    baseline_s = time.perf_counter() - started
    rig.kill_agent(1)

    since = log_size(rig, 1)
    started = time.perf_counter()
    rig.start_agent(1)
    ready_s = time.perf_counter() - started
    health = wait_applied(rig, 1, timeout=REBUILD_TIMEOUT)
    rebuild_s = time.perf_counter() - started

    checking = time.perf_counter()
    _verify(rig, placed)
    verify_s = time.perf_counter() - checking
    passes = kernel_passes(rig, 1, since=since)
    boot = next((p for p in passes if p.get("kind") == "boot"), {})
    progress(
        f"round {round_}: rebuilt in {rebuild_s:.2f} s (ready after {ready_s:.2f} s, boot pass "
        f"{boot.get('ms')} ms, {boot.get('done')} ops); KERNEL=off ready in {baseline_s:.2f} s; "
        f"kernel checked in {verify_s:.2f} s"
    )
    return {
        "rebuild_s": rebuild_s,
        "baseline_s": baseline_s,
        "ready_s": ready_s,
        "cleanup_s": cleanup_s,
        "verify_s": verify_s,
        "boot_pass_ms": boot.get("ms"),
        "boot_pass_ops": boot.get("done"),
        "boot_pass_failed": boot.get("failed"),
        "passes": len(passes),
        "kernel": health["kernel"],
        "seq": health["seq"],
    }


def _run(rig: Rig, args: argparse.Namespace) -> dict[str, Any]:
    rig.start_agent(1)
    rig.start_agent(2)
    progress(f"agents of {rig.host(1).name} and {rig.host(2).name} are up")
    started = time.perf_counter()
    placed = _populate(rig, args)
    create_s = time.perf_counter() - started
    for index in (1, 2):
        wait_applied(rig, index, timeout=REBUILD_TIMEOUT)
    _verify(rig, placed)
    progress(f"{len(placed)} endpoints made in {create_s:.1f} s; host 1's kernel checked")
    rounds = [_reboot(rig, placed, round_, args.settle) for round_ in range(1, args.rounds + 1)]
    rebuild = [r["rebuild_s"] for r in rounds]
    baseline = [r["baseline_s"] for r in rounds]
    last = rounds[-1]
    result: dict[str, Any] = {
        "bench": "reboot",
        "endpoints": args.endpoints,
        "networks": args.networks,
        "local_endpoints": sum(p.host == 1 for p in placed),
        "remote_peers": sum(p.host == 2 for p in placed),
        "rounds": args.rounds,
        "settle_s": args.settle,
        "rebuild_s": round(statistics.median(rebuild), 3),
        "rebuild_s_rounds": [round(s, 3) for s in rebuild],
        "ready_s": round(statistics.median(r["ready_s"] for r in rounds), 3),
        "baseline_s": round(statistics.median(baseline), 3),
        "baseline_s_rounds": [round(s, 3) for s in baseline],
        "ratio": ratio(statistics.median(rebuild), statistics.median(baseline)),
        "boot_pass_ms": [r["boot_pass_ms"] for r in rounds],
        "boot_pass_ops": last["boot_pass_ops"],
        "boot_pass_failed": last["boot_pass_failed"],
        "cleanup_s": [round(r["cleanup_s"], 2) for r in rounds],
        "verify_s": round(last["verify_s"], 2),
        "kernel_after": last["kernel"],
        "seq": last["seq"],
        "create_s": round(create_s, 1),
        "target_rebuild_s": TARGET_REBUILD_S,
        "machine": machine(),
    }
    progress(
        f"rebuild {result['rebuild_s']} s (rounds {result['rebuild_s_rounds']}); "
        f"KERNEL=off start {result['baseline_s']} s; ratio {result['ratio']}"
    )
    return result


def _main() -> dict[str, Any]:
    args = _parse_args()
    with bench_rig(2, log_dir=args.log_dir) as rig:
        return _run(rig, args)


if __name__ == "__main__":
    run_main(_main, interrupted="interrupted: the rig is torn down")
