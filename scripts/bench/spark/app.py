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

t0 = time.time()
spark = SparkSession.builder.appName("KafkaSparkStreaming").getOrCreate()
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

agg_query = (
    agg_df.writeStream.outputMode("append")
    .format("parquet")
    .option("checkpointLocation", os.path.join(agg_output_path, "_chk"))
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
    .format("parquet")
    .option("checkpointLocation", os.path.join(run_output_path, "_chk"))
    .option("path", run_output_path)
    .partitionBy(raw_partition_column)
    .trigger(**trigger)
    .start()
)

parquet_query.awaitTermination()
agg_query.awaitTermination()
print(f"spark finished: elapsed_s={time.time() - t0:.2f}", flush=True)
spark.stop()
