"""The original platform's spark/app.py, for the benchmark: same schema, JSON parsing, 10 s
window with a 30 s watermark, average per (window, id), and the raw Parquet sink partitioned by
id. Differences, all needed to run it as a bounded benchmark:

- Trigger.AvailableNow instead of processingTime=10 seconds: read everything in the topic at
  start, then stop (the equivalent of `streamlake run --available-now`);
- startingOffsets=earliest instead of latest (the topic is loaded before the job starts);
- the aggregation goes to a Parquet sink (append mode) instead of the console, like
  `streamlake run --no-console`, which writes final window rows to aggregates/.

Environment: KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, OUTPUT_PATH, RUN_ID (as app.py).
Prints `spark finished: elapsed_s=...` (from session start to both queries stopped).

SPARK_PARTITION_BY (scripts/bench/run.sh --spark-partition-by): `id` (default, the seed's) or
`bucket(id, N)`: the raw sink then partitions by a computed column `id_bucket` = pmod(hash(id), N),
Spark's own murmur3 hash (seed 42), not Iceberg's bucket transform: as many folders as
streamlake's `bucket(id, N)`, but not the same ids in each.

SPARK_TRIGGER=live (used by scripts/bench/freshness.sh) runs the original's trigger instead,
`processingTime` = SPARK_TRIGGER_INTERVAL (default "10 seconds", the seed's), until the process is
stopped (SIGTERM); startingOffsets stays earliest (the freshness topic is empty at start). Unset or
`availableNow`: the benchmark mode above (scripts/bench/run.sh).

OUTPUT_PATH may be an s3a:// URL (scripts/bench/run.sh --output, contender sparks3; the s3a file
system and its endpoint are set by spark-submit's --conf): the access key and secret are then
taken from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (never on a command line), and after both
queries stopped the app prints the requests the s3a file system sent, from its IOStatistics:
`spark object store requests: get=… head=… put=… copy=… list=… delete=… total=… commits=…
per_commit=…`, commits being the micro-batches of both queries (each commits its sink's
`_spark_metadata` log entry). CHECKPOINT_DIR, when set, holds both queries' checkpoints
(CHECKPOINT_DIR/raw, CHECKPOINT_DIR/aggregates) instead of `_chk` inside their output folders:
run.sh keeps them on local disk for the S3 runs, so the requests counted are the sinks' own.

SPARK_FORMAT=delta (scripts/bench/run.sh contender sparkdelta, scripts/bench/freshness.sh
--table-format delta) writes both sinks as Delta Lake tables (`format("delta")`, delta-spark 3.3.3,
whose jars spark-submit gets through --jars from scripts/spark-delta/jars) instead of Parquet: same
paths, same checkpointLocation, same partitioning; the session then gets Delta's SQL extension and
catalog (spark.sql.extensions, spark.sql.catalog.spark_catalog, as scripts/spark-delta/read.sh).
Unset or `parquet`: the seed's Parquet sinks.
"""

import os
import re
import time

from pyspark.sql import SparkSession
from pyspark.sql.functions import col, from_json, lit, pmod, window
from pyspark.sql.functions import hash as spark_hash
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType, TimestampType

kafka_bootstrap = os.getenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
topic = os.getenv("KAFKA_TOPIC", "events")
output_path = os.getenv("OUTPUT_PATH", "/tmp/spark-output/parquet")
run_id = os.getenv("RUN_ID", "local_run")
partition_by = os.getenv("SPARK_PARTITION_BY", "id").strip()
bucket = re.fullmatch(r"bucket\(id,\s*([1-9][0-9]*)\)", partition_by)
if partition_by != "id" and not bucket:
    raise SystemExit(f"SPARK_PARTITION_BY={partition_by!r}: expected id or bucket(id, N)")

sink_format = os.getenv("SPARK_FORMAT", "parquet").strip() or "parquet"
if sink_format not in ("parquet", "delta"):
    raise SystemExit(f"SPARK_FORMAT={sink_format!r}: expected parquet or delta")

checkpoint_dir = os.getenv("CHECKPOINT_DIR", "")
on_s3a = output_path.startswith("s3a://")

t0 = time.time()
builder = SparkSession.builder.appName("KafkaSparkStreaming")
if on_s3a:
    for key, var in (("access.key", "AWS_ACCESS_KEY_ID"), ("secret.key", "AWS_SECRET_ACCESS_KEY")):
        if os.getenv(var):
            builder = builder.config(f"spark.hadoop.fs.s3a.{key}", os.environ[var])
if sink_format == "delta":
    builder = builder.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension").config(
        "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    )
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("WARN")

event_schema = StructType(
    [
        StructField("id", IntegerType(), nullable=False),
        StructField("ts", TimestampType(), nullable=False),
        StructField("value", DoubleType(), nullable=False),
        StructField("source", StringType(), nullable=True),
    ]
)

