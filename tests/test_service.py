"""The gateway as a service: systemd notify and watchdog, graceful SIGTERM, status server,
Prometheus metrics, `status`, logs without secrets, the spool's size cap, `doctor`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import doctor, logs
from gateway.config import ConfigError, parse
from gateway.spool import Package, Spool
from gateway.systemd import Notifier
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer
from simulators.reconcile import reconcile
from tests.chain import (API_KEY, HUB_TOKEN, config_toml, create_patient, free_port, recordings, start_simulator,
                         wait_for)

PY = sys.executable
STATUS_PASSWORD = "status-pass-Kx9"


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket, read by a thread like systemd reads it."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def wait_for(self, line: str, timeout: float) -> float:
        """Until a datagram holds `line`; when it came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in list(self.messages):
                if line in m.split("\n"):
                    return t
            time.sleep(0.01)
        raise AssertionError(f"no {line} within {timeout} s; got {[m for _, m in self.messages]}")

    def count(self, line: str) -> int:
        """How many datagrams so far held `line`."""
        return sum(line in m.split("\n") for _, m in list(self.messages))


def _spooled_samples(spool_path) -> list[tuple[int, np.ndarray]]:
    """(first counter, samples) of every Kardia package still in the spool."""
    db = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT p.first, b.body FROM packages p JOIN bodies b ON b.id = p.id"
                          " WHERE p.kind = 'kardia.recording' ORDER BY p.first").fetchall()
        (journal,) = db.execute("SELECT COUNT(*) FROM journal").fetchone()
    finally:
        db.close()
    assert journal == 0, "a graceful stop packages everything it journaled"
    return [(first, np.array(json.loads(body)["data"]["raw"]["samples"]["leadI"])) for first, body in rows]


