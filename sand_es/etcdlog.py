"""The event log on etcd (etcd3aio), and the fences around etcd3aio's defects.

Layout under the prefix (default `/sand-es`, apart from SAND's `/sc-net`):

    <prefix>/head                 the seq of the last event; rewritten by every append
    <prefix>/events/<seq:016d>    one envelope per key, written once, never changed
    <prefix>/commands/<id>        {"first": seq, "count": n}: where a command's events are

An append is one transaction: it compares the head's mod_revision with the
revision of the position the batch was decided at (nothing appended since) and
every command key with "absent" (idempotency), then writes the events, the
command keys and the head. The log order is the key order, so a reader pages
through key ranges whose bounds it computes, and etcd never walks more than a page.

What this module does because etcd3aio would get it wrong (etcd-client.md §0):
- it owns the tail's position: catching up is paged range reads pinned to one
  revision, never a watch from an old revision (the library resumes a watch from
  the store head after a reconnect and skips events);
- the live watch starts at the pin + 1; any second `created` response (the library
  reconnected on its own), a cancel or a compaction notice closes it, and the tail
  re-reads from its own position: nothing skipped, nothing twice;
- appends run once (`max_attempts=1`) with a deadline; an unclear outcome is
  reported as `OutcomeUnknown` for the caller to resolve by reading the command key;
- `ETCD_HOSTS` entries are stripped of their scheme and resolved to IPv4 here,
  since the library only takes `a.b.c.d:port`;
- gRPC's 4 MiB receive limit is raised through the one private attribute that
  allows it, so a large page or watch batch cannot kill a read.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from typing import Any, Final, cast

import grpc
import grpc.aio
import msgspec
import stamina
import structlog
from etcd3aio import Etcd3Client, EtcdConnectionError, EtcdError, EtcdTransientError, prefix_range_end
from etcd3aio._protobuf import Compare
from etcd3aio.kv import KVService

from sand_es.config import EtcdHost, EtcdSettings
from sand_es.errors import Conflict, LogCorrupt, LogUnavailable, OutcomeUnknown
from sand_es.events import CODEC, START, Codec, Position, Record, chain
from sand_es.ports import CommandRecord, PendingCommand, TxnLimits

log = structlog.get_logger(__name__)

MAX_RECEIVE_BYTES: Final = 64 << 20
_SEQ_DIGITS: Final = 16
_PUT: Final = 0
_UNCLEAR: Final = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
)


class RawEvent(msgspec.Struct, frozen=True, gc=False):
    """One stored event as etcd holds it: number, revision and exact bytes."""

    seq: int
    rev: int
    value: bytes


class _CommandKey(msgspec.Struct, frozen=True):
    first: int
    count: int
    fingerprint: str = ""


class _Reopen(Exception):
    """The live watch can no longer be trusted; re-read from our own position."""


class _Compacted(Exception):
    """The pinned revision of a read was compacted away mid-read."""


_command_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(_CommandKey)


async def open_client(settings: EtcdSettings) -> Etcd3Client:
    """An etcd3aio client for the configured hosts, TLS and limits."""
    endpoints = [endpoint for host in settings.hosts for endpoint in await _resolve(host)]
    client = Etcd3Client(
        endpoints,
        rpc_max_attempts=3,
        # The tail re-opens the watch itself; keep the library's own reconnect quick.
        watch_reconnect_backoff_seconds=0.1,
        watch_max_reconnect_backoff_seconds=1.0,
        tls_server_name=_server_name(settings),
        **_tls_args(settings),  # type: ignore[arg-type]  # only the three PEM keywords
    )
    # Private, and the only way to set gRPC channel options such as the 4 MiB receive
    # limit (etcd-client.md §6); etcd3aio is pinned in pyproject.toml for this reason.
    client._manager.grpc_options.extend(
        [
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            # gRPC backs off up to 2 minutes between reconnects by default: after an
            # etcd outage the agent would stay cut off long after etcd is back.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
    )
    await client.connect()
    return client


async def _resolve(host: EtcdHost) -> list[str]:
    if host.is_literal:
        return [f"{host.host}:{host.port}"]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host.host, host.port, family=socket.AF_INET, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise LogUnavailable(f"cannot resolve etcd host {host.host!r}: {exc}") from exc
    addresses = dict.fromkeys(str(info[4][0]) for info in infos)
    return [f"{address}:{host.port}" for address in addresses]


def _server_name(settings: EtcdSettings) -> str | None:
    # The channel dials resolved addresses, so a name given in ETCD_HOSTS must be
    # what the certificate is checked against, not the address it resolved to.
    if not settings.tls:
        return None
    if settings.tls_server_name:
        return settings.tls_server_name
    return next((h.host for h in settings.hosts if not h.is_literal), None)


def _tls_args(settings: EtcdSettings) -> dict[str, bytes]:
    if not settings.tls or settings.ca_cert is None:
        return {}
    args = {"ca_cert": settings.ca_cert.read_bytes()}
    if settings.cert is not None and settings.key is not None:
        args["cert_chain"] = settings.cert.read_bytes()
        args["cert_key"] = settings.key.read_bytes()
    return args


class EtcdLog:
    """An `EventLog` stored in etcd under one key prefix."""

    def __init__(
        self,
        client: Etcd3Client,
        *,
        prefix: str = "/sand-es",
        codec: Codec = CODEC,
        append_timeout: float = 2.0,
        read_timeout: float = 10.0,
        page_size: int = 2000,
        prefetch: int = 4,
        owns_client: bool = False,
    ) -> None:
        self.limits = TxnLimits()
        self._client = client
        self._codec = codec
        self._append_timeout = append_timeout
        self._read_timeout = read_timeout
        self._page_size = page_size
        self._prefetch = prefetch
        self._owns_client = owns_client
        self._closed = False
        self.prefix = prefix
        self._head_key = f"{prefix}/head".encode()
        self._events = f"{prefix}/events/".encode()
        self._commands = f"{prefix}/commands/"

    @classmethod
    async def connect(cls, settings: EtcdSettings, *, codec: Codec = CODEC) -> EtcdLog:
        """Open a client from settings; the log closes it when closed."""
        client = await open_client(settings)
        return cls(
            client,
            prefix=settings.prefix,
            codec=codec,
            append_timeout=settings.append_timeout,
            read_timeout=settings.read_timeout,
            owns_client=True,
        )

    @property
    def kv(self) -> KVService:
        """The client's KV service (for tools that inspect the keyspace)."""
        if self._client.kv is None:
            raise LogUnavailable("the etcd client is closed")
        return self._client.kv

    async def head(self) -> Position:
        _, position = await self._pin()
        return position

    async def stored_digest(self, seq: int) -> str | None:
        """The digest of event `seq` as stored now (None if there is no such event)."""
        response = await self._read_rpc(lambda: self.kv.get(self._event_key(seq), timeout=self._read_timeout))
        return chain.digest(response.kvs[0].value) if response.kvs else None

    async def append(self, commands: Sequence[PendingCommand], expected: Position) -> list[Record]:
        first = expected.seq + 1
        records, success = self._writes(commands, first, prev=expected.digest)
        self.limits.check(commands, sum(op.ByteSize() for op in success))
        compare = self._head_compare(expected)
        compare += [KVService.txn_compare_version(self._command_key(c.command_id), 0) for c in commands]
        failure = [KVService.txn_op_get(self._command_key(c.command_id)) for c in commands]
        try:
            response = await self.kv.txn(
                compare, success, failure, timeout=self._append_timeout, max_attempts=1
            )
        except (TimeoutError, EtcdConnectionError, EtcdTransientError) as exc:
            raise OutcomeUnknown(f"append of {len(records)} event(s) unconfirmed: {exc}") from exc
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNCLEAR:
                raise OutcomeUnknown(f"append unconfirmed: {exc.details()}") from exc
            raise LogUnavailable(f"etcd refused the append: {exc.details()}") from exc
        if not response.succeeded:
            known = frozenset(
                c.command_id
                for c, r in zip(commands, response.responses, strict=True)
                if r.response_range.kvs
            )
            raise Conflict(f"the log moved past {expected}", known_commands=known)
        revision = response.header.revision
        return [Record(r.seq, revision, r.envelope, r.digest) for r in records]

    async def read(self, after: Position) -> AsyncIterator[list[Record]]:
        async for _, records in self._pages(after):
            if records:
                yield records

    async def read_raw(self, after: Position) -> AsyncIterator[list[RawEvent]]:
        """Every stored event after `after`, undecoded, in pages at one pinned revision.

        For tools that need the exact stored bytes: verifying the chain, exporting.
        """
        skip = len(self._events)
        async for _, kvs in self._kv_pages(after):
            if not kvs:
                continue
            first, last = int(kvs[0].key[skip:]), int(kvs[-1].key[skip:])
            # Keys are unique and sorted: as many as the span means none is missing, and
            # the numbers need not be parsed one by one (a million of them cost ~0.2 s).
            if last - first + 1 == len(kvs):
                seqs: Iterable[int] = range(first, last + 1)
            else:
                seqs = [int(kv.key[skip:]) for kv in kvs]
            yield [RawEvent(seq, kv.mod_revision, kv.value) for seq, kv in zip(seqs, kvs, strict=True)]

    async def tail(self, after: Position) -> AsyncIterator[list[Record]]:
        position = after
        failures = 0
        while not self._closed:
            try:
                pin = 0
                async for page_pin, records in self._pages(position):
                    pin = page_pin
                    if records:
                        position = records[-1].position
                        yield records
                async for records in self._watch(pin + 1, position):
                    failures = 0
                    position = records[-1].position
                    yield records
            except _Reopen as why:
                log.info("tail re-reads from its position", reason=str(why), seq=position.seq)
                failures += 1
            except LogUnavailable as exc:
                log.warning("tail waits for etcd", error=str(exc), seq=position.seq)
                failures += 1
            if failures > 1:
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))

    async def lookup_command(self, command_id: str) -> CommandRecord | None:
        response = await self._read_rpc(
            lambda: self.kv.get(self._command_key(command_id), timeout=self._read_timeout)
        )
        if not response.kvs:
            return None
        where = _command_decoder.decode(response.kvs[0].value)
        kvs = await self._range(where.first, where.first + where.count, revision=0)
        return CommandRecord(tuple(self._records(kvs)), where.fingerprint)

    async def close(self) -> None:
        self._closed = True
        if self._owns_client:
            await self._client.close()

    # -- appending --------------------------------------------------------

    def _writes(
        self, commands: Sequence[PendingCommand], first: int, *, prev: str
    ) -> tuple[list[Record], list[Any]]:
        """The puts of an append: each event linked to the one before it, then the head."""
        records: list[Record] = []
        ops = []
        seq = first
        for command in commands:
            where = _command_encoder.encode(
                _CommandKey(first=seq, count=len(command.envelopes), fingerprint=command.fingerprint)
            )
            for envelope in command.envelopes:
                linked = msgspec.structs.replace(envelope, prev=prev)
                raw = self._codec.encode(linked)
                prev = chain.digest(raw)
                ops.append(KVService.txn_op_put(self._event_key(seq), raw))
                records.append(Record(seq, 0, linked, prev))
                seq += 1
            ops.append(KVService.txn_op_put(self._command_key(command.command_id), where))
        ops.append(KVService.txn_op_put(self._head_key, chain.head_value(seq - 1, prev)))
        return records, ops

    def _head_compare(self, expected: Position) -> list[Any]:
        if expected.seq == 0:
            return [KVService.txn_compare_version(self._head_key, 0)]
        # Every append rewrites the head in its own transaction, so the head's
        # mod_revision is the revision of the last append: equal means "nothing since".
        # The value names the last event's digest: a writer whose idea of it is wrong
        # would break the chain, so it is refused like a stale one.
        return [
            Compare(result=Compare.EQUAL, target=Compare.MOD, key=self._head_key, mod_revision=expected.rev),
            Compare(
                result=Compare.EQUAL,
                target=Compare.VALUE,
                key=self._head_key,
                value=chain.head_value(expected.seq, expected.digest),
            ),
        ]

    # -- reading ----------------------------------------------------------

    async def _pin(self) -> tuple[int, Position]:
        response = await self._read_rpc(lambda: self.kv.get(self._head_key, timeout=self._read_timeout))
        if not response.kvs:
            return response.header.revision, START
        kv = response.kvs[0]
        seq, last_digest = chain.parse_head(kv.value)
        return response.header.revision, Position(seq, kv.mod_revision, last_digest)

    async def _pages(self, after: Position) -> AsyncIterator[tuple[int, list[Record]]]:
        """Pages of decoded records after `after` (see `_kv_pages`)."""
        async for pin, kvs in self._kv_pages(after):
            yield pin, self._records(kvs)

    async def _kv_pages(self, after: Position) -> AsyncIterator[tuple[int, list[Any]]]:
        """Pages of stored events after `after`, all read at one pinned revision.

        Yields (pin, records) and always at least once, so the caller learns the
        pin even when nothing is new. A few pages are fetched ahead: etcd answers
        them in parallel while the previous one is decoded.
        """
        pin, head = await self._pin()
        _check_not_behind(head, after)
        yield pin, []
        seq, ahead = after.seq + 1, after.seq + 1
        window: deque[tuple[int, asyncio.Task[list[Any]]]] = deque()
        try:
            while seq <= head.seq:
                while len(window) < self._prefetch and ahead <= head.seq:
                    end = min(ahead + self._page_size, head.seq + 1)
                    window.append((end, asyncio.ensure_future(self._range(ahead, end, revision=pin))))
                    ahead = end
                end, task = window.popleft()
                try:
                    kvs = await task
                except _Compacted:
                    # Compaction passed our pin mid-read: keys are never compacted
                    # away, only old revisions, so re-pin and go on from here.
                    _cancel(window)
                    pin, head = await self._pin()
                    ahead = seq
                    yield pin, []
                    continue
                seq = end
                yield pin, kvs
        finally:
            _cancel(window)

    async def _range(self, first: int, end: int, *, revision: int) -> list[Any]:
        async def get() -> Any:
            return await self.kv.get(
                self._event_key(first),
                range_end=self._event_key(end),
                revision=revision,
                timeout=self._read_timeout,
            )

        try:
            response = await self._read_rpc(get)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in (exc.details() or ""):
                raise _Compacted from exc
            raise
        return list(response.kvs)

    async def _read_rpc(self, call: Any) -> Any:
        """A read with retries: reads have no side effect, so retrying them is safe."""
        try:
            async for attempt in stamina.retry_context(
                on=_transient,
                attempts=None,
                timeout=self._read_timeout,
                wait_initial=0.05,
                wait_max=1.0,
                wait_jitter=0.05,
            ):
                with attempt:
                    return await call()
        except (TimeoutError, EtcdError) as exc:
            raise LogUnavailable(f"etcd unreachable: {exc}") from exc
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.OUT_OF_RANGE:
                raise
            raise LogUnavailable(f"etcd read failed: {exc.code().name} {exc.details()}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _watch(self, start_revision: int, position: Position) -> AsyncIterator[list[Record]]:
        watch = self._client.watch
        if watch is None:
            raise LogUnavailable("the etcd client is closed")
        stream = cast(
            AsyncGenerator[Any, None],
            watch.watch(
                self._events, range_end=prefix_range_end(self._events), start_revision=start_revision
            ),
        )
        expected, created = position.seq + 1, False
        try:
            async for response in stream:
                if response.compact_revision or response.canceled:
                    raise _Reopen(f"watch cancelled (compacted up to {response.compact_revision})")
                if response.created:
                    if created:
                        raise _Reopen("the etcd client re-opened the watch on its own")
                    created = True
                    continue
                records, last_raw = [], b""
                for event in response.events:
                    if event.type != _PUT:
                        continue
                    record = self._record(event.kv)
                    if record.seq < expected:
                        continue
                    if record.seq > expected:
                        raise _Reopen(f"watch skipped from {expected} to {record.seq}")
                    records.append(record)
                    last_raw = event.kv.value
                    expected += 1
                if records:
                    records[-1] = _with_digest(records[-1], last_raw)
                    yield records
        except (grpc.aio.AioRpcError, EtcdError) as exc:
            # The library raises only what it does not retry (an oversized batch, a
            # refused stream): the same cure, from our own position.
            raise _Reopen(f"watch failed: {exc}") from exc
        finally:
            await stream.aclose()

    # -- keys and records -------------------------------------------------

    def _event_key(self, seq: int) -> bytes:
        return self._events + str(seq).zfill(_SEQ_DIGITS).encode()

    def _command_key(self, command_id: str) -> str:
        return self._commands + command_id

    def _records(self, kvs: Sequence[Any]) -> list[Record]:
        """Decoded records; only the last gets its digest (positions need it, hashing all would not pay)."""
        records = [self._record(kv) for kv in kvs]
        if records:
            records[-1] = _with_digest(records[-1], kvs[-1].value)
        return records

    def _record(self, kv: Any) -> Record:
        seq = int(kv.key[len(self._events) :])
        try:
            envelope = self._codec.decode(kv.value)
        except LogCorrupt as exc:
            raise LogCorrupt(f"event {seq} (revision {kv.mod_revision}): {exc}") from exc
        return Record(seq, kv.mod_revision, envelope)


def _with_digest(record: Record, raw: bytes) -> Record:
    return Record(record.seq, record.rev, record.envelope, chain.digest(raw))


def _check_not_behind(head: Position, after: Position) -> None:
    # A log shorter than what a reader has applied was wiped or replaced under it:
    # carrying on would silently ignore every new event until it caught up again.
    if head.seq < after.seq:
        raise LogCorrupt(
            f"the log ends at event {head.seq} but this reader has applied {after.seq}: "
            "was the etcd prefix wiped or restored from an older backup?"
        )


def _transient(exc: Exception) -> bool:
    if isinstance(exc, EtcdConnectionError | EtcdTransientError | TimeoutError):
        return True
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _UNCLEAR


def _cancel(window: deque[tuple[int, asyncio.Task[list[Any]]]]) -> None:
    for _, task in window:
        task.cancel()
    window.clear()
