"""The Kardia emulator's store: patients, recordings and idempotency keys in SQLite.

Accounts are named by a hash of their API key, so the same key finds its data again after a
restart and one account never sees another's. Samples are stored as little-endian int32.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import string
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.vendors import kardia
from gateway.vendors.kardia import RecordingIn

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    mrn TEXT NOT NULL,
    dob TEXT NOT NULL,
    email TEXT NOT NULL,
    firstname TEXT,
    lastname TEXT,
    sex INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS patients_account ON patients (account, seq);
CREATE TABLE IF NOT EXISTS recordings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    duration INTEGER NOT NULL,
    heart_rate INTEGER,
    determination TEXT,
    note TEXT,
    frequency INTEGER NOT NULL,
    mains_frequency INTEGER NOT NULL,
    amplitude_resolution INTEGER NOT NULL,
    raw BLOB NOT NULL,
    enhanced BLOB,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_account ON recordings (account, seq);
CREATE INDEX IF NOT EXISTS recordings_patient ON recordings (account, patient_id, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    recording_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (account, key)
);
"""

PATIENT_FIELDS = ("id", "mrn", "dob", "email", "firstname", "lastname", "sex")
_RECORDING_COLUMNS = ("id, patient_id, recorded_at, duration, heart_rate, determination, note, frequency,"
                      " mains_frequency, amplitude_resolution, raw, enhanced")


def account_of(api_key: str) -> str:
    """The account an API key belongs to."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def random_id(length: int, alphabet: str) -> str:
    """An opaque random id like the vendor's."""
    return "".join(secrets.choice(alphabet) for _ in range(length))


class IdempotencyConflict(Exception):
    """The key was used before with a different body."""


class KardiaStore:
    """Thread-safe access to one emulator database."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- patients -----------------------------------------------------------------------

    def create_patient(self, account: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a validated patient; return the patient object."""
        pid = random_id(32, string.ascii_letters + string.digits)
        with self._lock:
            self._db.execute(
                "INSERT INTO patients (id, account, mrn, dob, email, firstname, lastname, sex, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (pid, account, fields["mrn"], fields["dob"], fields["email"], fields.get("firstname"),
                 fields.get("lastname"), fields.get("sex"), time.time()))
        return self.get_patient(account, pid)  # type: ignore[return-value]

    def get_patient(self, account: str, pid: str) -> dict[str, Any] | None:
        """A patient of this account, or None."""
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(PATIENT_FIELDS)} FROM patients WHERE account = ? AND id = ?",
                                   (account, pid)).fetchone()
        return dict(zip(PATIENT_FIELDS, row)) if row else None

    def list_patients(self, account: str, limit: int, before: int | None) -> tuple[list[dict], list[int], int, bool]:
        """(patients newest first, their positions, total, has next page)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, {', '.join(PATIENT_FIELDS)} FROM patients WHERE account = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?", (account, before if before is not None else 2**62, limit + 1)).fetchall()
            (total,) = self._db.execute("SELECT COUNT(*) FROM patients WHERE account = ?", (account,)).fetchone()
        page = rows[:limit]
        return [dict(zip(PATIENT_FIELDS, r[1:])) for r in page], [r[0] for r in page], total, len(rows) > limit

    # -- recordings ---------------------------------------------------------------------

    def ingest(self, account: str, rec: RecordingIn, key: str | None, body_sha256: str) -> tuple[dict, bool]:
        """Store a recording unless the idempotency key was seen; (recording, created)."""
        with self._lock:
            if key is not None:
                row = self._db.execute("SELECT body_sha256, recording_id FROM idempotency WHERE account = ? AND key = ?",
                                       (account, key)).fetchone()
                if row is not None:
                    if row[0] != body_sha256:
                        raise IdempotencyConflict(key)
                    return self._get_recording(account, row[1]), False  # type: ignore[return-value]
            rid = random_id(25, string.ascii_lowercase + string.digits)
            enhanced = rec.enhanced.lead_i.astype("<i4").tobytes() if rec.enhanced else None
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO recordings (id, account, patient_id, recorded_at, duration, heart_rate, determination,"
                    " note, frequency, mains_frequency, amplitude_resolution, raw, enhanced, created_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (rid, account, rec.patient_id, rec.recorded_at, rec.duration, rec.heart_rate, rec.determination,
                     rec.note, rec.raw.frequency, rec.raw.mains_frequency, rec.raw.amplitude_resolution,
                     rec.raw.lead_i.astype("<i4").tobytes(), enhanced, time.time()))
                if key is not None:
                    self._db.execute("INSERT INTO idempotency (account, key, body_sha256, recording_id, created_at)"
                                     " VALUES (?,?,?,?,?)", (account, key, body_sha256, rid, time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._get_recording(account, rid), True  # type: ignore[return-value]

    def get_recording(self, account: str, rid: str) -> dict | None:
        """A recording of this account, or None."""
        with self._lock:
            return self._get_recording(account, rid)

    def _get_recording(self, account: str, rid: str) -> dict | None:
        row = self._db.execute(f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE account = ? AND id = ?",
                               (account, rid)).fetchone()
        return _recording_object(row) if row else None

    def list_recordings(self, account: str, limit: int, before: int | None,
                        patient_id: str | None = None) -> tuple[list[dict], list[int], int, bool]:
        """(recordings newest first, positions, total, has next page), optionally of one patient."""
        where, args = "account = ?", [account]
        if patient_id is not None:
            where += " AND patient_id = ?"
            args.append(patient_id)
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, {_RECORDING_COLUMNS} FROM recordings WHERE {where} AND seq < ?"
                " ORDER BY seq DESC LIMIT ?", (*args, before if before is not None else 2**62, limit + 1)).fetchall()
            (total,) = self._db.execute(f"SELECT COUNT(*) FROM recordings WHERE {where}", args).fetchone()
        page = rows[:limit]
        return [_recording_object(r[1:]) for r in page], [r[0] for r in page], total, len(rows) > limit


def _samples(blob: bytes | None) -> list[int] | None:
    return None if blob is None else np.frombuffer(blob, dtype="<i4").tolist()


def _recording_object(row: tuple) -> dict[str, Any]:
    (rid, patient_id, recorded_at, duration, heart_rate, determination, note, freq, mains, res, raw, enhanced) = row
    enhanced_samples = _samples(enhanced)
    return {
        "id": rid,
        kardia.PATIENT_ID: patient_id,
        kardia.DETERMINATION: determination or "no_analysis",
        kardia.DURATION: duration,
        kardia.HEART_RATE: heart_rate,
        kardia.NOTE: note,
        kardia.RECORDED_AT: recorded_at,
        kardia.DATA: {
            kardia.RAW: kardia.signal_object(freq, mains, res, _samples(raw)),
            kardia.ENHANCED: None if enhanced_samples is None else kardia.signal_object(freq, mains, res,
                                                                                         enhanced_samples),
        },
    }
