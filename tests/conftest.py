"""Fixtures shared by the whole suite: real etcd servers on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd_server import (
    ETCD_BINARY,
    ETCDCTL_BINARY,
    EtcdServer,
    TlsFiles,
    make_tls_files,
)


def _require_etcd() -> None:
    """Fail when etcd is not installed, or skip if SAND_ES_ALLOW_SKIP=1 says that is fine."""
    missing = [str(binary) for binary in (ETCD_BINARY, ETCDCTL_BINARY) if not binary.exists()]
    if not missing:
        return
    message = f"{', '.join(missing)} not found (Debian packages etcd-server, etcd-client)"
    # CI must never turn green by quietly skipping the etcd tests: skipping is opt-in.
    if os.environ.get("SAND_ES_ALLOW_SKIP") == "1":
        pytest.skip(message)
    pytest.fail(f"{message}; set SAND_ES_ALLOW_SKIP=1 to skip these tests", pytrace=False)


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """One etcd for the whole session; tests keep apart by writing under `etcd_prefix`."""
    _require_etcd()
    with EtcdServer() as server:
        yield server


@pytest.fixture
def fresh_etcd() -> Iterator[EtcdServer]:
    """An etcd of the test's own, for tests that kill, restart, pause or compact it."""
    _require_etcd()
    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA, server and client certificates, and a client certificate from a foreign CA."""
    directory: Path = tmp_path_factory.mktemp("tls")
    return make_tls_files(directory)


@pytest.fixture
def tls_etcd(tls_files: TlsFiles) -> Iterator[EtcdServer]:
    """An etcd of the test's own that serves clients over mTLS only."""
    _require_etcd()
    with EtcdServer(tls=tls_files) as server:
        yield server


@pytest.fixture
def etcd_prefix() -> str:
    """A key prefix no other test uses, so tests can share `etcd_server`."""
    return f"/sand-es-test/{uuid.uuid4().hex}"
