"""The Hexoskin API emulator over HTTP: authentication, Tastypie lists, filters, ordering, paging,
method rules, who sees what, uploads refused and accepted, the data formats and X-HexoCache."""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest
import httpx

from gateway.uplinks.hexoskin import HexoskinAuth
from gateway.vendors import hexoskin as hx
from simulators.cloud.hexoskin.app import create_app
from simulators.cloud.hexoskin.store import HexoskinStore
from simulators.cloud.server import BackgroundServer
from tests.chain import ManualClock

NOW = 1_795_426_200
START = NOW * 256
USERS = ["athlete@hexoskin.com:hexoskin:Athlete Hexoskin", "coach@hexoskin.com:coach:Coach Hexoskin",
         "other@hexoskin.com:other:Other User"]
KEYS = ["pub:priv", "pub-other:priv-other:other@hexoskin.com"]


@pytest.fixture
def emu(tmp_path):
    clock = ManualClock(NOW)
    store = HexoskinStore(tmp_path / "hexoskin.db")
    # The strict form (wearable-sim cloud --hexoskin-require-signature --hexoskin-refuse-replays).
    app = create_app(store, users=USERS, keys=KEYS, coaching=["coach@hexoskin.com>athlete@hexoskin.com"],
                     require_signature=True, refuse_replays=True, clock=clock)
    with BackgroundServer(app) as server:  # over loopback, as any client reaches the vendor
        yield server, clock, store
    store.close()


def test_by_default_basic_alone_works_and_a_repeated_signed_create_is_stored_twice(tmp_path):
    """The document's curl lines send Basic only; the official client's example repeats a create."""
    store = HexoskinStore(tmp_path / "hexoskin.db")
    with BackgroundServer(create_app(store, users=USERS, keys=KEYS)) as server:
        basic_only = signed(server, ("athlete@hexoskin.com", "hexoskin"))
        assert basic_only.get("/api/v1/account/").json()["objects"][0]["email"] == "athlete@hexoskin.com"
        assert signed(server, ("athlete@hexoskin.com", "nope")).get("/api/v1/account/").status_code == 401
        c = signed(server, HexoskinAuth("athlete@hexoskin.com", "hexoskin", "pub", "priv", clock=lambda: NOW))
        assert c.get("/api/v1/account/").status_code == 401  # a signature, when sent, must be fresh
        c = signed(server, HexoskinAuth("athlete@hexoskin.com", "hexoskin", "pub", "priv"))
        first = c.post("/api/v1/range/", json={"name": "run", "start": START, "end": START + 256})
        replay = signed(server, None).post("/api/v1/range/", content=first.request.content,
                                           headers=dict(first.request.headers))
        assert first.status_code == replay.status_code == 201
        assert len(basic_only.get("/api/v1/range/").json()["objects"]) == 2
        bad = signed(server, HexoskinAuth("athlete@hexoskin.com", "hexoskin", "pub", "wrong"))
        assert bad.get("/api/v1/account/").json() == {"error": "API signature failed."}
    store.close()


def signed(server, auth) -> httpx.Client:
    """A client of the emulator with this httpx auth (None: headers as given)."""
    return httpx.Client(base_url=server.url, auth=auth) if auth else httpx.Client(base_url=server.url)


def client(emu, email="athlete@hexoskin.com", password="hexoskin", public="pub", private="priv") -> httpx.Client:
    server, clock, _ = emu
    return signed(server, HexoskinAuth(email, password, public, private, clock=clock))


def upload(c: httpx.Client, data: dict[int, list], device="HXSKIN1", start=START, key: str | None = None):
    headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
    return c.post("/api/v1/data/", content=hx.data_body(device, start, "1.0", data), headers=headers)


def ecg(n: int, first: int = 0, start: int = START) -> list:
    pos = first + np.arange(n)
    return hx.series(start + pos, (pos * 7) % 4000 - 2000)


# Authentication ---------------------------------------------------------------------------

