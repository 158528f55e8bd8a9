"""`sand-es audit` against a real etcd: log, replay, diff, verify (and tampering), export and import."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from etcd3aio import prefix_range_end
from etcd3aio.kv import KVService
from typer.testing import CliRunner, Result

from sand_es.audit.state import state_of
from sand_es.cli import app
from sand_es.commands import CreateNetwork
from sand_es.config import EtcdSettings, parse_hosts
from sand_es.etcdlog import EtcdLog
from sand_es.events.chain import digest, head_value
from sand_es.projections import EMPTY, fold
from sand_es.service import Service
from sand_es.views import LiveViews
from tests.support.audit_history import Built, build_history
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.etcd


class Prefix:
    """A log prefix on the session's etcd, and how to reach it (from the CLI and from Python)."""

    def __init__(self, server: EtcdServer, prefix: str) -> None:
        self.server = server
        self.prefix = prefix
        self.settings = EtcdSettings(hosts=parse_hosts(server.url), prefix=prefix)

    def audit(self, *args: str, prefix: str | None = None) -> Result:
        """`sand-es audit ARGS` on this prefix (or another one)."""
        env = {"ETCD_HOSTS": self.server.url, "ETCD_PREFIX": prefix or self.prefix}
        return CliRunner().invoke(app, ["audit", *args], env=env)

    def with_log(self, action: Callable[[EtcdLog], Awaitable[Any]], prefix: str | None = None) -> Any:
        """Run `action` on an `EtcdLog` of this prefix (or another one), from a synchronous test."""
        settings = msgspec.structs.replace(self.settings, prefix=prefix or self.prefix)

        async def run() -> Any:
            log = await EtcdLog.connect(settings)
            try:
                return await action(log)
            finally:
                await log.close()

        return asyncio.run(run())

    def key(self, seq: int) -> str:
        return f"{self.prefix}/events/{seq:016d}"

    def get(self, key: str) -> tuple[bytes, int]:
        """A key's value and mod_revision."""

        async def read(log: EtcdLog) -> tuple[bytes, int]:
            kv = (await log.kv.get(key)).kvs[0]
            return bytes(kv.value), int(kv.mod_revision)

        result: tuple[bytes, int] = self.with_log(read)
        return result

    def put(self, key: str, value: bytes) -> int:
        """Write a key behind the log's back (tampering); the revision it was written at."""

        async def write(log: EtcdLog) -> int:
            return int((await log.kv.put(key, value)).header.revision)

        written: int = self.with_log(write)
        return written

    def delete(self, key: str) -> None:
        """Delete a key behind the log's back."""
        self.with_log(lambda log: log.kv.delete(key))

    def count(self, prefix: str) -> int:
        """How many keys are under `prefix`/."""

        async def count(log: EtcdLog) -> int:
            root = f"{prefix}/".encode()
            return int((await log.kv.get(root, range_end=prefix_range_end(root), count_only=True)).count)

        counted: int = self.with_log(count)
        return counted


