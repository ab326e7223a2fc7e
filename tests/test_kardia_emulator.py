"""The Kardia Pro emulator over real loopback HTTP, as a vendor client sees it."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import time

import httpx
import numpy as np
import pytest
from pypdf import PdfReader
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from gateway.analysis.enhanced import enhance
from gateway.vendors.kardia import recording_body
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.kardia.store import KardiaStore, check_password
from simulators.cloud.kardia.webhooks import verify
from simulators.cloud.server import BackgroundServer

KEY_A, KEY_B = "key-a", "key-b"


@pytest.fixture
def cloud(tmp_path):
    with BackgroundServer(build_app(tmp_path, Credentials([KEY_A, KEY_B]))) as server:
        yield server.url + "/kardia"


def client(url: str, key: str = KEY_A) -> httpx.Client:
    return httpx.Client(base_url=url, auth=(key, ""), timeout=30)


def new_patient(c: httpx.Client, mrn: str = "JS-20000721") -> str:
    r = c.post("/v1/patients", data={"mrn": mrn, "dob": "2000-07-21", "email": "joe@example.com",
                                     "firstname": "Joe", "lastname": "Smith", "sex": "1"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def recording(patient: str, n: int = 900, offset: int = 0, **extra) -> bytes:
    obj = json.loads(recording_body(patient, "2026-11-23T10:00:00.000+01:00", 300, 60, 500,
                                    np.arange(offset, offset + n) % 3000 - 1500))
    obj.update(extra)
    return json.dumps(obj).encode()


def post_recording(c: httpx.Client, body: bytes, key: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return c.post("/v1/recordings", content=body, headers=headers)


def test_authentication(cloud):
    for auth in (None, ("wrong", ""), ("", "")):
        r = httpx.get(cloud + "/v1/patients", auth=auth)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="Kardia Pro API"'
        assert r.json()["error"] == "unauthorized"
    r = httpx.get(cloud + "/v1/patients", headers={"Authorization": "Basic !!!notbase64"})
    assert r.status_code == 401
    assert httpx.get(cloud + "/v1/patients", auth=(KEY_A, "")).status_code == 200


def test_create_and_get_patient_form_and_json(cloud):
    with client(cloud) as c:
        pid = new_patient(c)
        assert len(pid) == 32 and pid.isalnum()
        assert c.get(f"/v1/patients/{pid}").json() == {
            "id": pid, "mrn": "JS-20000721", "dob": "2000-07-21", "email": "joe@example.com",
            "firstname": "Joe", "lastname": "Smith", "sex": 1}
        r = c.post("/v1/patients", json={"mrn": "X-1", "dob": "1970-03-12", "email": "a@b.org", "sex": 2})
        assert r.status_code == 201 and r.json()["sex"] == 2 and r.json()["firstname"] is None


@pytest.mark.parametrize("fields, message", [
    ({"dob": "2000-07-21", "email": "a@b.org"}, "mrn is required"),
    ({"mrn": "1", "dob": "21/07/2000", "email": "a@b.org"}, "dob must be a date as YYYY-MM-DD"),
    ({"mrn": "1", "dob": "2000-02-30", "email": "a@b.org"}, "dob must be a date as YYYY-MM-DD"),
    ({"mrn": "1", "dob": "2999-01-01", "email": "a@b.org"}, "not a plausible date of birth"),
    ({"mrn": "1", "dob": "2000-07-21", "email": "joe"}, "email is not an e-mail address"),
    ({"mrn": "1", "dob": "2000-07-21", "email": "a@b.org", "sex": "3"}, "ISO/IEC 5218"),
    ({"mrn": "1", "dob": "2000-07-21", "email": "a@b.org", "fristname": "Jo"}, "unknown argument(s): fristname"),
])
def test_patient_validation(cloud, fields, message):
    with client(cloud) as c:
        r = c.post("/v1/patients", data=fields)
    assert r.status_code == 400 and message in r.json()["message"], r.text


def test_patient_list_pages_newest_first_to_the_end(cloud):
    with client(cloud) as c:
        ids = [new_patient(c, f"MRN-{i}") for i in range(230)]
        seen, params = [], {"limit": 100}
        while True:
            page = c.get("/v1/patients", params=params).json()
            assert page["totalCount"] == 230
            seen += [p["id"] for p in page["data"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            params["start"] = page["pageInfo"]["endCursor"]
        assert seen == ids[::-1]
        assert len(c.get("/v1/patients").json()["data"]) == 100  # default limit
        for bad in ({"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"start": "not-a-cursor"}):
            r = c.get("/v1/patients", params=bad)
            assert r.status_code == 400, bad
        rec_cursor = "cmVjb3JkaW5nOjE="  # a recording cursor is not a patient cursor
        assert c.get("/v1/patients", params={"start": rec_cursor}).status_code == 400


def test_ingest_is_idempotent_and_serves_exact_samples(cloud):
    with client(cloud) as c:
        pid = new_patient(c)
        body = recording(pid)
        first = post_recording(c, body, key="dev/s1/leadI/0-900")
        assert first.status_code == 201, first.text
        rec = first.json()
        assert first.headers["Location"] == f"/kardia/v1/recordings/{rec['id']}"
        assert len(rec["id"]) == 25
        again = post_recording(c, body, key="dev/s1/leadI/0-900")
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == rec["id"]
        conflict = post_recording(c, recording(pid, offset=1), key="dev/s1/leadI/0-900")
        assert conflict.status_code == 422 and "different body" in conflict.json()["message"]
        got = c.get(f"/v1/recordings/{rec['id']}").json()
        assert got["data"]["raw"]["samples"]["leadI"] == (np.arange(900) % 3000 - 1500).tolist()
        assert got["data"]["raw"]["mainsFrequency"] == 60 and got["data"]["raw"]["amplitudeResolution"] == 500
        assert (got["duration"], got["recordedAt"], got["patientID"]) == (3000, "2026-11-23T10:00:00.000+01:00", pid)
        # Sent without analysis: the emulator analyses, like the vendor (3 s is too short for a rhythm).
        assert got["algorithmDetermination"] == "too_short" and got["heartRate"] is None
        raw = np.arange(900) % 3000 - 1500  # the vendor computes the enhanced signal; so does the emulator
        assert got["data"]["enhanced"]["samples"]["leadI"] == enhance(raw, 300, 60).tolist()
        assert c.get("/v1/recordings").json()["totalCount"] == 1
        assert post_recording(c, body).status_code == 201  # no key: a new recording every time
        assert c.get("/v1/recordings").json()["totalCount"] == 2


def test_ingest_refuses_bad_requests_with_clear_messages(cloud):
    with client(cloud) as c:
        pid = new_patient(c)
        cases = [
            (c.post("/v1/recordings", content=b"{not json", headers={"Content-Type": "application/json"}), 400,
             "not valid JSON"),
            (c.post("/v1/recordings", data={"patientID": pid}), 415, "application/json"),
            (post_recording(c, recording("nobody")), 400, "is not a patient of this account"),
            (post_recording(c, recording(pid, duration=1)), 400, "duration must be"),
            (post_recording(c, b"[1, 2]"), 400, "must be a JSON object"),
            (post_recording(c, recording(pid), key="x" * 300), 400, "Idempotency-Key"),
        ]
        for response, status, message in cases:
            assert response.status_code == status and message in response.json()["message"], response.text
        big = b'{"x": "' + b"a" * (17 * 1024 * 1024) + b'"}'
        assert post_recording(c, big).status_code == 413
        assert c.get("/v1/recordings").json()["totalCount"] == 0


def test_recording_lists_page_and_filter_by_patient(cloud):
    with client(cloud) as c:
        p1, p2 = new_patient(c, "A"), new_patient(c, "B")
        ids = {p1: [], p2: []}
        for i in range(23):
            pid = p1 if i % 3 else p2
            ids[pid].append(post_recording(c, recording(pid, n=30, offset=i), key=f"k{i}").json()["id"])
        for path, want in ((f"/v1/patients/{p1}/recordings", ids[p1]), (f"/v1/patients/{p2}/recordings", ids[p2])):
            seen, params = [], {"limit": 4}
            while True:
                page = c.get(path, params=params).json()
                assert page["totalCount"] == len(want)
                seen += [r["id"] for r in page["data"]]
                if not page["pageInfo"]["hasNextPage"]:
                    break
                params["start"] = page["pageInfo"]["endCursor"]
            assert seen == want[::-1]
        assert len(c.get("/v1/recordings").json()["data"]) == 10  # default limit
        assert c.get("/v1/recordings", params={"limit": 51}).status_code == 400
        assert c.get("/v1/patients/nobody/recordings").status_code == 404


def test_accounts_are_isolated(cloud):
    with client(cloud, KEY_A) as a, client(cloud, KEY_B) as b:
        pid = new_patient(a)
        rid = post_recording(a, recording(pid)).json()["id"]
        assert b.get(f"/v1/patients/{pid}").status_code == 404
        assert b.get(f"/v1/recordings/{rid}").status_code == 404
        assert b.get(f"/v1/patients/{pid}/recordings").status_code == 404
        assert b.get("/v1/recordings").json()["totalCount"] == 0
        assert post_recording(b, recording(pid)).status_code == 400  # not b's patient


def test_data_survives_a_restart(tmp_path):
    creds = Credentials([KEY_A])
    with BackgroundServer(build_app(tmp_path, creds)) as server, client(server.url + "/kardia") as c:
        pid = new_patient(c)
        rid = post_recording(c, recording(pid), key="k1").json()["id"]
    with BackgroundServer(build_app(tmp_path, creds)) as server, client(server.url + "/kardia") as c:
        assert c.get(f"/v1/patients/{pid}").status_code == 200
        assert c.get(f"/v1/recordings/{rid}").json()["data"]["raw"]["samples"]["leadI"][:3] == [-1500, -1499, -1498]
        assert post_recording(c, recording(pid), key="k1").status_code == 200  # keys survive too


def test_unknown_routes_and_methods_answer_json(cloud):
    with client(cloud) as c:
        assert c.get("/v1/nothing").json() == {"error": "not_found", "message": "no such resource"}
        r = c.delete("/v1/patients")
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


# -- connection codes, users, webhooks, PDF (issue 3) -------------------------------------

CODE_RE = re.compile(r"^[A-Z]{4}-[A-Z]{4}-[A-Z]{4}$")


def new_user(c: httpx.Client, pid: str, email: str = "joe@example.com", **extra) -> httpx.Response:
    return c.post("/v1/users", data={"email": email, "password": "5up3R53Cur3", "countryCode": "us",
                                     "patientId": pid, **extra})


def test_connection_code_is_pending_until_a_user_connects(cloud, tmp_path):
    with client(cloud) as c:
        pid = new_patient(c)
        code = c.get(f"/v1/patients/{pid}/code").json()
        assert CODE_RE.match(code["code"]) and code["status"] == "pending"
        r = new_user(c, pid)
        assert r.status_code == 201 and len(r.json()["requestId"]) == 32
        assert c.get(f"/v1/patients/{pid}/code").json() == {"code": code["code"], "status": "connected"}
        assert new_user(c, pid, email="other@example.com").status_code == 409  # already connected
        # The patient disconnects in the app: a new code, pending again.
        again = c.post(f"/v1/patients/{pid}/disconnect").json()
        assert again["status"] == "pending" and CODE_RE.match(again["code"]) and again["code"] != code["code"]
        assert new_user(c, pid).status_code == 201  # the e-mail is free again after the disconnect
        assert c.get("/v1/patients/nobody/code").status_code == 404
        request_id = r.json()["requestId"]
    store = KardiaStore(tmp_path / "kardia.db")  # the emulator's own file: how the password is kept
    stored = store.password_hash(request_id)
    store.close()
    assert "5up3R53Cur3" not in stored and stored.startswith("scrypt$")
    assert check_password("5up3R53Cur3", stored) and not check_password("5up3R53Cur4", stored)


@pytest.mark.parametrize("change, message", [
    ({"countryCode": "xx"}, "ISO 3166 alpha-2"),
    ({"password": "short"}, "at least 8 characters"),
    ({"email": "nope"}, "not an e-mail address"),
    ({"patientId": "nobody"}, "is not a patient of this account"),
    ({"nickname": "jo"}, "unknown argument(s): nickname"),
])
def test_user_validation(cloud, change, message):
    with client(cloud) as c:
        pid = new_patient(c)
        fields = {"email": "joe@example.com", "password": "5up3R53Cur3", "countryCode": "GB", "patientId": pid}
        fields.update(change)
        r = c.post("/v1/users", data=fields)
    assert r.status_code == 400 and message in r.json()["message"], r.text
    with client(cloud) as c:
        assert c.post("/v1/users", data={"email": "a@b.org"}).json()["message"] == "countryCode is required"


def test_callback_url(cloud):
    with client(cloud) as c:
        assert c.get("/v1/callback").json() == {"url": None}
        assert c.put("/v1/callback", data={"url": "https://example.com/hooks"}).json() == {
            "url": "https://example.com/hooks"}
        assert c.get("/v1/callback").json() == {"url": "https://example.com/hooks"}
        assert c.put("/v1/callback", data={"url": "ftp://example.com"}).status_code == 400
        assert c.put("/v1/callback", data={}).status_code == 400
    with client(cloud, KEY_B) as b:
        assert b.get("/v1/callback").json() == {"url": None}  # per account


class Receiver:
    """A webhook receiver on loopback that fails the first delivery of every event."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope, receive, send):
        request = Request(scope, receive)
        body = await request.body()
        self.deliveries.append((dict(request.headers), body))
        first = sum(1 for h, _ in self.deliveries if h["x-kardia-event-id"] == request.headers["x-kardia-event-id"]) == 1
        await PlainTextResponse("try again" if first else "ok", 500 if first else 200)(scope, receive, send)


