"""The application service on the in-memory log: group commit, refusals, idempotency, races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from sand_es.commands import AddEndpoint, Command, CreateNetwork, DeactivateEndpoint, DeleteNetwork
from sand_es.errors import Conflicting, Invalid, KeyReused, NotFound
from sand_es.events import START, EndpointAdded, NetworkCreated, Record
from sand_es.memlog import MemoryLog
from sand_es.projections import EMPTY, fold
from sand_es.service import Outcome, Service
from sand_es.views import LiveViews
from tests.unit.builders import HOST_A, HOST_B, NET_A, NET_B
from tests.unit.gwt import AT

ServiceFactory = Callable[[str], Service]


@pytest.fixture
def log() -> MemoryLog:
    """An empty in-memory log."""
    return MemoryLog()


@pytest.fixture
async def make_service(log: MemoryLog) -> AsyncIterator[ServiceFactory]:
    """Services on `log`, each with views of its own, closed after the test."""
    services: list[Service] = []

    def make(actor: str) -> Service:
        service = Service(log, LiveViews(), actor=actor, clock=lambda: AT)
        services.append(service)
        return service

    yield make
    for service in services:
        await service.close()


@pytest.fixture
def service(make_service: ServiceFactory) -> Service:
    """One agent's service on `log`."""
    return make_service(HOST_A)


async def stored(log: MemoryLog) -> list[Record]:
    """Every record of the log."""
    return [record async for page in log.read(START) for record in page]


def created_by(outcome: Outcome) -> NetworkCreated:
    """The network a CreateNetwork outcome recorded."""
    data = outcome.records[0].envelope.data
    assert isinstance(data, NetworkCreated)
    return data


class TestGroupCommit:
    """Commands queued together are decided in turn and appended together."""

    async def test_concurrent_creates_get_distinct_vnis_in_fewer_appends(
        self, service: Service, log: MemoryLog
    ) -> None:
        """Ten concurrent creations take VNIs 1..10 and share fewer revisions than there are commands."""
        outcomes = await asyncio.gather(*(service.execute(CreateNetwork()) for _ in range(10)))
        vnis = sorted(created_by(o).vxlan_vni for o in outcomes)
        revisions = {r.rev for o in outcomes for r in o.records}
        assert (list(range(1, 11)), 10) == (vnis, (await log.head()).seq)
        assert len(revisions) < len(outcomes)

    async def test_decisions_in_a_group_see_each_other(self, service: Service) -> None:
        """An endpoint added in the same group as its network is decided on that network."""
        network, endpoint = await asyncio.gather(
            service.execute(CreateNetwork(network_id=NET_A)),
            service.execute(AddEndpoint(network_id=NET_A, hostname=HOST_A)),
        )
        data = endpoint.records[0].envelope.data
        assert isinstance(data, EndpointAdded)
        assert (NET_A, "10.0.0.2/24", network.records[0].rev) == (
            data.network_id,
            data.target_veth_ip,
            endpoint.records[0].rev,
        )

    async def test_rejected_command_appends_nothing_and_spares_the_group(
        self, service: Service, log: MemoryLog
    ) -> None:
        """Refused commands fail alone; the others of their group are committed together."""
        results = await asyncio.gather(
            service.execute(CreateNetwork(network_id=NET_A)),
            service.execute(CreateNetwork(type="bridge")),
            service.execute(DeleteNetwork(network_id=NET_B)),
            service.execute(CreateNetwork(network_id=NET_A)),
            service.execute(CreateNetwork(network_id=NET_B)),
            return_exceptions=True,
        )
        kinds = [type(r).__name__ for r in results]
        assert ["Outcome", "Invalid", "NotFound", "Conflicting", "Outcome"] == kinds
        first, last = results[0], results[4]
        assert isinstance(first, Outcome)
        assert isinstance(last, Outcome)
        expected = ([1, 2], [NET_A, NET_B], first.records[0].rev)
        actual = (
            [r.seq for r in await stored(log)],
            [created_by(first).network_id, created_by(last).network_id],
            last.records[0].rev,
        )
        assert expected == actual

    async def test_lone_rejection_appends_nothing(self, service: Service, log: MemoryLog) -> None:
        """A refused command raises its error and leaves the log empty."""
        with pytest.raises(Invalid, match="invalid mtu 100"):
            await service.execute(CreateNetwork(mtu=100))
        assert START == await log.head()

    async def test_no_op_appends_nothing(self, service: Service, log: MemoryLog) -> None:
        """A command that asks for what already is returns no records and appends nothing."""
        await service.execute(CreateNetwork(network_id=NET_A))
        added = await service.execute(AddEndpoint(network_id=NET_A, hostname=HOST_A))
        head = await log.head()
        endpoint_id = added.records[0].envelope.data.endpoint_id  # type: ignore[union-attr]
        outcome = await service.execute(DeactivateEndpoint(endpoint_id=endpoint_id))
        assert ((), head) == (outcome.records, await log.head())


