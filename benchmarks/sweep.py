"""The tutorial's pixfrac/scale sweep vs one tutorial run (issue 8: sweep <= 2x).

Usage::

    .venv/bin/python benchmarks/sweep.py [--size 800] [--nexp 6] [--seed 1]
        [--workdir /tmp/drizzleflow_sweep_bench] [--parallel N]

Simulates the M2 set once (not timed), then, each as a separate process
measured with ``/usr/bin/time -v`` into a fresh output directory:

1. ``drizzleflow run`` of ``configs/m2_tutorial.yaml`` pointed at the files;
2. ``drizzleflow run`` of ``configs/m2_sweep.yaml`` (seven points, extending
   that same tutorial recipe), upstream steps computed once by the baseline
   point and shared through the cache.

Both read the same files from disk, so neither pays for the simulation (the
configs' built-in ``input: {simulate: m2}`` adds the same ~6 s to both and
flatters the ratio).  ``--builtin`` runs ``configs/m2_tutorial.yaml`` and
``configs/m2_sweep.yaml`` exactly as shipped instead (each simulates the M2
set itself, as ``make demo`` does).  Prints both wall times, peak RSS, the
ratio and each point's own time (from ``point_result.json``).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from astrodrizzle import DRIZZLEFLOW, ROOT, simulate_fresh, timed, write_recipe  # noqa: E402


def write_sweep(path, tutorial, outname, parallel=None):
    """The sweep recipe extending the tutorial recipe at ``tutorial``."""
    text = (ROOT / "configs" / "m2_sweep.yaml").read_text()
    text = text.replace("extends: m2_tutorial.yaml", f"extends: {tutorial}")
    text = re.sub(r"^output: .*$", f"output: {outname}", text, flags=re.M)
    if parallel is not None:
        text = re.sub(r"^(\s+parallel:) \d+", rf"\1 {int(parallel)}", text, flags=re.M)
    Path(path).write_text(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--nexp", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/drizzleflow_sweep_bench")
    ap.add_argument("--parallel", type=int, default=None, help="override the sweep's `parallel:`")
    ap.add_argument("--builtin", action="store_true", help="the configs as shipped (each run simulates M2)")
    a = ap.parse_args(argv)
    wd = Path(a.workdir).resolve()
    if a.builtin:
        if wd.exists():
            shutil.rmtree(wd)
        wd.mkdir(parents=True)
        tutorial, sweep = ROOT / "configs" / "m2_tutorial.yaml", ROOT / "configs" / "m2_sweep.yaml"
        print("configs as shipped: both runs simulate the M2 set (input: {simulate: m2})")
    else:
        data = simulate_fresh(wd, a.size, a.nexp, a.seed)
        tutorial, sweep = wd / "tutorial.yaml", wd / "sweep.yaml"
        write_recipe(tutorial, data, data / "uref", wd / "tutorial_out")
        write_sweep(sweep, tutorial, wd / "sweep_out", a.parallel)

    t_tut, m_tut, _ = timed([DRIZZLEFLOW, "run", tutorial, "--output", wd / "tutorial_out", "-q"], wd / "tutorial.log")
    print(f"tutorial recipe:        {t_tut:7.2f} s wall, {m_tut:7.1f} MiB peak RSS")
    t_sw, m_sw, _ = timed([DRIZZLEFLOW, "run", sweep, "--output", wd / "sweep_out", "-q"], wd / "sweep.log")
    print(f"seven-point sweep:      {t_sw:7.2f} s wall, {m_sw:7.1f} MiB peak RSS (largest process)")
    print(f"sweep / tutorial:       {t_sw / t_tut:7.2f}x (target <= 2)")
    points = []
    for f in sorted((wd / "sweep_out").glob("*/point_result.json")):
        r = json.loads(f.read_text())
        ran = [k for k, v in r.get("steps", {}).items() if v == "ran"]
        points.append((r["index"], r["name"], r["runtime_s"], ran))
    for i, name, secs, ran in sorted(points):
        print(f"  point #{i:03d} {name:28s} {secs:6.2f} s  ran: {', '.join(ran)}")
    result = {"tutorial_s": t_tut, "tutorial_mib": m_tut, "sweep_s": t_sw, "sweep_mib": m_sw,
              "ratio": t_sw / t_tut, "points": points}
    (wd / "result.json").write_text(json.dumps(result, indent=2))
    print(f"details in {wd}/result.json and the *.log files")


if __name__ == "__main__":
    main()
