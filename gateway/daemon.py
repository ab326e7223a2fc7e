"""The gateway daemon: one task per device (transport -> driver -> pipeline), one per uplink.

Failure policy: bad bytes and even a driver bug are counted and dropped (the device keeps
running); a spool that cannot commit is fatal: the daemon stops and exits non-zero, and the
journal lets the restarted daemon (systemd's Restart=) lose nothing that was durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway import __version__, drivers
from gateway.config import Config, DeviceConfig, UplinkConfig
from gateway.drivers.base import Driver, bad_frames
from gateway.logs import RecentErrors
from gateway.metrics import GatewayMetrics
from gateway.packagers.base import Packager
from gateway.packagers.hexoskin import HexoskinDataPackager
from gateway.packagers.humanapi import HubEcgPackager, HubVitalsPackager
from gateway.packagers.kardia import KardiaRecordingPackager
from gateway.packagers.up import UpCardiacEventPackager
from gateway.pipeline import DevicePipeline
from gateway.spool import AsyncSpool
from gateway.status.server import StatusServer
from gateway.systemd import Notifier
from gateway.transports import LINK_DOWN, LinkEvent, Transport, open_transport
from gateway.uplinks.base import Uplink
from gateway.uplinks.hexoskin import HexoskinUplink
from gateway.uplinks.humanapi import HumanApiUplink
from gateway.uplinks.kardia import KardiaUplink
from gateway.uplinks.up import UpUplink

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # seconds a device task gets to finish its last chunk at stop


def build_uplink(cfg: UplinkConfig) -> Uplink:
    """The uplink worker for one configured uplink."""
    if cfg.type == "kardia":
        return KardiaUplink(cfg.name, cfg.base_url, cfg.credential, timeout=cfg.timeout)
    if cfg.type == "humanapi":
        return HumanApiUplink(cfg.name, cfg.base_url, cfg.credential, timeout=cfg.timeout)
    if cfg.type == "up":
        return UpUplink(cfg.name, cfg.base_url, cfg.credential, timeout=cfg.timeout)
    if cfg.type == "hexoskin":
        return HexoskinUplink(cfg.name, cfg.base_url, cfg.extra["user"], cfg.credential, cfg.extra["api_key"],
                              cfg.extra["api_secret"], timeout=cfg.timeout)
    raise ValueError(f"unknown uplink type {cfg.type!r}")


def build_packagers(device: DeviceConfig, config: Config) -> list[Packager]:
    """One packager per uplink the device sends to, in that uplink's vendor shape."""
    out: list[Packager] = []
    for name in device.uplinks:
        up = config.uplinks[name]
        if up.type == "kardia":
            assert device.patient_id  # config validation guarantees it
            out.append(KardiaRecordingPackager(name, device.patient_id, device.recording_seconds, config.timezone))
        elif up.type == "humanapi":  # each takes its own channels: lead I, heart rate
            out.append(HubEcgPackager(name, device.recording_seconds, config.timezone))
            out.append(HubVitalsPackager(name, device.recording_seconds, config.timezone))
        elif up.type == "up":
            out.append(UpCardiacEventPackager(name, device.recording_seconds, config.timezone))
        elif up.type == "hexoskin":
            out.append(HexoskinDataPackager(name, device.recording_seconds, config.timezone))
    return out


@dataclass
class DeviceRunner:
    """One configured device's live parts."""

    config: DeviceConfig
    transport: Transport
    driver: Driver
    pipeline: DevicePipeline
    last_data: float | None = None

    def status(self) -> dict[str, Any]:
        """Link state, counters and streams."""
        return {"name": self.config.name, "driver": self.config.driver, "transport": self.transport.address,
                "connected": self.transport.connected, "last_data": self.last_data,
                "bad_frames": bad_frames(self.driver.counters),
                "transport_counters": dict(self.transport.counters), "driver_counters": dict(self.driver.counters),
                "pipeline_counters": dict(self.pipeline.counters), "streams": self.pipeline.status()}


