"""The API's bodies, with SAND's JSON names, apart from the events so both evolve freely.

Request bodies refuse unknown fields: a misspelt field (`ip-range`, `vni`) would
otherwise be silently ignored and the network created with defaults the caller did
not want. SAND's Go client sends only the fields below.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class NetworkCreate(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /networks`: every field optional."""

    id: str | None = None
    name: str | None = None
    type: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    mtu: int | None = None


class ActivateParams(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`activate_params` of `POST /endpoints`; SAND forces `set_addr` and `move_veth` to true."""

    ns_handle_path: str = ""
    set_addr: bool = True
    move_veth: bool = True


class EndpointCreate(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /endpoints`. `ns_handle_path` at the top level is what SAND's README documents."""

    network_id: str = ""
    activate: bool | None = None
    activate_params: ActivateParams | None = None
    ns_handle_path: str | None = None
    ipv4_address: str | None = None
    mac_address: str | None = None

    @property
    def wants_activation(self) -> bool:
        """`activate` as given; when absent, whether a namespace path was given (SAND's README
        shows `ns_handle_path` alone and means the endpoint to be plugged in)."""
        return bool(self.target_netns_path) if self.activate is None else self.activate

    @property
    def target_netns_path(self) -> str:
        """The namespace to wire the endpoint into, wherever the caller put it."""
        nested = self.activate_params.ns_handle_path if self.activate_params else ""
        return nested or self.ns_handle_path or ""


class Network(msgspec.Struct, frozen=True, kw_only=True):
    """A network as SAND's API shows it (plus `mtu`, which SAND's clients ignore)."""

    id: str
    created_at: datetime
    name: str
    type: str
    ns_handle_path: str
    vxlan_vni: int
    ip_range: str
    gateway: str
    mtu: int = 0  # 0: not reported (a Go SAND agent has no MTU setting)


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint as SAND's API shows it."""

    id: str
    network_id: str
    hostname: str
    host_ip: str
    api_hostname: str = ""  # absent from SAND v1.0.1
    created_at: datetime
    target_netns_path: str
    overlay_veth_name: str
    overlay_veth_mac: str
    target_veth_name: str
    target_veth_mac: str
    target_veth_ip: str
    active: bool


class NetworkResponse(msgspec.Struct, frozen=True):
    """`{"network": …}`"""

    network: Network


class NetworksResponse(msgspec.Struct, frozen=True):
    """`{"networks": […]}`"""

    networks: list[Network]


class EndpointResponse(msgspec.Struct, frozen=True):
    """`{"endpoint": …}`"""

    endpoint: Endpoint


class EndpointsResponse(msgspec.Struct, frozen=True):
    """`{"endpoints": […]}`"""

    endpoints: list[Endpoint]


class ErrorResponse(msgspec.Struct, frozen=True):
    """`{"error": "…"}`, the body of every error."""

    error: str


class KernelHealth(msgspec.Struct, frozen=True, kw_only=True):
    """The kernel projection's progress: the log position its last pass covered, and counters."""

    applied_seq: int
    passes: int
    full_passes: int
    ops: int
    repairs: int
    failures: int
    deactivated: int
    last_pass_ms: float


class HealthResponse(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`GET /health`: the agent accepts writes; `seq`/`revision`: how far its views are.

    `kernel` is absent on an agent that runs without its kernel projection (`KERNEL=off`).
    """

    status: str
    seq: int
    revision: int
    kernel: KernelHealth | None = None


class VersionResponse(msgspec.Struct, frozen=True):
    """`{"version": "…"}`"""

    version: str
