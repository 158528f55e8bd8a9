"""`SandClient` and the `sand-es` HTTP verbs against a real agent (a subprocess) on a real etcd.

The request shapes, error bodies and timeouts no agent produces on demand are checked
against `FakeApi`, a recording loopback server.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from typer.testing import CliRunner, Result

from sand_es import __version__
from sand_es.cli import app, parse_duration
from sand_es.client import SandApiError, SandClient, SandConnectionError
from sand_es.http.schemas import Endpoint, EndpointResponse, EndpointsResponse, Network, NetworkResponse
from tests.e2e.agents import AgentProcess, agent_variables, client_context, free_ports
from tests.support.etcd_server import EtcdServer, TlsFiles

_HOSTNAME = "host-a"


@dataclass(frozen=True)
class Agent:
    """A running `sand-es agent` subprocess."""

    url: str
    pid: int
    log_path: Path

    @property
    def netns(self) -> str:
        """A network namespace handle the agent accepts: its own."""
        return f"/proc/{self.pid}/ns/net"


def _free_port() -> int:
    [port] = free_ports(1)
    return port


@contextlib.contextmanager
def running_agent(
    etcd_server: EtcdServer, prefix: str, directory: Path, tls: TlsFiles | None = None
) -> Iterator[Agent]:
    """An agent on a free loopback port (HTTPS with client certificates if `tls`), SIGTERMed on exit."""
    netns_dir = directory / "netns"
    netns_dir.mkdir()
    variables = agent_variables(
        etcd_server.url, netns_dir, hostname=_HOSTNAME, ETCD_PREFIX=prefix, LOG_FORMAT="json"
    )
    verify: ssl.SSLContext | bool = True
    if tls is not None:
        variables |= {
            "HTTP_TLS_CERT": str(tls.server_cert),
            "HTTP_TLS_KEY": str(tls.server_key),
            "HTTP_TLS_CA": str(tls.ca_cert),
        }
        verify = client_context(tls.ca_cert, tls.client_cert, tls.client_key)
    process = AgentProcess(_HOSTNAME, variables, directory)
    try:
        process.wait_ready(verify=verify)
        yield Agent(url=process.url, pid=process.pid, log_path=process.stderr_path)
    finally:
        process.stop()


@pytest.fixture
def agent(etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path) -> Iterator[Agent]:
    """A plain HTTP agent on its own log prefix."""
    with running_agent(etcd_server, etcd_prefix, tmp_path) as running:
        yield running


@pytest.fixture
def client(agent: Agent) -> Iterator[SandClient]:
    """A client of `agent`."""
    with SandClient(agent.url, timeout=10) as sand:
        yield sand


@pytest.fixture
def closed_url() -> str:
    """The URL of a loopback port nothing listens on."""
    return f"http://127.0.0.1:{_free_port()}"


def cli(agent_url: str, *args: str) -> Result:
    """Run `sand-es --api-url agent_url …` in-process."""
    return CliRunner().invoke(app, ["--api-url", agent_url, *args])


def ids(endpoints: list[Endpoint]) -> list[str]:
    """The ids of `endpoints`, in order."""
    return [e.id for e in endpoints]


@pytest.mark.etcd
class TestVersion:
    def test_version_is_the_agents(self, client: SandClient) -> None:
        """`version()` returns the version the agent reports, this package's own."""
        assert __version__ == client.version()


