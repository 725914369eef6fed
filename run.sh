#!/usr/bin/env bash
# Set up and run the service on the embedded defaults (SQLite file + embedded Redis),
# with generated demo data. Usage: ./run.sh [callcenter serve options]
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
# Install once per version of pyproject.toml (the install is editable: code changes need
# none); a later start skips pip, which costs half a minute on a busy machine.
stamp=.venv/.callcenter-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e .
  echo "$wanted" > "$stamp"
fi
exec .venv/bin/callcenter serve --demo "$@"
