#!/usr/bin/env python3
"""HTTP load on cleave beside its floors, in one run: req/s and p50/p99 latency.

Usage:
  python3 tests/bench/load.py --cleave target/release/cleave --floor target/release/examples/floor \
      [--duration 15] [--connections 16] [--postgres postgres://postgres@127.0.0.1:5432/postgres] \
      [--pgbench /usr/lib/postgresql/15/bin/pgbench]

What it measures, each with wrk (2 threads, --connections connections, --duration seconds):
  floor            GET /product on a bare axum server answering fixed JSON (app/examples/floor.rs)
  product by id    GET /api/catalog/products/{id}
  product list     GET /api/catalog/products?limit=20
  graphql list     POST /graphql: products(first: 20) with every REST field plus each category's
                   id and name (tests/bench/graphql_products.lua)
  graphql by id    POST /graphql: product(id) with every REST field (tests/bench/graphql_product.lua)
  place order      POST /api/orders, one line, the approving test card, a fresh Idempotency-Key
                   per request (tests/bench/place_order.lua); the full saga runs in the request
for cleave on SQLite (files in a temp dir) and, with --postgres, on PostgreSQL (a fresh
database, dropped afterwards); with --redis as well, once more on PostgreSQL with the catalog's
cache shared on that Redis (`CLEAVE_CACHE__REDIS_URL`, a key prefix of the run's own). On PostgreSQL the script also reads the server's committed
transactions (pg_stat_database.xact_commit of the bench database) before and after the
place-order run, and runs `pgbench -N` (same client count and duration) on a scratch database of
the same server: the server's own commit rate on this machine, for comparison.

cleave runs with its default settings except the log filter (warn: no per-request info lines)
and the admin bootstrap. Everything shares the machine's cores: wrk, the server and PostgreSQL.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN = ("bench-admin@example.com", "bench admin password 1")
CUSTOMER = ("bench-buyer@example.com", "bench buyer password 1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, token=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
        return json.loads(text) if text else None


def wait_ready(url, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} never became ready")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def to_ms(text):
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(match.group(1)) * UNITS[match.group(2)]


def wrk(url, duration, connections, script=None, env=None):
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if script:
        command += ["-s", script]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True, env=env).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for pct in ("50", "99"):
        result[f"p{pct}_ms"] = to_ms(re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    result["requests"] = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Socket errors: (.*)", output)
    result["socket_errors"] = errors.group(1) if errors else None
    return result


def psql(admin_url, sql, database=None):
    url = admin_url if database is None else admin_url.rsplit("/", 1)[0] + "/" + database
    return subprocess.run(["psql", url, "-tAc", sql], capture_output=True, text=True, check=True).stdout.strip()


def committed(admin_url, database):
    """(transactions committed in `database`, read-only ones included; transaction ids handed out
    server-wide, i.e. write transactions, plus one for this query)."""
    # Statistics are flushed by each backend at most once a second: wait for them to settle.
    time.sleep(2)
    commits = int(psql(admin_url, f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{database}'"))
    return commits, int(psql(admin_url, "SELECT txid_current()"))


def run_cleave(binary, args, database_url, label, redis_url=None):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="cleave-bench-")
    env = dict(
        os.environ,
        CLEAVE_SERVER__ADDR=f"127.0.0.1:{port}",
        CLEAVE_DATA_DIR=data_dir,
        CLEAVE_LOG__FILTER="warn",
        # The load comes from one address: it measures the service, not the edge's limiter.
        CLEAVE_SERVER__RATE_LIMIT__ENABLED="false",
        ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1],
    )
    env.pop("DATABASE_URL", None)
    if redis_url:
        env["CLEAVE_CACHE__REDIS_URL"] = redis_url
        env["CLEAVE_CACHE__KEY_PREFIX"] = f"bench{time.time_ns()}"
    if database_url:
        env["CLEAVE_DATABASE__URL"] = database_url
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"{base}/health/ready", process)
        admin = http("POST", f"{base}/api/auth/login", {"email": ADMIN[0], "password": ADMIN[1]})["access_token"]
        categories = [http("POST", f"{base}/api/catalog/categories", {"name": f"Bench category {c}"}, admin)["id"] for c in range(5)]
        product = None
        for i in range(25):
            body = {"sku": f"BENCH-{i}", "name": f"Benchmark product {i}", "price": {"amount": 1999, "currency": "EUR"},
                    "stock_on_hand": 10_000_000, "category_id": categories[i % 5]}
            created = http("POST", f"{base}/api/catalog/products", body, admin)
            product = product or created
        http("POST", f"{base}/api/users/register", {"email": CUSTOMER[0], "password": CUSTOMER[1], "name": "Bench Buyer"})
        buyer = http("POST", f"{base}/api/auth/login", {"email": CUSTOMER[0], "password": CUSTOMER[1]})["access_token"]
        results = {}
        results["product by id"] = wrk(f"{base}/api/catalog/products/{product['id']}", args.duration, args.connections)
        results["product list"] = wrk(f"{base}/api/catalog/products?limit=20", args.duration, args.connections)
        results["graphql product list"] = wrk(f"{base}/graphql", args.duration, args.connections, os.path.join(HERE, "graphql_products.lua"))
        by_id_env = dict(os.environ, BENCH_PRODUCT=product["id"])
        results["graphql product by id"] = wrk(f"{base}/graphql", args.duration, args.connections, os.path.join(HERE, "graphql_product.lua"), by_id_env)
        before_stock = http("GET", f"{base}/api/catalog/products/{product['id']}")["stock_on_hand"]
        database = database_url.rsplit("/", 1)[1] if database_url else None
        commits_before = committed(args.postgres, database) if database else None
        lua_env = dict(os.environ, BENCH_TOKEN=buyer, BENCH_PRODUCT=product["id"], BENCH_PREFIX=f"{label}-{time.time_ns()}")
        placed = wrk(f"{base}/api/orders", args.duration, args.connections, os.path.join(HERE, "place_order.lua"), lua_env)
        # Orders still running when wrk stopped settle within the placement wait.
        time.sleep(1)
        sold = before_stock - http("GET", f"{base}/api/catalog/products/{product['id']}")["stock_on_hand"]
        placed["confirmed_orders"] = sold
        placed["confirmed_per_s"] = sold / args.duration
        if database:
            commits_after = committed(args.postgres, database)
            commits = commits_after[0] - commits_before[0]
            writes = commits_after[1] - commits_before[1] - 1
            placed["db_transactions"] = commits
            placed["db_transactions_per_order"] = commits / max(sold, 1)
            placed["db_commits"] = writes
            placed["db_commits_per_s"] = writes / args.duration
            placed["commits_per_order"] = writes / max(sold, 1)
        results["place order"] = placed
        results["rss_mib"] = rss_mib(process.pid)
        return results
    finally:
        stop(process)


def stop(process):
    """SIGTERM, then a kill if it has not exited within 20 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def pgbench(args):
    name = f"pgbench_{time.time_ns()}"
    psql(args.postgres, f"CREATE DATABASE {name}")
    url = args.postgres.rsplit("/", 1)[0] + "/" + name
    try:
        subprocess.run([args.pgbench, "-i", "-s", "1", "-q", url], capture_output=True, check=True)
        output = subprocess.run(
            [args.pgbench, "-N", "-c", str(args.connections), "-j", "2", "-T", str(args.duration), url],
            capture_output=True, text=True, check=True).stdout
        tps = float(re.search(r"tps = ([\d.]+)", output).group(1))
        latency = float(re.search(r"latency average = ([\d.]+) ms", output).group(1))
        return {"tps": tps, "latency_avg_ms": latency}
    finally:
        psql(args.postgres, f"DROP DATABASE IF EXISTS {name}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cleave", required=True)
    parser.add_argument("--floor", required=True)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--postgres", help="an admin URL of a PostgreSQL server (its last path segment is replaced)")
    parser.add_argument("--pgbench", default="pgbench")
    parser.add_argument("--redis", help="a Redis URL: adds a PostgreSQL run with the catalog's cache shared on it")
    args = parser.parse_args()

    report = {}
    port = free_port()
    floor = subprocess.Popen([args.floor, f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        report["floor"] = wrk(f"http://127.0.0.1:{port}/product", args.duration, args.connections)
    finally:
        floor.terminate()
        floor.wait()

    report["sqlite"] = run_cleave(args.cleave, args, None, "sqlite")
    if args.postgres:
        database = f"cleave_bench_{time.time_ns()}"
        psql(args.postgres, f"CREATE DATABASE {database}")
        try:
            report["postgres"] = run_cleave(args.cleave, args, args.postgres.rsplit("/", 1)[0] + "/" + database, "postgres")
        finally:
            psql(args.postgres, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        if args.redis:
            database = f"cleave_bench_{time.time_ns()}"
            psql(args.postgres, f"CREATE DATABASE {database}")
            try:
                url = args.postgres.rsplit("/", 1)[0] + "/" + database
                report["postgres + redis"] = run_cleave(args.cleave, args, url, "redis", args.redis)
            finally:
                psql(args.postgres, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        report["pgbench -N"] = pgbench(args)

    print(json.dumps(report, indent=2))
    floor_rps = report["floor"]["rps"]
    print("\n| run | req/s | p50 ms | p99 ms | notes |\n|---|---|---|---|---|")
    print(f"| floor (bare axum JSON) | {floor_rps:,.0f} | {report['floor']['p50_ms']:.2f} | {report['floor']['p99_ms']:.2f} | |")
    for db in ("sqlite", "postgres", "postgres + redis"):
        if db not in report:
            continue
        for name in ("product by id", "graphql product by id", "product list", "graphql product list", "place order"):
            r = report[db][name]
            notes = []
            if name in ("product by id", "graphql product by id", "product list"):
                notes.append(f"{r['rps'] / floor_rps:.0%} of the floor")
            if name == "graphql product list":
                notes.append(f"{r['rps'] / report[db]['product list']['rps']:.0%} of the REST list")
            if name == "place order":
                notes.append(f"{r['confirmed_per_s']:,.0f} confirmed orders/s")
                if "db_commits_per_s" in r:
                    notes.append(f"{r['db_commits_per_s']:,.0f} write commits/s ({r['commits_per_order']:.1f} per order; "
                                 f"{r['db_transactions_per_order']:.1f} transactions per order with reads)")
            if r["non_2xx"]:
                notes.append(f"{r['non_2xx']} non-2xx")
            print(f"| {db}: {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {'; '.join(notes)} |")
    if "pgbench -N" in report:
        p = report["pgbench -N"]
        print(f"| pgbench -N, {args.connections} clients | {p['tps']:,.0f} tps | avg {p['latency_avg_ms']:.2f} | | |")
        ratio = report["postgres"]["place order"]["db_commits_per_s"] / p["tps"]
        print(f"\nplace-order write commits/s vs pgbench -N tps: {ratio:.0%}")


if __name__ == "__main__":
    main()
