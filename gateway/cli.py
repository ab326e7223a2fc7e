"""wearable-gateway: the daemon and its tools.

    wearable-gateway run --config FILE        run the gateway until SIGTERM/SIGINT
    wearable-gateway check-config FILE        validate a configuration
    wearable-gateway demo [--duration S]      the whole chain against simulators, no configuration
    wearable-gateway spool --config FILE      what the spool holds (and --requeue-dead)
    wearable-gateway drivers                  the installed device drivers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from gateway import __version__


def _load_config(path: str):
    from gateway.config import ConfigError, load

    try:
        return load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    from gateway import daemon

    config = _load_config(args.config)
    if config is None:
        return 2
    logging.basicConfig(level=args.log_level or config.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(daemon.run(config))


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="wearable-gateway", description="Cardiac devices to their vendors' clouds.")
    parser.add_argument("--version", action="version", version=f"wearable-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway daemon")
    run.add_argument("--config", required=True, help="TOML configuration file")
    run.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(func=_run)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file")
    check.set_defaults(func=_check_config)

    demo = sub.add_parser("demo", help="simulator -> serial -> gateway -> Kardia emulator, then verify")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of ECG (default 60)")
    demo.add_argument("--speed", type=float, default=1.0, help="times faster than real time (default 1)")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    demo.add_argument("--data-dir", help="keep spool and emulator data here (default: a new temporary directory)")
    demo.add_argument("--rhythm", default="normal", help="normal, afib, bradycardia, tachycardia")
    demo.add_argument("--heart-rate", type=float, help="bpm")
    demo.set_defaults(func=_demo)

    spool = sub.add_parser("spool", help="show what the spool holds")
    spool.add_argument("--config", required=True)
    spool.add_argument("--dead-letters", action="store_true", help="list dead letters and their reasons")
    spool.add_argument("--gaps", action="store_true", help="list recorded gaps")
    spool.add_argument("--requeue-dead", nargs="?", const="*", metavar="UPLINK",
                       help="move dead letters (of one uplink, or all) back into the outbox")
    spool.set_defaults(func=_spool)

    drv = sub.add_parser("drivers", help="list installed device drivers")
    drv.set_defaults(func=_drivers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the wearable-gateway command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
