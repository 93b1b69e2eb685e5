#!/usr/bin/env python3
"""Monolith against services, same load, one run: what splitting costs.

Usage:
  python3 tests/bench/topologies.py --presets DIR --postgres postgres://postgres@127.0.0.1:5432/postgres \
      --nats nats://127.0.0.1:4222 [--duration 10] [--connections 16] [--out docs/img/topologies.svg]

DIR holds the preset binaries by feature name (monolith, gateway, users-service,
catalog-service, orders-service, payments-service), as tests/src/processes.rs expects them in
PRESET_BIN_DIR. Four topologies, each on fresh PostgreSQL databases:

  (a) monolith            one process, every module in it, events in process
  (b) payments apart      the monolith, and payments in a process of its own over HTTP
  (c) services over HTTP  users, catalog, orders and payments services and a gateway, HTTP wire
  (d) services over NATS  the same five processes, every call over NATS

Notifications, the fifth module, runs inside the monolith in (a) and (b) and is not started in (c)
and (d): the script predates it, and no workload here reads it (the gateway answers 503 for it).

Every split topology carries events on JetStream, each process has a database of its own. For
each topology, with wrk (2 threads, --connections connections, --duration seconds) at the edge:
product by id (REST), the GraphQL product list (20 with their category), and place order (the
whole saga in the request). Reported: req/s, p50, p99, and CPU seconds per 1,000 requests, both
of the cleave processes alone and of the whole machine (wrk, PostgreSQL and NATS included).
Writes a grouped bar chart (SVG) of req/s relative to the monolith.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import load  # noqa: E402  (the helpers of tests/bench/load.py)

TOKEN = "a benchmark service token, long enough"
WORKLOADS = ("product by id", "graphql product list", "place order")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_cpu_seconds():
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICKS


class Topology:
    def __init__(self, args, name):
        self.args, self.name = args, name
        self.processes, self.databases = [], []
        self.scratch = tempfile.mkdtemp(prefix=f"cleave-topology-{name}-")
        self.prefix = f"bench{uuid.uuid4().hex[:10]}"

    def database(self):
        name = f"cleave_topology_{uuid.uuid4().hex[:12]}"
        load.psql(self.args.postgres, f"CREATE DATABASE {name}")
        self.databases.append(name)
        return self.args.postgres.rsplit("/", 1)[0] + "/" + name

    def start(self, preset, label, env):
        port = load.free_port()
        full = dict(
            PATH=os.environ.get("PATH", ""),
            CLEAVE_SERVER__ADDR=f"127.0.0.1:{port}",
            CLEAVE_SERVER__SERVICE_NAME=label,
            CLEAVE_DATA_DIR=os.path.join(self.scratch, label),
            CLEAVE_LOG__FILTER="warn",
            CLEAVE_SERVER__RATE_LIMIT__ENABLED="false",
            CLEAVE_AUTH__SERVICE_TOKEN=TOKEN,
            **env,
        )
        binary = os.path.join(self.args.presets, preset)
        log = open(os.path.join(self.scratch, f"{label}.log"), "w")
        process = subprocess.Popen([binary], env=full, stdout=log, stderr=log)
        self.processes.append((label, process, f"http://127.0.0.1:{port}"))
        return f"http://127.0.0.1:{port}"

    def wait(self):
        for label, process, base in self.processes:
            load.wait_ready(f"{base}/health/ready", process)

    def stop(self):
        for _, process, _ in reversed(self.processes):
            load.stop(process)
        for name in self.databases:
            load.psql(self.args.postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def cpu(self):
        return sum(cpu_seconds(process.pid) for _, process, _ in self.processes)


def nats_env(args, prefix):
    return dict(CLEAVE_NATS__URL=args.nats, CLEAVE_NATS__SUBJECT_PREFIX=prefix, CLEAVE_EVENTS__BUS="nats")


def admin_env():
    return dict(ADMIN_EMAIL=load.ADMIN[0], ADMIN_PASSWORD=load.ADMIN[1])


def monolith(t):
    return t.start("monolith", "monolith", dict(CLEAVE_DATABASE__URL=t.database(), **admin_env()))


def payments_apart(t):
    monolith_wire = f"127.0.0.1:{load.free_port()}"
    payments_wire = f"127.0.0.1:{load.free_port()}"
    events = nats_env(t.args, t.prefix)
    t.start("monolith", "payments", dict(
        CLEAVE_DATABASE__URL=t.database(), CLEAVE_SERVER__INTERNAL_ADDR=payments_wire,
        CLEAVE_MODULES__PAYMENTS__MODE="local", CLEAVE_MODULES__USERS__MODE="remote",
        CLEAVE_MODULES__USERS__URL=f"http://{monolith_wire}", CLEAVE_MODULES__CATALOG__MODE="not_deployed",
        CLEAVE_MODULES__ORDERS__MODE="not_deployed", CLEAVE_MODULES__NOTIFICATIONS__MODE="not_deployed", **events))
    return t.start("monolith", "monolith", dict(
        CLEAVE_DATABASE__URL=t.database(), CLEAVE_SERVER__INTERNAL_ADDR=monolith_wire,
        CLEAVE_MODULES__PAYMENTS__MODE="remote", CLEAVE_MODULES__PAYMENTS__URL=f"http://{payments_wire}",
        **events, **admin_env()))


def services(t, wire):
    events = nats_env(t.args, t.prefix)
    wires = {m: f"127.0.0.1:{load.free_port()}" for m in ("users", "catalog", "orders", "payments")}
    def reach(modules):
        env = {}
        for module in modules:
            env[f"CLEAVE_MODULES__{module.upper()}__WIRE"] = wire
            if wire == "http":
                env[f"CLEAVE_MODULES__{module.upper()}__URL"] = f"http://{wires[module]}"
        return env
    calls = {"users": [], "catalog": ["users"], "payments": ["users"], "orders": ["users", "catalog", "payments"]}
    for module in ("users", "catalog", "payments", "orders"):
        env = dict(CLEAVE_DATABASE__URL=t.database(), **events, **reach(calls[module]))
        if wire == "http":
            env["CLEAVE_SERVER__INTERNAL_ADDR"] = wires[module]
        if module == "users":
            env.update(admin_env())
        t.start(f"{module}-service", module, env)
        if module == "users":
            t.wait()  # the others fetch its keys at start
    return t.start("gateway", "gateway", dict(**events, **reach(("users", "catalog", "orders", "payments"))))


TOPOLOGIES = [
    ("(a) monolith", monolith),
    ("(b) payments apart, HTTP", payments_apart),
    ("(c) services, HTTP", lambda t: services(t, "http")),
    ("(d) services, NATS", lambda t: services(t, "nats")),
]


def prepare(base):
    admin = load.http("POST", f"{base}/api/auth/login", {"email": load.ADMIN[0], "password": load.ADMIN[1]})["access_token"]
    categories = [load.http("POST", f"{base}/api/catalog/categories", {"name": f"Bench category {c}"}, admin)["id"] for c in range(5)]
    product = None
    for i in range(25):
        body = {"sku": f"BENCH-{i}", "name": f"Benchmark product {i}", "price": {"amount": 1999, "currency": "EUR"},
                "stock_on_hand": 10_000_000, "category_id": categories[i % 5]}
        created = load.http("POST", f"{base}/api/catalog/products", body, admin)
        product = product or created
    load.http("POST", f"{base}/api/users/register", {"email": load.CUSTOMER[0], "password": load.CUSTOMER[1], "name": "Bench Buyer"})
    buyer = load.http("POST", f"{base}/api/auth/login", {"email": load.CUSTOMER[0], "password": load.CUSTOMER[1]})["access_token"]
    return product["id"], buyer


def measure(t, base, args):
    product, buyer = prepare(base)
    # Warm every path once (connections, caches, JetStream consumers).
    load.wrk(f"{base}/api/catalog/products/{product}", 2, args.connections)
    results = {}
    for workload in WORKLOADS:
        cpu_before, machine_before = t.cpu(), machine_cpu_seconds()
        if workload == "product by id":
            r = load.wrk(f"{base}/api/catalog/products/{product}", args.duration, args.connections)
        elif workload == "graphql product list":
            r = load.wrk(f"{base}/graphql", args.duration, args.connections, os.path.join(HERE, "graphql_products.lua"))
        else:
            env = dict(os.environ, BENCH_TOKEN=buyer, BENCH_PRODUCT=product, BENCH_PREFIX=f"{t.name}-{time.time_ns()}")
            r = load.wrk(f"{base}/api/orders", args.duration, args.connections, os.path.join(HERE, "place_order.lua"), env)
        r["cleave_cpu_s_per_1000"] = (t.cpu() - cpu_before) / max(r["requests"], 1) * 1000
        r["machine_cpu_s_per_1000"] = (machine_cpu_seconds() - machine_before) / max(r["requests"], 1) * 1000
        results[workload] = r
        time.sleep(1)
    return results


def chart(report, path):
    """A grouped bar chart: per workload, each topology's req/s as a share of the monolith's."""
    names = [name for name, _ in TOPOLOGIES]
    colours = ["#4c72b0", "#55a868", "#c44e52", "#8172b2"]
    width, height, left, bottom, top = 800, 360, 60, 60, 40
    group = (width - left - 20) / len(WORKLOADS)
    bar = group / (len(names) + 1)
    scale = (height - bottom - top) / 1.2
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">Throughput relative to the monolith (same load, same machine)</text>']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = height - bottom - tick * scale
        svg.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.0%}</text>')
    for g, workload in enumerate(WORKLOADS):
        base = report[names[0]][workload]["rps"]
        for i, name in enumerate(names):
            share = report[name][workload]["rps"] / base
            x = left + g * group + (i + 0.5) * bar
            h = share * scale
            y = height - bottom - h
            svg.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" fill="{colours[i]}"/>')
            svg.append(f'<text x="{x + bar * 0.45:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="10">{share:.0%}</text>')
        svg.append(f'<text x="{left + g * group + group / 2:.1f}" y="{height - bottom + 18}" text-anchor="middle">{workload}</text>')
    for i, name in enumerate(names):
        x = left + i * 180
        svg.append(f'<rect x="{x}" y="{height - 22}" width="12" height="12" fill="{colours[i]}"/>')
        svg.append(f'<text x="{x + 16}" y="{height - 12}">{name}</text>')
    svg.append("</svg>")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as out:
        out.write("\n".join(svg) + "\n")


def main():
    parser = argparse.ArgumentParser()
    running = "--chart-only" not in sys.argv
    parser.add_argument("--presets", required=running)
    parser.add_argument("--postgres", required=running)
    parser.add_argument("--nats", required=running)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", default="docs/img/topologies.svg")
    parser.add_argument("--chart-only", metavar="REPORT", help="draw the chart from a saved JSON report, run nothing")
    args, _ = parser.parse_known_args() if "--chart-only" in sys.argv else (parser.parse_args(), None)
    if args.chart_only:
        with open(args.chart_only) as saved:
            chart(json.load(saved), args.out)
        return
    report = {}
    for name, build in TOPOLOGIES:
        t = Topology(args, name.split()[0].strip("()"))
        try:
            base = build(t)
            t.wait()
            report[name] = measure(t, base, args)
        except Exception:
            print(f"{name} failed; its logs are in {t.scratch}", file=sys.stderr)
            raise
        finally:
            t.stop()
        print(f"{name}: done", file=sys.stderr)
    print(json.dumps(report, indent=2))
    print("\n| topology | workload | req/s | vs (a) | p50 ms | p99 ms | cleave CPU s / 1,000 req | machine CPU s / 1,000 req |")
    print("|---|---|---|---|---|---|---|---|")
    first = TOPOLOGIES[0][0]
    for workload in WORKLOADS:
        for name, _ in TOPOLOGIES:
            r = report[name][workload]
            ratio = r["rps"] / report[first][workload]["rps"]
            notes = f" ({r['non_2xx']} non-2xx)" if r["non_2xx"] else ""
            print(f"| {name} | {workload} | {r['rps']:,.0f}{notes} | {ratio:.0%} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['cleave_cpu_s_per_1000']:.3f} | {r['machine_cpu_s_per_1000']:.3f} |")
    chart(report, args.out)
    print(f"\nchart: {args.out}")


if __name__ == "__main__":
    main()
