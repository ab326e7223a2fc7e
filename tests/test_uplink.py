"""The Kardia uplink against the real emulator over loopback, with failures injected in front of it."""

from __future__ import annotations

import asyncio
import inspect
import json
import time

import httpx
import numpy as np
import pytest
from starlette.responses import JSONResponse

from gateway.spool import AsyncSpool, Package
from gateway.uplinks.base import Outcome, RetryPolicy, classify, retry_after
from gateway.uplinks.kardia import KardiaUplink
from gateway.vendors.kardia import recording_body
from simulators.cloud.app import Credentials, build_app
from simulators.cloud.server import BackgroundServer

KEY = "uplink-test-key"
FAST = RetryPolicy(initial=0.05, cap=0.2, auth_pause=0.3)


class Faults:
    """ASGI front for the emulator: answers POST /kardia/v1/recordings from a script first."""

    def __init__(self, app) -> None:
        self.app = app
        self.script: list[tuple[int, dict[str, str]]] = []
        self.seen = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/kardia/v1/recordings":
            self.seen += 1
            if self.script:
                status, headers = self.script.pop(0)
                await JSONResponse({"error": "injected", "message": f"injected {status}"}, status, headers)(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


@pytest.fixture
def cloud(tmp_path):
    faults = Faults(build_app(tmp_path / "cloud", Credentials([KEY])))
    with BackgroundServer(faults) as server:
        r = httpx.post(server.url + "/kardia/v1/patients", auth=(KEY, ""),
                       data={"mrn": "U-1", "dob": "1980-01-01", "email": "u@example.com"})
        yield server.url + "/kardia", faults, r.json()["id"]


@pytest.fixture
async def spool(tmp_path):
    sp = AsyncSpool(tmp_path / "spool.db")
    yield sp
    await sp.close()


def package(patient: str, first: int, n: int = 300, **extra) -> Package:
    body = json.loads(recording_body(patient, "2026-11-23T10:00:00.000+00:00", 300, 50, 500,
                                     np.arange(first, first + n, dtype=np.int16)))
    body.update(extra)
    return Package("kardia", f"KM1/01/leadI/{first}-{first + n}", "kardia.recording", "KM1/01/leadI", first,
                   first + n, 0.0, "application/json", json.dumps(body).encode())


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not ((await v) if inspect.isawaitable(v := predicate()) else v):
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def run_uplink(uplink, spool, predicate):
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(spool, stop))
    try:
        await until(predicate)
    finally:
        stop.set()
        await task


async def pending(spool) -> int:
    return (await spool.call(spool.spool.stats))["uplinks"].get("kardia", {}).get("pending", 0)


async def stored(url: str) -> list[dict]:
    async with httpx.AsyncClient(auth=(KEY, "")) as c:
        return (await c.get(url + "/v1/recordings", params={"limit": 50})).json()["data"]


def test_classification_and_retry_after_parsing():
    assert [classify(s) for s in (200, 201, 400, 401, 403, 404, 408, 422, 429, 500, 503)] == [
        Outcome.OK, Outcome.OK, Outcome.PERMANENT, Outcome.AUTH, Outcome.AUTH, Outcome.PERMANENT, Outcome.RETRY,
        Outcome.PERMANENT, Outcome.RETRY, Outcome.RETRY, Outcome.RETRY]
    assert retry_after("7", 0) == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0) == 10.0
    assert retry_after("soon", 0) is None and retry_after(None, 0) is None
    p = RetryPolicy(initial=1, cap=300)
    for attempts in range(12):
        ceiling = min(300, 2 ** attempts)
        assert all(ceiling / 2 <= p.backoff(attempts) <= ceiling for _ in range(50))


