#!/usr/bin/env bash
# Sets up a virtual environment (if needed) and runs every check: lint, types, layers, then the test suite
# twice: the whole suite on SQLite, and the contract, integration and end-to-end tests again on a
# PostgreSQL server that this script starts on 127.0.0.1 in a temporary directory and removes.
#
#   ./scripts/test.sh                        # everything (both backends)
#   ./scripts/test.sh -k cancel              # extra arguments go to pytest, on both passes
#   ./scripts/test.sh tests/integration/test_admin_api.py   # test paths replace each pass's selection
#   TEST_BACKENDS=sqlite ./scripts/test.sh   # one backend only: sqlite or postgresql
#   TEST_PARALLEL=0 ./scripts/test.sh        # the two passes one after the other (default: side by side)
#   TEST_WORKERS=0 ./scripts/test.sh         # each pass in one process (default: 2 pytest-xdist
#                                            # workers per pass, whole test files per worker; one
#                                            # process when test paths are given)
#   TEST_POSTGRES_URL=postgresql+psycopg://user@host:5432/postgres ./scripts/test.sh
#                                            # use that server instead of starting one
#
# The PostgreSQL server binaries are looked up in /usr/lib/postgresql/*/bin and on PATH; when
# there are none and this runs as root (CI), Debian's `postgresql` package is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
BACKENDS="${TEST_BACKENDS:-both}"
PARALLEL="${TEST_PARALLEL:-1}"
WORKERS="${TEST_WORKERS:-}"
case "$BACKENDS" in
  both | sqlite | postgresql) ;;
  *)
    echo "TEST_BACKENDS must be both, sqlite or postgresql (got '$BACKENDS')" >&2
    exit 2
    ;;
esac
if [ -n "$WORKERS" ] && ! [[ "$WORKERS" =~ ^[0-9]+$ ]]; then
  echo "TEST_WORKERS must be a number of workers per pass, 0 for none (got '$WORKERS')" >&2
  exit 2
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,postgres,deploy]"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy --strict src
.venv/bin/lint-imports --no-cache # the layers (.importlinter)
export DBOS__DISABLE_TELEMETRY=true

