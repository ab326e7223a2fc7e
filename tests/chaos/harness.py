"""What the chaos tier breaks things with, shared by tests/chaos and scripts/chaos.py.

- `Gateway`: the real daemon as a process, that can be SIGKILLed and restarted on the same
  configuration, spool and ports (as systemd's Restart= would).
- `FaultProxy`: an HTTP proxy between the uplinks and the emulators that answers a seeded share
  of requests with a fault: 500, 503, 429 with Retry-After, a hang past the client's timeout, a
  reset before forwarding, a reset after forwarding (the acknowledgement lost), a truncated
  answer and a garbage 200 after forwarding.
- `CloudProcess`: the emulators as a process on a fixed port, to be SIGKILLed mid-ingest and
  restarted on the same data.
- `small_filesystem`: a tmpfs of a given size (root only; elsewhere the caller skips and says why).
- `kill_storm`: a KardiaMobile streaming known samples while a supervisor kills and restarts the
  gateway; the receiver's recordings placed against the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from tests.chain import free_port

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
API_KEY = "chaos-key"


def wait_until(predicate, timeout: float, what: str, step: float = 0.05) -> None:
    """Poll predicate() until true; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


# -- processes ---------------------------------------------------------------------------------


class Gateway:
    """wearable-gateway run, as a process; each start appends to its own log file."""

    def __init__(self, config: Path, logdir: Path, env: dict | None = None) -> None:
        self.config = config
        self.logdir = logdir
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.logdir / f"gateway-{self.starts}.log", "w")
        self.proc = subprocess.Popen([PY, "-m", "gateway.cli", "run", "--config", str(self.config)], cwd=ROOT,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 120.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.logdir.glob("gateway-*.log")))

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(30)


def end_session(sim, gw: Gateway, join_s: float, stop_s: float) -> None:
    """Let the simulated session run out, check the gateway read its last bytes, stop it with SIGTERM."""
    sim.join(join_s)
    assert sim.port.drain(120), "the gateway did not read the last bytes"
    assert gw.stop(stop_s) == 0, gw.logs()[-3000:]


class CloudProcess:
    """wearable-sim cloud on a fixed port and data directory: killed and restarted, it keeps its data."""

    def __init__(self, data_dir: Path, port: int | None = None, logdir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.logdir = logdir or data_dir.parent
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = open(self.logdir / f"cloud-{self.starts}.log", "w")
        self.proc = subprocess.Popen([PY, "-m", "simulators.cli", "cloud", "--port", str(self.port), "--data-dir",
                                      str(self.data_dir), "--kardia-api-key", API_KEY], cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT)
        wait_until(self._answers, 60, "the emulators to answer")

    def _answers(self) -> bool:
        try:
            httpx.get(self.url + "/kardia/v1/patients", auth=(API_KEY, ""), timeout=2)
            return True
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.logdir.glob("cloud-*.log")))


# -- the fault-injecting proxy -----------------------------------------------------------------

FAULTS = ("500", "503", "429", "hang", "reset_before", "reset_after", "truncated", "garbage_200")


