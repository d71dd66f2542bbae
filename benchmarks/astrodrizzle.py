"""drizzleflow's tutorial recipe vs DrizzlePac's AstroDrizzle on the same data.

Usage::

    .venv/bin/python benchmarks/astrodrizzle.py [--size 800] [--nexp 6] [--seed 1]
        [--workdir /tmp/bench] [--benchpython PYTHON] [--repeat N]

Steps, each a separate process measured with ``/usr/bin/time -v`` (wall
time and peak RSS of that process):

1. simulate the M2 set (not timed against anything);
2. drizzleflow: ``drizzleflow run`` of the tutorial recipe (ingest with
   updatewcs, the whole chain) on the simulated files;
3. AstroDrizzle (from ``--benchpython``): the tutorial's first call with
   ``num_cores=1``, ``updatewcs=False``, ``build=False`` on COPIES of the
   new-format working copies our ingest produced (DGEOFILE set to N/A, CR
   bits of our run cleared by its ``resetbits``), on the same output grid
   (``final_wcs`` = our grid) so pixels can be compared one to one;
4. drizzleflow again with only ``drizzle_final.pixfrac`` changed (cache),
   and that command once more, every step cached: the floor under any rerun.

Prints wall time, peak RSS, CPU time (user + system), the ratios, the time per
step beside the timing table AstroDrizzle writes at the end of its trailer file
(and what each spent outside its steps: interpreter, imports, checks), and a
pixel comparison of the two final images where both have weight.  ``--repeat N``
makes N rounds in all of drizzleflow's runs followed by AstroDrizzle's (fresh
folders each round) and prints every round's ratios and their range: on a
shared machine a pair run back to back is the unit of comparison.
AstroDrizzle's WFPC2 output is e-/s divided by the gain of the last chip
drizzled (WF4); it is multiplied back for the comparison and this is said in
the output.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import bench_python  # noqa: E402

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]
DRIZZLEFLOW = Path(sys.executable).with_name("drizzleflow")


def timed(cmd, log, env=None, cwd=None):
    """Run ``cmd`` under /usr/bin/time -v; return (wall seconds, peak RSS MiB,
    CPU seconds).  CPU is user + system, children included, as ``/usr/bin/time``
    counts them: the wall-clock ratio is the target, the CPU ratio beside it
    shows how much of it is work done and how much the use of the second core,
    and drifts less with the shared machine's load.

    The files the previous command wrote are flushed first (``sync``): Linux
    writes dirty pages back ~30 s after they were written, which would land in
    the middle of the next measured command (the sweep's separate drizzle took
    2.1 s instead of 1.2 s while the tutorial run's gigabyte went to disk)."""
    os.sync()
    full = ["/usr/bin/time", "-v", *map(str, cmd)]
    with open(log, "w") as fh:
        r = subprocess.run(full, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    text = Path(log).read_text()
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n  see {log}\n"
                 + "\n".join(text.splitlines()[-25:]))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    parts = [float(p) for p in wall.split(":")]
    secs = parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) > 2 else 0)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): (\S+)", text).group(1)) for kind in ("User", "System"))
    return secs, rss, cpu


def write_recipe(path, data_dir, uref, outname):
    """The tutorial recipe pointed at the simulated files (absolute extends)."""
    text = (ROOT / "configs" / "m2_tutorial.yaml").read_text()
    text = text.replace("extends: wfpc2_default.yaml", f"extends: {ROOT / 'configs' / 'wfpc2_default.yaml'}")
    text = re.sub(r"^input: .*$", f"input: \"{data_dir}/*_c0m.fits\"\nuref: \"{uref}/\"", text, flags=re.M)
    text = re.sub(r"^output: .*$", f"output: {outname}", text, flags=re.M)
    Path(path).write_text(text)