# promtool checks and unit-tests the alert rules (deploy/prometheus/); Debian's prometheus has it.
if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing promtool (apt-get install prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The console's browser tests drive Debian's headless Chromium with Playwright (no browser download).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing Chromium (apt-get install chromium)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq chromium >/dev/null
fi

# The README's command blocks (tests/e2e/test_readme.py) use curl and jq, as a reader would.
if ! { command -v curl && command -v jq; } >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing curl and jq (apt-get install curl jq)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends curl jq >/dev/null
fi

# The interoperability tests run software from npm: the TypeScript MCP SDK (tests/interop/ts/) and
# the MCP Inspector with the Node.js 22 it needs (tests/interop/inspector/), each pinned in its
# package-lock.json. Installed here, once, so that the two passes never run `npm ci` side by side.
if command -v npm >/dev/null 2>&1; then
  for package_dir in tests/interop/ts tests/interop/inspector; do
    if [ ! -d "$package_dir/node_modules" ]; then
      echo "== installing $package_dir (npm ci)"
      (cd "$package_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
  done
fi

# --- a throw-away PostgreSQL server ----------------------------------------------------------------

PG_DIR=""
PG_BIN=""
PG_USER=""
PG_PASS_PID=""
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fulfill-test.XXXXXX")" # each pass's pytest temporary files

find_postgres() {
  local dir
  PG_BIN=""
  for dir in /usr/lib/postgresql/*/bin; do # the newest installed version wins
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && PG_BIN="$dir"
  done
  if [ -z "$PG_BIN" ] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    PG_BIN="$(dirname "$(command -v initdb)")"
  fi
  [ -n "$PG_BIN" ]
}

install_postgres() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL," \
      "set TEST_POSTGRES_URL to a server, or run with TEST_BACKENDS=sqlite" >&2
    exit 2
  fi
  echo "== installing PostgreSQL (apt-get install postgresql)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
}

# Runs a PostgreSQL binary as the server's owner (initdb refuses to run as root), from a directory
# that user may enter (the checkout may be private to root).
as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u "$PG_USER" -- "$@")
  else
    "$@"
  fi
}

stop_postgres() {
  if [ -n "$PG_DIR" ] && [ -d "$PG_DIR" ]; then
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
      as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
  fi
}

cleanup() {
  if [ -n "$PG_PASS_PID" ]; then
    kill "$PG_PASS_PID" 2>/dev/null || true
    wait "$PG_PASS_PID" 2>/dev/null || true
  fi
  stop_postgres
  rm -rf "$WORK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_postgres() {
  find_postgres || { install_postgres && find_postgres; } || {
    echo "PostgreSQL was installed but initdb/pg_ctl are still not found" >&2
    exit 2
  }
  PG_USER="$(id -un)"
  if [ "$(id -u)" -eq 0 ]; then
    PG_USER=postgres # created by the Debian package
    if ! id "$PG_USER" >/dev/null 2>&1; then
      useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER"
    fi
  fi
  PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fulfill-test-pg.XXXXXX")"
  chown "$PG_USER" "$PG_DIR"
  local port
  port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  as_pg_user "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$PG_DIR/initdb.log" 2>&1 || {
    cat "$PG_DIR/initdb.log" >&2
    exit 1
  }
  if ! as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c max_connections=400" >/dev/null; then
    cat "$PG_DIR/server.log" >&2
    exit 1
  fi
  TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
  echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PG_DIR)"
}

# --- the passes -----------------------------------------------------------------------------------

# The closing line: both passes' pytest summaries added up ("total: N passed, N failed, N skipped").
total() {
  .venv/bin/python - "$@" <<'PY'
import re, sys
counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
for path in sys.argv[1:]:
    lines = [line for line in open(path, errors="replace") if re.search(r"\d+ (passed|failed|error)", line)]
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", lines[-1] if lines else ""):
        counts[word.rstrip("s") if word.startswith("error") else word] += int(number)
failed = counts["failed"] + counts["error"]
print(f"total: {counts['passed']} passed, {failed} failed, {counts['skipped']} skipped")
PY
}

# Test paths given as arguments replace the PostgreSQL pass's default selection.
PG_SELECTION=(tests/contract tests/integration tests/e2e)
for argument in "$@"; do
  [[ "$argument" == tests* ]] && PG_SELECTION=()
done

# Each pass spreads its test files over WORKERS processes (pytest-xdist): a file stays on one
# worker, so a module's shared service starts once. Every worker has its own databases (SQLite
# files in its own temporary directory; PostgreSQL databases named after its process id).
# A few files given as arguments run sooner in one process than workers start.
if [ -z "$WORKERS" ] && [ ${#PG_SELECTION[@]} -eq 0 ]; then
  WORKERS=0
elif [ -z "$WORKERS" ]; then
  WORKERS=2
fi
XDIST=()
if [ "$WORKERS" -gt 0 ]; then
  XDIST=(-n "$WORKERS" --dist loadfile)
fi

# Each pass ends its report with its 20 slowest test phases (setup, call or teardown) of 5 s or more:
# where the suite's time goes, in every CI log.
DURATIONS=(--durations=20 --durations-min=5)

sqlite_pass() {
  env -u TEST_POSTGRES_URL .venv/bin/python -m pytest -q "${XDIST[@]}" "${DURATIONS[@]}" --basetemp="$WORK_DIR/sqlite" "$@"
}

postgres_pass() {
  TEST_POSTGRES_URL="$TEST_POSTGRES_URL" .venv/bin/python -m pytest -q -p no:cacheprovider "${XDIST[@]}" "${DURATIONS[@]}" \
    --basetemp="$WORK_DIR/postgresql" "${PG_SELECTION[@]}" "$@"
}

if [ "$BACKENDS" != sqlite ] && [ -z "${TEST_POSTGRES_URL:-}" ]; then
  start_postgres
fi
SQLITE_TITLE="== pass 1: the whole suite on SQLite"
PG_TITLE="== pass 2: contract, integration and end-to-end tests on PostgreSQL"
if [ "$BACKENDS" = both ] && [ "$PARALLEL" = 1 ]; then
  # Most of the suite's time is spent waiting (on sockets, fsync, subprocesses), so the two passes
  # run side by side; the PostgreSQL pass's report is printed after the SQLite pass's.
  echo "$PG_TITLE: running alongside pass 1, its report follows"
  postgres_pass "$@" >"$WORK_DIR/postgresql.log" 2>&1 &
  PG_PASS_PID=$!
  echo "$SQLITE_TITLE"
  sqlite_status=0
  sqlite_pass "$@" 2>&1 | tee "$WORK_DIR/sqlite.log" || sqlite_status=$?
  pg_status=0
  wait "$PG_PASS_PID" || pg_status=$?
  PG_PASS_PID=""
  echo "$PG_TITLE"
  cat "$WORK_DIR/postgresql.log"
  echo "== SQLite pass: $([ $sqlite_status -eq 0 ] && echo passed || echo "FAILED ($sqlite_status)");" \
    "PostgreSQL pass: $([ $pg_status -eq 0 ] && echo passed || echo "FAILED ($pg_status)")"
  total "$WORK_DIR/sqlite.log" "$WORK_DIR/postgresql.log"
  [ $sqlite_status -eq 0 ] && [ $pg_status -eq 0 ]
  exit
fi
if [ "$BACKENDS" != postgresql ]; then
  echo "$SQLITE_TITLE"
  sqlite_pass "$@"
fi
if [ "$BACKENDS" != sqlite ]; then
  echo "$PG_TITLE"
  postgres_pass "$@"
fi
