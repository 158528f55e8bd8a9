"""Projection snapshots in etcd, so an agent starts from the newest one instead of event 1.

Layout under the log's prefix:

    <prefix>/snapshots/<seq:016d>/meta            JSON `Meta`: schema, position, size, checksum
    <prefix>/snapshots/<seq:016d>/part/<n:06d>    the payload in pieces (etcd caps a request at 1.5 MiB)

The parts are written first and the meta last, in a transaction that creates it only if
no other agent wrote that snapshot already: a snapshot without meta is invisible, and
every visible one is complete. Loading trusts nothing: a meta of another schema, a
payload whose size or checksum differ, one that does not decode, or a position whose
digest is not the log's own event there (a snapshot of another history) is skipped with
a warning, and the next older one is tried; with none left the agent replays it all.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import structlog
from etcd3aio import prefix_range_end
from etcd3aio.kv import KVService

from sand_es.errors import LogCorrupt
from sand_es.etcdlog import EtcdLog
from sand_es.events import Position
from sand_es.projections import Snapshot
from sand_es.projections.stored import SCHEMA, decode_snapshot, encode_snapshot
from sand_es.views import LiveViews, no_cyclic_gc

log = structlog.get_logger(__name__)

PART_BYTES: Final = 900_000
"""Below etcd's 1.5 MiB request limit, with room for the key and framing."""
_SEQ_DIGITS: Final = 16
_RETRY_DELAY: Final = 5.0
_PARTS_PER_READ: Final = 4
_READS_IN_FLIGHT: Final = 4


class Meta(msgspec.Struct, frozen=True, kw_only=True):
    """What a stored snapshot stands for, and how to check its payload."""

    schema: str
    seq: int
    rev: int
    digest: str
    parts: int
    size: int
    sha256: str
    writer: str
    written_at: datetime

    @property
    def position(self) -> Position:
        """The log position the snapshot's views are at."""
        return Position(self.seq, self.rev, self.digest)


