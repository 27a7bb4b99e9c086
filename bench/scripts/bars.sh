#!/usr/bin/env bash
# The write-path and shard bars (docs/BENCHMARKS.md, "Bars of the io_uring and shard issues"):
# `tidelog bench` (every case, each beside its baseline in the same run) on both backends, in
# interleaved rounds so host noise spreads over both.
#
#   bench/scripts/bars.sh [ROUNDS] [OUT_DIR] [extra tidelog bench flags…]
#
# Needs a release build (cargo build --release -p tidelog-tools). Results, one JSON per run,
# go to OUT_DIR (default /tmp/tidelog-bars); summarise with bench/scripts/bars.py OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-3}
out=${2:-/tmp/tidelog-bars}
shift $(( $# < 2 ? $# : 2 ))
tidelog=${TIDELOG:-target/release/tidelog}   # TIDELOG=path: a copy, so a rebuild cannot swap it mid-run
mkdir -p "$out"

steal() { awk '/^cpu /{print $9}' /proc/stat; }   # host steal, in USER_HZ ticks
# How long an idle vCPU polls before halting (guest haltpoll cpuidle; -1 where there is none):
# at 0, waking a thread on an idle vCPU costs tens of µs (docs/BENCHMARKS.md, sixth session).
halt_poll() { cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null || echo -1; }

for round in $(seq 1 "$rounds"); do
  # Alternate which backend goes first.
  if (( round % 2 )); then order="uring portable"; else order="portable uring"; fi
  for io in $order; do
    sync; sleep 1
    before=$(steal)
    "$tidelog" bench --io "$io" --json "$out/$io-$round.json" "$@" > "$out/$io-$round.txt" 2>&1
    printf '{"steal_ticks": %d, "loadavg": "%s", "guest_halt_poll_ns": %d}\n' \
      "$(( $(steal) - before ))" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(halt_poll)" \
      > "$out/$io-$round.host.json"
    echo "round $round $io done"
  done
done
