#!/bin/bash
# shell-tree: real bash processes three levels deep: this script -> a bash child that traps
# TERM -> a sleep. After SIGUSR1 the parent links are checked in /proc, then the child is told
# to stop: it kills its sleep, reaps it and exits 7, which only its real parent can observe.
# Same protocol as the C targets. HANDOFF_CORRUPT=orphan kills the child's sleep early.
ppid_of() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; set -- $s; echo "$2"; }

got=
trap 'got=1' USR1
bash -c 'trap "kill \$sleeper; wait \$sleeper; exit 7" TERM; sleep 100000 & sleeper=$!; wait' &
child=$!
grandchild=
for _ in $(seq 500); do
  for p in /proc/[0-9]*; do
    [ "$(ppid_of "${p#/proc/}")" = "$child" ] && grandchild=${p#/proc/} && break
  done
  [ -n "$grandchild" ] && break
  sleep 0.01
done
[ -n "$grandchild" ] || { echo "FAIL setup: no grandchild"; exit 1; }
echo "READY $$"
while [ -z "$got" ]; do
  wait "$child"
  kill -0 "$child" 2>/dev/null || { echo "FAIL child died before the signal"; exit 1; }
done
[ "$HANDOFF_CORRUPT" = orphan ] && kill -9 "$grandchild" && sleep 0.1
fail=
[ "$(ppid_of "$child")" = "$$" ] || fail="$fail child's parent is $(ppid_of "$child");"
[ "$(ppid_of "$grandchild")" = "$child" ] || fail="$fail grandchild's parent is $(ppid_of "$grandchild");"
kill -TERM "$child"
wait "$child"
code=$?
[ "$code" = 7 ] || fail="$fail child exited $code, expected 7;"
if [ -n "$fail" ]; then echo "FAIL$fail"; exit 1; fi
echo PASS
