"""Kardia Pro API emulator (vendor-docs/kardia-pro-api.md) as an ASGI app.

Served paths are the vendor's, relative to wherever the app is mounted (`/kardia` under
`wearable-sim cloud`). Authentication is the vendor's: HTTP Basic with the API key as the user
name (the password is ignored; the vendor says to leave it empty).

The vendor's calls: patients (create, get, list), a patient's connection code, a patient's
recordings, all recordings, one recording, its PDF, Kardia Mobile users, and the callback URL
with webhooks for new recordings, connections and disconnects (see webhooks.py).

This project's extensions:
- `POST /v1/recordings` ingests a recording shaped like the objects the API returns, with an
  optional `Idempotency-Key` header: 201 the first time; a replay with the same key and body
  answers 200 with the same recording and `Idempotent-Replayed: true`; another body 422.
- `POST /v1/patients/:id/disconnect` plays the patient disconnecting in the app (a new pending
  code and a `patient.disconnected` webhook).
- `GET /v1/callback/deliveries` lists the webhook deliveries with their attempts.
- `GET /v1/recordings/:id.pdf?signal=raw` draws the raw signal instead of the enhanced one.

Choices where the vendor is silent: errors are `{"error": code, "message": sentence}`;
creates answer 201; unknown arguments are refused with 400 so client typos surface.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Iterable
from datetime import date
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.vendors import kardia
from simulators.cloud.http import (EXCEPTION_HANDLERS, REPLAYED, ApiError, basic_user, decode_cursor,
                                   encode_cursor, form_or_json, idempotency_key, int_param, json_body, key_reused)
from simulators.cloud.kardia import pdf
from simulators.cloud.kardia.countries import ISO_3166_ALPHA2
from simulators.cloud.kardia.store import Conflict, IdempotencyConflict, KardiaStore, account_of
from simulators.cloud.kardia.webhooks import WebhookDeliverer

REALM = 'Basic realm="Kardia Pro API"'
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SEXES = (0, 1, 2, 9)  # ISO/IEC 5218: not known, male, female, not applicable
PATIENT_ARGS = {"mrn", "email", "dob", "firstname", "lastname", "sex"}
USER_ARGS = {"email", "password", "countryCode", "patientId"}
MIN_PASSWORD = 8
DEFAULT_WEBHOOK_SECRET = "kardia-dev-webhook-secret"


def _page(items: list[dict], positions: list[int], total: int, has_next: bool, kind: str) -> dict:
    return {"totalCount": total, "data": items,
            "pageInfo": {"startCursor": encode_cursor(kind, positions[0]) if positions else None,
                         "endCursor": encode_cursor(kind, positions[-1]) if positions else None,
                         "hasNextPage": has_next}}


def _found(value: dict | None, what: str) -> dict:
    """The object, or 404 naming what was not found."""
    if value is None:
        raise ApiError(404, f"no such {what}")
    return value


def _validate_patient(fields: dict) -> dict:
    unknown = sorted(set(fields) - PATIENT_ARGS)
    if unknown:
        raise ApiError(400, f"unknown argument(s): {', '.join(unknown)}")
    out: dict = {}
    for name in ("mrn", "email", "dob"):
        value = fields.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ApiError(400, f"{name} is required")
        out[name] = value.strip()
    if len(out["mrn"]) > 64:
        raise ApiError(400, "mrn must be at most 64 characters")
    if not EMAIL_RE.match(out["email"]) or len(out["email"]) > 254:
        raise ApiError(400, f"email is not an e-mail address: {out['email']!r}")
    try:
        if not DATE_RE.match(out["dob"]):
            raise ValueError
        born = date.fromisoformat(out["dob"])
    except ValueError:
        raise ApiError(400, f"dob must be a date as YYYY-MM-DD, not {out['dob']!r}") from None
    if born > date.today() or born.year < 1880:
        raise ApiError(400, f"dob {out['dob']} is not a plausible date of birth")
    for name in ("firstname", "lastname"):
        value = fields.get(name)
        if value is not None:
            if not isinstance(value, str) or len(value) > 100:
                raise ApiError(400, f"{name} must be a string of at most 100 characters")
            out[name] = value
    sex = fields.get("sex")
    if sex is not None and sex != "":
        try:
            sex = int(sex) if not isinstance(sex, bool) else None
        except (TypeError, ValueError):
            sex = None
        if sex not in SEXES:
            raise ApiError(400, "sex must be an ISO/IEC 5218 code: 0 not known, 1 male, 2 female, 9 not applicable")
        out["sex"] = sex
    return out


def _validate_user(fields: dict) -> dict:
    unknown = sorted(set(fields) - USER_ARGS)
    if unknown:
        raise ApiError(400, f"unknown argument(s): {', '.join(unknown)}")
    for name in sorted(USER_ARGS):
        if not isinstance(fields.get(name), str) or not fields[name].strip():
            raise ApiError(400, f"{name} is required")
    if not EMAIL_RE.match(fields["email"]):
        raise ApiError(400, f"email is not an e-mail address: {fields['email']!r}")
    if len(fields["password"]) < MIN_PASSWORD:
        raise ApiError(400, f"password must have at least {MIN_PASSWORD} characters")
    country = fields["countryCode"].strip().upper()
    if country not in ISO_3166_ALPHA2:
        raise ApiError(400, f"countryCode must be an ISO 3166 alpha-2 code, not {fields['countryCode']!r}")
    return {"email": fields["email"].strip(), "password": fields["password"], "country": country,
            "pid": fields["patientId"].strip()}


def _callback_url(fields: dict) -> str:
    unknown = sorted(set(fields) - {"url"})
    if unknown:
        raise ApiError(400, f"unknown argument(s): {', '.join(unknown)}")
    url = fields.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(400, "url must be an http:// or https:// URL")
    return url


class KardiaEmulator:
    """The app, its store and the webhook deliverer; start()/stop() run the deliverer."""

    def __init__(self, store: KardiaStore, api_keys: Iterable[str], webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
                 webhook_retry_initial: float = 1.0) -> None:
        self.store = store
        self.webhooks = WebhookDeliverer(store, webhook_secret, retry_initial=webhook_retry_initial)
        self.app = create_app(store, api_keys, self.webhooks)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start delivering webhooks."""
        self._task = asyncio.create_task(self.webhooks.run(), name="kardia webhooks")

    async def stop(self) -> None:
        """Stop delivering (undelivered events stay queued in the store)."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def create_app(store: KardiaStore, api_keys: Iterable[str], webhooks: WebhookDeliverer | None = None) -> Starlette:
    """The emulator app; each API key is its own account."""
    accounts = {key: account_of(key) for key in api_keys}
    wake = webhooks.wake if webhooks else (lambda: None)
    if not accounts:
        raise ValueError("the Kardia emulator needs at least one API key")
    if any(":" in key for key in accounts):
        raise ValueError("a Kardia API key is an HTTP Basic user name: it cannot contain ':'")

    def account(request: Request) -> str:
        user = basic_user(request)
        if user is None:
            raise ApiError(401, "authenticate with HTTP Basic: your API key as user name, empty password",
                           headers={"WWW-Authenticate": REALM})
        if user not in accounts:
            raise ApiError(401, "invalid API key", headers={"WWW-Authenticate": REALM})
        return accounts[user]

    async def patients(request: Request) -> JSONResponse:
        acc = account(request)
        if request.method == "POST":
            fields = _validate_patient(await form_or_json(request))
            return JSONResponse(await run_in_threadpool(store.create_patient, acc, fields), status_code=201)
        lo, hi, default = kardia.PATIENTS_LIMIT
        limit = int_param(request, "limit", lo, hi, default)
        start = request.query_params.get("start")
        before = decode_cursor(start, "patient") if start is not None else None
        return JSONResponse(_page(*await run_in_threadpool(store.list_patients, acc, limit, before), "patient"))

    async def patient(request: Request) -> JSONResponse:
        acc = account(request)
        return JSONResponse(_found(await run_in_threadpool(store.get_patient, acc, request.path_params["pid"]),
                                   "patient"))

    async def list_recordings(request: Request, patient_id: str | None) -> JSONResponse:
        acc = account(request)
        if patient_id is not None:
            _found(await run_in_threadpool(store.get_patient, acc, patient_id), "patient")
        lo, hi, default = kardia.RECORDINGS_LIMIT
        limit = int_param(request, "limit", lo, hi, default)
        start = request.query_params.get("start")
        before = decode_cursor(start, "recording") if start is not None else None
        page = await run_in_threadpool(store.list_recordings, acc, limit, before, patient_id)
        return JSONResponse(_page(*page, "recording"))

    async def patient_recordings(request: Request) -> JSONResponse:
        return await list_recordings(request, request.path_params["pid"])

    async def recordings(request: Request) -> JSONResponse:
        if request.method == "GET":
            return await list_recordings(request, None)
        acc = account(request)
        key = idempotency_key(request)
        obj, raw = await json_body(request)
        try:
            rec = kardia.parse_recording(obj)
        except kardia.KardiaValidationError as exc:
            raise ApiError(400, str(exc)) from None
        if await run_in_threadpool(store.get_patient, acc, rec.patient_id) is None:
            raise ApiError(400, f"{kardia.PATIENT_ID} {rec.patient_id!r} is not a patient of this account")
        try:
            found, created = await run_in_threadpool(store.ingest, acc, rec, key, hashlib.sha256(raw).hexdigest())
        except IdempotencyConflict:
            raise key_reused(key) from None
        wake()
        headers = {"Location": f"{request.scope.get('root_path', '')}/v1/recordings/{found['id']}"}
        if not created:
            headers.update(REPLAYED)
        return JSONResponse(found, status_code=201 if created else 200, headers=headers)

    async def recording(request: Request) -> JSONResponse:
        acc = account(request)
        return JSONResponse(_found(await run_in_threadpool(store.get_recording, acc, request.path_params["rid"]),
                                   "recording"))

    async def recording_pdf(request: Request) -> Response:
        acc = account(request)
        use = request.query_params.get("signal", kardia.ENHANCED)
        if use not in (kardia.RAW, kardia.ENHANCED):
            raise ApiError(400, "signal must be raw or enhanced")
        found = _found(await run_in_threadpool(store.get_recording, acc, request.path_params["rid"]), "recording")
        who = await run_in_threadpool(store.get_patient, acc, found[kardia.PATIENT_ID])
        body = await run_in_threadpool(pdf.render, found, who, use)
        return Response(body, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{found["id"]}.pdf"'})

    async def code(request: Request) -> JSONResponse:
        acc = account(request)
        return JSONResponse(_found(await run_in_threadpool(store.connection, acc, request.path_params["pid"]),
                                   "patient"))

    async def disconnect(request: Request) -> JSONResponse:
        acc = account(request)
        try:
            result = await run_in_threadpool(store.disconnect, acc, request.path_params["pid"])
        except LookupError:
            raise ApiError(404, "no such patient") from None
        except Conflict as exc:
            raise ApiError(409, str(exc)) from None
        wake()
        return JSONResponse(result)

    async def users(request: Request) -> JSONResponse:
        acc = account(request)
        user = _validate_user(await form_or_json(request))
        try:
            request_id = await run_in_threadpool(store.create_user, acc, user["email"], user["password"],
                                                 user["country"], user["pid"])
        except LookupError:
            raise ApiError(400, f"patientId {user['pid']!r} is not a patient of this account") from None
        except Conflict as exc:
            raise ApiError(409, str(exc)) from None
        wake()
        return JSONResponse({"requestId": request_id}, status_code=201)

    async def callback(request: Request) -> JSONResponse:
        acc = account(request)
        if request.method == "PUT":
            url = _callback_url(await form_or_json(request))
            await run_in_threadpool(store.set_callback, acc, url)
            return JSONResponse({"url": url})
        return JSONResponse({"url": await run_in_threadpool(store.callback, acc)})

    async def deliveries(request: Request) -> JSONResponse:
        acc = account(request)
        return JSONResponse({"data": await run_in_threadpool(store.deliveries, acc)})

    routes: list[Route] = [
        Route("/v1/patients", patients, methods=["GET", "POST"]),
        Route("/v1/patients/{pid}", patient, methods=["GET"]),
        Route("/v1/patients/{pid}/code", code, methods=["GET"]),
        Route("/v1/patients/{pid}/recordings", patient_recordings, methods=["GET"]),
        Route("/v1/patients/{pid}/disconnect", disconnect, methods=["POST"]),
        Route("/v1/recordings", recordings, methods=["GET", "POST"]),
        Route("/v1/recordings/{rid}.pdf", recording_pdf, methods=["GET"]),
        Route("/v1/recordings/{rid}", recording, methods=["GET"]),
        Route("/v1/users", users, methods=["POST"]),
        Route("/v1/callback", callback, methods=["GET", "PUT"]),
        Route("/v1/callback/deliveries", deliveries, methods=["GET"]),
    ]
    handlers: dict[type, Callable] = dict(EXCEPTION_HANDLERS)
    return Starlette(routes=routes, exception_handlers=handlers)
