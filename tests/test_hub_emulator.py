"""The Human API hub over real loopback HTTP, as a Human API client sees it."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import httpx
import pytest

from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer

TOKENS = ["hub-a:human-a", "hub-b:human-b"]


@pytest.fixture
def base(tmp_path):
    with BackgroundServer(build_app(tmp_path, Credentials(humanapi_tokens=TOKENS))) as server:
        yield server.url + "/humanapi"


def client(base: str, token: str = "hub-a") -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                        timeout=30)


def links(response: httpx.Response) -> dict[str, str]:
    """RFC 5988 Link header -> {rel: url}."""
    return {m.group(2): m.group(1) for m in re.finditer(r'<([^>]*)>;\s*rel="(\w+)"', response.headers["Link"])}


def hr(c: httpx.Client, value: float, at: str = "2026-11-23T10:00:00+01:00", source: str = "kardiamobile",
       key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return c.post("/v1/human/heart_rate", json={"timestamp": at, "source": source, "value": value}, headers=headers)


def test_auth_and_media_type(base):
    assert httpx.get(base + "/v1/human").status_code == 401
    assert httpx.get(base + "/v1/human", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = httpx.get(base + "/v1/human", headers={"Authorization": "Bearer hub-a", "Accept": "text/html"})
    assert r.status_code == 406
    with client(base) as c:
        assert c.get("/v1/human").json()["userId"] == "human-a"
        assert c.get("/v1/human/steps").status_code == 404


def test_ingest_each_type_and_read_it_back(base):
    with client(base) as c:
        r = hr(c, 61, source="up", key="k1")
        assert r.status_code == 201
        obj = r.json()
        assert re.fullmatch(r"[0-9a-f]{24}", obj["id"]) and obj["userId"] == "human-a"
        assert (obj["timestamp"], obj["tzOffset"], obj["value"], obj["unit"], obj["source"]) == (
            "2026-11-23T09:00:00.000Z", "+01:00", 61, "bpm", "up")
        assert r.headers["Location"] == f"/humanapi/v1/human/heart_rate/{obj['id']}"
        bp = c.post("/v1/human/blood_pressure", json={"timestamp": "2026-11-23T11:00:00-05:00", "source": "up",
                                                     "systolic": 121, "diastolic": 79, "heartRate": 66})
        assert bp.status_code == 201 and bp.json()["unit"] == "mmHg" and bp.json()["tzOffset"] == "-05:00"
        ecg = c.post("/v1/human/ecg", json={"timestamp": "2026-11-23T10:00:30+01:00", "source": "kardiamobile",
                                            "sourceId": "KM1/1/leadI/0-9000", "duration": 30.0, "sampleRate": 300,
                                            "determination": "no_analysis"})
        assert ecg.status_code == 201 and ecg.json()["sourceId"] == "KM1/1/leadI/0-9000"
        for path in (f"/v1/human/heart_rate/{obj['id']}", f"/v1/human/heart_rate/readings/{obj['id']}"):
            assert c.get(path).json() == obj
        summary = c.get("/v1/human").json()
        assert summary["heartRate"]["id"] == obj["id"] and summary["bloodPressure"]["systolic"] == 121
        assert summary["ecg"]["duration"] == 30.0 and summary["createdAt"] and summary["updatedAt"]
        # Idempotent on the key.
        again = hr(c, 61, source="up", key="k1")
        assert again.status_code == 200 and again.json()["id"] == obj["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert hr(c, 62, source="up", key="k1").status_code == 422
        assert c.get("/v1/human/heart_rate").headers["X-Total-Count"] == "1"
    with client(base, "hub-b") as other:
        assert other.get(f"/v1/human/heart_rate/{obj['id']}").status_code == 404
        assert other.get("/v1/human/heart_rate").json() == []


@pytest.mark.parametrize("path, body, message", [
    ("heart_rate", {"timestamp": "2026-11-23T10:00:00", "source": "s", "value": 60}, "UTC offset"),
    ("heart_rate", {"timestamp": "2026-11-23T10:00:00Z", "value": 60}, "source is required"),
    ("heart_rate", {"timestamp": "2026-11-23T10:00:00Z", "source": "s", "value": 900}, "between 20 and 300"),
    ("heart_rate", {"timestamp": "2026-11-23T10:00:00Z", "source": "s", "value": 60, "unit": "Hz"}, "unit must be bpm"),
    ("blood_pressure", {"timestamp": "2026-11-23T10:00:00Z", "source": "s", "systolic": 80, "diastolic": 90},
     "systolic must be higher"),
    ("ecg", {"timestamp": "2026-11-23T10:00:00Z", "source": "s", "duration": 30, "sampleRate": 300.5},
     "sampleRate must be an integer"),
    ("ecg", {"timestamp": "2026-11-23T10:00:00Z", "source": "s", "sampleRate": 300}, "duration is required"),
    ("ecg", {"timestamp": "2026-11-23T10:00:00Z", "source": "s", "duration": 3, "sampleRate": 300, "x": 1},
     "unknown field(s) for ecg: x"),
])
def test_ingest_validation(base, path, body, message):
    with client(base) as c:
        r = c.post(f"/v1/human/{path}", json=body)
    assert r.status_code == 400 and message in r.json()["message"], r.text


def test_a_thousand_items_page_by_link_headers(base):
    with client(base) as c:
        ids = [hr(c, 40 + i % 100, at=f"2026-11-{1 + i // 100:02d}T{i % 24:02d}:{i % 60:02d}:00Z").json()["id"]
               for i in range(1000)]
        first = c.get("/v1/human/heart_rate")
        assert first.headers["X-Total-Count"] == "1000" and len(first.json()) == 50  # default limit
        rels = links(first)
        assert set(rels) == {"first", "next", "last"} and "offset=950" in rels["last"]
        seen, url = [], f"{base}/v1/human/heart_rate?limit=300"
        while url:
            r = c.get(url)
            seen += [o["id"] for o in r.json()]
            url = links(r).get("next")
            if url:
                assert "prev" in links(c.get(url)) and "limit=300" in url
        assert sorted(seen) == sorted(ids) and len(set(seen)) == 1000
        stamps = [o["timestamp"] for o in c.get("/v1/human/heart_rate", params={"limit": 500}).json()]
        assert stamps == sorted(stamps, reverse=True)  # newest first
        for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
            assert c.get("/v1/human/heart_rate", params=bad).status_code == 400


def test_filters(base):
    with client(base) as c:
        early = hr(c, 60, at="2026-11-20T23:30:00-02:00", source="up").json()  # 2026-11-21 UTC
        time.sleep(1.1)  # the filters' resolution is one second
        cut = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        time.sleep(1.1)
        late = hr(c, 70, at="2026-11-23T08:00:00Z", source="kardiamobile").json()

        def ids(**params) -> list[str]:
            r = c.get("/v1/human/heart_rate", params=params)
            assert r.status_code == 200, r.text
            return [o["id"] for o in r.json()]

        assert ids(created_since=cut) == [late["id"]] and ids(created_before=cut) == [early["id"]]
        assert ids(updated_since=cut) == [late["id"]] and ids(updated_before=cut) == [early["id"]]
        assert ids(source="up") == [early["id"]] and ids(source="nothing") == []
        assert ids(start_date="2026-11-21", end_date="2026-11-21") == [early["id"]]
        assert ids(start_date="2026-11-21", end_date="2026-11-23") == [late["id"], early["id"]]
        assert [o["id"] for o in c.get("/v1/human/heart_rate/readings/daily/2026-11-23").json()] == [late["id"]]
        assert [o["id"] for o in c.get("/v1/human/heart_rate/readings", params={"source": "kardiamobile"}).json()] == [
            late["id"]]
        for bad, message in (({"created_since": "2026-11-23"}, "YYYYMMDDTHHmmssZ"),
                             ({"start_date": "2026-11-21"}, "used together"),
                             ({"start_date": "2026-11-23", "end_date": "2026-11-21"}, "not be before"),
                             ({"start_date": "21/11/2026", "end_date": "2026-11-23"}, "YYYY-MM-DD")):
            r = c.get("/v1/human/heart_rate", params=bad)
            assert r.status_code == 400 and message in r.json()["message"], bad
        assert c.get("/v1/human/heart_rate/readings/daily/yesterday").status_code == 400