@pytest.fixture(scope="module")
def service_run(tmp_path_factory):
    """One real daemon process under a fake systemd: streamed to, scraped, then stopped with SIGTERM."""
    tmp = tmp_path_factory.mktemp("service")
    out: dict = {"tmp": tmp}
    with BackgroundServer(build_app(tmp / "cloud", Credentials([API_KEY], humanapi_tokens=[HUB_TOKEN]))) as server:
        url = server.url + "/kardia"
        patient = create_patient(url)
        sim = start_simulator(duration=120, speed=1.0, seed=21, link=tmp / "kardia.pty", start=False)
        port = free_port()
        cfg = tmp / "gateway.toml"
        cfg.write_text(config_toml(tmp / "spool.db", url, patient, str(tmp / "kardia.pty"), recording_seconds=3,
                                   hub_url=server.url + "/humanapi", status_listen=f"127.0.0.1:{port}")
                       .replace('drain_on_stop = 15', 'drain_on_stop = 0'))
        notify = NotifySocket(tmp / "notify.sock")
        env = {**os.environ, "CHAIN_KARDIA_KEY": API_KEY, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"}
        env.pop("JOURNAL_STREAM", None)
        stderr = open(tmp / "gateway.log", "w")
        gw = subprocess.Popen([PY, "-m", "gateway.cli", "run", "--config", str(cfg), "--log-level", "DEBUG",
                               "--log-format", "json"], env=env, stdout=stderr, stderr=subprocess.STDOUT)
        try:
            t_start = time.monotonic()
            out["ready_after"] = notify.wait_for("READY=1", 30) - t_start
            sim.thread.start()
            status_url = f"http://127.0.0.1:{port}"
            wait_for(lambda: httpx.get(url + "/v1/recordings", auth=(API_KEY, "")).json()["totalCount"] >= 2, 30,
                     "the first uploads")
            out["status"] = httpx.get(status_url + "/api/status").json()
            out["trace"] = httpx.get(status_url + "/api/trace", params={"device": "kardia-1", "seconds": 2}).json()
            out["no_device"] = httpx.get(status_url + "/api/trace", params={"device": "nope"}).status_code
            out["metrics"] = httpx.get(status_url + "/metrics").text
            out["page"] = httpx.get(status_url + "/").text
            out["cli_status"] = subprocess.run([PY, "-m", "gateway.cli", "status", "--url", status_url],
                                               capture_output=True, text=True, timeout=30)
            watchdog_from = notify.count("WATCHDOG=1")
            time.sleep(2.0)
            out["watchdog_pings_in_2s"] = notify.count("WATCHDOG=1") - watchdog_from
            out["sent_at_sigterm"] = len(sim.sent)
            t_term = time.monotonic()
            gw.send_signal(signal.SIGTERM)
            out["stopping_after"] = notify.wait_for("STOPPING=1", 30) - t_term
            out["exit_code"] = gw.wait(30)
            out["stop_seconds"] = time.monotonic() - t_term
        finally:
            notify.close()
            if gw.poll() is None:
                gw.kill()
            sim.stop.set()
            sim.join()
            sim.port.close()
        out["upstream"] = recordings(url, patient)
        out["sent"] = sim.sent
    out["log"] = (tmp / "gateway.log").read_text()
    return out


def test_systemd_notify_ready_watchdog_stopping(service_run):
    assert service_run["ready_after"] < 20
    assert service_run["watchdog_pings_in_2s"] >= 2  # every 0.5 s with WatchdogSec=1 (4 unless the host stalls)
    assert service_run["stopping_after"] < 5
    assert service_run["exit_code"] == 0 and service_run["stop_seconds"] < 20


def test_sigterm_mid_stream_leaves_every_sample_upstream_or_spooled(service_run):
    upstream = [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in service_run["upstream"]]
    spooled = _spooled_samples(service_run["tmp"] / "spool.db")
    sent = service_run["sent"]
    check = reconcile(sent, upstream + [s for _, s in spooled])
    assert check.exact or (check.duplicates, check.unmatched) == (0, 0), check.as_dict()
    covered = np.zeros(len(sent), dtype=bool)
    for pos, rec in zip(check.positions, upstream + [s for _, s in spooled]):
        covered[pos:pos + len(rec)] = True
    held = int(np.argmin(covered)) if not covered.all() else len(sent)
    assert covered[:held].all() and not covered[held:].any()  # one unbroken prefix, nothing after it
    # Everything read before the signal is there: only what sat in the pty buffer may be missing.
    assert held >= service_run["sent_at_sigterm"] - 300
    assert len(upstream) >= 2 and all(len(u) == 900 for u in upstream[:-1])


def test_status_api_trace_and_page(service_run):
    s = service_run["status"]
    (dev,) = s["devices"]
    assert dev["name"] == "kardia-1" and dev["connected"] and dev["driver_counters"]["samples"] > 0
    assert dev["bad_frames"] == 0 and s["spool"]["dead_letters"] == 0
    assert {u["name"] for u in s["uplinks"]} == {"kardia", "hub"}
    t = service_run["trace"]
    assert t["channel"] == "leadI" and t["fs"] == 300 and len(t["samples"]) == 600  # 2 s at 300 Hz
    assert service_run["no_device"] == 404
    assert "wearable-gateway" in service_run["page"] and "api/trace" in service_run["page"]
    cli = service_run["cli_status"]
    assert cli.returncode == 0, cli.stderr
    assert "device kardia-1" in cli.stdout and "link up" in cli.stdout and "uplink kardia" in cli.stdout


def _metric(families, name: str, **labels) -> float:
    for fam in families:
        for sample in fam.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def test_prometheus_metrics(service_run):
    fams = list(text_string_to_metric_families(service_run["metrics"]))
    assert _metric(fams, "wg_device_connected", device="kardia-1") == 1
    assert _metric(fams, "wg_device_samples_total", device="kardia-1") > 900
    assert _metric(fams, "wg_device_frames_total", device="kardia-1") > 10
    assert _metric(fams, "wg_device_bad_frames_total", device="kardia-1") == 0
    assert _metric(fams, "wg_device_gaps_total", device="kardia-1") == 0
    assert _metric(fams, "wg_uploads_total", uplink="kardia", outcome="ok") >= 2
    assert _metric(fams, "wg_uploads_total", uplink="kardia", outcome="failed") == 0
    assert _metric(fams, "wg_spool_packages", uplink="kardia") >= 0
    durable = _metric(fams, "wg_sample_to_durable_seconds_count")
    assert durable >= 10  # one observation per stream per group commit that journaled it
    # Samples are durable within a tick or two; 5 s allows for a loaded host.
    assert _metric(fams, "wg_sample_to_durable_seconds_bucket", le="5.0") == durable
    acked = _metric(fams, "wg_sample_to_ack_seconds_count", uplink="kardia")
    assert acked >= 2
    # A 3 s recording is acknowledged at least 3 s after its first sample, and well within 15 s here.
    assert _metric(fams, "wg_sample_to_ack_seconds_bucket", uplink="kardia", le="1.0") == 0
    assert _metric(fams, "wg_sample_to_ack_seconds_bucket", uplink="kardia", le="15.0") == acked
    from gateway import __version__

    assert _metric(fams, "wg_build_info", version=__version__) == 1
    assert _metric(fams, "wg_uplink_up", uplink="kardia") == 1 and _metric(fams, "wg_uplink_paused", uplink="kardia") == 0
    assert abs(_metric(fams, "wg_uplink_last_success_timestamp_seconds", uplink="kardia") - time.time()) < 120
    assert _metric(fams, "process_resident_memory_bytes") > 20e6 and _metric(fams, "process_cpu_seconds_total") > 0
    if shutil.which("promtool"):  # Prometheus's own linter, where it is installed
        check = subprocess.run(["promtool", "check", "metrics"], input=service_run["metrics"], capture_output=True,
                               text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr


def test_logs_are_json_lines_and_never_show_a_secret(service_run):
    text = service_run["log"]
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON event
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    assert any(r["logger"] == "httpx" for r in records)  # DEBUG really logged the HTTP traffic
    assert any("status page on" in r["msg"] for r in records)
    assert not [r for r in records if r["level"] in ("WARNING", "ERROR", "CRITICAL")], "a clean run warns of nothing"
    for secret in (API_KEY, HUB_TOKEN):
        for form in logs.secret_forms([secret]):
            assert form not in text, f"a form of a secret appears in the logs: {form[:4]}..."


# -- units -------------------------------------------------------------------------------


def test_formatter_redacts_secrets_and_keeps_one_line(capsys):
    handler = logs.setup("DEBUG", "text", ["s3cret-key"], stream=sys.stdout)
    try:
        log = logging.getLogger("test.redact")
        log.info("sending with key s3cret-key and header Basic %s",
                 base64.b64encode(b"s3cret-key:").decode())
        try:
            raise ValueError("bad thing\nwith s3cret-key inside")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2  # one line per event, traceback included
    assert "s3cret-key" not in "\n".join(out) and base64.b64encode(b"s3cret-key:").decode() not in out[0]
    assert out[0].count(logs.REDACTED) == 2 and "Traceback" in out[1] and "ValueError" in out[1]


def test_journald_lines_carry_the_priority():
    f = logs.ServiceFormatter("text", journald=True)
    record = logging.LogRecord("gw", logging.WARNING, __file__, 1, "link lost", None, None)
    assert f.format(record) == "<4>WARNING gw: link lost"


def test_notifier_speaks_the_sd_notify_protocol(tmp_path):
    sock = NotifySocket(tmp_path / "n.sock")
    n = Notifier({"NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "4000000"})
    assert n.enabled and n.watchdog_s == 4.0
    assert n.ready("2 devices")
    sock.wait_for("READY=1", 2)
    assert "STATUS=2 devices" in sock.messages[-1][1]
    n.stopping()
    sock.wait_for("STOPPING=1", 2)
    n.close()
    sock.close()
    assert Notifier({}).send("READY=1") is False  # not under systemd: a no-op
    assert Notifier({"NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_s is None


def _pkg(i: int, evictable: bool, size: int) -> Package:
    kind = "kardia.recording" if evictable else "humanapi.ecg"
    return Package("up", f"dev/s/leadI/{i}", kind, "dev/s/leadI", i, i + 1, 1000.0 + i, "application/json",
                   b"x" * size, evictable)


def test_spool_cap_bounds_the_files_on_disk_and_evicts_oldest_waveforms_never_events(tmp_path, caplog):
    from gateway.spool import file_bytes

    cap = 1_000_000
    spool = Spool(tmp_path / "spool.db", max_bytes=cap)
    largest = 0
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        for i in range(40):  # 40 waveforms of 50 kB and 40 events of 100 B: 2 MB offered to a 1 MB cap
            spool.commit(packages=[_pkg(2 * i, True, 50_000), _pkg(2 * i + 1, False, 100)])
            largest = max(largest, file_bytes(tmp_path / "spool.db"))
    stats = spool.stats()
    kept = [p.key for p in spool.due("up", now=1e12, limit=1000)]
    spool.close()
    waveforms = [int(k.rsplit("/", 1)[1]) for k in kept if int(k.rsplit("/", 1)[1]) % 2 == 0]
    events = [k for k in kept if int(k.rsplit("/", 1)[1]) % 2 == 1]
    assert len(events) == 40  # never evicted
    assert largest <= cap + 64_000  # database, WAL and index together; the headroom is one commit
    assert 10 <= len(waveforms) < 20 and waveforms == list(range(80 - 2 * len(waveforms), 80, 2))  # the newest stay
    assert stats["evicted"] == 40 - len(waveforms) and stats["evicted_bytes"] == 50_000 * stats["evicted"]
    evictions = [r for r in caplog.records if "evicted waveform package" in r.getMessage()]
    assert len(evictions) == stats["evicted"] and "dev/s/leadI/0 " in evictions[0].getMessage()


def test_events_alone_over_the_cap_are_refused_whole_and_a_rolled_back_eviction_is_not_reported(tmp_path, caplog):
    from gateway.spool import SpoolFull

    spool = Spool(tmp_path / "spool.db", max_bytes=1_000_000)
    spool.commit(packages=[_pkg(i, False, 100_000) for i in range(1, 8, 2)])  # 400 kB of events
    spool.commit(packages=[_pkg(0, True, 300_000)])  # a waveform
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        bad = _pkg(9, False, 10)
        bad.body = None  # fails the transaction after the eviction it needed
        with pytest.raises(sqlite3.IntegrityError):
            spool.commit(packages=[_pkg(11, False, 300_000), bad])
        assert not [r for r in caplog.records if "evicted" in r.getMessage()]  # it was rolled back: not evicted
        with pytest.raises(SpoolFull, match="never evicted"):
            spool.commit(packages=[_pkg(13, False, 900_000)])  # events alone would pass the cap
    keys = sorted(p.key for p in spool.due("up", now=1e12, limit=100))
    assert keys == sorted(f"dev/s/leadI/{i}" for i in (0, 1, 3, 5, 7)) and spool.stats()["evicted"] == 0
    spool.close()


def test_a_version_1_spool_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE packages (id INTEGER PRIMARY KEY, uplink TEXT NOT NULL, key TEXT NOT NULL,"
               " kind TEXT NOT NULL, stream TEXT NOT NULL, first INTEGER NOT NULL, end INTEGER NOT NULL,"
               " sample_time REAL NOT NULL, created_at REAL NOT NULL, content_type TEXT NOT NULL, body BLOB NOT NULL,"
               " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT,"
               " UNIQUE (uplink, key))")
    db.execute("INSERT INTO packages (uplink, key, kind, stream, first, end, sample_time, created_at, content_type,"
               " body) VALUES ('up', 'k', 'kardia.recording', 's', 0, 1, 1.0, 1.0, 'application/json', x'00')")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    spool = Spool(path, max_bytes=10)
    (p,) = spool.due("up", now=1e12)
    spool.close()
    assert p.key == "k" and p.evictable is False  # kept; old packages are never evicted


def test_status_config_off_loopback_needs_a_password(tmp_path):
    base = {"spool": {"path": "s.db"}, "uplinks": {"k": {"type": "kardia", "base_url": "http://x", "api_key": "a"}},
            "devices": [{"name": "d", "driver": "kardiamobile", "transport": "serial:///dev/null",
                         "uplinks": ["k"], "patient_id": "p"}]}
    with pytest.raises(ConfigError, match="status.password: required when the status page listens beyond"):
        parse({**base, "status": {"listen": "0.0.0.0:8765"}}, tmp_path)
    cfg = parse({**base, "status": {"listen": "0.0.0.0:8765", "password_env": "P"}}, tmp_path, env={"P": "pw"})
    assert (cfg.status.host, cfg.status.port, cfg.status.password) == ("0.0.0.0", 8765, "pw")
    assert "pw" in cfg.secrets() and "a" in cfg.secrets()
    assert parse(base, tmp_path).status.url == "http://127.0.0.1:8765"


async def test_status_server_with_a_password_refuses_without_it(tmp_path):
    from gateway.config import StatusConfig
    from gateway.daemon import Gateway

    cfg = parse({"spool": {"path": "s.db"},
                 "uplinks": {"k": {"type": "kardia", "base_url": "http://127.0.0.1:9", "api_key": "a"}},
                 "devices": [{"name": "d", "driver": "kardiamobile", "transport": f"serial://{tmp_path}/none",
                              "uplinks": ["k"], "patient_id": "p"}]}, tmp_path)
    cfg.status = StatusConfig(True, "127.0.0.1", 0, STATUS_PASSWORD)
    gateway = Gateway(cfg)
    await gateway.start()
    try:
        url = f"http://127.0.0.1:{gateway.status_server.port}"
        async with httpx.AsyncClient() as c:
            assert (await c.get(url + "/api/status")).status_code == 401
            assert (await c.get(url + "/metrics", auth=("x", "wrong"))).status_code == 401
            ok = await c.get(url + "/api/status", auth=("anyone", STATUS_PASSWORD))
            assert ok.status_code == 200 and ok.json()["devices"][0]["connected"] is False
            assert (await c.get(url + "/metrics", auth=("", STATUS_PASSWORD))).status_code == 200
    finally:
        await gateway.stop()


def test_doctor_reports_each_problem(tmp_path):
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY]))) as server:
        cfg = tmp_path / "g.toml"
        cfg.write_text(config_toml(tmp_path / "spool.db", server.url + "/kardia", "p", str(tmp_path / "missing-tty"),
                                   recording_seconds=30).replace('api_key_env = "CHAIN_KARDIA_KEY"', 'api_key = "k"'))
        proc = subprocess.run([PY, "-m", "gateway.cli", "doctor", "--config", str(cfg)], capture_output=True,
                              text=True, timeout=60)
    lines = {line.split()[1]: line for line in proc.stdout.splitlines() if len(line.split()) > 1}
    assert proc.returncode == 1  # the missing serial port is a failure
    assert lines["config"].startswith("ok")
    assert "does not exist" in proc.stdout and "fail" in proc.stdout
    assert any(line.startswith("ok") and "answers (HTTP" in line for line in proc.stdout.splitlines())
    assert "disk" in lines and "clock" in lines and "ble" in lines
    assert doctor.check_ble(tmp_path).state == doctor.WARN  # no adapters under an empty sysfs folder
    (tmp_path / "hci0").mkdir()
    assert doctor.check_ble(tmp_path).state == doctor.OK


def test_a_full_notify_queue_never_blocks_the_daemon(tmp_path, caplog):
    path = str(tmp_path / "deaf.sock")
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(path)  # bound, never read: its queue fills
    n = Notifier({"NOTIFY_SOCKET": path})
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="gateway.systemd"):
        results = [n.send("WATCHDOG=1") for _ in range(200)]
    assert time.monotonic() - t0 < 2.0
    assert results[0] is True and results[-1] is False
    assert any("queue" in r.getMessage() for r in caplog.records)
    n.close()
    deaf.close()


def test_a_taken_status_port_is_a_clear_startup_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "g.toml"
        cfg.write_text(config_toml(tmp_path / "spool.db", "http://127.0.0.1:9/kardia", "p", str(tmp_path / "tty"),
                                   recording_seconds=30, status_listen=f"127.0.0.1:{port}")
                       .replace('api_key_env = "CHAIN_KARDIA_KEY"', 'api_key = "k"'))
        proc = subprocess.run([PY, "-m", "gateway.cli", "run", "--config", str(cfg)], capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "cannot start" in lines[-1] and "address already in use" in lines[-1].lower(), proc.stderr


def _reload_config(spool, kardia_url: str, devices: list[tuple[str, str, str, str]], hub_url: str | None = None,
                   status_port: int = 0) -> str:
    """A configuration of (name, pty, patient, uplinks) KardiaMobiles, and the hub uplink if hub_url."""
    text = f"""
[gateway]
drain_on_stop = 0

[spool]
path = "{spool}"

[status]
listen = "127.0.0.1:{status_port}"

[uplinks.kardia]
type = "kardia"
base_url = "{kardia_url}"
api_key_env = "CHAIN_KARDIA_KEY"
"""
    if hub_url:
        text += f'\n[uplinks.hub]\ntype = "humanapi"\nbase_url = "{hub_url}"\ntoken = "{HUB_TOKEN}"\n'
    for name, pty, patient, uplinks in devices:
        text += (f'\n[[devices]]\nname = "{name}"\ndriver = "kardiamobile"\ntransport = "serial://{pty}"\n'
                 f'uplinks = {uplinks}\npatient_id = "{patient}"\nrecording_seconds = 3\n')
    return text


def _covered_prefix(sent: np.ndarray, records: list[np.ndarray]) -> int:
    """How many of the first samples sent the records hold, each exactly once and in one unbroken run."""
    check = reconcile(sent, records)
    assert (check.duplicates, check.unmatched) == (0, 0), check.as_dict()
    covered = np.zeros(len(sent), dtype=bool)
    for pos, rec in zip(check.positions, records):
        covered[pos:pos + len(rec)] = True
    held = int(np.argmin(covered)) if not covered.all() else len(sent)
    assert not covered[held:].any(), "a hole in what was delivered"
    return held


def test_sighup_reloads_devices_and_uplinks_and_refuses_an_invalid_file(tmp_path):
    """SIGHUP: a device and an uplink are added while the first device streams on; an invalid file
    changes nothing and says why; a removed device's partial window is packaged and delivered.
    Every sample each device sent while configured arrives exactly once."""
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY], humanapi_tokens=[HUB_TOKEN]))) as server:
        url, hub = server.url + "/kardia", server.url + "/humanapi"
        p1 = create_patient(url)
        p2 = httpx.post(url + "/v1/patients", auth=(API_KEY, ""),
                        data={"mrn": "RELOAD-2", "dob": "1970-01-01", "email": "r2@example.com"}).json()["id"]
        sim1 = start_simulator(duration=600, speed=1.0, seed=31, link=tmp_path / "k1.pty")
        sim2 = start_simulator(duration=600, speed=1.0, seed=32, link=tmp_path / "k2.pty")
        port = free_port()
        status = f"http://127.0.0.1:{port}/api/status"
        cfg = tmp_path / "gateway.toml"
        one = [("kardia-1", str(tmp_path / "k1.pty"), p1, '["kardia"]')]
        two = one + [("kardia-2", str(tmp_path / "k2.pty"), p2, '["kardia", "hub"]')]
        cfg.write_text(_reload_config(tmp_path / "spool.db", url, one, status_port=port))
        env = {**os.environ, "CHAIN_KARDIA_KEY": API_KEY}
        log_path = tmp_path / "gateway.log"
        gw = subprocess.Popen([PY, "-m", "gateway", "run", "--config", str(cfg)], env=env,
                              stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: len(recordings(url, p1)) >= 1, 60, "kardia-1's first recording")
            cfg.write_text(_reload_config(tmp_path / "spool.db", url, two, hub_url=hub, status_port=port))
            gw.send_signal(signal.SIGHUP)
            wait_for(lambda: len(recordings(url, p2)) >= 2, 60, "recordings of the device added by the reload")
            wait_for(lambda: httpx.get(hub + "/v1/human/ecg", headers={"Authorization": f"Bearer {HUB_TOKEN}"})
                     .json(), 60, "the hub uplink added by the reload")
            assert [d["name"] for d in httpx.get(status).json()["devices"]] == ["kardia-1", "kardia-2"]

            cfg.write_text('[spool]\npath = "x.db"\n')  # no devices: invalid
            gw.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload refused" in log_path.read_text(), 30, "the refused reload's log line")
            assert "configure at least one [[devices]]" in log_path.read_text()
            assert gw.poll() is None and len(httpx.get(status).json()["devices"]) == 2

            before = len(recordings(url, p1))
            cfg.write_text(_reload_config(tmp_path / "spool.db", url, two[1:], hub_url=hub, status_port=port))
            sent_at_hup = len(sim1.frames) * 25
            gw.send_signal(signal.SIGHUP)
            wait_for(lambda: [d["name"] for d in httpx.get(status).json()["devices"]] == ["kardia-2"], 60,
                     "kardia-1 removed")
            wait_for(lambda: len(recordings(url, p1)) > before, 60, "kardia-1's last, partial recording")
            sim1.stop.set()
            wait_for(lambda: len(recordings(url, p2)) >= 4, 60, "kardia-2 streaming on after the removal")
            sim2.stop.set()
            gw.send_signal(signal.SIGTERM)
            assert gw.wait(60) == 0
        finally:
            if gw.poll() is None:
                gw.kill()
            for sim in (sim1, sim2):
                sim.stop.set()
                sim.join()
                sim.port.close()
        rec1 = [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recordings(url, p1)]
        rec2 = [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recordings(url, p2)]
    log_text = log_path.read_text()
    assert "Traceback" not in log_text
    # kardia-1: everything it sent until its removal, then its cut window, nothing twice.
    assert _covered_prefix(sim1.sent, rec1) >= sent_at_hup - 300
    # (The cut window is shorter, or whole when the removal fell on a window's end: seen under load.)
    assert all(len(r) == 900 for r in rec1[:-1]) and len(rec1[-1]) <= 900
    # kardia-2, unchanged by the last reload: from its first sample on, recordings of 900 samples.
    assert _covered_prefix(sim2.sent, rec2) >= 4 * 900 and all(len(r) == 900 for r in rec2[:4])
    assert "configuration reloaded" in log_text and log_text.count("configuration reloaded") == 2


