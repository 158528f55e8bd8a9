"""An agent not on a terminal logs JSON lines, one per request."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.agents import Launcher, agent_variables
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.etcd


class TestLogs:
    def test_stderr_is_json_lines_with_a_line_per_request(
        self, launch: Launcher, etcd_server: EtcdServer, etcd_prefix: str, scratch: Path
    ) -> None:
        """With LOG_FORMAT unset and stderr a file, every line is JSON and a request has its line."""
        agent = launch("host-a", agent_variables(etcd_server.url, scratch / "netns", ETCD_PREFIX=etcd_prefix))
        agent.wait_ready()
        with httpx.Client(base_url=agent.url, timeout=10) as client:
            assert 201 == client.post("/networks", json={"ip_range": "198.18.11.0/24"}).status_code
        time.sleep(0.2)  # the line is written after the response
        lines = [json.loads(line) for line in agent.stderr().splitlines() if line.strip()]
        posts = [line for line in lines if line.get("event") == "request" and line.get("method") == "POST"]
        assert 1 == len(posts)
        assert {"path": "/networks", "status": 201, "level": "info"} == {
            key: posts[0][key] for key in ("path", "status", "level")
        }
        assert posts[0]["command_id"]
        assert posts[0]["revision"] >= 1
