"""observe → plan → apply against a real kernel, on one simulated host made of namespaces.

No etcd and no agent: the desired state is written by hand, and the test process
drives the host's kernel through `Netlink(home_netns=...)`, so the VXLAN's UDP socket
lives in the simulated host, never in the test's own namespace.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from sand_es.kernel import nsfs
from sand_es.kernel.apply import apply
from sand_es.kernel.model import (
    Address,
    Bridge,
    Create,
    Fdb,
    HostConfig,
    HostState,
    Neigh,
    Netns,
    Veth,
    Vxlan,
)
from sand_es.kernel.netlink import Netlink
from sand_es.kernel.observe import observe
from sand_es.kernel.plan import plan

pytestmark = pytest.mark.netns

RUN = "/var/run/netns"


def run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def ip(*args: str) -> str:
    return run("ip", *args)


@dataclass(frozen=True)
class Host:
    """A simulated host: its namespace (with an underlay address), a container's namespace, names."""

    tag: str
    config: HostConfig
    home: str
    target: str

    @property
    def overlay(self) -> str:
        return self.config.overlay_netns("net1")

    def desired(self, *, veth: bool = True, peers: bool = True) -> HostState:
        veths = frozenset({self.veth()}) if veth else frozenset()
        addresses = {Address(netns=self.overlay, dev="br0", cidr="198.18.0.1/24")}
        if veth:
            addresses.add(Address(netns=self.target, dev="sandtest0001", cidr="198.18.0.2/24"))
        return HostState(
            namespaces=frozenset({Netns(self.overlay)}),
            bridges=frozenset({Bridge(netns=self.overlay, mtu=1450)}),
            vxlans=frozenset({Vxlan(netns=self.overlay, vni=4242, local="192.0.2.1", port=4789, mtu=1450)}),
            veths=veths,
            addresses=frozenset(addresses),
            neighbours=frozenset(
                {Neigh(netns=self.overlay, ip="198.18.0.3", mac="02:84:c6:12:00:03")} if peers else ()
            ),
            fdb=frozenset(
                {Fdb(netns=self.overlay, mac="02:84:c6:12:00:03", dst="192.0.2.2")} if peers else ()
            ),
        )

    def veth(self) -> Veth:
        return Veth(
            endpoint_id="ep-1",
            overlay_netns=self.overlay,
            overlay_name="sandtest0001o",
            overlay_mac="06:00:00:00:00:01",
            target_netns=self.target,
            target_name="sandtest0001",
            target_mac="02:84:c6:12:00:02",
            mtu=1450,
        )


@pytest.fixture
def host() -> Iterator[Host]:
    tag = "sk" + uuid.uuid4().hex[:6]
    home, target = f"{tag}-host", f"{tag}-app"
    config = HostConfig(hostname=tag, host_ip="192.0.2.1", netns_path=RUN, netns_prefix=f"{tag}ov-")
    created = []
    try:
        for name in (home, target):
            ip("netns", "add", name)
            created.append(name)
        ip("-n", home, "link", "add", "ul0", "type", "bridge")
        ip("-n", home, "addr", "add", "192.0.2.1/24", "dev", "ul0")
        ip("-n", home, "link", "set", "ul0", "up")
        yield Host(tag=tag, config=config, home=f"{RUN}/{home}", target=f"{RUN}/{target}")
    finally:
        overlays = [name for name in _netns_names() if name.startswith(config.netns_prefix)]
        for name in [*created, *overlays]:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def _netns_names() -> list[str]:
    import os

    return os.listdir(RUN) if os.path.isdir(RUN) else []


@pytest.fixture
async def netlink(host: Host) -> AsyncIterator[Netlink]:
    link = Netlink(host.config, home_netns=host.home)
    yield link
    link.close()


async def converge(netlink: Netlink, host: Host, wanted: HostState) -> list[object]:
    ops = plan(wanted, await observe(netlink, host.config, wanted))
    report = await apply(netlink, ops)
    assert report.failed == ()
    return list(ops)


