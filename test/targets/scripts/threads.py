# python-threads: the real CPython interpreter with worker threads, each extending a SHA-256
# chain and keeping thread-local state, plus one thread parked in Event.wait(). After SIGUSR1
# every worker recomputes its chain from the start and compares; same protocol as the C
# targets (READY <pid>, then PASS or FAIL <reasons>). HANDOFF_CORRUPT=chain breaks one chain.
import hashlib
import os
import signal
import sys
import threading

WORKERS = 4
go = threading.Event()
stop = threading.Event()
local = threading.local()
results = {}
failures = []


def worker(i):
    local.index = i
    local.name = f"chain-{i}"
    h = hashlib.sha256(str(i).encode()).digest()
    steps = 0
    while not stop.is_set() or steps < 1000:
        h = hashlib.sha256(h).digest()
        steps += 1
        if steps % 1000 == 0:
            stop.wait(0.001)
    results[i] = (h, steps, local.index, local.name, threading.current_thread().name)


def parked():
    go.wait()
    results["parked"] = threading.current_thread().name


signal.signal(signal.SIGUSR1, lambda s, f: go.set())
threads = [threading.Thread(target=worker, args=(i,), name=f"worker-{i}") for i in range(WORKERS)]
threads.append(threading.Thread(target=parked, name="parked"))
for t in threads:
    t.start()
print(f"READY {os.getpid()}", flush=True)
while not go.wait(1):
    pass
stop.set()
for t in threads:
    t.join()
if os.environ.get("HANDOFF_CORRUPT") == "chain":
    h, steps, *rest = results[2]
    results[2] = (bytes([h[0] ^ 1]) + h[1:], steps, *rest)
for i in range(WORKERS):
    h, steps, index, name, tname = results[i]
    expect = hashlib.sha256(str(i).encode()).digest()
    for _ in range(steps):
        expect = hashlib.sha256(expect).digest()
    if h != expect:
        failures.append(f"worker {i} chain differs after {steps} steps")
    if index != i or name != f"chain-{i}" or tname != f"worker-{i}":
        failures.append(f"worker {i} thread-local state differs")
if results.get("parked") != "parked":
    failures.append("parked thread did not wake")
print("FAIL " + "; ".join(failures) if failures else "PASS", flush=True)
sys.exit(1 if failures else 0)