@pytest.mark.etcd
class TestNetworks:
    def test_create_show_list_delete(self, client: SandClient) -> None:
        """A created network is shown and listed with its fields, and is gone once deleted."""
        created = client.network_create(name="blue", ip_range="198.18.10.0/24")

        assert ("blue", "overlay", "198.18.10.0/24", "198.18.10.1/24") == (
            created.name,
            created.type,
            created.ip_range,
            created.gateway,
        )
        assert created == client.network_show(created.id)
        assert [created] == client.networks()

        client.network_delete(created.id)

        assert [] == client.networks()
        with pytest.raises(SandApiError) as raised:
            client.network_show(created.id)
        assert (404, "network not found") == (raised.value.status, raised.value.message)

    def test_caller_chosen_id_and_gateway(self, client: SandClient) -> None:
        """The caller's id and gateway are kept as given."""
        wanted = str(uuid.uuid4())

        created = client.network_create(id=wanted, ip_range="198.18.11.0/24", gateway="198.18.11.254/24")

        assert (wanted, "198.18.11.254/24", f"net-sc-{wanted}") == (created.id, created.gateway, created.name)

    def test_list_is_sorted_by_id(self, client: SandClient) -> None:
        """`networks()` lists every network by id, each with its own VNI."""
        created = [client.network_create(ip_range=f"198.18.{n}.0/24") for n in (12, 13, 14)]

        listed = client.networks()

        assert sorted(n.id for n in created) == [n.id for n in listed]
        assert 3 == len({n.vxlan_vni for n in listed})

    def test_idempotency_key_creates_once(self, client: SandClient) -> None:
        """The same Idempotency-Key twice returns the same network, and only one exists."""
        first = client.network_create(ip_range="198.18.15.0/24", idempotency_key="create-blue-1")
        second = client.network_create(ip_range="198.18.15.0/24", idempotency_key="create-blue-1")

        assert first.id == second.id
        assert [first.id] == [n.id for n in client.networks()]

    def test_bad_cidr_is_400_with_the_reason(self, client: SandClient) -> None:
        """An ip_range with host bits set is refused with 400 and a message naming it."""
        with pytest.raises(SandApiError) as raised:
            client.network_create(ip_range="198.18.16.5/24")

        assert 400 == raised.value.status
        assert "198.18.16.5/24" in raised.value.message
        assert [] == client.networks()

    def test_unknown_network_is_404(self, client: SandClient) -> None:
        """Showing or deleting an unknown network is a 404 carrying the API's message."""
        unknown = str(uuid.uuid4())

        with pytest.raises(SandApiError) as shown:
            client.network_show(unknown)
        with pytest.raises(SandApiError) as deleted:
            client.network_delete(unknown)

        # `GET` keeps SAND's exact message; the commands name the id.
        assert (404, "network not found") == (shown.value.status, shown.value.message)
        assert (404, f"network {unknown} not found") == (deleted.value.status, deleted.value.message)

    def test_network_with_endpoints_is_409(self, client: SandClient) -> None:
        """Deleting a network that still has an endpoint is refused with 409, and it stays."""
        network = client.network_create(name="busy", ip_range="198.18.17.0/24")
        client.endpoint_create(network_id=network.id)

        with pytest.raises(SandApiError) as raised:
            client.network_delete(network.id)

        assert 409 == raised.value.status
        assert "still has 1 endpoint" in raised.value.message
        assert network == client.network_show(network.id)


@pytest.mark.etcd
class TestEndpoints:
    def test_passive_without_namespace(self, client: SandClient) -> None:
        """Without ns_handle_path the endpoint is created passive, on the agent's host."""
        network = client.network_create(ip_range="198.18.20.0/24")

        endpoint = client.endpoint_create(network_id=network.id)

        assert (False, "", network.id, _HOSTNAME, "192.0.2.1", "198.18.20.2/24") == (
            endpoint.active,
            endpoint.target_netns_path,
            endpoint.network_id,
            endpoint.hostname,
            endpoint.host_ip,
            endpoint.target_veth_ip,
        )

    def test_active_in_a_namespace(self, client: SandClient, agent: Agent) -> None:
        """With ns_handle_path the endpoint is activated in that namespace."""
        network = client.network_create(ip_range="198.18.21.0/24")

        endpoint = client.endpoint_create(network_id=network.id, ns_handle_path=agent.netns)

        assert (True, agent.netns) == (endpoint.active, endpoint.target_netns_path)

    def test_fixed_address_and_mac(self, client: SandClient) -> None:
        """A requested IPv4 address and MAC are used as given."""
        network = client.network_create(ip_range="198.18.22.0/24")

        endpoint = client.endpoint_create(
            network_id=network.id, ipv4_address="198.18.22.40", mac_address="02:00:00:00:00:28"
        )

        assert ("198.18.22.40/24", "02:00:00:00:00:28") == (endpoint.target_veth_ip, endpoint.target_veth_mac)

    def test_not_a_namespace_is_400(self, client: SandClient) -> None:
        """A namespace handle that is not one is refused with 400."""
        network = client.network_create(ip_range="198.18.23.0/24")

        with pytest.raises(SandApiError) as raised:
            client.endpoint_create(network_id=network.id, ns_handle_path="/etc/hostname")

        assert 400 == raised.value.status
        assert "/etc/hostname" in raised.value.message

    def test_filters(self, client: SandClient, agent: Agent) -> None:
        """Endpoints filter by network, by host, by both, or not at all."""
        blue = client.network_create(ip_range="198.18.24.0/24")
        red = client.network_create(ip_range="198.18.25.0/24")
        in_blue = [client.endpoint_create(network_id=blue.id) for _ in range(2)]
        in_red = [client.endpoint_create(network_id=red.id, ns_handle_path=agent.netns)]
        everything = sorted(ids([*in_blue, *in_red]))

        assert everything == ids(client.endpoints())
        assert sorted(ids(in_blue)) == ids(client.endpoints(network_id=blue.id))
        assert ids(in_red) == ids(client.endpoints(network_id=red.id))
        assert everything == ids(client.endpoints(hostname=_HOSTNAME))
        assert [] == client.endpoints(hostname="host-b")
        assert ids(in_red) == ids(client.endpoints(network_id=red.id, hostname=_HOSTNAME))
        assert [] == client.endpoints(network_id=red.id, hostname="host-b")

    def test_filter_values_are_url_encoded(self, client: SandClient) -> None:
        """A filter value with `&` and `=` is one value, not extra query parameters."""
        network = client.network_create(ip_range="198.18.26.0/24")
        client.endpoint_create(network_id=network.id)

        assert [] == client.endpoints(hostname=f"{_HOSTNAME}&network_id={network.id}")

    def test_delete(self, client: SandClient) -> None:
        """A deleted endpoint is no longer listed; deleting it again is a 404 with the API's message."""
        network = client.network_create(ip_range="198.18.27.0/24")
        endpoint = client.endpoint_create(network_id=network.id)

        client.endpoint_delete(endpoint.id)

        assert [] == client.endpoints(network_id=network.id)
        with pytest.raises(SandApiError) as raised:
            client.endpoint_delete(endpoint.id)
        assert (404, f"endpoint {endpoint.id} not found") == (raised.value.status, raised.value.message)
        client.network_delete(network.id)

    def test_unknown_network_is_404(self, client: SandClient) -> None:
        """An endpoint in an unknown network is refused with 404."""
        unknown = str(uuid.uuid4())

        with pytest.raises(SandApiError) as raised:
            client.endpoint_create(network_id=unknown)

        assert (404, f"network {unknown} not found") == (raised.value.status, raised.value.message)


