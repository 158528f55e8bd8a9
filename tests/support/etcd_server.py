"""A real etcd for tests, on loopback or inside a network namespace, and throwaway TLS material for it.

`EtcdServer` only ever signals the process it started itself (through its `Popen` object,
which refuses to signal a PID it has already reaped), so a developer's own etcd is never
touched.

Inside a namespace (`EtcdServer(netns=path, host=ip)`) etcd is started through
`nsenter --net=PATH`, which execs etcd in place: the PID we hold is etcd's own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trustme

from tests.support.netns import in_netns

ETCD_BINARY = Path("/usr/bin/etcd")
ETCDCTL_BINARY = Path("/usr/bin/etcdctl")

_LOOPBACK = "127.0.0.1"
# A fresh namespace has every port free, so etcd's usual ones are used there.
_NETNS_PORTS = (2379, 2380)
_MEMBER_NAME = "sand-es-test"
_START_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_STOP_TIMEOUT = 10.0
_ETCDCTL_TIMEOUT = 30.0
_LOG_TAIL_LINES = 40
# 8 GiB, etcd's recommended maximum: load tests must not fill the default 2 GiB quota,
# which raises the NOSPACE alarm and turns the store read-only for the rest of the session.
_QUOTA_BACKEND_BYTES = 8 * 1024**3


class EtcdServerError(RuntimeError):
    """etcd did not become healthy, or an etcdctl command failed."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for an mTLS etcd: its CA, server pair, a client pair and a foreign client pair.

    The foreign client certificate is issued by a second CA that the server does not trust.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    foreign_client_cert: Path
    foreign_client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a fresh CA, server and client certificates (and a foreign client) to `directory`."""
    ca = trustme.CA()
    foreign_ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost", "etcd.test")
    client = ca.issue_cert("sand-agent-1", common_name="sand-agent-1")
    foreign_client = foreign_ca.issue_cert("sand-agent-1", common_name="sand-agent-1")
    files = TlsFiles(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        foreign_client_cert=directory / "foreign-client.pem",
        foreign_client_key=directory / "foreign-client-key.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca_cert))
    _write_leaf(server, files.server_cert, files.server_key)
    _write_leaf(client, files.client_cert, files.client_key)
    _write_leaf(foreign_client, files.foreign_client_cert, files.foreign_client_key)
    return files


def _write_leaf(leaf: trustme.LeafCert, cert_path: Path, key_path: Path) -> None:
    # The CAs issue leaves directly, so the chain is just the leaf certificate.
    leaf.cert_chain_pems[0].write_to_path(str(cert_path))
    leaf.private_key_pem.write_to_path(str(key_path))


def free_loopback_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now."""
    # Hold every socket open until all ports are known, so the kernel hands out distinct ones.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((_LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class EtcdServer:
    """A single-member etcd with its own temporary data directory.

    By default it listens on free loopback ports of this process's namespace. With `netns`
    (a namespace's path) it runs inside that namespace on `host`, ports 2379 and 2380, and
    every health check and etcdctl call is made from inside it too.

    Use it as a context manager, or call `start()` and, always, `close()`.
    """

    def __init__(
        self,
        tls: TlsFiles | None = None,
        extra_args: Sequence[str] = (),
        *,
        netns: str | None = None,
        host: str = _LOOPBACK,
    ) -> None:
        if netns is None and host != _LOOPBACK:
            # Listening on another address would mean an address of the root namespace.
            raise ValueError("EtcdServer(host=…) needs netns=…: outside a namespace etcd stays on loopback")
        self._tls = tls
        self._extra_args = tuple(extra_args)
        self._netns = netns
        self._host = host
        self._tmpdir: Path | None = None
        self._ports: tuple[int, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def client_port(self) -> int:
        """The port etcd serves clients on (gRPC and HTTP)."""
        return self._require_ports()[0]

    @property
    def host(self) -> str:
        """The address etcd listens on: 127.0.0.1, or the one given with `netns`."""
        return self._host

    @property
    def netns(self) -> str | None:
        """The path of the namespace etcd runs in, or None for this process's own."""
        return self._netns

    @property
    def endpoint(self) -> str:
        """`HOST:PORT` (127.0.0.1 by default), the form etcd3aio accepts."""
        return f"{self._host}:{self.client_port}"

    @property
    def url(self) -> str:
        """`http://HOST:PORT`, or `https://…` with TLS."""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self.endpoint}"

    @property
    def data_dir(self) -> Path:
        """etcd's `--data-dir`, inside the temporary directory this server owns."""
        return self._require_tmpdir() / "data"

    @property
    def log_path(self) -> Path:
        """The file that receives etcd's stdout and stderr."""
        return self._require_tmpdir() / "etcd.log"

    @property
    def pid(self) -> int:
        """The PID of the running etcd process."""
        if self._process is None:
            raise RuntimeError("etcd is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the etcd process this object started is still alive (paused counts)."""
        return self._process is not None and self._process.poll() is None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Create the data directory, pick ports, start etcd and wait until it is healthy."""
        if self._tmpdir is not None:
            raise RuntimeError("EtcdServer already started; use restart()")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="sand-es-etcd-"))
        client_port, peer_port = _NETNS_PORTS if self._netns else free_loopback_ports(2)
        self._ports = (client_port, peer_port)
        self._launch()

    def restart(self) -> None:
        """Stop etcd if it runs, then start it again on the same ports and data directory."""
        self._require_tmpdir()
        self.stop()
        self._launch()

    def stop(self) -> None:
        """SIGTERM etcd and wait up to 10 s for a clean exit, then SIGKILL it."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            # A paused etcd keeps SIGTERM pending forever: let it run so that it can exit.
            process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL etcd (a crash: no clean shutdown) and reap it."""
        process = self._process
        if process is None:
            return
        process.kill()
        process.wait()
        self._process = None

    def pause(self) -> None:
        """SIGSTOP etcd: connections stay open but nothing is answered."""
        self._require_process().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused etcd."""
        self._require_process().send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop etcd and delete the temporary directory this server created."""
        self.stop()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir)
            self._tmpdir = None
            self._ports = None

    # -- etcdctl ---------------------------------------------------------------------------

    def etcdctl(self, *args: str) -> str:
        """Run `etcdctl` (API v3) against this server and return its stdout."""
        command = [
            *self._nsenter(),
            str(ETCDCTL_BINARY),
            f"--endpoints={self.url}",
            *self._etcdctl_tls_flags(),
            *args,
        ]
        result = subprocess.run(
            command,
            env={**os.environ, "ETCDCTL_API": "3"},
            capture_output=True,
            text=True,
            timeout=_ETCDCTL_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise EtcdServerError(
                f"etcdctl {' '.join(args)} exited with {result.returncode}: {result.stderr.strip()}"
            )
        return result.stdout

    def compact(self, revision: int) -> None:
        """Compact the history up to `revision`, waiting for the physical deletion."""
        self.etcdctl("compaction", "--physical", str(revision))

    def head_revision(self) -> int:
        """The store's current revision."""
        statuses: list[dict[str, Any]] = json.loads(self.etcdctl("endpoint", "status", "-w", "json"))
        return int(statuses[0]["Status"]["header"]["revision"])

    # -- internals -------------------------------------------------------------------------

    def _launch(self) -> None:
        with self.log_path.open("ab") as log:
            # The child keeps its own copy of the log descriptor; ours is closed right away.
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A rig's etcd gets its own process group: a terminal's Ctrl-C reaches only the
                # harness, which then stops it in order, after the agents that use it.
                process_group=0 if self._netns else None,
            )
        self._wait_until_healthy()

    def _command(self) -> list[str]:
        client_port, peer_port = self._require_ports()
        client_url = self.url
        # Peers stay plain HTTP even with TLS: a single member never talks to a peer.
        peer_url = f"http://{self._host}:{peer_port}"
        return [
            *self._nsenter(),
            str(ETCD_BINARY),
            "--name", _MEMBER_NAME,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{_MEMBER_NAME}={peer_url}",
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"{_MEMBER_NAME}-{client_port}",
            "--quota-backend-bytes", str(_QUOTA_BACKEND_BYTES),
            # 3.4's default logger (capnslog) still prints raft INFO lines at --log-level
            # error; zap does not. --log-outputs stderr keeps errors in our file under systemd.
            "--logger", "zap",
            "--log-level", "error",
            "--log-outputs", "stderr",
            *self._server_tls_flags(),
            *self._extra_args,
        ]  # fmt: skip

    def _nsenter(self) -> list[str]:
        """The prefix that runs a command inside etcd's namespace (none outside one)."""
        # Only --net: etcd and etcdctl keep our mount namespace, hence our temporary files.
        return [] if self._netns is None else ["nsenter", f"--net={self._netns}"]

    def _inside(self) -> AbstractContextManager[None]:
        """Where this thread must be to reach etcd: its namespace, or where it already is."""
        return nullcontext() if self._netns is None else in_netns(self._netns)

    def _server_tls_flags(self) -> list[str]:
        if self._tls is None:
            return []
        return [
            "--cert-file", str(self._tls.server_cert),
            "--key-file", str(self._tls.server_key),
            "--trusted-ca-file", str(self._tls.ca_cert),
            "--client-cert-auth",
        ]  # fmt: skip

    def _etcdctl_tls_flags(self) -> list[str]:
        if self._tls is None:
            return []
        return [
            f"--cacert={self._tls.ca_cert}",
            f"--cert={self._tls.client_cert}",
            f"--key={self._tls.client_key}",
        ]

    def _wait_until_healthy(self) -> None:
        process = self._require_process()
        context = self._health_ssl_context()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._is_healthy(context):
            if process.poll() is not None:
                self._process = None
                raise EtcdServerError(
                    f"etcd exited with status {process.returncode} before it became healthy{self._log_tail()}"
                )
            if time.monotonic() >= deadline:
                self.kill()
                raise EtcdServerError(
                    f"etcd was not healthy at {self.url} after {_START_TIMEOUT:g} s{self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _is_healthy(self, context: ssl.SSLContext | None) -> bool:
        try:
            # The connection is made inside etcd's namespace; the reply is read on the same socket.
            with (
                self._inside(),
                urllib.request.urlopen(f"{self.url}/health", timeout=1, context=context) as reply,
            ):
                body = json.load(reply)
        except urllib.error.HTTPError as error:
            # etcd answers 503 while it has no leader yet: not healthy, keep polling.
            error.close()
            return False
        except (OSError, ValueError):
            return False
        return isinstance(body, dict) and body.get("health") == "true"

    def _health_ssl_context(self) -> ssl.SSLContext | None:
        if self._tls is None:
            return None
        # The server demands a client certificate (--client-cert-auth), even for /health.
        context = ssl.create_default_context(cafile=str(self._tls.ca_cert))
        context.load_cert_chain(str(self._tls.client_cert), str(self._tls.client_key))
        return context

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as error:
            return f"\n(etcd log unreadable: {error})"
        tail = "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty)"
        return f"\n--- last lines of {self.log_path} ---\n{tail}"

    def _require_tmpdir(self) -> Path:
        if self._tmpdir is None:
            raise RuntimeError("EtcdServer not started")
        return self._tmpdir

    def _require_ports(self) -> tuple[int, int]:
        if self._ports is None:
            raise RuntimeError("EtcdServer not started")
        return self._ports

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("etcd is not running")
        return self._process
