"""The shirt simulator's CLI on a pty -> the gateway's Hexoskin driver, packager and signed uplink ->
the Hexoskin API emulator (and the hub), then the data downloaded back three ways and the
metrics checked against what the simulator was asked to simulate.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import struct
import subprocess
import sys
import time
import zipfile

import httpx
import numpy as np
import pytest

from gateway.config import load
from gateway.daemon import Gateway
from gateway.uplinks.hexoskin import HexoskinAuth
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer
from tests.chain import HUB_TOKEN, read_all

EMAIL, PASSWORD, PUBLIC, PRIVATE = "athlete@hexoskin.com", "hexoskin", "hexoskin-dev-public", "hexoskin-dev-private"
TICKS = 256


def hexoskin_uplink(server_url: str) -> str:
    """The [uplinks.hexoskin] table for the emulator at server_url."""
    return f"""[uplinks.hexoskin]
type = "hexoskin"
base_url = "{server_url}/hexoskin"
user = "{EMAIL}"
password = "{PASSWORD}"
api_key = "{PUBLIC}"
api_secret = "{PRIVATE}"
"""


def api(server) -> httpx.Client:
    """A signed client of the emulator, as any Hexoskin API user would have."""
    return httpx.Client(base_url=server.url + "/hexoskin/api/v1", auth=HexoskinAuth(EMAIL, PASSWORD, PUBLIC, PRIVATE))


async def run_session(tmp_path, server, sim_args: list[str], uplinks: list[str]) -> tuple[dict, dict, dict]:
    """Simulator -> pty -> gateway -> emulators; (simulator summary, driver counters, truth arrays)."""
    link, truth = tmp_path / "shirt", tmp_path / "truth.npz"
    sim = subprocess.Popen([sys.executable, "-m", "simulators.cli", "device", "hexoskin", "--link", str(link),
                            "--quiet", "--json", "--truth", str(truth), *sim_args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not link.exists():
        assert time.monotonic() < deadline and sim.poll() is None, sim.stderr.read()
        time.sleep(0.05)
    cfg = tmp_path / "g.toml"
    cfg.write_text(f"""
