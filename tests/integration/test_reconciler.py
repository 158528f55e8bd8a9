"""The reconciler on one simulated host: views in (folded by hand, no etcd), a real kernel out."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from sand_es.commands.naming import overlay_veth_name, target_veth_name
from sand_es.events import Event
from sand_es.kernel import nsfs
from sand_es.kernel.model import HostConfig
from sand_es.kernel.netlink import Netlink
from sand_es.kernel.reconciler import Reconciler
from sand_es.views import LiveViews
from tests.unit.builders import EP_1, EP_2, HOST_A, HOST_B, NET_A, activated, endpoint_added, network_created
from tests.unit.gwt import records

pytestmark = pytest.mark.netns

RUN = "/var/run/netns"
RANGE = "198.18.0.0/24"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@dataclass
class Scene:
    """A host namespace, a container namespace, the views and the reconciler driving the host."""

    tag: str
    config: HostConfig
    views: LiveViews
    reconciler: Reconciler
    container: str
    deactivated: list[tuple[str, str]] = field(default_factory=list)

    @property
    def overlay(self) -> str:
        return self.config.overlay_netns(NET_A)

    def append(self, *events: Event) -> None:
        self.views.advance(records(events, first=self.views.position.seq + 1))

    def links(self, netns_path: str) -> list[str]:
        return sorted(
            link["ifname"] for link in json.loads(ip("-n", os.path.basename(netns_path), "-j", "link"))
        )

    def neighbours(self) -> list[str]:
        found = json.loads(ip("-n", os.path.basename(self.overlay), "-j", "neigh", "show", "dev", "vxlan0"))
        return sorted(entry["dst"] for entry in found)


@pytest.fixture
def names() -> Iterator[tuple[str, list[str]]]:
    tag = "sr" + uuid.uuid4().hex[:6]
    created: list[str] = []
    try:
        yield tag, created
    finally:
        ours = [n for n in os.listdir(RUN) if n.startswith(f"{tag}ov-")] if os.path.isdir(RUN) else []
        for name in [*created, *ours]:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.fixture
async def scene(names: tuple[str, list[str]]) -> AsyncIterator[Scene]:
    tag, created = names
    for name in (f"{tag}-host", f"{tag}-app"):
        ip("netns", "add", name)
        created.append(name)
    ip("-n", f"{tag}-host", "link", "add", "ul0", "type", "bridge")
    ip("-n", f"{tag}-host", "addr", "add", "192.0.2.10/24", "dev", "ul0")
    ip("-n", f"{tag}-host", "link", "set", "ul0", "up")
    config = HostConfig(hostname=HOST_A, host_ip="192.0.2.10", netns_path=RUN, netns_prefix=f"{tag}ov-")
    views = LiveViews()
    deactivated: list[tuple[str, str]] = []

    async def deactivate(endpoint_id: str, reason: str) -> None:
        deactivated.append((endpoint_id, reason))

    reconciler = Reconciler(
        views,
        config,
        deactivate=deactivate,
        resync_interval=0.3,
        netlink=Netlink(config, home_netns=f"{RUN}/{tag}-host"),
    )
    scene = Scene(tag, config, views, reconciler, f"{RUN}/{tag}-app", deactivated)
    task = asyncio.create_task(reconciler.run())
    try:
        yield scene
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def wired(scene: Scene) -> list[Event]:
    """NET_A with a local endpoint in the scene's container, and a remote one on host-b."""
    return [
        network_created(ip_range=RANGE, vni=4242),
        endpoint_added(EP_1, ip="198.18.0.2/24", hostname=HOST_A),
        activated(EP_1, path=scene.container),
        endpoint_added(EP_2, ip="198.18.0.3/24", hostname=HOST_B),
        activated(EP_2),
    ]


async def settle(scene: Scene) -> None:
    async with asyncio.timeout(10):
        await scene.reconciler.wait_applied(scene.views.position)


async def test_nothing_is_touched_before_the_history_is_replayed(scene: Scene) -> None:
    stray = scene.config.overlay_netns("gone-network")
    await nsfs.create(stray)
    await asyncio.sleep(0.5)
    assert nsfs.exists(stray), "deleted before the views caught up"
    scene.views.caught_up.set()
    await settle(scene)
    assert not nsfs.exists(stray), "an overlay namespace no network wants is removed once caught up"


async def test_new_events_are_wired_without_observing_the_kernel(scene: Scene) -> None:
    scene.views.caught_up.set()
    await settle(scene)
    scene.append(*wired(scene))
    await settle(scene)
    assert scene.links(scene.container) == ["lo", target_veth_name(EP_1)]
    assert scene.links(scene.overlay) == ["br0", "lo", overlay_veth_name(EP_1), "vxlan0"]
    assert scene.neighbours() == ["198.18.0.3"]
    assert scene.reconciler.stats.full_passes == 1  # the boot pass only: events are planned from belief


async def test_a_timer_pass_repairs_drift_and_counts_it(scene: Scene) -> None:
    scene.append(*wired(scene))
    scene.views.caught_up.set()
    await settle(scene)
    ip("-n", os.path.basename(scene.overlay), "neigh", "del", "198.18.0.3", "dev", "vxlan0")
    await asyncio.sleep(1.0)  # the resync timer is 0.3 s
    assert scene.neighbours() == ["198.18.0.3"]
    assert scene.reconciler.stats.repairs >= 1


async def test_a_container_that_vanished_gets_its_endpoint_marked_inactive(scene: Scene) -> None:
    ip("netns", "del", os.path.basename(scene.container))
    scene.append(*wired(scene))
    scene.views.caught_up.set()
    await settle(scene)
    assert [endpoint for endpoint, _ in scene.deactivated][:1] == [EP_1]
    assert "no longer exists" in scene.deactivated[0][1]
    assert scene.links(scene.overlay) == ["br0", "lo", "vxlan0"]  # no half-made veth left behind