def _fresh(server: EtcdServer) -> Prefix:
    return Prefix(server, f"/sand-es-test/{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def written(etcd_server: EtcdServer) -> tuple[Prefix, Built]:
    """One history for the read-only tests of this module (none of them writes to it)."""
    where = _fresh(etcd_server)
    built: Built = where.with_log(build_history)
    return where, built


@pytest.fixture
def tampered(etcd_server: EtcdServer) -> tuple[Prefix, Built]:
    """A history of the test's own, to damage."""
    where = _fresh(etcd_server)
    built: Built = where.with_log(build_history)
    return where, built


def json_lines(result: Result) -> list[dict[str, Any]]:
    assert 0 == result.exit_code, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def seqs(result: Result) -> list[int]:
    return [line["seq"] for line in json_lines(result)]


class TestLog:
    def test_lists_every_event_in_order(self, written: tuple[Prefix, Built]) -> None:
        """JSON lines, one per event, with the envelope's metadata and the event itself."""
        where, built = written
        lines = json_lines(where.audit("log", "--output", "json"))
        assert list(range(1, 11)) == [line["seq"] for line in lines]
        first = lines[0]
        assert {"seq", "revision", "at", "actor", "command_id", "type", "id", "data"} == set(first)
        assert ("network.created", built.net_a, built.revisions[0]) == (
            first["type"],
            first["data"]["network_id"],
            first["revision"],
        )
        assert ["host-a"] * 3 + ["host-b"] * 2 + ["host-a", "host-b", "host-a", "host-a", "host-a"] == [
            line["actor"] for line in lines
        ]

    def test_a_table_by_default(self, written: tuple[Prefix, Built]) -> None:
        """A header, then one line per event."""
        where, built = written
        result = where.audit("log")
        assert 0 == result.exit_code, result.output
        lines = result.stdout.splitlines()
        assert (11, ["SEQ", "REV", "AT", "ACTOR", "TYPE", "WHAT"]) == (len(lines), lines[0].split())
        assert f"network={built.net_a}" in lines[1]

    def test_filters(self, written: tuple[Prefix, Built]) -> None:
        """Network, endpoint, host (actor or the endpoint's host), types, revisions and times."""
        where, built = written
        r = built.revisions
        assert [6, 7, 8, 9] == seqs(where.audit("log", "-o", "json", "--network", built.net_b))
        assert [2, 3, 10] == seqs(where.audit("log", "-o", "json", "--endpoint", built.e1))
        # e3's removal was appended by host-a, but e3 lived on host-b.
        assert [4, 5, 7, 8] == seqs(where.audit("log", "-o", "json", "--host", "host-b"))
        assert [8, 9] == seqs(
            where.audit("log", "-o", "json", "--type", "endpoint.removed", "--type", "network.deleted")
        )
        assert [4, 5, 6] == seqs(
            where.audit("log", "-o", "json", "--from-revision", str(r[2]), "--to-revision", str(r[3]))
        )
        assert [8] == seqs(where.audit("log", "-o", "json", "--host", "host-b", "--from-revision", str(r[5])))
        at_seven = built.records[6].envelope.at.isoformat()
        assert [7, 8, 9, 10] == seqs(where.audit("log", "-o", "json", "--since", at_seven))
        assert [] == seqs(where.audit("log", "-o", "json", "--until", "2000-01-01"))

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--type", "network.renamed"), "unknown event type network.renamed"),
            (("--since", "yesterday"), "is not a time"),
            (("--from-revision", "9", "--to-revision", "3"), "from-revision 9 is after to-revision 3"),
        ],
    )
    def test_impossible_filters_are_usage_errors(
        self, written: tuple[Prefix, Built], args: tuple[str, ...], message: str
    ) -> None:
        """Exit status 2, the reason on stderr, nothing on stdout."""
        where, _ = written
        result = where.audit("log", *args)
        assert (2, "") == (result.exit_code, result.stdout)
        assert message in result.stderr

    def test_follow_prints_new_events_as_they_come(self, tampered: tuple[Prefix, Built]) -> None:
        """`--follow` prints the history, then each event appended afterwards."""
        where, _ = tampered
        with _sand_es("audit", "log", "--follow", "-o", "json", where=where) as process:
            assert process.stdout is not None
            history = [json.loads(process.stdout.readline()) for _ in range(10)]
            assert list(range(1, 11)) == [line["seq"] for line in history]

            async def append(log: EtcdLog) -> None:
                service = Service(log, LiveViews(), actor="host-c")
                await service.execute(CreateNetwork(ip_range="198.18.9.0/24"))
                await service.close()

            where.with_log(append)
            new = json.loads(process.stdout.readline())
            assert (11, "network.created", "host-c") == (new["seq"], new["type"], new["actor"])


