"""Kardia Pro uplink: POST /v1/recordings with HTTP Basic auth (API key as user, empty password)."""

from __future__ import annotations

import httpx

from gateway.spool import StoredPackage
from gateway.uplinks.base import RetryPolicy, Uplink
from gateway.vendors import kardia
from gateway.vendors.extensions import IDEMPOTENCY_HEADER


class KardiaUplink(Uplink):
    """Delivers Kardia recordings to a Kardia Pro API (or its emulator)."""

    def __init__(self, name: str, base_url: str, api_key: str, timeout: float = 30.0,
                 policy: RetryPolicy | None = None) -> None:
        super().__init__(name, base_url, timeout, policy)
        self.auth = httpx.BasicAuth(api_key, "")

    def build_request(self, client: httpx.AsyncClient, package: StoredPackage) -> httpx.Request:
        """POST the recording with its idempotency key."""
        return client.build_request(
            "POST", self.base_url + kardia.RECORDINGS_PATH, content=package.body,
            headers={"Content-Type": package.content_type, IDEMPOTENCY_HEADER: package.key})