class SnapshotStore:
    """Reads and writes the snapshots of one log."""

    def __init__(self, event_log: EtcdLog, *, writer: str = "", keep: int = 2) -> None:
        self._log = event_log
        self._root = f"{event_log.prefix}/snapshots/"
        self._writer = writer or socket.gethostname()
        self._keep = keep

    async def save(self, snapshot: Snapshot) -> Meta | None:
        """Store `snapshot` (None if one for that position exists already), then prune old ones."""
        payload = await asyncio.to_thread(encode_snapshot, snapshot)
        position = snapshot.position
        meta = Meta(
            schema=SCHEMA,
            seq=position.seq,
            rev=position.rev,
            digest=position.digest,
            parts=max(1, -(-len(payload) // PART_BYTES)),
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            writer=self._writer,
            written_at=datetime.now(UTC),
        )
        base = self._base(position.seq)
        kv = self._log.kv
        if (await kv.get(f"{base}meta")).kvs:
            return None
        for number in range(meta.parts):
            part = payload[number * PART_BYTES : (number + 1) * PART_BYTES]
            await kv.put(f"{base}part/{number:06d}", part)
        created = await kv.txn(
            [KVService.txn_compare_version(f"{base}meta", 0)],
            [KVService.txn_op_put(f"{base}meta", msgspec.json.encode(meta))],
            [],
        )
        if not created.succeeded:
            return None  # another agent's meta won; its parts are the same bytes
        await self._prune()
        log.info("snapshot stored", seq=meta.seq, bytes=meta.size, parts=meta.parts)
        return meta

    async def load_newest(self, *, not_after: Position | None = None) -> Snapshot | None:
        """The newest snapshot that passes every check (at or before `not_after`), or None."""
        for meta in await self.metas():
            if not_after is not None and meta.seq > not_after.seq:
                continue
            try:
                return await self._load(meta)
            except LogCorrupt as exc:
                log.warning("snapshot ignored", seq=meta.seq, reason=str(exc))
        return None

    async def metas(self) -> list[Meta]:
        """Every stored snapshot's meta, newest first (unreadable ones left out, with a warning)."""
        found = []
        for raw in await self._metas():
            try:
                found.append(msgspec.json.decode(raw, type=Meta))
            except msgspec.MsgspecError as exc:
                log.warning("snapshot ignored: unreadable meta", error=str(exc))
        return found

    async def _load(self, meta: Meta) -> Snapshot:
        if meta.schema != SCHEMA:
            raise LogCorrupt(f"schema {meta.schema} is not this version's {SCHEMA}")
        parts = await self._parts(meta)
        payload = b"".join(parts)
        if len(parts) != meta.parts or len(payload) != meta.size:
            raise LogCorrupt(
                f"{len(parts)} parts of {len(payload)} bytes, meta says {meta.parts}/{meta.size}"
            )
        if hashlib.sha256(payload).hexdigest() != meta.sha256:
            raise LogCorrupt("payload checksum mismatch")
        if await self._log.stored_digest(meta.seq) != meta.digest:
            raise LogCorrupt(f"event {meta.seq} of this log is not the one the snapshot was taken at")
        # Millions of objects that all survive: the collector would walk them again and
        # again while they are made (seconds on a million-event state), to free nothing.
        with no_cyclic_gc():
            snapshot = await asyncio.to_thread(decode_snapshot, payload)
        if snapshot.position != meta.position:
            raise LogCorrupt(f"payload is at {snapshot.position}, meta says {meta.position}")
        return snapshot

    async def _parts(self, meta: Meta) -> list[bytes]:
        """The payload's parts in order, a few per request, requests in parallel.

        A reply must stay well under gRPC's cap; etcd answers several at once (a 90 MB
        payload: 0.35 s one request after the other, 0.12 s four at a time).
        """
        base = self._base(meta.seq)
        gate = asyncio.Semaphore(_READS_IN_FLIGHT)

        async def group(first: int) -> list[bytes]:
            end = min(first + _PARTS_PER_READ, meta.parts)
            async with gate:
                response = await self._log.kv.get(
                    f"{base}part/{first:06d}", range_end=f"{base}part/{end:06d}"
                )
            return [kv.value for kv in response.kvs]

        groups = await asyncio.gather(*(group(n) for n in range(0, meta.parts, _PARTS_PER_READ)))
        extra = await self._log.kv.get(
            f"{base}part/{meta.parts:06d}",
            range_end=prefix_range_end(f"{base}part/".encode()),
            count_only=True,
        )
        if extra.count:
            raise LogCorrupt(f"{extra.count} parts beyond the {meta.parts} the meta names")
        return [part for parts in groups for part in parts]

    async def _metas(self) -> list[bytes]:
        # Keys only: the parts under the same prefix are tens of megabytes.
        listing = await self._log.kv.get(
            self._root, range_end=prefix_range_end(self._root.encode()), keys_only=True
        )
        keys: list[Any] = sorted((kv.key for kv in listing.kvs if kv.key.endswith(b"/meta")), reverse=True)
        metas = []
        for key in keys:
            response = await self._log.kv.get(key)
            metas += [kv.value for kv in response.kvs]
        return metas

    async def _prune(self) -> None:
        """Delete all but the newest `keep` snapshots (and parts whose meta never came)."""
        metas = await self.metas()
        if len(metas) <= self._keep:
            return
        oldest_kept = metas[self._keep - 1].seq
        # Keys sort by seq: everything below the oldest kept snapshot goes, orphans included.
        await self._log.kv.delete(self._root, range_end=self._base(oldest_kept))

    def _base(self, seq: int) -> str:
        return f"{self._root}{str(seq).zfill(_SEQ_DIGITS)}/"


async def write_every(views: LiveViews, store: SnapshotStore, every: int) -> None:
    """Store a snapshot each time the views pass `every` events beyond the newest stored one.

    Every agent runs this; before writing, each looks at what is stored already, so a
    snapshot another agent just wrote moves its mark instead of being written twice.
    """
    await views.caught_up.wait()
    mark = await _newest_seq(store)
    while True:
        await views.wait_for(Position(mark + every, 0))
        try:
            stored = await _newest_seq(store)
            if stored >= mark + every:
                mark = stored
                continue
            snapshot = views.current
            await store.save(snapshot)
            mark = snapshot.position.seq
        except Exception as exc:  # snapshots are an optimisation: never let them stop the agent
            log.warning("snapshot not stored", error=repr(exc))
            await asyncio.sleep(_RETRY_DELAY)


async def _newest_seq(store: SnapshotStore) -> int:
    metas = await store.metas()
    return metas[0].seq if metas else 0
