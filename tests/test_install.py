"""scripts/install-pi.sh staged into a folder, its units checked by systemd-analyze, and the demo
units' own commands run together: simulator -> gateway -> emulators, /metrics and the page answer.

systemd is not PID 1 here, so the units are not started by systemd; everything else about them is
checked. `systemd-analyze verify` needs the commands to exist, so it reads copies whose paths
point into the staged folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.chain import wait_for
from tests.test_service import _get_json, free_port

ROOT = Path(__file__).resolve().parent.parent
UNITS = ("wearable-gateway.service", "wearable-sim-cloud.service", "wearable-sim-kardia.service")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """The installer run twice into a staging root (the second run is an upgrade)."""
    stage = tmp_path_factory.mktemp("stage")
    cmd = ["bash", str(ROOT / "scripts" / "install-pi.sh"), "--root", str(stage), "--demo", "--python", sys.executable]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    config = stage / "etc/wearable-gateway/gateway.toml"
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    return stage, first.stdout, second.stdout


def test_installer_lays_out_the_service_and_is_idempotent(staged):
    stage, first, second = staged
    venv_bin = stage / "opt/wearable-gateway/venv/bin"
    assert (venv_bin / "wearable-gateway").exists() and (venv_bin / "wearable-sim").exists()
    etc = stage / "etc/wearable-gateway"
    assert "edited by the operator" in (etc / "gateway.toml").read_text()  # never overwritten
    assert "kept the existing" in second and "wrote" in first
    assert stat.S_IMODE((etc / "env").stat().st_mode) == 0o640
    assert stat.S_IMODE((stage / "var/lib/wearable-gateway").stat().st_mode) == 0o750
    for unit in UNITS:
        assert (stage / "etc/systemd/system" / unit).read_text() == (ROOT / "packaging/systemd" / unit).read_text()
    check = subprocess.run([str(venv_bin / "python"), "-m", "gateway", "check-config", str(etc / "gateway.toml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "kardia-demo" in check.stdout, check.stderr
    # Copied to /, the scripts must find their interpreter there, not in the staging folder.
    for name in ("wearable-gateway", "wearable-sim"):
        first = (venv_bin / name).read_text().splitlines()[0]
        assert first == "#!/opt/wearable-gateway/venv/bin/python", first
    assert not any(str(stage) in f.read_text(errors="replace") for f in venv_bin.iterdir()
                   if f.is_file() and not f.is_symlink())
    sysusers = (stage / "usr/lib/sysusers.d/wearable-gateway.conf").read_text().splitlines()
    for line in ("g dialout -", "g bluetooth -", "m wearable-gateway dialout", "m wearable-gateway bluetooth"):
        assert line in sysusers, line


def test_gateway_unit_is_a_sandboxed_notify_service():
    unit = (ROOT / "packaging/systemd/wearable-gateway.service").read_text()
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/wearable-gateway", "NoNewPrivileges=true", "SupplementaryGroups=dialout bluetooth",
                 "DeviceAllow=char-ttyUSB rw", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
                 "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in unit.splitlines(), line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_units_pass_systemd_analyze_verify(staged, tmp_path):
    stage, _, _ = staged
    copies = []
    for unit in UNITS:
        text = (stage / "etc/systemd/system" / unit).read_text()
        text = text.replace("/opt/wearable-gateway", str(stage / "opt/wearable-gateway"))
        text = text.replace("/etc/wearable-gateway", str(stage / "etc/wearable-gateway"))
        (tmp_path / unit).write_text(text)
        copies.append(str(tmp_path / unit))
    proc = subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), proc.stdout + proc.stderr
    # And it does catch mistakes.
    (tmp_path / "broken.service").write_text("[Service]\nExecStart=/nonexistent/x\n")
    assert subprocess.run(["systemd-analyze", "verify", str(tmp_path / "broken.service")],
                          capture_output=True, timeout=60).returncode != 0


def _exec_start(unit_text: str) -> list[str]:
    """The unit's command; a staged venv script runs as `venv/bin/python -m ...` (the script itself
    names /opt/wearable-gateway/venv/bin/python, where the staged folder will be copied)."""
    (line,) = [x for x in unit_text.splitlines() if x.startswith("ExecStart=")]
    argv = shlex.split(line.split("=", 1)[1])
    program = Path(argv[0])
    modules = {"wearable-gateway": "gateway", "wearable-sim": "simulators"}
    if program.name in modules and program.parent.name == "bin":
        return [str(program.parent / "python"), "-m", modules[program.name], *argv[1:]]
    return argv


def test_demo_units_run_the_whole_chain(staged, tmp_path):
    """The three ExecStart commands of the demo units, as systemd would run them, paths moved into tmp."""
    stage, _, _ = staged
    cloud_port, status_port = free_port(), free_port()
    moves = {"/opt/wearable-gateway": str(stage / "opt/wearable-gateway"),
             "/var/lib/wearable-gateway": str(tmp_path / "var"), "/run/wearable-sim": str(tmp_path / "run"),
             "/etc/wearable-gateway": str(tmp_path / "etc"), "127.0.0.1:8080": f"127.0.0.1:{cloud_port}",
             "127.0.0.1:8765": f"127.0.0.1:{status_port}", "--port 8080": f"--port {cloud_port}"}

    def moved(text: str) -> str:
        for a, b in moves.items():
            text = text.replace(a, b)
        return text

    (tmp_path / "run").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/gateway.toml").write_text(moved((stage / "etc/wearable-gateway/gateway.toml").read_text()))
    commands = {u: _exec_start(moved((stage / "etc/systemd/system" / u).read_text())) for u in UNITS}
    procs = []
    try:
        for unit in ("wearable-sim-cloud.service", "wearable-sim-kardia.service", "wearable-gateway.service"):
            procs.append(subprocess.Popen(commands[unit], stdout=open(tmp_path / f"{unit}.log", "w"),
                                          stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
            if unit == "wearable-sim-kardia.service":
                wait_for(lambda: (tmp_path / "run/kardia").exists(), 30, "the simulator's pty link")
        status = f"http://127.0.0.1:{status_port}"
        wait_for(lambda: _get_json(status + "/api/status") is not None, 60, "the gateway's status server")
        wait_for(lambda: _get_json(status + "/api/status")["devices"][0]["driver_counters"].get("samples", 0) > 600, 30,
                 "samples from the simulated KardiaMobile")
        metrics = httpx.get(status + "/metrics").text
        page = httpx.get(status + "/").text
        s = _get_json(status + "/api/status")
        demo_patient = httpx.get(f"http://127.0.0.1:{cloud_port}/kardia/v1/patients/DemoPatient000000000000000000001",
                                 auth=("kardia-dev-key", ""))
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in reversed(procs)]
    assert s["devices"][0]["name"] == "kardia-demo" and s["devices"][0]["connected"]
    assert 'wg_device_connected{device="kardia-demo"} 1.0' in metrics
    assert "<title>wearable-gateway</title>" in page
    assert demo_patient.status_code == 200 and demo_patient.json()["mrn"] == "DEMO-1"  # the config's patient exists
    assert codes[0] == 0  # the gateway stopped cleanly on SIGTERM
    log = (tmp_path / "wearable-gateway.service.log").read_text()
    assert "gateway stopped" in log and "kardia-dev-key" not in log


def test_installer_rejects_unknown_options():
    proc = subprocess.run(["bash", str(ROOT / "scripts/install-pi.sh"), "--frobnicate"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "unknown option --frobnicate" in proc.stderr
