"""Summarize a scripts/bench/run.sh results folder as Markdown (stdlib only).

Usage: python3 scripts/bench/summarize.py RESULTS_DIR > summary.md
Reads RESULTS_DIR/results.csv, meta.txt, rows.csv, requests.csv and delta.jsonl (if present); also writes
RESULTS_DIR/results.json: the machine and versions, every run, and the medians per contender.
"""

import csv
import json
import statistics
import sys
from pathlib import Path

LABELS = {
    "raw": "raw limit, 1 consumer (`examples/raw_consume`)",
    "raw2": "raw limit, 2 consumers (`raw_consume --consumers 2`)",
    "w1": "streamlake `-w 1`",
    "w2": "streamlake `-w 2`",
    "w3": "streamlake `-w 3`",
    "w2delta": "streamlake `-w 2 --table-format delta`",
    "w1-base": "streamlake `-w 1`, baseline binary (`--baseline-bin`)",
    "w2-base": "streamlake `-w 2`, baseline binary (`--baseline-bin`)",
    "n2": "streamlake `-n 2` × `-w 1` (2 processes)",
    "w2s3": "streamlake `-w 2`, output on S3 (`s3://`)",
    "spark": "Spark 3.5 Structured Streaming, `local[2]`, AvailableNow",
    "sparkdelta": "Spark 3.5, Delta sinks (`format(\"delta\")`, delta-spark 3.3.3)",
    "sparks3": "Spark 3.5, output on S3 (`s3a://`, checkpoint on local disk)",
    "validate-streamlake": "`streamlake validate --json`",
    "validate-pandas-dag": "pandas DAG (`tests/py/dag_validate.py`)",
    "validate-duckdb": "DuckDB `read_parquet(hive_partitioning=true)` group by id",
}


def fmt(v, digits):
    return f"{v:,.{digits}f}"


def cell(values, digits):
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med, digits)
    return f"{fmt(med, digits)} ({fmt(min(values), digits)}–{fmt(max(values), digits)})"


