"""A Human API style hub (vendor-docs/human-api-conventions.md): where everything the gateway
delivered can be read with Human API conventions.

Paths, relative to the mount point (`/humanapi` under `wearable-sim cloud`):

    GET  /v1/human                                 summary: the latest of each type
    GET  /v1/human/<type>                          list (type: heart_rate, blood_pressure, ecg)
    GET  /v1/human/<type>/<id>                     one object
    GET  /v1/human/<type>/readings                 the same list, as Human API's wellness paths
    GET  /v1/human/<type>/readings/<id>            one object
    GET  /v1/human/<type>/readings/daily/<date>    the list of one UTC day (YYYY-MM-DD)
    POST /v1/human/<type>                          this project's ingest extension (below)

Lists are newest first and take `limit` (default 50, at most 500), `offset`, `created_since`,
`created_before`, `updated_since`, `updated_before` (UTC, YYYYMMDDTHHmmssZ), `source`, and
`start_date` with `end_date` (YYYY-MM-DD, both inclusive, on the measurement's UTC date). They
answer with an RFC 5988 `Link` header (first, prev, next, last) and `X-Total-Count`.

Authentication: `Authorization: Bearer <token>`; each token is one human (configured as
TOKEN[:HUMAN_ID]). Media type: JSON only; an `Accept` that excludes it gets 406.

Extension: `POST /v1/human/<type>` with a JSON measurement (`timestamp` with a UTC offset,
`source`, optional `sourceId`, and the type's fields) and an optional `Idempotency-Key`: 201 the
first time, 200 with the same object and `Idempotent-Replayed: true` on a replay, 422 when the
key comes back with another body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.vendors import humanapi
from gateway.vendors.humanapi import HumanApiValidationError
from simulators.cloud.http import (EXCEPTION_HANDLERS, REPLAYED, ApiError, bearer_token, idempotency_key, int_param,
                                   json_body, key_reused)
from simulators.cloud.humanapi.store import HubStore, KeyConflict

DEFAULT_TOKEN = "humanapi-dev-token"
# The document: "The demo access token will serve demo user data." Always accepted, with data seeded once.
DEMO_TOKEN, DEMO_HUMAN = "demo", "demo"
DEMO_DATA = [("heart_rate", {"timestamp": "2026-11-30T08:00:00+00:00", "source": "demo", "value": 64, "unit": "bpm"}),
             ("heart_rate", {"timestamp": "2026-11-30T20:00:00+00:00", "source": "demo", "value": 71, "unit": "bpm"}),
             ("blood_pressure", {"timestamp": "2026-11-30T08:05:00+00:00", "source": "demo", "systolic": 118,
                                 "diastolic": 76, "unit": "mmHg"})]
FILTERS = ("created_since", "created_before", "updated_since", "updated_before")


def parse_tokens(specs: Iterable[str]) -> dict[str, str]:
    """TOKEN[:HUMAN_ID] specs -> {token: human id}."""
    out = {}
    for spec in specs:
        token, _, human = spec.partition(":")
        if not token.strip():
            raise ValueError(f"a Human API token is TOKEN[:HUMAN_ID] with a token, not {spec!r}")
        out[token] = human or "h_" + hashlib.sha256(token.encode()).hexdigest()[:22]
    return out


def _link_header(request: Request, limit: int, offset: int, total: int) -> str:
    base = str(request.url.replace(query=""))
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit")]

    def url(off: int) -> str:
        return f"<{base}?{urlencode(params + [('limit', limit), ('offset', off)])}>"

    last = max(0, (total - 1) // limit * limit)
    links = [f'{url(0)}; rel="first"']
    if offset > 0:
        links.append(f'{url(max(0, offset - limit))}; rel="prev"')
    if offset + limit < total:
        links.append(f'{url(offset + limit)}; rel="next"')
    links.append(f'{url(last)}; rel="last"')
    return ", ".join(links)


def create_app(store: HubStore, tokens: Iterable[str]) -> Starlette:
    """The hub app."""
    humans = parse_tokens(tokens)
    if not humans:
        raise ValueError("the hub needs at least one token")
    humans.setdefault(DEMO_TOKEN, DEMO_HUMAN)
    for number, (kind, obj) in enumerate(DEMO_DATA):  # once: the idempotency key makes a restart a no-op
        raw = json.dumps(obj).encode()
        store.ingest(humans[DEMO_TOKEN], kind, humanapi.parse_measurement(kind, obj), f"demo-{number}",
                     hashlib.sha256(raw).hexdigest())

    def human(request: Request) -> str:
        token = bearer_token(request)
        if token is None or token not in humans:
            raise ApiError(401, "authenticate with Authorization: Bearer <token>" if token is None else "invalid token",
                           headers={"WWW-Authenticate": 'Bearer realm="Human API"'})
        accept = request.headers.get("accept", "*/*")
        if not any(t.split(";")[0].strip() in ("*/*", "application/*", "application/json") for t in accept.split(",")):
            raise ApiError(406, "this API answers application/json only", code="not_acceptable")
        return humans[token]

    def kind_of(request: Request) -> str:
        kind = request.path_params["kind"]
        if kind not in humanapi.TYPES:
            raise ApiError(404, f"no such type {kind!r}; the hub has {', '.join(humanapi.TYPES)}")
        return kind

    def filters(request: Request, day: str | None = None) -> dict[str, Any]:
        q = request.query_params
        try:
            out: dict[str, Any] = {name: humanapi.parse_filter_time(q[name], name) for name in FILTERS if name in q}
            if day is not None:
                start = humanapi.parse_day(day, "date")
                out["from"], out["until"] = start.timestamp(), (start + timedelta(days=1)).timestamp()
            elif "start_date" in q or "end_date" in q:
                if not ("start_date" in q and "end_date" in q):
                    raise HumanApiValidationError("start_date and end_date must be used together")
                start = humanapi.parse_day(q["start_date"], "start_date")
                end = humanapi.parse_day(q["end_date"], "end_date")
                if end < start:
                    raise HumanApiValidationError("end_date must not be before start_date")
                out["from"], out["until"] = start.timestamp(), (end + timedelta(days=1)).timestamp()
        except HumanApiValidationError as exc:
            raise ApiError(400, str(exc)) from None
        out["source"] = q.get("source")
        return out

    async def listing(request: Request, day: str | None = None) -> JSONResponse:
        who, kind = human(request), kind_of(request)
        lo, hi, default = humanapi.LIMIT
        limit = int_param(request, "limit", lo, hi, default)
        offset = int_param(request, "offset", 0, 2**62, 0)
        items, total = await run_in_threadpool(store.list, who, kind, limit, offset, filters(request, day))
        return JSONResponse(items, headers={"Link": _link_header(request, limit, offset, total),
                                            "X-Total-Count": str(total)})

    async def kind_root(request: Request) -> JSONResponse:
        if request.method == "POST":
            return await ingest(request)
        return await listing(request)

    async def daily(request: Request) -> JSONResponse:
        return await listing(request, request.path_params["day"])

    async def one(request: Request) -> JSONResponse:
        who, kind = human(request), kind_of(request)
        found = await run_in_threadpool(store.get, who, kind, request.path_params["mid"])
        if found is None:
            raise ApiError(404, f"no such {kind} object")
        return JSONResponse(found)

    async def ingest(request: Request) -> JSONResponse:
        who, kind = human(request), kind_of(request)
        key = idempotency_key(request)
        obj, raw = await json_body(request)
        try:
            m = humanapi.parse_measurement(kind, obj)
        except HumanApiValidationError as exc:
            raise ApiError(400, str(exc)) from None
        try:
            found, created = await run_in_threadpool(store.ingest, who, kind, m, key, hashlib.sha256(raw).hexdigest())
        except KeyConflict:
            raise key_reused(key) from None
        headers = {"Location": f"{request.scope.get('root_path', '')}/v1/human/{kind}/{found['id']}"}
        if not created:
            headers.update(REPLAYED)
        return JSONResponse(found, status_code=201 if created else 200, headers=headers)

    async def summary(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(store.summary, human(request)))

    routes = [
        Route("/v1/human", summary, methods=["GET"]),
        Route("/v1/human/{kind}/readings/daily/{day}", daily, methods=["GET"]),
        Route("/v1/human/{kind}/readings", listing, methods=["GET"]),
        Route("/v1/human/{kind}/readings/{mid}", one, methods=["GET"]),
        Route("/v1/human/{kind}", kind_root, methods=["GET", "POST"]),
        Route("/v1/human/{kind}/{mid}", one, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS))
