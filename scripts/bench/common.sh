# Shared by the benchmark scripts (sourced, not run): the broker, the S3 server, Spark's set-up, and
# memory sampling. Expects ROOT, BENCH and a `log` function from the caller.

# bench_start_kafka: use KAFKA_BOOTSTRAP_SERVERS, or start (or reuse) the local broker of
# scripts/kafka.sh; STARTED_KAFKA=1 when this call started it, so bench_stop_kafka stops only that.
bench_start_kafka() {
  STARTED_KAFKA=0
  if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    if ! "$ROOT/scripts/kafka.sh" status >/dev/null 2>&1; then STARTED_KAFKA=1; fi
    KAFKA_BOOTSTRAP_SERVERS="$("$ROOT/scripts/kafka.sh" start | tail -n1)"
  fi
  export KAFKA_BOOTSTRAP_SERVERS
}
bench_stop_kafka() {
  if [[ "${STARTED_KAFKA:-0}" == 1 ]]; then log "stopping the broker this script started"; "$ROOT/scripts/kafka.sh" stop >&2 || true; fi
}

# bench_start_s3 STATE_DIR BUCKET: use the S3 server that AWS_ENDPOINT_URL names (with the other
# AWS_* variables as set), or start a SeaweedFS of scripts/s3.sh with its state in STATE_DIR and
# BUCKET created, and export the AWS_* variables that reach it. S3_PID is then its PID, which
# bench_stop_s3 stops (scripts/s3.sh stop signals that recorded PID only), and empty otherwise.
bench_start_s3() {
  S3_PID=""
  S3_STARTED_DIR=""
  [[ -n "${AWS_ENDPOINT_URL:-}" ]] && return 0
  log "starting a SeaweedFS (scripts/s3.sh, state in $1)"
  S3_STARTED_DIR="$1"
  S3_STATE_DIR="$1" S3_BUCKETS="$2" "$ROOT/scripts/s3.sh" start >/dev/null
  eval "$(S3_STATE_DIR="$1" "$ROOT/scripts/s3.sh" env)"
  S3_PID="$(cat "$1/weed.pid")"
}
bench_stop_s3() {
  if [[ -n "${S3_STARTED_DIR:-}" ]]; then
    log "stopping the S3 server this script started (pid ${S3_PID:-?})"
    S3_STATE_DIR="$S3_STARTED_DIR" "$ROOT/scripts/s3.sh" stop >&2 || true
  fi
}

# bench_setup_spark LOGDIR: pyspark 3.5.7 from PyPI in scripts/bench/.venv-spark and the Kafka
# connector jars from Maven Central (never --packages). Sets SPARK_OK=1, or SPARK_WHY to the reason.
bench_setup_spark() {
  SPARK_OK=0
  SPARK_WHY=""
  if [[ ! -x "$BENCH/.venv-spark/bin/spark-submit" ]] || ! "$BENCH/.venv-spark/bin/python" -c 'import pyspark; assert pyspark.__version__ == "3.5.7"' 2>/dev/null; then
    log "creating scripts/bench/.venv-spark (pyspark 3.5.7 from PyPI)"
    { python3 -m venv "$BENCH/.venv-spark" && "$BENCH/.venv-spark/bin/pip" install -q 'pyspark==3.5.7'; } >&2 || SPARK_WHY="pip install pyspark==3.5.7 failed"
  fi
  if [[ -z "$SPARK_WHY" && ! -f "$BENCH/spark/jars/.complete" ]]; then
    log "fetching spark-sql-kafka-0-10_2.12 and its dependencies (Maven Central)"
    rm -rf "$BENCH/spark/jars"
    if mvn -q -f "$BENCH/spark/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$BENCH/spark/jars" >"$1/mvn-spark.log" 2>&1; then
      touch "$BENCH/spark/jars/.complete"
    else
      SPARK_WHY="maven fetch of the Kafka connector failed (see logs/mvn-spark.log)"
    fi
  fi
  if [[ -z "$SPARK_WHY" ]]; then SPARK_OK=1; else log "Spark skipped: $SPARK_WHY"; fi
}
# The connector jars, comma-separated, for spark-submit --jars.
bench_spark_jars() { find "$BENCH/spark/jars" -name '*.jar' | sort | paste -sd, -; }

