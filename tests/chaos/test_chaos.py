"""The chaos tier, in the bounded form CI runs (scripts/chaos.py is the long form, with the README's figures).

Each test breaks something real from outside the gateway (SIGKILL, a faulty network, a small or
full file system, the receiver dying) and then checks the receiver against what the device sent:
nothing duplicated, nothing corrupted, every loss a recorded gap.
"""

from __future__ import annotations

import random
import time

import pytest

from simulators.reconcile import reconcile
from tests.chain import start_simulator
from tests.chaos.harness import (CloudProcess, FaultProxy, Gateway, create_patient, fill, gateway_toml,
                                 kill_storm, recorded_gaps, small_filesystem, spool_files, stored_recordings,
                                 unrecorded, wait_until)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_kill_storm_loses_at_most_a_journal_interval_per_kill_and_duplicates_nothing(tmp_path):
    r = kill_storm(tmp_path, kills=8, interval=(1.0, 3.0), speed=4.0, seed=3)
    assert r.kills == 8
    assert (r.duplicates, r.unmatched, r.unrecorded) == (0, 0, 0), r.as_dict()
    assert r.delivered + r.missing == r.sent
    # Everything taken from the kernel counts: at most journal_interval (1 s) of signal per kill.
    assert r.worst_kill_s <= 1.0 and r.seconds_lost_per_kill <= 1.0, r.as_dict()


def test_a_flapping_uplink_delivers_every_recording_exactly_once(tmp_path):
    cloud = CloudProcess(tmp_path / "cloud", logdir=tmp_path)
    cloud.start()
    sim = start_simulator(duration=150, speed=10, seed=5, link=tmp_path / "kardia.pty", start=False)
    try:
        patient = create_patient(cloud.url + "/kardia")
        with FaultProxy(cloud.url, rate=0.45, seed=7, hang_s=6.0) as proxy:
            cfg = tmp_path / "gateway.toml"
            cfg.write_text(gateway_toml(tmp_path / "spool.db", str(tmp_path / "kardia.pty"), proxy.url + "/kardia",
                                        patient, uplink_extra="timeout = 2"))
            gw = Gateway(cfg, tmp_path)
            gw.start()
            sim.thread.start()
            try:
                sim.join(120)
                assert sim.port.drain(60)
                wait_until(lambda: sum(proxy.counts.values()) >= 40, 120, "40 upload attempts through the proxy")
                proxy.healed = True  # the network recovers: everything pending goes out
                assert gw.stop(120) == 0
            finally:
                gw.close()
        got = stored_recordings(cloud.url + "/kardia", patient)
    finally:
        sim.stop.set()
        sim.port.close()
        cloud.close()
    check = reconcile(sim.sent, got)
    assert check.exact, check.as_dict()
    assert len(got) == 30  # 150 s in 5 s recordings, each once
    assert sum(proxy.counts[f] for f in proxy.faults) >= 10 and len({f for f in proxy.faults if proxy.counts[f]}) >= 5
    assert "dead letter" not in gw.logs()


def test_the_receiver_killed_mid_ingest_still_gets_everything_once(tmp_path):
    cloud = CloudProcess(tmp_path / "cloud", logdir=tmp_path)
    cloud.start()
    sim = start_simulator(duration=120, speed=8, seed=9, link=tmp_path / "kardia.pty", start=False)
    rng = random.Random(9)
    try:
        patient = create_patient(cloud.url + "/kardia")
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(gateway_toml(tmp_path / "spool.db", str(tmp_path / "kardia.pty"), cloud.url + "/kardia",
                                    patient, recording_seconds=2, uplink_extra="timeout = 3"))
        gw = Gateway(cfg, tmp_path)
        gw.start()
        sim.thread.start()
        try:
            for _ in range(5):  # the emulator dies while uploads are under way, and comes back on its data
                time.sleep(rng.uniform(1.0, 2.5))
                cloud.kill()
                time.sleep(rng.uniform(0.2, 1.5))
                cloud.start()
            sim.join(120)
            assert sim.port.drain(60)
            assert gw.stop(120) == 0
        finally:
            gw.close()
        got = stored_recordings(cloud.url + "/kardia", patient)
    finally:
        sim.stop.set()
        sim.port.close()
        cloud.close()
    check = reconcile(sim.sent, got)
    assert check.exact and len(got) == 60, check.as_dict()
    assert "Traceback" not in cloud.logs()


