"""The fleet: gateways -> a real Mosquitto -> relays -> the vendor emulators, exactly once.

Gateways and relays run as real processes (`wearable-gateway run`, `wearable-gateway relay`);
devices are simulators on pseudo-terminals; the broker is Debian's mosquitto with persistence in
a temporary directory (scripts/test.sh installs it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import paho.mqtt.client as paho
import pytest

from gateway import fleet
from gateway.broker import Received, publish_properties
from gateway.config import ConfigError, load, load_relay
from gateway.spool import StoredPackage
from gateway.uplinks.base import Outcome
from gateway.uplinks.mqtt import classify_puback
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer
from simulators.reconcile import reconcile
from tests.broker import MOSQUITTO, Mosquitto, free_port
from tests.chain import API_KEY, HUB_TOKEN, create_patient, recordings, start_simulator, wait_for

PY = sys.executable
needs_broker = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (scripts/test.sh installs it)")


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto on a free loopback port, persistence in tmp_path; stopped at the end."""
    b = Mosquitto(tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


# -- the wire format ------------------------------------------------------------------------

def _stored(**kw) -> StoredPackage:
    base = dict(uplink="kardia", key="KM1/5eed/leadI/0-9000", kind="kardia.recording", stream="KM1/5eed/leadI",
                first=0, end=9000, sample_time=1796000000.25, content_type="application/json", body=b'{"x": 1}',
                evictable=True)
    return StoredPackage(**{**base, **kw})


def _received(topic: str, payload: bytes, props) -> Received:
    from gateway.broker import user_properties

    return Received(topic, payload, user_properties(props), 1, 1, 1)


def test_a_package_crosses_the_broker_as_it_was_spooled():
    topic, payload, props = fleet.encode("wearable-gateway", "room-12", _stored())
    assert topic == "wearable-gateway/room-12/packages/KM1/kardia"
    gateway, p = fleet.decode(_received(topic, payload, props))
    assert gateway == "room-12"
    assert (p.uplink, p.key, p.kind, p.first, p.end, p.sample_time, p.content_type, p.body, p.evictable) == (
        "kardia", "KM1/5eed/leadI/0-9000", "kardia.recording", 0, 9000, 1796000000.25, "application/json",
        b'{"x": 1}', True)
    assert p.stream == "room-12/KM1/5eed/leadI"  # streams of different gateways never mix on a relay
    # A prefix of several levels, and a device name that is not a safe topic level.
    topic, _, _ = fleet.encode("clinic/a", "gw", _stored(stream="K+M#1/x/leadI"))
    assert topic == "clinic/a/gw/packages/K_M_1/kardia"
    assert fleet.status_gateway("clinic/a", "clinic/a/gw/status") == "gw"
    assert fleet.status_gateway("clinic/a", "clinic/a/gw/packages/dev/status") is None


@pytest.mark.parametrize("change, reason", [
    (lambda t, p: (t, {k: v for k, v in p.items() if k != "key"}), "missing user properties key"),
    (lambda t, p: (t.replace("/kardia", "/hub"), p), "does not match"),
    (lambda t, p: (t, {**p, "first": "x"}), "must be numbers"),
    (lambda t, p: (t, {**p, "end": "-5"}), "bad range"),
    (lambda t, p: (t, {**p, "v": "9"}), "format version"),
    (lambda t, p: ("wearable-gateway/room-12/other/KM1/kardia", p), "not a package topic"),
])
def test_a_message_that_is_not_a_package_is_refused_with_its_reason(change, reason):
    topic, payload, props = fleet.encode("wearable-gateway", "room-12", _stored())
    user = dict(props.UserProperty)
    topic, user = change(topic, user)
    with pytest.raises(fleet.BadMessage, match=reason):
        fleet.decode(_received(topic, payload, publish_properties("application/json", user)))


def test_puback_reason_codes():
    assert classify_puback(0) is Outcome.OK
    assert classify_puback(0x10) is Outcome.RETRY  # no matching subscribers: the broker kept nothing
    assert classify_puback(0x87) is Outcome.AUTH
    assert classify_puback(0x99) is Outcome.PERMANENT
    assert classify_puback(0x97) is Outcome.RETRY  # quota exceeded


# -- configuration ---------------------------------------------------------------------------

def _gateway_toml(spool: Path, broker_url: str, gateway_id: str, devices: list[tuple[str, str, str]],
                  status_port: int, broker_extra: str = "", hub: bool = True, drain: float = 30) -> str:
    out = f"""
[gateway]
drain_on_stop = {drain}
[spool]
path = "{spool}"
[status]
listen = "127.0.0.1:{status_port}"
[uplinks.fleet]
type = "mqtt"
base_url = "{broker_url}"
gateway_id = "{gateway_id}"
status_interval = 1
{broker_extra}
[uplinks.kardia]
type = "kardia"
via = "fleet"
[uplinks.hub]
type = "humanapi"
via = "fleet"
"""
    for name, pty, patient in devices:
        out += f"""
[[devices]]
name = "{name}"
driver = "kardiamobile"
transport = "serial://{pty}"
uplinks = {'["kardia", "hub"]' if hub else '["kardia"]'}
patient_id = "{patient}"
recording_seconds = 10
"""
    return out


def _relay_toml(spool: Path, broker_url: str, client_id: str, server_url: str, status_port: int = 0) -> str:
    return f"""
[relay]
base_url = "{broker_url}"
client_id = "{client_id}"
group = "vendors"
drain_on_stop = 10
[spool]
path = "{spool}"
[status]
listen = "127.0.0.1:{status_port}"
[uplinks.kardia]
type = "kardia"
base_url = "{server_url}/kardia"
api_key = "{API_KEY}"
[uplinks.hub]
type = "humanapi"
base_url = "{server_url}/humanapi"
token = "{HUB_TOKEN}"
"""


def test_fleet_configuration_is_checked(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(_gateway_toml(tmp_path / "s.db", "mqtt://127.0.0.1:1883", "room-1", [("k1", "/dev/null", "p")], 0))
    c = load(cfg)
    assert c.uplinks["kardia"].via == "fleet" and c.uplinks["fleet"].broker.client_id == "wg-room-1"
    bad = _gateway_toml(tmp_path / "s.db", "http://x", "room 1", [("k1", "/dev/null", "p")], 0)
    bad = bad.replace('via = "fleet"\n[uplinks.hub]', 'via = "nowhere"\n[uplinks.hub]')
    bad = bad.replace('uplinks = ["kardia", "hub"]', 'uplinks = ["kardia", "fleet"]')
    cfg.write_text(bad)
    with pytest.raises(ConfigError) as e:
        load(cfg)
    text = "\n".join(e.value.errors)
    assert "uplinks.fleet.base_url: must be mqtt://" in text
    assert "uplinks.fleet.gateway_id" in text
    assert "uplinks.kardia.via: no mqtt uplink named 'nowhere'" in text
    assert "'fleet' is a broker: name the vendor uplinks" in text
    r = tmp_path / "r.toml"
    r.write_text(_relay_toml(tmp_path / "r.db", "mqtt://127.0.0.1:1", "relay-1", "http://127.0.0.1:1"))
    assert set(load_relay(r).uplinks) == {"kardia", "hub"}
    r.write_text(_relay_toml(tmp_path / "r.db", "mqtts://h", "relay 1", "http://x") + '\n[uplinks.b]\ntype = "mqtt"\n')
    with pytest.raises(ConfigError) as e:
        load_relay(r)
    assert any("uplinks.b.type: must be one of kardia" in x for x in e.value.errors)


# -- processes ---------------------------------------------------------------------------------

class Proc:
    """A gateway or relay process, its output in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None) -> None:
        self.args, self.log, self.env = args, log, env
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        """Start (again), appending to the log."""
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([PY, "-m", "gateway", *self.args], stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(self.env or {})})

    def terminate(self, timeout: float = 90) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing flushed."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def text(self) -> str:
        """What it logged."""
        return self.log.read_text()


def _json(url: str):
    try:
        return httpx.get(url, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None


def _hub_items(server_url: str) -> list[dict]:
    r = httpx.get(server_url + "/humanapi/v1/human/ecg", params={"limit": 500},
                  headers={"Authorization": f"Bearer {HUB_TOKEN}"})
    r.raise_for_status()
    return r.json()


def _forwarded(relays: list[tuple[Proc, int]]) -> int:
    total = 0
    for _, port in relays:
        st = _json(f"http://127.0.0.1:{port}/api/fleet")
        total += sum(g["forwarded"] for g in st["gateways"]) if st else 0
    return total


@needs_broker
def test_three_gateways_two_relays_a_broker_restart_and_a_killed_relay_every_recording_once(tmp_path, broker):
    """Three gateways -> Mosquitto -> two relays -> Kardia and the hub. Mid-stream the broker restarts
    (persistence on) and one relay is SIGKILLed and started again: every recording arrives once, bit-exact."""
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY], humanapi_tokens=[HUB_TOKEN]))) as server:
        url = server.url + "/kardia"
        relays = []
        for i in (1, 2):
            port = free_port()
            cfg = tmp_path / f"relay{i}.toml"
            cfg.write_text(_relay_toml(tmp_path / f"relay{i}.db", broker.url, f"relay-{i}", server.url, port))
            relays.append((Proc(["relay", "--config", str(cfg)], tmp_path / f"relay{i}.log"), port))
        wait_for(lambda: all((_json(f"http://127.0.0.1:{p}/api/fleet") or {}).get("broker", {}).get("state") == "up"
                             for _, p in relays), 60, "both relays subscribed")
        sims, patients, gateways = [], [], []
        for g in range(3):
            patient = httpx.post(url + "/v1/patients", auth=(API_KEY, ""),
                                 data={"mrn": f"FLEET-{g}", "dob": "1960-01-01", "email": f"f{g}@example.com"}).json()["id"]
            sim = start_simulator(duration=60, speed=3, seed=60 + g, link=tmp_path / f"k{g}.pty")
            cfg = tmp_path / f"gw{g}.toml"
            cfg.write_text(_gateway_toml(tmp_path / f"gw{g}.db", broker.url, f"room-{g}",
                                         [(f"kardia-{g}", str(tmp_path / f"k{g}.pty"), patient)], free_port()))
            gateways.append(Proc(["run", "--config", str(cfg)], tmp_path / f"gw{g}.log"))
            sims.append(sim)
            patients.append(patient)
        try:
            wait_for(lambda: _forwarded(relays) >= 6, 90, "the first recordings through the fleet")
            # The fleet view while they stream: every gateway online, its device connected (retained status).
            wait_for(lambda: sorted((g["gateway"], g["online"], g["devices_connected"]) for g in
                                    (_json(f"http://127.0.0.1:{relays[1][1]}/api/fleet") or {}).get("gateways", [])
                                    ) == [("room-0", True, 1), ("room-1", True, 1), ("room-2", True, 1)],
                     30, "three gateways online with their device")
            broker.restart()  # mid-stream: gateways and relays reconnect, the broker's state survives
            wait_for(lambda: _forwarded(relays) >= 14, 90, "recordings after the broker's restart")
            relays[0][0].kill()  # mid-stream, with messages in flight to it
            wait_for(lambda: _forwarded(relays[1:]) >= 6, 60, "the other relay forwarding on")
            relays[0][0].start()
            for sim in sims:
                sim.join()
            for sim in sims:  # each gateway has read its device's last frame (a loaded run once lost it here)
                assert sim.port.drain(60), "a gateway did not read its device's last bytes"
            for gw in gateways:
                assert gw.terminate() == 0  # drain_on_stop: their spools hand everything to the broker
            wait_for(lambda: sum(len(recordings(url, p)) for p in patients) >= 18 and len(_hub_items(server.url)) >= 18,
                     120, "every recording at the vendors")
            fleet_view = _json(f"http://127.0.0.1:{relays[1][1]}/api/fleet")
            metrics = httpx.get(f"http://127.0.0.1:{relays[1][1]}/metrics").text
            page = httpx.get(f"http://127.0.0.1:{relays[1][1]}/").text
        finally:
            for gw in gateways:
                if gw.proc.poll() is None:
                    gw.kill()
            for proc, _ in relays:
                if proc.proc.poll() is None:
                    proc.terminate()
            for sim in sims:
                sim.stop.set()
                sim.port.close()
        hub = _hub_items(server.url)
        recs = [recordings(url, p) for p in patients]
    for sim, rec in zip(sims, recs):
        check = reconcile(sim.sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in rec])
        # Every sample once, each recording bit-exact where it belongs. Two relays deliver a stream's
        # recordings side by side, so they may arrive out of order (each carries its own time).
        assert not (check.duplicates or check.unmatched or check.missing_ranges), check.as_dict()
        assert check.delivered == len(sim.sent) == 60 * 300 and sorted(check.positions) == [3000 * i for i in range(6)]
        assert len(rec) == 6
    ids = [h["sourceId"] for h in hub]
    assert len(ids) == 18 and len(set(ids)) == 18  # the hub got each summary once too
    # The fleet view: every gateway, offline after its SIGTERM (its last word on the status topic).
    assert sorted(g["gateway"] for g in fleet_view["gateways"]) == ["room-0", "room-1", "room-2"]
    assert all(g["online"] is False for g in fleet_view["gateways"])
    assert "room-1" in page and 'wg_relay_forwarded_total{gateway="room-1"}' in metrics
    assert 'wg_relay_uplink_latency_seconds_count{uplink="kardia"}' in metrics
    for gw in gateways:
        assert "Traceback" not in gw.text()
        assert gw.text().count("connected to mqtt://") >= 2  # reconnected after the broker's restart
    assert "Traceback" not in relays[0][0].text() and "Traceback" not in relays[1][0].text()
    assert "as relay-1 (session resumed)" in relays[0][0].text()  # the killed relay's queue waited for it


@needs_broker
def test_the_broker_down_for_a_minute_loses_nothing(tmp_path, broker):
    """The broker goes away for 60 s while a device streams: the gateway spools on, and everything
    reaches the vendor once the broker is back."""
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY], humanapi_tokens=[HUB_TOKEN]))) as server:
        url = server.url + "/kardia"
        patient = create_patient(url)
        rport, gport = free_port(), free_port()
        (tmp_path / "r.toml").write_text(_relay_toml(tmp_path / "r.db", broker.url, "relay-1", server.url, rport))
        relay = Proc(["relay", "--config", str(tmp_path / "r.toml")], tmp_path / "relay.log")
        wait_for(lambda: (_json(f"http://127.0.0.1:{rport}/api/fleet") or {}).get("broker", {}).get("state") == "up",
                 60, "the relay subscribed")
        sim = start_simulator(duration=90, speed=1, seed=70, link=tmp_path / "k.pty")
        (tmp_path / "g.toml").write_text(_gateway_toml(tmp_path / "g.db", broker.url, "room-9",
                                                       [("kardia-9", str(tmp_path / "k.pty"), patient)], gport,
                                                       hub=False))
        gw = Proc(["run", "--config", str(tmp_path / "g.toml")], tmp_path / "gw.log")
        status = f"http://127.0.0.1:{gport}/api/status"
        try:
            wait_for(lambda: len(recordings(url, patient)) >= 1, 60, "the first recording")
            broker.stop()
            down = asyncio.run(_watch_backlog(status, 60.0))
            broker.start()
            sim.join()
            assert sim.port.drain(60), "the gateway did not read its device's last bytes"
            assert gw.terminate() == 0
            wait_for(lambda: len(recordings(url, patient)) >= 9, 120, "every recording after the outage")
        finally:
            for p in (gw, relay):
                if p.proc.poll() is None:
                    p.terminate()
            sim.stop.set()
            sim.port.close()
        recs = recordings(url, patient)
    check = reconcile(sim.sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs])
    assert check.exact and len(recs) == 9, check.as_dict()
    # While the broker was away the gateway kept what it read, and said where it was stuck.
    assert down["max_pending"] >= 4 and down["link_states"] == {"down"}
    assert "reconnecting" in gw.text() and "Traceback" not in gw.text()


async def _watch_backlog(status_url: str, seconds: float) -> dict:
    """Poll the gateway's status for `seconds`: the most packages waiting for the kardia uplink, the link's states."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    out = {"max_pending": 0, "link_states": set()}
    async with httpx.AsyncClient(timeout=5) as c:
        while loop.time() < end:
            try:
                st = (await c.get(status_url)).json()
                out["max_pending"] = max(out["max_pending"], st["spool"]["uplinks"].get("kardia", {}).get("pending", 0))
                out["link_states"] |= {link["state"] for link in st["links"]}
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await asyncio.sleep(1.0)
    return out


@needs_broker
def test_wrong_broker_credentials_are_a_clear_status_and_the_spool_keeps_everything(tmp_path):
    b = Mosquitto(tmp_path / "mosquitto", users={"room-5": "right-password-1"})
    b.start()
    try:
        sim = start_simulator(duration=40, speed=2, seed=75, link=tmp_path / "k.pty")
        gport = free_port()
        (tmp_path / "g.toml").write_text(_gateway_toml(
            tmp_path / "g.db", b.url, "room-5", [("kardia-5", str(tmp_path / "k.pty"), "patient-x")], gport,
            broker_extra='username = "room-5"\npassword_env = "WG_TEST_BROKER_PASSWORD"', hub=False, drain=1))
        gw = Proc(["run", "--config", str(tmp_path / "g.toml")], tmp_path / "gw.log",
                  env={"WG_TEST_BROKER_PASSWORD": "wrong-password-2"})
        status = f"http://127.0.0.1:{gport}/api/status"
        try:
            sim.join()
            wait_for(lambda: ((_json(status) or {}).get("spool", {}).get("uplinks", {}).get("kardia", {})
                              .get("pending", 0)) >= 4, 60, "the recordings kept in the spool")
            st = _json(status)
            assert gw.terminate() == 0
        finally:
            if gw.proc.poll() is None:
                gw.kill()
            sim.stop.set()
            sim.port.close()
    finally:
        b.stop()
    link = st["links"][0]
    assert link["state"] == "refused" and "check the user name and password" in link["last_error"]
    up = next(u for u in st["uplinks"] if u["name"] == "kardia")
    assert up["state"] == "paused" and up["counters"].get("acked", 0) == 0
    text = gw.text()
    assert "refused the connection" in text and "check the user name and password" in text
    assert text.count("refused the connection") == 1  # one line, not one per retry
    assert "wrong-password-2" not in text
    # Nothing left the spool: all 4 recordings (40 s of 10 s windows) are still there after the stop.
    from gateway.spool import Spool

    spool = Spool(tmp_path / "g.db", readonly=True)
    assert spool.stats()["uplinks"]["kardia"]["pending"] == 4


@needs_broker
def test_over_tls_with_passwords_a_gateway_and_a_relay_deliver_and_a_wrong_ca_is_refused(tmp_path):
    """mqtts:// with the broker's CA and user names and passwords on both sides: every recording
    arrives once; a gateway that does not trust the broker's certificate sends nothing and says why."""
    b = Mosquitto(tmp_path / "mosquitto", users={"room-3": "gw-pass-3", "relay-1": "relay-pass-1"}, tls=True)
    b.start()
    try:
        with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY]))) as server:
            url = server.url + "/kardia"
            patient = create_patient(url)
            rport, gport, g2port = free_port(), free_port(), free_port()
            (tmp_path / "r.toml").write_text(_relay_toml(tmp_path / "r.db", b.url, "relay-1", server.url, rport)
                                             .replace('group = "vendors"', f'group = "vendors"\nusername = "relay-1"\n'
                                                      f'password_env = "WG_RELAY_PW"\nca_file = "{b.ca_file}"'))
            relay = Proc(["relay", "--config", str(tmp_path / "r.toml")], tmp_path / "relay.log",
                         env={"WG_RELAY_PW": "relay-pass-1"})
            sim = start_simulator(duration=20, speed=4, seed=80, link=tmp_path / "k.pty")
            sim2 = start_simulator(duration=600, speed=1, seed=81, link=tmp_path / "k2.pty")
            creds = 'username = "room-3"\npassword_env = "WG_GW_PW"\n'
            (tmp_path / "g.toml").write_text(_gateway_toml(
                tmp_path / "g.db", b.url, "room-3", [("kardia-3", str(tmp_path / "k.pty"), patient)], gport,
                broker_extra=creds + f'ca_file = "{b.ca_file}"', hub=False))
            (tmp_path / "g2.toml").write_text(_gateway_toml(  # trusts the system's CAs only
                tmp_path / "g2.db", b.url, "room-4", [("kardia-4", str(tmp_path / "k2.pty"), patient)], g2port,
                broker_extra=creds, hub=False, drain=1))
            gw = Proc(["run", "--config", str(tmp_path / "g.toml")], tmp_path / "gw.log", env={"WG_GW_PW": "gw-pass-3"})
            gw2 = Proc(["run", "--config", str(tmp_path / "g2.toml")], tmp_path / "gw2.log",
                       env={"WG_GW_PW": "gw-pass-3"})
            try:
                sim.join()
                wait_for(lambda: len(recordings(url, patient)) >= 2, 90, "both recordings over TLS")
                wait_for(lambda: "certificate verify failed" in str((_json(f"http://127.0.0.1:{g2port}/api/status")
                                                                     or {}).get("links")), 60, "the TLS refusal")
                st2 = _json(f"http://127.0.0.1:{g2port}/api/status")
                assert gw.terminate() == 0 and gw2.terminate() == 0
            finally:
                for p in (gw, gw2, relay):
                    if p.proc.poll() is None:
                        p.terminate()
                for s_ in (sim, sim2):
                    s_.stop.set()
                    s_.port.close()
            recs = recordings(url, patient)
    finally:
        b.stop()
    check = reconcile(sim.sent, [np.array(r["data"]["raw"]["samples"]["leadI"]) for r in recs])
    assert check.exact and len(recs) == 2, check.as_dict()
    assert st2["links"][0]["state"] == "down" and st2["links"][0]["counters"].get("connects", 0) == 0
    for p in (gw, gw2, relay):
        assert "Traceback" not in p.text() and "pass-" not in p.text()


