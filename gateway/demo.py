"""`wearable-gateway demo`: the whole chain on one machine with no configuration.

A simulated KardiaMobile writes into a pseudo-terminal; the real gateway (serial transport,
driver, core, spool, Kardia uplink) reads it and uploads to the Kardia Pro emulator over
loopback HTTP; at the end the recordings are read back through the emulator's public API and
compared, sample for sample, with what the simulator sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np

from gateway.config import Config, DeviceConfig, SpoolConfig, StatusConfig, UplinkConfig
from gateway.daemon import Gateway
from gateway.drivers.base import bad_frames
from gateway.spool import Spool
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer
from simulators.devices.kardiamobile import KardiaMobileModel
from simulators.devices.serial_front import PtyPort, RunStats, run_frames
from simulators.physiology.ecg import EcgParams, EcgSynth
from simulators.reconcile import reconcile

DEVICE = "kardia-demo"


async def fetch_recordings(base_url: str, api_key: str, patient_id: str) -> list[dict]:
    """Every recording of a patient through the public API, oldest first."""
    out: list[dict] = []
    async with httpx.AsyncClient(base_url=base_url, auth=(api_key, ""), timeout=30) as client:
        params: dict[str, Any] = {"limit": 50}
        while True:
            r = await client.get(f"/v1/patients/{patient_id}/recordings", params=params)
            r.raise_for_status()
            page = r.json()
            out.extend(page["data"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            params["start"] = page["pageInfo"]["endCursor"]
    return out[::-1]


async def run_demo(duration: float = 60.0, speed: float = 1.0, data_dir: str | Path | None = None,
                   rhythm: str = "normal", heart_rate: float | None = None, seed: int | None = None,
                   recording_seconds: float = 30.0, out: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the demo; return its summary (also the --json output)."""
    t_start = time.monotonic()
    data = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="wearable-demo-"))
    data.mkdir(parents=True, exist_ok=True)
    creds = Credentials()
    api_key = creds.kardia_api_keys[0]
    source = EcgSynth(300, EcgParams(rhythm=rhythm, heart_rate=heart_rate, noise_mv=0.01, wander_mv=0.05, seed=seed))
    model = KardiaMobileModel(source, serial_number="KM1-DEMO0001")
    server = BackgroundServer(build_app(data / "cloud", creds)).start()
    port = PtyPort()
    sim_stop = threading.Event()
    sent: list[np.ndarray] = []
    sim_result: list[RunStats] = []
    gateway: Gateway | None = None
    try:
        kardia_url = server.url + "/kardia"
        async with httpx.AsyncClient(base_url=kardia_url, auth=(api_key, "")) as client:
            r = await client.post("/v1/patients", data={"mrn": "DEMO-0001", "dob": "1970-03-12",
                                                        "email": "demo@example.com", "firstname": "Demo"})
            r.raise_for_status()
            patient_id = r.json()["id"]
        hub_url, hub_token = server.url + "/humanapi", creds.humanapi_tokens[0]
        config = Config(
            spool=SpoolConfig(data / "spool.db"),
            uplinks={"kardia": UplinkConfig("kardia", "kardia", kardia_url, api_key),
                     "hub": UplinkConfig("hub", "humanapi", hub_url, hub_token)},
            devices=[DeviceConfig(DEVICE, "kardiamobile", f"serial://{port.path}", ["kardia", "hub"], patient_id,
                                  recording_seconds)],
            status=StatusConfig(port=0))  # any free port: the demo must run beside a real gateway
        gateway = Gateway(config)
        await gateway.start()

        def simulate() -> None:
            if not port.wait_for_reader(sim_stop, timeout=30):  # start when the gateway has opened the port
                return
            sim_result.append(run_frames(model.frames(), port, duration=duration, speed=speed, stop=sim_stop,
                                         on_frame=lambda f, _: sent.append(f.samples) if f.kind == "samples" else None))

        sim = threading.Thread(target=simulate, name="simulator", daemon=True)
        print(f"demo: {source.rhythm} ECG at {source.heart_rate:g} bpm for {duration:g} s (x{speed:g}) on {port.path}"
              f" -> gateway -> Kardia emulator at {kardia_url}", file=out, flush=True)
        if gateway.status_server is not None:
            print(f"demo: live status page http://127.0.0.1:{gateway.status_server.port}/ (metrics on /metrics)",
                  file=out, flush=True)
        runner = gateway.devices[0]
        sim.start()
        while sim.is_alive():
            await asyncio.sleep(1.0)
            await _progress(gateway, sum(len(s) for s in sent), t_start, out)
        sim_samples = sum(len(s) for s in sent)
        # Let the gateway read what is still in the pty before stopping it.
        deadline = time.monotonic() + 10
        while runner.driver.counters["samples"] < sim_samples and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await _progress(gateway, sim_samples, t_start, out)
        await gateway.stop(drain_timeout=60)
        if out.isatty():
            out.write("\n")
        recordings = await fetch_recordings(kardia_url, api_key, patient_id)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {hub_token}"}) as client:
            hub_items = (await client.get(hub_url + "/v1/human/ecg", params={"limit": 500})).json()
    finally:
        sim_stop.set()
        if gateway is not None:
            await gateway.stop()  # no-op when already stopped
        port.close()
        server.stop()

    spool = Spool(data / "spool.db")
    try:
        spool_stats, gaps = spool.stats(), spool.gaps()
    finally:
        spool.close()
    stored = [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recordings]
    check = reconcile(np.concatenate(sent) if sent else np.zeros(0, np.int16), stored)
    counters = runner.driver.counters
    return {
        "duration_s": duration, "speed": speed, "rhythm": source.rhythm, "heart_rate": source.heart_rate,
        "wall_seconds": round(time.monotonic() - t_start, 2),
        "simulator": {"port": port.path, **(sim_result[0].as_dict() if sim_result else {})},
        "gateway": {"samples_read": counters["samples"], "gaps": len(gaps),
                    "bad_frames": bad_frames(counters),
                    "uploaded": spool_stats["uplinks"].get("kardia", {}).get("acked", 0),
                    "pending": spool_stats["uplinks"].get("kardia", {}).get("pending", 0),
                    "dead_letters": spool_stats["dead_letters"], "spool": str(data / "spool.db")},
        "emulator": {"patient_id": patient_id, "recordings": len(recordings),
                     "durations_ms": [r["duration"] for r in recordings],
                     "analysis": [f"{r.get('algorithmDetermination')} {r.get('heartRate')} bpm" for r in recordings],
                     "store": str(data / "cloud" / "kardia.db"), "data_dir": str(data / "cloud")},
        "hub": {"ecg_summaries": len(hub_items), "store": str(data / "cloud" / "humanapi.db"),
                "matches_recordings": sorted(round(h["duration"] * 1000) for h in hub_items)
                == sorted(r["duration"] for r in recordings)},
        "check": check.as_dict(),
        "data_dir": str(data),
    }


