"""SAND's REST API, served in-process by the real app on the in-memory log: every route, status and body."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from sand_es import __version__
from sand_es.commands import AddEndpoint
from sand_es.events import EndpointAdded
from sand_es.http import schemas
from tests.http.support import (
    HOST_IP,
    HOSTNAME,
    UUID4,
    InProcessAgent,
    assert_sand_endpoint,
    assert_sand_network,
    in_process_agent,
    scratch_directory,
)

OWN_NETNS = f"/proc/{os.getpid()}/ns/net"
RANGE = "198.18.0.0/24"
MISSING = "00000000-0000-4000-8000-000000000000"
UPPER_ID = "3F1C2B4A-1111-4222-8333-444455556666"


@pytest.fixture
def netns_dir() -> Iterator[Path]:
    """The agent's NETNS_PATH: an empty temporary directory."""
    with scratch_directory("sand-es-netns-") as directory:
        yield directory


@pytest.fixture
async def agent(netns_dir: Path) -> AsyncIterator[InProcessAgent]:
    """Agent `host-a` on an empty in-memory log, its service closed after the test."""
    agent = in_process_agent(netns_dir)
    yield agent
    await agent.service.close()


@pytest.fixture
async def client(agent: InProcessAgent) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the agent's app (a 500 comes back as a response, not as an exception)."""
    transport = httpx.ASGITransport(app=agent.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        yield client


def _json_body(response: httpx.Response) -> Any:
    assert "application/json" == response.headers["content-type"]
    return response.json()


def network_of(response: httpx.Response) -> dict[str, Any]:
    """The network of a `{"network": …}` body, checked against the API's type and SAND's shape."""
    body = _json_body(response)
    msgspec.json.decode(response.content, type=schemas.NetworkResponse)
    assert ["network"] == list(body)
    assert_sand_network(body["network"])
    network: dict[str, Any] = body["network"]
    return network


def networks_of(response: httpx.Response) -> list[dict[str, Any]]:
    """The networks of a `{"networks": […]}` body, each checked like `network_of`."""
    body = _json_body(response)
    msgspec.json.decode(response.content, type=schemas.NetworksResponse)
    assert ["networks"] == list(body)
    for network in body["networks"]:
        assert_sand_network(network)
    networks: list[dict[str, Any]] = body["networks"]
    return networks


def endpoint_of(response: httpx.Response) -> dict[str, Any]:
    """The endpoint of an `{"endpoint": …}` body, checked against the API's type and SAND's shape."""
    body = _json_body(response)
    msgspec.json.decode(response.content, type=schemas.EndpointResponse)
    assert ["endpoint"] == list(body)
    assert_sand_endpoint(body["endpoint"])
    endpoint: dict[str, Any] = body["endpoint"]
    return endpoint


def endpoints_of(response: httpx.Response) -> list[dict[str, Any]]:
    """The endpoints of an `{"endpoints": […]}` body, each checked like `endpoint_of`."""
    body = _json_body(response)
    msgspec.json.decode(response.content, type=schemas.EndpointsResponse)
    assert ["endpoints"] == list(body)
    for endpoint in body["endpoints"]:
        assert_sand_endpoint(endpoint)
    endpoints: list[dict[str, Any]] = body["endpoints"]
    return endpoints


def error_of(response: httpx.Response) -> str:
    """The message of an `{"error": "…"}` body."""
    body = _json_body(response)
    assert ["error"] == list(body)
    return msgspec.json.decode(response.content, type=schemas.ErrorResponse).error


async def refused(
    agent: InProcessAgent, client: httpx.AsyncClient, method: str, url: str, status: int, **kwargs: Any
) -> str:
    """Send a request that must fail with `status` and append nothing; return its error message."""
    before = await agent.log.head()
    response = await client.request(method, url, **kwargs)
    assert status == response.status_code, response.text
    assert before == await agent.log.head()
    return error_of(response)


async def create_network(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """POST /networks with `body`, which must succeed."""
    response = await client.post("/networks", json=body)
    assert 201 == response.status_code, response.text
    return network_of(response)


async def create_endpoint(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """POST /endpoints with `body`, which must succeed."""
    response = await client.post("/endpoints", json=body)
    assert 201 == response.status_code, response.text
    return endpoint_of(response)


async def list_endpoints(client: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    """GET /endpoints with `query`, which must succeed."""
    response = await client.get("/endpoints", params=query)
    assert 200 == response.status_code, response.text
    return endpoints_of(response)


async def add_remote_endpoint(agent: InProcessAgent, network_id: str, hostname: str, host_ip: str) -> str:
    """An endpoint another agent (`hostname`) appended to the shared log; its id."""
    outcome = await agent.service.execute(
        AddEndpoint(network_id=network_id, hostname=hostname, host_ip=host_ip)
    )
    added = outcome.records[0].envelope.data
    assert isinstance(added, EndpointAdded)
    return added.endpoint_id


class TestVersion:
    """`GET /version`."""

    async def test_reports_the_package_version(self, client: httpx.AsyncClient) -> None:
        """GET /version answers 200 with `{"version": <the package's version>}`."""
        response = await client.get("/version")
        assert 200 == response.status_code
        assert {"version": __version__} == _json_body(response)
        assert __version__ == msgspec.json.decode(response.content, type=schemas.VersionResponse).version


class TestHealth:
    """`GET /health`: whether the agent has caught up with the log and accepts writes."""

    async def test_ready_once_caught_up(self, agent: InProcessAgent, client: httpx.AsyncClient) -> None:
        """A caught-up agent answers 200 `{"status": "ready"}` with the position of its views."""
        await create_network(client, ip_range=RANGE)
        response = await client.get("/health")
        assert 200 == response.status_code
        head = await agent.log.head()
        assert {"status": "ready", "seq": head.seq, "revision": head.rev} == _json_body(response)
        msgspec.json.decode(response.content, type=schemas.HealthResponse)

    async def test_503_while_catching_up(self, agent: InProcessAgent, client: httpx.AsyncClient) -> None:
        """An agent still catching up answers 503 with a JSON error."""
        agent.views.caught_up.clear()
        assert "catching up" in await refused(agent, client, "GET", "/health", 503)


class TestCreateNetwork:
    """`POST /networks`."""

    async def test_defaults_are_sands(self, client: httpx.AsyncClient, netns_dir: Path) -> None:
        """An empty object creates an overlay on 10.0.0.0/24, gateway 10.0.0.1/24, VNI 1, SAND's names."""
        network = await create_network(client)
        nid = network["id"]
        assert UUID4.match(nid), nid
        assert {
            "name": f"net-sc-{nid}",
            "type": "overlay",
            "ns_handle_path": f"{netns_dir}/sc-ns-{nid}",
            "vxlan_vni": 1,
            "ip_range": "10.0.0.0/24",
            "gateway": "10.0.0.1/24",
            "mtu": 1450,
        } == {key: value for key, value in network.items() if key not in ("id", "created_at")}

    @pytest.mark.parametrize("content", [b"", b"  \n"], ids=["no-body", "blank-body"])
    async def test_empty_body_takes_the_defaults(self, client: httpx.AsyncClient, content: bytes) -> None:
        """A POST with no body at all (or only blanks) creates a network with the default range."""
        response = await client.post("/networks", content=content)
        assert 201 == response.status_code, response.text
        assert ("10.0.0.0/24", "10.0.0.1/24") == (
            network_of(response)["ip_range"],
            network_of(response)["gateway"],
        )

    async def test_explicit_fields_are_kept(self, client: httpx.AsyncClient, netns_dir: Path) -> None:
        """A caller's id, name, type, range and gateway are stored and echoed as given."""
        nid = str(uuid.uuid4())
        network = await create_network(
            client, id=nid, name="front", type="overlay", ip_range="198.18.4.0/24", gateway="198.18.4.254/24"
        )
        assert {
            "id": nid,
            "name": "front",
            "type": "overlay",
            "ns_handle_path": f"{netns_dir}/sc-ns-{nid}",
            "ip_range": "198.18.4.0/24",
            "gateway": "198.18.4.254/24",
        } == {key: network[key] for key in ("id", "name", "type", "ns_handle_path", "ip_range", "gateway")}

    async def test_gateway_defaults_to_the_first_host_address(self, client: httpx.AsyncClient) -> None:
        """With only `ip_range`, the gateway is the range's first host address with the range's prefix."""
        network = await create_network(client, ip_range="198.19.0.0/16")
        assert "198.19.0.1/16" == network["gateway"]

    async def test_each_network_takes_the_lowest_free_vni(self, client: httpx.AsyncClient) -> None:
        """Networks take VNIs 1, 2, 3; once the second is deleted the next network takes 2 again."""
        first, second, third = [await create_network(client, ip_range=RANGE) for _ in range(3)]
        assert [1, 2, 3] == [first["vxlan_vni"], second["vxlan_vni"], third["vxlan_vni"]]
        assert 204 == (await client.delete(f"/networks/{second['id']}")).status_code
        assert 2 == (await create_network(client, ip_range=RANGE))["vxlan_vni"]

    async def test_created_at_is_a_timezone_aware_instant(self, client: httpx.AsyncClient) -> None:
        """`created_at` is an RFC 3339 timestamp with an offset, as Go's `time.Time` encodes it."""
        network = await create_network(client, ip_range=RANGE)
        decoded = msgspec.json.decode(msgspec.json.encode(network), type=schemas.Network)
        assert decoded.created_at.tzinfo is not None

    async def test_only_a_gateway_implies_its_range(self, client: httpx.AsyncClient) -> None:
        """With only a gateway given with its prefix, the range is the gateway's network (SAND failed)."""
        network = await create_network(client, gateway="198.18.5.1/24")
        assert ("198.18.5.0/24", "198.18.5.1/24") == (network["ip_range"], network["gateway"])

    async def test_a_caller_id_is_stored_in_lower_case(self, client: httpx.AsyncClient) -> None:
        """A caller's id in upper case is accepted and stored (and answered) in canonical lower case."""
        network = await create_network(client, id=UPPER_ID, ip_range=RANGE)
        assert UPPER_ID.lower() == network["id"]

    async def test_a_caller_id_is_found_as_the_caller_spelt_it(self, client: httpx.AsyncClient) -> None:
        """A network created with an upper-case id is shown, used and deleted under that same spelling."""
        await create_network(client, id=UPPER_ID, ip_range=RANGE)
        shown = await client.get(f"/networks/{UPPER_ID}")
        used = await client.post("/endpoints", json={"network_id": UPPER_ID})
        assert (200, 201) == (shown.status_code, used.status_code)

    async def test_an_existing_id_is_refused(self, agent: InProcessAgent, client: httpx.AsyncClient) -> None:
        """Creating a network with the id of an existing one is 409 and does not overwrite it (SAND did)."""
        network = await create_network(client, ip_range=RANGE, name="first")
        message = await refused(
            agent, client, "POST", "/networks", 409, json={"id": network["id"], "name": "second"}
        )
        assert "already exists" in message
        assert "first" == network_of(await client.get(f"/networks/{network['id']}"))["name"]

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ({"id": "not-a-uuid"}, "invalid UUID 'not-a-uuid'"),
            ({"ip_range": "not-a-cidr"}, "invalid ip_range 'not-a-cidr'"),
            ({"ip_range": "198.18.0.0/33"}, "invalid ip_range '198.18.0.0/33'"),
            ({"ip_range": "198.18.0.0"}, "the prefix length is missing"),
            ({"ip_range": "198.18.0.1/24"}, "host bits are set"),
            ({"ip_range": "198.18.0.0/31"}, "the prefix must be between /8 and /30"),
            ({"ip_range": "198.18.0.0/24", "gateway": "198.19.0.1/24"}, "outside the network's range"),
            ({"ip_range": "198.18.0.0/24", "gateway": "198.18.0.0/24"}, "reserved"),
            ({"ip_range": "198.18.0.0/24", "gateway": "198.18.0.1/16"}, "the prefix must be /24"),
            ({"ip_range": "198.18.0.0/24", "gateway": "gw"}, "invalid gateway 'gw'"),
            ({"type": "bridge"}, "invalid network type 'bridge'"),
            ({"name": "n" * 256}, "at most 255"),
            ({"ip_range": RANGE, "mtu": 100}, "invalid mtu 100"),
        ],
        ids=[
            "bad-uuid",
            "bad-cidr",
            "prefix-33",
            "no-prefix",
            "host-bits",
            "prefix-31",
            "gateway-outside",
            "gateway-is-network-address",
            "gateway-prefix-differs",
            "gateway-not-an-ip",
            "type",
            "long-name",
            "mtu",
        ],
    )
    async def test_impossible_values_are_400(
        self, agent: InProcessAgent, client: httpx.AsyncClient, body: dict[str, Any], fragment: str
    ) -> None:
        """A value the network cannot have is refused with 400 and a message naming the problem."""
        assert fragment in await refused(agent, client, "POST", "/networks", 400, json=body)

    @pytest.mark.parametrize(
        ("content", "fragment"),
        [
            (b'{"name": "x"', "invalid JSON"),
            (b"name=x", "invalid JSON"),
            (b"null", "invalid request body"),
            (b"[]", "invalid request body"),
            (b'{"name": 3}', "`$.name`"),
            (b'{"ip_range": ["198.18.0.0/24"]}', "`$.ip_range`"),
            (b'{"mtu": "1450"}', "`$.mtu`"),
            (b'{"vni": 5}', "unknown field `vni`"),
            (b'{"ip-range": "198.18.0.0/24"}', "unknown field `ip-range`"),
        ],
        ids=[
            "truncated",
            "form-encoded",
            "null",
            "array",
            "name-int",
            "range-list",
            "mtu-string",
            "unknown-vni",
            "misspelt-range",
        ],
    )
    async def test_unreadable_bodies_are_400(
        self, agent: InProcessAgent, client: httpx.AsyncClient, content: bytes, fragment: str
    ) -> None:
        """Malformed JSON, wrong types and unknown fields are refused with 400 naming the problem."""
        assert fragment in await refused(agent, client, "POST", "/networks", 400, content=content)


class TestListNetworks:
    """`GET /networks`."""

    async def test_empty_store_lists_an_empty_array(self, client: httpx.AsyncClient) -> None:
        """With no network, GET /networks is `{"networks": []}` (an array, never null)."""
        response = await client.get("/networks")
        assert 200 == response.status_code
        assert {"networks": []} == _json_body(response)

    async def test_networks_are_listed_by_id(self, client: httpx.AsyncClient) -> None:
        """Every network is listed, sorted by id as SAND's etcd key order sorts them."""
        ids = [
            "c0000000-0000-4000-8000-000000000000",
            "a0000000-0000-4000-8000-000000000000",
            "b0000000-0000-4000-8000-000000000000",
        ]
        created = {nid: await create_network(client, id=nid, ip_range=RANGE) for nid in ids}
        response = await client.get("/networks")
        assert 200 == response.status_code
        assert [created[nid] for nid in sorted(ids)] == networks_of(response)


class TestShowNetwork:
    """`GET /networks/{id}`."""

    async def test_shows_the_network_as_created(self, client: httpx.AsyncClient) -> None:
        """GET /networks/{id} answers the same network POST /networks answered."""
        network = await create_network(client, ip_range=RANGE)
        response = await client.get(f"/networks/{network['id']}")
        assert 200 == response.status_code
        assert network == network_of(response)

    @pytest.mark.parametrize("nid", [MISSING, "not-a-uuid"], ids=["unknown", "not-a-uuid"])
    async def test_unknown_network_is_404(self, client: httpx.AsyncClient, nid: str) -> None:
        """An unknown id is 404 with SAND's body `{"error": "network not found"}`."""
        response = await client.get(f"/networks/{nid}")
        assert 404 == response.status_code
        assert {"error": "network not found"} == _json_body(response)


class TestDeleteNetwork:
    """`DELETE /networks/{id}`."""

    async def test_deletes_with_204_and_an_empty_body(self, client: httpx.AsyncClient) -> None:
        """Deleting a network answers 204 with no body, and the network is gone from every read."""
        network = await create_network(client, ip_range=RANGE)
        response = await client.delete(f"/networks/{network['id']}")
        assert (204, b"") == (response.status_code, response.content)
        assert 404 == (await client.get(f"/networks/{network['id']}")).status_code
        assert [] == networks_of(await client.get("/networks"))

    async def test_unknown_network_is_404(self, agent: InProcessAgent, client: httpx.AsyncClient) -> None:
        """Deleting an unknown network is 404 with a JSON error naming it."""
        assert MISSING in await refused(agent, client, "DELETE", f"/networks/{MISSING}", 404)

    async def test_refused_with_409_while_endpoints_remain(
        self, agent: InProcessAgent, client: httpx.AsyncClient
    ) -> None:
        """A network with an endpoint (on any host) is not deleted: 409 until the endpoint is removed."""
        network = await create_network(client, ip_range=RANGE)
        endpoint = await create_endpoint(client, network_id=network["id"])
        message = await refused(agent, client, "DELETE", f"/networks/{network['id']}", 409)
        assert "still has 1 endpoint(s)" in message
        assert 204 == (await client.delete(f"/endpoints/{endpoint['id']}")).status_code
        assert 204 == (await client.delete(f"/networks/{network['id']}")).status_code


class TestCreateEndpoint:
    """`POST /endpoints`."""

    @pytest.fixture
    async def network(self, client: httpx.AsyncClient) -> dict[str, Any]:
        """A network on 198.18.0.0/24 (gateway 198.18.0.1/24)."""
        return await create_network(client, ip_range=RANGE)

    async def test_passive_endpoint(self, client: httpx.AsyncClient, network: dict[str, Any]) -> None:
        """`activate: false` gives an inactive endpoint of this host, on the first free address and MAC."""
        endpoint = await create_endpoint(client, network_id=network["id"], activate=False)
        assert UUID4.match(endpoint["id"]), endpoint["id"]
        assert {
            "network_id": network["id"],
            "hostname": HOSTNAME,
            "host_ip": HOST_IP,
            "api_hostname": "",
            "target_netns_path": "",
            "target_veth_mac": "02:84:c6:12:00:02",
            "target_veth_ip": "198.18.0.2/24",
            "active": False,
        } == {
            key: endpoint[key]
            for key in (
                "network_id",
                "hostname",
                "host_ip",
                "api_hostname",
                "target_netns_path",
                "target_veth_mac",
                "target_veth_ip",
                "active",
            )
        }

    async def test_device_names_fit_the_kernel(
        self, client: httpx.AsyncClient, network: dict[str, Any]
    ) -> None:
        """Both veth names start with SAND's `sand` prefix and fit in 15 characters (IFNAMSIZ - 1)."""
        endpoint = await create_endpoint(client, network_id=network["id"])
        names = (endpoint["target_veth_name"], endpoint["overlay_veth_name"])
        assert (True, True) == tuple(name.startswith("sand") and len(name) <= 15 for name in names)
        assert endpoint["target_veth_name"] != endpoint["overlay_veth_name"]

    @pytest.mark.parametrize(
        "placement", ["activate_params", "top_level"], ids=["activate-params", "readme-top-level"]
    )
    async def test_active_endpoint(
        self, client: httpx.AsyncClient, network: dict[str, Any], placement: str
    ) -> None:
        """`activate: true` takes the handle nested (as SAND reads it) or top-level (as its README says)."""
        body: dict[str, Any] = {"network_id": network["id"], "activate": True}
        if placement == "activate_params":
            body["activate_params"] = {"ns_handle_path": OWN_NETNS, "set_addr": True, "move_veth": True}
        else:
            body["ns_handle_path"] = OWN_NETNS
        endpoint = await create_endpoint(client, **body)
        assert (True, OWN_NETNS) == (endpoint["active"], endpoint["target_netns_path"])

    @pytest.mark.parametrize(
        ("address", "expected_ip", "expected_mac"),
        [
            ("198.18.0.10", "198.18.0.10/24", "02:84:c6:12:00:0a"),
            ("198.18.0.254/24", "198.18.0.254/24", "02:84:c6:12:00:fe"),
        ],
        ids=["bare", "with-prefix"],
    )
    async def test_explicit_address(
        self,
        client: httpx.AsyncClient,
        network: dict[str, Any],
        address: str,
        expected_ip: str,
        expected_mac: str,
    ) -> None:
        """An explicit `ipv4_address` (bare or with the pool's prefix) is taken, and the MAC follows it."""
        endpoint = await create_endpoint(client, network_id=network["id"], ipv4_address=address)
        assert (expected_ip, expected_mac) == (endpoint["target_veth_ip"], endpoint["target_veth_mac"])

    async def test_explicit_mac_address(self, client: httpx.AsyncClient, network: dict[str, Any]) -> None:
        """An explicit `mac_address` is used (in lower case) instead of the one derived from the address."""
        endpoint = await create_endpoint(
            client, network_id=network["id"], ipv4_address="198.18.0.7", mac_address="02:42:C6:12:00:99"
        )
        assert ("198.18.0.7/24", "02:42:c6:12:00:99") == (
            endpoint["target_veth_ip"],
            endpoint["target_veth_mac"],
        )

    async def test_unknown_network_is_404(self, agent: InProcessAgent, client: httpx.AsyncClient) -> None:
        """An endpoint in an unknown network is 404 naming the network."""
        message = await refused(agent, client, "POST", "/endpoints", 404, json={"network_id": MISSING})
        assert f"network {MISSING} not found" == message

    async def test_taken_address_is_409(
        self, agent: InProcessAgent, client: httpx.AsyncClient, network: dict[str, Any]
    ) -> None:
        """An `ipv4_address` another endpoint holds is 409 naming that endpoint."""
        holder = await create_endpoint(client, network_id=network["id"], ipv4_address="198.18.0.9")
        body = {"network_id": network["id"], "ipv4_address": "198.18.0.9"}
        assert holder["id"] in await refused(agent, client, "POST", "/endpoints", 409, json=body)

    async def test_taken_mac_is_409(
        self, agent: InProcessAgent, client: httpx.AsyncClient, network: dict[str, Any]
    ) -> None:
        """A `mac_address` another endpoint of the network uses is 409 naming that endpoint."""
        holder = await create_endpoint(client, network_id=network["id"], mac_address="02:42:00:00:00:01")
        body = {"network_id": network["id"], "mac_address": "02:42:00:00:00:01"}
        assert holder["id"] in await refused(agent, client, "POST", "/endpoints", 409, json=body)

    @pytest.mark.parametrize(
        ("fields", "fragment"),
        [
            ({"network_id": ""}, "network_id is required"),
            ({"ipv4_address": "198.19.0.5"}, "outside the network's range"),
            ({"ipv4_address": "198.18.0.1"}, "reserved"),
            ({"ipv4_address": "198.18.0.255"}, "reserved"),
            ({"ipv4_address": "198.18.0.5/16"}, "the prefix must be /24"),
            ({"ipv4_address": "host"}, "invalid ipv4_address 'host'"),
            ({"mac_address": "01:00:5e:00:00:01"}, "multicast"),
            ({"mac_address": "02:84"}, "invalid mac_address '02:84'"),
            ({"activate": True}, "missing ns_handle_path"),
            ({"activate": True, "activate_params": {"ns_handle_path": ""}}, "missing ns_handle_path"),
        ],
        ids=[
            "no-network",
            "address-outside",
            "address-is-gateway",
            "address-is-broadcast",
            "address-prefix",
            "address-not-ip",
            "mac-multicast",
            "mac-short",
            "activate-without-path",
            "activate-empty-path",
        ],
    )
    async def test_impossible_values_are_400(
        self,
        agent: InProcessAgent,
        client: httpx.AsyncClient,
        network: dict[str, Any],
        fields: dict[str, Any],
        fragment: str,
    ) -> None:
        """A value the endpoint cannot have is refused with 400 and a message naming the problem."""
        body = {"network_id": network["id"], **fields}
        assert fragment in await refused(agent, client, "POST", "/endpoints", 400, json=body)

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ({"activate": "yes"}, "`$.activate`"),
            ({"activate": 1}, "`$.activate`"),
            ({"network_id": 3}, "`$.network_id`"),
            ({"activate_params": {"ns_handle_path": 1}}, "`$.activate_params.ns_handle_path`"),
            ({"activate_params": "/proc/1/ns/net"}, "`$.activate_params`"),
            ({"netns": "/proc/1/ns/net"}, "unknown field `netns`"),
            ({"activate_params": {"path": "/proc/1/ns/net"}}, "unknown field `path`"),
        ],
        ids=[
            "activate-string",
            "activate-int",
            "network-id-int",
            "nested-path-int",
            "params-string",
            "unknown-field",
            "unknown-nested-field",
        ],
    )
    async def test_wrong_types_and_unknown_fields_are_400(
        self,
        agent: InProcessAgent,
        client: httpx.AsyncClient,
        network: dict[str, Any],
        body: dict[str, Any],
        fragment: str,
    ) -> None:
        """A field of the wrong JSON type, or one the API does not know, is refused with 400 naming it."""
        content = msgspec.json.encode({"network_id": network["id"], **body})
        assert fragment in await refused(agent, client, "POST", "/endpoints", 400, content=content)

    @pytest.mark.parametrize("content", [b"", b"{", b"[1]"], ids=["empty", "truncated", "array"])
    async def test_unreadable_bodies_are_400(
        self, agent: InProcessAgent, client: httpx.AsyncClient, content: bytes
    ) -> None:
        """POST /endpoints needs a JSON object: an empty or malformed body is 400."""
        message = await refused(agent, client, "POST", "/endpoints", 400, content=content)
        assert message.startswith(("invalid JSON", "invalid request body"))

    @pytest.mark.parametrize(
        ("case", "fragment"),
        [
            ("relative", "expected an absolute path without '..'"),
            ("dot-dot", "expected an absolute path without '..'"),
            ("dot-dot-proc", "expected an absolute path without '..'"),
            ("regular-file-outside", "not a namespace handle under"),
            ("regular-file-inside", "not a namespace handle"),
            ("directory-inside", "not a namespace handle"),
            ("symlink-to-file-outside", "not a namespace handle under"),
            ("symlink-to-namespace-outside", "not a namespace handle under"),
            ("missing-inside", "No such file or directory"),
            ("missing-process", "No such file or directory"),
            ("netns-path-itself", "not a namespace handle under"),
            ("proc-self", "not a namespace handle under"),
        ],
    )
    async def test_namespace_handle_paths_are_checked(
        self,
        agent: InProcessAgent,
        client: httpx.AsyncClient,
        network: dict[str, Any],
        netns_dir: Path,
        case: str,
        fragment: str,
    ) -> None:
        """Only existing namespace handles under NETNS_PATH (symlinks resolved) or in /proc are accepted."""
        (netns_dir / "file").write_text("not a namespace\n")
        (netns_dir / "dir").mkdir()
        (netns_dir / "to-file").symlink_to("/etc/hostname")
        (netns_dir / "to-namespace").symlink_to(OWN_NETNS)
        paths = {
            "relative": OWN_NETNS.lstrip("/"),
            "dot-dot": f"{netns_dir}/../{netns_dir.name}/file",
            "dot-dot-proc": f"/proc/{os.getpid()}/ns/../ns/net",
            "regular-file-outside": "/etc/hostname",
            "regular-file-inside": str(netns_dir / "file"),
            "directory-inside": str(netns_dir / "dir"),
            "symlink-to-file-outside": str(netns_dir / "to-file"),
            "symlink-to-namespace-outside": str(netns_dir / "to-namespace"),
            "missing-inside": str(netns_dir / "absent"),
            "missing-process": "/proc/2147483647/ns/net",
            "netns-path-itself": str(netns_dir),
            "proc-self": "/proc/self/ns/net",
        }
        path = paths[case]
        for body in (
            {"network_id": network["id"], "activate": True, "activate_params": {"ns_handle_path": path}},
            {"network_id": network["id"], "activate": True, "ns_handle_path": path},
        ):
            message = await refused(agent, client, "POST", "/endpoints", 400, json=body)
            assert (True, True) == (fragment in message, repr(path) in message), message

    async def test_readme_form_without_activate_activates(
        self, client: httpx.AsyncClient, network: dict[str, Any]
    ) -> None:
        """README's body, a top-level `ns_handle_path` and no `activate`, means an active endpoint."""
        endpoint = await create_endpoint(client, network_id=network["id"], ns_handle_path=OWN_NETNS)
        assert (True, OWN_NETNS) == (endpoint["active"], endpoint["target_netns_path"])

    async def test_no_activate_and_no_handle_is_passive(
        self, client: httpx.AsyncClient, network: dict[str, Any]
    ) -> None:
        """Neither `activate` nor a handle gives a passive endpoint."""
        endpoint = await create_endpoint(client, network_id=network["id"])
        assert (False, "") == (endpoint["active"], endpoint["target_netns_path"])

    async def test_a_passive_endpoint_ignores_the_handle(
        self, client: httpx.AsyncClient, network: dict[str, Any]
    ) -> None:
        """With `activate: false`, an `ns_handle_path` is neither opened nor stored: a passive endpoint."""
        endpoint = await create_endpoint(
            client, network_id=network["id"], activate=False, ns_handle_path="/etc/hostname"
        )
        assert (False, "") == (endpoint["active"], endpoint["target_netns_path"])


