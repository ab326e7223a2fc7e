"""One MQTT 5 connection to a broker: paho-mqtt's network thread, bridged to asyncio.

Why paho-mqtt itself and not an asyncio wrapper: the relay acknowledges a message only once it is
durable, which needs application-controlled PUBACKs (paho's `manual_ack`); aiomqtt 2.5 has no
public way to do that (aiomqtt issue #345), and gmqtt acknowledges when its callback returns. paho
is the Eclipse reference client; its thread reconnects with backoff on its own, and every
callback here only hands its event to the event loop (`call_soon_threadsafe`).

What the session guarantees: a publish's future resolves with the broker's PUBACK reason code
(0 accepted; 0x80 and above refused), or fails with BrokerUnavailable when the connection is
lost or the answer does not come in time. A received message carries the connection it came
on: acknowledging it on a later connection is skipped (the broker sends it again instead).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
# CONNACK reason codes that mean the credentials, not the network (MQTT 5, 3.2.2.2).
CREDENTIAL_REFUSALS = {0x86: "bad user name or password", 0x87: "not authorized", 0x8C: "bad authentication method"}


class BrokerUnavailable(ConnectionError):
    """No connection to the broker now, or no answer in time."""


@dataclass
class Received:
    """A message from the broker, to be acknowledged (QoS 1) once the receiver has it for good."""

    topic: str
    payload: bytes
    properties: dict[str, str]  # user properties (a later one wins), plus content_type
    mid: int
    qos: int
    generation: int  # the connection it came on
    retain: bool = False


def parse_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of mqtt://host[:port] or mqtts://host[:port]; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], not {url!r}")
    return parts.hostname, parts.port or SCHEMES[parts.scheme], parts.scheme == "mqtts"


def user_properties(props: Properties | None) -> dict[str, str]:
    """A message's user properties as a dict, with its content type under 'content_type'."""
    out: dict[str, str] = {}
    if props is None:
        return out
    for k, v in getattr(props, "UserProperty", None) or []:
        out[k] = v
    content_type = getattr(props, "ContentType", None)
    if content_type:
        out["content_type"] = content_type
    return out


def publish_properties(content_type: str | None, user: dict[str, str]) -> Properties:
    """MQTT 5 PUBLISH properties: a content type and user properties."""
    props = Properties(PacketTypes.PUBLISH)
    if content_type:
        props.ContentType = content_type
    if user:
        props.UserProperty = list(user.items())
    return props


