"""UP cardiac events uplink: form-encoded POST /nudge/api/v.1.1/users/@me/cardiac_events with a Bearer token."""

from __future__ import annotations

import httpx

from gateway.spool import StoredPackage
from gateway.uplinks.base import BearerAuth, RetryPolicy, Uplink
from gateway.vendors import up
from gateway.vendors.extensions import IDEMPOTENCY_HEADER


class UpUplink(Uplink):
    """Delivers cardiac events to the UP API (or its emulator); `base_url` stands for https://jawbone.com."""

    def __init__(self, name: str, base_url: str, token: str, timeout: float = 30.0,
                 policy: RetryPolicy | None = None) -> None:
        super().__init__(name, base_url, timeout, policy)
        self.auth = BearerAuth(token)

    def build_request(self, client: httpx.AsyncClient, package: StoredPackage) -> httpx.Request:
        """POST the event's form with its idempotency key."""
        return client.build_request(
            "POST", self.base_url + up.EVENTS_PATH.format(version=up.CREATE_VERSION), content=package.body,
            headers={"Content-Type": package.content_type, "Accept": "application/json",
                     IDEMPOTENCY_HEADER: package.key})