class TestIdempotency:
    """A command id makes `execute` idempotent."""

    async def test_replay_returns_the_original_outcome(self, service: Service, log: MemoryLog) -> None:
        """Executing a command id again returns its first records, marked replayed, and appends nothing."""
        first = await service.execute(CreateNetwork(), command_id="cmd-1")
        head = await log.head()
        again = await service.execute(CreateNetwork(), command_id="cmd-1")
        assert (False, True) == (first.replayed, again.replayed)
        assert (first.records, head) == (again.records, await log.head())

    async def test_replay_on_another_agent_catches_up(self, make_service: ServiceFactory) -> None:
        """An agent that has not seen a command yet replays it and catches its views up to it."""
        first = await make_service(HOST_A).execute(CreateNetwork(network_id=NET_A), command_id="cmd-1")
        other = make_service(HOST_B)
        again = await other.execute(CreateNetwork(network_id=NET_A), command_id="cmd-1")
        assert (True, first.records) == (again.replayed, again.records)
        assert other.views.current.networks.get(NET_A) is not None

    async def test_distinct_ids_are_distinct_commands(self, service: Service, log: MemoryLog) -> None:
        """Two command ids each get their own effect."""
        await service.execute(CreateNetwork(), command_id="cmd-1")
        await service.execute(CreateNetwork(), command_id="cmd-2")
        assert 2 == (await log.head()).seq

    async def test_same_id_in_flight_twice_runs_once(self, service: Service, log: MemoryLog) -> None:
        """A command id sent twice before the first commits is still carried out once."""
        first, second = await asyncio.gather(
            service.execute(CreateNetwork(), command_id="cmd-1"),
            service.execute(CreateNetwork(), command_id="cmd-1"),
        )
        assert (1, first.records) == ((await log.head()).seq, second.records)


class TestRacingAgents:
    """Agents deciding on their own views never hand out the same VNI or address."""

    async def test_two_agents_race(self, make_service: ServiceFactory, log: MemoryLog) -> None:
        """Two agents racing 32 commands each keep VNIs and addresses unique, and agree afterwards."""
        a, b = make_service(HOST_A), make_service(HOST_B)
        await a.execute(CreateNetwork(network_id=NET_A))
        await b.views.catch_up(log)

        async def submit(service: Service, command: Command, ticks: int) -> Outcome:
            for _ in range(ticks):  # spread submissions so that the agents' groups interleave
                await asyncio.sleep(0)
            return await service.execute(command)

        def commands(host: str) -> list[Command]:
            return [
                CreateNetwork() if n % 2 else AddEndpoint(network_id=NET_A, hostname=host) for n in range(32)
            ]

        await asyncio.gather(
            *(submit(a, c, n % 5) for n, c in enumerate(commands(HOST_A))),
            *(submit(b, c, n % 7) for n, c in enumerate(commands(HOST_B))),
        )

        log_records = await stored(log)
        networks = [r.envelope.data for r in log_records if isinstance(r.envelope.data, NetworkCreated)]
        addresses = [r.envelope.data for r in log_records if isinstance(r.envelope.data, EndpointAdded)]
        vnis = sorted(n.vxlan_vni for n in networks)
        ips = sorted(e.target_veth_ip for e in addresses)
        revisions = {r.rev for r in log_records}
        assert list(range(1, 34)) == vnis
        assert sorted(f"10.0.0.{n}/24" for n in range(2, 34)) == ips
        assert len(revisions) < len(log_records)

        expected = fold(EMPTY, log_records)
        assert (expected, expected) == (await a.views.catch_up(log), await b.views.catch_up(log))


