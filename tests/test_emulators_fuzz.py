"""No client input makes an emulator answer 5xx: seeded random requests against every endpoint."""

from __future__ import annotations

import base64
import json
import random

import httpx
import pytest

from gateway.uplinks.hexoskin import HexoskinAuth
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer

KEY, UP, HUB = "fuzz-key", "fuzz-up", "fuzz-hub"

VALUES = [None, True, 0, -1, 2**31, 2**64, 1e308, -0.0, "", "x", "2026-11-23", "2026-11-23T10:00:00+01:00",
          "20261123", "20261123T100000Z", "nan", "../../etc", "'; DROP TABLE patients; --", "\u2603" * 50,
          "a" * 5000, [], [1, 2], {}, {"leadI": [1, 2]}, {"raw": {}}, "0", "-5", "1.5", "9" * 30]


def random_value(rng: random.Random, depth: int = 0):
    if depth < 2 and rng.random() < 0.2:
        return {rng.choice(["samples", "raw", "leadI", "data", "x"]): random_value(rng, depth + 1)
                for _ in range(rng.randint(0, 3))}
    if depth < 2 and rng.random() < 0.1:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return rng.choice(VALUES)


def random_body(rng: random.Random, fields: list[str]) -> tuple[bytes, str]:
    obj = {f: random_value(rng) for f in rng.sample(fields, rng.randint(0, len(fields)))}
    if rng.random() < 0.1:
        obj[rng.choice(["extra", "__proto__", ""])] = random_value(rng)
    kind = rng.random()
    if kind < 0.4:
        return json.dumps(obj).encode(), "application/json"
    if kind < 0.7:
        form = "&".join(f"{k}={v if not isinstance(v, (dict, list)) else json.dumps(v)}" for k, v in obj.items())
        return form.encode("utf-8", "surrogatepass"), "application/x-www-form-urlencoded"
    if kind < 0.8:
        return b"\xff\xfe\x00garbage{", rng.choice(["application/json", "application/x-www-form-urlencoded"])
    if kind < 0.9:
        return json.dumps(obj).encode()[: rng.randint(0, 40)], "application/json"
    return b'{"duration": NaN, "heartRate": Infinity}', "application/json"


RECORDING_FIELDS = ["patientID", "recordedAt", "duration", "data", "heartRate", "algorithmDetermination", "note"]
PATIENT_FIELDS = ["mrn", "email", "dob", "firstname", "lastname", "sex"]
USER_FIELDS = ["email", "password", "countryCode", "patientId"]
UP_FIELDS = ["title", "heart_rate", "systolic_pressure", "diastolic_pressure", "note", "image_url", "time_created", "tz"]
HUB_FIELDS = ["timestamp", "source", "sourceId", "value", "systolic", "diastolic", "duration", "sampleRate", "unit"]
SIGNAL = {"frequency": 300, "mainsFrequency": 60, "amplitudeResolution": 500, "samples": {"leadI": [1, -2, 3] * 100}}
VALID = {
    "/kardia/v1/recordings": {"patientID": "@PID@", "recordedAt": "2026-11-23T10:00:00+01:00", "duration": 3000,
                              "data": {"raw": SIGNAL, "enhanced": SIGNAL}, "heartRate": 60,
                              "algorithmDetermination": "normal", "note": "n"},
    "/kardia/v1/patients": {"mrn": "M", "email": "a@b.org", "dob": "1990-01-01", "firstname": "A", "sex": 1},
    "/kardia/v1/users": {"email": "u@b.org", "password": "longenough", "countryCode": "de", "patientId": "@PID@"},
    "/kardia/v1/callback": {"url": "http://127.0.0.1:9/hook"},
    "/up/nudge/api/v.1.0/users/@me/cardiac_events": {"title": "t", "heart_rate": 60, "systolic_pressure": 120,
                                                     "diastolic_pressure": 80, "tz": "UTC", "time_created": 1700000000},
    "/humanapi/v1/human/heart_rate": {"timestamp": "2026-11-23T10:00:00Z", "source": "s", "value": 60},
    "/humanapi/v1/human/blood_pressure": {"timestamp": "2026-11-23T10:00:00Z", "source": "s", "systolic": 120,
                                          "diastolic": 80, "heartRate": 60},
    "/humanapi/v1/human/ecg": {"timestamp": "2026-11-23T10:00:00Z", "source": "s", "duration": 30, "sampleRate": 300,
                               "determination": "normal"},
}
HX = "/hexoskin/api/v1"
HX_START = 1_795_426_200 * 256
VALID.update({
    f"{HX}/data/": {"record": {"device": "HXSKIN1", "start": HX_START, "firmware_rev": "1.0"},
                    "data": {"4113": [[HX_START, 1], [HX_START + 1, 2]], "19": [[HX_START, 60]]}},
    f"{HX}/range/": {"name": "r", "start": HX_START, "end": HX_START + 2560, "trainingroutine": 4},
    f"{HX}/record/": {"device": "HXA", "start": HX_START, "end": HX_START + 10, "status": "complete"},
    f"{HX}/annotation/": {"annotation": "a", "start": HX_START, "datatype": 4113},
    f"{HX}/trackpoint/": {"track": 1, "time": "2026-11-23T10:00:00", "position": [1.5, 45.0], "altitude": 3},
})
QUERY = ["datatype__in", "record", "range", "end", "include_metrics", "order_by", "start__gte", "user", "limit", "start", "offset", "date", "start_time", "end_time", "updated_after", "page_token", "created_since",
         "updated_before", "start_date", "end_date", "source", "signal"]


