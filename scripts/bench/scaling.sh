#!/usr/bin/env bash
# Scaling series: streamlake's full job (`-w 2`) and the raw read limit at several topic sizes, to
# show whether cost per event and peak memory stay flat as the input grows.
#
#   scripts/bench/scaling.sh                               # 1M, 5M and 20M events, 3 runs each
#   scripts/bench/scaling.sh --sizes 100000,200000 --runs 1
#
# Options:
#   --sizes LIST   comma-separated event counts (default 1000000,5000000,20000000)
#   --runs R       runs per size and contender (default 3)
#   --only LIST    contenders, as run.sh's --only (default raw,w2)
#   --out DIR      results folder (default scripts/bench/results/scaling-<UTC time>)
#
# Each size is one `scripts/bench/run.sh --events N` (a freshly loaded topic) into DIR/n<N>/; the
# series is summarized in DIR/summary.md and DIR/results.json (per size: medians of wall, events/s,
# CPU s, CPU ns per event, peak RSS). Env as run.sh (KAFKA_BOOTSTRAP_SERVERS, STREAMLAKE_BIN, PYTHON).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/scripts/bench"
SIZES="1000000,5000000,20000000"
RUNS=3
ONLY="raw,w2"
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sizes) SIZES="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ "$SIZES" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "--sizes must be comma-separated event counts, e.g. 1000000,5000000" >&2; exit 64; }
OUT="${OUT:-$BENCH/results/scaling-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# One broker for the whole series: started here unless one is given, so each run.sh reuses it.
log() { echo "[scaling] $*" >&2; }
# shellcheck source=scripts/bench/common.sh
source "$BENCH/common.sh"
bench_start_kafka
trap bench_stop_kafka EXIT

IFS=, read -r -a sizes <<<"$SIZES"
for n in "${sizes[@]}"; do
  echo "[scaling] $n events" >&2
  "$BENCH/run.sh" --events "$n" --runs "$RUNS" --only "$ONLY" --out "$OUT/n$n" >/dev/null
done
python3 "$BENCH/scaling_summary.py" "$OUT" "${sizes[@]}" >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "[scaling] results: $OUT" >&2
