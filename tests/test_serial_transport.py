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
    assert parse_address("ble://00:11:22:33:44:55?adapter=hci1") == ("ble", "00:11:22:33:44:55", {"adapter": "hci1"})
    assert parse_address("ble://any?service=180d&silent_s=2.5")[2] == {"service": "180d", "silent_s": "2.5"}
    ble = open_transport("ble://aa:bb:cc:dd:ee:ff?name=UP3&silent_s=4", ["00002a37-0000-1000-8000-00805f9b34fb"])
    assert (ble.address, ble.silent_s) == ("ble://AA:BB:CC:DD:EE:FF?name=UP3", 4.0)
    for bad, message in [("ble://AA:BB", "a BLE device is an address"), ("ble://any", "needs name= or service="),
                         ("ble://any?name=x&colour=red", "unknown BLE option"),
                         ("ble://any?name=x&silent_s=-1", "silent_s must be a positive number"),
                         ("usb://x", "unknown transport scheme 'usb'"), ("serial://", "names no port"),
                         ("serial:///dev/x?baudrate=fast", "baudrate must be a positive integer"),
                         ("/dev/ttyUSB0", "unknown transport scheme '(none)'")]:
        with pytest.raises(AddressError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_address(bad)


async def test_bytes_read_before_the_port_vanishes_are_all_delivered(tmp_path):
    """The device writes its last bytes and goes: every byte the gateway took must come out."""
    import array
    import fcntl
    import termios

    port = PtyPort()
    transport = SerialTransport(port.path, backoff_initial=0.02, backoff_max=0.1)
    stream = transport.stream()
    payload = bytes(range(256)) * 64  # 16 KiB
    try:
        assert await next_item(stream) is LINK_UP
        await asyncio.to_thread(port.write, payload, threading.Event())  # the pty holds less than this
        pending = array.array("i", [0])
        for _ in range(500):  # wait until the gateway's side has taken every byte from the kernel
            fcntl.ioctl(port._slave, termios.FIONREAD, pending)
            if pending[0] == 0:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        port.close()  # the simulator's end of run: drained, then gone
        await asyncio.sleep(0.1)  # the loss is seen before the consumer asks for the bytes
        got = b""
        while True:
            item = await next_item(stream)
            if item is LINK_DOWN:
                break
            got += item
        assert got == payload
        assert transport.counters["bytes"] == len(payload) and transport.counters["link_losses"] == 1
    finally:
        await transport.close()
        await stream.aclose()


async def test_a_slow_consumer_pauses_the_port_and_loses_nothing():
    """Past the high-water mark the port is paused (the kernel and the device wait), then resumed."""
    from gateway.transports import serial as serial_transport

    port = PtyPort()
    transport = SerialTransport(port.path)
    stream = transport.stream()
    payload = bytes(range(251)) * (3 * 4096 + 7)  # ~3 MiB, not a multiple of any buffer
    try:
        assert await next_item(stream) is LINK_UP
        writer = asyncio.create_task(asyncio.to_thread(port.write, payload, threading.Event()))
        await asyncio.sleep(0.5)  # nobody consumes: the queue fills to the mark and the port pauses
        assert not writer.done()  # the device is held back, not its bytes dropped
        assert serial_transport.HIGH_WATER < transport.buffered < serial_transport.HIGH_WATER + 65536
        got = bytearray()
        while len(got) < len(payload):
            got += await next_item(stream)
        await writer
        assert bytes(got) == payload
    finally:
        await transport.close()
        await stream.aclose()
        port.close()
