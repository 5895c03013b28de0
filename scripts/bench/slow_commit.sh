#!/usr/bin/env bash
# Slow-disk check (a benchmark, not a test): does a worker keep reading while a commit is slow?
#
#   scripts/bench/slow_commit.sh                          # 6,000,000 events, 3 runs of each mode
#   scripts/bench/slow_commit.sh --events 2000000 --runs 2 --delay 300ms --roll 500ms
#
# streamlake commits on a thread per worker (src/ingest/commit_stage.rs): at a roll the worker
# hands its closed files to that thread and reads on while the files are made durable and the
# checkpoint entry is written. This script reads one loaded topic with
# `run --available-now -w 2 --roll-interval ROLL --trigger 1s`, alternately as it is ("normal")
# and with `--commit-delay DELAY` ("slow": every commit stalls DELAY before its fsyncs, as a
# stalled disk would), and compares their read rates: events / wall seconds of each run (the
# median over the runs). It also reports the job's own per-second rate (`input_rows_per_s` of its
# progress lines, the first and last left out as partial: few lines, so noisier), the commits
# made and peak RSS (`/usr/bin/time -v`).
#
# With the commit on the worker's thread, every roll would stop reading for DELAY: the rate would
# fall to about ROLL / (ROLL + DELAY) of normal (0.71 for the defaults). The check says PASS when
# the slow runs' median rate is at least 0.90 of the normal runs' (exit 0), FAIL otherwise (exit 1).
#
# Options:
#   --events N   events loaded into a new 3-partition topic (default 6000000)
#   --runs R     runs of each mode (default 3)
#   --delay D    --commit-delay of the slow runs (default 200ms; below ROLL, or the next roll waits)
#   --roll D     --roll-interval of every run (default 500ms)
#   --out DIR    results folder (default scripts/bench/results/slow-commit-<UTC time>)
#
# The flag exists only in builds with the `crash-points` feature: STREAMLAKE_DEBUG_BIN names such a
# binary, or this script builds one (`cargo build --profile ci --features crash-points`, the test
# suite's build, so usually already there). KAFKA_BOOTSTRAP_SERVERS: use this broker; without it
# the local one of scripts/kafka.sh is started (and stopped again by its PID at the end).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/scripts/bench"
EVENTS=6000000
RUNS=3
DELAY=200ms
ROLL=500ms
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --events) EVENTS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --delay) DELAY="$2"; shift 2 ;;
    --roll) ROLL="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ "$EVENTS" =~ ^[1-9][0-9]*$ ]] || { echo "--events must be a positive count, e.g. 6000000" >&2; exit 64; }
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive count, e.g. 3" >&2; exit 64; }
log() { echo "[slow_commit] $*" >&2; }
source "$BENCH/common.sh"

BIN="${STREAMLAKE_DEBUG_BIN:-}"
if [[ -z "$BIN" ]]; then
  log "building the crash-points binary (cargo build --profile ci --features crash-points)"
  (cd "$ROOT" && cargo build --profile ci --features crash-points --bin streamlake >&2)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/ci/streamlake"
fi
"$BIN" run --help | grep -q -- '--commit-delay' || {
  echo "$BIN has no --commit-delay: give a binary built with --features crash-points (STREAMLAKE_DEBUG_BIN)" >&2
  exit 64
}

OUT="${OUT:-$BENCH/results/slow-commit-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
bench_start_kafka
trap 'bench_stop_kafka' EXIT

TOPIC="slow_commit_${EVENTS}_$(date -u +%H%M%S)_$$"
log "loading $EVENTS events into $TOPIC (3 partitions)"
"$BIN" topic create --topic "$TOPIC" --partitions 3 >&2
"$BIN" produce --topic "$TOPIC" --count "$EVENTS" --rate max --seed 42 >"$OUT/logs/produce.out" 2>&1 \
  || { tail "$OUT/logs/produce.out" >&2; exit 1; }

echo "mode,run,events,wall_s,rate_eps,peak_rss_kb,progress_rate_eps,progress_lines,commits" >"$OUT/runs.csv"
for r in $(seq 1 "$RUNS"); do
  for mode in normal slow; do
    extra=()
    [[ "$mode" == slow ]] && extra=(--commit-delay "$DELAY")
    base="$OUT/logs/$mode-$r"
    # The aggregates go beside the output (DATA/aggregates/parquet): one folder per run holds both.
    data="$OUT/data/$mode-$r"
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$base.time" "$BIN" run --topic "$TOPIC" --output "$data/parquet" --run-id slow \
      --starting-offsets earliest --available-now -w 2 --roll-interval "$ROLL" --trigger 1s \
      --no-console "${extra[@]}" >"$base.out" 2>"$base.err" \
      || { log "$mode run $r failed: tail of $base.err"; tail "$base.err" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 - "$mode" "$r" "$start" "$end" "$base" >>"$OUT/runs.csv" <<'EOF'
import re, statistics, sys
mode, run, start, end, base = sys.argv[1:6]
err = open(base + ".err", errors="replace").read()
rates = [float(x) for x in re.findall(r"input_rows_per_s=([0-9.]+)", err)]
rates = [x for x in rates if x > 0][1:-1]
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(base + ".time").read())
median = statistics.median(rates) if rates else 0.0
out = open(base + ".out", errors="replace").read()
commits = re.search(r"commits=(\d+)", out)
events = re.search(r"messages=(\d+)", out)
wall = float(end) - float(start)
rate = int(events.group(1)) / wall if events else 0.0
print(f"{mode},{run},{events.group(1) if events else ''},{wall:.2f},{rate:.0f},{rss.group(1) if rss else ''},{median:.0f},{len(rates)},"
      f"{commits.group(1) if commits else ''}")
EOF
    tail -n1 "$OUT/runs.csv" >&2
    rm -rf "$data"
  done
done
rm -rf "$OUT/data"

python3 - "$OUT/runs.csv" "$DELAY" "$ROLL" "$EVENTS" >"$OUT/summary.md" <<'EOF'
import csv, statistics, sys
path, delay, roll, events = sys.argv[1:5]
rows = list(csv.DictReader(open(path)))
def med(mode, key):
    vals = [float(r[key]) for r in rows if r["mode"] == mode and r[key]]
    return statistics.median(vals) if vals else float("nan")
normal, slow = med("normal", "rate_eps"), med("slow", "rate_eps")
ratio = slow / normal if normal else 0.0
print(f"# Slow commits: --commit-delay {delay}, --roll-interval {roll}, {int(events):,} events, -w 2\n")
print("| mode | read rate (median, events/s) | wall (median, s) | progress-line rate (median) | commits (median) | peak RSS (median, MB) |")
print("|---|---|---|---|---|---|")
for mode in ("normal", "slow"):
    print(f"| {mode} | {med(mode, 'rate_eps'):,.0f} | {med(mode, 'wall_s'):.2f} | "
          f"{med(mode, 'progress_rate_eps'):,.0f} | {med(mode, 'commits'):.0f} | {med(mode, 'peak_rss_kb') / 1024:.0f} |")
print(f"\nread rate slow / normal: **{ratio:.2f}** "
      f"({'PASS' if ratio >= 0.90 else 'FAIL'}: at least 0.90 means reading went on while commits were slow)")
EOF
cat "$OUT/summary.md"
grep -q PASS "$OUT/summary.md"
