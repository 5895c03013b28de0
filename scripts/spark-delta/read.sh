#!/usr/bin/env bash
# Reads a Delta table with Spark 3.5 + Delta Lake (delta-spark) and prints one JSON line on stdout
# (see read.py beside this script for its fields):
#
#   scripts/spark-delta/read.sh TABLE [--key id] [--time ts] [--value value] [--window-s 10]
#
# TABLE is a local folder (the Spark here has no s3a file system). Needs scripts/spark-delta/setup.sh
# to have run (pyspark 3.5.7 and the Delta jars); exits 2 with a message if it has not, and 2 when
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
  --conf "spark.local.dir=$scratch" \
  --driver-java-options "-Dlog4j2.configurationFile=file:$HERE/log4j2.properties -Dderby.system.home=$scratch" \
  "$HERE/read.py" "$table" "$@" >&2 || rc=$?
if [[ "$rc" != 0 || ! -s "$scratch/result.json" ]]; then
  echo "scripts/spark-delta/read.sh: reading $table failed (exit $rc)" >&2
  exit 2
fi
cat "$scratch/result.json"