class TestListEndpoints:
    """`GET /endpoints?network_id=&hostname=`: SAND's no-filter and both-filter cases were always empty."""

    @pytest.fixture
    async def ids(self, agent: InProcessAgent, client: httpx.AsyncClient) -> dict[str, str]:
        """Networks n1, n2; host-a's a1 (n1) and a2 (n2) via the API; host-b's b1 and host-ab's ab1 in n1."""
        n1 = (await create_network(client, ip_range="198.18.1.0/24"))["id"]
        n2 = (await create_network(client, ip_range="198.18.2.0/24"))["id"]
        return {
            "n1": n1,
            "n2": n2,
            "a1": (await create_endpoint(client, network_id=n1))["id"],
            "a2": (await create_endpoint(client, network_id=n2))["id"],
            "b1": await add_remote_endpoint(agent, n1, "host-b", "192.0.2.2"),
            "ab1": await add_remote_endpoint(agent, n1, "host-ab", "192.0.2.3"),
        }

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ({}, {"a1", "a2", "b1", "ab1"}),
            ({"network_id": "n1"}, {"a1", "b1", "ab1"}),
            ({"network_id": "n2"}, {"a2"}),
            ({"hostname": "host-a"}, {"a1", "a2"}),
            ({"hostname": "host-b"}, {"b1"}),
            ({"network_id": "n1", "hostname": "host-b"}, {"b1"}),
            ({"network_id": "n1", "hostname": "host-a"}, {"a1"}),
            ({"network_id": "n2", "hostname": "host-b"}, set()),
            ({"network_id": MISSING}, set()),
            ({"hostname": "host"}, set()),
            ({"network_id": "", "hostname": ""}, {"a1", "a2", "b1", "ab1"}),
        ],
        ids=[
            "none",
            "network-only",
            "other-network-only",
            "hostname-only-not-its-prefix-twin",
            "other-hostname-only",
            "both",
            "both-own-host",
            "both-no-match",
            "unknown-network",
            "hostname-prefix-is-not-a-match",
            "empty-values-mean-no-filter",
        ],
    )
    async def test_filters(
        self, client: httpx.AsyncClient, ids: dict[str, str], query: dict[str, str], expected: set[str]
    ) -> None:
        """Each filter given must match exactly; none given lists every endpoint of every host, by id."""
        params = {key: ids.get(value, value) for key, value in query.items()}
        listed = await list_endpoints(client, **params)
        assert sorted(ids[name] for name in expected) == [endpoint["id"] for endpoint in listed]

    async def test_remote_endpoints_keep_their_owner(
        self, client: httpx.AsyncClient, ids: dict[str, str]
    ) -> None:
        """An endpoint another agent added is listed with that agent's hostname and host IP."""
        [b1] = await list_endpoints(client, hostname="host-b")
        assert (ids["b1"], "host-b", "192.0.2.2") == (b1["id"], b1["hostname"], b1["host_ip"])

    async def test_empty_store_lists_an_empty_array(self, client: httpx.AsyncClient) -> None:
        """With no endpoint, GET /endpoints is `{"endpoints": []}` (an array, never null)."""
        response = await client.get("/endpoints")
        assert 200 == response.status_code
        assert {"endpoints": []} == _json_body(response)