@pytest.fixture
def tiny_fs(tmp_path):
    def make(size_mb: float):
        try:
            return small_filesystem(tmp_path / "fs", size_mb)
        except PermissionError as exc:  # pragma: no cover - CI runs as root
            pytest.skip(f"needs a size-limited file system: {exc}")
    return make


def test_the_cap_bounds_the_spool_files_on_a_small_disk_with_the_uplink_down(tmp_path, tiny_fs):
    cap = 2_000_000
    with tiny_fs(6) as fs:
        sim = start_simulator(duration=3600, speed=30, seed=11, link=tmp_path / "kardia.pty", start=False)
        cfg = tmp_path / "gateway.toml"
        spool = fs / "spool.db"
        cfg.write_text(gateway_toml(spool, str(tmp_path / "kardia.pty"), "http://127.0.0.1:9/kardia", "p",
                                    spool_extra="max_mb = 2"))
        gw = Gateway(cfg, tmp_path)
        gw.start()
        sim.thread.start()
        largest = 0
        try:
            deadline = time.monotonic() + 60
            while sim.thread.is_alive() and time.monotonic() < deadline:
                largest = max(largest, spool_files(spool))
                assert gw.alive(), gw.logs()[-3000:]
                time.sleep(0.1)
            sim.stop.set()
            assert gw.stop(120) == 0
        finally:
            gw.close()
            sim.stop.set()
            sim.port.close()
        largest = max(largest, spool_files(spool))
    logs = gw.logs()
    assert "evicted waveform package" in logs and "Traceback" not in logs
    assert largest <= cap + 256_000, largest  # the cap, and one commit's headroom


def test_a_full_disk_holds_data_in_ram_says_so_once_and_recovers_by_itself(tmp_path, tiny_fs):
    with tiny_fs(4) as fs:
        cloud = CloudProcess(tmp_path / "cloud", logdir=tmp_path)
        cloud.start()
        sim = start_simulator(duration=1800, speed=20, seed=13, link=tmp_path / "kardia.pty", start=False)
        try:
            patient = create_patient(cloud.url + "/kardia")
            spool = fs / "spool.db"
            cfg = tmp_path / "gateway.toml"
            # The uplink points at nothing while the disk is full, so nothing drains the spool meanwhile.
            cfg.write_text(gateway_toml(spool, str(tmp_path / "kardia.pty"), "http://127.0.0.1:9/kardia", patient,
                                        spool_extra="ram_mb = 1"))
            filler = fill(fs, leave_bytes=600_000)
            gw = Gateway(cfg, tmp_path)
            gw.start()
            sim.thread.start()
            try:
                wait_until(lambda: "spool cannot take more" in gw.logs(), 120, "the spool to say it is full")
                wait_until(lambda: "no longer read" in gw.logs(), 120, "the gateway to hold its RAM bound")
                assert gw.alive()
                gw.kill()  # and a restart while the disk is full: no exit loop, no traceback
                gw.start()
                time.sleep(3)
                assert gw.alive(), gw.logs()[-3000:]
                filler.unlink()  # space returns
                cfg.write_text(cfg.read_text().replace("http://127.0.0.1:9/kardia", cloud.url + "/kardia"))
                gw.kill()
                gw.start()  # the uplink is back too
                sim.join(300)
                assert sim.port.drain(120)
                assert gw.stop(180) == 0
            finally:
                gw.close()
            got = stored_recordings(cloud.url + "/kardia", patient)
        finally:
            sim.stop.set()
            sim.port.close()
            cloud.close()
        gaps = recorded_gaps(spool)
    logs = gw.logs()
    assert "Traceback" not in logs, logs[-3000:]
    assert logs.count("spool cannot take more") <= gw.starts  # once per run that met the full disk
    check = reconcile(sim.sent, got)
    assert (check.duplicates, check.unmatched) == (0, 0), check.as_dict()
    assert unrecorded(check.missing_ranges, gaps, len(sim.sent)) == 0, (check.missing_ranges, gaps)
