#!/usr/bin/env bash
# Segment preparation, measured (docs/BENCHMARKS.md, "Segment preparation"): each policy under
# loadgen beside its fio baseline, in interleaved rounds so host noise spreads over all of them.
#
#   bench/scripts/segment-preparation.sh [ROUNDS] [OUT_DIR]
#
# Needs a release build (cargo build --release -p tidelog-tools) and fio. Scratch files go to
# $TMPDIR (default /tmp, which must be the file system under test); results, one JSON per run,
# to OUT_DIR (default /tmp/tidelog-preparation). Summarise with bench/scripts/summarise.py.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-3}
out=${2:-/tmp/tidelog-preparation}
scratch=${TMPDIR:-/tmp}/tidelog-fio
tidelog=target/release/tidelog
mkdir -p "$out" "$scratch"

steal() { awk '/^cpu /{print $9}' /proc/stat; }   # host steal, in USER_HZ ticks

# Runs "$@" (which writes $out/$name.json), after letting writeback and discards of the
# previous run settle, and records the host's steal time and load beside it.
record() {
  local name=$1; shift
  sync; sleep 1
  local before; before=$(steal)
  "$@"
  printf '{"steal_ticks": %d, "loadavg": "%s"}\n' "$(( $(steal) - before ))" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" > "$out/$name.host.json"
}

durable() {  # small durable appends: the command as specified, and after a warm-up
  local policy=$1 round=$2
  record "durable-$policy-$round" "$tidelog" loadgen --quiet --json "$out/durable-$policy-$round.json" \
    --producers 1 --in-flight 1 --message-size 4096 --durability durable \
    --segment-size-bytes 67108864 --duration 10s --segment-preparation "$policy"
  # A partition's first segment is never prepared, and at the rates of a noisy disk 10 s may
  # not fill it: 17,000 warm-up messages (4,166 bytes each on disk) take the writer past the
  # first roll into a prepared segment before measuring starts.
  record "warm-$policy-$round" "$tidelog" loadgen --quiet --json "$out/warm-$policy-$round.json" \
    --producers 1 --in-flight 1 --message-size 4096 --durability durable \
    --segment-size-bytes 67108864 --duration 10s --segment-preparation "$policy" \
    --warmup-messages 17000
}

throughput() {
  local policy=$1 round=$2
  record "throughput-$policy-$round" "$tidelog" loadgen --quiet --json "$out/throughput-$policy-$round.json" \
    --durability written --message-size 1024 --producers 2 --count 2000000 --segment-preparation "$policy"
}

fio_sync() {  # 4 KiB buffered write + fdatasync, one writer
  local state=$1 round=$2 flag
  case $state in
    growing) flag=--fallocate=none ;;
    fallocated) flag=--fallocate=native ;;
    prewritten) flag=--overwrite=1 ;;
  esac
  rm -f "$scratch/f"
  record "fio-sync-$state-$round" fio --name=fds --filename="$scratch/f" --ioengine=psync --direct=0 \
    --bs=4k --iodepth=1 --fdatasync=1 --rw=write --size=256m --time_based --runtime=6 "$flag" \
    --percentile_list=50:99:99.9 --output-format=json --output="$out/fio-sync-$state-$round.json"
}

fio_seq() {  # sequential buffered 1 MiB writes, the size of a loadgen throughput run
  local sync=$1 round=$2 flag
  case $sync in
    nosync) flag=--end_fsync=0 ;;
    endsync) flag=--end_fsync=1 ;;
  esac
  rm -f "$scratch/f"
  record "fio-seq-$sync-$round" fio --name=seqw --filename="$scratch/f" --ioengine=psync --direct=0 \
    --bs=1m --iodepth=1 --rw=write --size=2g "$flag" --output-format=json \
    --output="$out/fio-seq-$sync-$round.json"
}

policies=(grow fallocate zero-fill)
declare -A baseline=([grow]=growing [fallocate]=fallocated [zero-fill]=prewritten)
# Durable first, throughput after: the gigabytes a throughput run writes and deletes would
# otherwise still be in writeback (or discard) while the next durable run syncs.
for phase in durable throughput; do
  for round in $(seq 1 "$rounds"); do
    # Rotate the order each round so no policy always runs first (or after the same one).
    shift_by=$(( (round - 1) % 3 ))
    order=("${policies[@]:shift_by}" "${policies[@]:0:shift_by}")
    echo "$phase round $round: ${order[*]}" >&2
    for policy in "${order[@]}"; do
      if [ "$phase" = durable ]; then
        # Each engine run right beside its baseline, for paired ratios.
        durable "$policy" "$round"
        fio_sync "${baseline[$policy]}" "$round"
      else
        throughput "$policy" "$round"
      fi
    done
    if [ "$phase" = throughput ]; then
      for sync in nosync endsync; do fio_seq "$sync" "$round"; done
    fi
  done
done
rm -f "$scratch/f"
