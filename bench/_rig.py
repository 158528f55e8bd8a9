"""What the multi-host benchmarks share: a namespace rig, checks of the kernel state, the agents' logs.

`bench_rig()` builds the test suite's rig (`tests/support/rig.py`): an underlay namespace
with etcd on 192.0.2.1, one namespace per simulated host (192.0.2.11, .12, …) for its
agent, and whatever container namespaces the benchmark asks for. Leaving the block tears
down exactly that (agents, etcd, containers, the agents' overlay namespaces), also on an
error, Ctrl-C or SIGTERM; a second Ctrl-C during teardown is ignored, so that nothing is
left behind. The root namespace is never touched. Needs root.
"""

from __future__ import annotations

import json
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final

from _common import progress, sigterm_unwinds
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from tests.support.netns import in_netns
from tests.support.rig import Rig

__all__ = [
    "KernelCheckError",
    "Rig",
    "bench_rig",
    "check_interface",
    "kernel_passes",
    "log_size",
    "wait_applied",
]

IFF_UP: Final = 0x1
IFF_LOWER_UP: Final = 0x10000  # carrier: for a veth, both ends are up


class KernelCheckError(RuntimeError):
    """The kernel does not hold what the agent said it had wired."""


@contextmanager
def bench_rig(hosts: int, *, log_dir: Path | None = None) -> Iterator[Rig]:
    """A rig of `hosts` hosts (no agent started), torn down however the block ends.

    The agents' stderr (JSON log lines) goes to `log_dir`, kept afterwards; without one,
    to a temporary directory removed with the rig.
    """
    with sigterm_unwinds(), ExitStack() as stack:
        if log_dir is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sand-es-bench-rig-")))
        else:
            directory = log_dir
        stack.enter_context(_signals_restored())
        progress(f"building a rig of {hosts} host(s); agent logs in {directory}")
        rig = stack.enter_context(Rig(hosts=hosts, log_dir=directory))
        progress(f"rig {rig.tag} is up: etcd at {rig.etcd_hosts} in {rig.underlay}")
        try:
            yield rig
        finally:
            # Teardown must run to its end, or namespaces stay behind: no more interrupts.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            progress(f"tearing down rig {rig.tag} (agents, etcd, containers, overlay namespaces)")


@contextmanager
def _signals_restored() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def check_interface(
    netns: str, name: str, cidr: str, *, mac: str | None = None, mtu: int | None = None
) -> None:
    """One netlink look inside `netns` (a link and an address query on one socket).

    Raises `KernelCheckError` unless the interface `name` is up with carrier and holds
    `cidr` (and, if given, has MAC `mac` and MTU `mtu`).
    """
    with in_netns(netns):
        ipr = IPRoute()  # the socket belongs to `netns` for its whole life
    try:
        try:
            [link] = ipr.link("get", ifname=name)
        except NetlinkError as exc:
            raise KernelCheckError(f"{netns}: no interface {name} (netlink error {exc.code})") from None
        addresses = {
            f"{addr.get('IFA_ADDRESS')}/{addr['prefixlen']}"
            for addr in ipr.addr("dump", index=link["index"], family=socket.AF_INET)
        }
    finally:
        ipr.close()
    problems = []
    if not link["flags"] & IFF_UP:
        problems.append("is down")
    if not link["flags"] & IFF_LOWER_UP:
        problems.append("has no carrier")
    if cidr not in addresses:
        problems.append(f"holds {sorted(addresses)}, not {cidr}")
    if mac is not None and link.get("IFLA_ADDRESS") != mac:
        problems.append(f"has MAC {link.get('IFLA_ADDRESS')}, not {mac}")
    if mtu is not None and link.get("IFLA_MTU") != mtu:
        problems.append(f"has MTU {link.get('IFLA_MTU')}, not {mtu}")
    if problems:
        raise KernelCheckError(f"{netns}: {name} " + ", ".join(problems))


def wait_applied(rig: Rig, index: int, *, timeout: float, interval: float = 0.02) -> dict[str, Any]:
    """Poll host `index`'s `GET /health` until a kernel pass has covered all its views hold.

    That is `kernel.passes` ≥ 1 and `kernel.applied_seq` ≥ `seq`; returns that body.
    """
    api = rig.api(index)
    deadline = time.monotonic() + timeout
    while True:
        response = api.get("/health")
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        kernel = body.get("kernel")
        if response.status_code == 200 and kernel is None:
            raise RuntimeError(f"host {index}'s agent runs without its kernel projection (KERNEL=off)")
        if kernel is not None and kernel["passes"] >= 1 and kernel["applied_seq"] >= body["seq"]:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"host {index}'s kernel not applied within {timeout:g} s: {response.text}")
        time.sleep(interval)


def log_size(rig: Rig, index: int) -> int:
    """How many bytes host `index`'s agent has logged so far (an offset for `kernel_passes`)."""
    path = rig.agent_log_path(index)
    return path.stat().st_size if path.exists() else 0


def kernel_passes(rig: Rig, index: int, *, since: int = 0) -> list[dict[str, Any]]:
    """The "kernel pass" log lines (kind, ops, ms…) host `index`'s agent wrote after byte `since`."""
    path = rig.agent_log_path(index)
    if not path.exists():
        return []
    with path.open("rb") as log:
        log.seek(since)
        data = log.read()
    passes = []
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a traceback, or a line cut by a kill
        if isinstance(entry, dict) and entry.get("event") == "kernel pass":
            passes.append(entry)
    return passes
