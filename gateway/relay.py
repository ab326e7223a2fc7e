"""The relay: the fleet's packages from the broker -> its own spool -> the vendor uplinks.

It subscribes to every gateway's package topic through a shared subscription (`$share/<group>/`),
so several relays split the messages, and to every gateway's status (not shared: each relay sees
the whole fleet). A package message is acknowledged (PUBACK) only once it is committed in the
relay's spool, the same SQLite outbox the gateway uses, from which the same uplinks deliver it
(auth, retries, Retry-After, dead letters). A relay that dies before the commit gets the message
again from the broker; one that dies after it sends it from its spool. Either way the vendor sees
the package's idempotency key again and answers with a replay, not a second copy.

A message that is not a package (no properties, a bad range) is counted and dropped, after a log
line: no uplink could deliver it. A package for a target this relay has no uplink for stays in
its spool (nothing is lost) and is counted, until the configuration names that uplink.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from typing import Any

from gateway import __version__, fleet
from gateway.broker import BrokerSession, Received
from gateway.config import RelayConfig
from gateway.daemon import build_uplink
from gateway.spool import AsyncSpool, Changes, SpoolError
from gateway.uplinks.base import Answer, Outcome, Uplink

log = logging.getLogger(__name__)

QUIET_S = 0.5  # at stop, no message for this long after leaving the group: nothing more is on its way


class Relay:
    """Consumes the broker's package messages into a spool and delivers them with the vendor uplinks."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.prefix = config.broker.topic_prefix
        self.counters: Counter[str] = Counter()
        self.uplinks: dict[str, Uplink] = {}
        self.spool: AsyncSpool | None = None
        self.session: BrokerSession | None = None
        self.gateways: dict[str, dict[str, Any]] = {}  # gateway -> messages, last_message, forwarded, ...
        self.fleet: dict[str, dict[str, Any]] = {}  # gateway -> its last status message (and when it came)
        self.started_at = time.time()
        self._stops: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []
        self._unknown_targets: set[str] = set()
        self._writes: set[asyncio.Future] = set()
        self.on_latency = None  # (uplink, seconds) -> None: the metrics' histogram

    async def start(self) -> None:
        """Open the spool, start the uplinks, then connect and subscribe."""
        cfg = self.config
        self.spool = await asyncio.to_thread(AsyncSpool, cfg.spool.path, cfg.spool.sync, cfg.spool.max_bytes)
        for up in cfg.uplinks.values():
            uplink = build_uplink(up)
            uplink.on_answer = self._answered
            self.uplinks[up.name] = uplink
            self.spool.on_commit(uplink.wake)
            stop = self._stops[up.name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(uplink.run(self.spool, stop), name=f"uplink {up.name}"))
        b = cfg.broker
        self.session = BrokerSession(b.url, b.client_id, username=b.username, password=b.password, ca_file=b.ca_file,
                                     keepalive=b.keepalive, session_expiry=b.session_expiry, manual_ack=True,
                                     receive_maximum=cfg.receive_maximum)
        self.session.subscriptions = [(fleet.package_filter(self.prefix, cfg.group), 1),
                                      (fleet.status_filter(self.prefix), 1)]
        self.session.on_message = self._received
        self.session.start()
        log.info("relay started: broker %s as %s, group %s, uplinks %s, spool %s", b.url, b.client_id, cfg.group,
                 ", ".join(self.uplinks), cfg.spool.path)

    def _gateway(self, name: str) -> dict[str, Any]:
        return self.gateways.setdefault(name, {"messages": 0, "last_message": None, "forwarded": 0, "replayed": 0,
                                               "retried": 0, "dead": 0})

    def _received(self, message: Received) -> None:
        assert self.session is not None and self.spool is not None
        gateway = fleet.status_gateway(self.prefix, message.topic)
        if gateway is not None:
            self._status_message(gateway, message)
            self.session.ack(message)
            return
        try:
            gateway, package = fleet.decode(message)
        except fleet.BadMessage as exc:
            self.counters["bad_messages"] += 1
            log.warning("relay: dropped a message on %s: %s", message.topic, exc)
            self.session.ack(message)  # no uplink could ever deliver it
            return
        if package.uplink not in self.uplinks:
            self.counters["unknown_target"] += 1
            if package.uplink not in self._unknown_targets:
                self._unknown_targets.add(package.uplink)
                log.error("relay: packages for uplink %r, which this relay does not configure; they stay in its"
                          " spool until it does", package.uplink)
        gw = self._gateway(gateway)
        gw["messages"] += 1
        gw["last_message"] = time.time()
        self.counters["received"] += 1
        fut = self.spool.write(Changes(packages=[package]))
        self._writes.add(fut)
        fut.add_done_callback(lambda f, m=message: self._durable(f, m))

    def _durable(self, fut: asyncio.Future, message: Received) -> None:
        assert self.session is not None
        self._writes.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            self.counters["spool_errors"] += 1
            log.error("relay: could not keep a message from %s (%s); not acknowledged, the broker sends it again",
                      message.topic, fut.exception() if not fut.cancelled() else "cancelled")
            return
        if fut.result().duplicates:
            self.counters["duplicates"] += 1  # already pending here: a redelivery
        if self.session.ack(message):
            self.counters["acknowledged"] += 1

    def _status_message(self, gateway: str, message: Received) -> None:
        try:
            self.fleet[gateway] = {**summarise_status(json.loads(message.payload)), "received_at": time.time()}
        except (ValueError, TypeError, AttributeError) as exc:  # another machine's JSON: anything may be in it
            self.counters["bad_status"] += 1
            log.warning("relay: bad status message from %s: %s", gateway, exc)

    def _answered(self, package, answer: Answer, seconds: float) -> None:
        gateway = package.stream.split("/", 1)[0]
        gw = self._gateway(gateway)
        if answer.outcome is Outcome.OK:
            gw["forwarded"] += 1
            gw["replayed"] += int(answer.replayed)
        elif answer.outcome is Outcome.PERMANENT:
            gw["dead"] += 1
        else:
            gw["retried"] += 1
        if self.on_latency:
            self.on_latency(package.uplink, seconds)

    async def stop(self, drain_timeout: float = 0.0) -> None:
        """Leave the shared subscription (the group's other relays take the new messages), keep and
        acknowledge what is in hand, disconnect (the session stays: what it still holds waits for
        this relay's return), deliver, close."""
        if self.session is not None:
            await self.session.unsubscribe(fleet.package_filter(self.prefix, self.config.group))
            quiet_since, seen = time.monotonic(), self.counters["received"]
            while time.monotonic() - quiet_since < QUIET_S:  # messages the broker sent before the UNSUBACK
                await asyncio.sleep(0.05)
                if self.counters["received"] != seen or self._writes:
                    quiet_since, seen = time.monotonic(), self.counters["received"]
            await self.session.close()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if drain_timeout and self.spool is not None:
            await self.spool.delivered(self.uplinks, drain_timeout)
        for stop in self._stops.values():
            stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.spool is not None:
            try:
                await self.spool.close()
            except SpoolError as exc:
                log.error("relay: closing the spool: %s", exc)

    async def status(self) -> dict[str, Any]:
        """The relay, its uplinks and spool, and every gateway it has heard of."""
        assert self.spool is not None
        spool = await self.spool.read(self.spool.reader.stats, journal=False)
        now = time.time()
        gateways = []
        for name in sorted(set(self.gateways) | set(self.fleet)):
            st = self.fleet.get(name)
            summary = {k: v for k, v in st.items() if k != "received_at"} if st else {
                "online": None, "devices": 0, "devices_connected": 0, "backlog": 0, "dead_letters": 0, "uplinks": {},
                "last_error": None, "version": None, "device_list": []}
            gateways.append({"gateway": name, **summary,
                             "status_age_s": round(now - st["received_at"], 1) if st else None, **self._gateway(name)})
        return {"version": __version__, "started_at": self.started_at, "group": self.config.group,
                "broker": self.session.status() if self.session else None, "counters": dict(self.counters),
                "uplinks": [u.status() for u in self.uplinks.values()], "spool": spool, "gateways": gateways}


