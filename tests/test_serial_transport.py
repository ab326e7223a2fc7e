"""The serial transport on real pseudo-terminals: reading, the port vanishing and coming back."""

from __future__ import annotations

import asyncio
import logging
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
    port = PtyPort()
    transport = SerialTransport(port.path, backoff_initial=0.02, backoff_max=0.1)
    stream = transport.stream()
    payload = bytes(range(256)) * 64  # 16 KiB
    try:
        assert await next_item(stream) is LINK_UP
        await asyncio.to_thread(port.write, payload, threading.Event())  # the pty holds less than this
        assert await asyncio.to_thread(port.drain, 30.0)  # the gateway's side took every byte from the kernel
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


async def test_the_inbox_limit_holds_the_device_back_and_loses_nothing():
    """Reading stops while the core has not taken the inbox: the rest waits in the kernel, then comes."""
    port = PtyPort()
    transport = SerialTransport(port.path)
    transport.inbox.limit = 4096
    ready = asyncio.Event()
    transport.inbox.on_ready = ready.set
    task = asyncio.create_task(transport.run())
    payload = bytes(range(251)) * 1200  # ~300 KiB, far beyond what the pty and the inbox hold
    writer = asyncio.create_task(asyncio.to_thread(port.write, payload, threading.Event()))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        deadline = asyncio.get_running_loop().time() + 10
        while transport.inbox.bytes < 4096:  # nobody takes: the inbox fills to its limit and reading stops
            assert asyncio.get_running_loop().time() < deadline, transport.inbox.bytes
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert transport.inbox.bytes == 4096 and transport.counters["paused"] >= 1
        assert not writer.done()  # the device is held back, its bytes not dropped
        got = bytearray()
        while len(got) < len(payload):
            items = transport.inbox.take()
            got += b"".join(i for i, _ in items if isinstance(i, bytes))
            assert all(len(i) <= 4096 for i, _ in items if isinstance(i, bytes))
            await asyncio.sleep(0.001)
        await writer
        assert bytes(got) == payload
    finally:
        await transport.close()
        await asyncio.wait_for(task, 10)
        port.close()


async def test_bytes_the_device_sent_before_the_open_are_read_not_flushed():
    """The device streamed while the gateway was down: what the pty holds is the gateway's to read."""
    port = PtyPort()
    early = bytes(range(256)) * 40  # 10 KiB, written with no reader
    assert port.write(early, threading.Event())
    transport = SerialTransport(port.path)
    stream = transport.stream()
    try:
        assert await next_item(stream) is LINK_UP
        assert await read_exactly(stream, len(early)) == early
    finally:
        await transport.close()
        await stream.aclose()
        port.close()


async def test_the_simulator_starts_when_the_gateway_opens_its_port():
    port = PtyPort()
    transport = SerialTransport(port.path)
    waiter = asyncio.create_task(asyncio.to_thread(port.wait_for_reader, None, 10.0))
    await asyncio.sleep(0.2)
    assert not waiter.done()  # nobody has opened the port yet
    stream = transport.stream()
    try:
        assert await next_item(stream) is LINK_UP
        assert await asyncio.wait_for(waiter, 10) is True
    finally:
        await transport.close()
        await stream.aclose()
        port.close()


async def test_a_port_that_keeps_failing_logs_one_line_per_change_of_state(tmp_path, caplog):
    link = tmp_path / "flaky"
    transport = SerialTransport(str(link), backoff_initial=0.01, backoff_max=0.02)
    stream = transport.stream()
    caplog.set_level(logging.DEBUG, logger="gateway.transports.serial")
    port = None
    try:
        pending = asyncio.ensure_future(next_item(stream))
        deadline = asyncio.get_running_loop().time() + 10
        while transport.counters["open_failures"] < 20:  # absent: many attempts, one warning
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        port = PtyPort(link=link)
        assert await asyncio.wait_for(pending, 10) is LINK_UP
        port.write(b"data", threading.Event())
        assert await read_exactly(stream, 4) == b"data"
        lines = [r for r in caplog.records if r.levelno >= logging.INFO]
        assert [r.levelname for r in lines] == ["WARNING", "INFO"], [r.getMessage() for r in lines]
        assert "cannot open" in lines[0].getMessage() and "reading again" in lines[1].getMessage()
        assert not any(r.exc_info for r in caplog.records)
    finally:
        await transport.close()
        await stream.aclose()
        if port:
            port.close()


def test_an_impossible_baud_rate_is_refused_at_once():
    with pytest.raises(OSError, match="unsupported baud rate 12345"):
        SerialTransport("/dev/ttyUSB0", baudrate=12345)