class FakeApi:
    """A loopback HTTP server that records each request and answers with `status` and `body`."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"{}"
        self.content_type = "application/json"
        self.delay = 0.0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                fake.requests.append((self.command, self.path, dict(self.headers.items()), body))
                fake.release.wait(fake.delay)
                self.send_response(fake.status)
                self.send_header("Content-Type", fake.content_type)
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, status: int, document: object, content_type: str = "application/json") -> None:
        """Answer the next requests with `document` (bytes as they are, anything else as JSON)."""
        self.status = status
        self.body = document if isinstance(document, bytes) else msgspec.json.encode(document)
        self.content_type = content_type


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    """A `FakeApi`, shut down afterwards."""
    fake = FakeApi()
    fake.thread.start()
    yield fake
    fake.release.set()
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=5)


def a_network(network_id: str = "n-1") -> Network:
    """A network as the API shows it."""
    return Network(
        id=network_id,
        created_at=datetime(2024, 5, 1, tzinfo=UTC),
        name="blue",
        type="overlay",
        ns_handle_path=f"/var/run/netns/sc-ns-{network_id}",
        vxlan_vni=1,
        ip_range="198.18.0.0/24",
        gateway="198.18.0.1/24",
        mtu=1450,
    )


def an_endpoint(endpoint_id: str = "e-1") -> Endpoint:
    """An endpoint as the API shows it."""
    return Endpoint(
        id=endpoint_id,
        network_id="n-1",
        hostname=_HOSTNAME,
        host_ip="192.0.2.1",
        api_hostname="",
        created_at=datetime(2024, 5, 1, tzinfo=UTC),
        target_netns_path="/proc/1/ns/net",
        overlay_veth_name="sand0001",
        overlay_veth_mac="02:00:00:00:00:01",
        target_veth_name="sand0002",
        target_veth_mac="02:84:c6:12:00:02",
        target_veth_ip="198.18.0.2/24",
        active=True,
    )


class TestRequests:
    def test_headers_and_network_body(self, fake_api: FakeApi) -> None:
        """A create sends the User-Agent, the Idempotency-Key and only the fields given."""
        fake_api.answer(201, NetworkResponse(network=a_network()))

        with SandClient(fake_api.url) as sand:
            created = sand.network_create(name="blue", ip_range="198.18.0.0/24", idempotency_key="k-1")

        method, path, headers, body = fake_api.requests[0]
        assert a_network() == created
        assert ("POST", "/networks") == (method, path)
        assert (f"sand-es-client/{__version__}", "k-1") == (headers["User-Agent"], headers["Idempotency-Key"])
        assert {"name": "blue", "ip_range": "198.18.0.0/24"} == json.loads(body)

    def test_endpoint_body_activates_like_sands_cli(self, fake_api: FakeApi) -> None:
        """A namespace is sent as `activate: true` and `activate_params.ns_handle_path`."""
        fake_api.answer(201, EndpointResponse(endpoint=an_endpoint()))

        with SandClient(fake_api.url) as sand:
            sand.endpoint_create(network_id="n-1", ns_handle_path="/proc/1/ns/net")

        assert {
            "network_id": "n-1",
            "activate": True,
            "activate_params": {"ns_handle_path": "/proc/1/ns/net", "set_addr": True, "move_veth": True},
        } == json.loads(fake_api.requests[0][3])

    def test_query_and_path_are_encoded(self, fake_api: FakeApi) -> None:
        """Filter values and ids travel URL-encoded."""
        fake_api.answer(200, EndpointsResponse(endpoints=[]))

        with SandClient(fake_api.url) as sand:
            sand.endpoints(network_id="n 1", hostname="a&b=c")
            sand.endpoint_delete("e/1?x")

        query = urlsplit(fake_api.requests[0][1]).query
        assert {"network_id": ["n 1"], "hostname": ["a&b=c"]} == parse_qs(query)
        assert "/endpoints/e%2F1%3Fx" == fake_api.requests[1][1]

    @pytest.mark.parametrize(
        ("status", "body", "message"),
        [
            (409, b'{"error":"in use"}', "in use"),
            (502, b"upstream down\n", "upstream down"),
            (404, b"", "Not Found"),
        ],
        ids=["json", "text", "empty"],
    )
    def test_error_messages(self, fake_api: FakeApi, status: int, body: bytes, message: str) -> None:
        """An error carries the API's `error`, else the raw text, else the reason phrase."""
        fake_api.answer(status, body, content_type="text/plain")

        with SandClient(fake_api.url) as sand, pytest.raises(SandApiError) as raised:
            sand.network_delete("n-1")

        assert (status, message) == (raised.value.status, raised.value.message)

    def test_unexpected_success_body(self, fake_api: FakeApi) -> None:
        """A success whose body is not the route's envelope is an error, not a crash."""
        fake_api.answer(200, {"nets": []})

        with SandClient(fake_api.url) as sand, pytest.raises(SandApiError, match="unexpected answer"):
            sand.networks()

    def test_timeout(self, fake_api: FakeApi) -> None:
        """An agent slower than the timeout raises SandConnectionError saying so."""
        fake_api.answer(200, {"version": "x"})
        fake_api.delay = 5.0

        with SandClient(fake_api.url, timeout=0.2) as sand, pytest.raises(SandConnectionError) as raised:
            sand.version()

        assert "no answer within 0.2 s" in str(raised.value)


