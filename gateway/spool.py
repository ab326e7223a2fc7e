"""The durable outbox: SQLite in WAL mode on the gateway's disk.

What it holds, and the rule for each:
- packages (and their bodies, in a table of their own so that a retry rewrites a small row,
  never the body): vendor-shaped bodies waiting for their uplink. Deleted only when the
  receiver acknowledged them. Each carries an idempotency key derived from device, session,
  channel and sample range, unique per uplink.
- dead_letters: packages a receiver refused for good (a 4xx other than 408/429/401/403),
  with the reason. Kept until someone requeues or deletes them; never retried by themselves.
- journal: samples read from a device but not yet in a package for every uplink, so a crash
  or power cut loses only what was not yet committed. One row per transaction holds every
  stream's new samples (an index of segments and their bytes): appended in rowid order, a commit
  writes a few pages whatever the number of devices (one row per stream, with an index on the
  stream, wrote hundreds of scattered index pages per commit at 1,000 devices). The spool keeps
  in RAM, per stream, which journal rows hold its unpackaged segments; a row is deleted once
  every segment in it is packaged.
- streams: per stream, what is durable (next counter, per-uplink package cursors, clock
  offset, device info), so a restarted gateway records the gap and never resends a range.
- gaps: every gap the gateway saw, for the record.

Every change goes through `apply(Changes)`: one transaction in which every device's packages,
journal rows, gaps and stream state and every uplink's acknowledgements commit together or
not at all. `AsyncSpool` is the group commit: whatever is submitted while a transaction runs
goes into the next one, so the number of transactions (and fsyncs) per second does not grow
with the number of devices.

Size cap (`max_bytes`): it bounds the files on disk (database, WAL, shared memory). The WAL is
checkpointed and truncated to a budget of its own, freed pages are reused (and returned to the
file system by incremental vacuum), and before a transaction would take the database past the
rest of the cap, waveform packages give way, oldest first, each logged after its transaction
committed. When events, journal and dead letters alone fill it, or the disk itself is full,
the transaction is refused (SpoolFull): `AsyncSpool` keeps the changes in RAM and retries.

Durability: `synchronous=FULL` (default) fsyncs the WAL at every commit, so a committed
package survives a power cut; `normal` survives a crash of the process but may lose the
last commits on power loss.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 2: packages.evictable; 3: bodies in their own table, packages.size, incremental vacuum,
#                     one journal row per transaction
SYNC_MODES = ("full", "normal")
SHM_BYTES = 32768  # the WAL index file SQLite keeps beside the database
# Without a cap: a checkpoint starts when the WAL holds CHECKPOINT_BYTES (SQLite's default: 1000
# pages), and the WAL file keeps up to WAL_LIMIT when it starts over: room for the commits made while
# the checkpoint runs, so that they overwrite the file's blocks. An fsync of a write that grows a file
# also commits its new size and blocks (2-3x the time on this machine's disk).
WAL_LIMIT = 8 << 20
CHECKPOINT_BYTES = 4 << 20
RESERVE_BYTES = 1 << 20
WAL_FRAME_HEADER = 24
ROW_OVERHEAD = 64  # bytes a row costs beyond its payload, for the cap's estimate
# Bound parameters per statement: SQLite allows 32766 since 3.32, 999 before.
MAX_VARIABLES = 32000 if sqlite3.sqlite_version_info >= (3, 32) else 999
SQLITE_FULL = 13
SQLITE_IOERR = 10

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
    size INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    evictable INTEGER NOT NULL DEFAULT 0,
    UNIQUE (uplink, key)
);
CREATE INDEX IF NOT EXISTS packages_due ON packages (uplink, next_attempt_at, id);
CREATE INDEX IF NOT EXISTS packages_evictable ON packages (evictable, created_at, id);
CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
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
    keys TEXT NOT NULL,
    dtypes TEXT NOT NULL,
    segments BLOB NOT NULL,
    samples BLOB NOT NULL
);
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


class SpoolError(RuntimeError):
    """The spool cannot be opened or used (not a spool, a newer schema, unwritable); one clear line."""


class SpoolFull(RuntimeError):
    """A transaction was refused for space: the cap is reached by what is never evicted, or the disk is full."""


def is_space_error(exc: BaseException) -> bool:
    """True for SQLite errors that mean 'no room now' (disk or database full, an I/O error writing)."""
    if isinstance(exc, SpoolFull):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_FULL, SQLITE_IOERR)
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("full" in text or "disk i/o" in text)


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
    summary: dict | None = None  # what the analysis found (heart_rate, determination), for status; not stored


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


@dataclass
class Changes:
    """What one transaction writes: devices' packages, journal, gaps and stream state; uplinks' outcomes."""

    packages: list[Package] = field(default_factory=list)
    journal: list[JournalRow] = field(default_factory=list)
    streams: list[StreamRow] = field(default_factory=list)
    gaps: list[GapRow] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)  # package ids the receiver acknowledged
    retries: list[tuple[int, float, str]] = field(default_factory=list)  # (id, next attempt at, error)
    dead: list[tuple[int, str, int | None]] = field(default_factory=list)  # (id, reason, status)
    package_bytes: int = 0  # bodies staged by pipelines' collect(), which bounds it per commit

    def __bool__(self) -> bool:
        return bool(self.packages or self.journal or self.streams or self.gaps or self.acks or self.retries
                    or self.dead)

    def extend(self, other: "Changes") -> None:
        """Append another set after this one (order is kept: a later stream row wins)."""
        self.packages += other.packages
        self.journal += other.journal
        self.streams += other.streams
        self.gaps += other.gaps
        self.acks += other.acks
        self.retries += other.retries
        self.dead += other.dead
        self.package_bytes += other.package_bytes

    def grows(self) -> bool:
        """True if applying this may take more room (anything but acknowledgements and retry times)."""
        return bool(self.packages or self.journal or self.streams or self.gaps or self.dead)

    def split(self) -> tuple["Changes", "Changes"]:
        """(what only frees room or rewrites small rows, the rest)."""
        return Changes(acks=self.acks, retries=self.retries), Changes(self.packages, self.journal, self.streams,
                                                                      self.gaps, dead=self.dead)

    def payload_bytes(self) -> int:
        """Bytes of package bodies and journaled samples held: what RAM holds while this waits."""
        return sum(len(p.body or b"") for p in self.packages) + sum(j.samples.nbytes for j in self.journal)


@dataclass
class CommitResult:
    """What a transaction did, for counters and for log lines written after it committed."""

    added: int = 0
    duplicates: int = 0
    acked: int = 0
    evicted: list[tuple[str, str, int]] = field(default_factory=list)  # (key, uplink, bytes)
    committed_at: float = 0.0
    duplicate_indices: list[int] = field(default_factory=list)  # of Changes.packages already spooled
    seconds: float = 0.0  # the transaction, fsync included

    def for_range(self, offset: int, count: int) -> "CommitResult":
        """The result as seen by the writer of packages offset..offset+count-1 of the transaction."""
        dups = [i - offset for i in self.duplicate_indices if offset <= i < offset + count]
        return CommitResult(count - len(dups), len(dups), self.acked, self.evicted, self.committed_at, dups,
                            self.seconds)


def file_bytes(path: Path) -> int:
    """Bytes on disk of the database, its WAL, its shared-memory index and its reserve."""
    total = 0
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-reserve")):
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total


def check_path(path: Path) -> str | None:
    """Why `path` cannot be a spool (a directory, not SQLite, not writable), or None if it can."""
    if path.is_dir():
        return f"{path} is a directory, not a spool file"
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as exc:
            return f"{path} cannot be read: {exc.strerror or exc}"
        if head and head != b"SQLite format 3\x00":
            return f"{path} is not an SQLite database (is it the right file?)"
        if not os.access(path, os.W_OK):
            return f"{path} is not writable by this user"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {path}: {parent} is not writable by this user"
    return None


# One segment of a journal row: samples first..first+n-1 of the stream keys[key], of dtypes[dtype].
SEGMENT = np.dtype([("key", "<u4"), ("dtype", "u1"), ("first", "<i8"), ("n", "<u4"), ("t_first", "<f8")])


def encode_journal(rows: list[JournalRow]) -> tuple[str, str, bytes, bytes]:
    """(keys, dtypes, segments, samples) of one journal row holding these segments."""
    keys: dict[str, int] = {}
    dtypes: dict[str, int] = {}
    seg = np.zeros(len(rows), SEGMENT)
    seg["key"] = [keys.setdefault(j.stream, len(keys)) for j in rows]
    seg["dtype"] = [dtypes.setdefault(j.samples.dtype.str, len(dtypes)) for j in rows]
    seg["first"] = [j.first for j in rows]
    seg["n"] = [len(j.samples) for j in rows]
    seg["t_first"] = [j.t_first for j in rows]
    return "\n".join(keys), ",".join(dtypes), seg.tobytes(), b"".join([j.samples.tobytes() for j in rows])


def decode_journal(keys: str, dtypes: str, segments: bytes, samples: bytes | None) -> list[JournalRow]:
    """The segments of one journal row (their samples empty when `samples` is None)."""
    names, types = keys.split("\n"), [np.dtype(d) for d in dtypes.split(",")]
    out, offset = [], 0
    for key, dt, first, n, t_first in np.frombuffer(segments, SEGMENT).tolist():
        dtype = types[dt]
        size = n * dtype.itemsize
        data = (np.frombuffer(samples, dtype, n, offset).copy() if samples is not None
                else np.zeros(0, dtype))
        out.append(JournalRow(names[key], first, data, t_first) if samples is not None
                   else _SegmentInfo(names[key], first, n, t_first))
        offset += size
    return out


@dataclass
class _SegmentInfo:
    """A journal segment without its samples (what the RAM index and counts need)."""

    stream: str
    first: int
    n: int
    t_first: float

    @property
    def end(self) -> int:
        return self.first + self.n


class _SegmentLog:
    """One stream's journaled segments not yet packaged: (journal row id, end counter), oldest first.

    Two arrays of int64 and a head: 16 bytes a segment, so a thousand streams with 30 s each in
    the journal cost a few MB of RAM.
    """

    __slots__ = ("ids", "ends", "head")

    def __init__(self) -> None:
        self.ids = array("q")
        self.ends = array("q")
        self.head = 0

    def append(self, row_id: int, end: int) -> None:
        self.ids.append(row_id)
        self.ends.append(end)

    def pop_upto(self, cursor: int) -> list[int]:
        """Row ids of the segments that end at or before `cursor`, removed."""
        ids, ends, h = self.ids, self.ends, self.head
        out = []
        while h < len(ends) and ends[h] <= cursor:
            out.append(ids[h])
            h += 1
        if h > 64 and h > len(ends) // 2:  # compact now and then
            del ids[:h], ends[:h]
            h = 0
        self.head = h
        return out

    def __len__(self) -> int:
        return len(self.ends) - self.head


class Spool:
    """Synchronous spool; use from one thread (AsyncSpool does that for the daemon)."""

    def __init__(self, path: str | Path, sync: str = "full", max_bytes: int = 0, readonly: bool = False,
                 background_checkpoints: bool = False) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"spool sync must be one of {SYNC_MODES}, not {sync!r}")
        self.max_bytes = max_bytes
        self.path = Path(path)
        self._over_cap_logged = float("-inf")
        problem = check_path(self.path)
        if problem and not (readonly and self.path.exists() and "writable" in problem):
            raise SpoolError(problem)
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open(sync, readonly)
        except sqlite3.DatabaseError as exc:
            if is_space_error(exc):
                raise SpoolFull(f"{self.path}: cannot open the spool: {exc}") from exc
            raise SpoolError(f"{self.path}: cannot open the spool: {exc}") from exc
        self.page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        self._segments: dict[str, _SegmentLog] = {}
        self._outstanding: dict[int, int] = {}  # journal row id -> its segments not yet packaged
        self._deferred: list[int] = []
        if not readonly:
            self._index_journal()
        # The WAL's own share of the cap: checkpointed (and truncated) when it grows past it.
        self.wal_budget = max(64 << 10, min(4 << 20, max_bytes // 8)) if max_bytes else 0
        self.reserve_bytes = min(RESERVE_BYTES, max_bytes // 16) if max_bytes else RESERVE_BYTES
        # Another connection checkpoints (AsyncSpool), so no commit waits for a checkpoint.
        self.background_checkpoints = background_checkpoints
        if not readonly:
            if background_checkpoints:
                self._db.execute("PRAGMA wal_autocheckpoint=0")
            elif max_bytes:
                self._db.execute(f"PRAGMA wal_autocheckpoint={max(16, self.wal_budget // self.page_size)}")
            # After a checkpoint the WAL shrinks back to this (a spike of packages leaves no large file).
            self._db.execute(f"PRAGMA journal_size_limit={self.wal_budget if max_bytes else WAL_LIMIT}")

    def _open(self, sync: str, readonly: bool) -> sqlite3.Connection:
        if readonly:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA query_only=1")
            return db
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        new = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        if new:  # must precede the first table: freed pages can then go back to the file system
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={sync.upper()}")
        db.execute("PRAGMA cache_size=-8192")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SpoolError(f"{self.path} has spool schema {version}; this gateway knows {SCHEMA_VERSION}"
                             " (was it written by a newer version?)")
        if version == SCHEMA_VERSION:  # nothing to write: a spool opens on a full disk too
            return db
        if not new:
            self._upgrade(db, version)
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return db

    def _upgrade(self, db: sqlite3.Connection, version: int) -> None:
        """Bring an older spool to this schema, keeping every package."""
        columns = {r[1] for r in db.execute("PRAGMA table_info(packages)")}
        if not columns:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if "evictable" not in columns:  # version 1
                db.execute("ALTER TABLE packages ADD COLUMN evictable INTEGER NOT NULL DEFAULT 0")
            jcols = {r[1] for r in db.execute("PRAGMA table_info(journal)")}
            if "stream" in jcols:  # versions 1 and 2: a row per stream becomes a one-segment row
                db.execute("DROP INDEX IF EXISTS journal_stream")
                db.execute("ALTER TABLE journal RENAME TO journal_v2")
                db.execute("CREATE TABLE journal (id INTEGER PRIMARY KEY, keys TEXT NOT NULL, dtypes TEXT NOT NULL,"
                           " segments BLOB NOT NULL, samples BLOB NOT NULL)")
                for stream, first, dtype, t_first, blob in db.execute(
                        "SELECT stream, first, dtype, t_first, samples FROM journal_v2 ORDER BY id").fetchall():
                    row = JournalRow(stream, first, np.frombuffer(blob, dtype=np.dtype(dtype)), t_first)
                    db.execute("INSERT INTO journal (keys, dtypes, segments, samples) VALUES (?,?,?,?)",
                               encode_journal([row]))
                db.execute("DROP TABLE journal_v2")
            if "body" in columns:  # versions 1 and 2: bodies move to their own table
                db.execute("CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
                db.execute("INSERT INTO bodies (id, body) SELECT id, body FROM packages")
                db.execute("ALTER TABLE packages ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE packages SET size = LENGTH(body)")
                db.execute("ALTER TABLE packages DROP COLUMN body")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if version < 3 and db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0:
            try:  # incremental vacuum is set by a VACUUM; without room for it, the spool still works
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                db.execute("VACUUM")
            except sqlite3.OperationalError as exc:
                log.warning("%s: could not rebuild the spool for incremental vacuum (%s); freed pages stay"
                            " in the file", self.path, exc)

    def close(self) -> None:
        """Checkpoint and close."""
        self._db.close()

    def _index_journal(self) -> None:
        """Which journal rows hold unpackaged segments of which stream (RAM), from the database."""
        self._segments, self._outstanding = {}, {}
        cursors = {key: min(json.loads(c).values(), default=0)
                   for key, c in self._db.execute("SELECT key, cursors FROM streams")}
        done = []
        for rid, keys, dtypes, segments in self._db.execute("SELECT id, keys, dtypes, segments FROM journal ORDER BY id"):
            left = 0
            for seg in decode_journal(keys, dtypes, segments, None):
                if seg.end > cursors.get(seg.stream, -1):
                    self._segments.setdefault(seg.stream, _SegmentLog()).append(rid, seg.end)
                    left += 1
            if left:
                self._outstanding[rid] = left
            else:
                done.append(rid)
        self._deferred = done  # rows no stream needs: deleted by the next transaction (the disk may be full now)

    def _tx(self):
        return _Transaction(self._db)

    # -- writing --------------------------------------------------------------------

    def apply(self, ch: Changes) -> CommitResult:
        """Write all of it in one transaction (raises SpoolFull, rolled back, if it does not fit)."""
        started = time.perf_counter()
        now = time.time()
        res = CommitResult()
        try:
            self._apply(ch, now, res)
        except BaseException:
            if ch.journal or ch.streams:  # the RAM index followed the rolled-back rows: read it again
                self._index_journal()
            raise
        res.committed_at = time.time()
        res.seconds = time.perf_counter() - started
        if self.max_bytes:
            self._keep_files_small()
        return res

    def _apply(self, ch: Changes, now: float, res: CommitResult) -> None:
        with self._tx() as db:
            if ch.acks:
                res.acked = self._ack(db, ch.acks)
            for pid, at, error in ch.retries:
                db.execute("UPDATE packages SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                           " WHERE id = ?", (at, error[:1000], pid))
            for pid, reason, status in ch.dead:
                self._dead_letter(db, pid, reason, status, now)
            if self.max_bytes and ch.grows():
                self._make_room(db, ch, res)
            if ch.packages:
                self._insert_packages(db, ch.packages, now, res)
            if ch.journal:
                rid = db.execute("INSERT INTO journal (keys, dtypes, segments, samples) VALUES (?,?,?,?)",
                                 encode_journal(ch.journal)).lastrowid
                for j in ch.journal:
                    self._segments.setdefault(j.stream, _SegmentLog()).append(rid, j.end)
                self._outstanding[rid] = len(ch.journal)
            if ch.gaps:
                _values(db, "INSERT INTO gaps (device, stream, start, missing, detected_at)",
                        [(g.device, g.stream, g.start, g.missing, g.detected_at) for g in ch.gaps])
            if ch.streams:
                latest = {s.key: s for s in ch.streams}  # a later row of a stream wins
                _values(db, "INSERT INTO streams (key, device, info, next_counter, cursors, clock_offset, updated_at)",
                        [(s.key, s.device, json.dumps(s.info), s.next_counter, json.dumps(s.cursors), s.clock_offset,
                          now) for s in latest.values()],
                        " ON CONFLICT (key) DO UPDATE SET device=excluded.device, info=excluded.info,"
                        " next_counter=MAX(next_counter, excluded.next_counter), cursors=excluded.cursors,"
                        " clock_offset=excluded.clock_offset, updated_at=excluded.updated_at")
                done = []  # journal rows whose every segment is packaged now
                for st in latest.values():
                    log_ = self._segments.get(st.key)
                    if log_ is None or not st.cursors:
                        continue
                    for rid in log_.pop_upto(min(st.cursors.values())):
                        left = self._outstanding.get(rid, 1) - 1
                        if left:
                            self._outstanding[rid] = left
                        else:
                            self._outstanding.pop(rid, None)
                            done.append(rid)
                    if not log_:
                        del self._segments[st.key]
                if done:
                    _delete_ids(db, "journal", done)
            if self._deferred:
                _delete_ids(db, "journal", self._deferred)
                self._deferred = []
            for key, uplink, size in res.evicted:
                self._bump(db, "evicted")
                self._bump(db, "evicted_bytes", size)

    def _ack(self, db: sqlite3.Connection, ids: list[int]) -> int:
        acked = 0
        for k in range(0, len(ids), MAX_VARIABLES):
            part = ids[k:k + MAX_VARIABLES]
            marks = ",".join("?" * len(part))
            for uplink, n in db.execute(f"SELECT uplink, COUNT(*) FROM packages WHERE id IN ({marks}) GROUP BY uplink",
                                        part).fetchall():
                self._bump(db, f"acked:{uplink}", n)
                acked += n
            _delete_ids(db, "packages", part)
            _delete_ids(db, "bodies", part)
        return acked

    def _insert_packages(self, db: sqlite3.Connection, packages: list[Package], now: float,
                         res: CommitResult) -> None:
        """Insert the new ones (a key already pending for its uplink is a duplicate), bodies beside them."""
        ids = dict(_values(db, "INSERT INTO packages (uplink, key, kind, stream, first, end, sample_time, created_at,"
                               " content_type, size, evictable)",
                           [(p.uplink, p.key, p.kind, p.stream, p.first, p.end, p.sample_time, now, p.content_type,
                             len(p.body) if p.body is not None else 0, int(p.evictable)) for p in packages],
                           " ON CONFLICT (uplink, key) DO NOTHING RETURNING uplink || char(0) || key, id"))
        bodies = []
        for i, p in enumerate(packages):
            pid = ids.pop(f"{p.uplink}\0{p.key}", None)
            if pid is None:
                res.duplicates += 1
                res.duplicate_indices.append(i)
            else:
                bodies.append((pid, p.body))
                res.added += 1
        if bodies:
            _values(db, "INSERT INTO bodies (id, body)", bodies)

    def _dead_letter(self, db: sqlite3.Connection, pid: int, reason: str, status: int | None, now: float) -> None:
        db.execute(
            "INSERT INTO dead_letters (uplink, key, kind, stream, first, end, sample_time, created_at,"
            " content_type, body, attempts, status, reason, failed_at)"
            " SELECT p.uplink, p.key, p.kind, p.stream, p.first, p.end, p.sample_time, p.created_at, p.content_type,"
            " b.body, p.attempts + 1, ?, ?, ? FROM packages p JOIN bodies b ON b.id = p.id WHERE p.id = ?",
            (status, reason[:2000], now, pid))
        db.execute("DELETE FROM packages WHERE id = ?", (pid,))
        db.execute("DELETE FROM bodies WHERE id = ?", (pid,))

    # -- space ------------------------------------------------------------------------

    def wal_bytes(self) -> int:
        """Size of the WAL file."""
        try:
            return os.stat(f"{self.path}-wal").st_size
        except OSError:
            return 0

    def checkpoint(self) -> tuple[bool, int, int]:
        """Copy what the WAL holds into the database (PASSIVE: never waits for, nor blocks, a writer);
        returns (busy: another checkpoint ran, frames the WAL held, frames now in the database)."""
        busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return bool(busy), frames, copied

    def relieve(self) -> bool:
        """On a full disk: give back what the files hold without need (the WAL's frames, once copied
        into the database, and free pages). False if the checkpoint found no room (the next try may)."""
        ok = True
        for sql in ("PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA incremental_vacuum"):
            try:
                rows = self._db.execute(sql).fetchall()
                if sql.endswith("(TRUNCATE)") and rows and rows[0][0]:  # busy: a reader held it back
                    ok = False
            except sqlite3.Error as exc:
                log.debug("spool relief step %s failed: %s", sql, exc)
                ok = ok and not sql.endswith("(TRUNCATE)")
        return ok

    def used_bytes(self) -> int:
        """Bytes of database pages in use (free pages, which are reused, not counted)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.page_size

    @property
    def db_budget(self) -> int:
        """What the database file may use of the cap: the rest is the WAL's, the index's and the reserve's."""
        return self.max_bytes - self.wal_budget - SHM_BYTES - self.reserve_bytes

    def _estimate(self, ch: Changes) -> int:
        rows = len(ch.packages) * 2 + len(ch.journal) + len(ch.gaps) + len(ch.streams) * 2 + len(ch.dead)
        pages = len(ch.packages) + len(ch.dead)  # a body's last overflow page is part-filled
        dead = 0
        if ch.dead:
            ids = [d[0] for d in ch.dead]
            dead = self._db.execute(f"SELECT COALESCE(SUM(size), 0) FROM packages WHERE id IN"
                                    f" ({','.join('?' * len(ids))})", ids).fetchone()[0]
        return (sum(len(p.body or b"") for p in ch.packages) + sum(j.samples.nbytes for j in ch.journal) + dead
                + rows * ROW_OVERHEAD + pages * self.page_size)

    def _make_room(self, db: sqlite3.Connection, ch: Changes, res: CommitResult) -> None:
        """Evict waveforms, oldest first, until this transaction fits the cap; SpoolFull if it cannot."""
        over = self.used_bytes() + self._estimate(ch) - self.db_budget
        if over <= 0:
            return
        victims = []
        for pid, uplink, key, size in db.execute(
                "SELECT id, uplink, key, size FROM packages WHERE evictable = 1 ORDER BY created_at, id"):
            victims.append((pid, uplink, key, size))
            over -= size + ROW_OVERHEAD * 2
            if over <= 0:
                break
        if over > 0:
            raise SpoolFull(f"the spool's {self.max_bytes / 1e6:.1f} MB cap is reached by events, journal and"
                            " dead letters, which are never evicted")
        for pid, uplink, key, size in victims:
            db.execute("DELETE FROM packages WHERE id = ?", (pid,))
            db.execute("DELETE FROM bodies WHERE id = ?", (pid,))
            res.evicted.append((key, uplink, size))

    def _keep_files_small(self) -> None:
        """Past its budget the WAL is checkpointed and truncated; free pages past the cap go back to the disk."""
        if not self.background_checkpoints and self.wal_bytes() > self.wal_budget:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size > self.db_budget:
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            if free:
                self._db.execute(f"PRAGMA incremental_vacuum({free})")

    # -- the single-step API (tools, tests) -------------------------------------------

    def commit(self, *, packages: Iterable[Package] = (), journal: Iterable[JournalRow] = (),
               streams: Iterable[StreamRow] = (), gaps: Iterable[GapRow] = ()) -> int:
        """Store all of it in one transaction; return how many packages were new.

        A package whose (uplink, key) is already spooled is not stored twice.
        """
        res = self.apply(Changes(list(packages), list(journal), list(streams), list(gaps)))
        log_evictions(res, self.max_bytes)
        return res.added

    def ack(self, package_id: int) -> None:
        """The receiver acknowledged the package: delete it."""
        self.apply(Changes(acks=[package_id]))

    def retry_later(self, package_id: int, at: float, error: str) -> None:
        """A transient failure: try again at `at`."""
        self.apply(Changes(retries=[(package_id, at, error)]))

    def dead_letter(self, package_id: int, reason: str, status: int | None) -> None:
        """The receiver refused the package for good: move it to dead_letters with the reason."""
        self.apply(Changes(dead=[(package_id, reason, status)]))

    def requeue_dead(self, uplink: str | None = None) -> int:
        """Move dead letters back into the outbox (after fixing their cause); return how many."""
        where, args = ("WHERE uplink = ?", (uplink,)) if uplink else ("", ())
        now = time.time()
        n = 0
        with self._tx() as db:
            rows = db.execute(f"SELECT id, uplink, key, kind, stream, first, end, sample_time, created_at,"
                              f" content_type, body FROM dead_letters {where} ORDER BY id", args).fetchall()
            for did, up, key, kind, stream, first, end, sample_time, created_at, ctype, body in rows:
                cur = db.execute(
                    "INSERT INTO packages (uplink, key, kind, stream, first, end, sample_time, created_at,"
                    " content_type, size) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (uplink, key) DO NOTHING",
                    (up, key, kind, stream, first, end, sample_time, created_at or now, ctype, len(body)))
                if cur.rowcount:
                    db.execute("INSERT INTO bodies (id, body) VALUES (?, ?)", (cur.lastrowid, body))
                db.execute("DELETE FROM dead_letters WHERE id = ?", (did,))
                n += 1
        return n

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int = 1) -> None:
        db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                   " SET value = value + excluded.value", (name, by))

    # -- reading --------------------------------------------------------------------

    def due(self, uplink: str, now: float, limit: int = 16, exclude: Iterable[int] = (),
            busy_streams: Iterable[str] | None = None) -> list[StoredPackage]:
        """Packages of `uplink` whose next attempt is due, oldest first, but those in `exclude`.

        With `busy_streams` (the uplinks pass the streams they are sending): the oldest due package of
        each other stream only, so a stream's packages go out one at a time, in order.
        """
        skip = list(exclude)
        cond = f" AND p.id NOT IN ({','.join('?' * len(skip))})" if skip else ""
        args: list[Any] = [uplink, now, *skip]
        if busy_streams is None:
            where = f"p.uplink = ? AND p.next_attempt_at <= ?{cond}"
        else:
            busy = list(busy_streams)
            cond += f" AND p.stream NOT IN ({','.join('?' * len(busy))})" if busy else ""
            args += busy
            where = (f"p.id IN (SELECT MIN(p.id) FROM packages p WHERE p.uplink = ? AND p.next_attempt_at <= ?{cond}"
                     " GROUP BY p.stream)")
        rows = self._db.execute(
            "SELECT p.id, p.uplink, p.key, p.kind, p.stream, p.first, p.end, p.sample_time, p.content_type, b.body,"
            " p.created_at, p.attempts, p.evictable FROM packages p JOIN bodies b ON b.id = p.id"
            f" WHERE {where} ORDER BY p.next_attempt_at, p.id LIMIT ?", (*args, limit)).fetchall()
        return [StoredPackage(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bytes(r[9]), bool(r[12]), id=r[0],
                              created_at=r[10], attempts=r[11]) for r in rows]

    def next_attempt(self, uplink: str) -> float | None:
        """When the earliest pending package of `uplink` is due, or None if none is pending."""
        row = self._db.execute("SELECT MIN(next_attempt_at) FROM packages WHERE uplink = ?", (uplink,)).fetchone()
        return row[0]

    def stream(self, key: str) -> StreamRow | None:
        """The durable state of one stream."""
        row = self._db.execute("SELECT key, device, info, next_counter, cursors, clock_offset FROM streams"
                               " WHERE key = ?", (key,)).fetchone()
        return _stream_row(row) if row else None

    def _journal_segments(self, with_samples: bool) -> list[JournalRow | _SegmentInfo]:
        cols = "keys, dtypes, segments, samples" if with_samples else "keys, dtypes, segments, NULL"
        out: list = []
        for row in self._db.execute(f"SELECT {cols} FROM journal ORDER BY id"):
            out += decode_journal(*row)
        return out

    def streams(self) -> dict[str, StreamRow]:
        """The durable state of every stream, by key; next_counter counts the journal too."""
        ends: dict[str, int] = {}
        for seg in self._journal_segments(False):
            ends[seg.stream] = max(ends.get(seg.stream, 0), seg.end)
        out = {}
        for row in self._db.execute("SELECT key, device, info, next_counter, cursors, clock_offset FROM streams"):
            s = _stream_row(row)
            s.next_counter = max(s.next_counter, ends.get(s.key, 0))
            out[s.key] = s
        return out

    def recover(self) -> list[Recovered]:
        """Streams with journaled samples not yet packaged for every uplink, with their rows in order."""
        by_stream: dict[str, list[JournalRow]] = {}
        for seg in self._journal_segments(True):
            by_stream.setdefault(seg.stream, []).append(seg)
        out = []
        for key in sorted(by_stream):
            stream = self.stream(key)
            if stream is None:
                continue
            done = min(stream.cursors.values(), default=0)
            rows = sorted((r for r in by_stream[key] if r.end > done), key=lambda r: r.first)
            if rows:
                stream.next_counter = max(stream.next_counter, rows[-1].end)
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

    def stats(self, journal: bool = True) -> dict[str, Any]:
        """Backlog per uplink (count, bytes, oldest), dead letters, gaps, acks, disk use (and the journal)."""
        now = time.time()
        per_uplink: dict[str, dict[str, Any]] = {}
        for uplink, n, size, oldest, failing in self._db.execute(
                "SELECT uplink, COUNT(*), SUM(size), MIN(created_at), SUM(attempts > 0) FROM packages GROUP BY uplink"):
            per_uplink[uplink] = {"pending": n, "bytes": size or 0, "oldest_age_s": round(now - oldest, 3),
                                  "retrying": failing or 0}
        counters = dict(self._db.execute("SELECT name, value FROM counters"))
        for name, value in counters.items():
            if name.startswith("acked:"):
                per_uplink.setdefault(name[6:], {"pending": 0, "bytes": 0, "oldest_age_s": 0.0, "retrying": 0})
                per_uplink[name[6:]]["acked"] = value
        for uplink, n in self._db.execute("SELECT uplink, COUNT(*) FROM dead_letters GROUP BY uplink"):
            per_uplink.setdefault(uplink, {"pending": 0, "bytes": 0, "oldest_age_s": 0.0, "retrying": 0})["dead"] = n
        for entry in per_uplink.values():
            entry.setdefault("acked", 0)
            entry.setdefault("dead", 0)
        dead, dead_bytes = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM dead_letters"
                                            ).fetchone()
        (gaps, missing) = self._db.execute("SELECT COUNT(*), COALESCE(SUM(missing), 0) FROM gaps").fetchone()
        out = {"uplinks": per_uplink, "dead_letters": dead, "dead_letter_bytes": dead_bytes, "gaps": gaps,
               "missing_samples": missing, "file_bytes": file_bytes(self.path), "used_bytes": self.used_bytes(),
               "max_bytes": self.max_bytes, "evicted": counters.get("evicted", 0),
               "evicted_bytes": counters.get("evicted_bytes", 0)}
        if journal:  # a scan of the journal: the daemon's status counts it from RAM instead
            streams = {k: min(v.cursors.values(), default=0) for k, v in self.streams().items()}
            out["journal_samples"] = sum(max(0, seg.end - max(seg.first, streams.get(seg.stream, 0)))
                                         for seg in self._journal_segments(False))
        return out