async def test_transient_failures_are_retried_with_backoff_and_retry_after(cloud, spool):
    url, faults, pid = cloud
    faults.script = [(503, {}), (500, {}), (429, {"Retry-After": "1"}), (408, {})]
    await spool.commit(packages=[package(pid, 0)])
    uplink = KardiaUplink("kardia", url, KEY, policy=FAST)
    t0 = time.time()
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(spool, stop))
    # After the 429 the package's next attempt is scheduled by Retry-After, not by the backoff.
    await until(lambda: (uplink.counters["retry_after_honoured"] == 1))
    (row,) = await spool.call(lambda: spool.spool._db.execute(
        "SELECT attempts, next_attempt_at, last_error FROM packages").fetchall())
    assert row[0] == 3 and row[1] - t0 >= 0.99 and "HTTP 429" in row[2]
    await until(lambda: (uplink.counters["acked"] == 1))
    stop.set()
    await task
    assert faults.seen == 5 and uplink.counters["retried"] == 4
    (rec,) = await stored(url)
    assert rec["data"]["raw"]["samples"]["leadI"] == list(range(300))
    assert await pending(spool) == 0


async def test_a_refused_package_becomes_a_dead_letter_and_the_rest_go_on(cloud, spool):
    url, faults, pid = cloud
    await spool.commit(packages=[package(pid, 0, duration=5), package(pid, 300)])  # the first one is inconsistent
    uplink = KardiaUplink("kardia", url, KEY, policy=FAST)
    await run_uplink(uplink, spool, lambda: (uplink.counters["acked"] == 1))
    (dead,) = await spool.call(spool.spool.dead_letters)
    assert dead["status"] == 400 and dead["key"] == "KM1/01/leadI/0-300"
    assert "duration must be the samples' duration in ms (1000" in dead["reason"]
    assert (await spool.read(spool.reader.stats))["uplinks"]["kardia"]["dead"] == 1  # per uplink, for the page
    assert [r["data"]["raw"]["samples"]["leadI"][0] for r in await stored(url)] == [300]


async def test_refused_credentials_keep_the_package_and_pause_the_uplink(cloud, spool):
    url, faults, pid = cloud
    await spool.commit(packages=[package(pid, 0)])
    uplink = KardiaUplink("kardia", url, "wrong-key", policy=FAST)
    await run_uplink(uplink, spool, lambda: (uplink.counters["auth_refused"] >= 2))
    assert await pending(spool) == 1 and await spool.call(spool.spool.dead_letters) == []
    assert "HTTP 401" in uplink.last_error
    assert uplink.status()["state"] == "paused" and uplink.last_ok is None
    fixed = KardiaUplink("kardia", url, KEY, policy=FAST)  # the operator fixes the key and restarts
    await run_uplink(fixed, spool, lambda: (fixed.counters["acked"] == 1))
    assert len(await stored(url)) == 1
    assert fixed.status()["state"] == "ok" and fixed.last_ok is not None


async def test_an_unreachable_receiver_is_retried_until_it_comes_up(tmp_path, spool):
    app = lambda: build_app(tmp_path / "cloud", Credentials([KEY]))  # noqa: E731
    with BackgroundServer(app()) as server:
        port, url = server.port, server.url + "/kardia"
        pid = httpx.post(url + "/v1/patients", auth=(KEY, ""),
                         data={"mrn": "L", "dob": "1980-01-01", "email": "l@example.com"}).json()["id"]
    await spool.commit(packages=[package(pid, 0)])  # the receiver is down now
    uplink = KardiaUplink("kardia", url, KEY, policy=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(spool, stop))
    await until(lambda: uplink.counters["retried"] >= 2)
    assert "ConnectError" in uplink.last_error and await pending(spool) == 1
    with BackgroundServer(app(), port=port):  # back, on the same port, with its data
        await until(lambda: uplink.counters["acked"] == 1)
        stop.set()
        await task
        assert len(await stored(url)) == 1


async def test_a_resent_package_is_acknowledged_without_a_second_copy(cloud, spool):
    url, faults, pid = cloud
    p = package(pid, 0)
    async with httpx.AsyncClient(auth=(KEY, "")) as c:  # the first send got through, but its ack was lost
        r = await c.post(url + "/v1/recordings", content=p.body,
                         headers={"Content-Type": "application/json", "Idempotency-Key": p.key})
        assert r.status_code == 201
    await spool.commit(packages=[p])
    uplink = KardiaUplink("kardia", url, KEY, policy=FAST)
    await run_uplink(uplink, spool, lambda: (uplink.counters["acked"] == 1))
    assert uplink.counters["replayed"] == 1
    assert len(await stored(url)) == 1

