"""The Hexoskin emulator's store: users and who sees whom, Tastypie objects, data chunks, idempotency keys.

Objects of every writable resource (record, range, annotation, track, trackpoint, profile)
are JSON bodies in one table, filtered in Python by the Tastypie rules. Data is kept as
chunks (one upload of one datatype): int64 timestamps and values as little-endian blobs,
indexed by record, datatype and time, so a window is read with a few rows, never per sample.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulators.cloud.store import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sees (      -- viewer sees owner's data (coach -> athlete, friends both ways)
    viewer INTEGER NOT NULL,
    owner INTEGER NOT NULL,
    PRIMARY KEY (viewer, owner)
);
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT NOT NULL,
    id INTEGER NOT NULL,
    user INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (resource, id)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    user INTEGER NOT NULL,
    record INTEGER NOT NULL,
    datatype INTEGER NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    n INTEGER NOT NULL,
    ts BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_record ON chunks (record, datatype, first);
CREATE INDEX IF NOT EXISTS chunks_user ON chunks (user, datatype, first);
CREATE TABLE IF NOT EXISTS idempotency (
    user INTEGER NOT NULL,
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    status INTEGER NOT NULL,
    location TEXT NOT NULL,
    answer TEXT NOT NULL,
    PRIMARY KEY (user, key)
);
"""

FIRST_IDS = {"user": 1500, "profile": 1450, "record": 43000, "range": 58000, "annotation": 61000, "track": 80,
             "trackpoint": 27000}


@dataclass(frozen=True)
class User:
    """An account."""

    id: int
    email: str
    first_name: str
    last_name: str


class KeyConflict(Exception):
    """An idempotency key reused with another body."""


