# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""GIL-free blot (interpolation of an output-frame image at pixel-map positions).

Private; use ``core.blot``.  ``out[j, i] = factor * I(image, pixmap[j, i])``
where I is the interpolant; positions outside ``0 <= x < nx, 0 <= y < ny``
(or NaN) get ``fillval``.  Interpolants that need pixels beyond the image edge
extend it by point reflection about the edge pixel
(``image[-k] = 2 image[0] - image[k]``), which keeps linear trends.
"""
from libc.math cimport floor, fabs, sin, cos, M_PI, isnan
import numpy as np

DEF I_NEAREST = 0
DEF I_LINEAR = 1
DEF I_POLY3 = 2
DEF I_POLY5 = 3
DEF I_SINC = 4
DEF I_LANCZOS3 = 5

DEF NSINC = 7   # half-width of the tapered sinc (15 taps)


cdef inline double _pix(const float* im, Py_ssize_t nx, Py_ssize_t ny,
                        Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    """Pixel value with point reflection beyond the edges (1 image deep)."""
    cdef double a, b
    if j < 0:
        return 2.0 * _pix(im, nx, ny, i, 0) - _pix(im, nx, ny, i, -j if -j < ny else ny - 1)
    if j > ny - 1:
        return 2.0 * _pix(im, nx, ny, i, ny - 1) - _pix(im, nx, ny, i, 2 * (ny - 1) - j if 2 * (ny - 1) - j >= 0 else 0)
    if i < 0:
        a = im[j * nx]
        b = im[j * nx + (-i if -i < nx else nx - 1)]
        return 2.0 * a - b
    if i > nx - 1:
        a = im[j * nx + nx - 1]
        b = im[j * nx + (2 * (nx - 1) - i if 2 * (nx - 1) - i >= 0 else 0)]
        return 2.0 * a - b
    return im[j * nx + i]


cdef inline void _lagrange(double s, int npts, double* w) noexcept nogil:
    """Lagrange weights for nodes ``-(npts/2 - 1) .. npts/2`` at offset s in [0, 1)."""
    cdef int k, m, first = -(npts // 2 - 1)
    cdef double num, den
    for k in range(npts):
        num = 1.0
        den = 1.0
        for m in range(npts):
            if m != k:
                num *= s - <double>(first + m)
                den *= <double>(k - m)
        w[k] = num / den


cdef inline void _lagrange6(double s, double* w) noexcept nogil:
    """``_lagrange(s, 6, w)`` with the same operations in the same order, laid out
    for the compiler: every weight's numerator is one lane of a running product
    over the nodes (a factor 1.0 at the weight's own node, which is exact), and
    the denominators, exact integer products, are constants.  Bit-identical."""
    cdef double num[6]
    cdef double den[6]
    cdef double d
    cdef int k, m
    den[0] = -120.0; den[1] = 24.0; den[2] = -12.0; den[3] = 12.0; den[4] = -24.0; den[5] = 120.0
    for k in range(6):
        num[k] = 1.0
    for m in range(6):
        d = s - <double>(m - 2)
        for k in range(6):
            num[k] *= d if k != m else 1.0
    for k in range(6):
        w[k] = num[k] / den[k]


cdef inline double _poly5_inside(const float* p, Py_ssize_t nx, const double* wx,
                                 const double* wy) noexcept nogil:
    """The 6 x 6 sum of ``_interp`` for a stencil inside the image (``p``: its first
    pixel): the same products and the same order of additions within each row and
    across rows, with fixed trip counts so that the six independent row sums are
    interleaved instead of waiting on one another.  Bit-identical."""
    cdef double row[6]
    cdef double acc = 0.0
    cdef int i, k
    for k in range(6):
        row[k] = 0.0
    for i in range(6):
        for k in range(6):
            row[k] += wx[i] * <double>p[k * nx + i]
    for k in range(6):
        acc += wy[k] * row[k]
    return acc


cdef inline double _lanczos3(double u) noexcept nogil:
    cdef double pu
    u = fabs(u)
    if u >= 3.0:
        return 0.0
    if u < 1e-12:
        return 1.0
    pu = M_PI * u
    return 3.0 * sin(pu) * sin(pu / 3.0) / (pu * pu)


cdef inline void _sinc_weights(double dx, const double* taper, double* w) noexcept nogil:
    """Tapered-sinc weights at offsets ``dx - m``, m = -NSINC..NSINC (a node hit is a delta)."""
    cdef int k, hit = -1
    cdef double s
    for k in range(2 * NSINC + 1):
        s = dx - <double>(k - NSINC)
        if fabs(s) < 1e-3:
            hit = k
            break
        w[k] = taper[k] / s
    if hit >= 0:
        for k in range(2 * NSINC + 1):
            w[k] = 1.0 if k == hit else 0.0


cdef double _interp(const float* im, Py_ssize_t nx, Py_ssize_t ny, int kind,
                    double x, double y, double sinscl, const double* taper) noexcept nogil:
    cdef Py_ssize_t ix, iy, i, j, first
    cdef int n, k
    cdef double sx, sy, acc, row, s, sumx, sumy, dx, dy
    cdef double wx[16]
    cdef double wy[16]
    if kind == I_NEAREST:
        ix = <Py_ssize_t>(x + 0.5)
        iy = <Py_ssize_t>(y + 0.5)
        if ix > nx - 1: ix = nx - 1
        if iy > ny - 1: iy = ny - 1
        return im[iy * nx + ix]
    if kind == I_LINEAR:
        ix = <Py_ssize_t>x
        iy = <Py_ssize_t>y
        sx = x - <double>ix
        sy = y - <double>iy
        i = ix + 1 if ix + 1 < nx else ix
        j = iy + 1 if iy + 1 < ny else iy
        return ((1.0 - sx) * (1.0 - sy) * im[iy * nx + ix] + sx * (1.0 - sy) * im[iy * nx + i]
                + (1.0 - sx) * sy * im[j * nx + ix] + sx * sy * im[j * nx + i])
    if kind == I_POLY3 or kind == I_POLY5:
        n = 4 if kind == I_POLY3 else 6
        ix = <Py_ssize_t>x   # floor: blot_rows passes 0 <= x, y only
        iy = <Py_ssize_t>y
        if n == 6:
            _lagrange6(x - <double>ix, wx)
            _lagrange6(y - <double>iy, wy)
        else:
            _lagrange(x - <double>ix, n, wx)
            _lagrange(y - <double>iy, n, wy)
        first = -(n // 2 - 1)
        acc = 0.0
        if n == 6 and ix >= 2 and iy >= 2 and ix + 4 <= nx and iy + 4 <= ny:
            return _poly5_inside(im + (iy - 2) * nx + ix - 2, nx, wx, wy)
        if ix + first >= 0 and iy + first >= 0 and ix + first + n <= nx and iy + first + n <= ny:
            for k in range(n):
                row = 0.0
                j = (iy + first + k) * nx + ix + first
                for i in range(n):
                    row += wx[i] * im[j + i]
                acc += wy[k] * row
        else:
            for k in range(n):
                row = 0.0
                for i in range(n):
                    row += wx[i] * _pix(im, nx, ny, ix + first + i, iy + first + k)
                acc += wy[k] * row
        return acc
    if kind == I_LANCZOS3:
        ix = <Py_ssize_t>floor(x)
        iy = <Py_ssize_t>floor(y)
        sumx = 0.0
        sumy = 0.0
        for k in range(6):
            wx[k] = _lanczos3(x - <double>(ix - 2 + k))
            wy[k] = _lanczos3(y - <double>(iy - 2 + k))
            sumx += wx[k]
            sumy += wy[k]
        acc = 0.0
        for k in range(6):
            row = 0.0
            for i in range(6):
                row += wx[i] * _pix(im, nx, ny, ix - 2 + i, iy - 2 + k)
            acc += wy[k] * row
        return acc / (sumx * sumy)
    # tapered sinc, 15 x 15 taps around the nearest pixel
    ix = <Py_ssize_t>floor(x + 0.5)
    iy = <Py_ssize_t>floor(y + 0.5)
    if ix > nx - 1: ix = nx - 1
    if iy > ny - 1: iy = ny - 1
    dx = (x - <double>ix) * sinscl
    dy = (y - <double>iy) * sinscl
    if fabs(dx) < 1e-3 and fabs(dy) < 1e-3:
        return im[iy * nx + ix]
    _sinc_weights(dx, taper, wx)
    _sinc_weights(dy, taper, wy)
    sumx = 0.0
    sumy = 0.0
    for k in range(2 * NSINC + 1):
        sumx += wx[k]
        sumy += wy[k]
    acc = 0.0
    for k in range(2 * NSINC + 1):
        if wy[k] == 0.0:
            continue
        row = 0.0
        j = iy - NSINC + k
        if j < 0: j = 0
        if j > ny - 1: j = ny - 1
        for i in range(2 * NSINC + 1):
            first = ix - NSINC + i
            if first < 0: first = 0
            if first > nx - 1: first = nx - 1
            row += wx[i] * im[j * nx + first]
        acc += wy[k] * row
    return acc / (sumx * sumy)


def blot_rows(const float[:, ::1] image, const double[:, :, ::1] pixmap, float[:, ::1] out,
              int kind, double sinscl, double factor, float fillval,
              Py_ssize_t row0, Py_ssize_t row1):
    """Fill ``out[row0:row1]``; returns the number of positions outside the image."""
    cdef Py_ssize_t ny = image.shape[0], nx = image.shape[1]
    cdef Py_ssize_t onx = out.shape[1], i, j
    cdef const float* im = &image[0, 0]
    cdef double x, y, v, sconst, dx2, t
    cdef double taper[2 * NSINC + 1]
    cdef long long nmiss = 0
    cdef int k
    # cos^2-like taper (IRAF's polynomial approximation), alternating sign so
    # that taper[k] / (dx - k) is proportional to a tapered sinc
    sconst = (M_PI / 2.0 / NSINC) ** 2
    for k in range(2 * NSINC + 1):
        dx2 = sconst * (k - NSINC) * (k - NSINC)
        t = 1.0 - 0.49670 * dx2 + 0.03705 * dx2 * dx2
        taper[k] = t * t * (1.0 if (k - NSINC) % 2 == 0 else -1.0)
    with nogil:
        for j in range(row0, row1):
            for i in range(onx):
                x = pixmap[j, i, 0]
                y = pixmap[j, i, 1]
                if x >= 0.0 and x < <double>nx and y >= 0.0 and y < <double>ny:
                    v = _interp(im, nx, ny, kind, x, y, sinscl, taper)
                    out[j, i] = <float>(v * factor)
                else:
                    out[j, i] = fillval
                    nmiss += 1
    return nmiss
