"""The BLE front of a device simulator: a GATT peripheral registered through BlueZ's D-Bus API.

The simulator exports a GATT application (`org.bluez.GattService1`, `GattCharacteristic1`) and
an advertisement (`org.bluez.LEAdvertisement1`, discoverable, with the service UUID and a
local name), and registers them with `org.bluez.GattManager1` and `LEAdvertisingManager1` of
one adapter. On a Raspberry Pi with a Bluetooth adapter that is a real BLE peripheral another
Pi's gateway can read; in tests it runs against BlueZoo on a private bus
(`DBUS_SYSTEM_BUS_ADDRESS`).

`BlePort` is a `Port` like the pty: `run_frames` writes the device's byte stream into it, and
it goes out as notifications of the frames characteristic, as the firmware specs' BLE
chapters say: each notification up to ATT_MTU - 3 bytes, a partly filled one at least every
FLUSH_S. Nothing is sent while no central is subscribed: writes wait, as a device holds its
data until the host listens, and the stream continues where it stopped. A device may also run
for a central that listens only to one of its standard characteristics (`start_on`: the
shirt's Heart Rate Measurement, for a generic heart-rate app): while nobody listens to the
frames, what they would carry goes nowhere (counted as `unheard_bytes`), as a live radio's.

ATT MTU: by default notifications are 20 bytes (ATT_MTU 23, which every link accepts), sent as
Value changes that BlueZ turns into notifications. With `acquire_mtu` the frames characteristic
offers `NotifyAcquired`: BlueZ then calls `AcquireNotify` with the link's negotiated `mtu` and a
socket, and each notification is written to that socket filled to mtu - 3 bytes (the peripheral
declares the largest MTU it accepts in its characteristic's `MTU`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

from simulators.devices.serial_front import Port

APP_PATH = "/org/wearablegateway/sim"
DEFAULT_MTU = 23
FLUSH_S = 0.125
MAX_BUFFER = 64 * 1024  # bytes a writer may get ahead of the notifications
PACE_EVERY = 8  # notifications between round trips to BlueZ: flow control, since dbus-fast's writer
#                 gives up the connection when the socket is full instead of waiting
# Peer.Ping to BlueZ itself (libdbus and dbus-fast answer it on every connection): its answer comes
# after BlueZ has read every notification sent before it, not only the bus daemon. Pinging the bus
# daemon alone let a slow BlueZ (BlueZoo on a loaded machine) fall behind until the socket filled.
PING = dict(destination="org.bluez", path="/", interface="org.freedesktop.DBus.Peer", member="Ping")


class _Service(ServiceInterface):
    def __init__(self, uuid: str) -> None:
        super().__init__("org.bluez.GattService1")
        self._uuid = uuid

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # noqa: F821, N802 (D-Bus names and signatures)
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> "b":  # noqa: F821, N802
        return True


class _Characteristic(ServiceInterface):
    """A characteristic: notify/indicate ones get a CCCD from BlueZ, which calls StartNotify/StopNotify."""

    def __init__(self, uuid: str, service_path: str, on_subscribe=None, flags: tuple[str, ...] = ("notify",),
                 value: bytes = b"") -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self._uuid = uuid
        self._service = service_path
        self._flags = list(flags)
        self._value = value
        self._on_subscribe = on_subscribe or (lambda on: None)
        self.subscribed = False
        self.subscriptions = 0  # how many times a central subscribed: which connection a value went out on
        self.confirmed = threading.Event()  # set by BlueZ's Confirm of an indication
        self.losing_confirmations = threading.Event()  # fault injection: the confirmation never reaches the device

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # noqa: F821, N802
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> "o":  # noqa: F821, N802
        return self._service

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":  # noqa: F821, F722, N802
        return self._flags

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> "ay":  # noqa: F821, N802
        return self._value

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":  # noqa: F821, F722, N802
        return self._value

    @method()
    def StartNotify(self):  # noqa: N802
        self.subscribed = True
        self.subscriptions += 1
        self._on_subscribe(True)

    @method()
    def StopNotify(self):  # noqa: N802
        self.subscribed = False
        self._on_subscribe(False)

    @method()
    def Confirm(self):  # noqa: N802 (BlueZ: the central confirmed the indication)
        if not self.losing_confirmations.is_set():
            self.confirmed.set()

    def notify(self, data: bytes) -> None:
        """Send one notification (BlueZ turns the Value change into an ATT notification)."""
        self._value = data
        self.emit_properties_changed({"Value": data})


class _AcquiredCharacteristic(_Characteristic):
    """A notify characteristic whose notifications go through a socket BlueZ hands over with the
    link's negotiated MTU (AcquireNotify), instead of Value changes."""

    def __init__(self, uuid: str, service_path: str, on_acquire, on_subscribe, mtu: int) -> None:
        super().__init__(uuid, service_path, on_subscribe)
        self._mtu = mtu
        self._on_acquire = on_acquire
        self.acquired = False

    @dbus_property(access=PropertyAccess.READ)
    def NotifyAcquired(self) -> "b":  # noqa: F821, N802
        return self.acquired

    @dbus_property(access=PropertyAccess.READ)
    def MTU(self) -> "q":  # noqa: F821, N802 (the largest ATT MTU this peripheral accepts)
        return self._mtu

    @method()
    def AcquireNotify(self, options: "a{sv}") -> "hq":  # noqa: F821, F722, N802
        mtu = min(self._mtu, int(options["mtu"].value)) if "mtu" in options else 23
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.acquired = True
        self._on_acquire(ours, mtu)
        asyncio.get_running_loop().call_later(1.0, theirs.close)  # after the reply carried it
        return [theirs.fileno(), mtu]