AD_SCRIPT = textwrap.dedent("""
    import glob, json, sys, os
    from drizzlepac import astrodrizzle
    g = json.load(open(sys.argv[1]))
    os.chdir(sys.argv[2])
    astrodrizzle.AstroDrizzle(sorted(glob.glob('*_c0m.fits')), output='final', num_cores=1,
        updatewcs=False, build=False, clean=True, context=True,
        driz_sep_fillval=99999, driz_sep_bits='8,1024', combine_type='minmed',
        driz_cr_snr='5.5 3.5', driz_cr_scale='2.0 1.5', final_wht_type='EXP',
        final_wt_scl='exptime', final_pixfrac=1.0, final_fillval=99999, driz_cr_corr=True,
        final_bits='8,1024', final_wcs=True, final_scale=g['scale'], final_rot=g['rot'],
        final_ra=g['ra'], final_dec=g['dec'], final_outnx=g['nx'], final_outny=g['ny'],
        final_crpix1=g['crpix1'], final_crpix2=g['crpix2'])
""")


def simulate_fresh(wd, size, nexp, seed):
    """Empty ``wd`` and simulate the M2 set into ``wd/data`` (not timed); returns that folder."""
    if wd.exists():
        shutil.rmtree(wd)
    wd.mkdir(parents=True)
    data = wd / "data"
    print(f"simulating M2: {nexp} exposures x 4 chips, {size}^2 -> {data} (not timed)")
    subprocess.run([str(x) for x in (DRIZZLEFLOW, "simulate", "m2", data, "--size", size, "--nexp", nexp,
                                     "--seed", seed)], check=True, stdout=subprocess.DEVNULL)
    return data


def grid_of(sci_path):
    h = fits.getheader(sci_path)
    from astropy.wcs import WCS
    w = WCS(h)
    cd = w.pixel_scale_matrix
    return {"scale": float(np.sqrt(abs(np.linalg.det(cd))) * 3600), "rot": float(np.degrees(np.arctan2(cd[0, 1], cd[1, 1]))),
            "ra": float(w.wcs.crval[0]), "dec": float(w.wcs.crval[1]), "nx": int(h["NAXIS1"]), "ny": int(h["NAXIS2"]),
            "crpix1": float(w.wcs.crpix[0]), "crpix2": float(w.wcs.crpix[1])}


