"""Latency of `POST /endpoints` into a container namespace, until its interface is usable.

A rig of one host (`tests/support/rig.py`: etcd in an underlay namespace, the host's
namespace with its agent, default settings) and one network, 198.18.0.0/22. Each
endpoint gets its own container namespace, made beforehand (not timed). Measured per
endpoint: from sending `POST /endpoints` (`ns_handle_path` = the container) to having
checked, with one netlink look inside the container (a link and an address query on one
socket), that the `sand…` interface is up, has carrier, and holds its IP/prefix, MAC and
MTU. The agent answers once its reconciler has wired the endpoint; the check fails the
run loudly if it has not.

The baseline, measured in the same run and interleaved one for one with the endpoints,
is the kernel floor done by hand for other containers, from a scratch "overlay"
namespace of the rig, with `ip`:

    ip -n <scratch> link add <name> type veth peer name <peer> netns <container> address <mac> mtu 1450
    ip -n <container> addr add <ip>/22 dev <peer>
    ip -n <container> link set <peer> up
    ip -n <scratch> link set <name> up

followed by the same check, timed the same way. A second baseline does the same four
steps through pyroute2 sockets (no `ip` process): what the kernel itself costs. A few
warm-up endpoints of each kind come first, unmeasured (the agent's first one also
creates the overlay namespace, its bridge and VXLAN device: `first_endpoint_ms`);
`--existing K` adds K more to the network before them, not measured, to see how the
latency grows with the host's state.

    .venv/bin/python bench/endpoint_create.py                    # 100 endpoints, ~6 s
    .venv/bin/python bench/endpoint_create.py --existing 800 --log-dir /tmp/ec

Needs root. The last stdout line is a JSON object (see docs/benchmarks.md for its keys).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import time
from pathlib import Path
from typing import Any, Final

from _common import machine, ms, percentile, progress, ratio, run_main
from _rig import Rig, bench_rig, check_interface, kernel_passes, log_size
from pyroute2 import IPRoute

from sand_es.client import SandClient
from sand_es.http.schemas import Network
from tests.support.netns import in_netns, ip

TARGET_P50_MS: Final = 25.0
NETWORK_RANGE: Final = "198.18.0.0/22"  # 1021 endpoint addresses next to the gateway
FLOOR_RANGE: Final = ipaddress.IPv4Network("198.19.0.0/22")  # the baseline's, inside containers only
FLOOR_MTU: Final = 1450  # what the agent gives a VXLAN network's endpoints


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoints", type=int, default=100, help="measured endpoints (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured endpoints first, of each kind")
    parser.add_argument(
        "--existing", type=int, default=0, help="endpoints the network already holds before the warm-up"
    )
    parser.add_argument("--log-dir", type=Path, help="keep the agent's log there (default: a temp dir)")
    args = parser.parse_args()
    if args.endpoints < 1 or args.warmup < 1 or args.existing < 0:
        parser.error("--endpoints and --warmup must be at least 1, --existing not negative")
    if args.existing + args.endpoints + args.warmup > 1000:
        parser.error("--existing + --endpoints + --warmup: at most 1000 (the network is a /22)")
    return args


def _api_endpoint(client: SandClient, network: Network, container: str) -> tuple[float, float, float]:
    """One endpoint through the agent: (total, POST, check) seconds."""
    started = time.perf_counter()
    endpoint = client.endpoint_create(network_id=network.id, ns_handle_path=container)
    answered = time.perf_counter()
    if not endpoint.active:
        raise RuntimeError(f"endpoint {endpoint.id} in {container} was answered inactive")
    check_interface(
        container,
        endpoint.target_veth_name,
        endpoint.target_veth_ip,
        mac=endpoint.target_veth_mac,
        mtu=network.mtu,
    )
    checked = time.perf_counter()
    return checked - started, answered - started, checked - answered


def _floor_address(i: int) -> tuple[ipaddress.IPv4Address, str]:
    """The baseline's i-th address and its SAND-style MAC (`02:84:` and the four octets)."""
    address = FLOOR_RANGE.network_address + 2 + i
    return address, "02:84:" + ":".join(f"{octet:02x}" for octet in address.packed)


def _floor_endpoint(scratch: str, container: str, i: int) -> float:
    """One veth pair by hand with `ip`, then the same check: seconds."""
    address, mac = _floor_address(i)
    cidr = f"{address}/{FLOOR_RANGE.prefixlen}"
    name, peer = f"fl{i:05d}o", f"fl{i:05d}"
    scratch_ns, container_ns = Path(scratch).name, Path(container).name
    veth = f"link add {name} type veth peer name {peer} netns {container_ns} address {mac} mtu {FLOOR_MTU}"
    started = time.perf_counter()
    ip(scratch_ns, *veth.split())
    ip(container_ns, "addr", "add", cidr, "dev", peer)
    ip(container_ns, "link", "set", peer, "up")
    ip(scratch_ns, "link", "set", name, "up")
    check_interface(container, peer, cidr, mac=mac, mtu=FLOOR_MTU)
    return time.perf_counter() - started


