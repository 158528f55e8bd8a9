"""Two agents on one etcd: concurrent commands never collide, and every view agrees."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from sand_es.commands import AddEndpoint, Command, CreateNetwork, DeleteNetwork, RemoveEndpoint
from sand_es.config import EtcdSettings, parse_hosts
from sand_es.errors import Conflicting, Invalid, NotFound, Rejected
from sand_es.etcdlog import EtcdLog
from sand_es.events import START, EndpointAdded, NetworkCreated, Record
from sand_es.service import Outcome, Service
from sand_es.views import LiveViews
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.etcd


class Agent:
    """One simulated agent: its own etcd client, views (tailing the log) and service."""

    def __init__(self, log: EtcdLog, hostname: str) -> None:
        self.log = log
        self.views = LiveViews()
        self.service = Service(log, self.views, actor=hostname)
        self.hostname = hostname
        self.follower = asyncio.create_task(self.views.follow(log))

    async def close(self) -> None:
        self.follower.cancel()
        await asyncio.gather(self.follower, return_exceptions=True)
        await self.service.close()
        await self.log.close()


@pytest.fixture
async def agents(etcd_server: EtcdServer, etcd_prefix: str) -> AsyncIterator[tuple[Agent, Agent]]:
    settings = EtcdSettings(hosts=parse_hosts(etcd_server.url), prefix=etcd_prefix)
    pair = (
        Agent(await EtcdLog.connect(settings), "host-a"),
        Agent(await EtcdLog.connect(settings), "host-b"),
    )
    for agent in pair:
        await asyncio.wait_for(agent.views.caught_up.wait(), timeout=10)
    yield pair
    for agent in pair:
        await agent.close()


async def read_log(log: EtcdLog) -> list[Record]:
    return [record async for page in log.read(START) for record in page]


class TestTwoAgents:
    async def test_32_concurrent_commands_each_never_collide(self, agents: tuple[Agent, Agent]) -> None:
        """2 agents × 32 tasks creating networks and endpoints: unique VNIs and IPs, equal views."""
        a, b = agents
        shared = (await a.service.execute(CreateNetwork(name="shared", ip_range="198.18.0.0/24"))).records[0]
        shared_id = shared.envelope.data.network_id

        async def work(agent: Agent, n: int) -> list[Outcome]:
            own = await agent.service.execute(
                CreateNetwork(name=f"{agent.hostname}-{n}", ip_range="198.18.1.0/28")
            )
            own_id = own.records[0].envelope.data.network_id
            endpoints = [
                await agent.service.execute(AddEndpoint(network_id=net, hostname=agent.hostname, host_ip=ip))
                for net, ip in ((shared_id, "192.0.2.1"), (own_id, "192.0.2.1"), (shared_id, "192.0.2.1"))
            ]
            return [own, *endpoints]

        results = await asyncio.gather(*[work(agent, n) for agent in agents for n in range(32)])
        acknowledged = [outcome for outcomes in results for outcome in outcomes]

        records = await read_log(a.log)
        vnis = [r.envelope.data.vxlan_vni for r in records if isinstance(r.envelope.data, NetworkCreated)]
        assert len(vnis) == len(set(vnis)) == 65
        ips = Counter(
            (r.envelope.data.network_id, r.envelope.data.target_veth_ip)
            for r in records
            if isinstance(r.envelope.data, EndpointAdded)
        )
        assert len(ips) == 32 * 2 * 3
        assert [key for key, count in ips.items() if count > 1] == []
        appended_by = Counter(r.envelope.command_id for r in records)
        for outcome in acknowledged:
            assert len(outcome.records) == appended_by[outcome.command_id]
            assert {r.rev for r in outcome.records} == {
                r.rev for r in records if r.envelope.command_id == outcome.command_id
            }

        for agent in agents:
            await agent.views.catch_up(agent.log)
        assert a.views.current == b.views.current
        assert len(records) == a.views.position.seq

    async def test_each_agent_reads_its_own_writes(self, agents: tuple[Agent, Agent]) -> None:
        """The agent that took a command shows its effect at once; the other one soon after."""
        a, b = agents
        outcome = await a.service.execute(CreateNetwork(name="ryw"))
        network_id = outcome.records[0].envelope.data.network_id
        assert a.views.current.networks.get(network_id) is not None
        seen = await asyncio.wait_for(b.views.wait_for(outcome.position), timeout=5)
        assert seen.networks.get(network_id) is not None


class TestBadInputAppendsNothing:
    @pytest.mark.parametrize(
        ("command", "error", "message"),
        [
            (CreateNetwork(ip_range="198.18.0.0/33"), Invalid, "invalid ip_range"),
            (CreateNetwork(ip_range="not-a-cidr"), Invalid, "invalid ip_range"),
            (CreateNetwork(ip_range="198.0.0.0/7"), Invalid, "between /8 and /30"),
            (CreateNetwork(ip_range="198.18.0.0/31"), Invalid, "between /8 and /30"),
            (AddEndpoint(network_id="nope", hostname="host-a"), NotFound, "network nope not found"),
            (RemoveEndpoint(endpoint_id="nope"), NotFound, "endpoint nope not found"),
            (DeleteNetwork(network_id="nope"), NotFound, "network nope not found"),
        ],
        ids=[
            "prefix-33",
            "garbage",
            "prefix-7",
            "prefix-31",
            "unknown-network",
            "unknown-endpoint",
            "delete-unknown",
        ],
    )
    async def test_rejected_command(
        self, agents: tuple[Agent, Agent], command: Command, error: type[Rejected], message: str
    ) -> None:
        """A malformed or impossible command is refused with a message, and the log does not move."""
        a, _ = agents
        before = await a.log.head()
        with pytest.raises(error, match=message):
            await a.service.execute(command)
        assert before == await a.log.head()

    async def test_explicit_addresses_outside_taken_and_exhausted(self, agents: tuple[Agent, Agent]) -> None:
        """Explicit IPs outside the range or taken, and a full range, are refused without appending."""
        a, _ = agents
        created = await a.service.execute(CreateNetwork(ip_range="198.18.2.0/30"))
        network_id = created.records[0].envelope.data.network_id
        await a.service.execute(
            AddEndpoint(network_id=network_id, hostname="host-a", ipv4_address="198.18.2.2")
        )
        before = await a.log.head()
        cases: list[tuple[AddEndpoint, type[Rejected], str]] = [
            (
                AddEndpoint(network_id=network_id, hostname="host-a", ipv4_address="198.18.3.2"),
                Invalid,
                "outside",
            ),
            (
                AddEndpoint(network_id=network_id, hostname="host-a", ipv4_address="198.18.2.2"),
                Conflicting,
                "already",
            ),
            (AddEndpoint(network_id=network_id, hostname="host-a"), Conflicting, "no free address"),
        ]
        for command, error, message in cases:
            with pytest.raises(error, match=message):
                await a.service.execute(command)
        assert before == await a.log.head()
