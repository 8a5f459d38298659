"""Print one combined table from the JSON-lines files the benchmarks wrote with ``--json``.

.venv/bin/python benchmarks/bench_report.py RESULTS.jsonl [--title TEXT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import benchlib as bl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--title", default="")
    ap.add_argument("--failed", default="", help="benchmarks that did not finish (names)")
    args = ap.parse_args()

    entries = []
    try:
        with open(args.results) as f:
            entries = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        pass
    width = 58
    rule = "=" * (width + 44)
    print(rule)
    print(f"httpdns benchmarks {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")  # fmt: skip
    if args.title:
        print(args.title)
    print(f"now: {bl.loadavg()}")
    not_met: list[str] = []
    for entry in entries:
        print(rule)
        print(entry["header"])
        bl.print_rows(entry["rows"], width)
        for r in entry["rows"]:
            if r["met"] is False:
                not_met.append(
                    f"{r['bench']}: {r['measure'].strip()} = {r['figure']} (target {r['target']})"
                )
    print(rule)
    for name in args.failed.split():
        not_met.append(f"{name}: the benchmark did not finish (see its output above)")
    if not_met:
        print("NOT MET:")
        for line in not_met:
            print(f"  - {line}")
    else:
        print("all targets met")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
