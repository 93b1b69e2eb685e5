#!/usr/bin/env python3
"""Resident memory (RSS) of cleave at rest, after bursts of logins, and under a mixed load.

Usage:
  python3 tests/bench/memory.py --cleave target/release/cleave [--service target/release/cleave-users] \
      [--bursts 20] [--burst-size 12] [--mixed-seconds 300] [--connections 4]

For the monolith (--cleave) it reports, each read from /proc/<pid>/status (VmRSS):
  idle            ten seconds after /health/ready first answers, with no traffic (longer than
                  the password-hashing workers keep their memory without a job, so the admin
                  bootstrap's one hash is not counted; "ready+1s" is the figure at one second)
  bursts          after each of --bursts bursts of --burst-size concurrent logins (an admin
                  account, login limits raised so that nothing is refused); the figure of each
                  burst is printed, so growth from one burst to the next shows; "rest" is ten
                  seconds after the last one
  mixed           every 10 s during --mixed-seconds of mixed load, three wrk processes at once
                  (--connections each): product by id, the GraphQL product list with categories
                  (tests/bench/graphql_products.lua) and order placement (tests/bench/place_order.lua)
With --service BINARY it measures the users module as a service of its own the same way: the
binary runs with an internal listener and a service token, and with every other module not
deployed (`modules.<m>.mode = not_deployed`), so either the users-service preset
(`cargo build --release --no-default-features --features users-service`) or the default binary
can be given. Its mixed load is what it serves: GET /api/users/me (wrk) and logins (two loops).

cleave runs with its default settings except the log filter (warn), the admin bootstrap and the
raised login limits; the data goes to SQLite files in a temp dir.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import ADMIN, CUSTOMER, HERE, free_port, http, rss_mib, stop, wait_ready  # noqa: E402


def start(binary, extra_env=None):
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="cleave-memory-")
    env = dict(
        os.environ,
        CLEAVE_SERVER__ADDR=f"127.0.0.1:{port}",
        CLEAVE_DATA_DIR=data_dir,
        CLEAVE_LOG__FILTER="warn",
        CLEAVE_AUTH__LOGIN_PER_ACCOUNT_PER_MINUTE="100000",
        CLEAVE_AUTH__LOGIN_PER_ADDRESS_PER_MINUTE="100000",
        # The load comes from one address: it measures the service, not the edge's limiter.
        CLEAVE_SERVER__RATE_LIMIT__ENABLED="false",
        ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1],
    )
    env.pop("DATABASE_URL", None)
    env.update(extra_env or {})
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/health/ready", process)
    return process, base


def login(base):
    return http("POST", f"{base}/api/auth/login", {"email": ADMIN[0], "password": ADMIN[1]})


def at_rest(process):
    time.sleep(1)
    figures = {"ready_plus_1s_mib": round(rss_mib(process.pid), 1)}
    time.sleep(9)
    figures["idle_mib"] = round(rss_mib(process.pid), 1)
    return figures


def bursts(process, base, count, size):
    figures = []
    for _ in range(count):
        failures = []

        def one():
            try:
                login(base)
            except Exception as error:  # noqa: BLE001 - counted and reported
                failures.append(str(error))

        threads = [threading.Thread(target=one) for _ in range(size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise RuntimeError(f"{len(failures)} logins of a burst failed: {failures[0]}")
        time.sleep(0.2)
        figures.append(round(rss_mib(process.pid), 1))
    return figures


def wrk_background(url, seconds, connections, script=None, env=None):
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    if script:
        command += ["-s", script]
    return subprocess.Popen(command + [url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def sample_while(process, loads, seconds):
    samples = []
    deadline = time.monotonic() + seconds + 5
    while any(load.poll() is None for load in loads) and time.monotonic() < deadline:
        time.sleep(10)
        samples.append(round(rss_mib(process.pid), 1))
    requests = 0
    for load in loads:
        output = load.communicate()[0]
        for line in output.splitlines():
            if " requests in " in line:
                requests += int(line.split()[0])
            if "Non-2xx" in line or "Socket errors" in line:
                raise RuntimeError(f"the mixed load got errors: {line.strip()}")
    return {"mixed_samples_mib": samples, "mixed_requests": requests}


def after_rest(report, process, key):
    """Records RSS ten seconds after the load stopped, under `key`."""
    time.sleep(10)
    report[key] = round(rss_mib(process.pid), 1)
    return report


def measure_monolith(args):
    process, base = start(args.cleave)
    try:
        report = at_rest(process)
        report["bursts_mib"] = bursts(process, base, args.bursts, args.burst_size)
        after_rest(report, process, "after_bursts_rest_mib")
        admin = login(base)["access_token"]
        category = http("POST", f"{base}/api/catalog/categories", {"name": "Memory bench"}, admin)["id"]
        categories = [category] + [http("POST", f"{base}/api/catalog/categories", {"name": f"Memory bench {c}"}, admin)["id"]
                                   for c in range(1, 5)]
        product = None
        for i in range(25):
            body = {"sku": f"MEM-{i}", "name": f"Memory product {i}", "price": {"amount": 1999, "currency": "EUR"},
                    "stock_on_hand": 10_000_000, "category_id": categories[i % 5]}
            created = http("POST", f"{base}/api/catalog/products", body, admin)
            product = product or created
        http("POST", f"{base}/api/users/register", {"email": CUSTOMER[0], "password": CUSTOMER[1], "name": "Bench Buyer"})
        buyer = http("POST", f"{base}/api/auth/login", {"email": CUSTOMER[0], "password": CUSTOMER[1]})["access_token"]
        lua_env = dict(os.environ, BENCH_TOKEN=buyer, BENCH_PRODUCT=product["id"], BENCH_PREFIX=f"mem-{time.time_ns()}")
        loads = [
            wrk_background(f"{base}/api/catalog/products/{product['id']}", args.mixed_seconds, args.connections),
            wrk_background(f"{base}/graphql", args.mixed_seconds, args.connections, os.path.join(HERE, "graphql_products.lua")),
            wrk_background(f"{base}/api/orders", args.mixed_seconds, args.connections, os.path.join(HERE, "place_order.lua"), lua_env),
        ]
        report.update(sample_while(process, loads, args.mixed_seconds))
        return after_rest(report, process, "after_mixed_mib")
    finally:
        stop(process)


def measure_service(args):
    internal = free_port()
    process, base = start(args.service, {
        "CLEAVE_SERVER__INTERNAL_ADDR": f"127.0.0.1:{internal}",
        "CLEAVE_AUTH__SERVICE_TOKEN": "a long shared secret for the memory benchmark",
        "CLEAVE_MODULES__CATALOG__MODE": "not_deployed",
        "CLEAVE_MODULES__ORDERS__MODE": "not_deployed",
        "CLEAVE_MODULES__PAYMENTS__MODE": "not_deployed",
    })
    try:
        report = at_rest(process)
        report["bursts_mib"] = bursts(process, base, args.bursts, args.burst_size)
        after_rest(report, process, "after_bursts_rest_mib")
        token = login(base)["access_token"]
        script = os.path.join(tempfile.mkdtemp(prefix="cleave-memory-"), "me.lua")
        with open(script, "w") as lua:
            lua.write(f'wrk.headers["authorization"] = "Bearer {token}"\n')
        loads = [wrk_background(f"{base}/api/users/me", args.mixed_seconds, args.connections * 2, script)]

        stop_logins = threading.Event()

        login_failures = []

        def keep_logging_in():
            while not stop_logins.is_set():
                try:
                    login(base)
                except Exception as error:  # noqa: BLE001 - reported below
                    login_failures.append(str(error))
                    return

        logins = [threading.Thread(target=keep_logging_in) for _ in range(2)]
        for thread in logins:
            thread.start()
        report.update(sample_while(process, loads, args.mixed_seconds))
        stop_logins.set()
        for thread in logins:
            thread.join()
        if login_failures:
            raise RuntimeError(f"logins failed during the mixed load: {login_failures[0]}")
        return after_rest(report, process, "after_mixed_mib")
    finally:
        stop(process)


def summarise(name, report):
    b = report["bursts_mib"]
    fifth_on = b[4:] if len(b) > 4 else b
    print(f"| {name} | {report['ready_plus_1s_mib']} | {report['idle_mib']} | {b[0]} | {b[-1]} | {min(fifth_on)}–{max(fifth_on)} | "
          f"{report['after_bursts_rest_mib']} | {max(report['mixed_samples_mib'], default=0)} | {report['after_mixed_mib']} | "
          f"{report['mixed_requests']:,} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cleave", required=True)
    parser.add_argument("--service", help="a binary that hosts users (the users-service preset or the default one)")
    parser.add_argument("--bursts", type=int, default=20)
    parser.add_argument("--burst-size", type=int, default=12)
    parser.add_argument("--mixed-seconds", type=int, default=300)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()

    report = {"monolith": measure_monolith(args)}
    if args.service:
        report["users service"] = measure_service(args)
    print(json.dumps(report, indent=2))
    print("\n| process | ready+1s | idle | after burst 1 | after the last burst | bursts 5.. (min–max) | rest after bursts | "
          "peak under mixed load | 10 s after mixed load | mixed requests |\n|---|---|---|---|---|---|---|---|---|---|")
    for name, figures in report.items():
        summarise(name, figures)


if __name__ == "__main__":
    main()
