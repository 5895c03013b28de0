#!/usr/bin/env bash
# Reads a Delta table with Spark 3.5 + Delta Lake (delta-spark) and prints one JSON line on stdout
# (see read.py beside this script for its fields):
#
#   scripts/spark-delta/read.sh TABLE [--key id] [--time ts] [--value value] [--window-s 10]
#
# TABLE is a local folder, or s3://bucket/prefix (read as s3a:// through hadoop-aws, at
# AWS_ENDPOINT_URL with path-style access, the keys from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in
# the environment, never on the command line). Needs scripts/spark-delta/setup.sh to have run
# (pyspark 3.5.7, the Delta jars, the s3a jars); exits 2 with a message if it has not, and 2 when
# the table cannot be read. local[2] (the machine has 2 cores), the Spark UI off, everything on
# 127.0.0.1, logs at ERROR on stderr (log4j2.properties beside this script). The Delta jars go in
# through --jars: never --packages, which would resolve them through Ivy at run time.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${SPARK_DELTA_VENV:-$ROOT/scripts/bench/.venv-spark}"

if [[ ! -x "$VENV/bin/spark-submit" || ! -f "$HERE/jars/.complete" ]]; then
  echo "scripts/spark-delta/read.sh: no pyspark in $VENV or no Delta jars in $HERE/jars: run scripts/spark-delta/setup.sh" >&2
  exit 2
fi
if [[ $# -lt 1 ]]; then
  echo "usage: scripts/spark-delta/read.sh TABLE [--key id] [--time ts] [--value value] [--window-s 10]" >&2
  exit 2
fi
table="$1"
shift
# An absolute path: Spark runs in a scratch folder of its own (below), so that nothing it may
# leave behind (spark-warehouse/, derby.log) lands in the caller's folder.
[[ "$table" == *://* || "$table" == /* ]] || table="$(pwd)/$table"

jars="$(find "$HERE/jars" -name '*.jar' | sort | paste -sd, -)"
s3conf=()
if [[ "$table" == s3://* || "$table" == s3a://* ]]; then
  s3a_jars="$ROOT/scripts/bench/spark/jars-s3a"
  if [[ ! -f "$s3a_jars/.complete" ]]; then
    echo "scripts/spark-delta/read.sh: no s3a jars in $s3a_jars: run scripts/spark-delta/setup.sh" >&2
    exit 2
  fi
  [[ -n "${AWS_ENDPOINT_URL:-}" ]] || { echo "scripts/spark-delta/read.sh: $table needs AWS_ENDPOINT_URL" >&2; exit 2; }
  table="s3a://${table#*://}"
  jars="$jars,$(find "$s3a_jars" -name '*.jar' | sort | paste -sd, -)"
  s3conf=(--conf spark.hadoop.fs.s3a.impl=org.apache.hadoop.fs.s3a.S3AFileSystem
    --conf "spark.hadoop.fs.s3a.endpoint=$AWS_ENDPOINT_URL" --conf spark.hadoop.fs.s3a.path.style.access=true
    --conf "spark.hadoop.fs.s3a.connection.ssl.enabled=$([[ "$AWS_ENDPOINT_URL" == https://* ]] && echo true || echo false)")
fi
scratch="$(mktemp -d "${TMPDIR:-/tmp}/spark-delta-read.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"

# spark-submit sends the Python driver's stderr to its own stdout: read.py writes its JSON line to
# a file instead, all that Spark and the driver print goes to stderr, and then the file to stdout.
rc=0
SPARK_DELTA_READ_OUT="$scratch/result.json" SPARK_LOCAL_IP=127.0.0.1 \
  PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python" \
  "$VENV/bin/spark-submit" --master 'local[2]' --jars "$jars" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.ui.enabled=false --conf spark.driver.bindAddress=127.0.0.1 --conf spark.driver.host=127.0.0.1 \
  --conf spark.sql.shuffle.partitions=2 --conf spark.databricks.delta.snapshotPartitions=2 \
  --conf spark.sql.session.timeZone=UTC \
  --conf "spark.local.dir=$scratch" ${s3conf[@]+"${s3conf[@]}"} \
  --driver-java-options "-Dlog4j2.configurationFile=file:$HERE/log4j2.properties -Dderby.system.home=$scratch" \
  "$HERE/read.py" "$table" "$@" >&2 || rc=$?
if [[ "$rc" != 0 || ! -s "$scratch/result.json" ]]; then
  echo "scripts/spark-delta/read.sh: reading $table failed (exit $rc)" >&2
  exit 2
fi
cat "$scratch/result.json"
