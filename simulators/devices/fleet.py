"""A fleet of simulated KardiaMobiles on pseudo-terminals, in real time, from one thread.

For load tests of a gateway or a vendor backend: N devices, each with its own serial number,
boot id and signal, each on its own pty, streaming the KardiaMobile serial protocol
(firmware_specs/kardiamobile.md) at its real cadence (a 25-sample frame every 83 ms, device
info every 300 samples), the devices' phases spread over the frame period as real devices are.

Cheap per device, so one process carries a thousand:
- The signal is a bank of a few ECG records (`signal_bank`: the ECG synthesiser, seeded),
  rendered once; device i plays record i % len(bank) from its own offset. Every device's
  samples are distinct and reproducible: `FleetSignal.expected(i, first, n)` gives what device
  i sent at counters first..first+n-1, so a receiver is checked sample for sample.
- Frames of every device due at a tick are built in one numpy operation (the same layout as
  gateway.protocols.kardiamobile, which the golden vectors pin down); the per-device Python
  work is a CRC (binascii, in C) and one write.
- Like the single-device simulator it never drops a byte: a device whose reader is behind (the
  pty full) keeps its frames, in order, and writes them when the pty takes them; it never waits
  on one device while the others are due.
- By default a device starts when its reader opens the port (the master in packet mode sees the
  reader's flush), as a USB CDC device starts when the host opens it.
"""

from __future__ import annotations

import binascii
import errno
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gateway.protocols import kardiamobile as proto
from simulators.devices.serial_front import TIOCPKT_FLUSHREAD, TIOCPKT_FLUSHWRITE, PtyPort, pty_unread
from simulators.physiology.ecg import EcgParams, EcgSynth

FS = proto.SAMPLING_FREQUENCY
SAMPLES_PER_FRAME = proto.DEFAULT_SAMPLES_PER_FRAME
FRAME_S = SAMPLES_PER_FRAME / FS
AMPLITUDE_RESOLUTION = 500  # nV per unit: 2000 units per mV
MAINS = 50
RATES = (62, 70, 78, 88, 55, 95, 66, 74)  # bpm of the bank's records
FRAME_DTYPE = np.dtype([("sync", "<u2"), ("version", "u1"), ("type", "u1"), ("seq", "<u2"), ("length", "<u2"),
                        ("counter", "<u4"), ("n", "u1"), ("flags", "u1"), ("samples", "<i2", (SAMPLES_PER_FRAME,)),
                        ("crc", "<u2")])
SYNC_WORD = int.from_bytes(proto.SYNC, "little")
TICK_S = 0.01  # frames due within a tick go out together: at most 10 ms late, one wake-up per tick


@dataclass
class FleetSignal:
    """The bank of records the fleet plays, and what each device sends at each counter."""

    bank: np.ndarray  # int16 ADC units, (records, samples)
    offsets: np.ndarray  # per device

    def expected(self, device: int, first: int, n: int) -> np.ndarray:
        """The samples device `device` sends at counters first..first+n-1."""
        rec = self.bank[device % len(self.bank)]
        return rec[(self.offsets[device] + first + np.arange(n)) % rec.shape[0]]


def signal_bank(devices: int, seed: int = 1, records: int = 8, seconds: float = 120.0) -> FleetSignal:
    """The fleet's signal: `records` seeded synthetic ECGs (noise, wander, hum) and an offset per device."""
    n = int(seconds * FS)
    bank = np.empty((records, n), dtype=np.int16)
    for r in range(records):
        synth = EcgSynth(FS, EcgParams(heart_rate=RATES[r % len(RATES)], noise_mv=0.02, wander_mv=0.1,
                                       hum_mv=0.02, mains_frequency=MAINS, seed=seed * 1000 + r))
        bank[r] = np.clip(np.rint(synth.next(n) * (1e6 / AMPLITUDE_RESOLUTION)), -32767, 32767)
    offsets = (np.arange(devices, dtype=np.int64) * 7919) % n
    return FleetSignal(bank, offsets)


def serial_number(i: int, prefix: str = "KM1-F") -> str:
    """Device i's serial number."""
    return f"{prefix}{i:07d}"[:16]


def boot_id(i: int, seed: int) -> int:
    """Device i's boot id: distinct per device and per seed, never 0."""
    return ((seed * 2654435761 + i * 40503 + 1) & 0xFFFFFFFF) or 1


