"""Helpers for the end-to-end tests: a simulator thread on a pty, the emulator, read-back."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from gateway.demo import fetch_recordings
from simulators.devices.faults import FaultInjector
from simulators.devices.kardiamobile import KardiaMobileModel, SimFrame
from simulators.devices.serial_front import PtyPort, RunStats, run_frames
from simulators.physiology.ecg import EcgParams, EcgSynth

API_KEY = "chain-test-key"


class ManualClock:
    """A clock (Unix seconds) that only the test moves."""

    def __init__(self, t: float) -> None:
        self.t = float(t)

    def __call__(self) -> float:
        return self.t


@dataclass
class SimRun:
    """A simulator writing into a pty from a thread."""

    port: PtyPort  # or any Port with wait_for_reader (the BLE front)
    model: KardiaMobileModel
    frames: list[SimFrame] = field(default_factory=list)  # every sample frame generated, lost ones included
    stats: list[RunStats] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def sent(self) -> np.ndarray:
        """Every sample the device produced, in counter order (index = sample counter)."""
        return np.concatenate([f.samples for f in self.frames])

    def join(self, timeout: float = 120.0) -> RunStats:
        """Wait for the run to end."""
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the simulator did not finish"
        return self.stats[0]


def start_simulator(*, duration: float, speed: float | None, seed: int, faults: FaultInjector | None = None,
                    link: Path | None = None, mains: int = 50, start: bool = True, port=None) -> SimRun:
    """A KardiaMobile simulator on a new pty, or the given port (with noise, so every stretch of signal is unique)."""
    source = EcgSynth(300, EcgParams(noise_mv=0.02, wander_mv=0.1, hum_mv=0.02, mains_frequency=mains, seed=seed))
    run = SimRun(port or PtyPort(link=link), KardiaMobileModel(source, serial_number="KM1-TEST0001", mains_frequency=mains,
                                                        boot_id=0x5EED0000 + seed))

    def on_frame(frame: SimFrame, _data: bytes) -> None:
        if frame.kind == "samples":
            run.frames.append(frame)

    def target() -> None:
        if not run.port.wait_for_reader(run.stop, timeout=60):  # the device starts when the gateway opens it
            return
        run.stats.append(run_frames(run.model.frames(), run.port, duration=duration, speed=speed, faults=faults,
                                    stop=run.stop, on_frame=on_frame))

    run.thread = threading.Thread(target=target, name="simulator", daemon=True)
    if start:
        run.thread.start()
    return run


def create_patient(kardia_url: str) -> str:
    """A Kardia patient to receive the recordings."""
    r = httpx.post(kardia_url + "/v1/patients", auth=(API_KEY, ""),
                   data={"mrn": "CHAIN-1", "dob": "1960-05-05", "email": "chain@example.com"})
    r.raise_for_status()
    return r.json()["id"]


def recordings(kardia_url: str, patient: str) -> list[dict]:
    """Every recording of the patient through the public API, oldest first."""
    return asyncio.run(fetch_recordings(kardia_url, API_KEY, patient))


async def until(predicate, describe, timeout: float = 30.0) -> None:
    """Poll predicate() without blocking the event loop; fail with describe() if it is not true in time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {describe()}"
        await asyncio.sleep(0.02)


async def until_count(counters, name: str, n: int, timeout: float = 30.0) -> None:
    """Wait until counters[name] reaches n."""
    await until(lambda: counters[name] >= n, lambda: f"{name}: {counters[name]} of {n}", timeout)


async def read_all(transport, n_bytes: int, timeout: float = 30.0) -> None:
    """Wait until the gateway's transport has read n_bytes (everything the simulator wrote that arrives)
    and the ingest has taken them from its inbox (a tick decodes what it takes at once)."""
    await until_count(transport.counters, "bytes", n_bytes, timeout)
    await until(lambda: not transport.inbox.items, lambda: f"{transport.inbox.bytes} bytes still in the inbox",
                timeout)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll until predicate() is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


HUB_TOKEN = "chain-hub-token"


def config_toml(spool: Path, kardia_url: str, patient: str, port_path: str, recording_seconds: float,
                journal_interval: float = 1.0, hub_url: str | None = None, status_listen: str = "127.0.0.1:0",
                extra: str = "", transport: str | None = None) -> str:
    """A gateway configuration for one KardiaMobile on a pty, or the given transport (and the hub, if given)."""
    hub = f"""
[uplinks.hub]
type = "humanapi"
base_url = "{hub_url}"
token = "{HUB_TOKEN}"
""" if hub_url else ""
    uplinks = '["kardia", "hub"]' if hub_url else '["kardia"]'
    return hub + f"""
[gateway]
log_level = "INFO"
drain_on_stop = 15

[spool]
path = "{spool}"
journal_interval = {journal_interval}
{extra}
[status]
listen = "{status_listen}"

[uplinks.kardia]
type = "kardia"
base_url = "{kardia_url}"
api_key_env = "CHAIN_KARDIA_KEY"

[[devices]]
name = "kardia-1"
driver = "kardiamobile"
transport = "{transport or 'serial://' + port_path}"
uplinks = {uplinks}
patient_id = "{patient}"
recording_seconds = {recording_seconds}
"""
