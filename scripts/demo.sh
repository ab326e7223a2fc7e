#!/usr/bin/env bash
# Install the project into .venv and run the demo: simulated KardiaMobile -> pty -> gateway ->
# Kardia Pro emulator, verified sample for sample. Extra arguments go to `wearable-gateway demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/wearable-gateway demo "$@"
