"""The Kardia emulator's store: patients, connection codes, users, recordings, idempotency keys,
callback URLs and the webhook outbox, in SQLite.

Accounts are named by a hash of their API key, so the same key finds its data again after a
restart and one account never sees another's. Samples are stored as little-endian int32.
Webhook events are written in the same transaction as the change they announce, so none is
lost when the emulator stops between the two.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import string
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.analysis.ecg import analyse_ecg
from gateway.vendors import kardia
from gateway.vendors.kardia import RecordingIn
from simulators.cloud.store import SqliteStore

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
CREATE TABLE IF NOT EXISTS users (
    request_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    country TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    disconnected_at REAL
);
CREATE INDEX IF NOT EXISTS users_patient ON users (account, patient_id);
CREATE TABLE IF NOT EXISTS callbacks (
    account TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    account TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    delivered_at REAL,
    failed_at REAL,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_due ON webhook_deliveries (delivered_at, failed_at, next_attempt_at);
"""

PATIENT_FIELDS = ("id", "mrn", "dob", "email", "firstname", "lastname", "sex")
_RECORDING_COLUMNS = ("id, patient_id, recorded_at, duration, heart_rate, determination, note, frequency,"
                      " mains_frequency, amplitude_resolution, raw, enhanced")
CODE_ALPHABET = string.ascii_uppercase
EVENTS = ("recording.created", "patient.connected", "patient.disconnected")


def account_of(api_key: str) -> str:
    """The account an API key belongs to."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def random_id(length: int, alphabet: str) -> str:
    """An opaque random id like the vendor's."""
    return "".join(secrets.choice(alphabet) for _ in range(length))


def connection_code() -> str:
    """A code like the vendor's LQYP-MSAK-NPJR."""
    return "-".join(random_id(4, CODE_ALPHABET) for _ in range(3))


