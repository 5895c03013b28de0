#!/usr/bin/env bash
# Freshness benchmark: at a fixed producer rate, how long from an event being produced until its
# row is in a committed Parquet file, and from a window's end (+ the 30 s watermark) until its
# final row is committed; streamlake with a short trigger/roll interval against Spark Structured
# Streaming 3.5 live with the original 10 s processing-time trigger.
#
#   scripts/bench/freshness.sh                                  # 100k and 1k events/s, 60 s each
#   scripts/bench/freshness.sh --rates 1000 --duration 8 --no-spark
#   scripts/bench/freshness.sh --rates 100000 --trigger 200ms --no-spark
#   scripts/bench/freshness.sh --rates 100000 --table-format delta --no-spark   # visible = in the newest Delta snapshot
#
# Options:
#   --rates LIST        comma-separated producer rates in events/s (default 100000,1000)
#   --duration S        seconds of production per run; the producer sends rate×S events (default 60)
#   --trigger D         streamlake --trigger (default 500ms)
#   --roll-interval D   streamlake --roll-interval, its commit cadence (default: the trigger)
#   --workers W         streamlake -w (default 2)
#   --table-format F    parquet (default) or delta. delta: streamlake runs with `--table-format delta`
#                       and Spark with Delta sinks (spark/app.py SPARK_FORMAT=delta, the jars of
#                       scripts/spark-delta, fetched once by its setup.sh), and a row counts as
#                       visible only once it is in the newest Delta snapshot: the `_delta_log`
#                       commit that adds its file exists (freshness.py --layout delta replays the log);
#                       final window rows likewise in the aggregates table. The streamlake
#                       checkpoint and Spark's `_spark_metadata` are then not looked at
#   --delta-checkpoint-interval N  with --table-format delta: streamlake's
#                       --delta-checkpoint-interval (default: streamlake's, 100 commits)
#   --spark-trigger D   Spark processing-time trigger (default "10 seconds", the original's)
#   --no-spark          do not run Spark
#   --no-streamlake     do not run streamlake
#   --drain-timeout S   after the producer stops, how long to wait for the watcher to see every event
#                       and every countable window before giving up (default 300)
#   --out DIR           results folder (default scripts/bench/results/freshness-<UTC time>)
#
# Env: KAFKA_BOOTSTRAP_SERVERS (use this broker, start none), STREAMLAKE_BIN, PYTHON (a python with
# pyarrow and numpy, and deltalake for --table-format delta's end-of-run check; default
# $STREAMLAKE_TEST_PYTHON, else .venv/bin/python), SPARK_DRIVER_MEMORY (default 2g).
#
# Per rate and contender: a fresh 3-partition topic, the contender started on it (earliest
# offsets) and waited for (streamlake: its first progress line; Spark: both queries' first batch
# committed), then the watcher (freshness.py watch), then `streamlake produce --rate R --tick 10ms
# --count R×S`. The script then waits until the watcher has seen every produced event and every
# countable window (bounded by --drain-timeout), and stops the contender with SIGTERM by PID.
#
# Commit markers (what a reader trusts, see freshness.py): streamlake raw rows — the checkpoint
# entry `_checkpoint/partitions/p=<P>/<NEXT>.json` that covers the file (a file renamed into place
# but not yet covered is not committed: `run` deletes it after a crash); streamlake final window
# rows — the `files` list of `_checkpoint/windows.json`; Spark — the file sink's
# `_spark_metadata/<batch>` log entry listing the file; with --table-format delta, for both, the
# Delta commit `_delta_log/<version>.json` that adds the file (the newest contiguous version). The
# watcher polls the markers every 15 ms and records the time a marker is first seen before opening
# any data file.
#
# Output: DIR/results.json (every run, with percentiles, per-second latency, counts),
# DIR/summary.md (the table), DIR/runs/ (the watcher's JSON per run), DIR/logs/, DIR/data/.
# Exit status: non-zero if a streamlake run's watcher did not see exactly the produced events.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/scripts/bench"
cd "$ROOT"

RATES="100000,1000"
DURATION=60
TRIGGER="500ms"
ROLL=""
WORKERS=2
SPARK_TRIGGER="10 seconds"
CONTENDERS="streamlake,spark"
DRAIN=300
OUT=""
TABLE_FORMAT=parquet
DELTA_CHECKPOINT_INTERVAL=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rates) RATES="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --trigger) TRIGGER="$2"; shift 2 ;;
    --roll-interval) ROLL="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --spark-trigger) SPARK_TRIGGER="$2"; shift 2 ;;
    --no-spark) CONTENDERS="${CONTENDERS//,spark/}"; shift ;;
    --no-streamlake) CONTENDERS="${CONTENDERS//streamlake/}"; shift ;;
    --drain-timeout) DRAIN="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --table-format) TABLE_FORMAT="$2"; shift 2 ;;
    --delta-checkpoint-interval) DELTA_CHECKPOINT_INTERVAL="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