def test_an_invalid_configuration_is_served_on_the_page_until_a_reload_fixes_it(tmp_path):
    """`run --on-invalid-config serve` (the unit's way): the status address shows every error of the
    file; a SIGHUP with the file still invalid shows the new errors; once it is valid, a SIGHUP starts
    the gateway on it (its device shows on the same address, down, with why)."""
    port = free_port()
    cfg = tmp_path / "gateway.toml"
    status_table = f'[status]\nlisten = "127.0.0.1:{port}"\n'
    cfg.write_text(status_table + '[spool]\npath = "spool.db"\n')  # no devices, no uplinks
    log_path = tmp_path / "gateway.log"
    gw = subprocess.Popen([PY, "-m", "gateway", "run", "--config", str(cfg), "--on-invalid-config", "serve"],
                          env={**os.environ, "CHAIN_KARDIA_KEY": API_KEY}, stdout=open(log_path, "w"),
                          stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get_json(base + "/api/status") is not None, 60, "the status address")
        first = _get_json(base + "/api/status")["config_error"]
        page = httpx.get(base + "/").text
        metrics = httpx.get(base + "/metrics").text
        cfg.write_text(status_table + '[spool]\npath = "spool.db"\nsync = "sometimes"\n')
        gw.send_signal(signal.SIGHUP)
        wait_for(lambda: any("sync" in e for e in _get_json(base + "/api/status")["config_error"]["errors"]), 30,
                 "the new errors after a reload of a still invalid file")
        assert gw.poll() is None
        cfg.write_text(_reload_config(tmp_path / "spool.db", "http://127.0.0.1:9/kardia",
                                      [("kardia-1", str(tmp_path / "absent-port"), "patient", '["kardia"]')],
                                      status_port=port))
        gw.send_signal(signal.SIGHUP)
        wait_for(lambda: (_get_json(base + "/api/status") or {}).get("devices"), 60, "the gateway started")
        (dev,) = _get_json(base + "/api/status")["devices"]
        gw.send_signal(signal.SIGTERM)
        code = gw.wait(60)
    finally:
        if gw.poll() is None:
            gw.kill()
    assert str(cfg) == first["source"]
    assert "configure at least one [[devices]] entry" in " ".join(first["errors"])
    assert "configure at least one [[devices]] entry" in page and "invalid configuration" in page
    assert "wg_config_valid 0.0" in metrics
    assert dev["name"] == "kardia-1" and not dev["connected"] and "cannot open" in dev["down_reason"]
    assert code == 0
    assert "Traceback" not in log_path.read_text()


def _get_json(url: str):
    try:
        r = httpx.get(url, timeout=2)
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None
