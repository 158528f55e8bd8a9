"""Points in the log's history as an operator names them: a revision, a time, or a time ago.

Times are compared with the events' `at` stamps, which are the appending agents'
clocks; revisions are etcd's, one total order. A revision is therefore the exact way
to name a point, a time the convenient one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final, TypeAlias

import msgspec

from sand_es.errors import Invalid

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART: Final = re.compile(r"(\d+)([smhdw])")
_RELATIVE: Final = re.compile(r"(?:\d+[smhdw])+")


class AtRevision(msgspec.Struct, frozen=True):
    """The log as of an etcd revision: every event written at that revision or before."""

    revision: int


class AtTime(msgspec.Struct, frozen=True):
    """The log as of a time: every event before the first one stamped later than `time`."""

    time: datetime


Point: TypeAlias = AtRevision | AtTime


def parse_time(text: str, *, now: datetime) -> datetime:
    """An aware UTC time from ISO 8601 (`2026-11-27T20:58:08Z`, `2026-11-27`) or a time ago (`1h30m`, `2d`).

    A time without a zone is taken as UTC: logs and stamps are in UTC, and guessing
    the operator's local zone would make the same command mean different things on
    two machines.
    """
    text = text.strip()
    if _RELATIVE.fullmatch(text):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
        return now - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(
            f"{text!r} is not a time: use ISO 8601 (2026-11-27T20:58:08Z, 2026-11-27) "
            "or a time ago such as 90s, 15m, 1h30m, 2d, 1w"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_revision(text: str, *, what: str = "revision") -> int:
    """A positive etcd revision (etcd numbers them from 1)."""
    try:
        revision = int(text.strip())
    except ValueError:
        raise Invalid(f"{what} {text!r} is not an integer") from None
    if revision < 1:
        raise Invalid(f"{what} {text!r}: etcd revisions start at 1")
    return revision


def parse_point(text: str, *, now: datetime) -> Point:
    """A revision (digits only) or a time (anything `parse_time` reads)."""
    if text.strip().isdigit():
        return AtRevision(parse_revision(text))
    return AtTime(parse_time(text, now=now))


def describe(point: Point) -> str:
    """The point as the operator would write it back."""
    if isinstance(point, AtRevision):
        return f"revision {point.revision}"
    return point.time.isoformat().replace("+00:00", "Z")
