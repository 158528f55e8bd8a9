"""A multi-host test rig made of network namespaces: an underlay switch, hosts, one etcd, agents.

    <tag>-ul    bridge `ul` 192.0.2.1/24, etcd on 192.0.2.1:2379
      ├─ veth h1 ── ul0 192.0.2.11/24 in <tag>-h1   (agent on 192.0.2.11:9999, NETNS_PREFIX <tag>h1-)
      └─ veth h2 ── ul0 192.0.2.12/24 in <tag>-h2   (agent on 192.0.2.12:9999, NETNS_PREFIX <tag>h2-)

Every name starts with the rig's random tag, so rigs running at once never collide, and
teardown deletes exactly what this rig (or its agents) created. The root namespace is never
given a link, an address or a route.

Agents run as `nsenter --net=<host ns> python … agent`: only the network namespace changes,
so the namespaces an agent bind-mounts under /var/run/netns are visible here (`ip netns exec`
would give it a private mount namespace, hiding them).

By hand: `scripts/rig --hosts 2` (or `python -m tests.support.rig`) builds a rig, starts one
agent per host, prints how to reach them, and tears everything down on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NamedTuple, Self

import httpx

from sand_es.client import DEFAULT_TIMEOUT, SandClient
from tests.support.agent_env import AGENT_COMMAND, agent_environment
from tests.support.etcd_server import EtcdServer
from tests.support.netns import (
    NETNS_DIR,
    NetnsError,
    NetnsTransport,
    add_netns,
    bridge,
    delete_netns,
    ip,
    netns_path,
    run_in,
)

UNDERLAY_IP: Final = "192.0.2.1"
UNDERLAY_PREFIXLEN: Final = 24
AGENT_PORT: Final = 9999
MAX_HOSTS: Final = 200  # host i gets 192.0.2.(10 + i)
READY_TIMEOUT: Final = 20.0
STOP_TIMEOUT: Final = 10.0
_POLL_INTERVAL: Final = 0.05
_TAG_ATTEMPTS: Final = 20
_LOG_TAIL_CHARS: Final = 4000
# Target names become namespace names `<tag>-<name>`: keep them plain, and off the rig's own.
_TARGET_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_RESERVED_TARGET: Final = re.compile(r"ul|h\d+")


class RigError(RuntimeError):
    """The rig could not be built, or an agent did not start."""


@dataclass(frozen=True)
class Host:
    """One simulated host: its namespace, underlay address, and its agent's settings."""

    index: int
    name: str  # the namespace's name, and the agent's PEER_HOSTNAME
    ip: str
    netns: str  # the namespace's path
    prefix: str  # the agent's NETNS_PREFIX: the overlay namespaces it creates start with it

    @property
    def api_url(self) -> str:
        """Where the host's agent serves its API (reachable from inside the host's namespace)."""
        return f"http://{self.ip}:{AGENT_PORT}"


class Neighbour(NamedTuple):
    """A neighbour entry (`ip neigh`): an overlay address and the MAC it resolves to."""

    ip: str
    mac: str | None


class FdbEntry(NamedTuple):
    """A forwarding entry (`bridge fdb`): a MAC and the VTEP it is sent to (None if local)."""

    mac: str
    dst: str | None