@needs_broker
def test_a_relay_drops_what_is_not_a_package_and_forwards_the_rest(tmp_path, broker):
    """A stranger's messages on the package topics (no properties, garbage) are counted and dropped;
    a real package right after them is forwarded; the same one again is a replay at the hub, not a
    second copy; one the hub uplink cannot send is a dead letter."""
    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY], humanapi_tokens=[HUB_TOKEN]))) as server:
        rport = free_port()
        (tmp_path / "r.toml").write_text(_relay_toml(tmp_path / "r.db", broker.url, "relay-1", server.url, rport))
        relay = Proc(["relay", "--config", str(tmp_path / "r.toml")], tmp_path / "relay.log")
        api = f"http://127.0.0.1:{rport}/api/fleet"
        try:
            wait_for(lambda: (_json(api) or {}).get("broker", {}).get("state") == "up", 60, "the relay subscribed")
            c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="stranger", protocol=paho.MQTTv5)
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
            body = json.dumps({"sourceId": "X/1/leadI/0-10", "timestamp": "2026-12-01T10:00:00Z", "heartRate": 60,
                               "duration": 1.0, "sampleRate": 300, "source": "kardiamobile"}).encode()
            topic, _, props = fleet.encode("wearable-gateway", "room-7", _stored(uplink="hub", kind="humanapi.ecg",
                                                                                  key="X/1/leadI/0-10"))
            c.publish(topic, b"garbage", qos=1).wait_for_publish(10)
            c.publish(topic, body, qos=1, properties=publish_properties("application/json", {"key": "k"})).wait_for_publish(10)
            c.publish("wearable-gateway/room-7/status", b"{not json", qos=1).wait_for_publish(10)
            c.publish(topic, body, qos=1, properties=props).wait_for_publish(10)
            wait_for(lambda: (_json(api) or {}).get("counters", {}).get("acknowledged", 0) >= 1, 60, "the real one")
            wait_for(lambda: len(_hub_items(server.url)) == 1, 60, "the package at the hub")
            # The same package again, as a broker redelivers it after a relay died unacknowledged: a replay.
            c.publish(topic, body, qos=1, properties=props).wait_for_publish(10)
            wait_for(lambda: any(g["replayed"] == 1 for g in (_json(api) or {}).get("gateways", [])), 60,
                     "the hub's replay")
            # A well-formed package the hub uplink cannot make a request of: a dead letter, kept.
            topic, _, props = fleet.encode("wearable-gateway", "room-7", _stored(uplink="hub", kind="kardia.recording",
                                                                                  key="X/1/leadI/10-20"))
            c.publish(topic, body, qos=1, properties=props).wait_for_publish(10)
            wait_for(lambda: (_json(api) or {}).get("spool", {}).get("dead_letters") == 1, 60, "the dead letter")
            st = _json(api)
            c.loop_stop()
            c.disconnect()
            hub_after = _hub_items(server.url)
        finally:
            relay.terminate()
    assert st["counters"]["bad_messages"] == 2 and st["counters"]["bad_status"] == 1
    assert st["counters"]["acknowledged"] == 3 and len(hub_after) == 1  # received twice, stored once
    hub_up = next(u for u in st["uplinks"] if u["name"] == "hub")
    assert hub_up["counters"]["dead_lettered"] == 1 and "not a hub type" in hub_up["last_error"]
    assert relay.proc.returncode == 0 and "Traceback" not in relay.text()
    assert relay.text().count("dropped a message") == 2


def test_a_gateway_status_from_another_machine_is_read_defensively():
    from gateway.relay import summarise_status

    ok = summarise_status({"online": True, "devices": [{"name": "k", "connected": True}, {"name": "b"}, "junk"],
                           "backlog": {"kardia": {"pending": 3}, "hub": {"pending": 2}, "x": 7},
                           "last_error": {"message": "boom", "level": "ERROR"}, "uplinks": {"kardia": "ok"},
                           "dead_letters": 1, "version": "0.1.0"})
    assert (ok["devices"], ok["devices_connected"], ok["backlog"], ok["last_error"], ok["dead_letters"]) == (
        2, 1, 5, "boom", 1)
    for bad in ([1, 2], "x", {"backlog": [1]}, {"dead_letters": "many"}, {"devices": 5}):
        with pytest.raises((ValueError, TypeError, AttributeError)):
            summarise_status(bad)
