#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzingclient against a freshly started wsup server.
# Usage: scripts/autobahn.sh [CASES] [OUTDIR] [EXCLUDE] [-- extra wsup serve options]
# The server gets --max-message-size 20MiB (Autobahn's 9.* cases send up to 16 MiB).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cases=${1:-*}; out=${2:-$here/autobahn-report}; excl=${3:-}
shift $(( $# < 3 ? $# : 3 )) || true
[ "${1:-}" = "--" ] && shift
wsup=${WSUP:-$here/.venv/bin/wsup}
runner=${AUTOBAHN_RUN:-$here/../shared/autobahn/run.sh}
mkdir -p "$out"
log="$out/server.jsonl"; rm -f "$log"
"$wsup" serve --port 0 --max-message-size 20MiB --log-file "$log" "$@" > "$out/server.out" 2> "$out/server.err" &
pid=$!
cleanup() { if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^listening on ' "$out/server.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$out/server.out")
[ -n "$url" ] || { echo "autobahn.sh: the server did not start" >&2; cat "$out/server.err" >&2; exit 2; }
status=0
"$runner" "$url" "$cases" "$out" "$excl" || status=$?
kill -TERM "$pid"
server_status=0; wait "$pid" || server_status=$?
trap - EXIT
if [ "$server_status" -ne 0 ]; then
  echo "autobahn.sh: wsup serve exited with status $server_status" >&2
  status=1
fi
exit $status
