"""The `EventLog` contract, held against every adapter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from sand_es.errors import Conflict, LogCorrupt
from sand_es.events import (
    CODEC,
    START,
    Codec,
    EndpointRemoved,
    Envelope,
    Event,
    NetworkCreated,
    NetworkDeleted,
    Position,
    Record,
)
from sand_es.ports import EventLog, PendingCommand
from tests.contract.conftest import LogFactory

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def network(n: int) -> NetworkCreated:
    return NetworkCreated(
        network_id=f"net-{n}",
        name=f"n{n}",
        ip_range="198.18.0.0/24",
        gateway="198.18.0.1/24",
        vxlan_vni=n,
    )


def command(command_id: str, *events: Event) -> PendingCommand:
    envelopes = tuple(
        CODEC.envelope(e, event_id=f"{command_id}-{i}", at=AT, actor="host-a", command_id=command_id)
        for i, e in enumerate(events)
    )
    return PendingCommand(command_id, envelopes)


async def read_all(log: EventLog, after: Position = START) -> list[Record]:
    return [record async for page in log.read(after) for record in page]


def without_digests(records: list[Record]) -> list[Record]:
    """Records as a reader may see them: digests are only guaranteed on the last of a page."""
    return [Record(r.seq, r.rev, r.envelope) for r in records]


def envelopes(records: list[Record]) -> list[Envelope]:
    return [r.envelope for r in records]


class TestAppend:
    async def test_empty_log_is_at_start(self, make_log: LogFactory) -> None:
        """A new log's head is the start, and reading it yields nothing."""
        log = (await make_log()).log
        assert await log.head() == START
        assert await read_all(log) == []

    async def test_appended_events_read_back_in_order(self, make_log: LogFactory) -> None:
        """Events come back in append order, numbered 1, 2, 3… with increasing revisions."""
        log = (await make_log()).log
        first = await log.append([command("c1", network(1), network(2))], expected=START)
        second = await log.append([command("c2", network(3))], expected=first[-1].position)
        records = await read_all(log)
        assert [r.seq for r in records] == [1, 2, 3]
        assert without_digests(first + second) == without_digests(records)
        assert records[0].rev == records[1].rev < records[2].rev
        assert records[-1].position == await log.head()

    async def test_one_append_of_several_commands_is_one_revision(self, make_log: LogFactory) -> None:
        """A group of commands lands atomically, in one revision, each findable by its id."""
        log = (await make_log()).log
        appended = await log.append(
            [command("a", network(1)), command("b", network(2), network(3))], expected=START
        )
        assert len({r.rev for r in appended}) == 1
        found_a, found_b = await log.lookup_command("a"), await log.lookup_command("b")
        assert found_a is not None
        assert found_b is not None
        assert without_digests(appended[:1]) == without_digests(list(found_a.records))
        assert without_digests(appended[1:]) == without_digests(list(found_b.records))

    async def test_unknown_command_is_not_found(self, make_log: LogFactory) -> None:
        """Looking up a command the log never took gives None."""
        log = (await make_log()).log
        await log.append([command("a", network(1))], expected=START)
        assert await log.lookup_command("never-sent") is None


class TestOptimisticConcurrency:
    async def test_stale_position_conflicts_and_appends_nothing(self, make_log: LogFactory) -> None:
        """An append decided before the last append fails cleanly and writes nothing."""
        log = (await make_log()).log
        first = await log.append([command("c1", network(1))], expected=START)
        await log.append([command("c2", network(2))], expected=first[-1].position)
        with pytest.raises(Conflict):
            await log.append([command("c3", network(3))], expected=first[-1].position)
        assert [r.seq for r in await read_all(log)] == [1, 2]
        assert await log.lookup_command("c3") is None

    async def test_start_conflicts_once_anything_is_appended(self, make_log: LogFactory) -> None:
        """Expecting an empty log fails when the log is not empty."""
        log = (await make_log()).log
        await log.append([command("c1", network(1))], expected=START)
        with pytest.raises(Conflict):
            await log.append([command("c2", network(2))], expected=START)

    async def test_concurrent_appends_at_one_position_let_exactly_one_through(
        self, make_log: LogFactory
    ) -> None:
        """Of many appends decided at the same position, one lands and the others conflict."""
        log = (await make_log()).log
        results = await asyncio.gather(
            *[log.append([command(f"c{i}", network(i + 1))], expected=START) for i in range(8)],
            return_exceptions=True,
        )
        assert sum(isinstance(r, list) for r in results) == 1
        assert sum(isinstance(r, Conflict) for r in results) == 7
        assert len(await read_all(log)) == 1


