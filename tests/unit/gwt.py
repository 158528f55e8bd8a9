"""Given → when → then for the deciders, with no I/O.

    given(network_created()).when(AddEndpoint(...), new_id=ENDPOINT_ID).then(EndpointAdded(...))
    given().when(CreateNetwork(mtu=1)).then_rejected(Invalid, match="invalid mtu")

`given` folds past events into `EMPTY`, each wrapped in an envelope with a fixed
time, actor and ids, as record `seq` 1..n; `when` names the command (and the id a
decider may use for what it creates); `then` checks the decided events and returns
the snapshot they lead to, `then_rejected` checks the refusal and returns it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from sand_es.commands import DEFAULT_POLICY, Command, Policy, decide
from sand_es.errors import Rejected
from sand_es.events import CODEC, Event, Record
from sand_es.projections import EMPTY, Snapshot, fold

#: The clock and the author of every event a test folds.
AT = datetime(2026, 11, 27, 20, 52, 24, 123456, tzinfo=UTC)
ACTOR = "host-a"

#: The id deciders get for whatever they create, unless a test gives another.
NEW_ID = "5e7d2c1a-9b3f-4e8a-8c6d-1f2a3b4c5d6e"

R = TypeVar("R", bound=Rejected)


def records(events: Sequence[Event], *, first: int = 1) -> list[Record]:
    """Events as the log would return them: enveloped, numbered from `first`, one revision each."""
    return [
        Record(
            seq,
            seq,
            CODEC.envelope(event, event_id=f"event-{seq}", at=AT, actor=ACTOR, command_id=f"command-{seq}"),
        )
        for seq, event in enumerate(events, start=first)
    ]


def history(*events: Event) -> Snapshot:
    """The snapshot after folding `events` into `EMPTY`."""
    return fold(EMPTY, records(events))


def extend(snapshot: Snapshot, *events: Event) -> Snapshot:
    """The snapshot after folding `events` right after `snapshot`."""
    return fold(snapshot, records(events, first=snapshot.position.seq + 1))


class When:
    """A command about to be decided on a snapshot."""

    def __init__(self, snapshot: Snapshot, command: Command, *, new_id: str, policy: Policy) -> None:
        self.snapshot = snapshot
        self.command = command
        self.new_id = new_id
        self.policy = policy

    def decided(self) -> list[Event]:
        """The events the decider returns."""
        return decide(self.snapshot, self.command, new_id=self.new_id, policy=self.policy)

    def then(self, *expected: Event) -> Snapshot:
        """Assert the decider returns exactly `expected`; the snapshot after them."""
        actual = self.decided()
        assert list(expected) == actual
        return extend(self.snapshot, *actual)

    def then_rejected(self, error: type[R], match: str = "") -> R:
        """Assert the decider refuses with exactly `error`, its message containing `match` literally."""
        with pytest.raises(error, match=re.escape(match)) as info:
            self.decided()
        assert error is type(info.value)
        return info.value


class Given:
    """A history of past events, folded."""

    def __init__(self, *events: Event) -> None:
        self.snapshot = history(*events)

    def when(self, command: Command, *, new_id: str = NEW_ID, policy: Policy = DEFAULT_POLICY) -> When:
        """Decide `command` on this history."""
        return When(self.snapshot, command, new_id=new_id, policy=policy)


def given(*events: Event) -> Given:
    """Start a given → when → then with these past events (none: an empty log)."""
    return Given(*events)
