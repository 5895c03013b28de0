#!/usr/bin/env bash
# Cardinality series (issue 20, "many keys"): streamlake `-w 2` and Spark Structured Streaming on
# topics with 5, 1,000, 10,000 and 100,000 distinct ids, with the raw sink partitioned by `id`
# (identity, the seed's) and by `bucket(id, 16)`; events/s, peak RSS, files and bytes per file.
# Then a read-back: a `bucket(id, 16)` and a `day(ts)` dataset of the largest topic are read by
# pandas, DuckDB and Spark, and their rows per id must equal the topic's (a plain Kafka consumer).
#
#   scripts/bench/cardinality.sh                            # 300,000 events per topic, 1 run each
#   scripts/bench/cardinality.sh --events 1000000 --runs 3
#   scripts/bench/cardinality.sh --ids 5,1000 --no-spark
#
# Options:
#   --ids LIST         comma-separated distinct-id counts (default 5,1000,10000,100000)
#   --events N         events per topic (default 300000)
#   --runs R           runs of each contender per topic and layout (default 1)
#   --spark-timeout S  a Spark run still going after S s is stopped and reported as not finished
#                      (default 600)
#   --no-spark         streamlake only (the read-back then skips Spark too)
#   --no-readback      skip the read-back
#   --out DIR          results folder (default scripts/bench/results/cardinality-<UTC time>)
#   --topics-from D    reuse the topics of the earlier cardinality run D (its topics.csv) instead of
#                      loading new ones, e.g. to measure another binary on the same data
#
# Each id count is one topic (3 partitions, `produce --ids K --seed 42`), loaded by the first
# `scripts/bench/run.sh` (identity, into DIR/k<K>-id/) and reused by the second (`--topic`, with
# `--dataflow` a copy of dataflows/events.toml with `partition_by = "bucket(id, 16)"`, into
# DIR/k<K>-bucket16/). Spark partitions by `id`, and for the bucket rows by a computed
# `id_bucket` = pmod(hash(id), 16) (Spark's murmur3, not Iceberg's bucket: as many folders, other
# ids in each). DIR/summary.md and DIR/results.json hold the series; DIR/files.csv the file
# counts; DIR/readback/ the per-id counts of each reader. Env as run.sh (KAFKA_BOOTSTRAP_SERVERS,
# STREAMLAKE_BIN, PYTHON).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/scripts/bench"
IDS_LIST="5,1000,10000,100000"
EVENTS=300000
RUNS=1
SPARK_TIMEOUT=600
SPARK=1
READBACK=1
OUT=""
TOPICS_FROM=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ids) IDS_LIST="$2"; shift 2 ;;
    --events) EVENTS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --spark-timeout) SPARK_TIMEOUT="$2"; shift 2 ;;
    --no-spark) SPARK=0; shift ;;
    --no-readback) READBACK=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --topics-from) TOPICS_FROM="$2"; shift 2 ;;
    -h|--help) sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ "$IDS_LIST" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "--ids must be comma-separated id counts, e.g. 5,1000" >&2; exit 64; }
