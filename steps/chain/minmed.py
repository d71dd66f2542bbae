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
    nimg, nlow, nhigh = sci.shape[0], int(nlow), int(nhigh)
    # the per-pixel counts and ranks never exceed the stack depth (or nlow/nhigh <= 100):
    # int16 instead of int64 moves a quarter of the bytes (this bookkeeping was half the
    # time of a median strip); the same integers either way
    it = np.int16 if max(nimg, nlow, nhigh) < 16384 else np.int64
    m = n.astype(it)
    nl = None
    if nlow or nhigh:
        nl = np.full(n.shape, nlow, dtype=it)
        nh = np.full(n.shape, nhigh, dtype=it)
        for _ in range(max(nlow, nhigh)):
            over = (nl + nh >= m) & ((nl > 0) | (nh > 0))
            if not over.any():
                break
            nl = np.where(over & (nl > 0), nl - 1, nl).astype(it, copy=False)
            nh = np.where(over & (nh > 0), nh - 1, nh).astype(it, copy=False)
        m = m - nl - nh
    empty = m <= 0
    lo_i = (m - 1) // 2
    hi_i = m // 2
    if nl is not None:
        lo_i += nl
        hi_i += nl
    np.clip(lo_i, 0, nimg - 1, out=lo_i)
    np.clip(hi_i, 0, nimg - 1, out=hi_i)
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
           ignore_masks=False, min_coverage=None, fast=True):
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
    fast : bool
        Use the compiled row-by-row version (``_minmed.pyx``, ~2.5x faster, the
        same result) where it applies; False runs this numpy program, its reference.

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
    if not ignore_masks and fast:
        out = _fast_minmed(sci, wht, bad, exptime, (bs / t).ravel(), rn2.ravel(), nsigma, grow, min_coverage)
        if out is not None:
            return out
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
    bterm = _sum_scaled(wht, (bs / t).ravel())
    rterm = _sum_scaled(~bad, rn2.ravel())
    medw = med * wt
    sigma = np.sqrt(np.maximum(medw + bterm + rterm, 0.0))
    minw = mn * wt
    s1, s2 = float(nsigma[0]), float(nsigma[1])
    thresh = medw - s1 * sigma
    first = minw < thresh
    if grow > 0:
        grown = _dilate(first, int(grow))
        thresh = np.where(grown, medw - s2 * sigma, thresh)
    out = np.where(minw < thresh, mn, med).astype(np.float32)
    if not ignore_masks:
        out[allbad] = 0.0
    return out


def _fast_minmed(sci, wht, bad, exptime, bst, rn2, nsigma, grow, min_coverage):
    """The compiled minmed (None where it does not apply: the numpy program runs)."""
    try:
        from ._minmed import minmed_rows
    except ImportError:   # not built (a source checkout without build_ext)
        return None
    frac = MIN_COVERAGE if min_coverage is None else float(min_coverage)
    out = np.empty(sci.shape[1:], dtype=np.float32)
    ok = minmed_rows(np.ascontiguousarray(sci), np.ascontiguousarray(wht),
                     np.ascontiguousarray(bad).view(np.uint8), np.asarray(exptime, dtype=np.float32),
                     np.ascontiguousarray(bst, dtype=np.float64), np.ascontiguousarray(rn2, dtype=np.float64),
                     float(nsigma[0]), float(nsigma[1]), int(grow), np.float32(frac), out)
    return out if ok else None


def _sum_scaled(stack, factors):
    """``(stack * factors[:, None, None]).sum(axis=0)`` in float64, image by
    image: the same additions in the same order (numpy reduces the first axis
    one image at a time), without the float64 (N, ny, nx) temporary, which was
    the largest allocation of a median strip (8 bytes x N per pixel)."""
    out = stack[0] * np.float64(factors[0])
    for a, f in zip(stack[1:], factors[1:]):
        out += a * np.float64(f)
    return out


def _dilate(mask, half):
    """``box_sum(mask, half) > 0`` for a bool mask (True where any pixel of the
    (2·half+1)² box is set, nothing outside the array): ORs of shifted rows,
    then columns, instead of summing the box's shifted copies in float64."""
    mask = np.asarray(mask, dtype=bool)
    rows = mask.copy()
    for d in range(1, half + 1):
        rows[d:] |= mask[:-d]
        rows[:-d] |= mask[d:]
    out = rows.copy()
    for d in range(1, half + 1):
        out[:, d:] |= rows[:, :-d]
        out[:, :-d] |= rows[:, d:]
    return out
