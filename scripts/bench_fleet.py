#!/usr/bin/env python3
"""Messages per second through the fleet's relays: one relay, then two of one shared-subscription group.

Setup: a real Mosquitto on loopback (persistence on, as in production), the hub emulator in its own
process (`wearable-sim cloud`), relays as real processes (`wearable-gateway relay`). A publisher
sends N package messages (ECG summaries for the hub, the format a gateway's mqtt uplink sends,
QoS 1, PUBACKed) as fast as the broker takes them; the clock runs from the first publish until the
hub emulator has acknowledged all N (the relays' forwarded counters). Every message is durable in
a relay's spool (fsync, as configured by default) before its PUBACK, and delivered over HTTP.

    .venv/bin/python scripts/bench_fleet.py [--messages 3000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import paho.mqtt.client as paho

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway import fleet  # noqa: E402
from gateway.spool import StoredPackage  # noqa: E402
from tests.broker import Mosquitto, free_port  # noqa: E402

TOKEN = "bench-hub-token"


def wait(predicate, timeout: float, what: str, every: float = 0.05) -> None:
    """Poll until predicate() is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(every)


def get(url: str):
    """JSON of a GET, or None."""
    try:
        return httpx.get(url, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None


def relay_toml(tmp: Path, i: int, broker: str, hub: str, port: int) -> Path:
    """A relay's file: the hub uplink only."""
    path = tmp / f"relay{i}.toml"
    path.write_text(f"""
[relay]
base_url = "{broker}"
client_id = "bench-relay-{i}"
group = "bench{str(i).split('-')[0]}"
receive_maximum = 256
[spool]
path = "{tmp / f'relay{i}.db'}"
[status]
listen = "127.0.0.1:{port}"
[uplinks.hub]
type = "humanapi"
base_url = "{hub}"
token = "{TOKEN}"
in_flight = 16
""")
    return path


def messages(run: str, n: int):
    """n hub packages, as a gateway's mqtt uplink publishes them."""
    for i in range(n):
        key = f"BENCH-{run}/1/leadI/{i * 9000}-{(i + 1) * 9000}"
        body = json.dumps({"sourceId": key, "timestamp": "2026-12-01T10:00:00Z", "heartRate": 60 + i % 40,
                           "duration": 30.0, "sampleRate": 300, "source": "kardiamobile",
                           "determination": "normal"}).encode()
        yield fleet.encode("wearable-gateway", f"gw-{i % 10}", StoredPackage(
            "hub", key, "humanapi.ecg", f"BENCH-{run}/1/leadI", i * 9000, (i + 1) * 9000, time.time(),
            "application/json", body))


def one_run(tmp: Path, broker: Mosquitto, hub: str, relays: int, n: int) -> dict:
    """Start `relays` relays, publish n messages, time until all are forwarded."""
    ports = [free_port() for _ in range(relays)]
    procs = []
    for i, port in enumerate(ports):
        cfg = relay_toml(tmp, f"{relays}-{i}", broker.url, hub, port)
        procs.append(subprocess.Popen([sys.executable, "-m", "gateway", "relay", "--config", str(cfg),
                                       "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
    try:
        wait(lambda: all((get(f"http://127.0.0.1:{p}/api/fleet") or {}).get("broker", {}).get("state") == "up"
                         for p in ports), 60, "relays up")
        time.sleep(0.5)  # their SUBACKs
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{relays}", protocol=paho.MQTTv5)
        pub.max_inflight_messages_set(256)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        started = time.perf_counter()
        infos = [pub.publish(t, payload, qos=1, properties=props) for t, payload, props in messages(str(relays), n)]
        for info in infos:
            info.wait_for_publish(120)
        published = time.perf_counter() - started

        def forwarded() -> int:
            return sum(sum(g["forwarded"] for g in (get(f"http://127.0.0.1:{p}/api/fleet") or {}).get("gateways", []))
                       for p in ports)

        wait(lambda: forwarded() >= n, 600, "every message forwarded", every=0.25)
        elapsed = time.perf_counter() - started
        pub.loop_stop()
        pub.disconnect()
        per_relay = [sum(g["forwarded"] for g in get(f"http://127.0.0.1:{p}/api/fleet")["gateways"]) for p in ports]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    return {"relays": relays, "messages": n, "seconds": round(elapsed, 2), "per_second": round(n / elapsed, 1),
            "publish_seconds": round(published, 2), "per_relay": per_relay}


def main() -> int:
    """Run both, print one line each (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Mosquitto(tmp / "mosquitto")
        broker.start()
        port = free_port()
        cloud = subprocess.Popen([sys.executable, "-m", "simulators", "cloud", "--port", str(port), "--data-dir",
                                  str(tmp / "cloud"), "--humanapi-token", TOKEN], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.STDOUT, env={**os.environ})
        hub = f"http://127.0.0.1:{port}/humanapi"
        try:
            wait(lambda: _up(port), 60, "the emulators")
            results = [one_run(tmp, broker, hub, r, args.messages) for r in (1, 2)]
        finally:
            cloud.terminate()
            cloud.wait(30)
            broker.stop()
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(f"{r['relays']} relay{'s' if r['relays'] > 1 else ' '}: {r['messages']} messages in {r['seconds']} s"
                  f" = {r['per_second']} messages/s (published in {r['publish_seconds']} s; per relay {r['per_relay']})")
    return 0


def _up(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        return True
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
