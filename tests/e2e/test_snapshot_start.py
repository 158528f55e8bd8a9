"""A restarted agent starts from the newest stored snapshot and tails the rest."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.agents import Launcher, agent_variables
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.etcd


def test_a_restarted_agent_starts_from_its_snapshot_with_the_same_views(
    launch: Launcher, etcd_server: EtcdServer, etcd_prefix: str, scratch: Path
) -> None:
    """SNAPSHOT_EVERY=5: after 8 networks one snapshot exists; the next agent loads it and sees all 8."""
    variables = agent_variables(
        etcd_server.url, scratch / "netns", ETCD_PREFIX=etcd_prefix, SNAPSHOT_EVERY="5"
    )
    first = launch("first", variables)
    first.wait_ready()
    with httpx.Client(base_url=first.url, timeout=10) as client:
        for n in range(8):
            assert client.post("/networks", json={"ip_range": f"198.18.{n}.0/24"}).status_code == 201
        before = client.get("/networks").json()
    first.stop()
    assert "snapshot stored" in first.stderr()

    second = launch("second", variables)
    second.wait_ready()
    with httpx.Client(base_url=second.url, timeout=10) as client:
        assert client.get("/networks").json() == before
        assert client.post("/networks", json={"ip_range": "198.18.9.0/24"}).status_code == 201
    started = [
        json.loads(line) for line in second.stderr().splitlines() if "starting from a snapshot" in line
    ]
    assert len(started) == 1
    assert started[0]["seq"] >= 5
