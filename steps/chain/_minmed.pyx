# cython: language_level=3
"""minmed of one strip, row by row: the numpy program of ``minmed.minmed``
(its reference, same bits) fused into passes over one row at a time.

numpy runs each of its ~40 element-wise operations over the whole strip
(N x 66 x 3408 values on M2), streaming it through memory every time; here a
row of the N singles (82 kB) stays in the cache while all of them run, in
loops over the row's pixels that the compiler vectorises (the C below:
``restrict`` rows, no branches).  Every operation keeps numpy's precision and
order (float32 where numpy computes in float32, float64 sums image by image,
each started with the first image), so the result is bit-identical (one
exception, left alone: where a +0.0 and a -0.0 meet at one pixel a zero may
come out with the other sign, as numpy's own minimum and maximum do not fix
it either); the caller runs the numpy program where this does not apply (NaN
among the unmasked values or the weights, fewer than 2 or more than 8
singles, iminmed).
"""
import numpy as np
cimport numpy as cnp
from libc.stdlib cimport malloc, free

cnp.import_array()

cdef extern from *:
    """
    #include <math.h>
    #include <stddef.h>
    typedef ptrdiff_t df_n;

    /* V = bad ? +inf : sci; cnt += !bad; returns nonzero if an unmasked sci or wht is NaN */
    static int df_mask_row(const float *restrict s, const float *restrict w, const unsigned char *restrict b,
                           float *restrict v, int *restrict cnt, df_n nx) {
        int nan = 0;
        for (df_n x = 0; x < nx; x++) {
            float a = s[x];
            int good = !b[x];
            v[x] = good ? a : INFINITY;
            cnt[x] += good;
            nan |= good & ((a != a) | (w[x] != w[x]));
        }
        return nan;
    }

    /* one compare-exchange of the odd-even transposition network (np.minimum / np.maximum) */
    static void df_cmpswap(float *restrict a, float *restrict b, df_n nx) {
        for (df_n x = 0; x < nx; x++) {
            float u = a[x], v = b[x];
            float lo = v < u ? v : u;      /* the min and max idioms (minps / maxps) */
            float hi = u > v ? u : v;
            a[x] = lo;
            b[x] = hi;
        }
    }

    /* float64 sums image by image (numpy's axis-0 reduction order) */
    static void df_sums(const float *restrict w, const unsigned char *restrict b, double bst, double rn2,
                        int first, double *restrict wt, double *restrict bt, double *restrict rt, df_n nx) {
        if (first) {
            for (df_n x = 0; x < nx; x++) {
                wt[x] = (double)w[x];
                bt[x] = (double)w[x] * bst;
                rt[x] = (b[x] ? 0.0 : 1.0) * rn2;
            }
        } else {
            for (df_n x = 0; x < nx; x++) {
                wt[x] = wt[x] + (double)w[x];
                bt[x] = bt[x] + (double)w[x] * bst;
                rt[x] = rt[x] + (b[x] ? 0.0 : 1.0) * rn2;
            }
        }
    }

    /* minimum over the candidates (unmasked, weight per second >= frac x the largest) */
    static void df_cand_min(const float *restrict s, const unsigned char *restrict b, const float *restrict rate,
                            const float *restrict rmax, float frac, float *restrict mn, int *restrict cnt, df_n nx) {
        int all = !(frac > 0);
        for (df_n x = 0; x < nx; x++) {
            int ok = (!b[x]) & (all | (rate[x] >= frac * rmax[x]));
            float a = s[x], m = mn[x];
            mn[x] = (ok & (a < m)) ? a : m;
            cnt[x] += ok;
        }
    }

    /* weight per second (0 where masked), float32 as numpy; running maximum */
    static void df_rate(const float *restrict w, const unsigned char *restrict b, float t,
                        float *restrict rate, float *restrict rmax, int first, df_n nx) {
        float d = t > 0 ? t : 1.0f;
        for (df_n x = 0; x < nx; x++) {
            float r = b[x] ? 0.0f : w[x] / d;
            rate[x] = r;
            if (first) rmax[x] = r;
            else rmax[x] = r > rmax[x] ? r : rmax[x];
        }
    }
    """
    ctypedef Py_ssize_t df_n
    int df_mask_row(const float* s, const float* w, const unsigned char* b, float* v, int* cnt, df_n nx) nogil
    void df_cmpswap(float* a, float* b, df_n nx) nogil
    void df_sums(const float* w, const unsigned char* b, double bst, double rn2, int first,
                 double* wt, double* bt, double* rt, df_n nx) nogil
    void df_rate(const float* w, const unsigned char* b, float t, float* rate, float* rmax, int first, df_n nx) nogil
    void df_cand_min(const float* s, const unsigned char* b, const float* rate, const float* rmax, float frac,
                     float* mn, int* cnt, df_n nx) nogil

from libc.math cimport sqrt, isinf, INFINITY

DEF MAXN = 8


