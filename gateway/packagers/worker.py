"""Packaging off the event loop: a worker process analyses windows and encodes their bodies.

A packager that analyses (`offload = True`: Kardia recordings, hub ECG summaries, Hexoskin
data) runs its `package()` in one worker process, started at the first such window (so a
daemon that analyses nothing never imports scipy, and the daemon itself never does). Jobs run
one at a time, in order, with a few queued in the pipe so the worker never waits for the loop;
each result comes back through a pipe the event loop watches, so the loop never waits for an
analysis. The worker runs at a lower priority (nice 5): when every core is busy, reading the
devices and committing go first, and a recording's analysis waits a little.

A job that fails in the worker, or is still running after `timeout` seconds (the worker is
then killed and a new one started for the next job), is packaged on the loop with
`analyse=False`: the recording is uploaded without analysis and counted
(`analysis_failed`, `analysis_timeouts`), never lost. A worker that dies is restarted the same
way. Packagers that do not analyse (`offload = False`) run on the loop at once.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
MODES = ("process", "inline")
IN_PIPE = 4  # jobs sent ahead: the worker starts the next the moment one is done
NICE = 5  # the worker's priority below the daemon's


def _serve(conn) -> None:
    """The worker's loop: jobs in, results out, until the daemon closes the pipe (or dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the daemon's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:  # analysis can wait a little; the daemon's reading and commits should not wait for it
        os.nice(NICE)
    except OSError:
        pass
    while True:
        try:
            job_id, packager, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = (job_id, True, packager.package(*args))
        except BaseException as exc:  # noqa: BLE001 - reported to the daemon, which packages without analysis
            reply = (job_id, False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # an unpicklable result
            conn.send((job_id, False, f"result not sendable: {exc}"))


@dataclass
class _Job:
    id: int
    future: asyncio.Future
    packager: Any
    args: tuple
    sent_at: float = 0.0


class PackagingWorker:
    """Runs packagers' window work in a worker process ('process') or on the loop ('inline')."""

    def __init__(self, mode: str = "process", timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if mode not in MODES:
            raise ValueError(f"packaging mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.timeout = timeout
        self.counters: Counter[str] = Counter({"jobs": 0, "worker_jobs": 0, "analysis_failed": 0,
                                               "analysis_timeouts": 0, "worker_starts": 0, "package_errors": 0})
        self._queue: deque[_Job] = deque()
        self._sent: deque[_Job] = deque()  # in the worker, oldest (the one running) first
        self._proc = None
        self._conn = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 0
        self.closed = False

    @property
    def pending(self) -> int:
        """Jobs queued or in the worker."""
        return len(self._queue) + len(self._sent)

    def submit(self, packager, *args) -> asyncio.Future:
        """packager.package(*args) -> a future of its Package (or None); never fails for an analysis."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.counters["jobs"] += 1
        if self.mode == "inline" or not getattr(packager, "offload", False) or self.closed:
            self._inline(fut, packager, args)
            return fut
        self._loop = loop
        self._next_id += 1
        self._queue.append(_Job(self._next_id, fut, packager, args))
        self._pump()
        return fut

    # -- on the loop ----------------------------------------------------------------------

    def _inline(self, fut: asyncio.Future, packager, args: tuple, analyse: bool = True) -> None:
        try:
            fut.set_result(packager.package(*args) if analyse else packager.package(*args, analyse=False))
        except Exception as exc:  # noqa: BLE001
            if analyse:
                self.counters["analysis_failed"] += 1
                log.error("packaging %s with analysis failed (%s: %s); packaging it without", packager.kind,
                          type(exc).__name__, exc)
                self._inline(fut, packager, args, analyse=False)
                return
            self.counters["package_errors"] += 1
            log.exception("packager %s failed even without analysis; its window is not uploaded", packager.kind)
            fut.set_result(None)

    def _pump(self) -> None:
        """Send queued jobs while fewer than IN_PIPE are in the worker."""
        while self._queue and len(self._sent) < IN_PIPE:
            if self._proc is None and not self._start():
                while self._queue:  # no worker can start here: package on the loop, without analysis
                    job = self._queue.popleft()
                    self._inline(job.future, job.packager, job.args, analyse=False)
                return
            job = self._queue.popleft()
            try:
                self._conn.send((job.id, job.packager, job.args))
            except (OSError, EOFError, ValueError) as exc:
                self._queue.appendleft(job)
                self._worker_died(f"cannot send to the worker: {exc}")
                return
            self._sent.append(job)
            if len(self._sent) == 1:
                self._started_head()

    def _started_head(self) -> None:
        """The oldest job in the worker is the one running: its timeout counts from now."""
        if self._timer is not None:
            self._timer.cancel()
        job = self._sent[0]
        job.sent_at = time.monotonic()
        self._timer = self._loop.call_later(self.timeout, self._timed_out, job.id)

    def _start(self) -> bool:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the daemon's state
        try:
            parent, child = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=_serve, args=(child,), name="wearable-gateway packaging", daemon=True)
            proc.start()
        except OSError as exc:
            log.error("cannot start the packaging worker (%s); packaging without analysis", exc)
            return False
        child.close()
        self._proc, self._conn = proc, parent
        self._loop.add_reader(parent.fileno(), self._readable)
        self.counters["worker_starts"] += 1
        log.info("packaging worker started (pid %d)", proc.pid)
        return True

    def _readable(self) -> None:
        while True:
            try:
                if self._conn is None or not self._conn.poll():
                    break
                job_id, ok, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._worker_died(f"worker gone ({exc or 'end of file'})")
                return
            if not self._sent or self._sent[0].id != job_id:
                continue
            job = self._sent.popleft()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._sent:
                self._started_head()
            self.counters["worker_jobs"] += 1
            if ok:
                job.future.set_result(value)
            else:
                self.counters["analysis_failed"] += 1
                log.error("packaging %s failed in the worker (%s); uploading it without analysis",
                          job.packager.kind, value)
                self._inline(job.future, job.packager, job.args, analyse=False)
        self._pump()

    def _timed_out(self, job_id: int) -> None:
        if not self._sent or self._sent[0].id != job_id:
            return
        job = self._sent.popleft()
        self.counters["analysis_timeouts"] += 1
        log.error("packaging %s did not finish within %.0f s in the worker; the worker is restarted and the"
                  " window uploaded without analysis", job.packager.kind, self.timeout)
        self._inline(job.future, job.packager, job.args, analyse=False)
        self._restart()

    def _worker_died(self, why: str) -> None:
        if self._sent:
            job = self._sent.popleft()
            self.counters["analysis_failed"] += 1
            log.error("packaging worker died with %s (%s); uploading it without analysis", job.packager.kind, why)
            self._inline(job.future, job.packager, job.args, analyse=False)
        self._restart()

    def _restart(self) -> None:
        """Kill the worker; jobs it had not started go back to the queue, for the next one."""
        self._stop_process(kill=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._sent:
            self._queue.appendleft(self._sent.pop())
        self._pump()

    def _stop_process(self, kill: bool) -> None:
        if self._conn is not None:
            try:
                self._loop.remove_reader(self._conn.fileno())
            except (ValueError, OSError):
                pass
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            if kill and self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5)
            self._proc = None

    @property
    def worker_pid(self) -> int | None:
        """The worker process's pid, while one runs."""
        return self._proc.pid if self._proc is not None else None

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job is done; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pending:
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        await self.drain(self.timeout + 5)
        self.closed = True
        if self._proc is not None:
            self._stop_process(kill=False)
