"""Reads a Delta table back as a reader other than streamlake sees it, and prints ONE JSON object:
the check of `streamlake run --table-format delta` (tests/common/delta.rs runs it).

    python tests/py/delta_read.py TABLE [--key id] [--time ts] [--value value] [--window-s 10]
                                        [--reader deltalake|polars]

TABLE is a local folder or s3://bucket/prefix. For s3:// the standard AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION variables (scripts/s3.sh env) are passed
as storage options, with plain http allowed: the test server listens on http://127.0.0.1.

Readers (both load the log with delta-rs, so the version, the transactions and the file count
always come from deltalake's DeltaTable; the rows come from the reader):
  deltalake  DeltaTable.to_pyarrow_table: delta-rs resolves the files, pyarrow reads them
  polars     polars.read_delta at the same version: polars' own Parquet reader, which takes the
             partition values from the id=K/ folder names of the file paths (hive partitioning),
             not from the log's partitionValues

Output, one line:
  {"version": V, "rows": N, "rows_per_key": {"<key>": n},
   "windows": {"<key>|<window end, epoch ms>": {"count": n, "sum": s}},
   "txn": {"<appId>": version}, "files": F, "reader": "..."}
Windows are tumbling event-time windows of --window-s seconds over --time: a row at t falls in
the window ending floor(t / w) * w + w, in integer arithmetic on the column's own unit (a
timestamp of any unit; an integer column is taken as epoch milliseconds). Sums are math.fsum
(correctly rounded, so independent of the order rows are read in: two readers agree exactly);
compare them with the engine's own sums with a tolerance. Null values count as rows but add
nothing to a sum. Keys are strings: integers as decimal, null as "null".

"txn" is every application transaction (Delta `txn` action, the exactly-once marker of a
streaming writer) of the table: delta-rs has no call that lists them (DeltaTable only answers
transaction_version(app_id) for a known id), so the app ids are collected from the log's JSON
commits and checkpoints, and each one's version is then asked of delta-rs.

Exit 0 with the JSON on stdout; exit 2 with a message on stderr when the table cannot be read.
"""

import argparse
import json
import math
import os
import sys


def storage_options(table):
    """The delta-rs / polars options for an s3:// table from the AWS_* variables; None for a
    local path (and for s3:// without AWS_ENDPOINT_URL: then the libraries' own defaults)."""
    if not table.startswith("s3://") or not os.environ.get("AWS_ENDPOINT_URL"):
        return None
    opts = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                       "AWS_REGION") if os.environ.get(k)}
    opts["AWS_ALLOW_HTTP"] = "true"
    opts["allow_http"] = "true"
    return opts


def key_str(v):
    if v is None:
        return "null"
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


