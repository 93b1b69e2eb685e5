#!/usr/bin/env python3
"""Cold start to ready, warm start to ready, and idle memory of the cleave binary.

Usage: python3 tests/bench/startup.py path/to/cleave [--runs 10]

Each run starts the binary on a free port. "Cold" uses an empty data directory, so the SQLite
files are created, every migration is applied and a development signing key is generated;
"warm" starts again on the data directory the cold run left. The clock runs from just before
the process is spawned until GET /health/ready first answers 200 (polled every millisecond).
Idle RSS is read from /proc/<pid>/status one second after ready, with no traffic.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05) as s:
            s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_once(binary, data_dir, measure_rss):
    port = free_port()
    env = dict(os.environ, CLEAVE_SERVER__ADDR=f"127.0.0.1:{port}", CLEAVE_DATA_DIR=data_dir, CLEAVE_LOG__FILTER="warn")
    began = time.monotonic()
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = began + 30
        while not ready(port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{binary} did not become ready")
            time.sleep(0.001)
        elapsed_ms = (time.monotonic() - began) * 1000
        rss = None
        if measure_rss:
            time.sleep(1)
            rss = rss_kib(process.pid) / 1024
        return elapsed_ms, rss
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def summary(values):
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    cold, warm, rss = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as data_dir:
            elapsed, _ = start_once(args.binary, data_dir, measure_rss=False)
            cold.append(elapsed)
            elapsed, memory = start_once(args.binary, data_dir, measure_rss=True)
            warm.append(elapsed)
            rss.append(memory)
    result = {"runs": args.runs, "cold_start_ms": summary(cold), "warm_start_ms": summary(warm), "idle_rss_mib": summary(rss)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
