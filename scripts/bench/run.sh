#!/usr/bin/env bash
# Benchmark: streamlake against the raw Kafka read limit and Spark Structured Streaming 3.5, on
# the same freshly loaded 3-partition topic, then the validators on the dataset written.
#
#   scripts/bench/run.sh                          # 10,000,000 events, 3 runs of each contender
#   scripts/bench/run.sh --events 1000000 --runs 3
#   scripts/bench/run.sh --no-spark               # skip Spark (no download needed)
#   scripts/bench/run.sh --events 2000000 --only raw,w2,w2s3,spark,sparks3 --output s3://lake/bench
#   scripts/bench/run.sh --events 1000000 --only w2,w2delta,spark,sparkdelta   # Delta Lake against Parquet
#
# Options:
#   --events N        events loaded into the topic (default 10000000)
#   --partitions P    partitions of the loaded topic (default 3, the seed's); e.g. 12 to see how
#                     the workers share partitions that divide evenly (w3 is opt-in: `-w 3`)
#   --runs R          runs of each contender (default 3)
#   --out DIR         results folder (default scripts/bench/results/<UTC time>-<N>)
#   --no-spark        do not run Spark
#   --only LIST       comma-separated subset of: raw,raw2,w1,w2,w3,w2delta,n2,spark,sparkdelta,validate
#                     and, with --output, w2s3,sparks3 (default: raw,raw2,w1,w2,w2delta,n2,spark,
#                     validate; sparkdelta is opt-in: a second Spark job per round, slower than
#                     spark's, about 2 min per run at 10M events on 2 cores)
#                     w2delta:    streamlake -w 2 --table-format delta (local output): the raw dataset
#                                 and the aggregates as Delta Lake tables (delta-rs), same arguments as w2
#                     sparkdelta: spark/app.py with SPARK_FORMAT=delta: both sinks format("delta")
#                                 (delta-spark_2.12 + delta-storage 3.3.3 of scripts/spark-delta, fetched
#                                 once by scripts/spark-delta/setup.sh, passed with --jars)
#                     A Delta run's rows are counted through its `_delta_log` (the newest snapshot's
#                     files, deltalake's DeltaTable(…).to_pyarrow_dataset().count_rows(), with
#                     scripts/bench/delta_table.py), never the folder listing; its version, commit
#                     files and checkpoints (raw and aggregates tables) go to DIR/delta.jsonl
#   --output URL      also measure writing to an S3-compatible store, on the same topic in the same
#                     run: URL is s3://bucket/prefix (or s3a://; a prefix below the bucket is
#                     needed). Adds the contenders w2s3 (streamlake -w 2, `--output s3://…`) and
#                     sparks3 (Spark, `s3a://` through hadoop-aws 3.3.4 and aws-java-sdk-bundle
#                     1.12.262 from Maven Central, cached in spark/jars-s3a; its checkpoint stays on
#                     local disk) to the default contenders (with --only: name them). Each run
#                     writes below URL/<contender>-<run>/; its rows are counted back through the S3
#                     API (pyarrow, scripts/bench/s3_data.py) and the object-store requests it sent
#                     are recorded (DIR/requests.csv). The server is the one the AWS_* variables
#                     name; without AWS_ENDPOINT_URL, run.sh starts a SeaweedFS of scripts/s3.sh
#                     (state in DIR/s3, bucket created) and stops it by its PID at the end
#   --keep-data       keep every run's output (default: only the last run of each contender)
#   --kafka-config F  every contender but Spark connects with the librdkafka client properties F
#                     (exported as KAFKA_CONFIG_FILE; point KAFKA_BOOTSTRAP_SERVERS at the listener
#                     F is for); Spark is skipped (its kafka.* options are not derived from F)
#   --tls             the same over the local broker's SASL_SSL listener (scripts/kafka.sh's
#                     <state>/secure/client-sasl-ssl.properties and sasl_ssl_address)
#   --baseline-bin B  also run the streamlake binary B as contenders w1-base/w2-base (for each of
#                     w1/w2 selected), alternating with the current binary in every round, so a
#                     change is measured before and after in one run on the same topic
#   --ids K           distinct ids in the loaded events (`produce --ids K`; default: produce's, 5)
#   --dataflow F      streamlake contenders and validators use the dataflow file F (`--dataflow`),
#                     e.g. a copy of dataflows/events.toml with another `[sink] partition_by`; the
#                     row-count check then reads every `<column>=<value>/` folder, not only `id=`
#   --topic T         use the existing topic T, already holding exactly N (--events) events of the
#                     seed's shape, instead of creating and loading a new one (several runs of this
#                     script on the same data, e.g. scripts/bench/cardinality.sh)
#   --spark-timeout S stop a Spark run that has not finished after S seconds (SIGTERM, then SIGKILL
#                     30 s later); it is recorded as failed with exit 124 (default: no limit)
#   --spark-partition-by E  Spark's raw sink partitions by E: `id` (default, the seed's) or
#                     `bucket(id, N)`, a computed column `id_bucket` = pmod(hash(id), N) (Spark's
#                     murmur3, not Iceberg's: the same number of folders, other ids in each)
#
# Env: KAFKA_BOOTSTRAP_SERVERS (use this broker, start none), STREAMLAKE_BIN, RAW_CONSUME_BIN (the
# raw reader; default target/release/examples/raw_consume, built if missing), PYTHON (a python with
# pandas, pyarrow, duckdb and, for w2delta/sparkdelta, deltalake; default $STREAMLAKE_TEST_PYTHON,
# else .venv/bin/python), SPARK_DRIVER_MEMORY (default 2g); with
# --output: AWS_ENDPOINT_URL (use this S3 server, start none; its bucket must exist),
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP.
#
# Output: DIR/results.csv (one line per run), DIR/results.json (the same, with medians and versions, for
# tools), DIR/summary.md (medians, min-max, ratios, versions),
# DIR/logs/ (stdout/stderr and `/usr/bin/time -v` of every run); with --output DIR/requests.csv
# (per S3 run: requests by kind, commits, requests per commit, the S3 server's CPU seconds); with a
# Delta contender DIR/delta.jsonl (per run: rows through the log, version, commits, log files,
# checkpoints of the raw and the aggregates tables).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/scripts/bench"
cd "$ROOT"

