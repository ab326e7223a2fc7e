"""A Tastypie client from PyPI (slumber, on requests) against the Hexoskin emulator at its own root.

As a developer with an existing Hexoskin client would: the client is pointed at the emulator's
HTTPS root (`--listen hexoskin=...`), trusts the CA the emulator made, discovers the resources
through `/api/` and their schemas, and pages, creates, updates, deletes and downloads.
"""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
import requests
import slumber
from edfio import read_edf

from gateway.vendors import hexoskin as hx
from simulators.cloud import tls
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer, bind

ATHLETE = ("athlete@hexoskin.com", "hexoskin")
PUBLIC, PRIVATE = "hexoskin-dev-public", "hexoskin-dev-private"
START = 1_700_000_000 * hx.TICKS_PER_SECOND


class Signed(requests.auth.HTTPBasicAuth):
    """Basic plus the API-key signature over the URL as requests sends it, as the vendor's client does."""

    def __call__(self, r):
        r = super().__call__(r)
        r.headers.update(hx.signed_headers(PUBLIC, PRIVATE, r.url, int(time.time())))
        return r


@pytest.fixture
def hexoskin(tmp_path):
    """(base URL at the emulator's own root, a requests session that trusts its CA)."""
    own = bind()
    port = own.getsockname()[1]
    secure = tls.made(tmp_path / "tls", ["127.0.0.1"])
    app = build_app(tmp_path / "cloud", Credentials(), ports={port: "hexoskin"})
    with BackgroundServer(app, secure=secure, extra=[own]):
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE (set on some machines) replaces `verify`
        session.verify = secure.ca_file
        session.auth = ATHLETE
        yield f"https://127.0.0.1:{port}", session


def test_a_tastypie_client_discovers_pages_writes_and_downloads(hexoskin):
    base, session = hexoskin
    # Discovery: every resource's list endpoint and schema, as a Tastypie client reads them first.
    resources = session.get(base + "/api/").json()
    assert resources == session.get(base + "/api/v1/").json() and {"record", "range", "datatype", "data"} <= set(resources)
    for name, where in resources.items():
        schema = session.get(base + where["schema"]).json()
        assert where["list_endpoint"] == f"/api/v1/{name}/"
        assert "get" in schema["allowed_list_http_methods"] and schema["default_limit"] == 20, name
    range_schema = session.get(base + resources["range"]["schema"]).json()
    assert range_schema["allowed_detail_http_methods"] == ["get", "put", "patch", "delete"]
    assert range_schema["fields"]["trainingroutine"]["related_type"] == "to_one"
    assert range_schema["filtering"]["start"] == ["exact", "range", "gt", "gte", "lt", "lte"]

    api = slumber.API(base + "/api/v1/", session=session)
    account = api.account.get()["objects"][0]
    assert account["email"] == ATHLETE[0] and account["resource_uri"].startswith(resources["user"]["list_endpoint"])
    assert {u["email"] for u in api.user.get()["objects"]} == {ATHLETE[0]}

    # Datatypes with paging: limit=45, then the next links to the end; every URI names its list endpoint.
    page = api.datatype.get(limit=45)
    seen, pages = list(page["objects"]), 1
    while page["meta"]["next"]:
        page = session.get(base + page["meta"]["next"]).json()
        seen += page["objects"]
        pages += 1
    assert len(seen) == page["meta"]["total_count"] == len(hx.DATATYPES) > 45 and pages == 2
    assert sorted(d["dataid"] for d in seen) == sorted(hx.DATATYPES)
    assert all(d["resource_uri"] == f"/api/v1/datatype/{d['dataid']}/" for d in seen)

    # A shirt's data goes up (the project's upload), then down in every format.
    ecg = np.arange(700) % 500 - 250
    data = {hx.ECG_I: hx.series(START + np.arange(700), ecg), hx.HEART_RATE: hx.series(START + 256 * np.arange(3),
                                                                                   [70, 71, 72])}
    up = session.post(base + "/api/v1/data/", data=hx.data_body("HXSKIN1", START, "1.0", data),
                      headers={"Content-Type": "application/json"}, auth=Signed(*ATHLETE))
    assert up.status_code == 201, up.text
    record = api.record.get()["objects"][0]
    assert record["start"] == START and record["device"] == "/api/v1/device/HXSKIN1/"
    assert api.record(record["id"]).get()["resource_uri"] == record["resource_uri"]
    query = {"datatype__in": f"{hx.ECG_I},{hx.HEART_RATE}", "record": record["id"]}
    as_json = api.data.get(**query)
    assert as_json[0]["data"][str(hx.ECG_I)] == data[hx.ECG_I] and as_json[0]["user"] == account["resource_uri"]
    flat = api.data.get(flat=True, **query)
    assert flat[0] == [START, int(ecg[0]), 70] and flat[1] == [START + 1, int(ecg[1]), None] and len(flat) == 700
    csv = session.get(base + "/api/v1/data/", params=query, headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.splitlines()[1] == f"{START},{ecg[0]},70"
    zipped = zipfile.ZipFile(io.BytesIO(session.get(base + "/api/v1/data/", params=query,
                                                    headers={"Accept": "application/octet-stream"}).content))
    wav = np.frombuffer(zipped.read(f"record_{record['id']}/ECG_I.wav")[44:], "<i2")
    np.testing.assert_array_equal(wav, ecg)
    edf_answer = session.get(base + "/api/v1/data/", params=query, headers={"Accept": "application/x-edf"})
    assert edf_answer.headers["content-type"] == "application/x-edf"
    edf = read_edf(io.BytesIO(edf_answer.content))
    signals = {s.label: s for s in edf.signals}
    assert signals["ECG_I"].sampling_frequency == 256 and signals["HEART_RATE"].sampling_frequency == 1
    np.testing.assert_array_equal(signals["ECG_I"].data[:700], ecg)  # the session starts on a whole second
    np.testing.assert_array_equal(signals["HEART_RATE"].data[:3], [70, 71, 72])

    # A range: created signed, replaced, patched, deleted; the same create twice is two ranges.
    signed = slumber.API(base + "/api/v1/", session=session, auth=Signed(*ATHLETE))
    body = {"name": "walk", "start": START, "end": START + 512, "user": account["resource_uri"]}
    made = [signed.range.post(body) for _ in range(2)]
    assert made[0]["name"] == "walk" and made[0]["id"] != made[1]["id"]
    rng = api.range(made[0]["id"])
    replaced = rng.put({**made[0], "name": "walk, longer", "end": START + 1024,
                        "trainingroutine": "/api/v1/trainingroutine/3/"})
    assert replaced["name"] == "walk, longer" and replaced["trainingroutine"] == "/api/v1/trainingroutine/3/"
    assert rng.patch({"note": "outdoors"})["note"] == "outdoors" and rng.get()["end"] == START + 1024
    rng.delete()
    with pytest.raises(slumber.exceptions.HttpNotFoundError):
        rng.get()
    assert [r["id"] for r in api.range.get()["objects"]] == [made[1]["id"]]
    # Refusals reach the client as its own exceptions, with the document's error body.
    with pytest.raises(slumber.exceptions.HttpClientError) as refused:
        api.datatype.post({"name": "mine"})
    assert refused.value.response.status_code == 405