def main(argv):
    out = Path(argv[1])
    meta = {}
    for line in (out / "meta.txt").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            meta[k] = v
    rows = list(csv.DictReader((out / "results.csv").open()))
    order = [c for c in LABELS if any(r["contender"] == c for r in rows)]
    by = {c: [r for r in rows if r["contender"] == c and r["exit"] == "0"] for c in order}
    failed = {c: sum(1 for r in rows if r["contender"] == c and r["exit"] != "0") for c in order}

    def med(c, key):
        # Validators report no own elapsed time: their `inner_s` is empty.
        vals = [float(r[key]) for r in by.get(c, []) if r.get(key)]
        return statistics.median(vals) if vals else None

    print(f"## {int(meta.get('events', 0)):,} events, {meta.get('runs')} runs each\n")
    print(f"Reproduce: `{meta.get('command')}`\n")
    print(
        f"Machine: {meta.get('nproc')} cores ({meta.get('cpu')}), {meta.get('memory')} RAM, Linux {meta.get('kernel')}. "
        f"streamlake {meta.get('streamlake_rev')} (binary sha256 {meta.get('streamlake_sha256')}…), "
        f"Kafka {meta.get('kafka')} (single local KRaft broker), {meta.get('java')}, {meta.get('rustc')}"
        + (f", pyspark {meta['pyspark']} + {meta.get('spark_kafka_connector')}" if "pyspark" in meta else "")
        + (f", pandas {meta['pandas']}, pyarrow {meta['pyarrow']}, duckdb {meta['duckdb']}" if "pandas" in meta else "")
        + (f", delta-rs {meta['delta_rs']} (streamlake's Delta writer)" if meta.get("delta_rs") else "")
        + (f", deltalake {meta['deltalake_python']} (the Delta row check)" if meta.get("deltalake_python") else "")
        + (f", Spark's Delta jars: {meta['spark_delta_jars']}" if meta.get("spark_delta_jars") else "")
        + ".\n"
    )
    if "s3_output" in meta:
        print(
            f"S3 output below `{meta['s3_output']}`, server: {meta.get('s3_server')}"
            + (f"; Spark's s3a jars: {meta['spark_s3a_jars']}" if "spark_s3a_jars" in meta else "")
            + ".\n"
        )
    if "spark_skipped" in meta:
        print(f"Spark skipped: {meta['spark_skipped']}\n")
    print("Median (min–max) over the runs. Wall = process start to exit (all processes), events/s = events / wall,")
    print("peak RSS = `/usr/bin/time -v` maximum resident set, summed over the processes started (for Spark: the")
    print("largest process of the tree, the JVM), tree RSS = peak of the sum over the process tree sampled every")
    print("0.25 s with `ps`, CPU = user + sys seconds of the process and its waited-for children, own elapsed = the time")
    print("the program reports itself (`run finished: elapsed_s`, `raw_consume: elapsed_s`, Spark: session start to")
    print("both queries stopped, i.e. without JVM start-up).\n")
    print("| contender | wall s | events/s | peak RSS MB | tree RSS MB | CPU s | own elapsed s | failed runs |")
    print("|---|---|---|---|---|---|---|---|")
    for c in order:
        rs = by[c]
        print(
            f"| {LABELS[c]} | {cell([float(r['wall_s']) for r in rs], 2)} | {cell([float(r['events_per_s']) for r in rs], 0)} "
            f"| {cell([float(r['peak_rss_mb']) for r in rs], 0)} | {cell([float(r['tree_rss_mb']) for r in rs], 0)} "
            f"| {cell([float(r['cpu_s']) for r in rs], 2)} | {cell([float(r['inner_s']) for r in rs if r.get('inner_s')], 2)} "
            f"| {failed[c]} |"
        )
    print()

    ratios = []
    for c in ("w1", "w2", "w3", "n2", "w1-base", "w2-base"):
        if med(c, "wall_s") is None:
            continue
        raw = (("raw", "raw limit, 1 consumer"),) if c.startswith("w1") else (("raw2", "raw limit, 2 consumers"),)
        base = ((f"{c}-base", "the baseline binary"),) if c in ("w1", "w2") else ()
        for ref, name in (("spark", "Spark"),) + raw + base:
            if med(ref, "wall_s") is None:
                continue
            ratios.append(
                f"| {LABELS[c]} / {name} | {med(c, 'events_per_s') / med(ref, 'events_per_s'):.2f} "
                f"| {med(c, 'wall_s') / med(ref, 'wall_s'):.2f} | {med(c, 'peak_rss_mb') / max(med(ref, 'peak_rss_mb'), 1):.2f} "
                f"| {med(c, 'cpu_s') / max(med(ref, 'cpu_s'), 0.01):.2f} |"
            )
    if ratios:
        print("Ratios of medians (throughput > 1 means streamlake is faster; wall, RSS and CPU < 1 mean it uses less):\n")
        print("| ratio | events/s | wall | peak RSS | CPU s |")
        print("|---|---|---|---|---|")
        print("\n".join(ratios))
        print()

    s3_ratios = []
    for c, ref, what in (
        ("w2s3", "w2", "streamlake: S3 / local disk"),
        ("sparks3", "spark", "Spark: S3 / local disk"),
        ("w2s3", "sparks3", "on S3: streamlake / Spark"),
    ):
        if med(c, "wall_s") is None or med(ref, "wall_s") is None:
            continue
        s3_ratios.append(
            f"| {what} | {med(c, 'events_per_s') / med(ref, 'events_per_s'):.2f} "
            f"| {med(c, 'wall_s') / med(ref, 'wall_s'):.2f} | {med(c, 'peak_rss_mb') / max(med(ref, 'peak_rss_mb'), 1):.2f} "
            f"| {med(c, 'cpu_s') / max(med(ref, 'cpu_s'), 0.01):.2f} |"
        )
    if s3_ratios:
        print("S3 against local disk, ratios of medians (CPU s: the contender's own processes, not the S3 server's):\n")
        print("| ratio | events/s | wall | peak RSS | CPU s |")
        print("|---|---|---|---|---|")
        print("\n".join(s3_ratios))
        print()
    delta = read_delta(out)
    print_delta(med, delta)
    requests = read_requests(out)
    if requests:
        print_requests(requests)

    rows_file = out / "rows.csv"
    if rows_file.exists():
        bad = [line for line in rows_file.read_text().splitlines() if line.split(",")[-1] != meta.get("events")]
        if bad:
            print("Row-count check (DuckDB on each run's raw dataset) **failed** for: " + "; ".join(bad) + "\n")
        else:
            how = "DuckDB count" + ("; on S3: pyarrow through the S3 API" if "s3_output" in meta else "")
            if delta:
                how += ("; Delta contenders: the rows of the newest snapshot's files, read through `_delta_log`"
                        f" with deltalake {meta.get('deltalake_python', '?')} (`scripts/bench/delta_table.py`), not the folder listing")
            print(f"Row-count check: every run's raw dataset holds exactly {int(meta['events']):,} rows ({how}).\n")
    write_json(out, meta, rows, order, med, requests, delta)
    vd = out / "validate-dataset.txt"
    if vd.exists():
        print(f"Validators read `{vd.read_text().strip()}` (the last streamlake run).\n")
    return 0


