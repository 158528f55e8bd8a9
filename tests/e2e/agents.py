"""Real agents (`sand-es agent`) as subprocesses: started with an environment, awaited, stopped by PID.

Each agent only ever signals the process it started itself, through its `Popen` object.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

import httpx

# Re-exported (`X as X`): tests import the command and the environment helper from here.
from tests.support.agent_env import AGENT_COMMAND as AGENT_COMMAND
from tests.support.agent_env import agent_environment as agent_environment
from tests.support.etcd_server import free_loopback_ports

READY_TIMEOUT: Final = 20.0
STOP_TIMEOUT: Final = 10.0

free_ports = free_loopback_ports


def agent_variables(
    etcd_url: str,
    netns_path: Path | str,
    *,
    hostname: str = "host-a",
    host_ip: str = "192.0.2.1",
    **extra: str,
) -> dict[str, str]:
    """The settings of a loopback agent on a free port (`extra` adds or overrides some)."""
    [port] = free_ports(1)
    return {
        "ETCD_HOSTS": etcd_url,
        "PORT": str(port),
        "HTTP_HOST": "127.0.0.1",
        "PEER_HOSTNAME": hostname,
        "PEER_IP": host_ip,
        "NETNS_PATH": str(netns_path),
        **extra,
    }


class AgentProcess:
    """One `sand-es agent` subprocess, its stderr in a file."""

    def __init__(self, name: str, variables: Mapping[str, str], log_dir: Path) -> None:
        # These agents share the test's own network namespace: their kernel projection
        # stays off (the kernel is tested on simulated hosts, `tests/support/rig.py`).
        variables = {"KERNEL": "off", **variables}
        self.name = name
        self.port = int(variables["PORT"])
        scheme = "https" if variables.get("HTTP_TLS_CERT") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.stderr_path = log_dir / f"{name}.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                AGENT_COMMAND,
                env=agent_environment(variables),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    @property
    def pid(self) -> int:
        """The agent's process id."""
        return self.process.pid

    def stderr(self) -> str:
        """What the agent wrote to stderr so far (its JSON log lines)."""
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, *, verify: ssl.SSLContext | bool = True) -> None:
        """Wait until the agent serves GET /version and accepts writes (it has caught up with the log)."""
        deadline = time.monotonic() + READY_TIMEOUT
        with httpx.Client(base_url=self.url, verify=verify, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"agent {self.name} exited with {self.process.returncode}:\n{self.stderr()}"
                    )
                try:
                    if 200 == client.get("/health").status_code:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"agent {self.name} not ready after {READY_TIMEOUT:g} s:\n{self.stderr()}")

    def stop(self) -> int:
        """SIGTERM the agent, SIGKILL it if it has not exited 10 s later; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


#: `launch(name, variables)`: start an agent that the fixture stops at the end of the test.
Launcher = Callable[[str, dict[str, str]], AgentProcess]


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A TLS client context trusting `ca`, presenting `cert`/`key` when given."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context
