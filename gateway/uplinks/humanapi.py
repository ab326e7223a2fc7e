"""Human API hub uplink: POST /v1/human/<type> with a Bearer token and the package's key."""

from __future__ import annotations

import httpx

from gateway.spool import StoredPackage
from gateway.uplinks.base import BearerAuth, RetryPolicy, Uplink
from gateway.vendors import humanapi
from gateway.vendors.extensions import IDEMPOTENCY_HEADER


class HumanApiUplink(Uplink):
    """Delivers measurements of every device to a Human API style hub."""

    def __init__(self, name: str, base_url: str, token: str, timeout: float = 30.0,
                 policy: RetryPolicy | None = None) -> None:
        super().__init__(name, base_url, timeout, policy)
        self.auth = BearerAuth(token)

    def build_request(self, client: httpx.AsyncClient, package: StoredPackage) -> httpx.Request:
        """POST to the type named by the package kind (humanapi.<type>)."""
        kind = package.kind.split(".", 1)[1]
        if kind not in humanapi.TYPES:
            raise ValueError(f"package kind {package.kind!r} is not a hub type")
        return client.build_request("POST", f"{self.base_url}/v1/human/{kind}", content=package.body,
                                    headers={"Content-Type": package.content_type, "Accept": "application/json",
                                             IDEMPOTENCY_HEADER: package.key})