[spool]
path = "{tmp_path / 'spool.db'}"
[status]
enabled = false
[uplinks.hub]
type = "humanapi"
base_url = "{server.url}/humanapi"
token = "{HUB_TOKEN}"
{hexoskin_uplink(server.url)}
[[devices]]
name = "shirt"
driver = "hexoskin"
transport = "serial://{link}"
uplinks = {json.dumps(uplinks)}
recording_seconds = 30
""")
    gateway = Gateway(load(cfg))
    await gateway.start()
    out, err = await asyncio.to_thread(sim.communicate, timeout=120)
    assert sim.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    runner = gateway.devices[0]
    await read_all(runner.transport, summary["bytes"])
    counters = dict(runner.driver.counters)
    await gateway.stop(drain_timeout=30)
    for uplink in (gateway.uplinks[name] for name in uplinks):  # everything delivered, nothing refused
        assert uplink.counters["acked"] > 0 and not uplink.counters["dead_lettered"], uplink.status()
    with np.load(truth) as z:
        arrays = {k: z[k] for k in z.files}
    return summary, counters, arrays


def expected_activity(bounce_g: float) -> float:
    """Mean |deviation| of |a| for a vertical bounce of bounce * (2|sin| - 1) g on 1 g (the simulator's gait)."""
    theta = np.linspace(0, np.pi, 100_001)
    d = bounce_g * (2 * np.abs(np.sin(theta)) - 1)
    mag = np.abs(-1 + d)
    return float(np.abs(mag - mag.mean()).mean())


async def test_shirt_session_reaches_the_hexoskin_api_sample_exact(tmp_path):
    creds = Credentials(humanapi_tokens=[HUB_TOKEN])
    with BackgroundServer(build_app(tmp_path / "cloud", creds)) as server:
        summary, counters, truth = await run_session(
            tmp_path, server, ["--duration", "60", "--speed", "15", "--heart-rate", "72", "--breathing-rate", "14",
                               "--activity", "walk", "--seed", "5"], ["hub", "hexoskin"])
        hub = httpx.get(server.url + "/humanapi/v1/human/ecg", headers={"Authorization": f"Bearer {HUB_TOKEN}"}).json()
        with api(server) as c:
            records = c.get("/record/").json()
            rec = records["objects"][0]
            rid, start = rec["id"], summary["session_start"]
            window = (start + 10 * TICKS + 7, start + 20 * TICKS + 100)  # a short window, not on any chunk edge
            short = c.get(f"/data/?datatype=4113&start={window[0]}&end={window[1]}").json()
            whole = c.get(f"/data/?datatype__in=4113,4129,4130,4145,4146,4147&record={rid}").json()
            text = c.get(f"/data/?datatype__in=4113,19&record={rid}", headers={"Accept": "text/csv"}).text
            blob = c.get(f"/data/?datatype__in=4113,18,19&record={rid}",
                         headers={"Accept": "application/octet-stream"}).content
            report = c.get(f"/report/?include_metrics=44,45,46,47,12,14,15,1,3,4,71,50&record={rid}").json()

    # The device side and the hub, as before.
    assert summary["signal_seconds"] == 60
    assert counters["samples"] == 60 * (256 + 2 * 128 + 3 * 64)
    assert not counters.get("gaps") and not any(k.startswith("bad_frame") or k == "crc_errors" for k in counters)
    assert sorted((h["duration"], h["sampleRate"]) for h in hub) == [(30.0, 256), (30.0, 256)]
    assert {(h["determination"], h["heartRate"]) for h in hub} == {("normal", 72)}

    # One record: the session, from its first sample to just after its last.
    assert records["meta"]["total_count"] == 1
    assert rec["device"] == "/hexoskin/api/v1/device/HXSKIN12000001/" and rec["start"] == start
    assert rec["end"] == start + 60 * TICKS and rec["user"]["email"] == EMAIL

    ecg, ecg_ts = truth["leadI"], truth["leadI_ts"]
    assert len(ecg) == 60 * 256 and ecg_ts[0] == start and (np.diff(ecg_ts) == 1).all()

    # 1. JSON over a short window: every sample and every HexoTimestamp.
    got = np.array(short[0]["data"]["4113"])
    inside = (ecg_ts >= window[0]) & (ecg_ts < window[1])
    assert short[0]["user"].startswith("/hexoskin/api/v1/user/")  # URIs carry the layout they came by
    np.testing.assert_array_equal(got[:, 0], ecg_ts[inside])
    np.testing.assert_array_equal(got[:, 1], ecg[inside])
    # ...and every other channel of the record, each at its own rate.
    data = whole[0]["data"]
    for key, channel, column in (("4113", "leadI", None), ("4129", "respThoracic", None),
                                 ("4130", "respAbdominal", None), ("4145", "accel", 0), ("4146", "accel", 1),
                                 ("4147", "accel", 2)):
        arr = np.array(data[key])
        values = truth[channel] if column is None else truth[channel][:, column]
        np.testing.assert_array_equal(arr[:, 0], truth[channel + "_ts"], err_msg=key)
        np.testing.assert_array_equal(arr[:, 1], values, err_msg=key)

    # 2. CSV: a timestamp column and one per datatype; ECG exact, heart rate once a second.
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["hexotimestamp", "4113", "19"]
    ts_col = np.array([int(r[0]) for r in rows[1:]])
    ecg_rows = [(int(r[0]), int(r[1])) for r in rows[1:] if r[1] != ""]
    np.testing.assert_array_equal(np.array(ecg_rows), np.column_stack((ecg_ts, ecg)))
    hr_rows = [(int(r[0]), int(r[2])) for r in rows[1:] if r[2] != ""]
    assert 50 <= len(hr_rows) <= 60 and all((t - start) % TICKS == 0 for t, _ in hr_rows)
    assert all(66 <= v <= 78 for _, v in hr_rows) and (np.diff(ts_col) > 0).all()

    # 3. The zip, decoded the way the document's script does it.
    z = zipfile.ZipFile(io.BytesIO(blob))
    folder = f"record_{rid}"
    assert sorted(z.namelist()) == sorted(f"{folder}/{f}" for f in ("ECG_I.wav", "RR_interval.hxd",
                                                                    "heart_rate.wav", "info.json"))
    info = json.loads(z.read(f"{folder}/info.json"))
    wav = z.read(f"{folder}/ECG_I.wav")
    short_s = struct.Struct("h")  # the document: seek(44) past the header, then shorts
    samples = np.array([short_s.unpack_from(wav, off)[0] for off in range(44, len(wav), short_s.size)])
    first = info["files"]["4113"]["start"]
    np.testing.assert_array_equal(samples, ecg)
    np.testing.assert_array_equal(first + np.arange(len(samples)), ecg_ts)
    assert info["files"]["4113"]["gaps"] == []
    hxd = z.read(f"{folder}/RR_interval.hxd")
    pair = struct.Struct("Qq")  # unsigned long long, long long
    rr = np.array([pair.unpack_from(hxd, off) for off in range(0, len(hxd), pair.size)])
    rr_ms = rr[:, 1] * 1000 / 256
    assert len(rr) >= 60 * 72 / 60 - 6 and ((rr[:, 0] >= start) & (rr[:, 0] < start + 60 * TICKS)).all()
    assert 60_000 / 72 * 0.88 < rr_ms.mean() < 60_000 / 72 * 1.12

    # Metrics against the simulator's parameters: 72 bpm, 14 breaths/min, walking at 110 steps/min.
    m = {o["metric"].split("/")[-2]: o for o in report["data"][0]}
    assert report["record"]["id"] == rid and report["count"] == 1
    rr_swing = 0.035 + 0.02  # the simulator's RSA and Mayer-wave depths: HR stays within 72 / (1 +- swing)
    assert abs(m["44"]["value"] - 72) <= 1.5
    assert 72 / (1 + rr_swing) - 2 <= m["46"]["value"] <= 72 <= m["47"]["value"] <= 72 / (1 - rr_swing) + 2
    histo = m["45"]["data2"]["value"]
    assert m["45"]["data1"]["bin_edge"] == list(range(20, 221, 20))
    assert histo[2] == sum(histo) == len(hr_rows)  # every second in the 60-80 bpm bin
    assert abs(m["12"]["value"] - 14) <= 1 and 12 <= m["14"]["value"] <= 14 <= m["15"]["value"] <= 16
    assert m["1"]["value"] == pytest.approx(expected_activity(0.35), rel=0.08)
    assert m["3"]["value"] <= m["1"]["value"] <= m["4"]["value"] and m["1"]["unit"] == "g"
    assert abs(m["71"]["value"] - 110) <= 3
    assert m["50"]["value"] == -1  # HRV: a record has no resting or sleep activity type


async def test_hrv_of_a_resting_range(tmp_path):
    with BackgroundServer(build_app(tmp_path / "cloud")) as server:
        summary, counters, truth = await run_session(
            tmp_path, server, ["--duration", "150", "--fast", "--heart-rate", "66", "--breathing-rate", "15",
                               "--activity", "rest", "--seed", "11"], ["hexoskin"])
        start = summary["session_start"]
        with api(server) as c:
            def range_with(routine: int, seconds: int) -> int:
                r = c.post("/range/", json={"name": f"rest {routine}", "start": start, "end": start + seconds * TICKS,
                                            "trainingroutine": f"/api/v1/trainingroutine/{routine}/"})
                assert r.status_code == 201, r.text
                return r.json()["id"]

            rest, walking, short = range_with(4, 150), range_with(3, 150), range_with(4, 60)
            values = {name: c.get(f"/report/?include_metrics=50,44&range={rid}").json()["data"][0]
                      for name, rid in (("rest", rest), ("walking", walking), ("short", short))}
    assert counters["samples"] == 150 * (256 + 2 * 128 + 3 * 64)
    # The simulator's RR modulation: 0.02 at 0.1 Hz (LF) and 0.035 at the breathing rate, 0.25 Hz (HF):
    # LF in normalised units is 0.02^2 / (0.02^2 + 0.035^2).
    expected_lf = 100 * 0.02 ** 2 / (0.02 ** 2 + 0.035 ** 2)
    assert math.isclose(values["rest"][0]["value"], expected_lf, abs_tol=8), values["rest"][0]
    assert values["rest"][0]["unit"] == "%" and values["rest"][0]["name"] == "hrvlfnorm_avg"
    assert abs(values["rest"][1]["value"] - 66) <= 1.5
    assert values["walking"][0]["value"] == -1  # not a resting or sleep activity type
    assert values["short"][0]["value"] == -1  # 60 s at 66 bpm: fewer than 128 beats


async def test_a_real_record_through_the_shirt_checks_its_metrics_against_the_annotated_beats(tmp_path, shared_data):
    """MIT-BIH 122 replayed by the shirt simulator (resampled to 256 Hz) through the gateway to the
    emulator: the report's average heart rate (metric 44) and the uploaded RR intervals (datatype 18)
    agree with the record's annotated beats."""
    from gateway.analysis import evaluation

    seconds = 120
    record = shared_data / "mitdb" / "122"
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials(humanapi_tokens=[HUB_TOKEN]))) as server:
        summary, counters, _ = await run_session(tmp_path, server, ["--replay", str(record), "--duration",
                                                                    str(seconds), "--fast"], ["hexoskin"])
        start = summary["session_start"]
        with api(server) as c:
            rid = c.get("/record/").json()["objects"][0]["id"]
            report = c.get(f"/report/?include_metrics=44&record={rid}").json()
            rr = np.array(c.get(f"/data/?datatype=18&record={rid}").json()[0]["data"]["18"])
    assert not counters.get("gaps")
    beats, _ = evaluation.reference_beats(str(record))
    t = beats[beats < seconds * 360] / 360.0  # the annotated beats of the replayed span, in seconds
    truth_rate = 60.0 * (len(t) - 1) / (t[-1] - t[0])
    (metric,) = report["data"][0]
    assert abs(metric["value"] - truth_rate) <= 2, (metric["value"], truth_rate)
    # Each uploaded RR interval ends on an annotated beat (150 ms) and measures the annotated interval.
    ends = (rr[:, 0] - start) / TICKS
    nearest = np.searchsorted(t, ends).clip(1, len(t) - 1)
    nearest = np.where(np.abs(t[nearest - 1] - ends) < np.abs(t[nearest] - ends), nearest - 1, nearest)
    matched = np.abs(t[nearest] - ends) <= evaluation.TOLERANCE_S
    assert matched.mean() >= 0.99 and len(rr) >= 0.95 * (len(t) - 1), (matched.mean(), len(rr), len(t))
    ok = matched & (nearest > 0)
    annotated = np.diff(t)[nearest[ok] - 1]
    assert np.mean(np.abs(rr[ok, 1] / TICKS - annotated) <= 0.02) >= 0.95


@pytest.mark.parametrize("first", [0, 117280, 117281])
def test_a_window_that_starts_mid_second_uploads_on_the_session_second_grid(first):
    """After a gap the next window starts where the data resumed, mid-second: its heart and breathing
    rates must still fall on the session's whole seconds, or the receiver refuses the whole upload
    (raw samples included) and it becomes a dead letter (seen in a loaded CI run)."""
    from gateway.core.blocks import ChannelInfo, DeviceInfo
    from gateway.packagers.hexoskin import HexoskinDataPackager
    from gateway.vendors import hexoskin as hx
    from simulators.cloud.hexoskin import data as fmt
    from simulators.physiology.ecg import EcgParams, EcgSynth
    from simulators.physiology.respiration import RespirationSynth

    start = 459_819_559_206
    info = DeviceInfo("HXSKIN12000001", "3f8ff08b", "shirt", "3.1.4",
                      {"leadI": ChannelInfo(256), "respThoracic": ChannelInfo(128)}, {"session_start": start})
    ecg = EcgSynth(256, EcgParams(seed=3))
    packager = HexoskinDataPackager("hexoskin", 30)
    for channel, samples, step in (("leadI", np.rint(ecg.next(7680) / 0.0064).astype(np.int16), 1),
                                   ("respThoracic", RespirationSynth(128, ecg.breathing_phase).next(3840)[:, 0], 2)):
        body = json.loads(packager.package(info, info.stream(channel), first // step, samples, 0.0).body)
        ref, series = fmt.parse_upload(body)
        fmt.check_alignment(series, start)  # raises UploadError if the receiver would refuse it
        derived = hx.HEART_RATE if channel == "leadI" else hx.BREATHING_RATE
        assert len(series[derived][0]) >= 5, series.keys()
        assert ((series[derived][0] - start) % hx.TICKS_PER_SECOND == 0).all()
