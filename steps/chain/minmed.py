"""Median combination of single drizzles: median/imedian and minmed/iminmed.

All functions work on one strip of a stack: ``sci`` and ``wht`` of shape
``(N, ny, nx)`` (the N single drizzles, e-/s and exposure-time weights) and a
boolean ``bad`` of the same shape.  The caller (``median.py``) handles strips,
masks from weights and thresholds.

Deviation from AstroDrizzle (deliberate), in ``minmed``: the minimum is taken
only over the singles that sample the pixel fully and at the finest input
scale present there (see :data:`MIN_COVERAGE`); every unmasked single still
enters the median.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sort_stack", "masked_median", "masked_mean", "masked_min", "box_sum", "minmed",
           "min_candidates", "MIN_COVERAGE"]

#: minmed: a single is a candidate for the minimum only where its weight per
#: second of exposure is at least this fraction of the largest such weight among
#: the unmasked singles at that pixel.  The weight per second is the fraction of
#: an input pixel that lands in the output pixel: equal (to the few per cent of
#: the distortion's pixel-area changes) for singles that cover the pixel fully
#: with the same pixel size, lower where a single covers the pixel only partly
#: (next to a masked input pixel, at a chip edge) or through larger pixels (a WF
#: chip where another exposure has the PC).  Such a value describes another patch
#: of sky than the pixel: harmless inside a median, but the minimum picks exactly
#: these low values, e.g. the PSF wing beside a bad column through an
#: undersampled star's core, which then carves a hole into the median that
#: driz_cr flags as a cosmic ray in every other exposure.  0 = AstroDrizzle.
MIN_COVERAGE = 0.9


def sort_stack(x):
    """``np.sort(x, axis=0)`` of a fresh (N, ny, nx) stack, sorted in place.

    For the few images of a typical median (N <= 8) an odd-even transposition
    network of element-wise min/max is ~4x faster than numpy's sort along the
    first axis (which sorts one strided pixel at a time); the sorted values
    are the same.  NaN (ordered last by np.sort) falls back to np.sort.
    """
    n = x.shape[0]
    if n > 8 or not np.issubdtype(x.dtype, np.floating) or np.isnan(x).any():
        return np.sort(x, axis=0)
    tmp = np.empty_like(x[0])
    for r in range(n):
        for i in range(r % 2, n - 1, 2):
            a, b = x[i], x[i + 1]
            np.minimum(a, b, out=tmp)
            np.maximum(a, b, out=b)
            a[...] = tmp
    return x


def masked_median(sci, bad, nlow=0, nhigh=0, fill=0.0):
    """Per-pixel median of the unmasked values after dropping ``nlow`` lowest
    and ``nhigh`` highest.

    When dropping would remove every value, ``nlow`` and ``nhigh`` are both
    decremented (each while > 0) until something remains.  Even counts give the
    mean of the two central values.  Pixels with no unmasked value get ``fill``
    (a scalar, or an array of the strip's shape).

    Returns
    -------
    median : ndarray (ny, nx) float32
    count : ndarray (ny, nx) int
        Number of unmasked values per pixel.
    """
    sci = np.asarray(sci, dtype=np.float32)
    bad = np.asarray(bad, dtype=bool)
    n = (~bad).sum(axis=0)
    srt = sort_stack(np.where(bad, np.inf, sci))
    nl = np.full(n.shape, int(nlow), dtype=np.int64)
    nh = np.full(n.shape, int(nhigh), dtype=np.int64)
    for _ in range(max(int(nlow), int(nhigh))):
        over = (nl + nh >= n) & ((nl > 0) | (nh > 0))
        if not over.any():
            break
        nl = np.where(over & (nl > 0), nl - 1, nl)
        nh = np.where(over & (nh > 0), nh - 1, nh)
    m = n - nl - nh
    empty = m <= 0
    lo_i = np.clip(nl + (m - 1) // 2, 0, sci.shape[0] - 1)
    hi_i = np.clip(nl + m // 2, 0, sci.shape[0] - 1)
    lo = np.take_along_axis(srt, lo_i[None], axis=0)[0]
    hi = np.take_along_axis(srt, hi_i[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        med = (0.5 * (lo.astype(np.float64) + hi)).astype(np.float32)
    med = np.where(empty, np.asarray(fill, dtype=np.float32), med)
    return med, n


def masked_mean(sci, bad, fill=0.0):
    """Per-pixel mean of unmasked values; ``fill`` where all are masked."""
    good = ~np.asarray(bad, dtype=bool)
    n = good.sum(axis=0)
    s = np.where(good, sci, 0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / np.maximum(n, 1), fill)
    return mean.astype(np.float32), n


def masked_min(sci, bad, fill=0.0):
    """Per-pixel minimum of unmasked values; ``fill`` where all are masked."""
    bad = np.asarray(bad, dtype=bool)
    mn = np.where(bad, np.inf, sci).min(axis=0)
    return np.where(np.isinf(mn), fill, mn).astype(np.float32)


def box_sum(a, half):
    """Sum over a (2·half+1)² box around each pixel, zeros outside the array."""
    a = np.asarray(a, dtype=np.float64)
    if half <= 0:
        return a.copy()
    p = np.pad(a, half)
    out = np.zeros_like(a)
    ny, nx = a.shape
    for dy in range(2 * half + 1):
        for dx in range(2 * half + 1):
            out += p[dy:dy + ny, dx:dx + nx]
    return out


def min_candidates(wht, bad, exptime, min_coverage=None):
    """Singles eligible for minmed's minimum (bool (N, ny, nx)): unmasked and
    with a weight per second of exposure of at least ``min_coverage`` (default
    :data:`MIN_COVERAGE`) times the largest among the unmasked singles there."""
    bad = np.asarray(bad, dtype=bool)
    frac = MIN_COVERAGE if min_coverage is None else float(min_coverage)
    if frac <= 0:
        return ~bad
    t = np.asarray(exptime, dtype=np.float32).reshape(-1, 1, 1)
    rate = np.where(bad, np.float32(0), np.asarray(wht, dtype=np.float32) / np.where(t > 0, t, 1))
    cand = ~bad & (rate >= np.float32(frac) * rate.max(axis=0))
    # no candidate at all (non-finite weights): every unmasked single, as AstroDrizzle
    return cand | (~bad & ~cand.any(axis=0))


def minmed(sci, wht, bad, exptime, bsky, rdnoise, nsigma=(4.0, 3.0), grow=1,
           ignore_masks=False, min_coverage=None):
    """AstroDrizzle's ``minmed`` combination of one strip (exact array program).

    Parameters
    ----------
    sci, wht : ndarray (N, ny, nx)
        Single drizzles (e-/s) and their weights (exposure-time weights, s).
    bad : ndarray (N, ny, nx) bool
        Masked inputs (low weight, thresholds).
    exptime, bsky, rdnoise : sequence of N floats
        Per image: exposure time (s), sky in electrons, read noise (e-).
    nsigma : (float, float)
        Thresholds of the first test and of the grown test, in sigma.
    grow : int
        Radius (px) of the box used to grow first-test detections.
    ignore_masks : bool
        ``iminmed``: where every input is masked use the unmasked statistics
        instead of 0.
    min_coverage : float, optional
        Candidates for the minimum (:func:`min_candidates`); default
        :data:`MIN_COVERAGE`, 0 reproduces AstroDrizzle (every unmasked single).

    Returns
    -------
    ndarray (ny, nx) float32
        The minimum where it is significantly below the median, else the median.

    Notes
    -----
    Noise of the weighted median, in electrons:
    ``sigma = sqrt(max(Med*Wt + sum(W_i*bsky_i/t_i) + sum((1-bad_i)*rn_i**2), 0))``
    with ``Wt = sum(W_i)``.  ``Min`` replaces ``Med`` where
    ``Min*Wt < Med*Wt - nsig*sigma`` (``nsig`` = first value, or the second where
    the grown first-test mask is set).

    ``Min`` is the minimum over :func:`min_candidates` only.  AstroDrizzle takes
    it over every unmasked single; a single that covers the pixel only partly
    (weights down to ``combine_maskpt`` of the mean stay unmasked) or through
    larger pixels then supplies a value from a neighbouring patch of sky, which
    at a sharp source is far below the median (not noise, so ``nsigma`` cannot
    guard against it).  On the simulated M2 set this was the cause of the
    only flagged star cores and of most false cosmic-ray flags.
    """
    sci = np.asarray(sci, dtype=np.float32)
    wht = np.asarray(wht, dtype=np.float32)
    bad = np.asarray(bad, dtype=bool)
    nimg = sci.shape[0]
    t = np.asarray(exptime, dtype=np.float64).reshape(-1, 1, 1)
    bs = np.asarray(bsky, dtype=np.float64).reshape(-1, 1, 1)
    rn2 = (np.asarray(rdnoise, dtype=np.float64) ** 2).reshape(-1, 1, 1)
    allbad = bad.all(axis=0)

    if nimg == 2:
        med, n = masked_mean(sci, bad)
        if ignore_masks:
            med = np.where(allbad, sci.mean(axis=0), med)
    else:
        med, n = masked_median(sci, bad, nlow=0, nhigh=1)
        if ignore_masks:
            med = np.where(allbad, masked_median(sci, np.zeros_like(bad), 0, 1)[0], med)
    mn = masked_min(sci, ~min_candidates(wht, bad, exptime, min_coverage))
    if ignore_masks:
        mn = np.where(allbad, sci.min(axis=0), mn)

    wt = wht.sum(axis=0, dtype=np.float64)
    bterm = (wht * (bs / t)).sum(axis=0)
    rterm = ((~bad) * rn2).sum(axis=0)
    medw = med * wt
    sigma = np.sqrt(np.maximum(medw + bterm + rterm, 0.0))
    minw = mn * wt
    s1, s2 = float(nsigma[0]), float(nsigma[1])
    first = minw < medw - s1 * sigma
    if grow > 0:
        grown = box_sum(first, int(grow)) > 0
        thresh = np.where(grown, medw - s2 * sigma, medw - s1 * sigma)
    else:
        thresh = medw - s1 * sigma
    out = np.where(minw < thresh, mn, med).astype(np.float32)
    if not ignore_masks:
        out[allbad] = 0.0
    return out
