"""Sky: per-chip background from clipped statistics, compared across chips per
unit sky area (ALGORITHMS §1.4; tutorial note II).

Each chip's statistic ``s_c`` (electrons per pixel, good pixels only) becomes a
surface brightness ``b_c = s_c / (p_c**2 * t_c)`` (electrons/s/arcsec²) with
the chip's nominal pixel scale ``p_c``.  ``localmin`` gives every chip of an
exposure the minimum brightness of that exposure, ``globalmin`` the minimum of
all exposures; converted back with ``sky_c = b * p_c**2 * t_c`` — so the PC gets
the WF-derived sky scaled by the pixel area ratio (0.0455/0.0996)².  ``match``
solves pairwise overlap differences between exposures (least squares, lowest
exposure at 0); ``globalmin+match`` adds the global minimum afterwards.

The value is recorded as ``MDRIZSKY`` in each working SCI header, in the file's
own units (DN), as AstroDrizzle does; data arrays are not modified.  The step's
product ``sky`` maps ``"<root>:<extver>"`` to ``{"computed", "subtracted"}``
in electrons per pixel: ``computed`` is what the drizzle steps subtract,
``subtracted`` what the noise models treat as background already removed.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from drizzleflow.engine.errors import StepError
from drizzleflow.engine.legacy import Bits, OptionalFloat, indef_to_none
from drizzleflow.engine.step import Params, Step

from .common import THREADS, chip_key, good_from_bits, iter_exposures, static_mask_for, wcs_kept
from .imagestats import clipped_stats

__all__ = ["SkyStep", "chip_statistic", "combine_sky", "match_offsets"]


def chip_statistic(data, good, stat="median", lower=None, upper=None, nclip=5, lsig=4.0, usig=4.0,
                   binwidth=0.1) -> float:
    """Clipped statistic of the good pixels of one chip (NaN if none)."""
    v = np.asarray(data, dtype=np.float32)[good]
    if v.size == 0:
        return float("nan")
    try:
        st = clipped_stats(v, lower, upper, nclip, lsig, usig, binwidth, fields=(stat,))
    except ValueError:
        return float("nan")
    return st.get(stat)


def combine_sky(stats, areas, exptimes, groups, method="localmin"):
    """Turn per-chip statistics into per-chip sky values (same units).

    Parameters
    ----------
    stats : sequence of float
        Per-chip statistic (per pixel); NaN for chips without good pixels.
    areas : sequence of float
        Pixel area of each chip (arcsec²).
    exptimes : sequence of float
        Exposure time of each chip (s).
    groups : sequence of hashable
        Exposure of each chip.
    method : ``localmin`` or ``globalmin``

    Returns
    -------
    ndarray of per-chip sky values (0 where no exposure-wide value exists).
    """
    stats = np.asarray(stats, float)
    k = np.asarray(areas, float) * np.asarray(exptimes, float)
    b = stats / k
    out = np.zeros_like(stats)
    groups = list(groups)
    if method == "globalmin":
        bmin = np.nanmin(b) if np.isfinite(b).any() else 0.0
        return bmin * k
    for g in dict.fromkeys(groups):
        idx = [i for i, gg in enumerate(groups) if gg == g]
        bb = b[idx]
        bmin = np.nanmin(bb) if np.isfinite(bb).any() else 0.0
        out[idx] = bmin * k[idx]
    return out


def match_offsets(pairs, n):
    """Least-squares brightness offsets from pairwise overlap measurements.

    ``pairs`` holds ``(i, j, a_i, a_j, w)``: the brightness of exposure i and
    of j in their overlap and the overlap weight.  Solves
    ``w (d_i - d_j) = w (a_i - a_j)`` with a pseudo-inverse and shifts the
    result so the lowest offset is 0; exposures without overlap get NaN.
    """
    if not pairs:
        return np.full(n, np.nan)
    A = np.zeros((len(pairs), n))
    rhs = np.zeros(len(pairs))
    seen = set()
    for r, (i, j, ai, aj, w) in enumerate(pairs):
        A[r, i], A[r, j] = w, -w
        rhs[r] = w * (ai - aj)
        seen.update((i, j))
    d = np.linalg.pinv(A, rcond=1e-12) @ rhs
    d = np.where([i in seen for i in range(n)], d, np.nan)
    return d - np.nanmin(d)


class SkyStep(Step):
    """Measure the sky per chip (minimum per arcsec² across chips) and record MDRIZSKY."""

    name = "sky"
    reads = ("exposures", "static_masks")
    writes = ("sky",)
    aliases = {"skysub": "enabled", "skymethod": "method", "skystat": "stat", "skywidth": "width",
               "skylower": "lower", "skyupper": "upper", "skyclip": "nclip", "skylsigma": "lsigma",
               "skyusigma": "usigma", "sky_bits": "bits", "use_static": "use_static",
               "skyuser": "skyuser"}

    class Params(Params):
        enabled: bool = Field(True, description="Compute and subtract the sky (AstroDrizzle `skysub`).")
        method: Literal["localmin", "globalmin", "match", "globalmin+match"] = Field(
            "localmin", description="localmin: per exposure, the minimum over its chips of the sky per "
            "arcsec²; globalmin: the minimum over all exposures; match: equalise exposures in their "
            "overlaps (lowest at 0); globalmin+match: match, then add the global minimum.")
        stat: Literal["median", "mode", "mean", "midpt"] = Field("median", description="Clipped statistic.")
        width: float = Field(0.1, gt=0, le=10, description="Histogram bin width for mode, in sigma.")
        lower: OptionalFloat = Field(None, description="Lowest value used, DN (file units); null = data minimum.")
        upper: OptionalFloat = Field(None, description="Highest value used, DN; null = data maximum.")
        nclip: int = Field(5, ge=0, le=100, description="Sigma-clipping iterations.")
        lsigma: float = Field(4.0, gt=0, description="Lower clip limit in sigma.")
        usigma: float = Field(4.0, gt=0, description="Upper clip limit in sigma.")
        bits: Bits = Field(default_factory=list, description="DQ flags treated as good for the sky "
                           "(e.g. '8,1024'); [] = only unflagged pixels; null ignores the DQ array.")
        use_static: bool = Field(True, description="Also exclude static-mask pixels.")
        skyuser: str = Field("", description="Header keyword holding a sky the user already "
                             "subtracted (DN): recorded for noise models, nothing subtracted.")

        @field_validator("skyuser", mode="before")
        @classmethod
        def _skyuser(cls, v):
            v = indef_to_none(v)
            return "" if v is None else str(v).strip()

    def run(self, context, params):
        recs, chips_info = [], []

        def chip_info(exp, chip):
            info = {"key": chip_key(chip), "root": exp.root, "extver": chip.extver,
                    "gain": chip.gain, "area": chip.pscale ** 2, "exptime": chip.exptime,
                    "sci_path": exp.sci_path}
            if params.skyuser:
                if params.skyuser not in chip.header:
                    raise StepError(self.name, f"{chip.name}: keyword {params.skyuser!r} (skyuser) "
                                    "is not in the SCI header")
                info["user"] = float(chip.header[params.skyuser]) * chip.gain
            elif params.enabled:
                good = good_from_bits(chip.dq, params.bits)
                if params.use_static:
                    sm = static_mask_for(context, chip)
                    if sm is not None:
                        good &= sm
                lo = None if params.lower is None else params.lower * chip.gain
                hi = None if params.upper is None else params.upper * chip.gain
                info["stat"] = chip_statistic(chip.sci, good, params.stat, lo, hi, params.nclip,
                                              params.lsigma, params.usigma, params.width)
                if params.method in ("match", "globalmin+match"):
                    info["samples"] = _sky_samples(chip, good)
            return info

        # per-chip statistics in threads (numpy releases the GIL); results in chip order
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            for rec, exp in iter_exposures(context, self.name):
                recs.append(rec)
                chips_info.extend(pool.map(lambda c, e=exp: chip_info(e, c), exp.chips))
                del exp

        if params.skyuser:
            for c in chips_info:
                c["computed"], c["subtracted"] = 0.0, c["user"]
        elif not params.enabled:
            for c in chips_info:
                c["computed"] = c["subtracted"] = 0.0
        else:
            self._compute(context, params, chips_info)

        product = {c["key"]: {"computed": float(c["computed"]), "subtracted": float(c["subtracted"])}
                   for c in chips_info}
        # record MDRIZSKY (file units, DN) in the working copies
        from drizzleflow.steps.instruments.wfpc2 import set_sci_keywords
        by_file: dict = {}
        for c in chips_info:
            by_file.setdefault(c["sci_path"], {})[c["extver"]] = {
                "MDRIZSKY": (round(c["subtracted"] / c["gain"], 6), "Sky value computed by drizzleflow (DN)")}
        for path, kws in by_file.items():
            with wcs_kept(path):
                set_sci_keywords(path, kws)
        for c in chips_info:
            context.log.info("sky %s[sci,%d] = %.4g e- (%.4g DN)", c["root"], c["extver"],
                             c["subtracted"], c["subtracted"] / c["gain"])
        context.put("sky", product)

    def _compute(self, context, params, chips):
        stats = [c["stat"] for c in chips]
        areas = [c["area"] for c in chips]
        texp = [c["exptime"] for c in chips]
        groups = [c["root"] for c in chips]
        k = np.asarray(areas) * np.asarray(texp)
        if params.method in ("localmin", "globalmin"):
            sky = combine_sky(stats, areas, texp, groups, params.method)
        else:
            roots = list(dict.fromkeys(groups))
            try:
                delta_b = _match(chips, roots, params)
            except Exception as exc:  # AstroDrizzle falls back the same way (drizzlepac#1411)
                fallback = "globalmin" if params.method == "globalmin+match" else "localmin"
                context.log.warning("sky matching failed (%s); using %s", exc, fallback)
                sky = combine_sky(stats, areas, texp, groups, fallback)
            else:
                db = np.array([delta_b.get(g, np.nan) for g in groups])
                db = np.where(np.isfinite(db), db, 0.0)
                if params.method == "globalmin+match":
                    b = np.asarray(stats) / k - db
                    base = np.nanmin(b) if np.isfinite(b).any() else 0.0
                    db = db + base
                sky = db * k
        for c, s in zip(chips, sky):
            c["computed"] = c["subtracted"] = float(s) if np.isfinite(s) else 0.0


def _sky_samples(chip, good, step=4):
    """Sky positions and surface brightness of a sparse sample of good pixels."""
    ny, nx = chip.shape
    yy, xx = np.mgrid[step // 2:ny:step, step // 2:nx:step]
    g = good[yy, xx]
    xs, ys = xx[g].astype(float), yy[g].astype(float)
    ra, dec = chip.wcs.all_pix2world(xs, ys, 0)
    b = chip.sci[yy, xx][g].astype(np.float64) / (chip.pscale ** 2 * chip.exptime)
    return np.column_stack([ra, dec]), b


def _match(chips, roots, params, cell_arcsec=1.0):
    """Brightness offset per exposure from overlaps on a coarse sky grid."""
    allpos = np.concatenate([c["samples"][0] for c in chips if "samples" in c])
    ra0, dec0 = np.median(allpos[:, 0]), np.median(allpos[:, 1])
    cosd = np.cos(np.radians(dec0))

    def cells(pos):
        x = np.floor((pos[:, 0] - ra0) * cosd * 3600.0 / cell_arcsec).astype(np.int64)
        y = np.floor((pos[:, 1] - dec0) * 3600.0 / cell_arcsec).astype(np.int64)
        return x * 1_000_003 + y

    per_exp = {}
    for r in roots:
        cs = [c for c in chips if c["root"] == r and "samples" in c]
        if not cs:
            continue
        cid = np.concatenate([cells(c["samples"][0]) for c in cs])
        b = np.concatenate([c["samples"][1] for c in cs])
        per_exp[r] = (cid, b)
    idx = {r: i for i, r in enumerate(roots)}
    pairs = []
    for a in range(len(roots)):
        for b_ in range(a + 1, len(roots)):
            ra_, rb = roots[a], roots[b_]
            if ra_ not in per_exp or rb not in per_exp:
                continue
            common = np.intersect1d(per_exp[ra_][0], per_exp[rb][0])
            if common.size < 10:
                continue
            va = per_exp[ra_][1][np.isin(per_exp[ra_][0], common)]
            vb = per_exp[rb][1][np.isin(per_exp[rb][0], common)]
            sa = clipped_stats(va, None, None, params.nclip, params.lsigma, params.usigma, params.width,
                               fields=(params.stat,)).get(params.stat)
            sb = clipped_stats(vb, None, None, params.nclip, params.lsigma, params.usigma, params.width,
                               fields=(params.stat,)).get(params.stat)
            w = 0.5 * (va.size + vb.size)
            pairs.append((idx[ra_], idx[rb], sa, sb, w))
    d = match_offsets(pairs, len(roots))
    return {r: d[i] for r, i in idx.items()}
