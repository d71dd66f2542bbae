"""Pixel maps: where each input pixel lands on the output grid.

Evaluating the full input WCS (D2IM lookup table, SIP polynomial, NPOL
tables, TAN) at every pixel costs more than drizzling itself, yet everything
but the detector-to-image (D2IM) table varies smoothly over tens of pixels.
So :func:`pixmap` evaluates the smooth part of the transform on a coarse grid
of nodes every ``stepsize`` pixels, interpolates it with a tensor-product
cubic Lagrange polynomial (exact for the cubic SIP terms), and adds the
high-frequency D2IM displacement (WFPC2's 34th-row sawtooth) *exactly*,
outside the interpolation:

    out(p) = G(p + D(p)) ~ G(p) + dG/dx(p) Dx(p) + dG/dy(p) Dy(p)

where ``D`` is astropy's D2IM displacement evaluated at every pixel (cheap,
and a 1-D function when the table is a single row or column) and ``G`` is
the rest of the transform.  The neglected second-order term is
``|D|^2 |G''| / 2`` (~1e-8 px for WFPC2).  Measured accuracy on a
WFPC2-like WCS (3rd-order SIP of several pixels, 34-row D2IM pattern):
see ``tests/test_core_pixmap.py`` and ``benchmarks/core.py``.

An astropy ``WCS`` object must never be shared between threads; every call
here works on its own deep copies.
"""
from __future__ import annotations

import copy

import numpy as np

from ._pixmap import interpolate as _interpolate
from .core import DrizzleArrayError

__all__ = ["pixmap", "corner_pixmap", "WindowedMap", "DEFAULT_STEPSIZE"]

#: grid step (input pixels) chosen by measurement: < 1e-4 px error on WFPC2-like
#: distortion (2e-8 px on the simulated M2 set, as with step 10), ~50x faster than
#: evaluating every pixel (benchmarks/core.py)
DEFAULT_STEPSIZE = 32


def pixmap(in_wcs, out_wcs, shape=None, stepsize=DEFAULT_STEPSIZE):
    """Output positions of the centres of all input pixels.

    Parameters
    ----------
    in_wcs : astropy.wcs.WCS
        Full input WCS (SIP, D2IM/NPOL lookup tables are honoured).
    out_wcs : astropy.wcs.WCS
        Output WCS (usually undistorted TAN).
    shape : (ny, nx), optional
        Input array shape; default ``in_wcs.array_shape``.
    stepsize : int
        Spacing of the grid on which the smooth part of the transform is
        evaluated exactly.  ``1`` (or 0) evaluates every pixel through astropy
        (slow reference).

    Returns
    -------
    float64 ndarray (ny, nx, 2)
        ``[j, i] = (x, y)``: 0-based output coordinates of input pixel (i, j).
    """
    ny, nx = _shape(in_wcs, shape)
    return _map(in_wcs, out_wcs, np.arange(nx, dtype=np.float64), np.arange(ny, dtype=np.float64), stepsize)


def corner_pixmap(in_wcs, out_wcs, shape=None, stepsize=DEFAULT_STEPSIZE):
    """Output positions of the pixel *corners*: float64 ``(ny + 1, nx + 1, 2)``.

    ``[j, i]`` is the corner at input position ``(i - 0.5, j - 0.5)``.
    """
    ny, nx = _shape(in_wcs, shape)
    return _map(in_wcs, out_wcs, np.arange(nx + 1, dtype=np.float64) - 0.5,
                np.arange(ny + 1, dtype=np.float64) - 0.5, stepsize)


def _shape(in_wcs, shape):
    if shape is None:
        shape = in_wcs.array_shape
        if shape is None:
            raise DrizzleArrayError("shape", "the input WCS has no array shape; pass shape=(ny, nx)")
    try:
        ny, nx = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise DrizzleArrayError("shape", f"expected (ny, nx), got {shape!r}") from None
    if ny < 1 or nx < 1:
        raise DrizzleArrayError("shape", f"must be positive, got {shape!r}")
    return ny, nx


def _has_distortion(w):
    return w.sip is not None or w.cpdis1 is not None or w.cpdis2 is not None \
        or w.det2im1 is not None or w.det2im2 is not None


def _sky_to_out(wout, ra, dec):
    if _has_distortion(wout):
        return wout.all_world2pix(ra, dec, 0)
    return wout.wcs_world2pix(ra, dec, 0)


