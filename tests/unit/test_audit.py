"""The audit tool's pure core: points in time, filters, state and diff, verification, the dump format."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from sand_es.audit import dump
from sand_es.audit.diff import diff, render
from sand_es.audit.filters import EventFilter, HostIndex, Matcher, row, table_line
from sand_es.audit.state import render as render_state
from sand_es.audit.state import state_of
from sand_es.audit.verify import Finding, Head, Verifier
from sand_es.audit.when import AtRevision, AtTime, parse_point, parse_time
from sand_es.errors import Invalid
from sand_es.events import CODEC, Event, Record
from sand_es.events.chain import digest, head_value
from sand_es.projections import EMPTY, fold
from tests.unit.builders import (
    EP_1,
    EP_2,
    EP_3,
    HOST_A,
    HOST_B,
    NET_A,
    NET_B,
    activated,
    deactivated,
    endpoint_added,
    network_created,
    network_deleted,
    removed,
)
from tests.unit.gwt import AT, records
from tests.unit.test_layering import imports_of

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

#: A small valid history: two networks, endpoints on two hosts, one removed, one network gone.
HISTORY: tuple[Event, ...] = (
    network_created(NET_A, vni=1),
    network_created(NET_B, ip_range="10.0.1.0/24", vni=2),
    endpoint_added(EP_1, hostname=HOST_A),
    activated(EP_1),
    endpoint_added(EP_2, hostname=HOST_B, ip="10.0.0.3/24"),
    activated(EP_2),
    endpoint_added(EP_3, network_id=NET_B, hostname=HOST_B, ip="10.0.1.2/24"),
    removed(EP_3, network_id=NET_B, ip="10.0.1.2/24"),
    network_deleted(NET_B),
    deactivated(EP_1, reason="gone"),
)


# -- points in time ---------------------------------------------------------------------------


class TestWhen:
    @pytest.mark.parametrize(
        ("text", "ago"),
        [("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800)],
    )
    def test_a_time_ago(self, text: str, ago: int) -> None:
        """`90s`, `1h30m`, `2d`… are that long before now."""
        assert NOW - timedelta(seconds=ago) == parse_time(text, now=NOW)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-11-27T20:58:08Z", datetime(2026, 11, 27, 20, 58, 8, tzinfo=UTC)),
            ("2026-11-27T21:58:08+01:00", datetime(2026, 11, 27, 20, 58, 8, tzinfo=UTC)),
            ("2026-11-27T20:58:08", datetime(2026, 11, 27, 20, 58, 8, tzinfo=UTC)),
            ("2026-11-27", datetime(2026, 11, 27, tzinfo=UTC)),
        ],
    )
    def test_iso_times_are_utc(self, text: str, expected: datetime) -> None:
        """ISO 8601 times come back in UTC; one without a zone is taken as UTC."""
        parsed = parse_time(text, now=NOW)
        assert (expected, UTC) == (parsed, parsed.tzinfo)

    @pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", "", "h1"])
    def test_anything_else_is_invalid(self, text: str) -> None:
        """A time that is neither ISO nor a time ago is refused, with the forms it takes."""
        with pytest.raises(Invalid, match="ISO 8601"):
            parse_time(text, now=NOW)

    def test_digits_are_a_revision_anything_else_a_time(self) -> None:
        """`--at 42` names a revision; `--at 1h` a time."""
        assert AtRevision(42) == parse_point("42", now=NOW)
        assert AtTime(NOW - timedelta(hours=1)) == parse_point("1h", now=NOW)

    def test_revisions_start_at_one(self) -> None:
        """etcd has no revision 0."""
        with pytest.raises(Invalid, match="start at 1"):
            parse_point("0", now=NOW)


# -- filters ----------------------------------------------------------------------------------


def _records(events: Sequence[Event], *, actor: str = HOST_A) -> list[Record]:
    """`events` as records, seq n at revision 10 n, stamped a minute apart from AT, by `actor`."""
    return [
        Record(
            r.seq,
            r.seq * 10,
            msgspec.structs.replace(r.envelope, at=AT + timedelta(minutes=r.seq), actor=actor),
        )
        for r in records(events)
    ]


def _matching(event_filter: EventFilter, recs: list[Record], *, learn: bool = True) -> list[int]:
    hosts = HostIndex()
    if learn:
        hosts.learn(recs)
    matcher = Matcher(event_filter.checked(), hosts)
    return [r.seq for r in recs if matcher(r)]


class TestFilters:
    def test_no_criterion_shows_everything(self) -> None:
        """An empty filter lets every event through."""
        recs = _records(HISTORY)
        assert [r.seq for r in recs] == _matching(EventFilter(), recs)

    def test_network(self) -> None:
        """Every event names its network; ids match whatever their case."""
        assert [2, 7, 8, 9] == _matching(EventFilter(network_id=NET_B.upper()), _records(HISTORY))

    def test_endpoint(self) -> None:
        """Only the events of one endpoint."""
        assert [3, 4, 10] == _matching(EventFilter(endpoint_id=EP_1), _records(HISTORY))

    def test_types(self) -> None:
        """Any of the types given."""
        wanted = frozenset({"endpoint.removed", "network.deleted"})
        assert [8, 9] == _matching(EventFilter(types=wanted), _records(HISTORY))

    def test_times_are_inclusive_bounds(self) -> None:
        """since and until include events stamped exactly then."""
        f = EventFilter(since=AT + timedelta(minutes=3), until=AT + timedelta(minutes=5))
        assert [3, 4, 5] == _matching(f, _records(HISTORY))

    def test_revisions_are_inclusive_bounds(self) -> None:
        """from and to revision include events written at them."""
        assert [4, 5, 6] == _matching(EventFilter(from_revision=40, to_revision=60), _records(HISTORY))

    def test_host_matches_the_endpoints_host_through_its_addition(self) -> None:
        """Events of an endpoint on host-b match host-b whoever appended them (here host-a)."""
        assert [5, 6, 7, 8] == _matching(EventFilter(host=HOST_B), _records(HISTORY))

    def test_host_matches_the_actor(self) -> None:
        """Whatever an event is about, the host that appended it matches."""
        assert list(range(1, 11)) == _matching(EventFilter(host=HOST_A), _records(HISTORY))

    def test_host_of_an_endpoint_never_seen_added_does_not_match(self) -> None:
        """Without the endpoint's addition the index cannot place it: only what names the host matches."""
        assert [5, 7] == _matching(EventFilter(host=HOST_B), _records(HISTORY), learn=False)

    def test_criteria_combine(self) -> None:
        """Every criterion given must match."""
        f = EventFilter(host=HOST_B, types=frozenset({"endpoint.activated"}), network_id=NET_A)
        assert [6] == _matching(f, _records(HISTORY))

    @pytest.mark.parametrize(
        ("event_filter", "message"),
        [
            (EventFilter(types=frozenset({"network.renamed"})), "unknown event type network.renamed"),
            (EventFilter(since=NOW, until=NOW - timedelta(seconds=1)), "is after until"),
            (EventFilter(from_revision=9, to_revision=3), "from-revision 9 is after to-revision 3"),
        ],
    )
    def test_impossible_filters_are_invalid(self, event_filter: EventFilter, message: str) -> None:
        """A filter that cannot make sense is refused, not silently empty."""
        with pytest.raises(Invalid, match=message):
            event_filter.checked()

    def test_a_host_filter_needs_an_index(self) -> None:
        """Matching a host without the index would miss endpoint events: refused."""
        with pytest.raises(ValueError, match="HostIndex"):
            Matcher(EventFilter(host=HOST_A))

    def test_the_shown_form(self) -> None:
        """A row carries the envelope's metadata, the position and the event with its tag."""
        record = _records(HISTORY)[2]
        shown = msgspec.json.decode(msgspec.json.encode(row(record)))
        assert {
            "seq": 3,
            "revision": 30,
            "at": "2026-11-27T20:55:24.123456Z",
            "actor": HOST_A,
            "command_id": "command-3",
            "type": "endpoint.added",
            "id": "event-3",
        } == {k: v for k, v in shown.items() if k != "data"}
        assert ("endpoint.added", EP_1) == (shown["data"]["event"], shown["data"]["endpoint_id"])
        assert table_line(record).startswith("3  ")
        assert f"endpoint={EP_1}" in table_line(record)


