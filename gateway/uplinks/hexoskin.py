"""Hexoskin uplink: POST /api/v1/data/ with HTTP Basic (e-mail, password) and the API-key signature.

Every request is signed at the moment it is sent (a retry gets a fresh timestamp), over the
exact URL httpx sends. The signature covers key, second and URL but not the body, and the
API refuses a write whose signature and body it has seen: so a retry of the same body within
the same second is stamped one second later.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

import httpx

from gateway.spool import StoredPackage
from gateway.uplinks.base import RetryPolicy, Uplink
from gateway.vendors import hexoskin as hx
from gateway.vendors.extensions import IDEMPOTENCY_HEADER

REMEMBERED = 1024  # recent (URL, body) stamps kept to never sign the same write twice


class HexoskinAuth(httpx.Auth):
    """Basic credentials plus the X-HEXOAPIKEY / X-HEXOTIMESTAMP / X-HEXOAPISIGNATURE headers."""

    requires_request_body = True

    def __init__(self, email: str, password: str, public_key: str, private_key: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._basic = "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()
        self.public_key = public_key
        self._private_key = private_key
        self.clock = clock
        self._last: OrderedDict[str, int] = OrderedDict()

    def auth_flow(self, request: httpx.Request):
        """Sign the request as it leaves."""
        request.headers["Authorization"] = self._basic
        url = str(request.url)
        stamp = int(self.clock())
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            seen = hashlib.sha256(url.encode() + b"\0" + request.content).hexdigest()
            stamp = max(stamp, self._last.get(seen, -1) + 1)
            self._last[seen] = stamp
            self._last.move_to_end(seen)
            while len(self._last) > REMEMBERED:
                self._last.popitem(last=False)
        request.headers.update(hx.signed_headers(self.public_key, self._private_key, url, stamp))
        yield request


class HexoskinUplink(Uplink):
    """Delivers Hexoskin data chunks to the Hexoskin API (or its emulator)."""

    def __init__(self, name: str, base_url: str, email: str, password: str, public_key: str, private_key: str,
                 timeout: float = 30.0, policy: RetryPolicy | None = None) -> None:
        super().__init__(name, base_url, timeout, policy)
        self.auth = HexoskinAuth(email, password, public_key, private_key)

    def build_request(self, client: httpx.AsyncClient, package: StoredPackage) -> httpx.Request:
        """POST the chunk with its idempotency key."""
        return client.build_request(
            "POST", self.base_url + hx.DATA_PATH, content=package.body,
            headers={"Content-Type": package.content_type, "Accept": "application/json",
                     IDEMPOTENCY_HEADER: package.key})
