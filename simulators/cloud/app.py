"""All cloud emulators in one ASGI app, each under the prefix that stands for its vendor's base URL.

    /kardia     Kardia Pro API           (/kardia/v1/patients is the vendor's /v1/patients)
    /up         UP cardiac events API     (/up/nudge/api/v.1.0/... is https://jawbone.com/nudge/api/v.1.0/...)
    /humanapi   Human API style hub       (/humanapi/v1/human/... is https://api.humanapi.co/v1/human/...)
    /hexoskin   Hexoskin API              (/hexoskin/api/v1/... is https://api.hexoskin.com/api/v1/...)

Data lives in one directory, one SQLite file per emulator, and survives restarts.
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

from simulators.cloud.hexoskin import app as hexoskin
from simulators.cloud.hexoskin.store import HexoskinStore
from simulators.cloud.http import EXCEPTION_HANDLERS
from simulators.cloud.humanapi.app import DEFAULT_TOKEN as DEFAULT_HUMANAPI_TOKEN
from simulators.cloud.humanapi.app import create_app as create_hub_app
from simulators.cloud.humanapi.store import HubStore
from simulators.cloud.kardia.app import DEFAULT_WEBHOOK_SECRET, KardiaEmulator
from simulators.cloud.kardia.store import KardiaStore
from simulators.cloud.up.app import DEFAULT_TOKEN as DEFAULT_UP_TOKEN
from simulators.cloud.up.app import create_app as create_up_app
from simulators.cloud.up.store import UpStore

DEFAULT_KARDIA_API_KEY = "kardia-dev-key"
PREFIXES = {"kardia": "/kardia", "up": "/up", "humanapi": "/humanapi", "hexoskin": "/hexoskin"}
ENV = {"kardia_api_keys": "WEARABLE_SIM_KARDIA_API_KEY", "kardia_webhook_secret": "WEARABLE_SIM_KARDIA_WEBHOOK_SECRET",
       "up_tokens": "WEARABLE_SIM_UP_TOKEN", "humanapi_tokens": "WEARABLE_SIM_HUMANAPI_TOKEN",
       "hexoskin_users": "WEARABLE_SIM_HEXOSKIN_USER", "hexoskin_keys": "WEARABLE_SIM_HEXOSKIN_KEY",
       "hexoskin_coaching": "WEARABLE_SIM_HEXOSKIN_COACH"}


@dataclass
class Credentials:
    """What the emulators accept. Lists: one account (Kardia) or user (UP, hub) per entry."""

    kardia_api_keys: list[str] = field(default_factory=lambda: [DEFAULT_KARDIA_API_KEY])
    kardia_webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    up_tokens: list[str] = field(default_factory=lambda: [DEFAULT_UP_TOKEN])  # TOKEN[:USER_XID[:CLIENT_ID]]
    humanapi_tokens: list[str] = field(default_factory=lambda: [DEFAULT_HUMANAPI_TOKEN])  # TOKEN[:HUMAN_ID]
    hexoskin_users: list[str] = field(default_factory=lambda: list(hexoskin.DEFAULT_USERS))  # EMAIL:PASSWORD[:NAME]
    hexoskin_keys: list[str] = field(default_factory=lambda: list(hexoskin.DEFAULT_KEYS))  # PUBLIC:PRIVATE[:EMAIL]
    hexoskin_coaching: list[str] = field(default_factory=lambda: list(hexoskin.DEFAULT_COACHING))  # COACH>ATHLETE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: list[str] | str | None) -> "Credentials":
        """Flags win over the environment (comma-separated lists), which wins over the defaults."""
        env = os.environ if env is None else env
        creds = cls()
        for name, var in ENV.items():
            value = flags.get(name) or env.get(var)
            if not value:
                continue
            if isinstance(getattr(creds, name), list):
                items = value if isinstance(value, list) else value.split(",")
                setattr(creds, name, [v.strip() for v in items if v.strip()] or getattr(creds, name))
            else:
                setattr(creds, name, value)
        return creds


def build_app(data_dir: str | Path, credentials: Credentials | None = None,
              webhook_retry_initial: float = 1.0) -> Starlette:
    """Every emulator mounted under its prefix, stored under data_dir."""
    creds = credentials or Credentials()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    kardia = KardiaEmulator(KardiaStore(data_dir / "kardia.db"), creds.kardia_api_keys, creds.kardia_webhook_secret,
                            webhook_retry_initial)
    up_store = UpStore(data_dir / "up.db")
    hub_store = HubStore(data_dir / "humanapi.db")
    hexoskin_store = HexoskinStore(data_dir / "hexoskin.db")
    hexoskin_app = hexoskin.create_app(hexoskin_store, users=creds.hexoskin_users, keys=creds.hexoskin_keys,
                                       coaching=creds.hexoskin_coaching)

    async def index(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        return JSONResponse({"emulators": {name: {"base_url": base + prefix} for name, prefix in PREFIXES.items()}})

    @asynccontextmanager
    async def lifespan(app):
        # Starlette runs only the root app's lifespan: the mounted emulators' background work starts here.
        await kardia.start()
        try:
            yield
        finally:
            await kardia.stop()
            for store in (kardia.store, up_store, hub_store, hexoskin_store):
                store.close()

    routes = [Route("/", index),
              Mount(PREFIXES["kardia"], app=kardia.app),
              Mount(PREFIXES["up"], app=create_up_app(up_store, creds.up_tokens)),
              Mount(PREFIXES["humanapi"], app=create_hub_app(hub_store, creds.humanapi_tokens)),
              Mount(PREFIXES["hexoskin"], app=hexoskin_app)]
    return Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS), lifespan=lifespan)