class TestDeleteEndpoint:
    """`DELETE /endpoints/{id}`."""

    async def test_deletes_with_204_and_an_empty_body(self, client: httpx.AsyncClient) -> None:
        """Removing an endpoint answers 204 with no body, frees its address and drops it from listings."""
        network = await create_network(client, ip_range=RANGE)
        endpoint = await create_endpoint(client, network_id=network["id"])
        response = await client.delete(f"/endpoints/{endpoint['id']}")
        assert (204, b"") == (response.status_code, response.content)
        assert [] == await list_endpoints(client)
        again = await create_endpoint(client, network_id=network["id"])
        assert endpoint["target_veth_ip"] == again["target_veth_ip"]

    async def test_another_hosts_endpoint_is_removed_too(
        self, agent: InProcessAgent, client: httpx.AsyncClient
    ) -> None:
        """Unlike SAND (404 unless owned), any agent removes an endpoint, whichever host owns it."""
        network = await create_network(client, ip_range=RANGE)
        remote = await add_remote_endpoint(agent, network["id"], "host-b", "192.0.2.2")
        assert 204 == (await client.delete(f"/endpoints/{remote}")).status_code
        assert [] == await list_endpoints(client)

    @pytest.mark.parametrize("eid", [MISSING, "not-a-uuid"], ids=["unknown", "not-a-uuid"])
    async def test_unknown_endpoint_is_404(
        self, agent: InProcessAgent, client: httpx.AsyncClient, eid: str
    ) -> None:
        """Removing an unknown endpoint is 404 with a JSON error naming it (SAND's body was empty)."""
        assert f"endpoint {eid} not found" == await refused(agent, client, "DELETE", f"/endpoints/{eid}", 404)