class _sand_es:
    """`sand-es ARGS` as a subprocess on a prefix, killed (it and only it) on exit or after 30 s."""

    def __init__(self, *args: str, where: Prefix) -> None:
        env = {**os.environ, "ETCD_HOSTS": where.server.url, "ETCD_PREFIX": where.prefix}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from sand_es.cli import main; main()", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._watchdog = threading.Timer(30.0, self.process.kill)

    def __enter__(self) -> subprocess.Popen[str]:
        self._watchdog.start()
        return self.process

    def __exit__(self, *exc: object) -> None:
        self._watchdog.cancel()
        self.process.kill()
        self.process.communicate(timeout=10)


class TestReplayAndDiff:
    @pytest.mark.parametrize("step", [0, 2, 5, 7])
    def test_replay_at_a_revision_is_the_fold_up_to_it(
        self, written: tuple[Prefix, Built], step: int
    ) -> None:
        """The state printed is exactly the fold of the events written at that revision or before."""
        where, built = written
        revision = built.revisions[step]
        expected = state_of(fold(EMPTY, [r for r in built.records if r.rev <= revision]))
        result = where.audit("replay", "--at", str(revision), "--output", "json")
        assert 0 == result.exit_code, result.output
        assert msgspec.json.decode(msgspec.json.encode(expected)) == json.loads(result.stdout)

    def test_replay_at_a_time_stops_before_the_first_event_stamped_later(
        self, written: tuple[Prefix, Built]
    ) -> None:
        """`--at TIME`: every event up to the last one stamped at or before it."""
        where, built = written
        at_six = built.records[5].envelope.at.isoformat()
        result = where.audit("replay", "--at", at_six, "-o", "json")
        assert 0 == result.exit_code, result.output
        state = json.loads(result.stdout)
        assert (6, [built.net_a, built.net_b]) == (
            state["seq"],
            [n["network_id"] for n in state["networks"]],
        )

    def test_replay_as_tables(self, written: tuple[Prefix, Built]) -> None:
        """The text form has one table per view."""
        where, built = written
        result = where.audit("replay", "--at", str(built.revisions[-1]))
        assert 0 == result.exit_code, result.output
        for title in ("NETWORKS (1)", "ENDPOINTS (2)", "VNIS (1)", "IPAM (2)", "PEERS (1)"):
            assert title in result.stdout

    def test_a_revision_beyond_etcds_is_refused(self, written: tuple[Prefix, Built]) -> None:
        """The future cannot be replayed."""
        where, _ = written
        result = where.audit("replay", "--at", "999999999")
        assert 1 == result.exit_code
        assert "beyond etcd's current revision" in result.stderr

    def test_diff_between_two_revisions(self, written: tuple[Prefix, Built]) -> None:
        """From e1's creation to the end: e2 and its address added, e1 deactivated, its peer gone."""
        where, built = written
        result = where.audit("diff", str(built.revisions[1]), str(built.revisions[-1]), "-o", "json")
        assert 0 == result.exit_code, result.output
        changes = json.loads(result.stdout)
        assert [] == changes["networks"]["added"] + changes["networks"]["removed"]
        assert [built.e2] == [e["endpoint_id"] for e in changes["endpoints"]["added"]]
        assert [built.e1] == [c["key"] for c in changes["endpoints"]["changed"]]
        assert ["198.18.0.3"] == [a["ip"] for a in changes["addresses"]["added"]]
        assert [("host-b", built.e2)] == [
            (p["hostname"], p["endpoint_id"]) for p in changes["peers"]["added"]
        ]
        assert [("host-a", built.e1)] == [
            (p["hostname"], p["endpoint_id"]) for p in changes["peers"]["removed"]
        ]
        text = where.audit("diff", str(built.revisions[1]), str(built.revisions[-1]))
        assert f"~ {built.e1}: active True → False" in text.stdout