def _full(win, wout, xs, ys):
    """Reference: the complete transform at every (xs, ys) grid point."""
    X, Y = np.meshgrid(xs, ys)
    ra, dec = win.all_pix2world(X.ravel(), Y.ravel(), 0)
    ox, oy = _sky_to_out(wout, ra, dec)
    return np.stack([ox.reshape(X.shape), oy.reshape(X.shape)], axis=-1)


def _d2im_displacement(win, xs, ys):
    """Exact D2IM displacement ``(dx, dy)`` on the (ys, xs) grid.

    Each component is None (no table for that axis) or an array that
    broadcasts to ``(len(ys), len(xs))``: ``(1, nx)`` for a single-row table
    (a function of x only), ``(ny, 1)`` for a single-column table (y only),
    else the full grid.
    """
    result = []
    for axis, table in ((1, win.det2im1), (2, win.det2im2)):
        if table is None:
            result.append(None)
            continue
        one = copy.deepcopy(win)
        one.sip = None
        one.cpdis1 = one.cpdis2 = None
        if axis == 1:
            one.det2im2 = None
        else:
            one.det2im1 = None
        rows, cols = table.data.shape
        if rows == 1:            # function of x only
            p = np.column_stack([xs, np.full_like(xs, ys[0])])
            shift = (one.det2im(p, 0) - p)[:, axis - 1][None, :]
        elif cols == 1:          # function of y only
            p = np.column_stack([np.full_like(ys, xs[0]), ys])
            shift = (one.det2im(p, 0) - p)[:, axis - 1][:, None]
        else:
            X, Y = np.meshgrid(xs, ys)
            p = np.column_stack([X.ravel(), Y.ravel()])
            shift = (one.det2im(p, 0) - p)[:, axis - 1].reshape(X.shape)
        result.append(shift)
    return tuple(result)


def _nodes(lo, hi, step):
    n = max(int(np.ceil((hi - lo) / step)), 1)
    nodes = lo + step * np.arange(n + 1, dtype=np.float64)
    nodes[-1] = hi
    if n >= 2 and nodes[-1] - nodes[-2] < 0.25 * step:   # avoid a sliver interval
        nodes = np.delete(nodes, -2)
    return nodes