EVENTS=10000000
RUNS=3
OUT=""
ONLY="raw,raw2,w1,w2,w2delta,n2,spark,validate"
ONLY_SET=0
PARTITIONS=3
NO_SPARK=0
S3_URL=""
KEEP=0
TLS=0
BASE_BIN=""
IDS=""
DATAFLOW=""
REUSE_TOPIC=""
SPARK_TIMEOUT=""
SPARK_PARTITION_BY="id"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --events) EVENTS="$2"; shift 2 ;;
    --partitions) PARTITIONS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-spark) NO_SPARK=1; shift ;;
    --only) ONLY="$2"; ONLY_SET=1; shift 2 ;;
    --output) S3_URL="$2"; shift 2 ;;
    --keep-data) KEEP=1; shift ;;
    --kafka-config) KAFKA_CONFIG_FILE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; export KAFKA_CONFIG_FILE; shift 2 ;;
    --tls) TLS=1; shift ;;
    --baseline-bin) BASE_BIN="$2"; shift 2 ;;
    --ids) IDS="$2"; shift 2 ;;
    --dataflow) DATAFLOW="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    --topic) REUSE_TOPIC="$2"; shift 2 ;;
    --spark-timeout) SPARK_TIMEOUT="$2"; shift 2 ;;
    --spark-partition-by) SPARK_PARTITION_BY="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ "$EVENTS" =~ ^[0-9]+$ && "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 1 ]] || { echo "bad --events/--runs" >&2; exit 64; }