class _Advertisement(ServiceInterface):
    def __init__(self, service_uuid: str, name: str) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self._uuid = service_uuid
        self._name = name

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> "s":  # noqa: F821, N802
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> "as":  # noqa: F821, F722, N802
        return [self._uuid]

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> "s":  # noqa: F821, N802
        return self._name

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> "b":  # noqa: F821, N802
        return True

    @method()
    def Release(self):  # noqa: N802
        pass


@dataclass(frozen=True)
class CharacteristicSpec:
    """A further characteristic: read-only with a fixed value, or notify/indicate with values sent later."""

    uuid: str
    flags: tuple[str, ...] = ("read",)
    value: bytes = b""


@dataclass(frozen=True)
class ServiceSpec:
    """A further primary service (Heart Rate, Device Information, Battery, ...)."""

    uuid: str
    characteristics: tuple[CharacteristicSpec, ...]


class BlePort(Port):
    """A GATT peripheral whose frames characteristic carries the bytes written to it (plus any
    further services the device offers, such as the standard Heart Rate Service)."""

    def __init__(self, service_uuid: str, frames_uuid: str | None, name: str, adapter: str = "hci0",
                 mtu: int = DEFAULT_MTU, start_timeout: float = 15.0,
                 extra_services: tuple[ServiceSpec, ...] = (), acquire_mtu: bool = False,
                 start_on: tuple[str, ...] = ()) -> None:
        self.mtu, self.acquire_mtu = mtu, acquire_mtu
        self.start_on = tuple(u.lower() for u in start_on)
        self._sock: socket.socket | None = None  # the notification socket BlueZ handed over (acquire_mtu)
        self.extra_services = extra_services
        self._extra: dict[str, _Characteristic] = {}
        self.path = f"ble:{adapter}:{name}"
        self.service_uuid, self.frames_uuid, self.name, self.adapter = service_uuid, frames_uuid, name, adapter
        self.payload = mtu - 3
        self.counters = {"notifications": 0, "bytes": 0, "subscriptions": 0, "dropped_bytes": 0, "mtu": mtu,
                         "confirmed": 0, "unconfirmed": 0, "indications_held": 0, "unheard_bytes": 0}
        self._buffer = bytearray()
        self._lock = threading.Condition()
        self._subscribed = False
        self._closing = False
        # Fault injection: `stalled`, a radio that stops sending while the link still looks up (the
        # device keeps its data); `dropping`, an outage during which the device's buffer overflows
        # and what it produces is lost (the gateway must see exactly that as a gap).
        self.stalled = threading.Event()
        self.dropping = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ble-peripheral", daemon=True)
        self._thread.start()
        if not self._ready.wait(start_timeout):
            raise TimeoutError(f"BLE peripheral on {adapter}: BlueZ did not answer within {start_timeout:g} s")
        if self._error:
            raise self._error

    # The peripheral's own event loop, in its thread ---------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the constructor, or ends the pump
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        bus = await MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=self.acquire_mtu).connect()
        adapter_path = f"/org/bluez/{self.adapter}"
        if self.frames_uuid:  # a device whose byte stream is its frames (a band has only standard services)
            service_path = f"{APP_PATH}/service0"
            self._char = _AcquiredCharacteristic(self.frames_uuid, service_path, self._acquired, self._subscription,
                                                 self.mtu) if self.acquire_mtu else \
                _Characteristic(self.frames_uuid, service_path, self._subscription)
            bus.export(service_path, _Service(self.service_uuid))
            bus.export(f"{service_path}/char0", self._char)
        for i, spec in enumerate(self.extra_services, start=1):
            path = f"{APP_PATH}/service{i}"
            bus.export(path, _Service(spec.uuid))
            for j, c in enumerate(spec.characteristics):
                char = _Characteristic(c.uuid, path, flags=c.flags, value=c.value)
                self._extra[c.uuid.lower()] = char
                bus.export(f"{path}/char{j}", char)
        bus.export(f"{APP_PATH}/adv0", _Advertisement(self.service_uuid, self.name))
        for iface, member, args in (("org.bluez.GattManager1", "RegisterApplication", APP_PATH),
                                    ("org.bluez.LEAdvertisingManager1", "RegisterAdvertisement", f"{APP_PATH}/adv0")):
            reply = await bus.call(Message(destination="org.bluez", path=adapter_path, interface=iface, member=member,
                                           signature="oa{sv}", body=[args, {}]))
            if reply.message_type == MessageType.ERROR:
                raise RuntimeError(f"BlueZ refused {member} on {adapter_path}: {reply.error_name} {reply.body}")
        self._ready.set()
        try:
            await self._pump(bus)
        finally:
            bus.disconnect()

    def _acquired(self, sock: socket.socket, mtu: int) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self.payload = sock, mtu - 3
        self.counters["mtu"] = mtu
        self._subscription(True)

    def _subscription(self, on: bool) -> None:
        if not on and self._sock is not None:  # BlueZ ended the session: the socket is done
            self._sock.close()
            self._sock = None
            self._char.acquired = False
        with self._lock:
            self._subscribed = on
            self.counters["subscriptions"] += int(on)
            self._lock.notify_all()

    async def _pump(self, bus: MessageBus) -> None:
        """Send the buffer as notifications: full ones at once, a partial one after FLUSH_S."""
        last = time.monotonic()
        sent = 0
        while not (self._closing and not self._buffer):
            with self._lock:
                if self.dropping.is_set() and self._buffer:
                    self.counters["dropped_bytes"] += len(self._buffer)
                    self._buffer.clear()
                    self._lock.notify_all()
                ready = self._subscribed and not self.stalled.is_set() and (len(self._buffer) >= self.payload or (
                    self._buffer and time.monotonic() - last >= FLUSH_S))
                chunk = bytes(self._buffer[:self.payload]) if ready else b""
                if ready:
                    del self._buffer[:len(chunk)]
                    self._lock.notify_all()
            if not chunk:
                await asyncio.sleep(0.005)
                continue
            if self._sock is not None:
                try:
                    await asyncio.get_running_loop().sock_sendall(self._sock, chunk)
                except OSError:  # the central went away mid-send: the device keeps the chunk
                    with self._lock:
                        self._buffer[:0] = chunk
                    self._subscription(False)
                    continue
            else:
                self._char.notify(chunk)
            last = time.monotonic()
            self.counters["notifications"] += 1
            self.counters["bytes"] += len(chunk)
            sent += 1
            if self._sock is None and sent % PACE_EVERY == 0:  # wait until the bus took what was sent
                await bus.call(Message(**PING))
                if not bus.connected:
                    raise ConnectionError("the D-Bus connection to BlueZ is gone")

    def wait_for_subscriber(self, uuid: str, stop: threading.Event | None = None, timeout: float | None = None) -> bool:
        """Block until a central listens to this further characteristic; False if stopped or timed out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_subscribed(uuid):
            if (stop and stop.is_set()) or (deadline and time.monotonic() > deadline):
                return False
            time.sleep(0.02)
        return True

    def dropped_link_gone(self, subscriptions_before: int) -> bool:
        """Whether the central's last subscription to the frames characteristic ended (or a new one
        began) since there were `subscriptions_before`: a dropped link is gone on this side too."""
        with self._lock:
            return not self._subscribed or self.counters["subscriptions"] > subscriptions_before

    def is_subscribed(self, uuid: str) -> bool:
        """Whether a central listens to this further notify/indicate characteristic."""
        return self._extra[uuid.lower()].subscribed

    def lose_confirmations(self, on: bool) -> None:
        """Fault injection: indications arrive but their confirmations are lost, so the device sends them again."""
        for char in self._extra.values():
            (char.losing_confirmations.set if on else char.losing_confirmations.clear)()

    def subscriptions(self, uuid: str) -> int:
        """How many times a central subscribed to this further characteristic."""
        return self._extra[uuid.lower()].subscriptions

    def notify(self, uuid: str, value: bytes) -> bool:
        """Send a value on a further notify/indicate characteristic (from any thread); False if nobody
        listens or the radio is stalled (a notification is not kept: it is lost)."""
        char = self._extra[uuid.lower()]
        if not char.subscribed or self.stalled.is_set():
            return False
        self._loop.call_soon_threadsafe(char.notify, value)
        return True

    def indicate(self, uuid: str, value: bytes, timeout: float = 2.0) -> bool:
        """Indicate a value and wait for the central's confirmation; False if nobody listens or none came."""
        char = self._extra[uuid.lower()]
        if not char.subscribed:
            return False
        if self.stalled.is_set():  # the radio is quiet: no confirmation will come, the device keeps the value
            self.counters["indications_held"] += 1
            return False
        char.confirmed.clear()
        self._loop.call_soon_threadsafe(char.notify, value)
        if char.confirmed.wait(timeout):
            self.counters["confirmed"] += 1
            return True
        self.counters["unconfirmed"] += 1
        return False

    # The Port interface, called from the simulator's thread ---------------------------------

    def _standard_listener(self) -> bool:
        """Whether a central listens to a `start_on` characteristic (and so the device runs)."""
        return any(self._extra[u].subscribed for u in self.start_on if u in self._extra)

    def wait_for_reader(self, stop: threading.Event | None = None, timeout: float | None = None) -> bool:
        """Block until a central subscribed to the frames (or a `start_on`) characteristic; False if stopped
        or timed out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._subscribed and not self._standard_listener():
                if (stop and stop.is_set()) or (deadline and time.monotonic() > deadline):
                    return False
                self._lock.wait(0.1)
        return True

    def _write_some(self, view: memoryview) -> int:
        if self._error:  # the peripheral died: say so rather than wait for ever
            raise RuntimeError(f"BLE peripheral on {self.adapter} failed: {self._error!r}")
        with self._lock:
            if not self._subscribed and self._standard_listener():  # nobody listens to the frames
                self.counters["unheard_bytes"] += len(view)
                return len(view)
            room = MAX_BUFFER - len(self._buffer)
            if room <= 0:
                self._lock.wait(0.1)
                return 0
            n = min(room, len(view))
            self._buffer += view[:n]
            return n

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every byte written went out in a notification."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._buffer:
                if time.monotonic() > deadline:
                    return False
                self._lock.wait(0.05)
        return True

    def close(self) -> None:
        """Stop advertising and serving: the central sees the device go."""
        self._closing = True
        with self._lock:
            self._buffer.clear()
        self._thread.join(timeout=5.0)