def _lagrange_weights(nodes, t, npts=4):
    """Local ``npts``-point Lagrange interpolation at ``t``: node indices and weights.

    Returns ``first`` (len(t),) -- index of the first of the ``npts`` nodes
    used for each t -- and weights W, dW (len(t), npts) such that
    ``f(t) ~ sum_a W[:, a] f(nodes[first + a])`` and likewise dW for f'(t).
    """
    n = len(nodes)
    npts = min(npts, n)
    k = np.clip(np.searchsorted(nodes, t, side="right") - 1, 0, n - 2)
    first = np.clip(k - (npts // 2 - 1), 0, n - npts)
    g = nodes[first[:, None] + np.arange(npts)[None, :]]
    W = np.empty((len(t), npts))
    dW = np.empty((len(t), npts))
    for a in range(npts):
        others = [b for b in range(npts) if b != a]
        den = np.prod([g[:, a] - g[:, b] for b in others], axis=0)
        W[:, a] = np.prod([t - g[:, b] for b in others], axis=0) / den
        dnum = np.zeros(len(t))
        for m in others:
            dnum += np.prod([t - g[:, b] for b in others if b != m], axis=0)
        dW[:, a] = dnum / den
    return first, W, dW


def _along_x(G, first, W):
    """Interpolate every row of the node grid G (ngy, ngx) to the x targets: (ngy, nx)."""
    out = np.zeros((G.shape[0], len(first)))
    for a in range(W.shape[1]):
        out += G[:, first + a] * W[None, :, a]
    return out


def _along_y(H, first, W):
    """Interpolate the columns of H (ngy, nx) to the y targets: (ny, nx).

    Targets sharing the same stencil are done as one small (rows x npts) @
    (npts x nx) product, which stays in cache.
    """
    out = np.empty((len(first), H.shape[1]))
    npts = W.shape[1]
    starts = np.flatnonzero(np.diff(first, prepend=first[0] - 1))
    stops = np.append(starts[1:], len(first))
    for a, b in zip(starts, stops):
        f = first[a]
        np.matmul(W[a:b], H[f:f + npts], out=out[a:b])
    return out


def _check_step(stepsize):
    try:
        stepsize = int(stepsize)
    except (TypeError, ValueError):
        raise DrizzleArrayError("stepsize", f"expected an integer, got {stepsize!r}") from None
    if stepsize < 0:
        raise DrizzleArrayError("stepsize", f"must be >= 0, got {stepsize}")
    return stepsize


def _map(in_wcs, out_wcs, xs, ys, stepsize):
    return WindowedMap(in_wcs, out_wcs, xs, ys, stepsize).window(0, len(ys), 0, len(xs))


class WindowedMap:
    """A pixel map evaluated window by window, for outputs drizzled in bands.

    Holds what every window shares: private copies of the two WCS, the coarse
    grid of nodes of the smooth transform and the 1-D D2IM displacements.  A
    band of a large output then maps only the input pixels that can reach it
    (:meth:`reach`, then :meth:`window`) instead of the whole chip per band.
    A window holds the whole map's values at its pixels: same nodes, same
    interpolation weights, same displacements.

    ``xs``, ``ys`` are the input coordinates of the map's columns and rows
    (``arange(nx)``, ``arange(ny)`` for pixel centres).
    """

    def __init__(self, in_wcs, out_wcs, xs, ys, stepsize=DEFAULT_STEPSIZE):
        stepsize = _check_step(stepsize)
        self.xs, self.ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        self._win = copy.deepcopy(in_wcs)
        self._wout = copy.deepcopy(out_wcs)
        nx, ny = len(self.xs), len(self.ys)
        self._whole = None
        if stepsize <= 1 or (nx <= 4 * stepsize and ny <= 4 * stepsize and nx * ny < 4096):
            # small or exact: evaluate everything once, windows are slices
            self._whole = np.ascontiguousarray(_full(self._win, self._wout, self.xs, self.ys))
            return
        has_d2im = self._win.det2im1 is not None or self._win.det2im2 is not None
        self._d2im = copy.deepcopy(self._win) if has_d2im else None
        self._win.det2im1 = None
        self._win.det2im2 = None
        # 1-D tables (WFPC2's case) are evaluated once along their axis; 2-D ones per window
        self._disp = None
        if self._d2im is not None:
            shapes = [t.data.shape for t in (self._d2im.det2im1, self._d2im.det2im2) if t is not None]
            if all(r == 1 or c == 1 for r, c in shapes):
                self._disp = _d2im_displacement(self._d2im, self.xs, self.ys)
        self.gx = _nodes(self.xs[0], self.xs[-1], stepsize)
        self.gy = _nodes(self.ys[0], self.ys[-1], stepsize)
        self.grid = _full(self._win, self._wout, self.gx, self.gy)     # (len(gy), len(gx), 2)

    def nodes(self) -> dict | None:
        """What :meth:`from_nodes` needs to rebuild this map without either WCS:
        the node grid and the 1-D D2IM displacements (float64 arrays; a missing
        displacement is left out).  None when the map cannot do without its WCS
        (evaluated whole, or a 2-D D2IM table evaluated per window)."""
        if self._whole is not None or (self._d2im is not None and self._disp is None):
            return None
        out = {"xs": self.xs, "ys": self.ys, "gx": self.gx, "gy": self.gy, "grid": self.grid}
        if self._disp is not None:
            for name, d in zip(("dx", "dy"), self._disp):
                if d is not None:
                    out[name] = d
        return out

    @classmethod
    def from_nodes(cls, nodes) -> "WindowedMap":
        """The map :meth:`nodes` described: the same windows, bit for bit."""
        self = cls.__new__(cls)
        self.xs, self.ys = (np.ascontiguousarray(nodes[k], dtype=np.float64) for k in ("xs", "ys"))
        self.gx, self.gy = (np.ascontiguousarray(nodes[k], dtype=np.float64) for k in ("gx", "gy"))
        self.grid = np.ascontiguousarray(nodes["grid"], dtype=np.float64)
        self._win = self._wout = self._d2im = self._whole = None
        dx, dy = nodes.get("dx"), nodes.get("dy")
        self._disp = None if dx is None and dy is None else (dx, dy)
        return self

    def window(self, y0, y1, x0, x1, out=None):
        """The map of rows ``[y0, y1)`` and columns ``[x0, x1)``: float64 (y1-y0, x1-x0, 2),
        written to ``out`` (C-contiguous, that shape) when given."""
        if self._whole is not None:
            if out is None:
                return np.ascontiguousarray(self._whole[y0:y1, x0:x1])
            out[...] = self._whole[y0:y1, x0:x1]
            return out
        xs, ys = self.xs[x0:x1], self.ys[y0:y1]
        if self._disp is not None:
            dx, dy = (None if d is None else d[(slice(None) if d.shape[0] == 1 else slice(y0, y1)),
                                               (slice(None) if d.shape[1] == 1 else slice(x0, x1))]
                      for d in self._disp)
        elif self._d2im is not None:
            dx, dy = _d2im_displacement(self._d2im, xs, ys)
        else:
            dx = dy = None
        grid = self.grid
        fx, Wx, dWx = _lagrange_weights(self.gx, xs)
        fy, Wy, dWy = _lagrange_weights(self.gy, ys)
        if (dx is None or dx.shape[0] == 1) and (dy is None or dy.shape[1] == 1):
            # WFPC2's case: each displacement is a function of its own axis only, so
            # G + Dx dG/dx + Dy dG/dy is one tensor-product interpolation with the
            # weights moved to p + D along each axis (first order in D, as above;
            # the extra Dx Dy d2G/dxdy term is of the order neglected)
            if dx is not None:
                Wx = Wx + dx[0][:, None] * dWx
            if dy is not None:
                Wy = Wy + dy[:, 0][:, None] * dWy
            # both coordinates at once, compiled (only the node rows the window's stencils use)
            if out is None:
                out = np.empty((len(ys), len(xs), 2))
            _interpolate(grid, fx, Wx, fy, Wy, out)
            return out
        if out is None:
            out = np.empty((len(ys), len(xs), 2))
        for c in range(2):
            G = grid[..., c]
            Hx = _along_x(G, fx, Wx)                     # (len(gy), len(xs))
            out[..., c] = _along_y(Hx, fy, Wy)
            if dx is not None:
                out[..., c] += dx * _along_y(_along_x(G, fx, dWx), fy, Wy)
            if dy is not None:
                out[..., c] += dy * _along_y(Hx, fy, dWy)
        return out

    def reach(self, lo, hi, pad, align=1):
        """Index box ``(y0, y1, x0, x1)`` holding every input pixel whose map can
        fall within ``pad`` output pixels of rows ``[lo, hi]``; None if none can.

        Decided on the node grid (cells of ``stepsize`` pixels, with a margin for
        the D2IM displacement and the interpolation between nodes), so it costs
        no map evaluation; ``y0``, ``x0`` are rounded down to a multiple of
        ``align``.
        """
        if self._whole is not None:
            y = self._whole[..., 1]
            m = (y > lo - pad) & (y < hi + pad)
            if not m.any():
                return None
            rows = np.flatnonzero(m.any(axis=1))
            cols = np.flatnonzero(m.any(axis=0))
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        else:
            gy = self.grid[..., 1]
            # output pixels per input pixel, and the largest D2IM shift (input pixels)
            step = max(np.diff(self.gx).max(), np.diff(self.gy).max())
            slope = max(np.abs(np.diff(gy, axis=0)).max(initial=0.0),
                        np.abs(np.diff(gy, axis=1)).max(initial=0.0)) / max(step, 1e-9)
            shift = 0.0
            if self._disp is not None:
                shift = max((float(np.abs(d).max()) for d in self._disp if d is not None), default=0.0)
            elif self._d2im is not None:
                shift = 2.0
            margin = pad + 1.0 + slope * shift
            corners = np.stack([gy[:-1, :-1], gy[1:, :-1], gy[:-1, 1:], gy[1:, 1:]])
            hit = (corners.max(axis=0) > lo - margin) & (corners.min(axis=0) < hi + margin)
            if not hit.any():
                return None
            rows = np.flatnonzero(hit.any(axis=1))
            cols = np.flatnonzero(hit.any(axis=0))
            y0 = int(np.searchsorted(self.ys, self.gy[rows[0]], side="left"))
            y1 = int(np.searchsorted(self.ys, self.gy[rows[-1] + 1], side="right"))
            x0 = int(np.searchsorted(self.xs, self.gx[cols[0]], side="left"))
            x1 = int(np.searchsorted(self.xs, self.gx[cols[-1] + 1], side="right"))
        a = max(1, int(align))
        return y0 // a * a, y1, x0 // a * a, x1