# -- state and diff ---------------------------------------------------------------------------


class TestStateAndDiff:
    def test_state_holds_every_view_sorted(self) -> None:
        """Networks by VNI, endpoints by network and address, pools with their holders, peers by host."""
        state = state_of(fold(EMPTY, records(HISTORY)))
        assert (10, [NET_A]) == (state.seq, [n.network_id for n in state.networks])
        assert [EP_1, EP_2] == [e.endpoint_id for e in state.endpoints]
        assert [(1, NET_A)] == [(v.vni, v.network_id) for v in state.vnis]
        [pool] = state.pools
        assert ("10.0.0.0/24", "10.0.0.1", 2, 253) == (pool.ip_range, pool.gateway, pool.used, pool.capacity)
        assert [("10.0.0.2", EP_1), ("10.0.0.3", EP_2)] == [(a.ip, a.endpoint_id) for a in pool.addresses]
        assert [(HOST_B, NET_A, [EP_2])] == [
            (h.hostname, h.network_id, [p.endpoint_id for p in h.peers]) for h in state.peers
        ]
        text = render_state(state)
        assert "NETWORKS (1)" in text
        assert "PEERS (1)" in text
        assert "inactive (gone)" in text

    def test_diff_names_what_was_added_removed_and_changed(self) -> None:
        """From event 6 to the end: NET_B went (its endpoint came and went), EP_1 was deactivated."""
        before = fold(EMPTY, records(HISTORY[:6]))
        after = fold(EMPTY, records(HISTORY))
        result = diff(before, after)
        assert ((6, 6), (10, 10)) == (
            (result.before.seq, result.before.revision),
            (result.after.seq, result.after.revision),
        )
        assert ([], [NET_B], []) == (
            result.networks.added,
            [n.network_id for n in result.networks.removed],
            result.networks.changed,
        )
        assert ([], ["2"]) == ([v.vni for v in result.vnis.added], [str(v.vni) for v in result.vnis.removed])
        assert result.addresses.empty
        [change] = result.endpoints.changed
        assert EP_1 == change.key
        assert {("active", True, False), ("target_netns_path", "/var/run/docker/netns/1234abcd", "")} <= {
            (c.field, c.before, c.after) for c in change.fields
        }
        assert [(HOST_A, EP_1)] == [(p.hostname, p.endpoint_id) for p in result.peers.removed]
        assert "~ " + EP_1 in render(result)

    def test_diff_of_additions_and_removals(self) -> None:
        """From the start to event 7: everything added; backwards: everything removed."""
        mid = fold(EMPTY, records(HISTORY[:7]))
        forward, backward = diff(EMPTY, mid), diff(mid, EMPTY)
        assert [NET_A, NET_B] == sorted(n.network_id for n in forward.networks.added)
        assert ["1", "2"] == sorted(str(v.vni) for v in forward.vnis.added)
        assert ["10.0.0.2", "10.0.0.3", "10.0.1.2"] == sorted(a.ip for a in forward.addresses.added)
        assert [NET_A, NET_B] == sorted(n.network_id for n in backward.networks.removed)
        assert [] == backward.networks.added

    def test_a_point_against_itself_is_no_change(self) -> None:
        """Two equal states differ in nothing."""
        snapshot = fold(EMPTY, records(HISTORY))
        result = diff(snapshot, snapshot)
        assert result.empty
        assert render(result).endswith("no change")

    def test_diff_is_json(self) -> None:
        """The whole diff encodes as JSON (for --output json)."""
        document = msgspec.json.decode(msgspec.json.encode(diff(EMPTY, fold(EMPTY, records(HISTORY)))))
        assert {"before", "after", "networks", "endpoints", "vnis", "addresses", "peers"} == set(document)


