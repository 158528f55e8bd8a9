"""The overlay end to end: two simulated hosts, their agents, containers that ping each other.

One rig serves the module (building it costs seconds); each test makes its own networks and
containers, and leaves every agent running as it found it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sand_es.http.schemas import Endpoint, Network
from tests.support.agent_env import AGENT_COMMAND, agent_environment
from tests.support.netns import in_netns, ip
from tests.support.rig import Rig

pytestmark = [pytest.mark.netns, pytest.mark.etcd, pytest.mark.slow]

DEADLINE = 10.0
RESYNC = "1"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with Rig(hosts=2, log_dir=tmp_path_factory.mktemp("rig")) as built:
        for index in (1, 2):
            built.start_agent(index, KERNEL_RESYNC_INTERVAL=RESYNC)
        yield built


def eventually(check: Callable[[], bool], what: str, *, deadline: float = DEADLINE) -> None:
    """Wait until `check()` holds; the agents converge asynchronously."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline:g} s: {what}")
        time.sleep(0.05)


class Overlay:
    """What one test builds through the API, by name."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.suffix = uuid.uuid4().hex[:6]

    def network(self, ip_range: str) -> Network:
        with self.rig.client(1) as client:
            return client.network_create(name=f"net-{self.suffix}-{ip_range}", ip_range=ip_range)

    def container(self, name: str) -> str:
        return self.rig.target(f"{name}{self.suffix}")

    def endpoint(self, host: int, network: Network, container: str) -> Endpoint:
        with self.rig.client(host) as client:
            return client.endpoint_create(network_id=network.id, ns_handle_path=container)

    def ping(self, container: str, endpoint: Endpoint) -> bool:
        return self.rig.ping(f"{container_name(container)}", endpoint.target_veth_ip.split("/")[0], count=2)

    def overlay_netns(self, host: int, network: Network) -> str:
        return f"{self.rig.host(host).prefix}{network.id}"

    def neighbour_ips(self, host: int, network: Network) -> set[str]:
        return {n.ip for n in self.rig.neighbours(self.overlay_netns(host, network))}

    def fdb_macs(self, host: int, network: Network) -> set[str]:
        return {e.mac for e in self.rig.fdb(self.overlay_netns(host, network)) if e.dst}

    def delete(self, endpoint: Endpoint, *, via: int = 1) -> None:
        with self.rig.client(via) as client:
            client.endpoint_delete(endpoint.id)


def container_name(path: str) -> str:
    """A target's name as `rig.ping` takes it: its namespace name without the rig's tag."""
    return os.path.basename(path).split("-", 1)[1]


def health(rig: Rig, host: int) -> dict[str, Any]:
    response = rig.api(host).get("/health")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def applied(rig: Rig, host: int) -> bool:
    """Whether host's kernel projection has covered everything its views hold."""
    body = health(rig, host)
    return bool(body["kernel"]["applied_seq"] >= body["seq"])


def vxlan_tx_packets(rig: Rig, overlay: str) -> int:
    [link] = json.loads(ip(overlay, "-s", "-j", "link", "show", "vxlan0"))
    return int(link["stats64"]["tx"]["packets"])


@pytest.fixture
def overlay(rig: Rig) -> Overlay:
    return Overlay(rig)


