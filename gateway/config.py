"""The gateway's TOML configuration: devices, uplinks, spool. Every invalid entry is reported.

    [gateway]
    timezone = "Europe/Berlin"        # optional; the UTC offset of recordedAt and other times (default: UTC)
    log_level = "INFO"
    log_format = "text"               # "text": one line per event; "json": one JSON object per line
    drain_on_stop = 5.0               # on SIGTERM, seconds the uplinks get to deliver the last packages
    packaging = "worker"              # "worker": analysis and bodies in a worker process; "inline": on the loop
    packaging_timeout = 60.0          # seconds a window may take in the worker before it goes without analysis

    [spool]
    path = "/var/lib/wearable-gateway/spool.db"   # relative paths are relative to this file
    sync = "full"                     # "full": fsync every commit; "normal": survives crashes, not power cuts
    journal_interval = 1.0            # seconds of signal a crash may lose at most (what is read, not yet durable)
    commit_interval = 0.2             # the longest between group commits (shorter when sample-to-durable needs it)
    max_mb = 0                        # cap on the spool's files on disk (0: no cap); waveforms give way first
    ram_mb = 64                       # what is held in RAM while the spool is full, before reading pauses

    [status]                          # the status page, /metrics and /api/status
    listen = "127.0.0.1:8765"         # loopback by default; another address needs a password
    password_env = "GATEWAY_STATUS_PASSWORD"   # or password = "..."; HTTP Basic, any user name

    [uplinks.kardia]
    type = "kardia"
    base_url = "https://api.kardia.com"
    api_key_env = "KARDIA_API_KEY"    # or api_key = "..." (the environment is preferred)
    in_flight = 4                     # uploads at once (HTTP keep-alive); every uplink type takes it

    [uplinks.hub]                     # optional: every device's summaries in one Human API style hub
    type = "humanapi"
    base_url = "http://127.0.0.1:8080/humanapi"
    token_env = "HUB_TOKEN"           # or token = "..."

    [uplinks.hexoskin]                # Hexoskin: HTTP Basic and a signed API key, both required
    type = "hexoskin"
    base_url = "https://api.hexoskin.com"
    user = "athlete@example.com"      # the account's e-mail
    password_env = "HEXOSKIN_PASSWORD"
    api_key = "PUBLIC-KEY"            # the public half, sent with every request
    api_secret_env = "HEXOSKIN_API_SECRET"   # the private half, only used to sign

    [uplinks.up]                      # UP cardiac events (an UP-class band's heart rate, pressures, events)
    type = "up"
    base_url = "https://jawbone.com"
    token_env = "UP_TOKEN"            # the OAuth Bearer token; or token = "..."

    [[devices]]
    name = "kardia-1"
    driver = "kardiamobile"
    transport = "serial:///dev/ttyACM0?baudrate=115200"
    uplinks = ["kardia", "hub"]
    patient_id = "wNSEDeLOEPQE5rznkJmwbnjpxfdst93i"
    recording_seconds = 30            # seconds per package (30 by default; a band's heart rate: 60)

    [[devices]]
    name = "band-1"
    driver = "upband"
    transport = "ble://any?service=0000180d-0000-1000-8000-00805f9b34fb&adapter=hci0"
    uplinks = ["up", "hub"]
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway import drivers
from gateway.transports import AddressError, parse_address

UPLINK_TYPES = ("kardia", "humanapi", "hexoskin", "up", "mqtt")
# The credential each uplink type takes: given literally or as <name>_env.
CREDENTIAL = {"kardia": "api_key", "humanapi": "token", "hexoskin": "password", "up": "token"}
# The built-in drivers whose data a vendor's uplink takes (the hub takes every device's).
VENDOR_DRIVERS = {"kardia": ("kardiamobile",), "hexoskin": ("hexoskin",), "up": ("upband",)}
BUILTIN_DRIVERS = ("kardiamobile", "hexoskin", "upband")
DEFAULT_RECORDING_SECONDS = {"upband": 60.0}  # else 30
# Further settings an uplink type needs: plain ones, then secrets (literal or <name>_env).
EXTRA = {"hexoskin": (("user", "api_key"), ("api_secret",))}
SYNC_MODES = ("full", "normal")
PACKAGING_MODES = ("worker", "inline")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
DEFAULT_STATUS_LISTEN = "127.0.0.1:8765"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Every key each table takes (docs/configuration.md describes each; a test checks it does).
TOP_KEYS = ("gateway", "spool", "status", "uplinks", "devices")
GATEWAY_KEYS = ("timezone", "log_level", "log_format", "drain_on_stop", "packaging", "packaging_timeout")
SPOOL_KEYS = ("path", "sync", "journal_interval", "commit_interval", "max_mb", "ram_mb")
STATUS_KEYS = ("enabled", "listen", "password", "password_env")
DEVICE_KEYS = ("name", "driver", "transport", "uplinks", "patient_id", "recording_seconds")
UPLINK_KEYS = ("type", "base_url", "timeout", "in_flight", "via")
# An mqtt uplink is the fleet's broker: the vendor uplinks that name it in `via` deliver through it.
BROKER_KEYS = ("username", "password", "password_env", "ca_file", "keepalive", "session_expiry", "client_id",
               "topic_prefix")
MQTT_KEYS = ("type", "base_url", "timeout", "in_flight", *BROKER_KEYS, "gateway_id", "status_interval")
DEFAULT_TOPIC_PREFIX = "wearable-gateway"
VIA_KEYS = ("type", "via", "timeout", "in_flight")  # a vendor uplink that delivers through a broker


def uplink_keys(utype: str | None) -> tuple[str, ...]:
    """The keys an uplink of this type takes: the common ones, its credential, its extra settings."""
    if utype == "mqtt":
        return MQTT_KEYS
    cred = CREDENTIAL.get(utype or "", "api_key")
    plain, secrets = EXTRA.get(utype or "", ((), ()))
    return (*UPLINK_KEYS, cred, f"{cred}_env", *plain, *secrets, *(f"{n}_env" for n in secrets))


class ConfigError(ValueError):
    """The configuration is invalid; `errors` lists every problem as 'path: message'."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"invalid configuration {source}:\n" + "\n".join(f"  - {e}" for e in errors))


