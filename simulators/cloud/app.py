"""All cloud emulators in one ASGI app, each under the prefix that stands for its vendor's base URL.

    /kardia     Kardia Pro API           (/kardia/v1/patients is the vendor's /v1/patients)
    /up         UP cardiac events API     (/up/nudge/api/v.1.0/... is https://jawbone.com/nudge/api/v.1.0/...)
    /humanapi   Human API style hub       (/humanapi/v1/human/... is https://api.humanapi.co/v1/human/...)
    /hexoskin   Hexoskin API              (/hexoskin/api/v1/... is https://api.hexoskin.com/api/v1/...)

Each emulator is also served at its vendor's own root, where a vendor's client expects it: for
a request whose Host is the vendor's (VENDOR_HOSTS: point the name at this machine) and on a
listening port of its own (`listen`). Links in answers carry the layout the request came by.

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
VENDOR_HOSTS = {"api.kardia.com": "kardia", "eu-api.kardia.com": "kardia", "jawbone.com": "up",
                "api.humanapi.co": "humanapi", "api.hexoskin.com": "hexoskin"}
ENV = {"kardia_api_keys": "WEARABLE_SIM_KARDIA_API_KEY", "kardia_webhook_secret": "WEARABLE_SIM_KARDIA_WEBHOOK_SECRET",
       "up_tokens": "WEARABLE_SIM_UP_TOKEN", "humanapi_tokens": "WEARABLE_SIM_HUMANAPI_TOKEN",
       "hexoskin_users": "WEARABLE_SIM_HEXOSKIN_USER", "hexoskin_keys": "WEARABLE_SIM_HEXOSKIN_KEY",
       "hexoskin_coaching": "WEARABLE_SIM_HEXOSKIN_COACH"}
FLAGS = {"kardia_api_keys": "--kardia-api-key", "kardia_webhook_secret": "--kardia-webhook-secret",
         "up_tokens": "--up-token", "humanapi_tokens": "--humanapi-token", "hexoskin_users": "--hexoskin-user",
         "hexoskin_keys": "--hexoskin-key", "hexoskin_coaching": "--hexoskin-coach"}


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
    # The document's curl examples send Basic alone: a signature is checked when sent, required only if asked.
    hexoskin_require_signature: bool = False
    hexoskin_refuse_replays: bool = False  # refuse a signed write repeated with the same signature and body

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: list[str] | str | None) -> "Credentials":
        """Flags win over the environment (comma-separated lists), which wins over the defaults.

        A value that names nothing (`,` or spaces) is a ValueError, never a silent fall back to the defaults."""
        env = os.environ if env is None else env
        creds = cls()
        given = set()
        for name, var in ENV.items():
            value = flags.get(name) or env.get(var)
            if value is None or value == [] or value == "":
                continue
            source = FLAGS[name] if flags.get(name) else var
            if isinstance(getattr(creds, name), list):
                items = [v.strip() for v in (value if isinstance(value, list) else value.split(","))]
                if not any(items):
                    raise ValueError(f"{source} names no entry ({value!r})")
                setattr(creds, name, [v for v in items if v])
            elif not str(value).strip():
                raise ValueError(f"{source} is empty")
            else:
                setattr(creds, name, value)
            given.add(name)
        if "hexoskin_coaching" not in given:  # the default coaching only between users that exist
            emails = {u.partition(":")[0] for u in creds.hexoskin_users}
            creds.hexoskin_coaching = [c for c in creds.hexoskin_coaching
                                       if set(c.split(">")) <= emails]
        return creds


class VendorRouter:
    """ASGI: a request on a vendor's own port or for a vendor's host goes to that emulator at its root."""

    def __init__(self, root: Starlette, vendors: Mapping[str, Starlette], ports: Mapping[int, str]) -> None:
        self.root = root
        self.vendors = dict(vendors)
        self.ports = dict(ports)

    def vendor_of(self, scope) -> str | None:
        """The emulator a request is for at its root, or None for the /prefix layout."""
        server = scope.get("server") or (None, None)
        name = self.ports.get(server[1])
        if name is None:
            for key, value in scope.get("headers", ()):
                if key == b"host":
                    host = value.decode("latin-1").lower()
                    host = host.rpartition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
                    name = VENDOR_HOSTS.get(host)
                    break
        return name

    async def __call__(self, scope, receive, send) -> None:
        name = self.vendor_of(scope) if scope["type"] in ("http", "websocket") else None
        await (self.vendors[name] if name else self.root)(scope, receive, send)


def build_app(data_dir: str | Path, credentials: Credentials | None = None,
              webhook_retry_initial: float = 1.0, ports: Mapping[int, str] | None = None) -> VendorRouter:
    """Every emulator mounted under its prefix (and at its root by host or port), stored under data_dir."""
    creds = credentials or Credentials()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    kardia = KardiaEmulator(KardiaStore(data_dir / "kardia.db"), creds.kardia_api_keys, creds.kardia_webhook_secret,
                            webhook_retry_initial)
    up_store = UpStore(data_dir / "up.db")
    hub_store = HubStore(data_dir / "humanapi.db")
    hexoskin_store = HexoskinStore(data_dir / "hexoskin.db")
    hexoskin_app = hexoskin.create_app(hexoskin_store, users=creds.hexoskin_users, keys=creds.hexoskin_keys,
                                       coaching=creds.hexoskin_coaching,
                                       require_signature=creds.hexoskin_require_signature,
                                       refuse_replays=creds.hexoskin_refuse_replays)

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

    vendors = {"kardia": kardia.app, "up": create_up_app(up_store, creds.up_tokens),
               "humanapi": create_hub_app(hub_store, creds.humanapi_tokens), "hexoskin": hexoskin_app}
    unknown = set((ports or {}).values()) - set(vendors)
    if unknown:
        raise ValueError(f"no emulator {', '.join(sorted(unknown))} (emulators: {', '.join(vendors)})")
    routes = [Route("/", index), *(Mount(PREFIXES[name], app=app) for name, app in vendors.items())]
    root = Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS), lifespan=lifespan)
    return VendorRouter(root, vendors, ports or {})