def test_webhooks_are_signed_and_retried(tmp_path):
    secret = "webhook-test-secret"
    receiver = Receiver()
    app = build_app(tmp_path, Credentials([KEY_A], kardia_webhook_secret=secret), webhook_retry_initial=0.1)
    with BackgroundServer(receiver) as hooks, BackgroundServer(app) as server, client(server.url + "/kardia") as c:
        assert c.put("/v1/callback", data={"url": hooks.url + "/kardia-events"}).status_code == 200
        pid = new_patient(c)
        assert new_user(c, pid).status_code == 201
        rid = post_recording(c, recording(pid)).json()["id"]
        assert c.post(f"/v1/patients/{pid}/disconnect").status_code == 200
        deadline = time.monotonic() + 20
        while len(receiver.deliveries) < 6:
            assert time.monotonic() < deadline, f"got {len(receiver.deliveries)} deliveries"
            time.sleep(0.05)
        log = c.get("/v1/callback/deliveries").json()["data"]
    events: dict[str, list] = {}
    for headers, body in receiver.deliveries:
        # Verify as a receiver would: HMAC-SHA256 over "<t>.<body>" with the shared secret.
        parts = dict(p.split("=", 1) for p in headers["x-kardia-signature"].split(","))
        expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(parts["v1"], expected)
        assert abs(int(parts["t"]) - time.time()) < 60
        assert verify(secret, headers["x-kardia-signature"], body) and not verify("wrong", headers["x-kardia-signature"], body)
        event = json.loads(body)
        assert event["id"] == headers["x-kardia-event-id"]
        events.setdefault(event["id"], []).append((int(headers["x-kardia-delivery-attempt"]), event))
    assert len(events) == 3 and all([a for a, _ in tries] == [1, 2] for tries in events.values())
    by_type = {tries[0][1]["type"]: tries[0][1]["data"] for tries in events.values()}
    assert by_type == {"patient.connected": {"patientID": pid},
                       "recording.created": {"recordingId": rid, "patientID": pid},
                       "patient.disconnected": {"patientID": pid}}
    assert sorted((d["attempts"], d["last_status"]) for d in log) == [(2, 200)] * 3
    assert all(d["delivered_at"] for d in log)


