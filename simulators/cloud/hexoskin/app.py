"""Hexoskin API emulator (vendor-docs/hexoskin-api.md) as an ASGI app, mounted at `/hexoskin`.

Paths are the vendor's (`/hexoskin/api/v1/record/` is https://api.hexoskin.com/api/v1/record/).

- Authentication (auth.py): HTTP Basic with e-mail and password, and every request signed with
  an API key (`X-HEXOAPIKEY`, `X-HEXOTIMESTAMP`, `X-HEXOAPISIGNATURE` over the exact URL).
  Timestamps more than 300 s from the emulator's clock are refused, and so is a write replayed
  with the same signature and body. Failures answer 401 `{"error": "..."}`.
- Who sees what: a user sees their own data, their athletes' (coach) and friends'. Another
  user's object that you cannot see is a 404; writing to an object you can see but do not own,
  or naming another user as the owner of what you create, is a 403.
- Tastypie semantics (tastypie.py): list views with meta, filters, order_by, limit/offset;
  the document's method rules (405 for DELETE/PUT on lists and POST on details, 404 for PUT
  on a missing detail).
- `data` (GET): `datatype` or `datatype__in`, and `record`, `range` or `start` + `end`
  (HexoTimestamps; `user` picks whose data in a window). JSON, CSV or zip by the Accept header
  (data.py). `ecg` is `data` for the ECG datatypes.
- `data` (POST, this project's upload; how shirts upload is not public): a body
  `{"record": {device, start, firmware_rev} | record URI, "data": {datatype: [[ts, value], ...]}}`
  finds or creates the record of that device session and stores the series; answers 201 with
  the record's Location. `Idempotency-Key` replays answer 200 with `Idempotent-Replayed: true`.
- `report` (GET): `include_metrics` and `record` or `range` (report.py).
- Caching: answers of `data`, `ecg` and `report` are cached per user, URL and Accept until the
  next write; a cached answer carries `X-HexoCache: <Unix time it was cached>`.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.vendors import hexoskin as hx
from gateway.vendors.extensions import IDEMPOTENCY_HEADER
from simulators.cloud.hexoskin import data as fmt
from simulators.cloud.hexoskin import report as rep
from simulators.cloud.hexoskin import resources as R
from simulators.cloud.hexoskin import tastypie as tp
from simulators.cloud.hexoskin.auth import ApiKey, AuthError, Authenticator
from simulators.cloud.hexoskin.store import HexoskinStore, KeyConflict, User, now
from simulators.cloud.http import REPLAYED, ApiError, idempotency_key, read_body

DEFAULT_USERS = ["athlete@hexoskin.com:hexoskin:Athlete Hexoskin", "coach@hexoskin.com:coach:Coach Hexoskin",
                 "other@hexoskin.com:other:Other User"]
DEFAULT_COACHING = ["coach@hexoskin.com>athlete@hexoskin.com"]
DEFAULT_KEYS = ["hexoskin-dev-public:hexoskin-dev-private"]
ECG_DATATYPES = (hx.ECG_I, hx.ECG_II, hx.ECG_III)
CACHED = ("data", "ecg", "report")  # computed from stored data; their GET answers are cached
CACHE_ENTRIES = 64
CACHE_MAX_BYTES = 8 * 1024 * 1024  # a larger answer is rebuilt each time rather than held


def parse_users(specs: Iterable[str]) -> dict[str, tuple[str, str, str]]:
    """EMAIL:PASSWORD[:FIRST LAST] -> {email: (password, first, last)}."""
    out = {}
    for spec in specs:
        email, _, rest = spec.partition(":")
        password, _, name = rest.partition(":")
        if not email or not password:
            raise ValueError(f"a Hexoskin user is EMAIL:PASSWORD[:NAME], not {spec!r}")
        first, _, last = name.partition(" ")
        out[email] = (password, first, last)
    return out


def parse_keys(specs: Iterable[str]) -> dict[str, ApiKey]:
    """PUBLIC:PRIVATE[:EMAIL] -> {public: ApiKey}."""
    out = {}
    for spec in specs:
        public, _, rest = spec.partition(":")
        private, _, email = rest.partition(":")
        if not public or not private:
            raise ValueError(f"a Hexoskin API key is PUBLIC:PRIVATE[:EMAIL], not {spec!r}")
        out[public] = ApiKey(private, email or None)
    return out


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class HexoskinEmulator:
    """The app and what it needs: the store, the authenticator, the answer cache."""

    def __init__(self, store: HexoskinStore, users: Iterable[str] = DEFAULT_USERS,
                 coaching: Iterable[str] = DEFAULT_COACHING, keys: Iterable[str] = DEFAULT_KEYS,
                 require_signature: bool = False, refuse_replays: bool = False, clock=now) -> None:
        self.store = store
        self.clock = clock
        self._upload_lock = threading.Lock()
        accounts = parse_users(users)
        for email, (_, first, last) in accounts.items():
            store.ensure_user(email, first, last)
        for spec in coaching:
            coach, _, athlete = spec.partition(">")
            c, a = store.user_by_email(coach), store.user_by_email(athlete)
            if c is None or a is None:
                raise ValueError(f"coaching {spec!r} names an unknown user")
            store.let_see(c.id, a.id)
        self.auth = Authenticator({e: p for e, (p, _, _) in accounts.items()}, parse_keys(keys), require_signature,
                                  refuse_replays=refuse_replays, clock=clock)
        self._cache: OrderedDict[tuple, tuple[int, float, Response]] = OrderedDict()
        routes = [Route("/api/", self.top_level, methods=["GET", "HEAD"]),
                  Route("/api/v1/", self.top_level, methods=["GET", "HEAD"]),
                  Route("/api/v1/{resource}/", self.endpoint, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
                  Route("/api/v1/{resource}/{oid}/", self.endpoint,
                        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])]
        self.app = Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, {404: "no such resource", 405: f"method {request.method} not allowed here"}
                      .get(exc.status_code, str(exc.detail)))

    # Dispatch --------------------------------------------------------------------------

    async def top_level(self, request: Request) -> Response:
        """Tastypie's resource list: each resource's list endpoint and schema (no authentication, as Tastypie)."""
        with tp.rooted(request.scope.get("root_path", "")):
            return JSONResponse(R.resource_list())

    async def endpoint(self, request: Request) -> Response:
        """Every resource: authenticate, apply the method rules, answer (errors as {"error": ...})."""
        with tp.rooted(request.scope.get("root_path", "")):
            try:
                body = b"" if request.method in ("GET", "HEAD") else await read_body(request)
                email = self.auth.authenticate(self._received_url(request), request.headers, request.method, body)
                user = self.store.user_by_email(email)
                if user is None:
                    raise AuthError("unknown user")
                return await self._dispatch(request, user, body)
            except AuthError as exc:
                return _error(401, str(exc))
            except ApiError as exc:
                return _error(exc.status, exc.message, exc.headers)
            except tp.MethodError as exc:
                return _error(exc.status, str(exc))
            except (tp.QueryError, fmt.UploadError) as exc:
                return _error(400, str(exc))

    @staticmethod
    def _received_url(request: Request) -> str:
        """The URL exactly as the client sent it (raw path and query, no re-encoding): what it signed."""
        scope = request.scope
        raw = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        host = request.headers.get("host") or f"{scope['server'][0]}:{scope['server'][1]}"
        return f"{scope['scheme']}://{host}{raw.decode('latin-1')}" + (f"?{query.decode('latin-1')}" if query else "")

    async def _dispatch(self, request: Request, user: User, body: bytes) -> Response:
        name = request.path_params["resource"]
        oid_text = request.path_params.get("oid")
        method = "GET" if request.method == "HEAD" else request.method
        if oid_text == "schema" and (name in R.RESOURCES or name in R.COMPUTED):
            tp.check_method("detail", method, ("GET",))
            return JSONResponse(R.schema(name))
        if name in CACHED:  # the computed resources: no stored objects, answers cached
            if oid_text is not None:
                raise ApiError(404, f"{name} has no detail view")
            tp.check_method("list", method, ("GET", "POST") if name == "data" else ("GET",))
            if method == "POST":
                return await self._upload(request, user, body)
            return await self._cached(request, user, name)
        res = R.RESOURCES.get(name)
        if res is None:
            raise ApiError(404, f"no resource {name!r}")
        if oid_text is None:
            tp.check_method("list", method, res.list_methods)
            if method == "GET":
                return JSONResponse(self._list(request, user, res))
            return self._create(request, user, res, body)
        oid = self._oid(oid_text)
        obj = self._detail_object(user, res, oid)
        tp.check_method("detail", method, res.detail_methods, exists=obj is not None)
        if obj is None:
            raise ApiError(404, f"no {name} {oid_text}")
        if method == "GET":
            return JSONResponse(self._show(user, res.name, obj))
        if method == "DELETE":
            self._check_owner(user, res.name, obj)
            self.store.delete(res.name, oid)
            return Response(status_code=204)
        return self._update(user, res, obj, body, partial=method == "PATCH")

    @staticmethod
    def _absolute(request: Request, path: str) -> str:
        """An absolute URL of a path on the host the request came to."""
        return f"{request.url.scheme}://{request.url.netloc}{path}"

    @staticmethod
    def _oid(text: str) -> int:
        if not text.isdigit():
            raise ApiError(404, f"no object {text!r}")
        return int(text)

    # Read ------------------------------------------------------------------------------

    def _objects(self, user: User, name: str) -> list[dict[str, Any]]:
        """Every object of a resource the user may see (raw values)."""
        seen = self.store.visible(user.id)
        if name in ("user", "account"):
            ids = {user.id} if name == "account" else seen
            return [{"id": u.id, "email": u.email, "_user": u} for u in self.store.users() if u.id in ids]
        if not R.RESOURCES[name].stored:
            return R.catalogue(name)
        objs = self.store.objects(name, seen)
        if name == "record":
            for o in objs:
                o["status"] = o.get("status") or self._record_status(o)
        return objs

    def _record_status(self, rec: dict[str, Any]) -> str:
        return "complete" if self.clock() - rec.get("last_upload", 0) >= R.RECORD_IDLE_S else "realtime"

    def _detail_object(self, user: User, res: R.Resource, oid: int) -> dict[str, Any] | None:
        if res.name == "account":
            raise ApiError(404, "account has no detail view: GET /api/v1/account/")
        key = R.key_of(res.name)
        for obj in self._objects(user, res.name):
            if obj.get(key) == oid:
                return obj
        return None

    def _show(self, user: User, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        if name in ("user", "account"):
            u = obj["_user"]
            profile = self._profile_of(u.id)
            if name == "account":
                return R.show_user(u, None, R.show("profile", profile) if profile else None)
            return R.show_user(u, profile["id"] if profile else None)
        if not R.RESOURCES[name].stored:
            return R.show_catalogue(name, obj)
        summary = None
        if name == "record":
            u = self.store.user(obj["user"])
            profile = self._profile_of(obj["user"])
            summary = R.show_user(u, profile["id"] if profile else None) if u else None
        return R.show(name, obj, summary)

    def _profile_of(self, uid: int) -> dict[str, Any] | None:
        found = self.store.objects("profile", {uid})
        return found[0] if found else None

    def _list(self, request: Request, user: User, res: R.Resource) -> dict[str, Any]:
        params = list(request.query_params.multi_items())
        q = tp.parse(params, res.fields, res.attributes)
        objs = self._objects(user, res.name)
        page, total = tp.select(objs, q)
        if res.name == "account":  # the document's account list: only you, limit 1
            q.limit = 1
        return tp.list_body(request.url.path, params, q, [self._show(user, res.name, o) for o in page], total)

    # Write -----------------------------------------------------------------------------

    def _check_owner(self, user: User, name: str, obj: dict[str, Any]) -> None:
        owner = obj["id"] if name == "user" else obj.get("user")
        if owner != user.id:
            raise ApiError(403, f"this {name} belongs to another user: you may see it, not change it")

    def _fields(self, user: User, res: R.Resource, body: bytes, partial: bool) -> dict[str, Any]:
        """A write's fields, checked against the resource's writable fields."""
        try:
            obj = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ApiError(400, "the body must be a JSON object")
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if key in ("id", "resource_uri", "start_date", "last_update", "data_status"):
                continue
            if key == "user":
                target = self._user_ref(value)
                if target != user.id:
                    raise ApiError(403, "you may only create and change your own objects")
                continue
            spec = res.writable.get(key)
            if spec is None:
                raise ApiError(400, f"{key}: not a field of {res.name} (fields: {', '.join(sorted(res.writable))})")
            out[key] = self._check_value(user, key, spec, value)
        missing = [k for k, s in res.writable.items() if s.required and k not in out]
        if missing and not partial:
            raise ApiError(400, f"missing required field(s): {', '.join(missing)}")
        return out

    @staticmethod
    def _ref(value: Any, resource: str, name: str | None = None) -> int:
        """The id a reference names; 400 naming the parameter if it is neither a URI nor an id."""
        oid = R.ref_id(value, resource)
        if oid is None:
            raise ApiError(400, f"{name or resource}: {value!r} is not a {resource} URI or id")
        return oid

    def _user_ref(self, value: Any) -> int:
        return self._ref(value, "user")

    def _check_value(self, user: User, key: str, spec: R.Writable, value: Any) -> Any:
        if value is None and not spec.required:
            return None
        if spec.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hx.MAX_TIMESTAMP:
                raise ApiError(400, f"{key}: must be a HexoTimestamp (an integer from 0 to {hx.MAX_TIMESTAMP})")
        elif spec.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ApiError(400, f"{key}: must be a number")
        elif spec.kind == "str":
            if not isinstance(value, str) or len(value) > 1000:
                raise ApiError(400, f"{key}: must be a string of at most 1000 characters")
            if spec.choices and value not in spec.choices:
                raise ApiError(400, f"{key}: must be one of {', '.join(spec.choices)}")
        elif spec.kind == "position":
            ok = isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            if not ok or not (-180 <= value[0] <= 180 and -90 <= value[1] <= 90):
                raise ApiError(400, f"{key}: must be [longitude, latitude] in degrees")
        elif spec.kind == "ref":
            oid = self._ref(value, spec.refers_to, key)
            if self._detail_object(user, R.RESOURCES[spec.refers_to], oid) is None:
                raise ApiError(400, f"{key}: no {spec.refers_to} {oid} that you can see")
            return oid
        return value

    def _create(self, request: Request, user: User, res: R.Resource, body: bytes) -> Response:
        fields = self._fields(user, res, body, partial=False)
        self._validate(fields)
        if res.name == "trackpoint":
            owner = self.store.get("track", fields["track"])["user"]
            if owner != user.id:
                raise ApiError(403, "this track belongs to another user")
        if res.name == "annotation":
            fields["last_update"] = int(self.clock() * hx.TICKS_PER_SECOND)
        if res.name == "record":
            fields["end"] = fields["start"] if fields.get("end") is None else fields["end"]
            fields["last_upload"] = self.clock()
        oid = self.store.create(res.name, user.id, fields)
        obj = self._detail_object(user, res, oid)
        location = self._absolute(request, R.uri(res.name, oid))
        return JSONResponse(self._show(user, res.name, obj), status_code=201, headers={"Location": location})

    @staticmethod
    def _validate(fields: dict[str, Any]) -> None:
        start, end = fields.get("start"), fields.get("end")
        if start is not None and end is not None and end < start:
            raise ApiError(400, "end must not precede start")

    def _update(self, user: User, res: R.Resource, obj: dict[str, Any], body: bytes, partial: bool) -> Response:
        self._check_owner(user, res.name, obj)
        fields = self._fields(user, res, body, partial)
        if res.name == "user":
            self.store.update_user(user.id, fields)
            return JSONResponse(self._show(user, "user", self._detail_object(user, res, user.id)))
        raw = {k: v for k, v in self.store.get(res.name, obj["id"]).items() if k not in ("id", "user")}
        new = {**raw, **fields} if partial else {**{k: raw[k] for k in ("last_upload",) if k in raw}, **fields}
        self._validate(new)
        if res.name == "annotation":
            new["last_update"] = int(self.clock() * hx.TICKS_PER_SECOND)
        self.store.replace(res.name, obj["id"], obj["user"], new)
        return JSONResponse(self._show(user, res.name, self._detail_object(user, res, obj["id"])))

    # Data ------------------------------------------------------------------------------

    async def _upload(self, request: Request, user: User, body: bytes) -> Response:
        key = idempotency_key(request)
        if key is not None:
            try:
                seen = self.store.remembered(user.id, key, body)
            except KeyConflict:
                raise ApiError(422, f"{IDEMPOTENCY_HEADER} {key!r} was already used with a different body") from None
            if seen is not None:
                return Response(seen[2], status_code=200, media_type="application/json",
                                headers={"Location": seen[1], **REPLAYED})
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "send the upload as application/json")
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        ref, series = fmt.parse_upload(obj)
        return await run_in_threadpool(self._store_upload, request, user, ref, series, key, body)

    def _store_upload(self, request: Request, user: User, ref, series, key, body: bytes) -> Response:
        # Uploads run in worker threads: finding or creating the session's record and moving its end
        # are read-then-write, so concurrent uploads of one session (a client sending its channels at
        # once) would make two records or lose an end. One upload at a time.
        with self._upload_lock:
            return self._store_upload_locked(request, user, ref, series, key, body)

    def _store_upload_locked(self, request: Request, user: User, ref, series, key, body: bytes) -> Response:
        if isinstance(ref, dict):
            rec = self.store.find_record(user.id, ref["device"], ref["start"])
            if rec is None:
                oid = self.store.create("record", user.id, {
                    "device": ref["device"], "start": ref["start"], "end": ref["start"],
                    "firmware_rev": ref.get("firmware_rev", ""), "soft_uid": "wearable-gateway",
                    "last_upload": self.clock()})
                rec = self.store.get("record", oid)
        else:
            rec = self._detail_object(user, R.RESOURCES["record"], self._ref(ref, "record"))
            if rec is None:
                raise ApiError(404, f"no record {ref}")
            if rec["user"] != user.id:
                raise ApiError(403, "this record belongs to another user")
        fmt.check_alignment(series, rec["start"])
        raw = self.store.get("record", rec["id"])  # as stored: a computed status is not kept
        ends = [int(ts[-1]) + (hx.DATATYPES[d].hexo_freq or 1) for d, (ts, _) in series.items() if len(ts)]
        rec_body = {**raw, "end": max([raw.get("end") or raw["start"], *ends]), "last_upload": self.clock()}
        location = self._absolute(request, R.uri("record", rec["id"]))
        answer = json.dumps({"record": R.uri("record", rec["id"]),
                             "points": {str(d): len(ts) for d, (ts, _) in series.items()}})
        self.store.add_chunks(user.id, rec["id"], series, rec_body,
                              (key, body, 201, location, answer) if key is not None else None)
        return Response(answer, status_code=201, media_type="application/json", headers={"Location": location})

    async def _cached(self, request: Request, user: User, name: str) -> Response:
        accept = self._accept(request) if name != "report" else "json"
        key = (user.id, str(request.url), accept)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == self.store.version:
            self._cache.move_to_end(key)
            cached = hit[2]
            return Response(cached.body, status_code=cached.status_code, media_type=cached.media_type,
                            headers={**{k: v for k, v in cached.headers.items()
                                        if k.lower() not in ("content-length", "content-type")},
                                     hx.CACHE_HEADER: str(int(hit[1]))})
        version = self.store.version
        response = await run_in_threadpool(self._report if name == "report" else self._data, request, user, name,
                                           accept)
        if len(response.body) <= CACHE_MAX_BYTES:
            self._cache[key] = (version, self.clock(), response)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return response

    @staticmethod
    def _accept(request: Request) -> str:
        for part in request.headers.get("accept", "application/json").split(","):
            kind = part.split(";")[0].strip().lower()
            if kind == "text/csv":
                return "csv"
            if kind == "application/octet-stream":
                return "zip"
            if kind == "application/x-edf":
                return "edf"
            if kind in ("application/json", "*/*", "application/*"):
                return "json"
        raise ApiError(406, "accepted formats: application/json, text/csv, application/octet-stream,"
                            " application/x-edf")

    def _timerange(self, request: Request, user: User, allowed: set[str]) -> tuple[str, dict[str, Any], int, int, int]:
        """(folder, what it is about, start, end, owner) of a data or report query."""
        p = request.query_params
        given = [k for k in ("record", "range") if k in p]
        if len(given) > 1:
            raise ApiError(400, "give one of record, range or start and end")
        if given:
            kind = given[0]
            oid = self._ref(p[kind], kind)
            obj = self._detail_object(user, R.RESOURCES[kind], oid)
            if obj is None:
                raise ApiError(404, f"no {kind} {oid} that you can see")
            end = obj.get("end") if obj.get("end") is not None else obj["start"]
            return f"{kind}_{oid}", obj, obj["start"], max(end, obj["start"] + 1) if kind == "range" else end, \
                obj["user"]
        if "start" in p and "end" in p and "start" in allowed:
            start, end = (self._ts_param(p[k], k) for k in ("start", "end"))
            if end <= start:
                raise ApiError(400, "end must be after start")
            owner = user.id
            if "user" in p:
                owner = self._user_ref(p["user"])
                if owner not in self.store.visible(user.id):
                    raise ApiError(403, "you may not see this user's data")
            return f"data_{start}_{end}", {}, start, end, owner
        raise ApiError(400, "give record, range, or start and end (HexoTimestamps)" if "start" in allowed
                       else "give record or range")

    @staticmethod
    def _ts_param(text: str, name: str) -> int:
        if not text.isdigit() or int(text) > hx.MAX_TIMESTAMP:
            raise ApiError(400, f"{name}: must be a HexoTimestamp (an integer from 0 to {hx.MAX_TIMESTAMP}),"
                                f" not {text[:40]!r}")
        return int(text)

    def _datatypes(self, request: Request, name: str) -> list[int]:
        p = request.query_params
        if name == "ecg":
            return list(ECG_DATATYPES)
        text = p.get("datatype__in") or p.get("datatype")
        if not text:
            raise ApiError(400, "give datatype or datatype__in (see /api/v1/datatype/)")
        out = []
        for part in text.split(","):
            if not part.strip().isdigit() or int(part) not in hx.DATATYPES:
                raise ApiError(400, f"datatype: unknown datatype {part!r}")
            out.append(int(part))
        return out

    def _data(self, request: Request, user: User, name: str, accept: str) -> Response:
        # Other arguments are ignored, as Tastypie ignores what is not a filter.
        datatypes = self._datatypes(request, name)
        folder, about, start, end, owner = self._timerange(request, user, {"start"})
        record = about["id"] if folder.startswith("record_") else None
        series = {}
        for d in datatypes:
            s = self.store.series(d, start, end, record=record, user=None if record is not None else owner)
            if len(s[0]) or name != "ecg":
                series[d] = s
        if accept == "csv":
            return Response(fmt.csv_answer(series), media_type="text/csv")
        if accept == "edf":
            try:
                body = fmt.edf_answer(series)
            except ValueError as exc:
                raise ApiError(404, str(exc)) from None
            return Response(body, media_type="application/x-edf",
                            headers={"Content-Disposition": f'attachment; filename="{folder}.edf"'})
        if accept == "zip":
            return Response(fmt.zip_answer(folder, series), media_type="application/octet-stream",
                            headers={"Content-Disposition": f'attachment; filename="{folder}.zip"'})
        if request.query_params.get("flat", "").lower() in ("1", "true", "yes"):
            return JSONResponse(fmt.flat_answer(series))
        return JSONResponse(fmt.json_answer(R.uri("user", owner), series))

    def _report(self, request: Request, user: User, name: str, accept: str) -> Response:
        text = request.query_params.get("include_metrics", "")
        ids = []
        for part in filter(None, text.split(",")):
            if not part.strip().isdigit() or int(part) not in rep.METRICS:
                raise ApiError(400, f"include_metrics: no metric {part!r} (see /api/v1/metric/)")
            ids.append(int(part))
        if not ids:
            raise ApiError(400, "give include_metrics, e.g. include_metrics=44,45")
        folder, about, start, end, owner = self._timerange(request, user, set())
        kind = folder.split("_")[0]
        record = about["id"] if kind == "record" else None
        activity = None
        if kind == "range" and about.get("trainingroutine"):
            routine = next((t for t in R.TRAINING_ROUTINES if t["id"] == about["trainingroutine"]), None)
            activity = routine["activitytype"] if routine else None
        computer = rep.Computer(lambda d: self.store.series(d, start, end, record=record,
                                                           user=None if record is not None else owner), activity)
        about_uri = R.uri(kind, about["id"])
        timerange = {"end": end, "start": start, "user": R.uri("user", owner)}
        metrics = [rep.metric_object(i, computer.value(i), about_uri, timerange) for i in ids]
        return JSONResponse({"count": 1, "data": [metrics], "name": "", "outputtype": "list",
                             kind: self._show(user, kind, about), "report": R.uri("templatereport", "None"),
                             "title": ""})


def create_app(store: HexoskinStore, **kwargs: Any) -> Starlette:
    """The emulator app (see HexoskinEmulator for the arguments)."""
    return HexoskinEmulator(store, **kwargs).app