@dataclass
class SpoolConfig:
    """Where and how durably packages are kept."""

    path: Path
    sync: str = "full"
    journal_interval: float = 1.0
    max_bytes: int = 0  # 0: no cap
    commit_interval: float = 0.2
    ram_bytes: int = 64_000_000


@dataclass
class StatusConfig:
    """The daemon's HTTP face: status page, /metrics, /api/status."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    password: str | None = field(repr=False, default=None)

    @property
    def url(self) -> str:
        """Where a local client reaches it."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"


@dataclass
class BrokerConfig:
    """An MQTT broker and this client's session on it (a gateway's fleet uplink, a relay)."""

    url: str  # mqtt://host[:port] or mqtts://host[:port]
    client_id: str
    username: str | None = None
    password: str | None = field(repr=False, default=None)
    ca_file: str | None = None  # mqtts: the CA bundle (default: the system's)
    keepalive: int = 30
    session_expiry: int = 86400  # seconds the broker keeps the session (and its queued messages) offline
    topic_prefix: str = DEFAULT_TOPIC_PREFIX


@dataclass
class UplinkConfig:
    """One vendor API endpoint and its credentials (or, type mqtt, the fleet's broker)."""

    name: str
    type: str
    base_url: str
    credential: str = field(repr=False, default="")  # API key (kardia), token (humanapi, up), password (hexoskin)
    timeout: float = 30.0
    extra: dict[str, str] = field(repr=False, default_factory=dict)  # hexoskin: user, api_key, api_secret
    in_flight: int = 4
    via: str | None = None  # the mqtt uplink this vendor uplink delivers through (a relay forwards it)
    broker: BrokerConfig | None = None  # type mqtt
    gateway_id: str = ""  # type mqtt: this gateway's name in topics
    status_interval: float = 10.0  # type mqtt: seconds between retained status messages

    def secrets(self) -> list[str]:
        """Credential values, so logs can be checked never to contain them."""
        broker = self.broker.password if self.broker else None
        return [s for s in (self.credential, self.extra.get("api_secret"), broker) if s]