def test_recording_pdf_is_an_ecg_strip(cloud):
    with client(cloud) as c:
        pid = new_patient(c)
        body = json.loads(recording(pid, n=18000))  # 60 s: two pages of three 10 s rows
        body.update({"heartRate": 72, "algorithmDetermination": "normal"})
        rid = post_recording(c, json.dumps(body).encode()).json()["id"]
        r = c.get(f"/v1/recordings/{rid}.pdf")
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        doc = PdfReader(io.BytesIO(r.content))
        assert len(doc.pages) == 2
        text = doc.pages[0].extract_text()
        for expected in ("Joe Smith", "MRN JS-20000721", "2026-11-23T10:00:00.000+01:00", "Heart rate 72 bpm",
                         "Determination: normal", "25 mm/s", "10 mm/mV", "Lead I (enhanced)", "page 1/2"):
            assert expected in text, expected
        # The trace is vector data: a line segment per sample (30 s on this page).
        content = doc.pages[0].get_contents().get_data().decode("latin-1")
        assert len(re.findall(r"-?[\d.]+ -?[\d.]+ l\b", content)) >= 9000
        raw = PdfReader(io.BytesIO(c.get(f"/v1/recordings/{rid}.pdf", params={"signal": "raw"}).content))
        assert "Lead I (raw)" in raw.pages[0].extract_text()
        assert c.get(f"/v1/recordings/{rid}.pdf", params={"signal": "other"}).status_code == 400
        assert c.get("/v1/recordings/nothing.pdf").status_code == 404
    with client(cloud, KEY_B) as b:
        assert b.get(f"/v1/recordings/{rid}.pdf").status_code == 404


def test_paging_a_thousand_recordings_misses_and_repeats_nothing(cloud):
    with client(cloud) as c:
        pid = new_patient(c)
        ids = [post_recording(c, recording(pid, n=3, offset=i)).json()["id"] for i in range(1000)]
        seen, params = [], {"limit": 50}
        while True:
            page = c.get("/v1/recordings", params=params).json()
            assert page["totalCount"] == 1000 and len(page["data"]) <= 50
            seen += [r["id"] for r in page["data"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            params["start"] = page["pageInfo"]["endCursor"]
    assert seen == ids[::-1] and len(set(seen)) == 1000