@dataclass
class FleetStats:
    """What the fleet sent."""

    devices: int = 0
    streaming: int = 0
    frames: int = 0
    samples: int = 0
    bytes: int = 0
    deferred_writes: int = 0  # writes a full pty could not take at once (kept, sent later)
    unread_at_close: int = 0  # bytes no reader took before the ptys closed
    wall_seconds: float = 0.0
    per_device_samples: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        """For JSON output (without the per-device list)."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()
                if k != "per_device_samples"}


class Fleet:
    """N KardiaMobile-class devices on N ptys, driven by one thread."""

    def __init__(self, devices: int, *, seed: int = 1, speed: float = 1.0, link_dir: str | Path | None = None,
                 prefix: str = "KM1-F", wait_for_reader: bool = True) -> None:
        if devices < 1:
            raise ValueError("a fleet has at least one device")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.n = devices
        self.seed = seed
        self.speed = speed
        self.prefix = prefix
        self.wait_for_reader = wait_for_reader
        self.signal = signal_bank(devices, seed)
        link_dir = Path(link_dir) if link_dir else None
        if link_dir:
            link_dir.mkdir(parents=True, exist_ok=True)
        self.ports: list[PtyPort] = []
        try:
            for i in range(devices):
                self.ports.append(PtyPort(link=link_dir / f"kardia-{i:04d}" if link_dir else None))
        except OSError as exc:
            self.close()
            raise OSError(exc.errno, f"could not open pty {len(self.ports) + 1} of {devices}: {exc.strerror}"
                                     " (raise the descriptor limit: each device takes two)") from exc
        self.serials = [serial_number(i, prefix) for i in range(devices)]
        self.boot_ids = [boot_id(i, seed) for i in range(devices)]
        self.counter = np.zeros(devices, dtype=np.int64)  # next sample counter
        self.seq = np.zeros(devices, dtype=np.int64)
        self.since_info = np.zeros(devices, dtype=np.int64)
        self.next_t = np.full(devices, np.inf)  # monotonic time the next frame is due (inf: not started)
        self.started_at = np.full(devices, np.nan)  # wall time each device's first sample was taken
        self._backlog: dict[int, bytearray] = {}
        self.stats = FleetStats(devices=devices, per_device_samples=[0] * devices)

    @property
    def paths(self) -> list[str]:
        """The port each device streams on (its link, if one was made)."""
        return [p.path for p in self.ports]

    # -- running --------------------------------------------------------------------------

    def run(self, duration: float | None = None, stop: threading.Event | None = None,
            progress: Callable[[FleetStats], None] | None = None, progress_every: float = 5.0) -> FleetStats:
        """Stream until every device has sent `duration` s of signal (or stop); then let readers drain."""
        stop = stop or threading.Event()
        t0 = time.monotonic()
        phase = (np.arange(self.n) / self.n) * FRAME_S / self.speed
        waiting = set(range(self.n))
        if not self.wait_for_reader:
            self._start(np.arange(self.n), t0, phase)
            waiting.clear()
        poller = select.poll()
        by_fd: dict[int, int] = {}
        for i in waiting:
            poller.register(self.ports[i].master, select.POLLIN)
            by_fd[self.ports[i].master] = i
        limit = None if duration is None else int(round(duration * FS))
        next_progress = t0 + progress_every
        while not stop.is_set():
            now = time.monotonic()
            if waiting:
                started = self._opened(poller, by_fd, waiting)
                if len(started):
                    self._start(started, now, phase[started] % (FRAME_S / self.speed))
            self._flush_backlog()
            due = np.flatnonzero(self.next_t <= now)
            if limit is not None:
                due = due[self.counter[due] < limit]
            while len(due):
                self._send(due)
                due = due[self.next_t[due] <= now]
                if limit is not None:
                    due = due[self.counter[due] < limit]
            if limit is not None and not waiting and (self.counter >= limit).all():  # drain() sends the backlog
                break
            if progress and now >= next_progress:
                self.stats.wall_seconds = now - t0
                progress(self.stats)
                next_progress = now + progress_every
            # The next tick: a fixed step, not the next frame (with phases spread, one is always just due).
            stop.wait(max(0.0, now + TICK_S - time.monotonic()))
        self.stats.wall_seconds = time.monotonic() - t0
        return self.stats

    def _opened(self, poller: select.poll, by_fd: dict[int, int], waiting: set[int]) -> np.ndarray:
        """Devices whose reader opened the port since the last look."""
        started = []
        for fd, _ in poller.poll(0):
            try:
                status = os.read(fd, 4096)
            except (BlockingIOError, OSError):
                continue
            if status and status[0] & (TIOCPKT_FLUSHREAD | TIOCPKT_FLUSHWRITE):
                i = by_fd[fd]
                poller.unregister(fd)
                waiting.discard(i)
                started.append(i)
        return np.asarray(started, dtype=np.int64)

    def _start(self, devices: np.ndarray, now: float, phase: np.ndarray) -> None:
        wall = time.time()
        for i in devices:  # device info first, as after power-up
            self._write(int(i), self._info(int(i)))
        self.next_t[devices] = now + phase + FRAME_S / self.speed
        self.started_at[devices] = wall + phase
        self.stats.streaming += len(devices)

    def _info(self, i: int) -> bytes:
        data = proto.encode_info(int(self.seq[i]), self.serials[i], (1, 2, 0), MAINS, AMPLITUDE_RESOLUTION,
                                 self.boot_ids[i], int(self.counter[i]))
        self.seq[i] = (self.seq[i] + 1) % proto.SEQ_MODULO
        return data

    def _send(self, due: np.ndarray) -> None:
        """One samples frame for each due device (and device info where 300 samples have passed)."""
        k = len(due)
        frames = np.zeros(k, dtype=FRAME_DTYPE)
        frames["sync"] = SYNC_WORD
        frames["version"] = proto.VERSION
        frames["type"] = proto.TYPE_SAMPLES
        frames["seq"] = self.seq[due] % proto.SEQ_MODULO
        frames["length"] = proto.SAMPLES_HEAD_LEN + 2 * SAMPLES_PER_FRAME
        counters = self.counter[due]
        frames["counter"] = counters % proto.COUNTER_MODULO
        frames["n"] = SAMPLES_PER_FRAME
        bank = self.signal.bank
        idx = (self.signal.offsets[due, None] + counters[:, None] + np.arange(SAMPLES_PER_FRAME)) % bank.shape[1]
        frames["samples"] = bank[due[:, None] % len(bank), idx]
        raw = frames.view(np.uint8).reshape(k, FRAME_DTYPE.itemsize)
        self.seq[due] = (self.seq[due] + 1) % proto.SEQ_MODULO
        self.counter[due] += SAMPLES_PER_FRAME
        self.since_info[due] += SAMPLES_PER_FRAME
        self.next_t[due] += FRAME_S / self.speed
        info_due = self.since_info[due] >= proto.INFO_EVERY_SAMPLES
        crc_hqx, size = binascii.crc_hqx, FRAME_DTYPE.itemsize
        for row, i in enumerate(due.tolist()):
            frame = raw[row]
            crc = crc_hqx(frame[2:size - 2], 0xFFFF)
            frame[size - 2] = crc & 0xFF
            frame[size - 1] = crc >> 8
            data = frame.tobytes()
            if info_due[row]:
                self.since_info[i] = 0
                data += self._info(i)
            self._write(i, data)
            self.stats.per_device_samples[i] += SAMPLES_PER_FRAME
        self.stats.frames += k + int(info_due.sum())
        self.stats.samples += k * SAMPLES_PER_FRAME

    def _write(self, i: int, data: bytes) -> None:
        backlog = self._backlog.get(i)
        if backlog is not None:  # order is kept: behind what is already waiting
            backlog += data
            self.stats.bytes += len(data)
            return
        try:
            n = os.write(self.ports[i].master, data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EAGAIN):
                raise
            n = 0
        self.stats.bytes += len(data)
        if n < len(data):
            self.stats.deferred_writes += 1
            self._backlog[i] = bytearray(data[n:])

    def _flush_backlog(self) -> None:
        for i in list(self._backlog):
            buf = self._backlog[i]
            try:
                n = os.write(self.ports[i].master, buf)
            except (BlockingIOError, OSError):
                continue
            del buf[:n]
            if not buf:
                del self._backlog[i]

    def drain(self, timeout: float = 30.0) -> int:
        """Wait until readers have taken every byte written; the bytes left unread."""
        deadline = time.monotonic() + timeout
        while True:
            self._flush_backlog()
            left = sum(len(b) for b in self._backlog.values()) + sum(pty_unread(p._slave) for p in self.ports)
            if not left or time.monotonic() > deadline:
                self.stats.unread_at_close = left
                return left
            time.sleep(0.05)

    def close(self) -> None:
        """Close every pty: the readers see their ports vanish."""
        for p in self.ports:
            p.close()


def gateway_config(fleet: Fleet, *, kardia_url: str, api_key: str, patients: list[str], spool: str,
                   status_listen: str = "127.0.0.1:8765", recording_seconds: float = 30.0) -> str:
    """A gateway TOML reading every device of the fleet and sending its recordings to a Kardia API."""
    lines = ["# Written by wearable-sim fleet: one [[devices]] entry per simulated KardiaMobile.",
             "[spool]", f'path = "{spool}"', "", "[status]", f'listen = "{status_listen}"', "",
             "[uplinks.kardia]", 'type = "kardia"', f'base_url = "{kardia_url}"', f'api_key = "{api_key}"', ""]
    for i, path in enumerate(fleet.paths):
        lines += ["[[devices]]", f'name = "kardia-{i:04d}"', 'driver = "kardiamobile"', f'transport = "serial://{path}"',
                  'uplinks = ["kardia"]', f'patient_id = "{patients[i % len(patients)]}"',
                  f"recording_seconds = {recording_seconds:g}", ""]
    return "\n".join(lines)
