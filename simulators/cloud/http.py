"""HTTP helpers shared by the cloud emulators: JSON errors, auth headers, bodies, cursors."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from gateway import basic_auth
from gateway.vendors.extensions import IDEMPOTENCY_HEADER, MAX_KEY_LENGTH, REPLAYED_HEADER

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024


class ApiError(Exception):
    """An error answer: status, a short code and a sentence for the client."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                             405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                             415: "unsupported_media_type", 422: "unprocessable_entity"}.get(status, "error")
        self.headers = headers or {}


def error_response(exc: ApiError) -> JSONResponse:
    """The emulators' error body: {"error": code, "message": sentence}."""
    return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status, headers=exc.headers)


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette handler for ApiError."""
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404/405 as JSON."""
    assert isinstance(exc, HTTPException)
    message = {404: "no such resource", 405: f"method {request.method} not allowed here"}.get(exc.status_code,
                                                                                              str(exc.detail))
    return error_response(ApiError(exc.status_code, message, headers=dict(exc.headers or {})))


EXCEPTION_HANDLERS = {ApiError: api_error_handler, HTTPException: http_error_handler}


def basic_user(request: Request) -> str | None:
    """The user name of an HTTP Basic Authorization header, or None if there is none or it is malformed."""
    creds = basic_auth.parse(request.headers.get("authorization"))
    return creds[0] if creds else None


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header, or None."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def read_body(request: Request) -> bytes:
    """The request body, refusing bodies over MAX_BODY with 413."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"the body exceeds {MAX_BODY} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(413, f"the body exceeds {MAX_BODY} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # a client that vanished mid-body: nothing is stored, one line, no traceback
        log.info("%s %s: the client went away after %d bytes of its body", request.method, request.url.path, size)
        raise ApiError(400, "the client disconnected before its body arrived") from None
    return b"".join(chunks)


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower case."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def json_body(request: Request) -> tuple[Any, bytes]:
    """(parsed JSON, raw bytes) of an application/json body; 415 or 400 otherwise."""
    if media_type(request) != "application/json":
        raise ApiError(415, "send the body as application/json")
    raw = await read_body(request)
    try:
        return json.loads(raw), raw
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None


async def form_or_json(request: Request) -> dict[str, Any]:
    """Fields of a form-encoded body (as curl -d sends) or of a JSON object body."""
    kind = media_type(request)
    if kind == "application/json":
        obj, _ = await json_body(request)
        if not isinstance(obj, dict):
            raise ApiError(400, "the JSON body must be an object")
        return obj
    if kind in ("application/x-www-form-urlencoded", ""):
        raw = await read_body(request)
        try:
            # Names stripped: a hand-written body such as the UP document's ("...& heart_rate=70") has spaces.
            return {k.strip(): v for k, v in parse_qsl(raw.decode("utf-8"), keep_blank_values=True,
                                                       strict_parsing=bool(raw))}
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "the body is not valid form encoding") from None
    raise ApiError(415, "send the body form-encoded (application/x-www-form-urlencoded) or as application/json")


def encode_cursor(kind: str, position: int) -> str:
    """An opaque cursor for a list position."""
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode()


def decode_cursor(text: str, kind: str, param: str = "start") -> int:
    """The list position a cursor stands for; 400 if it is not one of ours for this list."""
    try:
        prefix, _, pos = base64.urlsafe_b64decode(text.encode() + b"=" * (-len(text) % 4)).decode().partition(":")
        if prefix != kind or not pos.isdigit():
            raise ValueError
        return int(pos)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, f"{param} is not a valid cursor for this list") from None


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, if any; 400 unless it is 1-255 printable characters."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH and key.isprintable()):
        raise ApiError(400, f"{IDEMPOTENCY_HEADER} must be 1-{MAX_KEY_LENGTH} printable characters")
    return key


def key_reused(key: str | None) -> ApiError:
    """The 422 for an idempotency key that comes back with another body."""
    return ApiError(422, f"{IDEMPOTENCY_HEADER} {key!r} was already used with a different body")


REPLAYED = {REPLAYED_HEADER: "true"}  # the header of an answer to a replay


def int_param(request: Request, name: str, lo: int, hi: int, default: int | None) -> int | None:
    """An integer query parameter within [lo, hi] (default when absent); 400 with the allowed range otherwise."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer between {lo} and {hi}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, not {value}")
    return value
