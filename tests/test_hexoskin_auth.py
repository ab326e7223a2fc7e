"""The Hexoskin emulator's authentication: Basic, signatures bound to the exact URL, the
timestamp window and replay refusal (simulators/cloud/hexoskin/auth.py)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from gateway.vendors import hexoskin as hx
from simulators.cloud.hexoskin.auth import ApiKey, AuthError, Authenticator
from tests.chain import ManualClock

URL = "http://127.0.0.1:8080/hexoskin/api/v1/data/?datatype__in=19,33&record=37700"
NOW = 1_795_426_200


def basic(email: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def _auth(clock, **policy) -> Authenticator:
    return Authenticator({"athlete@hexoskin.com": "hexoskin", "coach@example.com": "coach-pass"},
                         {"pub-app": ApiKey("priv-app"), "pub-coach": ApiKey("priv-coach", "coach@example.com")},
                         clock=clock, **policy)


@pytest.fixture
def auth(clock) -> Authenticator:
    """The strict form: signatures required, replays refused (both flags of wearable-sim cloud)."""
    return _auth(clock, require_signature=True, refuse_replays=True)


def test_signature_is_sha1_of_key_timestamp_url_in_that_order():
    expected = hashlib.sha1(f"priv-app{NOW}{URL}".encode()).hexdigest()
    assert hx.signature("priv-app", NOW, URL) == expected
    assert hx.signed_headers("pub-app", "priv-app", URL, NOW) == {
        "X-HEXOAPIKEY": "pub-app", "X-HEXOTIMESTAMP": str(NOW), "X-HEXOAPISIGNATURE": expected}


def test_basic_and_signature_together(auth):
    headers = {**basic("athlete@hexoskin.com", "hexoskin"), **hx.signed_headers("pub-app", "priv-app", URL, NOW)}
    assert auth.authenticate(URL, headers) == "athlete@hexoskin.com"


def test_a_user_bound_key_alone_names_its_user(auth):
    assert auth.authenticate(URL, hx.signed_headers("pub-coach", "priv-coach", URL, NOW)) == "coach@example.com"
    mixed = {**basic("athlete@hexoskin.com", "hexoskin"), **hx.signed_headers("pub-coach", "priv-coach", URL, NOW + 1)}
    with pytest.raises(AuthError, match="another user"):
        auth.authenticate(URL, mixed)


@pytest.mark.parametrize("headers, reason", [
    (basic("athlete@hexoskin.com", "wrong"), "wrong e-mail or password"),
    (basic("nobody@example.com", "hexoskin"), "wrong e-mail or password"),
    ({"Authorization": "Basic !!!"}, "malformed"),
    ({"Authorization": "Bearer x"}, "unsupported authorization scheme"),
])
def test_bad_basic_credentials(auth, headers, reason):
    with pytest.raises(AuthError, match=reason):
        auth.authenticate(URL, {**headers, **hx.signed_headers("pub-app", "priv-app", URL, NOW)})


def test_the_signature_covers_the_exact_url_with_its_query(auth):
    headers = {**basic("athlete@hexoskin.com", "hexoskin"), **hx.signed_headers("pub-app", "priv-app", URL, NOW)}
    for other in (URL.replace("record=37700", "record=37701"), URL.replace("19,33", "33,19"),
                  URL.replace("/data/?", "/data?"), "https://127.0.0.1:8080" + URL[len("http://127.0.0.1:8080"):]):
        with pytest.raises(AuthError, match="API signature failed."):
            auth.authenticate(other, headers)


def test_stale_and_replayed_signatures_are_refused(auth, clock):
    creds = basic("athlete@hexoskin.com", "hexoskin")
    for skew in (301, -301):
        with pytest.raises(AuthError, match="stale signature"):
            auth.authenticate(URL, {**creds, **hx.signed_headers("pub-app", "priv-app", URL, NOW + skew)})
    fresh = {**creds, **hx.signed_headers("pub-app", "priv-app", URL, NOW - 299)}
    assert auth.authenticate(URL, fresh, "POST", b'{"a": 1}') == "athlete@hexoskin.com"
    with pytest.raises(AuthError, match="replayed signature"):
        auth.authenticate(URL, fresh, "POST", b'{"a": 1}')
    # The signature does not cover the body: another body in the same second is a new request,
    # and a read replayed changes nothing, so both pass.
    assert auth.authenticate(URL, fresh, "POST", b'{"a": 2}') == "athlete@hexoskin.com"
    assert auth.authenticate(URL, fresh) == auth.authenticate(URL, fresh) == "athlete@hexoskin.com"
    clock.t += 1000  # long after: the old signature is forgotten and stale anyway
    with pytest.raises(AuthError, match="stale"):
        auth.authenticate(URL, fresh, "POST", b'{"a": 1}')


def test_unsigned_partial_or_unknown_keys(auth):
    creds = basic("athlete@hexoskin.com", "hexoskin")
    with pytest.raises(AuthError, match="requires requests signed"):
        auth.authenticate(URL, creds)
    with pytest.raises(AuthError, match="carries all of"):
        auth.authenticate(URL, {**creds, "X-HEXOAPIKEY": "pub-app"})
    with pytest.raises(AuthError, match="unknown API key"):
        auth.authenticate(URL, {**creds, **hx.signed_headers("pub-x", "priv-app", URL, NOW)})
    with pytest.raises(AuthError, match="Unix seconds"):
        auth.authenticate(URL, {**creds, "X-HEXOAPIKEY": "pub-app", "X-HEXOTIMESTAMP": "soon",
                                "X-HEXOAPISIGNATURE": "00"})
    with pytest.raises(AuthError, match="authentication required"):
        auth.authenticate(URL, hx.signed_headers("pub-app", "priv-app", URL, NOW))  # an app key names nobody
    relaxed = Authenticator({"athlete@hexoskin.com": "hexoskin"}, {}, require_signature=False)
    assert relaxed.authenticate(URL, creds) == "athlete@hexoskin.com"


def test_by_default_basic_alone_is_enough_and_a_sent_signature_is_still_checked(clock):
    """The document's curl examples send Basic alone; a signature, when sent, must be right and fresh."""
    auth = _auth(clock)
    creds = basic("athlete@hexoskin.com", "hexoskin")
    assert auth.authenticate(URL, creds) == "athlete@hexoskin.com"
    assert auth.authenticate(URL, creds, "POST", b"{}") == "athlete@hexoskin.com"
    with pytest.raises(AuthError, match="API signature failed."):
        auth.authenticate(URL, {**creds, **hx.signed_headers("pub-app", "priv-app", URL + "&x=1", NOW)})
    with pytest.raises(AuthError, match="stale signature"):
        auth.authenticate(URL, {**creds, **hx.signed_headers("pub-app", "priv-app", URL, NOW - 400)})
    with pytest.raises(AuthError, match="wrong e-mail or password"):
        auth.authenticate(URL, basic("athlete@hexoskin.com", "nope"))
    with pytest.raises(AuthError, match="authentication required"):
        auth.authenticate(URL, {})


def test_by_default_a_repeated_signed_create_is_accepted(clock):
    """Two identical signed creates in one second (the official client's example does this) both pass."""
    auth = _auth(clock)
    signed = {**basic("athlete@hexoskin.com", "hexoskin"), **hx.signed_headers("pub-app", "priv-app", URL, NOW)}
    for _ in range(2):
        assert auth.authenticate(URL, signed, "POST", b'{"name": "r"}') == "athlete@hexoskin.com"
