"""The serial front of a device simulator: a pseudo-terminal it owns, or a real port.

Pacing follows the signal: a frame is written when wall time reaches the time its last sample
was taken (divided by the speed-up), so the byte stream looks like the device's. With
`speed=None` it writes as fast as the reader takes the bytes.

The simulator never drops bytes: when the reader stalls, the write waits, as USB CDC's flow
control makes a real device wait, and the stream catches up afterwards. The pty keeps its own
slave handle open, so a gateway that closes and reopens the port finds it still there.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import struct
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from simulators.devices.faults import FaultInjector
from simulators.devices.kardiamobile import SimFrame

TIOCPKT_FLUSHREAD = getattr(termios, "TIOCPKT_FLUSHREAD", 1)
TIOCPKT_FLUSHWRITE = getattr(termios, "TIOCPKT_FLUSHWRITE", 2)


class Port:
    """Where the simulator writes bytes."""

    path: str

    def write(self, data: bytes, stop: threading.Event) -> bool:
        """Write all of data, waiting while the reader is behind; False if stopped first."""
        view = memoryview(data)
        while view:
            if stop.is_set():
                return False
            view = view[self._write_some(view):]
        return True

    def _write_some(self, view: memoryview) -> int:
        """Write what fits now (waiting briefly if nothing does); return how many bytes."""
        raise NotImplementedError

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the reader has taken every byte written; False on timeout."""
        return True

    def close(self) -> None:
        """Release the port."""


def wait_fd(fd: int, events: int, timeout: float) -> bool:
    """poll() one descriptor (any number, unlike select()); True if an event came within timeout s."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(timeout * 1000))


def pty_unread(slave: int) -> int:
    """Bytes waiting on a pty's slave side, counting those still in the tty's flip buffer."""
    poller = select.poll()  # not select(): descriptors above 1024 are common with many ports
    poller.register(slave, select.POLLIN)
    poller.poll(0)  # n_tty_poll pushes the flip buffer into the line discipline
    pending = array.array("i", [0])
    fcntl.ioctl(slave, termios.FIONREAD, pending)
    return pending[0]


class PtyPort(Port):
    """A pseudo-terminal: the simulator writes the master; the gateway opens `path` (the slave).

    Packet mode is on, so the master learns when a reader flushes a queue at open: the gateway's
    transport flushes its (empty) output queue, pyserial flushes its input. `wait_for_reader` lets
    the device start then, as a USB CDC device starts when the host opens it, instead of writing
    bytes that a pyserial reader's open would discard.
    """

    def __init__(self, link: str | Path | None = None) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # before anything is written, or early bytes are echoed back
        os.set_blocking(self.master, False)
        fcntl.ioctl(self.master, termios.TIOCPKT, struct.pack("i", 1))
        self.tty_path = os.ttyname(self._slave)
        self.link = Path(link) if link else None
        if self.link:
            tmp = self.link.with_name(self.link.name + ".tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.tty_path)
            tmp.replace(self.link)  # atomic: a reader never sees a missing or half-made link
        self.path = str(self.link or self.tty_path)

    def wait_for_reader(self, stop: threading.Event | None = None, timeout: float | None = None) -> bool:
        """Block until a reader opened the port and flushed a queue; False if stopped or timed out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (stop and stop.is_set()):
            if deadline is not None and time.monotonic() > deadline:
                return False
            if not wait_fd(self.master, select.POLLIN, 0.1):
                continue
            try:
                status = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                continue
            if status and status[0] & (TIOCPKT_FLUSHREAD | TIOCPKT_FLUSHWRITE):
                return True
        return False

    def _write_some(self, view: memoryview) -> int:
        try:
            return os.write(self.master, view)
        except BlockingIOError:  # the pty buffer is full: the reader is behind
            wait_fd(self.master, select.POLLOUT, 0.1)
            return 0

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the reader has taken every byte (closing the pty would discard them); False on timeout.

        FIONREAD counts only what the line discipline holds: bytes just written may still sit in
        the tty's flip buffer, uncounted (seen here 19 times in 20). A poll() of the slave first
        makes the kernel push them (n_tty_poll flushes the buffer work), so a zero is exact.
        """
        deadline = time.monotonic() + timeout
        while self.unread():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def unread(self) -> int:
        """Bytes written that no reader has taken yet (exact, as in drain())."""
        return pty_unread(self._slave)

    def close(self) -> None:
        """Close both ends: the gateway sees the port vanish."""
        if self.link and self.link.is_symlink() and os.readlink(self.link) == self.tty_path:
            self.link.unlink()
        for fd in (self.master, self._slave):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        self.master = self._slave = -1  # a second close() must not close a descriptor reused meanwhile


class SerialPort(Port):
    """A real serial port (a USB-serial cable to the gateway's Pi, for a bench rig)."""

    def __init__(self, path: str, baudrate: int = 115200) -> None:
        import serial

        self.path = path
        self._port = serial.Serial(path, baudrate, write_timeout=0.2)

    def _write_some(self, view: memoryview) -> int:
        import serial

        try:
            return self._port.write(view)
        except serial.SerialTimeoutException:  # flow control holds us back; try again
            return 0

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the UART has sent everything."""
        self._port.flush()
        return True

    def close(self) -> None:
        """Close the port."""
        self._port.close()


@dataclass
class RunStats:
    """What a simulator run sent."""

    frames: int = 0
    info_frames: int = 0
    sample_frames: int = 0
    samples: int = 0
    bytes: int = 0
    signal_seconds: float = 0.0
    wall_seconds: float = 0.0
    started_at: float = 0.0  # wall time (Unix s) the first frame's signal began
    faults: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """For JSON output."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def run_frames(frames: Iterable[SimFrame], port: Port, *, duration: float | None = None, speed: float | None = 1.0,
               faults: FaultInjector | None = None, stop: threading.Event | None = None,
               on_frame: Callable[[SimFrame, bytes], None] | None = None,
               progress: Callable[[RunStats], None] | None = None, progress_every: float = 1.0) -> RunStats:
    """Write frames to the port, paced by signal time, until `duration` s of signal or stop."""
    stop = stop or threading.Event()
    stats = RunStats(started_at=time.time())
    start = time.monotonic()
    next_progress = start + progress_every
    for frame in frames:
        if stop.is_set() or (duration is not None and frame.kind == "samples" and frame.t_end > duration + 1e-9):
            break
        if speed:
            delay = start + frame.t_end / speed - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
        data = faults.apply(frame) if faults else frame.data
        if data and not port.write(data, stop):
            break
        stats.frames += 1  # written, so counted even if stop came meanwhile: the stats are what went out
        stats.bytes += len(data)
        if frame.kind == "info":
            stats.info_frames += 1
        else:
            stats.sample_frames += 1
            stats.samples += len(frame.samples)
            stats.signal_seconds = frame.t_end
        if on_frame:
            on_frame(frame, data)
        now = time.monotonic()
        if progress and now >= next_progress:
            stats.wall_seconds = now - start
            progress(stats)
            next_progress = now + progress_every
    stats.wall_seconds = time.monotonic() - start
    if faults:
        stats.faults = faults.log.summary()
    return stats
