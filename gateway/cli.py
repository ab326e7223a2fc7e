"""wearable-gateway: the daemon and its tools.

    wearable-gateway run [--config FILE]      run the gateway until SIGTERM/SIGINT
    wearable-gateway relay --config FILE      forward the fleet's packages from an MQTT broker to the vendors
    wearable-gateway check-config FILE        validate a configuration
    wearable-gateway demo [--duration S]      the whole chain against simulators, no configuration
    wearable-gateway status [--config FILE]   ask the running daemon: devices, links, backlog, uplinks
    wearable-gateway doctor [--config FILE]   check this machine: BLE, serial, clock, disk, uplinks
    wearable-gateway spool [--config FILE]    what the spool holds (and --requeue-dead)
    wearable-gateway drivers                  the installed device drivers

--config defaults to /etc/wearable-gateway/gateway.toml (or $WEARABLE_GATEWAY_CONFIG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from gateway import __version__


DEFAULT_CONFIG = "/etc/wearable-gateway/gateway.toml"  # where install-pi.sh puts it; env WEARABLE_GATEWAY_CONFIG


def default_config() -> str:
    """The configuration file used when --config is not given."""
    return os.environ.get("WEARABLE_GATEWAY_CONFIG", DEFAULT_CONFIG)


def _load_config(path: str | None):
    from gateway.config import ConfigError, load

    if path is None:
        path = default_config()
        if not os.path.exists(path):
            print(f"no configuration at {path}: pass --config FILE (examples/gateway.toml shows every key), set"
                  " WEARABLE_GATEWAY_CONFIG, or try `wearable-gateway demo`", file=sys.stderr)
            return None

    try:
        return load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    from gateway import daemon, logs

    config = _load_config(args.config)
    if config is None:
        path = args.config or default_config()
        if args.on_invalid_config == "exit" or not os.path.exists(path):
            return 2
        # The page says what is wrong (when the [status] table itself is valid) until a fixed file
        # and a SIGHUP start the gateway; SIGTERM ends it.
        logs.setup(args.log_level or "INFO", args.log_format or "text")
        config = asyncio.run(daemon.serve_config_error(path))
        if config is None:
            return 2
    return _serve(args, config, daemon.run, "cannot start")


def _serve(args: argparse.Namespace, config, main, failure: str) -> int:
    """Set up logging and run `main(config)` to its exit code."""
    import sqlite3

    from gateway import logs
    from gateway.spool import SpoolError

    logs.setup(args.log_level or config.log_level, args.log_format or config.log_format, config.secrets())
    try:
        return asyncio.run(main(config))
    except (OSError, SpoolError, sqlite3.Error) as exc:
        # The status port taken, a spool that is not one, an unwritable path: one line, exit non-zero.
        logging.getLogger("gateway").critical("%s: %s", failure, exc)
        return 1


def _relay(args: argparse.Namespace) -> int:
    from gateway import relay
    from gateway.config import ConfigError, load_relay

    try:
        config = load_relay(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return _serve(args, config, relay.run, "cannot start the relay")


def _status(args: argparse.Namespace) -> int:
    import httpx

    from gateway.config import StatusConfig

    status = StatusConfig()
    if args.config or os.path.exists(default_config()):
        config = _load_config(args.config)
        if config is None:
            return 2
        status = config.status
    url = (args.url or status.url).rstrip("/")
    auth = ("", status.password) if status.password else None
    try:
        r = httpx.get(f"{url}/api/status", auth=auth, timeout=5)
        r.raise_for_status()
    except httpx.HTTPError as exc:
        print(f"wearable-gateway status: no answer from {url} ({exc}); is the daemon running?"
              " (systemctl status wearable-gateway)", file=sys.stderr)
        return 1
    s = r.json()
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"wearable-gateway {s['version']}, up {s['uptime_s']:.0f} s, spool {s['spool']['file_bytes'] / 1e6:.1f} MB,"
          f" {s['spool']['dead_letters']} dead letter(s), {s['spool'].get('evicted', 0)} evicted")
    now = s["started_at"] + s["uptime_s"]
    for d in s["devices"]:
        age = f"{now - d['last_data']:.1f} s ago" if d["last_data"] else "never"
        print(f"  device {d['name']:12} link {'up' if d['connected'] else 'DOWN':4}  last data {age:>12}"
              f"  samples {d['driver_counters'].get('samples', 0)}  bad frames {d['bad_frames']}"
              f"  gaps {d['pipeline_counters'].get('gaps', 0)}")
    for u in s["uplinks"]:
        b = s["spool"]["uplinks"].get(u["name"], {"pending": 0, "oldest_age_s": 0})
        health = "ok" if not u["last_error"] else f"last error: {u['last_error'][:80]}"
        print(f"  uplink {u['name']:12} waiting {b['pending']:>4} (oldest {b['oldest_age_s']:.0f} s)"
              f"  sent {u['counters'].get('acked', 0)}  retried {u['counters'].get('retried', 0)}  {health}")
    for e in s["errors"][-5:]:
        print(f"  recent {e['level']}: {e['message'][:160]}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from gateway.doctor import FAIL, run_checks

    checks = run_checks(args.config or default_config())
    for c in checks:
        print(f"{c.state:4}  {c.name:18} {c.detail}")
    failed = [c for c in checks if c.state == FAIL]
    print(f"{len(failed)} problem(s)" if failed else "no problems found")
    return 1 if failed else 0


def _check_config(args: argparse.Namespace) -> int:
    config = _load_config(args.file)
    if config is None:
        return 2
    print(f"{args.file}: valid; {len(config.devices)} device(s): "
          + ", ".join(f"{d.name} ({d.driver} on {d.transport} -> {', '.join(d.uplinks)})" for d in config.devices)
          + f"; spool {config.spool.path} (sync={config.spool.sync})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import main as demo_main
    from simulators.physiology.ecg import check_rate, normalise_rhythm

    try:
        check_rate(normalise_rhythm(args.rhythm), args.heart_rate)
    except ValueError as exc:
        print(f"wearable-gateway demo: {exc}", file=sys.stderr)
        return 2
    if args.duration <= 0 or args.speed <= 0:
        print("wearable-gateway demo: --duration and --speed must be positive", file=sys.stderr)
        return 2
    return demo_main(args.duration, args.speed, args.data_dir, args.rhythm, args.heart_rate, args.json)


def _spool(args: argparse.Namespace) -> int:
    from gateway.spool import Spool

    config = _load_config(args.config)
    if config is None:
        return 2
    spool = Spool(config.spool.path, config.spool.sync)
    try:
        if args.requeue_dead:
            n = spool.requeue_dead(None if args.requeue_dead == "*" else args.requeue_dead)
            print(f"requeued {n} dead letter(s); a running gateway sends them on its next pass")
        print(json.dumps({"stats": spool.stats(), "dead_letters": spool.dead_letters() if args.dead_letters else None,
                          "gaps": [g.__dict__ for g in spool.gaps()] if args.gaps else None}, indent=2))
    finally:
        spool.close()
    return 0


def _drivers(args: argparse.Namespace) -> int:
    from gateway import drivers

    for name, target in sorted(drivers.available().items()):
        print(f"{name:16} {target}")
    return 0


def _command(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose own --help starts with what it does."""
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="wearable-gateway", description="Cardiac devices to their vendors' clouds.")
    parser.add_argument("--version", action="version", version=f"wearable-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = _command(sub, "run", "run the gateway daemon")
    run.add_argument("--config", help=f"TOML configuration file (default: {DEFAULT_CONFIG})")
    run.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.add_argument("--log-format", choices=("text", "json"), help="one line per event as text or JSON")
    run.add_argument("--on-invalid-config", choices=("exit", "serve"), default="exit",
                     help="exit (2, the default), or serve the file's errors on the status page until it is fixed"
                          " and SIGHUP starts the gateway (what the systemd unit does)")
    run.set_defaults(func=_run)

    rl = _command(sub, "relay", "forward the fleet's packages from an MQTT broker to the vendor clouds")
    rl.add_argument("--config", required=True, help="the relay's TOML file (examples/relay.toml shows every key)")
    rl.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    rl.add_argument("--log-format", choices=("text", "json"), help="one line per event as text or JSON")
    rl.set_defaults(func=_relay)

    st = _command(sub, "status", "ask the running daemon how it is doing")
    st.add_argument("--config", help="the daemon's configuration, for the status address and password (default:"
                                     f" {DEFAULT_CONFIG} if it exists)")
    st.add_argument("--url", help="the status server (default from the configuration, else http://127.0.0.1:8765)")
    st.add_argument("--json", action="store_true", help="print the whole status as JSON")
    st.set_defaults(func=_status)

    doc = _command(sub, "doctor", "check BLE, serial permissions, clock, disk and uplinks")
    doc.add_argument("--config", help=f"the daemon's configuration (default: {DEFAULT_CONFIG})")
    doc.set_defaults(func=_doctor)

    check = _command(sub, "check-config", "validate a configuration file")
    check.add_argument("file")
    check.set_defaults(func=_check_config)

    demo = _command(sub, "demo", "simulator -> serial -> gateway -> Kardia emulator, then verify")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of ECG (default 60)")
    demo.add_argument("--speed", type=float, default=1.0, help="times faster than real time (default 1)")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    demo.add_argument("--data-dir", help="keep spool and emulator data here (default: a new temporary directory)")
    demo.add_argument("--rhythm", default="normal", help="normal, afib, bradycardia, tachycardia")
    demo.add_argument("--heart-rate", type=float, help="bpm")
    demo.set_defaults(func=_demo)

    spool = _command(sub, "spool", "show what the spool holds")
    spool.add_argument("--config", help=f"the daemon's configuration (default: {DEFAULT_CONFIG})")
    spool.add_argument("--dead-letters", action="store_true", help="list dead letters and their reasons")
    spool.add_argument("--gaps", action="store_true", help="list recorded gaps")
    spool.add_argument("--requeue-dead", nargs="?", const="*", metavar="UPLINK",
                       help="move dead letters (of one uplink, or all) back into the outbox")
    spool.set_defaults(func=_spool)

    drv = _command(sub, "drivers", "list installed device drivers")
    drv.set_defaults(func=_drivers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the wearable-gateway command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