raw_df = (
    spark.readStream.format("kafka")
    .option("kafka.bootstrap.servers", kafka_bootstrap)
    .option("subscribe", topic)
    .option("startingOffsets", "earliest")
    .load()
)

parsed_df = (
    raw_df.selectExpr("CAST(value AS STRING) as json_str")
    .select(from_json(col("json_str"), event_schema).alias("data"))
    .select("data.*")
)

agg_df = (
    parsed_df.withWatermark("ts", "30 seconds")
    .groupBy(window(col("ts"), "10 seconds").alias("w"), col("id"))
    .avg("value")
    .withColumnRenamed("avg(value)", "avg_value")
    .select(
        col("w.start").alias("window_start"),
        col("w.end").alias("window_end"),
        col("id"),
        col("avg_value"),
    )
)

live = os.getenv("SPARK_TRIGGER", "availableNow") == "live"
trigger = {"processingTime": os.getenv("SPARK_TRIGGER_INTERVAL", "10 seconds")} if live else {"availableNow": True}

run_output_path = os.path.join(output_path, f"run_{run_id}")
agg_output_path = os.path.join(os.path.dirname(output_path.rstrip("/")), "aggregates", f"run_{run_id}")
raw_checkpoint = os.path.join(checkpoint_dir, "raw") if checkpoint_dir else os.path.join(run_output_path, "_chk")
agg_checkpoint = os.path.join(checkpoint_dir, "aggregates") if checkpoint_dir else os.path.join(agg_output_path, "_chk")

agg_query = (
    agg_df.writeStream.outputMode("append")
    .format(sink_format)
    .option("checkpointLocation", agg_checkpoint)
    .option("path", agg_output_path)
    .trigger(**trigger)
    .start()
)

raw_out_df, raw_partition_column = parsed_df, "id"
if bucket:
    raw_out_df = parsed_df.withColumn("id_bucket", pmod(spark_hash(col("id")), lit(int(bucket.group(1)))))
    raw_partition_column = "id_bucket"

parquet_query = (
    raw_out_df.writeStream.outputMode("append")
    .format(sink_format)
    .option("checkpointLocation", raw_checkpoint)
    .option("path", run_output_path)
    .partitionBy(raw_partition_column)
    .trigger(**trigger)
    .start()
)

parquet_query.awaitTermination()
agg_query.awaitTermination()
print(f"spark finished: elapsed_s={time.time() - t0:.2f}", flush=True)


def field(obj, name):
    """A JVM object's field NAME (private, or a Scala private val, whose name may be mangled to
    `…$$NAME`), read by reflection; None if there is no such field."""
    c = obj.getClass()
    while c is not None:
        for f in c.getDeclaredFields():
            if f.getName() == name or f.getName().endswith("$$" + name):
                f.setAccessible(True)
                return f.get(obj)
        c = c.getSuperclass()
    return None


def s3a_file_systems():
    """Every s3a file system instance that wrote the output: the cached one of the output's bucket
    (data files, listings; the driver and the local[N] executors share it) and the one inside each
    query's sink log. Spark writes `_spark_metadata` through a FileContext, whose s3a file system
    is a new, uncached instance (hadoop's `S3A` delegates to `new S3AFileSystem()`), reached here
    through sink -> fileLog -> fileManager -> fc -> defaultFS -> fsImpl."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    found = [jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI(output_path), conf)]
    for q in (parquet_query, agg_query):
        obj = q._jsq.streamingQuery().sink()
        for name in ("fileLog", "fileManager", "fc", "defaultFS", "fsImpl"):
            obj = field(obj, name) if obj is not None else None
        if obj is None:
            print(f"spark: no s3a file system found in the sink log of {q.name or q.id}; its requests are not counted", flush=True)
            continue
        if all(jvm.java.lang.System.identityHashCode(obj) != jvm.java.lang.System.identityHashCode(f) for f in found):
            found.append(obj)
    return found


def s3a_requests():
    """The requests of the output's s3a file systems, by kind, from their IOStatistics counters."""
    counters = [fs.getIOStatistics().counters() for fs in s3a_file_systems()]

    def n(*names):
        return sum(int(c.get(k) or 0) for c in counters for k in names)

    kinds = {
        "get": n("action_http_get_request"),
        "head": n("object_metadata_request"),
        "put": n("object_put_request", "object_multipart_initiated", "object_multipart_aborted"),
        "copy": n("object_copy_requests"),
        "list": n("object_list_request", "object_continue_list_request"),
        "delete": n("object_delete_request", "object_bulk_delete_request"),
    }
    commits = sum((q.lastProgress or {}).get("batchId", -1) + 1 for q in (parquet_query, agg_query))
    total = sum(kinds.values())
    line = " ".join(f"{k}={v}" for k, v in kinds.items())
    return f"{line} total={total} commits={commits} per_commit={total / max(commits, 1):.2f}"


if on_s3a:
    print(f"spark object store requests: {s3a_requests()}", flush=True)
spark.stop()
