"""BLE transport: notifications of a device's characteristics as a byte stream, via bleak's public API.

The same code runs on a Raspberry Pi's BlueZ and, in tests, on BlueZoo (BlueZ's D-Bus API on a
private bus). A device is found by address, or by advertised name or service UUID, on the
adapter the address names (`ble://AA:BB:CC:DD:EE:FF?adapter=hci0`, `ble://any?service=UUID`).

Connection state machine: scan -> connect -> read the characteristics the driver reads once per
connection (device information, local time; a missing one is skipped) -> subscribe to every
characteristic the driver streams from -> stream. Each read value and notification goes into the
inbox as a `Notification`: bytes tagged with its characteristic. A reconnect first tries the device
BlueZ already knows, then scans again. The link is lost on bleak's disconnected callback, or
when a connected device stays silent for `silent_s` (a watchdog: a wedged link reports
nothing). Then LINK_DOWN is
put in the inbox after every notification already received, and the transport scans, connects and
re-subscribes again with capped exponential backoff and jitter. Gaps are the driver's to find
(sequence numbers or timestamps in the data). Notifications cannot be paused, so the inbox's
limit does not hold them back: a device's rate is small (the core takes the inbox at every
tick), and dropping them would lose data.
"""

from __future__ import annotations

import asyncio
import logging
import random
import warnings
import weakref
from collections.abc import AsyncIterator, Iterable

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakCharacteristicNotFoundError, BleakError

from gateway.transports.base import LINK_DOWN, LINK_UP, Notification, Transport

log = logging.getLogger(__name__)

ANY = "any"
_LOST = object()  # queued by the disconnected callback, after every notification before it
# One scan at a time per adapter and event loop: BlueZ counts discovery per D-Bus client, and all
# of a process's bleak scanners are one client, so one device's scan ending would end another's.
_SCAN_LOCKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, asyncio.Lock]]" = \
    weakref.WeakKeyDictionary()


def _scan_lock(adapter: str | None) -> asyncio.Lock:
    locks = _SCAN_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(adapter, asyncio.Lock())