class TestReadYourWrites:
    """When `execute` returns, the agent's views hold the command's effect."""

    async def test_views_hold_the_new_network(self, service: Service) -> None:
        """The created network is in the service's current views, at the outcome's position."""
        outcome = await service.execute(CreateNetwork(network_id=NET_A))
        current = service.views.current
        assert (True, outcome.position, current) == (
            current.networks.get(NET_A) is not None,
            current.position,
            outcome.snapshot,
        )

    async def test_rejection_names_what_is_missing(self, service: Service) -> None:
        """Commands on a network another command just deleted are refused as NotFound."""
        await service.execute(CreateNetwork(network_id=NET_A))
        await service.execute(DeleteNetwork(network_id=NET_A))
        with pytest.raises(NotFound, match=f"network {NET_A} not found"):
            await service.execute(AddEndpoint(network_id=NET_A, hostname=HOST_A))

    async def test_existing_network_conflicts(self, service: Service) -> None:
        """Creating a network under an id just taken is Conflicting."""
        await service.execute(CreateNetwork(network_id=NET_A))
        with pytest.raises(Conflicting, match="already exists"):
            await service.execute(CreateNetwork(network_id=NET_A))


class TestStaleViews:
    """A refusal is only given on views proven current."""

    async def test_agent_behind_the_log_catches_up_before_refusing(
        self, make_service: ServiceFactory
    ) -> None:
        """A network created on another agent a moment ago is found, not refused as unknown."""
        a, b = make_service(HOST_A), make_service(HOST_B)
        network = created_by(await a.execute(CreateNetwork(network_id=NET_A)))
        # b's views never tailed the log: they are still empty.
        outcome = await b.execute(AddEndpoint(network_id=network.network_id, hostname=HOST_B))
        assert isinstance(outcome.records[0].envelope.data, EndpointAdded)

    async def test_refusal_on_current_views_stands(self, make_service: ServiceFactory) -> None:
        """When the views are at the head, an unknown network is refused as such."""
        b = make_service(HOST_B)
        with pytest.raises(NotFound, match=f"network {NET_B} not found"):
            await b.execute(AddEndpoint(network_id=NET_B, hostname=HOST_B))


class TestCallerGoesAway:
    """A caller that stops waiting (an HTTP client hanging up) does not disturb the others."""

    async def test_cancelled_caller_does_not_fail_its_group(self, service: Service, log: MemoryLog) -> None:
        """The other commands of the group succeed, and the abandoned one still lands."""
        left = asyncio.create_task(service.execute(CreateNetwork(name="left")))
        stays = asyncio.create_task(service.execute(CreateNetwork(name="stays")))
        await asyncio.sleep(0)  # both are queued; the writer has not run yet
        left.cancel()
        outcome = await stays
        assert "stays" == created_by(outcome).name
        assert ["left", "stays"] == sorted(
            r.envelope.data.name for r in await stored(log) if isinstance(r.envelope.data, NetworkCreated)
        )


class TestCommandIdReused:
    """A command id given again with another command is refused, not replayed."""

    async def test_same_id_for_another_command_is_refused(self, service: Service, log: MemoryLog) -> None:
        """The second, different command under the id gets KeyReused and appends nothing."""
        await service.execute(CreateNetwork(name="first"), command_id="key-1")
        before = await log.head()
        with pytest.raises(KeyReused, match="key-1"):
            await service.execute(CreateNetwork(name="second"), command_id="key-1")
        assert before == await log.head()

    async def test_same_id_for_another_command_in_flight_is_refused(self, service: Service) -> None:
        """Sent together, the first command lands and the different one under its id is refused."""
        first, second = await asyncio.gather(
            service.execute(CreateNetwork(name="first"), command_id="key-2"),
            service.execute(CreateNetwork(name="second"), command_id="key-2"),
            return_exceptions=True,
        )
        assert isinstance(first, Outcome)
        assert isinstance(second, KeyReused)
