"""All cloud emulators in one ASGI app, each under the prefix that stands for its vendor's base URL.

    /kardia   Kardia Pro API   (so /kardia/v1/patients is the vendor's /v1/patients)

Data lives in one directory (one SQLite file per emulator) and survives restarts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from simulators.cloud.http import EXCEPTION_HANDLERS
from simulators.cloud.kardia.app import create_app as create_kardia_app
from simulators.cloud.kardia.store import KardiaStore

DEFAULT_KARDIA_API_KEY = "kardia-dev-key"
ENV_KARDIA_API_KEY = "WEARABLE_SIM_KARDIA_API_KEY"
PREFIXES = {"kardia": "/kardia"}


@dataclass
class Credentials:
    """Development credentials the emulators accept."""

    kardia_api_keys: list[str] = field(default_factory=lambda: [DEFAULT_KARDIA_API_KEY])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, kardia_api_keys: list[str] | None = None) -> "Credentials":
        """Flags win over the environment, which wins over the defaults; a comma separates several keys."""
        env = os.environ if env is None else env
        keys = kardia_api_keys or [k for k in env.get(ENV_KARDIA_API_KEY, "").split(",") if k.strip()]
        return cls(kardia_api_keys=[k.strip() for k in keys] or [DEFAULT_KARDIA_API_KEY])


def build_app(data_dir: str | Path, credentials: Credentials | None = None) -> Starlette:
    """Every emulator mounted under its prefix, stored under data_dir."""
    credentials = credentials or Credentials()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    kardia_store = KardiaStore(data_dir / "kardia.db")

    async def index(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        return JSONResponse({"emulators": {name: {"base_url": base + prefix} for name, prefix in PREFIXES.items()}})

    @asynccontextmanager
    async def lifespan(app):
        yield
        kardia_store.close()

    return Starlette(routes=[Route("/", index), Mount(PREFIXES["kardia"],
                                                      app=create_kardia_app(kardia_store, credentials.kardia_api_keys))],
                     exception_handlers=dict(EXCEPTION_HANDLERS), lifespan=lifespan)
