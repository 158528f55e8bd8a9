"""One structured log line per request: method, path, status, duration, command id, revision."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from tests.http.support import in_process_agent


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an in-process agent (its service closed afterwards)."""
    agent = in_process_agent(tmp_path)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=agent.app), base_url="http://agent"
    ) as http:
        yield http
    await agent.service.close()


class TestRequestLog:
    async def test_a_write_logs_its_command_and_revision(self, client: httpx.AsyncClient) -> None:
        """A successful write's line carries the command id and the revision it landed at."""
        with capture_logs() as lines:
            response = await client.post("/networks", json={"ip_range": "198.18.10.0/24"})
        [line] = [line for line in lines if line["event"] == "request"]
        assert ("POST", "/networks", 201) == (line["method"], line["path"], line["status"])
        assert (True, True) == (bool(line["command_id"]), line["revision"] >= 1)
        assert line["duration_ms"] >= 0
        assert 201 == response.status_code

    async def test_a_refused_request_logs_its_error(self, client: httpx.AsyncClient) -> None:
        """A refused request's line carries the status and the message sent to the client."""
        with capture_logs() as lines:
            response = await client.post("/networks", json={"ip_range": "198.18.10.0/33"})
        [line] = [line for line in lines if line["event"] == "request"]
        assert (400, response.json()["error"]) == (line["status"], line["error"])
        assert None is line["command_id"]


class TestNetworkListCache:
    async def test_the_list_follows_every_change_of_the_catalog(self, client: httpx.AsyncClient) -> None:
        """GET /networks answers from a cached body, and a new or deleted network shows at once."""
        first = (await client.get("/networks")).json()
        created = (await client.post("/networks", json={"ip_range": "198.18.12.0/24"})).json()["network"]
        listed = (await client.get("/networks")).json()
        assert ({"networks": []}, [created["id"]]) == (first, [n["id"] for n in listed["networks"]])
        assert listed == (await client.get("/networks")).json()
        assert 204 == (await client.delete(f"/networks/{created['id']}")).status_code
        assert {"networks": []} == (await client.get("/networks")).json()