def test_both_schemes_and_their_refusals(emu):
    server, clock, _ = emu
    ok = client(emu).get("/api/v1/account/")
    assert ok.status_code == 200 and ok.json()["objects"][0]["email"] == "athlete@hexoskin.com"
    assert ok.json()["meta"]["limit"] == 1 and ok.json()["objects"][0]["profile"]["unit_system"] == "metric"
    # The signature is checked against the URL as sent, percent-escapes and all.
    assert client(emu).get("/api/v1/record/?device=HX%2FA%20%C3%A9&order_by=-start").status_code == 200
    assert client(emu).get("/api/v1/record/%ff/").status_code == 404
    cases = [(client(emu, password="nope"), "wrong e-mail or password"),
             (client(emu, private="not-the-key"), "API signature failed."),
             (client(emu, public="unknown"), "unknown API key"),
             (signed(server, ("athlete@hexoskin.com", "hexoskin")), "requires requests signed")]
    for c, message in cases:
        r = c.get("/api/v1/account/")
        assert r.status_code == 401 and message in r.json()["error"], r.text
    # A key bound to a user needs no Basic credentials; with another user's Basic it is refused.
    bound = signed(server, _KeyOnly("pub-other", "priv-other", clock))
    assert bound.get("/api/v1/account/").json()["objects"][0]["email"] == "other@hexoskin.com"
    assert client(emu, public="pub-other", private="priv-other").get("/api/v1/account/").status_code == 401


class _KeyOnly(HexoskinAuth):
    def __init__(self, public, private, clock):
        super().__init__("", "", public, private, clock)

    def auth_flow(self, request):
        flow = super().auth_flow(request)
        signed = next(flow)
        del signed.headers["Authorization"]
        yield signed


def test_stale_and_replayed_signatures(emu):
    server, clock, _ = emu
    c = client(emu)
    for skew in (-301, 301):
        stale = signed(server, HexoskinAuth("athlete@hexoskin.com", "hexoskin", "pub", "priv",
                                                   clock=lambda: clock.t + skew))
        r = stale.get("/api/v1/account/")
        assert r.status_code == 401 and "stale signature" in r.json()["error"]
    edge = signed(server, HexoskinAuth("athlete@hexoskin.com", "hexoskin", "pub", "priv",
                                              clock=lambda: clock.t - 299))
    assert edge.get("/api/v1/account/").status_code == 200
    # Capture a signed write and send it again, byte for byte: refused.
    first = c.post("/api/v1/range/", json={"name": "run", "start": START, "end": START + 256})
    assert first.status_code == 201
    sent = first.request
    replay = signed(server, None).post("/api/v1/range/", content=sent.content, headers=dict(sent.headers))
    assert replay.status_code == 401 and "replayed signature" in replay.json()["error"]
    assert len(c.get("/api/v1/range/").json()["objects"]) == 1
    # The signature is bound to the URL: the same headers on another URL fail.
    moved = signed(server, None).post("/api/v1/range/?limit=5", content=sent.content, headers=dict(sent.headers))
    assert moved.status_code == 401 and moved.json()["error"] == "API signature failed."
    # The client's own retry of the same body within the same second is stamped a second later.
    again = c.post("/api/v1/range/", content=sent.content, headers={"Content-Type": "application/json"})
    assert again.status_code == 201
    assert int(again.request.headers[hx.TIMESTAMP_HEADER]) == int(sent.headers[hx.TIMESTAMP_HEADER]) + 1


# Tastypie lists ---------------------------------------------------------------------------

def test_paging_meta_and_links(emu):
    c = client(emu)
    for i in range(45):
        assert c.post("/api/v1/annotation/", json={"annotation": f"note {i}", "start": START + i}).status_code == 201
    page = c.get("/api/v1/annotation/").json()
    assert page["meta"] == {"limit": 20, "next": "/api/v1/annotation/?limit=20&offset=20", "offset": 0,
                            "previous": None, "total_count": 45}
    assert all(o["resource_uri"] == f"/api/v1/annotation/{o['id']}/" for o in page["objects"])
    seen, url = [], "/api/v1/annotation/?order_by=start"
    while url:
        body = c.get(url).json()
        seen += [o["annotation"] for o in body["objects"]]
        url = body["meta"]["next"]
    assert seen == [f"note {i}" for i in range(45)]
    last = c.get("/api/v1/annotation/?offset=40").json()
    assert len(last["objects"]) == 5 and last["meta"]["next"] is None
    assert last["meta"]["previous"] == "/api/v1/annotation/?limit=20&offset=20"
    assert c.get("/api/v1/annotation/?limit=0").json()["meta"]["limit"] == 1000
    assert c.get("/api/v1/annotation/?limit=5000").json()["meta"]["limit"] == 1000
    assert len(c.get("/api/v1/annotation/?limit=7").json()["objects"]) == 7
    detail = c.get(page["objects"][0]["resource_uri"]).json()
    assert "meta" not in detail and detail["annotation"] == page["objects"][0]["annotation"]
    for bad in ("limit=-1", "offset=x"):
        assert c.get(f"/api/v1/annotation/?{bad}").status_code == 400


