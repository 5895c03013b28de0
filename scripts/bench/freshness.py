"""Freshness watcher for scripts/bench/freshness.sh: how long after an event is produced is it in
a *committed* Parquet file, and how long after a window's end (plus the 30 s watermark) is its
final row committed.

  freshness.py watch --layout streamlake|spark|delta --raw RUN_DIR --agg AGG_DIR --control DIR --out FILE
  freshness.py summarize RESULTS_DIR            # runs/*.json -> results.json + summary.md

Commit markers (what a reader trusts; the time a marker is first seen is taken right after the
cheap listing that shows it, before any data file is opened):

- streamlake raw rows: a checkpoint entry `RUN_DIR/_checkpoint/partitions/p=<P>/<NEXT>.json`.
  Files are renamed into place first, but a file is only committed once an entry covers it
  (docs/format.md; `run` deletes uncovered files on restart), so the entry is the marker. The
  files of a new entry are its `files` list (quarantine files skipped); if entries were pruned
  between two polls (only 20 are kept), the missing offset range is found by listing the folders.
- streamlake final window rows: `RUN_DIR/_checkpoint/windows.json` (its `files` list); a file in
  `aggregates/` that windows.json does not list yet is not final (it would be rewritten after a
  crash). Polled by (inode, mtime, size), read only when it changes.
- Spark raw rows and final window rows: the file sink's log `<path>/_spark_metadata/<batch>`
  (or `<batch>.compact`); the files it lists are the committed ones, anything else in the folder
  is not (Spark readers go through this log too).
- Delta tables (`--layout delta`: streamlake `--table-format delta`, or Spark with SPARK_FORMAT=delta;
  RUN_DIR and AGG_DIR are then the raw and aggregates tables): a row is visible once it is in the
  newest snapshot, i.e. once the commit `<table>/_delta_log/<version>.json` whose `add` names its file
  exists. The watcher replays the log as a Delta reader does: it lists `_delta_log/`, takes the
  versions after the last one it read, in order and without a gap (the newest snapshot is the
  highest contiguous version), and reads each commit's `add` actions (`dataChange: true`; a
  compaction's re-adds are not new rows); the seen time of a commit is taken right after the
  listing that shows it. Each added file's rows are checked against its `numRecords`. At the end the
  newest snapshot is read once more with the `deltalake` package (when installed): its rows must
  equal the rows the watcher counted (`delta_final` in --out).

Latency per raw row = seen − ts (ts is the producer's wall clock when it formatted the event; the
producer, the contender and this watcher run on one machine, so one clock). Latency per final
window row = seen − (window_end + watermark). Only windows with window_end + watermark before the
last event's ts are counted (after the producer stops, event time stops advancing, and the later
windows are closed only by an idle timeout or never).

The shell tells the watcher how many events were produced by writing CONTROL/producer.json
({"events", "start_unix", "end_unix"}); the watcher exits 0 once it has seen every produced event
and every countable window, 2 on an accounting error (more rows than events, a window twice),
3 when CONTROL/stop appears first (the shell's bounded wait ran out). It always writes --out.
"""

import argparse
import json
import os
import re
import sys
import time
import urllib.parse

import numpy as np
import pyarrow.parquet as pq

US = 1_000_000
PART_RE = re.compile(r"^part-p(\d+)-o(\d+)-(\d+)-w\d+\.parquet$")
DELTA_COMMIT_RE = re.compile(r"^(\d{20})\.json$")
DELTA_CHECKPOINT_RE = re.compile(r"^\d{20}\.checkpoint(\.\d+\.\d+)?(\.[0-9a-f-]+)?\.parquet$")


def now_us():
    return time.time_ns() // 1000


def ts_us(column):
    """A pyarrow timestamp column (any unit, with or without tz) as int64 microseconds since epoch."""
    arr = column.to_numpy()
    if arr.dtype.kind != "M":
        raise ValueError(f"not a timestamp column: {column.type}")
    return arr.astype("datetime64[us]").astype(np.int64)


def key_from_path(path):
    for part in reversed(path.split("/")):
        if part.startswith("id="):
            return int(part[3:])
    raise ValueError(f"no id=<k> folder in {path}")


