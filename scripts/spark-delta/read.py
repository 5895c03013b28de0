"""Reads a Delta table with Spark 3.5 and Delta Lake's own reader (delta-spark), and prints ONE JSON
line in the shape of tests/py/delta_read.py: the Delta reader that streamlake's Delta tables must
satisfy besides delta-rs. Run through scripts/spark-delta/read.sh, which passes the jars and the
Delta configuration:

    scripts/spark-delta/read.sh TABLE [--key id] [--time ts] [--value value] [--window-s 10]

Output: {"reader": "spark", "version": V, "rows": N, "rows_per_key": {"<key>": n},
         "windows": {"<key>|<window end, epoch ms>": {"count": n, "sum": s}},
         "txn": {"<appId>": version}, "files": F}

- version: the newest of DESCRIBE HISTORY; the rows are then read at that version (versionAsOf),
  so every number describes one snapshot even if a writer commits meanwhile.
- windows: Spark's own window(ts, "<w> seconds") (tumbling, aligned to the epoch) groups the
  rows; a window's sum is math.fsum of its values collected to the driver, as delta_read.py does,
  so that the readers agree to the last bit and differences are real. An integer --time column is
  taken as epoch milliseconds.
- txn: the application transactions of that snapshot, from Delta's Scala API (DeltaLog's
  Snapshot.transactions; Spark SQL has no statement that shows them).
- files: the files Spark reads for the snapshot (DataFrame.inputFiles).

Exit 0 with the JSON on stdout; exit 2 with a message on stderr when the table cannot be read.
"""

import argparse
import json
import math
import os
import sys


def key_str(v):
    if v is None:
        return "null"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def read(spark, a):
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegralType, TimestampNTZType, TimestampType

    quoted = "delta.`" + a.table.replace("`", "``") + "`"
    version = spark.sql(f"DESCRIBE HISTORY {quoted}").agg(F.max("version")).first()[0]
    df = spark.read.format("delta").option("versionAsOf", version).load(a.table)

    ttype = df.schema[a.time].dataType
    if isinstance(ttype, (TimestampType, TimestampNTZType)):
        ts = F.col(a.time)
    elif isinstance(ttype, IntegralType):
        ts = F.timestamp_millis(F.col(a.time))
    else:
        raise TypeError(f"column {a.time} is {ttype.simpleString()}, not a timestamp or an integer")
    # One aggregation: rows and rows per key are the window counts added up on the driver.
    grouped = (df.groupBy(F.col(a.key).alias("k"), F.window(ts, f"{a.window_s} seconds").alias("w"))
               .agg(F.count(F.lit(1)).alias("n"), F.collect_list(a.value).alias("vs"))
               .select("k", F.unix_millis(F.col("w.end")).alias("end"), "n", "vs").collect())
    rows, per_key, windows = 0, {}, {}
    for r in grouped:
        if r["end"] is None:
            raise ValueError("a row has a null event time")
        k = key_str(r["k"])
        rows += r["n"]
        per_key[k] = per_key.get(k, 0) + r["n"]
        windows[f"{k}|{r['end']}"] = {"count": r["n"], "sum": math.fsum(r["vs"])}

    jvm = spark.sparkContext._jvm
    snapshot = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, a.table).unsafeVolatileSnapshot()
    if snapshot.version() != version:
        raise RuntimeError(f"the table moved from version {version} to {snapshot.version()} while being read")
    txn = dict(jvm.scala.collection.JavaConverters.mapAsJavaMap(snapshot.transactions()))

    return {"reader": "spark", "version": version, "rows": rows, "rows_per_key": dict(sorted(per_key.items())),
            "windows": dict(sorted(windows.items())), "txn": {k: int(v) for k, v in sorted(txn.items())},
            "files": len(df.inputFiles())}


def main(argv):
    p = argparse.ArgumentParser(description="Read a Delta table with Spark; print one JSON line.")
    p.add_argument("table")
    p.add_argument("--key", default="id")
    p.add_argument("--time", default="ts")
    p.add_argument("--value", default="value")
    p.add_argument("--window-s", type=int, default=10)
    a = p.parse_args(argv[1:])  # exits 2 on bad arguments
    if a.window_s <= 0:
        p.error("--window-s must be positive")
    spark = None
    try:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.appName("streamlake-delta-read").getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        out = read(spark, a)
    except Exception as e:  # noqa: BLE001 - any failure to read is the result to report
        # A Java exception's text carries its whole stack trace: the first lines say what failed.
        lines = str(e).strip().splitlines()
        msg = "\n".join(lines[:12] + ([f"... ({len(lines) - 12} more lines)"] if len(lines) > 12 else []))
        print(f"read.py (spark) {a.table}: {type(e).__name__}: {msg}", file=sys.stderr)
        return 2
    finally:
        if spark is not None:
            spark.stop()
    line = json.dumps(out)
    if os.environ.get("SPARK_DELTA_READ_OUT"):
        # read.sh: spark-submit merges the Python driver's stderr into its stdout, so the result
        # goes to a file of its own and everything the driver prints goes to read.sh's stderr.
        with open(os.environ["SPARK_DELTA_READ_OUT"], "w") as f:
            f.write(line + "\n")
    else:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