# -- verify -----------------------------------------------------------------------------------


class Stored(msgspec.Struct, frozen=True):
    """An event as stored: what `EtcdLog.read_raw` yields."""

    seq: int
    rev: int
    value: bytes


def chain(events: Sequence[Event], *, first_rev: int = 10) -> list[Stored]:
    """`events` stored as the log stores them: each linked to the previous one's bytes, one revision each."""
    stored, prev = [], ""
    for record in records(events):
        raw = CODEC.encode(msgspec.structs.replace(record.envelope, prev=prev))
        stored.append(Stored(record.seq, first_rev + record.seq, raw))
        prev = digest(raw)
    return stored


def head_of(stored: Sequence[Stored]) -> Head:
    """The head an append of `stored` writes: the last event, its digest, its revision."""
    return Head(seq=stored[-1].seq, digest=digest(stored[-1].value), revision=stored[-1].rev)


def check(stored: Sequence[Stored], head: Head | None) -> Finding | None:
    """Verify `stored` in pages of three, then the head."""
    verifier = Verifier()
    for start in range(0, len(stored), 3):
        found = verifier.feed(stored[start : start + 3])
        if found is not None:
            return found
    return verifier.finish(head)


def edited(
    stored: Stored, rev: int, change: tuple[bytes, bytes] = (b'"actor":"host-a"', b'"actor":"evil"')
) -> Stored:
    """`stored` with its bytes changed, rewritten at `rev`."""
    assert change[0] in stored.value
    return Stored(stored.seq, rev, stored.value.replace(*change))


