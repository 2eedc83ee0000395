#!/usr/bin/env bash
# Runs every client scenario over every transport against one server.
#
#   tests/clients/run-matrix.sh                  # starts js/reference-app.mjs and tests it
#   TIDINGS_URL=http://127.0.0.1:3000 tests/clients/run-matrix.sh   # an already running server
#
# Needs `npm ci` in tests/clients/js and a Python with tests/clients/py/requirements.txt
# (TIDINGS_PYTHON, default: .venv/bin/python at the repository root, else python3).
# Against the reference app, the python burst over polling is expected to fail: capping
# long-polling responses at 16 packets is a tidings extension (see py/burst.py).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
node="${TIDINGS_NODE:-node}"
python="${TIDINGS_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

reference=0
ref_pid=""
cleanup() { [[ -n "$ref_pid" ]] && kill "$ref_pid" 2>/dev/null || true; }
trap cleanup EXIT

if [[ -z "${TIDINGS_URL:-}" ]]; then
  reference=1
  log="$(mktemp)"
  "$node" "$here/js/reference-app.mjs" 0 >"$log" 2>&1 &
  ref_pid=$!
  for _ in $(seq 1 100); do
    if grep -q '^listening ' "$log"; then break; fi
    if ! kill -0 "$ref_pid" 2>/dev/null; then cat "$log" >&2; exit 1; fi
    sleep 0.05
  done
  TIDINGS_URL="$(sed -n 's/^listening //p' "$log" | head -n1)"
  [[ -n "$TIDINGS_URL" ]] || { echo "reference app did not start" >&2; cat "$log" >&2; exit 1; }
  echo "reference app at $TIDINGS_URL"
fi
export TIDINGS_URL

passed=0 failed=0 xfailed=0
failures=()
run_one() { # label, expected-failure (0/1), command...
  local label="$1" xfail="$2"
  shift 2
  local out rc=0
  out="$(timeout 120 "$@" 2>&1)" || rc=$?
  # Exit 0 passes only with the summary line last (see README.md).
  if [[ $rc -eq 0 ]] && ! tail -n1 <<<"$out" | grep -Eq '^ok: [0-9]+ checks \(at least [1-9][0-9]* declared\)$'; then
    rc=1
    out+=$'\n(exit 0 without the summary line last)'
  fi
  if [[ $rc -eq 0 ]]; then
    passed=$((passed + 1))
    printf '  pass  %-28s %s\n' "$label" "$(tail -n1 <<<"$out")"
  elif [[ $xfail -eq 1 ]]; then
    xfailed=$((xfailed + 1))
    printf '  xfail %-28s (tidings extension) %s\n' "$label" "$(tail -n1 <<<"$out")"
  else
    failed=$((failed + 1))
    failures+=("$label")
    printf '  FAIL  %-28s\n%s\n' "$label" "$out"
  fi
}

for script in connect events binary rooms burst many; do
  for transport in websocket polling upgrade; do
    [[ $script == many && $transport != websocket ]] && continue # many.mjs is always WebSocket
    TRANSPORT=$transport run_one "js/$script.mjs $transport" 0 "$node" "$here/js/$script.mjs"
  done
done
for script in connect events rooms burst; do
  for transport in websocket polling upgrade; do
    xfail=0
    [[ $reference -eq 1 && $script == burst && $transport == polling ]] && xfail=1
    TRANSPORT=$transport run_one "py/$script.py $transport" "$xfail" "$python" "$here/py/$script.py"
  done
done

echo "$passed passed, $failed failed"
[[ $xfailed -gt 0 ]] && echo "($xfailed expected failures against the reference app)"
[[ $failed -eq 0 ]] || { printf 'failed: %s\n' "${failures[@]}" >&2; exit 1; }
