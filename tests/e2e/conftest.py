"""Fixtures of the end-to-end tests: agents as subprocesses, each stopped by PID afterwards."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.agents import AgentProcess, Launcher


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temporary directory for agents' logs and NETNS_PATH, removed after the test."""
    with tempfile.TemporaryDirectory(prefix="sand-es-e2e-") as directory:
        yield Path(directory)


@pytest.fixture
def launch(scratch: Path) -> Iterator[Launcher]:
    """Start agents (`launch(name, variables)`); every one is stopped (SIGTERM, then SIGKILL) at the end."""
    started: list[AgentProcess] = []

    def start(name: str, variables: dict[str, str]) -> AgentProcess:
        agent = AgentProcess(name, variables, scratch)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
