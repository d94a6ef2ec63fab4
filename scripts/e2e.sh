#!/usr/bin/env bash
# End-to-end verification of a fulfill service over its HTTP API (DESIGN §4.5 "E2E settings"),
# the same checks as `fulfill e2e`:
#   B2          import an already-approved intent, send ACTION_APPROVED to /events → SUCCEEDED
#   B1          create an intent, approve it → SUCCEEDED
#   kill switch execution of the token's own tenant off → CANCELLED / KILL_SWITCH_ENABLED; other
#               tenants keep running (with FULFILL_E2E_GLOBAL_STOP=1: the global stop, which stops
#               every tenant meanwhile); the previous value is restored either way
#   expired     an imported intent whose expires_at has passed → EXPIRED / INTENT_EXPIRED
#   duplicate   the same event 3 times → SUCCEEDED once, attempt_count 1, one EXECUTION_STARTED
#
# Settings (environment):
#   FULFILL_URL         the service to verify; unset: start an embedded one on a temporary SQLite
#                       database (`fulfill serve` on a free port) and stop it afterwards
#   FULFILL_TOKEN       bearer token, required with FULFILL_URL; scopes intents:write intents:read
#                       intents:approve events:write executions:read admin (and platform:admin
#                       with FULFILL_E2E_GLOBAL_STOP=1); its tenant_id claim is the tenant it tests
#   FULFILL_APPROVER_TOKEN  another person's token of the same tenant (intents:approve), for the
#                       approvals: nobody approves their own proposal (403 SELF_APPROVAL); default
#                       FULFILL_TOKEN, which works only where its subject did not propose
#   FULFILL_E2E_GLOBAL_STOP  1: the kill-switch path uses the global stop instead of the tenant's
#                       own switch (default 0)
#   FULFILL_ACCOUNT_ID  account of the test intents (default e2e-account)
#   FULFILL_BIN         the fulfill command for the embedded service (default: fulfill on PATH,
#                       else .venv/bin/fulfill of this repository)
# The checks go through the API only; `fulfill e2e --db URL` also counts the database rows.
#
# Needs curl and jq. Exit 0: verified; 1: a check failed; 2: configuration error.

# The $names inside single-quoted jq programs are jq variables, not shell ones.
# shellcheck disable=SC2016
set -euo pipefail

config_error() {
  echo "e2e: configuration error: $*" >&2
  exit 2
}

for tool in curl jq; do
  command -v "$tool" >/dev/null 2>&1 || config_error "$tool is required but not installed"
done

ACCOUNT="${FULFILL_ACCOUNT_ID:-e2e-account}"
POLL_TIMEOUT=60
CHECKS=0
FAILURES=0
SERVER_PID=""
WORKDIR=""
SAVED_KILL_SWITCHES=""
SWITCH_ROUTE=""
GLOBAL_STOP="${FULFILL_E2E_GLOBAL_STOP:-0}"
# fd 3 is the script's stdout, also inside $(...): reasons printed there keep their place in the output.
exec 3>&1

# --- reporting ------------------------------------------------------------------------------------

pass() {
  CHECKS=$((CHECKS + 1))
  echo "  ✔ $*"
}

fail() {
  CHECKS=$((CHECKS + 1))
  FAILURES=$((FAILURES + 1))
  echo "  ✘ $*"
}

# check WHAT COMMAND...: one line, ✔ when the command succeeds.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# expect WHAT ACTUAL EXPECTED
expect() {
  if [[ "$2" == "$3" ]]; then pass "$1 $3"; else fail "$1 $3 (got ${2:-nothing})"; fi
}

# jqt FILTER [ARGS...] < JSON: true when the filter yields true.
jqt() { jq -e "$@" >/dev/null 2>&1; }

# --- HTTP -----------------------------------------------------------------------------------------

