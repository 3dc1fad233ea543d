#!/usr/bin/env bash
# The main job until the kexec demo lands: a real handoff on this machine.
#   1. `handoff check` probes this kernel;
#   2. a workload (a counter with in-memory state, writing to a log) is frozen, dumped into an
#      image, killed, and restored from the image: it continues counting where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (ptrace, clone3 with set_tid, nftables)" >&2; exit 1; }

handoff() { node bin/handoff.js "$@"; }
work=$(mktemp -d /tmp/handoff-demo.XXXXXX)
trap 'pkill -KILL -f "$work/counter.py" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== handoff check"
handoff check || echo "(some features are missing; see above)"

cat > "$work/counter.py" <<'PY'
import os, sys, time
n = 0
state = bytearray(os.urandom(1 << 20))          # 1 MiB of state that must survive
digest = sum(state)
while True:
    n += 1
    assert sum(state) == digest, "state lost"
    print(f"tick {n} pid {os.getpid()} state-sum {digest}", flush=True)
    time.sleep(0.2)
PY
log="$work/counter.log"
# The reaper adopts and reaps the workload and whatever is restored (pid 1 may not reap).
py=$(command -v /usr/bin/python3 || command -v python3)
test/targets/build/reaper --setsid "$work/status" "$py" "$work/counter.py" >>"$log" 2>&1 </dev/null &
reaper=$!
for _ in $(seq 50); do grep -q tick "$log" 2>/dev/null && break; sleep 0.1; done
pid=$(pgrep -P "$reaper" | head -1)
sleep 1
echo "== workload pid $pid, last line before the dump:"; tail -1 "$log"

echo "== handoff dump (freeze, dump, kill)"
handoff dump --pid "$pid" --image "$work/image.himg"
handoff inspect "$work/image.himg" | head -20
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
before=$(tail -1 "$log")
echo "== killed; last line: $before"

echo "== handoff restore"
handoff restore --image "$work/image.himg" --detach
sleep 1.5
echo "== after restore:"; tail -3 "$log"
after=$(tail -1 "$log")
n_before=$(echo "$before" | awk '{print $2}')
n_after=$(echo "$after" | awk '{print $2}')
if kill -0 "$pid" 2>/dev/null && [ "$n_after" -gt "$n_before" ] && grep -q "pid $pid " <<<"$after"; then
  echo "== OK: pid $pid continues counting from $n_before to $n_after with its state"
else
  echo "== FAILED: the restored workload did not continue" >&2
  exit 1
fi
kill -KILL "$pid" 2>/dev/null || true
wait "$reaper" 2>/dev/null || true
