#!/usr/bin/env bash
# Install the Python side of `segbench history` into the given interpreter's environment:
# the [history] extra (SQLAlchemy, psycopg 3 and the E-divisive package's own run-time
# imports), then signal-processing-algorithms with --no-deps. That package pins numpy<2 and
# setuptools<71 in its metadata although its E-divisive code (ctypes, no numpy C API) runs on
# numpy 2; installing it with its dependencies would downgrade numpy under pandas and torch.
# Idempotent and quiet: exits 0 at once when everything imports.
set -u
py="${1:-python3}"
cd "$(dirname "$0")/.."
if "$py" -c "import sqlalchemy, psycopg, more_itertools, structlog, signal_processing_algorithms" 2>/dev/null; then
  exit 0
fi
"$py" -m pip install --quiet --disable-pip-version-check -e ".[history]" || exit 1
"$py" -m pip install --quiet --disable-pip-version-check --no-deps "signal-processing-algorithms>=2.1,<2.2" || exit 1
"$py" -c "from signal_processing_algorithms.energy_statistics import energy_statistics" || exit 1
