#!/bin/bash
# usage: bench/echo_cpu.sh WORKERS CONNS [extra serve args]; prints msgs/s p99 and CPU us/msg of the server tree
# Not side by side with the peers: a quick check of per-message CPU (docs/performance.md).
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
W=$1; N=$2; shift 2
if [ "$W" = 1 ]; then PIN="taskset -c 0"; else PIN=""; fi
rm -f $tmp/out.txt
$PIN .venv/bin/python -m wsup.cli serve --port 0 --log-file $tmp/m.jsonl --ping-interval off --max-connections 100000 --workers $W "$@" > $tmp/out.txt 2>&1 &
SP=$!
for i in $(seq 50); do grep -q listening $tmp/out.txt 2>/dev/null && break; sleep 0.2; done
PORT=$(grep -o '[0-9]*$' $tmp/out.txt)
sleep 1
tree() { local p=$1; echo $p; for c in $(cat /proc/$p/task/*/children 2>/dev/null); do tree $c; done; }
ticks() { local u=0 s=0; for p in $(tree $SP); do set -- $(awk '{print $14, $15}' /proc/$p/stat 2>/dev/null); u=$((u+${1:-0})); s=$((s+${2:-0})); done; echo $u $s; }
T1=$(ticks)
taskset -c 1 nice -n -10 .venv/bin/python bench/loadgen.py echo --port $PORT --conns $N --duration 5 --warmup 0.5 > $tmp/lg.json
T2=$(ticks)
kill -TERM $SP; wait $SP
python3 - $T1 $T2 "$tmp/lg.json" <<'PY'
import json,sys
u1,s1,u2,s2=map(int,sys.argv[1:5]); d=json.load(open(sys.argv[5]))
u,s=(u2-u1)/100,(s2-s1)/100; t=u+s
msgs=d['verified']
print(f"msgs/s {d['msgs_per_s']:.0f}  p50 {d['p50_ms']} p99 {d['p99_ms']}  server cpu {t:.2f}s  {t/msgs*1e6:.0f} us/msg"
      f" (user {u/msgs*1e6:.0f}, sys {s/msgs*1e6:.0f})  mismatches {d['mismatches']}")
PY