# api METHOD PATH EXPECTED_STATUS [BODY]: prints the JSON answer; on a network error or another
# status reports the reason (the problem's code and detail) on fd 3 and returns 1.
api() {
  local method=$1 path=$2 expected=$3 body=${4:-} out status rc=0
  local args=(-s -X "$method" -H "Authorization: Bearer ${AS_TOKEN:-$TOKEN}" -w '\n%{http_code}' --max-time 30)
  if [[ -n "$body" ]]; then args+=(-H 'Content-Type: application/json' --data "$body"); fi
  out=$(curl "${args[@]}" "$URL$path") || rc=$?
  if ((rc != 0)); then
    echo "  ✘ $method $path: cannot reach the service (curl exit $rc)" >&3
    return 1
  fi
  status=${out##*$'\n'}
  out=${out%$'\n'*}
  if [[ "$status" != "$expected" ]]; then
    local reason
    reason=$(jq -r '[.code, .detail] | map(select(. != null)) | join(": ")' <<<"$out" 2>/dev/null) ||
      reason=${out:0:200}
    echo "  ✘ $method $path: expected HTTP $expected, got HTTP $status $reason" >&3
    return 1
  fi
  printf '%s\n' "$out"
}

now_iso() { jq -nr --argjson d "${1:-0}" 'now + $d | todate'; }

new_id() { echo "e2e_$1_$(jq -n 'now * 1000 | floor')_$(od -An -tx1 -N3 /dev/urandom | tr -d ' \n')"; }

# create PATH_NAME approved|pending [EXTRA_JSON]: stores an intent and sets ID to its id.
create() {
  local name=$1 mode=$2 extra=${3:-'{}'} body intent want=PENDING_APPROVAL
  ID=$(new_id "$name")
  body=$(jq -nc --arg id "$ID" --arg account "$ACCOUNT" --arg title "e2e $name" --argjson extra "$extra" \
    '{action_intent_id: $id, action_type: "CREATE_INTERNAL_TASK", account_id: $account,
      parameters: {title: $title}} + $extra')
  if [[ "$mode" == approved ]]; then
    want=APPROVED
    body=$(jq -c --arg ts "$(now_iso)" '. + {approval: {approved_by: "fulfill-e2e-approver", approval_timestamp: $ts}}' \
      <<<"$body")
  fi
  intent=$(api POST /intents 201 "$body") || return 1
  expect "intent stored" "$(jq -r .approval_status <<<"$intent")" "$want"
}

approve() {
  local answer
  # As another person: nobody approves their own proposal.
  answer=$(AS_TOKEN=$APPROVER_TOKEN api POST "/intents/$1/approve" 202) || return 1
  expect "approved:" "$(jq -r .approval_status <<<"$answer")" APPROVED
}

send_event() {
  local event answer
  event=$(jq -nc --arg id "$1" --arg tenant "$TENANT" --arg account "$ACCOUNT" \
    '{source: "cc-native", "detail-type": "ACTION_APPROVED",
      detail: {data: {action_intent_id: $id, tenant_id: $tenant, account_id: $account}}}')
  answer=$(api POST /events 202 "$event") || return 1
  expect "ACTION_APPROVED event" "$(jq -r .status <<<"$answer")" accepted
}

# wait_finished ID: prints the status once it is terminal and has an attempt count.
wait_finished() {
  local id=$1 deadline=$((SECONDS + POLL_TIMEOUT)) status=""
  while ((SECONDS < deadline)); do
    status=$(api GET "/executions/$id/status" 200) || return 1
    if jqt '(.status | IN("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")) and has("attempt_count")' \
      <<<"$status"; then
      printf '%s\n' "$status"
      return 0
    fi
    sleep 0.2
  done
  echo "  ✘ $id did not finish within ${POLL_TIMEOUT}s (last $status)" >&3
  return 1
}

# --- verification ---------------------------------------------------------------------------------

# verify_success ID STATUS_JSON: the checks of every successful execution; sets TIMELINE.
verify_success() {
  local id=$1 status=$2 signal_id="exec-$1-$ACCOUNT-ACTION_EXECUTED"
  expect "status" "$(jq -r .status <<<"$status")" SUCCEEDED
  check "external object ref INTERNAL/Task" \
    jqt 'any(.external_object_refs[]?; .system == "INTERNAL" and .object_type == "Task")' <<<"$status"
  TIMELINE=$(api GET "/executions/$id/timeline" 200) || return 1
  check "timeline: EXECUTION_STARTED before ACTION_EXECUTED" \
    jqt '[.entries[].event_type] | index("EXECUTION_STARTED") as $s | index("ACTION_EXECUTED") as $e
         | $s != null and $e != null and $s < $e' <<<"$TIMELINE"
  check "timeline: SIGNAL $signal_id" \
    jqt --arg sid "$signal_id" 'any(.entries[]; .event_type == "SIGNAL" and .data.signalId == $sid)' \
    <<<"$TIMELINE"
}

path_b2() {
  local status
  create b2 approved || return 1
  send_event "$ID" || return 1
  status=$(wait_finished "$ID") || return 1
  verify_success "$ID" "$status"
}

path_b1() {
  local status
  create b1 pending || return 1
  approve "$ID" || return 1
  status=$(wait_finished "$ID") || return 1
  verify_success "$ID" "$status"
}

restore_kill_switches() {
  [[ -n "$SAVED_KILL_SWITCHES" ]] || return 0
  local restored
  if restored=$(api PUT "$SWITCH_ROUTE" 200 "$SAVED_KILL_SWITCHES") &&
    jqt --argjson saved "$SAVED_KILL_SWITCHES" 'with_entries(select(.key | in($saved))) == $saved' \
      <<<"$restored"; then
    pass "kill switches restored"
  else
    fail "kill switches restored (previous value: $SAVED_KILL_SWITCHES)"
  fi
  SAVED_KILL_SWITCHES=""
}

# The tenant's own switch (PUT /admin/tenants/{tenant}/execution), or the global stop when asked.
path_kill_switch() {
  local previous stored status key stop what rc=0
  if [[ "$GLOBAL_STOP" == 1 ]]; then
    SWITCH_ROUTE=/admin/kill-switches key=global_stop stop=true what="global stop on:"
  else
    SWITCH_ROUTE="/admin/tenants/$(jq -rn --arg t "$TENANT" '$t | @uri')/execution"
    key=execution_enabled stop=false what="execution of tenant $TENANT off:"
  fi
  previous=$(api GET "$SWITCH_ROUTE" 200) || return 1
  # From here on the EXIT trap restores the switches too, should the script be interrupted.
  SAVED_KILL_SWITCHES=$(jq -c --arg key "$key" '{($key): .[$key], disabled_action_types}' <<<"$previous")
  {
    stored=$(api PUT "$SWITCH_ROUTE" 200 \
      "$(jq -c --arg key "$key" --argjson stop "$stop" '.[$key] = $stop' <<<"$SAVED_KILL_SWITCHES")") &&
      expect "$what" "$(jq -r --arg key "$key" '.[$key]' <<<"$stored")" "$stop" &&
      create killswitch pending &&
      approve "$ID" &&
      status=$(wait_finished "$ID")
  } || rc=$?
  restore_kill_switches
  ((rc == 0)) || return 1
  expect "status" "$(jq -r .status <<<"$status")" CANCELLED
  expect "error_code" "$(jq -r .error_code <<<"$status")" KILL_SWITCH_ENABLED
}

path_expired() {
  local status
  create expired approved "$(jq -nc --arg at "$(now_iso -60)" '{expires_at: $at}')" || return 1
  send_event "$ID" || return 1
  status=$(wait_finished "$ID") || return 1
  expect "status" "$(jq -r .status <<<"$status")" EXPIRED
  expect "error_code" "$(jq -r .error_code <<<"$status")" INTENT_EXPIRED
}

path_duplicate() {
  local status
  create duplicate approved || return 1
  for _ in 1 2 3; do send_event "$ID" || return 1; done
  status=$(wait_finished "$ID") || return 1
  verify_success "$ID" "$status" || return 1
  expect "attempt_count" "$(jq -r .attempt_count <<<"$status")" 1
  expect "EXECUTION_STARTED entries:" "$(jq '[.entries[] | select(.event_type == "EXECUTION_STARTED")] | length' \
    <<<"$TIMELINE")" 1
}

# run_path TITLE FUNCTION: a path that stops early (an HTTP error, a timeout) is one failed check.
run_path() {
  echo "$1"
  "$2" || fail "${1%%:*} did not complete (see the reason above)"
}

# --- the service ----------------------------------------------------------------------------------

cleanup() {
  restore_kill_switches
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "$WORKDIR" ]]; then rm -rf "$WORKDIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    shuf -i 20000-60999 -n 1
  fi
}

