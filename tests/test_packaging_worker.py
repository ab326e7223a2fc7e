"""The packaging worker: analysis off the event loop, and no window lost when the analysis fails,
hangs or its process dies (each is packaged on the loop without analysis, and counted)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import numpy as np

from gateway.core.blocks import ChannelInfo, DeviceInfo, SampleBlock
from gateway.packagers.base import TimedPackager
from gateway.packagers.kardia import KardiaRecordingPackager
from gateway.packagers.worker import PackagingWorker
from gateway.pipeline import DevicePipeline
from gateway.spool import AsyncSpool, Spool

INFO = DeviceInfo("KM1-0001", "0000abcd", "kardiamobile", "1.2.0", {"leadI": ChannelInfo(300, 2000.0)},
                  {"mains_frequency": 50, "amplitude_resolution": 500})
SID = INFO.stream("leadI")


class MoodyPackager(TimedPackager):
    """Its analysis fails for the window at 0, hangs for the one at 300, and is fine otherwise."""

    kind = "test.moody"
    offload = True

    def channels(self, info):
        return ("leadI",)

    def package(self, info, stream, first, samples, start_time, analyse=True):
        if analyse and first == 0:
            raise ValueError("the analysis blew up")
        if analyse and first == 300:
            time.sleep(120)  # far past the timeout: the worker is killed
        body = json.dumps({"first": first, "analysed": analyse, "pid": os.getpid(),
                           "samples": samples.tolist()}).encode()
        return self._package(stream, first, len(samples), start_time, body)


def samples(first: int, n: int) -> np.ndarray:
    return ((np.arange(first, first + n) * 7919) % 4001 - 2000).astype(np.int16)


async def test_a_failing_or_hanging_analysis_loses_no_window_and_is_counted():
    worker = PackagingWorker("process", timeout=3.0)
    p = MoodyPackager("up", 1.0)
    try:
        futures = [worker.submit(p, INFO, SID, first, samples(first, 300), 1.7e9 + first / 300)
                   for first in (0, 300, 600, 900)]
        results = await asyncio.wait_for(asyncio.gather(*futures), 60)
    finally:
        await worker.close()
    bodies = [json.loads(r.body) for r in results]
    assert [(b["first"], b["analysed"]) for b in bodies] == [(0, False), (300, False), (600, True), (900, True)]
    for b in bodies:
        assert b["samples"] == samples(b["first"], 300).tolist()
    assert bodies[0]["pid"] == bodies[1]["pid"] == os.getpid()  # packaged on the loop, without analysis
    assert bodies[2]["pid"] != os.getpid()  # in a worker: a new one, since the first was killed
    c = worker.counters
    assert (c["analysis_failed"], c["analysis_timeouts"], c["worker_starts"], c["package_errors"]) == (1, 1, 2, 0)


async def test_a_worker_killed_from_outside_is_restarted_and_its_window_still_packaged():
    worker = PackagingWorker("process", timeout=60.0)
    p = KardiaRecordingPackager("kardia", "patient", 30.0)
    try:
        first = await asyncio.wait_for(worker.submit(p, INFO, SID, 0, samples(0, 9000), 1.7e9), 60)
        assert json.loads(first.body).get("algorithmDetermination")  # analysed, in the worker
        pid = worker.worker_pid
        # Below the daemon's priority: on busy cores, reading and commits go first.
        assert os.getpriority(os.PRIO_PROCESS, pid) >= os.getpriority(os.PRIO_PROCESS, 0) + 1 \
            or os.getpriority(os.PRIO_PROCESS, 0) >= 19
        os.kill(pid, signal.SIGKILL)
        later = [worker.submit(p, INFO, SID, 9000 * k, samples(9000 * k, 9000), 1.7e9 + 30 * k) for k in (1, 2, 3)]
        results = await asyncio.wait_for(asyncio.gather(*later), 60)
    finally:
        await worker.close()
    for k, r in zip((1, 2, 3), results):
        assert json.loads(r.body)["data"]["raw"]["samples"]["leadI"] == samples(9000 * k, 9000).tolist()
    assert worker.counters["worker_starts"] == 2 and worker.counters["analysis_failed"] <= 1
    assert json.loads(results[-1].body).get("algorithmDetermination")  # the new worker analyses again


async def test_through_the_pipeline_every_window_reaches_the_spool_whatever_its_analysis_did(tmp_path):
    spool = AsyncSpool(tmp_path / "spool.db")
    worker = PackagingWorker("process", timeout=3.0)
    pipe = DevicePipeline("dev", [MoodyPackager("up", 1.0)], worker, spool=spool)
    try:
        blocks = [SampleBlock(SID, a, samples(a, 25), 1.7e9 + (a + 25) / 300) for a in range(0, 1200, 25)]
        await asyncio.wait_for(pipe.handle([INFO, *blocks]), 60)
    finally:
        await worker.close()
        await spool.close()
    s = Spool(tmp_path / "spool.db")
    try:
        got = [json.loads(p.body) for p in s.due("up", now=1e12, limit=100)]
        assert s.recover() == []  # every journaled sample is in a package
    finally:
        s.close()
    assert [(b["first"], b["analysed"]) for b in got] == [(0, False), (300, False), (600, True), (900, True)]
    assert np.array_equal(np.concatenate([b["samples"] for b in got]), samples(0, 1200))