class AgentApi:
    """HTTP calls to one agent, each made from inside the agent's host namespace.

    A fresh client per call keeps it simple: nothing pooled outlives the call.
    """

    def __init__(self, host: Host, *, timeout: float = 10.0) -> None:
        self.host = host
        self.url = host.api_url
        self._timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request (httpx keywords: json=, params=, headers=…) and read the whole reply."""
        transport = NetnsTransport(self.host.netns)
        with httpx.Client(
            base_url=self.url, transport=transport, timeout=self._timeout, trust_env=False
        ) as client:
            return client.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """`GET path`."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        """`POST path` with a JSON body."""
        return self.request("POST", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        """`DELETE path`."""
        return self.request("DELETE", path, **kwargs)


class NetnsSandClient(SandClient):
    """The project's `SandClient`, its connections opened inside a host's namespace."""

    def __init__(self, url: str, netns: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(url, timeout=timeout, transport=NetnsTransport(netns))


class Rig:
    """Hosts in namespaces on one underlay bridge, an etcd they all reach, and their agents.

    `with Rig(hosts=2, log_dir=tmp_path) as rig:` builds it; leaving the block tears down
    everything it created, even after a partial build. Hosts are numbered from 1.
    """

    def __init__(self, hosts: int = 2, *, log_dir: Path, tag: str | None = None) -> None:
        if not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"hosts={hosts}: expected 1 to {MAX_HOSTS}")
        self.host_count = hosts
        self.log_dir = Path(log_dir)
        self.tag = tag if tag is not None else _fresh_tag()
        self.underlay = f"{self.tag}-ul"
        self.hosts: list[Host] = [_host(self.tag, index) for index in range(1, hosts + 1)]
        self._etcd: EtcdServer | None = None
        self._agents: dict[int, subprocess.Popen[bytes]] = {}
        # What this rig created, so that teardown removes exactly that.
        self._created: list[str] = []  # underlay and host namespaces, in creation order
        self._targets: dict[str, str] = {}  # target name -> namespace name

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.build()
        except BaseException as error:
            self._close_after(error)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._close_after(exc)

    def _close_after(self, error: BaseException) -> None:
        """Tear down while `error` is on its way out: teardown failures become a note on it."""
        try:
            self.close()
        except ExceptionGroup as failures:
            # Keep the first failure in front: the teardown's errors would otherwise replace it.
            error.add_note(f"rig {self.tag} teardown also failed: {failures.exceptions!r}")

    def build(self) -> None:
        """Create the underlay, every host and etcd (what `__enter__` does)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._build_underlay()
        for host in self.hosts:
            self._build_host(host)
        self._etcd = EtcdServer(netns=netns_path(self.underlay), host=UNDERLAY_IP)
        self._etcd.start()

    def close(self) -> None:
        """Tear down, every step attempted: agents, etcd, targets, overlay, host and underlay namespaces.

        Raises an `ExceptionGroup` of whatever failed, after trying everything.
        """
        errors: list[Exception] = []
        _attempt(errors, self._stop_all_agents)
        _attempt(errors, self._close_etcd)
        for name in list(self._targets):
            _attempt(errors, self.remove_target, name)
        for host in self.hosts:
            for overlay in self.overlay_namespaces(host.index):
                _attempt(errors, delete_netns, overlay)
        # Hosts first: deleting a host namespace also removes its veth peer from the underlay.
        for name in reversed(list(self._created)):
            _attempt(errors, self._delete_created, name)
        if errors:
            raise ExceptionGroup(f"rig {self.tag}: teardown failed", errors)

    # -- hosts and etcd ----------------------------------------------------------------------

    def host(self, index: int) -> Host:
        """Host `index` (1-based)."""
        if not 1 <= index <= self.host_count:
            raise IndexError(f"host {index}: this rig has hosts 1 to {self.host_count}")
        return self.hosts[index - 1]

    @property
    def etcd(self) -> EtcdServer:
        """The etcd in the underlay namespace, on 192.0.2.1:2379."""
        if self._etcd is None:
            raise RuntimeError("the rig is not built")
        return self._etcd

    @property
    def etcd_hosts(self) -> str:
        """The agents' ETCD_HOSTS."""
        return f"{UNDERLAY_IP}:2379"

    # -- agents ----------------------------------------------------------------------------

    def agent_variables(self, index: int, **extra_env: str) -> dict[str, str]:
        """The settings host `index`'s agent runs with (`extra_env` adds or overrides some)."""
        host = self.host(index)
        return {
            "ETCD_HOSTS": self.etcd_hosts,
            "PEER_HOSTNAME": host.name,
            "PEER_IP": host.ip,
            "HTTP_HOST": host.ip,
            "PORT": str(AGENT_PORT),
            "NETNS_PATH": str(NETNS_DIR),
            "NETNS_PREFIX": host.prefix,
            "LOG_FORMAT": "json",
            **extra_env,
        }

    def start_agent(self, index: int, **extra_env: str) -> int:
        """Start host `index`'s agent inside its namespace, wait until /health answers 200; its PID.

        Restarting is stopping (or killing) and starting again; stderr is appended to
        `<log_dir>/<host>.stderr` across restarts.
        """
        host = self.host(index)
        if self.agent_running(index):
            raise RigError(f"the agent of {host.name} is already running (PID {self.agent_pid(index)})")
        command = ["nsenter", f"--net={host.netns}", *AGENT_COMMAND]
        with self.agent_log_path(index).open("ab") as stderr:
            # nsenter (with only --net) execs the agent in place: the PID is the agent's own.
            self._agents[index] = subprocess.Popen(
                command,
                env=agent_environment(self.agent_variables(index, **extra_env)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                # Its own process group: a terminal's Ctrl-C reaches only the harness, which
                # then sends the one SIGTERM (a second signal makes uvicorn skip its graceful stop).
                process_group=0,
            )
        try:
            self._wait_ready(index)
        except BaseException:
            self.kill_agent(index)
            raise
        return self.agent_pid(index)

    def stop_agent(self, index: int) -> int | None:
        """SIGTERM host `index`'s agent, SIGKILL it 10 s later if still alive; its exit code."""
        process = self._agents.pop(index, None)
        if process is None:
            return None
        return _stop(process)

    def kill_agent(self, index: int) -> int | None:
        """SIGKILL host `index`'s agent (a crash) and reap it; its exit code."""
        process = self._agents.pop(index, None)
        if process is None:
            return None
        process.kill()
        return process.wait()

    def agent_pid(self, index: int) -> int:
        """The PID of host `index`'s agent."""
        process = self._agents.get(index)
        if process is None:
            raise RigError(f"no agent started on {self.host(index).name}")
        return process.pid

    def agent_running(self, index: int) -> bool:
        """Whether host `index`'s agent was started and is still alive."""
        process = self._agents.get(index)
        return process is not None and process.poll() is None

    def agent_log_path(self, index: int) -> Path:
        """The file receiving host `index`'s agent's stderr (its JSON log lines)."""
        return self.log_dir / f"{self.host(index).name}.stderr"

    def agent_log(self, index: int) -> str:
        """What host `index`'s agent has logged so far."""
        path = self.agent_log_path(index)
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, index: int, *, timeout: float = 10.0) -> AgentApi:
        """Raw HTTP to host `index`'s agent, from inside its namespace."""
        return AgentApi(self.host(index), timeout=timeout)

    def client(self, index: int, *, timeout: float = DEFAULT_TIMEOUT) -> SandClient:
        """A `SandClient` of host `index`'s agent (close it, or use it as a context manager)."""
        host = self.host(index)
        return NetnsSandClient(host.api_url, host.netns, timeout=timeout)

    # -- containers and overlay --------------------------------------------------------------

    def target(self, name: str) -> str:
        """Create a namespace `<tag>-<name>` for a container (lo up) and return its path."""
        if not _TARGET_NAME.fullmatch(name) or _RESERVED_TARGET.fullmatch(name):
            raise ValueError(f"target name {name!r}: expected letters, digits, '_.-', not ul or h<N>")
        if name in self._targets:
            raise RigError(f"target {name!r} already exists")
        namespace = f"{self.tag}-{name}"
        path = add_netns(namespace)
        self._targets[name] = namespace
        ip(namespace, "link", "set", "lo", "up")
        return path

    def targets(self, names: Sequence[str]) -> list[str]:
        """Create many target namespaces with one `ip -batch` (lo left down); their paths, in order.

        For benchmarks that need hundreds of containers: `target()` costs two `ip` runs each.
        """
        for name in names:
            if not _TARGET_NAME.fullmatch(name) or _RESERVED_TARGET.fullmatch(name):
                raise ValueError(f"target name {name!r}: expected letters, digits, '_.-', not ul or h<N>")
            if name in self._targets:
                raise RigError(f"target {name!r} already exists")
        if len(set(names)) != len(names):
            raise ValueError("target names repeat")
        namespaces = [f"{self.tag}-{name}" for name in names]
        # Registered first: teardown deletes whatever part of the batch was made (a missing one is fine).
        self._targets.update(zip(names, namespaces, strict=True))
        _ip_batch("".join(f"netns add {namespace}\n" for namespace in namespaces))
        return [netns_path(namespace) for namespace in namespaces]

    def remove_target(self, name: str) -> None:
        """Delete the target namespace `name` created by `target()`."""
        delete_netns(self._targets[name])
        del self._targets[name]

    def overlay_namespaces(self, index: int) -> list[str]:
        """The namespaces host `index`'s agent created (names starting with its prefix), sorted."""
        prefix = self.host(index).prefix
        try:
            names = os.listdir(NETNS_DIR)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if name.startswith(prefix))

    def ping(self, source: str, address: str, *, count: int = 1) -> bool:
        """Whether `ping -c count` from the rig namespace `source` (a target, `h1`, `ul`…) gets a reply."""
        # -i 0.2 (root only) keeps multi-ping checks short; -W 1 bounds the wait for each reply.
        result = run_in(f"{self.tag}-{source}", "ping", "-c", str(count), "-i", "0.2", "-W", "1", address)
        return result.returncode == 0

    def neighbours(self, namespace: str, dev: str = "vxlan0") -> list[Neighbour]:
        """`ip -n namespace neigh show dev dev` as (ip, mac) pairs; `namespace` is a full name."""
        entries: list[dict[str, Any]] = json.loads(ip(namespace, "-j", "neigh", "show", "dev", dev) or "[]")
        return [Neighbour(entry["dst"], entry.get("lladdr")) for entry in entries]

    def fdb(self, namespace: str, dev: str = "vxlan0") -> list[FdbEntry]:
        """`bridge -n namespace fdb show dev dev` as (mac, dst) pairs; `namespace` is a full name.

        The bridge's own entry for the device's MAC comes too, with dst None: filter on `dst`
        to keep only the VTEP entries.
        """
        entries: list[dict[str, Any]] = json.loads(bridge(namespace, "-j", "fdb", "show", "dev", dev) or "[]")
        return [FdbEntry(entry["mac"], entry.get("dst")) for entry in entries]

    # -- internals -------------------------------------------------------------------------

    def _build_underlay(self) -> None:
        self._add_namespace(self.underlay)
        ip(self.underlay, "link", "set", "lo", "up")
        ip(self.underlay, "link", "add", "ul", "type", "bridge")
        ip(self.underlay, "addr", "add", f"{UNDERLAY_IP}/{UNDERLAY_PREFIXLEN}", "dev", "ul")
        ip(self.underlay, "link", "set", "ul", "up")

    def _build_host(self, host: Host) -> None:
        self._add_namespace(host.name)
        ip(host.name, "link", "set", "lo", "up")
        port = f"h{host.index}"
        # Created from the underlay with its peer born inside the host: no move, no rename.
        ip(self.underlay, "link", "add", port, "type", "veth", "peer", "name", "ul0", "netns", host.name)
        ip(self.underlay, "link", "set", port, "master", "ul", "up")
        ip(host.name, "addr", "add", f"{host.ip}/{UNDERLAY_PREFIXLEN}", "dev", "ul0")
        ip(host.name, "link", "set", "ul0", "up")

    def _add_namespace(self, name: str) -> None:
        add_netns(name)
        self._created.append(name)

    def _delete_created(self, name: str) -> None:
        delete_netns(name)
        self._created.remove(name)

    def _close_etcd(self) -> None:
        if self._etcd is not None:
            self._etcd.close()
            self._etcd = None

    def _stop_all_agents(self) -> None:
        # SIGTERM them all first, so that their graceful stops overlap; each is signalled once
        # (a second SIGTERM makes uvicorn skip its graceful shutdown).
        for process in self._agents.values():
            if process.poll() is None:
                process.terminate()
                # A paused (SIGSTOPped) agent keeps SIGTERM pending forever: let it run and exit.
                process.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + STOP_TIMEOUT
        for index, process in list(self._agents.items()):
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            del self._agents[index]

    def _wait_ready(self, index: int) -> None:
        process = self._agents[index]
        api = self.api(index, timeout=2.0)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RigError(
                    f"agent of {api.host.name} exited with {process.returncode}{self._tail(index)}"
                )
            try:
                if 200 == api.get("/health").status_code:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(_POLL_INTERVAL)
        raise RigError(f"agent of {api.host.name} not ready after {READY_TIMEOUT:g} s{self._tail(index)}")

    def _tail(self, index: int) -> str:
        return f"\n--- {self.agent_log_path(index)} ---\n{self.agent_log(index)[-_LOG_TAIL_CHARS:]}"


