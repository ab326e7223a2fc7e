"""The durable outbox: SQLite in WAL mode on the gateway's disk.

What it holds, and the rule for each:
- packages: vendor-shaped bodies waiting for their uplink. Inserted before the ring buffer
  may reuse their samples; deleted only when the receiver acknowledged them. Each carries an
  idempotency key derived from device, session, channel and sample range, unique per uplink.
- dead_letters: packages a receiver refused for good (a 4xx other than 408/429/401/403),
  with the reason. Kept until someone requeues or deletes them; never retried by themselves.
- journal: samples read from a device but not yet in a package for every uplink, flushed
  about once a second, so a crash or power cut loses at most that second.
- streams: per stream, what is durable (next counter, per-uplink package cursors, clock
  offset, device info), so a restarted gateway records the gap and never resends a range.
- gaps: every gap the gateway saw, for the record.

Every change is one transaction: a package, the stream cursors it advances and the journal
rows it makes redundant commit together or not at all.

Durability: `synchronous=FULL` (default) fsyncs the WAL at every commit, so a committed
package survives a power cut; `normal` survives a crash of the process but may lose the
last commits on power loss. The cost is measured by scripts/bench_pipeline.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: packages.evictable (the size cap's policy)
SYNC_MODES = ("full", "normal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packages (
    id INTEGER PRIMARY KEY,
    uplink TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    stream TEXT NOT NULL,
    first INTEGER NOT NULL,
    end INTEGER NOT NULL,
    sample_time REAL NOT NULL,
    created_at REAL NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    evictable INTEGER NOT NULL DEFAULT 0,
    UNIQUE (uplink, key)
);
CREATE INDEX IF NOT EXISTS packages_due ON packages (uplink, next_attempt_at, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    uplink TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    stream TEXT NOT NULL,
    first INTEGER NOT NULL,
    end INTEGER NOT NULL,
    sample_time REAL NOT NULL,
    created_at REAL NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    first INTEGER NOT NULL,
    n INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    t_first REAL NOT NULL,
    samples BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_stream ON journal (stream, first);
CREATE TABLE IF NOT EXISTS streams (
    key TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    info TEXT NOT NULL,
    next_counter INTEGER NOT NULL,
    cursors TEXT NOT NULL,
    clock_offset REAL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    start INTEGER NOT NULL,
    missing INTEGER NOT NULL,
    detected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass
class Package:
    """A vendor-shaped body for one uplink, covering samples first..end-1 of one stream."""

    uplink: str
    key: str
    kind: str
    stream: str
    first: int
    end: int
    sample_time: float  # wall time of the first sample
    content_type: str
    body: bytes
    evictable: bool = False  # a waveform that may give way at the size cap; events never do


@dataclass
class StoredPackage(Package):
    """A package as read back from the spool."""

    id: int = 0
    created_at: float = 0.0
    attempts: int = 0


@dataclass
class JournalRow:
    """Samples first..first+len-1 of a stream, durable but not yet packaged for every uplink."""

    stream: str
    first: int
    samples: np.ndarray
    t_first: float

    @property
    def end(self) -> int:
        """Counter one past the last sample."""
        return self.first + len(self.samples)


@dataclass
class StreamRow:
    """What is durable of one stream."""

    key: str
    device: str  # the configured device name
    info: dict[str, Any]
    next_counter: int  # one past the last durable sample
    cursors: dict[str, int]  # uplink -> first sample not yet packaged for it
    clock_offset: float | None


@dataclass
class GapRow:
    """A recorded gap."""

    device: str
    stream: str
    start: int
    missing: int
    detected_at: float = field(default_factory=time.time)


@dataclass
class Recovered:
    """A stream with journaled samples found at start-up."""

    stream: StreamRow
    rows: list[JournalRow]


class Spool:
    """Synchronous spool; use from one thread (AsyncSpool does that for the daemon)."""

    def __init__(self, path: str | Path, sync: str = "full", max_bytes: int = 0) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"spool sync must be one of {SYNC_MODES}, not {sync!r}")
        self.max_bytes = max_bytes
        self._over_cap_logged = float("-inf")  # monotonic time of the last "over the cap" warning
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={sync.upper()}")
        self._db.execute("PRAGMA busy_timeout=5000")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has spool schema {version}; this gateway knows {SCHEMA_VERSION}")
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(packages)")}
        if columns and "evictable" not in columns:  # a version 1 spool: add the column, keep the data
            self._db.execute("ALTER TABLE packages ADD COLUMN evictable INTEGER NOT NULL DEFAULT 0")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Checkpoint and close."""
        self._db.close()

    def _tx(self):
        return _Transaction(self._db)

    # -- writing --------------------------------------------------------------------

    def commit(self, *, packages: Iterable[Package] = (), journal: Iterable[JournalRow] = (),
               streams: Iterable[StreamRow] = (), gaps: Iterable[GapRow] = ()) -> int:
        """Store all of it in one transaction; return how many packages were new.

        A package whose (uplink, key) is already spooled is not stored twice.
        """
        now = time.time()
        added = 0
        with self._tx() as db:
            for p in packages:
                cur = db.execute(
                    "INSERT INTO packages (uplink, key, kind, stream, first, end, sample_time, created_at,"
                    " content_type, body, evictable) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (uplink, key)"
                    " DO NOTHING", (p.uplink, p.key, p.kind, p.stream, p.first, p.end, p.sample_time, now,
                                    p.content_type, p.body, int(p.evictable)))
                added += cur.rowcount
            for j in journal:
                db.execute("INSERT INTO journal (stream, first, n, dtype, t_first, samples) VALUES (?,?,?,?,?,?)",
                           (j.stream, j.first, len(j.samples), j.samples.dtype.str, j.t_first, j.samples.tobytes()))
            for g in gaps:
                db.execute("INSERT INTO gaps (device, stream, start, missing, detected_at) VALUES (?,?,?,?,?)",
                           (g.device, g.stream, g.start, g.missing, g.detected_at))
            for s in streams:
                db.execute(
                    "INSERT INTO streams (key, device, info, next_counter, cursors, clock_offset, updated_at)"
                    " VALUES (?,?,?,?,?,?,?) ON CONFLICT (key) DO UPDATE SET device=excluded.device,"
                    " info=excluded.info, next_counter=excluded.next_counter, cursors=excluded.cursors,"
                    " clock_offset=excluded.clock_offset, updated_at=excluded.updated_at",
                    (s.key, s.device, json.dumps(s.info), s.next_counter, json.dumps(s.cursors), s.clock_offset, now))
                if s.cursors:  # journal rows every uplink has packaged are redundant now
                    db.execute("DELETE FROM journal WHERE stream = ? AND first + n <= ?", (s.key, min(s.cursors.values())))
            if self.max_bytes and added:
                self._enforce_cap(db)
        return added

    def held_bytes(self) -> int:
        """Bytes of payload the spool holds: package bodies, journaled samples, dead letters."""
        (n,) = self._db.execute(
            "SELECT (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM packages)"
            " + (SELECT COALESCE(SUM(LENGTH(samples)), 0) FROM journal)"
            " + (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM dead_letters)").fetchone()
        return n

    def _enforce_cap(self, db: sqlite3.Connection) -> None:
        """Over the cap: evict waveform packages, oldest first, each counted and logged.

        Events (heart-rate and blood-pressure readings, summaries) are never evicted, nor are
        the journal and dead letters; if they alone exceed the cap, the cap is exceeded.
        """
        excess = self.held_bytes() - self.max_bytes
        if excess <= 0:
            return
        victims = []
        for pid, uplink, key, size in db.execute(
                "SELECT id, uplink, key, LENGTH(body) FROM packages WHERE evictable = 1 ORDER BY created_at, id"):
            victims.append((pid, uplink, key, size))
            excess -= size
            if excess <= 0:
                break
        for pid, uplink, key, size in victims:
            db.execute("DELETE FROM packages WHERE id = ?", (pid,))
            self._bump(db, "evicted")
            self._bump(db, "evicted_bytes", size)
            log.warning("spool over its %.1f MB cap: evicted waveform package %s for %s (%d bytes, never sent)",
                        self.max_bytes / 1e6, key, uplink, size)
        if excess > 0 and time.monotonic() - self._over_cap_logged > 60:
            self._over_cap_logged = time.monotonic()
            log.warning("spool holds %d bytes over its %.1f MB cap in events, journal and dead letters,"
                        " which are never evicted", excess, self.max_bytes / 1e6)

    def ack(self, package_id: int) -> None:
        """The receiver acknowledged the package: delete it."""
        with self._tx() as db:
            row = db.execute("SELECT uplink FROM packages WHERE id = ?", (package_id,)).fetchone()
            if row is None:
                return
            db.execute("DELETE FROM packages WHERE id = ?", (package_id,))
            self._bump(db, f"acked:{row[0]}")

    def retry_later(self, package_id: int, at: float, error: str) -> None:
        """A transient failure: try again at `at`."""
        with self._tx() as db:
            db.execute("UPDATE packages SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                       (at, error[:1000], package_id))

    def dead_letter(self, package_id: int, reason: str, status: int | None) -> None:
        """The receiver refused the package for good: move it to dead_letters with the reason."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO dead_letters (uplink, key, kind, stream, first, end, sample_time, created_at,"
                " content_type, body, attempts, status, reason, failed_at)"
                " SELECT uplink, key, kind, stream, first, end, sample_time, created_at, content_type, body,"
                " attempts + 1, ?, ?, ? FROM packages WHERE id = ?",
                (status, reason[:2000], time.time(), package_id))
            db.execute("DELETE FROM packages WHERE id = ?", (package_id,))

    def requeue_dead(self, uplink: str | None = None) -> int:
        """Move dead letters back into the outbox (after fixing their cause); return how many."""
        where, args = ("WHERE uplink = ?", (uplink,)) if uplink else ("", ())
        with self._tx() as db:
            db.execute(
                "INSERT INTO packages (uplink, key, kind, stream, first, end, sample_time, created_at,"
                " content_type, body) SELECT uplink, key, kind, stream, first, end, sample_time, created_at,"
                f" content_type, body FROM dead_letters {where} ORDER BY id ON CONFLICT (uplink, key) DO NOTHING",
                args)
            n = db.execute(f"DELETE FROM dead_letters {where}", args).rowcount
        return n

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int = 1) -> None:
        db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                   " SET value = value + excluded.value", (name, by))

    # -- reading --------------------------------------------------------------------

    def due(self, uplink: str, now: float, limit: int = 16) -> list[StoredPackage]:
        """Packages of `uplink` whose next attempt is due, oldest first."""
        rows = self._db.execute(
            "SELECT id, uplink, key, kind, stream, first, end, sample_time, content_type, body, created_at, attempts"
            " FROM packages WHERE uplink = ? AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
            (uplink, now, limit)).fetchall()
        return [StoredPackage(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bytes(r[9]), id=r[0], created_at=r[10],
                              attempts=r[11]) for r in rows]

    def next_attempt(self, uplink: str) -> float | None:
        """When the earliest pending package of `uplink` is due, or None if none is pending."""
        row = self._db.execute("SELECT MIN(next_attempt_at) FROM packages WHERE uplink = ?", (uplink,)).fetchone()
        return row[0]

    def stream(self, key: str) -> StreamRow | None:
        """The durable state of one stream."""
        row = self._db.execute("SELECT key, device, info, next_counter, cursors, clock_offset FROM streams"
                               " WHERE key = ?", (key,)).fetchone()
        return _stream_row(row) if row else None

    def recover(self) -> list[Recovered]:
        """Streams that still hold journaled samples, with their rows in order."""
        out = []
        keys = [r[0] for r in self._db.execute("SELECT DISTINCT stream FROM journal ORDER BY stream")]
        for key in keys:
            stream = self.stream(key)
            rows = [JournalRow(key, first, np.frombuffer(blob, dtype=np.dtype(dtype)).copy(), t_first)
                    for first, dtype, t_first, blob in self._db.execute(
                        "SELECT first, dtype, t_first, samples FROM journal WHERE stream = ? ORDER BY first", (key,))]
            if stream is not None:
                out.append(Recovered(stream, rows))
        return out

    def gaps(self) -> list[GapRow]:
        """Every recorded gap, oldest first."""
        return [GapRow(*r) for r in self._db.execute(
            "SELECT device, stream, start, missing, detected_at FROM gaps ORDER BY id")]

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead letters without their bodies."""
        cols = ("id", "uplink", "key", "kind", "stream", "first", "end", "attempts", "status", "reason", "failed_at")
        return [dict(zip(cols, r)) for r in self._db.execute(f"SELECT {', '.join(cols)} FROM dead_letters ORDER BY id")]

    def stats(self) -> dict[str, Any]:
        """Backlog per uplink (count, bytes, oldest), dead letters, journal, gaps and acks."""
        now = time.time()
        per_uplink: dict[str, dict[str, Any]] = {}
        for uplink, n, size, oldest, failing in self._db.execute(
                "SELECT uplink, COUNT(*), SUM(LENGTH(body)), MIN(created_at), SUM(attempts > 0)"
                " FROM packages GROUP BY uplink"):
            per_uplink[uplink] = {"pending": n, "bytes": size or 0, "oldest_age_s": round(now - oldest, 3),
                                  "retrying": failing or 0}
        counters = dict(self._db.execute("SELECT name, value FROM counters"))
        for name, value in counters.items():
            if name.startswith("acked:"):
                per_uplink.setdefault(name[6:], {"pending": 0, "bytes": 0, "oldest_age_s": 0.0, "retrying": 0})
                per_uplink[name[6:]]["acked"] = value
        for entry in per_uplink.values():
            entry.setdefault("acked", 0)
        (dead,) = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
        (journal,) = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM journal").fetchone()
        (gaps, missing) = self._db.execute("SELECT COUNT(*), COALESCE(SUM(missing), 0) FROM gaps").fetchone()
        return {"uplinks": per_uplink, "dead_letters": dead, "journal_samples": journal, "gaps": gaps,
                "missing_samples": missing, "file_bytes": _file_bytes(self.path), "held_bytes": self.held_bytes(),
                "max_bytes": self.max_bytes, "evicted": counters.get("evicted", 0),
                "evicted_bytes": counters.get("evicted_bytes", 0)}


def _stream_row(row: tuple) -> StreamRow:
    key, device, info, next_counter, cursors, clock_offset = row
    return StreamRow(key, device, json.loads(info), next_counter, json.loads(cursors), clock_offset)


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


T = TypeVar("T")


class AsyncSpool:
    """The spool for asyncio code: every call runs on one dedicated thread, off the event loop."""

    def __init__(self, path: str | Path, sync: str = "full", max_bytes: int = 0) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self.spool: Spool = self._pool.submit(Spool, path, sync, max_bytes).result()
        self._listeners: list[Callable[[], None]] = []
        self.closed = False

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run spool.fn(*args) on the spool thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args, **kwargs))

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the loop) after each commit that added packages."""
        self._listeners.append(listener)

    async def commit(self, **parts: Any) -> int:
        """Spool.commit on the spool thread, then wake the uplinks."""
        added = await self.call(self.spool.commit, **parts)
        if added:
            for listener in self._listeners:
                listener()
        return added

    async def close(self) -> None:
        """Close the database and stop the thread; idempotent."""
        if self.closed:
            return
        self.closed = True
        await self.call(self.spool.close)
        self._pool.shutdown(wait=True)
