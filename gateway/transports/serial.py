"""Serial transport: real ports (UART, USB CDC) and pseudo-terminals, one descriptor each.

The tty is opened non-blocking by the transport itself (raw line settings through termios)
and read when the event loop's epoll says it is readable (`loop.add_reader`): no `select()`
per read, so descriptors above 1024 work and a process can hold thousands of ports.

- Nothing is flushed at open: what the device sent while the gateway was down (held in the
  kernel's tty buffer, or the pty's) is read. The transport flushes only its own output queue,
  which is always empty (the gateway never writes); a pseudo-terminal's master in packet mode
  sees that as TIOCPKT_FLUSHWRITE, so a simulator can start streaming when the gateway opens
  the port, as a USB CDC device starts when the host opens it.
- Reads stop when the inbox holds its limit, and the rest waits in the kernel until the core
  has taken the inbox: bytes that have left the kernel stay within the journal's bound.
- Every byte read is put in the inbox before the loss of the port is (EOF, EIO, a vanished
  USB device), and the port is reopened with capped exponential backoff and jitter. A port
  that keeps failing logs one line when it starts failing and one when it works again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import termios
import time

from gateway.transports.base import LINK_DOWN, LINK_UP, Transport

log = logging.getLogger(__name__)

READ_MAX = 1 << 16
STABLE_S = 5.0  # a link up this long (or one that delivered data) resets the backoff


class PortError(OSError):
    """The port could not be opened or set up."""


def baud_constant(baudrate: int) -> int:
    """termios' speed constant for a baud rate; PortError for a rate the tty layer has no constant for."""
    value = getattr(termios, f"B{baudrate}", None)
    if value is None:
        raise PortError(errno.EINVAL, f"unsupported baud rate {baudrate}")
    return value


def open_tty(path: str, baudrate: int = 115200) -> int:
    """Open a tty non-blocking in raw mode (8N1, no flow control, no echo); its input is kept."""
    speed = baud_constant(baudrate)
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(fd)
        iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                   | termios.IGNCR | termios.ICRNL | termios.IXON | termios.IXOFF | termios.IXANY)
        oflag &= ~termios.OPOST
        lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
        cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB | termios.CRTSCTS)
        cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
        cc[termios.VMIN], cc[termios.VTIME] = 0, 0
        termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, speed, speed, cc])
        termios.tcflush(fd, termios.TCOFLUSH)  # our empty output queue only: the device's bytes stay
    except (termios.error, OSError) as exc:
        os.close(fd)
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else errno.EIO
        raise PortError(code, f"not a usable tty ({exc.args[-1] if exc.args else exc})") from exc
    return fd


class SerialTransport(Transport):
    """Reads one serial port, reopening it whenever it goes away."""

    def __init__(self, port: str, baudrate: int = 115200, backoff_initial: float = 0.1,
                 backoff_max: float = 5.0) -> None:
        super().__init__()
        baud_constant(baudrate)  # refuse an impossible rate now, not at every open
        self.port = port
        self.baudrate = baudrate
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.counters.update({"opens": 0, "open_failures": 0, "link_losses": 0, "bytes": 0, "reads": 0,
                              "paused": 0})
        self._closed = asyncio.Event()
        self._fd: int | None = None
        self._lost: asyncio.Future | None = None
        self._reading = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failing = False  # in an outage (set by its first failure, cleared by data)
        self._failures = 0

    @property
    def address(self) -> str:
        """serial://PATH."""
        return f"serial://{self.port}"

    async def run(self) -> None:
        """Open, read into the inbox until the port is lost, reopen; until close()."""
        self._loop = asyncio.get_running_loop()
        self.inbox.on_room = self._resume
        delay = self.backoff_initial
        while not self._closed.is_set():
            try:
                fd = open_tty(self.port, self.baudrate)
            except OSError as exc:
                self.counters["open_failures"] += 1
                self._outage(f"cannot open ({exc.strerror or exc})")
                await self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.backoff_max)
                continue
            self._fd = fd
            self.counters["opens"] += 1
            self.connected = True
            self.down_reason = None
            opened, before = time.monotonic(), self.counters["bytes"]
            if not self._failing:
                log.info("%s: open", self.address)
            self.inbox.put(LINK_UP)
            self._lost = self._loop.create_future()
            self._start_reading()
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                await asyncio.wait({self._lost, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
            reason = self._lost.result() if self._lost.done() else None
            if reason is None:  # closed: what the kernel already holds for us still goes up
                self._drain_now()
                self.down_reason = "closed"
            self._release()
            self.inbox.put(LINK_DOWN)
            if reason is None:
                break
            self.counters["link_losses"] += 1
            self._outage(f"link lost ({reason})")
            if time.monotonic() - opened >= STABLE_S or self.counters["bytes"] > before:
                delay = self.backoff_initial
            else:  # it opens but dies at once: back off as for a failed open
                await self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.backoff_max)

    def _outage(self, what: str) -> None:
        """One log line when an outage starts; the failed attempts after it are counted, not logged."""
        self._failures += 1
        self.down_reason = what
        if not self._failing:
            self._failing = True
            log.warning("%s: %s; reopening with backoff up to %.0f s", self.address, what, self.backoff_max)
        else:
            log.debug("%s: %s (attempt %d of this outage)", self.address, what, self._failures)

    # -- reading, on the event loop ---------------------------------------------------------

    def _start_reading(self) -> None:
        if not self._reading and self._fd is not None:
            self._loop.add_reader(self._fd, self._readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading and self._fd is not None:
            self._loop.remove_reader(self._fd)
        self._reading = False

    def _resume(self) -> None:
        """The core took the inbox: read again if the limit had stopped us."""
        if self._fd is not None and not self._reading and self._lost is not None and not self._lost.done():
            self._start_reading()
            self._readable()  # data may have waited in the kernel; epoll is level-triggered anyway

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        room = self.inbox.room()
        if room <= 0:  # the core has not taken the inbox yet: leave the rest in the kernel
            self.counters["paused"] += 1
            self._stop_reading()
            return
        try:
            data = os.read(fd, min(room, READ_MAX))
        except BlockingIOError:
            return
        except OSError as exc:
            self._lose(exc.strerror or str(exc))
            return
        if not data:
            self._lose("end of file")
            return
        self.counters["bytes"] += len(data)
        self.counters["reads"] += 1
        if self._failing:  # the outage is over: the one line that says so
            log.info("%s: reading again after %d failed attempt(s)", self.address, self._failures)
            self._failing, self._failures = False, 0
        self.inbox.put(data)

    def _drain_now(self) -> None:
        """At close: read what the kernel holds, within the inbox's room."""
        while self._fd is not None and self.inbox.room() > 0 and not (self._lost and self._lost.done()):
            before = self.counters["bytes"]
            self._readable()
            if self.counters["bytes"] == before:
                break

    def _lose(self, reason: str) -> None:
        self._stop_reading()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    def _release(self) -> None:
        self._stop_reading()
        self.connected = False
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    @property
    def buffered(self) -> int:
        """Bytes read from the port and not yet taken by the core."""
        return self.inbox.bytes

    async def close(self) -> None:
        """Stop reading; run() returns once what the kernel already held is in the inbox."""
        self._closed.set()
