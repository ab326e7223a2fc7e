"""The fleet uplink: a vendor uplink's packages to an MQTT broker, for a relay to forward.

A package leaves the spool only after the broker's PUBACK accepted it (QoS 1). The broker's
answer maps onto the same outcomes as an HTTP answer: accepted; refused for credentials (the
uplink pauses, nothing is dropped); refused for good (a dead letter); anything else, and a
lost connection, is retried. "No matching subscribers" is retried too: no relay has subscribed
yet, so the broker would have dropped the message.

`FleetLink` is one broker session shared by every vendor uplink that names it in `via`; it also
keeps the gateway's status retained on the status topic, with a last will that marks it offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from gateway import fleet
from gateway.broker import BrokerSession, BrokerUnavailable
from gateway.config import UplinkConfig
from gateway.spool import StoredPackage
from gateway.uplinks.base import Answer, Outcome, RetryPolicy, Uplink

log = logging.getLogger(__name__)

NO_MATCHING_SUBSCRIBERS = 0x10
AUTH_CODES = {0x87}  # not authorized (an ACL): the credentials' rights, not the package
PERMANENT_CODES = {0x90, 0x95, 0x99}  # topic name invalid, packet too large, payload format invalid


def classify_puback(code: int) -> Outcome:
    """What a PUBACK reason code means for the package."""
    if code == NO_MATCHING_SUBSCRIBERS:
        return Outcome.RETRY
    if code < 0x80:
        return Outcome.OK
    if code in AUTH_CODES:
        return Outcome.AUTH
    return Outcome.PERMANENT if code in PERMANENT_CODES else Outcome.RETRY


class FleetLink:
    """The gateway's session on the fleet's broker, and its retained status there."""

    def __init__(self, cfg: UplinkConfig, status: Callable[[], Awaitable[dict]]) -> None:
        assert cfg.broker is not None
        self.cfg = cfg
        self.name = cfg.name
        self.gateway_id = cfg.gateway_id
        self.prefix = cfg.broker.topic_prefix
        self.status_topic = fleet.status_topic(self.prefix, self.gateway_id)
        self._status = status
        self._task: asyncio.Task | None = None
        self._now = asyncio.Event()
        self.session: BrokerSession | None = None

    def _offline(self) -> bytes:
        return json.dumps({"gateway": self.gateway_id, "online": False, "at": time.time()}).encode()

    def start(self) -> None:
        """Connect (in the background) and keep the status topic up to date."""
        b = self.cfg.broker
        assert b is not None
        self.session = BrokerSession(b.url, b.client_id, username=b.username, password=b.password,
                                     ca_file=b.ca_file, keepalive=b.keepalive, session_expiry=b.session_expiry,
                                     will=(self.status_topic, self._offline()), max_inflight=self.cfg.in_flight,
                                     timeout=self.cfg.timeout)
        self.session.on_connect = lambda _present: self.publish_status()
        self.session.start()
        self._task = asyncio.create_task(self._status_loop(), name=f"fleet status {self.name}")

    def publish_status(self) -> None:
        """Publish the status soon (retained), if connected; a failure waits for the next round."""
        self._now.set()

    async def _send_status(self) -> None:
        if self.session is None or not self.session.connected.is_set():
            return
        try:
            body = {"gateway": self.gateway_id, "online": True, "at": time.time(), **(await self._status())}
            payload = json.dumps(body, default=str).encode()
        except Exception:  # the status must never take the link down
            log.exception("fleet %s: could not build the status", self.name)
            return
        with contextlib.suppress(BrokerUnavailable):
            await self.session.publish(self.status_topic, payload, retain=True)

    async def _status_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._now.wait(), self.cfg.status_interval)
            self._now.clear()
            await self._send_status()

    async def close(self) -> None:
        """Say offline (retained) and disconnect."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.session:
            await self.session.close(last=(self.status_topic, self._offline()))

    def status(self) -> dict:
        """The link for status pages."""
        out = {"name": self.name, "gateway_id": self.gateway_id, "status_topic": self.status_topic}
        if self.session:
            out.update(self.session.status())
        return out


class MqttUplink(Uplink):
    """Delivers one vendor uplink's packages through the fleet's broker (the relay sends them on)."""

    def __init__(self, name: str, link: FleetLink, timeout: float = 30.0, policy: RetryPolicy | None = None,
                 in_flight: int = 16) -> None:
        super().__init__(name, link.cfg.base_url, timeout, policy, in_flight)
        self.link = link

    def open(self):
        """The link's session (it outlives this uplink's loop)."""
        return contextlib.nullcontext(self.link.session)

    async def ready(self, stop: asyncio.Event) -> None:
        """Until the broker session is up (or stop): a package is not taken while there is nowhere to send it."""
        session = self.link.session
        if session is None or session.connected.is_set():
            return
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(session.connected.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def attempt(self, session: BrokerSession, package: StoredPackage) -> Answer:
        """Publish the package (QoS 1) and read the broker's PUBACK."""
        topic, payload, props = fleet.encode(self.link.prefix, self.link.gateway_id, package)
        try:
            code = await session.publish(topic, payload, props, timeout=self.timeout)
        except BrokerUnavailable as exc:
            return Answer(Outcome.RETRY, str(exc))
        outcome = classify_puback(code)
        if outcome is Outcome.OK:
            return Answer(outcome, "", status=code)
        if code == NO_MATCHING_SUBSCRIBERS:
            detail = f"broker {session.url}: no relay subscribes to {topic} yet, so nothing would keep it"
        else:
            detail = f"broker {session.url} refused {topic}: reason 0x{code:02X}"
        return Answer(outcome, detail, status=code)

    @property
    def state(self) -> str:
        """As for HTTP; 'paused' also while the broker refuses the gateway's credentials."""
        session = self.link.session
        if session is not None and session.state == "refused":
            return "paused"
        return super().state

    def status(self) -> dict:
        """Counters and health, with the broker's connection."""
        out = super().status()
        session = self.link.session
        if session is not None:
            out["via"] = {"uplink": self.link.name, "broker": session.url, "state": session.state}
            if session.last_error and not out.get("last_error"):
                out["last_error"] = session.last_error
        return out