class TestRouting:
    """Unknown paths and methods answer JSON errors, like every other error."""

    @pytest.mark.parametrize("path", ["/", "/network", "/networks/a/b", "/endpoints/x/y", "/v1/networks"])
    async def test_unknown_path_is_404(
        self, agent: InProcessAgent, client: httpx.AsyncClient, path: str
    ) -> None:
        """A path the API does not serve is 404 with `{"error": …}`."""
        assert "Not Found" == await refused(agent, client, "GET", path, 404)

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("PUT", "/networks"),
            ("DELETE", "/networks"),
            ("PATCH", f"/networks/{MISSING}"),
            ("POST", f"/networks/{MISSING}"),
            ("GET", f"/endpoints/{MISSING}"),
            ("PUT", "/endpoints"),
            ("POST", "/version"),
            ("DELETE", "/version"),
        ],
    )
    async def test_wrong_method_is_405(
        self, agent: InProcessAgent, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        """A known path with a method it does not serve is 405 with `{"error": …}` and an Allow header."""
        response = await client.request(method, path)
        assert 405 == response.status_code
        assert "Method Not Allowed" == error_of(response)
        assert "allow" in response.headers
        assert 0 == (await agent.log.head()).seq

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/networks", {"GET", "HEAD", "POST"}),
            ("/endpoints", {"GET", "HEAD", "POST"}),
            (f"/networks/{MISSING}", {"GET", "HEAD", "DELETE"}),
        ],
        ids=["networks", "endpoints", "network"],
    )
    async def test_405_allow_header_lists_every_method_of_the_path(
        self, client: httpx.AsyncClient, path: str, expected: set[str]
    ) -> None:
        """The Allow header of a 405 lists every method the path serves, not only the first route's."""
        response = await client.put(path)
        assert expected == {method.strip() for method in response.headers["allow"].split(",")}


