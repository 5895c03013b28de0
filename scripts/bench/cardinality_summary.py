"""Summarize a scripts/bench/cardinality.sh folder as Markdown (stdlib only).

Usage: python3 scripts/bench/cardinality_summary.py DIR > summary.md
Reads DIR/meta.txt, DIR/k<K>-<layout>/results.json and meta.txt (written by run.sh),
DIR/files.csv and DIR/readback/*.json; writes DIR/results.json (the series and the read-back).
"""

import csv
import json
import statistics
import sys
from pathlib import Path

LAYOUTS = {"id": "`id` (identity)", "bucket16": "`bucket(id, 16)`", "day": "`day(ts)`"}
CONTENDERS = {"w2": "streamlake `-w 2`", "spark": "Spark 3.5, `local[2]`"}
RSS_GOAL_MB = 250
SPEED_GOAL = 0.5


def read_meta(path):
    meta = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                meta[k] = v
    return meta


def series(out, meta):
    files = {}
    if (out / "files.csv").exists():
        for r in csv.DictReader((out / "files.csv").open()):
            files[(int(r["ids"]), r["layout"], r["contender"])] = (int(r["files"]), int(r["bytes"]))
    rows = []
    ids = [int(k) for k in meta.get("ids", "").split(",") if k]
    for k in ids:
        for layout in ("id", "bucket16", "day"):
            d = out / f"k{k}-{layout}"
            if not (d / "results.json").exists():
                continue
            doc = json.loads((d / "results.json").read_text())
            counts = {(c["contender"], c["run"]): c["rows"] for c in doc.get("row_counts", [])}
            for c in CONTENDERS:
                runs = [r for r in doc["runs"] if r["contender"] == c]
                if not runs:
                    continue
                ok = [r for r in runs if r["exit"] == 0]
                n_files, n_bytes = files.get((k, layout, c), (None, None))
                rows.append({
                    "ids": k,
                    "layout": layout,
                    "contender": c,
                    "runs": len(runs),
                    "ok_runs": len(ok),
                    "exits": sorted({r["exit"] for r in runs}),
                    # wall of the failed runs: one that lasted the --spark-timeout was stopped
                    "failed_wall_s": max((r["wall_s"] for r in runs if r["exit"] != 0), default=None),
                    "events": int(doc["meta"].get("events", 0)),
                    "events_per_s": statistics.median(r["events_per_s"] for r in ok) if ok else None,
                    "wall_s": statistics.median(r["wall_s"] for r in ok) if ok else None,
                    "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in ok) if ok else None,
                    "cpu_s": statistics.median(r["cpu_s"] for r in ok) if ok else None,
                    "files": n_files,
                    "bytes_per_file": (n_bytes / n_files) if n_files else None,
                    "rows_ok": all(counts.get((c, r["run"])) == int(doc["meta"]["events"]) for r in ok) if ok else None,
                })
    return rows


def readback(out):
    rb = out / "readback"
    truth_file = rb / "kafka.json"
    if not truth_file.exists() or not truth_file.read_text().strip():
        return None
    truth = json.loads(truth_file.read_text())
    results = []
    datasets = {}
    if (rb / "datasets.csv").exists():
        for line in (rb / "datasets.csv").read_text().splitlines():
            layout, path = line.split(",", 1)
            datasets[layout] = path
    for layout in datasets:
        for reader in ("pandas", "duckdb", "spark"):
            f = rb / f"{layout}-{reader}.json"
            if not f.exists():
                continue
            text = f.read_text().strip()
            if not text:
                err = (rb / f"{layout}-{reader}.err").read_text().strip().splitlines()
                results.append({"layout": layout, "reader": reader, "ok": False,
                                "why": err[-1] if err else "no output"})
                continue
            got = json.loads(text)
            differ = sorted(set(got["per_id"]) ^ set(truth["per_id"]) | {
                k for k in set(got["per_id"]) & set(truth["per_id"]) if got["per_id"][k] != truth["per_id"][k]})
            results.append({"layout": layout, "reader": reader, "ok": not differ and got["total"] == truth["total"],
                            "total": got["total"], "ids": got["ids"], "ids_differing": len(differ),
                            "examples": differ[:5], "seconds": got.get("seconds")})
    return {"truth": {"total": truth["total"], "ids": truth["ids"], "bad": truth.get("bad", 0)},
            "datasets": datasets, "results": results}


