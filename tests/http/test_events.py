"""The log's past through the API: `GET /events` (filters, paging) and `?revision=` on the read routes.

Run on the in-memory log and on a real etcd (where revisions are found by binary search).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from sand_es.config import AgentSettings, EtcdSettings, parse_hosts
from sand_es.daemon import policy_of
from sand_es.etcdlog import EtcdLog
from sand_es.events import Position
from sand_es.http import history as http_history
from sand_es.http import views as http_views
from sand_es.http.app import create_app
from sand_es.memlog import MemoryLog
from sand_es.ports import EventLog
from sand_es.projections import EMPTY, Snapshot, fold
from sand_es.service import Service
from sand_es.snapshots import SnapshotStore
from sand_es.views import LiveViews
from tests.support.audit_history import Built, build_history
from tests.support.etcd_server import EtcdServer


@dataclass
class Agent:
    """An agent's app over a log holding the `Built` history."""

    client: httpx.AsyncClient
    built: Built
    settings: AgentSettings

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params)

    async def events(self, **params: Any) -> dict[str, Any]:
        response = await self.get("/events", **params)
        assert 200 == response.status_code, response.text
        body: dict[str, Any] = response.json()
        return body

    async def seqs(self, **params: Any) -> list[int]:
        return [event["seq"] for event in (await self.events(**params))["events"]]

    def at(self, revision: int) -> Snapshot:
        """The fold of the events written at `revision` or before."""
        return fold(EMPTY, [r for r in self.built.records if r.rev <= revision])


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def agent(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Agent]:
    """An agent (host-a) whose log holds the `Built` history, its views caught up."""
    log: EventLog
    if request.param == "memory":
        log = MemoryLog()
    else:
        server: EtcdServer = request.getfixturevalue("etcd_server")
        prefix: str = request.getfixturevalue("etcd_prefix")
        log = await EtcdLog.connect(EtcdSettings(hosts=parse_hosts(server.url), prefix=prefix))
    built = await build_history(log)
    settings = AgentSettings(etcd=EtcdSettings(), hostname="host-a", netns_path=str(tmp_path))
    views = LiveViews()
    await views.catch_up(log)
    views.caught_up.set()
    service = Service(log, views, actor="host-a", policy=policy_of(settings))
    app = create_app(service, settings, log=log)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        yield Agent(client, built, settings)
    await service.close()
    await log.close()