class TestVerifyChain:
    def test_a_sound_log_passes(self) -> None:
        """Every link and the head hold: nothing found, and the summary counts what is left."""
        stored = chain(HISTORY)
        verifier = Verifier()
        assert None is verifier.feed(stored)
        assert None is verifier.finish(head_of(stored))
        summary = verifier.summary()
        assert (10, 11, 20, 0, 1, 2) == (
            summary.events,
            summary.first_revision,
            summary.last_revision,
            summary.unchained,
            summary.networks,
            summary.endpoints,
        )
        assert digest(stored[-1].value) == summary.last_digest

    def test_an_empty_log_passes(self) -> None:
        """No event, no head: nothing to find."""
        assert None is check([], None)

    def test_an_edited_event_is_named_by_its_newer_revision(self) -> None:
        """Event 4 edited after event 5 was written: its successor's link breaks, and event 4 is named."""
        stored = chain(HISTORY)
        stored[3] = edited(stored[3], rev=99)
        found = check(stored, head_of(stored))
        assert found is not None
        assert (4, 99) == (found.seq, found.revision)
        assert "event 4 was rewritten at revision 99, after event 5" in found.reason

    def test_an_edited_last_event_breaks_the_head(self) -> None:
        """The last event has no successor: the head's digest names it."""
        stored = chain(HISTORY)
        head = head_of(stored)
        stored[-1] = edited(stored[-1], rev=99)
        found = check(stored, head)
        assert found is not None
        assert (10, 99) == (found.seq, found.revision)
        assert "rewritten at revision 99, after the head" in found.reason

    def test_an_edited_head_is_named(self) -> None:
        """A head naming another digest, rewritten after the last event."""
        stored = chain(HISTORY)
        head = Head(seq=10, digest="0" * 64, revision=99)
        found = check(stored, head)
        assert found is not None
        assert (10, 99) == (found.seq, found.revision)
        assert "the head names digest 000000000000" in found.reason

    def test_a_deleted_event_is_a_gap(self) -> None:
        """Event 5 deleted: reported missing, at the revision of the event after the hole."""
        stored = chain(HISTORY)
        del stored[4]
        found = check(stored, head_of(stored))
        assert found is not None
        assert (5, 16) == (found.seq, found.revision)
        assert "event 5 is missing: the log jumps from 4 to 6" in found.reason

    def test_deleted_last_events_are_named_by_the_head(self) -> None:
        """Events 9 and 10 deleted, the head untouched: it names an event the log no longer has."""
        stored = chain(HISTORY)
        head = head_of(stored)
        found = check(stored[:8], head)
        assert found is not None
        assert (9, head.revision) == (found.seq, found.revision)
        assert "events 9..10 are missing" in found.reason

    def test_a_truncated_log_with_a_rewritten_head_is_caught(self) -> None:
        """Events 9 and 10 deleted and the head rewritten to match event 8: the head's revision betrays it."""
        stored = chain(HISTORY)[:8]
        head = Head(seq=8, digest=digest(stored[-1].value), revision=99)
        found = check(stored, head)
        assert found is not None
        assert (8, 99) == (found.seq, found.revision)
        assert "rewritten on its own" in found.reason

    def test_a_reordered_pair_is_named_at_its_first_event(self) -> None:
        """Events 5 and 6 swapped (rewritten in that order): event 5's link to event 4 breaks."""
        stored = chain(HISTORY)
        five, six = stored[4], stored[5]
        stored[4] = Stored(5, 98, six.value)
        stored[5] = Stored(6, 99, five.value)
        found = check(stored, head_of(chain(HISTORY)))
        assert found is not None
        assert (5, 98) == (found.seq, found.revision)
        assert "event 5 does not follow event 4" in found.reason

    def test_event_one_names_no_predecessor(self) -> None:
        """A first event with a prev: events before it were removed (and the rest renumbered)."""
        stored = chain(HISTORY)[1:]
        renumbered = [Stored(s.seq - 1, s.rev, s.value) for s in stored]
        found = check(renumbered, None)
        assert found is not None
        assert 1 == found.seq
        assert "event 1 names a predecessor" in found.reason

    def test_events_from_before_the_chain_are_accepted_at_the_start_only(self) -> None:
        """Events without a `prev` key start a log written before the chain; after a chained one, never."""
        legacy = [
            Stored(r.seq, 10 + r.seq, CODEC.encode(r.envelope).replace(b',"prev":""', b""))
            for r in records(HISTORY[:4])
        ]
        assert b'"prev"' not in legacy[1].value
        prev = digest(legacy[-1].value)
        rest = []
        for r in records(HISTORY[4:], first=5):
            raw = CODEC.encode(msgspec.structs.replace(r.envelope, prev=prev))
            rest.append(Stored(r.seq, 10 + r.seq, raw))
            prev = digest(raw)
        verifier = Verifier()
        assert None is verifier.feed([*legacy, *rest])
        assert None is verifier.finish(head_of(rest))
        assert 3 == verifier.summary().unchained
        unchained_after = [*legacy, *rest[:2], Stored(7, 17, CODEC.encode(records(HISTORY)[6].envelope))]
        found = check(unchained_after, None)
        assert found is not None
        assert 7 == found.seq

    def test_a_missing_head_is_found(self) -> None:
        """Events without a head: the head key was deleted."""
        found = check(chain(HISTORY), None)
        assert found is not None
        assert "the head key is missing" in found.reason

    def test_an_undecodable_event_is_named(self) -> None:
        """A value that is not an envelope."""
        stored = chain(HISTORY)
        stored[2] = Stored(3, stored[2].rev, b"{not json")
        found = check(stored, head_of(stored))
        assert found is not None
        assert (3, "undecodable") == (found.seq, found.reason[:11])

    def test_the_first_finding_stays(self) -> None:
        """Once something is found, feeding more returns the same finding."""
        stored = chain(HISTORY)
        verifier = Verifier()
        found = verifier.feed([stored[0], stored[2]])
        assert found is not None
        assert found is verifier.feed(stored[3:])
        assert found is verifier.finish(head_of(stored))


