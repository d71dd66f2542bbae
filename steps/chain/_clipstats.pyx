# cython: language_level=3
"""The clipping passes and the mode histogram of ``imagestats.clipped_stats``,
one sweep each.

numpy needs five passes over a chip per clipping iteration (two comparisons,
their ``&``, the boolean selection, the sum) and three more for the standard
deviation (subtract, square, sum), each through a chip-sized temporary.  Here
the selection is one branch-free pass that compacts the kept values into a
buffer, and the sums run straight over it.

Same bits as the numpy program: the sums are numpy's pairwise summation
(``np.add.reduce`` on a contiguous float64 array: blocks of at most 128 values
summed with eight accumulators, larger runs split in two at a multiple of
eight), and every term is formed as numpy forms it (``d = x - mean; d * d``).
``tests/test_speed_paths.py`` checks the equality on arrays of many
lengths, so a numpy that sums differently is caught there.
"""
import numpy as np
from libc.math cimport sqrt

DEF BLOCK = 128


cdef double _pairwise(const double* a, Py_ssize_t n) noexcept nogil:
    cdef double r0, r1, r2, r3, r4, r5, r6, r7, res
    cdef Py_ssize_t i, n2
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    if n <= BLOCK:
        r0 = a[0]; r1 = a[1]; r2 = a[2]; r3 = a[3]
        r4 = a[4]; r5 = a[5]; r6 = a[6]; r7 = a[7]
        i = 8
        while i < n - (n % 8):
            r0 += a[i]; r1 += a[i + 1]; r2 += a[i + 2]; r3 += a[i + 3]
            r4 += a[i + 4]; r5 += a[i + 5]; r6 += a[i + 6]; r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise(a, n2) + _pairwise(a + n2, n - n2)


cdef inline double _sq(double x, double m) noexcept nogil:
    cdef double d = x - m
    return d * d


cdef double _pairwise_dev(const double* a, Py_ssize_t n, double m) noexcept nogil:
    """``_pairwise`` of ``(a - m) ** 2``, each term formed as numpy forms it."""
    cdef double r0, r1, r2, r3, r4, r5, r6, r7, res
    cdef Py_ssize_t i, n2
    if n < 8:
        res = 0.0
        for i in range(n):
            res += _sq(a[i], m)
        return res
    if n <= BLOCK:
        r0 = _sq(a[0], m); r1 = _sq(a[1], m); r2 = _sq(a[2], m); r3 = _sq(a[3], m)
        r4 = _sq(a[4], m); r5 = _sq(a[5], m); r6 = _sq(a[6], m); r7 = _sq(a[7], m)
        i = 8
        while i < n - (n % 8):
            r0 += _sq(a[i], m); r1 += _sq(a[i + 1], m); r2 += _sq(a[i + 2], m); r3 += _sq(a[i + 3], m)
            r4 += _sq(a[i + 4], m); r5 += _sq(a[i + 5], m); r6 += _sq(a[i + 6], m); r7 += _sq(a[i + 7], m)
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += _sq(a[i], m)
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_dev(a, n2, m) + _pairwise_dev(a + n2, n - n2, m)


def select(const double[::1] src, double lo, double hi, double[::1] out):
    """Copy the values ``lo <= v <= hi`` of ``src`` into the front of ``out``, in
    order, and return their number.  ``out`` (at least as long as ``src``) may be
    ``src`` itself: the write position never passes the read position."""
    cdef Py_ssize_t i, k = 0, n = src.shape[0]
    cdef double v
    if out.shape[0] < n:
        raise ValueError("out is shorter than src")
    with nogil:
        for i in range(n):
            v = src[i]
            out[k] = v
            k += (v >= lo) & (v <= hi)
    return k


def mean_std(const double[::1] x):
    """``(mean, std)`` of ``x`` as ``add.reduce(x) / n`` and the sample standard
    deviation ``sqrt(add.reduce((x - mean) ** 2) / (n - 1))`` (0 for one value)."""
    cdef Py_ssize_t n = x.shape[0]
    cdef double mean, std = 0.0
    if n == 0:
        raise ValueError("no values")
    with nogil:
        # numpy adds the sum to the reduction's start value 0.0 (a sum of -0.0s is +0.0)
        mean = (0.0 + _pairwise(&x[0], n)) / <double>n
        if n > 1:
            std = sqrt((0.0 + _pairwise_dev(&x[0], n, mean)) / <double>(n - 1))
    return mean, std


def histogram(const double[::1] v, double vmin, double spacing, Py_ssize_t nbins):
    """Counts of ``clip(floor((v - vmin) / spacing), 0, nbins - 1)`` (int64), the bin
    of every value computed as numpy computes it, in one pass without temporaries."""
    cdef Py_ssize_t i, b, n = v.shape[0]
    cdef double t
    if nbins < 1:
        raise ValueError("nbins must be positive")
    counts = np.zeros(nbins, dtype=np.int64)
    cdef long long[::1] c = counts
    with nogil:
        for i in range(n):
            # floor, then clip to the bins: below 0 every value goes to bin 0 and above
            # 0 truncation is floor, so no floor() call is needed (a libm call per
            # value where the build has no SSE4.1 rounding instruction)
            t = (v[i] - vmin) / spacing
            if t < 1.0:
                b = 0
            elif t >= <double>(nbins - 1):
                b = nbins - 1
            else:
                b = <Py_ssize_t>t
            c[b] += 1
    return counts
