#!/bin/bash
# usage: bench/setup_profile.sh OUT.txt [seconds] — py-spy profile of one worker (pinned to core 0)
# while bench/loadgen.py opens and closes compressed connections (setup part) from core 1.
# Prints the setup rate and the worker's CPU per connection; OUT.txt gets py-spy's raw folded stacks.
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
OUT=$1; D=${2:-10}
taskset -c 0 .venv/bin/python -m wsup.cli serve --port 0 --log-file $tmp/s.jsonl --ping-interval off --max-connections 100000 --workers 1 > $tmp/out.txt 2>&1 &
SP=$!
for i in $(seq 50); do grep -q listening $tmp/out.txt 2>/dev/null && break; sleep 0.2; done
PORT=$(grep -o '[0-9]*$' $tmp/out.txt)
sleep 1
W=$(grep -m1 '"worker.listening"' $tmp/s.jsonl | grep -o '"pid":[0-9]*' | cut -d: -f2)
echo "worker pid $W" >&2
ticks() { awk '{print $14+$15}' /proc/$W/stat; }
if [ -n "$PROFILE" ]; then .venv/bin/py-spy record -p $W -r 200 -f raw -o $OUT -d $((D+2)) > /dev/null 2>&1 & PS=$!; fi
T1=$(ticks)
taskset -c 1 nice -n -10 .venv/bin/python bench/loadgen.py setup --port $PORT --compression --offer ${OFFER:-nct} --workers 4 --duration $D --warmup 0.5 > $tmp/lg.json
T2=$(ticks)
[ -n "$PROFILE" ] && wait $PS
kill -TERM $SP; wait $SP
python3 - "$T1" "$T2" "$tmp/lg.json" <<'PY'
import json,sys
d=json.load(open(sys.argv[3])); t=(int(sys.argv[2])-int(sys.argv[1]))/100
n=d['handshakes']
print(f"handshakes/s {d['handshakes_per_s']:.0f}  p99 {d['p99_ms']} ms  failures {d['failures']}  worker cpu {t:.2f}s  {t/n*1e6:.0f} us/connection")
PY
