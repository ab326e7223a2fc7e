"""The UP cardiac events emulator over real loopback HTTP, as a partner client sees it."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.vendors.up import today
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer

# Two partner clients of the same user, and another user.
TOKENS = ["tok-a:userA:client1", "tok-b:userA:client2", "tok-c:userC:client1"]
V = "/nudge/api/v.1.0"


@pytest.fixture
def base(tmp_path):
    with BackgroundServer(build_app(tmp_path, Credentials(up_tokens=TOKENS))) as server:
        yield server.url + "/up"


def client(base: str, token: str = "tok-a") -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def create(c: httpx.Client, **fields) -> httpx.Response:
    data = {"title": "Cardiac check", "heart_rate": "70", "systolic_pressure": "120", "diastolic_pressure": "80"}
    data.update({k: str(v) for k, v in fields.items()})
    return c.post(f"{V}/users/@me/cardiac_events", data=data)


def test_every_answer_has_the_meta_envelope_and_tokens_are_checked(base):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dTpw"}):
        r = httpx.get(f"{base}{V}/users/@me/cardiac_events", headers=headers)
        assert r.status_code == 401
        meta = r.json()["meta"]
        assert meta["code"] == 401 and meta["user_xid"] is None and abs(meta["time"] - time.time()) < 60
        assert r.json()["data"] == {}
    with client(base) as c:
        r = c.get(f"{V}/users/@me/cardiac_events")
        assert r.status_code == 200 and r.json()["meta"]["user_xid"] == "userA" and r.json()["meta"]["message"] == "OK"
        r = c.get("/nudge/api/v.9.9/users/@me/cardiac_events")
        assert r.status_code == 404 and r.json()["meta"]["code"] == 404
        r = c.get(f"{V}/users/userC/cardiac_events")
        assert r.status_code == 403 and "another user" in r.json()["meta"]["message"]


def test_create_get_on_versioned_and_unversioned_paths(base):
    with client(base) as c:
        r = create(c, time_created=1700000000, tz="America/Los_Angeles", note="after the run",
                   image_url="http://site.com/image.png")
        assert r.status_code == 201
        body = r.json()
        assert body["meta"]["message"] == "Created" and body["meta"]["code"] == 201
        event = body["data"]
        assert len(event["xid"]) == 22 and event["type"] == "cardiac"
        assert (event["heart_rate"], event["systolic_pressure"], event["diastolic_pressure"]) == (70, 120, 80)
        assert event["time_created"] == 1700000000 and event["date"] == 20231114  # local date in Los Angeles
        assert event["details"] == {"tz": "America/Los_Angeles"} and event["note"] == "after the run"
        assert event["image"] == "http://site.com/image.png" and event["time_removed"] == 0
        for path in (f"{V}/cardiac_events/{event['xid']}", f"/nudge/api/cardiac_events/{event['xid']}",
                     f"/nudge/api/v.1.1/cardiac_events/{event['xid']}"):
            assert c.get(path).json()["data"] == event
        json_body = c.post("/nudge/api/users/@me/cardiac_events", json={"heart_rate": 55})
        assert json_body.status_code == 201 and json_body.json()["data"]["title"] == "Cardiac event"
        assert c.get(f"{V}/cardiac_events/doesnotexist").status_code == 404
    with client(base, "tok-c") as other:
        assert other.get(f"{V}/cardiac_events/{event['xid']}").status_code == 404


@pytest.mark.parametrize("fields, message", [
    ({"tz": "Mars/Base"}, "Olson time zone"),
    ({"systolic_pressure": ""}, "go together"),
    ({"systolic_pressure": "70"}, "higher than diastolic"),
    ({"heart_rate": "fast"}, "heart_rate must be an integer"),
    ({"heart_rate": "900"}, "between 20 and 300"),
    ({"colour": "red"}, "unknown parameter(s): colour"),
    ({"heart_rate": "", "systolic_pressure": "", "diastolic_pressure": ""}, "needs heart_rate"),
    ({"image_url": "file:///etc/passwd"}, "image_url must be"),
    ({"time_created": str(int(time.time()) + 10 * 86400)}, "time_created must be between"),
])
def test_create_validation_answers_in_the_envelope(base, fields, message):
    with client(base) as c:
        r = create(c, **fields)
    assert r.status_code == 400 and message in r.json()["meta"]["message"], r.text
    assert r.json()["meta"]["user_xid"] == "userA"


def test_delete_only_by_the_creating_client(base):
    with client(base, "tok-a") as a, client(base, "tok-b") as b, client(base, "tok-c") as other:
        xid = create(a).json()["data"]["xid"]
        r = b.delete(f"{V}/cardiac_events/{xid}")  # same user, another partner client
        assert r.status_code == 403 and "not created by this partner client" in r.json()["meta"]["message"]
        assert other.delete(f"{V}/cardiac_events/{xid}").status_code == 404  # another user
        r = a.delete(f"{V}/cardiac_events/{xid}")
        assert r.status_code == 200 and r.json() == {
            "meta": {**r.json()["meta"], "message": f"Cardiac event data with xid {xid} was removed", "code": 200},
            "data": {}}
        assert a.get(f"{V}/cardiac_events/{xid}").status_code == 404
        assert a.get(f"{V}/users/@me/cardiac_events").json()["data"]["items"] == []


def test_list_filters(base):
    now = int(time.time())
    with client(base) as c:
        todays = create(c, title="today").json()["data"]
        old = create(c, title="old", time_created=1384963500, tz="UTC").json()["data"]  # 2013-11-20
        page = c.get(f"{V}/users/@me/cardiac_events").json()["data"]
        assert [e["title"] for e in page["items"]] == ["today"] and page["size"] == 1  # date defaults to today
        assert todays["date"] == today()
        items = c.get(f"{V}/users/@me/cardiac_events", params={"date": "20131120"}).json()["data"]["items"]
        assert [e["xid"] for e in items] == [old["xid"]]
        window = {"start_time": 1384963000, "end_time": 1384964000}
        assert [e["xid"] for e in c.get(f"{V}/users/@me/cardiac_events", params=window).json()["data"]["items"]] == [
            old["xid"]]
        synced = c.get(f"{V}/users/@me/cardiac_events", params={"updated_after": now - 60}).json()["data"]["items"]
        assert {e["xid"] for e in synced} == {todays["xid"], old["xid"]}  # every date
        assert c.get(f"{V}/users/@me/cardiac_events", params={"updated_after": now + 60}).json()["data"]["items"] == []
        for bad, message in (({"date": "2013-11-20"}, "YYYYMMDD"), ({"date": "20131340"}, "YYYYMMDD"),
                             ({"start_time": 1}, "used together"), ({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
                             ({"start_time": 9, "end_time": 1}, "not be after"), ({"page_token": "x"}, "integer")):
            r = c.get(f"{V}/users/@me/cardiac_events", params=bad)
            assert r.status_code == 400 and message in r.json()["meta"]["message"], bad


def test_paging_a_thousand_events_by_next_links(base):
    t0 = 1_700_000_000
    with client(base) as c:
        made = [create(c, heart_rate=60 + i % 50, time_created=t0 + i // 7).json()["data"]["xid"]
                for i in range(1000)]  # seven events share every second
        path, seen, sizes = f"{V}/users/@me/cardiac_events?start_time={t0}&end_time={t0 + 1000}&limit=30", [], []
        while True:
            data = c.get(path).json()["data"]
            seen += [e["xid"] for e in data["items"]]
            sizes.append(data["size"])
            if "next" not in data["links"]:
                break
            link = data["links"]["next"]  # a path on the host, as the vendor's is on jawbone.com
            assert link.startswith(f"/up{V}/users/userA/cardiac_events?") and "start_time" in link
            path = str(httpx.URL(base).join(link))
        assert sorted(seen) == sorted(made) and len(seen) == len(set(seen)) == 1000
        assert sizes[:-1] == [30] * 33 and sizes[-1] == 10
        times = [c.get(f"{V}/cardiac_events/{x}").json()["data"]["time_created"] for x in seen[::97]]
        assert times == sorted(times, reverse=True)  # newest first


def test_idempotent_create(base):
    with client(base) as c:
        headers = {"Idempotency-Key": "up-band-1/boot/event/42"}
        first = c.post(f"{V}/users/@me/cardiac_events", data={"heart_rate": "64"}, headers=headers)
        again = c.post(f"{V}/users/@me/cardiac_events", data={"heart_rate": "64"}, headers=headers)
        assert first.status_code == 201 and again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["data"]["xid"] == first.json()["data"]["xid"]
        clash = c.post(f"{V}/users/@me/cardiac_events", data={"heart_rate": "65"}, headers=headers)
        assert clash.status_code == 422 and clash.json()["meta"]["code"] == 422
        assert c.get(f"{V}/users/@me/cardiac_events").json()["data"]["size"] == 1
        for bad in ("k" * 256, "tab\there"):  # the same key rules as every emulator
            r = c.post(f"{V}/users/@me/cardiac_events", data={"heart_rate": "64"}, headers={"Idempotency-Key": bad})
            assert r.status_code == 400 and "1-255 printable characters" in r.json()["meta"]["message"]
        assert c.get(f"{V}/users/@me/cardiac_events").json()["data"]["size"] == 1