class TestBodyLimit:
    """Request bodies over `AgentSettings.max_body_bytes` are refused with 413."""

    @staticmethod
    def body_of(size: int) -> bytes:
        """A JSON object of exactly `size` bytes (a network name too long to be valid)."""
        head, tail = b'{"name":"', b'"}'
        return head + b"n" * (size - len(head) - len(tail)) + tail

    @staticmethod
    async def streamed(content: bytes) -> AsyncIterator[bytes]:
        """`content` in 1 KiB chunks, sent without a Content-Length."""
        for start in range(0, len(content), 1024):
            yield content[start : start + 1024]

    @pytest.mark.parametrize("path", ["/networks", "/endpoints"])
    async def test_declared_length_over_the_limit_is_413(
        self, agent: InProcessAgent, client: httpx.AsyncClient, path: str
    ) -> None:
        """A Content-Length one byte over the limit is refused with 413 before the body is read."""
        content = self.body_of(agent.settings.max_body_bytes + 1)
        message = await refused(agent, client, "POST", path, 413, content=content)
        assert f"request body over {agent.settings.max_body_bytes} bytes" == message

    @pytest.mark.parametrize("path", ["/networks", "/endpoints"])
    async def test_streamed_body_over_the_limit_is_413(
        self, agent: InProcessAgent, client: httpx.AsyncClient, path: str
    ) -> None:
        """A body without a Content-Length is cut off with 413 once it passes the limit."""
        content = self.body_of(agent.settings.max_body_bytes + 1)
        message = await refused(agent, client, "POST", path, 413, content=self.streamed(content))
        assert f"request body over {agent.settings.max_body_bytes} bytes" == message

    @pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
    async def test_a_body_at_the_limit_is_read(
        self, agent: InProcessAgent, client: httpx.AsyncClient, streamed: bool
    ) -> None:
        """A body of exactly the limit is read and judged on its content (here: a name too long, 400)."""
        content = self.body_of(agent.settings.max_body_bytes)
        sent: bytes | AsyncIterator[bytes] = self.streamed(content) if streamed else content
        assert "at most 255" in await refused(agent, client, "POST", "/networks", 400, content=sent)