async def test_a_network_is_built_from_nothing_and_then_observed_as_desired(
    netlink: Netlink, host: Host
) -> None:
    wanted = host.desired()
    ops = await converge(netlink, host, wanted)
    assert len(ops) == 8
    observed = await observe(netlink, host.config, wanted)
    assert observed == wanted
    assert plan(wanted, observed) == []


async def test_the_vxlan_socket_lives_in_the_host_namespace_not_the_overlay(
    netlink: Netlink, host: Host
) -> None:
    await converge(netlink, host, host.desired())
    details = json.loads(ip("-n", host.overlay.rsplit("/", 1)[1], "-d", "-j", "link", "show", "vxlan0"))[0]
    assert details["linkinfo"]["info_data"]["id"] == 4242
    assert details["link_netnsid"] is not None  # its other side (the UDP socket) is another namespace
    sockets = run("ip", "netns", "exec", host.home.rsplit("/", 1)[1], "ss", "-Huan")
    assert ":4789" in sockets


async def test_the_endpoint_interface_is_up_with_its_address_mac_and_mtu(
    netlink: Netlink, host: Host
) -> None:
    await converge(netlink, host, host.desired())
    [link] = json.loads(ip("-n", host.target.rsplit("/", 1)[1], "-j", "addr", "show", "sandtest0001"))
    assert link["address"] == "02:84:c6:12:00:02"
    assert link["mtu"] == 1450
    assert "UP" in link["flags"]
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] == [
        ("198.18.0.2", 24)
    ]


async def test_applying_twice_changes_nothing(netlink: Netlink, host: Host) -> None:
    wanted = host.desired()
    ops = plan(wanted, await observe(netlink, host.config, wanted))
    assert (await apply(netlink, ops)).failed == ()
    again = await apply(netlink, ops)  # a pass replayed from a stale belief
    assert again.failed == ()
    assert await observe(netlink, host.config, wanted) == wanted


async def test_a_neighbour_deleted_by_hand_is_planned_back(netlink: Netlink, host: Host) -> None:
    wanted = host.desired()
    await converge(netlink, host, wanted)
    overlay = host.overlay.rsplit("/", 1)[1]
    ip("-n", overlay, "neigh", "del", "198.18.0.3", "dev", "vxlan0")
    ops = plan(wanted, await observe(netlink, host.config, wanted))
    assert ops == [Create(Neigh(netns=host.overlay, ip="198.18.0.3", mac="02:84:c6:12:00:03"))]


async def test_a_peer_that_left_is_pruned(netlink: Netlink, host: Host) -> None:
    await converge(netlink, host, host.desired())
    await converge(netlink, host, host.desired(peers=False))
    overlay = host.overlay.rsplit("/", 1)[1]
    assert json.loads(ip("-n", overlay, "-j", "neigh", "show", "dev", "vxlan0")) == []
    fdb = run("bridge", "-n", overlay, "-j", "fdb", "show", "dev", "vxlan0")
    assert not [e for e in json.loads(fdb) if e.get("dst")]


async def test_a_vanished_container_is_reported_and_leaves_no_device(netlink: Netlink, host: Host) -> None:
    ip("netns", "del", host.target.rsplit("/", 1)[1])
    wanted = host.desired()
    report = await apply(netlink, plan(wanted, await observe(netlink, host.config, wanted)))
    assert [v.endpoint_id for v in report.vanished] == ["ep-1"]
    links = json.loads(ip("-n", host.overlay.rsplit("/", 1)[1], "-j", "link", "show"))
    assert sorted(link["ifname"] for link in links) == ["br0", "lo", "vxlan0"]


async def test_removing_the_last_endpoint_removes_the_overlay_namespace(netlink: Netlink, host: Host) -> None:
    await converge(netlink, host, host.desired())
    await converge(netlink, host, HostState())
    assert not nsfs.exists(host.overlay)
    links = json.loads(ip("-n", host.target.rsplit("/", 1)[1], "-j", "link", "show"))
    assert [link["ifname"] for link in links] == ["lo"]  # the container's end went with its pair
