"""Sweep reports: ``sweep_results.ecsv`` (+ CSV), a Markdown table in the
tutorial's layout, and two quick-look PNGs.

The table is long: one row per (point, chip) plus a ``chip = ALL`` row per
point.  Its ``meta`` holds the sweep block as written, the sweep file and the
guidance threshold.  The ALL row carries the FWHM of all stars; for the
weight it gives the *worst chip's* std/median (chips of different pixel
areas have different weight levels, so no mosaic-wide median is given) and
``meets_guidance`` is true only when every chip meets the guidance.

The engine does not import astronomy code; this module only formats numbers
the metric steps produced (it uses astropy.table for ECSV and matplotlib,
when installed, for the figures).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

from .atomic import atomic_path, write_text

__all__ = ["results_table", "write_reports", "markdown_table", "CHIPS"]

log = logging.getLogger("drizzleflow.sweep")

CHIPS = ("PC1", "WF2", "WF3", "WF4")
NAN = float("nan")


def _num(values):
    """Column values: floats when all numeric, else strings as written."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return [str(v) for v in values]


def results_table(spec, results):
    """An astropy Table of the sweep results.

    Parameters
    ----------
    spec : engine.sweep.SweepSpec
    results : list of dict
        One ``point_result.json`` payload per point (missing points are left out).
    """
    from astropy.table import Table

    limit = float(spec.guidance.get("wht_rms_over_median", 0.2))
    rows = []
    for res in sorted(results, key=lambda r: r["index"]):
        psf = res.get("psf_fwhm") or {}
        wst = res.get("weight_stats") or {}
        chips = [c for c in CHIPS if c in (wst.get("chips") or {}) or c in (psf.get("chips") or {})]
        extra = sorted(set((wst.get("chips") or {})) - set(CHIPS))
        for chip in chips + extra + ["ALL"]:
            f = psf.get("ALL", {}) if chip == "ALL" else (psf.get("chips") or {}).get(chip, {})
            w = wst.get("ALL", {}) if chip == "ALL" else (wst.get("chips") or {}).get(chip, {})
            ratio = w.get("wht_rms_over_median", NAN)
            if chip == "ALL":
                chip_ratios = [c.get("wht_rms_over_median", NAN) for c in (wst.get("chips") or {}).values()]
                chip_ratios = [r for r in chip_ratios if r is not None and not math.isnan(r)]
                ratio = max(chip_ratios) if chip_ratios else NAN
                meets = bool(chip_ratios) and all(r <= limit for r in chip_ratios)
            else:
                meets = ratio is not None and not math.isnan(ratio) and ratio <= limit
            row = {"point": f"{res['index']:03d}", "name": res["name"]}
            for k, col in zip(spec.keys, spec.columns()):
                row[col] = res["values"].get(k)
            row.update({
                "pixfrac": res.get("pixfrac", NAN), "scale": res.get("scale", NAN), "chip": chip,
                "n_stars": int(f.get("n_stars", 0) or 0),
                "fwhm_pix": f.get("fwhm_pix", NAN), "fwhm_std_pix": f.get("fwhm_std_pix", NAN),
                "fwhm_mad_pix": f.get("fwhm_mad_pix", NAN), "fwhm_arcsec": f.get("fwhm_arcsec", NAN),
                "fwhm_std_arcsec": f.get("fwhm_std_arcsec", NAN),
                "wht_median": w.get("wht_median", NAN), "wht_std": w.get("wht_std", NAN),
                "wht_rms_over_median": ratio if ratio is not None else NAN,
                "zero_wht_frac": w.get("zero_wht_frac", NAN), "box_pixels": int(wst.get("box_pixels", 0) or 0),
                "meets_guidance": bool(meets), "status": res.get("status", ""),
                "runtime_s": float(res.get("runtime_s", NAN)), "config_sha256": res.get("hash", ""),
                "product": res.get("product", ""),
            })
            rows.append(row)
    names = list(rows[0]) if rows else ["point"]
    cols = {n: [r.get(n) for r in rows] for n in names}
    for col in spec.columns():
        if col in cols:
            cols[col] = _num([NAN if v is None else v for v in cols[col]])
    for n in ("pixfrac", "scale", "fwhm_pix", "fwhm_std_pix", "fwhm_mad_pix", "fwhm_arcsec", "fwhm_std_arcsec",
              "wht_median", "wht_std", "wht_rms_over_median", "zero_wht_frac", "runtime_s"):
        if n in cols:
            cols[n] = [NAN if v is None else float(v) for v in cols[n]]
    t = Table(cols)
    for n, unit in (("fwhm_arcsec", "arcsec"), ("fwhm_std_arcsec", "arcsec"), ("scale", "arcsec"),
                    ("fwhm_pix", "pix"), ("fwhm_std_pix", "pix"), ("fwhm_mad_pix", "pix"), ("runtime_s", "s")):
        if n in t.colnames:
            t[n].unit = unit
    t.meta["sweep_file"] = str(spec.path)
    t.meta["mode"] = spec.mode
    t.meta["swept"] = list(spec.keys)
    t.meta["sweep"] = spec.raw
    t.meta["guidance"] = {"wht_rms_over_median_max": limit,
                          "note": "DrizzlePac Handbook: weight-image RMS within 20% of the median"}
    t.meta["baseline_point"] = f"{spec.baseline:03d}"
    import hashlib
    hashes = [getattr(p, "_hash", None) or "" for p in spec.points]
    t.meta["sweep_sha256"] = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    t.meta["points"] = {f"{p.index:03d}": {"name": p.name, "config_sha256": getattr(p, "_hash", None)}
                        for p in spec.points}
    return t