@dataclass
class FaultProxy:
    """HTTP/1.1 proxy to `target`; a `rate` share of requests meets a fault (seeded), the rest pass."""

    target: str
    rate: float = 0.4
    seed: int = 0
    hang_s: float = 8.0
    faults: tuple[str, ...] = FAULTS
    port: int = 0
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._ready = threading.Event()
        self.healed = False  # True: no more faults

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FaultProxy":
        self._thread = threading.Thread(target=self._run, name="fault proxy", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the fault proxy did not start"
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._client = httpx.AsyncClient(base_url=self.target, timeout=30)
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        self._server.close()
        await self._client.aclose()

    def _choose(self) -> str:
        if self.healed or self._rng.random() >= self.rate:
            return "pass"
        return self._rng.choice(self.faults)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = [tuple(h.split(":", 1)) for h in lines[1:] if ":" in h]
                length = next((int(v) for k, v in headers if k.strip().lower() == "content-length"), 0)
                body = await reader.readexactly(length) if length else b""
                fault = self._choose()
                self.counts[fault] += 1
                if fault in ("500", "503", "429"):
                    extra = "Retry-After: 1\r\n" if fault == "429" else ""
                    msg = b'{"error": "injected"}'
                    writer.write(f"HTTP/1.1 {fault} Injected\r\nContent-Type: application/json\r\n{extra}"
                                 f"Content-Length: {len(msg)}\r\n\r\n".encode() + msg)
                    await writer.drain()
                    continue
                if fault == "hang":
                    await asyncio.sleep(self.hang_s)
                    return
                if fault == "reset_before":
                    return
                keep = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}
                forward = {k.strip(): v.strip() for k, v in headers if k.strip().lower() not in keep}
                try:
                    resp = await self._client.request(method, path, content=body, headers=forward)
                except httpx.HTTPError:
                    return  # the target is down: the client sees a reset
                if fault == "reset_after":
                    return  # forwarded, the acknowledgement lost
                content = resp.content
                status, reason = resp.status_code, resp.reason_phrase or "OK"
                if fault == "garbage_200":
                    status, reason, content = 200, "OK", b"\x00garbage, not JSON\xff"
                ctype = resp.headers.get("content-type", "application/octet-stream")
                extra = "".join(f"{k}: {v}\r\n" for k, v in resp.headers.items()
                                if k.lower() in ("idempotent-replayed", "location", "retry-after"))
                declared = len(content)
                if fault == "truncated":
                    content = content[: len(content) // 2]
                writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n{extra}"
                             f"Content-Length: {declared}\r\n\r\n".encode() + content)
                await writer.drain()
                if fault == "truncated":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


# -- a small file system -------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(path: Path, size_mb: float):
    """A tmpfs of `size_mb` at `path` (root only: PermissionError elsewhere, for the caller to skip)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise PermissionError("mounting a size-limited tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size_mb * 1024)}k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise PermissionError(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path, leave_bytes: int) -> Path:
    """Fill the file system at `path` with a file until `leave_bytes` are free; the filler's path."""
    filler = path / "filler"
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def spool_files(path: Path) -> int:
    """Bytes of a spool's files on disk: database, WAL, index and reserve."""
    from gateway.spool import file_bytes

    return file_bytes(path)


# -- configuration ---------------------------------------------------------------------------------


def gateway_toml(spool: Path, port_path: str, kardia_url: str, patient: str, *, recording_seconds: float = 5,
                 spool_extra: str = "", uplink_extra: str = "timeout = 3", status: str = "enabled = false") -> str:
    """One KardiaMobile on a pty to one Kardia uplink."""
    return f"""
[gateway]
drain_on_stop = 30

[spool]
path = "{spool}"
{spool_extra}

[status]
{status}

[uplinks.kardia]
type = "kardia"
base_url = "{kardia_url}"
api_key = "{API_KEY}"
{uplink_extra}

[[devices]]
name = "kardia-1"
driver = "kardiamobile"
transport = "serial://{port_path}"
uplinks = ["kardia"]
patient_id = "{patient}"
recording_seconds = {recording_seconds}
"""


def create_patient(kardia_url: str) -> str:
    r = httpx.post(kardia_url + "/v1/patients", auth=(API_KEY, ""),
                   data={"mrn": "CHAOS-1", "dob": "1960-05-05", "email": "chaos@example.com"}, timeout=30)
    r.raise_for_status()
    return r.json()["id"]


def stored_recordings(kardia_url: str, patient: str) -> list[np.ndarray]:
    """Every recording of the patient through the public API, oldest first, as sample arrays."""
    from gateway.demo import fetch_recordings

    return [np.array(r["data"]["raw"]["samples"]["leadI"])
            for r in asyncio.run(fetch_recordings(kardia_url, API_KEY, patient))]


def recorded_gaps(spool: Path) -> list[tuple[int, int]]:
    from gateway.spool import Spool

    s = Spool(spool, readonly=True)
    try:
        return [(g.start, g.missing) for g in s.gaps()]
    finally:
        s.close()


def unrecorded(missing_ranges: list[tuple[int, int]], gaps: list[tuple[int, int]], n: int) -> int:
    """Samples missing at the receiver that no recorded gap accounts for."""
    lost = np.zeros(n, bool)
    for a, k in missing_ranges:
        lost[a:a + k] = True
    for a, k in gaps:
        lost[a:a + k] = False
    return int(lost.sum())


# -- the kill storm --------------------------------------------------------------------------------