def _host(tag: str, index: int) -> Host:
    name = f"{tag}-h{index}"
    return Host(
        index=index, name=name, ip=f"192.0.2.{10 + index}", netns=netns_path(name), prefix=f"{tag}h{index}-"
    )


def _ip_batch(commands: str) -> None:
    """Run `ip -batch -` on `commands` (one per line); a failure raises with ip's stderr."""
    result = subprocess.run(
        ["ip", "-batch", "-"], input=commands, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise NetnsError(f"ip -batch exited with {result.returncode}: {result.stderr.strip()}")


def _fresh_tag() -> str:
    """`sr` and 4 hex digits, used by no namespace yet (a leftover of a crashed run, say)."""
    existing = os.listdir(NETNS_DIR) if NETNS_DIR.is_dir() else []
    for _ in range(_TAG_ATTEMPTS):
        tag = f"sr{secrets.token_hex(2)}"
        if not any(name.startswith(tag) for name in existing):
            return tag
    raise RigError(f"no free rig tag after {_TAG_ATTEMPTS} attempts: is {NETNS_DIR} full of leftovers?")


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM `process` (if alive), SIGKILL it after STOP_TIMEOUT; its exit code."""
    if process.poll() is None:
        process.terminate()
        process.send_signal(signal.SIGCONT)  # a paused (SIGSTOPped) agent could not act on SIGTERM
        try:
            return process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def _attempt(errors: list[Exception], step: Callable[..., object], *args: Any) -> None:
    """Run one teardown step; a failure is recorded, and the next steps still run."""
    try:
        step(*args)
    except Exception as error:
        errors.append(error)


# -- by hand -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Build a rig, start one agent per host, print how to reach them, wait for Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="scripts/rig", description=main.__doc__)
    parser.add_argument("--hosts", type=int, default=2, help="number of hosts (default 2)")
    parser.add_argument("--log-dir", type=Path, help="where agents' stderr goes (default: a new temp dir)")
    args = parser.parse_args(argv)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="sand-es-rig-"))
    # SIGTERM acts like Ctrl-C, even mid-build: the `with` block then tears down what exists.
    # SIGINT is set too: a shell without job control starts `scripts/rig &` with it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    try:
        with Rig(hosts=args.hosts, log_dir=log_dir) as rig:
            for host in rig.hosts:
                rig.start_agent(host.index)
            _describe(rig)
            _wait_for_stop()
            print(f"tearing down rig {rig.tag}…", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted; what was built is torn down", file=sys.stderr)


def _describe(rig: Rig) -> None:
    underlay = netns_path(rig.underlay)
    print(f"rig {rig.tag}: etcd {rig.etcd.url} in {underlay}, agent logs in {rig.log_dir}")
    for host in rig.hosts:
        pid = rig.agent_pid(host.index)
        print(f"  {host.name}: netns {host.netns}, ip {host.ip}, api {host.api_url}, agent pid {pid}")
        print(f"      nsenter --net={host.netns} curl {host.api_url}/networks")
    print(f"  etcdctl: nsenter --net={underlay} etcdctl --endpoints={rig.etcd.url} get --prefix /sand-es/")
    print("Ctrl-C or SIGTERM tears it all down.", flush=True)


def _wait_for_stop() -> None:
    """Return on the first SIGINT or SIGTERM; later ones are ignored so teardown can finish."""
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


if __name__ == "__main__":
    main()
