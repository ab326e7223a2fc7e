"""Webhook delivery for the Kardia emulator: signed POSTs to the account's callback URL, retried.

Each delivery is a POST of the event as JSON:

    {"id": "evt_...", "type": "recording.created" | "patient.connected" | "patient.disconnected",
     "createdAt": "2026-11-23T10:00:00.000+00:00", "data": {"patientID": ..., "recordingId": ...}}

with the headers
    X-Kardia-Event-Id:          the event id (the same on every retry: deduplicate on it)
    X-Kardia-Delivery-Attempt:  1, 2, ...
    X-Kardia-Signature:         t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

A receiver verifies the signature with the shared secret, computed over the exact bytes of the
body, and refuses a `t` older than a few minutes (replay). Any answer but 2xx, a timeout or a
refused connection is retried after 1, 2, 4 ... s (capped at 5 min) up to 10 attempts; the
outbox is in the store, so retries survive a restart of the emulator.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import httpx
from starlette.concurrency import run_in_threadpool

from simulators.cloud.kardia.store import KardiaStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Kardia-Signature"
EVENT_ID_HEADER = "X-Kardia-Event-Id"
ATTEMPT_HEADER = "X-Kardia-Delivery-Attempt"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float | None = None, tolerance: float = 300.0) -> bool:
    """Whether a signature header is valid for the body and recent enough."""
    try:
        parts = dict(item.strip().split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


class WebhookDeliverer:
    """Delivers the store's pending webhook events until cancelled."""

    def __init__(self, store: KardiaStore, secret: str, retry_initial: float = 1.0, retry_cap: float = 300.0,
                 max_attempts: int = 10, timeout: float = 10.0) -> None:
        self.store = store
        self.secret = secret
        self.retry_initial = retry_initial
        self.retry_cap = retry_cap
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """An event may have been queued."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver due events; sleep until the next is due or something new is queued."""
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while True:
                self._wake.clear()
                for delivery in await run_in_threadpool(self.store.due_deliveries, time.time()):
                    await self._deliver(client, *delivery)
                nxt = await run_in_threadpool(self.store.next_delivery_at)
                wait = 5.0 if nxt is None else min(5.0, max(0.0, nxt - time.time()))
                if wait > 0:
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except asyncio.TimeoutError:
                        pass

    async def _deliver(self, client: httpx.AsyncClient, delivery_id: int, url: str, body: str, attempts: int) -> None:
        raw = body.encode()
        event_id = json.loads(body)["id"]
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, int(time.time()), raw),
                   EVENT_ID_HEADER: event_id, ATTEMPT_HEADER: str(attempts + 1)}
        status, error = None, None
        try:
            response = await client.post(url, content=raw, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        retry_at = None
        if error is not None and attempts + 1 < self.max_attempts:
            retry_at = time.time() + min(self.retry_cap, self.retry_initial * 2 ** attempts)
        if error is not None:
            log.warning("webhook %s to %s: %s; %s", event_id, url, error,
                        "retrying" if retry_at else f"giving up after {attempts + 1} attempts")
        await run_in_threadpool(self.store.delivery_result, delivery_id, status, error, retry_at)
