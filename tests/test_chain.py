"""End to end: simulator -> real pty -> serial transport -> driver -> core -> spool -> uplink -> emulator.

Every assertion reads the data back through the emulator's public HTTP API and compares it,
sample for sample, with what the simulator produced (the sample counter is the index into
that stream).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime

import httpx
import numpy as np
import pytest

from gateway.analysis.enhanced import enhance
from gateway.config import load
from gateway.daemon import Gateway
from gateway.demo import fetch_recordings
from gateway.spool import Spool, SpoolError
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer
from simulators.devices.faults import FaultInjector
from simulators.reconcile import reconcile
from tests.chain import (API_KEY, HUB_TOKEN, config_toml, create_patient, read_all, recordings, start_simulator,
                         wait_for)

pytestmark = pytest.mark.slow


async def _run_in_process(tmp_path, sim, recording_seconds: float, hub: list | None = None):
    """Run the gateway in this process until the simulator is done and everything is uploaded."""
    creds = Credentials([API_KEY], humanapi_tokens=[HUB_TOKEN])
    with BackgroundServer(build_app(tmp_path / "cloud", creds)) as server:
        url = server.url + "/kardia"
        patient = create_patient(url)
        cfg_path = tmp_path / "gateway.toml"
        cfg_path.write_text(config_toml(tmp_path / "spool.db", url, patient, sim.port.path, recording_seconds,
                                        hub_url=server.url + "/humanapi" if hub is not None else None))
        gateway = Gateway(load(cfg_path, env={"CHAIN_KARDIA_KEY": API_KEY}))
        await gateway.start()
        runner = gateway.devices[0]
        sim.thread.start()
        stats = await asyncio.to_thread(sim.join)
        await read_all(runner.transport, stats.bytes)  # every byte written has been read
        counters = dict(runner.driver.counters)
        await gateway.stop(drain_timeout=60)
        recs = await fetch_recordings(url, API_KEY, patient)
        if hub is not None:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {HUB_TOKEN}"}) as c:
                hub += (await c.get(server.url + "/humanapi/v1/human/ecg", params={"limit": 500})).json()[::-1]
    sim.port.close()
    return recs, counters, patient


async def test_five_minutes_arrive_bit_exact_once_in_order(tmp_path):
    sim = start_simulator(duration=300, speed=None, seed=11, start=False)
    hub: list[dict] = []
    recs, counters, patient = await _run_in_process(tmp_path, sim, recording_seconds=30, hub=hub)
    sent = sim.sent
    assert len(sent) == 300 * 300
    check = reconcile(sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs])
    assert check.exact, check.as_dict()
    assert check.positions == [9000 * i for i in range(10)]
    assert [r["duration"] for r in recs] == [30_000] * 10
    for r in recs:
        raw = r["data"]["raw"]
        assert (raw["frequency"], raw["mainsFrequency"], raw["amplitudeResolution"]) == (300, 50, 500)
        assert r["patientID"] == patient
        # The gateway's analysis of the simulator's 70 bpm sinus rhythm, and its enhanced signal.
        assert r["algorithmDetermination"] == "normal" and r["heartRate"] == 70
        assert r["data"]["enhanced"]["samples"]["leadI"] == enhance(np.array(raw["samples"]["leadI"]), 300, 50).tolist()
    # Streamed flat out, the device's time is compressed: recordedAt is checked in real time below.
    assert all(datetime.fromisoformat(r["recordedAt"]).tzinfo is not None for r in recs)
    assert counters["samples"] == 90_000 and not counters.get("crc_errors") and not counters.get("gaps")
    # The same gateway fed the hub: one ECG summary per recording, the same instant, keyed by its samples.
    hub.sort(key=lambda h: int(h["sourceId"].rsplit("/", 1)[1].split("-")[0]))  # streamed flat out, device time
    assert [h["sourceId"] for h in hub] == [f"KM1-TEST0001/5eed000b/leadI/{9000 * i}-{9000 * (i + 1)}"
                                           for i in range(10)]
    assert [(h["duration"], h["sampleRate"], h["source"]) for h in hub] == [(30.0, 300, "kardiamobile")] * 10
    assert [(h["heartRate"], h["determination"]) for h in hub] == [(70, "normal")] * 10
    assert [datetime.fromisoformat(h["timestamp"].replace("Z", "+00:00")) for h in hub] == [
        datetime.fromisoformat(r["recordedAt"]) for r in recs]
    spool = Spool(tmp_path / "spool.db")
    stats = spool.stats()
    assert stats["uplinks"]["hub"]["acked"] == 10 and stats["uplinks"]["hub"]["pending"] == 0
    assert stats["uplinks"]["kardia"]["pending"] == 0 and stats["uplinks"]["kardia"]["acked"] == 10
    assert stats["dead_letters"] == 0 and stats["gaps"] == 0 and stats["journal_samples"] == 0
    spool.close()


async def test_real_time_stream_gets_timestamps_from_the_device_counter(tmp_path):
    sim = start_simulator(duration=12, speed=1.0, seed=14, start=False)
    recs, counters, _ = await _run_in_process(tmp_path, sim, recording_seconds=3)
    started = sim.stats[0].started_at
    times = [datetime.fromisoformat(r["recordedAt"]).timestamp() for r in recs]
    assert [r["duration"] for r in recs] == [3000] * 4
    # Consecutive recordings are exactly 3 s apart, however the frames' arrival jittered.
    assert np.allclose(np.diff(times), 3.0, atol=0.002), np.diff(times)
    # The first sample: when the device started, by the gateway's clock (measured: under 0.5 ms off; a
    # stamp taken from the first block's arrival would be a whole frame, 83 ms, late).
    assert abs(times[0] - started) < 0.01, times[0] - started
    assert reconcile(sim.sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs]).exact


def _runs(frames):
    """Consecutive runs of lost sample frames (by counter)."""
    runs: list[list] = []
    for f in frames:
        if runs and runs[-1][-1].counter + len(runs[-1][-1].samples) == f.counter:
            runs[-1].append(f)
        else:
            runs.append([f])
    return runs


async def test_garbage_corrupt_frames_and_drops_are_counted_recorded_and_never_crash(tmp_path):
    faults = FaultInjector(garbage=0.05, corrupt=0.03, drop=0.03, seed=5)
    sim = start_simulator(duration=120, speed=None, seed=12, faults=faults, start=False)
    recs, counters, _ = await _run_in_process(tmp_path, sim, recording_seconds=10)
    log = faults.log
    lost = log.lost
    runs = _runs(lost)
    assert len(log.corrupted) > 10 and len(log.dropped) > 10 and log.garbage_bursts > 10  # the test means something
    # Counters equal what was injected.
    assert counters["crc_errors"] == len(log.corrupted)
    assert counters["skipped_bytes"] == log.garbage_bytes + sum(len(f.data) for f in log.corrupted)
    assert counters["lost_frames"] == len(lost)
    assert counters["gaps"] == len(runs)
    assert counters["lost_samples"] == sum(len(f.samples) for f in lost)
    assert counters["samples"] == len(sim.sent) - counters["lost_samples"]
    # Every gap is recorded where it is.
    expected_gaps = [(run[0].counter, sum(len(f.samples) for f in run)) for run in runs]
    spool = Spool(tmp_path / "spool.db")
    assert [(g.start, g.missing) for g in spool.gaps()] == expected_gaps
    spool.close()
    # Every good frame arrived, exactly once; what is missing is exactly the gaps.
    check = reconcile(sim.sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs])
    assert (check.duplicates, check.unmatched, check.in_order) == (0, 0, True)
    assert check.missing_ranges == expected_gaps
    # No recording spans a gap.
    for pos, rec in zip(check.positions, recs):
        n = len(rec["data"]["raw"]["samples"]["leadI"])
        assert not any(pos < start < pos + n for start, _ in expected_gaps)
        assert rec["duration"] == round(n * 1000 / 300)


async def test_a_stop_that_cuts_the_frame_in_flight_records_it_as_a_gap_not_a_link_fault(tmp_path, caplog):
    """The gateway stops while half a frame is read: its samples are a recorded gap (a restart must not take
    the stream as whole there), logged as the stop's doing, not warned of as a lost frame."""
    import logging

    from simulators.devices.kardiamobile import KardiaMobileModel
    from simulators.devices.serial_front import PtyPort
    from simulators.physiology.ecg import EcgParams, EcgSynth

    port = PtyPort()
    frames = KardiaMobileModel(EcgSynth(300, EcgParams(seed=3))).frames()
    head = []  # device info, then 3 s: 36 frames of 25 samples (and the info frame every 300 samples)
    while sum(f.kind == "samples" for f in head) < 36:
        head.append(next(frames))
    cut = next(frames)
    while cut.kind != "samples":
        head.append(cut)
        cut = next(frames)
    data = b"".join(f.data for f in head) + cut.data[:len(cut.data) // 2]
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY]))) as server:
        url = server.url + "/kardia"
        patient = create_patient(url)
        cfg_path = tmp_path / "gateway.toml"
        cfg_path.write_text(config_toml(tmp_path / "spool.db", url, patient, port.path, 3))
        gateway = Gateway(load(cfg_path, env={"CHAIN_KARDIA_KEY": API_KEY}))
        await gateway.start()
        runner = gateway.devices[0]
        assert await asyncio.to_thread(port.wait_for_reader, None, 60)
        os.write(port.master, data)
        await read_all(runner.transport, len(data))
        with caplog.at_level(logging.INFO, logger="gateway"):
            await gateway.stop(drain_timeout=60)
        recs = await fetch_recordings(url, API_KEY, patient)
    port.close()
    spool = Spool(tmp_path / "spool.db")
    gaps = [(g.start, g.missing) for g in spool.gaps()]
    spool.close()
    first = head[1].counter
    assert gaps == [(cut.counter, 25)] and cut.counter == first + 900
    assert runner.pipeline.counters["gaps_at_stop"] == 1 and runner.driver.counters["truncated_frames"] == 1
    got = np.concatenate([r["data"]["raw"]["samples"]["leadI"] for r in recs])
    assert np.array_equal(got, np.concatenate([f.samples for f in head if f.kind == "samples"]))  # each whole frame once
    stopped = [r for r in caplog.records if "stopped mid-frame" in r.getMessage()]
    assert len(stopped) == 1 and stopped[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "gap" in r.getMessage()]