class TestIdempotency:
    async def test_retried_command_id_appends_nothing(self, make_log: LogFactory) -> None:
        """A command id already in the log is refused, named, and nothing is appended twice."""
        log = (await make_log()).log
        first = await log.append([command("same", network(1))], expected=START)
        with pytest.raises(Conflict) as raised:
            await log.append(
                [command("other", network(2)), command("same", network(1))], expected=first[-1].position
            )
        assert frozenset({"same"}) == raised.value.known_commands
        assert without_digests(first) == without_digests(await read_all(log))


class TestRead:
    async def test_read_after_a_position_skips_what_came_before(self, make_log: LogFactory) -> None:
        """Reading after a position yields only later events."""
        log = (await make_log()).log
        first = await log.append([command("c1", network(1), network(2))], expected=START)
        await log.append([command("c2", network(3))], expected=first[-1].position)
        assert [r.seq for r in await read_all(log, first[-1].position)] == [3]

    async def test_read_pages_through_a_long_log(self, make_log: LogFactory) -> None:
        """A log longer than many pages reads back whole and in order."""
        log = (await make_log(page_size=7)).log
        position = START
        for batch in range(10):
            events = [network(batch * 10 + i + 1) for i in range(10)]
            appended = await log.append([command(f"c{batch}", *events)], expected=position)
            position = appended[-1].position
        pages = [page async for page in log.read(START)]
        assert len(pages) > 10
        assert list(range(1, 101)) == [r.seq for page in pages for r in page]


class TestReaderAheadOfTheLog:
    async def test_reading_past_the_end_is_refused(self, make_log: LogFactory) -> None:
        """A reader that applied more than the log holds (a wiped log) gets LogCorrupt, not silence."""
        log = (await make_log()).log
        appended = await log.append([command("c1", network(1))], expected=START)
        ahead = Position(appended[-1].seq + 5, appended[-1].rev + 5)
        with pytest.raises(LogCorrupt, match="applied"):
            await read_all(log, ahead)
        with pytest.raises(LogCorrupt, match="applied"):
            await anext(log.tail(ahead))


class TestTail:
    async def test_tail_delivers_history_then_new_events_exactly_once(self, make_log: LogFactory) -> None:
        """A tail from the start yields what exists, then each new append, once each."""
        log = (await make_log()).log
        first = await log.append([command("c1", network(1))], expected=START)
        seen: list[Record] = []

        async def consume() -> None:
            async for batch in log.tail(START):
                seen.extend(batch)
                if len(seen) >= 3:
                    return

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        second = await log.append([command("c2", network(2))], expected=first[-1].position)
        await log.append([command("c3", network(3))], expected=second[-1].position)
        await asyncio.wait_for(consumer, timeout=10)
        assert without_digests(await read_all(log)) == without_digests(seen)

    async def test_tail_from_a_position_starts_after_it(self, make_log: LogFactory) -> None:
        """A tail resumed at a position yields nothing at or before it."""
        log = (await make_log()).log
        first = await log.append([command("c1", network(1), network(2))], expected=START)
        await log.append([command("c2", network(3))], expected=first[-1].position)

        async def first_batch() -> list[Record]:
            async for batch in log.tail(first[-1].position):
                return batch
            return []

        batch = await asyncio.wait_for(first_batch(), timeout=10)
        assert [r.seq for r in batch] == [3]