class TestCatchingUp:
    """Until the views have caught up with the log, writes are refused with 503 and reads still answer."""

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("POST", "/networks", {"ip_range": RANGE}),
            ("DELETE", "/networks/{network}", None),
            ("POST", "/endpoints", {"network_id": "{network}"}),
            (
                "POST",
                "/endpoints",
                {"network_id": "{network}", "activate": True, "ns_handle_path": OWN_NETNS},
            ),
            ("DELETE", "/endpoints/{endpoint}", None),
            ("DELETE", f"/endpoints/{MISSING}", None),
        ],
        ids=[
            "create-network",
            "delete-network",
            "create-endpoint",
            "create-active-endpoint",
            "delete-endpoint",
            "delete-unknown-endpoint",
        ],
    )
    async def test_writes_are_503(
        self,
        agent: InProcessAgent,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        body: dict[str, Any] | None,
    ) -> None:
        """Every write answers 503 with a JSON error while `caught_up` is not set."""
        network = await create_network(client, ip_range=RANGE)
        endpoint = await create_endpoint(client, network_id=network["id"])
        agent.views.caught_up.clear()
        names = {"network": network["id"], "endpoint": endpoint["id"]}
        url = path.format(**names)
        json = {
            key: value.format(**names) if isinstance(value, str) else value
            for key, value in (body or {}).items()
        }
        message = await refused(agent, client, method, url, 503, json=json if body is not None else None)
        assert "catching up" in message

    async def test_reads_answer(self, agent: InProcessAgent, client: httpx.AsyncClient) -> None:
        """Reads answer from the views while the agent catches up (only /health says it is not ready)."""
        network = await create_network(client, ip_range=RANGE)
        agent.views.caught_up.clear()
        statuses = [
            (await client.get(path)).status_code
            for path in ("/version", "/networks", f"/networks/{network['id']}", "/endpoints")
        ]
        assert [200, 200, 200, 200] == statuses


