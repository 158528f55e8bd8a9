"""An asyncio TCP proxy that can lose replies, for fault injection between a client and etcd.

`swallow_replies()` models the worst network failure for a writer: the request reaches the
server and is applied, but the answer never comes back and the connection then dies. The
client cannot tell whether its write happened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

_LOOPBACK = "127.0.0.1"
_CHUNK = 64 * 1024
# How long a finished connection may take to flush what was already forwarded to a peer.
_LINGER = 1.0


@dataclass(eq=False)
class _Connection:
    """One proxied connection: the accepted client side and our side towards the target."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    # Once a reply byte was dropped the stream has a hole: it must never forward again.
    swallowed: bool = False

    def close(self) -> None:
        self.client.close()
        self.server.close()

    def abort(self) -> None:
        self.client.transport.abort()
        self.server.transport.abort()


class TcpProxy:
    """Forwards every connection accepted on a free loopback port to `target_host:target_port`.

    Use it as an async context manager, or `await start()` and, always, `await close()`.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target_host = target_host
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._swallowing = False
        self._close_after = 0.0
        self._abort_armed = False
        self._abort_timer: asyncio.TimerHandle | None = None
        self._swallowed_bytes = 0
        self._closing = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The loopback port the proxy listens on."""
        if self._server is None:
            raise RuntimeError("TcpProxy not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def endpoint(self) -> str:
        """`127.0.0.1:PORT`, the address clients should dial instead of the target."""
        return f"{_LOOPBACK}:{self.port}"

    @property
    def swallowed_bytes(self) -> int:
        """How many reply bytes were dropped so far."""
        return self._swallowed_bytes

    async def start(self) -> None:
        """Listen on a free loopback port."""
        if self._server is not None:
            raise RuntimeError("TcpProxy already started")
        self._server = await asyncio.start_server(self._on_connect, _LOOPBACK, 0)

    async def close(self) -> None:
        """Stop listening, abort every connection and wait for all the proxy's tasks."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        self._swallowing = False
        self._cancel_abort_timer()
        for connection in list(self._connections):
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def swallow_replies(self, close_after: float = 0.3) -> None:
        """Drop server→client bytes from now on; requests still reach the server.

        `close_after` seconds after the first dropped byte, every client connection open at
        that moment is aborted, as when a peer finally notices a dead link.
        """
        self._cancel_abort_timer()
        self._swallowing = True
        self._close_after = close_after
        self._abort_armed = False

    def restore(self) -> None:
        """Forward normally again for new connections; connections that lost bytes are aborted.

        A connection whose reply stream has a hole cannot carry anything sensible any more, so
        it is aborted here instead of being left to hang its client.
        """
        self._swallowing = False
        self._cancel_abort_timer()
        for connection in list(self._connections):
            if connection.swallowed:
                connection.abort()

    # -- internals -------------------------------------------------------------------------

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        # A plain callback that hands the work to a task we own: asyncio's own handler task
        # (3.11) logs a spurious error if it is cancelled, and we must cancel on close().
        self._spawn(self._serve(reader, writer))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self._target_host, self._target_port)
        except OSError:
            # The target is down: refuse the client the way a dead server would.
            client_writer.transport.abort()
            return
        except asyncio.CancelledError:
            client_writer.transport.abort()
            raise
        connection = _Connection(client_writer, server_writer)
        self._connections.add(connection)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._forward_requests(client_reader, connection))
                group.create_task(self._forward_replies(server_reader, connection))
            await _linger(connection)
        finally:
            connection.abort()
            self._connections.discard(connection)

    async def _forward_requests(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        try:
            while data := await reader.read(_CHUNK):
                conn.server.write(data)
                await conn.server.drain()
        except OSError:
            pass
        finally:
            # Either side ending ends the connection; the other pump then sees EOF.
            conn.close()

    async def _forward_replies(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if self._swallowing or conn.swallowed:
                    self._swallow(conn, len(data))
                    continue
                conn.client.write(data)
                await conn.client.drain()
        except OSError:
            pass
        finally:
            conn.close()

    def _swallow(self, conn: _Connection, size: int) -> None:
        conn.swallowed = True
        self._swallowed_bytes += size
        if self._swallowing and not self._abort_armed:
            self._abort_armed = True
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(self._close_after, self._abort_open_connections)

    def _abort_open_connections(self) -> None:
        self._abort_timer = None
        for connection in list(self._connections):
            connection.abort()

    def _cancel_abort_timer(self) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None


async def _linger(connection: _Connection) -> None:
    # Both sides were closed gracefully; wait a little for their buffers to reach the peers,
    # but a peer that stopped reading must not keep the connection (and close()) waiting.
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(_LINGER):
            await connection.client.wait_closed()
            await connection.server.wait_closed()
