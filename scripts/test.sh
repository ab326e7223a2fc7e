#!/usr/bin/env bash
# Install the project and its test extra into .venv, then run the whole test suite (what CI runs).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
# The status page test drives Debian's chromium (headless); install it where this can (root + apt).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "test.sh: could not install chromium; the status page test will say it was skipped" >&2
fi
# BLE tests run bleak against BlueZoo on a private D-Bus: they need dbus-daemon (Debian package dbus).
if ! command -v dbus-daemon >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dbus; } >/dev/null 2>&1 \
        || echo "test.sh: could not install dbus; the BLE tests will fail" >&2
fi
# The vendor documents' examples run verbatim through curl (tests/test_vendor_documents.py).
if ! command -v curl >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl; } >/dev/null 2>&1 \
        || echo "test.sh: could not install curl; the vendor document tests will say they were skipped" >&2
fi
# The fleet tests run a real MQTT broker: Debian's mosquitto.
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ] && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; } >/dev/null 2>&1 \
        || echo "test.sh: could not install mosquitto; the fleet tests will say they were skipped" >&2
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
