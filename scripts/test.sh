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
# The suite starts hundreds of Python processes (pytest's workers, services, MCP targets, command
# lines). Where Python is told not to write bytecode, each of them compiles fulfill's modules
# again and each pytest worker rewrites every test module's asserts again (about 7 s of its 12 s of
# collecting): the caches go to __pycache__ directories, which git ignores.
unset PYTHONDONTWRITEBYTECODE
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

# --- what the suite needs beyond Python, installed beside the Python checks ----------------------
#
# Debian's packages (prometheus for promtool, which checks and unit-tests the alert rules;
# chromium, which the console's browser tests drive with Playwright; curl and jq, which the
# README's command blocks use as a reader would; postgresql for the PostgreSQL pass) are installed
# with one `apt-get update` when missing and this runs as root (CI). The interoperability tests'
# npm packages (the TypeScript MCP SDK in tests/interop/ts/, the MCP Inspector with the Node.js 22
# it needs in tests/interop/inspector/, each pinned in its package-lock.json) are installed once,
# here, so that the two passes never run `npm ci` side by side. Both run in the background while
# pip, ruff, mypy and the layers check run, and the tests start once both are done.

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fulfill-test.XXXXXX")" # setup logs, each pass's pytest temporary files
SETUP_PIDS=()
PG_DIR=""
PG_BIN=""
PG_USER=""
PG_PASS_PID=""

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

needs_postgres_server() {
  [ "$BACKENDS" != sqlite ] && [ -z "${TEST_POSTGRES_URL:-}" ]
}

install_system_packages() {
  local plain=() full=()
  command -v promtool >/dev/null 2>&1 || plain+=(prometheus)
  command -v curl >/dev/null 2>&1 || plain+=(curl)
  command -v jq >/dev/null 2>&1 || plain+=(jq)
  [ -x /usr/bin/chromium ] || full+=(chromium)
  if needs_postgres_server && ! find_postgres; then
    full+=(postgresql)
  fi
  [ ${#plain[@]} -gt 0 ] || [ ${#full[@]} -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    return 0 # not root: the tests that need a missing program say so, and start_postgres explains
  fi
  local all=("${plain[@]}" "${full[@]}")
  echo "== installing ${all[*]} (apt-get install)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  if [ ${#plain[@]} -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${plain[@]}" >/dev/null
  fi
  if [ ${#full[@]} -gt 0 ]; then
    apt-get install -y -qq "${full[@]}" >/dev/null
  fi
}

install_npm_packages() {
  command -v npm >/dev/null 2>&1 || return 0
  local package_dir
  for package_dir in tests/interop/ts tests/interop/inspector; do
    if [ ! -d "$package_dir/node_modules" ]; then
      echo "== installing $package_dir (npm ci)"
      (cd "$package_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
  done
}

# Runs "$@" in the background, its output kept in $WORK_DIR/setup-NAME.log for finish_setup.
start_setup() {
  local name="$1"
  shift
  ("$@") >"$WORK_DIR/setup-$name.log" 2>&1 &
  SETUP_PIDS+=("$!:$name")
}

# Waits for every setup job, prints what each said, and stops at the first that failed.
finish_setup() {
  local entry pid name status failed=0
  for entry in "${SETUP_PIDS[@]}"; do
    pid="${entry%%:*}"
    name="${entry#*:}"
    status=0
    wait "$pid" || status=$?
    cat "$WORK_DIR/setup-$name.log"
    if [ $status -ne 0 ]; then
      echo "== setting up $name failed ($status)" >&2
      failed=1
    fi
  done
  SETUP_PIDS=()
  return $failed
}


# --- a throw-away PostgreSQL server ----------------------------------------------------------------

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
  local entry
  for entry in "${SETUP_PIDS[@]}"; do # an install is left to finish, not cut off half-way
    wait "${entry%%:*}" 2>/dev/null || true
  done
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
  find_postgres || {
    echo "PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL," \
      "set TEST_POSTGRES_URL to a server, or run with TEST_BACKENDS=sqlite" >&2
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

# --- setting up, then the checks -----------------------------------------------------------------

start_setup system-packages install_system_packages
start_setup npm-packages install_npm_packages

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,postgres,deploy]"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy --strict src
.venv/bin/lint-imports --no-cache # the layers (.importlinter)
export DBOS__DISABLE_TELEMETRY=true
finish_setup

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
  # In the order tests/conftest.py gives: the longest files first (tests/support/file_order.py).
  XDIST=(-n "$WORKERS" --dist loadfile --no-loadscope-reorder)
fi

# Each pass ends its report with its 20 slowest test phases (setup, call or teardown) of 5 s or more:
# where the suite's time goes, in every CI log.
DURATIONS=(--durations=20 --durations-min=5)

# Each pass leaves its JUnit report in test-reports/ (every test's time: what
# tests/file_durations.json is written from, see tests/support/file_order.py).
mkdir -p test-reports

sqlite_pass() {
  env -u TEST_POSTGRES_URL .venv/bin/python -m pytest -q "${XDIST[@]}" "${DURATIONS[@]}" --basetemp="$WORK_DIR/sqlite" \
    --junitxml=test-reports/sqlite.xml "$@"
}

postgres_pass() {
  TEST_POSTGRES_URL="$TEST_POSTGRES_URL" .venv/bin/python -m pytest -q -p no:cacheprovider "${XDIST[@]}" "${DURATIONS[@]}" \
    --basetemp="$WORK_DIR/postgresql" --junitxml=test-reports/postgresql.xml "${PG_SELECTION[@]}" "$@"
}

if needs_postgres_server; then
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
