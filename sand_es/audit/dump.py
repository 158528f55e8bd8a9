"""The portable dump of a log (`export`/`import`): versioned JSON lines, byte-exact values.

    {"format": "sand-es-export", "version": 1, "prefix": "/sand-es", "head": "42 9f3a…",
     "events": 42, "revision": 1234, "exported_at": "2026-11-28T10:00:00Z"}
    {"seq": 1, "revision": 17, "value": "{\\"id\\": …, \\"prev\\": \\"\\"}"}
    …
    {"command": "5e7d…", "value": "{\\"first\\":1,\\"count\\":1,\\"fingerprint\\":\\"…\\"}"}
    …
    {"key": "migrations/0001", "value": "{\\"name\\": …}"}
    {"end": "sand-es-export", "events": 42, "commands": 40, "keys": 1}

A value is the stored bytes as a JSON string when they are UTF-8 (always, for what
sand-es writes: the dump stays greppable), else base64 under `value_b64`; both give
the exact bytes back, so the chain's digests survive the round trip. `revision` is
where the event was in the source etcd, for the reader: an import cannot keep it.
Other keys under the prefix (`key`, relative to it: migration records) are kept
verbatim, except the projection snapshots, which are derived (agents write new ones)
and large. The footer says the file is complete; an import refuses a file without it.

`plan` cuts an import into etcd transactions within the limits an append respects,
head last: until the head exists, agents see an empty log.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Final

import msgspec

from sand_es.errors import Invalid
from sand_es.events.chain import parse_head

FORMAT: Final = "sand-es-export"
VERSION: Final = 1
SEQ_DIGITS: Final = 16


class Header(msgspec.Struct, frozen=True, kw_only=True):
    """The first line: what the file is, and where and when it was taken."""

    format: str = FORMAT
    version: int = VERSION
    prefix: str
    head: str | None
    """The head key's value as stored (`"<seq> <digest>"`), or None for an empty log."""
    events: int
    revision: int
    """The etcd revision the dump was read at."""
    exported_at: datetime


class Footer(msgspec.Struct, frozen=True, kw_only=True):
    """The last line: the file is complete."""

    end: str = FORMAT
    events: int
    commands: int
    keys: int = 0


class StoredValue(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An event (`seq`), a command key (`command`) or another key (`key`) line, with its exact value."""

    seq: int | None = None
    revision: int | None = None
    command: str | None = None
    key: str | None = None
    value: str | None = None
    value_b64: str | None = None

    def raw(self) -> bytes:
        """The stored bytes."""
        if self.value is not None:
            return self.value.encode()
        if self.value_b64 is not None:
            try:
                return base64.b64decode(self.value_b64, validate=True)
            except binascii.Error as exc:
                raise Invalid(f"bad base64 value: {exc}") from None
        raise Invalid("a line has neither value nor value_b64")


class _Line(msgspec.Struct, frozen=True, kw_only=True):
    """Any line, for telling them apart with one decoder."""

    format: str | None = None
    version: int | None = None
    prefix: str | None = None
    head: str | None = None
    events: int | None = None
    revision: int | None = None
    exported_at: datetime | None = None
    seq: int | None = None
    command: str | None = None
    key: str | None = None
    value: str | None = None
    value_b64: str | None = None
    end: str | None = None
    commands: int | None = None
    keys: int | None = None


_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(_Line)


def _value_fields(raw: bytes) -> tuple[str | None, str | None]:
    """(value, value_b64): text when the bytes are UTF-8, base64 otherwise."""
    try:
        return raw.decode(), None
    except UnicodeDecodeError:
        return None, base64.b64encode(raw).decode()


def header_line(header: Header) -> bytes:
    """The header as one line."""
    return _encoder.encode(header) + b"\n"


def event_line(seq: int, revision: int, raw: bytes) -> bytes:
    """One event as one line."""
    value, value_b64 = _value_fields(raw)
    return _encoder.encode(StoredValue(seq=seq, revision=revision, value=value, value_b64=value_b64)) + b"\n"


def command_line(command_id: str, raw: bytes) -> bytes:
    """One command key as one line."""
    value, value_b64 = _value_fields(raw)
    return _encoder.encode(StoredValue(command=command_id, value=value, value_b64=value_b64)) + b"\n"


def key_line(key: str, raw: bytes) -> bytes:
    """Another key under the prefix (relative to it) as one line."""
    value, value_b64 = _value_fields(raw)
    return _encoder.encode(StoredValue(key=key, value=value, value_b64=value_b64)) + b"\n"


#: Where the log itself lives under the prefix: never an "other key".
LOG_PARTS: Final = ("head", "events/", "commands/")
#: Derived data left out of a dump (`sand_es.snapshots`).
DERIVED: Final = ("snapshots/",)


def is_other_key(relative: str) -> bool:
    """Whether a key under the prefix (relative to it) is dumped as an "other key"."""
    return not relative.startswith(LOG_PARTS + DERIVED) and bool(relative)


def footer_line(footer: Footer) -> bytes:
    """The footer as one line."""
    return _encoder.encode(footer) + b"\n"


class Dump(msgspec.Struct, frozen=True, kw_only=True):
    """What a dump file was found to hold (by `check`)."""

    header: Header
    commands: int


def read_lines(lines: Iterable[bytes]) -> Iterator[Header | StoredValue | Footer]:
    """Decode and check a dump line by line: header first, events 1..n in order, command keys, footer.

    Raises `Invalid` naming the line at the first problem; nothing follows a footer.
    """
    header: Header | None = None
    seq = commands = keys = 0
    in_commands = done = False
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        if done:
            raise Invalid(f"line {number}: data after the footer")
        try:
            line = _line_decoder.decode(text)
        except msgspec.DecodeError as exc:
            raise Invalid(f"line {number}: not a dump line: {exc}") from None
        if header is None:
            header = _header(line, number)
            yield header
        elif line.seq is not None:
            if in_commands:
                raise Invalid(f"line {number}: event {line.seq} after the command keys")
            if line.seq != seq + 1:
                raise Invalid(f"line {number}: event {line.seq} where event {seq + 1} was expected")
            seq = line.seq
            yield _stored(line, number)
        elif line.command is not None:
            in_commands = True
            commands += 1
            if not line.command or "/" in line.command:
                raise Invalid(f"line {number}: bad command id {line.command!r}")
            yield _stored(line, number)
        elif line.key is not None:
            in_commands = True
            keys += 1
            if not is_other_key(line.key) or line.key.startswith("/"):
                raise Invalid(f"line {number}: {line.key!r} is not a key a dump may restore")
            yield _stored(line, number)
        elif line.end is not None:
            footer = Footer(
                end=line.end, events=line.events or 0, commands=line.commands or 0, keys=line.keys or 0
            )
            if footer.end != FORMAT or (footer.events, footer.commands, footer.keys) != (seq, commands, keys):
                raise Invalid(
                    f"line {number}: the footer counts {footer.events} events, {footer.commands} command "
                    f"keys and {footer.keys} other keys, the file holds {seq}, {commands} and {keys}"
                )
            if seq != header.events:
                raise Invalid(f"the header announces {header.events} events, the file holds {seq}")
            done = True
            yield footer
        else:
            raise Invalid(f"line {number}: neither an event, a command key nor the footer")
    if header is None:
        raise Invalid("the file is empty")
    if not done:
        raise Invalid("the file ends without its footer: it is truncated")


def _header(line: _Line, number: int) -> Header:
    if line.format != FORMAT:
        raise Invalid(f"line {number}: not a sand-es export (format {line.format!r})")
    if line.version != VERSION:
        raise Invalid(f"this sand-es reads export version {VERSION}, the file is version {line.version}")
    if line.prefix is None or line.events is None or line.revision is None or line.exported_at is None:
        raise Invalid(f"line {number}: the header lacks prefix, events, revision or exported_at")
    if line.head is None:
        if line.events:
            raise Invalid(f"the header announces {line.events} events but no head")
    else:
        try:
            head_seq, _ = parse_head(line.head.encode())
        except ValueError:
            raise Invalid(f"the header's head {line.head!r} is not '<seq> <digest>'") from None
        if head_seq != line.events:
            raise Invalid(f"the header's head names event {head_seq} but announces {line.events} events")
    return Header(
        prefix=line.prefix,
        head=line.head,
        events=line.events,
        revision=line.revision,
        exported_at=line.exported_at,
    )


def _stored(line: _Line, number: int) -> StoredValue:
    stored = StoredValue(
        seq=line.seq,
        revision=line.revision,
        command=line.command,
        key=line.key,
        value=line.value,
        value_b64=line.value_b64,
    )
    try:
        stored.raw()
    except Invalid as exc:
        raise Invalid(f"line {number}: {exc}") from None
    return stored


class Keys:
    """The log's key layout under a prefix (README, "The log in etcd")."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.root = f"{prefix}/".encode()
        self.head = f"{prefix}/head".encode()
        self.events = f"{prefix}/events/".encode()
        self.commands = f"{prefix}/commands/".encode()

    def event(self, seq: int) -> bytes:
        """The key of event `seq`."""
        return self.events + str(seq).zfill(SEQ_DIGITS).encode()

    def command(self, command_id: str) -> bytes:
        """The key of a command."""
        return self.commands + command_id.encode()


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """The puts of one import transaction (key, value), and whether it is the first or writes the head."""

    puts: list[tuple[bytes, bytes]]
    first: bool
    last: bool


def plan(
    items: Iterable[Header | StoredValue | Footer],
    keys: Keys,
    *,
    max_ops: int = 128,
    max_bytes: int = 1_000_000,
) -> Iterator[Batch]:
    """The transactions of an import: at most `max_ops` puts and under `max_bytes` each.

    The last event and the head go together in the last transaction, as an append
    writes them: until then there is no head, so agents see an empty log (never half of
    one), and afterwards the head's revision is its last event's, which `verify`
    checks (a head rewritten on its own is how a truncated log shows).
    """
    batches = _Packer(max_ops, max_bytes)
    head: bytes | None = None
    held: tuple[bytes, bytes] | None = None
    for item in items:
        if isinstance(item, Header):
            head = None if item.head is None else item.head.encode()
        elif isinstance(item, StoredValue):
            if item.seq is not None:
                if held is not None:
                    yield from batches.add(held)
                held = (keys.event(item.seq), item.raw())
            elif item.command is not None:
                yield from batches.add((keys.command(item.command), item.raw()))
            elif item.key is not None:
                yield from batches.add((keys.root + item.key.encode(), item.raw()))
    last = [put for put in (held, None if head is None else (keys.head, head)) if put is not None]
    yield from batches.finish(last)


class _Packer:
    """Fills transactions up to the limits, in order."""

    def __init__(self, max_ops: int, max_bytes: int) -> None:
        self._max_ops = max_ops
        self._max_bytes = max_bytes
        self._puts: list[tuple[bytes, bytes]] = []
        self._size = 0
        self._first = True

    def add(self, put: tuple[bytes, bytes]) -> Iterator[Batch]:
        cost = self._cost([put])
        if self._puts and (len(self._puts) >= self._max_ops or self._size + cost >= self._max_bytes):
            yield self._flush(last=False)
        self._puts.append(put)
        self._size += cost

    def finish(self, last: list[tuple[bytes, bytes]]) -> Iterator[Batch]:
        """The remaining puts, with `last` (kept together) in the final transaction."""
        cost = self._cost(last)
        if self._puts and (
            len(self._puts) + len(last) > self._max_ops or self._size + cost >= self._max_bytes
        ):
            yield self._flush(last=False)
        self._puts += last
        if self._puts:
            yield self._flush(last=True)

    def _cost(self, puts: list[tuple[bytes, bytes]]) -> int:
        cost = sum(len(key) + len(value) for key, value in puts)
        if cost >= self._max_bytes:
            raise Invalid(f"{puts[0][0].decode()} holds {cost} bytes, more than one transaction may carry")
        return cost

    def _flush(self, *, last: bool) -> Batch:
        batch = Batch(puts=self._puts, first=self._first, last=last)
        self._puts, self._size, self._first = [], 0, False
        return batch