async def _progress(gateway: Gateway, sim_samples: int, t_start: float, out: TextIO) -> None:
    status = await gateway.status()
    kardia = status["spool"]["uplinks"].get("kardia", {})
    read = status["devices"][0]["driver_counters"].get("samples", 0)
    line = (f"[{time.monotonic() - t_start:6.1f} s] simulator sent {sim_samples:>7} samples | gateway read "
            f"{read:>7} | recordings uploaded {kardia.get('acked', 0):>3}, pending {kardia.get('pending', 0):>2}")
    out.write(("\r" + line) if out.isatty() else line + "\n")
    out.flush()


def print_summary(s: dict[str, Any], out: TextIO = sys.stdout) -> None:
    """The human-readable summary."""
    sim, gw, emu, chk = s["simulator"], s["gateway"], s["emulator"], s["check"]
    lines = [
        f"Demo finished in {s['wall_seconds']:.1f} s ({s['duration_s']:g} s of {s['rhythm']} ECG at "
        f"{s['heart_rate']:g} bpm, x{s['speed']:g}).",
        f"  simulator  sent {chk['samples_sent']} samples in {sim.get('frames', 0)} frames on {sim['port']}",
        f"  gateway    read {gw['samples_read']} samples; {gw['gaps']} gaps, {gw['bad_frames']} bad frames; "
        f"uploaded {gw['uploaded']} recordings, {gw['pending']} pending, {gw['dead_letters']} dead letters",
        f"  emulator   stored {emu['recordings']} recordings ({', '.join(f'{d / 1000:g} s' for d in emu['durations_ms'])})"
        f" = {chk['samples_stored']} samples for patient {emu['patient_id']}",
        f"  analysis   {'; '.join(emu['analysis']) or 'none'} (heartRate, algorithmDetermination per recording)",
        f"  hub        {s['hub']['ecg_summaries']} ECG summaries"
        f" ({'one per recording' if s['hub']['matches_recordings'] else 'NOT one per recording'})",
        f"  check      bit-exact: {'yes' if chk['bit_exact'] else 'NO'}; duplicates: {chk['duplicate_samples']};"
        f" missing: {chk['missing_samples']}; unmatched recordings: {chk['unmatched_recordings']}",
        "Where the data went:",
        f"  gateway spool (SQLite):   {gw['spool']}",
        f"  Kardia emulator (SQLite): {emu['store']}",
        f"  Human API hub (SQLite):   {s['hub']['store']}",
        f"  serve it again:  wearable-sim cloud --data-dir {emu['data_dir']} --port 8080",
        f"  then:            curl -u kardia-dev-key: http://127.0.0.1:8080/kardia/v1/patients/{emu['patient_id']}/recordings",
        "                   curl -H 'Authorization: Bearer humanapi-dev-token' http://127.0.0.1:8080/humanapi/v1/human/ecg",
    ]
    print("\n".join(lines), file=out)


def main(duration: float, speed: float, data_dir: str | None, rhythm: str, heart_rate: float | None,
         as_json: bool) -> int:
    """Run the demo from the CLI; exit 0 when every sample arrived exactly once."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    summary = asyncio.run(run_demo(duration, speed, data_dir, rhythm, heart_rate))
    if as_json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    return 0 if summary["check"]["bit_exact"] and summary["hub"]["matches_recordings"] else 1