@dataclass
class DeviceConfig:
    """One device: its driver, where it is connected, and where its data goes."""

    name: str
    driver: str
    transport: str
    uplinks: list[str]
    patient_id: str | None = None
    recording_seconds: float = 30.0


@dataclass
class Config:
    """The whole, validated configuration."""

    spool: SpoolConfig
    uplinks: dict[str, UplinkConfig]
    devices: list[DeviceConfig]
    timezone: tzinfo | None = None
    log_level: str = "INFO"
    drain_on_stop: float = 5.0
    source: str = "<memory>"
    log_format: str = "text"
    status: StatusConfig = field(default_factory=StatusConfig)
    packaging: str = "worker"
    packaging_timeout: float = 60.0

    def secrets(self) -> list[str]:
        """Every credential in the configuration (the logs must never show one)."""
        out = [s for u in self.uplinks.values() for s in u.secrets()]
        return out + ([self.status.password] if self.status.password else [])


class _Checker:
    """Collects errors with the path of the offending entry."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def table(self, parent: Mapping[str, Any], key: str, path: str, required: bool = True) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:
            if required:
                self.err(path, "missing table")
            return {}
        if not isinstance(value, dict):
            self.err(path, f"must be a table, not {type(value).__name__}")
            return {}
        return value

    def unknown(self, table: Mapping[str, Any], known: set[str], path: str) -> None:
        for key in sorted(set(table) - known):
            self.err(f"{path}.{key}" if path else key, f"unknown key (known: {', '.join(sorted(known))})")

    def string(self, table: Mapping[str, Any], key: str, path: str, default: str | None = None,
               required: bool = True) -> str | None:
        value = table.get(key, default)
        if value is None:
            if required:
                self.err(f"{path}.{key}", "missing")
            return None
        if not isinstance(value, str) or not value.strip():
            self.err(f"{path}.{key}", "must be a non-empty string")
            return None
        return value

    def number(self, table: Mapping[str, Any], key: str, path: str, default: float, lo: float, hi: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.err(f"{path}.{key}", f"must be a number, not {value!r}")
            return default
        if not lo <= value <= hi:
            self.err(f"{path}.{key}", f"must be between {lo:g} and {hi:g}, not {value:g}")
            return default
        return float(value)

    def choice(self, table: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...], default: str) -> str:
        value = table.get(key, default)
        if value not in choices:
            self.err(f"{path}.{key}", f"must be one of {', '.join(choices)}, not {value!r}")
            return default
        return value


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; ConfigError (one problem) if it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML file; raise ConfigError listing every problem."""
    path = Path(path)
    return parse(read_toml(path), path.parent, env, source=str(path))


RELAY_TOP_KEYS = ("relay", "spool", "status", "uplinks")
RELAY_KEYS = ("base_url", *BROKER_KEYS, "group", "receive_maximum", "log_level", "log_format", "drain_on_stop")
DEFAULT_RELAY_STATUS_LISTEN = "127.0.0.1:8766"


@dataclass
class RelayConfig:
    """A relay: the fleet's broker (a shared subscription), its own spool, the vendor uplinks."""

    broker: BrokerConfig
    group: str
    spool: SpoolConfig
    uplinks: dict[str, UplinkConfig]
    status: StatusConfig
    receive_maximum: int = 64
    log_level: str = "INFO"
    log_format: str = "text"
    drain_on_stop: float = 5.0
    source: str = "<memory>"

    def secrets(self) -> list[str]:
        """Every credential in the configuration."""
        out = [s for u in self.uplinks.values() for s in u.secrets()]
        out += [self.broker.password] if self.broker.password else []
        return out + ([self.status.password] if self.status.password else [])


