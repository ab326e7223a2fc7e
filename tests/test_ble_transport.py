"""The BLE transport's state machine through real bleak code against BlueZoo: a silent link is
dropped, the device found again and re-subscribed, and every byte arrives exactly once; a device
that is not there is retried with backoff without blocking anything else."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.protocols import hexoskin as hx
from gateway.transports import LINK_DOWN, LINK_UP
from gateway.transports.ble import BleTransport
from simulators.devices.ble_front import BlePort
from tests.ble import CENTRAL_ADAPTER, PERIPHERAL_ADAPTER, PERIPHERAL_ADDRESS, private_bluez
from tests.chain import until


@pytest.fixture
def bluez(tmp_path, monkeypatch):
    with private_bluez(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address


async def collect(stream, got: bytearray, events: list, sizes: list | None = None) -> None:
    """The stream's bytes into `got` (each notification's size into `sizes`), its link events into `events`."""
    async for item in stream:
        if isinstance(item, bytes):
            got += item
            if sizes is not None:
                sizes.append(len(item))
        else:
            events.append(item)


async def test_a_silent_link_is_dropped_and_resumed_without_loss_or_duplicates(bluez):
    port = await asyncio.to_thread(BlePort, hx.BLE_SERVICE_UUID, hx.BLE_FRAMES_UUID, "WG-TEST", PERIPHERAL_ADAPTER)
    transport = BleTransport("any", [hx.BLE_FRAMES_UUID], adapter=CENTRAL_ADAPTER, service=hx.BLE_SERVICE_UUID,
                             silent_s=1.5, backoff_initial=0.1)
    got, events = bytearray(), []
    task = asyncio.create_task(collect(transport.stream(), got, events))
    stop = threading.Event()
    first, second = bytes(range(256)) * 20, bytes(reversed(range(256))) * 30  # 5,120 then 7,680 bytes
    try:
        assert await asyncio.to_thread(port.wait_for_reader, stop, 30.0)
        await asyncio.to_thread(port.write, first, stop)
        await until(lambda: len(got) == len(first), lambda: f"{len(got)} of {len(first)} bytes")
        subscribed = port.counters["subscriptions"]
        port.stalled.set()  # the radio stops while the link still looks connected
        await asyncio.to_thread(port.write, second, stop)  # the device keeps its data meanwhile
        await until(lambda: transport.counters["silent_timeouts"] == 1, lambda: "no silent timeout")
        # The radio comes back once the dropped link is gone on the device's side too: what it sent
        # while BlueZ still held the old subscription would count as sent and reach no one (CI lost
        # 320 bytes that way on a loaded machine).
        await until(lambda: port.dropped_link_gone(subscribed), lambda: "the old subscription", timeout=60)
        port.stalled.clear()
        await until(lambda: len(got) >= len(first) + len(second), lambda: f"{len(got)} bytes")
        assert await asyncio.to_thread(port.drain, 10.0)
    finally:
        await transport.close()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(port.close)
    assert bytes(got) == first + second  # in order, once
    assert events[:3] == [LINK_UP, LINK_DOWN, LINK_UP] and events[-1] is LINK_DOWN
    # One loss by the stall; a slow machine may idle past silent_s again before close (another, harmless).
    connects = transport.counters["connects"]
    assert connects >= 2 and transport.counters["link_losses"] == connects - 1
    assert port.counters["subscriptions"] == transport.counters["connects"]  # subscribed again at every reconnect
    assert all(n <= 20 for n in [port.payload])  # MTU 23: 20-byte notifications


async def test_a_missing_device_is_retried_with_backoff(bluez):
    transport = BleTransport(PERIPHERAL_ADDRESS, [hx.BLE_FRAMES_UUID], adapter=CENTRAL_ADAPTER, scan_timeout=0.5,
                             backoff_initial=0.1, backoff_max=0.2)
    ticks = 0

    async def ticker():  # the event loop keeps running while the transport searches
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    pending = asyncio.ensure_future(transport.stream().__anext__())
    await asyncio.sleep(2.5)
    assert transport.counters["connect_failures"] >= 2 and not pending.done() and ticks > 100
    await transport.close()
    pending.cancel()
    tick_task.cancel()


async def test_a_flat_out_burst_never_overruns_the_bus(bluez):
    """100 kB written as fast as the peripheral takes it: dbus-fast drops its connection when the socket
    fills, so the BLE front paces itself on bus round trips; every byte arrives, in order."""
    port = await asyncio.to_thread(BlePort, hx.BLE_SERVICE_UUID, hx.BLE_FRAMES_UUID, "WG-BURST", PERIPHERAL_ADAPTER)
    transport = BleTransport("any", [hx.BLE_FRAMES_UUID], adapter=CENTRAL_ADAPTER, name="WG-BURST")
    got, events = bytearray(), []
    task = asyncio.create_task(collect(transport.stream(), got, events))
    stop = threading.Event()
    payload = bytes((i * 7 + i // 251) % 256 for i in range(100_000))
    try:
        assert await asyncio.to_thread(port.wait_for_reader, stop, 30.0)
        await asyncio.to_thread(port.write, payload, stop)
        await until(lambda: len(got) >= len(payload), lambda: f"{len(got)} of {len(payload)} bytes")
    finally:
        await transport.close()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(port.close)
    assert bytes(got) == payload and port.counters["notifications"] == 5000 and port._error is None
    assert transport.counters["connects"] == 1 and not transport.counters["link_losses"]


async def test_a_peripheral_fills_notifications_to_the_negotiated_mtu(bluez):
    """With AcquireNotify BlueZ hands the peripheral a socket and the link's MTU (here the 247 the
    peripheral accepts): frames go in 244-byte notifications and arrive whole, in order."""
    port = await asyncio.to_thread(BlePort, hx.BLE_SERVICE_UUID, hx.BLE_FRAMES_UUID, "WG-MTU", PERIPHERAL_ADAPTER,
                                   mtu=247, acquire_mtu=True)
    transport = BleTransport("any", [hx.BLE_FRAMES_UUID], adapter=CENTRAL_ADAPTER, service=hx.BLE_SERVICE_UUID)
    got, events, sizes = bytearray(), [], []
    data = bytes(range(256)) * 40  # 10,240 bytes
    stop = threading.Event()
    task = asyncio.create_task(collect(transport.stream(), got, events, sizes))
    try:
        assert await asyncio.to_thread(port.wait_for_reader, stop, 30.0)
        await asyncio.to_thread(port.write, data, stop)
        await until(lambda: len(got) >= len(data), lambda: f"{len(got)} of {len(data)} bytes")
    finally:
        await transport.close()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(port.close)
    assert bytes(got) == data and port.counters["mtu"] == 247
    assert max(sizes) == 244 and sum(s == 244 for s in sizes) >= len(data) // 244 - 1