class TestVerify:
    def test_a_sound_log_passes(self, written: tuple[Prefix, Built]) -> None:
        """Exit 0 and a summary naming the head and its digest."""
        where, _ = written
        result = where.audit("verify")
        assert 0 == result.exit_code, result.output
        head, revision = where.get(f"{where.prefix}/head")
        assert "OK: 10 events verified" in result.stdout
        assert f"head: seq 10 at revision {revision}, digest {head.decode().split()[1]}" in result.stdout
        report = json.loads(where.audit("verify", "-o", "json").stdout)
        assert (True, None, 10, 1, 2) == (
            report["ok"],
            report["finding"],
            report["summary"]["events"],
            report["summary"]["networks"],
            report["summary"]["endpoints"],
        )

    def test_a_hand_edited_event_is_found(self, tampered: tuple[Prefix, Built]) -> None:
        """Event 4 edited with etcd's own client: seq 4 and the revision of the edit, exit 1."""
        where, _ = tampered
        value, _ = where.get(where.key(4))
        revision = where.put(where.key(4), value.replace(b'"actor":"host-b"', b'"actor":"mallory"'))
        result = where.audit("verify")
        assert 1 == result.exit_code, result.output
        assert f"FAILED at seq 4 (revision {revision}): event 4 was rewritten" in result.stdout
        finding = json.loads(where.audit("verify", "-o", "json").stdout)["finding"]
        assert (4, revision) == (finding["seq"], finding["revision"])

    def test_a_hand_edited_last_event_is_found_through_the_head(self, tampered: tuple[Prefix, Built]) -> None:
        """The last event has no successor: the head names its digest."""
        where, _ = tampered
        value, _ = where.get(where.key(10))
        revision = where.put(where.key(10), value.replace(b"namespace gone", b"nothing to see"))
        result = where.audit("verify")
        assert 1 == result.exit_code
        assert f"FAILED at seq 10 (revision {revision})" in result.stdout

    def test_a_deleted_event_is_found(self, tampered: tuple[Prefix, Built]) -> None:
        """Event 5 deleted: a gap."""
        where, _ = tampered
        where.delete(where.key(5))
        result = where.audit("verify")
        assert 1 == result.exit_code
        assert "FAILED at seq 5" in result.stdout
        assert "event 5 is missing" in result.stdout

    def test_a_reordered_pair_is_found(self, tampered: tuple[Prefix, Built]) -> None:
        """Events 6 and 7 swapped: event 6 no longer follows event 5."""
        where, _ = tampered
        six, _ = where.get(where.key(6))
        seven, _ = where.get(where.key(7))
        revision = where.put(where.key(6), seven)
        where.put(where.key(7), six)
        result = where.audit("verify")
        assert 1 == result.exit_code
        assert f"FAILED at seq 6 (revision {revision}): event 6 does not follow event 5" in result.stdout

    def test_a_truncated_log_is_found(self, tampered: tuple[Prefix, Built]) -> None:
        """Events 9 and 10 deleted, the head rewritten to name event 8: the head's revision gives it away."""
        where, _ = tampered
        eight, _ = where.get(where.key(8))
        where.delete(where.key(10))
        where.delete(where.key(9))
        revision = where.put(f"{where.prefix}/head", head_value(8, digest(eight)))
        result = where.audit("verify")
        assert 1 == result.exit_code
        assert f"FAILED at seq 8 (revision {revision}): the head was written at revision {revision}" in (
            result.stdout
        )

    def test_an_event_beyond_the_head_is_found(self, tampered: tuple[Prefix, Built]) -> None:
        """An event slipped in after the last one, without moving the head."""
        where, _ = tampered
        ten, _ = where.get(where.key(10))
        revision = where.put(where.key(11), ten)
        result = where.audit("verify")
        assert 1 == result.exit_code
        assert f"FAILED at seq 11 (revision {revision})" in result.stdout

    def test_a_garbled_head_is_found(self, tampered: tuple[Prefix, Built]) -> None:
        """A head that does not read as `<seq> <digest>`."""
        where, _ = tampered
        revision = where.put(f"{where.prefix}/head", b"garbage")
        result = where.audit("verify")
        assert 1 == result.exit_code
        assert f"FAILED at seq 0 (revision {revision}): the head key" in result.stdout

    def test_an_unreachable_etcd_is_not_a_finding(self, written: tuple[Prefix, Built]) -> None:
        """Could not check: exit 2, not 1."""
        where, _ = written
        env = {"ETCD_HOSTS": "http://127.0.0.1:1", "ETCD_PREFIX": where.prefix, "ETCD_READ_TIMEOUT": "1"}
        result = CliRunner().invoke(app, ["audit", "verify"], env=env)
        assert 2 == result.exit_code, result.output
        assert "error:" in result.stderr


