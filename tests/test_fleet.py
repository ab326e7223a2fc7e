"""The fleet simulator: N KardiaMobiles on N ptys from one thread, every frame the real driver's to decode."""

from __future__ import annotations

import os
import threading

import numpy as np

from gateway.core.blocks import DeviceInfo, SampleBlock
from gateway.drivers.kardiamobile import KardiaMobileDriver
from simulators.devices.fleet import Fleet


def test_every_device_streams_its_own_exact_samples_with_its_own_identity():
    fleet = Fleet(6, seed=4, speed=20, wait_for_reader=False)
    readers = [os.open(p.tty_path, os.O_RDONLY | os.O_NONBLOCK) for p in fleet.ports]
    try:
        stats = fleet.run(duration=3.0)  # 900 samples each, 60 s of wall time compressed 20x
        assert fleet.drain(10) > 0  # nobody read yet: the ptys hold it all
        drivers = [KardiaMobileDriver() for _ in readers]
        got = [[] for _ in readers]
        infos = [set() for _ in readers]
        for i, fd in enumerate(readers):
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                for ev in drivers[i].feed(data, 0.0):
                    if isinstance(ev, SampleBlock):
                        got[i].append((ev.first, ev.samples))
                    elif isinstance(ev, DeviceInfo):
                        infos[i].add((ev.device, ev.session))
        assert fleet.drain(5) == 0
    finally:
        for fd in readers:
            os.close(fd)
        fleet.close()
    assert stats.samples == 6 * 900 and stats.deferred_writes == 0
    identities = [next(iter(s)) for s in infos]
    assert all(len(s) == 1 for s in infos) and len(set(identities)) == 6
    assert len({serial for serial, _ in identities}) == 6 and len({boot for _, boot in identities}) == 6
    for i, blocks in enumerate(got):
        first = blocks[0][0]
        samples = np.concatenate([b for _, b in blocks])
        assert first == 0 and len(samples) == 900
        np.testing.assert_array_equal(samples, fleet.signal.expected(i, 0, 900))
        assert not any(k.startswith("bad_frame") or k in ("crc_errors", "gaps") for k in drivers[i].counters)
    # Distinct signals: no two devices send the same stretch.
    assert len({got[i][0][1][:50].tobytes() for i in range(6)}) == 6


def test_a_stalled_reader_holds_its_device_back_and_loses_nothing_while_others_stream():
    fleet = Fleet(2, seed=5, speed=200, wait_for_reader=False)
    fast = os.open(fleet.ports[0].tty_path, os.O_RDONLY | os.O_NONBLOCK)
    slow = os.open(fleet.ports[1].tty_path, os.O_RDONLY | os.O_NONBLOCK)
    got_fast = bytearray()
    stop = threading.Event()

    def read_fast():
        while not stop.is_set():
            try:
                got_fast.extend(os.read(fast, 65536))
            except BlockingIOError:
                stop.wait(0.005)

    t = threading.Thread(target=read_fast)
    t.start()
    try:
        fleet.run(duration=120.0)  # 100 KB per device, far more than a pty holds for the stalled one
        assert fleet.stats.deferred_writes > 0
        got_slow = bytearray()
        while fleet.drain(0.05):
            try:
                got_slow.extend(os.read(slow, 65536))
            except BlockingIOError:
                pass
        while True:
            try:
                got_slow.extend(os.read(slow, 65536))
            except BlockingIOError:
                break
    finally:
        stop.set()
        t.join()
        os.close(fast)
        os.close(slow)
        fleet.close()
    for data, i in ((got_fast, 0), (got_slow, 1)):
        d = KardiaMobileDriver()
        samples = np.concatenate([e.samples for e in d.feed(bytes(data), 0.0) if isinstance(e, SampleBlock)])
        np.testing.assert_array_equal(samples, fleet.signal.expected(i, 0, 120 * 300))
