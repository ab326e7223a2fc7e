"""The spool on a real disk: durability across reopen, atomic commits, retries, dead letters, journal."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from gateway.spool import GapRow, JournalRow, Package, Spool, StreamRow


def pkg(key: str, first: int = 0, end: int = 10, uplink: str = "kardia", body: bytes = b"{}") -> Package:
    return Package(uplink, key, "kardia.recording", "KM1/0001/leadI", first, end, 1000.0 + first, "application/json", body)


def test_committed_packages_survive_reopen_and_are_never_stored_twice(tmp_path):
    path = tmp_path / "spool.db"
    s = Spool(path)
    assert s.commit(packages=[pkg("a", 0, 10), pkg("b", 10, 20)]) == 2
    s.close()
    s = Spool(path)
    assert s.commit(packages=[pkg("a", 0, 10), pkg("a", 0, 10, uplink="hub")]) == 1  # same key, other uplink: new
    due = s.due("kardia", now=1e12)
    assert [(p.key, p.first, p.end, p.body) for p in due] == [("a", 0, 10, b"{}"), ("b", 10, 20, b"{}")]
    assert s.stats()["uplinks"]["kardia"]["pending"] == 2
    s.close()


def test_a_failing_commit_leaves_nothing_behind(tmp_path):
    s = Spool(tmp_path / "spool.db")
    bad = pkg("bad")
    bad.body = None  # violates NOT NULL after the first package was inserted
    with pytest.raises(sqlite3.IntegrityError):
        s.commit(packages=[pkg("good"), bad], gaps=[GapRow("d", "KM1/0001/leadI", 5, 5)])
    assert s.due("kardia", now=1e12) == []
    assert s.gaps() == []
    s.close()


def test_retry_later_orders_by_due_time_and_ack_counts(tmp_path):
    s = Spool(tmp_path / "spool.db")
    s.commit(packages=[pkg("a"), pkg("b", 10, 20)])
    a, b = s.due("kardia", now=1e12)
    s.retry_later(a.id, at=5e11, error="HTTP 503")
    assert [p.key for p in s.due("kardia", now=1e11)] == ["b"]
    assert s.next_attempt("kardia") == 0.0
    s.ack(b.id)
    assert s.next_attempt("kardia") == 5e11
    (again,) = s.due("kardia", now=1e12)
    assert (again.key, again.attempts) == ("a", 1)
    st = s.stats()["uplinks"]["kardia"]
    assert (st["pending"], st["acked"], st["retrying"]) == (1, 1, 1)
    s.close()


def test_dead_letters_keep_the_reason_and_can_be_requeued(tmp_path):
    s = Spool(tmp_path / "spool.db")
    s.commit(packages=[pkg("a"), pkg("b", 10, 20)])
    a, _ = s.due("kardia", now=1e12)
    s.dead_letter(a.id, "HTTP 400: duration must be the samples' duration", 400)
    (dead,) = s.dead_letters()
    assert (dead["key"], dead["status"], dead["reason"]) == ("a", 400, "HTTP 400: duration must be the samples' duration")
    assert [p.key for p in s.due("kardia", now=1e12)] == ["b"]
    assert s.stats()["dead_letters"] == 1
    s.commit(packages=[pkg("c", uplink="hub")])
    s.dead_letter(s.due("hub", now=1e12)[0].id, "HTTP 422", 422)
    assert s.requeue_dead("kardia") == 1
    assert sorted(p.key for p in s.due("kardia", now=1e12)) == ["a", "b"]
    assert [d["key"] for d in s.dead_letters()] == ["c"]
    assert s.requeue_dead() == 1
    assert [p.key for p in s.due("hub", now=1e12)] == ["c"] and s.dead_letters() == []
    s.close()


def test_journal_rows_are_trimmed_by_stream_cursors_and_recovered(tmp_path):
    path = tmp_path / "spool.db"
    s = Spool(path)
    key = "KM1/0001/leadI"
    rows = [JournalRow(key, 0, np.arange(0, 100, dtype=np.int16), 10.0),
            JournalRow(key, 100, np.arange(100, 250, dtype=np.int16), 10.5)]
    info = {"device": "KM1", "session": "0001", "model": "kardiamobile", "firmware": "1.0.0",
            "channels": {"leadI": {"sampling_frequency": 300, "units_per_mv": 2000.0}}, "extra": {}}
    s.commit(journal=rows, streams=[StreamRow(key, "dev", info, 250, {"kardia": 0}, 9.0)])
    s.commit(streams=[StreamRow(key, "dev", info, 250, {"kardia": 120}, 9.0)])  # first row fully packaged now
    s.close()
    s = Spool(path)
    (rec,) = s.recover()
    assert rec.stream.cursors == {"kardia": 120} and rec.stream.next_counter == 250
    assert [(r.first, r.end, r.t_first) for r in rec.rows] == [(100, 250, 10.5)]
    assert np.array_equal(rec.rows[0].samples, np.arange(100, 250))
    assert rec.rows[0].samples.dtype == np.int16
    s.close()


def test_wal_and_sync_settings_are_applied(tmp_path):
    for sync, level in (("full", 2), ("normal", 1)):
        s = Spool(tmp_path / f"{sync}.db", sync=sync)
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == level
        s.close()
    with pytest.raises(ValueError):
        Spool(tmp_path / "x.db", sync="off")


async def test_the_wal_starts_over_after_checkpoints_under_back_to_back_commits(tmp_path):
    """A background checkpoint copies the WAL while commits go on; the writer copies what came
    meanwhile, so the WAL is written from its start again. Commits whose pages are mostly rows (no
    payload to estimate them by) still start checkpoints in time, over about 40 MB of frames. On a
    busy machine or a stalling disk a checkpoint takes longer and the commits made meanwhile pass
    the limit; the file is cut back to it each time the WAL starts over."""
    import os

    from gateway.spool import CHECKPOINT_BYTES, WAL_LIMIT, AsyncSpool, Changes

    spool = AsyncSpool(tmp_path / "spool.db", "normal")
    info = {"model": "x" * 200, "channels": list(range(40))}
    sizes = []
    try:
        for i in range(1000):  # about 40 KB of stream rows each, one commit right after the other
            ch = Changes()
            ch.streams += [StreamRow(f"dev{k}/s/ch", f"dev{k}", info, i, {"u": i}, 0.0) for k in range(100)]
            await spool.write(ch)
            sizes.append(os.stat(f"{tmp_path / 'spool.db'}-wal").st_size)
        checkpoints = spool.counters.get("checkpoints", 0)
    finally:
        await spool.close()
    # How far the file passes its limit while a checkpoint runs depends on the disk (a CI run saw 22 MB
    # once, during an fsync stall), so that is not asserted: what must hold is that it comes back.
    assert sizes[-1] <= WAL_LIMIT + (1 << 20), \
        f"the WAL file ended at {sizes[-1]} bytes (largest {max(sizes)})"  # 13 MB before the fix
    assert sizes[-1] > CHECKPOINT_BYTES // 2  # it was written, and started over more than once:
    assert checkpoints >= 4, checkpoints
