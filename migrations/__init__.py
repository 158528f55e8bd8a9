"""Numbered, idempotent, forward-only migrations of the etcd keyspace (see README.md here).

`MIGRATIONS` lists them in order; `migrations.runner` runs and records them, and
`sand-es migrate` is its command line. To add one: a module `mNNNN_<name>.py` with a
class satisfying `migrations.base.Migration`, appended here with the next number.
"""

from __future__ import annotations

from typing import Final

from migrations.base import Context, EtcdKeyspace, Keyspace, Migration, MigrationRecord, Report
from migrations.m0001_import_sand import ImportSand

MIGRATIONS: Final[tuple[Migration, ...]] = (ImportSand(),)

if [m.number for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover
    raise RuntimeError("migrations must be numbered 1, 2, 3… in MIGRATIONS, without gaps")

__all__ = [
    "MIGRATIONS",
    "Context",
    "EtcdKeyspace",
    "Keyspace",
    "Migration",
    "MigrationRecord",
    "Report",
]