@pytest.mark.slow
def test_random_requests_never_get_a_server_error(tmp_path):
    rng = random.Random(20261123)
    creds = Credentials([KEY], up_tokens=[UP], humanapi_tokens=[HUB])
    with BackgroundServer(build_app(tmp_path, creds)) as server:
        k = httpx.Client(base_url=server.url + "/kardia", auth=(KEY, ""), timeout=30)
        pid = k.post("/v1/patients", data={"mrn": "F", "dob": "1990-01-01", "email": "f@example.com"}).json()["id"]
        targets = [
            ("POST", "/kardia/v1/recordings", RECORDING_FIELDS, {"patientID": pid}),
            ("POST", "/kardia/v1/patients", PATIENT_FIELDS, {}),
            ("POST", "/kardia/v1/users", USER_FIELDS, {"patientId": pid}),
            ("PUT", "/kardia/v1/callback", ["url"], {}),
            ("POST", "/up/nudge/api/v.1.0/users/@me/cardiac_events", UP_FIELDS, {}),
            ("POST", "/humanapi/v1/human/heart_rate", HUB_FIELDS, {}),
            ("POST", "/humanapi/v1/human/blood_pressure", HUB_FIELDS, {}),
            ("POST", "/humanapi/v1/human/ecg", HUB_FIELDS, {}),
            *[("POST", path, list(VALID[path]), {}) for path in VALID if path.startswith(HX)],
            ("PATCH", f"{HX}/record/", list(VALID[f"{HX}/record/"]), {}),
        ]
        reads = ["/kardia/v1/patients", "/kardia/v1/recordings", f"/kardia/v1/patients/{pid}/recordings",
                 "/kardia/v1/recordings/%00x.pdf", "/kardia/v1/patients/..%2F..%2F/code",
                 "/up/nudge/api/v.1.0/users/@me/cardiac_events", "/up/nudge/api/cardiac_events/%ff",
                 "/humanapi/v1/human/heart_rate", "/humanapi/v1/human/ecg/readings/daily/2026-02-30",
                 "/humanapi/v1/human", f"{HX}/data/", f"{HX}/report/", f"{HX}/record/", f"{HX}/ecg/",
                 f"{HX}/range/", f"{HX}/record/%ff/", f"{HX}/datatype/4113/"]
        auth = {"kardia": {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()},
                "up": {"Authorization": f"Bearer {UP}"}, "humanapi": {"Authorization": f"Bearer {HUB}"},
                "hexoskin": {}}
        signer = HexoskinAuth("athlete@hexoskin.com", "hexoskin", "hexoskin-dev-public", "hexoskin-dev-private")
        hx_auth = {"hexoskin": signer}
        statuses: dict[int, int] = {}
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in range(1500):
                if i % 3:
                    method, path, fields, seed = rng.choice(targets)
                    if rng.random() < 0.5:  # a valid body with one field broken: reaches each field's checks
                        obj = json.loads(json.dumps(VALID[path]).replace("@PID@", pid))
                        obj[rng.choice(sorted(obj))] = random_value(rng)
                        body, ctype = json.dumps(obj).encode(), "application/json"
                    else:
                        body, ctype = random_body(rng, fields)
                    if seed and rng.random() < 0.5 and ctype == "application/json":
                        try:
                            obj = json.loads(body)
                            if isinstance(obj, dict):
                                obj.update(seed)
                                body = json.dumps(obj).encode()
                        except ValueError:
                            pass
                    headers = {"Content-Type": ctype, **auth[path.split("/")[1]]}
                    if rng.random() < 0.3:
                        headers["Idempotency-Key"] = rng.choice([b"k", b"k" * 300, "\u2603".encode(), b"same", b"\xff\xfe"])
                    r = c.request(method, path, content=body, headers=headers, auth=hx_auth.get(path.split("/")[1]))
                else:
                    path = rng.choice(reads)
                    params = {q: str(random_value(rng)) for q in rng.sample(QUERY, rng.randint(0, 4))}
                    r = c.get(path, params=params, headers=auth[path.split("/")[1]], auth=hx_auth.get(path.split("/")[1]))
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert r.status_code < 500, (path, r.status_code, r.text[:300])
    assert statuses.get(400, 0) > 300 and sum(v for s, v in statuses.items() if s < 300) > 50  # it exercised both
