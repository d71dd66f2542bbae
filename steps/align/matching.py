"""Matching two source lists in a common plane: a 2-D histogram of all
pairwise offsets gives the initial shift, then tolerance matching pairs each
reference source with its nearest image source.

Pitfalls handled (drizzlepac#278/#582, tweakwcs#68/#89): bins are centred on
integer offsets ``-R..R`` with ``R = ceil(searchrad)`` and the bin index is
converted with ``R`` (not the float radius); ``np.histogram2d(dx, dy)``
returns ``H[ix, iy]`` (x first), which we keep explicit; the sub-bin peak is
the centroid of the 3x3 block around the maximum, so a true half-pixel shift
that splits over two bins is recovered.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["offset_histogram", "match_xy", "isolated"]


def offset_histogram(xi, yi, xr, yr, searchrad):
    """2-D histogram of offsets ``image - reference`` within ``searchrad``.

    Returns
    -------
    dict
        ``hist`` (array indexed ``[iy, ix]``, ready for ``imshow``), ``offsets``
        (bin centres), ``shift`` (sub-bin peak ``(dx, dy)``), ``npeak`` (pairs in
        the peak bin), ``nbox`` (pairs in the 3x3 block), ``significance``
        (peak over sqrt of the mean non-zero bin).
    """
    xi, yi, xr, yr = (np.asarray(a, float) for a in (xi, yi, xr, yr))
    r = float(searchrad)
    R = max(int(np.ceil(r)), 1)
    offs = np.arange(-R, R + 1, dtype=float)
    edges = np.arange(-R - 0.5, R + 1.5, 1.0)
    out = {"hist": np.zeros((2 * R + 1, 2 * R + 1)), "offsets": offs,
           "shift": (0.0, 0.0), "npeak": 0, "nbox": 0, "significance": 0.0}
    if len(xi) == 0 or len(xr) == 0:
        return out
    tree = cKDTree(np.column_stack([xr, yr]))
    pairs = tree.query_ball_point(np.column_stack([xi, yi]), r * np.sqrt(2) + 0.5)
    ii = np.repeat(np.arange(len(xi)), [len(p) for p in pairs])
    jj = np.concatenate([np.asarray(p, int) for p in pairs]) if len(ii) else np.zeros(0, int)
    dx = xi[ii] - xr[jj]
    dy = yi[ii] - yr[jj]
    sel = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    dx, dy = dx[sel], dy[sel]
    if dx.size == 0:
        return out
    hxy, _, _ = np.histogram2d(dx, dy, bins=[edges, edges])  # hxy[ix, iy]
    hist = hxy.T                                              # hist[iy, ix]
    out["hist"] = hist
    iy, ix = np.unravel_index(np.argmax(hist), hist.shape)
    out["npeak"] = int(hist[iy, ix])
    # refine: mean offset of all pairs within 1.5 bins of the peak centre
    cx, cy = offs[ix], offs[iy]
    near = (np.abs(dx - cx) <= 1.5) & (np.abs(dy - cy) <= 1.5)
    out["nbox"] = int(near.sum())
    sx, sy = float(np.mean(dx[near])), float(np.mean(dy[near]))
    # second pass: a tighter window around the first estimate drops the
    # uniform background of random pairs that biases the mean toward the block centre
    for w in (1.0, 0.75):
        near = (np.abs(dx - sx) <= w) & (np.abs(dy - sy) <= w)
        if near.sum() >= 1:
            sx, sy = float(np.median(dx[near])), float(np.median(dy[near]))
    out["shift"] = (sx, sy)
    nz = hist[hist > 0]
    others = nz[nz != hist[iy, ix]] if nz.size > 1 else nz
    mean_other = others.mean() if others.size else 1.0
    out["significance"] = float(hist[iy, ix] / np.sqrt(max(mean_other, 1e-12)))
    return out


def isolated(x, y, separation):
    """Boolean array: True for sources with no neighbour closer than ``separation``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.ones(len(x), bool)
    if separation <= 0 or len(x) < 2:
        return keep
    tree = cKDTree(np.column_stack([x, y]))
    for i, j in tree.query_pairs(float(separation)):
        keep[i] = keep[j] = False
    return keep


def match_xy(xi, yi, xr, yr, tolerance=1.0, separation=0.5, shift=(0.0, 0.0)):
    """One-to-one nearest-neighbour matching within ``tolerance``.

    ``shift`` (image - reference) is removed from the image positions first.
    Sources with a neighbour closer than ``separation`` in their own list are
    dropped.  Each reference source takes its nearest image source; when two
    references claim the same image source the closer pair wins.

    Returns
    -------
    (ii, jj) : int arrays
        Indices into the image and reference lists of the matched pairs.
    """
    xi = np.asarray(xi, float) - shift[0]
    yi = np.asarray(yi, float) - shift[1]
    xr, yr = np.asarray(xr, float), np.asarray(yr, float)
    if len(xi) == 0 or len(xr) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    oki = np.flatnonzero(isolated(xi, yi, separation))
    okr = np.flatnonzero(isolated(xr, yr, separation))
    if oki.size == 0 or okr.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    tree = cKDTree(np.column_stack([xi[oki], yi[oki]]))
    d, k = tree.query(np.column_stack([xr[okr], yr[okr]]), k=1,
                      distance_upper_bound=float(tolerance))
    has = np.isfinite(d)
    ref_idx, img_idx, dist = okr[has], oki[k[has]], d[has]
    order = np.argsort(dist, kind="stable")
    seen = set()
    ii, jj = [], []
    for o in order:
        if img_idx[o] in seen:
            continue
        seen.add(img_idx[o])
        ii.append(img_idx[o])
        jj.append(ref_idx[o])
    ii, jj = np.asarray(ii, int), np.asarray(jj, int)
    srt = np.argsort(jj)
    return ii[srt], jj[srt]
