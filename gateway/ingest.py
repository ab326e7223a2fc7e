"""Every device's data path, once per tick: inboxes -> drivers -> pipelines -> one group commit.

A tick takes what each device's transport has put in its inbox, decodes it in one call per
run of bytes (not per frame), lets the device's pipeline stage the events, collects what is
ready (journal rows, finished packages, stream rows) and hands the lot to the spool's writer as
one set of changes. Ticks come at most every `interval` seconds while data flows, and at once
while a transport is held back at its inbox limit (a backlog being caught up).

The interval steers itself by what it costs and what it buys: it starts at 100 ms and every 5 s
(and 500 ages), if the p99 age of the samples made durable (sample-to-durable, from the time a
sample was taken) was above `durable_target`, ticks come more often (down to MIN_INTERVAL_S); if
it was below DURABLE_SLACK_S, less often (up to `max_interval`, 200 ms by default). A few devices
are then committed every 120-200 ms (a third less CPU than at 100 ms); a thousand, whose ticks
take longer, every 20-50 ms.

Bounds:
- The ingest never runs ahead of the writer by more than one set of changes: a transaction
  being committed and one waiting. Past that it waits, the inboxes fill to their limits and
  the transports stop reading: what has left the kernel and is not durable stays bounded.
- When the spool refuses transactions for space, it keeps their changes in RAM; the ingest
  goes on up to `ram_bytes` of them, says so once, then stops taking inboxes (the devices'
  bytes wait in the kernel and the devices) until the spool is writable again.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.config import DeviceConfig
from gateway.core.blocks import Gap
from gateway.drivers.base import Driver, bad_frames
from gateway.pipeline import DevicePipeline
from gateway.spool import AsyncSpool, Changes, CommitResult
from gateway.transports import LINK_DOWN, LinkEvent, Transport

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.2
START_INTERVAL_S = 0.1
MIN_INTERVAL_S = 0.02
DURABLE_TARGET_S = 0.23  # p99 sample-to-durable above which ticks come more often (the goal is 0.25)
DURABLE_SLACK_S = 0.19  # below which they may come less often
STEER_S = 5.0  # at most this often
STEER_OBSERVATIONS = 500
MAX_PACKAGE_BYTES = 1 << 20  # package bodies per commit; the rest go in the next (they are journaled)


@dataclass
class DeviceRunner:
    """One configured device's live parts."""

    config: DeviceConfig
    transport: Transport
    driver: Driver
    pipeline: DevicePipeline
    last_data: float | None = None
    retiring: asyncio.Future | None = None  # set by Ingest.remove(): done once the device is dropped
    windows_cut: bool = False
    closing: bool = False  # the gateway closed the transport: a frame cut now is cut by the stop

    def status(self) -> dict[str, Any]:
        """Link state, counters and streams."""
        return {"name": self.config.name, "driver": self.config.driver, "transport": self.transport.address,
                "connected": self.transport.connected, "last_data": self.last_data,
                "down_reason": None if self.transport.connected else getattr(self.transport, "down_reason", None),
                "last_analysis": self.pipeline.last_analysis,
                "bad_frames": bad_frames(self.driver.counters),
                "transport_counters": dict(self.transport.counters), "driver_counters": dict(self.driver.counters),
                "pipeline_counters": dict(self.pipeline.counters), "streams": self.pipeline.status()}

    def decode(self, items: list, events: list) -> None:
        """Feed the driver what the inbox held: each run of bytes in one call, link events between."""
        chunks: list[bytes] = []
        arrival = 0.0
        for item, at in items:
            if type(item) is bytes:
                chunks.append(item)
                arrival = at
                continue
            if chunks:
                self._feed(chunks[0] if len(chunks) == 1 else b"".join(chunks), arrival, events)
                chunks = []
            if isinstance(item, LinkEvent):
                if item is LINK_DOWN:
                    lost = self.driver.link_lost()
                    if self.closing:
                        lost = [Gap(e.stream, e.start, e.missing, at_stop=True) if isinstance(e, Gap) else e
                                for e in lost]
                    events += lost
            else:  # a Notification keeps its characteristic: one call each
                self._feed(item, at, events)
                arrival = at
        if chunks:
            self._feed(chunks[0] if len(chunks) == 1 else b"".join(chunks), arrival, events)
        if arrival:
            self.last_data = arrival

    def _feed(self, data: bytes, arrival: float, events: list) -> None:
        try:
            events += self.driver.feed(data, arrival)
        except Exception:  # a driver bug must not take the device (or the daemon) down
            self.driver.counters["driver_errors"] += 1
            log.exception("device %s: driver %s failed on %d bytes; dropped them", self.config.name,
                          self.config.driver, len(data))
            events += self.driver.link_lost()


