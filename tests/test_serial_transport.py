"""The serial transport on real pseudo-terminals: reading, the port vanishing and coming back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.transports import AddressError, LINK_DOWN, LINK_UP, open_transport, parse_address
from gateway.transports.serial import SerialTransport
from simulators.devices.serial_front import PtyPort


async def next_item(it, timeout: float = 5.0):
    return await asyncio.wait_for(it.__anext__(), timeout)


async def read_exactly(it, n: int) -> bytes:
    data = b""
    while len(data) < n:
        item = await next_item(it)
        assert isinstance(item, bytes), f"expected bytes, got {item}"
        data += item
    return data


async def test_reads_survive_the_port_vanishing_and_coming_back(tmp_path):
    link = tmp_path / "kardia-port"
    port = PtyPort(link=link)
    transport = SerialTransport(str(link), backoff_initial=0.02, backoff_max=0.1)
    stream = transport.stream()
    ticks = 0

    async def ticker():  # proves the event loop is never blocked by the transport
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    stop = threading.Event()
    try:
        assert await next_item(stream) is LINK_UP
        assert transport.connected
        port.write(b"first chunk", stop)
        assert await read_exactly(stream, 11) == b"first chunk"
        port.close()  # the device goes away: the link drops and the path disappears
        assert await next_item(stream) is LINK_DOWN
        assert not transport.connected and not link.exists()
        pending = asyncio.ensure_future(next_item(stream))  # the daemon always waits for the next item
        await asyncio.sleep(0.3)  # several failed reopen attempts while it is gone
        assert transport.counters["open_failures"] >= 2 and not pending.done()
        port = PtyPort(link=link)  # back, as a new pty behind the same stable path
        assert await pending is LINK_UP
        port.write(b"second", stop)
        assert await read_exactly(stream, 6) == b"second"
        assert (transport.counters["opens"], transport.counters["link_losses"]) == (2, 1)
        assert transport.counters["bytes"] == 17
        assert ticks > 20
    finally:
        tick_task.cancel()
        await transport.close()
        await stream.aclose()
        port.close()


async def test_close_ends_the_stream(tmp_path):
    port = PtyPort()
    transport = open_transport(f"serial://{port.path}?baudrate=9600")
    assert transport.baudrate == 9600 and transport.address == f"serial://{port.path}"
    stream = transport.stream()
    assert await next_item(stream) is LINK_UP
    await transport.close()
    rest = [item async for item in stream]
    assert rest == [LINK_DOWN]
    port.close()


def test_address_parsing():
    assert parse_address("serial:///dev/ttyUSB0") == ("serial", "/dev/ttyUSB0", {})
    assert parse_address("serial:///dev/serial/by-id/usb-X?baudrate=57600")[2] == {"baudrate": "57600"}
    for bad, message in [("ble://AA:BB", "unknown transport scheme 'ble'"), ("serial://", "names no port"),
                         ("serial:///dev/x?baudrate=fast", "baudrate must be a positive integer"),
                         ("/dev/ttyUSB0", "unknown transport scheme '(none)'")]:
        with pytest.raises(AddressError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_address(bad)
