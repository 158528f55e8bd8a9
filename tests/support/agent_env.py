"""How tests launch a real agent (`sand-es agent`): its command line and a clean environment.

Shared by the loopback end-to-end tests (`tests/e2e/agents.py`) and the namespace rig
(`tests/support/rig.py`), which must start agents exactly the same way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Final

# `-c` rather than the `sand-es` script: the agent runs on the interpreter running the tests.
AGENT_COMMAND: Final = [sys.executable, "-c", "from sand_es.cli import main; main()", "agent"]

# Every variable an agent reads: the tests' environment must not leak into theirs.
AGENT_VARIABLES: Final = (
    "HTTP_HOST",
    "HTTP_PORT",
    "PORT",
    "HTTPPORT",
    "HTTP_TLS_CERT",
    "HTTP_TLS_KEY",
    "HTTP_TLS_CA",
    "MAX_BODY_BYTES",
    "PEER_HOSTNAME",
    "PUBLIC_HOSTNAME",
    "PEER_IP",
    "PUBLIC_IP",
    "API_HOSTNAME",
    "NETNS_PATH",
    "NETNSPATH",
    "NETNS_PREFIX",
    "NETNSPREFIX",
    "DOCKER_NETNS_PATH",
    "MAX_VNI",
    "DEFAULT_MTU",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "KERNEL",
    "KERNEL_RESYNC_INTERVAL",
    "KERNEL_WAIT_TIMEOUT",
    "ETCD_HOSTS",
    "ETCD_PREFIX",
    "ETCD_CACERT",
    "ETCD_TLS_CERT",
    "ETCD_TLS_KEY",
    "ETCD_TLS_SERVER_NAME",
    "ETCD_APPEND_TIMEOUT",
    "ETCD_READ_TIMEOUT",
)


def agent_environment(variables: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any agent setting, plus `variables`."""
    inherited = {key: value for key, value in os.environ.items() if key not in AGENT_VARIABLES}
    return {**inherited, **variables}
