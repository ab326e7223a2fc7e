"""One device's data path after the driver: core (ring, clock, gaps) -> packagers -> spool.

Invariants, in the order the code keeps them:
- The ring buffer reuses a sample's space only after the commit that made it durable.
- Every commit also journals what is not yet packaged, so the journal always covers
  [smallest package cursor, ring end) and a crash loses only what arrived since the last
  commit (at most `journal_interval` seconds).
- A package never spans a gap: at a gap every packager's partial window is cut first.
- After a restart a session resumes at its durable end: a later first sample is a recorded
  gap, an earlier one is a duplicate and is dropped, never packaged twice.
- A discrete reading (blood pressure, cardiac event) is packaged for every uplink that takes
  it and committed in the same call that received it; its key is the reading's own, so a
  repeat is spooled once while pending and is a replay at the receiver after.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gateway.core.blocks import (DeviceInfo, DriverEvent, Gap, Reading, SampleBlock, StreamId, info_from_json,
                                 info_to_json)
from gateway.core.clock import StreamClock
from gateway.core.ring import RingBuffer, RingOverflow
from gateway.packagers.base import Packager
from gateway.spool import AsyncSpool, GapRow, JournalRow, Package, Recovered, StreamRow

log = logging.getLogger(__name__)

RING_MARGIN_S = 60.0  # ring capacity beyond the longest package window


@dataclass
class _Stream:
    info: DeviceInfo
    id: StreamId
    fs: int
    packagers: list[Packager]
    ring: RingBuffer
    clock: StreamClock
    windows: dict[str, int]
    cursors: dict[str, int] = field(default_factory=dict)  # uplink -> first counter not yet packaged
    journaled: int = 0  # one past the last durable counter
    started: bool = False
    resume_from: int | None = None  # durable end left by an earlier run of the gateway
    unjournaled_since: float | None = None  # monotonic time the oldest non-durable sample was handled
    samples: int = 0
    last_arrival: float | None = None

    def min_cursor(self) -> int:
        return min(self.cursors.values())


@dataclass
class _Batch:
    packages: list[Package] = field(default_factory=list)
    gaps: list[GapRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.packages or self.gaps)


class DevicePipeline:
    """Everything between one configured device's driver and the spool."""

    def __init__(self, device: str, packagers: list[Packager], spool: AsyncSpool,
                 journal_interval: float = 1.0) -> None:
        if not packagers:
            raise ValueError(f"device {device!r} has no packagers: its data would go nowhere")
        self.device = device
        self.packagers = packagers
        self.spool = spool
        self.journal_interval = journal_interval
        self.streams: dict[StreamId, _Stream] = {}
        self.counters: Counter[str] = Counter()
        self._dirty: set[StreamId] = set()
        self.on_durable: Callable[[float], None] | None = None  # age (s) of the oldest sample each commit saved

    # -- driver events ------------------------------------------------------------------

    async def handle(self, events: list[DriverEvent]) -> None:
        """Apply a driver's events in order; commit when packages, gaps or the journal are due."""
        batch = _Batch()
        for ev in events:
            if isinstance(ev, SampleBlock):
                await self._on_block(ev, batch)
            elif isinstance(ev, Gap):
                await self._on_gap(ev.stream, ev.start, ev.missing, batch)
            elif isinstance(ev, DeviceInfo):
                await self._on_info(ev, batch)
            elif isinstance(ev, Reading):
                self._on_reading(ev, batch)
        if batch or self._journal_due(time.monotonic()):
            await self._commit(batch)

    async def tick(self) -> None:
        """Time-based journal flush, for a stream that went quiet mid-second."""
        if self._journal_due(time.monotonic()):
            await self._commit(_Batch())

    async def close(self) -> None:
        """Stop: cut every partial window into a final, shorter package."""
        batch = _Batch()
        for st in self.streams.values():
            self._cut(st, batch, final=True)
        await self._commit(batch)

    async def recover(self, rec: Recovered) -> int:
        """Package samples a previous run journaled but never packaged; return packages made."""
        row = rec.stream
        info = info_from_json(row.info)
        sid = StreamId.from_key(row.key)
        fs = info.channels[sid.channel].sampling_frequency
        batch = _Batch()
        end = row.next_counter
        cursors = dict(row.cursors)
        for run in _contiguous(rec.rows):
            first = run[0].first
            samples = np.concatenate([r.samples for r in run])
            t0 = run[0].t_first
            for p in self.packagers:
                if sid.channel not in p.channels(info):
                    continue
                c = max(cursors.get(p.uplink, first), first)
                w = p.window(info, sid.channel)
                while c < first + len(samples):
                    e = min(c + w, first + len(samples))
                    pkg = p.package(info, sid, c, samples[c - first:e - first], t0 + (c - first) / fs)
                    if pkg is not None:
                        batch.packages.append(pkg)
                    c = e
                cursors[p.uplink] = c
            end = max(end, first + len(samples))
        for uplink, c in cursors.items():
            if c < end and uplink not in {p.uplink for p in self.packagers}:
                self.counters["unpackaged_samples"] += end - c
                log.error("device %s: uplink %r is no longer configured; %d journaled samples of %s are not"
                          " packaged for it", self.device, uplink, end - c, row.key)
        cursors = {u: end for u in cursors} or {p.uplink: end for p in self.packagers}
        await self.spool.commit(packages=batch.packages,
                                streams=[StreamRow(row.key, row.device, row.info, end, cursors, row.clock_offset)])
        self.counters["recovered_packages"] += len(batch.packages)
        log.info("device %s: recovered %d journaled samples of %s into %d packages", self.device,
                 sum(len(r.samples) for r in rec.rows), row.key, len(batch.packages))
        return len(batch.packages)

    # -- internals ----------------------------------------------------------------------

    async def _on_info(self, info: DeviceInfo, batch: _Batch) -> None:
        # A new session of the device ends the previous one: its partial windows go out now.
        for sid, st in list(self.streams.items()):
            if (sid.device, sid.session) != (info.device, info.session):
                self._cut(st, batch, final=True)
                await self._commit(batch)
                batch.packages.clear()
                batch.gaps.clear()
                del self.streams[sid]
        for channel in info.channels:
            sid = info.stream(channel)
            if sid in self.streams:
                continue
            packagers = [p for p in self.packagers if channel in p.channels(info)]
            if not packagers:
                continue
            fs = info.channels[channel].sampling_frequency
            windows = {p.uplink: p.window(info, channel) for p in packagers}
            capacity = max(windows.values()) + int(RING_MARGIN_S * fs)
            ring = RingBuffer(capacity, np.dtype(info.channels[channel].dtype))
            st = _Stream(info, sid, fs, packagers, ring, StreamClock(fs), windows)
            saved = await self.spool.call(self.spool.spool.stream, sid.key)
            if saved is not None:
                st.resume_from = saved.next_counter
                if saved.clock_offset is not None:
                    st.clock.restore(saved.clock_offset)
            self.streams[sid] = st
            log.info("device %s: stream %s at %d Hz%s", self.device, sid.key, fs,
                     f", resuming after counter {st.resume_from}" if st.resume_from is not None else "")

    async def _on_block(self, block: SampleBlock, batch: _Batch) -> None:
        st = self.streams.get(block.stream)
        if st is None:
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
                batch.gaps.append(GapRow(self.device, st.id.key, st.resume_from, first - st.resume_from))
                self.counters["gaps"] += 1
                log.warning("device %s: %d samples of %s lost while the gateway was down (from %d)",
                            self.device, first - st.resume_from, st.id.key, st.resume_from)
            st.ring.reset(first)
            st.cursors = {u: first for u in st.windows}
            st.journaled = first
            st.started = True
        st.clock.observe(first + len(samples), block.arrival)  # before any cut needs a time
        pos = 0
        while pos < len(samples):
            room = st.ring.capacity - (st.ring.end - st.ring.protected)
            if room == 0:
                await self._commit(batch)  # makes the cut packages durable so the ring can reuse them
                batch.packages.clear()
                batch.gaps.clear()
                room = st.ring.capacity - (st.ring.end - st.ring.protected)
                if room == 0:
                    raise RingOverflow(f"{st.id.key}: ring of {st.ring.capacity} cannot hold one window")
            n = min(room, len(samples) - pos)
            st.ring.write(first + pos, samples[pos:pos + n])
            pos += n
            self._cut(st, batch)
        st.samples += len(samples)
        st.last_arrival = block.arrival
        if st.unjournaled_since is None:
            st.unjournaled_since = time.monotonic()
        self._dirty.add(st.id)

    def _on_reading(self, reading: Reading, batch: _Batch) -> None:
        packages = [pkg for p in self.packagers if (pkg := p.reading(reading)) is not None]
        batch.packages += packages
        self.counters["readings"] += 1
        if not packages:
            self.counters["unused_readings"] += 1
            log.warning("device %s: no configured uplink takes %s readings; %s dropped", self.device,
                        reading.kind, reading.key)

    async def _on_gap(self, sid: StreamId, start: int, missing: int, batch: _Batch) -> None:
        st = self.streams.get(sid)
        batch.gaps.append(GapRow(self.device, sid.key, start, missing))
        self.counters["gaps"] += 1
        log.warning("device %s: gap of %d samples in %s at %d", self.device, missing, sid.key, start)
        if st is None or not st.started:
            return
        self._cut(st, batch, final=True)  # a package never spans a gap
        resume = start + missing
        await self._commit(batch, moved_to={sid: resume})
        batch.packages.clear()
        batch.gaps.clear()

    def _cut(self, st: _Stream, batch: _Batch, final: bool = False) -> None:
        """Cut every full window (and with `final`, the partial one) for each packager."""
        if not st.started:
            return
        for p in st.packagers:
            w = st.windows[p.uplink]
            c = st.cursors[p.uplink]
            while st.ring.end - c >= w or (final and st.ring.end > c):
                e = min(c + w, st.ring.end)
                pkg = p.package(st.info, st.id, c, st.ring.read(c, e), st.clock.time_of(c))
                if pkg is not None:
                    batch.packages.append(pkg)
                else:
                    self.counters["empty_windows"] += 1
                c = e
            st.cursors[p.uplink] = c
        self._dirty.add(st.id)

    def _journal_due(self, now: float) -> bool:
        for sid in self._dirty:
            st = self.streams.get(sid)
            if st is None or not st.started:
                continue
            if st.ring.end - st.journaled >= self.journal_interval * st.fs:
                return True
            if st.unjournaled_since is not None and now - st.unjournaled_since >= self.journal_interval:
                return True
        return False

    async def _commit(self, batch: _Batch, moved_to: dict[StreamId, int] | None = None) -> None:
        """One transaction: packages, gaps, new journal rows and stream state."""
        moved_to = moved_to or {}
        touched = [(sid, st) for sid in self._dirty | set(moved_to)
                   if (st := self.streams.get(sid)) is not None and st.started]
        journal: list[JournalRow] = []
        rows: list[StreamRow] = []
        for sid, st in touched:
            lo = max(st.journaled, st.min_cursor())
            if st.ring.end > lo:
                journal.append(JournalRow(sid.key, lo, st.ring.read(lo, st.ring.end), st.clock.time_of(lo)))
            end = moved_to.get(sid, st.ring.end)
            cursors = {u: end for u in st.cursors} if sid in moved_to else dict(st.cursors)
            rows.append(StreamRow(sid.key, self.device, info_to_json(st.info), end, cursors, st.clock.offset))
        fresh = [st.clock.time_of(st.journaled) for _, st in touched if st.ring.end > st.journaled]
        added = await self.spool.commit(packages=batch.packages, gaps=batch.gaps, journal=journal, streams=rows)
        if self.on_durable and fresh:
            self.on_durable(time.time() - min(fresh))
        self.counters["packages"] += added
        self.counters["duplicate_packages"] += len(batch.packages) - added  # already pending under that key
        self.counters["commits"] += 1
        for sid, st in touched:
            st.journaled = st.ring.end
            st.unjournaled_since = None
            if sid in moved_to:
                st.ring.release(st.ring.end)
                st.ring.reset(moved_to[sid])
                st.cursors = {u: moved_to[sid] for u in st.cursors}
                st.journaled = moved_to[sid]
            else:
                st.ring.release(st.min_cursor())
        self._dirty.clear()

    def recent(self, channel: str, n: int) -> tuple[np.ndarray, float, float] | None:
        """The last n samples (or fewer) of a channel held in RAM: (samples, rate, time after the last)."""
        live = [st for sid, st in self.streams.items() if sid.channel == channel and st.started and len(st.ring)]
        if not live:
            return None
        st = max(live, key=lambda s: s.last_arrival or 0.0)  # the newest session
        return st.ring.latest(n), float(st.fs), st.clock.time_of(st.ring.end)

    def status(self) -> list[dict]:
        """Per stream: samples, last arrival, what is held in RAM and what is durable."""
        return [{"stream": sid.key, "samples": st.samples, "last_arrival": st.last_arrival,
                 "ring_samples": len(st.ring), "durable_until": st.journaled, "cursors": dict(st.cursors)}
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
