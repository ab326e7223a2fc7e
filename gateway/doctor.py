"""`wearable-gateway doctor`: what on this machine would stop the gateway from working.

Each check answers ok, warn or fail with one line saying why and what to do:
- the configuration is valid;
- BLE: a Bluetooth adapter (/sys/class/bluetooth/hci*) and its power state, when a device or
  the Pi needs one;
- serial: every configured port exists and this user may read and write it (the dialout group);
- clock: synchronised by NTP (timedatectl), since recordings carry wall-clock time;
- disk: free space where the spool lives, against its size cap;
- uplinks: every base URL answers HTTP (any status counts: the network and TLS work).
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.config import Config, ConfigError, load
from gateway.transports import parse_address

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_BYTES = 500_000_000


@dataclass
class Check:
    """One finding."""

    name: str
    state: str
    detail: str


def check_ble(sys_class: Path = Path("/sys/class/bluetooth")) -> Check:
    """A Bluetooth adapter is present (and up, where sysfs says so)."""
    adapters = sorted(p.name for p in sys_class.glob("hci*")) if sys_class.is_dir() else []
    if not adapters:
        return Check("ble", WARN, "no Bluetooth adapter (/sys/class/bluetooth is empty): BLE devices cannot be"
                                  " reached; plug in a USB dongle or enable the Pi's own (dtoverlay)")
    return Check("ble", OK, f"adapter(s): {', '.join(adapters)}")


def check_serial(config: Config) -> list[Check]:
    """Every serial device path exists and is readable and writable by this user."""
    out = []
    for dev in config.devices:
        scheme, target, _ = parse_address(dev.transport)
        if scheme != "serial":
            continue
        path = Path(target)
        if not path.exists():
            out.append(Check(f"serial {dev.name}", FAIL, f"{path} does not exist: is the device plugged in?"))
        elif not os.access(path, os.R_OK | os.W_OK):
            try:
                group = grp.getgrgid(path.stat().st_gid).gr_name
            except KeyError:
                group = str(path.stat().st_gid)
            out.append(Check(f"serial {dev.name}", FAIL, f"{path}: no read/write permission for this user;"
                                                         f" add it to the {group!r} group"))
        else:
            out.append(Check(f"serial {dev.name}", OK, f"{path} readable and writable"))
    return out


def check_clock(run=subprocess.run) -> Check:
    """NTP synchronisation as timedatectl reports it."""
    try:
        proc = run(["timedatectl", "show", "--property=NTPSynchronized", "--value"], capture_output=True,
                   text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("clock", WARN, f"cannot ask timedatectl ({exc}); make sure NTP keeps the clock right")
    value = proc.stdout.strip()
    if proc.returncode != 0 or value not in ("yes", "no"):
        return Check("clock", WARN, "timedatectl cannot tell (systemd not running?); make sure NTP keeps the"
                                    " clock right: recordings carry wall-clock time")
    if value == "no":
        return Check("clock", FAIL, "the clock is not NTP-synchronised: recording times may be wrong"
                                    " (timedatectl set-ntp true)")
    return Check("clock", OK, "NTP-synchronised")


def check_disk(config: Config) -> Check:
    """Free space where the spool lives."""
    where = config.spool.path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    need = max(MIN_FREE_BYTES, 2 * config.spool.max_bytes)
    text = f"{free / 1e9:.1f} GB free at {where}"
    if free < need:
        return Check("disk", FAIL if free < need / 4 else WARN, f"{text}; want at least {need / 1e9:.1f} GB")
    return Check("disk", OK, text)


def check_uplinks(config: Config, timeout: float = 5.0) -> list[Check]:
    """Each uplink's base URL answers HTTP."""
    out = []
    for up in config.uplinks.values():
        if up.via is not None:
            out.append(Check(f"uplink {up.name}", OK, f"delivers via {up.via} (the relay reaches the vendor)"))
            continue
        if up.type == "mqtt":
            out.append(check_broker(up.name, up.base_url, timeout))
            continue
        try:
            r = httpx.get(up.base_url, timeout=timeout)
            out.append(Check(f"uplink {up.name}", OK, f"{up.base_url} answers (HTTP {r.status_code})"))
        except httpx.HTTPError as exc:
            out.append(Check(f"uplink {up.name}", FAIL, f"{up.base_url} unreachable: {type(exc).__name__}: {exc}"))
    return out


def check_broker(name: str, url: str, timeout: float = 5.0) -> Check:
    """The broker's port accepts a TCP connection (credentials are the daemon's to try)."""
    import socket

    from gateway.broker import parse_url

    host, port, _ = parse_url(url)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return Check(f"uplink {name}", FAIL, f"broker {url} unreachable: {exc}")
    return Check(f"uplink {name}", OK, f"broker {url} accepts connections")


def run_checks(config_path: str, env: dict[str, str] | None = None) -> list[Check]:
    """Every check, in the order a person would fix things."""
    try:
        config = load(config_path, env)
    except ConfigError as exc:
        return [Check("config", FAIL, str(exc).replace("\n", " "))]
    checks = [Check("config", OK, f"{config_path} is valid")]
    checks.append(check_ble())
    checks += check_serial(config)
    checks.append(check_clock())
    checks.append(check_disk(config))
    checks += check_uplinks(config)
    return checks
