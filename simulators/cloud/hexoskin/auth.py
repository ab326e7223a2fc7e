"""Who is asking: HTTP Basic (e-mail, password) and the API-key request signature.

- Basic, when sent, must be right; it names the user.
- A signature, when sent, must match the exact URL the request reached (query string
  included) and a timestamp within +-SIGNATURE_WINDOW_S of the emulator's clock.
  A key may be bound to a user, so a signed request without Basic is that user's.
- `require_signature` (the document: "all requests must be signed") refuses unsigned requests.
  Off by default: the document's own curl examples send Basic alone.
- `refuse_replays` (off by default; the document has no such rule, and a client may send the
  same create twice in a second): a write (POST, PUT, PATCH, DELETE) is accepted once per
  signature and body within the window (which bounds the memory this takes). The signature
  covers only key, second and URL, so two different bodies posted to one URL in the same
  second sign alike and both pass; reads are never replay-checked.
Every refusal is a 401 with the reason; nothing here knows HTTP frameworks.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway import basic_auth
from gateway.vendors import hexoskin as hx

SIGNATURE_WINDOW_S = 300
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class AuthError(Exception):
    """A 401 with its reason."""


@dataclass(frozen=True)
class ApiKey:
    """An API key pair; `user` binds it to one account (None: an application key)."""

    private: str
    user: str | None = None


class Authenticator:
    """Checks one request's credentials; returns the user's e-mail."""

    def __init__(self, users: Mapping[str, str], keys: Mapping[str, ApiKey], require_signature: bool = False,
                 window_s: float = SIGNATURE_WINDOW_S, clock: Callable[[], float] = time.time,
                 refuse_replays: bool = False) -> None:
        self.users = dict(users)
        self.keys = dict(keys)
        self.require_signature = require_signature
        self.refuse_replays = refuse_replays
        self.window_s = window_s
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature + body digest -> when used

    def authenticate(self, url: str, headers: Mapping[str, str], method: str = "GET", body: bytes = b"") -> str:
        """The user making the request at `url` (full URL with query); AuthError if not allowed."""
        lower = {k.lower(): v for k, v in headers.items()}
        user = self._basic(lower.get("authorization"))
        key_user = self._signature(url, lower, None if method.upper() in SAFE_METHODS else body)
        if key_user is None and self.require_signature:
            raise AuthError("this API requires requests signed with an API key (X-HEXOAPIKEY, X-HEXOTIMESTAMP,"
                            " X-HEXOAPISIGNATURE)")
        if isinstance(key_user, str):
            if user is not None and user != key_user:
                raise AuthError("this API key belongs to another user")
            user = key_user
        if user is None:
            raise AuthError("authentication required: HTTP Basic with your e-mail and password")
        return user

    def _basic(self, header: str | None) -> str | None:
        if not header:
            return None
        if header.partition(" ")[0].lower() != "basic":
            raise AuthError(f"unsupported authorization scheme {header.partition(' ')[0]!r}")
        creds = basic_auth.parse(header)
        if creds is None:
            raise AuthError("malformed Basic credentials")
        email, password = creds
        expected = self.users.get(email)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            raise AuthError("wrong e-mail or password")
        return email

    def _signature(self, url: str, headers: Mapping[str, str], body: bytes | None) -> str | None | bool:
        """The key's user (or True for an application key) when signed; None when unsigned.

        `body` is the body of a write (replay-checked), None for a read."""
        public = headers.get(hx.KEY_HEADER.lower())
        stamp = headers.get(hx.TIMESTAMP_HEADER.lower())
        sig = headers.get(hx.SIGNATURE_HEADER.lower())
        if public is None and stamp is None and sig is None:
            return None
        if not (public and stamp and sig):
            raise AuthError(f"a signed request carries all of {hx.KEY_HEADER}, {hx.TIMESTAMP_HEADER} and"
                            f" {hx.SIGNATURE_HEADER}")
        key = self.keys.get(public)
        if key is None:
            raise AuthError("unknown API key")
        if not stamp.isdigit():
            raise AuthError(f"{hx.TIMESTAMP_HEADER} must be Unix seconds")
        now = self.clock()
        if abs(now - int(stamp)) > self.window_s:
            raise AuthError(f"stale signature: {hx.TIMESTAMP_HEADER} is more than {self.window_s:g} s from now")
        if not hmac.compare_digest(sig.lower(), hx.signature(key.private, int(stamp), url)):
            raise AuthError("API signature failed.")
        if body is not None and self.refuse_replays:
            self._forget(now)
            seen = sig.lower() + hashlib.sha256(body).hexdigest()
            if seen in self._seen:
                raise AuthError("replayed signature: each signed write is accepted once")
            self._seen[seen] = now
        return key.user if key.user else True

    def _forget(self, now: float) -> None:
        while self._seen and next(iter(self._seen.values())) < now - 2 * self.window_s:
            self._seen.popitem(last=False)