def _frozen_when(gw: subprocess.Popen, read, enough, tries: int = 200):
    """SIGSTOP the gateway and read its spool until `enough(journal)`; it is left frozen then (or after
    the last try), so the state read is the state a SIGKILL leaves. Returns (packages, journal)."""
    packages, journal = [], []
    for _ in range(tries):
        gw.send_signal(signal.SIGSTOP)
        try:
            packages, journal = read()
        except (sqlite3.OperationalError, SpoolError):  # frozen inside a WAL index update: no reader settles
            packages, journal = [], []
        if enough(journal):
            break
        gw.send_signal(signal.SIGCONT)
        time.sleep(0.03)  # the gateway runs on a moment before the next look
    return packages, journal


def _committed(spool_path) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(package ranges pending, journaled ranges not yet packaged) in a spool, read without writing to it."""
    spool = Spool(spool_path, readonly=True)
    try:
        packages = sorted((p.first, p.end) for p in spool.due("kardia", now=1e12, limit=100_000))
        journal = sorted((r.first, r.end) for rec in spool.recover() for r in rec.rows)
    finally:
        spool.close()
    return packages, journal


def test_sigkill_mid_stream_loses_nothing_committed_and_duplicates_nothing(tmp_path):
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY]))) as server:
        url = server.url + "/kardia"
        patient = create_patient(url)
        sim = start_simulator(duration=180, speed=15, seed=13, link=tmp_path / "kardia.pty", start=False)
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(config_toml(tmp_path / "spool.db", url, patient, str(tmp_path / "kardia.pty"),
                                   recording_seconds=5))
        env = {**os.environ, "CHAIN_KARDIA_KEY": API_KEY}
        cmd = [sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)]
        log1 = open(tmp_path / "gateway-1.log", "w")
        gw = subprocess.Popen(cmd, env=env, stdout=log1, stderr=subprocess.STDOUT)
        try:
            sim.thread.start()  # streams once the gateway has opened the port
            wait_for(lambda: httpx.get(url + "/v1/recordings", auth=(API_KEY, "")).json()["totalCount"] >= 4, 60,
                     "the first uploads")
            # Freeze the gateway, look at its spool, and kill it only when journaled samples wait for
            # a package: then the state read is exactly the state the kill leaves.
            packages, journal = _frozen_when(gw, lambda: _committed(tmp_path / "spool.db"), lambda j: bool(j))
            assert journal, "never caught the gateway with journaled samples"
            gw.send_signal(signal.SIGKILL)
            assert gw.wait(10) == -signal.SIGKILL
            log2 = open(tmp_path / "gateway-2.log", "w")
            gw = subprocess.Popen(cmd, env=env, stdout=log2, stderr=subprocess.STDOUT)
            sim.join()
            time.sleep(1.0)  # the last bytes through the pty
            gw.send_signal(signal.SIGTERM)  # a clean stop packages and delivers the rest
            assert gw.wait(60) == 0
        finally:
            if gw.poll() is None:
                gw.kill()
            sim.stop.set()
            sim.port.close()
        recs = recordings(url, patient)

    check = reconcile(sim.sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs])
    assert (check.duplicates, check.unmatched, check.in_order) == (0, 0, True), check.as_dict()
    ranges = {(p, p + len(r["data"]["raw"]["samples"]["leadI"])) for p, r in zip(check.positions, recs)}
    # Every package the spool had committed at the kill arrived, exactly as it was cut.
    assert set(packages) <= ranges
    # So did every journaled sample: recovered into packages after the restart.
    covered = np.zeros(len(sim.sent), bool)
    for a, b in ranges:
        covered[a:b] = True
    assert all(covered[a:b].all() for a, b in journal)
    # What did not arrive is exactly what the gateway recorded as gaps (lost while it was dead).
    spool = Spool(tmp_path / "spool.db")
    gaps = [(g.start, g.missing) for g in spool.gaps()]
    stats = spool.stats()
    spool.close()
    # At most one gap: what was read but not committed (none if the kill came right after a commit).
    assert check.missing_ranges == gaps and len(gaps) <= 1
    assert stats["uplinks"]["kardia"]["pending"] == 0 and stats["journal_samples"] == 0
    assert "recovered" in (tmp_path / "gateway-2.log").read_text()


def test_sigkill_with_twenty_devices_keeps_every_commit_of_every_stream_exactly_once(tmp_path):
    """One group commit carries every device: a kill between two leaves each stream's journal and cursors
    consistent. Every package and journaled sample of every stream at the kill arrives, once; what is
    missing is exactly each stream's recorded gap (what was read but not yet committed)."""
    import resource

    from simulators.devices.fleet import Fleet, gateway_config

    n = 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4 * n + 256), hard))
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY]))) as server:
        url = server.url + "/kardia"
        patients = [httpx.post(url + "/v1/patients", auth=(API_KEY, ""), data={
            "mrn": f"KILL-{i}", "dob": "1960-05-05", "email": f"k{i}@example.com"}).json()["id"] for i in range(n)]
        fleet = Fleet(n, seed=20, speed=15, link_dir=tmp_path / "ports")
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(gateway_config(fleet, kardia_url=url, api_key=API_KEY, patients=patients,
                                      spool=str(tmp_path / "spool.db"), status_listen="127.0.0.1:0",
                                      recording_seconds=5))
        cmd = [sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)]
        gw = subprocess.Popen(cmd, stdout=open(tmp_path / "gateway-1.log", "w"), stderr=subprocess.STDOUT)
        run = {}
        sim = threading.Thread(target=lambda: run.update(stats=fleet.run(duration=150)))
        try:
            sim.start()  # each device starts when the gateway opens its port
            wait_for(lambda: httpx.get(url + "/v1/recordings", auth=(API_KEY, ""), params={"limit": 1}).json()
                     ["totalCount"] >= 3 * n, 90, "the first uploads of every device")
            # Freeze, read the spool, kill only with journaled samples of many streams waiting.
            packages, journal = _frozen_when(gw, lambda: _committed_by_stream(tmp_path / "spool.db"),
                                             lambda j: len(j) >= n // 2)
            assert len(journal) >= n // 2, "never caught the gateway with journaled samples of many streams"
            gw.send_signal(signal.SIGKILL)
            assert gw.wait(10) == -signal.SIGKILL
            gw = subprocess.Popen(cmd, stdout=open(tmp_path / "gateway-2.log", "w"), stderr=subprocess.STDOUT)
            sim.join(180)
            assert not sim.is_alive() and run["stats"].streaming == n
            # Up (and its SIGTERM handler in place) before it is asked to stop: when the freeze came late,
            # the devices were done before the restarted gateway had finished importing.
            wait_for(lambda: "status page on" in (tmp_path / "gateway-2.log").read_text(), 90,
                     "the restarted gateway up")
            assert fleet.drain(60) == 0  # the restarted gateway read every byte the devices sent
            gw.send_signal(signal.SIGTERM)
            assert gw.wait(90) == 0
        finally:
            if gw.poll() is None:
                gw.kill()
            fleet.close()
        recs = {p: recordings(url, p) for p in patients}
    spool = Spool(tmp_path / "spool.db")
    gaps = spool.gaps()
    stats = spool.stats()
    spool.close()
    assert stats["uplinks"]["kardia"]["pending"] == 0 and stats["journal_samples"] == 0
    per_device = 150 * 300
    for i, patient in enumerate(patients):
        keys = [k for k in set(packages) | set(journal) if k.startswith(fleet.serials[i] + "/")]
        got = [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs[patient]]
        check = reconcile(fleet.signal.expected(i, 0, per_device), got)
        assert (check.duplicates, check.unmatched) == (0, 0), (i, check.as_dict())
        ranges = {(p, p + len(g)) for p, g in zip(check.positions, got)}
        covered = np.zeros(per_device, bool)
        for a, b in ranges:
            covered[a:b] = True
        for key in keys:
            assert set(packages.get(key, [])) <= ranges, i  # every package committed at the kill, as cut
            assert all(covered[a:b].all() for a, b in journal.get(key, [])), i  # and every journaled sample
        mine = [(g.start, g.missing) for g in gaps if g.stream.startswith(fleet.serials[i] + "/")]
        assert check.missing_ranges == mine and len(mine) <= 1, (i, check.missing_ranges, mine)
    assert "recovered" in (tmp_path / "gateway-2.log").read_text()


def _committed_by_stream(spool_path) -> tuple[dict[str, list[tuple[int, int]]], dict[str, list[tuple[int, int]]]]:
    """Per stream key: (package ranges pending, journaled ranges not yet packaged), read without writing."""
    spool = Spool(spool_path, readonly=True)
    try:
        packages: dict[str, list[tuple[int, int]]] = {}
        for p in spool.due("kardia", now=1e12, limit=100_000):
            packages.setdefault(p.stream, []).append((p.first, p.end))
        journal = {rec.stream.key: [(r.first, r.end) for r in rec.rows] for rec in spool.recover()}
    finally:
        spool.close()
    return packages, journal