ROLL="${ROLL:-$TRIGGER}"
[[ "$RATES" =~ ^[0-9]+(,[0-9]+)*$ && "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DRAIN" =~ ^[0-9]+$ \
  && "$WORKERS" =~ ^[0-9]+$ ]] || { echo "bad --rates/--duration/--drain-timeout/--workers" >&2; exit 64; }
[[ "$TABLE_FORMAT" == parquet || "$TABLE_FORMAT" == delta ]] || { echo "bad --table-format $TABLE_FORMAT (parquet or delta)" >&2; exit 64; }
[[ -z "$DELTA_CHECKPOINT_INTERVAL" || ( "$DELTA_CHECKPOINT_INTERVAL" =~ ^[1-9][0-9]*$ && "$TABLE_FORMAT" == delta ) ]] \
  || { echo "bad --delta-checkpoint-interval $DELTA_CHECKPOINT_INTERVAL (a positive number, with --table-format delta)" >&2; exit 64; }
want() { [[ ",$CONTENDERS," == *",$1,"* ]]; }
log() { echo "[freshness] $*" >&2; }

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$BENCH/results/freshness-$STAMP}"
mkdir -p "$OUT/logs" "$OUT/data" "$OUT/runs"
OUT="$(cd "$OUT" && pwd)"

BIN="${STREAMLAKE_BIN:-$ROOT/target/release/streamlake}"
PY="${PYTHON:-${STREAMLAKE_TEST_PYTHON:-$ROOT/.venv/bin/python}}"
[[ -x "$BIN" ]] || { log "building streamlake"; cargo build --release; }
# a snapshot of the binary, so a rebuild during the benchmark cannot mix two versions
mkdir -p "$OUT/bin" && cp "$BIN" "$OUT/bin/streamlake" && BIN="$OUT/bin/streamlake"
if ! "$PY" -c 'import pyarrow, numpy' 2>/dev/null; then
  log "python with pyarrow/numpy missing: scripts/test.sh --setup-only"
  scripts/test.sh --setup-only >&2
  PY="$ROOT/.venv/bin/python"
fi
if [[ "$TABLE_FORMAT" == delta ]] && ! "$PY" -c 'import deltalake' 2>/dev/null; then
  log "python with deltalake missing (the end-of-run check of the Delta snapshot): scripts/test.sh --setup-only"
  scripts/test.sh --setup-only >&2
  PY="$ROOT/.venv/bin/python"
fi

# ---- background processes: stopped by PID on exit ----------------------------------------------
PIDS=()
# shellcheck source=scripts/bench/common.sh
source "$BENCH/common.sh"
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  bench_stop_kafka
}
trap cleanup EXIT

# ---- Kafka and Spark (scripts/bench/common.sh) -----------------------------------------------------
bench_start_kafka
log "broker $KAFKA_BOOTSTRAP_SERVERS"
SPARK_OK=0
SPARK_WHY=""
SPARK_DELTA_OK=0
if want spark; then bench_setup_spark "$OUT/logs"; fi
if want spark && [[ "$SPARK_OK" == 1 && "$TABLE_FORMAT" == delta ]]; then
  bench_setup_spark_delta "$OUT/logs"
  SPARK_OK="$SPARK_DELTA_OK"
fi

# wait_for SECONDS PID DESCRIPTION CMD...: polls CMD every 0.2 s; fails if PID exits or time runs out
wait_for() {
  local secs="$1" pid="$2" what="$3" t0="$SECONDS"; shift 3
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then log "the contender exited while waiting for $what"; return 1; fi
    if (( SECONDS - t0 >= secs )); then log "timed out after ${secs}s waiting for $what"; return 1; fi
    sleep 0.2
  done
}
streamlake_ready() { grep -qs 'progress batch=' "$1"; }
spark_ready() { [[ -e "$1/_chk/commits/0" && -e "$2/_chk/commits/0" ]]; }

# stop_pid PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL; the exit status in STOP_RC
stop_pid() {
  local pid="$1" secs="$2" t0="$SECONDS" rc=0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && (( SECONDS - t0 < secs )); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then log "PID $pid still running after ${secs}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || rc=$?
  STOP_RC="$rc"
}