def read_delta(out):
    """delta.jsonl (run.sh's Delta contenders): per run, the raw and aggregates tables' snapshot and log."""
    f = out / "delta.jsonl"
    if not f.exists():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def ratio_row(med, c, ref, what):
    """A Markdown row of the ratios of C's medians to REF's, or None if either has none."""
    if med(c, "wall_s") is None or med(ref, "wall_s") is None:
        return None
    return (
        f"| {what} | {med(c, 'events_per_s') / med(ref, 'events_per_s'):.2f} "
        f"| {med(c, 'wall_s') / med(ref, 'wall_s'):.2f} | {med(c, 'peak_rss_mb') / max(med(ref, 'peak_rss_mb'), 1):.2f} "
        f"| {med(c, 'cpu_s') / max(med(ref, 'cpu_s'), 0.01):.2f} |"
    )


def print_delta(med, delta):
    """The Delta contenders against plain Parquet and Spark, and their tables' logs."""
    rows = [
        ratio_row(med, c, ref, what)
        for c, ref, what in (
            ("w2delta", "w2", "streamlake `-w 2`: Delta / Parquet"),
            ("sparkdelta", "spark", "Spark: Delta / Parquet"),
            ("w2delta", "sparkdelta", "Delta: streamlake `-w 2` / Spark"),
            ("w2delta", "spark", "streamlake `-w 2` Delta / Spark Parquet"),
        )
    ]
    rows = [r for r in rows if r]
    if rows:
        print("Delta Lake, ratios of medians (events/s > 1: the first is faster; wall, RSS, CPU < 1: it uses less):\n")
        print("| ratio | events/s | wall | peak RSS | CPU s |")
        print("|---|---|---|---|---|")
        print("\n".join(rows))
        print()
    if not delta:
        return
    print(
        "Delta tables after each run, median (min–max) over the runs, read through `_delta_log` with deltalake"
        " (`scripts/bench/delta_table.py`): rows = the newest snapshot's rows; commits = its version + 1"
        " (version 0 creates the table; streamlake commits once per Kafka partition per roll, Spark once per"
        " micro-batch per query); commit files = `<version>.json`; checkpoints = `*.checkpoint.parquet`;"
        " log files / KB = all of `_delta_log/` (Spark adds `.crc` files); data files = the snapshot's.\n"
    )
    print("| contender | table | rows | commits | commit files | checkpoints | log files | log KB | data files |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in dict.fromkeys(d["contender"] for d in delta):
        ds = [d for d in delta if d["contender"] == c]
        for table, p in (("raw", ""), ("aggregates", "agg_")):
            def col(k, digits=0, scale=1.0):
                return cell([d[p + k] * scale for d in ds if d.get(p + k) is not None], digits)

            print(
                f"| {LABELS.get(c, c)} | {table} | {col('rows')} | {col('commits')} | {col('log_json')} "
                f"| {col('checkpoints')} | {col('log_files')} | {col('log_bytes', 1, 1 / 1024)} | {col('files')} |"
            )
    print()


def read_requests(out):
    """requests.csv (run.sh --output): per S3 run, the object-store requests by kind, as numbers."""
    f = out / "requests.csv"
    if not f.exists():
        return []
    return [
        {k: (float(v) if k not in ("contender", "run") and v != "" else v) for k, v in r.items()}
        for r in csv.DictReader(f.open())
    ]


def print_requests(requests):
    kinds = ("get", "head", "put", "create", "copy", "list", "delete")
    print(
        "Object-store requests per run, median (min–max) over the runs. streamlake counts every request"
        " its process sent (`object store requests:` after `run finished`, lease renewals included);"
        " Spark those of its s3a file system (IOStatistics counters; its checkpoint is on local disk,"
        " so none of it is here); commits: streamlake's commits, Spark's micro-batches of both queries"
        " (each commits its sink's `_spark_metadata` entry). Server CPU s: the S3 server's CPU during"
        " the run (when run.sh started it), not in the contender's CPU s above.\n"
    )
    print("| contender | " + " | ".join(kinds) + " | total | commits | requests per commit | server CPU s |")
    print("|---|" + "---|" * (len(kinds) + 4))
    for c in dict.fromkeys(r["contender"] for r in requests):
        rs = [r for r in requests if r["contender"] == c]

        def col(k, digits=0):
            vals = [r[k] for r in rs if r.get(k) not in ("", None)]
            return cell(vals, digits)

        print(
            f"| {LABELS.get(c, c)} | " + " | ".join(col(k) for k in kinds)
            + f" | {col('total')} | {col('commits')} | **{col('per_commit', 2)}** | {col('server_cpu_s', 2)} |"
        )
    print()


def write_json(out, meta, rows, order, med, requests=(), delta=()):
    """The raw results, for tools: meta, every run (numbers as numbers), medians of successful runs."""
    def num(v):
        try:
            f = float(v)
            return int(f) if f.is_integer() and "." not in v else f
        except (TypeError, ValueError):
            return v

    keys = ("wall_s", "events_per_s", "peak_rss_mb", "tree_rss_mb", "cpu_s", "inner_s", "requests_per_commit")
    doc = {
        "meta": meta,
        "runs": [{k: num(v) for k, v in r.items()} for r in rows],
        "medians": {c: {k: med(c, k) for k in keys if any(r.get(k) for r in rows)} for c in order},
    }
    rows_file = out / "rows.csv"
    if rows_file.exists():
        doc["row_counts"] = [
            # "?": DuckDB could not read the dataset (a failed or stopped run wrote no file)
            {"contender": a, "run": int(b), "rows": int(n) if n.isdigit() else None}
            for a, b, n in (line.split(",") for line in rows_file.read_text().splitlines() if line)
        ]
    if delta:
        doc["delta"] = list(delta)
    if requests:
        doc["requests"] = [{k: (None if v == "" else v) for k, v in r.items()} for r in requests]
        doc["requests_per_commit_median"] = {
            c: statistics.median(r["per_commit"] for r in requests if r["contender"] == c and r["per_commit"] != "")
            for c in dict.fromkeys(r["contender"] for r in requests)
            if any(r["contender"] == c and r["per_commit"] != "" for r in requests)
        }
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