def num(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def main(argv):
    out = Path(argv[1])
    meta = read_meta(out / "meta.txt")
    rows = series(out, meta)
    back = readback(out)
    first = next((read_meta(out / f"k{r['ids']}-{r['layout']}" / "meta.txt") for r in rows), {})
    timeout = meta.get("spark_timeout_s")

    print(f"## Cardinality: {int(meta.get('events', 0)):,} events per topic, {meta.get('runs')} run(s) each\n")
    print(f"Reproduce: `{meta.get('command')}`\n")
    if first:
        print(f"Machine: {first.get('nproc')} cores ({first.get('cpu')}), {first.get('memory')} RAM. "
              f"streamlake {first.get('streamlake_rev')} (binary sha256 {first.get('streamlake_sha256')}…), "
              f"Kafka {first.get('kafka')}" + (f", pyspark {first['pyspark']}" if "pyspark" in first else "") + ".\n")
    print("Median over the runs. events/s = events / wall (process start to exit), peak RSS = `/usr/bin/time -v`")
    print("maximum resident set (for Spark the JVM), files = visible Parquet files of the raw dataset (last run),")
    print("bytes/file = their mean size. Spark partitions the bucket rows by pmod(hash(id), 16), its own hash.\n")
    print("| ids | partition_by | contender | events/s | wall s | peak RSS MB | CPU s | files | bytes/file | rows = events |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["ok_runs"] == 0:
            stopped = timeout and (124 in r["exits"] or (r["failed_wall_s"] or 0) >= float(timeout))
            why = f"did not finish in {timeout} s" if stopped else f"failed (exit {r['exits']})"
            partial = f"{num(r['files'])} (partial)" if r["files"] else "–"
            print(f"| {r['ids']:,} | {LAYOUTS[r['layout']]} | {CONTENDERS[r['contender']]} | **{why}** | – | – | – "
                  f"| {partial} | {num(r['bytes_per_file'])} | – |")
            continue
        rows_ok = {True: "yes", False: "**NO**", None: "–"}[r["rows_ok"]]
        print(f"| {r['ids']:,} | {LAYOUTS[r['layout']]} | {CONTENDERS[r['contender']]} | {num(r['events_per_s'])} "
              f"| {num(r['wall_s'], 2)} | {num(r['peak_rss_mb'])} | {num(r['cpu_s'], 2)} | {num(r['files'])} "
              f"| {num(r['bytes_per_file'])} | {rows_ok} |")
    print()

    goals = []
    sl = {(r["ids"], r["layout"]): r for r in rows if r["contender"] == "w2" and r["ok_runs"]}
    ids = sorted({r["ids"] for r in rows})
    if ids:
        top, low = ids[-1], ids[0]
        for layout in ("id", "bucket16"):
            r = sl.get((top, layout))
            if r:
                verdict = "met" if r["peak_rss_mb"] <= RSS_GOAL_MB else "**not met**"
                goals.append(f"- peak RSS at {top:,} ids, {LAYOUTS[layout]}: {r['peak_rss_mb']:,.0f} MB "
                             f"(goal ≤ {RSS_GOAL_MB} MB: {verdict})")
        a, b = sl.get((top, "bucket16")), sl.get((low, "bucket16"))
        if a and b and top != low:
            ratio = a["events_per_s"] / b["events_per_s"]
            verdict = "met" if ratio >= SPEED_GOAL else "**not met**"
            goals.append(f"- events/s at {top:,} ids / at {low:,} ids, `bucket(id, 16)`: {ratio:.2f} "
                         f"(goal: within 2×, i.e. ≥ {SPEED_GOAL}: {verdict})")
        a, b = sl.get((top, "id")), sl.get((low, "id"))
        if a and b and top != low:
            goals.append(f"- events/s at {top:,} ids / at {low:,} ids, identity: "
                         f"{a['events_per_s'] / b['events_per_s']:.2f} (no goal)")
        for k in ids:
            s, w = (next((r for r in rows if r["ids"] == k and r["layout"] == "id" and r["contender"] == c
                          and r["ok_runs"]), None) for c in ("spark", "w2"))
            if s and w:
                goals.append(f"- {k:,} ids, identity: streamlake / Spark events/s {w['events_per_s'] / s['events_per_s']:.2f}, "
                             f"peak RSS {w['peak_rss_mb'] / max(s['peak_rss_mb'], 1):.2f}")
    if goals:
        print("Against the goals of issue 20, and ratios:\n")
        print("\n".join(goals))
        print()

    if back:
        t = back["truth"]
        print(f"Read-back of the {ids[-1]:,}-id topic ({t['total']:,} events over {t['ids']:,} ids, counted by a plain "
              f"Kafka consumer): rows per id as each reader sees the dataset\n")
        print("| dataset | reader | rows | ids | ids whose count differs | result |")
        print("|---|---|---|---|---|---|")
        for r in back["results"]:
            if "total" not in r:
                print(f"| {LAYOUTS[r['layout']]} | {r['reader']} | – | – | – | **failed**: {r['why']} |")
                continue
            verdict = "equal" if r["ok"] else f"**differs** (e.g. ids {r['examples']})"
            print(f"| {LAYOUTS[r['layout']]} | {r['reader']} | {r['total']:,} | {r['ids']:,} | {r['ids_differing']:,} | {verdict} |")
        print()
    (out / "results.json").write_text(json.dumps({"meta": meta, "series": rows, "readback": back}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