class Collector:
    """Everything seen: raw latencies (with their ts, for per-second stats) and window rows."""

    def __init__(self, window_us, watermark_us):
        self.window_us = window_us
        self.watermark_us = watermark_us
        self.raw_seen = []  # list of (seen_us, ts array)
        self.raw_rows = 0
        self.raw_files = 0
        self.raw_bytes = 0
        self.windows_with_events = {}  # window_end_us -> set of keys (from raw rows)
        self.windows = {}  # (window_end_us, key) -> seen_us
        self.window_files = 0
        self.errors = []
        self.commits = 0
        self.agg_commits = 0

    def add_raw(self, seen, path, key=None):
        t = pq.read_table(path, columns=["ts"])
        ts = ts_us(t.column("ts"))
        if key is None:
            key = key_from_path(path)
        self.raw_seen.append((seen, ts))
        self.raw_rows += len(ts)
        self.raw_files += 1
        self.raw_bytes += os.path.getsize(path)
        if len(ts):
            ends = np.unique((ts // self.window_us + 1) * self.window_us)
            for e in ends.tolist():
                self.windows_with_events.setdefault(e, set()).add(key)
        return len(ts)

    def add_agg(self, seen, path, key_col="id"):
        t = pq.read_table(path, columns=["window_end", key_col])
        ends = ts_us(t.column("window_end"))
        keys = t.column(key_col).to_numpy()
        for e, k in zip(ends.tolist(), keys.tolist()):
            if (e, k) in self.windows:
                self.errors.append(f"window end={e} key={k} written twice (again in {path})")
            else:
                self.windows[(e, k)] = seen
        self.window_files += 1

    def max_ts(self):
        return max((int(ts.max()) for _, ts in self.raw_seen if len(ts)), default=None)

    def countable_windows(self):
        last = self.max_ts()
        if last is None:
            return set()
        return {
            (e, k)
            for e, ks in self.windows_with_events.items()
            if e + self.watermark_us < last
            for k in ks
        }


class StreamlakeWatcher:
    def __init__(self, raw, agg, col):
        self.raw, self.agg, self.col = raw, agg, col
        self.parts = os.path.join(raw, "_checkpoint", "partitions")
        self.windows_json = os.path.join(raw, "_checkpoint", "windows.json")
        self.next = {}  # partition -> newest next_offset handled
        self.windows_stat = None
        self.agg_files = set()
        self.quarantined = 0
        self.entry_rows = 0
        self.fallback_scans = 0

    def poll(self):
        """One cheap listing of every marker, then the reading. Returns the seen time."""
        found = []
        try:
            pdirs = os.listdir(self.parts)
        except FileNotFoundError:
            pdirs = []
        for d in pdirs:
            if not d.startswith("p="):
                continue
            p = int(d[2:])
            try:
                names = os.listdir(os.path.join(self.parts, d))
            except FileNotFoundError:
                continue
            last = self.next.get(p, -1)
            for n in names:
                if n.endswith(".json") and not n.startswith(".") and int(n[:-5]) > last:
                    found.append((p, int(n[:-5]), n))
        try:
            st = os.stat(self.windows_json)
            wstat = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            wstat = None
        seen = now_us()
        for p, nxt, name in sorted(found):
            self.take_entry(seen, p, nxt, name)
        if wstat is not None and wstat != self.windows_stat:
            self.windows_stat = wstat
            self.take_windows(seen)
        return seen

    def take_entry(self, seen, p, nxt, name):
        col = self.col
        prev = self.next.get(p, -1)
        if nxt <= prev:
            return
        path = os.path.join(self.parts, f"p={p}", name)
        try:
            with open(path) as f:
                e = json.load(f)
        except FileNotFoundError:  # pruned between listing and reading: covered by a later entry
            return
        col.commits += 1
        start = e["start_offset"]
        if prev >= 0 and start != prev or prev < 0 and e.get("first_offset", start) != start:
            # entries were pruned before we saw them: every raw file of p in [prev, start)
            self.fallback_scans += 1
            self.scan_range(seen, p, max(prev, 0), start)
        n = 0
        for rel in e["files"]:
            if rel.startswith("_quarantine"):
                continue
            n += col.add_raw(seen, os.path.join(self.raw, rel))
        if n != e["rows"]:
            col.errors.append(f"partition {p} entry {name}: read {n} rows, entry says {e['rows']}")
        self.quarantined += e.get("quarantined", 0)
        self.entry_rows += e["rows"]
        self.next[p] = nxt

    def scan_range(self, seen, p, lo, hi):
        for d in sorted(os.listdir(self.raw)):
            if not d.startswith("id="):
                continue
            for f in os.listdir(os.path.join(self.raw, d)):
                m = PART_RE.match(f)
                if m and int(m.group(1)) == p and lo <= int(m.group(2)) and int(m.group(3)) <= hi:
                    self.entry_rows += self.col.add_raw(seen, os.path.join(self.raw, d, f))

    def take_windows(self, seen):
        try:
            with open(self.windows_json) as f:
                w = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            self.windows_stat = None
            return
        new = [f for f in w.get("files", []) if f not in self.agg_files]
        if new:
            self.col.agg_commits += 1
        for f in new:
            self.agg_files.add(f)
            self.col.add_agg(seen, os.path.join(self.agg, f))


class SparkLog:
    """One Spark file sink: `<path>/_spark_metadata/<batch>[.compact]`."""

    def __init__(self, path):
        self.path = path
        self.meta = os.path.join(path, "_spark_metadata")
        self.last = -1
        self.files = set()

    def list_new(self):
        try:
            names = os.listdir(self.meta)
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if n.startswith(".") or n.endswith(".tmp") or n.endswith(".crc"):
                continue
            b = n.split(".")[0]
            if b.isdigit() and int(b) > self.last:
                out.append((int(b), n))
        return sorted(out)

    def new_files(self, entries):
        paths = []
        for b, n in entries:
            try:
                with open(os.path.join(self.meta, n)) as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:
                continue
            for line in lines[1:]:
                if not line.strip():
                    continue
                e = json.loads(line)
                if e.get("action", "add") != "add":
                    continue
                p = urllib.parse.unquote(urllib.parse.urlparse(e["path"]).path)
                if p not in self.files:
                    self.files.add(p)
                    paths.append(p)
            self.last = max(self.last, b)
        return paths


class SparkWatcher:
    def __init__(self, raw, agg, col):
        self.col = col
        self.raw = SparkLog(raw)
        self.agg = SparkLog(agg)
        self.quarantined = 0
        self.fallback_scans = 0

    def poll(self):
        raw_new = self.raw.list_new()
        agg_new = self.agg.list_new()
        seen = now_us()
        if raw_new:
            self.col.commits += len(raw_new)
        for p in self.raw.new_files(raw_new):
            self.col.add_raw(seen, p)
        files = self.agg.new_files(agg_new)
        if files:
            self.col.agg_commits += 1
        for p in files:
            self.col.add_agg(seen, p)
        return seen


class DeltaLog:
    """One Delta table's log, `<table>/_delta_log/<version>.json`, replayed in version order."""

    def __init__(self, table):
        self.table = table
        self.log = os.path.join(table, "_delta_log")
        self.next_version = 0
        self.checkpoints = 0
        self.removes = 0
        self.rearranged = 0  # dataChange=false adds (a compaction's), not new rows

    def list_new(self):
        """The versions after the last read, contiguous from it (a gap ends the list)."""
        try:
            names = os.listdir(self.log)
        except FileNotFoundError:
            return []
        versions = set()
        chk = 0
        for n in names:
            m = DELTA_COMMIT_RE.match(n)
            if m:
                versions.add(int(m.group(1)))
            elif DELTA_CHECKPOINT_RE.match(n):
                chk += 1
        self.checkpoints = chk
        out, v = [], self.next_version
        while v in versions:
            out.append(v)
            v += 1
        return out

    def read(self, versions):
        """The new data files of VERSIONS, as (absolute path, key or None, numRecords or None), and the
        number of versions read; stops at a commit that cannot be read yet (retried next poll)."""
        files, read = [], 0
        for v in versions:
            try:
                with open(os.path.join(self.log, f"{v:020d}.json")) as f:
                    actions = [json.loads(line) for line in f.read().splitlines() if line.strip()]
            except (FileNotFoundError, json.JSONDecodeError):
                break
            for a in actions:
                if "remove" in a:
                    self.removes += 1
                add = a.get("add")
                if add is None:
                    continue
                if not add.get("dataChange", True):
                    self.rearranged += 1
                    continue
                path = add["path"]
                if "://" in path:
                    path = urllib.parse.urlparse(path).path
                path = urllib.parse.unquote(path)
                if not os.path.isabs(path):
                    path = os.path.join(self.table, path)
                key = (add.get("partitionValues") or {}).get("id")
                stats = json.loads(add["stats"]) if add.get("stats") else {}
                files.append((path, int(key) if key not in (None, "") else None, stats.get("numRecords")))
            self.next_version = v + 1
            read += 1
        return files, read


class DeltaWatcher:
    """A raw and an aggregates Delta table (streamlake --table-format delta, or Spark's Delta sinks)."""

    def __init__(self, raw, agg, col):
        self.col = col
        self.raw = DeltaLog(raw)
        self.agg = DeltaLog(agg)
        self.quarantined = 0
        self.fallback_scans = 0

    def poll(self):
        raw_new = self.raw.list_new()
        agg_new = self.agg.list_new()
        seen = now_us()
        files, n = self.raw.read(raw_new)
        self.col.commits += n
        for path, key, records in files:
            rows = self.col.add_raw(seen, path, key)
            if records is not None and rows != records:
                self.col.errors.append(f"{path}: read {rows} rows, its add says numRecords={records}")
        files, n = self.agg.read(agg_new)
        self.col.agg_commits += n
        for path, _, _ in files:
            self.col.add_agg(seen, path)
        return seen

    def final(self):
        """The newest snapshot of both tables, read again with deltalake (None if not installed)."""
        try:
            from deltalake import DeltaTable
        except ImportError:
            return None
        out = {}
        for name, log in (("raw", self.raw), ("aggregates", self.agg)):
            try:
                t = DeltaTable(log.table)
                adds = t.get_add_actions(flatten=True)
                nr = adds.column("num_records").to_pylist() if "num_records" in adds.column_names else []
                out[name] = {"version": t.version(), "files": adds.num_rows,
                             "rows": int(sum(x or 0 for x in nr)), "checkpoints": log.checkpoints,
                             "versions_read": log.next_version, "removes": log.removes}
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                out[name] = {"error": f"{type(e).__name__}: {e}"}
        return out


def pct(a, qs=(50, 90, 99)):
    if len(a) == 0:
        return {"count": 0}
    a = np.asarray(a, dtype=np.float64) / 1000.0  # ms
    out = {"count": int(len(a))}
    for q in qs:
        out[f"p{q}_ms"] = round(float(np.percentile(a, q)), 1)
    out["max_ms"] = round(float(a.max()), 1)
    out["min_ms"] = round(float(a.min()), 1)
    out["mean_ms"] = round(float(a.mean()), 1)
    return out


def report(args, col, w, producer, status, polls, max_gap_us, started_us, gaps):
    if col.raw_seen:
        ts = np.concatenate([t for _, t in col.raw_seen])
        seen = np.concatenate([np.full(len(t), s, dtype=np.int64) for s, t in col.raw_seen])
    else:
        ts = seen = np.zeros(0, dtype=np.int64)
    lat = seen - ts
    start_us = int(producer["start_unix"] * US) if producer else (int(ts.min()) if len(ts) else started_us)
    warm_us = int(args.warmup_s * US)
    rel = ts - start_us
    steady = rel >= warm_us
    per_s = []
    if len(ts):
        sec = (rel // US).astype(np.int64)
        order = np.argsort(sec, kind="stable")
        sec_sorted, lat_sorted = sec[order], lat[order]
        bounds = np.flatnonzero(np.diff(sec_sorted)) + 1
        for chunk_s, chunk_l in zip(np.split(sec_sorted, bounds), np.split(lat_sorted, bounds)):
            s = pct(chunk_l, (50, 99))
            per_s.append({"second": int(chunk_s[0]), "events": s["count"], "p50_ms": s["p50_ms"],
                          "p99_ms": s["p99_ms"], "max_ms": s["max_ms"]})
    countable = col.countable_windows()
    wl = [col.windows[k] - (k[0] + col.watermark_us) for k in sorted(countable) if k in col.windows]
    missing = sorted(k for k in countable if k not in col.windows)
    produced = producer["events"] if producer else None
    final = w.final() if hasattr(w, "final") else None
    if final and "rows" in final.get("raw", {}) and final["raw"]["rows"] != col.raw_rows:
        col.errors.append(f"the newest Delta snapshot (version {final['raw']['version']}, deltalake) holds "
                          f"{final['raw']['rows']} rows, the watcher counted {col.raw_rows}")
    out = {
        "layout": args.layout,
        "table_format": "delta" if args.layout == "delta" else "parquet",
        "label": args.label,
        "contender": args.contender or args.layout,
        "rate": args.rate,
        "trigger": args.trigger,
        "status": status,
        "events_produced": produced,
        "rows_seen": int(col.raw_rows),
        "rows_match": produced is not None and col.raw_rows == produced,
        "quarantined": int(w.quarantined),
        "raw_files": col.raw_files,
        "raw_bytes": col.raw_bytes,
        "raw_commits_seen": col.commits,
        "agg_commits_seen": col.agg_commits,
        "fallback_scans": w.fallback_scans,
        "producer": producer,
        "warmup_s": args.warmup_s,
        "event_to_committed": pct(lat),
        "event_to_committed_steady": pct(lat[steady]),
        "event_to_committed_warmup": pct(lat[~steady]),
        "window_end_to_final": pct(wl),
        "windows_counted": len(wl),
        "windows_countable": len(countable),
        "windows_missing": [[int(e), int(k)] for e, k in missing[:20]],
        "windows_seen_total": len(col.windows),
        "window_files": col.window_files,
        "watermark_s": col.watermark_us / US,
        "window_s": col.window_us / US,
        "per_second": per_s,
        "last_row_seen_unix": (int(seen.max()) / US) if len(seen) else None,
        "drain_s_after_producer": (
            round((int(seen.max()) / US) - producer["end_unix"], 3) if producer and len(seen) else None
        ),
        "polls": polls,
        "max_poll_gap_ms": round(max_gap_us / 1000.0, 1),
        "poll_gap": pct(np.asarray(gaps, dtype=np.int64)),
        "errors": col.errors[:50],
        "delta_final": final,
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, args.out)
    return out


def warm_up():
    """Loads pyarrow's Parquet reader once, so the first real read does not stall a poll."""
    import io

    import pyarrow as pa

    buf = io.BytesIO()
    pq.write_table(pa.table({"ts": pa.array([0], pa.timestamp("us", tz="UTC"))}), buf)
    ts_us(pq.read_table(io.BytesIO(buf.getvalue())).column("ts"))


def watch(args):
    warm_up()
    col = Collector(int(args.window_s * US), int(args.watermark_s * US))
    cls = {"streamlake": StreamlakeWatcher, "spark": SparkWatcher, "delta": DeltaWatcher}[args.layout]
    w = cls(args.raw, args.agg, col)
    ctl_producer = os.path.join(args.control, "producer.json")
    ctl_stop = os.path.join(args.control, "stop")
    producer = None
    polls, max_gap, last = 0, 0, None
    gaps = []  # (gap_us, at_us): the largest poll-to-poll gaps, the watcher's own error bound
    started = now_us()
    status = "running"
    while True:
        seen = w.poll()
        polls += 1
        if last is not None:
            max_gap = max(max_gap, seen - last)
            gaps.append(seen - last)
            if seen - last > 100_000:
                print(f"[freshness] poll gap {(seen - last) / 1000:.0f} ms at {seen / US:.3f}", file=sys.stderr)
        last = seen
        if producer is None and os.path.exists(ctl_producer):
            with open(ctl_producer) as f:
                producer = json.load(f)
        if col.errors:
            status = "error"
            break
        if producer is not None:
            total = col.raw_rows + w.quarantined
            if total > producer["events"]:
                col.errors.append(f"saw {total} rows, but only {producer['events']} events were produced")
                status = "error"
                break
            if total == producer["events"] and col.countable_windows() <= col.windows.keys():
                status = "complete"
                break
        if os.path.exists(ctl_stop):
            status = "timeout"
            break
        time.sleep(args.poll_ms / 1000.0)
    out = report(args, col, w, producer, status, polls, max_gap, started, gaps)
    if status != "error" and out["errors"]:  # the final Delta snapshot disagreed
        status = out["status"] = "error"
        with open(args.out) as f:
            doc = json.load(f)
        doc["status"] = status
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    e = out["event_to_committed"]
    print(
        f"[freshness] {args.label}: status={status} events_produced={out['events_produced']} "
        f"rows_seen={out['rows_seen']} p50={e.get('p50_ms')}ms p99={e.get('p99_ms')}ms max={e.get('max_ms')}ms "
        f"windows={out['windows_counted']}/{out['windows_countable']} "
        f"window_p50={out['window_end_to_final'].get('p50_ms')}ms window_p99={out['window_end_to_final'].get('p99_ms')}ms",
        file=sys.stderr,
    )
    for err in col.errors[:10]:
        print(f"[freshness] ERROR: {err}", file=sys.stderr)
    if status == "error":
        return 2
    if status != "complete":
        return 3
    if args.require_all and not out["rows_match"]:
        print(f"[freshness] ERROR: rows seen {out['rows_seen']} != events produced {out['events_produced']}",
              file=sys.stderr)
        return 2
    return 0


def fmt(v, nd=0):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}"


def label(r):
    """The contender's name in the tables, with "(Delta)" for a Delta run."""
    return r.get("contender", r["layout"]) + (" (Delta)" if r.get("layout") == "delta" else "")


def summarize(args):
    d = args.dir
    runs = []
    for n in sorted(os.listdir(os.path.join(d, "runs"))):
        if n.endswith(".json"):
            with open(os.path.join(d, "runs", n)) as f:
                r = json.load(f)
            rss = os.path.join(d, "runs", n[:-5] + ".rss_kb")
            if os.path.exists(rss):
                r["peak_rss_mb"] = round(int(open(rss).read().strip() or 0) / 1024)
            runs.append(r)
    order = {"streamlake": 0, "spark": 1}
    runs.sort(key=lambda r: (-(r.get("rate") or 0), order.get(r.get("contender"), 9), r.get("label", "")))
    meta = {}
    if os.path.exists(os.path.join(d, "meta.txt")):
        for line in open(os.path.join(d, "meta.txt")):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump({"runs": runs, "meta": meta}, f, indent=1)
    L = []
    L.append("# Freshness benchmark\n")
    L.append(f"`{meta.get('command', '')}` on {meta.get('nproc', '?')} cores ({meta.get('cpu', '?')}), "
             f"streamlake {meta.get('streamlake_rev', '?')}, Kafka {meta.get('kafka', '?')}, "
             f"pyspark {meta.get('pyspark', '–')}.\n")
    L.append("Event → committed: producer's `ts` → the commit marker that covers the row was first seen "
             "(streamlake: checkpoint entry; Spark: `_spark_metadata` log; \"(Delta)\": the Delta commit "
             "`_delta_log/<version>.json` that adds the row's file, i.e. the row is in the newest snapshot). "
             "Window end → final: "
             "window end + 30 s watermark → the final row's commit was seen (streamlake: `windows.json`; "
             "Spark: aggregates `_spark_metadata`; Delta: the aggregates table's commit), counting only windows "
             "whose end + 30 s is before the last event. All latencies in ms, over every event (warm-up included).\n")
    L.append("| contender | trigger / roll | rate (ev/s) | events produced | rows seen | status | "
             "event→committed p50 | p99 | max | steady p99 (after 5 s) | window end→final p50 | p99 | "
             "windows counted | drain after producer (s) | peak RSS (MB) |")
    L.append("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        e, s, w = r["event_to_committed"], r["event_to_committed_steady"], r["window_end_to_final"]
        L.append(
            f"| {label(r)} | {r.get('trigger', '')} | {fmt(r.get('rate'))} | "
            f"{fmt(r['events_produced'])} | {fmt(r['rows_seen'])} | {r['status']} | {fmt(e.get('p50_ms'))} | "
            f"{fmt(e.get('p99_ms'))} | {fmt(e.get('max_ms'))} | {fmt(s.get('p99_ms'))} | "
            f"{fmt(w.get('p50_ms'))} | {fmt(w.get('p99_ms'))} | {r['windows_counted']}/{r['windows_countable']} | "
            f"{fmt(r.get('drain_s_after_producer'), 1)} | {fmt(r.get('peak_rss_mb'))} |"
        )
    L.append("")
    L.append("Latency by second of the run (event→committed, p99 ms, for the events produced in each 10 s "
             "slice; shows whether a contender keeps up or falls behind):\n")
    for r in runs:
        ps = r.get("per_second", [])
        if not ps:
            continue
        slices = {}
        for x in ps:
            slices.setdefault(x["second"] // 10, []).append(x)
        cells = []
        for k in sorted(slices):
            cells.append(f"{k * 10}-{k * 10 + 9}s: p99≤{max(x['p99_ms'] for x in slices[k]):,.0f} "
                         f"max {max(x['max_ms'] for x in slices[k]):,.0f}")
        L.append(f"- {label(r)} @ {fmt(r.get('rate'))} ev/s: " + "; ".join(cells))
    L.append("")
    prod = [r for r in runs if r.get("producer")]
    for r in prod:
        p = r["producer"]
        dur = p["end_unix"] - p["start_unix"]
        df = r.get("delta_final") or {}
        delta = ""
        if r.get("layout") == "delta":
            raw, agg = df.get("raw", {}), df.get("aggregates", {})
            delta = (f" Delta: {r['raw_commits_seen']} raw and {r['agg_commits_seen']} aggregates commits read"
                     + (f"; newest raw snapshot version {raw['version']}, {fmt(raw['rows'])} rows in {fmt(raw['files'])} files,"
                        f" {raw['checkpoints']} checkpoints (deltalake agrees: {raw['rows'] == r['rows_seen']})"
                        if "rows" in raw else "")
                     + (f"; aggregates version {agg['version']}, {agg['checkpoints']} checkpoints" if "version" in agg else "")
                     + ".")
        L.append(f"- {label(r)} @ {fmt(r.get('rate'))}: producer sent {fmt(p['events'])} events in "
                 f"{dur:.1f} s ({p['events'] / dur:,.0f} ev/s achieved); watcher polls={r['polls']}, "
                 f"max poll gap {r['max_poll_gap_ms']} ms, commits seen {r['raw_commits_seen']}.{delta}"
                 + files_line(r, dur))
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    print("\n".join(L))
    return 0


def files_line(r, dur):
    """The small-files side of the trade-off: raw files per hour of production and their size."""
    files, size = r.get("raw_files", 0), r.get("raw_bytes")
    if not files or size is None or dur <= 0:
        return ""
    return (f" Raw files: {fmt(files)} ({fmt(files * 3600 / dur)} per hour of production at this rate), "
            f"{fmt(size / files)} bytes per file.")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("--layout", choices=["streamlake", "spark", "delta"], required=True)
    w.add_argument("--raw", required=True, help="the raw dataset's run folder (…/parquet/run_<RUN_ID>; with --layout delta its table)")
    w.add_argument("--agg", required=True, help="the aggregates folder (…/aggregates/<name of OUTPUT_PATH>/run_<RUN_ID>)")
    w.add_argument("--control", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--label", default="")
    w.add_argument("--contender", default="")
    w.add_argument("--rate", type=float, default=None, help="the producer's rate, for the report")
    w.add_argument("--trigger", default="", help="the contender's trigger, for the report")
    w.add_argument("--poll-ms", type=float, default=15)
    w.add_argument("--window-s", type=float, default=10)
    w.add_argument("--watermark-s", type=float, default=30)
    w.add_argument("--warmup-s", type=float, default=5)
    w.add_argument("--require-all", action="store_true", help="fail (exit 2) unless rows seen == events produced")
    s = sub.add_parser("summarize")
    s.add_argument("dir")
    args = ap.parse_args()
    if args.cmd == "watch":
        return watch(args)
    return summarize(args)


if __name__ == "__main__":
    code = main()
    # deltalake (the Delta row check) can abort the interpreter's shutdown after the results are
    # written ("terminate called without an active exception", delta-io/delta-rs#2184).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
