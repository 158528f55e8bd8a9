"""`sand-es` against a real etcd."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sand_es.commands import AddEndpoint, CreateNetwork
from sand_es.config import EtcdSettings, parse_hosts
from sand_es.etcdlog import EtcdLog
from sand_es.service import Service
from sand_es.views import LiveViews
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.etcd


def sand_es(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from sand_es.cli import main; main()", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestStatus:
    async def test_status_summarises_the_replayed_log(
        self, etcd_server: EtcdServer, etcd_prefix: str
    ) -> None:
        """`sand-es status --json` replays the log and counts networks and endpoints."""
        log = await EtcdLog.connect(EtcdSettings(hosts=parse_hosts(etcd_server.url), prefix=etcd_prefix))
        service = Service(log, LiveViews(), actor="host-a")
        created = await service.execute(CreateNetwork(ip_range="198.18.4.0/24"))
        nid = created.records[0].envelope.data.network_id
        await service.execute(
            AddEndpoint(network_id=nid, hostname="host-a", activate=True, target_netns_path="/proc/1/ns/net")
        )
        await service.execute(AddEndpoint(network_id=nid, hostname="host-b"))
        await service.close()
        await log.close()

        result = sand_es("status", "--json", env={"ETCD_HOSTS": etcd_server.url, "ETCD_PREFIX": etcd_prefix})
        assert 0 == result.returncode, result.stderr
        report = json.loads(result.stdout.splitlines()[-1])
        assert (4, 1, 2, 1) == (
            report["seq"],
            report["networks"],
            report["endpoints"],
            report["active_endpoints"],
        )

    def test_bad_setting_is_named_and_fails(self) -> None:
        """A malformed ETCD_HOSTS stops the command with a message naming the variable."""
        result = sand_es("status", env={"ETCD_HOSTS": "ftp://etcd:2379"})
        assert 1 == result.returncode
        assert "ETCD_HOSTS" in result.stderr
