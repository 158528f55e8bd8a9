"""A small, known history written by two agents, for the audit tool's tests (CLI and HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sand_es.commands import (
    AddEndpoint,
    Command,
    CreateNetwork,
    DeactivateEndpoint,
    DeleteNetwork,
    RemoveEndpoint,
)
from sand_es.events import Record
from sand_es.ports import EventLog
from sand_es.service import Service
from sand_es.views import LiveViews

NETNS = "/proc/1/ns/net"


@dataclass
class Built:
    """What `build_history` wrote: ids, and the revision each step ended at.

    Events: 1 network A created; 2-3 e1 added and activated on host-a; 4-5 e2 added and
    activated on host-b (by host-b); 6 network B created; 7 e3 added on host-b, passive (by
    host-b); 8 e3 removed (by host-a); 9 network B deleted; 10 e1 deactivated.
    """

    net_a: str = ""
    net_b: str = ""
    e1: str = ""
    e2: str = ""
    e3: str = ""
    revisions: list[int] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)


async def build_history(log: EventLog) -> Built:
    """Write the history of `Built` through two services (host-a, host-b) on `log`."""
    views_a, views_b = LiveViews(), LiveViews()
    host_a = Service(log, views_a, actor="host-a")
    host_b = Service(log, views_b, actor="host-b")
    built = Built()

    async def run(service: Service, views: LiveViews, command: Command) -> Record:
        await views.catch_up(log)  # no tail here: see the other host's writes before deciding
        outcome = await service.execute(command)
        built.revisions.append(outcome.position.rev)
        built.records += outcome.records
        return outcome.records[0]

    def data_id(record: Record, name: str) -> str:
        value = getattr(record.envelope.data, name)
        assert isinstance(value, str)
        return value

    try:
        built.net_a = data_id(
            await run(host_a, views_a, CreateNetwork(ip_range="198.18.0.0/24")), "network_id"
        )
        built.e1 = data_id(
            await run(
                host_a,
                views_a,
                AddEndpoint(
                    network_id=built.net_a, hostname="host-a", activate=True, target_netns_path=NETNS
                ),
            ),
            "endpoint_id",
        )
        built.e2 = data_id(
            await run(
                host_b,
                views_b,
                AddEndpoint(
                    network_id=built.net_a, hostname="host-b", activate=True, target_netns_path=NETNS
                ),
            ),
            "endpoint_id",
        )
        built.net_b = data_id(
            await run(host_a, views_a, CreateNetwork(ip_range="198.18.1.0/24")), "network_id"
        )
        built.e3 = data_id(
            await run(host_b, views_b, AddEndpoint(network_id=built.net_b, hostname="host-b")), "endpoint_id"
        )
        await run(host_a, views_a, RemoveEndpoint(endpoint_id=built.e3))
        await run(host_a, views_a, DeleteNetwork(network_id=built.net_b))
        await run(host_a, views_a, DeactivateEndpoint(endpoint_id=built.e1, reason="namespace gone"))
    finally:
        await host_a.close()
        await host_b.close()
    return built