def load_relay(path: str | Path, env: Mapping[str, str] | None = None) -> RelayConfig:
    """Read and validate a relay's TOML file; raise ConfigError listing every problem."""
    path = Path(path)
    data = read_toml(path)
    env = os.environ if env is None else env
    c = _Checker()
    c.unknown(data, set(RELAY_TOP_KEYS), "")
    rl = c.table(data, "relay", "relay")
    c.unknown(rl, set(RELAY_KEYS), "relay")
    broker = broker_config(c, rl, "relay", env, default_client_id=f"relay-{socket.gethostname()}")
    group = c.string(rl, "group", "relay", default="relays") or "relays"
    if not NAME_RE.match(group):
        c.err("relay.group", "must be letters, digits, '.', '_' or '-'")
    spool = _spool(c, data, path.parent)
    st = dict(c.table(data, "status", "status", required=False))
    st.setdefault("listen", DEFAULT_RELAY_STATUS_LISTEN)
    status = _status(c, st, env)
    uplinks = _uplinks(c, c.table(data, "uplinks", "uplinks"), env, relay=True)
    if not uplinks:
        c.err("uplinks", "configure at least one vendor uplink (the targets gateways name)")
    cfg = RelayConfig(broker, group, spool, uplinks, status,
                      int(c.number(rl, "receive_maximum", "relay", 64, 1, 65535)),
                      c.choice(rl, "log_level", "relay", LOG_LEVELS, "INFO"),
                      c.choice(rl, "log_format", "relay", LOG_FORMATS, "text"),
                      c.number(rl, "drain_on_stop", "relay", 5.0, 0.0, 300.0), str(path))
    if not c.errors:
        from gateway.spool import check_path

        problem = check_path(spool.path)
        if problem:
            c.err("spool.path", problem)
    if c.errors:
        raise ConfigError(str(path), c.errors)
    return cfg