# The fulfill command: FULFILL_BIN, else `fulfill` on PATH, else this repository's .venv (as the
# README's quick start installs it).
fulfill_bin() {
  if [[ -n "${FULFILL_BIN:-}" ]]; then
    echo "$FULFILL_BIN"
  elif command -v fulfill >/dev/null 2>&1; then
    echo fulfill
  else
    echo "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/fulfill"
  fi
}

start_embedded() {
  local bin deadline
  bin=$(fulfill_bin)
  command -v "$bin" >/dev/null 2>&1 ||
    config_error "'$bin' not found: install fulfill (python3 -m venv .venv && .venv/bin/pip install -e .), set FULFILL_BIN, or set FULFILL_URL and FULFILL_TOKEN"
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/fulfill-e2e.XXXXXX")
  export FULFILL_DATABASE_URL="sqlite:///$WORKDIR/e2e.db"
  FULFILL_JWT_SECRET=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
  FULFILL_PORT=$(free_port)
  export FULFILL_JWT_SECRET FULFILL_PORT FULFILL_HOST=127.0.0.1 FULFILL_LOG_LEVEL=WARNING
  export DBOS__DISABLE_TELEMETRY=true
  "$bin" serve >"$WORKDIR/serve.log" 2>&1 &
  SERVER_PID=$!
  URL="http://127.0.0.1:$FULFILL_PORT"
  echo "embedded service on $URL ($FULFILL_DATABASE_URL)"
  deadline=$((SECONDS + POLL_TIMEOUT))
  until curl -sf --max-time 5 "$URL/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null || ((SECONDS >= deadline)); then
      echo "  ✘ the embedded service did not become ready; its log:" >&2
      tail -n 20 "$WORKDIR/serve.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  local scopes="intents:write intents:read intents:approve events:write executions:read admin"
  if [[ "$GLOBAL_STOP" == 1 ]]; then scopes+=" platform:admin"; fi
  TOKEN=$("$bin" token --tenant e2e-tenant --sub fulfill-e2e --scopes "$scopes")
  APPROVER_TOKEN=$("$bin" token --tenant e2e-tenant --sub fulfill-e2e-approver --scopes "$scopes")
}