def hash_password(password: str) -> str:
    """A salted scrypt hash: scrypt$n$r$p$salt$hash (the password itself is never stored)."""
    salt = secrets.token_bytes(16)
    n, r, p = 2**14, 8, 1
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether a password matches a stored hash."""
    _, n, r, p, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return secrets.compare_digest(candidate.hex(), digest)


class IdempotencyConflict(Exception):
    """The key was used before with a different body."""


class Conflict(Exception):
    """A create that contradicts existing data; the message says what."""


class KardiaStore(SqliteStore):
    """Everything the Kardia emulator keeps."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)
        # Databases made before connection codes existed get the columns and a code each.
        self.add_columns("patients", {"code": "TEXT", "code_status": "TEXT NOT NULL DEFAULT 'pending'"})
        with self.tx() as db:
            for (pid,) in db.execute("SELECT id FROM patients WHERE code IS NULL").fetchall():
                db.execute("UPDATE patients SET code = ? WHERE id = ?", (connection_code(), pid))

    # -- patients -----------------------------------------------------------------------

    def create_patient(self, account: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a validated patient with a pending connection code; return the patient object."""
        pid = random_id(32, string.ascii_letters + string.digits)
        with self.tx() as db:
            _insert_patient(db, account, pid, fields)
        return self.get_patient(account, pid)  # type: ignore[return-value]

    def ensure_patient(self, account: str, pid: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A patient with exactly this id (created if missing): fixed ids for demo installations."""
        with self.tx() as db:
            if db.execute("SELECT 1 FROM patients WHERE id = ?", (pid,)).fetchone() is None:
                _insert_patient(db, account, pid, fields)
        patient = self.get_patient(account, pid)
        if patient is None:
            raise ValueError(f"patient id {pid!r} belongs to another account")
        return patient

    def get_patient(self, account: str, pid: str) -> dict[str, Any] | None:
        """A patient of this account, or None."""
        with self.read() as db:
            row = db.execute(f"SELECT {', '.join(PATIENT_FIELDS)} FROM patients WHERE account = ? AND id = ?",
                             (account, pid)).fetchone()
        return dict(zip(PATIENT_FIELDS, row)) if row else None

    def list_patients(self, account: str, limit: int, before: int | None) -> tuple[list[dict], list[int], int, bool]:
        """(patients newest first, their positions, total, has next page)."""
        with self.read() as db:
            rows = db.execute(
                f"SELECT seq, {', '.join(PATIENT_FIELDS)} FROM patients WHERE account = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?", (account, before if before is not None else 2**62, limit + 1)).fetchall()
            (total,) = db.execute("SELECT COUNT(*) FROM patients WHERE account = ?", (account,)).fetchone()
        page = rows[:limit]
        return [dict(zip(PATIENT_FIELDS, r[1:])) for r in page], [r[0] for r in page], total, len(rows) > limit

    def connection(self, account: str, pid: str) -> dict[str, str] | None:
        """{"code", "status"} of a patient, or None if there is no such patient."""
        with self.read() as db:
            row = db.execute("SELECT code, code_status FROM patients WHERE account = ? AND id = ?",
                             (account, pid)).fetchone()
        return {"code": row[0], "status": row[1]} if row else None

    # -- Kardia Mobile users ------------------------------------------------------------

    def create_user(self, account: str, email: str, password: str, country: str, pid: str) -> str:
        """Create a Kardia Mobile user connected to the patient; return its request id."""
        request_id = random_id(32, string.ascii_letters + string.digits)
        password_hash = hash_password(password)  # slow on purpose: outside the lock
        with self.tx() as db:
            status = db.execute("SELECT code_status FROM patients WHERE account = ? AND id = ?",
                                (account, pid)).fetchone()
            if status is None:
                raise LookupError(pid)
            if status[0] == "connected":
                raise Conflict(f"patient {pid} already has a connected Kardia Mobile user")
            if db.execute("SELECT 1 FROM users WHERE account = ? AND lower(email) = lower(?) AND disconnected_at IS NULL",
                          (account, email)).fetchone():
                raise Conflict(f"a Kardia Mobile user with e-mail {email} already exists")
            db.execute("INSERT INTO users (request_id, account, email, password_hash, country, patient_id, created_at)"
                       " VALUES (?,?,?,?,?,?,?)", (request_id, account, email, password_hash, country, pid, time.time()))
            db.execute("UPDATE patients SET code_status = 'connected' WHERE account = ? AND id = ?", (account, pid))
            self._event(db, account, "patient.connected", {kardia.PATIENT_ID: pid})
        return request_id

    def disconnect(self, account: str, pid: str) -> dict[str, str]:
        """The patient disconnects from the clinic in the app: a new pending code (emulator extension)."""
        with self.tx() as db:
            status = db.execute("SELECT code_status FROM patients WHERE account = ? AND id = ?",
                                (account, pid)).fetchone()
            if status is None:
                raise LookupError(pid)
            if status[0] != "connected":
                raise Conflict(f"patient {pid} is not connected")
            code = connection_code()
            db.execute("UPDATE users SET disconnected_at = ? WHERE account = ? AND patient_id = ?"
                       " AND disconnected_at IS NULL", (time.time(), account, pid))
            db.execute("UPDATE patients SET code = ?, code_status = 'pending' WHERE account = ? AND id = ?",
                       (code, account, pid))
            self._event(db, account, "patient.disconnected", {kardia.PATIENT_ID: pid})
        return {"code": code, "status": "pending"}

    def password_hash(self, request_id: str) -> str | None:
        """The stored hash of a user's password (for tests and audits)."""
        with self.read() as db:
            row = db.execute("SELECT password_hash FROM users WHERE request_id = ?", (request_id,)).fetchone()
        return row[0] if row else None

    # -- recordings ---------------------------------------------------------------------

    def ingest(self, account: str, rec: RecordingIn, key: str | None, body_sha256: str) -> tuple[dict, bool]:
        """Store a recording unless the idempotency key was seen; (recording, created)."""
        # The vendor analyses what the device did not: enhanced signal, heart rate, determination.
        heart_rate, determination, enhanced = rec.heart_rate, rec.determination, None
        if rec.enhanced is not None:
            enhanced = rec.enhanced.lead_i
        if enhanced is None or heart_rate is None or determination is None:
            analysis = analyse_ecg(rec.raw.lead_i, rec.raw.frequency, rec.raw.mains_frequency,
                                   with_enhanced=enhanced is None)
            enhanced = analysis.enhanced if enhanced is None else enhanced
            if determination is None:
                determination = analysis.determination
                heart_rate = heart_rate if heart_rate is not None else analysis.heart_rate
        with self.tx() as db:
            if key is not None:
                row = db.execute("SELECT body_sha256, recording_id FROM idempotency WHERE account = ? AND key = ?",
                                 (account, key)).fetchone()
                if row is not None:
                    if row[0] != body_sha256:
                        raise IdempotencyConflict(key)
                    return self._get_recording(db, account, row[1]), False  # type: ignore[return-value]
            rid = random_id(25, string.ascii_lowercase + string.digits)
            db.execute(
                "INSERT INTO recordings (id, account, patient_id, recorded_at, duration, heart_rate, determination,"
                " note, frequency, mains_frequency, amplitude_resolution, raw, enhanced, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rid, account, rec.patient_id, rec.recorded_at, rec.duration, heart_rate, determination,
                 rec.note, rec.raw.frequency, rec.raw.mains_frequency, rec.raw.amplitude_resolution,
                 rec.raw.lead_i.astype("<i4").tobytes(), enhanced.astype("<i4").tobytes(), time.time()))
            if key is not None:
                db.execute("INSERT INTO idempotency (account, key, body_sha256, recording_id, created_at)"
                           " VALUES (?,?,?,?,?)", (account, key, body_sha256, rid, time.time()))
            self._event(db, account, "recording.created", {"recordingId": rid, kardia.PATIENT_ID: rec.patient_id})
            return self._get_recording(db, account, rid), True  # type: ignore[return-value]

    def get_recording(self, account: str, rid: str) -> dict | None:
        """A recording of this account, or None."""
        with self.read() as db:
            return self._get_recording(db, account, rid)

    @staticmethod
    def _get_recording(db: sqlite3.Connection, account: str, rid: str) -> dict | None:
        row = db.execute(f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE account = ? AND id = ?",
                         (account, rid)).fetchone()
        return _recording_object(row) if row else None

    def list_recordings(self, account: str, limit: int, before: int | None,
                        patient_id: str | None = None) -> tuple[list[dict], list[int], int, bool]:
        """(recordings newest first, positions, total, has next page), optionally of one patient."""
        where, args = "account = ?", [account]
        if patient_id is not None:
            where += " AND patient_id = ?"
            args.append(patient_id)
        with self.read() as db:
            rows = db.execute(
                f"SELECT seq, {_RECORDING_COLUMNS} FROM recordings WHERE {where} AND seq < ?"
                " ORDER BY seq DESC LIMIT ?", (*args, before if before is not None else 2**62, limit + 1)).fetchall()
            (total,) = db.execute(f"SELECT COUNT(*) FROM recordings WHERE {where}", args).fetchone()
        page = rows[:limit]
        return [_recording_object(r[1:]) for r in page], [r[0] for r in page], total, len(rows) > limit

    # -- webhooks -----------------------------------------------------------------------

    def set_callback(self, account: str, url: str) -> None:
        """Where this account's webhook events go from now on."""
        with self.tx() as db:
            db.execute("INSERT INTO callbacks (account, url, updated_at) VALUES (?,?,?) ON CONFLICT (account)"
                       " DO UPDATE SET url = excluded.url, updated_at = excluded.updated_at",
                       (account, url, time.time()))

    def callback(self, account: str) -> str | None:
        """This account's callback URL, if set."""
        with self.read() as db:
            row = db.execute("SELECT url FROM callbacks WHERE account = ?", (account,)).fetchone()
        return row[0] if row else None

    def _event(self, db: sqlite3.Connection, account: str, kind: str, data: dict[str, Any]) -> None:
        """Queue an event for the account's callback URL (inside the caller's transaction)."""
        row = db.execute("SELECT url FROM callbacks WHERE account = ?", (account,)).fetchone()
        if row is None:
            return
        now = time.time()
        event_id = "evt_" + random_id(24, string.ascii_letters + string.digits)
        body = json.dumps({"id": event_id, "type": kind, "createdAt": kardia.format_time(now), "data": data})
        db.execute("INSERT INTO webhook_deliveries (event_id, account, url, body, next_attempt_at) VALUES (?,?,?,?,?)",
                   (event_id, account, row[0], body, now))

    def due_deliveries(self, now: float, limit: int = 20) -> list[tuple[int, str, str, int]]:
        """(id, url, body, attempts) of deliveries due now, oldest first."""
        with self.read() as db:
            return db.execute(
                "SELECT id, url, body, attempts FROM webhook_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL"
                " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?", (now, limit)).fetchall()

    def next_delivery_at(self) -> float | None:
        """When the next pending delivery is due."""
        with self.read() as db:
            (at,) = db.execute("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE delivered_at IS NULL"
                               " AND failed_at IS NULL").fetchone()
        return at

    def delivery_result(self, delivery_id: int, status: int | None, error: str | None, retry_at: float | None) -> None:
        """Record an attempt: delivered (2xx), retry at `retry_at`, or given up (retry_at None)."""
        now = time.time()
        with self.tx() as db:
            if status is not None and 200 <= status < 300:
                db.execute("UPDATE webhook_deliveries SET attempts = attempts + 1, delivered_at = ?, last_status = ?"
                           " WHERE id = ?", (now, status, delivery_id))
            elif retry_at is not None:
                db.execute("UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?, last_status = ?,"
                           " last_error = ? WHERE id = ?", (retry_at, status, error, delivery_id))
            else:
                db.execute("UPDATE webhook_deliveries SET attempts = attempts + 1, failed_at = ?, last_status = ?,"
                           " last_error = ? WHERE id = ?", (now, status, error, delivery_id))

    def deliveries(self, account: str) -> list[dict[str, Any]]:
        """This account's webhook deliveries, newest first (emulator extension, for debugging receivers)."""
        cols = ("event_id", "url", "attempts", "delivered_at", "failed_at", "last_status", "last_error", "body")
        with self.read() as db:
            rows = db.execute(f"SELECT {', '.join(cols)} FROM webhook_deliveries WHERE account = ? ORDER BY id DESC"
                              " LIMIT 100", (account,)).fetchall()
        out = []
        for r in rows:
            item = dict(zip(cols, r))
            item["event"] = json.loads(item.pop("body"))
            out.append(item)
        return out


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


def _insert_patient(db: Any, account: str, pid: str, fields: dict[str, Any]) -> None:
    """One patient row with a fresh pending connection code."""
    db.execute(
        "INSERT INTO patients (id, account, mrn, dob, email, firstname, lastname, sex, created_at, code,"
        " code_status) VALUES (?,?,?,?,?,?,?,?,?,?, 'pending')",
        (pid, account, fields["mrn"], fields["dob"], fields["email"], fields.get("firstname"),
         fields.get("lastname"), fields.get("sex"), time.time(), connection_code()))