class TestVerifyRules:
    @pytest.mark.parametrize(
        ("events", "seq", "message"),
        [
            ((network_created(NET_A, vni=1), network_created(NET_B, vni=1)), 2, "VNI 1 given to network"),
            ((network_created(NET_A), network_created(NET_A, vni=2)), 2, "created again while it exists"),
            ((network_created(ip_range="10.0.0.0/24", gateway="10.0.0.999/24"),), 1, "unreadable range"),
            (
                (network_created(), endpoint_added(EP_1), endpoint_added(EP_2)),
                3,
                "address 10.0.0.2/24 given to endpoint " + EP_2 + " is held by endpoint " + EP_1,
            ),
            ((network_created(), endpoint_added(EP_1, ip="10.0.1.2/24")), 2, "outside network"),
            ((network_created(), endpoint_added(EP_1, ip="10.0.0.1/24")), 2, "or reserved"),
            ((network_created(), removed(EP_1)), 2, "which was never added"),
            (
                (network_created(), endpoint_added(EP_1), removed(EP_1), removed(EP_1)),
                4,
                "which was removed at seq 3",
            ),
            ((network_created(), activated(EP_1)), 2, "endpoint.activated for endpoint"),
            ((network_created(), deactivated(EP_1)), 2, "endpoint.deactivated for endpoint"),
            (
                (network_created(), endpoint_added(EP_1), activated(EP_1, network_id=NET_B)),
                3,
                f"names network {NET_B}; it is in {NET_A}",
            ),
            (
                (network_created(), endpoint_added(EP_1), removed(EP_1, ip="10.0.0.9/24")),
                3,
                "frees 10.0.0.9/24, but it holds 10.0.0.2",
            ),
            ((endpoint_added(EP_1),), 1, "but it was never created"),
            (
                (network_created(), network_deleted(), endpoint_added(EP_1)),
                3,
                "but it was deleted at seq 2",
            ),
            (
                (network_created(), endpoint_added(EP_1), network_deleted()),
                3,
                "deleted with 1 endpoint(s) left",
            ),
            ((network_deleted(),), 1, "deleted, but it was never created"),
            (
                (network_created(), endpoint_added(EP_1), endpoint_added(EP_1, ip="10.0.0.3/24")),
                3,
                "added again",
            ),
        ],
    )
    def test_a_broken_rule_is_named_at_its_event(
        self, events: tuple[Event, ...], seq: int, message: str
    ) -> None:
        """Each rule the deciders keep, broken by a hand-made log, is found at the event breaking it."""
        stored = chain(events)
        found = check(stored, head_of(stored))
        assert found is not None
        assert (seq, stored[seq - 1].rev) == (found.seq, found.revision)
        assert message in found.reason

    def test_reused_ids_and_values_after_removal_are_fine(self) -> None:
        """A VNI and an address freed, then given again; a deleted network's id created again."""
        events = (
            network_created(NET_A, vni=1),
            endpoint_added(EP_1),
            removed(EP_1),
            endpoint_added(EP_2),
            removed(EP_2),
            network_deleted(NET_A),
            network_created(NET_B, vni=1),
            network_created(NET_A, vni=2),
        )
        stored = chain(events)
        assert None is check(stored, head_of(stored))