# The tenant_id claim of the token (read, not verified: the service verifies it).
token_tenant() {
  local payload
  payload=$(cut -d. -f2 <<<"$TOKEN" | tr '_-' '/+')
  while ((${#payload} % 4)); do payload+="="; done
  base64 -d <<<"$payload" 2>/dev/null | jq -r '.tenant_id // ."custom:tenant_id" // empty' 2>/dev/null
}

# --- main -----------------------------------------------------------------------------------------

[[ "$GLOBAL_STOP" == 0 || "$GLOBAL_STOP" == 1 ]] ||
  config_error "FULFILL_E2E_GLOBAL_STOP must be 0 or 1 (got '$GLOBAL_STOP')"
if [[ -n "${FULFILL_URL:-}" ]]; then
  [[ -n "${FULFILL_TOKEN:-}" ]] || config_error "FULFILL_URL is set but FULFILL_TOKEN is missing"
  url_pattern='^https?://(\[[0-9A-Fa-f:.]+\]|[^]/:[:space:][]+)(:[0-9]+)?(/[^[:space:]]*)?$'
  [[ "$FULFILL_URL" =~ $url_pattern ]] ||
    config_error "FULFILL_URL '$FULFILL_URL' is not an http(s) URL such as http://127.0.0.1:8080"
  URL=${FULFILL_URL%/}
  TOKEN=$FULFILL_TOKEN
  APPROVER_TOKEN=${FULFILL_APPROVER_TOKEN:-$FULFILL_TOKEN}
else
  start_embedded
fi
TENANT=$(token_tenant) || true
[[ -n "$TENANT" ]] || config_error "FULFILL_TOKEN is not a JWT with a tenant_id claim"

echo "fulfill e2e against $URL (tenant $TENANT, account $ACCOUNT; API checks only)"
run_path "B2 seed + verify: imported intent + ACTION_APPROVED event" path_b2
run_path "B1 create + approve" path_b1
if [[ "$GLOBAL_STOP" == 1 ]]; then
  run_path "kill switch: global stop cancels the execution" path_kill_switch
else
  run_path "kill switch: the tenant's switch cancels the execution" path_kill_switch
fi
run_path "expired: an expired intent does not run" path_expired
run_path "duplicate: the same event 3 times executes once" path_duplicate

if ((FAILURES > 0)); then
  echo "e2e FAILED: $FAILURES of $CHECKS checks failed"
  exit 1
fi
echo "e2e passed: $CHECKS checks"
