"""Prometheus metrics of a running gateway (prometheus_client, on the status server's /metrics).

Counters and gauges are read from the gateway's own counters at scrape time, so the data path
carries no instrumentation; only the two latency histograms are observed as things happen:
- `wg_sample_to_durable_seconds`: at each group commit, for every stream it journaled, the age
  of the oldest sample it made durable (one histogram for all devices, fed as one array per
  commit: a label per device would make thousands of series);
- `wg_sample_to_ack_seconds`: at each acknowledged upload, the age of the package's first
  sample (so a 30 s recording is at least 30 s old when acknowledged).
Everything is read from counters kept in RAM: building /metrics does no disk work.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from gateway import __version__
from gateway.drivers.base import bad_frames

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURABLE_BUCKETS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
COMMIT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
ACK_BUCKETS = (1, 5, 15, 30, 45, 60, 120, 300, 900, 3600, 6 * 3600, 24 * 3600)


class _Snapshot:
    """Yields metric families from the last gateway status taken."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}

    def collect(self):
        """prometheus_client's collector protocol."""
        s = self.status
        devices = s.get("devices", [])

        def per_device(name: str, doc: str, value, kind=GaugeMetricFamily):
            fam = kind(name, doc, labels=["device"])
            for d in devices:
                fam.add_metric([d["name"]], value(d))
            return fam

        yield per_device("wg_device_connected", "1 when the device's link is up",
                         lambda d: 1.0 if d["connected"] else 0.0)
        yield per_device("wg_device_last_data_timestamp_seconds", "Unix time of the last bytes from the device",
                         lambda d: d["last_data"] or 0.0)
        yield per_device("wg_device_frames", "Frames decoded", lambda d: d["driver_counters"].get("frames", 0),
                         CounterMetricFamily)
        yield per_device("wg_device_bad_frames", "Frames refused (CRC, header, truncation, impossible fields)",
                         lambda d: bad_frames(d["driver_counters"]), CounterMetricFamily)
        yield per_device("wg_device_gaps", "Gaps recorded (samples that never arrived)",
                         lambda d: d["pipeline_counters"].get("gaps", 0), CounterMetricFamily)
        yield per_device("wg_device_samples", "Samples received",
                         lambda d: d["driver_counters"].get("samples", 0), CounterMetricFamily)
        yield per_device("wg_device_link_losses", "Times the link was lost",
                         lambda d: d["transport_counters"].get("link_losses", 0), CounterMetricFamily)

        spool = s.get("spool", {})
        backlog = spool.get("uplinks", {})
        depth = GaugeMetricFamily("wg_spool_packages", "Packages waiting for upload", labels=["uplink"])
        size = GaugeMetricFamily("wg_spool_bytes", "Bytes of packages waiting for upload", labels=["uplink"])
        age = GaugeMetricFamily("wg_spool_oldest_age_seconds", "Age of the oldest waiting package", labels=["uplink"])
        for name, b in backlog.items():
            depth.add_metric([name], b.get("pending", 0))
            size.add_metric([name], b.get("bytes", 0))
            age.add_metric([name], b.get("oldest_age_s", 0.0) if b.get("pending") else 0.0)
        yield depth
        yield size
        yield age
        yield GaugeMetricFamily("wg_spool_file_bytes", "Spool database size on disk", value=spool.get("file_bytes", 0))
        yield GaugeMetricFamily("wg_spool_dead_letters", "Packages refused for good", value=spool.get("dead_letters", 0))
        yield CounterMetricFamily("wg_spool_evicted", "Waveform packages evicted at the spool's size cap",
                                  value=spool.get("evicted", 0))

        uploads = CounterMetricFamily("wg_uploads", "Upload attempts by outcome", labels=["uplink", "outcome"])
        up = GaugeMetricFamily("wg_uplink_up", "1 when the uplink's last answers were accepted (not retrying,"
                               " not paused)", labels=["uplink"])
        paused = GaugeMetricFamily("wg_uplink_paused", "1 while the uplink is paused because the vendor refused"
                                   " its credentials", labels=["uplink"])
        last_ok = GaugeMetricFamily("wg_uplink_last_success_timestamp_seconds",
                                    "Unix time of the uplink's last accepted upload (0: none yet)", labels=["uplink"])
        for u in s.get("uplinks", []):
            c = u["counters"]
            uploads.add_metric([u["name"], "ok"], c.get("acked", 0))
            uploads.add_metric([u["name"], "failed"], c.get("dead_lettered", 0) + c.get("auth_refused", 0))
            uploads.add_metric([u["name"], "retried"], c.get("retried", 0))
            up.add_metric([u["name"]], 1.0 if u.get("state") == "ok" else 0.0)
            paused.add_metric([u["name"]], 1.0 if u.get("state") == "paused" else 0.0)
            last_ok.add_metric([u["name"]], u.get("last_ok") or 0.0)
        yield uploads
        yield up
        yield paused
        yield last_ok
        info = GaugeMetricFamily("wg_build_info", "The gateway's version and Python (always 1)",
                                 labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info


class ArrayHistogram:
    """A Prometheus histogram observed a numpy array at a time (one searchsorted per commit)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=float)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last is +Inf
        self.sum = 0.0

    def observe_many(self, values: np.ndarray) -> None:
        """Count every value in its bucket."""
        values = np.asarray(values, dtype=float)
        if not len(values):
            return
        self.counts += np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts))
        self.sum += float(values.sum())

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding quantile q (inf when past the last bound)."""
        total = self.counts.sum()
        if not total:
            return 0.0
        i = int(np.searchsorted(np.cumsum(self.counts), q * total, side="left"))
        return float(self.bounds[i]) if i < len(self.bounds) else float("inf")

    def collect(self):
        """prometheus_client's collector protocol."""
        cumulative = np.cumsum(self.counts)
        buckets = [(_le(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1])] + [("+Inf", float(cumulative[-1]))]
        fam = HistogramMetricFamily(self.name, self.documentation)
        fam.add_metric([], buckets, self.sum)
        yield fam


def _le(bound: float) -> str:
    return repr(float(bound))


class GatewayMetrics:
    """One registry per gateway (tests run several in a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=self.registry)  # python_info
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        self.durable = ArrayHistogram("wg_sample_to_durable_seconds",
                                      "Age of the oldest sample of each stream a group commit made durable",
                                      DURABLE_BUCKETS)
        self.registry.register(self.durable)
        self.commit = ArrayHistogram("wg_spool_commit_seconds", "Duration of each group commit, fsync included",
                                     COMMIT_BUCKETS)
        self.registry.register(self.commit)
        self.tick = ArrayHistogram("wg_ingest_tick_seconds",
                                   "Duration of each ingest tick (every device's bytes decoded and staged)",
                                   COMMIT_BUCKETS)
        self.registry.register(self.tick)
        self.acked = Histogram("wg_sample_to_ack_seconds", "Age of a package's first sample when it was acknowledged",
                               ["uplink"], buckets=ACK_BUCKETS, registry=self.registry)

    def render(self, status: dict[str, Any]) -> bytes:
        """The exposition text for a gateway status snapshot."""
        self._snapshot.status = status
        return generate_latest(self.registry)