class TestUpcast:
    async def test_stored_old_version_decodes_into_todays_type(self, make_log: LogFactory) -> None:
        """An event stored at schema v1 is upcast on read into the current event type."""

        def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
            # v1 stored the released address under "ip".
            data = dict(data)
            data["target_veth_ip"] = data.pop("ip")
            return data

        codec = Codec(
            versions={"endpoint.removed": 2, "network.deleted": 1},
            upcasters={("endpoint.removed", 1): v1_to_v2},
        )
        under_test = await make_log(codec=codec)
        old = {
            "id": "e1",
            "v": 1,
            "at": "2026-01-01T00:00:00Z",
            "actor": "host-a",
            "command_id": "c0",
            "data": {
                "event": "endpoint.removed",
                "endpoint_id": "ep",
                "network_id": "n",
                "ip": "198.18.0.9/24",
            },
        }
        await under_test.store_raw(msgspec.json.encode(old))
        [record] = await read_all(under_test.log)
        assert EndpointRemoved(endpoint_id="ep", network_id="n", target_veth_ip="198.18.0.9/24") == (
            record.envelope.data
        )
        assert record.envelope.v == 2

    async def test_current_version_takes_the_fast_path(self, make_log: LogFactory) -> None:
        """An event at today's version decodes as stored, no upcaster consulted."""
        log = (await make_log()).log
        await log.append([command("c1", NetworkDeleted(network_id="n"))], expected=START)
        [record] = await read_all(log)
        assert NetworkDeleted(network_id="n") == record.envelope.data


class TestLimits:
    async def test_append_over_the_operation_limit_is_refused_before_sending(
        self, make_log: LogFactory
    ) -> None:
        """An append needing more than 128 etcd operations is refused whole, nothing written."""
        log = (await make_log()).log
        with pytest.raises(ValueError, match="exceeds 128 operations"):
            await log.append([command("big", *[network(n) for n in range(1, 128)])], expected=START)
        assert START == await log.head()

    async def test_append_over_the_size_limit_is_refused_before_sending(self, make_log: LogFactory) -> None:
        """An append larger than etcd takes in one request is refused whole, nothing written."""
        log = (await make_log()).log
        huge = NetworkCreated(
            network_id="n",
            name="x" * 1_100_000,
            ip_range="198.18.0.0/24",
            gateway="198.18.0.1/24",
            vxlan_vni=1,
        )
        with pytest.raises(ValueError, match="bytes exceeds"):
            await log.append([command("huge", huge)], expected=START)
        assert START == await log.head()


class TestChain:
    """Tamper evidence: each event names its predecessor's digest; the head names the last one's."""

    async def test_each_event_links_to_the_one_before(self, make_log: LogFactory) -> None:
        """Event 1 links to nothing; every later one to the digest of the event before it, across appends."""
        log = (await make_log()).log
        first = await log.append([command("c1", network(1), network(2))], expected=START)
        second = await log.append([command("c2", network(3))], expected=first[-1].position)
        appended = first + second
        records = await read_all(log)
        assert [r.envelope.prev for r in records] == ["", appended[0].digest, appended[1].digest]
        assert len({r.digest for r in appended}) == 3

    async def test_the_head_and_the_last_record_carry_the_last_digest(self, make_log: LogFactory) -> None:
        """Readers learn the digest the next append must link to, from the head or the last record read."""
        log = (await make_log()).log
        appended = await log.append([command("c1", network(1), network(2))], expected=START)
        records = await read_all(log)
        assert (await log.head()).digest == records[-1].digest == appended[-1].digest != ""

    async def test_a_writer_with_a_wrong_digest_is_refused(self, make_log: LogFactory) -> None:
        """An append whose expected position names another digest would break the chain: it is a conflict."""
        log = (await make_log()).log
        appended = await log.append([command("c1", network(1))], expected=START)
        wrong = Position(appended[-1].seq, appended[-1].rev, "0" * 64)
        with pytest.raises(Conflict):
            await log.append([command("c2", network(2))], expected=wrong)
        assert len(await read_all(log)) == 1
