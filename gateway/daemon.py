"""The gateway daemon: transports read into inboxes, one ingest loop ticks every device into one
group commit, a worker process packages windows, one task per uplink delivers.

Failure policy: bad bytes and even a driver bug are counted and dropped (the device keeps
running); a spool that has no room (its cap, a full disk) keeps changes in RAM up to a bound and
then stops reading devices until it has room again; a spool that fails otherwise is fatal: the
daemon stops and exits non-zero, and the journal lets the restarted daemon (systemd's
Restart=) lose nothing that was durable.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import time
from typing import Any

import numpy as np

from gateway import __version__, drivers, logs
from gateway.config import Config, DeviceConfig, UplinkConfig
from gateway.ingest import DeviceRunner, Ingest
from gateway.logs import RecentErrors
from gateway.metrics import GatewayMetrics
from gateway.packagers.base import Packager
from gateway.packagers.hexoskin import HexoskinDataPackager
from gateway.packagers.humanapi import HubEcgPackager, HubVitalsPackager
from gateway.packagers.kardia import KardiaRecordingPackager
from gateway.packagers.up import UpCardiacEventPackager
from gateway.packagers.worker import PackagingWorker
from gateway.pipeline import DevicePipeline
from gateway.spool import AsyncSpool, SpoolFull
from gateway.status.server import StatusServer, build_error_app
from gateway.systemd import Notifier
from gateway.transports import open_transport
from gateway.uplinks.base import Uplink
from gateway.uplinks.hexoskin import HexoskinUplink
from gateway.uplinks.humanapi import HumanApiUplink
from gateway.uplinks.kardia import KardiaUplink
from gateway.uplinks.mqtt import FleetLink, MqttUplink
from gateway.uplinks.up import UpUplink

log = logging.getLogger(__name__)

__all__ = ["DeviceRunner", "Gateway", "build_packagers", "build_uplink", "run"]

STOP_TIMEOUT = 10.0  # seconds the transports get to hand over what they read, at stop
SPOOL_WAIT_S = 5.0  # between attempts to open a spool whose disk is full at start
MIN_INBOX_BYTES = 64


def build_uplink(cfg: UplinkConfig, links: dict[str, FleetLink] | None = None) -> Uplink:
    """The uplink worker for one configured uplink (through its fleet link, when it names one in `via`)."""
    if cfg.via is not None:
        if not links or cfg.via not in links:
            raise ValueError(f"uplink {cfg.name}: no fleet link {cfg.via!r}")
        return MqttUplink(cfg.name, links[cfg.via], timeout=cfg.timeout, in_flight=cfg.in_flight)
    if cfg.type == "kardia":
        up: Uplink = KardiaUplink(cfg.name, cfg.base_url, cfg.credential, timeout=cfg.timeout)
    elif cfg.type == "humanapi":
        up = HumanApiUplink(cfg.name, cfg.base_url, cfg.credential, timeout=cfg.timeout)
    elif cfg.type == "up":
        up = UpUplink(cfg.name, cfg.base_url, cfg.credential, timeout=cfg.timeout)
    elif cfg.type == "hexoskin":
        up = HexoskinUplink(cfg.name, cfg.base_url, cfg.extra["user"], cfg.credential, cfg.extra["api_key"],
                            cfg.extra["api_secret"], timeout=cfg.timeout)
    else:
        raise ValueError(f"unknown uplink type {cfg.type!r}")
    up.in_flight = cfg.in_flight
    return up


def _brokers(config: Config) -> dict[str, UplinkConfig]:
    """The mqtt uplinks of a configuration."""
    return {n: u for n, u in config.uplinks.items() if u.type == "mqtt"}


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


def raise_open_file_limit() -> int:
    """Raise this process's soft descriptor limit to its hard limit (a port is one descriptor); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
        except (ValueError, OSError):
            pass
    return soft


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
        self.worker = PackagingWorker("inline" if config.packaging == "inline" else "process",
                                      timeout=config.packaging_timeout)
        self.uplinks: dict[str, Uplink] = {}
        self.links: dict[str, FleetLink] = {}  # mqtt uplinks: the fleet's broker sessions
        self.devices: list[DeviceRunner] = []
        self.ingest: Ingest | None = None
        self._stop_devices = asyncio.Event()
        self._uplink_stops: dict[str, asyncio.Event] = {}
        self._transport_tasks: dict[str, asyncio.Task] = {}
        self._uplink_tasks: dict[str, asyncio.Task] = {}
        self._reloading = asyncio.Lock()
        self._ingest_task: asyncio.Task | None = None
        self.fatal: BaseException | None = None
        self.stopped = False

    async def start(self) -> None:
        """Open the spool, recover what a previous run left, start uplinks, devices and the ingest."""
        cfg = self.config
        limit = raise_open_file_limit()
        if len(cfg.devices) * 2 + 64 > limit:
            log.warning("%d devices need about %d file descriptors; this process may open %d (raise LimitNOFILE=)",
                        len(cfg.devices), len(cfg.devices) * 2 + 64, limit)
        self.spool = await self._open_spool()
        if self.spool is None:  # asked to stop while waiting for disk space
            return
        self.spool.on_result = lambda r: self.metrics.commit.observe_many(np.array([r.seconds]))
        known = await self.spool.read(self.spool.reader.streams)
        for up in cfg.uplinks.values():
            if up.type == "mqtt":
                self.links[up.name] = FleetLink(up, self.fleet_status)
        for up in cfg.uplinks.values():
            if up.type != "mqtt":
                self._add_uplink(up)
        for dev in cfg.devices:
            self.devices.append(self._build_device(dev, known))
        self.ingest = Ingest(self.devices, self.spool, cfg.spool.commit_interval, cfg.spool.ram_bytes,
                             self.metrics.durable.observe_many, self.metrics.tick.observe_many)
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
        for link in self.links.values():
            link.start()
        for name in self.uplinks:
            self._start_uplink(name)
        for runner in self.devices:
            self._start_transport(runner)
        self._ingest_task = asyncio.create_task(self._run_ingest(), name="ingest")
        self._watchdog_task = asyncio.create_task(self.notifier.watchdog(), name="systemd watchdog")
        log.info("gateway started: %d device(s), %d uplink(s), spool %s (sync=%s, commit every %g s), packaging %s",
                 len(self.devices), len(self.uplinks), cfg.spool.path, cfg.spool.sync, cfg.spool.commit_interval,
                 cfg.packaging)
        # What start-up built lives as long as the daemon: out of the collector's way, so that a full
        # collection does not walk it (70-100 ms pauses of the loop at 1,000 devices; 10-40 ms after).
        gc.collect()
        gc.freeze()
        self.notifier.ready(f"{len(self.devices)} device(s), {len(self.uplinks)} uplink(s)")

    def _add_uplink(self, up: UplinkConfig) -> None:
        assert self.spool is not None
        uplink = build_uplink(up, self.links)
        self.uplinks[up.name] = uplink
        self.spool.on_commit(uplink.wake)
        uplink.on_ack = self.metrics.acked.labels(up.name).observe

    def _start_uplink(self, name: str) -> None:
        assert self.spool is not None
        stop = self._uplink_stops[name] = asyncio.Event()
        self._uplink_tasks[name] = asyncio.create_task(self.uplinks[name].run(self.spool, stop), name=f"uplink {name}")

    async def _remove_uplink(self, name: str) -> None:
        """Stop one uplink (uploads under way finish first); what it has not delivered stays spooled."""
        assert self.spool is not None
        uplink = self.uplinks.pop(name)
        self._uplink_stops.pop(name).set()
        await asyncio.gather(self._uplink_tasks.pop(name), return_exceptions=True)
        self.spool.off_commit(uplink.wake)

    def _build_device(self, dev: DeviceConfig, known: dict) -> DeviceRunner:
        pipeline = DevicePipeline(dev.name, build_packagers(dev, self.config), self.worker,
                                  {k: s for k, s in known.items() if s.device == dev.name})
        driver_cls = drivers.load(dev.driver)
        driver = driver_cls()
        driver.local_zone = self.config.timezone
        transport = open_transport(dev.transport, driver_cls.ble_notify, driver_cls.ble_read)
        # What has left the kernel and is not yet durable stays within journal_interval of signal.
        transport.inbox.limit = max(MIN_INBOX_BYTES, int(driver_cls.bytes_per_second
                                                         * self.config.spool.journal_interval / 4))
        return DeviceRunner(dev, transport, driver, pipeline)

    def _start_transport(self, runner: DeviceRunner) -> None:
        self._transport_tasks[runner.config.name] = asyncio.create_task(self._run_transport(runner),
                                                                        name=f"transport {runner.config.name}")

    async def _remove_device(self, runner: DeviceRunner) -> None:
        """Stop reading a device, package what its buffers hold (partial windows too), commit, drop it."""
        assert self.ingest is not None
        runner.closing = True
        await runner.transport.close()  # it hands over what it read, then ends
        task = self._transport_tasks.pop(runner.config.name)
        if (await asyncio.wait([task], timeout=STOP_TIMEOUT))[1]:
            log.error("transport of %s did not stop within %.0f s; cancelled", runner.config.name, STOP_TIMEOUT)
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self.ingest.remove(runner, self.config.packaging_timeout + 5)
        self.devices.remove(runner)

    async def reload(self) -> bool:
        """Read the configuration file again (SIGHUP) and apply what changed in devices and uplinks:
        removed or changed ones stop (a device's partial windows are packaged first), new or changed
        ones start; what is spooled stays. An invalid file changes nothing. False if not applied."""
        from dataclasses import replace

        from gateway.config import ConfigError, load

        async with self._reloading:
            if self.stopped or self.ingest is None or self.spool is None:
                return False
            self.notifier.reloading()
            try:
                try:
                    new = load(self.config.source)
                except ConfigError as exc:
                    log.error("reload refused; the running configuration stays: %s", str(exc).replace("\n", " "))
                    return False
                old = self.config
                if _brokers(old) != _brokers(new):  # a broker session is the fleet link's for the process's life
                    log.warning("reload: the mqtt uplinks changed; that takes effect at a restart (systemctl"
                                " restart wearable-gateway)")
                    new = replace(new, uplinks={**{n: u for n, u in new.uplinks.items() if u.type != "mqtt"},
                                                **_brokers(old)})
                    lost = [n for n, u in new.uplinks.items() if u.via is not None and u.via not in self.links]
                    if lost:
                        log.error("reload refused; the running configuration stays: uplinks %s deliver via a"
                                  " broker that is not running yet (restart)", ", ".join(lost))
                        return False
                fixed = [k for k in ("spool", "status", "timezone", "packaging", "packaging_timeout", "log_format")
                         if getattr(old, k) != getattr(new, k)]
                if fixed:
                    log.warning("reload: [%s] changed; that takes effect at a restart (systemctl restart"
                                " wearable-gateway)", ", ".join(fixed))
                retyped = {n for n, u in old.uplinks.items() if n in new.uplinks and new.uplinks[n].type != u.type}
                old_dev, new_dev = {d.name: d for d in old.devices}, {d.name: d for d in new.devices}
                changed_dev = {n for n in old_dev if n in new_dev and (
                    old_dev[n] != new_dev[n] or any(u in retyped for u in new_dev[n].uplinks))}
                gone_dev = [r for r in self.devices if r.config.name not in new_dev or r.config.name in changed_dev]
                gone_up = [n for n in old.uplinks if n not in new.uplinks or old.uplinks[n] != new.uplinks[n]]
                for runner in gone_dev:
                    await self._remove_device(runner)
                for name in gone_up:
                    await self._remove_uplink(name)
                self.config = replace(old, uplinks=new.uplinks, devices=new.devices, drain_on_stop=new.drain_on_stop)
                logs.add_secrets(self.config.secrets())
                added_up = [n for n in new.uplinks if n not in self.uplinks and new.uplinks[n].type != "mqtt"]
                for name in added_up:
                    self._add_uplink(new.uplinks[name])
                    self._start_uplink(name)
                added_dev = [d for d in new.devices if d.name not in {r.config.name for r in self.devices}]
                known = await self.spool.read(self.spool.reader.streams) if added_dev else {}
                left = await self.spool.read(self.spool.reader.recover) if added_dev else []
                for dev in added_dev:
                    runner = self._build_device(dev, known)
                    for rec in left:  # what an earlier run journaled for it and never packaged
                        if rec.stream.device == dev.name:
                            runner.pipeline.recover(rec)
                    self.devices.append(runner)
                    self.ingest.add(runner)
                    self._start_transport(runner)
                log.info("configuration reloaded from %s: devices %d (+%d, -%d), uplinks %d (+%d, -%d)",
                         self.config.source, len(self.devices), len(added_dev), len(gone_dev), len(self.uplinks),
                         len(added_up), len(gone_up))
                return True
            finally:
                self.notifier.ready(f"{len(self.devices)} device(s), {len(self.uplinks)} uplink(s)")

    async def _open_spool(self) -> AsyncSpool | None:
        """The spool; while its disk is too full to open it, wait (one line): a restart loop would not help.
        None if a stop is requested meanwhile."""
        said = False
        while not self._stop_devices.is_set():
            try:
                return await asyncio.to_thread(AsyncSpool, self.config.spool.path, self.config.spool.sync,
                                               self.config.spool.max_bytes)
            except SpoolFull as exc:
                if not said:
                    log.error("%s; waiting for disk space, trying again every %.0f s", exc, SPOOL_WAIT_S)
                    said = True
                self.notifier.status(f"waiting for disk space for the spool: {exc}")
                try:
                    await asyncio.wait_for(self._stop_devices.wait(), SPOOL_WAIT_S)
                except asyncio.TimeoutError:
                    pass
        return None

    async def _recover(self) -> None:
        assert self.spool is not None
        by_name = {r.config.name: r.pipeline for r in self.devices}
        for rec in await self.spool.read(self.spool.reader.recover):
            pipeline = by_name.get(rec.stream.device)
            if pipeline is None:
                log.error("spool holds journaled samples of %s for device %r, which is no longer configured;"
                          " they stay in the spool", rec.stream.key, rec.stream.device)
                continue
            pipeline.recover(rec)

    async def _run_transport(self, runner: DeviceRunner) -> None:
        try:
            await runner.transport.run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a transport must never end by itself: that is a bug
            self._fail(exc, f"transport of device {runner.config.name}")

    async def _run_ingest(self) -> None:
        assert self.ingest is not None and self.spool is not None
        writer_watch = asyncio.ensure_future(self._watch_spool())
        try:
            await self.ingest.run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc, "ingest")
        finally:
            writer_watch.cancel()

    async def _watch_spool(self) -> None:
        """A spool that fails for anything but room is fatal."""
        assert self.spool is not None
        while self.spool.fatal is None:
            await self.spool.progress()
        self._fail(self.spool.fatal, "spool")

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
        async with self._reloading:  # a reload under way ends first
            pass
        for runner in self.devices:
            runner.closing = True
            await runner.transport.close()  # each hands over what it read, then ends
        tasks = list(self._transport_tasks.values())
        done, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT) if tasks else ((), ())
        for task in late:
            log.error("%s did not stop within %.0f s; cancelled", task.get_name(), STOP_TIMEOUT)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.ingest is not None:
            await self.ingest.stop()
        if self._ingest_task is not None:
            await asyncio.gather(self._ingest_task, return_exceptions=True)
        if self.fatal is None and self.ingest is not None:
            await self.ingest.finish(self.config.packaging_timeout + 5)
        if drain_timeout > 0 and self.fatal is None:
            await self.drain(drain_timeout)
        for stop in self._uplink_stops.values():
            stop.set()
        await asyncio.gather(*self._uplink_tasks.values(), return_exceptions=True)
        for link in self.links.values():
            await link.close()
        if self.status_server is not None:
            await self.status_server.stop()
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
            await asyncio.gather(self._watchdog_task, return_exceptions=True)
        await self.worker.close()
        if self.spool is not None:
            await self.spool.close()
        logging.getLogger().removeHandler(self.errors)
        self.notifier.close()
        log.info("gateway stopped")

    async def drain(self, timeout: float) -> bool:
        """Wait until every uplink's backlog is delivered (or dead-lettered); False on timeout."""
        assert self.spool is not None
        return await self.spool.delivered(self.uplinks, timeout)

    async def status(self) -> dict[str, Any]:
        """Devices, uplinks and spool, for the CLI and status pages."""
        spool: dict[str, Any] = {}
        if self.spool:
            spool = await self.spool.read(self.spool.reader.stats, journal=False)
            spool["journal_samples"] = sum(r.pipeline.journal_samples() for r in self.devices)
            spool["held_in_ram_bytes"] = self.spool.pending_bytes
            spool["full"] = self.spool.full
            spool["writer"] = dict(self.spool.counters)
        devices = [r.status() for r in self.devices]
        for d, r in zip(devices, self.devices):  # the last accepted upload of any of its streams, by any uplink
            keys = {s["stream"] for s in d["streams"]} | set(r.pipeline.known)
            times = [t for u in self.uplinks.values() for k in keys if (t := u.last_ok_by_stream.get(k))]
            d["last_upload"] = max(times, default=None)
        return {"devices": devices,
                "uplinks": [u.status() for u in self.uplinks.values()], "spool": spool,
                "links": [link.status() for link in self.links.values()],
                "packaging": {"mode": self.worker.mode, "pending": self.worker.pending,
                              **dict(self.worker.counters)},
                "ingest": dict(self.ingest.counters) if self.ingest else {}}

    async def fleet_status(self) -> dict[str, Any]:
        """What a gateway tells the fleet (its retained status message): devices, links, backlog, last error."""
        st = await self.status()
        devices = [{k: d.get(k) for k in ("name", "driver", "transport", "connected", "down_reason", "last_data",
                                          "last_upload", "last_analysis")} for d in st["devices"]]
        backlog = {n: {"pending": u.get("pending", 0), "oldest_age_s": u.get("oldest_age_s", 0.0)}
                   for n, u in st["spool"].get("uplinks", {}).items()}
        last_error = self.errors.items[-1] if self.errors.items else None
        return {"version": __version__, "started_at": self.started_at, "devices": devices,
                "uplinks": {u["name"]: u["state"] for u in st["uplinks"]}, "backlog": backlog,
                "dead_letters": st["spool"].get("dead_letters", 0), "last_error": last_error}

    async def full_status(self) -> dict[str, Any]:
        """status() plus version, uptime and the recent warnings and errors (the status page's data)."""
        return {"version": __version__, "started_at": self.started_at, "uptime_s": time.time() - self.started_at,
                **(await self.status()), "errors": list(self.errors.items)}


async def serve_config_error(path: str, notifier: Notifier | None = None) -> Config | None:
    """The file is invalid: serve its errors on the status address (when its [status] table is
    valid) until it is fixed and SIGHUP comes (return the new Config) or SIGTERM/SIGINT (None)."""
    import signal

    from gateway.config import ConfigError, load, load_status

    status = load_status(path)
    if status is None or not status.enabled:
        return None
    try:
        return load(path)  # fixed meanwhile
    except ConfigError as exc:
        errors = exc.errors
    notifier = notifier or Notifier()
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, events.put_nowait, sig)
    server = StatusServer(None, status.host, status.port, status.password,
                          app=build_error_app(path, errors, status.password))  # it shows `errors` as they change
    try:
        try:
            await server.start()
        except OSError as exc:
            log.error("invalid configuration %s, and its status address cannot be served (%s)", path, exc)
            return None
        while True:
            log.error("invalid configuration %s (%d problem(s)): %s; its errors are on the status page; fix it"
                      " and reload (SIGHUP)", path, len(errors), "; ".join(errors))
            notifier.ready(f"invalid configuration: {errors[0]}")
            if await events.get() != signal.SIGHUP:
                return None
            try:
                config = load(path)
            except ConfigError as exc:
                errors[:] = exc.errors
                continue
            log.info("configuration %s is valid now: starting", path)
            return config
    finally:
        await server.stop()
        notifier.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


GIL_SWITCH_S = 0.001  # the spool's threads take the GIL back within 1 ms of the loop's work, not 5


async def run(config: Config) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    import signal
    import sys

    sys.setswitchinterval(GIL_SWITCH_S)
    gateway = Gateway(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.request_stop)
    reloads: set[asyncio.Task] = set()

    def on_hup() -> None:
        log.info("SIGHUP: reloading the configuration from %s", config.source)
        task = loop.create_task(gateway.reload(), name="reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await gateway.start()
    if gateway.spool is None:
        log.info("gateway stopped before its spool could be opened")
        return 0
    await gateway.wait()
    await gateway.stop(drain_timeout=config.drain_on_stop)
    return 1 if gateway.fatal else 0
