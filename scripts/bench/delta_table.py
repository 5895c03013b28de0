"""A Delta table's rows and log, read through its `_delta_log` (never the folder listing), for
scripts/bench/run.sh's Delta contenders (w2delta, sparkdelta).

  delta_table.py stats TABLE [--aggregates AGG_TABLE]    # one JSON line on stdout

TABLE is the raw dataset's table (…/parquet/run_<RUN_ID>), AGG_TABLE the aggregates' table.
Needs the `deltalake` package (scripts/requirements-test.txt pins 1.6.6) and pyarrow.

Fields (for each table; the aggregates' prefixed `agg_`):
- rows: `DeltaTable(TABLE).to_pyarrow_dataset().count_rows()`: the rows of exactly the files the
  newest snapshot holds (each file's Parquet footer is read, so a file the log names but the
  folder lacks fails the count); num_records: the sum of the snapshot's `numRecords` stats (the
  log only; -1 when a file has none). A file in the folder that no commit adds is in neither.
- version: the snapshot's version; commits = version + 1 (version 0 is the table's creation);
- files: the snapshot's data files;
- log_json: `<version>.json` commit files in `_delta_log/`; checkpoints: `*.checkpoint*.parquet`
  files there; log_files / log_bytes: everything in `_delta_log/` (commit files, checkpoints,
  `_last_checkpoint`, Spark's `.crc` files), recursively.

Exit 0 with the JSON; exit 2 with a message on stderr when a table cannot be read.
"""

import argparse
import json
import os
import re
import sys

COMMIT_RE = re.compile(r"^\d{20}\.json$")
CHECKPOINT_RE = re.compile(r"^\d{20}\.checkpoint(\.\d+\.\d+)?(\.[0-9a-f-]+)?\.parquet$")


def log_stats(table):
    log = os.path.join(table, "_delta_log")
    n_json = n_chk = n_files = n_bytes = 0
    for dirpath, _, names in os.walk(log):
        for n in names:
            n_files += 1
            n_bytes += os.path.getsize(os.path.join(dirpath, n))
            if dirpath == log and COMMIT_RE.match(n):
                n_json += 1
            elif dirpath == log and CHECKPOINT_RE.match(n):
                n_chk += 1
    return {"log_json": n_json, "checkpoints": n_chk, "log_files": n_files, "log_bytes": n_bytes}


def table_stats(table):
    from deltalake import DeltaTable

    t = DeltaTable(table)
    version = t.version()
    adds = t.get_add_actions(flatten=True)
    if "num_records" in adds.column_names:
        nr = adds.column("num_records").to_pylist()
        num_records = -1 if any(v is None for v in nr) else int(sum(nr))
    else:
        num_records = -1
    rows = t.to_pyarrow_dataset().count_rows()
    out = {"rows": int(rows), "num_records": num_records, "version": int(version), "commits": int(version) + 1,
           "files": adds.num_rows}
    out.update(log_stats(table))
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stats")
    s.add_argument("table")
    s.add_argument("--aggregates", default="")
    a = ap.parse_args(argv[1:])
    try:
        out = table_stats(a.table)
    except Exception as e:  # noqa: BLE001 - any failure to read is the result to report
        print(f"delta_table.py: {a.table}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if a.aggregates:
        try:
            out.update({f"agg_{k}": v for k, v in table_stats(a.aggregates).items()})
        except Exception as e:  # noqa: BLE001
            print(f"delta_table.py: {a.aggregates}: {type(e).__name__}: {e}", file=sys.stderr)
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