def load_status(path: str | Path, env: Mapping[str, str] | None = None) -> StatusConfig | None:
    """The [status] table of a file whose rest may be invalid (to show its errors on the page);
    None if even that table (or the TOML) is invalid."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    c = _Checker()
    status = _status(c, c.table(data, "status", "status", required=False), os.environ if env is None else env)
    return None if c.errors else status


def parse(data: Mapping[str, Any], base_dir: Path, env: Mapping[str, str] | None = None,
          source: str = "<memory>") -> Config:
    """Validate an already-parsed configuration; relative paths resolve against base_dir."""
    env = os.environ if env is None else env
    c = _Checker()
    c.unknown(data, set(TOP_KEYS), "")

    gw = c.table(data, "gateway", "gateway", required=False)
    c.unknown(gw, set(GATEWAY_KEYS), "gateway")
    tz = None
    tz_name = c.string(gw, "timezone", "gateway", required=False)
    if tz_name:
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a "name" too long for a file
            c.err("gateway.timezone", f"unknown time zone {tz_name!r} (use an IANA name such as Europe/Berlin)")
    log_level = c.choice(gw, "log_level", "gateway", LOG_LEVELS, "INFO")
    log_format = c.choice(gw, "log_format", "gateway", LOG_FORMATS, "text")
    drain_on_stop = c.number(gw, "drain_on_stop", "gateway", 5.0, 0.0, 300.0)
    packaging = c.choice(gw, "packaging", "gateway", PACKAGING_MODES, "worker")
    packaging_timeout = c.number(gw, "packaging_timeout", "gateway", 60.0, 1.0, 3600.0)

    spool = _spool(c, data, base_dir)
    status = _status(c, c.table(data, "status", "status", required=False), env)

    uplinks = _uplinks(c, c.table(data, "uplinks", "uplinks"), env)

    devices: list[DeviceConfig] = []
    raw_devices = data.get("devices", [])
    if not isinstance(raw_devices, list) or not raw_devices:
        c.err("devices", "configure at least one [[devices]] entry")
        raw_devices = []
    names: set[str] = set()
    known_drivers = drivers.available()
    for i, dev in enumerate(raw_devices):
        path = f"devices[{i}]"
        if not isinstance(dev, dict):
            c.err(path, "must be a table")
            continue
        c.unknown(dev, set(DEVICE_KEYS), path)
        name = c.string(dev, "name", path) or f"device-{i}"
        if name in names:
            c.err(f"{path}.name", f"duplicate device name {name!r}")
        elif not NAME_RE.match(name):
            c.err(f"{path}.name", "must be letters, digits, '.', '_' or '-'")
        names.add(name)
        driver = c.string(dev, "driver", path)
        if driver and driver not in known_drivers:
            c.err(f"{path}.driver", f"unknown driver {driver!r} (installed: {', '.join(sorted(known_drivers))})")
        transport = c.string(dev, "transport", path)
        if transport:
            try:
                scheme = parse_address(transport)[0]
                if scheme == "ble" and driver in known_drivers and not drivers.load(driver).ble_notify:
                    c.err(f"{path}.transport", f"the {driver} driver has no BLE profile yet; use serial://")
            except AddressError as exc:
                c.err(f"{path}.transport", str(exc))
        ups = dev.get("uplinks")
        if not isinstance(ups, list) or not ups or not all(isinstance(u, str) for u in ups):
            c.err(f"{path}.uplinks", "must be a non-empty list of uplink names")
            ups = []
        for u in ups:
            if u not in uplinks:
                c.err(f"{path}.uplinks", f"no uplink named {u!r} (defined: {', '.join(sorted(uplinks)) or 'none'})")
                continue
            if uplinks[u].type == "mqtt":
                c.err(f"{path}.uplinks", f"{u!r} is a broker: name the vendor uplinks that deliver through it"
                                         f" (via = {u!r})")
                continue
            takes = VENDOR_DRIVERS.get(uplinks[u].type)
            if takes and driver in BUILTIN_DRIVERS and driver not in takes:
                c.err(f"{path}.uplinks", f"uplink {u!r} ({uplinks[u].type}) takes {' or '.join(takes)} devices,"
                                         f" not {driver}")
        patient = c.string(dev, "patient_id", path, required=False)
        if patient is None and any(uplinks.get(u) and uplinks[u].type == "kardia" for u in ups):
            c.err(f"{path}.patient_id", "required: Kardia recordings belong to a Kardia Pro patient")
        devices.append(DeviceConfig(name, driver or "", transport or "", list(ups), patient,
                                    c.number(dev, "recording_seconds", path,
                                             DEFAULT_RECORDING_SECONDS.get(driver or "", 30.0), 1.0, 300.0)))

    if not c.errors:  # what can be known of the spool's file before opening it
        from gateway.spool import check_path

        problem = check_path(spool.path)
        if problem:
            c.err("spool.path", problem)
    if c.errors:
        raise ConfigError(source, c.errors)
    return Config(spool, uplinks, devices, tz, log_level, drain_on_stop, source, log_format, status, packaging,
                  packaging_timeout)


def _spool(c: _Checker, data: Mapping[str, Any], base_dir: Path) -> SpoolConfig:
    """The [spool] table."""
    sp = c.table(data, "spool", "spool")
    c.unknown(sp, set(SPOOL_KEYS), "spool")
    spool_path = c.string(sp, "path", "spool") or "spool.db"
    journal_interval = c.number(sp, "journal_interval", "spool", 1.0, 0.05, 60.0)
    commit_interval = c.number(sp, "commit_interval", "spool", min(0.2, journal_interval / 2), 0.02, 60.0)
    if commit_interval > journal_interval / 2:
        c.err("spool.commit_interval", f"must be at most half of journal_interval ({journal_interval / 2:g} s),"
              " or a crash could lose more than journal_interval")
    spool = SpoolConfig(path=(base_dir / spool_path).resolve() if not Path(spool_path).is_absolute() else Path(spool_path),
                        sync=c.choice(sp, "sync", "spool", SYNC_MODES, "full"),
                        journal_interval=journal_interval,
                        max_bytes=int(c.number(sp, "max_mb", "spool", 0.0, 0.0, 1e6) * 1_000_000),
                        commit_interval=commit_interval,
                        ram_bytes=int(c.number(sp, "ram_mb", "spool", 64.0, 1.0, 4096.0) * 1_000_000))
    if spool.max_bytes and spool.max_bytes < 1_000_000:
        c.err("spool.max_mb", "must be 0 (no cap) or at least 1 MB: the WAL alone needs a share of it")
    return spool


def _uplinks(c: _Checker, table: Mapping[str, Any], env: Mapping[str, str], relay: bool = False) -> dict[str, UplinkConfig]:
    """The [uplinks.*] tables; on a relay, vendor uplinks only (they take what gateways sent `via` a broker)."""
    uplinks: dict[str, UplinkConfig] = {}
    for name, up in table.items():
        path = f"uplinks.{name}"
        if not isinstance(up, dict):
            c.err(path, "must be a table")
            continue
        if not NAME_RE.match(name):
            c.err(path, "name must be letters, digits, '.', '_' or '-'")
        types = tuple(t for t in UPLINK_TYPES if t != "mqtt") if relay else UPLINK_TYPES
        utype = c.choice(up, "type", path, types, types[0]) if "type" in up else None
        if utype is None:
            c.err(f"{path}.type", f"missing (one of {', '.join(types)})")
        if utype == "mqtt":
            uplinks[name] = _mqtt_uplink(c, name, up, path, env)
            continue
        via = None if relay else c.string(up, "via", path, required=False)
        # With `via`, the relay holds the vendor's address and credentials.
        c.unknown(up, set(VIA_KEYS) if via is not None else set(uplink_keys(utype)) - ({"via"} if relay else set()),
                  path)
        if via is not None:
            uplinks[name] = UplinkConfig(name, utype or "", "", timeout=c.number(up, "timeout", path, 30.0, 0.1, 600.0),
                                         in_flight=int(c.number(up, "in_flight", path, 16, 1, 256)), via=via)
            continue
        cred = CREDENTIAL.get(utype or "", "api_key")
        plain, secret_names = EXTRA.get(utype or "", ((), ()))
        base_url = c.string(up, "base_url", path)
        if base_url:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                c.err(f"{path}.base_url", f"must be an http:// or https:// URL, not {base_url!r}")
        secret = _secret(c, up, cred, path, env)
        extra = {n: c.string(up, n, path) or "" for n in plain}
        extra.update({n: _secret(c, up, n, path, env) or "" for n in secret_names})
        uplinks[name] = UplinkConfig(name, utype or "", base_url or "", secret or "",
                                     c.number(up, "timeout", path, 30.0, 0.1, 600.0), extra,
                                     int(c.number(up, "in_flight", path, 4, 1, 64)))
    for name, up in uplinks.items():
        if up.via is not None and (up.via not in uplinks or uplinks[up.via].type != "mqtt"):
            brokers = sorted(n for n, u in uplinks.items() if u.type == "mqtt")
            c.err(f"uplinks.{name}.via", f"no mqtt uplink named {up.via!r} (defined: {', '.join(brokers) or 'none'})")
    return uplinks


def _mqtt_uplink(c: _Checker, name: str, up: Mapping[str, Any], path: str, env: Mapping[str, str]) -> UplinkConfig:
    """A gateway's broker: where its vendor uplinks' packages go for the relays, and its status."""
    c.unknown(up, set(MQTT_KEYS), path)
    gateway_id = c.string(up, "gateway_id", path, default=socket.gethostname()) or "gateway"
    if not NAME_RE.match(gateway_id):
        c.err(f"{path}.gateway_id", "must be letters, digits, '.', '_' or '-' (it is a topic level)")
    broker = broker_config(c, up, path, env, default_client_id=f"wg-{gateway_id}")
    return UplinkConfig(name, "mqtt", broker.url, timeout=c.number(up, "timeout", path, 30.0, 0.1, 600.0),
                        in_flight=int(c.number(up, "in_flight", path, 16, 1, 256)), broker=broker,
                        gateway_id=gateway_id, status_interval=c.number(up, "status_interval", path, 10.0, 1.0, 3600.0))


def broker_config(c: _Checker, table: Mapping[str, Any], path: str, env: Mapping[str, str],
                  default_client_id: str) -> BrokerConfig:
    """The broker keys of a table (base_url, username, password[_env], ca_file, ...)."""
    from gateway.broker import parse_url

    url = c.string(table, "base_url", path) or ""
    if url:
        try:
            parse_url(url)
        except ValueError as exc:
            c.err(f"{path}.base_url", str(exc))
    username = c.string(table, "username", path, required=False)
    password = _secret(c, table, "password", path, env) if ("password" in table or "password_env" in table) else None
    if password and not username:
        c.err(f"{path}.username", "required with a password")
    ca_file = c.string(table, "ca_file", path, required=False)
    if ca_file and not Path(ca_file).is_file():
        c.err(f"{path}.ca_file", f"no such file: {ca_file}")
    client_id = c.string(table, "client_id", path, default=default_client_id) or default_client_id
    prefix = c.string(table, "topic_prefix", path, default=DEFAULT_TOPIC_PREFIX) or DEFAULT_TOPIC_PREFIX
    if any(ch in prefix for ch in "+#") or prefix.startswith(("/", "$")) or prefix.endswith("/"):
        c.err(f"{path}.topic_prefix", f"must be topic levels without '+', '#', a leading '/' or '$', not {prefix!r}")
    return BrokerConfig(url, client_id, username, password, ca_file,
                        int(c.number(table, "keepalive", path, 30, 5, 3600)),
                        int(c.number(table, "session_expiry", path, 86400, 0, 30 * 86400)), prefix)


def _status(c: _Checker, st: Mapping[str, Any], env: Mapping[str, str]) -> StatusConfig:
    """The [status] table: where the status server listens and, off loopback, its password."""
    c.unknown(st, set(STATUS_KEYS), "status")
    enabled = st.get("enabled", True)
    if not isinstance(enabled, bool):
        c.err("status.enabled", "must be true or false")
        enabled = True
    listen = c.string(st, "listen", "status", default=DEFAULT_STATUS_LISTEN) or DEFAULT_STATUS_LISTEN
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    port = int(port_text) if port_text.isdigit() else -1
    if not host or not 0 <= port < 65536:
        c.err("status.listen", f"must be HOST:PORT (port 0: any free port), not {listen!r}")
        return StatusConfig(enabled)
    password = None
    if "password" in st or "password_env" in st:
        password = _secret(c, st, "password", "status", env)
    elif enabled and not _is_loopback(host):
        c.err("status.password", f"required when the status page listens beyond loopback ({listen});"
                                 " set password_env (or password)")
    return StatusConfig(enabled, host, port, password)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _secret(c: _Checker, table: Mapping[str, Any], key: str, path: str, env: Mapping[str, str]) -> str | None:
    """A credential given literally (`key`) or by environment variable (`key_env`), exactly one."""
    literal, env_name = table.get(key), table.get(f"{key}_env")
    if literal is not None and env_name is not None:
        c.err(f"{path}.{key}", f"give {key} or {key}_env, not both")
        return None
    if env_name is not None:
        if not isinstance(env_name, str) or not env_name:
            c.err(f"{path}.{key}_env", "must name an environment variable")
            return None
        value = env.get(env_name)
        if not value:
            c.err(f"{path}.{key}_env", f"environment variable {env_name} is not set")
            return None
        return value
    if literal is None:
        c.err(f"{path}.{key}", f"missing (or set {key}_env to read it from the environment)")
        return None
    if not isinstance(literal, str) or not literal:
        c.err(f"{path}.{key}", "must be a non-empty string")
        return None
    return literal
