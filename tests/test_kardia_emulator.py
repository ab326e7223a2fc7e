"""The Kardia Pro emulator over real loopback HTTP, as a vendor client sees it."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from gateway.vendors.kardia import recording_body
from simulators.cloud.app import Credentials, build_app
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
        assert got["algorithmDetermination"] == "no_analysis" and got["heartRate"] is None
        assert got["data"]["enhanced"] is None
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
