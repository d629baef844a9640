#!/usr/bin/env bash
# Set up a virtual environment (CPU is enough) and run the test suite.
# Usage: bash tests/run.sh [pytest arguments...]     VENV=path to use another environment
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
# torch first, pinned, so the CPU test install never pulls another torch build.
"$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$PY" -m pip install -q -e '.[test]'
status=0
"$PY" -m pytest -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