async def run(config: RelayConfig) -> int:
    """Run a relay until SIGTERM/SIGINT; return the process exit code."""
    import signal

    from gateway.status.fleet import RelayMetrics, build_fleet_app
    from gateway.status.server import StatusServer

    relay = Relay(config)
    metrics = RelayMetrics()
    relay.on_latency = metrics.observe
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await relay.start()
    server = None
    if config.status.enabled:
        server = StatusServer(None, config.status.host, config.status.port, config.status.password,
                              app=build_fleet_app(relay, metrics, config.status.password))
        try:
            await server.start()
        except OSError:
            await relay.stop()
            raise
    await stop.wait()
    log.info("relay stopping")
    await relay.stop(config.drain_on_stop)
    if server is not None:
        await server.stop()
    log.info("relay stopped")
    return 0


def summarise_status(body: Any) -> dict[str, Any]:
    """What the fleet page shows of a gateway's status message; ValueError/TypeError if it is not one."""
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    devices = [d for d in body.get("devices") or [] if isinstance(d, dict)]
    backlog = sum(int(b.get("pending", 0)) for b in (body.get("backlog") or {}).values() if isinstance(b, dict))
    error = body.get("last_error")
    if isinstance(error, dict):
        error = error.get("message")
    uplinks = body.get("uplinks") or {}
    return {"online": bool(body.get("online", False)), "devices": len(devices),
            "devices_connected": sum(1 for d in devices if d.get("connected")), "backlog": backlog,
            "dead_letters": int(body.get("dead_letters") or 0),
            "uplinks": {str(k): str(v) for k, v in uplinks.items()} if isinstance(uplinks, dict) else {},
            "last_error": None if error is None else str(error)[:500],
            "version": None if body.get("version") is None else str(body["version"])[:40],
            "device_list": [{k: d.get(k) for k in ("name", "driver", "connected", "down_reason", "last_data",
                                                   "last_upload")} for d in devices[:1000]]}