class BrokerSession:
    """A persistent MQTT 5 session (fixed client id, session expiry) that reconnects by itself."""

    def __init__(self, url: str, client_id: str, *, username: str | None = None, password: str | None = None,
                 ca_file: str | None = None, keepalive: int = 30, session_expiry: int = 3600,
                 will: tuple[str, bytes] | None = None, manual_ack: bool = False, receive_maximum: int = 64,
                 max_inflight: int = 16, timeout: float = 30.0) -> None:
        self.url = url
        self.host, self.port, tls = parse_url(url)
        self.client_id = client_id
        self.timeout = timeout
        self.keepalive = keepalive
        self.counters: Counter[str] = Counter()
        self.state = "connecting"  # connecting, up, down, refused (credentials)
        self.last_error: str | None = None
        self.generation = 0
        self._paho_generation = 0
        self.connected = asyncio.Event()
        self.on_connect: Callable[[bool], None] | None = None  # (session_present), on the loop
        self.on_message: Callable[[Received], None] | None = None  # on the loop
        self.subscriptions: list[tuple[str, int]] = []  # subscribed again at every connect
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future] = {}
        self._unsubscribing: dict[int, asyncio.Future] = {}
        self._session_expiry = session_expiry
        self._receive_maximum = receive_maximum
        self._closing = False
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                        manual_ack=manual_ack)
        c.max_inflight_messages_set(max_inflight)
        c.reconnect_delay_set(1, 30)
        if username:
            c.username_pw_set(username, password)
        if tls:
            c.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if will:
            c.will_set(will[0], will[1], qos=1, retain=True)
        c.on_connect = self._paho_connect
        c.on_disconnect = self._paho_disconnect
        c.on_publish = self._paho_publish
        c.on_message = self._paho_message
        c.on_unsubscribe = self._paho_unsubscribe
        c.on_connect_fail = self._paho_connect_fail
        self._client = c

    # -- the caller's side (event loop) ---------------------------------------------------

    def start(self) -> None:
        """Connect in paho's thread; it reconnects with backoff until close()."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry
        props.ReceiveMaximum = self._receive_maximum
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=False,
                                   properties=props)
        self._client.loop_start()

    async def publish(self, topic: str, payload: bytes, properties: Properties | None = None, *, qos: int = 1,
                      retain: bool = False, timeout: float | None = None) -> int:
        """Publish; the broker's PUBACK reason code (0: accepted), or BrokerUnavailable."""
        if not self.connected.is_set():
            raise BrokerUnavailable(f"not connected to {self.url} ({self.state}: {self.last_error or 'no answer yet'})")
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(f"publish to {self.url} failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return 0
        # Registered before the loop runs again, so the PUBACK (handed over by call_soon_threadsafe) finds it.
        fut = self._pending[info.mid] = self._loop.create_future()
        try:
            return await asyncio.wait_for(fut, timeout or self.timeout)
        except asyncio.TimeoutError:
            raise BrokerUnavailable(f"no PUBACK from {self.url} within {timeout or self.timeout:g} s") from None
        finally:
            self._pending.pop(info.mid, None)

    async def unsubscribe(self, topic: str, timeout: float = 10.0) -> bool:
        """Unsubscribe (and stop subscribing at reconnects); True once the broker's UNSUBACK came."""
        self.subscriptions = [(t, q) for t, q in self.subscriptions if t != topic]
        if not self.connected.is_set():
            return False
        rc, mid = self._client.unsubscribe(topic)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            return False
        fut = self._unsubscribing[mid] = self._loop.create_future()
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except (asyncio.TimeoutError, BrokerUnavailable):
            return False
        finally:
            self._unsubscribing.pop(mid, None)

    def ack(self, message: Received) -> bool:
        """Acknowledge a received QoS 1 message; False (and nothing sent) if its connection is gone."""
        if message.qos == 0:
            return True
        if message.generation != self.generation or not self.connected.is_set():
            self.counters["acks_skipped"] += 1
            return False
        self._client.ack(message.mid, message.qos)
        return True

    async def close(self, last: tuple[str, bytes] | None = None) -> None:
        """Publish `last` (retained) if connected, then disconnect cleanly and stop the thread."""
        self._closing = True
        if last and self.connected.is_set():
            try:
                await self.publish(last[0], last[1], retain=True, timeout=5.0)
            except BrokerUnavailable:
                pass
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BrokerUnavailable("session closed"))

    def status(self) -> dict:
        """Connection state for status pages."""
        return {"broker": self.url, "client_id": self.client_id, "state": self.state, "last_error": self.last_error,
                "counters": dict(self.counters)}

    # -- paho's thread: hand every event to the loop -----------------------------------------

    def _paho_connect(self, _c, _u, flags, reason, _props) -> None:
        if not reason.is_failure:
            self._paho_generation += 1  # in paho's thread, so messages after this CONNACK carry the new one
        self._loop.call_soon_threadsafe(self._connected, int(reason.value), str(reason),
                                        bool(getattr(flags, "session_present", False)), self._paho_generation)

    def _paho_connect_fail(self, _c, _u) -> None:
        exc = sys.exc_info()[1]  # paho calls this from the `except OSError` of its connect
        why = f"cannot connect: {type(exc).__name__}: {exc}" if exc else "cannot connect"
        self._loop.call_soon_threadsafe(self._down, why)

    def _paho_disconnect(self, _c, _u, _flags, reason, _props) -> None:
        self._loop.call_soon_threadsafe(self._down, f"disconnected: {reason}")

    def _paho_publish(self, _c, _u, mid, reason, _props) -> None:
        self._loop.call_soon_threadsafe(self._published, mid, int(reason.value))

    def _paho_unsubscribe(self, _c, _u, mid, _reasons, _props) -> None:
        self._loop.call_soon_threadsafe(self._unsubscribed, mid)

    def _paho_message(self, _c, _u, msg: paho.MQTTMessage) -> None:
        gen = self._paho_generation  # the connection this message came on
        props = user_properties(getattr(msg, "properties", None))
        self._loop.call_soon_threadsafe(self._received, Received(msg.topic, bytes(msg.payload), props, msg.mid,
                                                                 msg.qos, gen, bool(msg.retain)))

    # -- on the loop ------------------------------------------------------------------------

    def _connected(self, code: int, text: str, session_present: bool, generation: int) -> None:
        if code:
            self.counters["refused"] += 1
            reason = CREDENTIAL_REFUSALS.get(code)
            state = "refused" if reason else "down"
            error = f"broker {self.url} refused the connection: {text} (0x{code:02X})"
            if reason:
                error += f" - check the user name and password of {self.client_id}"
            if state != self.state or error != self.last_error:  # one line per change, not per retry
                log.error("%s; retrying, nothing is dropped", error)
            self.state, self.last_error = state, error
            return
        self.generation = generation
        self.counters["connects"] += 1
        self.state, self.last_error = "up", None
        log.info("connected to %s as %s (session %s)", self.url, self.client_id,
                 "resumed" if session_present else "new")
        if self.subscriptions:
            self._client.subscribe([(t, paho.SubscribeOptions(qos=q)) for t, q in self.subscriptions])
        self.connected.set()
        if self.on_connect:
            self.on_connect(session_present)

    def _down(self, why: str) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        for fut in [*self._pending.values(), *self._unsubscribing.values()]:  # their answers may never come
            if not fut.done():
                fut.set_exception(BrokerUnavailable(f"{self.url}: {why}"))
        if self._closing:
            self.state = "down"
            return
        if self.state == "refused" and not was_up:
            return  # the refusal said it all; paho closes the socket after it
        error = f"broker {self.url}: {why}"
        if was_up:
            self.counters["disconnects"] += 1
            log.warning("%s; reconnecting", error)
        elif error != self.last_error:  # one line per new reason, not one per retry
            self.counters["connect_failures"] += 1
            log.error("%s; retrying with backoff, nothing is dropped", error)
        self.state, self.last_error = "down", error

    def _published(self, mid: int, code: int) -> None:
        fut = self._pending.get(mid)
        if fut is not None and not fut.done():
            fut.set_result(code)

    def _unsubscribed(self, mid: int) -> None:
        fut = self._unsubscribing.get(mid)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _received(self, message: Received) -> None:
        self.counters["received"] += 1
        if self.on_message:
            self.on_message(message)
