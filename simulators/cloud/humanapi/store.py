"""The Human API hub's store: every measurement the gateway delivered, per human."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from gateway.vendors import humanapi
from simulators.cloud.store import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    human TEXT NOT NULL,
    kind TEXT NOT NULL,
    timestamp REAL NOT NULL,
    tz_offset TEXT NOT NULL,
    source TEXT NOT NULL,
    source_id TEXT,
    fields TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    idempotency_key TEXT,
    body_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS measurements_list ON measurements (human, kind, timestamp, seq);
CREATE UNIQUE INDEX IF NOT EXISTS measurements_key ON measurements (human, idempotency_key);
"""
_COLUMNS = "id, human, kind, timestamp, tz_offset, source, source_id, fields, created_at, updated_at"


class KeyConflict(Exception):
    """An idempotency key reused with another body."""


class HubStore(SqliteStore):
    """Everything the hub keeps."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)

    def ingest(self, human: str, kind: str, m: dict[str, Any], key: str | None, body_sha256: str) -> tuple[dict, bool]:
        """Store a validated measurement unless the key was seen; (object, created)."""
        with self.tx() as db:
            if key is not None:
                row = db.execute(f"SELECT {_COLUMNS}, body_sha256 FROM measurements WHERE human = ?"
                                 " AND idempotency_key = ?", (human, key)).fetchone()
                if row is not None:
                    if row[-1] != body_sha256:
                        raise KeyConflict(key)
                    return _object(row[:-1]), False
            mid, now = secrets.token_hex(12), time.time()  # 24 hex digits, like the vendor's ids
            db.execute(f"INSERT INTO measurements ({_COLUMNS}, idempotency_key, body_sha256)"
                       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (mid, human, kind, m["timestamp"], m["tzOffset"], m["source"], m["sourceId"],
                        json.dumps(m["fields"]), now, now, key, body_sha256))
            row = db.execute(f"SELECT {_COLUMNS} FROM measurements WHERE id = ?", (mid,)).fetchone()
        return _object(row), True

    def get(self, human: str, kind: str, mid: str) -> dict | None:
        """One measurement of this human and kind."""
        with self.read() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM measurements WHERE human = ? AND kind = ? AND id = ?",
                             (human, kind, mid)).fetchone()
        return _object(row) if row else None

    def list(self, human: str, kind: str, limit: int, offset: int, filters: dict[str, Any]) -> tuple[list[dict], int]:
        """(page newest first, total matching)."""
        where, args = ["human = ?", "kind = ?"], [human, kind]
        for name, column, op in (("created_since", "created_at", ">"), ("created_before", "created_at", "<"),
                                 ("updated_since", "updated_at", ">"), ("updated_before", "updated_at", "<"),
                                 ("from", "timestamp", ">="), ("until", "timestamp", "<")):
            if filters.get(name) is not None:
                where.append(f"{column} {op} ?")
                args.append(filters[name])
        if filters.get("source") is not None:
            where.append("source = ?")
            args.append(filters["source"])
        clause = " AND ".join(where)
        with self.read() as db:
            (total,) = db.execute(f"SELECT COUNT(*) FROM measurements WHERE {clause}", args).fetchone()
            rows = db.execute(f"SELECT {_COLUMNS} FROM measurements WHERE {clause}"
                              " ORDER BY timestamp DESC, seq DESC LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return [_object(r) for r in rows], total

    def summary(self, human: str) -> dict[str, Any]:
        """The /v1/human object: the latest of each kind and when the human's data changed."""
        with self.read() as db:
            first, last = db.execute("SELECT MIN(created_at), MAX(updated_at) FROM measurements WHERE human = ?",
                                     (human,)).fetchone()
            latest = {}
            for kind in humanapi.TYPES:
                row = db.execute(f"SELECT {_COLUMNS} FROM measurements WHERE human = ? AND kind = ?"
                                 " ORDER BY timestamp DESC, seq DESC LIMIT 1", (human, kind)).fetchone()
                latest[humanapi.SUMMARY_NAMES[kind]] = _object(row) if row else None
        return {"id": human, "userId": human,
                "createdAt": humanapi.format_time(first) if first else None,
                "updatedAt": humanapi.format_time(last) if last else None, **latest}


def _object(row: tuple) -> dict[str, Any]:
    mid, human, kind, ts, tz_offset, source, source_id, fields, created, updated = row
    obj = {"id": mid, "userId": human, "timestamp": humanapi.format_time(ts), "tzOffset": tz_offset}
    obj.update(json.loads(fields))
    if kind in humanapi.UNITS:
        obj["unit"] = humanapi.UNITS[kind]
    obj.update({"source": source, "sourceId": source_id, "createdAt": humanapi.format_time(created),
                "updatedAt": humanapi.format_time(updated)})
    return obj
