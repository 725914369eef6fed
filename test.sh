#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
# Usage: ./test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"

# System packages: speech synthesis for transcription tests, Chromium and CJK fonts
# for the browser tests, ffmpeg for the transcription benchmark's reference tool.
packages=(espeak-ng ffmpeg sox chromium fonts-noto-cjk nginx redis-server redis-sentinel)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python packages, from the project's own files (the Vosk test model is one of them).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# PostgreSQL: the production database, in every run. Start (and install) one when none
# answers; a set CALLCENTER_TEST_POSTGRES_URL names a server of the caller's instead.
# Each run gets a database of its own, dropped at exit, so two suites at once on one
# machine never drop each other's schema.
if [ -z "${CALLCENTER_TEST_POSTGRES_URL:-}" ]; then
  # shellcheck source=.ci/postgres.sh
  source .ci/postgres.sh
  ensure_postgres 5432 postgres || { echo "no PostgreSQL for the tests" >&2; exit 1; }
  drop_stale_run_databases 5432
  run_database=$(create_run_database 5432)
  trap 'drop_run_database 5432 "$run_database"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  export CALLCENTER_TEST_POSTGRES_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/$run_database"
fi
# The postgres-marked tests fail, rather than being deselected, when the URL is missing.
export CALLCENTER_REQUIRE_POSTGRES=1
# Likewise the browser tests fail, rather than skip, without Chromium (tests/browser.py).
export CALLCENTER_REQUIRE_BROWSER=1
echo "PostgreSQL tests: $CALLCENTER_TEST_POSTGRES_URL"

.venv/bin/ruff check .
.venv/bin/mypy
# Not exec: the EXIT trap drops the run's database when pytest is done.
.venv/bin/python -m pytest -ra "$@"