[[ "$PARTITIONS" =~ ^[1-9][0-9]*$ ]] || { echo "bad --partitions $PARTITIONS (a positive number)" >&2; exit 64; }
[[ -z "$IDS" || "$IDS" =~ ^[1-9][0-9]*$ ]] || { echo "bad --ids $IDS (a positive number)" >&2; exit 64; }
[[ -z "$SPARK_TIMEOUT" || "$SPARK_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || { echo "bad --spark-timeout $SPARK_TIMEOUT (seconds)" >&2; exit 64; }
[[ "$SPARK_PARTITION_BY" == id || "$SPARK_PARTITION_BY" =~ ^bucket\(id,\ ?[1-9][0-9]*\)$ ]] || { echo "bad --spark-partition-by $SPARK_PARTITION_BY (id or bucket(id, N))" >&2; exit 64; }
[[ -z "$DATAFLOW" || -f "$DATAFLOW" ]] || { echo "--dataflow $DATAFLOW: no such file" >&2; exit 64; }
want() { [[ ",$ONLY," == *",$1,"* ]]; }
without() { # LIST NAME...: the comma-separated LIST without the contenders NAME...
  local l=",$1," n; shift
  for n in "$@"; do l="${l//,$n,/,}"; done
  l="${l#,}"; echo "${l%,}"
}
if [[ -n "$S3_URL" ]]; then
  [[ "$S3_URL" =~ ^s3a?://[a-z0-9][a-z0-9.-]*/[^/] ]] || { echo "bad --output $S3_URL (s3://bucket/prefix, with a prefix below the bucket)" >&2; exit 64; }
  S3_URL="s3://${S3_URL#*://}"; S3_URL="${S3_URL%/}"
  [[ "$ONLY_SET" == 0 ]] && ONLY="$ONLY,w2s3,sparks3"
elif want w2s3 || want sparks3; then
  echo "w2s3 and sparks3 write to S3: give --output s3://bucket/prefix" >&2; exit 64
fi
[[ "$NO_SPARK" == 1 ]] && ONLY="$(without "$ONLY" spark sparks3 sparkdelta)"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$BENCH/results/$STAMP-$EVENTS}"
mkdir -p "$OUT/logs" "$OUT/data"
OUT="$(cd "$OUT" && pwd)"
CSV="$OUT/results.csv"
echo "contender,run,wall_s,events,events_per_s,peak_rss_mb,tree_rss_mb,cpu_s,processes,exit,inner_s,requests_per_commit" >"$CSV"
log() { echo "[bench] $*" >&2; }

BIN="${STREAMLAKE_BIN:-$ROOT/target/release/streamlake}"
RAW="${RAW_CONSUME_BIN:-$ROOT/target/release/examples/raw_consume}"
PY="${PYTHON:-${STREAMLAKE_TEST_PYTHON:-$ROOT/.venv/bin/python}}"
[[ -x "$BIN" ]] || { log "building streamlake"; cargo build --release; }
# a snapshot of the binary, so a rebuild during the benchmark cannot mix two versions
mkdir -p "$OUT/bin" && cp "$BIN" "$OUT/bin/streamlake" && BIN="$OUT/bin/streamlake"
if [[ -n "$BASE_BIN" ]]; then
  [[ -x "$BASE_BIN" ]] || { log "--baseline-bin $BASE_BIN: not an executable file"; exit 64; }
  cp "$BASE_BIN" "$OUT/bin/streamlake-base" && BASE_BIN="$OUT/bin/streamlake-base"
fi
if { want raw || want raw2; } && [[ ! -x "$RAW" ]]; then
  [[ -n "${RAW_CONSUME_BIN:-}" ]] && { log "RAW_CONSUME_BIN=$RAW_CONSUME_BIN: not an executable file"; exit 64; }
  log "building examples/raw_consume"; cargo build --release --example raw_consume
fi
if { want validate || [[ -n "$S3_URL" ]]; } && ! "$PY" -c 'import pandas, pyarrow, duckdb' 2>/dev/null; then
  log "python with pandas/pyarrow/duckdb missing: scripts/test.sh --setup-only"
  scripts/test.sh --setup-only >&2
  PY="$ROOT/.venv/bin/python"
fi
if { want w2delta || want sparkdelta; } && ! "$PY" -c 'import deltalake, pyarrow' 2>/dev/null; then
  log "python with deltalake missing (the Delta contenders' row counts read the log with it): scripts/test.sh --setup-only"
  scripts/test.sh --setup-only >&2
  PY="$ROOT/.venv/bin/python"
fi

# ---- Kafka and Spark (scripts/bench/common.sh) ----------------------------------------------
# shellcheck source=scripts/bench/common.sh
source "$BENCH/common.sh"
bench_start_kafka
trap 'bench_stop_s3; bench_stop_kafka' EXIT
if [[ "$TLS" == 1 ]]; then
  secure="${KAFKA_STATE_DIR:-$ROOT/.kafka}/secure"
  [[ -f "$secure/sasl_ssl_address" ]] || { log "no SASL_SSL listener in $secure (scripts/kafka.sh start makes one)"; exit 1; }
  KAFKA_BOOTSTRAP_SERVERS="$(cat "$secure/sasl_ssl_address")"
  KAFKA_CONFIG_FILE="$secure/client-sasl-ssl.properties"
  export KAFKA_BOOTSTRAP_SERVERS KAFKA_CONFIG_FILE
fi
if [[ -n "${KAFKA_CONFIG_FILE:-}" ]]; then
  log "client settings from $KAFKA_CONFIG_FILE; Spark skipped"
  ONLY="$(without "$ONLY" spark sparks3 sparkdelta)"
fi
log "broker $KAFKA_BOOTSTRAP_SERVERS"
SPARK_OK=0
SPARK_WHY=""
SPARK_S3_OK=0
SPARK_DELTA_OK=0
if want spark || want sparks3 || want sparkdelta; then bench_setup_spark "$OUT/logs"; fi
if want sparks3 && [[ "$SPARK_OK" == 1 ]]; then bench_setup_spark_s3a "$OUT/logs"; fi
if want sparkdelta && [[ "$SPARK_OK" == 1 ]]; then bench_setup_spark_delta "$OUT/logs"; fi

# ---- S3 (scripts/bench/common.sh, scripts/s3.sh) -----------------------------------------------
S3_PID=""
if want w2s3 || want sparks3; then
  bench_start_s3 "$OUT/s3" "$(cut -d/ -f3 <<<"$S3_URL")"
  "$PY" "$BENCH/s3_data.py" check "$S3_URL" || { log "the bucket of $S3_URL cannot be listed (see above)"; exit 1; }
  log "S3 $AWS_ENDPOINT_URL, output below $S3_URL${S3_PID:+ (SeaweedFS pid $S3_PID, started by this script)}"
  log "S3 warm-up (8 objects put, read, deleted): $("$PY" "$BENCH/s3_data.py" warmup "$S3_URL") s"
fi

# ---- measurement -----------------------------------------------------------------------------
time_field() { # FILE "Field name" -> value
  awk -F': ' -v k="$1" '$1 ~ "^[ \t]*"k"$" { print $2 }' "$2"
}
# The CPU seconds (user + sys) of the S3 server this script started, 0 if none: it shares the cores.
server_cpu() {
  [[ -n "$S3_PID" ]] || { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$S3_PID/stat" 2>/dev/null || echo 0
}
kv() { # LINE KEY: the number after ` KEY=` in LINE, empty if none
  sed -n "s/.*[ :]$2=\([0-9.]*\).*/\1/p" <<<"$1"
}
# record_requests NAME RUN BASE SERVER_CPU_S: the object-store requests a run printed (streamlake:
# `object store requests: get=… per_commit=…` after `run finished: … commits=…`; Spark on s3a:
# `spark object store requests: … commits=… per_commit=…`) as a line of DIR/requests.csv; prints
# the requests per commit, nothing for a run that printed none.
record_requests() {
  local line fin commits total
  line="$(cat "$3".p*.out 2>/dev/null | grep -E -m1 '^(spark )?object store requests: ' || true)"
  [[ -n "$line" ]] || return 0
  fin="$(cat "$3".p*.out 2>/dev/null | grep -E -m1 '^run finished: ' || true)"
  commits="$(kv "$line" commits)"; [[ -n "$commits" ]] || commits="$(kv "$fin" commits)"
  total=0
  for k in get head put create copy list delete; do total=$((total + $(kv "$line" "$k" | grep . || echo 0))); done
  [[ -f "$OUT/requests.csv" ]] || echo "contender,run,get,head,put,create,copy,list,delete,total,commits,per_commit,server_cpu_s" >"$OUT/requests.csv"
  echo "$1,$2,$(kv "$line" get),$(kv "$line" head),$(kv "$line" put),$(kv "$line" create),$(kv "$line" copy),$(kv "$line" list),$(kv "$line" delete),$total,$commits,$(kv "$line" per_commit),$4" >>"$OUT/requests.csv"
  kv "$line" per_commit
}
# run_measured NAME RUN NPROC CMD1 [-- CMD2 ...]: every command runs under `/usr/bin/time -v`,
# concurrently; wall is from the first start to the last exit. RSS and CPU are summed over them.
run_measured() {
  local name="$1" run="$2" nproc="$3"; shift 3
  local base="$OUT/logs/$name-$run" cmds=() pids=() samplers=() i=0 rc=0 code
  local cur=() a c
  for a in "$@"; do
    if [[ "$a" == "--" ]]; then cmds+=("$(printf '%q ' "${cur[@]}")"); cur=(); else cur+=("$a"); fi
  done
  cmds+=("$(printf '%q ' "${cur[@]}")")
  local s0 s1
  s0="$(server_cpu)"
  local t0="$EPOCHREALTIME"
  for c in "${cmds[@]}"; do
    eval "/usr/bin/time -v -o '$base.p$i.time' $c" >"$base.p$i.out" 2>"$base.p$i.err" &
    pids+=("$!")
    sample_tree_rss "$!" "$base.p$i.tree" &
    samplers+=("$!")
    i=$((i + 1))
  done
  for p in "${pids[@]}"; do
    if wait "$p"; then :; else code=$?; [[ $rc == 0 ]] && rc=$code; fi
  done
  local t1="$EPOCHREALTIME"
  s1="$(server_cpu)"
  for s in "${samplers[@]}"; do wait "$s" 2>/dev/null || true; done
  local rss=0 tree=0 cpu=0 j
  for ((j = 0; j < i; j++)); do
    local f="$base.p$j.time" u s m
    u="$(time_field 'User time \(seconds\)' "$f")"; s="$(time_field 'System time \(seconds\)' "$f")"
    m="$(time_field 'Maximum resident set size \(kbytes\)' "$f")"
    cpu="$(awk -v a="$cpu" -v b="${u:-0}" -v c="${s:-0}" 'BEGIN{printf "%.2f", a+b+c}')"
    rss=$((rss + ${m:-0}))
    tree=$((tree + $(cat "$base.p$j.tree" 2>/dev/null || echo 0)))
  done
  local wall events
  wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')"
  events="$(cat "$base".p*.out "$base".p*.err 2>/dev/null | { grep -o -E '^(run finished|raw_consume): messages=[0-9]+' || true; } | awk -F= '{s+=$2} END{print s+0}')"
  [[ "$events" == 0 ]] && events="$EVENTS"
  # the program's own elapsed time (after start-up), when it prints one: the largest over processes
  local inner
  inner="$(cat "$base".p*.out "$base".p*.err 2>/dev/null | { grep -o -E '^(run finished|raw_consume|spark finished): .*elapsed_s=[0-9.]+' || true; } | sed 's/.*elapsed_s=//' | sort -g | tail -n1)"
  local rpc
  rpc="$(record_requests "$name" "$run" "$base" "$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.2f", b-a}')")"
  echo "$name,$run,$wall,$events,$(awk -v n="$EVENTS" -v w="$wall" 'BEGIN{printf "%.0f", n/w}'),$((rss / 1024)),$((tree / 1024)),$cpu,$nproc,$rc,${inner:-},${rpc}" >>"$CSV"
  log "$name run $run: wall ${wall}s events=$events peak_rss=$((rss / 1024))MB tree_rss=$((tree / 1024))MB cpu=${cpu}s exit=$rc${rpc:+ requests/commit=$rpc}"
  if [[ $rc != 0 ]]; then log "$name run $run failed; tail of its logs:"; tail -n 20 "$base".p*.err >&2 || true; fi
  return 0
}
free_ports() { # N
  python3 -c 'import socket,sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# ---- topic ---------------------------------------------------------------------------------
if [[ -n "$REUSE_TOPIC" ]]; then
  TOPIC="$REUSE_TOPIC"
  log "using topic $TOPIC as loaded (--topic): $EVENTS events expected"
else
  # The PID too: two runs started in the same second (the test suite runs its smoke runs in
  # parallel) would otherwise load one topic twice and each read both loads.
  TOPIC="bench_${EVENTS}_${STAMP,,}_$$"
  log "loading $EVENTS events${IDS:+ over $IDS ids} into $TOPIC ($PARTITIONS partitions)"
  "$BIN" topic create --topic "$TOPIC" --partitions "$PARTITIONS" >&2
  "$BIN" produce --topic "$TOPIC" --count "$EVENTS" --rate max --seed 42 ${IDS:+--ids "$IDS"} >"$OUT/logs/produce.out" 2>&1 || { tail "$OUT/logs/produce.out" >&2; exit 1; }
  tail -n1 "$OUT/logs/produce.out" >&2
fi

RUNARGS=(--topic "$TOPIC" --starting-offsets earliest --available-now --flush-windows --no-console)
DFARGS=()
# the raw files below a run folder: `id=*/` for the seed's layout, any `<column>=<value>/` folder
# for another dataflow's partitioning
ROWS_GLOB='run_*/id=*/*.parquet'
if [[ -n "$DATAFLOW" ]]; then
  RUNARGS+=(--dataflow "$DATAFLOW"); DFARGS=(--dataflow "$DATAFLOW"); ROWS_GLOB='run_*/*=*/*.parquet'
fi
check_rows() { # NAME RUN DATASET: row count with DuckDB (an s3:// DATASET: pyarrow through the S3 API), a warning if it is not EVENTS
  local n
  if [[ "$3" == s3://* || "$3" == s3a://* ]]; then
    n="$("$PY" "$BENCH/s3_data.py" rows "$3" "$ROWS_GLOB" 2>>"$OUT/logs/s3-rows.err" || echo "?")"
  else
    # (no progress bar: DuckDB prints it to stdout once a query passes 2 s, into $n)
    n="$("$PY" -c 'import duckdb,sys; duckdb.sql("set enable_progress_bar = false"); print(duckdb.sql(f"select count(*) from read_parquet(\x27{sys.argv[1]}/{sys.argv[2]}\x27, hive_partitioning=true)").fetchall()[0][0])' "$3" "$ROWS_GLOB" 2>/dev/null || echo "?")"
  fi
  if [[ "$n" != "$EVENTS" ]]; then log "WARNING: $1 run $2 wrote $n rows, expected $EVENTS"; fi
  echo "$1,$2,$n" >>"$OUT/rows.csv"
}
# delta_check_rows NAME RUN TABLE AGG_TABLE: the rows of the raw table's newest snapshot, read through
# its _delta_log (scripts/bench/delta_table.py: deltalake's dataset of the snapshot's files, never
# the folder listing), into rows.csv as check_rows does, and the log of both tables (version,
# commit files, checkpoints) as a line of delta.jsonl
delta_check_rows() {
  local js n
  js="$("$PY" "$BENCH/delta_table.py" stats "$3" --aggregates "$4" 2>>"$OUT/logs/delta-rows.err" || true)"
  if [[ -n "$js" ]]; then
    n="$(python3 -c 'import json,sys
d = {"contender": sys.argv[1], "run": int(sys.argv[2]), **json.loads(sys.argv[3])}
with open(sys.argv[4], "a") as f:
    f.write(json.dumps(d) + "\n")
print("[bench] {contender} run {run} Delta: rows={rows} version={version} log_json={log_json} checkpoints={checkpoints} files={files};"
      " aggregates: rows={agg_rows} version={agg_version} log_json={agg_log_json}".format(**d), file=sys.stderr)
print(d["rows"])' "$1" "$2" "$js" "$OUT/delta.jsonl")"
  else
    n="?"; log "$1 run $2: the Delta table $3 (or $4) could not be read; see logs/delta-rows.err"
  fi
  if [[ "$n" != "$EVENTS" ]]; then log "WARNING: $1 run $2 committed $n rows to its Delta table, expected $EVENTS"; fi
  echo "$1,$2,$n" >>"$OUT/rows.csv"
}
dataset() { echo "$OUT/data/$1-$2"; }
s3_dataset() { echo "$S3_URL/$1-$2"; } # NAME RUN: the prefix of an S3 run (its local folder: Spark's checkpoint)
drop_previous() { # NAME RUN: remove the previous run's data unless --keep-data
  [[ "$KEEP" == 1 || "$2" -le 1 ]] && return 0
  rm -rf "$(dataset "$1" $(($2 - 1)))"
  if [[ "$1" == *s3 ]]; then
    "$PY" "$BENCH/s3_data.py" rm "$(s3_dataset "$1" $(($2 - 1)))" 2>>"$OUT/logs/s3-rows.err" || log "could not remove $(s3_dataset "$1" $(($2 - 1)))"
  fi
}
# run_spark NAME RUN OUTPUT [VAR=VALUE ...]: one measured run of spark/app.py writing to OUTPUT (a
# folder, or s3a://… with the s3a jars and the endpoint of AWS_ENDPOINT_URL), VAR=VALUE added to
# its environment
run_spark() {
  local name="$1" run="$2" output="$3" jars limit=() s3conf=()
  shift 3
  jars="$(bench_spark_jars)"
  [[ " $* " == *" SPARK_FORMAT=delta "* ]] && jars="$jars,$(bench_spark_delta_jars)"
  [[ -n "$SPARK_TIMEOUT" ]] && limit=(timeout --kill-after=30 "$SPARK_TIMEOUT")
  if [[ "$output" == s3a://* ]]; then
    jars="$jars,$(bench_spark_s3a_jars)"
    # the access key and secret reach app.py through the environment (AWS_*), not a command line
    s3conf=(--conf spark.hadoop.fs.s3a.impl=org.apache.hadoop.fs.s3a.S3AFileSystem
      --conf "spark.hadoop.fs.s3a.endpoint=$AWS_ENDPOINT_URL" --conf spark.hadoop.fs.s3a.path.style.access=true
      --conf "spark.hadoop.fs.s3a.connection.ssl.enabled=$([[ "$AWS_ENDPOINT_URL" == https://* ]] && echo true || echo false)")
  fi
  run_measured "$name" "$run" 1 ${limit[@]+"${limit[@]}"} env SPARK_LOCAL_IP=127.0.0.1 KAFKA_TOPIC="$TOPIC" OUTPUT_PATH="$output" RUN_ID="bench$run" \
    PYSPARK_PYTHON="$BENCH/.venv-spark/bin/python" SPARK_PARTITION_BY="$SPARK_PARTITION_BY" "$@" \
    "$BENCH/.venv-spark/bin/spark-submit" --master 'local[2]' --driver-memory "${SPARK_DRIVER_MEMORY:-2g}" \
    --conf spark.sql.shuffle.partitions=4 --conf spark.ui.enabled=false \
    --conf spark.driver.bindAddress=127.0.0.1 --conf spark.driver.host=127.0.0.1 ${s3conf[@]+"${s3conf[@]}"} \
    --jars "$jars" "$BENCH/spark/app.py"
}
spark_check_rows() { # NAME RUN DATASET: check_rows with the folders of --spark-partition-by
  if [[ "$SPARK_PARTITION_BY" == id ]]; then check_rows "$@"; else ROWS_GLOB='run_*/*=*/*.parquet' check_rows "$@"; fi
}

for ((r = 1; r <= RUNS; r++)); do
  if want raw; then
    run_measured raw "$r" 1 "$RAW" --topic "$TOPIC" --bootstrap-servers "$KAFKA_BOOTSTRAP_SERVERS"
  fi
  if want raw2; then
    run_measured raw2 "$r" 1 "$RAW" --topic "$TOPIC" --bootstrap-servers "$KAFKA_BOOTSTRAP_SERVERS" --consumers 2
  fi
  for w in 1 2 3; do
    want "w$w" || continue
    # with a baseline, the two binaries take turns going first, so neither always meets a warmer
    # page cache or a quieter disk
    contenders=("w$w")
    if [[ -n "$BASE_BIN" ]]; then
      if ((r % 2)); then contenders=("w$w-base" "w$w"); else contenders=("w$w" "w$w-base"); fi
    fi
    for who in "${contenders[@]}"; do
      b="$BIN"; [[ "$who" == *-base ]] && b="$BASE_BIN"
      d="$(dataset "$who" "$r")"
      run_measured "$who" "$r" 1 "$b" run "${RUNARGS[@]}" --output "$d/parquet" --run-id "bench$r" -w "$w"
      check_rows "$who" "$r" "$d/parquet"; drop_previous "$who" "$r"
    done
  done
  if want w2delta; then
    d="$(dataset w2delta "$r")"
    run_measured w2delta "$r" 1 "$BIN" run "${RUNARGS[@]}" --output "$d/parquet" --run-id "bench$r" -w 2 --table-format delta
    delta_check_rows w2delta "$r" "$d/parquet/run_bench$r" "$d/aggregates/parquet/run_bench$r"; drop_previous w2delta "$r"
  fi
  if want w2s3; then
    d="$(s3_dataset w2s3 "$r")"
    run_measured w2s3 "$r" 1 "$BIN" run "${RUNARGS[@]}" --output "$d/parquet" --run-id "bench$r" -w 2
    check_rows w2s3 "$r" "$d/parquet"; drop_previous w2s3 "$r"
  fi
  if want n2; then
    d="$(dataset n2 "$r")"; mkdir -p "$d"
    read -r p0 p1 < <(free_ports 2)
    printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$p0" "$p1" >"$d/hosts"
    run_measured n2 "$r" 2 \
      "$BIN" run "${RUNARGS[@]}" --output "$d/parquet" --run-id "bench$r" -n 2 -p 0 -h "$d/hosts" -- \
      "$BIN" run "${RUNARGS[@]}" --output "$d/parquet" --run-id "bench$r" -n 2 -p 1 -h "$d/hosts"
    check_rows n2 "$r" "$d/parquet"; drop_previous n2 "$r"
  fi
  if want spark && [[ "$SPARK_OK" == 1 ]]; then
    d="$(dataset spark "$r")"; mkdir -p "$d"
    run_spark spark "$r" "$d/parquet"
    spark_check_rows spark "$r" "$d/parquet"; drop_previous spark "$r"
  fi
  if want sparkdelta && [[ "$SPARK_DELTA_OK" == 1 ]]; then
    # the seed's paths: the raw table OUTPUT/run_<RUN_ID>, the aggregates' <parent>/aggregates/run_<RUN_ID>
    d="$(dataset sparkdelta "$r")"; mkdir -p "$d"
    run_spark sparkdelta "$r" "$d/parquet" SPARK_FORMAT=delta
    delta_check_rows sparkdelta "$r" "$d/parquet/run_bench$r" "$d/aggregates/run_bench$r"; drop_previous sparkdelta "$r"
  fi
  if want sparks3 && [[ "$SPARK_S3_OK" == 1 ]]; then
    # the data on S3 (s3a://), the two queries' checkpoints on local disk
    d="$(s3_dataset sparks3 "$r")"; mkdir -p "$(dataset sparks3 "$r")"
    run_spark sparks3 "$r" "s3a://${d#s3://}/parquet" CHECKPOINT_DIR="$(dataset sparks3 "$r")/chk"
    spark_check_rows sparks3 "$r" "$d/parquet"; drop_previous sparks3 "$r"
  fi
done

# ---- validators on the dataset written (the last streamlake run, 2 workers if run) -----------
if want validate; then
  vd=""
  for c in w2 w1 n2; do [[ -d "$(dataset "$c" "$RUNS")/parquet" ]] && { vd="$(dataset "$c" "$RUNS")/parquet"; break; }; done
  if [[ -z "$vd" ]]; then
    log "no streamlake dataset to validate (run w1, w2 or n2 too)"
  else
    log "validators on $vd"
    echo "$vd" >"$OUT/validate-dataset.txt"
    for ((r = 1; r <= RUNS; r++)); do
      run_measured validate-streamlake "$r" 1 "$BIN" validate --path "$vd" --json ${DFARGS[@]+"${DFARGS[@]}"}
      run_measured validate-pandas-dag "$r" 1 "$PY" "$ROOT/tests/py/dag_validate.py" "$vd"
      run_measured validate-duckdb "$r" 1 "$PY" -c 'import duckdb,sys
duckdb.sql("set enable_progress_bar = false")
print(duckdb.sql(f"select id, count(*) as count, avg(value) as mean from read_parquet(\x27{sys.argv[1]}/{sys.argv[2]}\x27, hive_partitioning=true) group by id order by id").fetchall())
print("total", duckdb.sql(f"select count(*) from read_parquet(\x27{sys.argv[1]}/{sys.argv[2]}\x27, hive_partitioning=true)").fetchall()[0][0])' "$vd" "$ROWS_GLOB"
    done
  fi
fi

# ---- versions and summary --------------------------------------------------------------------
{
  echo "events=$EVENTS"
  echo "partitions=$PARTITIONS"
  echo "runs=$RUNS"
  echo "topic=$TOPIC"
  bench_machine_meta "$BIN"
  [[ -n "$BASE_BIN" ]] && echo "baseline_sha256=$(sha256sum "$BASE_BIN" | head -c 16)"
  echo "java=$(java -version 2>&1 | head -n1)"
  echo "rustc=$(rustc --version 2>/dev/null || echo '?')"
  if [[ -x "$BENCH/.venv-spark/bin/python" ]]; then
    echo "pyspark=$("$BENCH/.venv-spark/bin/python" -c 'import pyspark; print(pyspark.__version__)' 2>/dev/null || echo '?')"
    echo "spark_kafka_connector=$(find "$BENCH/spark/jars" -name 'spark-sql-kafka*.jar' -printf '%f\n' 2>/dev/null | head -n1)"
  fi
  [[ -n "$SPARK_WHY" ]] && echo "spark_skipped=$SPARK_WHY"
  if want w2delta || want sparkdelta; then
    echo "deltalake_python=$("$PY" -c 'import deltalake; print(deltalake.__version__)' 2>/dev/null || echo '?')"
    echo "delta_rs=$(grep -h -o -m1 '"engineInfo":"delta-rs:[^"]*' "$OUT"/data/w2delta-*/parquet/run_*/_delta_log/00000000000000000000.json 2>/dev/null | head -n1 | sed 's/.*delta-rs://')"
  fi
  want sparkdelta && echo "spark_delta_jars=$(find "$ROOT/scripts/spark-delta/jars" -name '*.jar' -printf '%f\n' 2>/dev/null | sort | paste -sd' ' -)"
  if [[ -n "$S3_URL" ]]; then
    echo "s3_output=$S3_URL"
    if [[ -n "$S3_PID" ]]; then
      echo "s3_server=SeaweedFS $("$("$ROOT/scripts/s3.sh" build)" version 2>/dev/null | awk 'NR == 1 { print $3 }') (scripts/s3.sh, started by run.sh, same machine, 127.0.0.1)"
    else
      echo "s3_server=${AWS_ENDPOINT_URL:-AWS} (AWS_ENDPOINT_URL, not started by run.sh)"
    fi
    want sparks3 && echo "spark_s3a_jars=$(find "$BENCH/spark/jars-s3a" -name '*.jar' -printf '%f\n' 2>/dev/null | sort | paste -sd' ' -)"
  fi
  "$PY" -c 'import pandas, pyarrow, duckdb; print(f"pandas={pandas.__version__}\npyarrow={pyarrow.__version__}\nduckdb={duckdb.__version__}")' 2>/dev/null || true
  [[ -n "$IDS" ]] && echo "ids=$IDS"
  [[ -n "$DATAFLOW" ]] && echo "dataflow=$DATAFLOW" && echo "partition_by=$(sed -n 's/^partition_by *= *"\(.*\)".*/\1/p' "$DATAFLOW" | head -n1)"
  [[ -n "$SPARK_TIMEOUT" ]] && echo "spark_timeout_s=$SPARK_TIMEOUT"
  [[ "$SPARK_PARTITION_BY" != id ]] && echo "spark_partition_by=$SPARK_PARTITION_BY"
  echo "command=scripts/bench/run.sh --events $EVENTS --runs $RUNS --only $ONLY${BASE_BIN:+ --baseline-bin B}${IDS:+ --ids $IDS}${DATAFLOW:+ --dataflow $(basename "$DATAFLOW")}${REUSE_TOPIC:+ --topic T}${SPARK_TIMEOUT:+ --spark-timeout $SPARK_TIMEOUT}${S3_URL:+ --output $S3_URL}$([[ "$SPARK_PARTITION_BY" != id ]] && printf ' --spark-partition-by %q' "$SPARK_PARTITION_BY")"
} >"$OUT/meta.txt"
python3 "$BENCH/summarize.py" "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
log "results: $OUT"
