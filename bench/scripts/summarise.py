#!/usr/bin/env python3
"""Summarise bench/scripts/segment-preparation.sh results: median, min and max over rounds,
the spread ((max - min) / median), and engine/baseline ratios of medians.

    bench/scripts/summarise.py [OUT_DIR]
"""

import glob
import json
import os
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tidelog-preparation"


def load(pattern):
    runs = []
    for path in sorted(glob.glob(os.path.join(out, pattern))):
        if path.endswith(".host.json"):
            continue
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median if median else 0.0
    return {"median": median, "min": min(values), "max": max(values), "spread": spread, "n": len(values)}


def show(label, s, unit="", digits=0):
    if s is None:
        print(f"{label:<44} —")
        return
    f = f"{{:,.{digits}f}}"
    print(
        f"{label:<44} median {f.format(s['median'])}{unit}  "
        f"[{f.format(s['min'])} – {f.format(s['max'])}]  spread {s['spread'] * 100:.0f}%  n={s['n']}"
    )


def fio_sync(state):
    runs = load(f"fio-sync-{state}-*.json")
    jobs = [r["jobs"][0] for r in runs]
    iops = stats([j["write"]["iops"] for j in jobs])
    p = lambda j, q: j["sync"]["lat_ns"]["percentile"][q] / 1000
    return {
        "iops": iops,
        "sync_p50_us": stats([p(j, "50.000000") for j in jobs]),
        "sync_p99_us": stats([p(j, "99.000000") for j in jobs]),
        "sync_max_us": stats([j["sync"]["lat_ns"]["max"] / 1000 for j in jobs]),
    }


def fio_seq(sync):
    runs = load(f"fio-seq-{sync}-*.json")
    return stats([r["jobs"][0]["write"]["bw_bytes"] / 1e6 for r in runs])


def by_round(pattern):
    """Runs by round number (the last dash-separated part of the name)."""
    runs = {}
    for path in glob.glob(os.path.join(out, pattern)):
        if path.endswith(".host.json"):
            continue
        round_ = os.path.basename(path)[: -len(".json")].rsplit("-", 1)[1]
        with open(path) as f:
            runs[round_] = json.load(f)
    return runs


def paired_ratio(engine_pattern, fio_pattern):
    """Engine appends/s over the fio appends/s of the same round (run right beside it)."""
    engine, fio = by_round(engine_pattern), by_round(fio_pattern)
    return stats(
        [
            engine[r]["throughput_msgs_per_s"] / fio[r]["jobs"][0]["write"]["iops"]
            for r in engine
            if r in fio
        ]
    )


def loadgen(kind, policy):
    runs = load(f"{kind}-{policy}-*.json")
    lat = lambda r, k: r["publish_latency_us"][k]
    return {
        "msgs": stats([r["throughput_msgs_per_s"] for r in runs]),
        "mb": stats([r["throughput_mb_per_s"] for r in runs]),
        "p50": stats([lat(r, "p50") for r in runs]),
        "p99": stats([lat(r, "p99") for r in runs]),
        "p999": stats([lat(r, "p999") for r in runs]),
        "max": stats([lat(r, "max") for r in runs]),
        "passed": all(r["passed"] for r in runs),
    }


def host(pattern):
    ticks = []
    for path in glob.glob(os.path.join(out, pattern + ".host.json")):
        with open(path) as f:
            ticks.append(json.load(f)["steal_ticks"])
    return stats(ticks)


print(f"results in {out}\n")
print("== small durable appends (4 KiB, in-flight 1) ==")
baseline_of = {"grow": "growing", "fallocate": "fallocated", "zero-fill": "prewritten"}
fio = {state: fio_sync(state) for state in baseline_of.values()}
for state, f in fio.items():
    show(f"fio {state}: appends/s", f["iops"])
    show(f"fio {state}: fdatasync p50 µs", f["sync_p50_us"])
    show(f"fio {state}: fdatasync p99 µs", f["sync_p99_us"])
    show(f"fio {state}: fdatasync max µs", f["sync_max_us"])
for kind, label in (("durable", "as specified"), ("warm", "after 17,000 warm-up")):
    print(f"-- engine, {label} --")
    for policy, state in baseline_of.items():
        r = loadgen(kind, policy)
        show(f"engine {policy}: appends/s", r["msgs"])
        show(f"engine {policy}: publish p50 µs", r["p50"])
        show(f"engine {policy}: publish p99 µs", r["p99"])
        show(f"engine {policy}: publish p99.9 µs", r["p999"])
        show(f"engine {policy}: publish max µs", r["max"])
        show(f"host steal ticks during {policy} runs", host(f"{kind}-{policy}-*"))
        for base_state in dict.fromkeys(("growing", state)):
            ratio = r["msgs"]["median"] / fio[base_state]["iops"]["median"]
            print(f"    ratio of medians engine {policy} / fio {base_state}: {ratio:.2f}")
        show(
            f"    paired ratio engine {policy} / fio {state}",
            paired_ratio(f"{kind}-{policy}-*.json", f"fio-sync-{state}-*.json"),
            digits=2,
        )
        print(f"    all runs passed: {r['passed']}")

print("\n== throughput (1 KiB, written, 2 producers, 2M messages) ==")
seq = {sync: fio_seq(sync) for sync in ("nosync", "endsync")}
show("fio seq 1 MiB buffered, no fsync: MB/s", seq["nosync"])
show("fio seq 1 MiB buffered, end fsync: MB/s", seq["endsync"])
for policy in baseline_of:
    r = loadgen("throughput", policy)
    show(f"engine {policy}: MB/s (values)", r["mb"], digits=1)
    show(f"engine {policy}: msgs/s", r["msgs"])
    show(f"engine {policy}: publish p99 µs", r["p99"])
    show(f"engine {policy}: publish max µs", r["max"])
    show(f"host steal ticks during {policy} runs", host(f"throughput-{policy}-*"))
    ratio = r["mb"]["median"] / seq["endsync"]["median"]
    print(f"    ratio engine {policy} / fio seq end-fsync: {ratio:.2f}")
    print(f"    all runs passed: {r['passed']}")