def test_containers_on_two_hosts_ping_each_other_across_vxlan(rig: Rig, overlay: Overlay) -> None:
    network = overlay.network("198.18.1.0/24")
    a, b = overlay.container("a"), overlay.container("b")
    on_1, on_2 = overlay.endpoint(1, network, a), overlay.endpoint(2, network, b)
    assert (on_1.active, on_2.active) == (True, True)
    eventually(
        lambda: overlay.neighbour_ips(1, network) == {on_2.target_veth_ip.split("/")[0]}, "peer on host 1"
    )
    before = vxlan_tx_packets(rig, overlay.overlay_netns(1, network))
    assert overlay.ping(a, on_2), "host 1 → host 2"
    assert overlay.ping(b, on_1), "host 2 → host 1"
    assert vxlan_tx_packets(rig, overlay.overlay_netns(1, network)) > before, "the pings went through vxlan0"
    sockets = subprocess.run(
        ["ip", "netns", "exec", rig.host(1).netns.rsplit("/", 1)[1], "ss", "-Huan"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ":4789" in sockets, "the VXLAN socket is on the host's underlay, not in the overlay namespace"


def test_a_second_network_with_the_same_range_is_isolated(rig: Rig, overlay: Overlay) -> None:
    first, second = overlay.network("198.18.2.0/24"), overlay.network("198.18.2.0/24")
    a, b, c = overlay.container("a"), overlay.container("b"), overlay.container("c")
    overlay.endpoint(1, first, a)
    in_first_on_2 = overlay.endpoint(2, first, b)
    overlay.endpoint(1, second, c)
    assert first.vxlan_vni != second.vxlan_vni
    eventually(lambda: overlay.ping(a, in_first_on_2), "the first network works")
    assert not overlay.ping(c, in_first_on_2), "the second network reaches into the first"
    assert overlay.neighbour_ips(1, second) == set()


def test_a_deleted_endpoint_is_pruned_on_the_other_host(rig: Rig, overlay: Overlay) -> None:
    network = overlay.network("198.18.3.0/24")
    a, b = overlay.container("a"), overlay.container("b")
    overlay.endpoint(2, network, b)
    leaving = overlay.endpoint(1, network, a)
    peer_ip = leaving.target_veth_ip.split("/")[0]
    eventually(lambda: peer_ip in overlay.neighbour_ips(2, network), "the peer is known on host 2")
    overlay.delete(leaving, via=2)
    eventually(lambda: peer_ip not in overlay.neighbour_ips(2, network), "its neighbour entry is pruned")
    assert leaving.target_veth_mac not in overlay.fdb_macs(2, network), "its FDB entry is pruned"


def test_deleting_the_last_local_endpoint_removes_the_overlay_namespace(rig: Rig, overlay: Overlay) -> None:
    network = overlay.network("198.18.4.0/24")
    container = overlay.container("a")
    only = overlay.endpoint(1, network, container)
    assert overlay.overlay_netns(1, network) in rig.overlay_namespaces(1)
    overlay.delete(only)  # through the owner's agent: it answers once the kernel has followed
    assert overlay.overlay_netns(1, network) not in rig.overlay_namespaces(1)
    links = json.loads(ip(os.path.basename(container), "-j", "link"))
    assert [link["ifname"] for link in links] == ["lo"], "the container's interface is gone"


def kernel_picture(rig: Rig, overlay: Overlay, network: Network, container: str) -> object:
    """Links (with their indexes: a recreated device gets a new one), neighbours and FDB of host 1."""
    netns = overlay.overlay_netns(1, network)
    links = sorted((link["ifname"], link["ifindex"]) for link in json.loads(ip(netns, "-j", "link")))
    target = sorted(
        (link["ifname"], link["ifindex"])
        for link in json.loads(ip(os.path.basename(container), "-j", "link"))
    )
    return links, target, sorted(rig.neighbours(netns)), sorted(rig.fdb(netns))


def test_a_killed_agent_restarts_without_touching_the_kernel(rig: Rig, overlay: Overlay) -> None:
    network = overlay.network("198.18.5.0/24")
    a = overlay.container("a")
    overlay.endpoint(1, network, a)
    overlay.endpoint(2, network, overlay.container("b"))
    eventually(lambda: applied(rig, 1) and len(overlay.neighbour_ips(1, network)) == 1, "converged")
    before = kernel_picture(rig, overlay, network, a)
    rig.kill_agent(1)
    rig.start_agent(1, KERNEL_RESYNC_INTERVAL=RESYNC)
    eventually(lambda: applied(rig, 1), "the restarted agent's first pass")
    assert health(rig, 1)["kernel"]["ops"] == 0, "the boot pass changed the kernel"
    assert kernel_picture(rig, overlay, network, a) == before


def test_a_reboot_rebuilds_the_overlay_and_prunes_dead_containers(rig: Rig, overlay: Overlay) -> None:
    network = overlay.network("198.18.6.0/24")
    survivor, casualty, remote = overlay.container("a"), overlay.container("dead"), overlay.container("b")
    on_1 = overlay.endpoint(1, network, survivor)
    dead = overlay.endpoint(1, network, casualty)
    on_2 = overlay.endpoint(2, network, remote)
    dead_ip = dead.target_veth_ip.split("/")[0]
    eventually(lambda: dead_ip in overlay.neighbour_ips(2, network), "host 2 knows both endpoints of host 1")
    # A reboot: the agent dies, the kernel forgets every namespace it had not persisted.
    rig.kill_agent(1)
    for name in rig.overlay_namespaces(1):
        ip_netns_delete(name)
    rig.remove_target(container_name(casualty))
    rig.start_agent(1, KERNEL_RESYNC_INTERVAL=RESYNC)
    eventually(lambda: overlay.ping(survivor, on_2), "ping works again from the surviving container")
    assert overlay.ping(remote, on_1)
    with rig.client(1) as client:
        eventually(
            lambda: not {e.id: e for e in client.endpoints(network_id=network.id)}[dead.id].active,
            "the dead container's endpoint is marked inactive",
        )
    eventually(lambda: dead_ip not in overlay.neighbour_ips(2, network), "and pruned on the peer")


def ip_netns_delete(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=True, capture_output=True)


def test_a_neighbour_deleted_by_hand_is_restored_by_the_next_pass(rig: Rig, overlay: Overlay) -> None:
    network = overlay.network("198.18.7.0/24")
    overlay.endpoint(1, network, overlay.container("a"))
    remote = overlay.endpoint(2, network, overlay.container("b"))
    remote_ip = remote.target_veth_ip.split("/")[0]
    eventually(lambda: remote_ip in overlay.neighbour_ips(1, network), "converged")
    repairs = health(rig, 1)["kernel"]["repairs"]
    ip(overlay.overlay_netns(1, network), "neigh", "del", remote_ip, "dev", "vxlan0")
    assert remote_ip not in overlay.neighbour_ips(1, network)
    eventually(
        lambda: remote_ip in overlay.neighbour_ips(1, network), "the timer pass restores it", deadline=5
    )
    assert health(rig, 1)["kernel"]["repairs"] > repairs, "the repair is counted"


def test_a_container_gone_before_its_endpoint_is_wired_ends_inactive(
    rig: Rig, overlay: Overlay, tmp_path: Path
) -> None:
    """Host 1's agent is frozen while another writer adds an endpoint for host 1; its container dies."""
    network = overlay.network("198.18.8.0/24")
    container = overlay.container("gone")
    writer = api_only_agent(rig, tmp_path)
    os.kill(rig.agent_pid(1), signal.SIGSTOP)
    try:
        with in_netns(rig.host(1).netns), httpx.Client(timeout=10) as client:
            reply = client.post(
                f"http://{rig.host(1).ip}:9998/endpoints",
                json={
                    "network_id": network.id,
                    "activate": True,
                    "activate_params": {"ns_handle_path": container},
                },
            )
        assert reply.status_code == 201, reply.text
        endpoint_id = reply.json()["endpoint"]["id"]
        rig.remove_target(container_name(container))
    finally:
        os.kill(rig.agent_pid(1), signal.SIGCONT)
        writer.terminate()
        writer.wait(10)
    with rig.client(1) as client:
        eventually(
            lambda: not {e.id: e for e in client.endpoints(network_id=network.id)}[endpoint_id].active,
            "marked inactive",
        )
    assert "marked inactive" in rig.agent_log(1)
    links = json.loads(ip(overlay.overlay_netns(1, network), "-j", "link"))
    assert sorted(link["ifname"] for link in links) == ["br0", "lo", "vxlan0"], "nothing leaked"


def api_only_agent(rig: Rig, tmp_path: Path) -> subprocess.Popen[bytes]:
    """A second agent claiming host 1's name, without a kernel projection, on port 9998."""
    variables = rig.agent_variables(1, KERNEL="off", PORT="9998")
    process = subprocess.Popen(
        ["nsenter", f"--net={rig.host(1).netns}", *AGENT_COMMAND],
        env=agent_environment(variables),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "writer.stderr").open("wb"),
    )

    def ready() -> bool:
        try:
            with in_netns(rig.host(1).netns), httpx.Client(timeout=1) as client:
                return client.get(f"http://{rig.host(1).ip}:9998/health").status_code == 200
        except httpx.HTTPError:
            return False

    eventually(ready, "the writer agent is ready", deadline=20)
    return process
