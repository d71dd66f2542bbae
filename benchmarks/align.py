"""Alignment benchmark: drizzleflow (find_sources + align) and DrizzlePac's
TweakReg on the same simulated M2 files, scored against the simulator truth.

    .venv/bin/python benchmarks/align.py [--data DIR | --size 800 --nexp 6 --nstars N]
                                         [--out DIR] [--no-tweakreg] [--full]

Both tools start from the same ingested working copies (updatewcs from the
simulated reference files).  TweakReg runs in the reference environment (``make bench-env``; subprocess) with
the tutorial's call (conv_width=3.0, threshold=300, peakmin=100,
peakmax=10000, rscale) on copies whose pyramid edges are zeroed like the
tutorial's edges.py; drizzleflow runs find_sources + align with its defaults.
Accuracy = rms (mas) over the truth grid of every chip of exposures 2..N of
aligned sky position - true sky position, after removing the reference
exposure's own header error (relative alignment cannot know it).

``--full`` also runs configs/m2_align.yaml through the engine (CR-cleaned
images, first-pass and final drizzle) and reports the median star FWHM of the
first-pass and the aligned final drizzle.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from align_eval import load_grid, score  # noqa: E402
from bench_env import bench_python  # noqa: E402

BENCH_PY = bench_python()

TWEAKREG_SCRIPT = r'''
import glob, time, sys
from astropy.io import fits
edges = {1: (49, 62), 2: (53, 39), 3: (39, 53), 4: (49, 49)}
for f in sorted(glob.glob("*_c0m.fits")):
    with fits.open(f, mode="update") as h:
        for ext in range(1, 5):
            x, y = edges[ext]
            ny, nx = h["SCI", ext].data.shape
            h["SCI", ext].data[:, :int(round(x * nx / 800))] = 0
            h["SCI", ext].data[:int(round(y * ny / 800)), :] = 0
from drizzlepac import tweakreg
t = time.perf_counter()
tweakreg.TweakReg(sorted(glob.glob("*_c0m.fits")), updatewcs=False, conv_width=3.0, threshold=300.0,
                  peakmin=100, peakmax=10000, interactive=False, see2dplot=False, residplot="No plot",
                  updatehdr=True, wcsname="TWEAK", shiftfile=True, outshifts="shifts.txt")
print("TWEAKREG_SECONDS", time.perf_counter() - t)
'''


def simulate(dest, size, nexp, nstars, seed):
    from drizzleflow.steps.simulate.m2 import simulate_m2
    simulate_m2(dest, seed=seed, size=size, nexp=nexp, nstars=nstars)


def ingest(data, out):
    from drizzleflow.engine.step import Context
    from drizzleflow.steps.ingest import Ingest
    ctx = Context(outdir=out, inputs=sorted(Path(data).glob("*_c0m.fits")),
                  options={"uref": str(Path(data) / "uref")})
    Ingest().run(ctx, Ingest.Params(updatewcs=True))
    return ctx


def run_drizzleflow(data, out, find_params=None, align_params=None):
    from drizzleflow.steps.align.steps import Align, FindSources
    ctx = ingest(data, out)
    t0 = time.perf_counter()
    FindSources().run(ctx, FindSources.Params(**(find_params or {"use_crclean": False})))
    t1 = time.perf_counter()
    Align().run(ctx, Align.Params(**(align_params or {"on_failure": "skip", "plots": False})))
    t2 = time.perf_counter()
    files = {r["root"]: Path(out) / r["sci"] for r in ctx.get("exposures")}
    al = ctx.get("alignment")
    failed = [r for r, v in al["images"].items() if v["status"] == "failed"]
    fit_rms = {r: v["rms"] for r, v in al["images"].items() if v["status"] == "aligned"}
    return {"files": files, "seconds": t2 - t0, "find_seconds": t1 - t0, "align_seconds": t2 - t1,
            "failed": failed, "fit_rms_plane_px": fit_rms, "plane_scale": al["plane"]["pscale"]}


def run_tweakreg(data, out):
    ctx = ingest(data, Path(out) / "ingest")
    work = Path(out)
    for r in ctx.get("exposures"):
        for k in ("sci", "dq"):
            shutil.copy(Path(out) / "ingest" / r[k], work / Path(r[k]).name)
    (work / "run_tweakreg.py").write_text(TWEAKREG_SCRIPT)
    t = time.perf_counter()
    p = subprocess.run([str(BENCH_PY), "run_tweakreg.py"], cwd=work, capture_output=True, text=True,
                       timeout=1800)
    wall = time.perf_counter() - t
    (work / "tweakreg.stdout").write_text(p.stdout + "\n" + p.stderr)
    secs = None
    for line in p.stdout.splitlines():
        if line.startswith("TWEAKREG_SECONDS"):
            secs = float(line.split()[1])
    failed = [line for line in (p.stdout + p.stderr).splitlines() if "Not enough" in line or "WARNING" in line
              and "match" in line.lower()]
    if p.returncode != 0:
        tail = [ln for ln in p.stderr.splitlines() if ln.strip()][-1:] or ["(no message)"]
        failed.append(f"TweakReg exited with status {p.returncode}: {tail[0]}")
    files = {Path(r["sci"]).name.split("_")[0]: work / Path(r["sci"]).name for r in ctx.get("exposures")}
    return {"files": files, "seconds": secs if secs is not None else wall, "wall_seconds": wall,
            "returncode": p.returncode, "messages": failed[:10]}


def fwhm_before_after(first, final, fill=99999.0):
    """Median FWHM (output pixels) of the same stars on the first-pass and the
    aligned final drizzle: stars picked on the first pass (wide FWHM window, as
    misalignment broadens them), measured on both through their sky positions."""
    from astropy.io import fits
    from astropy.wcs import WCS
    from drizzleflow.steps.metrics import psf_fwhm as pf
    out = {}
    with fits.open(first) as a, fits.open(final) as b:
        sa, sb = a[0].data.astype(np.float32), b[0].data.astype(np.float32)
        wa, wb = WCS(a[0].header), WCS(b[0].header)
    ga = np.isfinite(sa) & (sa != fill) & (sa != 0)
    gb = np.isfinite(sb) & (sb != fill) & (sb != 0)
    sel = pf.select_psf_stars(sa, ga, fwhm_window_pix=(1.0, 10.0))
    ra, dec = wa.all_pix2world(sel["x"], sel["y"], 0)
    xb, yb = wb.all_world2pix(ra, dec, 0)
    fa, _, _ = pf.measure_fwhm(sa, ga, np.asarray(sel["x"]), np.asarray(sel["y"]))
    fb, _, _ = pf.measure_fwhm(sb, gb, np.asarray(xb), np.asarray(yb))
    ok = np.isfinite(fa) & np.isfinite(fb)
    out["nstars"] = int(ok.sum())
    out["median_fwhm_first_pass_px"] = float(np.median(fa[ok])) if ok.any() else None
    out["median_fwhm_final_px"] = float(np.median(fb[ok])) if ok.any() else None
    out["median_ratio_final_over_first"] = float(np.median(fb[ok] / fa[ok])) if ok.any() else None
    return out


def run_full(data, out):
    """configs/m2_align.yaml through the engine; alignment accuracy and FWHM before/after."""
    from drizzleflow.engine.recipe import load_recipe
    from drizzleflow.engine.runner import run_recipe
    files = sorted(str(p) for p in Path(data).glob("*_c0m.fits"))
    rec = load_recipe(ROOT / "configs" / "m2_align.yaml",
                      [f"input={json.dumps(files)}", f"uref={Path(data) / 'uref'}"], output=out)
    t = time.perf_counter()
    res = run_recipe(rec, out, overwrite=True)
    wall = time.perf_counter() - t
    al = res.products.get("alignment", {})
    ex = res.products.get("exposures", [])
    files = {r["root"]: Path(out) / r["sci"] for r in ex}
    return {"wall_seconds": wall, "files": files,
            "step_seconds": {s.name: round(s.seconds, 2) for s in res.steps},
            "fwhm": fwhm_before_after(Path(out) / "first_pass_drz_sci.fits", Path(out) / "final_drz_sci.fits"),
            "aligned": {r: v.get("status") for r, v in al.get("images", {}).items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="existing simulated set (default: simulate into OUT/data)")
    ap.add_argument("--out", type=Path, default=Path("bench_align_out"))
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--nexp", type=int, default=6)
    ap.add_argument("--nstars", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-tweakreg", action="store_true")
    ap.add_argument("--full", action="store_true", help="also run configs/m2_align.yaml and report FWHM")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out = a.out.resolve()
    shutil.rmtree(out / "drizzleflow", ignore_errors=True)
    shutil.rmtree(out / "tweakreg", ignore_errors=True)
    data = a.data
    if data is None:
        data = out / "data"
        if not (data / "truth" / "wcs_grid.ecsv").exists():
            simulate(data, a.size, a.nexp, a.nstars, a.seed)
    grid = load_grid(data / "truth")
    report = {"data": str(data)}
    df = run_drizzleflow(data, out / "drizzleflow")
    s = score(grid, df["files"])
    report["drizzleflow"] = {"rel_rms_mas": s["rel_rms_all"], "seconds": df["seconds"],
                             "find_seconds": df["find_seconds"], "align_seconds": df["align_seconds"],
                             "failed": df["failed"], "plane_scale_arcsec": df["plane_scale"],
                             "fit_rms_plane_px": df["fit_rms_plane_px"],
                             "per_exposure_rel_rms_mas": {r: v["rel_rms"] for r, v in s["per_exposure"].items()},
                             "before_rel_rms_mas": {r: v["before_rel_rms"] for r, v in s["per_exposure"].items()}}
    if not a.no_tweakreg:
        if not BENCH_PY.exists():
            report["tweakreg"] = {"error": f"{BENCH_PY} not found"}
        else:
            (out / "tweakreg").mkdir(parents=True)
            tw = run_tweakreg(data, out / "tweakreg")
            st = score(grid, tw["files"])
            report["tweakreg"] = {"rel_rms_mas": st["rel_rms_all"], "seconds": tw["seconds"],
                                  "returncode": tw["returncode"], "messages": tw["messages"],
                                  "per_exposure_rel_rms_mas": {r: v["rel_rms"] for r, v in st["per_exposure"].items()}}
    if a.full:
        shutil.rmtree(out / "full", ignore_errors=True)
        full = run_full(data, out / "full")
        sf = score(grid, full.pop("files"))
        full["rel_rms_mas"] = sf["rel_rms_all"]
        full["per_exposure_rel_rms_mas"] = {r: v["rel_rms"] for r, v in sf["per_exposure"].items()}
        report["full"] = full
    (out / "align_benchmark.json").write_text(json.dumps(report, indent=1))
    print(f"data: {data}")
    print(f"{'exposure':<12}{'header':>10}{'drizzleflow':>13}{'TweakReg':>10}   (mas rms vs truth, relative to ref)")
    d = report["drizzleflow"]
    t = report.get("tweakreg", {})
    for r in d["per_exposure_rel_rms_mas"]:
        tv = t.get("per_exposure_rel_rms_mas", {}).get(r)
        print(f"{r:<12}{d['before_rel_rms_mas'][r]:>10.2f}{d['per_exposure_rel_rms_mas'][r]:>13.2f}"
              f"{tv if tv is None else format(tv, '.2f'):>10}")
    print(f"{'all (2..N)':<12}{'':>10}{d['rel_rms_mas']:>13.2f}"
          f"{format(t['rel_rms_mas'], '.2f') if 'rel_rms_mas' in t else '-':>10}")
    print(f"time (s): drizzleflow find+align {d['seconds']:.2f} "
          f"(find {d['find_seconds']:.2f}, align {d['align_seconds']:.2f}); "
          f"TweakReg {t.get('seconds', float('nan')):.2f}")
    print(f"failed exposures: drizzleflow {d['failed'] or 'none'}; TweakReg messages: {t.get('messages') or 'none'}")
    if "full" in report:
        f = report["full"]
        print(f"full recipe (configs/m2_align.yaml, CR-cleaned images, headerlets applied): "
              f"{f['rel_rms_mas']:.2f} mas rms vs truth; {f['wall_seconds']:.1f} s wall; aligned: {f['aligned']}")
        print(f"  median FWHM of {f['fwhm']['nstars']} stars: first pass {f['fwhm']['median_fwhm_first_pass_px']:.3f} px"
              f" -> aligned final {f['fwhm']['median_fwhm_final_px']:.3f} px "
              f"(median ratio {f['fwhm']['median_ratio_final_over_first']:.3f})")
    print(f"written {out / 'align_benchmark.json'}")


if __name__ == "__main__":
    main()