[[ "$EVENTS" =~ ^[1-9][0-9]*$ && "$RUNS" =~ ^[1-9][0-9]*$ && "$SPARK_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || { echo "bad --events/--runs/--spark-timeout" >&2; exit 64; }
OUT="${OUT:-$BENCH/results/cardinality-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT/readback" "$OUT/dataflows"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
SPARK_PY="$BENCH/.venv-spark/bin/python"

log() { echo "[cardinality] $*" >&2; }
# shellcheck source=scripts/bench/common.sh
source "$BENCH/common.sh"
bench_start_kafka
trap bench_stop_kafka EXIT

# The dataflow files: dataflows/events.toml with another partitioning, nothing else changed.
dataflow_with() { # PARTITION_BY FILE
  sed "s/^partition_by = \"id\"/partition_by = \"$1\"/" "$ROOT/dataflows/events.toml" >"$2"
  grep -q "^partition_by = \"$1\"" "$2" || { log "could not set partition_by = \"$1\" in a copy of dataflows/events.toml"; exit 1; }
}
dataflow_with "bucket(id, 16)" "$OUT/dataflows/bucket16.toml"
dataflow_with "day(ts)" "$OUT/dataflows/day.toml"

ONLY_SL="w2"
ONLY_SPARK="w2"
[[ "$SPARK" == 1 ]] && ONLY_SPARK="w2,spark"

# files.csv: per dataset (the last run of each contender), the visible Parquet files below the
# run folder (not `_*`/`.*` names) and their bytes.
echo "ids,layout,contender,files,bytes" >"$OUT/files.csv"
count_files() { # IDS LAYOUT RUNDIR
  local d c n b
  for d in "$3"/data/*/parquet; do
    [[ -d "$d" ]] || continue
    c="$(basename "$(dirname "$d")")"; c="${c%-*}"
    read -r n b < <(find "$d" -name '*.parquet' -not -path '*/_*' -not -path '*/.*' -printf '%s\n' | awk '{n++; b+=$1} END {print n+0, b+0}')
    echo "$1,$2,$c,$n,$b" >>"$OUT/files.csv"
  done
}

IFS=, read -r -a ids_list <<<"$IDS_LIST"
for k in "${ids_list[@]}"; do
  log "$k ids: identity (partition_by = \"id\")"
  reuse=()
  if [[ -n "$TOPICS_FROM" ]]; then
    t="$(awk -F, -v k="$k" '$1 == k { print $2 }' "$TOPICS_FROM/topics.csv")"
    [[ -n "$t" ]] || { log "no topic for $k ids in $TOPICS_FROM/topics.csv"; exit 1; }
    reuse=(--topic "$t")
  fi
  "$BENCH/run.sh" --events "$EVENTS" --runs "$RUNS" --ids "$k" ${reuse[@]+"${reuse[@]}"} --only "$ONLY_SPARK" \
    --spark-timeout "$SPARK_TIMEOUT" --out "$OUT/k$k-id" >/dev/null || log "run.sh failed for $k ids, identity (see $OUT/k$k-id/logs)"
  count_files "$k" id "$OUT/k$k-id"
  topic="$(sed -n 's/^topic=//p' "$OUT/k$k-id/meta.txt")"
  log "$k ids: bucket(id, 16), same topic $topic"
  "$BENCH/run.sh" --events "$EVENTS" --runs "$RUNS" --topic "$topic" --only "$ONLY_SPARK" \
    --dataflow "$OUT/dataflows/bucket16.toml" --spark-partition-by "bucket(id, 16)" \
    --spark-timeout "$SPARK_TIMEOUT" --out "$OUT/k$k-bucket16" >/dev/null || log "run.sh failed for $k ids, bucket(id, 16) (see $OUT/k$k-bucket16/logs)"
  count_files "$k" bucket16 "$OUT/k$k-bucket16"
  echo "$k,$topic" >>"$OUT/topics.csv"
done

if [[ "$READBACK" == 1 ]]; then
  k="${ids_list[-1]}"
  topic="$(sed -n 's/^topic=//p' "$OUT/k$k-id/meta.txt")"
  log "read-back on the $k-id topic $topic: a day(ts) dataset, then pandas, DuckDB, Spark"
  "$BENCH/run.sh" --events "$EVENTS" --runs 1 --topic "$topic" --only "$ONLY_SL" \
    --dataflow "$OUT/dataflows/day.toml" --out "$OUT/k$k-day" >/dev/null || log "run.sh failed for the day(ts) dataset (see $OUT/k$k-day/logs)"
  count_files "$k" day "$OUT/k$k-day"
  "$PY" "$ROOT/tests/py/per_key_counts.py" kafka --brokers "$KAFKA_BOOTSTRAP_SERVERS" --topic "$topic" \
    >"$OUT/readback/kafka.json" 2>"$OUT/readback/kafka.err" || log "the Kafka count failed (readback/kafka.err)"
  for layout in bucket16 day; do
    ds="$(ls -d "$OUT/k$k-$layout"/data/w2-*/parquet 2>/dev/null | tail -n1 || true)"
    [[ -n "$ds" ]] || { log "no $layout dataset to read back"; continue; }
    echo "$layout,$ds" >>"$OUT/readback/datasets.csv"
    for reader in pandas duckdb spark; do
      py="$PY"
      if [[ "$reader" == spark ]]; then
        [[ "$SPARK" == 1 && -x "$SPARK_PY" ]] || continue
        py="$SPARK_PY"
      fi
      "$py" "$ROOT/tests/py/per_key_counts.py" "$reader" "$ds" >"$OUT/readback/$layout-$reader.json" \
        2>"$OUT/readback/$layout-$reader.err" || log "$reader could not read the $layout dataset (readback/$layout-$reader.err)"
    done
  done
fi

{
  echo "events=$EVENTS"
  echo "runs=$RUNS"
  echo "ids=$IDS_LIST"
  echo "spark=$SPARK"
  echo "spark_timeout_s=$SPARK_TIMEOUT"
  [[ -n "$TOPICS_FROM" ]] && echo "topics_from=$TOPICS_FROM"
  echo "command=scripts/bench/cardinality.sh --ids $IDS_LIST --events $EVENTS --runs $RUNS --spark-timeout $SPARK_TIMEOUT$([[ "$SPARK" == 0 ]] && echo ' --no-spark')$([[ "$READBACK" == 0 ]] && echo ' --no-readback')${TOPICS_FROM:+ --topics-from D}"
} >"$OUT/meta.txt"
python3 "$BENCH/cardinality_summary.py" "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
log "results: $OUT"
