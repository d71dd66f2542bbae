"""Clipped image statistics with the semantics of ``stsci.imagestats``.

The static mask and the sky step both summarise a chip by an iteratively
sigma-clipped mean, median or histogram mode.  The exact rules (inclusive
range, sample sigma, interpolated histogram peak) matter because the sky value
feeds every later stage, so they are reproduced here on plain arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClippedStats", "clipped_stats"]


@dataclass(frozen=True)
class ClippedStats:
    """Result of :func:`clipped_stats` (all in the units of the input values)."""

    npix: int
    mean: float
    stddev: float
    median: float
    mode: float
    min: float
    max: float

    def get(self, name: str) -> float:
        """The statistic called ``name`` (``mean``, ``median``, ``mode``, ``midpt``)."""
        if name == "midpt":
            return self.median
        return float(getattr(self, name))


def _mode(v: np.ndarray, sigma: float, binwidth: float) -> float:
    vmin, vmax = float(v.min()), float(v.max())
    h = binwidth * sigma
    if not np.isfinite(h) or h <= 0 or vmax <= vmin:
        return vmin + 0.5 * (h if np.isfinite(h) else 0.0)
    nbins = int((vmax - vmin) / h) + 1
    if nbins < 2:
        return vmin + 0.5 * h
    spacing = (vmax - vmin) / (nbins - 1)
    idx = np.floor((v - vmin) / spacing).astype(np.int64)
    np.clip(idx, 0, nbins - 1, out=idx)
    hist = np.bincount(idx, minlength=nbins)
    p = int(np.argmax(hist))
    if p == 0:
        return vmin + 0.5 * h
    if p == nbins - 1:
        return vmin + (nbins - 0.5) * h
    d1 = float(hist[p] - hist[p - 1])
    d2 = float(hist[p] - hist[p + 1])
    if d1 + d2 == 0:
        return vmin + (p + 0.5) * h
    return vmin + h * (p + 0.5 + 0.5 * (d1 - d2) / (d1 + d2))


def clipped_stats(values, lower=None, upper=None, nclip=3, lsig=3.0, usig=3.0,
                  binwidth=0.1, fields=("mean", "median", "mode")) -> ClippedStats:
    """Iteratively clipped statistics of ``values``.

    Parameters
    ----------
    values : array_like
        Good pixel values (already masked), any shape; flattened.
    lower, upper : float or None
        Inclusive data range; ``None`` means the data minimum / maximum.
    nclip : int
        Number of clipping iterations after the first pass.
    lsig, usig : float
        Clip limits below / above the mean, in units of the sample sigma.
    binwidth : float
        Histogram bin width for the mode, in units of sigma.
    fields : sequence of str
        Statistics wanted; ``mode`` and ``median`` are only computed when
        listed (they cost a histogram / partition).

    Returns
    -------
    ClippedStats

    Raises
    ------
    ValueError
        When no value lies inside the range.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("not enough data points for statistics")
    lo = float(v.min()) if lower is None else float(lower)
    hi = float(v.max()) if upper is None else float(upper)
    a, b = lo, hi
    kept = v
    mean = std = np.nan
    for k in range(int(nclip) + 1):
        kept = v[(v >= a) & (v <= b)]
        if kept.size == 0:
            raise ValueError("not enough data points for statistics (all values clipped)")
        mean = float(kept.mean())
        std = float(kept.std(ddof=1)) if kept.size > 1 else 0.0
        if k < nclip:
            a_new = max(lo, mean - lsig * std)
            b_new = min(hi, mean + usig * std)
            if a_new == a and b_new == b:
                break
            a, b = a_new, b_new
    median = np.nan
    if "median" in fields or "midpt" in fields:
        median = float(np.median(kept if nclip > 0 else v))
    mode = np.nan
    if "mode" in fields:
        mode = _mode(kept, std, binwidth)
    return ClippedStats(int(kept.size), mean, std, median, mode, float(kept.min()), float(kept.max()))