class TestConnection:
    def test_closed_port(self, closed_url: str) -> None:
        """A port nothing listens on raises SandConnectionError naming the URL."""
        with SandClient(closed_url, timeout=5) as sand, pytest.raises(SandConnectionError) as raised:
            sand.version()

        assert closed_url in str(raised.value)

    def test_cert_without_key_is_refused(self) -> None:
        """A client certificate without its key is a configuration error."""
        with pytest.raises(ValueError, match="together"):
            SandClient(cert_file="/etc/hostname")


@pytest.mark.etcd
class TestCliVerbs:
    def test_network_verbs_print_tables(self, agent: Agent, client: SandClient) -> None:
        """network-create, -list and -show print tables holding the network's id and range."""
        created = cli(agent.url, "network-create", "--name", "green", "--ip-range", "198.18.30.0/24")
        assert 0 == created.exit_code, created.output
        network_id = client.networks()[0].id

        listed = cli(agent.url, "network-list")
        shown = cli(agent.url, "network-show", "-n", network_id)

        for result in (created, listed, shown):
            assert 0 == result.exit_code, result.output
            assert network_id in result.stdout
            assert "198.18.30.0/24" in result.stdout
            assert "VNI" in result.stdout

    def test_empty_network_list(self, agent: Agent) -> None:
        """network-list says so when there is no network."""
        result = cli(agent.url, "network-list")

        assert (0, "No existing network\n") == (result.exit_code, result.stdout)

    def test_json_is_the_api_envelope(self, agent: Agent) -> None:
        """--json prints one document in the API's envelope, which decodes back."""
        created = json.loads(
            cli(agent.url, "network-create", "--ip-range", "198.18.31.0/24", "--json").stdout
        )
        network_id = created["network"]["id"]

        listed = json.loads(cli(agent.url, "network-list", "--json").stdout)
        shown = json.loads(cli(agent.url, "network-show", "-n", network_id, "--json").stdout)

        assert [network_id] == [n["id"] for n in listed["networks"]]
        assert created == shown
        assert "198.18.31.1/24" == shown["network"]["gateway"]

    def test_endpoint_verbs(self, agent: Agent) -> None:
        """endpoint-create and -list show the endpoint's id, state and namespace; -delete removes it."""
        network = json.loads(
            cli(agent.url, "network-create", "--ip-range", "198.18.32.0/24", "--json").stdout
        )
        network_id = network["network"]["id"]

        created = cli(agent.url, "endpoint-create", "-n", network_id, "--ns", agent.netns, "--json")
        endpoint = json.loads(created.stdout)["endpoint"]
        listed = cli(agent.url, "endpoint-list", "-n", network_id, "--hostname", "all")
        deleted = cli(agent.url, "endpoint-delete", "-e", endpoint["id"])

        assert (0, 0, 0) == (created.exit_code, listed.exit_code, deleted.exit_code)
        assert (True, agent.netns) == (endpoint["active"], endpoint["target_netns_path"])
        for text in (endpoint["id"], "ACTIVE", agent.netns, "198.18.32.2/24", _HOSTNAME):
            assert text in listed.stdout
        assert [] == json.loads(cli(agent.url, "endpoint-list", "--json").stdout)["endpoints"]

    def test_passive_endpoint_from_cli(self, agent: Agent, client: SandClient) -> None:
        """endpoint-create without --ns makes a passive endpoint with the requested address."""
        network_id = client.network_create(ip_range="198.18.33.0/24").id

        result = cli(agent.url, "endpoint-create", "-n", network_id, "--ip", "198.18.33.9")

        assert 0 == result.exit_code, result.output
        assert "PASSIVE" in result.stdout
        assert "198.18.33.9/24" in result.stdout

    def test_api_error_exits_1_with_the_message(self, agent: Agent) -> None:
        """An API error exits 1 with `error: <the API's message>` on stderr and nothing on stdout."""
        unknown = str(uuid.uuid4())

        result = cli(agent.url, "network-show", "-n", unknown)

        assert (1, "", "error: network not found\n") == (
            result.exit_code,
            result.stdout,
            result.stderr,
        )

    def test_refused_delete_exits_1(self, agent: Agent, client: SandClient) -> None:
        """network-delete of a network with endpoints exits 1 with the conflict's message."""
        network = client.network_create(ip_range="198.18.34.0/24")
        client.endpoint_create(network_id=network.id)

        result = cli(agent.url, "network-delete", "-n", network.id)

        assert 1 == result.exit_code
        assert result.stderr.startswith("error: ")
        assert "still has 1 endpoint" in result.stderr

    def test_version_prints_both(self, agent: Agent) -> None:
        """version prints the client's and the server's versions."""
        result = cli(agent.url, "version")

        assert (0, f"Client version: {__version__}\nServer version: {__version__}\n") == (
            result.exit_code,
            result.stdout,
        )

    def test_version_json(self, agent: Agent) -> None:
        """version --json prints both versions in one document."""
        result = cli(agent.url, "version", "--json")

        assert {"client_version": __version__, "server_version": __version__} == json.loads(result.stdout)

    def test_deletes_print_an_empty_document_with_json(self, agent: Agent, client: SandClient) -> None:
        """network-delete and endpoint-delete --json print `{}`, as the API answers with no body."""
        network = client.network_create(ip_range="198.18.35.0/24")
        endpoint = client.endpoint_create(network_id=network.id)

        deleted_endpoint = cli(agent.url, "endpoint-delete", "-e", endpoint.id, "--json")
        deleted_network = cli(agent.url, "network-delete", "-n", network.id, "--json")

        assert [(0, {}), (0, {})] == [
            (r.exit_code, json.loads(r.stdout)) for r in (deleted_endpoint, deleted_network)
        ]
        assert [] == client.networks()

    def test_api_url_from_the_environment(self, agent: Agent) -> None:
        """SAND_API_URL names the agent when --api-url is not given."""
        result = CliRunner().invoke(app, ["network-list", "--json"], env={"SAND_API_URL": agent.url})

        assert (0, {"networks": []}) == (result.exit_code, json.loads(result.stdout))

    def test_timeout_accepts_a_go_duration(self, agent: Agent) -> None:
        """--timeout 2s parses and the command runs."""
        result = cli(agent.url, "--timeout", "2s", "network-list")

        assert (0, "No existing network\n") == (result.exit_code, result.stdout)