def _fmt(x, nd=4):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{nd}g}"


def markdown_table(spec, results) -> str:
    """The tutorial's table: settings | median FWHM (arcsec, pixels) | weight median ± std (std/median %)."""
    limit = float(spec.guidance.get("wht_rms_over_median", 0.2))
    head = ["Settings", "Median PSF FWHM in arcsec (and output pixels)", "Stars"] + \
        [f"{c} weight median ± std (std/median)" for c in CHIPS] + [f"Weight std/median ≤ {limit:g}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in sorted(results, key=lambda r: r["index"]):
        psf = (res.get("psf_fwhm") or {}).get("ALL", {})
        wst = (res.get("weight_stats") or {}).get("chips", {})
        settings = ", ".join(f"{k.rsplit('.', 1)[-1]}={res['texts'][k]}" for k in spec.keys if k in res["texts"])
        if res["index"] == spec.baseline:
            settings += " (baseline)"
        fw = (f"{_fmt(psf.get('fwhm_arcsec'))} ± {_fmt(psf.get('fwhm_std_arcsec'), 3)}\" "
              f"({_fmt(psf.get('fwhm_pix'), 3)} ± {_fmt(psf.get('fwhm_std_pix'), 3)} pix)") if psf else "—"
        cells = [settings, fw, str(psf.get("n_stars", 0))]
        ok = bool(wst)
        for c in CHIPS:
            w = wst.get(c)
            if not w:
                cells.append("—")
                continue
            r = w.get("wht_rms_over_median", NAN)
            ok = ok and r is not None and not math.isnan(r) and r <= limit
            cells.append(f"{_fmt(w.get('wht_median'))} ± {_fmt(w.get('wht_std'))} ({100 * r:.1f}%)")
        cells.append("yes" if ok else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plots(spec, results, table, outdir):
    """Both figures; the second is drawn in a forked process while this one
    draws the first (0.55 s -> ~0.3 s at the end of the M2 sweep, when every
    point is done and nothing else is left to do)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except ImportError:  # the plot extra is optional
        log.warning("matplotlib is not installed: no sweep figures (pip install drizzleflow[plot])")
        return []
    limit = float(spec.guidance.get("wht_rms_over_median", 0.2))
    base = next((r for r in results if r["index"] == spec.baseline), results[0])
    args = (results, table, Path(outdir))
    child = _in_child(_weight_figure, *args, limit)
    try:
        made = [_fwhm_figure(*args, base.get("scale"))]
    finally:   # the child finishes its file before this process goes on (or raises)
        drawn = child is not None and _joined(child)
    made.append(Path(outdir, WEIGHT_FIGURE) if drawn else _weight_figure(*args, limit))   # else: no fork, or it failed
    return made


FWHM_FIGURE = "sweep_fwhm_vs_pixfrac.png"
WEIGHT_FIGURE = "sweep_weight_vs_pixfrac_scale.png"


def _in_child(func, *args):
    """``func(*args)`` in a forked process (None where fork does not exist)."""
    import multiprocessing as mp
    if "fork" not in mp.get_all_start_methods():
        return None
    proc = mp.get_context("fork").Process(target=func, args=args, name="drizzleflow-sweep-figure", daemon=True)
    proc.start()
    return proc


def _joined(proc) -> bool:
    proc.join()
    return proc.exitcode == 0


def _fwhm_figure(results, table, outdir, base_scale):
    """Figure 5: FWHM per star vs pixfrac at the baseline scale, and median FWHM vs pixfrac per scale."""
    import matplotlib.pyplot as plt
    import numpy as np
    from astropy.table import Table

    # Figure 5: FWHM per star vs pixfrac at the baseline scale
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    same = sorted([r for r in results if r.get("scale") == base_scale], key=lambda r: -r.get("pixfrac", 0))
    for r in same:
        stars = r.get("stars_file")
        if stars and Path(stars).exists():
            t = Table.read(stars, format="ascii.ecsv")
            ax1.plot(np.asarray(t["id"]), np.asarray(t["fwhm_arcsec"]), ".", ms=4,
                     label=f"pixfrac={r['pixfrac']:g} (median {np.nanmedian(t['fwhm_arcsec']):.4f}\")")
    ax1.set_xlabel("star (baseline list)")
    ax1.set_ylabel("PSF FWHM (arcsec)")
    ax1.set_title(f"FWHM per star, scale={base_scale:g}\"/pix")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8)
    allrows = table[table["chip"] == "ALL"]
    for sc in sorted(set(allrows["scale"])):
        sel = allrows[allrows["scale"] == sc]
        order = np.argsort(sel["pixfrac"])
        ax2.errorbar(sel["pixfrac"][order], sel["fwhm_arcsec"][order], yerr=sel["fwhm_std_arcsec"][order],
                     marker="o", capsize=3, label=f"scale={sc:g}\"")
    ax2.set_xlabel("pixfrac")
    ax2.set_ylabel("median FWHM (arcsec) ± std")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    p = Path(outdir, FWHM_FIGURE)
    with atomic_path(p, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return p


def _weight_figure(results, table, outdir, limit):
    """Weight std/median vs pixfrac (one line per scale) and vs scale (one line per pixfrac)."""
    import matplotlib.pyplot as plt
    import numpy as np

    # weight std/median vs pixfrac (one line per scale) and vs scale (one line per pixfrac);
    # colour = chip, line style = the other parameter
    from matplotlib.lines import Line2D
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    chips = [c for c in CHIPS if c in set(table["chip"])]
    colours = dict(zip(CHIPS, ("tab:red", "tab:blue", "tab:green", "tab:orange")))
    styles = ("-", "--", ":", "-.")
    rows_all = table[np.isin(table["chip"], chips)]
    scales = sorted(set(float(v) for v in rows_all["scale"]))
    pixfracs = sorted(set(float(v) for v in rows_all["pixfrac"]))
    for c in chips:
        rows = table[table["chip"] == c]
        for j, sc in enumerate(scales):
            sel = rows[rows["scale"] == sc]
            o = np.argsort(sel["pixfrac"])
            ax1.plot(sel["pixfrac"][o], sel["wht_rms_over_median"][o], color=colours[c],
                     ls=styles[j % len(styles)], marker="o", ms=4)
        for j, pf in enumerate(pixfracs):
            sel = rows[rows["pixfrac"] == pf]
            o = np.argsort(sel["scale"])
            ax2.plot(sel["scale"][o], sel["wht_rms_over_median"][o], color=colours[c],
                     ls=styles[j % len(styles)], marker="o", ms=4)
    chip_handles = [Line2D([], [], color=colours[c], marker="o", label=c) for c in chips]
    guide = Line2D([], [], color="k", ls="--", lw=1, label=f"guidance {limit:g}")
    for ax, xl, other, vals in ((ax1, "pixfrac", "scale", scales), (ax2, "scale (arcsec/pix)", "pixfrac", pixfracs)):
        ax.axhline(limit, color="k", ls="--", lw=1)
        ax.axhspan(limit, max(limit * 1.05, ax.get_ylim()[1]), color="0.9", zorder=0)
        ax.set_xlabel(xl)
        ax.set_ylabel("weight std / median (central box)")
        style_handles = [Line2D([], [], color="0.3", ls=styles[j % len(styles)], label=f"{other}={v:g}")
                         for j, v in enumerate(vals[:len(styles)])]
        ax.legend(handles=chip_handles + style_handles + [guide], fontsize=7, ncol=2)
    ax1.set_title("weight scatter vs pixfrac (shaded: fails the Handbook's 20% rule)")
    ax2.set_title("weight scatter vs output scale")
    fig.tight_layout()
    p = Path(outdir, WEIGHT_FIGURE)
    with atomic_path(p, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return p


def write_reports(spec, results, outdir, figures=True) -> dict:
    """Write the ECSV/CSV table, the Markdown table and the figures into ``outdir``."""
    outdir = Path(outdir)
    table = results_table(spec, results)
    ecsv = outdir / "sweep_results.ecsv"
    with atomic_path(ecsv, suffix=".ecsv") as tmp:
        table.write(tmp, format="ascii.ecsv")
    csv = outdir / "sweep_results.csv"
    with atomic_path(csv, suffix=".csv") as tmp:
        table.copy(copy_data=True).write(tmp, format="ascii.csv")
    md = outdir / "sweep_results.md"
    write_text(md, f"# Sweep {spec.path.name}: {len(results)} of {len(spec.points)} points\n\n"
               + markdown_table(spec, results))
    figs = _plots(spec, results, table, outdir) if (results and figures) else []
    return {"ecsv": ecsv, "csv": csv, "markdown": md, "figures": figs, "table": table}
