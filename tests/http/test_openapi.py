"""`/openapi.json` is a valid OpenAPI 3.1 document, and the app keeps to it whatever it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import Receive, Scope, Send

from sand_es.http.openapi import document
from tests.http.support import InProcessAgent, in_process_agent, scratch_directory

#: The network every property run starts with: it has endpoints, so deleting it is refused.
KEPT = "5eed0000-0000-4000-8000-000000000001"
#: A network every property run starts with, empty: deleting it works once.
SPARE = "5eed0000-0000-4000-8000-000000000002"
#: The ids of the endpoints the current run started with (in KEPT), for generated DELETEs to name.
SEEDED_ENDPOINTS: list[str] = []

OPERATIONS = {
    ("GET", "/version"),
    ("GET", "/health"),
    ("GET", "/networks"),
    ("POST", "/networks"),
    ("GET", "/networks/{id}"),
    ("DELETE", "/networks/{id}"),
    ("GET", "/endpoints"),
    ("POST", "/endpoints"),
    ("DELETE", "/endpoints/{id}"),
    ("GET", "/events"),
}


class LoopRecorder:
    """The agent's app, remembering the event loop schemathesis runs it on (to close the service there)."""

    def __init__(self, agent: InProcessAgent) -> None:
        self.agent = agent
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.loop = asyncio.get_running_loop()
        await self.agent.app(scope, receive, send)

    def close(self) -> None:
        """Stop the service's writer on the loop it runs on."""
        if self.loop is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.agent.service.close(), self.loop).result(timeout=10)


@pytest.fixture
def app() -> Iterator[LoopRecorder]:
    """A fresh agent's app holding KEPT (with endpoints) and SPARE, for a whole run (state carries over)."""
    with scratch_directory("sand-es-netns-") as netns:
        app = LoopRecorder(in_process_agent(netns))
        try:
            SEEDED_ENDPOINTS[:] = _seed(app)
            yield app
        finally:
            SEEDED_ENDPOINTS.clear()
            app.close()


def _seed(app: LoopRecorder) -> list[str]:
    """Create KEPT, SPARE and three endpoints in KEPT through the API; the endpoints' ids."""
    for nid in (KEPT, SPARE):
        created = (
            schema["/networks"]["POST"].Case(body={"id": nid, "ip_range": "198.18.0.0/16"}).call(app=app)
        )
        assert 201 == created.status_code, created.text
    endpoints = []
    for _ in range(3):
        added = schema["/endpoints"]["POST"].Case(body={"network_id": KEPT}).call(app=app)
        assert 201 == added.status_code, added.text
        endpoints.append(added.json()["endpoint"]["id"])
    return endpoints


class TestDocument:
    """The OpenAPI document served at `/openapi.json`."""

    def test_is_valid_openapi_3_1(self) -> None:
        """The document validates against the OpenAPI 3.1 specification's schema."""
        spec = document()
        assert "3.1.0" == spec["openapi"]
        validate(spec, cls=OpenAPIV31SpecValidator)

    async def test_is_served_as_built(self) -> None:
        """GET /openapi.json answers the document `sand_es.http.openapi.document()` builds."""
        with scratch_directory("sand-es-netns-") as netns:
            agent = in_process_agent(netns)
            transport = httpx.ASGITransport(app=agent.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
                response = await client.get("/openapi.json")
        assert (200, "application/json") == (response.status_code, response.headers["content-type"])
        assert document() == response.json()

    async def test_documents_the_404_of_a_replayed_create(self) -> None:
        """A retried POST /networks whose network was deleted since answers a status the document lists."""
        with scratch_directory("sand-es-netns-") as netns:
            agent = in_process_agent(netns)
            transport = httpx.ASGITransport(app=agent.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
                headers = {"Idempotency-Key": "retried"}
                first = await client.post("/networks", json={"ip_range": "198.18.0.0/24"}, headers=headers)
                await client.delete(f"/networks/{first.json()['network']['id']}")
                retried = await client.post("/networks", json={"ip_range": "198.18.0.0/24"}, headers=headers)
            await agent.service.close()
        documented = set(document()["paths"]["/networks"]["post"]["responses"])
        assert (404, True) == (retried.status_code, str(retried.status_code) in documented)

    def test_describes_every_route(self) -> None:
        """Every route of the API, and only those, is an operation of the document."""
        paths: dict[str, dict[str, Any]] = document()["paths"]
        assert OPERATIONS == {(method.upper(), path) for path, item in paths.items() for method in item}


# The document the app serves (`TestDocument.test_is_served_as_built`), loaded without an app:
# each run calls the app of its own fixture.
schema = schemathesis.openapi.from_dict(document())


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Generated endpoint bodies, sometimes in an existing network rather than in one that never exists."""
    if context.operation is None or context.operation.path != "/endpoints" or not isinstance(body, dict):
        return st.just(body)
    return st.sampled_from([body, {**body, "network_id": KEPT}, {**body, "network_id": SPARE}])


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Generated ids, sometimes those of the seeded networks and endpoints."""
    path = "" if context.operation is None else context.operation.path
    existing = {"/networks/{id}": [KEPT, SPARE], "/endpoints/{id}": SEEDED_ENDPOINTS}.get(path, [])
    return st.sampled_from([path_parameters, *({**path_parameters, "id": eid} for eid in existing)])


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_app_keeps_to_its_schema(case: schemathesis.Case[Any], app: LoopRecorder) -> None:
    """For any generated request, valid or not, the app answers no 5xx and only what the schema documents."""
    case.call_and_validate(
        app=app,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