class TestIdempotencyKey:
    """`Idempotency-Key`: a retried command returns its first outcome instead of acting twice."""

    async def test_a_replayed_create_returns_the_same_network(
        self, agent: InProcessAgent, client: httpx.AsyncClient
    ) -> None:
        """The same key twice answers 201 with the same network, and only one network exists."""
        headers = {"Idempotency-Key": "create-1"}
        first = await client.post("/networks", json={"ip_range": RANGE}, headers=headers)
        head = await agent.log.head()
        second = await client.post("/networks", json={"ip_range": RANGE}, headers=headers)
        assert (201, 201) == (first.status_code, second.status_code)
        assert network_of(first) == network_of(second)
        assert head == await agent.log.head()
        assert [network_of(first)["id"]] == [n["id"] for n in networks_of(await client.get("/networks"))]

    async def test_the_key_reused_with_another_body_is_422(
        self, agent: InProcessAgent, client: httpx.AsyncClient
    ) -> None:
        """The same key with another body is refused with 422 and creates nothing more."""
        headers = {"Idempotency-Key": "create-2"}
        first = await client.post("/networks", json={"ip_range": RANGE, "name": "one"}, headers=headers)
        assert "one" == network_of(first)["name"]
        message = await refused(
            agent, client, "POST", "/networks", 422, json={"ip_range": RANGE, "name": "two"}, headers=headers
        )
        assert "different request" in message

    async def test_concurrent_requests_with_one_key_create_one_network(
        self, agent: InProcessAgent, client: httpx.AsyncClient
    ) -> None:
        """Five simultaneous requests with one key all answer the same network, appended once."""
        headers = {"Idempotency-Key": "burst"}
        responses = await asyncio.gather(
            *(client.post("/networks", json={"ip_range": RANGE}, headers=headers) for _ in range(5))
        )
        assert [201] * 5 == [response.status_code for response in responses]
        assert 1 == len({network_of(response)["id"] for response in responses})
        assert 1 == (await agent.log.head()).seq

    async def test_a_replayed_endpoint_create_returns_the_same_endpoint(
        self, client: httpx.AsyncClient
    ) -> None:
        """The same key twice on POST /endpoints answers the same endpoint, and only one exists."""
        network = await create_network(client, ip_range=RANGE)
        headers = {"Idempotency-Key": "endpoint-1"}
        first = await client.post("/endpoints", json={"network_id": network["id"]}, headers=headers)
        second = await client.post("/endpoints", json={"network_id": network["id"]}, headers=headers)
        assert endpoint_of(first) == endpoint_of(second)
        assert 1 == len(await list_endpoints(client))

    async def test_a_replayed_delete_answers_204_again(self, client: httpx.AsyncClient) -> None:
        """A retried DELETE with the same key answers 204 again instead of 404."""
        network = await create_network(client, ip_range=RANGE)
        headers = {"Idempotency-Key": "delete-1"}
        first = await client.delete(f"/networks/{network['id']}", headers=headers)
        second = await client.delete(f"/networks/{network['id']}", headers=headers)
        assert (204, 204) == (first.status_code, second.status_code)

    @pytest.mark.parametrize(
        "key",
        ["", "has space", "a/b", "k" * 129, "semi;colon"],
        ids=["empty", "space", "slash", "too-long", "semicolon"],
    )
    async def test_a_malformed_key_is_400(
        self, agent: InProcessAgent, client: httpx.AsyncClient, key: str
    ) -> None:
        """A key outside 1 to 128 characters of `A-Za-z0-9._:-` is refused with 400 naming the header."""
        headers = {"Idempotency-Key": key}
        message = await refused(
            agent, client, "POST", "/networks", 400, json={"ip_range": RANGE}, headers=headers
        )
        assert "invalid Idempotency-Key" in message

    async def test_the_longest_key_is_accepted(self, client: httpx.AsyncClient) -> None:
        """A key of 128 characters of every allowed kind is accepted."""
        key = ("Az09._:-" * 16)[:128]
        response = await client.post("/networks", json={"ip_range": RANGE}, headers={"Idempotency-Key": key})
        assert 201 == response.status_code

    async def test_a_key_reused_on_another_route_is_another_request(
        self, agent: InProcessAgent, client: httpx.AsyncClient
    ) -> None:
        """A key POST /networks used is, on POST /endpoints, a request of its own: the endpoint is created."""
        headers = {"Idempotency-Key": "shared"}
        network = network_of(await client.post("/networks", json={"ip_range": RANGE}, headers=headers))
        response = await client.post("/endpoints", json={"network_id": network["id"]}, headers=headers)
        assert 201 == response.status_code, response.text
        assert [endpoint_of(response)] == await list_endpoints(client)

    async def test_a_key_reused_for_a_delete_deletes(self, client: httpx.AsyncClient) -> None:
        """DELETE with the key the network's POST used deletes the network: no replay of the creation."""
        headers = {"Idempotency-Key": "shared"}
        network = network_of(await client.post("/networks", json={"ip_range": RANGE}, headers=headers))
        deleted = await client.delete(f"/networks/{network['id']}", headers=headers)
        assert (204, 404) == (
            deleted.status_code,
            (await client.get(f"/networks/{network['id']}")).status_code,
        )

    async def test_one_key_on_two_deletes_deletes_both(self, client: httpx.AsyncClient) -> None:
        """One key on DELETEs of two networks deletes each: the key is scoped to the request's path."""
        first, second = [await create_network(client, ip_range=RANGE) for _ in range(2)]
        headers = {"Idempotency-Key": "cleanup"}
        statuses = [
            (await client.delete(f"/networks/{network['id']}", headers=headers)).status_code
            for network in (first, second)
        ]
        assert ([204, 204], []) == (statuses, networks_of(await client.get("/networks")))