def prepare_ad_inputs(work_dir, dest):
    """Copies of our new-format working files for AstroDrizzle (never the originals)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(work_dir.glob("*_c0m.fits")) + sorted(work_dir.glob("*_c1m.fits")):
        if "crclean" in f.name:
            continue
        shutil.copy(f, dest / f.name)
        with fits.open(dest / f.name, mode="update") as h:
            h[0].header["DGEOFILE"] = "N/A"
            for k in ("MDRIZSKY",):
                for e in h[1:]:
                    e.header.pop(k, None)
            if f.name.endswith("_c1m.fits"):
                for e in h[1:]:
                    if e.header.get("NAXIS", 0) == 2 and e.header.get("EXTNAME", "SCI") != "SCI":
                        e.header["EXTNAME"] = "SCI"


def compare(ours_dir, ad_dir, gain_last):
    s1 = fits.getdata(ours_dir / "final_drz_sci.fits").astype(np.float64)
    w1 = fits.getdata(ours_dir / "final_drz_wht.fits")
    name = "final_drw" if (ad_dir / "final_drw_sci.fits").exists() else "final_drz"  # WFPC2: _drw
    s2 = fits.getdata(ad_dir / f"{name}_sci.fits").astype(np.float64) * gain_last
    w2 = fits.getdata(ad_dir / f"{name}_wht.fits")
    both = (w1 > 0) & (w2 > 0) & np.isfinite(s1) & np.isfinite(s2)
    rel = np.abs(s1[both] - s2[both]) / np.maximum(np.abs(s2[both]), 1e-12)
    bright = s2[both] > np.percentile(s2[both], 90)
    return {
        "pixels_both_weighted": int(both.sum()),
        "median_rel_diff_all": float(np.median(rel)),
        "median_rel_diff_brightest_10pct": float(np.median(rel[bright])),
        "median_ratio_ours_over_ad_x_gain": float(np.median(s1[both][bright] / s2[both][bright])),
        "weight_ratio_median": float(np.median(w1[both] / w2[both])),
        "ad_fill_values": sorted({float(v) for v in np.unique(s2[(w2 == 0)] / gain_last)[:3]}),
        "ours_fill_values": sorted({float(v) for v in np.unique(s1[(w1 == 0)])[:3]}),
        "per_chip": per_chip(s1, s2, both, fits.getdata(ours_dir / "final_drz_ctx.fits")),
    }


def per_chip(s1, s2, both, ctx, nchips=4, names=("PC1", "WF2", "WF3", "WF4")):
    """The comparison where only one detector contributed (from our context image:
    bit 4 i + k - 1 is chip k of exposure i, every simulated exposure has 4 chips).

    ``sky_offset`` is the median of ours - AstroDrizzle x gain (e-/s), a constant
    per chip: the two subtract different sky levels (AstroDrizzle's MDRIZSKY is
    the same number of DN on the three WF chips although WF3's gain is 3 % lower;
    ours is the same number of e- per arcsec^2).  ``bright_ratio_after_sky`` is the
    median ratio on the brightest 10 % once that constant is taken out: what is
    left of any difference in the drizzling itself."""
    ctx = ctx[0] if ctx.ndim == 3 else ctx
    ctx = ctx.astype(np.int64)
    nexp = -(-int(ctx.max()).bit_length() // nchips)
    out = {}
    for k in range(nchips):
        bits = sum(1 << (nchips * e + k) for e in range(nexp))
        m = both & (ctx != 0) & ((ctx & ~bits) == 0)
        if m.sum() < 1000:
            continue
        a, b = s1[m], s2[m]
        offset = float(np.median(a - b))
        bright = a > np.percentile(a, 90)
        out[names[k]] = {"pixels": int(m.sum()), "sky_offset": round(offset, 5),
                         "bright_ratio": round(float(np.median(a[bright] / b[bright])), 5),
                         "bright_ratio_after_sky": round(float(np.median(a[bright] / (b[bright] + offset))), 5)}
    return out


def run_ours(recipe, out, log_dir, rerun_pixfrac, tag=""):
    """drizzleflow's full run into ``out``, the pixfrac-only rerun, and that rerun
    again with every step cached; returns their wall times and peak RSS."""
    t_ours, m_ours, c_ours = timed([DRIZZLEFLOW, "run", recipe, "--output", out], log_dir / f"ours{tag}.log")
    rerun = [DRIZZLEFLOW, "run", recipe, "--output", out, f"drizzle_final.pixfrac={rerun_pixfrac}"]
    t_rerun, m_rerun, c_rerun = timed(rerun, log_dir / f"ours_rerun{tag}.log")
    # the same command again: every step cached, so this is what any rerun costs before
    # its first step runs (interpreter, imports, recipe, cache checks)
    t_cached, _, _ = timed(rerun, log_dir / f"ours_cached{tag}.log")
    return {"ours_s": t_ours, "ours_mib": m_ours, "rerun_s": t_rerun, "rerun_mib": m_rerun, "cached_s": t_cached,
            "ours_cpu_s": c_ours, "rerun_cpu_s": c_rerun}


def run_ad(benchpython, work_dir, ad_dir, wd, tag=""):
    """AstroDrizzle on copies of our working files, on our output grid."""
    prepare_ad_inputs(work_dir, ad_dir)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t_ad, m_ad, c_ad = timed([benchpython, wd / "run_ad.py", wd / "grid.json", ad_dir], wd / f"ad{tag}.log", env=env)
    return {"ad_s": t_ad, "ad_mib": m_ad, "ad_cpu_s": c_ad}


#: AstroDrizzle's steps (as its trailer file's timing table names them) and ours, in chain order.
#: AstroDrizzle's Initialization reads copies already in the new format; our ingest converts
#: the archive files (updatewcs), so that row does not compare like with like.
STEP_PAIRS = (("Initialization", "ingest"), ("Static Mask", "static_mask"), ("Subtract Sky", "sky"),
              ("Separate Drizzle", "drizzle_separate"), ("Create Median", "median"), ("Blot", "blot"),
              ("Driz_CR", "cosmic_rays"), ("Final Drizzle", "drizzle_final"))

_AD_TIMING = re.compile(r"^(?:\[INFO\s*\]\s*)?(\S.*?)\s+([0-9]+(?:\.[0-9]*)?) sec\s*$")
_OUR_SUMMARY = re.compile(r"^(\w+)\s+\w+\s+ran\s+([0-9]+(?:\.[0-9]*)?)\s*$")


def ad_step_seconds(trailer) -> dict:
    """Seconds per step from the timing table at the end of AstroDrizzle's trailer
    (``astrodrizzle.log``): ``{"Static Mask": 0.40, ..., "Total": 22.3}``; empty
    when there is no trailer or no table (the per-step rows then show dashes)."""
    out, table, trailer = {}, False, Path(trailer)
    if not trailer.is_file():
        return out
    for line in trailer.read_text(errors="replace").splitlines():
        if "Elapsed time" in line:
            table, out = True, {}   # the last table in the file counts
            continue
        m = _AD_TIMING.match(line.strip()) if table else None
        if m:
            out[m.group(1).strip()] = float(m.group(2))
    return out


def our_step_seconds(run_log) -> dict:
    """Seconds per step that ran, from the summary table ``drizzleflow run`` prints
    (the run's own log: the manifest is rewritten by the reruns that follow)."""
    out = {}
    for line in Path(run_log).read_text(errors="replace").splitlines():
        m = _OUR_SUMMARY.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def step_rows(ad, ours, ad_wall, ours_wall) -> list:
    """``(label, AstroDrizzle s, ours s)`` per step, then what each process spent
    outside its steps (interpreter, imports, checks, writing logs): wall minus the
    steps' sum.  ``None`` where a side did not report the step."""
    rows = [(f"{a} / {o}", ad.get(a), ours.get(o)) for a, o in STEP_PAIRS]
    ad_sum = sum(v for _, v, _ in rows if v is not None)
    our_sum = sum(v for *_, v in rows if v is not None)
    rows.append(("outside the steps", ad_wall - ad_sum if ad else None, ours_wall - our_sum if ours else None))
    return rows


def print_step_rows(rows):
    print(f"  {'step (AstroDrizzle / drizzleflow)':<36} {'AstroDrizzle':>12} {'drizzleflow':>12} {'ratio':>7}")
    for label, a, o in rows:
        fa = f"{a:10.2f} s" if a is not None else f"{'-':>12}"
        fo = f"{o:10.2f} s" if o is not None else f"{'-':>12}"
        fr = f"{a / o:6.1f}x" if a is not None and o else f"{'-':>7}"
        print(f"  {label:<36} {fa} {fo} {fr}")


def ratios(r) -> dict:
    return {"speed": r["ad_s"] / r["ours_s"], "memory": r["ours_mib"] / r["ad_mib"],
            "rerun": r["ad_s"] / r["rerun_s"], "cached": r["ad_s"] / r["cached_s"],
            "cpu": r["ad_cpu_s"] / r["ours_cpu_s"]}


def print_ratios(x, prefix=""):
    print(f"{prefix}speed-up {x['speed']:5.2f}x (target >= 6); memory ratio {x['memory']:5.2f} (target <= 0.5); "
          f"rerun speed-up vs AstroDrizzle full run {x['rerun']:5.1f}x (target >= 20; "
          f"a run with nothing to do is {x['cached']:4.1f}x); CPU time (user + system) "
          f"{x['cpu']:5.2f}x less")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--nexp", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/drizzleflow_bench")
    ap.add_argument("--benchpython", default=str(bench_python()),
                    help="interpreter with drizzlepac installed (default: .benchenv, see make bench-env)")
    ap.add_argument("--skip-ad", action="store_true", help="only run drizzleflow")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of (drizzleflow, AstroDrizzle) in turn, "
                    "each into fresh folders; the ratios of every round and their range are printed "
                    "(the machine's speed drifts, so a pair run back to back is the unit)")
    a = ap.parse_args(argv)
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")
    wd = Path(a.workdir).resolve()
    data = simulate_fresh(wd, a.size, a.nexp, a.seed)
    uref = data / "uref"
    recipe = wd / "tutorial.yaml"
    write_recipe(recipe, data, uref, wd / "ours")

    first = run_ours(recipe, wd / "ours", wd, 0.8)
    print(f"drizzleflow tutorial recipe: {first['ours_s']:7.2f} s wall, {first['ours_mib']:7.1f} MiB peak RSS, "
          f"{first['ours_cpu_s']:.2f} CPU-s")
    print(f"drizzleflow rerun, only drizzle_final.pixfrac changed: {first['rerun_s']:7.2f} s wall, "
          f"{first['rerun_mib']:7.1f} MiB, {first['rerun_cpu_s']:.2f} CPU-s")
    print(f"drizzleflow run with every step cached (floor of any rerun): {first['cached_s']:7.2f} s wall")
    # restore the pixfrac=1.0 products for the comparison (from the cache)
    timed([DRIZZLEFLOW, "run", recipe, "--output", wd / "ours"], wd / "ours_restore.log")

    result = {"size": a.size, "nexp": a.nexp, **first}
    if not a.skip_ad:
        ad_dir = wd / "ad_run"
        g = grid_of(wd / "ours" / "final_drz_sci.fits")
        (wd / "grid.json").write_text(json.dumps(g))
        (wd / "run_ad.py").write_text(AD_SCRIPT)
        first.update(run_ad(a.benchpython, wd / "ours" / "work", ad_dir, wd))
        print(f"AstroDrizzle (num_cores=1):  {first['ad_s']:7.2f} s wall, {first['ad_mib']:7.1f} MiB peak RSS, "
              f"{first['ad_cpu_s']:.2f} CPU-s")
        print_ratios(ratios(first))
        rows = step_rows(ad_step_seconds(ad_dir / "astrodrizzle.log"), our_step_seconds(wd / "ours.log"),
                         first["ad_s"], first["ours_s"])
        print("time per step (first round; wall times, the ratio AstroDrizzle / drizzleflow):")
        print_step_rows(rows)
        gain_last = float(fits.getval(ad_dir / sorted(p.name for p in ad_dir.glob("*_c0m.fits"))[-1], "ATODGAIN", 0))
        from drizzleflow.steps.instruments.wfpc2 import detector_gain
        g_wf4 = detector_gain(gain_last, 4)[0]
        cmp = compare(wd / "ours", ad_dir, g_wf4)
        print(f"pixel comparison (AstroDrizzle x gain of WF4 = {g_wf4}):")
        for k, v in cmp.items():
            if k != "per_chip":
                print(f"  {k}: {v}")
        print("  where one detector alone contributed (sky_offset: ours - AstroDrizzle x gain, e-/s):")
        for chip, v in cmp["per_chip"].items():
            print(f"    {chip}: " + ", ".join(f"{k} {x}" for k, x in v.items()))
        result.update({"ad_s": first["ad_s"], "ad_mib": first["ad_mib"], "ad_cpu_s": first["ad_cpu_s"], "compare": cmp,
                       "steps": [{"step": label, "ad_s": a, "ours_s": o} for label, a, o in rows]})
        rounds = [first]
        for k in range(2, a.repeat + 1):
            # fresh folders each round, the last round's removed first (1.5 GB on M2); a
            # different rerun pixfrac each round, so that no rerun is served from the cache
            out, ad_k = wd / f"ours_r{k}", wd / f"ad_run_r{k}"
            for old in (wd / f"ours_r{k - 1}", wd / f"ad_run_r{k - 1}"):
                shutil.rmtree(old, ignore_errors=True)
            r = run_ours(recipe, out, wd, round(0.8 - 0.01 * (k - 1), 2), tag=f"_r{k}")
            r.update(run_ad(a.benchpython, out / "work", ad_k, wd, tag=f"_r{k}"))
            rounds.append(r)
            print(f"round {k}: drizzleflow {r['ours_s']:.2f} s ({r['ours_cpu_s']:.2f} CPU-s), {r['ours_mib']:.1f} MiB, "
                  f"rerun {r['rerun_s']:.2f} s, cached {r['cached_s']:.2f} s; AstroDrizzle {r['ad_s']:.2f} s "
                  f"({r['ad_cpu_s']:.2f} CPU-s), {r['ad_mib']:.1f} MiB")
            print_ratios(ratios(r), prefix=f"round {k}: ")
        if len(rounds) > 1:
            xs = [ratios(r) for r in rounds]
            span = {key: (min(x[key] for x in xs), float(np.median([x[key] for x in xs])), max(x[key] for x in xs))
                    for key in xs[0]}
            print(f"over {len(rounds)} rounds (min / median / max): " + "; ".join(
                f"{key} {lo:.2f} / {med:.2f} / {hi:.2f}" for key, (lo, med, hi) in span.items()))
            result["rounds"] = [{**r, **ratios(r)} for r in rounds]
    (wd / "result.json").write_text(json.dumps(result, indent=2))
    print(f"details in {wd}/result.json and the *.log files")


if __name__ == "__main__":
    main()
