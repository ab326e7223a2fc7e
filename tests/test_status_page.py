"""The status page in a real headless Chromium (Debian's chromium, driven by Playwright).

While a simulated KardiaMobile streams into the daemon, the page must show the device with its
link up and an ECG trace that moves. WG_SCREENSHOT=path saves a screenshot (the README's).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer
from tests.chain import API_KEY, HUB_TOKEN, config_toml, create_patient, start_simulator, wait_for
from tests.test_service import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags a sandboxed, offline machine needs (no background calls home, no GPU, root).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                          "(scripts/test.sh installs it with apt when it can)")


def test_status_page_shows_the_device_and_a_moving_trace(tmp_path):
    from playwright.sync_api import sync_playwright

    with BackgroundServer(build_app(tmp_path / "cloud", Credentials([API_KEY], humanapi_tokens=[HUB_TOKEN]))) as server:
        url = server.url + "/kardia"
        patient = create_patient(url)
        sim = start_simulator(duration=60, speed=1.0, seed=31, link=tmp_path / "kardia.pty", start=False)
        port = free_port()
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(config_toml(tmp_path / "spool.db", url, patient, str(tmp_path / "kardia.pty"),
                                   recording_seconds=5, hub_url=server.url + "/humanapi",
                                   status_listen=f"127.0.0.1:{port}"))
        env = {**os.environ, "CHAIN_KARDIA_KEY": API_KEY}
        gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)], env=env,
                              stdout=open(tmp_path / "gateway.log", "w"), stderr=subprocess.STDOUT)
        status_url = f"http://127.0.0.1:{port}/"
        try:
            sim.thread.start()
            wait_for(lambda: _answers(status_url + "api/status"), 30, "the status server")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1100, "height": 720})
                page.goto(status_url)
                device = page.wait_for_selector('section.device[data-device="kardia-1"][data-link="up"]',
                                                timeout=20_000)
                page.wait_for_function("document.querySelector('section.device').dataset.tracePoints > 600",
                                       timeout=20_000)
                first_end = float(device.get_attribute("data-trace-end"))
                first_png = page.evaluate("document.querySelector('section.device canvas').toDataURL()")
                time.sleep(1.5)
                second_end = float(device.get_attribute("data-trace-end"))
                second_png = page.evaluate("document.querySelector('section.device canvas').toDataURL()")
                header = device.inner_text()
                wait_for(lambda: "hub" in page.inner_text("#uplinks"), 10, "the uplink table")
                # A recording analysed and uploaded: its heart rate and determination (5 s: too short
                # for a rhythm) and the upload show on the device.
                page.wait_for_function("/last recording: \\d+ bpm, too_short/.test("
                                       "document.querySelector('section.device .analysis').textContent)",
                                       timeout=60_000)
                page.wait_for_function("!/never/.test(document.querySelector('section.device .last-upload')"
                                       ".textContent)", timeout=60_000)
                healthy = page.inner_text("#health")
                kardia_state = page.get_attribute('#uplinks tr[data-uplink="kardia"]', "data-state")
                if os.environ.get("WG_SCREENSHOT"):
                    page.screenshot(path=os.environ["WG_SCREENSHOT"], full_page=True)
                sim.stop.set()  # the device goes away: the health line says which and why
                sim.join()
                sim.port.close()
                page.wait_for_selector('section.device[data-device="kardia-1"][data-link="down"]', timeout=30_000)
                page.wait_for_selector("#health.problem", timeout=10_000)
                unhealthy = page.inner_text("#health")
                down_reason = page.inner_text("section.device .down-reason")
                browser.close()
        finally:
            gw.terminate()
            gw.wait(30)
            sim.stop.set()
            sim.join()
            sim.port.close()
    assert "kardia-1" in header and "up" in header and "0 bad frames" in header
    assert second_end - first_end >= 0.5  # the trace follows the live stream (1.5 s passed)
    assert first_png != second_png  # and the drawing changed
    assert healthy.startswith("all well") and kardia_state == "ok"
    # The port vanished: the link was lost, and each reopening since fails (the latest reason shows).
    assert re.search(r"device kardia-1 is down: (link lost|cannot open \(No such file)", unhealthy), unhealthy
    assert down_reason in unhealthy


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
