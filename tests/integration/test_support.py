"""The test-support code itself: etcd fixtures, etcdctl helpers, mTLS and the TCP proxy."""

from __future__ import annotations

import grpc
import pytest
from etcd3aio import Etcd3Client, EtcdConnectionError
from etcd3aio.kv import KVService

from tests.support.etcd_server import EtcdServer, TlsFiles
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.etcd


def kv(client: Etcd3Client) -> KVService:
    """The client's KV facade, which etcd3aio types as optional until `connect()`."""
    assert client.kv is not None
    return client.kv


async def value_of(client: Etcd3Client, key: str, revision: int = 0) -> bytes | None:
    """The value stored at `key` (at `revision` if given), or None when there is none."""
    reply = await kv(client).get(key, revision=revision, timeout=5)
    if not reply.kvs:
        return None
    value: bytes = reply.kvs[0].value
    return value


def mtls_client(server: EtcdServer, cert: bytes, key: bytes, ca: bytes) -> Etcd3Client:
    """A client for `server` that presents the given certificate; fails fast, no retries."""
    return Etcd3Client([server.endpoint], ca_cert=ca, cert_chain=cert, cert_key=key, rpc_max_attempts=1)


class TestEtcdServer:
    async def test_put_then_get(self, etcd_server: EtcdServer, etcd_prefix: str) -> None:
        """A value written to the session etcd reads back unchanged."""
        key = f"{etcd_prefix}/greeting"
        async with Etcd3Client([etcd_server.endpoint]) as client:
            await kv(client).put(key, b"hello", timeout=5)
            assert await value_of(client, key) == b"hello"

    async def test_kill_and_restart_keep_data(self, fresh_etcd: EtcdServer) -> None:
        """Data acknowledged before a SIGKILL is still there after a restart on the same port."""
        old_pid = fresh_etcd.pid
        async with Etcd3Client([fresh_etcd.endpoint]) as client:
            await kv(client).put("/survivor", b"still here", timeout=5)
        fresh_etcd.kill()
        assert not fresh_etcd.running
        fresh_etcd.restart()
        assert fresh_etcd.pid != old_pid
        async with Etcd3Client([fresh_etcd.endpoint]) as client:
            assert await value_of(client, "/survivor") == b"still here"

    async def test_pause_blocks_until_resume(self, fresh_etcd: EtcdServer) -> None:
        """A paused etcd answers nothing until it is resumed."""
        async with Etcd3Client([fresh_etcd.endpoint]) as client:
            await kv(client).put("/paused", b"before", timeout=5)
            fresh_etcd.pause()
            try:
                with pytest.raises(TimeoutError):
                    await kv(client).get("/paused", timeout=0.5)
            finally:
                fresh_etcd.resume()
            assert await value_of(client, "/paused") == b"before"

    async def test_compacted_revision_is_out_of_range(self, fresh_etcd: EtcdServer) -> None:
        """After `compact`, reading at an older revision fails with OUT_OF_RANGE."""
        async with Etcd3Client([fresh_etcd.endpoint]) as client:
            first = await kv(client).put("/compacted", b"v1", timeout=5)
            await kv(client).put("/compacted", b"v2", timeout=5)
            head = fresh_etcd.head_revision()
            assert head == first.header.revision + 1
            fresh_etcd.compact(head)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await value_of(client, "/compacted", revision=first.header.revision)
            assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert await value_of(client, "/compacted") == b"v2"


class TestTls:
    async def test_mtls_client_reads_and_writes(self, tls_etcd: EtcdServer, tls_files: TlsFiles) -> None:
        """A client with a certificate from the server's CA can put and get over mTLS."""
        assert tls_etcd.url.startswith("https://")
        client = mtls_client(
            tls_etcd,
            cert=tls_files.client_cert.read_bytes(),
            key=tls_files.client_key.read_bytes(),
            ca=tls_files.ca_cert.read_bytes(),
        )
        async with client:
            reply = await kv(client).put("/tls", b"secret", timeout=5)
            assert await value_of(client, "/tls") == b"secret"
        assert tls_etcd.head_revision() == reply.header.revision

    async def test_foreign_client_certificate_is_refused(
        self, tls_etcd: EtcdServer, tls_files: TlsFiles
    ) -> None:
        """A client certificate from a CA the server does not trust cannot connect."""
        client = mtls_client(
            tls_etcd,
            cert=tls_files.foreign_client_cert.read_bytes(),
            key=tls_files.foreign_client_key.read_bytes(),
            ca=tls_files.ca_cert.read_bytes(),
        )
        async with client:
            with pytest.raises(EtcdConnectionError):
                await kv(client).put("/tls", b"intruder", timeout=5)


class TestTcpProxy:
    async def test_forwards_put_and_get(self, etcd_server: EtcdServer, etcd_prefix: str) -> None:
        """Requests and replies pass through the proxy unchanged."""
        key = f"{etcd_prefix}/proxied"
        async with (
            TcpProxy("127.0.0.1", etcd_server.client_port) as proxy,
            Etcd3Client([proxy.endpoint]) as client,
        ):
            await kv(client).put(key, b"through", timeout=5)
            assert await value_of(client, key) == b"through"
        assert proxy.swallowed_bytes == 0

    async def test_swallowed_reply_loses_the_answer_not_the_write(
        self, etcd_server: EtcdServer, etcd_prefix: str
    ) -> None:
        """With replies swallowed a put fails for its caller, yet etcd has applied it."""
        key = f"{etcd_prefix}/swallowed"
        async with (
            TcpProxy("127.0.0.1", etcd_server.client_port) as proxy,
            Etcd3Client([etcd_server.endpoint]) as direct,
            Etcd3Client([proxy.endpoint]) as proxied,
        ):
            # Connect first, so that what is swallowed is the put's answer, not the handshake.
            await kv(proxied).put(f"{etcd_prefix}/warm-up", b"", timeout=5)
            proxy.swallow_replies()
            with pytest.raises((TimeoutError, EtcdConnectionError)):
                await kv(proxied).put(key, b"applied", timeout=2, max_attempts=1)
            assert proxy.swallowed_bytes > 0
            assert await value_of(direct, key) == b"applied"

    async def test_restore_lets_new_connections_through(
        self, etcd_server: EtcdServer, etcd_prefix: str
    ) -> None:
        """After `restore`, a new client gets its replies through the proxy again."""
        key = f"{etcd_prefix}/restored"
        async with TcpProxy("127.0.0.1", etcd_server.client_port) as proxy:
            proxy.swallow_replies(close_after=0.1)
            async with Etcd3Client([proxy.endpoint]) as client:
                with pytest.raises((TimeoutError, EtcdConnectionError)):
                    await kv(client).put(key, b"lost", timeout=1, max_attempts=1)
            proxy.restore()
            async with Etcd3Client([proxy.endpoint]) as client:
                # gRPC shares one subchannel per target across clients: the aborted one
                # may still be in its reconnect backoff, so allow a few quick attempts.
                await kv(client).put(key, b"delivered", timeout=5, max_attempts=10)
                assert await value_of(client, key) == b"delivered"
