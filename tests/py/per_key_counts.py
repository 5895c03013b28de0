"""Rows per id, counted by one reader, as one JSON line: the read-back check of partitioned
datasets (scripts/bench/cardinality.sh), where every reader must find exactly what the topic holds.

    python tests/py/per_key_counts.py kafka --brokers HOST:PORT --topic T   (confluent-kafka)
    python tests/py/per_key_counts.py pandas PATH    pd.read_parquet(PATH), the seed DAG's way
    python tests/py/per_key_counts.py duckdb PATH    read_parquet('PATH/**/*.parquet', hive_partitioning=true)
    python tests/py/per_key_counts.py spark PATH     spark.read.parquet(PATH) (needs pyspark)

`kafka` is the truth: a plain consumer reads every record of the topic (low to high watermark of
each partition) and counts the JSON events by their `id`; records that are not such an event are
counted as `bad`. The others read the dataset at PATH (streamlake's OUTPUT_PATH, whose `run_*`
folders hold `<column>=<value>/` folders of any partitioning: `id=`, `id_bucket=`, `ts_day=`, ...).

Output: {"reader": ..., "total": N, "ids": K, "per_id": {"<id>": n, ...}, "seconds": s}
(`bad` too for kafka). Exit 1 with a message on stderr when the reader fails.
"""

import json
import sys
import time


def key(v):
    # Hive folder values come back as categories or strings; the `id` column as numpy ints.
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def from_kafka(brokers, topic):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": brokers, "group.id": "per-key-counts", "enable.auto.commit": False,
                  "enable.partition.eof": False})
    meta = c.list_topics(topic, timeout=30)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        raise SystemExit(f"topic {topic} not found on {brokers}")
    want, assign = {}, []
    for p in meta.topics[topic].partitions:
        low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        if high > low:
            want[p] = high
            assign.append(TopicPartition(topic, p, low))
    c.assign(assign)
    per_id, bad, done = {}, 0, set()
    deadline = time.time() + 600
    while len(done) < len(want):
        if time.time() > deadline:
            raise SystemExit(f"did not reach the end of {topic} in 600 s")
        for m in c.consume(num_messages=10000, timeout=1.0):
            if m.error():
                raise SystemExit(f"consumer error: {m.error()}")
            try:
                k = key(json.loads(m.value())["id"])
                per_id[k] = per_id.get(k, 0) + 1
            except (TypeError, ValueError, KeyError):
                bad += 1
            if m.offset() + 1 >= want[m.partition()]:
                done.add(m.partition())
    c.close()
    return per_id, {"bad": bad}


def from_pandas(path):
    import pandas as pd

    df = pd.read_parquet(path, columns=["id"])
    return {key(k): int(n) for k, n in df.groupby("id", observed=True).size().items()}, {}


def from_duckdb(path):
    import duckdb

    # DuckDB prints a progress bar to stdout once a query passes 2 s, into this script's JSON
    duckdb.sql("set enable_progress_bar = false")
    rows = duckdb.sql(
        f"select id, count(*) from read_parquet('{path}/**/*.parquet', hive_partitioning=true) group by id"
    ).fetchall()
    return {key(k): int(n) for k, n in rows}, {}


def from_spark(path):
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.appName("per-key-counts").master("local[2]")
             .config("spark.ui.enabled", "false").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1").getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    rows = spark.read.parquet(path).groupBy("id").count().collect()
    spark.stop()
    return {key(r["id"]): int(r["count"]) for r in rows}, {}


def main(argv):
    if len(argv) >= 2 and argv[1] == "kafka":
        args = dict(zip(argv[2::2], argv[3::2]))
        if "--brokers" not in args or "--topic" not in args:
            print(__doc__, file=sys.stderr)
            return 2
        run = lambda: from_kafka(args["--brokers"], args["--topic"])  # noqa: E731
    elif len(argv) == 3 and argv[1] in ("pandas", "duckdb", "spark"):
        run = lambda: {"pandas": from_pandas, "duckdb": from_duckdb, "spark": from_spark}[argv[1]](argv[2])  # noqa: E731
    else:
        print(__doc__, file=sys.stderr)
        return 2
    t0 = time.time()
    try:
        per_id, extra = run()
    except Exception as e:  # noqa: BLE001 - any reader failure is the result to report
        print(f"{argv[1]} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    out = {"reader": argv[1], "total": sum(per_id.values()), "ids": len(per_id),
           "per_id": dict(sorted(per_id.items())), "seconds": round(time.time() - t0, 2)}
    out.update(extra)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