FAILED=0
run_one() { # CONTENDER RATE
  local c="$1" rate="$2" name="$1-$2"
  [[ "$TABLE_FORMAT" == delta ]] && name="$1-delta-$2"
  local d="$OUT/data/$name" ctl="$OUT/data/$name/control" lg="$OUT/logs/$name"
  local topic count raw agg cpid wpid spid trig
  rm -rf "$d"; mkdir -p "$d" "$ctl"
  topic="fresh_${c}_${TABLE_FORMAT}_${rate}_${STAMP,,}"
  count=$((rate * DURATION))
  raw="$d/parquet/run_fresh"
  # streamlake keys its aggregates folder by OUTPUT_PATH's name too; the Spark app uses the seed's path.
  if [[ "$c" == streamlake ]]; then agg="$d/aggregates/parquet/run_fresh"; else agg="$d/aggregates/run_fresh"; fi
  log "== $c at $rate events/s for ${DURATION}s ($count events), topic $topic"
  "$BIN" topic create --topic "$topic" --partitions 3 >&2

  if [[ "$c" == streamlake ]]; then
    local fmtargs=()
    trig="trigger $TRIGGER, roll $ROLL, -w $WORKERS"
    if [[ "$TABLE_FORMAT" == delta ]]; then
      fmtargs=(--table-format delta ${DELTA_CHECKPOINT_INTERVAL:+--delta-checkpoint-interval "$DELTA_CHECKPOINT_INTERVAL"})
      trig="$trig, Delta${DELTA_CHECKPOINT_INTERVAL:+ (checkpoint every $DELTA_CHECKPOINT_INTERVAL commits)}"
    fi
    "$BIN" run --topic "$topic" --starting-offsets earliest --output "$d/parquet" --run-id fresh \
      -w "$WORKERS" --trigger "$TRIGGER" --roll-interval "$ROLL" --no-console --metrics-addr off "${fmtargs[@]}" \
      >"$lg.contender.out" 2>"$lg.contender.err" &
    cpid=$!
  else
    local jars
    trig="processingTime $SPARK_TRIGGER"
    jars="$(bench_spark_jars)"
    if [[ "$TABLE_FORMAT" == delta ]]; then jars="$jars,$(bench_spark_delta_jars)"; trig="$trig, Delta"; fi
    env SPARK_LOCAL_IP=127.0.0.1 KAFKA_TOPIC="$topic" OUTPUT_PATH="$d/parquet" RUN_ID=fresh SPARK_FORMAT="$TABLE_FORMAT" \
      SPARK_TRIGGER=live SPARK_TRIGGER_INTERVAL="$SPARK_TRIGGER" PYSPARK_PYTHON="$BENCH/.venv-spark/bin/python" \
      "$BENCH/.venv-spark/bin/spark-submit" --master 'local[2]' --driver-memory "${SPARK_DRIVER_MEMORY:-2g}" \
      --conf spark.sql.shuffle.partitions=4 --conf spark.ui.enabled=false \
      --conf spark.driver.bindAddress=127.0.0.1 --conf spark.driver.host=127.0.0.1 \
      --jars "$jars" "$BENCH/spark/app.py" >"$lg.contender.out" 2>"$lg.contender.err" &
    cpid=$!
  fi
  PIDS+=("$cpid")
  sample_tree_rss "$cpid" "$OUT/runs/$name.rss_kb" &
  spid=$!
  PIDS+=("$spid")
  local t_start="$SECONDS" ok=1
  if [[ "$c" == streamlake ]]; then
    wait_for 60 "$cpid" "streamlake's first progress line" streamlake_ready "$lg.contender.err" || ok=0
  else
    wait_for 300 "$cpid" "Spark's first committed batch of both queries" spark_ready "$raw" "$agg" || ok=0
  fi
  if [[ "$ok" == 0 ]]; then
    log "$name did not start; tail of its log:"; tail -n 30 "$lg.contender.err" >&2 || true
    stop_pid "$cpid" 30
    FAILED=1
    return 0
  fi
  log "$c ready after $((SECONDS - t_start))s"

  local strict=()
  [[ "$c" == streamlake ]] && strict=(--require-all)
  local layout="$c"
  [[ "$TABLE_FORMAT" == delta ]] && layout=delta
  "$PY" "$BENCH/freshness.py" watch --layout "$layout" --raw "$raw" --agg "$agg" --control "$ctl" \
    --out "$OUT/runs/$name.json" --label "$name" --contender "$c" --rate "$rate" --trigger "$trig" \
    "${strict[@]}" >"$lg.watcher.out" 2>"$lg.watcher.err" &
  wpid=$!
  PIDS+=("$wpid")
  sleep 1 # the watcher's first listing happens before the first event

  local p0 p1 prc=0
  p0="$EPOCHREALTIME"
  "$BIN" produce --topic "$topic" --rate "$rate" --tick 10ms --count "$count" --seed 42 --ids 5 \
    >"$lg.produce.out" 2>&1 || prc=$?
  p1="$EPOCHREALTIME"
  tail -n1 "$lg.produce.out" >&2
  if [[ "$prc" != 0 ]] || ! grep -q "all $count acknowledged" "$lg.produce.out"; then
    log "the producer failed (exit $prc): not every event was acknowledged; see $lg.produce.out"
    FAILED=1
  fi
  printf '{"events": %d, "start_unix": %s, "end_unix": %s, "rate": %d, "duration_s": %d, "topic": "%s"}\n' \
    "$count" "$p0" "$p1" "$rate" "$DURATION" "$topic" >"$ctl/producer.json.tmp"
  mv "$ctl/producer.json.tmp" "$ctl/producer.json"

  local t0="$SECONDS" wrc=0
  while kill -0 "$wpid" 2>/dev/null && (( SECONDS - t0 < DRAIN )); do sleep 0.2; done
  if kill -0 "$wpid" 2>/dev/null; then
    log "TIMEOUT: $c had not committed every event (or every countable window) ${DRAIN}s after the producer stopped; reporting what the watcher saw"
    touch "$ctl/stop"
  fi
  wait "$wpid" || wrc=$?
  tail -n 5 "$lg.watcher.err" >&2 || true
  stop_pid "$cpid" 60
  wait "$spid" 2>/dev/null || true
  log "$c stopped (exit $STOP_RC), watcher exit $wrc"
  if [[ "$c" == streamlake && "$wrc" != 0 ]]; then
    log "ERROR: streamlake's watcher did not see exactly the $count events produced (see $OUT/runs/$name.json)"
    FAILED=1
  fi
}