def test_every_filter_and_ordering(emu):
    c = client(emu)
    made = []
    for i, device in enumerate(["HXA", "HXB", "HXA", "HXC"]):
        r = c.post("/api/v1/record/", json={"device": device, "start": START + 100 * i, "end": START + 100 * i + 50})
        assert r.status_code == 201 and r.headers["location"].endswith(f"/api/v1/record/{r.json()['id']}/")
        made.append(r.json()["id"])

    def ids(query: str) -> list[int]:
        r = c.get(f"/api/v1/record/?{query}")
        assert r.status_code == 200, r.text
        return [o["id"] for o in r.json()["objects"]]

    assert ids("device=HXA") == ids("device__exact=HXA") == [made[0], made[2]]
    assert ids("device__in=HXB,HXC") == [made[1], made[3]]
    assert ids(f"start__gt={START + 100}") == made[2:]
    assert ids(f"start__gte={START + 100}") == made[1:]
    assert ids(f"start__lt={START + 100}") == made[:1]
    assert ids(f"start__lte={START + 100}") == made[:2]
    assert ids(f"start__range={START + 100},{START + 200}") == made[1:3]
    assert ids(f"end={START + 50}") == made[:1]
    assert ids(f"device=HXA&start__gt={START}") == [made[2]]  # filters are ANDed
    user = c.get("/api/v1/account/").json()["objects"][0]["resource_uri"]
    assert ids(f"user={user}") == ids(f"user__in={user.split('/')[-2]}") == made
    assert ids("order_by=-start") == made[::-1]
    assert ids("order_by=device,-start") == [made[2], made[0], made[1], made[3]]
    assert ids("order_by=-device,start&limit=2") == [made[3], made[1]]
    # As in Tastypie, what names no field is ignored; a field that is not a filter is refused.
    assert ids("colour=red&flat=True") == made
    for bad, message in [("firmware_rev=1.0", "'firmware_rev' field does not allow filtering"),
                         ("device__gt=HXA", "allows exact, in"),
                         ("start__range=1", "two comma-separated"), ("start=soon", "not a valid int"),
                         ("order_by=firmware_rev", "cannot order by")]:
        r = c.get(f"/api/v1/record/?{bad}")
        assert r.status_code == 400 and message in r.json()["error"], (bad, r.text)
    assert [d["dataid"] for d in c.get("/api/v1/datatype/?dataid__in=19,4113,18&order_by=dataid").json()["objects"]] \
        == [18, 19, 4113]
    assert c.get("/api/v1/datatype/4113/").json()["hexo_freq"] == 1


