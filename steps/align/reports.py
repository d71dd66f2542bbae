"""Alignment outputs in TweakReg's formats: source catalogs (``.coo``), the
per-image fit file ``*_catalog_fit.match`` whose header lines the tutorial
greps, the shift file, and PNG plots (matplotlib Agg, never interactive)."""
from __future__ import annotations

import logging

import numpy as np

from drizzleflow.engine.atomic import atomic_path, write_text

__all__ = ["write_coo", "write_catalog_ecsv", "write_fit_match", "write_shiftfile",
           "plot_histogram", "plot_residuals"]

log = logging.getLogger(__name__)


def write_coo(path, table, image=""):
    """Plain-text XY catalog like TweakReg's ``*_sci?_xy_catalog.coo``:
    1-based X, Y, flux, ID (so ``tvmark`` and ds9 overlay it directly)."""
    lines = [f"# Source catalog derived for {image}" if image else "# Source catalog",
             "# Columns:", "#   1: X (1-based)", "#   2: Y (1-based)", "#   3: Flux", "#   4: ID"]
    for r in table:
        lines.append(f"{r['x'] + 1:.4f} {r['y'] + 1:.4f} {r['flux']:.6g} {int(r['id'])}")
    write_text(path, "\n".join(lines) + "\n")


def write_catalog_ecsv(path, table):
    with atomic_path(path, suffix=".ecsv") as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)


def write_fit_match(path, image, refname, fit, ref_xy, img_xy, ref_orig, img_orig,
                    ref_ids, img_ids, img_chip, radec, pscale_arcsec):
    """The ``*_catalog_fit.match`` file: TweakReg's header lines then one row
    per matched pair (only those kept by clipping)."""
    rot = fit["rot"]
    sx, sy = fit["scale_xy"]
    rms = fit["rms"]
    mas = [r * pscale_arcsec * 1000.0 for r in rms]
    if fit["geometry"] == "general":
        rot_txt = f"{fit['rot_xy'][0]:.6g} {fit['rot_xy'][1]:.6g}"
    else:   # one proper rotation, as in the tutorial's grep output
        rot_txt = f"{rot:.6g}"
    hdr = [
        f"# Input image: {image}",
        f"# Reference: {refname}",
        "# Coordinate mapping parameters:",
        f"# X and Y rms: {rms[0]:.6g} {rms[1]:.6g}",
        f"# X and Y shift: {fit['shift'][0]:.6g} {fit['shift'][1]:.6g}",
        f"# X and Y scale: {sx:.6g} {sy:.6g}",
        f"# X and Y rotation: {rot_txt}",
        f"# <rotation> and skew: {rot:.6g} {fit['skew']:.6g}",
        f"# Fit geometry: {fit['geometry']}",
        f"# Number of matches (fitted/total): {fit['nfit']} {fit['nmatch']}",
        f"# X and Y rms (mas): {mas[0]:.4g} {mas[1]:.4g}",
        f"# Plane pixel scale (arcsec): {pscale_arcsec:.6g}",
        "#",
        "# Columns:",
        "#   1-2: reference X, Y (plane pixels, 1-based)",
        "#   3-4: input X, Y (plane pixels, 1-based)",
        "#   5-6: fit X, Y   7-8: residual X, Y",
        "#   9-10: original reference X, Y   11-12: original input X, Y (chip pixels, 1-based)",
        "#   13: reference ID   14: input ID   15: input EXTVER   16-17: RA, Dec of fit (deg)",
    ]
    from .fitting import apply_fit
    pred = apply_fit(fit, ref_xy)
    res = img_xy - pred
    mask = np.asarray(fit["mask"], bool)
    rows = []
    for k in np.flatnonzero(mask):
        rows.append(
            f"{ref_xy[k, 0] + 1:.6f} {ref_xy[k, 1] + 1:.6f} {img_xy[k, 0] + 1:.6f} {img_xy[k, 1] + 1:.6f} "
            f"{pred[k, 0] + 1:.6f} {pred[k, 1] + 1:.6f} {res[k, 0]:.6f} {res[k, 1]:.6f} "
            f"{ref_orig[k, 0] + 1:.4f} {ref_orig[k, 1] + 1:.4f} {img_orig[k, 0] + 1:.4f} {img_orig[k, 1] + 1:.4f} "
            f"{ref_ids[k]} {img_ids[k]} {img_chip[k]} {radec[k, 0]:.9f} {radec[k, 1]:.9f}")
    write_text(path, "\n".join(hdr + rows) + "\n")


def write_shiftfile(path, refname, fits_by_image):
    """TweakReg's shift file: ``name xsh ysh rot scale xrms yrms`` per image."""
    lines = ["# frame: output", f"# refimage: {refname}", "# form: delta", "# units: pixels"]
    for name, f in fits_by_image.items():
        if f is None:
            continue
        lines.append(f"{name} {f['shift'][0]:.6f} {f['shift'][1]:.6f} {f['rot']:.6f} "
                     f"{f['scale']:.8f} {f['rms'][0]:.4f} {f['rms'][1]:.4f}")
    write_text(path, "\n".join(lines) + "\n")


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def plot_histogram(path, hist_info, title=""):
    """Offset histogram PNG titled 'Peak has N matches at (dx, dy)'."""
    plt = _plt()
    h = hist_info["hist"]
    o = hist_info["offsets"]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ext = (o[0] - 0.5, o[-1] + 0.5, o[0] - 0.5, o[-1] + 0.5)
    im = ax.imshow(h, origin="lower", extent=ext, interpolation="nearest", cmap="viridis")
    dx, dy = hist_info["shift"]
    ax.plot([dx], [dy], "r+", ms=14, mew=1.5)
    ax.set_xlabel("dx (plane pixels)")
    ax.set_ylabel("dy (plane pixels)")
    label = f"Peak has {hist_info['npeak']} matches at ({dx:.4f}, {dy:.4f})"
    ax.set_title(f"{title}\n{label}" if title else label, fontsize=9)
    fig.colorbar(im, ax=ax)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=72, format="png")
    plt.close(fig)
    return label


def plot_residuals(path, fit, ref_xy, title="", scale=None):
    """Residual vector plot of the fitted pairs (arrows exaggerated)."""
    plt = _plt()
    mask = np.asarray(fit["mask"], bool)
    res = np.asarray(fit["resid"], float)[mask]
    xy = np.asarray(ref_xy, float)[mask]
    fig, ax = plt.subplots(figsize=(6, 6))
    if len(xy):
        span = max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1.0)
        if scale is None:
            rmax = np.percentile(np.hypot(res[:, 0], res[:, 1]), 95) or 1.0
            scale = 0.05 * span / rmax
        ax.quiver(xy[:, 0], xy[:, 1], res[:, 0] * scale, res[:, 1] * scale, angles="xy",
                  scale_units="xy", scale=1, width=0.002)
    ax.set_aspect("equal")
    ax.set_xlabel("X (plane pixels)")
    ax.set_ylabel("Y (plane pixels)")
    n = int(mask.sum())
    ax.set_title(f"Vector plot of {n}/{len(mask)} residuals: {title}\n"
                 f"RMS(X)={fit['rms'][0]:.4f} RMS(Y)={fit['rms'][1]:.4f} px", fontsize=9)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=72, format="png")
    plt.close(fig)
