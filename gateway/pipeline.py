"""One device's data path after the driver: core (ring, clock, gaps) -> packagers -> the spool's changes.

The pipeline does not commit. At every tick the ingest (gateway/ingest.py) has it stage what
the device's events make into the shared `Changes` of one group commit (`stage`), then add
what is ready (`collect`): new journal rows, finished packages and the cursors they advance.

Invariants, in the order the code keeps them:
- Every sample taken into a ring is journaled in the next commit: the journal always covers
  [smallest durable cursor, journaled), so a crash loses only what arrived since the last
  commit. The ring lets a sample go only once it is both cut into a window and journaled.
- A window is cut as soon as it is full and handed, with a copy of its samples, to the
  packaging worker (analysis and body off the event loop). Its package is staged when it is
  done, in window order per uplink, with the cursor it advances; a crash before that leaves
  the samples in the journal, and the restarted gateway packages them again (`recover`).
- A package never spans a gap: at a gap every packager's partial window is cut first.
- After a restart a session resumes at its durable end: a later first sample is a recorded
  gap, an earlier one is a duplicate and is dropped, never packaged twice.
- A discrete reading (blood pressure, cardiac event) is packaged for every uplink that takes
  it and staged in the tick that received it; its key is the reading's own, so a repeat is
  spooled once while pending and is a replay at the receiver after.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gateway.core.blocks import (DeviceInfo, DriverEvent, Gap, Reading, SampleBlock, StreamId, info_from_json,
                                 info_to_json)
from gateway.core.clock import StreamClock
from gateway.core.ring import RingBuffer, RingOverflow
from gateway.packagers.base import Packager
from gateway.packagers.worker import PackagingWorker
from gateway.spool import AsyncSpool, Changes, GapRow, JournalRow, Package, Recovered, StreamRow

log = logging.getLogger(__name__)

RING_MARGIN_S = 2.0  # ring capacity beyond the longest package window (its room is refilled as windows are cut)


@dataclass
class _Job:
    """One window in the packaging worker; `end` is the uplink's durable cursor once it is staged."""

    end: int
    package: Package | None = None
    done: bool = False


@dataclass
class _Stream:
    info: DeviceInfo
    info_json: dict
    id: StreamId
    fs: int
    packagers: list[Packager]
    ring: RingBuffer
    clock: StreamClock
    windows: dict[str, int]
    cut: dict[str, int] = field(default_factory=dict)  # uplink -> first counter not yet cut into a window
    durable: dict[str, int] = field(default_factory=dict)  # uplink -> first counter not yet in a staged package
    jobs: dict[str, deque] = field(default_factory=dict)  # uplink -> windows in the worker, in order
    journaled: int = 0  # one past the last journaled counter
    started: bool = False
    resume_from: int | None = None  # durable end left by an earlier run of the gateway
    retired: bool = False  # a session that ended: kept until its last packages are staged
    state_dirty: bool = False  # its stream row must be written
    samples: int = 0
    last_arrival: float | None = None

    def releasable(self) -> int:
        """The ring may reuse what is both cut for every uplink and journaled."""
        return min(min(self.cut.values(), default=self.ring.end), self.journaled)


