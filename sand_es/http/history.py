"""The log's past through the agent: `GET /events`, and the views as of a revision (`?revision=`).

Both read the log itself (etcd, through the agent's `EventLog`), not the live views:
the views only know the present. `Past` keeps what is worth keeping between requests:

- the host of every endpoint ever added (`HostIndex`), for the `hostname` filter of
  `/events`, built on the first such request and then only extended;
- the last state folded for a revision, so that the pages of one view (networks, a
  network, endpoints) as of one revision fold the log once; a later revision is folded
  from an earlier one, and from the newest stored projection snapshot not past it when
  there is one (`sand_es.snapshots`: checked against the log before it is used).

A fold yields to the event loop between pages, so the agent keeps answering while it runs.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Final

import msgspec
import structlog
from starlette.datastructures import QueryParams

from sand_es.audit.filters import EventFilter, EventRow, HostIndex, Matcher, row
from sand_es.audit.history import History, history_of
from sand_es.audit.when import parse_revision, parse_time
from sand_es.errors import Invalid, NotFound
from sand_es.etcdlog import EtcdLog
from sand_es.events import START, Position
from sand_es.ports import EventLog
from sand_es.projections import EMPTY, Snapshot, SnapshotBuilder
from sand_es.snapshots import SnapshotStore
from sand_es.views import LiveViews

log = structlog.get_logger(__name__)

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
#: Events one `/events` request reads at most, matching or not: a filter that matches
#: little answers a short (even empty) page and where to go on, rather than reading the
#: whole log in one request.
SCAN_BUDGET: Final = 20_000


class EventsResponse(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /events`: a page of events, and where the next page starts (null: none yet)."""

    events: list[EventRow]
    next_after_revision: int | None


class Past:
    """The agent's access to the log's past (one per app)."""

    def __init__(self, event_log: EventLog, views: LiveViews) -> None:
        self._log = event_log
        self._history: History = history_of(event_log)
        self._views = views
        self._hosts = HostIndex()
        self._hosts_lock = asyncio.Lock()
        self._folded: Snapshot | None = None
        self._fold_lock = asyncio.Lock()

    async def snapshot(self, revision: int) -> Snapshot:
        """The views as of `revision`; `NotFound` for a revision etcd has not reached."""
        pinned = await self._history.pinned_head()
        if revision > pinned.revision:
            raise NotFound(f"revision {revision} is beyond the store's current revision {pinned.revision}")
        target = await self._history.position_at(revision, pinned.position)
        current = self._views.current
        if current.position.seq == target.seq:
            return current
        async with self._fold_lock:
            folded = self._folded
            if folded is not None and folded.position.seq == target.seq:
                return folded
            base = folded if folded is not None and folded.position.seq < target.seq else EMPTY
            if base.position.seq < current.position.seq < target.seq:
                base = current  # the views are behind the log (catching up): still a head start
            base = await self._stored_base(base, target)
            builder = SnapshotBuilder(base)
            async for page in self._history.records(base.position, target.seq):
                builder.add(page)
            self._folded = builder.build()
            return self._folded

    async def _stored_base(self, base: Snapshot, target: Position) -> Snapshot:
        """A stored projection snapshot between `base` and `target`, if one is there and sound."""
        if not isinstance(self._log, EtcdLog):
            return base
        try:
            stored = await SnapshotStore(self._log).load_newest(not_after=target)
        except Exception as exc:  # an optimisation only: fold from `base` as without it
            log.warning("stored snapshot not used", error=repr(exc))
            return base
        if stored is not None and base.position.seq < stored.position.seq <= target.seq:
            return stored
        return base

    async def events(self, query: QueryParams) -> EventsResponse:
        """A page of `/events`: the matching events after `after_revision`, by revision."""
        event_filter = _filter(query)
        after = _non_negative(query, "after_revision", 0)
        limit = _non_negative(query, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise Invalid(f"limit must be between 1 and {MAX_LIMIT}")
        pinned = await self._history.pinned_head()
        head = pinned.position
        start = START if after == 0 else await self._history.position_at(after, head)
        hosts = await self._index(head) if event_filter.needs_hosts else None
        matcher = Matcher(event_filter, hosts)
        found: list[EventRow] = []
        scanned = 0
        stop_after: int | None = None  # a page ends with a whole revision: a transaction is never split
        async for page in self._history.records(start, head.seq):
            for record in page:
                if stop_after is not None and record.rev != stop_after:
                    return EventsResponse(events=found, next_after_revision=stop_after)
                scanned += 1
                if matcher(record):
                    found.append(row(record))
                if stop_after is None and (len(found) >= limit or scanned >= SCAN_BUDGET):
                    stop_after = record.rev
        return EventsResponse(events=found, next_after_revision=None)

    async def _index(self, head: Position) -> HostIndex:
        """Every endpoint's host, up to `head` at least (read once, then extended)."""
        async with self._hosts_lock:
            if self._hosts.position.seq < head.seq:
                async for page in self._history.records(self._hosts.position, head.seq):
                    self._hosts.learn(page)
            return self._hosts


def revision_of(query: QueryParams) -> int | None:
    """The `revision` query parameter, if given; `Invalid` (400) unless a positive integer."""
    text = query.get("revision")
    return None if text is None else parse_revision(text)


def _filter(query: QueryParams) -> EventFilter:
    types = frozenset(t.strip() for value in query.getlist("type") for t in value.split(",") if t.strip())
    since, until = query.get("since"), query.get("until")
    now = _now()
    return EventFilter(
        network_id=query.get("network_id") or None,
        endpoint_id=query.get("endpoint_id") or None,
        host=query.get("hostname") or None,
        types=types,
        since=None if not since else parse_time(since, now=now),
        until=None if not until else parse_time(until, now=now),
    ).checked()


def _non_negative(query: QueryParams, name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise Invalid(f"{name} {text!r} is not an integer") from None
    if value < 0:
        raise Invalid(f"{name} must not be negative")
    return value


def _now() -> datetime:
    return datetime.now(UTC)