# Units per second of an Arrow/polars time unit.
PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def window_end_ms(t, per_second, window_s):
    """End of the window holding `t` (an integer in 1/per_second seconds), in epoch ms."""
    w = window_s * per_second
    return (t // w * w + w) * 1000 // per_second


def summarize(keys, times, values, per_second, window_s):
    """rows_per_key and windows from three equally long Python lists."""
    rows_per_key, groups = {}, {}
    for k, t, v in zip(keys, times, values):
        k = key_str(k)
        rows_per_key[k] = rows_per_key.get(k, 0) + 1
        if t is None:
            raise ValueError("a row has a null event time")
        groups.setdefault(f"{k}|{window_end_ms(t, per_second, window_s)}", []).append(v)
    windows = {w: {"count": len(vs), "sum": math.fsum(v for v in vs if v is not None)}
               for w, vs in groups.items()}
    return rows_per_key, windows


def rows_deltalake(dt, a):
    import pyarrow as pa

    t = dt.to_pyarrow_table(columns=[a.key, a.time, a.value])
    ts = t.column(a.time)
    if pa.types.is_timestamp(ts.type):
        per_second = PER_SECOND[ts.type.unit]
        ts = ts.cast(pa.int64())
    elif pa.types.is_integer(ts.type):
        per_second = 1_000
    else:
        raise TypeError(f"column {a.time} is {ts.type}, not a timestamp or an integer")
    return t.num_rows, summarize(t.column(a.key).to_pylist(), ts.to_pylist(), t.column(a.value).to_pylist(),
                                 per_second, a.window_s)


def rows_polars(dt, a, opts):
    import polars as pl

    df = pl.read_delta(a.table, version=dt.version(), columns=[a.key, a.time, a.value], storage_options=opts)
    dtype = df.schema[a.time]
    if isinstance(dtype, pl.Datetime):
        per_second = PER_SECOND[dtype.time_unit]
    elif dtype.is_integer():
        per_second = 1_000
    else:
        raise TypeError(f"column {a.time} is {dtype}, not a datetime or an integer")
    ts = df.get_column(a.time).cast(pl.Int64)
    return df.height, summarize(df.get_column(a.key).to_list(), ts.to_list(), df.get_column(a.value).to_list(),
                                per_second, a.window_s)


def log_files(table, opts):
    """(filesystem, [paths]) of the table's _delta_log: commits (*.json) and checkpoints
    (*.checkpoint*.parquet), through pyarrow's file systems (local, or S3 at AWS_ENDPOINT_URL)."""
    from pyarrow import fs

    if table.startswith("s3://"):
        if opts:
            endpoint = opts["AWS_ENDPOINT_URL"]
            scheme, _, host = endpoint.partition("://")
            filesystem = fs.S3FileSystem(access_key=opts.get("AWS_ACCESS_KEY_ID"),
                                         secret_key=opts.get("AWS_SECRET_ACCESS_KEY"),
                                         region=opts.get("AWS_REGION", "us-east-1"),
                                         endpoint_override=host or endpoint, scheme=scheme or "http",
                                         force_virtual_addressing=False)
        else:
            filesystem = fs.S3FileSystem()
        base = table[len("s3://"):].rstrip("/")
    else:
        filesystem = fs.LocalFileSystem()
        base = os.path.abspath(table)
    infos = filesystem.get_file_info(fs.FileSelector(f"{base}/_delta_log", allow_not_found=True))
    paths = [i.path for i in infos if i.type == fs.FileType.File]
    return filesystem, sorted(p for p in paths
                              if p.endswith(".json") and ".checkpoint" not in p.rsplit("/", 1)[-1]
                              or ".checkpoint" in p.rsplit("/", 1)[-1] and p.endswith(".parquet"))


def app_ids(table, opts):
    import pyarrow.parquet as pq

    filesystem, paths = log_files(table, opts)
    ids = set()
    for p in paths:
        if p.endswith(".parquet"):
            with filesystem.open_input_file(p) as f:
                pf = pq.ParquetFile(f)
                if "txn" in pf.schema_arrow.names:
                    for txn in pf.read(columns=["txn"]).column("txn").to_pylist():
                        if txn and txn.get("appId") is not None:
                            ids.add(txn["appId"])
        else:
            with filesystem.open_input_stream(p) as f:
                for line in f.read().decode().splitlines():
                    if '"txn"' in line:
                        txn = json.loads(line).get("txn")
                        if txn and txn.get("appId") is not None:
                            ids.add(txn["appId"])
    return ids


def main(argv):
    p = argparse.ArgumentParser(description="Read a Delta table back; print one JSON object.")
    p.add_argument("table")
    p.add_argument("--key", default="id")
    p.add_argument("--time", default="ts")
    p.add_argument("--value", default="value")
    p.add_argument("--window-s", type=int, default=10)
    p.add_argument("--reader", choices=["deltalake", "polars"], default="deltalake")
    a = p.parse_args(argv[1:])  # exits 2 on bad arguments
    if a.window_s <= 0:
        p.error("--window-s must be positive")
    try:
        from deltalake import DeltaTable

        opts = storage_options(a.table)
        dt = DeltaTable(a.table, storage_options=opts)
        if a.reader == "deltalake":
            rows, (per_key, windows) = rows_deltalake(dt, a)
        else:
            rows, (per_key, windows) = rows_polars(dt, a, opts)
        txn = {}
        for app in sorted(app_ids(a.table, opts)):
            v = dt.transaction_version(app)
            if v is not None:
                txn[app] = v
        out = {"reader": a.reader, "version": dt.version(), "rows": rows,
               "rows_per_key": dict(sorted(per_key.items())), "windows": dict(sorted(windows.items())),
               "txn": txn, "files": len(dt.file_uris())}
    except Exception as e:  # noqa: BLE001 - any failure to read is the result to report
        print(f"delta_read.py ({a.reader}) {a.table}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    # delta-rs's Python binding can abort the interpreter's shutdown ("terminate called without an
    # active exception", delta-io/delta-rs#2184) after everything was read and printed: the
    # result is out, so leave without the shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
