"""Two real agents on one etcd, driven over HTTP: they share one log, so they agree on everything."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.agents import (
    AGENT_COMMAND,
    AgentProcess,
    Launcher,
    agent_environment,
    agent_variables,
    free_ports,
)
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.etcd

PROPAGATION_TIMEOUT = 10.0


@dataclass(frozen=True)
class Pair:
    """Agents host-a (192.0.2.1) and host-b (192.0.2.2) on one log, sharing one NETNS_PATH."""

    a: AgentProcess
    b: AgentProcess


@pytest.fixture(scope="module")
def pair(etcd_server: EtcdServer) -> Iterator[Pair]:
    """Two agents on a log of their own, ready to write; both stopped by PID after the module."""
    prefix = f"/sand-es-test/{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="sand-es-e2e-") as directory:
        common = {
            "ETCD_HOSTS": etcd_server.url,
            "ETCD_PREFIX": prefix,
            "HTTP_HOST": "127.0.0.1",
            "NETNS_PATH": f"{directory}/netns",
            "LOG_FORMAT": "json",
        }
        hosts = [("host-a", "192.0.2.1"), ("host-b", "192.0.2.2")]
        agents: list[AgentProcess] = []
        try:
            for (name, ip), port in zip(hosts, free_ports(len(hosts)), strict=True):
                variables = {**common, "PORT": str(port), "PEER_HOSTNAME": name, "PEER_IP": ip}
                agents.append(AgentProcess(name, variables, Path(directory)))
            for agent in agents:
                agent.wait_ready()
            yield Pair(*agents)
        finally:
            for agent in agents:
                agent.stop()


@pytest.fixture
async def a(pair: Pair) -> AsyncIterator[httpx.AsyncClient]:
    """A client of agent host-a."""
    async with httpx.AsyncClient(base_url=pair.a.url, timeout=15.0) as client:
        yield client


@pytest.fixture
async def b(pair: Pair) -> AsyncIterator[httpx.AsyncClient]:
    """A client of agent host-b."""
    async with httpx.AsyncClient(base_url=pair.b.url, timeout=15.0) as client:
        yield client


async def eventually(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `probe` until it holds, failing after PROPAGATION_TIMEOUT seconds."""
    deadline = time.monotonic() + PROPAGATION_TIMEOUT
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {PROPAGATION_TIMEOUT:g} s")
        await asyncio.sleep(0.05)


async def created(response: Awaitable[httpx.Response], kind: str) -> dict[str, Any]:
    """The object of a 201 answer (`kind` is "network" or "endpoint")."""
    answer = await response
    assert 201 == answer.status_code, answer.text
    body: dict[str, Any] = answer.json()[kind]
    return body