class TestExportImport:
    def test_export_import_export_is_exact(self, written: tuple[Prefix, Built], tmp_path: Path) -> None:
        """Every event's bytes and every command key survive the round trip, and the copy verifies."""
        where, _ = written
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        copy = f"/sand-es-test/{uuid.uuid4().hex}"
        assert 0 == where.audit("export", str(first)).exit_code
        imported = where.audit("import", str(first), prefix=copy)
        assert 0 == imported.exit_code, imported.output
        assert f"imported 10 events into {copy}" in imported.stdout
        assert 0 == where.audit("export", str(second), prefix=copy).exit_code
        assert 0 == where.audit("verify", prefix=copy).exit_code

        def body(path: Path) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            header = lines[0]
            rest = [(line.get("seq"), line.get("command"), line.get("value")) for line in lines[1:]]
            return header, rest

        (header_1, body_1), (header_2, body_2) = body(first), body(second)
        assert body_1 == body_2
        assert (header_1["head"], header_1["events"]) == (header_2["head"], header_2["events"])
        assert (10, 8) == (
            sum(1 for seq, _, _ in body_1 if seq),
            sum(1 for _, command, _ in body_1 if command),
        )
        original, _ = where.get(where.key(3))
        assert original.decode() == body_1[2][2]

    def test_other_keys_travel_snapshots_do_not(self, tampered: tuple[Prefix, Built], tmp_path: Path) -> None:
        """A migration record is exported and restored; a projection snapshot (derived) is left out."""
        where, _ = tampered
        where.put(f"{where.prefix}/migrations/0001", b'{"name": "import-sand"}')
        where.put(f"{where.prefix}/snapshots/0000000000000010/meta", b"{}")
        dump, copy = tmp_path / "dump.jsonl", f"/sand-es-test/{uuid.uuid4().hex}"
        assert 0 == where.audit("export", str(dump)).exit_code
        assert 0 == where.audit("import", str(dump), prefix=copy).exit_code
        assert (b'{"name": "import-sand"}', 0) == (
            where.get(f"{copy}/migrations/0001")[0],
            where.count(f"{copy}/snapshots"),
        )

    def test_import_into_a_non_empty_prefix_is_refused(
        self, written: tuple[Prefix, Built], tmp_path: Path
    ) -> None:
        """Nothing is written into a prefix that holds anything."""
        where, _ = written
        dump = tmp_path / "dump.jsonl"
        assert 0 == where.audit("export", str(dump)).exit_code
        before = where.count(where.prefix)
        result = where.audit("import", str(dump))
        assert 1 == result.exit_code
        assert "import writes only into an empty prefix (nothing was written)" in result.stderr
        assert before == where.count(where.prefix)

    def test_a_truncated_dump_writes_nothing(self, written: tuple[Prefix, Built], tmp_path: Path) -> None:
        """The whole file is checked before the first write."""
        where, _ = written
        dump = tmp_path / "dump.jsonl"
        assert 0 == where.audit("export", str(dump)).exit_code
        dump.write_text("".join(dump.read_text().splitlines(keepends=True)[:-3]))
        copy = f"/sand-es-test/{uuid.uuid4().hex}"
        result = where.audit("import", str(dump), prefix=copy)
        assert 1 == result.exit_code
        assert "truncated" in result.stderr
        assert 0 == where.count(copy)

    def test_large_logs_go_in_several_transactions(
        self, tampered: tuple[Prefix, Built], tmp_path: Path
    ) -> None:
        """300 more events: more than one transaction of at most 128 operations, and an exact copy."""
        where, _ = tampered

        async def grow(log: EtcdLog) -> None:
            service = Service(log, LiveViews(), actor="host-a")
            await asyncio.gather(
                *(
                    service.execute(CreateNetwork(ip_range=f"10.{n // 256}.{n % 256}.0/24"))
                    for n in range(300)
                )
            )
            await service.close()

        where.with_log(grow)
        dump, copy = tmp_path / "dump.jsonl", f"/sand-es-test/{uuid.uuid4().hex}"
        assert 0 == where.audit("export", str(dump)).exit_code
        imported = where.audit("import", str(dump), prefix=copy)
        assert 0 == imported.exit_code, imported.output
        transactions = int(imported.stdout.split(" in ")[1].split()[0])
        assert transactions >= 3
        assert 0 == where.audit("verify", prefix=copy).exit_code
        assert where.get(where.key(310))[0] == where.get(f"{copy}/events/{310:016d}")[0]


