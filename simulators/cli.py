"""wearable-sim: device simulators and cloud emulators.

    wearable-sim device kardia [--port PATH | --link PATH] [--duration S] [--speed X | --fast] ...
    wearable-sim device hexoskin [--port PATH | --link PATH] [--breathing-rate N] [--activity walk] ...
    wearable-sim fleet --devices N [--config-out gateway.toml] [--duration S]
    wearable-sim cloud --port PORT --data-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from gateway import __version__
from gateway.protocols import kardiamobile as proto


def _progress_printer(label: str, stream=sys.stderr):
    interactive = stream.isatty()

    def show(stats) -> None:
        line = (f"{label}: {stats.signal_seconds:8.1f} s of signal  {stats.samples:>9} samples  "
                f"{stats.frames:>7} frames  {stats.bytes / 1024:8.1f} KiB  in {stats.wall_seconds:6.1f} s")
        stream.write(("\r" + line) if interactive else line + "\n")
        stream.flush()

    return show


def _timing_ok(args: argparse.Namespace) -> bool:
    """--speed and --duration are positive (said on stderr when not)."""
    if args.speed <= 0 or (args.duration is not None and args.duration <= 0):
        print("wearable-sim: --speed and --duration must be positive", file=sys.stderr)
        return False
    return True


def _open_port(args: argparse.Namespace, ble: tuple[str, str, str] | None = None, extra_services=(), start_on=()):
    """The port to write to (a real one, a new pty, or a BLE peripheral given (service, characteristic,
    name) and any standard services it also offers); None after saying why it failed."""
    from simulators.devices.serial_front import PtyPort, SerialPort

    if args.ble:
        if ble is None:
            print("wearable-sim: this device has no BLE profile yet; use a pseudo-terminal or --port",
                  file=sys.stderr)
            return None
        from simulators.devices.ble_front import BlePort

        try:
            if args.mtu is not None and not 23 <= args.mtu <= 517:
                raise ValueError("--mtu must be 23-517 (the ATT MTU range)")
            return BlePort(*ble[:2], name=args.ble_name or ble[2], adapter=args.adapter,
                           extra_services=tuple(extra_services), mtu=args.mtu or 23, acquire_mtu=args.mtu is not None,
                           start_on=tuple(start_on))
        except Exception as exc:  # D-Bus and BlueZ errors alike: say which adapter and why
            print(f"wearable-sim: cannot serve BLE on {args.adapter}: {exc}", file=sys.stderr)
            return None
    try:
        return SerialPort(args.port, args.baudrate) if args.port else PtyPort(link=args.link)
    except Exception as exc:  # pyserial and os errors alike: say which port and why
        print(f"wearable-sim: cannot open {args.port or 'a pseudo-terminal'}: {exc}", file=sys.stderr)
        return None


DRAIN_S = 30.0  # how long the end of a run waits for the reader to take the last bytes


def _serve(label: str, port, frames, args: argparse.Namespace, describe: str, faults=None, on_frame=None):
    """Write a model's frames to the port, paced, until the duration or a signal; the run's stats."""
    from simulators.devices.serial_front import run_frames

    waits = hasattr(port, "wait_for_reader") and not args.no_wait  # a pty or a BLE peripheral
    print(f"PORT {port.path}", flush=True)  # the first line: what the gateway should open
    if waits:
        print("waiting for a reader to open the port or subscribe (--no-wait starts at once)", file=sys.stderr,
              flush=True)
    print(f"{describe}, {'as fast as read' if args.fast else f'x{args.speed:g}'}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if waits and not port.wait_for_reader(stop):
            return None
        try:
            stats = run_frames(frames, port, duration=args.duration, speed=None if args.fast else args.speed,
                               faults=faults, stop=stop, progress=None if args.quiet else _progress_printer(label),
                               on_frame=on_frame)
        except RuntimeError as exc:  # the BLE front lost BlueZ: say so, do not hang
            print(f"wearable-sim: {exc}", file=sys.stderr)
            return None
        if not port.drain(timeout=DRAIN_S):  # closing a pty discards what its reader has not taken
            left = port.unread() if hasattr(port, "unread") else "some"
            print(f"wearable-sim: the reader did not take the last {left} bytes within {DRAIN_S:g} s;"
                  " closing the port discards them", file=sys.stderr)
    finally:
        port.close()
    if not args.quiet and sys.stderr.isatty():
        sys.stderr.write("\n")
    return stats


def _device_kardia(args: argparse.Namespace) -> int:
    from simulators.devices.faults import FaultInjector
    from simulators.devices.kardiamobile import KardiaMobileModel
    from simulators.physiology.ecg import EcgParams, EcgSynth
    from simulators.physiology.replay import ReplayError, ReplaySource, load_record

    if not _timing_ok(args):
        return 2
    try:
        if args.replay:
            signal_mv, fs_in = load_record(args.replay, args.replay_channel, args.replay_rate, args.replay_units,
                                           args.replay_gain)
            source = ReplaySource(signal_mv, fs_in, proto.SAMPLING_FREQUENCY, loop=args.loop)
            what = f"replay of {args.replay} ({fs_in:g} Hz -> 300 Hz)"
        else:
            source = EcgSynth(proto.SAMPLING_FREQUENCY, EcgParams(
                rhythm=args.rhythm, heart_rate=args.heart_rate, mains_frequency=args.mains, hum_mv=args.hum,
                wander_mv=args.wander, noise_mv=args.noise, seed=args.seed))
            what = f"{source.rhythm} at {source.heart_rate:g} bpm"
        model = KardiaMobileModel(source, serial_number=args.serial_number, mains_frequency=args.mains,
                                  amplitude_resolution=args.amplitude_resolution, boot_id=args.boot_id,
                                  samples_per_frame=args.samples_per_frame)
        faults = FaultInjector(args.garbage, args.corrupt, args.drop, seed=args.seed)
    except (ValueError, ReplayError) as exc:
        print(f"wearable-sim: {exc}", file=sys.stderr)
        return 2
    port = _open_port(args, (proto.BLE_SERVICE_UUID, proto.BLE_FRAMES_UUID, args.serial_number))
    if port is None:
        return 2
    stats = _serve("kardia", port, model.frames(), args,
                   f"kardia {args.serial_number} (boot id {model.boot_id:08x}): {what}, mains {args.mains} Hz, "
                   f"{args.amplitude_resolution} nV/unit", faults if faults.active else None)
    if stats is None:
        return 130
    summary = {"device": "kardia", "serial_number": args.serial_number, "boot_id": f"{model.boot_id:08x}",
               "port": port.path, **stats.as_dict(), "saturated_frames": model.saturated}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"sent {stats.frames} frames ({stats.info_frames} device info, {stats.sample_frames} samples), "
              f"{stats.samples} samples = {stats.signal_seconds:.1f} s of ECG, {stats.bytes} bytes "
              f"in {stats.wall_seconds:.1f} s" + (f"; faults {stats.faults}" if stats.faults else ""))
    return 0


def _device_hexoskin(args: argparse.Namespace) -> int:
    from simulators.devices.hexoskin import HexoskinModel
    from simulators.physiology.ecg import EcgParams, EcgSynth
    from simulators.physiology.replay import ReplayError, ReplaySource, load_record
    from simulators.physiology.respiration import BreathingParams, MotionSynth, RespirationSynth

    if not _timing_ok(args):
        return 2
    try:
        if not 4 <= args.breathing_rate <= 60 or not 0 < args.depth <= 3:
            raise ValueError("--breathing-rate must be 4-60 per minute and --depth 0-3")
        if args.replay:  # a real record's ECG, resampled to the shirt's 256 Hz; breathing at --breathing-rate
            signal_mv, fs_in = load_record(args.replay, args.replay_channel)
            ecg = ReplaySource(signal_mv, fs_in, 256, loop=args.loop)
            what = f"replay of {args.replay} ({fs_in:g} Hz -> 256 Hz)"
            rate = args.breathing_rate / 60.0
            phase = lambda t: 2 * np.pi * rate * np.asarray(t, dtype=float)  # noqa: E731
        else:
            ecg = EcgSynth(256, EcgParams(rhythm=args.rhythm, heart_rate=args.heart_rate,
                                          breathing_rate=args.breathing_rate, noise_mv=args.noise, seed=args.seed))
            what = f"{ecg.rhythm} at {ecg.heart_rate:g} bpm"
            phase = ecg.breathing_phase
        model = HexoskinModel(ecg, RespirationSynth(128, phase, BreathingParams(args.depth, seed=args.seed)),
                              MotionSynth(64, args.activity, args.cadence, seed=args.seed),
                              device_id=args.device_id, leads=args.leads, session_id=args.session_id)
    except (ValueError, ReplayError) as exc:
        print(f"wearable-sim: {exc}", file=sys.stderr)
        return 2
    from gateway.protocols import gatt
    from gateway.protocols import hexoskin as hx_proto
    from simulators.devices.hexoskin import ShirtHeartRate, standard_services

    # A generic heart-rate app subscribes to the Heart Rate Measurement only: the shirt runs for it too.
    port = _open_port(args, (hx_proto.BLE_SERVICE_UUID, hx_proto.BLE_FRAMES_UUID, args.device_id),
                      standard_services(model), start_on=(gatt.uuid16(gatt.HEART_RATE_MEASUREMENT),))
    if port is None:
        return 2
    # The Heart Rate Service reports the synthesiser's own beats; a replayed record's are not known here.
    heart = ShirtHeartRate(ecg, port) if args.ble and not args.replay else None
    activity = args.activity + (f" at {model.motion.cadence:g} steps/min" if args.activity != "rest" else "")
    truth: dict[str, list] = {}

    def keep(frame, data) -> None:  # what was sent, per channel: (first sample's HexoTimestamp, samples)
        if args.truth and frame.kind == "samples":
            truth.setdefault(frame.channel, []).append((frame.ts, frame.samples))
        if heart and frame.kind == "info":  # once a second of signal: the standard Heart Rate Measurement
            heart.second(frame.t_end)

    stats = _serve("hexoskin", port, model.frames(), args,
                   f"hexoskin {args.device_id} (session {model.session_id:08x}): {what},"
                   f" breathing {args.breathing_rate:g}/min (depth {args.depth:g}), {activity}, {args.leads} lead(s)",
                   on_frame=keep)
    if stats is None:
        return 130
    summary = {"device": "hexoskin", "device_id": args.device_id, "session_id": f"{model.session_id:08x}",
               "session_start": model.session_start, "port": port.path, **stats.as_dict()}
    if args.truth:
        _save_truth(args.truth, truth, heart.sent if heart else [])
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"sent {stats.frames} frames ({stats.info_frames} device info, {stats.sample_frames} blocks),"
              f" {stats.signal_seconds:.1f} s of signal, {stats.bytes} bytes in {stats.wall_seconds:.1f} s")
    return 0


def _device_up(args: argparse.Namespace) -> int:
    from datetime import datetime

    from gateway.protocols import gatt
    from simulators.devices.upband import ScheduledEvent, UpBandModel, band_services, parse_clock, run_band

    if not args.ble:
        print("wearable-sim: the UP band speaks BLE only: add --ble", file=sys.stderr)
        return 2
    if not _timing_ok(args):
        return 2
    try:
        start = datetime.fromisoformat(args.start_time) if args.start_time else datetime.now().astimezone()
        if start.tzinfo is None:
            raise ValueError("--start-time needs a UTC offset, e.g. 2026-11-23T07:59:00+01:00")
        tz_minutes = int(start.utcoffset().total_seconds() // 60)
        events = []
        for spec in args.event or []:
            when, _, what = spec.partition("=")
            title, _, note = what.partition(":")
            if not title:
                raise ValueError(f"--event is HH:MM=TITLE[:NOTE], not {spec!r}")
            events.append(ScheduledEvent(parse_clock(when), title, note))
        bp_at = tuple(parse_clock(x) for x in args.bp_at.split(",") if x) if args.bp_at else ()
        model = UpBandModel(start.timestamp(), tz_minutes, bp_at, tuple(events), seed=args.seed,
                            serial_number=args.serial_number)
    except ValueError as exc:
        print(f"wearable-sim: {exc}", file=sys.stderr)
        return 2
    from simulators.devices.ble_front import BlePort

    name = args.ble_name or "UP3-" + args.serial_number[-4:]
    try:
        port = BlePort(gatt.uuid16(gatt.HEART_RATE_SERVICE), None, name, args.adapter,
                       extra_services=band_services(model))
    except Exception as exc:  # D-Bus and BlueZ errors alike
        print(f"wearable-sim: cannot serve BLE on {args.adapter}: {exc}", file=sys.stderr)
        return 2
    print(f"PORT {port.path}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if not args.no_wait:
            print("waiting for a central to subscribe to the heart rate (--no-wait starts at once)",
                  file=sys.stderr, flush=True)
            if not port.wait_for_subscriber(gatt.uuid16(gatt.HEART_RATE_MEASUREMENT), stop):
                return 130
        print(f"up band {args.serial_number} as {name}: day from {start.isoformat()}, x{args.speed:g}",
              file=sys.stderr, flush=True)
        stats = run_band(model, port, args.duration or float("inf"), args.speed, stop, record=bool(args.truth))
        time.sleep(0.5)  # let the last indications go out before the band leaves
    finally:
        port.close()
    if args.truth:
        Path(args.truth).write_text(json.dumps(stats.sent))
    summary = {"device": "up", "serial_number": args.serial_number, "name": name, **stats.as_dict()}
    print(json.dumps(summary) if args.json else
          f"sent {stats.heart_rate_sent} heart rates ({stats.heart_rate_unheard} unheard), "
          f"{stats.blood_pressure_sent} blood pressures, {stats.events_sent} events over {stats.seconds} s")
    return 0


def _save_truth(path: str, truth: dict[str, list], heart_rates=()) -> None:
    """Every sample sent, per channel, with its HexoTimestamp: `<channel>` and `<channel>_ts` arrays in an .npz;
    and the Heart Rate Measurements notified: `hrs_heart_rate`, `hrs_rr_count` each, `hrs_rr` (1/1024 s) all."""
    import numpy as np

    from simulators.devices.hexoskin import TICKS_PER_SAMPLE

    arrays = {}
    for channel, blocks in truth.items():
        step = TICKS_PER_SAMPLE.get(channel, 1)
        arrays[channel] = np.concatenate([b[1] for b in blocks])
        arrays[channel + "_ts"] = np.concatenate([ts + step * np.arange(len(b)) for ts, b in blocks])
    arrays["hrs_heart_rate"] = np.array([m.heart_rate for m in heart_rates], dtype=np.int64)
    arrays["hrs_rr_count"] = np.array([len(m.rr_intervals) for m in heart_rates], dtype=np.int64)
    arrays["hrs_rr"] = np.array([r for m in heart_rates for r in m.rr_intervals], dtype=np.int64)
    np.savez(path, **arrays)


def _cloud(args: argparse.Namespace) -> int:
    from simulators.cloud import tls
    from simulators.cloud.app import PREFIXES, VENDOR_HOSTS, Credentials, build_app
    from simulators.cloud.server import bind, serve

    try:
        creds = Credentials.from_env(kardia_api_keys=args.kardia_api_key,
                                     kardia_webhook_secret=args.kardia_webhook_secret, up_tokens=args.up_token,
                                     humanapi_tokens=args.humanapi_token, hexoskin_users=args.hexoskin_user,
                                     hexoskin_keys=args.hexoskin_key, hexoskin_coaching=args.hexoskin_coach)
        creds.hexoskin_require_signature = args.hexoskin_require_signature
        creds.hexoskin_refuse_replays = args.hexoskin_refuse_replays
        data_dir = _data_dir(args.data_dir)
        listen = dict(_listen(spec) for spec in args.listen or ())
        if (args.cert is None) != (args.key is None):
            raise ValueError("--cert and --key go together")
        secure = None
        if args.cert:
            secure = tls.own(args.cert, args.key)
        elif args.tls:
            names = ["localhost", "127.0.0.1", "::1", *VENDOR_HOSTS,
                     *{h for h in [args.host, *(h for h, _ in listen.values())] if h not in ("0.0.0.0", "::", "")}]
            secure = tls.made(data_dir / "tls", names)
        sockets = {"": bind(args.host, args.port)}
        for name, (host, port) in listen.items():
            sockets[name] = bind(host, port)
    except (ValueError, tls.TlsError) as exc:
        print(f"wearable-sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"wearable-sim: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    ports = {sock.getsockname()[1]: name for name, sock in sockets.items() if name}
    try:
        if args.kardia_demo_patient:
            from simulators.cloud.kardia.store import KardiaStore, account_of

            store = KardiaStore(data_dir / "kardia.db")
            try:
                store.ensure_patient(account_of(creds.kardia_api_keys[0]), args.kardia_demo_patient,
                                     {"mrn": "DEMO-1", "dob": "1970-01-01", "email": "demo@example.com",
                                      "firstname": "Demo"})
            finally:
                store.close()
        app = build_app(data_dir, creds, ports=ports)
    except ValueError as exc:
        print(f"wearable-sim: {exc}", file=sys.stderr)
        return 2
    scheme = "https" if secure else "http"

    def url(sock) -> str:
        host, port = sock.getsockname()[:2]
        return f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"

    base = url(sockets[""])
    print(f"wearable-sim cloud on {base}, data in {data_dir.resolve()}", flush=True)
    for name, prefix in PREFIXES.items():
        own = f"; at its root on {url(sockets[name])}" if name in sockets else ""
        print(f"  {name:8} {base}{prefix}{own}", flush=True)
    hosts = ", ".join(f"{h} ({n})" for h, n in VENDOR_HOSTS.items())
    print(f"  at the vendors' roots for their host names: {hosts}", flush=True)
    if secure and secure.ca_file:
        print(f"  TLS: trust the CA in {secure.ca_file}", flush=True)
    print(f"  Kardia API key(s): {', '.join(creds.kardia_api_keys)}  (HTTP Basic user, empty password);"
          f" webhook secret: {creds.kardia_webhook_secret}", flush=True)
    print(f"  UP token(s): {', '.join(creds.up_tokens)}  (Bearer)", flush=True)
    print(f"  Human API token(s): {', '.join(creds.humanapi_tokens)}, demo  (Bearer)", flush=True)
    signing = "required" if creds.hexoskin_require_signature else "checked when sent"
    print(f"  Hexoskin users: {', '.join(u.rsplit(':', 1)[0] if u.count(':') > 1 else u for u in creds.hexoskin_users)}"
          f" (HTTP Basic e-mail:password); API keys: {', '.join(creds.hexoskin_keys)} (PUBLIC:PRIVATE),"
          f" signatures {signing}", flush=True)
    serve(app, list(sockets.values()), secure)
    return 0


def _data_dir(text: str) -> Path:
    """The emulators' data directory, made if missing; ValueError if it cannot be."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--data-dir {text}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--data-dir {text}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"--data-dir {text}: not writable")
    return path


