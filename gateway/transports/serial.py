"""Serial transport: real ports (UART, USB CDC) and pseudo-terminals, via pyserial-asyncio-fast.

Reading is driven by the event loop (the port's file descriptor is watched, never polled
with a blocking read). When the port vanishes (USB unplugged, simulator gone) the transport
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

READ_SIZE = 65536


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
        self._writer: asyncio.StreamWriter | None = None

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
                reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.port, baudrate=self.baudrate)
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
                    data = await reader.read(READ_SIZE)
                    if not data:
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

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _close_port(self) -> None:
        self.connected = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def close(self) -> None:
        """Stop reading; the stream ends after its current chunk."""
        self._closed.set()
        self._close_port()
