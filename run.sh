#!/usr/bin/env bash
# Set up and run the service on the embedded defaults (SQLite file + embedded Redis),
# with generated demo data. Usage: ./run.sh [callcenter serve options]
set -euo pipefail
cd "$(dirname "$0")"

# uv (from PyPI) resolves, downloads and unpacks in parallel, about three times faster
# than pip on a fresh machine (bench/README.md, first run); pip is the fallback. Either
# way .venv gets pip too, for ./test.sh and for people.
install_with_uv() {
  local uv
  uv=$(command -v uv) || {  # a uv of the machine's, else one from PyPI into .venv
    python3 -m pip --python .venv/bin/python install -q --disable-pip-version-check \
      --root-user-action=ignore uv && uv=.venv/bin/uv
  } || return 1
  "$uv" pip install -q --python .venv/bin/python --link-mode copy -e . pip
}

install_with_pip() {
  .venv/bin/python -m ensurepip -q >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e .
}

# Install once per version of pyproject.toml (the install is editable: code changes need
# none); a later start skips it.
stamp=.venv/.callcenter-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing the service's packages into .venv (first start, or pyproject.toml changed)"
  [ -x .venv/bin/python ] || python3 -m venv --without-pip .venv
  said=$(mktemp)  # what uv's way says is shown only if it fails
  if ! install_with_uv 2>"$said"; then
    cat "$said" >&2
    echo "uv could not install them; installing with pip instead (slower)"
    install_with_pip
  fi
  rm -f "$said"
  echo "$wanted" > "$stamp"
fi
exec .venv/bin/callcenter serve --demo "$@"