class Gateway:
    """Builds the pieces from a Config and runs them until stopped."""

    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.notifier = notifier or Notifier()
        self.errors = RecentErrors(config.secrets())
        self.status_server: StatusServer | None = None
        self.started_at = time.time()
        self._watchdog_task: asyncio.Task | None = None
        self.spool: AsyncSpool | None = None
        self.uplinks: dict[str, Uplink] = {}
        self.devices: list[DeviceRunner] = []
        self._stop_devices = asyncio.Event()
        self._stop_uplinks = asyncio.Event()
        self._device_tasks: list[asyncio.Task] = []
        self._uplink_tasks: list[asyncio.Task] = []
        self._tick_task: asyncio.Task | None = None
        self.fatal: BaseException | None = None
        self.stopped = False

    async def start(self) -> None:
        """Open the spool, recover what a previous run left, start uplinks and devices."""
        cfg = self.config
        self.spool = AsyncSpool(cfg.spool.path, cfg.spool.sync, cfg.spool.max_bytes)
        for up in cfg.uplinks.values():
            uplink = build_uplink(up)
            self.uplinks[up.name] = uplink
            self.spool.on_commit(uplink.wake)
            uplink.on_ack = self.metrics.acked.labels(up.name).observe
        for dev in cfg.devices:
            pipeline = DevicePipeline(dev.name, build_packagers(dev, cfg), self.spool, cfg.spool.journal_interval)
            pipeline.on_durable = self.metrics.durable.labels(dev.name).observe
            driver_cls = drivers.load(dev.driver)
            driver = driver_cls()
            driver.local_zone = cfg.timezone
            transport = open_transport(dev.transport, driver_cls.ble_notify, driver_cls.ble_read)
            self.devices.append(DeviceRunner(dev, transport, driver, pipeline))
        logging.getLogger().addHandler(self.errors)
        if cfg.status.enabled:  # first: a taken port should stop the start before any device is read
            self.status_server = StatusServer(self, cfg.status.host, cfg.status.port, cfg.status.password)
            try:
                await self.status_server.start()
            except OSError:
                logging.getLogger().removeHandler(self.errors)
                await self.spool.close()
                raise
        await self._recover()
        for uplink in self.uplinks.values():
            self._uplink_tasks.append(asyncio.create_task(uplink.run(self.spool, self._stop_uplinks),
                                                          name=f"uplink {uplink.name}"))
        for runner in self.devices:
            self._device_tasks.append(asyncio.create_task(self._run_device(runner), name=f"device {runner.config.name}"))
        self._tick_task = asyncio.create_task(self._tick(), name="journal tick")
        self._watchdog_task = asyncio.create_task(self.notifier.watchdog(), name="systemd watchdog")
        log.info("gateway started: %d device(s), %d uplink(s), spool %s (sync=%s)", len(self.devices),
                 len(self.uplinks), cfg.spool.path, cfg.spool.sync)
        self.notifier.ready(f"{len(self.devices)} device(s), {len(self.uplinks)} uplink(s)")

    async def _recover(self) -> None:
        assert self.spool is not None
        by_name = {r.config.name: r.pipeline for r in self.devices}
        for rec in await self.spool.call(self.spool.spool.recover):
            pipeline = by_name.get(rec.stream.device)
            if pipeline is None:
                log.error("spool holds journaled samples of %s for device %r, which is no longer configured;"
                          " they stay in the spool", rec.stream.key, rec.stream.device)
                continue
            await pipeline.recover(rec)

    async def _run_device(self, runner: DeviceRunner) -> None:
        stream = runner.transport.stream()
        try:
            async for item in stream:
                if isinstance(item, LinkEvent):
                    if item is LINK_DOWN:
                        await runner.pipeline.handle(runner.driver.link_lost())
                    continue
                now = time.time()
                runner.last_data = now
                try:
                    events = runner.driver.feed(item, now)
                except Exception:  # a driver bug must not take the device (or the daemon) down
                    runner.driver.counters["driver_errors"] += 1
                    log.exception("device %s: driver %s failed on %d bytes; dropped them", runner.config.name,
                                  runner.config.driver, len(item))
                    runner.driver.link_lost()
                    continue
                await runner.pipeline.handle(events)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc, f"device {runner.config.name}")
        finally:
            await stream.aclose()

    async def _tick(self) -> None:
        interval = self.config.spool.journal_interval / 2
        try:
            while True:
                await asyncio.sleep(interval)
                for runner in self.devices:
                    await runner.pipeline.tick()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc, "journal tick")

    def _fail(self, exc: BaseException, where: str) -> None:
        log.critical("%s: %s: %s; stopping the gateway (the spool keeps everything committed)", where,
                     type(exc).__name__, exc, exc_info=exc)
        if self.fatal is None:
            self.fatal = exc
        self._stop_devices.set()

    async def wait(self) -> None:
        """Until stop is requested or something fatal happens."""
        await self._stop_devices.wait()

    def request_stop(self) -> None:
        """Ask run() to stop (signal handlers call this)."""
        self._stop_devices.set()

    async def stop(self, drain_timeout: float = 0.0) -> None:
        """Stop reading, package what the buffers hold, optionally let uplinks drain, close; idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self.notifier.stopping()
        self._stop_devices.set()
        for runner in self.devices:
            await runner.transport.close()  # each stream ends after the chunk in hand...
        # ...which its task still decodes and commits: cancelling mid-commit would lose it.
        done, late = await asyncio.wait(self._device_tasks, timeout=STOP_TIMEOUT) if self._device_tasks else ((), ())
        for task in late:
            log.error("%s did not stop within %.0f s; cancelled", task.get_name(), STOP_TIMEOUT)
            task.cancel()
        await asyncio.gather(*self._device_tasks, return_exceptions=True)
        if self._tick_task:
            self._tick_task.cancel()
            await asyncio.gather(self._tick_task, return_exceptions=True)
        if self.fatal is None:
            for runner in self.devices:
                await runner.pipeline.close()
        if drain_timeout > 0:
            await self.drain(drain_timeout)
        self._stop_uplinks.set()
        await asyncio.gather(*self._uplink_tasks, return_exceptions=True)
        if self.status_server is not None:
            await self.status_server.stop()
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
            await asyncio.gather(self._watchdog_task, return_exceptions=True)
        if self.spool is not None:
            await self.spool.close()
        logging.getLogger().removeHandler(self.errors)
        self.notifier.close()
        log.info("gateway stopped")

    async def drain(self, timeout: float) -> bool:
        """Wait until every uplink's backlog is delivered (or dead-lettered); False on timeout."""
        assert self.spool is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            backlog = (await self.spool.call(self.spool.spool.stats))["uplinks"]
            if not any(backlog.get(name, {}).get("pending") for name in self.uplinks):
                return True
            await asyncio.sleep(0.05)
        return False

    async def status(self) -> dict[str, Any]:
        """Devices, uplinks and spool, for the CLI and status pages."""
        spool = await self.spool.call(self.spool.spool.stats) if self.spool else {}
        return {"devices": [r.status() for r in self.devices],
                "uplinks": [u.status() for u in self.uplinks.values()], "spool": spool}

    async def full_status(self) -> dict[str, Any]:
        """status() plus version, uptime and the recent warnings and errors (the status page's data)."""
        return {"version": __version__, "started_at": self.started_at, "uptime_s": time.time() - self.started_at,
                **(await self.status()), "errors": list(self.errors.items)}


async def run(config: Config) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    import signal

    gateway = Gateway(config)
    await gateway.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.request_stop)
    await gateway.wait()
    await gateway.stop(drain_timeout=config.drain_on_stop)
    return 1 if gateway.fatal else 0
