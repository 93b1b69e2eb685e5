#!/usr/bin/env bash
# Schemathesis against a live monolith: every operation of its /openapi.json, with positive and
# negative data, checked with not_a_server_error, status_code_conformance and
# response_schema_conformance. Any finding fails.
#
#   tests/schemathesis/run.sh [BINARY]
#
# BINARY defaults to the monolith built by `cargo build -p cleave`. Environment:
#   ST            the schemathesis command (default: st on PATH)
#   DATABASE_URL  a PostgreSQL server: the monolith runs on a throwaway database there;
#                 unset, on SQLite files in a temporary directory
#   ST_MAX_EXAMPLES  test cases per operation and phase (default 40)
#   ST_SCHEMA     the document to test against (default: the server's own /openapi.json); a
#                 file, such as docs/openapi.json, tests the committed document
set -euo pipefail
cd "$(dirname "$0")/../.."

binary="${1:-}"
if [ -z "$binary" ]; then
  cargo build --quiet --locked -p cleave --bin cleave
  binary="${CARGO_TARGET_DIR:-target}/debug/cleave"
fi
st="${ST:-st}"
command -v "$st" >/dev/null || { echo "schemathesis ($st) is not installed: pip install schemathesis" >&2; exit 1; }

work="$(mktemp -d)"
pid=""
database=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$database" ]; then psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export CLEAVE_DATA_DIR="$work/data"
export CLEAVE_SERVER__ADDR="127.0.0.1:$port"
# The fuzzer sends thousands of requests from one address: the edge's limit would answer most of
# them 429 (declared, but it would hide what the handlers answer).
export CLEAVE_SERVER__RATE_LIMIT__ENABLED=false
export CLEAVE_AUTH__LOGIN_PER_ADDRESS_PER_MINUTE=100000
export RUST_LOG="${RUST_LOG:-warn}"
if [ -n "${DATABASE_URL:-}" ]; then
  database="cleave_schemathesis_$$"
  psql -q "$DATABASE_URL" -c "CREATE DATABASE $database" >/dev/null
  export CLEAVE_DATABASE__URL="${DATABASE_URL%/*}/$database"
  echo "database: PostgreSQL ($database)"
else
  echo "database: SQLite in $work/data"
fi

password="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
ADMIN_PASSWORD="$password" "$binary" create-admin --email admin@example.com >/dev/null
"$binary" seed >/dev/null
"$binary" serve >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/health/ready" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

token="$(curl -fsS -H 'content-type: application/json' \
  -d "{\"email\": \"admin@example.com\", \"password\": \"$password\"}" "$base/api/auth/login" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

status=0
schema="${ST_SCHEMA:-$base/openapi.json}"
[ -f "$schema" ] && schema="$(realpath "$schema")"
# From the temporary directory: schemathesis keeps state in the working directory.
cd "$work"
"$st" run "$schema" --url "$base" \
  --checks not_a_server_error,status_code_conformance,response_schema_conformance \
  --header "Authorization: Bearer $token" \
  --max-examples "${ST_MAX_EXAMPLES:-40}" \
  --seed "${ST_SEED:-20261202}" \
  --workers 2 \
  --generation-database none \
  --no-color \
  --report junit --report-dir "$work/report" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- the server's log (warnings and errors)" >&2
  tail -n 100 "$work/server.log" >&2
fi
exit "$status"
