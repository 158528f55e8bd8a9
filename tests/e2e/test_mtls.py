"""An agent with HTTP_TLS_CERT, HTTP_TLS_KEY and HTTP_TLS_CA serves HTTPS to clients of its CA only."""

from __future__ import annotations

import ssl
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sand_es import __version__
from tests.e2e.agents import AgentProcess, agent_variables, client_context
from tests.support.etcd_server import EtcdServer, TlsFiles

pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module")
def agent(etcd_server: EtcdServer, tls_files: TlsFiles) -> Iterator[AgentProcess]:
    """An agent serving mTLS on 127.0.0.1 (server certificate and CA from `tls_files`), stopped after."""
    with tempfile.TemporaryDirectory(prefix="sand-es-e2e-") as directory:
        agent = AgentProcess(
            "host-a",
            agent_variables(
                etcd_server.url,
                f"{directory}/netns",
                ETCD_PREFIX=f"/sand-es-test/{uuid.uuid4().hex}",
                HTTP_TLS_CERT=str(tls_files.server_cert),
                HTTP_TLS_KEY=str(tls_files.server_key),
                HTTP_TLS_CA=str(tls_files.ca_cert),
                LOG_FORMAT="json",
            ),
            Path(directory),
        )
        try:
            agent.wait_ready(
                verify=client_context(tls_files.ca_cert, tls_files.client_cert, tls_files.client_key)
            )
            yield agent
        finally:
            agent.stop()


async def version_status(agent: AgentProcess, verify: ssl.SSLContext) -> int:
    """The status of GET /version with this TLS client context."""
    async with httpx.AsyncClient(verify=verify, timeout=5.0) as client:
        return (await client.get(f"{agent.url}/version")).status_code


class TestMutualTls:
    """Who may talk to an agent that has HTTPS settings."""

    async def test_a_client_of_the_ca_is_served(self, agent: AgentProcess, tls_files: TlsFiles) -> None:
        """A client presenting a certificate of the agent's CA gets 200 on /version over HTTPS."""
        verify = client_context(tls_files.ca_cert, tls_files.client_cert, tls_files.client_key)
        async with httpx.AsyncClient(verify=verify, timeout=5.0) as client:
            response = await client.get(f"https://127.0.0.1:{agent.port}/version")
        assert "https" == response.url.scheme
        assert (200, {"version": __version__}) == (response.status_code, response.json())

    async def test_a_client_without_a_certificate_is_refused(
        self, agent: AgentProcess, tls_files: TlsFiles
    ) -> None:
        """A client that trusts the agent but presents no certificate gets no answer at all."""
        with pytest.raises(httpx.TransportError):
            await version_status(agent, client_context(tls_files.ca_cert))

    async def test_a_client_of_a_foreign_ca_is_refused(
        self, agent: AgentProcess, tls_files: TlsFiles
    ) -> None:
        """A client presenting a certificate another CA issued gets no answer at all."""
        verify = client_context(
            tls_files.ca_cert, tls_files.foreign_client_cert, tls_files.foreign_client_key
        )
        with pytest.raises(httpx.TransportError):
            await version_status(agent, verify)

    async def test_plain_http_is_refused(self, agent: AgentProcess) -> None:
        """A plain-HTTP request to the HTTPS port gets no answer."""
        async with httpx.AsyncClient(timeout=5.0) as client:
            with pytest.raises(httpx.TransportError):
                await client.get(f"http://127.0.0.1:{agent.port}/version")

    async def test_the_agent_still_serves_after_refusals(
        self, agent: AgentProcess, tls_files: TlsFiles
    ) -> None:
        """Refused handshakes leave the agent running and serving clients of its CA."""
        for _ in range(3):
            with pytest.raises(httpx.TransportError):
                await version_status(agent, client_context(tls_files.ca_cert))
        verify = client_context(tls_files.ca_cert, tls_files.client_cert, tls_files.client_key)
        assert (None, 200) == (agent.process.poll(), await version_status(agent, verify))
