"""Serial transport: real ports (UART, USB CDC) and pseudo-terminals, via pyserial-asyncio-fast.

Reading is driven by the event loop (the port's file descriptor is watched, never polled
with a blocking read). Every byte taken from the port is delivered before the loss of the
port is: asyncio's StreamReader raises a stored error ahead of its buffered bytes, which lost
the last chunk a device wrote before unplugging, so the transport keeps its own queue.
When the port vanishes (USB unplugged, simulator gone) the transport
reports LINK_DOWN and reopens the same path with capped exponential backoff and jitter
until it is back.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator

import serial
import serial_asyncio_fast

from gateway.transports.base import LINK_DOWN, LINK_UP, LinkEvent, Transport

log = logging.getLogger(__name__)

HIGH_WATER = 1 << 20  # bytes queued before the port is paused (the kernel buffer holds the rest)
LOW_WATER = 1 << 18


class _PortProtocol(asyncio.Protocol):
    """Queues what the port delivers, then how it ended; pauses the port while the queue is full."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.queued = 0
        self.transport: asyncio.Transport | None = None
        self._paused = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.queue.put_nowait(data)
        self.queued += len(data)
        if self.queued > HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.queue.put_nowait(exc)  # after every chunk already queued

    async def next(self) -> bytes | BaseException | None:
        """The next chunk, or how the connection ended (an error, or None for a clean close)."""
        item = await self.queue.get()
        if isinstance(item, bytes):
            self.queued -= len(item)
            if self._paused and self.queued < LOW_WATER:
                self._paused = False
                self.transport.resume_reading()
        return item


class SerialTransport(Transport):
    """Reads one serial port, reopening it whenever it goes away."""

    def __init__(self, port: str, baudrate: int = 115200, backoff_initial: float = 0.1,
                 backoff_max: float = 5.0) -> None:
        super().__init__()
        self.port = port
        self.baudrate = baudrate
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._closed = asyncio.Event()
        self._port: asyncio.Transport | None = None
        self._protocol: _PortProtocol | None = None

    @property
    def address(self) -> str:
        """serial://PATH."""
        return f"serial://{self.port}"

    async def stream(self) -> AsyncIterator[bytes | LinkEvent]:
        """Chunks of bytes and link events until close()."""
        delay = self.backoff_initial
        failing = 0  # failed opens since the last success: warn once per outage
        while not self._closed.is_set():
            try:
                self._port, self._protocol = await serial_asyncio_fast.create_serial_connection(
                    asyncio.get_running_loop(), _PortProtocol, self.port, baudrate=self.baudrate)
            except (serial.SerialException, OSError) as exc:
                self.counters["open_failures"] += 1
                failing += 1
                level = logging.WARNING if failing == 1 else logging.DEBUG
                log.log(level, "%s: cannot open (%s); retrying in up to %.1f s", self.address, exc, delay)
                await self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.backoff_max)
                continue
            delay, failing = self.backoff_initial, 0
            self.counters["opens"] += 1
            self.connected = True
            log.info("%s: open", self.address)
            yield LINK_UP
            try:
                while True:
                    data = await self._protocol.next()
                    if isinstance(data, Exception):  # whatever the port died of, the link is lost
                        raise serial.SerialException(str(data) or type(data).__name__) from data
                    if data is None:
                        if self._closed.is_set():  # close() closed the port under us
                            break
                        raise serial.SerialException("end of file")
                    self.counters["bytes"] += len(data)
                    yield data
            except (serial.SerialException, OSError) as exc:
                self.counters["link_losses"] += 1
                log.warning("%s: link lost (%s)", self.address, exc)
            finally:
                self._close_port()
            yield LINK_DOWN

    @property
    def buffered(self) -> int:
        """Bytes taken from the port and not yet handed on."""
        return self._protocol.queued if self._protocol else 0

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _close_port(self) -> None:
        self.connected = False
        if self._port is not None:
            self._port.close()
            self._port = None

    async def close(self) -> None:
        """Stop reading; the stream ends after its current chunk."""
        self._closed.set()
        self._close_port()