def minmed_rows(const float[:, :, ::1] sci, const float[:, :, ::1] wht, const unsigned char[:, :, ::1] bad,
                const float[::1] t32, const double[::1] bst, const double[::1] rn2,
                double s1, double s2, int grow, float frac, float[:, ::1] out):
    """Fill ``out`` (ny, nx) with minmed of the strip; False (``out`` undefined)
    where the numpy program must be used instead (NaN met, N outside 2..8).

    ``t32``: exposure times (float32, for the weight per second of the
    candidates), ``bst``: sky / exposure time, ``rn2``: read noise squared
    (float64, per single); ``frac``: min_coverage (<= 0: every unmasked single).
    """
    cdef Py_ssize_t n = sci.shape[0], ny = sci.shape[1], nx = sci.shape[2]
    cdef Py_ssize_t i, j, y, x, r, k, m, lo, hi, yy, y0, y1, x0, x1
    cdef float mnv
    cdef double s, medw, sig, minw, th
    cdef int nanseen = 0, grown
    if n < 2 or n > MAXN or ny == 0 or nx == 0 or wht.shape[0] != n or bad.shape[0] != n or out.shape[0] != ny or out.shape[1] != nx \
            or t32.shape[0] < n or bst.shape[0] < n or rn2.shape[0] < n:
        return False
    # row scratch, and per pixel of the strip what the grown test needs
    cdef float* V = <float*> malloc(2 * n * nx * sizeof(float))     # sorted values; rates
    cdef float* RATE = V + n * nx
    cdef float* RMAX = <float*> malloc(nx * sizeof(float))
    cdef double* WT = <double*> malloc(3 * nx * sizeof(double))
    cdef double* BT = WT + nx
    cdef double* RT = BT + nx
    cdef int* CNT = <int*> malloc(nx * sizeof(int))
    cdef float* MED = <float*> malloc(2 * ny * nx * sizeof(float))
    cdef float* MN = MED + ny * nx
    cdef double* MEDW = <double*> malloc(3 * ny * nx * sizeof(double))
    cdef double* SIG = MEDW + ny * nx
    cdef double* MINW = SIG + ny * nx
    cdef unsigned char* FIRST = <unsigned char*> malloc(2 * ny * nx)
    cdef unsigned char* ALLBAD = FIRST + ny * nx
    cdef float* MNROW
    if not (V and RMAX and WT and CNT and MED and MEDW and FIRST):
        free(V); free(RMAX); free(WT); free(CNT); free(MED); free(MEDW); free(FIRST)
        raise MemoryError()
    try:
        with nogil:
            for y in range(ny):
                for x in range(nx):
                    CNT[x] = 0
                for i in range(n):
                    nanseen |= df_mask_row(&sci[i, y, 0], &wht[i, y, 0], &bad[i, y, 0], V + i * nx, CNT, nx)
                if nanseen:
                    break
                if n == 2:
                    # masked mean: float64 sum of the unmasked values (0 for masked ones)
                    for x in range(nx):
                        s = <double>(sci[0, y, x] if not bad[0, y, x] else <float>0.0)
                        s = s + <double>(sci[1, y, x] if not bad[1, y, x] else <float>0.0)
                        m = CNT[x]
                        MED[y * nx + x] = <float>(s / <double>m) if m > 0 else <float>0.0
                else:
                    for r in range(n):
                        i = r % 2
                        while i < n - 1:
                            df_cmpswap(V + i * nx, V + (i + 1) * nx, nx)
                            i += 2
                    # median after dropping the highest (nhigh 1; kept when one value is left)
                    for x in range(nx):
                        m = CNT[x]
                        if m > 1:
                            m = m - 1
                        if m <= 0:
                            MED[y * nx + x] = 0.0
                        else:
                            lo = (m - 1) // 2
                            hi = m // 2
                            MED[y * nx + x] = <float>(0.5 * (<double>V[lo * nx + x] + <double>V[hi * nx + x]))
                # candidates for the minimum: weight per second >= frac x the largest there
                for i in range(n):
                    df_rate(&wht[i, y, 0], &bad[i, y, 0], t32[i], RATE + i * nx, RMAX, i == 0, nx)
                MNROW = MN + y * nx
                for x in range(nx):
                    MNROW[x] = INFINITY
                    CNT[x] = 0 if CNT[x] > 0 else -1      # -1: every single masked here
                for i in range(n):
                    df_cand_min(&sci[i, y, 0], &bad[i, y, 0], RATE + i * nx, RMAX, frac, MNROW, CNT, nx)
                for x in range(nx):
                    if CNT[x] == 0:   # unmasked singles but no candidate: every unmasked one
                        for i in range(n):
                            if not bad[i, y, x] and sci[i, y, x] < MNROW[x]:
                                MNROW[x] = sci[i, y, x]
                for i in range(n):
                    df_sums(&wht[i, y, 0], &bad[i, y, 0], bst[i], rn2[i], i == 0, WT, BT, RT, nx)
                for x in range(nx):
                    k = y * nx + x
                    mnv = MNROW[x]
                    if isinf(mnv):
                        mnv = 0.0
                        MNROW[x] = 0.0
                    medw = <double>MED[k] * WT[x]
                    sig = medw + BT[x] + RT[x]
                    if sig < 0.0:
                        sig = 0.0
                    sig = sqrt(sig)
                    minw = <double>mnv * WT[x]
                    MEDW[k] = medw
                    SIG[k] = sig
                    MINW[k] = minw
                    FIRST[k] = minw < medw - s1 * sig
                    ALLBAD[k] = CNT[x] < 0
            if not nanseen:
                # the grown test: the second threshold within `grow` pixels of a first-test pixel
                for y in range(ny):
                    y0 = y - grow if y >= grow else 0
                    y1 = y + grow if y + grow < ny else ny - 1
                    for x in range(nx):
                        k = y * nx + x
                        th = MEDW[k] - s1 * SIG[k]
                        if grow > 0:
                            x0 = x - grow if x >= grow else 0
                            x1 = x + grow if x + grow < nx else nx - 1
                            grown = 0
                            for yy in range(y0, y1 + 1):
                                for j in range(x0, x1 + 1):
                                    grown |= FIRST[yy * nx + j]
                            if grown:
                                th = MEDW[k] - s2 * SIG[k]
                        if ALLBAD[k]:
                            out[y, x] = 0.0
                        elif MINW[k] < th:
                            out[y, x] = MN[k]
                        else:
                            out[y, x] = MED[k]
    finally:
        free(V); free(RMAX); free(WT); free(CNT); free(MED); free(MEDW); free(FIRST)
    return not nanseen