# bench_setup_spark_s3a LOGDIR: after bench_setup_spark, the s3a file system's jars (hadoop-aws
# 3.3.4, the Hadoop of the pyspark 3.5.7 wheel, and aws-java-sdk-bundle 1.12.262) from Maven Central
# into scripts/bench/spark/jars-s3a (spark/pom-s3a.xml; never --packages), once. Sets SPARK_S3_OK=1,
# or SPARK_WHY to the reason.
bench_setup_spark_s3a() {
  SPARK_S3_OK=0
  if [[ ! -f "$BENCH/spark/jars-s3a/.complete" ]]; then
    log "fetching hadoop-aws 3.3.4 and aws-java-sdk-bundle 1.12.262 (Maven Central)"
    rm -rf "$BENCH/spark/jars-s3a"
    if mvn -q -f "$BENCH/spark/pom-s3a.xml" org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$BENCH/spark/jars-s3a" >"$1/mvn-spark-s3a.log" 2>&1; then
      touch "$BENCH/spark/jars-s3a/.complete"
    else
      SPARK_WHY="maven fetch of hadoop-aws failed (see logs/mvn-spark-s3a.log)"
    fi
  fi
  if [[ -f "$BENCH/spark/jars-s3a/.complete" ]]; then SPARK_S3_OK=1; else log "Spark on S3 skipped: $SPARK_WHY"; fi
}
# The s3a jars, comma-separated, to add to bench_spark_jars for an s3a:// output.
bench_spark_s3a_jars() { find "$BENCH/spark/jars-s3a" -name '*.jar' | sort | paste -sd, -; }

# bench_setup_spark_delta LOGDIR: after bench_setup_spark, Delta Lake for Spark 3.5 (delta-spark_2.12
# and delta-storage 3.3.3 from Maven Central into scripts/spark-delta/jars, by
# scripts/spark-delta/setup.sh, which reuses scripts/bench/.venv-spark; never --packages). Sets
# SPARK_DELTA_OK=1, or SPARK_WHY to the reason.
bench_setup_spark_delta() {
  SPARK_DELTA_OK=0
  if [[ ! -f "$ROOT/scripts/spark-delta/jars/.complete" ]]; then
    log "fetching delta-spark_2.12 and delta-storage 3.3.3 (scripts/spark-delta/setup.sh, Maven Central)"
  fi
  if "$ROOT/scripts/spark-delta/setup.sh" 2>"$1/spark-delta-setup.log"; then
    SPARK_DELTA_OK=1
  else
    SPARK_WHY="scripts/spark-delta/setup.sh failed (see logs/spark-delta-setup.log)"
    log "Spark with Delta skipped: $SPARK_WHY"
  fi
}
# The Delta jars, comma-separated, to add to bench_spark_jars for SPARK_FORMAT=delta.
bench_spark_delta_jars() { find "$ROOT/scripts/spark-delta/jars" -name '*.jar' | sort | paste -sd, -; }

# sample_tree_rss ROOT_PID OUTFILE: peak RSS (KiB) of a process tree, sampled every 0.25 s with ps
# (the sum over the tree at one moment), rewritten to OUTFILE at every sample.
sample_tree_rss() {
  local root="$1" out="$2" peak=0 now
  while kill -0 "$root" 2>/dev/null; do
    now="$(ps -e -o pid=,ppid=,rss= | awk -v r="$root" '
      { pp[$1]=$2; rss[$1]=$3 }
      END { for (p in pp) { q=p; n=0; while (q!="" && q!=0 && n<64) { if (q==r) { s+=rss[p]; break } q=pp[q]; n++ } } print s+0 }')"
    if (( now > peak )); then peak="$now"; fi
    echo "$peak" >"$out"
    sleep 0.25
  done
}

# bench_machine_meta BIN: the machine and versions, as key=value lines for meta.txt.
bench_machine_meta() {
  echo "nproc=$(nproc)"
  echo "memory=$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "kernel=$(uname -r)"
  echo "streamlake_rev=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+dirty')"
  echo "streamlake_sha256=$(sha256sum "$1" | cut -c1-16)"
  echo "kafka=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")"
}
