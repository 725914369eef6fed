#!/usr/bin/env bash
# Set up and run the service on the embedded defaults (SQLite file + embedded Redis),
# with generated demo data. Usage: ./run.sh [callcenter serve options]
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .
exec .venv/bin/callcenter serve --demo "$@"