async def listed(client: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    """The list a GET of /networks or /endpoints answers."""
    answer = await client.get(path, params=params)
    assert 200 == answer.status_code, answer.text
    items: list[dict[str, Any]] = answer.json()[path.strip("/")]
    return items


class TestSharedLog:
    """What one agent writes, the other reads."""

    async def test_a_network_is_read_on_its_agent_at_once_and_on_the_other_soon(
        self, a: httpx.AsyncClient, b: httpx.AsyncClient
    ) -> None:
        """A network created on A is shown by A right away (read-your-writes), then by B identically."""
        network = await created(a.post("/networks", json={"ip_range": "198.18.10.0/24"}), "network")
        shown = await a.get(f"/networks/{network['id']}")
        assert (200, network) == (shown.status_code, shown.json()["network"])

        async def b_shows_it() -> bool:
            return 200 == (await b.get(f"/networks/{network['id']}")).status_code

        await eventually(b_shows_it, "B shows the network")
        assert network == (await b.get(f"/networks/{network['id']}")).json()["network"]

    async def test_an_endpoint_added_on_b_is_listed_by_a_as_b_s(
        self, a: httpx.AsyncClient, b: httpx.AsyncClient
    ) -> None:
        """An endpoint added on B (in a network A created a moment ago) is listed by A as host-b's."""
        network = await created(a.post("/networks", json={"ip_range": "198.18.11.0/24"}), "network")
        endpoint = await created(b.post("/endpoints", json={"network_id": network["id"]}), "endpoint")
        assert ("host-b", "192.0.2.2") == (endpoint["hostname"], endpoint["host_ip"])

        async def a_lists_it() -> bool:
            return endpoint in await listed(a, "/endpoints", network_id=network["id"])

        await eventually(a_lists_it, "A lists B's endpoint")
        assert [endpoint] == await listed(a, "/endpoints", network_id=network["id"], hostname="host-b")

    async def test_b_s_endpoint_is_deleted_through_a(
        self, a: httpx.AsyncClient, b: httpx.AsyncClient
    ) -> None:
        """Deleting B's endpoint through A answers 204, and neither agent lists it any more."""
        network = await created(a.post("/networks", json={"ip_range": "198.18.12.0/24"}), "network")
        endpoint = await created(b.post("/endpoints", json={"network_id": network["id"]}), "endpoint")
        deleted = await a.delete(f"/endpoints/{endpoint['id']}")
        assert (204, b"") == (deleted.status_code, deleted.content)
        assert [] == await listed(a, "/endpoints", network_id=network["id"])

        async def b_forgot_it() -> bool:
            return [] == await listed(b, "/endpoints", network_id=network["id"])

        await eventually(b_forgot_it, "B stops listing the endpoint")

    async def test_concurrent_bursts_on_both_agents_converge(
        self, a: httpx.AsyncClient, b: httpx.AsyncClient
    ) -> None:
        """20 networks created on each agent at once, then 10 endpoints each: both agents list the same."""
        networks = await asyncio.gather(
            *(
                created(a.post("/networks", json={"ip_range": f"198.18.{100 + i}.0/24"}), "network")
                for i in range(20)
            ),
            *(
                created(b.post("/networks", json={"ip_range": f"198.19.{100 + i}.0/24"}), "network")
                for i in range(20)
            ),
        )
        on_a, on_b = networks[:20], networks[20:]
        endpoints = await asyncio.gather(
            *(created(a.post("/endpoints", json={"network_id": n["id"]}), "endpoint") for n in on_b[:10]),
            *(created(b.post("/endpoints", json={"network_id": n["id"]}), "endpoint") for n in on_a[:10]),
        )

        async def both_agree() -> bool:
            return await listed(a, "/networks") == await listed(b, "/networks") and await listed(
                a, "/endpoints"
            ) == await listed(b, "/endpoints")

        await eventually(both_agree, "A and B list the same networks and endpoints")
        all_networks = await listed(a, "/networks")
        all_endpoints = await listed(a, "/endpoints")
        assert {n["id"] for n in networks} <= {n["id"] for n in all_networks}
        assert {e["id"] for e in endpoints} <= {e["id"] for e in all_endpoints}
        vnis = [n["vxlan_vni"] for n in all_networks]
        assert sorted(set(vnis)) == sorted(vnis)
        assert ["host-a"] * 10 + ["host-b"] * 10 == [e["hostname"] for e in endpoints]


class TestLifecycle:
    """Starting and stopping an agent process."""

    def test_sigterm_stops_the_agent_cleanly(
        self, launch: Launcher, etcd_server: EtcdServer, etcd_prefix: str, scratch: Path
    ) -> None:
        """SIGTERM makes a serving agent close its etcd client and exit with code 0 within a few seconds."""
        variables = agent_variables(
            etcd_server.url, scratch / "netns", ETCD_PREFIX=etcd_prefix, LOG_FORMAT="json"
        )
        agent = launch("host-a", variables)
        agent.wait_ready()
        started = time.monotonic()
        agent.process.send_signal(signal.SIGTERM)
        code = agent.process.wait(timeout=10)
        assert (0, True) == (code, time.monotonic() - started < 5.0), agent.stderr()
        assert "agent stopped" in agent.stderr()

    @pytest.mark.parametrize(
        ("variables", "named"),
        [
            ({"PORT": "abc"}, ["PORT"]),
            ({"HTTP_PORT": "9001", "PORT": "9002"}, ["HTTP_PORT", "PORT"]),
            ({"MAX_VNI": "0"}, ["MAX_VNI"]),
            ({"PEER_IP": "192.0.2.300"}, ["PEER_IP"]),
            ({"HTTP_TLS_CERT": "/etc/hostname"}, ["HTTP_TLS_KEY", "HTTP_TLS_CA"]),
            ({"LOG_FORMAT": "xml"}, ["LOG_FORMAT"]),
            ({"ETCD_HOSTS": "ftp://127.0.0.1:2379"}, ["ETCD_HOSTS"]),
        ],
        ids=["port", "ports-disagree", "max-vni", "peer-ip", "tls-partial", "log-format", "etcd-hosts"],
    )
    def test_a_bad_setting_stops_the_agent_naming_it(
        self, etcd_server: EtcdServer, variables: dict[str, str], named: list[str]
    ) -> None:
        """An agent with a malformed setting exits non-zero at once, its stderr naming the variable."""
        environment = agent_environment(
            {
                "ETCD_HOSTS": etcd_server.url,
                "HTTP_HOST": "127.0.0.1",
                "PORT": str(free_ports(1)[0]),
                **variables,
            }
        )
        result = subprocess.run(
            AGENT_COMMAND, env=environment, capture_output=True, text=True, timeout=30, check=False
        )
        assert (True, named) == (
            result.returncode != 0,
            [name for name in named if name in result.stderr],
        ), result.stderr