@dataclass
class StormResult:
    """What a kill storm did and what the receiver holds."""

    kills: int
    sent: int
    delivered: int
    duplicates: int
    unmatched: int
    missing: int
    unrecorded: int
    gaps: int
    seconds_lost_per_kill: float
    worst_kill_s: float
    recordings: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def kill_storm(tmp: Path, kills: int, interval: tuple[float, float] = (1.0, 10.0), speed: float = 4.0,
               seed: int = 1, recording_seconds: float = 5.0, journal_interval: float = 1.0) -> StormResult:
    """A KardiaMobile at `speed` x real time; the gateway SIGKILLed `kills` times, each restarted at once."""
    from simulators.cloud.app import Credentials, build_app
    from simulators.cloud.server import BackgroundServer
    from simulators.reconcile import reconcile
    from tests.chain import start_simulator

    rng = random.Random(seed)
    tmp.mkdir(parents=True, exist_ok=True)
    mean_gap = sum(interval) / 2
    # Signal seconds: the storm, with a second per restart, fits inside the session.
    duration = max(60.0, (kills + 2) * (mean_gap + 1.0) * speed)
    with BackgroundServer(build_app(tmp / "cloud", Credentials([API_KEY]))) as server:
        url = server.url + "/kardia"
        patient = create_patient(url)
        sim = start_simulator(duration=duration, speed=speed, seed=seed, link=tmp / "kardia.pty", start=False)
        cfg = tmp / "gateway.toml"
        cfg.write_text(gateway_toml(tmp / "spool.db", str(tmp / "kardia.pty"), url, patient,
                                    recording_seconds=recording_seconds,
                                    spool_extra=f"journal_interval = {journal_interval}"))
        gw = Gateway(cfg, tmp)
        gw.start()
        sim.thread.start()
        done = 0
        try:
            while done < kills and sim.thread.is_alive():
                time.sleep(rng.uniform(*interval))
                if not sim.thread.is_alive():
                    break
                gw.kill()
                done += 1
                gw.start()
            end_session(sim, gw, duration / speed + 300, 180)
        finally:
            gw.close()
            sim.stop.set()
            sim.port.close()
        got = stored_recordings(url, patient)
    sent = sim.sent
    check = reconcile(sent, got)
    gaps = recorded_gaps(tmp / "spool.db")
    worst = max((k for _, k in check.missing_ranges), default=0) / 300
    return StormResult(done, len(sent), check.delivered, check.duplicates, check.unmatched, check.missing,
                       unrecorded(check.missing_ranges, gaps, len(sent)), len(gaps),
                       check.missing / 300 / max(done, 1), worst, len(got))


# -- the other scenarios ---------------------------------------------------------------------------


@dataclass
class DeliveryResult:
    """What the receiver holds after a scenario, against what the device sent."""

    sent: int
    delivered: int
    duplicates: int
    unmatched: int
    missing: int
    exact: bool
    recordings: int
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _delivery(sent: np.ndarray, got: list[np.ndarray], **extra) -> DeliveryResult:
    from simulators.reconcile import reconcile

    check = reconcile(sent, got)
    return DeliveryResult(len(sent), check.delivered, check.duplicates, check.unmatched, check.missing,
                          check.exact, len(got), extra)


def flapping_uplink(tmp: Path, signal_s: float, speed: float, seed: int, rate: float = 0.45,
                    min_attempts: int = 40) -> DeliveryResult:
    """Uploads through a FaultProxy while a KardiaMobile streams; the network heals once the session has
    ended and `min_attempts` went through it, then everything pending must arrive exactly once."""
    from tests.chain import start_simulator

    tmp.mkdir(parents=True, exist_ok=True)
    cloud = CloudProcess(tmp / "cloud", logdir=tmp)
    cloud.start()
    sim = start_simulator(duration=signal_s, speed=speed, seed=seed, link=tmp / "kardia.pty", start=False)
    try:
        patient = create_patient(cloud.url + "/kardia")
        with FaultProxy(cloud.url, rate=rate, seed=seed, hang_s=6.0) as proxy:
            cfg = tmp / "gateway.toml"
            cfg.write_text(gateway_toml(tmp / "spool.db", str(tmp / "kardia.pty"), proxy.url + "/kardia",
                                        patient, uplink_extra="timeout = 2"))
            gw = Gateway(cfg, tmp)
            gw.start()
            sim.thread.start()
            try:
                sim.join(signal_s / speed + 300)
                assert sim.port.drain(120), "the gateway did not read the last bytes"
                wait_until(lambda: sum(proxy.counts.values()) >= min_attempts, 300,
                           f"{min_attempts} upload attempts through the proxy")
                proxy.healed = True
                assert gw.stop(300) == 0, gw.logs()[-3000:]
            finally:
                gw.close()
            counts = {f: proxy.counts[f] for f in proxy.faults}
            attempts = sum(proxy.counts.values())
        got = stored_recordings(cloud.url + "/kardia", patient)
    finally:
        sim.stop.set()
        sim.port.close()
        cloud.close()
    return _delivery(sim.sent, got, attempts=attempts, faults=counts, dead_letters=gw.logs().count("dead letter"))


