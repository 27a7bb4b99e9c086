#!/usr/bin/env python3
"""Summarise bench/scripts/bars.sh results: per backend, case and figure the median of the
runs with [min - max]; the engine/baseline ratios as the median of per-run ratios (paired); the
issues' bars with pass or fail; and io_uring / portable per case.

    bench/scripts/bars.py [OUT_DIR]
"""

import glob
import json
import os
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tidelog-bars"


def runs(io):
    found = []
    for path in sorted(glob.glob(os.path.join(out, f"{io}-*.json"))):
        if path.endswith(".host.json"):
            continue
        with open(path) as f:
            found.append({c["name"]: c for c in json.load(f)["cases"]})
    return found


def get(case, *keys):
    value = case
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def med(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt(m, digits=0):
    if m is None:
        return "-"
    md, lo, hi = m
    f = f"{{:,.{digits}f}}"
    return f"{f.format(md)} [{f.format(lo)}–{f.format(hi)}]"


CASES = [
    "durable-append-qd1-4k",
    "durable-append-concurrent-1k",
    "append-throughput-1k",
    "end-to-end-latency-1k",
    "end-to-end-latency-1k-durable",
    "micro-batch-vs-streaming",
    "shard-scaling",
]

results = {io: runs(io) for io in ("uring", "portable")}
for io, rs in results.items():
    if not rs:
        continue
    print(f"\n### {io} (n = {len(rs)})\n")
    print("| case | side | msgs/s | MB/s | p50 µs | p99 µs | p99.9 µs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in CASES:
        cases = [r[name] for r in rs if name in r]
        if not cases:
            continue
        for side in ("engine", "baseline"):
            row = [
                fmt(med([get(c, side, "msgs_per_s") for c in cases])),
                fmt(med([get(c, side, "mb_per_s") for c in cases]), 1),
                fmt(med([get(c, side, "latency_us", "p50") for c in cases])),
                fmt(med([get(c, side, "latency_us", "p99") for c in cases])),
                fmt(med([get(c, side, "latency_us", "p999") for c in cases])),
            ]
            print(f"| {name} | {side} | " + " | ".join(row) + " |")
        ratios = []
        for key in ("msgs_per_s", "mb_per_s", "p50", "p99", "p999"):
            m = med([get(c, "ratio", key) for c in cases])
            if m is not None:
                ratios.append(f"{key} {fmt(m, 2)}")
        print(f"| {name} | ratio (paired) | " + "; ".join(ratios) + " | | | | |")


def bar(label, io, name, value_of, ok):
    rs = results.get(io) or []
    values = [value_of(r[name]) for r in rs if name in r]
    m = med(values)
    if m is None:
        print(f"| {label} | {io} | - | not run |")
        return
    print(f"| {label} | {io} | {fmt(m, 2)} | {'pass' if ok(m[0]) else 'FAIL'} |")


print("\n### Bars (median over runs)\n")
print("| bar | backend | measured | result |")
print("| --- | --- | --- | --- |")
for io in ("uring", "portable"):
    bar("qd1-4k engine p50 / baseline p50 ≤ 1.3", io, "durable-append-qd1-4k",
        lambda c: get(c, "ratio", "p50"), lambda v: v <= 1.3)
    bar("qd1-4k engine p99 / baseline p99 ≤ 1.5", io, "durable-append-qd1-4k",
        lambda c: get(c, "ratio", "p99"), lambda v: v <= 1.5)
    bar("concurrent-1k engine MB/s / baseline ≥ 0.8", io, "durable-append-concurrent-1k",
        lambda c: get(c, "ratio", "mb_per_s"), lambda v: v >= 0.8)
    bar("throughput-1k engine MB/s / baseline ≥ 0.8", io, "append-throughput-1k",
        lambda c: get(c, "ratio", "mb_per_s"), lambda v: v >= 0.8)
    bar("e2e-1k None p99 ≤ 200 µs", io, "end-to-end-latency-1k",
        lambda c: get(c, "engine", "latency_us", "p99"), lambda v: v <= 200)
    bar("e2e-1k None p99.9 ≤ 2,000 µs", io, "end-to-end-latency-1k",
        lambda c: get(c, "engine", "latency_us", "p999"), lambda v: v <= 2000)
    bar("e2e-1k Durable p99 − raw write+fdatasync p99 ≤ 300 µs", io,
        "end-to-end-latency-1k-durable",
        lambda c: (get(c, "engine", "latency_us", "p99") or 0)
        - (get(c, "baseline", "latency_us", "p99") or 0),
        lambda v: v <= 300)
    bar("streaming p99 < 1,000 µs (micro-batch-vs-streaming)", io, "micro-batch-vs-streaming",
        lambda c: get(c, "engine", "latency_us", "p99"), lambda v: v < 1000)
    bar("shard-scaling 2 / 1 shards ≥ 1.5", io, "shard-scaling",
        lambda c: get(c, "ratio", "msgs_per_s"), lambda v: v >= 1.5)

print("\n### io_uring / portable, engine side (ratio of medians)\n")
print("| case | figure | uring | portable | ratio |")
print("| --- | --- | --- | --- | --- |")
for name, key, higher in [
    ("durable-append-qd1-4k", ("msgs_per_s",), True),
    ("durable-append-qd1-4k", ("latency_us", "p50"), False),
    ("durable-append-qd1-4k", ("latency_us", "p99"), False),
    ("durable-append-concurrent-1k", ("mb_per_s",), True),
    ("append-throughput-1k", ("mb_per_s",), True),
    ("end-to-end-latency-1k", ("latency_us", "p99"), False),
    ("end-to-end-latency-1k-durable", ("latency_us", "p99"), False),
    ("shard-scaling", ("msgs_per_s",), True),
]:
    u = med([get(r[name], "engine", *key) for r in results.get("uring", []) if name in r])
    p = med([get(r[name], "engine", *key) for r in results.get("portable", []) if name in r])
    if u is None or p is None or not p[0] or not u[0]:
        continue
    ratio = u[0] / p[0] if higher else p[0] / u[0]
    label = "/".join(key) + ("" if higher else " (portable/uring: >1 = uring better)")
    print(f"| {name} | {label} | {u[0]:,.1f} | {p[0]:,.1f} | {ratio:.2f} |")

hosts = []
for path in sorted(glob.glob(os.path.join(out, "*.host.json"))):
    with open(path) as f:
        hosts.append(json.load(f))
if hosts:
    steal = [h["steal_ticks"] for h in hosts if "steal_ticks" in h]
    # Older runs did not record it; -1: no haltpoll cpuidle on that machine.
    halt = sorted({h["guest_halt_poll_ns"] for h in hosts if "guest_halt_poll_ns" in h})
    print(f"\nHost: CPU steal {min(steal)}–{max(steal)} ticks per run"
          + (f"; guest_halt_poll_ns {', '.join(map(str, halt))}" if halt else ""))
