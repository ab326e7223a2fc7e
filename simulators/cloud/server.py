"""Run an ASGI app with uvicorn on a real socket: in the foreground, or in a background thread."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket (port 0: a free one)."""
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and without it
    # every keep-alive response waits 40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class BackgroundServer:
    """uvicorn serving `app` on a loopback port from a thread; `url` is its base URL."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, secure=None,
                 extra: list[socket.socket] = ()) -> None:
        self._sock = bind(host, port)
        self._extra = list(extra)
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"{'https' if secure else 'http'}://{host}:{self.port}"
        # "auto": apps without a lifespan (a bare ASGI callable in a test) are served too.
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto",
                                                     **_tls_options(secure)))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock, *self._extra]},
                                        name="emulator", daemon=True)

    def start(self, timeout: float = 10.0) -> "BackgroundServer":
        """Start and wait until it accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the emulator server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut down and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        for sock in (self._sock, *self._extra):
            sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _tls_options(secure) -> dict:
    return {"ssl_certfile": secure.cert_file, "ssl_keyfile": secure.key_file} if secure else {}


def serve(app: ASGIApp, sockets: list[socket.socket], secure=None) -> None:
    """Serve on these listening sockets in the foreground until SIGINT/SIGTERM (`secure`: a tls.ServerTls)."""
    uvicorn.Server(uvicorn.Config(app, log_level="info", lifespan="on", **_tls_options(secure))).run(sockets=sockets)