class HexoskinStore(SqliteStore):
    """Everything the Hexoskin emulator keeps."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)
        self.version = 0  # bumped by every write: cached answers older than it are stale

    # Users -----------------------------------------------------------------------------

    def ensure_user(self, email: str, first_name: str = "", last_name: str = "") -> User:
        """The user with this e-mail, created (with a profile) if new."""
        with self.tx() as db:
            row = db.execute("SELECT id, email, first_name, last_name FROM users WHERE email = ?", (email,)).fetchone()
            if row:
                return User(*row)
            uid = db.execute("SELECT COALESCE(MAX(id), ?) + 1 FROM users", (FIRST_IDS["user"],)).fetchone()[0]
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?)", (uid, email, first_name, last_name))
            db.execute("INSERT OR IGNORE INTO sees VALUES (?, ?)", (uid, uid))
            self._insert(db, "profile", uid, {"date_of_birth": None, "gender": None, "height": None, "weight": None,
                                               "unit_system": "metric", "preferences": None})
        self.version += 1
        return User(uid, email, first_name, last_name)

    def let_see(self, viewer: int, owner: int) -> None:
        """Viewer sees owner's data from now on (a coach and an athlete; friends both ways)."""
        with self.tx() as db:
            db.execute("INSERT OR IGNORE INTO sees VALUES (?, ?)", (viewer, owner))
        self.version += 1

    def users(self) -> list[User]:
        """Every user."""
        with self.read() as db:
            return [User(*r) for r in db.execute("SELECT id, email, first_name, last_name FROM users ORDER BY id")]

    def user(self, uid: int) -> User | None:
        """One user by id."""
        with self.read() as db:
            row = db.execute("SELECT id, email, first_name, last_name FROM users WHERE id = ?", (uid,)).fetchone()
        return User(*row) if row else None

    def user_by_email(self, email: str) -> User | None:
        """One user by e-mail."""
        with self.read() as db:
            row = db.execute("SELECT id, email, first_name, last_name FROM users WHERE email = ?", (email,)).fetchone()
        return User(*row) if row else None

    def visible(self, viewer: int) -> set[int]:
        """The users whose data `viewer` sees, itself included."""
        with self.read() as db:
            return {r[0] for r in db.execute("SELECT owner FROM sees WHERE viewer = ?", (viewer,))} | {viewer}

    def update_user(self, uid: int, fields: dict[str, str]) -> None:
        """Change a user's names."""
        with self.tx() as db:
            for name in ("first_name", "last_name"):
                if name in fields:
                    db.execute(f"UPDATE users SET {name} = ? WHERE id = ?", (fields[name], uid))
        self.version += 1

    # Objects ---------------------------------------------------------------------------

    def _insert(self, db, resource: str, user: int, body: dict[str, Any], oid: int | None = None) -> int:
        if oid is None:
            oid = db.execute("SELECT COALESCE(MAX(id), ?) + 1 FROM objects WHERE resource = ?",
                             (FIRST_IDS.get(resource, 0), resource)).fetchone()[0]
        db.execute("INSERT INTO objects VALUES (?, ?, ?, ?)", (resource, oid, user, json.dumps(body)))
        return oid

    def create(self, resource: str, user: int, body: dict[str, Any]) -> int:
        """A new object; its id."""
        with self.tx() as db:
            oid = self._insert(db, resource, user, body)
        self.version += 1
        return oid

    def objects(self, resource: str, users: set[int]) -> list[dict[str, Any]]:
        """Every object of a resource owned by these users, with `id` and `user` filled in."""
        with self.read() as db:
            rows = db.execute("SELECT id, user, body FROM objects WHERE resource = ? ORDER BY id", (resource,))
            return [{**json.loads(b), "id": i, "user": u} for i, u, b in rows if u in users]

    def get(self, resource: str, oid: int) -> dict[str, Any] | None:
        """One object (any owner), or None."""
        with self.read() as db:
            row = db.execute("SELECT user, body FROM objects WHERE resource = ? AND id = ?", (resource, oid)).fetchone()
        return {**json.loads(row[1]), "id": oid, "user": row[0]} if row else None

    def replace(self, resource: str, oid: int, user: int, body: dict[str, Any]) -> None:
        """Store a new body for an object."""
        body = {k: v for k, v in body.items() if k not in ("id", "user")}
        with self.tx() as db:
            db.execute("UPDATE objects SET user = ?, body = ? WHERE resource = ? AND id = ?",
                       (user, json.dumps(body), resource, oid))
        self.version += 1

    def delete(self, resource: str, oid: int) -> None:
        """Delete an object (a record takes its data with it, a track its points)."""
        with self.tx() as db:
            db.execute("DELETE FROM objects WHERE resource = ? AND id = ?", (resource, oid))
            if resource == "record":
                db.execute("DELETE FROM chunks WHERE record = ?", (oid,))
            if resource == "track":
                db.execute("DELETE FROM objects WHERE resource = 'trackpoint' AND json_extract(body, '$.track') = ?",
                           (oid,))
        self.version += 1

    def find_record(self, user: int, device: str, start: int) -> dict[str, Any] | None:
        """The user's record of this device session, if any."""
        for rec in self.objects("record", {user}):
            if rec.get("device") == device and rec.get("start") == start:
                return rec
        return None

    # Data ------------------------------------------------------------------------------

    def add_chunks(self, user: int, record: int, series: dict[int, tuple[np.ndarray, np.ndarray]],
                   record_body: dict[str, Any], keyed: tuple[str, bytes, int, str, str] | None = None) -> None:
        """Store one upload's series (timestamps sorted), the record's new extent and the answer to
        its idempotency key (key, body, status, location, answer), in one transaction."""
        with self.tx() as db:
            if keyed:
                key, raw, status, location, answer = keyed
                db.execute("INSERT OR IGNORE INTO idempotency VALUES (?, ?, ?, ?, ?, ?)",
                           (user, key, hashlib.sha256(raw).hexdigest(), status, location, answer))
            for datatype, (ts, vals) in series.items():
                if len(ts) == 0:
                    continue
                db.execute("INSERT INTO chunks (user, record, datatype, first, last, n, ts, vals)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (user, record, datatype, int(ts[0]), int(ts[-1]), len(ts),
                            ts.astype("<i8").tobytes(), vals.astype("<i8").tobytes()))
            body = {k: v for k, v in record_body.items() if k not in ("id", "user")}
            db.execute("UPDATE objects SET body = ? WHERE resource = 'record' AND id = ?", (json.dumps(body), record))
        self.version += 1

    def series(self, datatype: int, start: int, end: int, *, record: int | None = None,
               user: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(timestamps, values) of a datatype in [start, end) of a record or a user, sorted, each time once."""
        where, args = ("record = ?", record) if record is not None else ("user = ?", user)
        with self.read() as db:
            rows = db.execute(f"SELECT ts, vals FROM chunks WHERE {where} AND datatype = ? AND last >= ? AND first < ?"
                              " ORDER BY first, id", (args, datatype, start, end)).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ts = np.concatenate([np.frombuffer(r[0], "<i8") for r in rows])
        vals = np.concatenate([np.frombuffer(r[1], "<i8") for r in rows])
        keep = (ts >= start) & (ts < end)
        ts, vals = ts[keep], vals[keep]
        ts, first = np.unique(ts, return_index=True)  # an upload sent twice without a key counts once
        return ts, vals[first]

    def datatypes(self, *, record: int | None = None, user: int | None = None) -> list[int]:
        """The datatypes a record (or a user) has data of."""
        where, arg = ("record = ?", record) if record is not None else ("user = ?", user)
        with self.read() as db:
            return [r[0] for r in db.execute(f"SELECT DISTINCT datatype FROM chunks WHERE {where} ORDER BY datatype",
                                             (arg,))]

    # Idempotency -----------------------------------------------------------------------

    def remembered(self, user: int, key: str, raw: bytes) -> tuple[int, str, str] | None:
        """(status, location, answer) of an earlier request with this key; KeyConflict if its body differed."""
        with self.read() as db:
            row = db.execute("SELECT digest, status, location, answer FROM idempotency WHERE user = ? AND key = ?",
                             (user, key)).fetchone()
        if row is None:
            return None
        if row[0] != hashlib.sha256(raw).hexdigest():
            raise KeyConflict(key)
        return row[1], row[2], row[3]


def now() -> float:
    """The emulator's clock (Unix seconds)."""
    return time.time()
