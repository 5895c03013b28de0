"""The Airflow DAG's `aggregate_parquet` task (spark_parquet_validation_dag), as a script.

Reference implementation for tests of `streamlake validate`: the same pandas code the original
platform ran, reading the dataset at PATH with pyarrow, printing the DAG's log lines (head, count
and mean per id, total rows) on stderr and one JSON object on stdout:

    {"status": "ok", "total": N, "per_id": {"0": {"count": c, "mean": m}, ...}, "head": [...]}

status is "path_missing" or "no_files" (exit 0, as the DAG) or "missing_columns" (exit 2).

Usage: python tests/py/dag_validate.py PATH    (needs pandas and pyarrow)
"""

import json
import math
import sys
from pathlib import Path


def log(*args):
    print(*args, file=sys.stderr)


def emit(status, total=0, per_id=None, head=None, columns=None):
    out = {"status": status, "total": total, "per_id": per_id or {}, "head": head or []}
    if columns is not None:
        out["columns"] = columns
    print(json.dumps(out))


def key_text(key):
    # Partition values arrive as categories (ints or strings); numpy ints print like Python ints.
    if isinstance(key, float) and key.is_integer():
        key = int(key)
    return str(key)


def plain(v):
    """A cell as a JSON value, floats at full precision (DataFrame.to_json rounds them)."""
    if v is None:
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def main(argv):
    if len(argv) != 2:
        log(f"usage: {argv[0]} PATH")
        return 64
    base = Path(argv[1])

    import pandas as pd

    if not base.exists():
        log(f"[aggregate_parquet] Path does not exist yet: {base}")
        emit("path_missing")
        return 0

    has_files = any(p.is_file() for p in base.rglob("*.parquet"))
    if not has_files:
        log(f"[aggregate_parquet] No .parquet files found under: {base}")
        emit("no_files")
        return 0

    df = pd.read_parquet(base, engine="pyarrow")

    log("=== DataFrame head ===")
    log(df.head(10))
    head = [{str(k): plain(v) for k, v in rec.items()} for rec in df.head(10).to_dict(orient="records")]

    if "id" not in df.columns or "value" not in df.columns:
        log("[aggregate_parquet] Expected columns 'id' and 'value' not found in dataframe.")
        log(f"Columns present: {list(df.columns)}")
        emit("missing_columns", total=len(df), head=head, columns=[str(c) for c in df.columns])
        return 2

    log("=== Count per id ===")
    counts = df.groupby("id", observed=True)["value"].agg(["count", "mean"]).reset_index()
    log(counts)
    log(f"[aggregate_parquet] Total rows: {len(df)}")

    per_id = {}
    for row in counts.itertuples(index=False):
        mean = float(row.mean)
        per_id[key_text(row.id)] = {"count": int(row.count), "mean": None if math.isnan(mean) else mean}
    emit("ok", total=int(len(df)), per_id=per_id, head=head)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