class Ingest:
    """The tick loop over every device."""

    def __init__(self, runners: list[DeviceRunner], spool: AsyncSpool, max_interval: float = DEFAULT_INTERVAL_S,
                 ram_bytes: int = 64 << 20, on_durable: Callable[[np.ndarray], None] | None = None,
                 on_tick: Callable[[np.ndarray], None] | None = None) -> None:
        self.runners = list(runners)  # its own list: add() and remove() change it between ticks
        self.spool = spool
        self.max_interval = max_interval
        self.interval = min(max_interval, START_INTERVAL_S)
        self.durable_target = DURABLE_TARGET_S
        self._ages: list[np.ndarray] = []  # sample-to-durable ages since the interval was last steered
        self._steered = 0.0
        self.ram_bytes = ram_bytes
        self.on_durable = on_durable  # ages (s) of the oldest sample of each journal row, at its commit
        self.on_tick = on_tick  # how long each tick took (s)
        self.counters: dict[str, int] = {"ticks": 0, "held_back": 0, "ram_full": 0,
                                         "interval_ms": round(self.interval * 1000)}
        self._wake = asyncio.Event()
        self._stopping = False
        self._ram_full_logged = False
        for r in runners:
            self._hook(r)

    def _hook(self, runner: DeviceRunner) -> None:
        runner.transport.inbox.on_ready = self.wake
        runner.pipeline.on_change = self.wake

    def add(self, runner: DeviceRunner) -> None:
        """A device configured while running (a reload): ticks take it from now on."""
        self._hook(runner)
        self.runners.append(runner)

    async def remove(self, runner: DeviceRunner, timeout: float) -> None:
        """Drop a device whose transport has ended (a reload): the next ticks take what its inbox
        holds, cut its partial windows into packages and commit them; then it is no longer ticked."""
        runner.retiring = asyncio.get_running_loop().create_future()
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(runner.retiring), timeout)
        except asyncio.TimeoutError:
            log.error("device %s: windows still packaging %.0f s after its removal; they stay in the journal",
                      runner.config.name, timeout)
            if runner in self.runners:
                self.runners.remove(runner)
        await self.spool.flush()

    def _retire(self, runner: DeviceRunner) -> bool:
        """For a device being removed, after its inbox was staged: cut its windows once, then True
        (drop it) when every window is collected."""
        if not runner.windows_cut:
            runner.pipeline.close()
            runner.windows_cut = True
            return False
        return not runner.pipeline.busy

    def wake(self) -> None:
        """Something arrived (bytes, a finished window): a tick is due."""
        self._wake.set()

    async def run(self) -> None:
        """Tick until stop(): at most every `interval` s while data flows, at once in a backlog."""
        loop = asyncio.get_running_loop()
        last = 0.0
        backlog = False
        while not self._stopping:
            if backlog:
                await asyncio.sleep(0)  # the transports read while the last changes commit
            else:
                await self._wake.wait()
                wait = last + self.interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._wake.clear()
            if self._stopping:
                break
            if not await self._writer_ready():
                backlog = False
                continue
            last = loop.time()
            backlog = self.tick()
            if self.on_tick is not None:
                self.on_tick(np.array([loop.time() - last]))
            if last - self._steered >= STEER_S:
                self._steer(last)

    async def _writer_ready(self) -> bool:
        """Wait while the writer is behind; False when the spool holds its RAM bound (nothing is taken)."""
        spool = self.spool
        while spool.committing and spool.backlog and spool.full is None and spool.fatal is None \
                and not self._stopping:
            self.counters["held_back"] += 1
            await spool.progress()
        if spool.full is not None and spool.pending_bytes >= self.ram_bytes:
            self.counters["ram_full"] += 1
            if not self._ram_full_logged:
                self._ram_full_logged = True
                log.error("spool full and %.1f MB held in RAM: devices are no longer read until the spool takes"
                          " changes again (their bytes wait in the kernel and the devices)", self.ram_bytes / 1e6)
            await asyncio.sleep(self.spool.retry_s)
            self._wake.set()
            return False
        if self._ram_full_logged and spool.full is None:
            self._ram_full_logged = False
            log.warning("spool writable again: reading devices again")
        return True

    def tick(self) -> bool:
        """One pass over every device; returns True if an inbox was at its limit (a backlog)."""
        ch = Changes()
        backlog = False
        events: list = []
        owners: list[tuple[int, DevicePipeline]] = []  # (first index in ch.packages, pipeline)
        fresh: list[float] = []
        retired: list[DeviceRunner] = []
        for runner in self.runners:
            start = len(ch.packages)
            inbox = runner.transport.inbox
            pipeline = runner.pipeline
            if inbox.items:
                backlog |= inbox.bytes >= inbox.limit
                runner.decode(inbox.take(), events)
                if events:
                    pipeline.stage(events, ch)
                    events = []
            if runner.retiring is not None and self._retire(runner):
                retired.append(runner)
            pipeline.collect(ch, MAX_PACKAGE_BYTES)
            if len(ch.packages) > start:
                owners.append((start, pipeline))
            if pipeline.fresh:
                fresh += pipeline.fresh
                pipeline.fresh.clear()
            if runner.retiring is not None and not runner.retiring.done():
                self.wake()  # its windows are packaging: look again next tick
        for runner in retired:
            self.runners.remove(runner)
            runner.retiring.set_result(None)
        self.counters["ticks"] += 1
        if ch:
            self.spool.write(ch).add_done_callback(lambda f, fresh=fresh, owners=owners: self._done(f, fresh, owners))
        return backlog

    def _steer(self, now: float) -> None:
        """Shorter ticks when p99 sample-to-durable passed the target, longer when well below; judged on at
        least STEER_OBSERVATIONS ages, so that one slow commit among a few devices' is not a trend."""
        if sum(len(a) for a in self._ages) < STEER_OBSERVATIONS:
            return
        self._steered = now
        p99 = float(np.percentile(np.concatenate(self._ages), 99))
        self._ages = []
        if p99 > self.durable_target:
            self.interval = max(MIN_INTERVAL_S, self.interval * 0.7)
        elif p99 < DURABLE_SLACK_S:
            self.interval = min(self.max_interval, self.interval * 1.1)
        self.counters["interval_ms"] = round(self.interval * 1000)

    def _done(self, fut: asyncio.Future, fresh: list[float], owners: list[tuple[int, DevicePipeline]]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        result: CommitResult = fut.result()
        if fresh:
            ages = result.committed_at - np.asarray(fresh)
            self._ages.append(ages)
            if self.on_durable is not None:
                self.on_durable(ages)
        if result.duplicate_indices:  # a repeat already spooled under its key: counted on its device
            starts = [s for s, _ in owners]
            for i in result.duplicate_indices:
                owners[bisect.bisect_right(starts, i) - 1][1].committed(1)

    async def stop(self) -> None:
        """End the loop after its current tick."""
        self._stopping = True
        self._wake.set()

    async def finish(self, timeout: float) -> None:
        """At stop, after the transports ended: take what is left, cut every partial window, commit it all."""
        self.tick()
        for r in self.runners:
            r.pipeline.close()
        deadline = time.monotonic() + timeout
        while any(r.pipeline.busy for r in self.runners):
            self.tick()
            if time.monotonic() > deadline:
                log.error("windows still packaging after %.0f s at stop; they stay in the journal", timeout)
                break
            await asyncio.sleep(0.01)
        await self.spool.flush()
