"""The command-line front doors, run as real processes."""

from __future__ import annotations

import json
import os
import signal
import ssl
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


def test_shirt_simulator_refuses_a_missing_replay_with_one_line():
    proc = subprocess.run([PY, "-m", "simulators.cli", "device", "hexoskin", "--replay", "/nonexistent/record",
                           "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not a readable WFDB record" in proc.stderr and "Traceback" not in proc.stderr


def test_cloud_command_serves_every_emulator_and_keeps_their_data_across_restarts(tmp_path):
    port = free_port()
    env = {**os.environ, "WEARABLE_SIM_KARDIA_API_KEY": "from-env", "WEARABLE_SIM_UP_TOKEN": "up-env",
           "WEARABLE_SIM_HUMANAPI_TOKEN": "hub-env"}
    cmd = [PY, "-m", "simulators.cli", "cloud", "--port", str(port), "--data-dir", str(tmp_path)]
    base = f"http://127.0.0.1:{port}"

    def start():
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        banner = _banner(proc, "Human API token")
        _wait_get(base + "/", timeout=20)
        return proc, banner

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


@pytest.mark.parametrize("args, env, message", [
    (["--port", "99999"], {}, "argument --port: '99999' is not a port number"),
    (["--data-dir", "{file}"], {}, "not a directory"),
    (["--listen", "nobody=127.0.0.1:1"], {}, "give EMULATOR=HOST:PORT"),
    (["--cert", "/nonexistent.pem", "--key", "/nonexistent.key"], {}, "/nonexistent.pem: no such file"),
    (["--cert", "/nonexistent.pem"], {}, "--cert and --key go together"),
    ([], {"WEARABLE_SIM_KARDIA_API_KEY": ","}, "WEARABLE_SIM_KARDIA_API_KEY names no entry"),
    ([], {"WEARABLE_SIM_KARDIA_API_KEY": "a:b"}, "cannot contain ':'"),
    ([], {"WEARABLE_SIM_HEXOSKIN_USER": "no-password"}, "a Hexoskin user is EMAIL:PASSWORD"),
    ([], {"WEARABLE_SIM_HEXOSKIN_KEY": "public-only"}, "a Hexoskin API key is PUBLIC:PRIVATE"),
    ([], {"WEARABLE_SIM_HEXOSKIN_COACH": "a@x>b@x"}, "coaching 'a@x>b@x' names an unknown user"),
    ([], {"WEARABLE_SIM_UP_TOKEN": ":u_1"}, "an UP token is TOKEN"),
    ([], {"WEARABLE_SIM_HUMANAPI_TOKEN": " "}, "WEARABLE_SIM_HUMANAPI_TOKEN names no entry"),
])
def test_cloud_command_refuses_misuse_with_one_line(tmp_path, args, env, message):
    (tmp_path / "file").write_text("")
    args = [a.replace("{file}", str(tmp_path / "file")) for a in args]
    proc = subprocess.run([PY, "-m", "simulators.cli", "cloud", "--port", "0", "--data-dir", str(tmp_path / "d"),
                           *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    # One line says it (argparse puts its usage above it).
    assert proc.returncode == 2 and message in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def test_cloud_command_one_hexoskin_user_of_ones_own_starts(tmp_path):
    """The default coaching names the default users; replacing them must not break the start."""
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "simulators.cli", "cloud", "--port", str(port), "--data-dir", str(tmp_path)],
                            env={**os.environ, "WEARABLE_SIM_HEXOSKIN_USER": "me@example.com:pw"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        r = _wait_get(f"http://127.0.0.1:{port}/hexoskin/api/v1/account/", auth=("me@example.com", "pw"))
        assert r.status_code == 200 and r.json()["objects"][0]["email"] == "me@example.com"
    finally:
        proc.terminate()
        proc.wait(20)


def _banner(proc: subprocess.Popen, last: str) -> str:
    """The cloud command's start-up lines, up to the one that contains `last`."""
    banner = ""
    while last not in banner:
        line = proc.stdout.readline()
        assert line, f"the cloud emulator exited early:\n{banner}"
        banner += line
    return banner


def _wait_get(url: str, timeout: float = 60, **kwargs) -> httpx.Response:
    """GET url once something answers there (within `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=5, **kwargs)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing answers at {url}"
            time.sleep(0.1)


def test_cloud_command_over_tls_at_the_vendor_roots(tmp_path):
    """--tls prints the CA to trust; each vendor's host name and a --listen port reach its emulator at its root."""
    port, own = free_port(), free_port()
    proc = subprocess.Popen([PY, "-m", "simulators.cli", "cloud", "--port", str(port), "--data-dir", str(tmp_path),
                             "--tls", "--listen", f"hexoskin=127.0.0.1:{own}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = _banner(proc, "Hexoskin users")
        ca = tmp_path / "tls" / "ca.pem"
        trust = ssl.create_default_context(cafile=str(ca))
        assert f"trust the CA in {ca}" in banner and f"at its root on https://127.0.0.1:{own}" in banner
        base = f"https://127.0.0.1:{port}"
        _wait_get(base + "/", verify=trust)
        with pytest.raises(httpx.ConnectError):  # not trusted without the CA
            httpx.get(base + "/", timeout=5)
        athlete = ("athlete@hexoskin.com", "hexoskin")
        at_root = httpx.get(f"https://127.0.0.1:{own}/api/v1/user/", auth=athlete, verify=trust).json()
        prefixed = httpx.get(base + "/hexoskin/api/v1/user/", auth=athlete, verify=trust).json()
        by_host = httpx.get(base + "/api/v1/user/", auth=athlete, verify=trust,
                            headers={"Host": "api.hexoskin.com"}).json()
        assert at_root["objects"][0]["resource_uri"].startswith("/api/v1/user/")
        assert by_host == at_root
        assert prefixed["objects"][0]["resource_uri"] == "/hexoskin" + at_root["objects"][0]["resource_uri"]
        for host, path in [("api.kardia.com", "/v1/patients"), ("eu-api.kardia.com", "/v1/patients"),
                           ("jawbone.com", "/nudge/api/v.1.1/users/@me/cardiac_events"),
                           ("api.humanapi.co", "/v1/human")]:
            r = httpx.get(base + path, verify=trust, headers={"Host": host})
            assert r.status_code == 401, (host, r.status_code, r.text)  # the vendor's app, asking who you are
        assert httpx.get(base + "/v1/patients", verify=trust).status_code == 404  # no such path at the root
    finally:
        proc.terminate()
        proc.wait(20)


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
