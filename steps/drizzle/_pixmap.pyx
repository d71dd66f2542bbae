# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""GIL-free tensor-product interpolation of a pixel map's node grid.

Private; use ``pixmap.WindowedMap.window``.  A window of a chip's map is
``out[j, i, c] = sum_a Wy[j, a] * sum_b Wx[i, b] * grid[fy[j] + a, fx[i] + b, c]``
(the per-axis Lagrange weights, D2IM shifts folded in, come from Python).

Each output element is summed in a fixed order from its own weights only, so a
band's window holds exactly the same bits as those rows of the whole map.  It
replaces numpy's ``matmul`` per stencil group, whose BLAS call cost more than
the arithmetic (a whole 801x801 corner map took 2.0 ms, 1.5 ms now, 1.2 ms of it
here; and OpenBLAS's threads no longer spin on the second core).
"""
import numpy as np


def interpolate(const double[:, :, ::1] grid, const Py_ssize_t[::1] fx, const double[:, ::1] wx,
                const Py_ssize_t[::1] fy, const double[:, ::1] wy, double[:, :, ::1] out):
    """Fill ``out`` (ny, nx, 2) from the node ``grid`` (ngy, ngx, 2)."""
    cdef Py_ssize_t ny = fy.shape[0], nx = fx.shape[0]
    cdef Py_ssize_t npx = wx.shape[1], npy = wy.shape[1]
    cdef Py_ssize_t r0, r1, r, i, j, a, b, k, f
    cdef double sx, w
    if out.shape[0] != ny or out.shape[1] != nx or out.shape[2] != 2 or grid.shape[2] != 2:
        raise ValueError("interpolate: shapes do not agree")
    if wx.shape[0] != nx or wy.shape[0] != ny:
        raise ValueError("interpolate: one weight row per target is needed")
    if ny == 0 or nx == 0:
        return
    r0, r1 = fy[0], fy[0]
    for j in range(ny):
        r0 = min(r0, fy[j])
        r1 = max(r1, fy[j])
    r1 += npy
    for i in range(nx):
        if fx[i] < 0 or fx[i] + npx > grid.shape[1]:
            raise ValueError("interpolate: x stencil outside the node grid")
    if r0 < 0 or r1 > grid.shape[0]:
        raise ValueError("interpolate: y stencil outside the node grid")
    # the x pass, on the node rows the window's stencils use
    hx_arr = np.empty((r1 - r0, nx * 2), dtype=np.float64)
    cdef double[:, ::1] hx = hx_arr
    cdef const double* h
    cdef double* o
    with nogil:
        for r in range(r0, r1):
            for i in range(nx):
                f = fx[i]
                for k in range(2):
                    sx = 0.0
                    for b in range(npx):
                        sx = sx + grid[r, f + b, k] * wx[i, b]
                    hx[r - r0, 2 * i + k] = sx
        # the y pass: each output row from npy rows of the x pass, in order
        for j in range(ny):
            o = &out[j, 0, 0]
            f = fy[j] - r0
            w = wy[j, 0]
            h = &hx[f, 0]
            for k in range(2 * nx):
                o[k] = w * h[k]
            for a in range(1, npy):
                w = wy[j, a]
                h = &hx[f + a, 0]
                for k in range(2 * nx):
                    o[k] = o[k] + w * h[k]