class TestEvents:
    async def test_every_event_in_one_page(self, agent: Agent) -> None:
        """No parameter: every event, oldest first, and no next page."""
        body = await agent.events()
        assert (list(range(1, 11)), None) == ([e["seq"] for e in body["events"]], body["next_after_revision"])
        first = body["events"][0]
        assert {"seq", "revision", "at", "actor", "command_id", "type", "id", "data"} == set(first)
        assert ("network.created", agent.built.net_a) == (first["type"], first["data"]["network_id"])

    async def test_pages_follow_one_another_without_splitting_a_transaction(self, agent: Agent) -> None:
        """limit=1: e1's added and activated share a revision, so their page holds both."""
        pages, after = [], 0
        while after is not None:
            body = await agent.events(limit=1, after_revision=after)
            pages.append([e["seq"] for e in body["events"]])
            after = body["next_after_revision"]
        assert [[1], [2, 3], [4, 5], [6], [7], [8], [9], [10]] == pages

    async def test_a_page_starts_after_the_revision_given(self, agent: Agent) -> None:
        """after_revision: events written later only."""
        revisions = agent.built.revisions
        assert [6, 7, 8, 9, 10] == await agent.seqs(after_revision=revisions[2])
        assert [] == await agent.seqs(after_revision=revisions[-1])
        assert [] == await agent.seqs(after_revision=10**9)

    async def test_filters(self, agent: Agent) -> None:
        """The audit tool's filters, as query parameters."""
        built = agent.built
        assert [6, 7, 8, 9] == await agent.seqs(network_id=built.net_b.upper())
        assert [2, 3, 10] == await agent.seqs(endpoint_id=built.e1)
        assert [4, 5, 7, 8] == await agent.seqs(hostname="host-b")
        assert [8, 9] == await agent.seqs(type=["endpoint.removed", "network.deleted"])
        assert [8, 9] == await agent.seqs(type="endpoint.removed,network.deleted")
        assert [7, 8, 9, 10] == await agent.seqs(since=built.records[6].envelope.at.isoformat())
        assert [] == await agent.seqs(until="2000-01-01")

    async def test_the_host_of_an_endpoint_added_before_the_page(self, agent: Agent) -> None:
        """e3 was added (by host-b) before the page and removed by host-a in it: still host-b's."""
        assert [8] == await agent.seqs(hostname="host-b", after_revision=agent.built.revisions[4])

    async def test_a_sparse_filter_answers_short_pages(
        self, agent: Agent, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a scan budget of 3 events, a filter matching one event pages through the log."""
        monkeypatch.setattr(http_history, "SCAN_BUDGET", 3)
        pages, after = [], 0
        while after is not None:
            body = await agent.events(type="network.deleted", after_revision=after)
            pages.append([e["seq"] for e in body["events"]])
            after = body["next_after_revision"]
        assert [9] == [seq for page in pages for seq in page]
        assert len(pages) > 2

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"limit": 0}, "limit must be between 1 and 1000"),
            ({"limit": 1001}, "limit must be between 1 and 1000"),
            ({"limit": "ten"}, "limit 'ten' is not an integer"),
            ({"after_revision": -1}, "after_revision must not be negative"),
            ({"type": "network.renamed"}, "unknown event type network.renamed"),
            ({"since": "yesterday"}, "is not a time"),
            ({"since": "1h", "until": "2h"}, "is after until"),
        ],
    )
    async def test_bad_parameters_are_400(self, agent: Agent, params: dict[str, Any], message: str) -> None:
        """Every malformed parameter is refused, naming what is wrong."""
        response = await agent.get("/events", **params)
        assert 400 == response.status_code
        assert message in response.json()["error"]


class TestAtRevision:
    @pytest.mark.parametrize("step", range(8))
    async def test_views_as_of_a_revision_are_the_fold_up_to_it(self, agent: Agent, step: int) -> None:
        """GET /networks, /networks/{id} and /endpoints at each step's revision match the fold of the log."""
        revision = agent.built.revisions[step]
        expected = agent.at(revision)
        settings = agent.settings

        def network(n: Any) -> Any:
            return http_views.network(n, netns_path=settings.netns_path, netns_prefix=settings.netns_prefix)

        networks = [network(expected.networks.networks[k]) for k in sorted(expected.networks.networks)]
        endpoints = sorted(expected.endpoints.endpoints.values(), key=lambda e: e.endpoint_id)
        response = await agent.get("/networks", revision=revision)
        assert 200 == response.status_code, response.text
        assert _json({"networks": networks}) == response.json()
        response = await agent.get("/endpoints", revision=revision)
        assert _json({"endpoints": [http_views.endpoint(e) for e in endpoints]}) == response.json()
        for n in expected.networks.networks.values():
            response = await agent.get(f"/networks/{n.network_id}", revision=revision)
            assert _json({"network": network(n)}) == response.json()
        response = await agent.get("/endpoints", revision=revision, hostname="host-b")
        assert [e.endpoint_id for e in endpoints if e.hostname == "host-b"] == [
            e["id"] for e in response.json()["endpoints"]
        ]

    async def test_a_network_that_did_not_exist_then_is_404(self, agent: Agent) -> None:
        """Network B was created after the first step's revision."""
        response = await agent.get(f"/networks/{agent.built.net_b}", revision=agent.built.revisions[0])
        assert 404 == response.status_code
        assert "at revision" in response.json()["error"]

    async def test_a_revision_not_reached_yet_is_404(self, agent: Agent) -> None:
        """Beyond the store's revision there is no state to show."""
        for path in ("/networks", f"/networks/{agent.built.net_a}", "/endpoints"):
            response = await agent.get(path, revision=10**9)
            assert 404 == response.status_code
            assert "beyond the store's current revision" in response.json()["error"]

    @pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5", ""])
    async def test_a_malformed_revision_is_400(self, agent: Agent, value: str) -> None:
        """Revisions are positive integers."""
        for path in ("/networks", f"/networks/{agent.built.net_a}", "/endpoints"):
            response = await agent.get(path, revision=value)
            assert 400 == response.status_code, (path, value)

    async def test_the_current_views_without_revision(self, agent: Agent) -> None:
        """No revision: the live views, as before."""
        response = await agent.get("/networks")
        assert [agent.built.net_a] == [n["id"] for n in response.json()["networks"]]


@pytest.mark.etcd
async def test_a_stored_snapshot_is_a_starting_point(
    etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A projection snapshot stored before the revision asked for is folded from, with the same result."""
    log = await EtcdLog.connect(EtcdSettings(hosts=parse_hosts(etcd_server.url), prefix=etcd_prefix))
    built = await build_history(log)
    await SnapshotStore(log).save(fold(EMPTY, [r for r in built.records if r.rev <= built.revisions[4]]))
    loaded: list[int] = []
    load_newest = SnapshotStore.load_newest

    async def spying(self: SnapshotStore, *, not_after: Position | None = None) -> Snapshot | None:
        found = await load_newest(self, not_after=not_after)
        loaded.append(-1 if found is None else found.position.seq)
        return found

    monkeypatch.setattr(SnapshotStore, "load_newest", spying)
    settings = AgentSettings(etcd=EtcdSettings(), hostname="host-a", netns_path=str(tmp_path))
    views = LiveViews()
    views.caught_up.set()  # left empty: the answer cannot come from the live views
    service = Service(log, views, actor="host-a")
    transport = httpx.ASGITransport(app=create_app(service, settings, log=log))
    revision = built.revisions[6]
    expected = fold(EMPTY, [r for r in built.records if r.rev <= revision])
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        response = await client.get("/endpoints", params={"revision": revision})
    await service.close()
    await log.close()
    assert [7] == loaded
    assert sorted(expected.endpoints.endpoints) == sorted(e["id"] for e in response.json()["endpoints"])


async def test_without_the_log_the_past_is_unavailable(tmp_path: Any) -> None:
    """An app built without `log` answers 503 for the routes that need it, and the rest as before."""
    settings = AgentSettings(etcd=EtcdSettings(), hostname="host-a", netns_path=str(tmp_path))
    log = MemoryLog()
    views = LiveViews()
    views.caught_up.set()
    service = Service(log, views, actor="host-a")
    transport = httpx.ASGITransport(app=create_app(service, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        assert 503 == (await client.get("/events")).status_code
        assert 503 == (await client.get("/networks", params={"revision": 1})).status_code
        assert 200 == (await client.get("/networks")).status_code
    await service.close()


def _json(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))