# -- the dump format --------------------------------------------------------------------------


def _dump(
    stored: Sequence[Stored],
    commands: Sequence[tuple[str, bytes]] = (),
    keys: Sequence[tuple[str, bytes]] = (),
) -> list[bytes]:
    head = None if not stored else head_value(stored[-1].seq, digest(stored[-1].value)).decode()
    header = dump.Header(prefix="/src", head=head, events=len(stored), revision=77, exported_at=NOW)
    return [
        dump.header_line(header),
        *(dump.event_line(s.seq, s.rev, s.value) for s in stored),
        *(dump.command_line(c, v) for c, v in commands),
        *(dump.key_line(k, v) for k, v in keys),
        dump.footer_line(dump.Footer(events=len(stored), commands=len(commands), keys=len(keys))),
    ]


class TestDump:
    def test_values_come_back_byte_for_byte(self) -> None:
        """Event, command and other values round-trip exactly: UTF-8 as text, anything else as base64."""
        stored = chain(HISTORY[:3])
        odd = Stored(4, 99, b"\xff\xfe not utf-8")
        lines = _dump([*stored, odd], [("cmd-1", b'{"first":1,"count":1}')], [("migrations/0001", b"{}")])
        assert b'"value_b64"' in lines[4]
        assert base64.b64encode(odd.value) in lines[4]
        items = list(dump.read_lines(lines))
        values = [i.raw() for i in items if isinstance(i, dump.StoredValue)]
        assert [*(s.value for s in stored), odd.value, b'{"first":1,"count":1}', b"{}"] == values
        header = items[0]
        assert isinstance(header, dump.Header)
        assert ("/src", 4, 77, NOW) == (header.prefix, header.events, header.revision, header.exported_at)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (lambda ls: [], "the file is empty"),
            (lambda ls: ls[:-1], "truncated"),
            (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], "event 2 where event 1 was expected"),
            (lambda ls: [ls[0], *ls[2:]], "event 2 where event 1 was expected"),
            (lambda ls: [ls[0].replace(b"sand-es-export", b"other"), *ls[1:]], "not a sand-es export"),
            (lambda ls: [ls[0].replace(b'"version":1', b'"version":2'), *ls[1:]], "version 2"),
            (lambda ls: [*ls, ls[1]], "data after the footer"),
            (lambda ls: [ls[0], ls[1], ls[-2], ls[2], ls[3], ls[-1]], "after the command keys"),
            (lambda ls: [*ls[:-1], ls[-1].replace(b'"commands":1', b'"commands":5')], "the footer counts"),
            (lambda ls: [ls[0], b"not json\n", *ls[1:]], "line 2: not a dump line"),
            (lambda ls: [ls[0].replace(b'"events":3', b'"events":4'), *ls[1:]], "head names event 3"),
            (lambda ls: [ls[0], b'{"nothing": 1}\n', *ls[1:]], "neither an event"),
            (
                lambda ls: [*ls[:-2], b'{"key": "events/0000000000000009", "value": ""}\n', ls[-1]],
                "may restore",
            ),
        ],
    )
    def test_a_bad_file_is_refused_naming_why(self, change: object, message: str) -> None:
        """Anything but a complete, ordered dump is refused (the import then writes nothing)."""
        lines = _dump(chain(HISTORY[:3]), [("cmd-1", b"{}")])
        assert callable(change)
        with pytest.raises(Invalid, match=message):
            list(dump.read_lines(change(lines)))

    def test_an_import_plan_keeps_to_the_limits_and_writes_the_head_last(self) -> None:
        """At most max_ops puts and under max_bytes each; the last event and the head go last, together."""
        stored = chain(HISTORY)
        commands = [(f"cmd-{n}", b'{"first":%d,"count":1}' % n) for n in range(1, 11)]
        keys = dump.Keys("/dst")
        batches = list(dump.plan(dump.read_lines(_dump(stored, commands)), keys, max_ops=4, max_bytes=2000))
        puts = [put for batch in batches for put in batch.puts]
        assert all(len(b.puts) <= 4 and sum(len(k) + len(v) for k, v in b.puts) < 2000 for b in batches)
        assert [True] + [False] * (len(batches) - 1) == [b.first for b in batches]
        assert [False] * (len(batches) - 1) + [True] == [b.last for b in batches]
        assert [
            (keys.event(10), stored[-1].value),
            (keys.head, head_value(10, digest(stored[-1].value))),
        ] == (batches[-1].puts[-2:])
        assert 10 + 10 + 1 == len(puts) == len({k for k, _ in puts})
        assert [keys.event(n) for n in range(1, 10)] == [k for k, _ in puts[:9]]

    def test_an_empty_log_plans_nothing(self) -> None:
        """No event, no head, nothing to write."""
        assert [] == list(dump.plan(dump.read_lines(_dump([])), dump.Keys("/dst")))


# -- layering ---------------------------------------------------------------------------------

PURE = ("when.py", "filters.py", "state.py", "diff.py", "verify.py", "dump.py")
ALLOWED = ("sand_es.events", "sand_es.errors", "sand_es.projections", "sand_es.audit")


@pytest.mark.parametrize("name", PURE)
def test_the_audit_core_is_pure(name: str) -> None:
    """The judging modules import the standard library, msgspec, the core and each other: no I/O layer."""
    import sys

    path = Path(__file__).resolve().parents[2] / "sand_es" / "audit" / name
    stray = {
        module
        for module in imports_of(path)
        if module != "__future__"
        and module.split(".")[0] not in sys.stdlib_module_names
        and module.split(".")[0] != "msgspec"
        and not module.startswith(ALLOWED)
    }
    assert set() == stray
    assert not {
        m
        for m in imports_of(path)
        if m.startswith("sand_es.audit.") and m.split(".")[-1] in ("cli", "history")
    }
