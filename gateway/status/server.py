"""The status server: Starlette on uvicorn, inside the daemon's own event loop.

Routes (all behind HTTP Basic auth when a password is configured; any user name):
- `GET /`                   the live status page (page.html)
- `GET /api/status`         devices, link state, last data, spool backlog, uplink health, recent errors
- `GET /api/trace?device=`  the newest seconds of a device's ECG from the ring buffer
- `GET /metrics`            Prometheus exposition (gateway/metrics.py)

While the configuration is invalid (at start, when its [status] table is valid), the same
address serves the file's errors instead (`build_error_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import logging
import socket
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gateway import basic_auth
from gateway.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logging.getLogger(__name__)

TRACE_CHANNELS = ("leadI",)  # the channel drawn for a device, first one it has
MAX_TRACE_POINTS = 1500
MAX_TRACE_SECONDS = 30.0


def _authorised(request: Request, password: str | None) -> bool:
    if password is None:
        return True
    creds = basic_auth.parse(request.headers.get("authorization"))
    return creds is not None and hmac.compare_digest(creds[1].encode(), password.encode())


def _guarded(handler, password: str | None):
    """The handler behind HTTP Basic auth (any user name) when a password is set."""
    async def wrapped(request: Request) -> Response:
        if not _authorised(request, password):
            return Response("authentication required\n", 401,
                            headers={"WWW-Authenticate": 'Basic realm="wearable-gateway", charset="UTF-8"'})
        return await handler(request)
    return wrapped


def build_app(gateway: Gateway, password: str | None = None) -> Starlette:
    """The ASGI app serving one gateway."""
    page = resources.files("gateway.status").joinpath("page.html").read_text()

    def guard(handler):
        return _guarded(handler, password)

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def status(request: Request) -> Response:
        return JSONResponse(await gateway.full_status())

    async def trace(request: Request) -> Response:
        name = request.query_params.get("device", "")
        runner = next((r for r in gateway.devices if r.config.name == name), None)
        if runner is None:
            return JSONResponse({"error": f"no device named {name!r}"}, 404)
        try:
            seconds = min(MAX_TRACE_SECONDS, max(0.5, float(request.query_params.get("seconds", "5"))))
        except ValueError:
            return JSONResponse({"error": "seconds must be a number"}, 400)
        for channel in TRACE_CHANNELS:
            # Ask for enough at the highest rate (1000 Hz), then keep `seconds` at the channel's rate.
            got = runner.pipeline.recent(channel, int(seconds * 1000))
            if got is not None:
                samples, fs, end_time = got
                samples = samples[-int(seconds * fs):]
                step = max(1, int(np.ceil(len(samples) / MAX_TRACE_POINTS)))
                return JSONResponse({"device": name, "channel": channel, "fs": fs / step, "end_time": end_time,
                                     "samples": samples[::step].astype(int).tolist()})
        return JSONResponse({"device": name, "channel": None, "fs": 0, "end_time": None, "samples": []})

    async def metrics(request: Request) -> Response:
        return Response(gateway.metrics.render(await gateway.status()), media_type=CONTENT_TYPE)

    routes = [Route("/", guard(index)), Route("/api/status", guard(status)), Route("/api/trace", guard(trace)),
              Route("/metrics", guard(metrics))]
    return Starlette(routes=routes)


def build_error_app(source: str, errors: list[str], password: str | None = None) -> Starlette:
    """What the status server shows while the configuration is invalid: the file and its errors."""
    def guard(handler):
        return _guarded(handler, password)

    async def index(request: Request) -> Response:
        items = "".join(f"<li>{html.escape(e)}</li>" for e in errors)
        return HTMLResponse(
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>wearable-gateway</title></head>"
            f"<body style='font: 14px/1.4 system-ui, sans-serif; margin: 1.2em'><h1>wearable-gateway</h1>"
            f"<div id='health' class='problem' style='background:#ffebee;color:#b71c1c;padding:.5em 1em'>"
            f"<b>invalid configuration {html.escape(source)}</b>: no device is read until it is fixed"
            f"<ul id='config-errors'>{items}</ul></div><p>Fix the file, then <code>systemctl reload"
            f" wearable-gateway</code> (or send SIGHUP): the gateway starts with it. <code>wearable-gateway"
            f" check-config {html.escape(source)}</code> lists the same.</p></body></html>",
            headers={"Cache-Control": "no-store"})

    async def status(request: Request) -> Response:
        return JSONResponse({"config_error": {"source": source, "errors": errors}, "devices": [], "uplinks": []})

    async def metrics(request: Request) -> Response:
        from gateway import __version__

        text = (f'# HELP wg_config_valid 1 when the configuration is valid and the gateway runs\n'
                f'# TYPE wg_config_valid gauge\nwg_config_valid 0.0\n'
                f'# HELP wg_build_info The gateway\'s version (always 1)\n# TYPE wg_build_info gauge\n'
                f'wg_build_info{{version="{__version__}"}} 1.0\n')
        return Response(text, media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/", guard(index)), Route("/api/status", guard(status)),
                             Route("/metrics", guard(metrics))])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield  # the daemon owns SIGTERM and SIGINT


class StatusServer:
    """Runs the app as a task of the current event loop."""

    def __init__(self, gateway: Gateway | None, host: str, port: int, password: str | None,
                 app: Starlette | None = None) -> None:
        self.host, self.port = host, port
        config = uvicorn.Config(app or build_app(gateway, password), log_level="warning", access_log=False,
                                lifespan="off", server_header=False)
        self._server = _Server(config)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Bind and serve; OSError (e.g. address in use) if the port cannot be bound."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="status server")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises what went wrong
        log.info("status page on http://%s:%d/ (metrics on /metrics)", self.host, self.port)

    async def stop(self) -> None:
        """Stop serving."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5.0)
        self._task = None

