"""Benchmark the M2 simulator: wall time, CPU time and peak memory of the full
data set (6 exposures x 4 chips x 800 x 800, target < 30 s and < 2 GB) and of
the small test set (256 px, 4 exposures, target a few seconds).  Each run is a
fresh child process so the peak RSS is the simulator's own.

    .venv/bin/python benchmarks/simulate.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# small case first: RUSAGE_CHILDREN reports the largest child so far
CASES = [("tests: --size 256 --nexp 4", ["--size", "256", "--nexp", "4"]), ("full set", [])]


def run(dest, extra):
    code = ("import sys; from drizzleflow.engine.cli import main; "
            "sys.exit(main(['simulate', 'm2', sys.argv[1]] + sys.argv[2:]))")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(dest), *extra], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="write the data sets here instead of a temporary folder")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        print("| case | wall s | CPU s | peak RSS MB | size on disk MB |")
        print("|---|---|---|---|---|")
        for i, (name, extra) in enumerate(CASES):
            dest = base / f"m2_{i}"
            wall, cpu, rss = run(dest, extra)
            mb = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2 ** 20
            print(f"| {name} | {wall:.1f} | {cpu:.1f} | {rss:.0f} | {mb:.0f} |")


if __name__ == "__main__":
    main()
