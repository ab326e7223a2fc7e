"""UP cardiac events API emulator (vendor-docs/up-band-cardiac-api.md) as an ASGI app.

Served paths are the vendor's, relative to wherever the app is mounted (`/up` under
`wearable-sim cloud`, standing for https://jawbone.com), both versioned (`v.1.0`, `v.1.1`, as in
the examples) and unversioned (as in the tables):

    GET, POST  /nudge/api[/v.1.x]/users/@me/cardiac_events
    GET        /nudge/api[/v.1.x]/users/<user_xid>/cardiac_events    (the `next` links use this)
    GET, DELETE /nudge/api[/v.1.x]/cardiac_events/<xid>

Authentication: OAuth-style `Authorization: Bearer <token>`; each token belongs to one user and
one partner client (tokens are configured as TOKEN[:USER_XID[:CLIENT_ID]]). Every answer,
errors included, carries the `meta` envelope (`user_xid`, `message`, `code`, `time`).

Choices where the document is silent or contradicts itself:
- `date` defaults to today in UTC, and applies only when neither `start_time`/`end_time` nor
  `updated_after` is given (so a sync by `updated_after` sees every date).
- `limit` is 1-100 (default 25, the vendor's page size).
- `page_token` is an integer as documented, the item's `time_created * 10^9 + seq`, so events
  sharing a second are never skipped or repeated. A plain timestamp is accepted too.
- `links.next` is relative to the base URL, as the vendor's is to https://jawbone.com.
- `tz` (called int, described as Olson) is an Olson name, in `details.tz`.
- `time_updated` is the server time of the last change.
- `image` is the `image_url` given at creation.
- Deleting removes the event from every answer.

Extension: `POST` accepts an `Idempotency-Key` header; a replay with the same body answers 200
with the first event and `Idempotent-Replayed: true`, another body 422.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.vendors import up
from simulators.cloud.http import REPLAYED, ApiError, bearer_token, form_or_json, idempotency_key, int_param, key_reused
from simulators.cloud.up.store import KeyConflict, UpStore

DEFAULT_TOKEN = "up-dev-token"


def parse_tokens(specs: Iterable[str]) -> dict[str, tuple[str, str]]:
    """TOKEN[:USER_XID[:CLIENT_ID]] specs -> {token: (user_xid, client_id)}."""
    out = {}
    for spec in specs:
        token, _, rest = spec.partition(":")
        user, _, client = rest.partition(":")
        if not token.strip():
            raise ValueError(f"an UP token is TOKEN[:USER_XID[:CLIENT_ID]] with a token, not {spec!r}")
        digest = hashlib.sha256(token.encode()).hexdigest()
        out[token] = (user or "u_" + digest[:20], client or "c_" + digest[20:36])
    return out


def _meta(user: str | None, code: int, message: str) -> dict[str, Any]:
    return {"user_xid": user, "message": message, "code": code, "time": int(time.time())}


def _answer(user: str | None, code: int, message: str, data: Any, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"meta": _meta(user, code, message), "data": data}, status_code=code, headers=headers)


def create_app(store: UpStore, tokens: Iterable[str]) -> Starlette:
    """The emulator app."""
    users = parse_tokens(tokens)
    if not users:
        raise ValueError("the UP emulator needs at least one token")

    def who(request: Request) -> tuple[str, str]:
        token = bearer_token(request)
        if token is None or token not in users:
            raise ApiError(401, "authenticate with Authorization: Bearer <token>" if token is None else "invalid token",
                           headers={"WWW-Authenticate": 'Bearer realm="UP"'})
        version = request.path_params.get("version")
        if version is not None and version not in up.VERSIONS:
            raise ApiError(404, f"unknown API version {version}")
        return users[token]

    def int_query(request: Request, name: str, lo: int = 0, hi: int = 2**62) -> int | None:
        return int_param(request, name, lo, hi, None)

    async def events(request: Request) -> JSONResponse:
        user, client = who(request)
        owner = request.path_params["user"]
        if owner not in ("@me", user):
            raise ApiError(403, "these are another user's events")
        if request.method == "POST":
            return await create(request, user, client)
        q = request.query_params
        limit = int_query(request, "limit", 1, up.MAX_LIMIT) or up.DEFAULT_LIMIT
        start, end = int_query(request, "start_time"), int_query(request, "end_time")
        if (start is None) != (end is None):
            raise ApiError(400, "start_time and end_time must be used together")
        if start is not None and start > end:
            raise ApiError(400, "start_time must not be after end_time")
        updated_after = int_query(request, "updated_after")
        date = None
        if "date" in q:
            try:
                date = up.parse_date(q["date"])
            except ValueError:
                raise ApiError(400, f"date must be YYYYMMDD, not {q['date']!r}") from None
        elif start is None and updated_after is None:
            date = up.today()
        token = int_query(request, "page_token")
        items, nxt = await run_in_threadpool(store.list, user, limit, date=date, start=start, end=end,
                                             updated_after=updated_after, before_token=token)
        data: dict[str, Any] = {"items": items, "links": {}, "size": len(items)}
        if nxt is not None:
            params = {k: v for k, v in q.items() if k != "page_token"}
            if date is not None:
                params["date"] = str(date)
            params["page_token"] = str(nxt)
            version = request.path_params.get("version")
            # Under the /up prefix the link carries it, so a client can follow it in either layout.
            base = request.scope.get("root_path", "") + (f"/nudge/api/{version}" if version else "/nudge/api")
            data["links"]["next"] = f"{base}/users/{user}/cardiac_events?{urlencode(params)}"
        return _answer(user, 200, "OK", data)

    async def create(request: Request, user: str, client: str) -> JSONResponse:
        key = idempotency_key(request)
        fields = await form_or_json(request)
        try:
            event = up.parse_event(fields)
        except up.UpValidationError as exc:
            raise ApiError(400, str(exc)) from None
        # Canonical fields, so a form body and a JSON body with the same values compare equal.
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
        try:
            found, created = await run_in_threadpool(store.create, user, client, event, key, digest)
        except KeyConflict:
            raise key_reused(key) from None
        if created:
            return _answer(user, 201, "Created", found)
        return _answer(user, 200, "OK", found, headers=REPLAYED)

    async def event(request: Request) -> JSONResponse:
        user, client = who(request)
        xid = request.path_params["xid"]
        found = await run_in_threadpool(store.get, user, xid)
        if found is None:
            raise ApiError(404, f"no cardiac event with xid {xid}")
        item, creator = found
        if request.method == "DELETE":
            if creator != client:
                raise ApiError(403, f"cardiac event {xid} was not created by this partner client")
            await run_in_threadpool(store.remove, user, xid)
            return _answer(user, 200, f"Cardiac event data with xid {xid} was removed", {})
        return _answer(user, 200, "OK", item)

    def user_of(request: Request) -> str | None:
        token = bearer_token(request)
        return users[token][0] if token in users else None

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _answer(user_of(request), exc.status, exc.message, {}, exc.headers)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        message = {404: "no such resource", 405: f"method {request.method} not allowed here"}.get(
            exc.status_code, str(exc.detail))
        return _answer(user_of(request), exc.status_code, message, {}, dict(exc.headers or {}))

    routes = []
    for prefix in ("/nudge/api/{version}", "/nudge/api"):
        routes += [Route(prefix + "/users/{user}/cardiac_events", events, methods=["GET", "POST"]),
                   Route(prefix + "/cardiac_events/{xid}", event, methods=["GET", "DELETE"])]
    return Starlette(routes=routes, exception_handlers={ApiError: api_error, HTTPException: http_error})