@pytest.mark.parametrize(
    "args",
    [("verify", "-o", "json"), ("replay", "--at", "999", "-o", "json"), ("log", "-o", "json")],
    ids=lambda a: a[0],
)
def test_the_progress_bar_stays_out_of_json(written: tuple[Prefix, Built], args: tuple[str, ...]) -> None:
    """With stderr taken for a terminal (FORCE_COLOR), stdout still holds JSON and nothing else."""
    where, built = written
    args = tuple(str(built.revisions[-1]) if a == "999" else a for a in args)
    env = {
        **os.environ,
        "ETCD_HOSTS": where.server.url,
        "ETCD_PREFIX": where.prefix,
        "FORCE_COLOR": "1",
        "TTY_INTERACTIVE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", "from sand_es.cli import main; main()", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert all(json.loads(line) for line in result.stdout.splitlines())


async def test_import_transactions_run_first_alone_then_together_then_the_head_alone() -> None:
    """The prefix check lands before anything else is sent, and the head after everything else."""
    from sand_es.audit.dump import Batch
    from sand_es.audit.history import EtcdHistory

    class Recording(EtcdHistory):
        def __init__(self) -> None:
            self.events: list[tuple[str, int]] = []
            self.running = 0
            self.most = 0

        async def write(self, batch: Batch) -> int:
            number = int(batch.puts[0][1])
            self.events.append(("start", number))
            self.running += 1
            self.most = max(self.most, self.running)
            await asyncio.sleep(0.01 * (number % 3))
            self.running -= 1
            self.events.append(("end", number))
            return number

    batches = [Batch(puts=[(b"k", str(n).encode())], first=n == 0, last=n == 9) for n in range(10)]
    history = Recording()
    seen: list[int] = []
    assert 10 == await history.write_all(
        batches, in_flight=3, on_written=lambda b: seen.append(int(b.puts[0][1]))
    )
    assert [("start", 0), ("end", 0)] == history.events[:2]
    assert [("start", 9), ("end", 9)] == history.events[-2:]
    assert (3, list(range(10))) == (history.most, sorted(seen))


def test_the_import_transactions_compare_what_they_must(etcd_server: EtcdServer) -> None:
    """A transaction of a running import fails once someone else wrote the head: nothing mixes."""
    where = _fresh(etcd_server)
    from sand_es.audit.dump import Batch
    from sand_es.audit.history import EtcdHistory
    from sand_es.errors import Conflicting

    async def race(log: EtcdLog) -> None:
        history = EtcdHistory(log)
        await history.write(Batch(puts=[(history.keys.event(1), b"x")], first=True, last=False))
        await log.kv.txn([], [KVService.txn_op_put(history.keys.head, b"1 ")], [])
        with pytest.raises(Conflicting, match="someone else wrote"):
            await history.write(Batch(puts=[(history.keys.event(2), b"y")], first=False, last=True))
        with pytest.raises(Conflicting, match="is not empty"):
            await history.write(Batch(puts=[(history.keys.event(9), b"z")], first=True, last=True))

    where.with_log(race)
