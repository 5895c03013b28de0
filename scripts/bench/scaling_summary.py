"""Summarize a scripts/bench/scaling.sh folder (stdlib only).

Usage: python3 scripts/bench/scaling_summary.py DIR N1 N2 ...
Reads DIR/n<N>/results.json (written by run.sh) and writes DIR/results.json; prints Markdown.
"""

import json
import statistics
import sys
from pathlib import Path

NAMES = {"raw": "raw limit, 1 consumer", "raw2": "raw limit, 2 consumers", "w1": "streamlake `-w 1`",
         "w2": "streamlake `-w 2`", "n2": "streamlake `-n 2`"}


def main(argv):
    out, sizes = Path(argv[1]), [int(n) for n in argv[2:]]
    series = {}
    for n in sizes:
        doc = json.loads((out / f"n{n}" / "results.json").read_text())
        for c in doc["medians"]:
            runs = [r for r in doc["runs"] if r["contender"] == c and r["exit"] == 0]
            if not runs:
                continue
            cpu = statistics.median(float(r["cpu_s"]) for r in runs)
            # Contenders that write a dataset have a DuckDB row count per run; the raw reader has none.
            counts = [rc["rows"] for rc in doc.get("row_counts", []) if rc["contender"] == c]
            series.setdefault(c, []).append({
                "events": n,
                "runs": len(runs),
                "wall_s": statistics.median(float(r["wall_s"]) for r in runs),
                "events_per_s": statistics.median(float(r["events_per_s"]) for r in runs),
                "cpu_s": cpu,
                "cpu_ns_per_event": cpu / n * 1e9,
                "peak_rss_mb": statistics.median(float(r["peak_rss_mb"]) for r in runs),
                "rows_ok": (len(counts) == len(runs) and all(rows == n for rows in counts)) if counts else None,
            })
    (out / "results.json").write_text(json.dumps({"sizes": sizes, "series": series}, indent=2) + "\n")
    print(f"## Scaling: {', '.join(f'{n:,}' for n in sizes)} events\n")
    print("Medians over the runs of each size (each size a freshly loaded topic). CPU ns/event = (user + sys CPU s) / events.\n")
    print("| contender | events | wall s | events/s | CPU s | CPU ns/event | peak RSS MB | rows = events |")
    print("|---|---|---|---|---|---|---|---|")
    for c, points in series.items():
        for p in points:
            print(f"| {NAMES.get(c, c)} | {p['events']:,} | {p['wall_s']:.2f} | {p['events_per_s']:,.0f} | {p['cpu_s']:.2f} "
                  f"| {p['cpu_ns_per_event']:,.0f} | {p['peak_rss_mb']:,.0f} | { {True: 'yes', False: 'NO', None: '– (writes none)'}[p['rows_ok']] } |")
    print()
    for c, points in series.items():
        if len(points) > 1:
            first, last = points[0], points[-1]
            print(f"- {NAMES.get(c, c)}: from {first['events']:,} to {last['events']:,} events, CPU per event "
                  f"×{last['cpu_ns_per_event'] / first['cpu_ns_per_event']:.2f}, peak RSS ×{last['peak_rss_mb'] / max(first['peak_rss_mb'], 1):.2f}, "
                  f"events/s ×{last['events_per_s'] / first['events_per_s']:.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