class TestCliWithoutAgent:
    def test_version_without_server(self, closed_url: str) -> None:
        """version prints the client line, then the error, and exits 1 when the agent is unreachable."""
        result = cli(closed_url, "version")

        assert (1, f"Client version: {__version__}\n") == (result.exit_code, result.stdout)
        assert result.stderr.startswith("error: cannot reach the SAND API")

    def test_unreachable_agent_exits_1(self, closed_url: str) -> None:
        """A verb against an unreachable agent exits 1 with an error naming the URL."""
        result = cli(closed_url, "network-list")

        assert 1 == result.exit_code
        assert closed_url in result.stderr

    @pytest.mark.parametrize("value", ["soon", "0s", "-1s", "10x"])
    def test_bad_timeout_is_a_usage_error(self, value: str) -> None:
        """A --timeout that is not a positive duration is a usage error (exit 2)."""
        result = CliRunner().invoke(app, ["--timeout", value, "network-list"])

        assert 2 == result.exit_code
        assert "--timeout" in result.stderr

    def test_bad_timeout_from_the_environment(self) -> None:
        """A malformed SAND_TIMEOUT is a usage error too."""
        result = CliRunner().invoke(app, ["network-list"], env={"SAND_TIMEOUT": "soon"})

        assert 2 == result.exit_code
        assert "SAND_TIMEOUT" in result.stderr


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("30", 30.0), ("30s", 30.0), ("1m", 60.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5h", 5400.0)],
    )
    def test_go_durations(self, text: str, seconds: float) -> None:
        """Go duration strings and bare seconds become seconds."""
        assert seconds == parse_duration(text)

    @pytest.mark.parametrize("text", ["", "soon", "1 m", "s", "0", "1e3", "inf", "-5s"])
    def test_refused(self, text: str) -> None:
        """Anything else, zero included, is refused."""
        with pytest.raises(ValueError, match="duration"):
            parse_duration(text)