class DevicePipeline:
    """Everything between one configured device's driver and the spool."""

    def __init__(self, device: str, packagers: list[Packager], worker: PackagingWorker | None = None,
                 known: dict[str, StreamRow] | None = None, spool: AsyncSpool | None = None) -> None:
        if not packagers:
            raise ValueError(f"device {device!r} has no packagers: its data would go nowhere")
        self.device = device
        self.packagers = packagers
        self.worker = worker or PackagingWorker("inline")
        self.known = known if known is not None else {}  # stream key -> what is durable of it
        self.spool = spool  # only for the one-call helpers (handle, finish); the daemon's ingest commits
        self.streams: dict[StreamId, _Stream] = {}
        self.counters: Counter[str] = Counter()
        self.fresh: list[float] = []  # time of the oldest sample of each journal row staged since taken
        self.on_change: Callable[[], None] | None = None  # a window finished packaging
        self.last_analysis: dict | None = None  # the last analysed recording's heart rate and determination
        self._dirty: set[StreamId] = set()

    # -- staging, at every tick -------------------------------------------------------------

    def stage(self, events: list[DriverEvent], ch: Changes) -> None:
        """Apply a driver's events in order; what they make goes into `ch`."""
        for ev in events:
            if isinstance(ev, SampleBlock):
                self._on_block(ev, ch)
            elif isinstance(ev, Gap):
                self._on_gap(ev.stream, ev.start, ev.missing, ch, ev.at_stop)
            elif isinstance(ev, DeviceInfo):
                self._on_info(ev, ch)
            elif isinstance(ev, Reading):
                self._on_reading(ev, ch)

    def collect(self, ch: Changes, max_package_bytes: int | None = None) -> None:
        """Stage new journal rows, finished packages (in window order) and changed stream rows.

        With `max_package_bytes`, packages stop once `ch` holds that many bytes of them; the rest
        wait for the next commit (their samples are in the journal meanwhile), so a burst of
        finished windows never makes one commit long and the journal rows behind it late.
        """
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        for sid in dirty:
            st = self.streams.get(sid)
            if st is None:
                continue
            for uplink, queue in st.jobs.items():
                while queue and queue[0].done:
                    job = queue[0]
                    if job.package is not None:
                        if max_package_bytes is not None and ch.package_bytes >= max_package_bytes:
                            self._dirty.add(sid)  # the next tick takes it
                            break
                        ch.packages.append(job.package)
                        ch.package_bytes += len(job.package.body)
                        if job.package.summary is not None:
                            self.last_analysis = {**job.package.summary, "recorded_at": job.package.sample_time,
                                                  "seconds": (job.package.end - job.package.first) / st.fs}
                        self.counters["packages"] += 1  # less duplicates, once committed
                    else:
                        self.counters["empty_windows"] += 1
                    queue.popleft()
                    st.durable[uplink] = job.end
                    st.state_dirty = True
            # Samples that packages in this same commit cover need no journal row.
            self._journal(st, ch, skip_to=min(st.durable.values(), default=0))
            if st.state_dirty and st.durable:
                row = StreamRow(sid.key, self.device, st.info_json, st.ring.end, dict(st.durable), st.clock.offset)
                ch.streams.append(row)
                self.known[sid.key] = row
                st.state_dirty = False
            if st.retired and not any(st.jobs.values()):
                del self.streams[sid]

    def close(self) -> None:
        """Stop: cut every partial window into a final, shorter package (collect() stages them when done)."""
        for st in self.streams.values():
            self._cut(st, final=True)

    @property
    def busy(self) -> bool:
        """Windows still in the worker, or something not yet collected."""
        return bool(self._dirty) or any(q for st in self.streams.values() for q in st.jobs.values())

    def recover(self, rec: Recovered) -> int:
        """Package samples a previous run journaled but never packaged; return the windows cut."""
        row = rec.stream
        info = info_from_json(row.info)
        sid = StreamId.from_key(row.key)
        st = self.streams.get(sid) or self._new_stream(info, sid.channel)
        if st is None:
            self.counters["unpackaged_samples"] += sum(len(r.samples) for r in rec.rows)
            log.error("device %s: no configured uplink takes %s any more; its %d journaled samples stay in the"
                      " spool", self.device, row.key, sum(len(r.samples) for r in rec.rows))
            return 0
        self.streams[sid] = st
        uplinks = set(st.windows)
        for uplink, c in row.cursors.items():
            if uplink not in uplinks and rec.rows and c < rec.rows[-1].end:
                self.counters["unpackaged_samples"] += rec.rows[-1].end - c
                log.error("device %s: uplink %r is no longer configured; %d journaled samples of %s are not"
                          " packaged for it", self.device, uplink, rec.rows[-1].end - c, row.key)
        first_row = rec.rows[0].first if rec.rows else row.next_counter
        st.durable = {u: row.cursors.get(u, first_row) for u in uplinks}
        cut = dict(st.durable)
        windows = 0
        for run in _contiguous(rec.rows):
            first = run[0].first
            samples = run[0].samples if len(run) == 1 else np.concatenate([r.samples for r in run])
            end = first + len(samples)
            for p in st.packagers:
                c = max(cut[p.uplink], first)
                while c < end:
                    e = min(c + st.windows[p.uplink], end)
                    self._submit(st, p, c, samples[c - first:e - first], run[0].t_first + (c - first) / st.fs)
                    windows += 1
                    c = e
                cut[p.uplink] = max(cut[p.uplink], end)
        end = max(row.next_counter, rec.rows[-1].end if rec.rows else 0)
        if row.clock_offset is not None:
            st.clock.restore(row.clock_offset)
        st.ring.reset(end)
        st.cut = {u: end for u in uplinks}
        st.journaled = end
        st.resume_from = end
        st.state_dirty = True
        self._dirty.add(sid)
        self.counters["recovered_windows"] += windows
        log.info("device %s: recovered %d journaled samples of %s into %d windows", self.device,
                 sum(len(r.samples) for r in rec.rows), row.key, windows)
        return windows

    # -- one-call helpers (tools and tests): stage, wait for the worker, commit ------------

    async def handle(self, events: list[DriverEvent]) -> None:
        """stage(), then collect and commit once every window is packaged."""
        ch = Changes()
        self.stage(events, ch)
        await self._settle(ch)

    async def finish(self) -> None:
        """close(), then collect and commit once every window is packaged."""
        self.close()
        await self._settle(Changes())

    async def _settle(self, ch: Changes) -> None:
        assert self.spool is not None, "handle()/finish() need the pipeline's spool"
        await self.worker.drain()
        self.collect(ch)
        if ch:
            self.committed((await self.spool.write(ch)).duplicates)
        self.counters["commits"] += 1

    def committed(self, duplicates: int) -> None:
        """The commit of this pipeline's packages found `duplicates` already spooled under their keys."""
        self.counters["packages"] -= duplicates
        self.counters["duplicate_packages"] += duplicates

    # -- internals ----------------------------------------------------------------------

    def _new_stream(self, info: DeviceInfo, channel: str) -> _Stream | None:
        packagers = [p for p in self.packagers if channel in p.channels(info)]
        if not packagers:
            return None
        fs = info.channels[channel].sampling_frequency
        windows = {p.uplink: p.window(info, channel) for p in packagers}
        capacity = max(windows.values()) + int(RING_MARGIN_S * fs)
        ring = RingBuffer(capacity, np.dtype(info.channels[channel].dtype))
        st = _Stream(info, info_to_json(info), info.stream(channel), fs, packagers, ring, StreamClock(fs), windows)
        st.jobs = {u: deque() for u in windows}
        return st

    def _on_info(self, info: DeviceInfo, ch: Changes) -> None:
        # A new session of the device ends the previous one: its partial windows go out now.
        for sid, st in self.streams.items():
            if (sid.device, sid.session) != (info.device, info.session) and not st.retired:
                self._cut(st, final=True)
                self._journal(st, ch)
                st.retired = True
                st.state_dirty = True
                self._dirty.add(sid)
        for channel in info.channels:
            sid = info.stream(channel)
            old = self.streams.get(sid)
            if old is not None and not old.retired:
                continue
            if old is not None:  # a session said to have ended is back: it resumes where it was
                old.retired, old.started, old.resume_from = False, False, old.ring.end
                continue
            st = self._new_stream(info, channel)
            if st is None:
                continue
            saved = self.known.get(sid.key)
            if saved is not None:
                st.resume_from = saved.next_counter
                if saved.clock_offset is not None:
                    st.clock.restore(saved.clock_offset)
            self.streams[sid] = st
            log.info("device %s: stream %s at %d Hz%s", self.device, sid.key, st.fs,
                     f", resuming after counter {st.resume_from}" if st.resume_from is not None else "")

    def _on_block(self, block: SampleBlock, ch: Changes) -> None:
        st = self.streams.get(block.stream)
        if st is None or st.retired:
            self.counters["unused_samples"] += len(block.samples)
            return
        first, samples = block.first, block.samples
        if not st.started:
            if st.resume_from is not None and first < st.resume_from:
                dup = min(st.resume_from - first, len(samples))
                self.counters["duplicate_samples"] += dup
                first, samples = first + dup, samples[dup:]
                if not len(samples):
                    return
            if st.resume_from is not None and first > st.resume_from:
                ch.gaps.append(GapRow(self.device, st.id.key, st.resume_from, first - st.resume_from))
                self.counters["gaps"] += 1
                log.warning("device %s: %d samples of %s lost while the gateway was down (from %d)",
                            self.device, first - st.resume_from, st.id.key, st.resume_from)
            st.ring.reset(first)
            st.cut = {u: first for u in st.windows}
            for u in st.windows:
                st.durable.setdefault(u, first)
            st.journaled = first
            st.started = True
            st.state_dirty = True  # its row commits with its first journal rows: recovery needs both
        st.clock.observe(first + len(samples), block.arrival)  # before any cut needs a time
        pos, n = 0, len(samples)
        while pos < n:
            room = st.ring.capacity - (st.ring.end - st.ring.protected)
            if room == 0:  # journal what the ring holds, so it can let go of what is already cut
                self._journal(st, ch)
                room = st.ring.capacity - (st.ring.end - st.ring.protected)
                if room == 0:
                    raise RingOverflow(f"{st.id.key}: ring of {st.ring.capacity} cannot hold one window")
            k = min(room, n - pos)
            st.ring.write(first + pos, samples[pos:pos + k])
            pos += k
            self._cut(st)
        st.samples += n
        st.last_arrival = block.arrival
        self._dirty.add(st.id)

    def _on_reading(self, reading: Reading, ch: Changes) -> None:
        packages = [pkg for p in self.packagers if (pkg := p.reading(reading)) is not None]
        ch.packages += packages
        self.counters["packages"] += len(packages)
        self.counters["readings"] += 1
        if not packages:
            self.counters["unused_readings"] += 1
            log.warning("device %s: no configured uplink takes %s readings; %s dropped", self.device,
                        reading.kind, reading.key)

    def _on_gap(self, sid: StreamId, start: int, missing: int, ch: Changes, at_stop: bool = False) -> None:
        st = self.streams.get(sid)
        ch.gaps.append(GapRow(self.device, sid.key, start, missing))
        self.counters["gaps"] += 1
        if at_stop:  # the gateway's own stop cut the frame in flight: recorded, but not a link fault
            self.counters["gaps_at_stop"] += 1
            log.info("device %s: stopped mid-frame; its %d samples in %s at %d are recorded as a gap", self.device,
                     missing, sid.key, start)
        else:
            log.warning("device %s: gap of %d samples in %s at %d", self.device, missing, sid.key, start)
        if st is None or not st.started or st.retired:
            return
        self._cut(st, final=True)  # a package never spans a gap
        self._journal(st, ch)
        resume = max(start + missing, st.ring.end)
        st.ring.release(st.ring.end)
        st.ring.reset(resume)
        st.cut = {u: resume for u in st.windows}
        st.journaled = resume
        st.state_dirty = True  # the stream row's next counter moves past the gap
        self._dirty.add(sid)

    def _cut(self, st: _Stream, final: bool = False) -> None:
        """Cut every full window (and with `final`, the partial one) for each packager."""
        if not st.started:
            return
        ring = st.ring
        for p in st.packagers:
            w = st.windows[p.uplink]
            c = st.cut[p.uplink]
            while ring.end - c >= w or (final and ring.end > c):
                e = min(c + w, ring.end)
                self._submit(st, p, c, ring.read(c, e), st.clock.time_of(c))
                c = e
            st.cut[p.uplink] = c
        ring.release(st.releasable())

    def _submit(self, st: _Stream, p: Packager, first: int, samples: np.ndarray, t0: float) -> None:
        job = _Job(first + len(samples))
        st.jobs[p.uplink].append(job)
        fut = self.worker.submit(p, st.info, st.id, first, samples, t0)
        if fut.done():
            self._finished(st, job, fut)
        else:
            fut.add_done_callback(lambda f, st=st, job=job: self._finished(st, job, f))

    def _finished(self, st: _Stream, job: _Job, fut: asyncio.Future) -> None:
        try:
            job.package = fut.result()
        except Exception:  # noqa: BLE001 - the worker never fails a job; this is a last guard
            self.counters["package_errors"] += 1
            log.exception("device %s: a window of %s could not be packaged", self.device, st.id.key)
        job.done = True
        self._dirty.add(st.id)
        if self.on_change is not None:
            self.on_change()

    def _journal(self, st: _Stream, ch: Changes, skip_to: int = 0) -> None:
        """Stage [journaled, end) as a journal row (from `skip_to` if packages in `ch` cover the start);
        the ring may then reuse what is cut."""
        ring = st.ring
        if not st.started or ring.end <= st.journaled:
            return
        self.fresh.append(st.clock.time_of(st.journaled))  # the oldest sample this commit makes durable
        lo = min(max(st.journaled, skip_to), ring.end)
        if lo < ring.end:
            ch.journal.append(JournalRow(st.id.key, lo, ring.read(lo, ring.end), st.clock.time_of(lo)))
        st.journaled = ring.end
        ring.release(st.releasable())

    def recent(self, channel: str, n: int) -> tuple[np.ndarray, float, float] | None:
        """The last n samples (or fewer) of a channel held in RAM: (samples, rate, time after the last)."""
        live = [st for sid, st in self.streams.items() if sid.channel == channel and st.started and len(st.ring)]
        if not live:
            return None
        st = max(live, key=lambda s: s.last_arrival or 0.0)  # the newest session
        return st.ring.latest(n), float(st.fs), st.clock.time_of(st.ring.end)

    def journal_samples(self) -> int:
        """Samples journaled and not yet packaged for every uplink (what a restart would recover)."""
        return sum(max(0, st.journaled - min(st.durable.values(), default=st.journaled))
                   for st in self.streams.values() if st.started or st.resume_from is not None)

    def status(self) -> list[dict]:
        """Per stream: samples, last arrival, what is held in RAM, journaled and packaged."""
        return [{"stream": sid.key, "samples": st.samples, "last_arrival": st.last_arrival,
                 "ring_samples": len(st.ring), "journaled_until": st.journaled, "cursors": dict(st.durable),
                 "windows_packaging": sum(len(q) for q in st.jobs.values())}
                for sid, st in self.streams.items()]


def _contiguous(rows: list[JournalRow]) -> list[list[JournalRow]]:
    """Split journal rows into runs without holes (the pipeline writes only contiguous ones)."""
    runs: list[list[JournalRow]] = []
    for r in rows:
        if runs and runs[-1][-1].end == r.first:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs
