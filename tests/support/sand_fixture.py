"""The Go SAND keyspace fixture (two v1.0.1 agents), as keys to load and records to compare with.

`tests/fixtures/sand-v1.0.1-keyspace.json` is an `etcdctl get --prefix -w json`-like
dump whose values are the raw JSON text the Go agents stored. Tests load it under a
prefix of their own and compare what sand-es made of it against the records here,
key by key.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Final

FIXTURE: Final = Path(__file__).resolve().parents[1] / "fixtures" / "sand-v1.0.1-keyspace.json"
FIXTURE_PREFIX: Final = "/sc-net"

#: What the fixture's description says: the deleted endpoint's address, never released.
LEAKED: Final = ("59957e62-591a-49d4-bd12-f93a30a9c911", "198.18.0.4")


def _value(raw: str) -> bytes:
    """A stored value: JSON text as written by the Go agent, or (etcdctl -w json) base64 of it."""
    try:
        json.loads(raw)
    except ValueError:
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise ValueError(f"fixture value is neither JSON nor base64: {raw[:40]!r}") from None
    return raw.encode()


def fixture_kvs(prefix: str = FIXTURE_PREFIX) -> list[tuple[str, bytes]]:
    """Every (key, value) of the fixture, with its `/sc-net` prefix replaced by `prefix`."""
    dump = json.loads(FIXTURE.read_text())
    return [(prefix + kv["key"].removeprefix(FIXTURE_PREFIX), _value(kv["value"])) for kv in dump["kvs"]]


def fixture_records(kind: str) -> dict[str, dict[str, Any]]:
    """The decoded records under `/sc-net/<kind>/`, by the last part of their key (an id)."""
    return {
        key.rsplit("/", 1)[1]: json.loads(value)
        for key, value in fixture_kvs()
        if key.startswith(f"{FIXTURE_PREFIX}/{kind}/")
    }