@pytest.fixture
def tls_agent(
    etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path, tls_files: TlsFiles
) -> Iterator[Agent]:
    """An HTTPS agent that requires client certificates from `tls_files`' CA."""
    with running_agent(etcd_server, etcd_prefix, tmp_path, tls=tls_files) as running:
        yield running


@pytest.mark.etcd
class TestMutualTls:
    def test_client_certificate(self, tls_agent: Agent, tls_files: TlsFiles) -> None:
        """With the CA's client certificate the client reads and writes over HTTPS."""
        with SandClient(
            tls_agent.url,
            cert_file=str(tls_files.client_cert),
            key_file=str(tls_files.client_key),
            ca_file=str(tls_files.ca_cert),
        ) as sand:
            created = sand.network_create(ip_range="198.18.50.0/24")
            assert [created] == sand.networks()

    def test_foreign_certificate_is_refused(self, tls_agent: Agent, tls_files: TlsFiles) -> None:
        """A client certificate from another CA cannot connect."""
        with (
            SandClient(
                tls_agent.url,
                cert_file=str(tls_files.foreign_client_cert),
                key_file=str(tls_files.foreign_client_key),
                ca_file=str(tls_files.ca_cert),
            ) as sand,
            pytest.raises(SandConnectionError),
        ):
            sand.networks()

    def test_cli_tls_from_the_environment(self, tls_agent: Agent, tls_files: TlsFiles) -> None:
        """SAND_CERT_FILE, SAND_KEY_FILE and SAND_CA_FILE configure the CLI's TLS."""
        env = {
            "SAND_API_URL": tls_agent.url,
            "SAND_CERT_FILE": str(tls_files.client_cert),
            "SAND_KEY_FILE": str(tls_files.client_key),
            "SAND_CA_FILE": str(tls_files.ca_cert),
        }

        result = CliRunner().invoke(app, ["network-list"], env=env)

        assert (0, "No existing network\n") == (result.exit_code, result.stdout)

    def test_cli_cert_without_key_is_a_usage_error(self, tls_files: TlsFiles) -> None:
        """--cert-file without --key-file is a usage error."""
        result = CliRunner().invoke(app, ["--cert-file", str(tls_files.client_cert), "network-list"])

        assert 2 == result.exit_code
        assert "--key-file" in result.stderr