def test_method_rules(emu):
    c = client(emu)
    rec = c.post("/api/v1/record/", json={"device": "HXA", "start": START}).json()
    uri = rec["resource_uri"]
    assert c.delete("/api/v1/record/").status_code == 405
    assert c.put("/api/v1/record/", json={"device": "HXA", "start": START}).status_code == 405
    assert c.post(uri, json={"device": "HXA", "start": START}).status_code == 405
    assert c.put("/api/v1/record/99999/", json={"device": "HXA", "start": START}).status_code == 404
    assert c.get("/api/v1/record/99999/").status_code == 404
    created = c.patch("/api/v1/record/", json={"device": "HXB", "start": START + 5})  # PATCH to a list creates
    assert created.status_code == 201 and created.headers["location"].endswith(created.json()["resource_uri"])
    assert c.put(uri, json={"device": "HXZ"}).status_code == 400  # PUT replaces: start is required
    put = c.put(uri, json={"device": "HXZ", "start": START, "end": START + 10, "status": "complete"})
    assert put.status_code == 200 and put.json()["device"] == "/api/v1/device/HXZ/"
    patched = c.patch(uri, json={"firmware_rev": "9.9"}).json()
    assert (patched["firmware_rev"], patched["end"], patched["status"]) == ("9.9", START + 10, "complete")
    assert c.delete(uri).status_code == 204 and c.get(uri).status_code == 404
    for path, method in [("/api/v1/datatype/", "POST"), ("/api/v1/datatype/4113/", "DELETE"),
                         ("/api/v1/metric/", "POST"), ("/api/v1/report/", "POST"), ("/api/v1/ecg/", "DELETE"),
                         ("/api/v1/data/", "PUT"), ("/api/v1/data/", "DELETE"), ("/api/v1/account/", "POST")]:
        assert c.request(method, path, json={}).status_code == 405, (method, path)
    assert c.get("/api/v1/nothing/").status_code == 404
    bad = c.post("/api/v1/range/", json={"name": "x", "start": START + 10, "end": START})
    assert bad.status_code == 400 and "end must not precede start" in bad.json()["error"]
    assert c.post("/api/v1/range/", json={"name": "x", "start": START}).status_code == 400  # end is required
    assert c.post("/api/v1/range/", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert c.post("/api/v1/range/", json={"name": "x", "start": -1, "end": 1}).status_code == 400
    assert c.post("/api/v1/trackpoint/", json={"track": 1, "time": "2026-01-01T00:00:00",
                                               "position": [0, 0]}).status_code == 400  # no such track


def test_who_sees_what(emu):
    athlete, coach, other = client(emu), client(emu, "coach@hexoskin.com", "coach"), \
        client(emu, "other@hexoskin.com", "other")
    assert upload(athlete, {4113: ecg(512)}).status_code == 201
    rec = athlete.get("/api/v1/record/").json()["objects"][0]
    athlete_uri = rec["user"]["resource_uri"]
    # The coach sees the athlete's record and data, but may not change them.
    assert [o["id"] for o in coach.get("/api/v1/record/").json()["objects"]] == [rec["id"]]
    assert len(coach.get(f"/api/v1/data/?datatype=4113&record={rec['id']}").json()[0]["data"]["4113"]) == 512
    assert coach.patch(rec["resource_uri"], json={"firmware_rev": "x"}).status_code == 403
    assert coach.delete(rec["resource_uri"]).status_code == 403
    assert coach.post("/api/v1/range/", json={"name": "x", "start": START, "end": START + 1,
                                              "user": athlete_uri}).status_code == 403
    assert {u["email"] for u in coach.get("/api/v1/user/").json()["objects"]} == {"coach@hexoskin.com",
                                                                                  "athlete@hexoskin.com"}
    window = coach.get(f"/api/v1/data/?datatype=4113&start={START}&end={START + 600}&user={athlete_uri}")
    assert window.status_code == 200 and len(window.json()[0]["data"]["4113"]) == 512
    # Someone else sees none of it: 404 for the objects, 403 for asking for the user's data.
    assert other.get(rec["resource_uri"]).status_code == 404
    assert other.get("/api/v1/record/").json()["meta"]["total_count"] == 0
    assert other.get(f"/api/v1/data/?datatype=4113&record={rec['id']}").status_code == 404
    r = other.get(f"/api/v1/data/?datatype=4113&start={START}&end={START + 600}&user={athlete_uri}")
    assert r.status_code == 403
    assert other.get(f"/api/v1/report/?include_metrics=44&record={rec['id']}").status_code == 404
    assert other.get(athlete_uri).status_code == 404
    # Athletes do not see their coach's data.
    coach_rec = coach.post("/api/v1/record/", json={"device": "HXC", "start": START}).json()
    assert athlete.get(coach_rec["resource_uri"]).status_code == 404


# Uploads ----------------------------------------------------------------------------------

def test_bad_uploads_are_refused_and_store_nothing(emu):
    c = client(emu)
    assert upload(c, {4113: ecg(256)}).status_code == 201
    rid = c.get("/api/v1/record/").json()["objects"][0]["id"]
    before = c.get(f"/api/v1/data/?datatype__in=4113,4129&record={rid}").json()
    bad_bodies = [
        ({"record": {"device": "HXSKIN1", "start": START}, "data": {"9999": []}}, "unknown datatype"),
        ({"record": {"device": "HXSKIN1", "start": START}, "data": {"4113": [[START + 300, 1.5]]}}, "integer pairs"),
        ({"record": {"device": "HXSKIN1", "start": START}, "data": {"4113": [[START + 300, 1, 2]]}}, "integer pairs"),
        ({"record": {"device": "HXSKIN1", "start": START}, "data": {"4113": [[START + 300, 1], [START + 5]]}},
         "integer pairs"),
        ({"record": {"device": "HXSKIN1", "start": START}, "data": {"4113": [[START + 300, True]]}}, "integer pairs"),
        ({"record": {"device": "HXSKIN1", "start": START}, "data": {"4113": [[START + 300, 2 ** 70]]}},
         "integer pairs"),
        ({"record": {"device": "HXSKIN1", "start": START}, "data": {"4113": [[START + 301, 1], [START + 300, 1]]}},
         "strictly increasing"),
        ({"record": {"device": "HXSKIN1", "start": START}, "data": {"4129": [[START + 301, 1]]}}, "every 2 ticks"),
        ({"record": {"device": "HXSKIN1", "start": START}, "data": {"4113": [[START - 1, 1]]}}, "precedes"),
        ({"record": {"device": "", "start": START}, "data": {}}, "record.device"),
        ({"record": {"device": "HXSKIN1", "start": "now"}, "data": {}}, "record.start"),
        ({"record": True, "data": {}}, "record must be"),
        ({"data": {}}, '"record" and "data"'),
        ([1, 2], '"record" and "data"'),
    ]
    for body, message in bad_bodies:
        r = c.post("/api/v1/data/", json=body)
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
    assert c.post("/api/v1/data/", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert c.post("/api/v1/data/", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert c.post("/api/v1/data/", json={"record": "/api/v1/record/1/", "data": {}}).status_code == 404
    assert c.get(f"/api/v1/data/?datatype__in=4113,4129&record={rid}").json() == before
    assert c.get("/api/v1/record/").json()["meta"]["total_count"] == 1


def test_idempotent_uploads(emu):
    c = client(emu)
    first = upload(c, {4113: ecg(256)}, key="shirt/0-256")
    assert first.status_code == 201 and first.json()["points"] == {"4113": 256}
    again = upload(c, {4113: ecg(256)}, key="shirt/0-256")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    conflict = upload(c, {4113: ecg(256, first=256)}, key="shirt/0-256")
    assert conflict.status_code == 422
    # Without a key, the same samples sent twice are still kept once.
    assert upload(c, {4113: ecg(256)}).status_code == 201
    rid = c.get("/api/v1/record/").json()["objects"][0]["id"]
    got = np.array(c.get(f"/api/v1/data/?datatype=4113&record={rid}").json()[0]["data"]["4113"])
    np.testing.assert_array_equal(got, np.array(ecg(256)))


# Data out ---------------------------------------------------------------------------------

def test_subsampling_to_65535_points(emu):
    c = client(emu)
    n = 70_000  # over 273 s of 256 Hz ECG
    for first in range(0, n, 10_000):
        assert upload(c, {4113: ecg(min(10_000, n - first), first)}).status_code == 201
    rid = c.get("/api/v1/record/").json()["objects"][0]["id"]
    full = np.array(ecg(n))
    got = np.array(c.get(f"/api/v1/data/?datatype=4113&record={rid}").json()[0]["data"]["4113"])
    k = math.ceil(n / hx.MAX_POINTS)
    assert len(got) <= hx.MAX_POINTS and k == 2
    np.testing.assert_array_equal(got, full[::k])  # real samples at their real times
    rows = c.get(f"/api/v1/data/?datatype=4113&record={rid}", headers={"Accept": "text/csv"}).text.splitlines()
    assert len(rows) - 1 == len(got)
    exact = np.array(c.get(f"/api/v1/data/?datatype=4113&start={START}&end={START + hx.MAX_POINTS}")
                     .json()[0]["data"]["4113"])
    np.testing.assert_array_equal(exact, full[:hx.MAX_POINTS])  # exactly the cap: nothing dropped
    blob = c.get(f"/api/v1/data/?datatype=4113&record={rid}", headers={"Accept": "application/octet-stream"}).content
    wav = zipfile.ZipFile(io.BytesIO(blob)).read(f"record_{rid}/ECG_I.wav")
    np.testing.assert_array_equal(np.frombuffer(wav[44:], "<i2"), full[:, 1])  # the zip is never subsampled
    assert c.get(f"/api/v1/data/?datatype=4113&record={rid}", headers={"Accept": "image/png"}).status_code == 406


def test_zip_gaps_and_values_beyond_16_bits(emu):
    c = client(emu)
    head, tail = ecg(100), ecg(50, first=300)  # 200 samples missing between them
    resp = hx.series(START + 2 * np.arange(64), 30_000 + np.arange(64) * 100)  # uint16 counts above 32767
    assert upload(c, {4113: head + tail, 4129: resp}).status_code == 201
    rid = c.get("/api/v1/record/").json()["objects"][0]["id"]
    z = zipfile.ZipFile(io.BytesIO(c.get(f"/api/v1/data/?datatype__in=4113,4129&record={rid}",
                                         headers={"Accept": "application/octet-stream"}).content))
    info = json.loads(z.read(f"record_{rid}/info.json"))
    assert info["files"]["4113"]["gaps"] == [[START + 100, START + 300]]
    wav = np.frombuffer(z.read(f"record_{rid}/ECG_I.wav")[44:], "<i2")
    assert len(wav) == 350 and not wav[100:300].any()
    np.testing.assert_array_equal(wav[:100], np.array(head)[:, 1])
    np.testing.assert_array_equal(wav[300:], np.array(tail)[:, 1])
    assert info["files"]["4129"]["format"] == "hxd"  # would not fit a 16-bit WAV: kept exact instead
    pairs = np.frombuffer(z.read(f"record_{rid}/respiration_thoracic.hxd"), dtype=[("t", "<u8"), ("v", "<i8")])
    np.testing.assert_array_equal(pairs["v"], np.array(resp)[:, 1])


def test_ecg_resource_and_data_errors(emu):
    c = client(emu)
    upload(c, {4113: ecg(300), 19: hx.series([START, START + 256], [70, 71])})
    rid = c.get("/api/v1/record/").json()["objects"][0]["id"]
    body = c.get(f"/api/v1/ecg/?record={rid}").json()
    assert list(body[0]["data"]) == ["4113"] and len(body[0]["data"]["4113"]) == 300
    assert c.get(f"/api/v1/data/?datatype__in=19&record={rid}").json()[0]["data"]["19"] == [[START, 70],
                                                                                           [START + 256, 71]]
    # Arguments that are not filters are ignored; flat gives the CSV's rows as JSON.
    assert c.get(f"/api/v1/data/?datatype__in=19&record={rid}&colour=red").json()[0]["data"]["19"][0] == [START, 70]
    flat = c.get(f"/api/v1/data/?datatype__in=19,4113&record={rid}&flat=True").json()
    assert flat[0] == [START, 70, -2000] and flat[1] == [START + 1, None, -1993] and len(flat) == 300
    for query, message in [(f"record={rid}", "give datatype"), ("datatype=4113", "give record, range"),
                           (f"datatype=12345&record={rid}", "unknown datatype"),
                           (f"datatype=4113&start={START}&end={START}", "end must be after start"),
                           (f"datatype=4113&record={rid}&range=1", "give one of")]:
        r = c.get(f"/api/v1/data/?{query}")
        assert r.status_code == 400 and message in r.json()["error"], (query, r.text)


def test_cached_answers_carry_x_hexocache(emu):
    server, clock, _ = emu
    c = client(emu)
    upload(c, {4113: ecg(256)})
    rid = c.get("/api/v1/record/").json()["objects"][0]["id"]
    url = f"/api/v1/data/?datatype=4113&record={rid}"
    fresh = c.get(url)
    assert hx.CACHE_HEADER not in fresh.headers
    clock.t += 5
    cached = c.get(url)
    assert cached.headers[hx.CACHE_HEADER] == str(NOW) and cached.json() == fresh.json()
    assert hx.CACHE_HEADER not in c.get(url, headers={"Accept": "text/csv"}).headers  # another format
    upload(c, {4113: ecg(256, first=256)})  # a write: cached answers are stale
    after = c.get(url)
    assert hx.CACHE_HEADER not in after.headers and len(after.json()[0]["data"]["4113"]) == 512
    report = f"/api/v1/report/?include_metrics=44&record={rid}"
    assert hx.CACHE_HEADER not in c.get(report).headers and hx.CACHE_HEADER in c.get(report).headers


def test_record_status_and_report_shape(emu):
    server, clock, _ = emu
    c = client(emu)
    upload(c, {19: hx.series(START + 256 * np.arange(10), [60, 65, 70, 75, 80, 85, 90, 95, 100, 105])})
    rec = c.get("/api/v1/record/").json()["objects"][0]
    assert rec["status"] == "realtime" and rec["end"] == START + 10 * 256
    clock.t += 600  # ten minutes without an upload: the session is over
    assert c.get("/api/v1/record/?status=complete").json()["meta"]["total_count"] == 1
    report = c.get(f"/api/v1/report/?include_metrics=44,45,46,47,50,71&record={rec['id']}").json()
    m = {o["name"]: o for o in report["data"][0]}
    assert (m["heartrate_avg"]["value"], m["heartrate_min"]["value"], m["heartrate_max"]["value"]) == (82.5, 60, 105)
    assert m["heartrate_avg"]["zone"] == 3 and m["heartrate_avg"]["zones"] == [0, 60, 80, 100, 120, 140]
    assert m["heartrate_histo"]["data2"]["value"] == [0, 0, 4, 4, 2, 0, 0, 0, 0, 0]
    assert m["heartrate_histo"]["data1"]["value"] == [30, 50, 70, 90, 110, 130, 150, 170, 190, 210]
    assert m["hrvlfnorm_avg"]["value"] == -1 and m["step_count"]["value"] == -1  # no ECG, no accelerometer
    assert m["heartrate_avg"]["timerange"] == {"start": START, "end": START + 2560,
                                               "user": rec["user"]["resource_uri"]}
    assert report["outputtype"] == "list" and report["record"]["id"] == rec["id"]
    for query in ("include_metrics=999&record=1", f"record={rec['id']}", "include_metrics=44"):
        assert c.get(f"/api/v1/report/?{query}").status_code == 400


def test_tracks_and_their_points(emu):
    c = client(emu)
    rng = c.post("/api/v1/range/", json={"name": "ride", "start": START, "end": START + 25600}).json()
    track = c.post("/api/v1/track/", json={"name": "loop", "range": rng["resource_uri"], "distance": 656.8}).json()
    assert track["range"] == rng["resource_uri"] and track["user"].startswith("/api/v1/user/")
    for i in range(3):
        r = c.post("/api/v1/trackpoint/", json={"track": track["resource_uri"], "time": f"2026-11-23T09:30:0{i}",
                                                "position": [-73.6045937 + i * 1e-4, 45.5308797], "altitude": 42})
        assert r.status_code == 201, r.text
    points = c.get(f"/api/v1/trackpoint/?track={track['id']}&time__gte=2026-11-23T09:30:01").json()
    assert [p["position"][0] for p in points["objects"]] == pytest.approx([-73.6044937, -73.6043937], abs=1e-9)
    assert points["objects"][0]["track"] == track["resource_uri"]
    assert c.post("/api/v1/trackpoint/", json={"track": track["id"], "time": "t", "position": [200, 0]}
                  ).status_code == 400  # longitude out of range
    other = client(emu, "other@hexoskin.com", "other")
    assert other.post("/api/v1/trackpoint/", json={"track": track["id"], "time": "t", "position": [0, 0]}
                      ).status_code == 400  # a track they cannot see
    assert c.delete(track["resource_uri"]).status_code == 204
    assert c.get("/api/v1/trackpoint/").json()["meta"]["total_count"] == 0  # the points went with it
