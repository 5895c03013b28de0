#!/usr/bin/env python3
"""Prints where a cargo build's time went, from the report of `cargo build --timings`.

    python3 scripts/build_timings.py target/cargo-timings/cargo-timing.html [N]

The N (default 15) slowest units (a crate's compile, a build script's run, a link), their share of
the units' summed time, and that sum: what to look at when the test command's build grows.
"""
import json
import sys


def units(report_path):
    text = open(report_path, encoding="utf-8").read()
    marker = "const UNIT_DATA = "
    at = text.find(marker)
    if at < 0:
        sys.exit(f"{report_path}: no UNIT_DATA in this file (not a cargo --timings report?)")
    data, _ = json.JSONDecoder().raw_decode(text, at + len(marker))
    return data


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) == 3 else 15
    data = units(sys.argv[1])
    total = sum(u["duration"] for u in data)
    print(f"{len(data)} units, {total:.0f} s summed over both cores; the {top} slowest:")
    for u in sorted(data, key=lambda u: u["duration"], reverse=True)[:top]:
        what = f'{u["name"]} {u["version"]} {u["target"].strip()} ({u["mode"]})'
        print(f'  {u["duration"]:7.1f} s  {100 * u["duration"] / max(total, 1e-9):4.1f}%  {what}')


if __name__ == "__main__":
    main()
