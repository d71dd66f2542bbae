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


#: values binned per pass of :func:`_histogram`
_CHUNK = 65536


def _histogram(v, vmin, spacing, nbins):
    """Counts of ``clip(floor((v - vmin) / spacing), 0, nbins - 1)``.

    In chunks through two small scratch arrays: the same integer counts as one
    whole-array pass, without its two chip-sized temporaries (whose fresh pages
    cost more than the arithmetic).  Very many bins: one pass, as before."""
    if nbins > _CHUNK or v.size <= _CHUNK:
        idx = np.floor((v - vmin) / spacing).astype(np.int64)
        np.clip(idx, 0, nbins - 1, out=idx)
        return np.bincount(idx, minlength=nbins)
    hist = np.zeros(nbins, dtype=np.int64)
    t = np.empty(_CHUNK)
    idx = np.empty(_CHUNK, dtype=np.int64)
    for i in range(0, v.size, _CHUNK):
        part = v[i:i + _CHUNK]
        m = part.size
        tt, ii = t[:m], idx[:m]
        np.subtract(part, vmin, out=tt)
        np.divide(tt, spacing, out=tt)
        np.floor(tt, out=tt)
        np.copyto(ii, tt, casting="unsafe")   # = astype(np.int64)
        np.clip(ii, 0, nbins - 1, out=ii)
        hist += np.bincount(ii, minlength=nbins)
    return hist


def _mode(v: np.ndarray, sigma: float, binwidth: float) -> float:
    vmin, vmax = float(v.min()), float(v.max())
    h = binwidth * sigma
    if not np.isfinite(h) or h <= 0 or vmax <= vmin:
        return vmin + 0.5 * (h if np.isfinite(h) else 0.0)
    nbins = int((vmax - vmin) / h) + 1
    if nbins < 2:
        return vmin + 0.5 * h
    spacing = (vmax - vmin) / (nbins - 1)
    hist = _histogram(v, vmin, spacing, nbins)
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


def _order_stats(v: np.ndarray, ks) -> list:
    """``np.partition(v, ks)[ks]`` (exact order statistics of 1-D ``v``), found by
    partitioning only a window around them: the window's bounds come from a sorted
    sparse sample, and a check on the counts falls back to the full partition when
    the wanted ranks are not inside it.  ~6x faster than partitioning a chip."""
    n = v.size
    if n < 65536:
        return list(np.partition(v, ks)[ks])
    sample = np.sort(v[::n // 4096])
    m = sample.size
    margin = 64
    lo = sample[max(0, ks[0] * m // n - margin)]
    hi = sample[min(m - 1, ks[-1] * m // n + margin)]
    below = int(np.count_nonzero(v < lo))
    win = v[(v >= lo) & (v <= hi)]
    if below <= ks[0] and ks[-1] < below + win.size:
        rel = [k - below for k in ks]
        return list(np.partition(win, rel)[rel])
    return list(np.partition(v, ks)[ks])


def _median(v: np.ndarray) -> float:
    """``np.median`` of finite 1-D ``v``, bit for bit: the middle value, or the mean
    of the two middle values computed as numpy does, ``(a + b) / 2``."""
    n = v.size
    half = n // 2
    if n % 2:
        return float(_order_stats(v, [half])[0])
    a, b = _order_stats(v, [half - 1, half])
    return float((a + b) / 2)


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
    # Speed without changing a bit of the result (the sky feeds every later step):
    # no copy when every value is finite / inside the range, a narrower range is
    # cut from the previous selection (same values, same order, so the same
    # sums), the std reuses the mean, and the median partitions a window only.
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(v)
    if not finite.all():
        v = v[finite]
    del finite
    if v.size == 0:
        raise ValueError("not enough data points for statistics")
    vmin, vmax = float(v.min()), float(v.max())
    lo = vmin if lower is None else float(lower)
    hi = vmax if upper is None else float(upper)
    a, b = lo, hi
    kept, ka, kb = v, -np.inf, np.inf   # kept = the values of v inside [ka, kb]
    mean = std = np.nan
    # scratch arrays reused by every pass (chip-sized temporaries cost page faults)
    m1, m2 = np.empty(v.size, dtype=bool), np.empty(v.size, dtype=bool)
    tmp = np.empty(v.size)
    for k in range(int(nclip) + 1):
        if a <= vmin and b >= vmax:
            kept, ka, kb = v, a, b
        else:
            src = kept if (a >= ka and b <= kb) else v
            s1, s2 = m1[:src.size], m2[:src.size]
            np.greater_equal(src, a, out=s1)
            np.less_equal(src, b, out=s2)
            s1 &= s2
            kept, ka, kb = src[s1], a, b
        n = kept.size
        if n == 0:
            raise ValueError("not enough data points for statistics (all values clipped)")
        mean = float(np.add.reduce(kept) / n)     # as ndarray.mean
        if n > 1:                                 # as ndarray.std(ddof=1), in the scratch array
            d = tmp[:n]
            np.subtract(kept, mean, out=d)
            np.multiply(d, d, out=d)
            std = float(np.sqrt(np.add.reduce(d) / (n - 1)))
        else:
            std = 0.0
        if k < nclip:
            a_new = max(lo, mean - lsig * std)
            b_new = min(hi, mean + usig * std)
            if a_new == a and b_new == b:
                break
            a, b = a_new, b_new
    del m1, m2, tmp   # freed before the median/mode temporaries are allocated
    median = np.nan
    if "median" in fields or "midpt" in fields:
        median = _median(kept if nclip > 0 else v)
    mode = np.nan
    if "mode" in fields:
        mode = _mode(kept, std, binwidth)
    return ClippedStats(int(kept.size), mean, std, median, mode, float(kept.min()), float(kept.max()))
