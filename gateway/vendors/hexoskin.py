"""Hexoskin API shapes shared by the uplink and the emulator (../shared/vendor-docs/hexoskin-api.md).

Requests are signed with an API key: `X-HEXOAPISIGNATURE = sha1(private_key + str(unix_seconds)
+ full_url_with_query).hexdigest()`, with the public key in `X-HEXOAPIKEY` and the plain Unix
seconds in `X-HEXOTIMESTAMP` ("alphabetic: Key, Timestamp, Url"). Users authenticate with HTTP
Basic (e-mail and password).
"""

from __future__ import annotations

import hashlib

API_PREFIX = "/api/v1/"
KEY_HEADER = "X-HEXOAPIKEY"
TIMESTAMP_HEADER = "X-HEXOTIMESTAMP"
SIGNATURE_HEADER = "X-HEXOAPISIGNATURE"
CACHE_HEADER = "X-HexoCache"
TICKS_PER_SECOND = 256  # a HexoTimestamp is Unix time in 1/256 s

# Datatype ids the document and the device facts name: raw channels, then derived ones.
ECG_I, ECG_II, ECG_III = 4113, 4114, 4115
RESP_THORACIC, RESP_ABDOMINAL = 4129, 4130
ACCEL_X, ACCEL_Y, ACCEL_Z = 4145, 4146, 4147
RR_INTERVAL, HEART_RATE, BREATHING_RATE = 18, 19, 33
CHANNEL_DATATYPES = {"leadI": ECG_I, "leadII": ECG_II, "leadIII": ECG_III, "respThoracic": RESP_THORACIC,
                     "respAbdominal": RESP_ABDOMINAL, "accelX": ACCEL_X, "accelY": ACCEL_Y, "accelZ": ACCEL_Z}


def signature(private_key: str, timestamp: int, url: str) -> str:
    """The request signature: SHA-1 of private key, Unix seconds and the full URL, in that order."""
    return hashlib.sha1(f"{private_key}{timestamp}{url}".encode()).hexdigest()


def signed_headers(public_key: str, private_key: str, url: str, timestamp: int) -> dict[str, str]:
    """The three headers that sign one request for `url` (scheme, host, path and query)."""
    return {KEY_HEADER: public_key, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(private_key, timestamp, url)}
