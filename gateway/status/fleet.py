"""A relay's HTTP face: the fleet page, /api/fleet and /metrics.

- `GET /`           every gateway the relay has heard of, with its health (rendered on the server)
- `GET /api/fleet`  the same, and the relay's own broker session, uplinks and spool, as JSON
- `GET /metrics`    Prometheus: per gateway the last message, messages taken, forwarded, retried
                    and dead; per vendor uplink the latency of each attempt; the broker's state.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gateway.metrics import CONTENT_TYPE
from gateway.status.server import _guarded

if TYPE_CHECKING:
    from gateway.relay import Relay

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Snapshot:
    """Metric families from the last relay status taken."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}

    def collect(self):
        """prometheus_client's collector protocol."""
        s = self.status
        gws = s.get("gateways", [])
        per_gw = [("wg_relay_messages", "Package messages taken from the broker", "messages", CounterMetricFamily),
                  ("wg_relay_forwarded", "Packages the vendor acknowledged", "forwarded", CounterMetricFamily),
                  ("wg_relay_retried", "Attempts that will be retried", "retried", CounterMetricFamily),
                  ("wg_relay_dead", "Packages the vendor refused for good", "dead", CounterMetricFamily),
                  ("wg_relay_last_message_timestamp_seconds", "When the gateway's last package came", "last_message",
                   GaugeMetricFamily)]
        for name, doc, key, kind in per_gw:
            fam = kind(name, doc, labels=["gateway"])
            for g in gws:
                if g.get(key) is not None:
                    fam.add_metric([g["gateway"]], float(g[key]))
            yield fam
        online = GaugeMetricFamily("wg_relay_gateway_online", "1 if the gateway's last status says online",
                                   labels=["gateway"])
        for g in gws:
            online.add_metric([g["gateway"]], 1.0 if g.get("online") else 0.0)
        yield online
        counters = CounterMetricFamily("wg_relay_events", "Relay events by kind", labels=["kind"])
        for k, v in sorted(s.get("counters", {}).items()):
            counters.add_metric([k], v)
        yield counters
        broker = s.get("broker") or {}
        yield GaugeMetricFamily("wg_relay_broker_up", "1 while connected to the broker",
                                value=1.0 if broker.get("state") == "up" else 0.0)
        backlog = GaugeMetricFamily("wg_relay_backlog_packages", "Packages in the relay's spool", labels=["uplink"])
        for name, u in (s.get("spool", {}).get("uplinks") or {}).items():
            backlog.add_metric([name], u.get("pending", 0))
        yield backlog


class RelayMetrics:
    """The relay's registry: a snapshot collector and the per-uplink latency histogram."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        self.latency = Histogram("wg_relay_uplink_latency_seconds", "Seconds each attempt at the vendor took",
                                 ["uplink"], buckets=LATENCY_BUCKETS, registry=self.registry)

    def observe(self, uplink: str, seconds: float) -> None:
        """One attempt's latency."""
        self.latency.labels(uplink).observe(seconds)

    def render(self, status: dict[str, Any]) -> bytes:
        """The exposition text."""
        self._snapshot.status = status
        return generate_latest(self.registry)


def _age(t: float | None, now: float) -> str:
    return "never" if t is None else f"{now - t:.0f} s ago"


def render_page(status: dict[str, Any]) -> str:
    """The fleet page: one row per gateway."""
    now = time.time()
    rows = []
    for g in status["gateways"]:
        health = "offline" if g["online"] is False else ("unknown" if g["online"] is None else (
            "degraded" if g["backlog"] > 100 or g["dead_letters"] or g["devices_connected"] < g["devices"] else "ok"))
        seen = "" if g["status_age_s"] is None else f'{g["status_age_s"]:.0f} s ago'
        rows.append(
            f'<tr class="{health}"><td>{html.escape(g["gateway"])}</td><td>{health}</td>'
            f'<td>{g["devices_connected"]}/{g["devices"]}</td><td>{g["backlog"]}</td><td>{g["dead_letters"]}</td>'
            f'<td>{g["messages"]}</td><td>{g["forwarded"]}</td><td>{_age(g["last_message"], now)}</td>'
            f'<td>{seen}</td>'
            f'<td>{html.escape(str(g["last_error"] or ""))}</td></tr>')
    broker = status.get("broker") or {}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>wearable-gateway fleet</title>
<meta http-equiv="refresh" content="5"><style>
body{{font-family:system-ui,sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:left}}
tr.ok td:nth-child(2){{color:#17803d}} tr.degraded td:nth-child(2){{color:#b26b00}}
tr.offline td:nth-child(2),tr.unknown td:nth-child(2){{color:#b42318}}</style></head><body>
<h1>Fleet</h1><p>relay group <b>{html.escape(status["group"])}</b>, broker {html.escape(str(broker.get("broker")))}
({html.escape(str(broker.get("state")))}), {len(status["gateways"])} gateway(s)</p>
<table><thead><tr><th>gateway</th><th>health</th><th>devices up</th><th>backlog</th><th>dead letters</th>
<th>messages</th><th>forwarded</th><th>last message</th><th>last status</th><th>last error</th></tr></thead>
<tbody>{''.join(rows) or '<tr><td colspan="10">no gateway has been heard of yet</td></tr>'}</tbody></table>
</body></html>"""


def build_fleet_app(relay: Relay, metrics: RelayMetrics, password: str | None = None) -> Starlette:
    """The ASGI app of one relay."""

    def guard(handler):
        return _guarded(handler, password)

    async def index(request: Request) -> Response:
        return HTMLResponse(render_page(await relay.status()), headers={"Cache-Control": "no-store"})

    async def api(request: Request) -> Response:
        return JSONResponse(await relay.status())

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(await relay.status()), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/", guard(index)), Route("/api/fleet", guard(api)),
                             Route("/metrics", guard(metrics_route))])
