"""The command-line front doors, run as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import serial

from gateway.core.blocks import SampleBlock
from gateway.drivers.kardiamobile import KardiaMobileDriver
from simulators.cloud.server import bind

PY = sys.executable


def free_port() -> int:
    sock = bind()
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_device_simulator_prints_its_port_streams_and_summarises():
    proc = subprocess.Popen([PY, "-m", "simulators.cli", "device", "kardia", "--duration", "4", "--fast", "--json",
                             "--rhythm", "afib", "--seed", "3", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline().split()
    assert first[0] == "PORT" and first[1].startswith("/dev/pts/")
    port = serial.Serial(first[1], timeout=0.2)
    driver, samples = KardiaMobileDriver(), 0
    while True:  # until the simulator, done and drained, closes the port
        try:
            # What is there, not read(65536): pyserial discards a partial read when the port closes.
            data = port.read(port.in_waiting or 1)
        except (serial.SerialException, OSError):  # in_waiting's ioctl raises OSError (EIO) at the hang-up
            break
        for ev in driver.feed(data, 0.0):
            if isinstance(ev, SampleBlock):
                samples += len(ev.samples)
    port.close()
    out, err = proc.communicate(timeout=10)
    summary = json.loads(out)
    assert proc.returncode == 0
    assert (summary["samples"], summary["sample_frames"], summary["info_frames"]) == (1200, 48, 5)
    assert samples == 1200 and driver.counters["frames"] == 53
    assert "afib at 95 bpm" in err


@pytest.mark.parametrize("args, message", [
    (["--rhythm", "vfib"], "unknown rhythm 'vfib'"),
    (["--rhythm", "bradycardia", "--heart-rate", "80"], "bradycardia means 30-50 bpm"),
    (["--speed", "0"], "--speed and --duration must be positive"),
    (["--replay", "/nonexistent/record"], "not a readable WFDB record"),
    (["--port", "/nonexistent/ttyUSB9"], "cannot open /nonexistent/ttyUSB9"),
])
def test_device_simulator_refuses_bad_arguments(args, message):
    proc = subprocess.run([PY, "-m", "simulators.cli", "device", "kardia", "--duration", "1", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_cloud_command_serves_every_emulator_and_keeps_their_data_across_restarts(tmp_path):
    port = free_port()
    env = {**os.environ, "WEARABLE_SIM_KARDIA_API_KEY": "from-env", "WEARABLE_SIM_UP_TOKEN": "up-env",
           "WEARABLE_SIM_HUMANAPI_TOKEN": "hub-env"}
    cmd = [PY, "-m", "simulators.cli", "cloud", "--port", str(port), "--data-dir", str(tmp_path)]
    base = f"http://127.0.0.1:{port}"

    def start():
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        banner = ""
        while "Human API token" not in banner:
            line = proc.stdout.readline()
            assert line, f"the cloud emulator exited early:\n{banner}"
            banner += line
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/", timeout=1)
                return proc, banner
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the cloud emulator did not come up"
                time.sleep(0.1)

    def stop(proc):
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it.
        assert proc.wait(20) in (0, -signal.SIGTERM)

    proc, banner = start()
    try:
        for prefix in ("/kardia", "/up", "/humanapi"):
            assert base + prefix in banner
        assert "from-env" in banner and "up-env" in banner and "hub-env" in banner
        r = httpx.post(base + "/kardia/v1/patients", auth=("from-env", ""),
                       data={"mrn": "C-1", "dob": "1990-01-01", "email": "c@example.com"})
        assert r.status_code == 201
        r = httpx.post(base + "/up/nudge/api/v.1.0/users/@me/cardiac_events", headers={"Authorization": "Bearer up-env"},
                       data={"title": "check", "heart_rate": "72", "time_created": "1700000000"})
        assert r.status_code == 201
        xid = r.json()["data"]["xid"]
        r = httpx.post(base + "/humanapi/v1/human/heart_rate", headers={"Authorization": "Bearer hub-env"},
                       json={"timestamp": "2026-11-23T10:00:00+01:00", "source": "test", "value": 61})
        assert r.status_code == 201
        hub_id = r.json()["id"]
    finally:
        stop(proc)
    proc, _ = start()
    try:
        assert [p["mrn"] for p in httpx.get(base + "/kardia/v1/patients", auth=("from-env", "")).json()["data"]] == ["C-1"]
        r = httpx.get(f"{base}/up/nudge/api/cardiac_events/{xid}", headers={"Authorization": "Bearer up-env"})
        assert r.json()["data"]["heart_rate"] == 72
        r = httpx.get(f"{base}/humanapi/v1/human/heart_rate/{hub_id}", headers={"Authorization": "Bearer hub-env"})
        assert r.json()["value"] == 61
    finally:
        stop(proc)


def test_demo_runs_the_whole_chain_and_reports_json(tmp_path):
    proc = subprocess.run([PY, "-m", "gateway.cli", "demo", "--duration", "40", "--speed", "20", "--json",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    check = summary["check"]
    assert check["bit_exact"] and check["samples_sent"] == check["samples_stored"] == 12_000
    assert summary["emulator"]["durations_ms"] == [30_000, 10_000]  # a full recording, then the final partial one
    # The default 70 bpm sinus rhythm, analysed by the gateway (within 1 bpm: the demo's signal is
    # random, and 10 s of respiratory sinus arrhythmia can average 69); 10 s is too short for a rhythm.
    analysis = [a.split() for a in summary["emulator"]["analysis"]]
    assert [a[0] for a in analysis] == ["normal", "too_short"]
    assert all(abs(int(a[1]) - 70) <= 1 and a[2] == "bpm" for a in analysis), analysis
    assert summary["gateway"]["gaps"] == 0 and summary["gateway"]["dead_letters"] == 0
    assert summary["hub"] == {**summary["hub"], "ecg_summaries": 2, "matches_recordings": True}
    assert (tmp_path / "spool.db").exists() and (tmp_path / "cloud" / "kardia.db").exists()
    assert "simulator sent" in proc.stderr  # live progress


def test_run_refuses_an_invalid_configuration(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[spool]\npath = "s.db"\n')
    proc = subprocess.run([PY, "-m", "gateway.cli", "run", "--config", str(cfg)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "invalid configuration" in proc.stderr and "configure at least one [[devices]]" in proc.stderr


def test_drivers_are_listed_from_entry_points():
    proc = subprocess.run([PY, "-m", "gateway.cli", "drivers"], capture_output=True, text=True, timeout=60)
    assert "kardiamobile" in proc.stdout and "gateway.drivers.kardiamobile:KardiaMobileDriver" in proc.stdout
    assert "gateway.drivers.hexoskin:HexoskinDriver" in proc.stdout


@pytest.mark.parametrize("module, prog", [("gateway", "wearable-gateway"), ("simulators", "wearable-sim")])
def test_both_commands_run_as_modules_and_tell_their_version(module, prog):
    from gateway import __version__

    proc = subprocess.run([PY, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{prog} {__version__}"


def test_every_subcommand_describes_itself_in_its_help():
    import argparse

    from gateway.cli import build_parser as gateway_parser
    from simulators.cli import build_parser as sim_parser

    def commands(parser, path=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield path + (name,), sub
                    yield from commands(sub, path + (name,))

    found = list(commands(gateway_parser())) + list(commands(sim_parser()))
    assert len(found) >= 12
    missing = [" ".join(p) for p, sub in found if not sub.description]
    assert not missing, f"no description: {missing}"


def test_run_without_a_configuration_says_where_it_looked(tmp_path):
    env = {**os.environ, "WEARABLE_GATEWAY_CONFIG": str(tmp_path / "absent.toml")}
    proc = subprocess.run([PY, "-m", "gateway", "run"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert f"no configuration at {tmp_path / 'absent.toml'}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_takes_the_default_configuration_as_status_does(tmp_path):
    cfg = tmp_path / "gateway.toml"
    cfg.write_text("[gateway]\nname = 'x'\n[[devices]]\nname = 'k'\n")  # invalid: the file was read
    env = {**os.environ, "WEARABLE_GATEWAY_CONFIG": str(cfg)}
    proc = subprocess.run([PY, "-m", "gateway", "run"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert str(cfg) in proc.stderr and "Traceback" not in proc.stderr