def receiver_killed(tmp: Path, kills: int, signal_s: float, speed: float, seed: int) -> DeliveryResult:
    """The emulator SIGKILLed `kills` times while uploads are under way (2 s recordings), and restarted
    on its data each time; the receiver must end with everything exactly once."""
    from tests.chain import start_simulator

    tmp.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    cloud = CloudProcess(tmp / "cloud", logdir=tmp)
    cloud.start()
    sim = start_simulator(duration=signal_s, speed=speed, seed=seed, link=tmp / "kardia.pty", start=False)
    try:
        patient = create_patient(cloud.url + "/kardia")
        cfg = tmp / "gateway.toml"
        cfg.write_text(gateway_toml(tmp / "spool.db", str(tmp / "kardia.pty"), cloud.url + "/kardia", patient,
                                    recording_seconds=2, uplink_extra="timeout = 3"))
        gw = Gateway(cfg, tmp)
        gw.start()
        sim.thread.start()
        try:
            for _ in range(kills):
                time.sleep(rng.uniform(1.0, 2.5))  # the kill's moment: the scenario itself, not a wait
                cloud.kill()
                time.sleep(rng.uniform(0.2, 1.5))
                cloud.start()
            end_session(sim, gw, signal_s / speed + 300, 300)
        finally:
            gw.close()
        got = stored_recordings(cloud.url + "/kardia", patient)
    finally:
        sim.stop.set()
        sim.port.close()
        cloud.close()
    return _delivery(sim.sent, got, kills=kills, receiver_tracebacks=cloud.logs().count("Traceback"))


@dataclass
class CapResult:
    """How large a capped spool's files got on a small disk with nothing draining them."""

    cap_bytes: int
    largest_bytes: int
    evictions: int
    stayed_up: bool
    tracebacks: int

    def as_dict(self) -> dict:
        return {**self.__dict__, "over_cap_bytes": self.largest_bytes - self.cap_bytes}


def capped_spool(tmp: Path, fs: Path, cap_mb: float, seconds: float, seed: int) -> CapResult:
    """`max_mb = cap_mb` on the file system at `fs`, a KardiaMobile at 30x, the uplink down, for `seconds`."""
    from tests.chain import start_simulator

    tmp.mkdir(parents=True, exist_ok=True)
    sim = start_simulator(duration=3600, speed=30, seed=seed, link=tmp / "kardia.pty", start=False)
    spool = fs / "spool.db"
    cfg = tmp / "gateway.toml"
    cfg.write_text(gateway_toml(spool, str(tmp / "kardia.pty"), "http://127.0.0.1:9/kardia", "p",
                                spool_extra=f"max_mb = {cap_mb}"))
    gw = Gateway(cfg, tmp)
    gw.start()
    sim.thread.start()
    largest, alive = 0, True
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end and alive:
            largest = max(largest, spool_files(spool))
            alive = gw.alive()
            time.sleep(0.05)  # a sampling period, not a wait for a condition
        sim.stop.set()
        if alive:
            assert gw.stop(120) == 0, gw.logs()[-3000:]
    finally:
        gw.close()
        sim.stop.set()
        sim.port.close()
    largest = max(largest, spool_files(spool))
    logs = gw.logs()
    return CapResult(int(cap_mb * 1_000_000), largest, logs.count("evicted waveform package"), alive,
                     logs.count("Traceback"))