def _delete_ids(db: sqlite3.Connection, table: str, ids: list[int]) -> None:
    """DELETE rows by id, a statement per MAX_VARIABLES ids."""
    for k in range(0, len(ids), MAX_VARIABLES):
        part = ids[k:k + MAX_VARIABLES]
        db.execute(f"DELETE FROM {table} WHERE id IN ({','.join('?' * len(part))})", part)


def _values(db: sqlite3.Connection, head: str, rows: list[tuple], tail: str = "") -> list[tuple]:
    """`head VALUES (..),(..) tail` in as few statements as SQLite's variable limit allows (rows returned
    by a RETURNING tail). One statement is one trip for the GIL; executemany makes one per row, and
    behind a busy event loop each trip waits up to the switch interval (600 rows: 1 ms idle, 0.6 s busy)."""
    if not rows:
        return []
    ncols = len(rows[0])
    per = max(1, MAX_VARIABLES // ncols)
    one = "(" + ",".join("?" * ncols) + ")"
    out: list[tuple] = []
    for k in range(0, len(rows), per):
        chunk = rows[k:k + per]
        cur = db.execute(f"{head} VALUES {','.join([one] * len(chunk))}{tail}", [v for r in chunk for v in r])
        if tail and "RETURNING" in tail:
            out += cur.fetchall()
    return out


def log_evictions(res: CommitResult, max_bytes: int) -> None:
    """One warning per evicted package, once its transaction has committed."""
    for key, uplink, size in res.evicted:
        log.warning("spool at its %.1f MB cap: evicted waveform package %s for %s (%d bytes, never sent)",
                    max_bytes / 1e6, key, uplink, size)


def _stream_row(row: tuple) -> StreamRow:
    key, device, info, next_counter, cursors, clock_offset = row
    return StreamRow(key, device, json.loads(info), next_counter, json.loads(cursors), clock_offset)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")


T = TypeVar("T")


@dataclass
class _Write:
    """One write() waiting for its transaction."""

    changes: Changes
    future: asyncio.Future
    acks_only: bool  # frees room or rewrites small rows only: may go ahead of growing writes when full
    size: int = 0  # its payload bytes (what RAM holds while it waits)


class AsyncSpool:
    """The spool for asyncio code: a group-commit writer on one thread, reads on another.

    `write(changes)` queues the changes for the next transaction and returns a future that is
    done when they are durable; every write queued while a transaction runs goes into the next
    one. A transaction refused for space (the cap, a full disk) keeps its writes, in order, in
    RAM, and `full` says why: then acknowledgements (which free room) go ahead on their own, the
    files give back what they can (`Spool.relieve`; the reserve if even that fails), and the held
    writes are retried every `retry_s`, oldest first and one at a time, so that each commits as
    soon as the room for it returns. Each write is consistent on its own (its stream rows claim
    only packages it or an earlier write holds), so committing them one by one loses nothing.
    """

    def __init__(self, path: str | Path, sync: str = "full", max_bytes: int = 0, retry_s: float = 1.0) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-read")
        self._checkpoints = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-checkpoint")
        self.spool: Spool = self._pool.submit(Spool, path, sync, max_bytes, False, True).result()
        self.reader: Spool = self._reads.submit(Spool, path, sync, 0, True).result()
        self._checkpointer: Spool = self._checkpoints.submit(Spool, path, sync, max_bytes).result()
        # Checkpoint when the WAL passes this, or a quarter of the free disk: a WAL left to grow holds
        # everything, and on a full disk it could not be copied into the database any more.
        self.checkpoint_at = self.spool.wal_budget // 2 if max_bytes else CHECKPOINT_BYTES
        self._checkpointing = False
        self._catch_up = False  # a background checkpoint finished: the writer copies what came since
        # What the WAL holds since it last started over, estimated from the commits made since: their
        # payload, and the pages of rows, indexes and maps each touches (learned at each catch-up).
        self._wal_commits = 0
        self._wal_payload = 0
        self._overhead_pages = 4.0
        self._wal_file = 0  # the WAL file's size at the last commit: growing past CHECKPOINT_BYTES is late
        # Room kept beside the spool, given up when even acknowledgements cannot commit on a full disk
        # (a delete needs WAL space too), so that the spool can always shrink.
        self.reserve = Path(f"{self.spool.path}-reserve")
        self.reserve_bytes = self.spool.reserve_bytes
        self._take_reserve()
        self.retry_s = retry_s
        self._listeners: list[Callable[[], None]] = []
        self._queue: list[_Write] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.committing = False
        self.full: str | None = None  # why growing changes are held in RAM now
        self.fatal: BaseException | None = None
        self.counters: dict[str, int] = {"commits": 0, "refused_commits": 0, "evicted": 0, "reserve_used": 0,
                                         "checkpoints": 0}
        self.on_result: Callable[[CommitResult], None] | None = None
        self.closed = False
        self._progress: asyncio.Event | None = None

    async def progress(self) -> None:
        """Until the writer finishes (or is refused) its current transaction."""
        if self._progress is None:
            self._progress = asyncio.Event()
        self._progress.clear()
        await self._progress.wait()

    def _progressed(self) -> None:
        if self._progress is not None:
            self._progress.set()

    # -- the writer -----------------------------------------------------------------------

    def write(self, changes: Changes) -> asyncio.Future:
        """Queue changes for the next transaction; the future's result is its CommitResult."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self.fatal is not None:
            fut.set_exception(SpoolError(f"the spool failed: {self.fatal}"))
            return fut
        # An empty write (flush) waits for everything before it, whatever is held back.
        self._queue.append(_Write(changes, fut, bool(changes) and not changes.grows(), changes.payload_bytes()))
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._writer(), name="spool writer")
        self._wake.set()
        return fut

    @property
    def pending_bytes(self) -> int:
        """Payload bytes waiting for a transaction (held in RAM)."""
        return sum(w.size for w in self._queue)

    @property
    def backlog(self) -> bool:
        """True while changes wait for a transaction."""
        return any(w.changes for w in self._queue)

    def _take(self) -> list[_Write]:
        """The writes of the next transaction: all of them; when full, the oldest and the acknowledgements."""
        if self.full is None:
            taken, self._queue = self._queue, []
            return taken
        taken = [w for i, w in enumerate(self._queue) if i == 0 or w.acks_only]
        self._queue = [w for i, w in enumerate(self._queue) if not (i == 0 or w.acks_only)]
        return taken

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            writes = self._take()
            batch, offsets = Changes(), []
            for w in writes:
                offsets.append(len(batch.packages))
                batch.extend(w.changes)
            if not batch:  # flushes only: everything before them is already durable
                for w in writes:
                    if not w.future.done():
                        w.future.set_result(CommitResult(committed_at=time.time()))
                continue
            self.committing = True
            try:
                result = await loop.run_in_executor(self._pool, self._apply, batch)
            except BaseException as exc:  # noqa: BLE001 - every failure is sorted below
                self.committing = False
                self._progressed()
                if not is_space_error(exc):
                    self._fail(exc, writes)
                    return
                await self._refused(exc, writes)
                continue
            self.committing = False
            self._progressed()
            self._committed(result, writes, offsets)
            self._maybe_checkpoint()
            if self.full and not any(w.changes.grows() for w in self._queue):
                log.warning("spool writable again: every held change is committed")
                self.full = None
                self._take_reserve()

    async def _refused(self, exc: BaseException, writes: list[_Write]) -> None:
        """No room: commit what frees room on its own, give back what the files can, keep the rest in order."""
        loop = asyncio.get_running_loop()
        self.counters["refused_commits"] += 1
        if self.full is None:
            self.full = str(exc)
            log.error("spool cannot take more (%s); holding changes in RAM and retrying every %.0f s",
                      exc, self.retry_s)
        acks = [w for w in writes if w.acks_only]
        held = [w for w in writes if not w.acks_only]
        if acks:
            batch, offsets = Changes(), []
            for w in acks:
                offsets.append(len(batch.packages))
                batch.extend(w.changes)
            for attempt in range(2):
                try:
                    result = await loop.run_in_executor(self._pool, self.spool.apply, batch)
                    self._committed(result, acks, offsets)
                    acks = []
                    break
                except BaseException as exc2:  # noqa: BLE001
                    if not is_space_error(exc2):
                        self._fail(exc2, writes)
                        return
                    if attempt or not self._give_up_reserve():
                        break
        # Whatever the acknowledgements freed goes back to the file system, for the next try; the
        # checkpoint needs room in the database file for what the WAL holds: the reserve gives it.
        if not await loop.run_in_executor(self._pool, self.spool.relieve) and self._give_up_reserve():
            await loop.run_in_executor(self._pool, self.spool.relieve)
        self._queue = held + acks + self._queue  # the oldest first again; what came meanwhile after
        await asyncio.sleep(self.retry_s)

    def _take_reserve(self) -> None:
        """Keep RESERVE_BYTES aside, if the disk has room for them (and some more)."""
        if self.reserve.exists():
            return
        try:
            st = os.statvfs(self.reserve.parent)
            if st.f_bavail * st.f_frsize < 2 * self.reserve_bytes:
                return
            with open(self.reserve, "wb") as f:
                f.write(b"\0" * self.reserve_bytes)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self.reserve.unlink(missing_ok=True)

    def _give_up_reserve(self) -> bool:
        """Free the reserve so that acknowledgements can commit; False if there is none."""
        if not self.reserve.exists():
            return False
        self.reserve.unlink(missing_ok=True)
        self.counters["reserve_used"] += 1
        log.warning("spool: disk full; gave up its %s reserve to commit what frees room",
                    _mb(self.reserve_bytes))
        return True

    def _maybe_checkpoint(self) -> None:
        if self._checkpointing or self._catch_up:  # the writer's catch-up, still due, ends the last one
            return
        # What the WAL holds since it last started over, estimated: its file keeps its size after a
        # checkpoint, and its index (the -shm file) must not be opened here, for closing any descriptor
        # of it would drop SQLite's locks on it (POSIX), and another process could then reset it.
        wal = self._wal_estimate
        size, self._wal_file = self._wal_file, self.spool.wal_bytes()
        if self._wal_file > max(size, self.checkpoint_at):
            wal = max(wal, self.checkpoint_at)  # the file grows past the mark: the estimate was short
        if self.spool.max_bytes and self._wal_file > self.spool.wal_budget:
            wal = max(wal, self.checkpoint_at)  # the file passed its share of the cap: now
        if wal < self.checkpoint_at:
            try:
                st = os.statvfs(self.spool.path.parent)
            except OSError:
                return
            if wal < st.f_bavail * st.f_frsize // 4:
                return
        self._checkpointing = True

        def run() -> None:
            try:
                self._checkpointer.checkpoint()
            except sqlite3.Error as exc:  # a full disk: the WAL keeps it, and the next one tries again
                log.debug("spool checkpoint failed: %s", exc)

        def done(_f) -> None:
            self._checkpointing = False
            self._catch_up = True
            self.counters["checkpoints"] += 1

        asyncio.get_running_loop().run_in_executor(self._checkpoints, run).add_done_callback(done)

    def _apply(self, batch: Changes) -> CommitResult:
        """The writer's job. SQLite starts the WAL over only if, when a write begins, every frame in it
        is in the database: the background checkpoint copies the bulk while commits go on, so the
        writer copies the few frames committed meanwhile first (PASSIVE: cheap), and then the WAL
        file is written from its start again instead of growing."""
        if self._catch_up:
            try:
                busy, frames, copied = self.spool.checkpoint()
                if not busy and copied == frames:  # the write below starts the WAL over
                    self._catch_up = False
                    self._learn_overhead(frames)
                    self._wal_commits = self._wal_payload = 0
            except sqlite3.Error as exc:
                self._catch_up = False  # a full disk: the next background checkpoint tries again
                log.debug("spool catch-up checkpoint failed: %s", exc)
        self._wal_commits += 1
        self._wal_payload += batch.payload_bytes()
        return self.spool.apply(batch)

    @property
    def _wal_estimate(self) -> int:
        frame = self.spool.page_size + WAL_FRAME_HEADER
        return int(self._wal_payload * frame / self.spool.page_size + self._wal_commits * self._overhead_pages * frame)

    def _learn_overhead(self, frames: int) -> None:
        """Frames per commit beyond the payload's, from what the WAL held at a catch-up (smoothed)."""
        if not frames or not self._wal_commits:
            return
        extra = frames - self._wal_payload / self.spool.page_size
        per = min(256.0, max(1.0, extra / self._wal_commits))
        self._overhead_pages = 0.5 * self._overhead_pages + 0.5 * per

    def _committed(self, result: CommitResult, writes: list[_Write], offsets: list[int]) -> None:
        self.counters["commits"] += 1
        self.counters["evicted"] += len(result.evicted)
        log_evictions(result, self.spool.max_bytes)
        if self.on_result:
            self.on_result(result)
        for w, offset in zip(writes, offsets):
            if not w.future.done():
                w.future.set_result(result.for_range(offset, len(w.changes.packages)))
        if result.added:
            for listener in self._listeners:
                listener()

    def _fail(self, exc: BaseException, writes: list[_Write]) -> None:
        self.fatal = exc
        for w in writes + self._queue:
            if not w.future.done():
                w.future.set_exception(exc)
        self._queue = []

    async def flush(self) -> CommitResult | None:
        """Wait until everything written so far is durable."""
        if not self._queue and not self.committing:
            return None
        return await self.write(Changes())

    async def delivered(self, uplinks: Iterable[str], timeout: float) -> bool:
        """Wait until none of these uplinks has a package pending (each delivered or dead-lettered);
        False on timeout."""
        names = list(uplinks)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.flush()
            backlog = (await self.read(self.reader.stats, journal=False))["uplinks"]
            if not any(backlog.get(name, {}).get("pending") for name in names):
                return True
            await asyncio.sleep(0.05)
        return False

    # -- other calls ----------------------------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn (a method of `spool`, the writing connection) on the writer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args, **kwargs))

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn (a method of `reader`, a read-only connection) on the reading thread: never behind commits."""
        return await asyncio.get_running_loop().run_in_executor(self._reads, partial(fn, *args, **kwargs))

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the loop) after each commit that added packages."""
        self._listeners.append(listener)

    def off_commit(self, listener: Callable[[], None]) -> None:
        """Stop calling `listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def commit(self, **parts: Any) -> int:
        """Write changes and wait until they are durable; return how many packages were new."""
        result = await self.write(Changes(**parts))
        return result.added

    async def close(self) -> None:
        """Commit what is pending (if it can), close the database and stop the threads; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            if self._queue and self.fatal is None and self.full is None:
                try:
                    await asyncio.wait_for(self.flush(), 30.0)
                except (asyncio.TimeoutError, SpoolError, sqlite3.Error) as exc:
                    log.error("spool: changes not committed at close: %s", exc)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.backlog:
            log.error("spool closed with %s of changes it could not commit (%s)", _mb(self.pending_bytes),
                      self.full or self.fatal)
        await self.read(self.reader.close)
        await asyncio.get_running_loop().run_in_executor(self._checkpoints, self._checkpointer.close)
        await self.call(self.spool.close)
        self._pool.shutdown(wait=True)
        self._reads.shutdown(wait=True)
        self._checkpoints.shutdown(wait=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"