IFS=',' read -r -a rate_list <<<"$RATES"
for rate in "${rate_list[@]}"; do
  want streamlake && run_one streamlake "$rate"
  if want spark && [[ "$SPARK_OK" == 1 ]]; then run_one spark "$rate"; fi
done

{
  echo "rates=$RATES"
  echo "duration_s=$DURATION"
  echo "streamlake_trigger=$TRIGGER"
  echo "streamlake_roll_interval=$ROLL"
  echo "streamlake_workers=$WORKERS"
  echo "table_format=$TABLE_FORMAT"
  [[ -n "$DELTA_CHECKPOINT_INTERVAL" ]] && echo "delta_checkpoint_interval=$DELTA_CHECKPOINT_INTERVAL"
  if [[ "$TABLE_FORMAT" == delta ]]; then
    echo "deltalake_python=$("$PY" -c 'import deltalake; print(deltalake.__version__)' 2>/dev/null || echo '?')"
    want spark && echo "spark_delta_jars=$(find "$ROOT/scripts/spark-delta/jars" -name '*.jar' -printf '%f\n' 2>/dev/null | sort | paste -sd' ' -)"
  fi
  echo "spark_trigger=$SPARK_TRIGGER"
  bench_machine_meta "$BIN"
  if [[ -x "$BENCH/.venv-spark/bin/python" ]] && want spark; then
    echo "pyspark=$("$BENCH/.venv-spark/bin/python" -c 'import pyspark; print(pyspark.__version__)' 2>/dev/null || echo '?')"
  fi
  [[ -n "$SPARK_WHY" ]] && echo "spark_skipped=$SPARK_WHY"
  echo "command=scripts/bench/freshness.sh --rates $RATES --duration $DURATION --trigger $TRIGGER --roll-interval $ROLL --workers $WORKERS$([[ "$TABLE_FORMAT" == delta ]] && echo " --table-format delta")${DELTA_CHECKPOINT_INTERVAL:+ --delta-checkpoint-interval $DELTA_CHECKPOINT_INTERVAL} (contenders: ${CONTENDERS#,})"
} >"$OUT/meta.txt"
"$PY" "$BENCH/freshness.py" summarize "$OUT" >/dev/null
cat "$OUT/summary.md"
log "results: $OUT"
exit "$FAILED"
