#!/usr/bin/env bash
# Installs what scripts/spark-delta/read.sh needs, once; quick and silent when it is all there:
#
#   scripts/spark-delta/setup.sh       prints nothing on success; on failure, what failed (stderr), exit 1
#
# - pyspark 3.5.7 from PyPI, in the venv of the benchmarks (scripts/bench/.venv-spark, made by
#   scripts/bench/common.sh's bench_setup_spark with the same check), reused when it has exactly
#   that pyspark: one 300 MB Spark on the machine, not two. SPARK_DELTA_VENV names another venv.
# - delta-spark_2.12 and delta-storage from Maven Central (pom.xml beside this script) into
#   scripts/spark-delta/jars, marked done by jars/.complete. spark-submit gets them through --jars:
#   never --packages, which would resolve through Ivy at run time.
# - the s3a file system, for tables on S3: hadoop-aws 3.3.4 (the Hadoop of the pyspark wheel) and
#   aws-java-sdk-bundle 1.12.262 (~280 MB) from Maven Central, with scripts/bench/spark/pom-s3a.xml
#   into scripts/bench/spark/jars-s3a: the same jars and folder as the benchmarks' Spark on S3.
#
# Needs python3 (with venv), Java 17 and Maven, as scripts/test.sh does. The logs of a failed
# install are kept in scripts/spark-delta/setup-*.log.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${SPARK_DELTA_VENV:-$ROOT/scripts/bench/.venv-spark}"
JARS="$HERE/jars"
PYSPARK_VERSION=3.5.7

fail() {
  printf '[spark-delta/setup.sh] ERROR: %s\n' "$*" >&2
  exit 1
}

# The same test as bench_setup_spark: a spark-submit, and exactly this pyspark.
venv_ok() {
  [[ -x "$VENV/bin/spark-submit" ]] &&
    "$VENV/bin/python" -c "import pyspark; assert pyspark.__version__ == '$PYSPARK_VERSION'" 2>/dev/null
}

if ! venv_ok; then
  log="$HERE/setup-pip.log"
  { python3 -m venv "$VENV" && "$VENV/bin/pip" install --disable-pip-version-check --no-input -q \
      "pyspark==$PYSPARK_VERSION"; } >"$log" 2>&1 ||
    fail "pip install pyspark==$PYSPARK_VERSION into $VENV failed (see $log)"
  venv_ok || fail "$VENV has no working pyspark $PYSPARK_VERSION after install (see $log)"
  rm -f "$log"
fi

# fetch_jars POM DIR LOG_NAME WHAT GLOB...: copies POM's runtime jars into DIR once (DIR/.complete
# marks it done); every GLOB must match a jar there, or nothing counts as fetched.
fetch_jars() {
  local pom="$1" dir="$2" log="$HERE/$3" what="$4" glob
  shift 4
  [[ -f "$dir/.complete" ]] && return 0
  rm -rf "$dir"
  mvn -q -B -f "$pom" org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$dir" >"$log" 2>&1 ||
    fail "maven fetch of $what failed (see $log)"
  # All the jars or nothing: a partial folder must not pass for a finished one.
  for glob in "$@"; do
    compgen -G "$dir/$glob" >/dev/null || fail "maven left no $glob in $dir (see $log)"
  done
  touch "$dir/.complete"
  rm -f "$log"
}

fetch_jars "$HERE/pom.xml" "$JARS" setup-mvn.log "delta-spark" 'delta-spark_2.12-*.jar' 'delta-storage-*.jar'
fetch_jars "$ROOT/scripts/bench/spark/pom-s3a.xml" "$ROOT/scripts/bench/spark/jars-s3a" setup-mvn-s3a.log \
  "hadoop-aws and the AWS SDK bundle" 'hadoop-aws-*.jar' 'aws-java-sdk-bundle-*.jar'