def _listen(spec: str) -> tuple[str, tuple[str, int]]:
    """NAME=HOST:PORT of --listen."""
    from simulators.cloud.app import PREFIXES

    name, sep, address = spec.partition("=")
    host, _, port = address.rpartition(":")
    if not sep or name not in PREFIXES or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {spec!r}: give EMULATOR=HOST:PORT, EMULATOR one of {', '.join(PREFIXES)}")
    return name, (host.strip("[]") or "127.0.0.1", int(port))


def _port_number(text: str) -> int:
    """A TCP port for argparse (0: any free one)."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def _add_port_and_timing(p: argparse.ArgumentParser) -> None:
    """Where a device simulator writes and how fast: the same for every device."""
    where = p.add_argument_group("where")
    where.add_argument("--port", help="a real serial port to write to (default: create a pseudo-terminal)")
    where.add_argument("--link", help="with a pseudo-terminal: also make this stable symlink to it")
    where.add_argument("--baudrate", type=int, default=115200)
    where.add_argument("--no-wait", action="store_true",
                       help="with a pseudo-terminal: stream at once instead of when a reader opens it")
    where.add_argument("--ble", action="store_true",
                       help="be a BLE peripheral through BlueZ's D-Bus API instead of a serial device")
    where.add_argument("--adapter", default="hci0", help="with --ble: the Bluetooth adapter (default hci0)")
    where.add_argument("--ble-name", help="with --ble: the advertised name (default: the device's)")
    where.add_argument("--mtu", type=int, help="with --ble: the largest ATT MTU accepted (23-517); the frames then go"
                                               " through BlueZ's AcquireNotify socket, filled to the negotiated MTU - 3"
                                               " (default: 20-byte notifications, which every link takes)")
    timing = _add_timing(p, "seconds of signal to send (default: until interrupted)")
    timing.add_argument("--fast", action="store_true", help="as fast as the reader takes it")


def _fleet(args: argparse.Namespace) -> int:
    import resource

    from simulators.devices.fleet import Fleet, gateway_config

    if args.devices < 1:
        print("wearable-sim: --devices must be at least 1", file=sys.stderr)
        return 2
    if not _timing_ok(args):
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * args.devices + 64  # master and slave of every pty
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
        except (ValueError, OSError):
            pass
    try:
        fleet = Fleet(args.devices, seed=args.seed, speed=args.speed, link_dir=args.link_dir,
                      wait_for_reader=not args.no_wait)
    except OSError as exc:
        print(f"wearable-sim: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        if args.config_out:
            patients = [args.patient_id] if args.patient_id else _fleet_patients(args)
            if patients is None:
                return 2
            spool = args.spool or str(Path(args.config_out).resolve().with_name("fleet-spool.db"))
            Path(args.config_out).write_text(gateway_config(
                fleet, kardia_url=args.kardia_url, api_key=args.api_key, patients=patients, spool=spool,
                status_listen=args.status_listen, recording_seconds=args.recording_seconds))
            print(f"CONFIG {args.config_out}", flush=True)
        else:
            for i, path in enumerate(fleet.paths):
                print(f"PORT {i} {path}")
            sys.stdout.flush()
        print(f"fleet: {args.devices} KardiaMobiles on ptys, x{args.speed:g}"
              f"{', each starts when its port is opened' if not args.no_wait else ''}", file=sys.stderr, flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

        def show(st) -> None:
            if not args.quiet:
                print(f"fleet: {st.streaming}/{st.devices} streaming, {st.samples} samples, {st.frames} frames,"
                      f" {st.bytes / 1e6:.1f} MB in {st.wall_seconds:.0f} s, {st.deferred_writes} deferred writes",
                      file=sys.stderr, flush=True)

        stats = fleet.run(args.duration, stop, show)
        left = fleet.drain(DRAIN_S)
        if left:
            print(f"wearable-sim: readers did not take the last {left} bytes within {DRAIN_S:g} s;"
                  " closing the ports discards them", file=sys.stderr)
    finally:
        fleet.close()
    out = {**stats.as_dict(), "started_at": [round(float(t), 6) for t in fleet.started_at],
           "serials": fleet.serials} if args.json else stats.as_dict()
    print(json.dumps(out) if args.json else f"fleet: sent {stats.samples} samples in {stats.frames} frames from"
          f" {stats.devices} devices in {stats.wall_seconds:.1f} s", flush=True)
    return 0


def _fleet_patients(args: argparse.Namespace) -> list[str] | None:
    """One Kardia patient per device, created through the Kardia API the config points at."""
    import httpx

    out = []
    try:
        with httpx.Client(base_url=args.kardia_url, auth=(args.api_key, ""), timeout=30) as client:
            for i in range(args.devices):
                r = client.post("/v1/patients", data={"mrn": f"FLEET-{i:04d}", "dob": "1970-01-01",
                                                      "email": f"fleet{i}@example.com"})
                r.raise_for_status()
                out.append(r.json()["id"])
    except httpx.HTTPError as exc:
        print(f"wearable-sim: cannot create the fleet's patients at {args.kardia_url}: {exc}"
              " (give --patient-id, or start wearable-sim cloud first)", file=sys.stderr)
        return None
    return out


def _add_timing(p: argparse.ArgumentParser, duration_help: str):
    """How much a simulator sends and how fast: --duration and --speed; the group, for more."""
    timing = p.add_argument_group("timing")
    timing.add_argument("--duration", type=float, help=duration_help)
    timing.add_argument("--speed", type=float, default=1.0, help="times faster than real time (default 1)")
    return timing


def _add_output(p: argparse.ArgumentParser) -> None:
    """Progress and summary options of a device simulator."""
    out = p.add_argument_group("output")
    out.add_argument("--quiet", action="store_true", help="no progress line")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="wearable-sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"wearable-sim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    device = sub.add_parser("device", help="run a device simulator",
                            description="Run a device simulator: a KardiaMobile or a Hexoskin shirt on a serial port"
                                        " or a new pseudo-terminal, or an UP band on a (virtual) BLE adapter.")
    devices = device.add_subparsers(dest="device", required=True)
    k = devices.add_parser("kardia", help="KardiaMobile-class single-lead ECG over serial",
                           description="Simulate a KardiaMobile recorder on a serial port or a new pseudo-terminal. "
                                       "The first line printed is 'PORT <path>': the port the gateway opens.")
    _add_port_and_timing(k)
    sig = k.add_argument_group("signal")
    sig.add_argument("--rhythm", default="normal", help="normal, afib, bradycardia, tachycardia")
    sig.add_argument("--heart-rate", type=float, help="bpm (default per rhythm: 70, 95, 45, 125)")
    sig.add_argument("--hum", type=float, default=0.0, help="mains hum amplitude, mV")
    sig.add_argument("--wander", type=float, default=0.0, help="baseline wander amplitude, mV")
    sig.add_argument("--noise", type=float, default=0.0, help="white noise standard deviation, mV")
    sig.add_argument("--seed", type=int, help="random seed (signal and faults)")
    rep = k.add_argument_group("replay instead of synthesis")
    rep.add_argument("--replay", help="a WFDB record (e.g. .../mitdb/100), a .mat record with .hea, or a CSV")
    rep.add_argument("--replay-channel", type=int, default=0)
    rep.add_argument("--replay-rate", type=float, help="rate of a one-column CSV, Hz")
    rep.add_argument("--replay-units", default="mv", choices=("mv", "uv", "adc"), help="CSV units")
    rep.add_argument("--replay-gain", type=float, help="CSV ADC units per mV")
    rep.add_argument("--loop", action="store_true", help="start the record again at its end")
    dev = k.add_argument_group("device")
    dev.add_argument("--serial-number", default="KM1-SIM00001")
    dev.add_argument("--boot-id", type=lambda s: int(s, 0), help="default: random, as at a real power-up")
    dev.add_argument("--mains", type=int, default=60, choices=(50, 60))
    dev.add_argument("--amplitude-resolution", type=int, default=500, help="nV per ADC unit")
    dev.add_argument("--samples-per-frame", type=int, default=proto.DEFAULT_SAMPLES_PER_FRAME)
    flt = k.add_argument_group("faults (sample frames only)")
    flt.add_argument("--garbage", type=float, default=0.0, help="probability of garbage before a frame")
    flt.add_argument("--corrupt", type=float, default=0.0, help="probability of a corrupt CRC")
    flt.add_argument("--drop", type=float, default=0.0, help="probability of a dropped frame")
    _add_output(k)
    k.set_defaults(func=_device_kardia)

    h = devices.add_parser("hexoskin", help="Hexoskin-class shirt: ECG, respiration bands, accelerometer over serial",
                           description="Simulate a Hexoskin-class shirt recorder (firmware_specs/hexoskin.md) on a "
                                       "serial port or a new pseudo-terminal. The first line printed is 'PORT <path>'.")
    _add_port_and_timing(h)
    body = h.add_argument_group("the person")
    body.add_argument("--rhythm", default="normal", help="normal, afib, bradycardia, tachycardia")
    body.add_argument("--heart-rate", type=float, help="bpm")
    body.add_argument("--breathing-rate", type=float, default=15.0, help="breaths per minute (default 15)")
    body.add_argument("--depth", type=float, default=1.0, help="breathing depth, 1.0 = quiet breathing")
    body.add_argument("--activity", default="rest", choices=("rest", "walk", "run"))
    body.add_argument("--cadence", type=float, help="steps per minute when walking or running")
    body.add_argument("--noise", type=float, default=0.01, help="ECG white noise, mV")
    body.add_argument("--seed", type=int)
    rep = h.add_argument_group("replay instead of synthesis")
    rep.add_argument("--replay", help="a WFDB record (e.g. .../mitdb/100) or a .mat record with .hea: its ECG,"
                                      " resampled to 256 Hz, on lead I; the session ends with the record")
    rep.add_argument("--replay-channel", type=int, default=0)
    rep.add_argument("--loop", action="store_true", help="start the record again at its end")
    dev = h.add_argument_group("device")
    dev.add_argument("--device-id", default="HXSKIN12000001")
    dev.add_argument("--leads", type=int, default=1, choices=(1, 3))
    dev.add_argument("--session-id", type=lambda v: int(v, 0), help="default: random")
    _add_output(h)
    h.add_argument("--truth", metavar="PATH.npz",
                   help="save every sample sent with its HexoTimestamp, per channel (for exactness checks)")
    h.set_defaults(func=_device_hexoskin)

    up = devices.add_parser("up", help="UP-class band: heart rate, blood pressure and cardiac events over BLE",
                            description="Simulate an UP-class band (firmware_specs/upband.md) as a BLE peripheral: "
                                        "a day of heart rate, blood pressure at set times, tagged cardiac events.")
    ble = up.add_argument_group("BLE")
    ble.add_argument("--ble", action="store_true", help="required: the band speaks BLE only")
    ble.add_argument("--adapter", default="hci0", help="the Bluetooth adapter (default hci0)")
    ble.add_argument("--ble-name", help="the advertised name (default UP3- and the serial's last four)")
    ble.add_argument("--no-wait", action="store_true", help="start the day at once, not when a central subscribes")
    _add_timing(up, "seconds of the band's day to send (default: until stopped)")
    day = up.add_argument_group("the day")
    day.add_argument("--start-time", help="the band's local time at start, ISO 8601 with offset (default: now)")
    day.add_argument("--bp-at", default="08:00,20:00", help="blood-pressure times, HH:MM,... (default 08:00,20:00)")
    day.add_argument("--event", action="append", metavar="HH:MM=TITLE[:NOTE]",
                     help="a cardiac event the wearer tags (repeatable)")
    day.add_argument("--seed", type=int)
    up.add_argument("--serial-number", default="UP3-0000A1B2")
    up.add_argument("--truth", metavar="PATH.json",
                    help="save every heart rate, blood pressure and event that went out (for exactness checks)")
    _add_output(up)
    up.set_defaults(func=_device_up, fast=False)

    fl = sub.add_parser("fleet", help="many KardiaMobiles on pseudo-terminals from one process (load tests)",
                        description="Simulate N KardiaMobile-class devices, each on its own pseudo-terminal, in real"
                                    " time from one process: distinct serial numbers, boot ids and signals. Prints"
                                    " 'PORT i path' per device, or with --config-out writes a gateway configuration"
                                    " for them and prints 'CONFIG path'.")
    fl.add_argument("--devices", type=int, required=True, help="how many devices")
    fl.add_argument("--seed", type=int, default=1, help="signals and boot ids (default 1)")
    fl.add_argument("--link-dir", help="make a stable link DIR/kardia-NNNN to each device's pty")
    fl.add_argument("--no-wait", action="store_true", help="start every device at once, not when its port is opened")
    _add_timing(fl, "seconds of signal each device sends (default: until interrupted)")
    cfg = fl.add_argument_group("a gateway configuration for the fleet")
    cfg.add_argument("--config-out", metavar="FILE", help="write it here")
    cfg.add_argument("--kardia-url", default="http://127.0.0.1:8080/kardia", help="the Kardia API the gateway uploads to")
    cfg.add_argument("--api-key", default="kardia-dev-key", help="its API key (default: the emulator's)")
    cfg.add_argument("--patient-id", help="one patient for every device (default: one each, created through the API)")
    cfg.add_argument("--spool", help="the gateway's spool file (default: fleet-spool.db beside the configuration)")
    cfg.add_argument("--status-listen", default="127.0.0.1:8765", help="the gateway's status server")
    cfg.add_argument("--recording-seconds", type=float, default=30.0)
    _add_output(fl)
    fl.set_defaults(func=_fleet)

    cloud = sub.add_parser("cloud", help="serve every cloud emulator",
                           description="Serve the vendor API emulators on one port, each under its prefix.")
    cloud.add_argument("--port", type=_port_number, default=8080, help="default 8080; 0 picks a free one")
    cloud.add_argument("--host", default="127.0.0.1", help="default loopback; 0.0.0.0 exposes it to the LAN")
    cloud.add_argument("--data-dir", required=True, help="where the emulators keep their SQLite stores")
    cloud.add_argument("--listen", action="append", metavar="EMULATOR=HOST:PORT",
                       help="also serve one emulator at its vendor's root on this address, e.g."
                            " hexoskin=127.0.0.1:8443 (repeatable)")
    sec = cloud.add_argument_group("TLS")
    sec.add_argument("--tls", action="store_true",
                     help="serve HTTPS with a certificate from a CA kept in DATA_DIR/tls (printed: trust it once)")
    sec.add_argument("--cert", help="serve HTTPS with this certificate chain (PEM) instead")
    sec.add_argument("--key", help="the private key of --cert (PEM)")
    cloud.add_argument("--kardia-api-key", action="append",
                       help="an accepted Kardia API key, one account each (repeatable; env WEARABLE_SIM_KARDIA_API_KEY)")
    cloud.add_argument("--kardia-webhook-secret", help="HMAC secret of webhook signatures"
                                                       " (env WEARABLE_SIM_KARDIA_WEBHOOK_SECRET)")
    cloud.add_argument("--up-token", action="append",
                       help="TOKEN[:USER_XID[:CLIENT_ID]], an accepted UP Bearer token (repeatable; env WEARABLE_SIM_UP_TOKEN)")
    cloud.add_argument("--humanapi-token", action="append",
                       help="TOKEN[:HUMAN_ID], an accepted hub Bearer token (repeatable; env WEARABLE_SIM_HUMANAPI_TOKEN)")
    cloud.add_argument("--hexoskin-user", action="append",
                       help="EMAIL:PASSWORD[:NAME], a Hexoskin account (repeatable; env WEARABLE_SIM_HEXOSKIN_USER)")
    cloud.add_argument("--hexoskin-key", action="append",
                       help="PUBLIC:PRIVATE[:EMAIL], a Hexoskin API key, optionally bound to a user (repeatable;"
                            " env WEARABLE_SIM_HEXOSKIN_KEY)")
    cloud.add_argument("--hexoskin-coach", action="append",
                       help="COACH_EMAIL>ATHLETE_EMAIL: the coach sees the athlete's data (repeatable;"
                            " env WEARABLE_SIM_HEXOSKIN_COACH)")
    cloud.add_argument("--hexoskin-require-signature", action="store_true",
                       help="refuse Hexoskin requests without an API-key signature (default: checked when sent)")
    cloud.add_argument("--hexoskin-refuse-replays", action="store_true",
                       help="refuse a signed Hexoskin write sent again with the same signature and body")
    cloud.add_argument("--kardia-demo-patient", metavar="ID",
                       help="make sure a Kardia patient with this id exists in the first account (demo installs)")
    cloud.set_defaults(func=_cloud)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the wearable-sim command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
