#!/usr/bin/env python3
"""How long does fsync take on this disk? A machine fact that bounds commit latency.

streamlake makes a raw file visible only after the file, its folder and the checkpoint entry are
fsynced, on the worker's thread; a slow fsync therefore shows up directly in freshness. This writes
files of the size of a typical 500 ms raw commit and fsyncs each one, paced like commits, and prints
the latency distribution.

    scripts/bench/fsync_probe.py [--dir DIR] [--seconds 20] [--bytes 200000] [--interval-ms 50]
"""

import argparse
import json
import os
import shutil
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="a folder on the disk to probe (default: a temporary folder under target/)")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to probe (default 20)")
    ap.add_argument("--bytes", type=int, default=200_000, help="bytes per file (default 200000)")
    ap.add_argument("--interval-ms", type=float, default=50.0, help="pause between files (default 50)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    args = ap.parse_args()

    base = args.dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target")
    os.makedirs(base, exist_ok=True)
    d = tempfile.mkdtemp(prefix="fsync-probe-", dir=base)
    data = os.urandom(args.bytes)
    lat = []
    try:
        end = time.monotonic() + args.seconds
        i = 0
        while time.monotonic() < end:
            t = time.perf_counter()
            with open(os.path.join(d, f"f{i % 64}"), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            lat.append((time.perf_counter() - t) * 1000.0)
            i += 1
            time.sleep(args.interval_ms / 1000.0)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    lat.sort()
    pick = lambda q: round(lat[min(len(lat) - 1, int(len(lat) * q))], 1)  # noqa: E731
    out = {"fsyncs": len(lat), "bytes": args.bytes, "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(lat[-1], 1)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"fsync of {args.bytes} bytes, {out['fsyncs']} times: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, max {out['max_ms']} ms")


if __name__ == "__main__":
    main()
