# cython: language_level=3
"""The two-pass cosmic-ray test of ``crdetect.driz_cr`` in two sweeps over a chip.

numpy forms the test in some twenty whole-chip passes (the four differences of
the derivative, the noise, both thresholds, the comparisons, a padded 3 x 3 box
sum of nine shifted copies), each through a chip-sized temporary; here one sweep
flags every pixel against both thresholds and a second one applies the
neighbour rule.

Same result as the numpy program, pixel for pixel: every value is formed in
float32 with the same operations (``|I - B|``, the derivative as the largest
absolute difference with the four neighbours, NaN winning as in ``np.maximum``,
``sqrt(|B| + rn**2)``, ``scale * D + snr * noise`` without fused multiply-add),
a comparison with NaN fails as in numpy, and the 3 x 3 neighbourhood is
clamped at the borders as numpy's symmetric padding of width 1 is.  The caller
passes the float32 constants as numpy made them.  Checked against
``driz_cr`` in ``tests/test_chain_algorithms.py``.
"""
import numpy as np
from libc.math cimport fabsf, sqrtf


cdef inline float _maxn(float a, float b) noexcept nogil:
    """``np.maximum``: NaN if either is NaN."""
    if a != a or b != b:
        return a + b
    return a if a >= b else b


def driz_cr_flags(const float[:, ::1] data, const float[:, ::1] blot, float rn2,
                  float s1, float s2, float n1, float n2):
    """``good`` (bool, True = not a cosmic ray) of ``driz_cr`` with
    ``rn2 = float32(rdnoise) ** 2``, ``s1, s2`` the scales and ``n1, n2`` the
    signal-to-noise thresholds as float32."""
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, j, ii, jj, i0, i1, j0, j1
    cdef float b, d, diff, noise, t1, t2
    cdef unsigned char f, hit
    if blot.shape[0] != ny or blot.shape[1] != nx:
        raise ValueError(f"data {ny}x{nx} and blot {blot.shape[0]}x{blot.shape[1]} differ in shape")
    flags = np.empty((ny, nx), dtype=np.uint8)
    good = np.empty((ny, nx), dtype=bool)
    cdef unsigned char[:, ::1] F = flags
    cdef unsigned char[:, ::1] G = good.view(np.uint8)
    with nogil:
        # bit 0: fails the first (strict) test, bit 1: fails the second
        for i in range(ny):
            for j in range(nx):
                b = blot[i, j]
                d = 0.0
                if j + 1 < nx:
                    d = _maxn(d, fabsf(blot[i, j + 1] - b))
                if j > 0:
                    d = _maxn(d, fabsf(b - blot[i, j - 1]))
                if i + 1 < ny:
                    d = _maxn(d, fabsf(blot[i + 1, j] - b))
                if i > 0:
                    d = _maxn(d, fabsf(b - blot[i - 1, j]))
                diff = fabsf(data[i, j] - b)
                noise = sqrtf(fabsf(b) + rn2)
                t1 = s1 * d + n1 * noise
                t2 = s2 * d + n2 * noise
                F[i, j] = (not (diff <= t1)) | ((not (diff <= t2)) << 1)
        # bad: fails the second test and some pixel of its 3 x 3 neighbourhood
        # (itself included, clamped at the borders) fails the first
        for i in range(ny):
            i0 = i - 1 if i > 0 else 0
            i1 = i + 1 if i + 1 < ny else ny - 1
            for j in range(nx):
                f = F[i, j]
                hit = 0
                if f & 2:
                    j0 = j - 1 if j > 0 else 0
                    j1 = j + 1 if j + 1 < nx else nx - 1
                    for ii in range(i0, i1 + 1):
                        for jj in range(j0, j1 + 1):
                            hit |= F[ii, jj]
                    hit &= 1
                G[i, j] = not hit
    return good
