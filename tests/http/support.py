"""The real agent app on the in-memory log, and checks of the JSON shapes SAND's Go client decodes."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from starlette.applications import Starlette

from sand_es.config import AgentSettings, EtcdSettings
from sand_es.daemon import policy_of
from sand_es.http.app import create_app
from sand_es.memlog import MemoryLog
from sand_es.service import Service
from sand_es.views import LiveViews

HOSTNAME: Final = "host-a"
HOST_IP: Final = "192.0.2.1"

#: SAND's `api/types.Network` JSON fields and their JSON types (contract §2).
SAND_NETWORK: Final[dict[str, type]] = {
    "id": str,
    "created_at": str,
    "name": str,
    "type": str,
    "ns_handle_path": str,
    "vxlan_vni": int,
    "ip_range": str,
    "gateway": str,
}
#: sand-es adds `mtu` to networks, which SAND's Go client ignores.
EXTRA_NETWORK: Final[dict[str, type]] = {"mtu": int}

#: SAND's `api/types.Endpoint` JSON fields and their JSON types (contract §2).
SAND_ENDPOINT: Final[dict[str, type]] = {
    "id": str,
    "network_id": str,
    "hostname": str,
    "host_ip": str,
    "api_hostname": str,
    "created_at": str,
    "target_netns_path": str,
    "overlay_veth_name": str,
    "overlay_veth_mac": str,
    "target_veth_name": str,
    "target_veth_mac": str,
    "target_veth_ip": str,
    "active": bool,
}

# What Go's `time.Time.UnmarshalJSON` accepts: RFC 3339, optional fraction (up to 9 digits).
RFC3339: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
UUID4: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class InProcessAgent:
    """One agent's pieces, wired as the daemon wires them, minus etcd and uvicorn."""

    settings: AgentSettings
    log: MemoryLog
    views: LiveViews
    service: Service
    app: Starlette


def in_process_agent(netns_path: Path) -> InProcessAgent:
    """An agent `host-a` (192.0.2.1) on an empty in-memory log, caught up, with NETNS_PATH=`netns_path`."""
    settings = AgentSettings(
        etcd=EtcdSettings(), hostname=HOSTNAME, host_ip=HOST_IP, netns_path=str(netns_path)
    )
    log = MemoryLog()
    views = LiveViews()
    views.caught_up.set()
    service = Service(log, views, actor=settings.hostname, policy=policy_of(settings))
    return InProcessAgent(settings, log, views, service, create_app(service, settings, log=log))


@contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed with everything in it on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        yield Path(directory)


def json_types(obj: dict[str, Any]) -> dict[str, str]:
    """The JSON type of each field, by name (`bool` and `int` kept apart)."""
    return {key: type(value).__name__ for key, value in obj.items()}


def assert_sand_network(obj: Any) -> None:
    """`obj` has exactly SAND's network fields (plus `mtu`), each of SAND's JSON type."""
    assert isinstance(obj, dict)
    expected = {**SAND_NETWORK, **EXTRA_NETWORK}
    assert {key: kind.__name__ for key, kind in expected.items()} == json_types(obj)
    assert RFC3339.match(obj["created_at"]), obj["created_at"]


def assert_sand_endpoint(obj: Any) -> None:
    """`obj` has exactly SAND's endpoint fields, each of SAND's JSON type."""
    assert isinstance(obj, dict)
    assert {key: kind.__name__ for key, kind in SAND_ENDPOINT.items()} == json_types(obj)
    assert RFC3339.match(obj["created_at"]), obj["created_at"]