class BleTransport(Transport):
    """Reads notifications from one BLE device, reconnecting whenever the link goes."""

    def __init__(self, target: str, characteristics: Iterable[str], *, reads: Iterable[str] = (),
                 adapter: str | None = None,
                 name: str | None = None, service: str | None = None, silent_s: float = 10.0,
                 scan_timeout: float = 10.0, connect_timeout: float = 20.0, backoff_initial: float = 0.5,
                 backoff_max: float = 30.0) -> None:
        super().__init__()
        self.target = target
        self.characteristics = tuple(c.lower() for c in characteristics)
        self.reads = tuple(c.lower() for c in reads)
        if not self.characteristics:
            raise ValueError("a BLE transport needs the characteristics its driver reads")
        if target == ANY and not (name or service):
            raise ValueError("ble://any needs name= or service= to know which device to take")
        self.adapter = adapter
        self.name = name
        self.service = service.lower() if service else None
        self.silent_s = silent_s
        self.scan_timeout = scan_timeout
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.mtu: int | None = None
        self._closed = asyncio.Event()
        self._client: BleakClient | None = None
        self._device = None  # the BLEDevice last connected to

    @property
    def address(self) -> str:
        """ble://TARGET with the options that pick the device."""
        opts = [f"{k}={v}" for k, v in (("adapter", self.adapter), ("name", self.name), ("service", self.service))
                if v]
        return f"ble://{self.target}" + ("?" + "&".join(opts) if opts else "")

    def _bluez(self) -> dict:
        return {"bluez": {"adapter": self.adapter}} if self.adapter else {}

    async def _find(self):
        """The device to connect to, or None if it was not seen within the scan timeout."""
        async with _scan_lock(self.adapter):
            return await self._scan()

    async def _scan(self):
        if self.target != ANY:
            return await BleakScanner.find_device_by_address(self.target, timeout=self.scan_timeout, **self._bluez())

        def wanted(device, adv) -> bool:
            if self.name and (adv.local_name or device.name) != self.name:
                return False
            return not self.service or self.service in [u.lower() for u in adv.service_uuids]

        return await BleakScanner.find_device_by_filter(wanted, timeout=self.scan_timeout, **self._bluez())

    async def _connect(self, queue: asyncio.Queue) -> BleakClient:
        # After a loss, the device BlueZ already knows is connected to directly (BlueZ keeps it;
        # a scan may not report a device it has cached); if that fails, the next attempt scans.
        device, self._device = self._device, None
        if device is None:
            device = await self._find()
        if device is None:
            raise BleakError(f"{self.address}: not seen within {self.scan_timeout:g} s")
        client = BleakClient(device, disconnected_callback=lambda _: queue.put_nowait(_LOST),
                             timeout=self.connect_timeout, **self._bluez())
        await client.connect()
        self._device = device
        try:
            # Bounded like the connect: a read or subscription BlueZ never answers must not wedge the link.
            await asyncio.wait_for(self._set_up(client, queue), self.connect_timeout)
        except BaseException:
            await self._disconnect(client)
            raise
        return client

    async def _set_up(self, client: BleakClient, queue: asyncio.Queue) -> None:
        for uuid in self.reads:  # queued first: the driver learns who the device is before its data
            try:
                queue.put_nowait(Notification(await client.read_gatt_char(uuid), uuid))
            except BleakCharacteristicNotFoundError:
                self.counters["missing_characteristics"] += 1
                log.info("%s: has no characteristic %s to read; going on without it", self.address, uuid)
        for uuid in self.characteristics:
            await client.start_notify(uuid, lambda _, data, u=uuid: queue.put_nowait(Notification(data, u)))

    @staticmethod
    async def _disconnect(client: BleakClient) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), 10.0)
        except (BleakError, asyncio.TimeoutError, OSError, EOFError):
            pass

    async def run(self) -> None:
        """Put notifications (reads first after each connect) and link events in the inbox until close()."""
        delay = self.backoff_initial
        failing = 0
        while not self._closed.is_set():
            queue: asyncio.Queue = asyncio.Queue()
            try:
                self._client = await self._connect(queue)
            except (BleakError, asyncio.TimeoutError, OSError, EOFError) as exc:
                self.counters["connect_failures"] += 1
                self.down_reason = f"cannot connect ({exc})"
                failing += 1
                log.log(logging.WARNING if failing == 1 else logging.DEBUG,
                        "%s: cannot connect (%s); retrying in up to %.1f s", self.address, exc, delay)
                await self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.backoff_max)
                continue
            delay, failing = self.backoff_initial, 0
            self.counters["connects"] += 1
            with warnings.catch_warnings():  # bleak warns when BlueZ has not told it the MTU (23 is then assumed)
                warnings.simplefilter("ignore")
                self.mtu = self._client.mtu_size
            self.connected = True
            self.down_reason = None
            log.info("%s: connected (ATT MTU %s), notifications on %s", self.address, self.mtu,
                     ", ".join(self.characteristics))
            self.inbox.put(LINK_UP)
            try:
                async for item in self._notifications(queue):
                    self.counters["notifications"] += 1
                    self.counters["bytes"] += len(item)
                    self.inbox.put(item)
            finally:
                self.connected = False
                client, self._client = self._client, None
                if client is not None:
                    await self._disconnect(client)
            # What arrived between the loss (or the watchdog's verdict) and the disconnect was received:
            # it goes up before the link-down, not into the next connection's void.
            while not queue.empty():
                item = queue.get_nowait()
                if item is not _LOST:
                    self.counters["notifications"] += 1
                    self.counters["bytes"] += len(item)
                    self.inbox.put(item)
            self.inbox.put(LINK_DOWN)

    async def _notifications(self, queue: asyncio.Queue) -> AsyncIterator[Notification]:
        """Notifications until the link is lost, goes silent, or the transport is closed."""
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, closed}, timeout=self.silent_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    if closed in done:
                        while not queue.empty():  # what already arrived still goes up
                            item = queue.get_nowait()
                            if item is not _LOST:
                                yield item
                        return
                    self.counters["silent_timeouts"] += 1
                    self.counters["link_losses"] += 1
                    self.down_reason = f"connected but silent for {self.silent_s:.0f} s"
                    log.warning("%s: connected but silent for %.0f s; reconnecting", self.address, self.silent_s)
                    return
                item = getter.result()
                if item is _LOST:
                    self.counters["link_losses"] += 1
                    self.down_reason = "disconnected"
                    log.warning("%s: disconnected", self.address)
                    return
                yield item
        finally:
            closed.cancel()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def close(self) -> None:
        """Stop reading and disconnect."""
        self._closed.set()