class _NetlinkFloor:
    """The same four steps through pyroute2 sockets, no `ip` process: what the kernel itself costs.

    One socket stays open in the scratch namespace; one is opened in each container, as
    the agent must.
    """

    def __init__(self, scratch: str) -> None:
        with in_netns(scratch):
            self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def endpoint(self, container: str, i: int) -> float:
        """One veth pair, then the same check: seconds."""
        address, mac = _floor_address(FLOOR_RANGE.num_addresses // 2 + i)
        cidr = f"{address}/{FLOOR_RANGE.prefixlen}"
        name, peer = f"nl{i:05d}o", f"nl{i:05d}"
        started = time.perf_counter()
        fd = os.open(container, os.O_RDONLY | os.O_CLOEXEC)
        try:
            peer_spec = {"ifname": peer, "net_ns_fd": fd, "address": mac, "mtu": FLOOR_MTU}
            self._ipr.link("add", ifname=name, kind="veth", peer=peer_spec)
        finally:
            os.close(fd)
        with in_netns(container):
            inside = IPRoute()
        try:
            [link] = inside.link("get", ifname=peer)
            inside.addr("add", index=link["index"], address=str(address), prefixlen=FLOOR_RANGE.prefixlen)
            inside.link("set", index=link["index"], state="up")
        finally:
            inside.close()
        [own] = self._ipr.link("get", ifname=name)
        self._ipr.link("set", index=own["index"], state="up")
        check_interface(container, peer, cidr, mac=mac, mtu=FLOOR_MTU)
        return time.perf_counter() - started


def _p(values: list[float], pct: float) -> float:
    return ms(percentile(values, pct))


def _run(rig: Rig, args: argparse.Namespace) -> dict[str, Any]:
    total = args.warmup + args.endpoints
    rig.start_agent(1)
    progress(f"agent of {rig.host(1).name} is up; making {3 * total} container namespaces")
    api_containers = rig.targets([f"a{i:04d}" for i in range(total)])
    floor_containers = rig.targets([f"f{i:04d}" for i in range(total)])
    netlink_containers = rig.targets([f"n{i:04d}" for i in range(total)])
    scratch = rig.target("floor")
    api_times: list[float] = []
    post_times: list[float] = []
    check_times: list[float] = []
    floor_times: list[float] = []
    netlink_times: list[float] = []
    netlink_floor = _NetlinkFloor(scratch)
    try:
        with rig.client(1) as client:
            network = client.network_create(name="bench-endpoint-create", ip_range=NETWORK_RANGE)
            progress(f"network {network.id} ({NETWORK_RANGE}, VNI {network.vxlan_vni}, MTU {network.mtu})")
            first_ms = ms(_api_endpoint(client, network, api_containers[0])[0])
            progress(f"first endpoint (with the overlay namespace): {first_ms} ms")
            if args.existing:
                progress(f"adding {args.existing} endpoints the network already holds (not measured)")
                for container in rig.targets([f"e{i:04d}" for i in range(args.existing)]):
                    _api_endpoint(client, network, container)
            for i in range(1, args.warmup):
                _api_endpoint(client, network, api_containers[i])
            for i in range(args.warmup):
                _floor_endpoint(scratch, floor_containers[i], i)
                netlink_floor.endpoint(netlink_containers[i], i)
            progress(f"warmed up; measuring {args.endpoints} endpoints, interleaved with the baselines")
            since = log_size(rig, 1)
            for i in range(args.warmup, total):
                spent, posted, checked = _api_endpoint(client, network, api_containers[i])
                api_times.append(spent)
                post_times.append(posted)
                check_times.append(checked)
                floor_times.append(_floor_endpoint(scratch, floor_containers[i], i))
                netlink_times.append(netlink_floor.endpoint(netlink_containers[i], i))
                if (i - args.warmup + 1) % 25 == 0:
                    progress(
                        f"{i - args.warmup + 1}/{args.endpoints}: p50 {_p(api_times, 50)} ms; baselines "
                        f"p50 {_p(floor_times, 50)} ms (ip), {_p(netlink_times, 50)} ms (netlink)"
                    )
    finally:
        netlink_floor.close()
    health = rig.api(1).get("/health").json()
    passes = [p for p in kernel_passes(rig, 1, since=since) if p.get("kind") == "event" and p.get("ops")]
    pass_ms = [float(p["ms"]) for p in passes]
    result: dict[str, Any] = {
        "bench": "endpoint_create",
        "n": args.endpoints,
        "warmup": args.warmup,
        "existing": args.existing,
        "p50_ms": _p(api_times, 50),
        "p99_ms": _p(api_times, 99),
        "max_ms": ms(max(api_times)),
        "post_p50_ms": _p(post_times, 50),
        "check_p50_ms": _p(check_times, 50),
        "first_endpoint_ms": first_ms,
        "baseline_p50_ms": _p(floor_times, 50),
        "baseline_p99_ms": _p(floor_times, 99),
        "ratio_p50": ratio(percentile(api_times, 50), percentile(floor_times, 50)),
        "ratio_p99": ratio(percentile(api_times, 99), percentile(floor_times, 99)),
        "netlink_floor_p50_ms": _p(netlink_times, 50),
        "netlink_floor_p99_ms": _p(netlink_times, 99),
        "ratio_p50_vs_netlink": ratio(percentile(api_times, 50), percentile(netlink_times, 50)),
        "agent_passes": len(passes),
        "agent_pass_p50_ms": round(percentile(pass_ms, 50), 3),
        "agent_pass_p99_ms": round(percentile(pass_ms, 99), 3),
        "agent_pass_max_ms": round(max(pass_ms, default=0.0), 3),
        "agent_kernel": health.get("kernel"),
        "target_p50_ms": TARGET_P50_MS,
        "machine": machine(),
    }
    progress(
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms (POST {result['post_p50_ms']} + check "
        f"{result['check_p50_ms']}); baselines p50 {result['baseline_p50_ms']} ms (ip), "
        f"{result['netlink_floor_p50_ms']} ms (netlink); agent pass p50 {result['agent_pass_p50_ms']} ms"
    )
    return result


def _main() -> dict[str, Any]:
    args = _parse_args()
    with bench_rig(1, log_dir=args.log_dir) as rig:
        return _run(rig, args)


if __name__ == "__main__":
    run_main(_main, interrupted="interrupted: the rig is torn down")
