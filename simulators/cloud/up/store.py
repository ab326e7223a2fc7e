"""The UP emulator's store: cardiac events per user, who created them, idempotency keys."""

from __future__ import annotations

import secrets
import string
import time
from pathlib import Path
from typing import Any

from simulators.cloud.store import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    xid TEXT NOT NULL UNIQUE,
    user_xid TEXT NOT NULL,
    client_id TEXT NOT NULL,
    title TEXT NOT NULL,
    heart_rate INTEGER,
    systolic_pressure INTEGER,
    diastolic_pressure INTEGER,
    note TEXT,
    image TEXT,
    time_created INTEGER NOT NULL,
    time_updated INTEGER NOT NULL,
    time_removed INTEGER NOT NULL DEFAULT 0,
    tz TEXT NOT NULL,
    date INTEGER NOT NULL,
    idempotency_key TEXT,
    body_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_xid, time_removed, time_created, seq);
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (user_xid, client_id, idempotency_key);
"""

XID_ALPHABET = string.ascii_letters + string.digits + "_-"
TOKEN_SCALE = 10**9  # page_token = time_created * TOKEN_SCALE + seq
_COLUMNS = ("seq, xid, title, heart_rate, systolic_pressure, diastolic_pressure, note, image, time_created,"
            " time_updated, time_removed, tz, date, client_id")


def new_xid() -> str:
    """A 22-character event id like the vendor's."""
    return "".join(secrets.choice(XID_ALPHABET) for _ in range(22))


def page_token(time_created: int, seq: int) -> int:
    """The next-page token after an item: unique even when many items share a second."""
    return time_created * TOKEN_SCALE + seq


class KeyConflict(Exception):
    """An idempotency key reused with another body."""


class UpStore(SqliteStore):
    """Everything the UP emulator keeps."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)

    def create(self, user: str, client: str, event: dict[str, Any], key: str | None = None,
               body_sha256: str | None = None) -> tuple[dict, bool]:
        """Store an event (or find the one made with this idempotency key); (event, created)."""
        with self.tx() as db:
            if key is not None:
                row = db.execute(f"SELECT {_COLUMNS}, body_sha256 FROM events WHERE user_xid = ? AND client_id = ?"
                                 " AND idempotency_key = ?", (user, client, key)).fetchone()
                if row is not None:
                    if row[-1] != body_sha256:
                        raise KeyConflict(key)
                    return _event(row[:-1]), False
            xid, now = new_xid(), int(time.time())
            cur = db.execute(
                "INSERT INTO events (xid, user_xid, client_id, title, heart_rate, systolic_pressure, diastolic_pressure,"
                " note, image, time_created, time_updated, tz, date, idempotency_key, body_sha256)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (xid, user, client, event["title"], event["heart_rate"], event["systolic_pressure"],
                 event["diastolic_pressure"], event["note"], event["image"], event["time_created"], now, event["tz"],
                 event["date"], key, body_sha256))
            row = db.execute(f"SELECT {_COLUMNS} FROM events WHERE seq = ?", (cur.lastrowid,)).fetchone()
        return _event(row), True

    def get(self, user: str, xid: str) -> tuple[dict, str] | None:
        """(event, creating client) of a live event of this user, or None."""
        with self.read() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM events WHERE user_xid = ? AND xid = ? AND time_removed = 0",
                             (user, xid)).fetchone()
        return (_event(row), row[-1]) if row else None

    def remove(self, user: str, xid: str) -> None:
        """Mark an event removed (it leaves every list)."""
        now = int(time.time())
        with self.tx() as db:
            db.execute("UPDATE events SET time_removed = ?, time_updated = ? WHERE user_xid = ? AND xid = ?",
                       (now, now, user, xid))

    def list(self, user: str, limit: int, *, date: int | None = None, start: int | None = None,
             end: int | None = None, updated_after: int | None = None,
             before_token: int | None = None) -> tuple[list[dict], int | None]:
        """(events newest first, next page token or None)."""
        where, args = ["user_xid = ?", "time_removed = 0"], [user]
        if date is not None:
            where.append("date = ?")
            args.append(date)
        if start is not None:
            where.append("time_created BETWEEN ? AND ?")
            args += [start, end]
        if updated_after is not None:
            where.append("time_updated > ?")
            args.append(updated_after)
        if before_token is not None:
            if before_token < TOKEN_SCALE:  # a plain timestamp, as the vendor's doc describes the token
                where.append("time_created < ?")
                args.append(before_token)
            else:
                ts, seq = divmod(before_token, TOKEN_SCALE)
                where.append("(time_created < ? OR (time_created = ? AND seq < ?))")
                args += [ts, ts, seq]
        with self.read() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)}"
                              " ORDER BY time_created DESC, seq DESC LIMIT ?", (*args, limit + 1)).fetchall()
        page = rows[:limit]
        nxt = page_token(page[-1][8], page[-1][0]) if len(rows) > limit else None
        return [_event(r) for r in page], nxt


def _event(row: tuple) -> dict[str, Any]:
    (_seq, xid, title, hr, sys_p, dia_p, note, image, created, updated, removed, tz, date, _client) = row
    return {"xid": xid, "title": title, "type": "cardiac", "time_created": created, "time_updated": updated,
            "time_removed": removed, "date": date, "place_lat": None, "place_lon": None, "place_acc": None,
            "place_name": None, "image": image, "heart_rate": hr, "systolic_pressure": sys_p,
            "diastolic_pressure": dia_p, "note": note, "details": {"tz": tz}}
