# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""GIL-free drizzle kernels on plain arrays (private; use ``core.py``).

Conventions
-----------
* ``pixmap[j, i] = (x, y)``: 0-based output position of the centre of input
  pixel (column i, row j).  Output pixel (ii, jj) covers
  ``[ii - 0.5, ii + 0.5) x [jj - 0.5, jj + 0.5)``.  Drop corners are bilinear
  interpolations of the pixel map (extrapolated at the input edges), as in
  the ``drizzle`` package.
* The accumulator is one float32 array ``(ny, nx, 2)`` of interleaved sums
  ``(sum w*a*d, sum w*a)`` (contributions formed in float64, rounded once per
  addition); the weighted mean is formed once, at the end, by ``finish_block``.  Sums instead of a running mean avoid a division per
  contribution.
* Input pixels are visited in tiles of ``TILE_ROWS`` rows x ``chunk``
  columns (row-major inside a tile), so neighbouring drops reuse the same
  output cache lines.
* Square kernel: exact overlap areas by signed-area (coverage) accumulation.
  Each drop's edges deposit signed area differences into a per-tile buffer;
  one running sum along each buffer row gives, for every output pixel, the
  tile's sums of ``w a d`` and ``w a`` directly.  With pixfrac 1 the drops of
  a tile share their edges, and every edge is walked once with the
  difference of the two neighbours' coefficients.  With pixfrac < 1 a drop
  spanning at most 4 x 4 output pixels is resolved on its own in a small
  local buffer: edges inside one row or one column (drops aligned with the
  output grid, the usual case) walk one direction only, and the per-pixel
  additions are branch-free (a data-dependent branch there mispredicts).
* Threads: every entry point writes output rows ``[band0, band1)`` only.
  What is computed for an output pixel never depends on the band: drops and
  tiles are clipped to the image, not to the band.  The separable kernels
  add per drop and output pixel, so any banding gives the same result.  The
  square kernel sums a whole tile before adding it, so ``core.py`` hands
  out whole tiles instead: ``tile_yranges`` bounds the output rows of each
  tile, fixed bands (chosen from the geometry, not the thread count) label
  each tile with the band it lies in or the band edge it straddles, and
  ``drizzle_band(..., tiles, want)`` works on the tiles of one label.  Each
  tile is computed once, and every output pixel receives its additions in
  the same order for any number of threads (bit-identical results).
* No module-level mutable state; scratch buffers are allocated per call.
  Errors are status codes turned into exceptions by the Python wrapper.
"""
from libc.math cimport floor, fabs, fmax, exp, sin, cos, sqrt, M_PI, isnan, isfinite
from libc.stdlib cimport malloc, free, realloc
from libc.string cimport memset, memcpy
import numpy as np
cimport numpy as cnp

cdef extern from *:
    """
    /* One (data, weight) pair of the interleaved float32 accumulator gets
       t*cd and t*cw added in double precision and rounded once, as the scalar
       code does; with SSE2 (every x86-64) both lanes go through one 64-bit
       load/convert/add/convert/store.  Bit-identical to the scalar path. */
    #if defined(__AVX__)
    #include <immintrin.h>
    #endif
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline void df_add_pair(float* p, double t, double cd, double cw) {
        __m128d acc = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)p)));
        __m128d inc = _mm_mul_pd(_mm_set1_pd(t), _mm_set_pd(cw, cd));
        _mm_storel_epi64((__m128i*)p, _mm_castps_si128(_mm_cvtpd_ps(_mm_add_pd(acc, inc))));
    }
    #else
    static inline void df_add_pair(float* p, double t, double cd, double cw) {
        p[0] = (float)((double)p[0] + t * cd);
        p[1] = (float)((double)p[1] + t * cw);
    }
    #endif
    /* Add a0*(cd, cw) to the (data, weight) pair at p and a1*(cd, cw) to the pair
       right of it, as two 128-bit read-modify-writes.  One 256-bit access would
       be fewer instructions, but an edge walk moves one pair at a time, so the
       next load straddles the last store and cannot be forwarded from it (a
       stall of a dozen cycles, the hottest spot of the square kernel); pair-sized
       accesses always meet a store of the same address.  Same arithmetic as
       four scalar additions (bit-identical). */
    #if defined(__SSE2__)
    static inline void df_dep_pairs(double* p, double a0, double a1, double cd, double cw) {
        __m128d c = _mm_set_pd(cw, cd);
        _mm_storeu_pd(p, _mm_add_pd(_mm_loadu_pd(p), _mm_mul_pd(_mm_set1_pd(a0), c)));
        _mm_storeu_pd(p + 2, _mm_add_pd(_mm_loadu_pd(p + 2), _mm_mul_pd(_mm_set1_pd(a1), c)));
    }
    #else
    static inline void df_dep_pairs(double* p, double a0, double a1, double cd, double cw) {
        p[0] += a0 * cd;
        p[1] += a0 * cw;
        p[2] += a1 * cd;
        p[3] += a1 * cw;
    }
    #endif
    /* The bits of a float32 in big-endian (FITS) byte order, as a uint32 to store. */
    static inline unsigned int df_f32_bits_be(float v) {
        unsigned int u;
        memcpy(&u, &v, 4);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return u;
    #else
        return __builtin_bswap32(u);
    #endif
    }
    /* Zero n doubles; called with a constant n, the loop unrolls into plain
       vector stores (a plain C loop would become a memset call, whose size
       dispatch costs more branches than the stores themselves). */
    static inline void df_zero(double* p, int n) {
        int k = 0;
    #if defined(__AVX__)
        const __m256d z4 = _mm256_setzero_pd();
        for (; k + 4 <= n; k += 4) _mm256_storeu_pd(p + k, z4);
    #endif
    #if defined(__SSE2__)
        const __m128d z = _mm_setzero_pd();
        for (; k + 2 <= n; k += 2) _mm_storeu_pd(p + k, z);
    #endif
        for (; k < n; k++) p[k] = 0.0;
    }
    """
    void df_add_pair(float* p, double t, double cd, double cw) noexcept nogil
    void df_dep_pairs(double* p, double a0, double a1, double cd, double cw) noexcept nogil
    void df_zero(double* p, int n) noexcept nogil
    unsigned int df_f32_bits_be(float v) noexcept nogil

cnp.import_array()

# kernel codes (mirrored in core.py)
DEF K_SQUARE = 0
DEF K_TURBO = 1
DEF K_POINT = 2
DEF K_GAUSSIAN = 3
DEF K_LANCZOS2 = 4
DEF K_LANCZOS3 = 5

# status codes
DEF ST_OK = 0
DEF ST_NOMEM = 1
DEF ST_HUGE = 2
DEF ST_FALLBACK = 3   # internal: tile footprint too large, go pixel by pixel

# largest side (output pixels) of one drop; beyond that the pixel map is broken
DEF MAX_DROP_SIDE = 4096

# input rows per traversal tile (columns: the `chunk` argument)
DEF TILE_ROWS = 32
# largest coverage buffer (cells) for one tile before falling back to per-pixel work
DEF MAX_TILE_CELLS = 1 << 20


cdef struct Acc:
    float* acc       # interleaved (sum of w*a*d, sum of w*a), (ony, onx, 2)
    int* ctx         # context plane or NULL
    unsigned int bit
    Py_ssize_t onx, ony
    Py_ssize_t band0, band1


cdef struct Scratch:
    double* buf
    Py_ssize_t cap


cdef inline int _reserve(Scratch* sc, Py_ssize_t n) noexcept nogil:
    cdef double* p
    if n <= sc.cap:
        return ST_OK
    if n < 64:
        n = 64
    p = <double*>realloc(sc.buf, n * sizeof(double))
    if p == NULL:
        return ST_NOMEM
    memset(p, 0, n * sizeof(double))
    sc.buf = p
    sc.cap = n
    return ST_OK


cdef inline Py_ssize_t _ifloor(double x) noexcept nogil:
    # floor for finite |x| < 2**62 without a libm call
    cdef Py_ssize_t i = <Py_ssize_t>x
    return i - (x < <double>i)


cdef inline double _dfloor(double x) noexcept nogil:
    return <double>_ifloor(x)


cdef inline Py_ssize_t _iround(double x) noexcept nogil:
    # index of the output pixel containing x (pixels are [k-0.5, k+0.5))
    return _ifloor(x + 0.5)


cdef inline void _add(Acc* a, Py_ssize_t ii, Py_ssize_t jj, double w, double d) noexcept nogil:
    cdef Py_ssize_t q = jj * a.onx + ii
    a.acc[2 * q] = <float>(a.acc[2 * q] + w * d)
    a.acc[2 * q + 1] = <float>(a.acc[2 * q + 1] + w)
    if a.ctx != NULL and w > 0.0:
        a.ctx[q] |= <int>a.bit


# ---------------------------------------------------------------------------
# square kernel: exact area by signed-area (coverage) accumulation
# ---------------------------------------------------------------------------

cdef inline void _edge(double u0, double v0, double u1, double v1,
                       double* acc, Py_ssize_t bw, Py_ssize_t bh) noexcept nogil:
    """Deposit one directed edge into the coverage buffer.

    Local frame: cell (c, r) is [c, c+1) x [r, r+1); ``acc`` has ``bw + 1``
    columns per row and receives differences, so that the running sum along
    a row is the signed area of the polygon inside each cell.  For a piece
    of the edge inside cell (c, r) with vertical extent ``d`` and mean
    abscissa ``um``, cell c gets ``d * (c + 1 - um)`` and every cell to its
    right gets ``d``.  Pieces left of the buffer count as full ``d`` in
    column 0, pieces right of it are dropped, rows outside are ignored.
    """
    cdef double du = u1 - u0, dv = v1 - v0
    cdef double ta, tb, t0, t1, tr, tc, tm, um, vm, d, f, invdv, invdu
    cdef double kr, kc, sr, sc, vend, uend
    cdef Py_ssize_t row, col, stride = bw + 1
    if dv == 0.0:
        return
    invdv = 1.0 / dv
    # parameter range with 0 <= v <= bh
    if dv > 0.0:
        ta = (0.0 - v0) * invdv
        tb = (<double>bh - v0) * invdv
    else:
        ta = (<double>bh - v0) * invdv
        tb = (0.0 - v0) * invdv
    if ta < 0.0:
        ta = 0.0
    if tb > 1.0:
        tb = 1.0
    if ta >= tb:
        return
    # next row crossing after ta
    vm = v0 + ta * dv
    vend = v0 + tb * dv
    if dv > 0.0:
        sr = 1.0
        kr = _dfloor(vm) + 1.0
        tr = (kr - v0) * invdv if kr < vend else 2.0
    else:
        sr = -1.0
        kr = _dfloor(vm)
        if kr >= vm:
            kr -= 1.0
        tr = (kr - v0) * invdv if kr > vend else 2.0
    # next column crossing after ta, only at columns 0..bw
    um = u0 + ta * du
    uend = u0 + tb * du
    tc = 2.0
    invdu = 0.0
    sc = 0.0
    kc = 0.0
    if du != 0.0:
        invdu = 1.0 / du
        if du > 0.0:
            sc = 1.0
            kc = _dfloor(um) + 1.0
            if kc < 0.0:
                kc = 0.0
            if kc < uend and kc <= <double>bw:
                tc = (kc - u0) * invdu
        else:
            sc = -1.0
            kc = _dfloor(um)
            if kc >= um:
                kc -= 1.0
            if kc > <double>bw:
                kc = <double>bw
            if kc > uend and kc >= 0.0:
                tc = (kc - u0) * invdu
    t0 = ta
    while True:
        t1 = tb
        if tr < t1:
            t1 = tr
        if tc < t1:
            t1 = tc
        if t1 > t0:
            tm = 0.5 * (t0 + t1)
            um = u0 + tm * du
            vm = v0 + tm * dv
            row = _ifloor(vm)
            if 0 <= row < bh:
                d = (t1 - t0) * dv
                if um < 0.0:
                    acc[row * stride] += d
                elif um < <double>bw:
                    col = _ifloor(um)
                    f = um - <double>col
                    acc[row * stride + col] += d * (1.0 - f)
                    acc[row * stride + col + 1] += d * f
        if t1 >= tb:
            break
        if t1 == tr:
            kr += sr
            if (sr > 0.0 and kr < vend) or (sr < 0.0 and kr > vend):
                tr = (kr - v0) * invdv
            else:
                tr = 2.0
        if t1 == tc:
            kc += sc
            if (sc > 0.0 and kc < uend and kc <= <double>bw) or \
               (sc < 0.0 and kc > uend and kc >= 0.0):
                tc = (kc - u0) * invdu
            else:
                tc = 2.0
        t0 = t1


cdef inline void _edge_inside(double u0, double v0, double u1, double v1,
                              double* acc, Py_ssize_t bw, Py_ssize_t bh) noexcept nogil:
    """``_edge`` for an edge known to lie inside the buffer [0, bw] x [0, bh].

    Walks the cells the edge crosses with incremental row/column indices (no
    floor per piece); indices are clamped so that rounding at the very ends
    of the edge cannot leave the buffer.
    """
    cdef double du = u1 - u0, dv = v1 - v0
    cdef double t0, t1, tr, tc, dtr, dtc, um, d, f
    cdef Py_ssize_t row, col, sr, sc, stride = bw + 1, rr, cc
    cdef double* p
    if dv == 0.0:
        return
    if dv > 0.0:
        row = _ifloor(v0)
        sr = 1
        dtr = 1.0 / dv
        tr = (<double>(row + 1) - v0) * dtr
    else:
        row = -_ifloor(-v0) - 1
        sr = -1
        dtr = -1.0 / dv
        tr = (v0 - <double>row) * dtr
    if du > 0.0:
        col = _ifloor(u0)
        sc = 1
        dtc = 1.0 / du
        tc = (<double>(col + 1) - u0) * dtc
    elif du < 0.0:
        col = -_ifloor(-u0) - 1
        sc = -1
        dtc = -1.0 / du
        tc = (u0 - <double>col) * dtc
    else:
        col = _ifloor(u0)
        sc = 0
        dtc = 0.0
        tc = 2.0
    t0 = 0.0
    while True:
        t1 = tr if tr < tc else tc
        if t1 > 1.0:
            t1 = 1.0
        um = u0 + 0.5 * (t0 + t1) * du
        d = (t1 - t0) * dv
        rr = row
        if rr < 0: rr = 0
        if rr > bh - 1: rr = bh - 1
        cc = col
        if cc < 0: cc = 0
        if cc > bw - 1: cc = bw - 1
        f = um - <double>cc
        p = acc + rr * stride + cc
        p[0] += d * (1.0 - f)
        p[1] += d * f
        if t1 >= 1.0:
            break
        if tr <= tc:
            row += sr
            tr += dtr
            if t1 == tc:
                col += sc
                tc += dtc
        else:
            col += sc
            tc += dtc
        t0 = t1


cdef inline void _dep2(double* acc, Py_ssize_t stride, Py_ssize_t row, Py_ssize_t col,
                       double d, double f, double cd, double cw,
                       Py_ssize_t* rlo, Py_ssize_t* rhi) noexcept nogil:
    """Two-channel deposit (data, weight) of a piece into cells col, col+1 of ``row``."""
    cdef double* p = acc + 2 * (row * stride + col)
    df_dep_pairs(p, d * (1.0 - f), d * f, cd, cw)
    if col < rlo[row]:
        rlo[row] = col
    if col + 1 > rhi[row]:
        rhi[row] = col + 1


cdef inline void _edge2(double u0, double v0, double u1, double v1,
                        double* acc, Py_ssize_t stride, Py_ssize_t bw, Py_ssize_t bh,
                        double cd, double cw, Py_ssize_t* rlo, Py_ssize_t* rhi) noexcept nogil:
    """Deposit one directed edge into the coverage buffer.

    Local frame: cell (c, r) is [c, c+1) x [r, r+1); ``acc`` has ``bw + 1``
    columns per row and receives differences, so that the running sum along
    a row is the signed area of the polygon inside each cell.  For a piece
    of the edge inside cell (c, r) with vertical extent ``d`` and mean
    abscissa ``um``, cell c gets ``d * (c + 1 - um)`` and every cell to its
    right gets ``d``.  Pieces left of the buffer count as full ``d`` in
    column 0, pieces right of it are dropped, rows outside are ignored.
    """
    cdef double du = u1 - u0, dv = v1 - v0
    cdef double ta, tb, t0, t1, tr, tc, tm, um, vm, d, f, invdv, invdu
    cdef double kr, kc, sr, sc, vend, uend
    cdef Py_ssize_t row, col
    if dv == 0.0:
        return
    invdv = 1.0 / dv
    # parameter range with 0 <= v <= bh
    if dv > 0.0:
        ta = (0.0 - v0) * invdv
        tb = (<double>bh - v0) * invdv
    else:
        ta = (<double>bh - v0) * invdv
        tb = (0.0 - v0) * invdv
    if ta < 0.0:
        ta = 0.0
    if tb > 1.0:
        tb = 1.0
    if ta >= tb:
        return
    # next row crossing after ta
    vm = v0 + ta * dv
    vend = v0 + tb * dv
    if dv > 0.0:
        sr = 1.0
        kr = _dfloor(vm) + 1.0
        tr = (kr - v0) * invdv if kr < vend else 2.0
    else:
        sr = -1.0
        kr = _dfloor(vm)
        if kr >= vm:
            kr -= 1.0
        tr = (kr - v0) * invdv if kr > vend else 2.0
    # next column crossing after ta, only at columns 0..bw
    um = u0 + ta * du
    uend = u0 + tb * du
    tc = 2.0
    invdu = 0.0
    sc = 0.0
    kc = 0.0
    if du != 0.0:
        invdu = 1.0 / du
        if du > 0.0:
            sc = 1.0
            kc = _dfloor(um) + 1.0
            if kc < 0.0:
                kc = 0.0
            if kc < uend and kc <= <double>bw:
                tc = (kc - u0) * invdu
        else:
            sc = -1.0
            kc = _dfloor(um)
            if kc >= um:
                kc -= 1.0
            if kc > <double>bw:
                kc = <double>bw
            if kc > uend and kc >= 0.0:
                tc = (kc - u0) * invdu
    t0 = ta
    while True:
        t1 = tb
        if tr < t1:
            t1 = tr
        if tc < t1:
            t1 = tc
        if t1 > t0:
            tm = 0.5 * (t0 + t1)
            um = u0 + tm * du
            vm = v0 + tm * dv
            row = _ifloor(vm)
            if 0 <= row < bh:
                d = (t1 - t0) * dv
                if um < 0.0:
                    _dep2(acc, stride, row, 0, d, 0.0, cd, cw, rlo, rhi)
                elif um < <double>bw:
                    col = _ifloor(um)
                    _dep2(acc, stride, row, col, d, um - <double>col, cd, cw, rlo, rhi)
        if t1 >= tb:
            break
        if t1 == tr:
            kr += sr
            if (sr > 0.0 and kr < vend) or (sr < 0.0 and kr > vend):
                tr = (kr - v0) * invdv
            else:
                tr = 2.0
        if t1 == tc:
            kc += sc
            if (sc > 0.0 and kc < uend and kc <= <double>bw) or \
               (sc < 0.0 and kc > uend and kc >= 0.0):
                tc = (kc - u0) * invdu
            else:
                tc = 2.0
        t0 = t1


cdef inline void _edge2_inside(double u0, double v0, double u1, double v1,
                               double* base, Py_ssize_t stride, double cd, double cw) noexcept nogil:
    """Two-channel edge walk for an edge inside the buffer [0, bw] x [0, bh].

    ``base`` points at cell (0, 0) of a buffer with one guard cell on every
    side (``stride`` cells per row), so the rounding of the incremental walk
    at the very end of an edge (at most one cell too far) needs no clamping.
    Row ranges are tracked by the caller, per drop.
    """
    cdef double du = u1 - u0, dv = v1 - v0
    cdef double t0, t1, tr, tc, dtr, dtc, um, d, a1
    cdef Py_ssize_t row, col, sr, sc
    cdef double* p
    if dv == 0.0:
        return
    if dv > 0.0:
        row = _ifloor(v0)
        sr = stride
        dtr = 1.0 / dv
        tr = (<double>(row + 1) - v0) * dtr
    else:
        row = -_ifloor(-v0) - 1
        sr = -stride
        dtr = -1.0 / dv
        tr = (v0 - <double>row) * dtr
    if du > 0.0:
        col = _ifloor(u0)
        sc = 1
        dtc = 1.0 / du
        tc = (<double>(col + 1) - u0) * dtc
    elif du < 0.0:
        col = -_ifloor(-u0) - 1
        sc = -1
        dtc = -1.0 / du
        tc = (u0 - <double>col) * dtc
    else:
        col = _ifloor(u0)
        sc = 0
        dtc = 0.0
        tc = 2.0
    p = base + 2 * (row * stride + col)
    um = u0 - <double>col          # abscissa relative to the current column
    t0 = 0.0
    while True:
        t1 = tr if tr < tc else tc
        if t1 > 1.0:
            t1 = 1.0
        a1 = (um + 0.5 * (t0 + t1) * du)        # = f, position inside the column
        d = (t1 - t0) * dv
        df_dep_pairs(p, d * (1.0 - a1), d * a1, cd, cw)
        if t1 >= 1.0:
            break
        if tr <= tc:
            p += 2 * sr
            tr += dtr
            if t1 == tc:
                p += 2 * sc
                um -= <double>sc
                tc += dtc
        else:
            p += 2 * sc
            um -= <double>sc
            tc += dtc
        t0 = t1


# drops whose bounding box spans at most LB x LB output pixels are resolved on
# their own, in a small guarded buffer (rows -1..LB, columns -1..LB+1)
DEF LB = 4
DEF LS = LB + 3


cdef inline void _piece(double* p, double t0, double t1, double dv, double du, double um) noexcept nogil:
    """Deposit the piece ``[t0, t1]`` of an edge inside one cell: vertical extent
    ``d``, of which the part right of the piece's mean abscissa goes to the cell and
    the rest to its right neighbour (whose running sum then holds ``d``)."""
    cdef double d = (t1 - t0) * dv
    cdef double a1 = d * (um + 0.5 * (t0 + t1) * du)
    p[0] += d - a1
    p[1] += a1


cdef inline void _line_walk(double* p, double t, double dt, Py_ssize_t step, double dum,
                            double dv, double du, double um) noexcept nogil:
    """Deposit an edge that stays in one row (``step`` = +-1 cells, ``dum`` the
    same) or in one column (``step`` = +-LS, ``dum`` = 0): its pieces end where
    the edge parameter reaches ``t``, ``t + dt``, ... (the cell borders) or 1."""
    cdef double t0 = 0.0, t1
    while True:
        t1 = t if t < 1.0 else 1.0
        _piece(p, t0, t1, dv, du, um)
        if t1 >= 1.0:
            return
        p += step
        um -= dum
        t += dt
        t0 = t1


cdef inline void _edge1_inside(double u0, double v0, double u1, double v1,
                               double* base) noexcept nogil:
    """One-channel ``_edge2_inside`` for the local drop buffer (row stride LS).

    Edges of drops aligned with the output grid (the usual case: the output
    follows the reference chip) stay inside one row or one column, and short
    ones inside one cell.  Those are decided from the end point first, so the
    walk needs one reciprocal (or none) instead of two, and no row/column race.
    Local coordinates are >= 0 (see ``_drop_local``), so truncation is floor.
    """
    cdef double du = u1 - u0, dv = v1 - v0
    cdef double t0, t1, tr, tc, dtr, dtc, um, a1, fr, fc
    cdef Py_ssize_t row, col, sr, sc, ti
    cdef bint one_row, one_col
    cdef double* p
    if dv == 0.0:
        return
    ti = <Py_ssize_t>v0
    fr = <double>ti
    if dv > 0.0:
        row = ti
        sr = LS
        one_row = v1 <= fr + 1.0
    else:
        if fr == v0:
            ti -= 1
            fr -= 1.0
        row = ti
        sr = -LS
        one_row = v1 >= fr
    ti = <Py_ssize_t>u0
    fc = <double>ti
    if du > 0.0:
        sc = 1
        one_col = u1 <= fc + 1.0
    elif du < 0.0:
        if fc == u0:
            ti -= 1
            fc -= 1.0
        sc = -1
        one_col = u1 >= fc
    else:
        sc = 0
        one_col = True
    col = ti
    p = base + row * LS + col
    um = u0 - fc
    if one_row and one_col:
        a1 = dv * (um + 0.5 * du)
        p[0] += dv - a1
        p[1] += a1
        return
    if one_row:
        dtc = 1.0 / fabs(du)
        _line_walk(p, (fc + 1.0 - u0 if du > 0.0 else u0 - fc) * dtc, dtc, sc, <double>sc, dv, du, um)
        return
    dtr = 1.0 / fabs(dv)
    tr = (fr + 1.0 - v0 if dv > 0.0 else v0 - fr) * dtr
    if one_col:
        _line_walk(p, tr, dtr, sr, 0.0, dv, du, um)
        return
    t0 = 0.0
    dtc = 1.0 / fabs(du)
    tc = (fc + 1.0 - u0 if du > 0.0 else u0 - fc) * dtc
    while True:
        t1 = tr if tr < tc else tc
        if t1 > 1.0:
            t1 = 1.0
        _piece(p, t0, t1, dv, du, um)
        if t1 >= 1.0:
            break
        if tr <= tc:
            p += sr
            tr += dtr
            if t1 == tc:
                p += sc
                um -= <double>sc
                tc += dtc
        else:
            p += sc
            um -= <double>sc
            tc += dtc
        t0 = t1


cdef inline void _drop_local(Acc* a, const double* x, const double* y, Py_ssize_t ii0, Py_ssize_t jj0,
                             Py_ssize_t bw, Py_ssize_t bh, double jac, double cd, double cw,
                             double* lb) noexcept nogil:
    """Exact square-kernel overlap of one small drop (bw, bh <= LB), added to the output.

    The drop's signed-area differences go to the zeroed local buffer ``lb``
    (cleared again afterwards); one running sum per row gives each output pixel's overlap
    area, which is added with the coefficients ``cd = w d / J``, ``cw = w / J``.
    No tile buffer, row ranges or tile flush are involved.
    """
    cdef double* base = lb + LS + 1
    cdef double* cell
    cdef double u[4]
    cdef double v[4]
    cdef double s, t, thr
    cdef Py_ssize_t k, r, c, q, r0, r1, onx = a.onx
    cdef float* out = a.acc
    cdef int* ctx = a.ctx
    cdef int bit = <int>a.bit
    for k in range(4):
        u[k] = x[k] + 0.5 - <double>ii0
        v[k] = y[k] + 0.5 - <double>jj0
    # four separate call sites: each edge's direction is the same for neighbouring
    # drops, so its sign branches predict well (one shared site mispredicts)
    _edge1_inside(u[0], v[0], u[1], v[1], base)
    _edge1_inside(u[1], v[1], u[2], v[2], base)
    _edge1_inside(u[2], v[2], u[3], v[3], base)
    _edge1_inside(u[3], v[3], u[0], v[0], base)
    thr = 1e-12 * fabs(jac) + 1e-14
    r0 = jj0 if jj0 > a.band0 else a.band0
    r1 = jj0 + bh if jj0 + bh < a.band1 else a.band1
    for r in range(r0 - jj0, r1 - jj0):
        cell = base + r * LS
        s = cell[-1]
        q = (jj0 + r) * onx + ii0
        # branch-free: rounding residue counts as no overlap (adding 0 leaves a
        # float32 cell unchanged); a data-dependent branch here mispredicts
        if ctx != NULL:
            for c in range(bw):
                s += cell[c]
                t = s if fabs(s) > thr else 0.0
                df_add_pair(out + 2 * (q + c), t, cd, cw)
                ctx[q + c] |= bit & -(<int>(t * cw > 0.0))
        else:
            for c in range(bw):
                s += cell[c]
                t = s if fabs(s) > thr else 0.0
                df_add_pair(out + 2 * (q + c), t, cd, cw)
    # Local coordinates lie in [0, bw) x [0, bh), so the walks touch rows 0..bh-1
    # only (columns 0..bw, residue included); the guard rows stay zero.  Clear all
    # LB rows: a fixed-size clear compiles to a few vector stores, while a loop over
    # bh rows mispredicts its exit for every other drop.
    df_zero(lb + LS, LB * LS)


cdef struct IScratch:
    Py_ssize_t* buf
    Py_ssize_t cap


cdef inline int _ireserve(IScratch* sc, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t* p
    if n <= sc.cap:
        return ST_OK
    if n < 64:
        n = 64
    p = <Py_ssize_t*>realloc(sc.buf, n * sizeof(Py_ssize_t))
    if p == NULL:
        return ST_NOMEM
    sc.buf = p
    sc.cap = n
    return ST_OK


cdef inline void _range_update(Py_ssize_t* rlo, Py_ssize_t* rhi, const double* u, const double* v,
                               Py_ssize_t bw, Py_ssize_t bh) noexcept nogil:
    """Widen the per-row column ranges of the buffer to cover one drop (+ guard cells)."""
    cdef double umin = u[0], umax = u[0], vmin = v[0], vmax = v[0]
    cdef Py_ssize_t k, r, r0, r1, c0, c1
    for k in range(1, 4):
        if u[k] < umin: umin = u[k]
        if u[k] > umax: umax = u[k]
        if v[k] < vmin: vmin = v[k]
        if v[k] > vmax: vmax = v[k]
    if umin < -1.0: umin = -1.0
    if vmin < -1.0: vmin = -1.0
    if umax > <double>bw + 1.0: umax = <double>bw + 1.0
    if vmax > <double>bh + 1.0: vmax = <double>bh + 1.0
    r0 = _ifloor(vmin) - 1
    r1 = _ifloor(vmax) + 1
    c0 = _ifloor(umin) - 1
    c1 = _ifloor(umax) + 2
    if r0 < -1: r0 = -1
    if r1 > bh: r1 = bh
    if c0 < -1: c0 = -1
    if c1 > bw + 1: c1 = bw + 1
    for r in range(r0, r1 + 1):
        if c0 < rlo[r]: rlo[r] = c0
        if c1 > rhi[r]: rhi[r] = c1


cdef void _flush_tile(Acc* a, double* base, Py_ssize_t stride, Py_ssize_t bw, Py_ssize_t bh,
                      Py_ssize_t ii0, Py_ssize_t jj0, Py_ssize_t* rlo, Py_ssize_t* rhi,
                      double thr) noexcept nogil:
    """Running sums along the buffer rows -> output accumulator; leaves the buffer zeroed."""
    cdef Py_ssize_t r, c, lo, hi, q, onx = a.onx
    cdef double sd, sw
    cdef double* cell
    cdef float* out = a.acc
    cdef int* ctx = a.ctx
    cdef int bit = <int>a.bit
    for r in range(-1, bh + 1):
        lo = rlo[r]
        hi = rhi[r]
        if hi < lo:
            continue
        cell = base + 2 * r * stride
        if r < 0 or r >= bh or jj0 + r < a.band0 or jj0 + r >= a.band1:
            memset(cell + 2 * lo, 0, 2 * (hi - lo + 1) * sizeof(double))
            continue
        sd = 0.0
        sw = 0.0
        q = (jj0 + r) * onx + ii0
        for c in range(lo, hi + 1):
            sd += cell[2 * c]
            sw += cell[2 * c + 1]
            cell[2 * c] = 0.0
            cell[2 * c + 1] = 0.0
            if 0 <= c < bw and fabs(sw) > thr:
                out[2 * (q + c)] = <float>(out[2 * (q + c)] + sd)
                out[2 * (q + c) + 1] = <float>(out[2 * (q + c) + 1] + sw)
                if ctx != NULL and sw > 0.0:
                    ctx[q + c] |= bit


cdef inline int _tile_buffers(Scratch* sc, IScratch* ir, Py_ssize_t bw, Py_ssize_t bh,
                              double** base, Py_ssize_t* stride, Py_ssize_t** rlo,
                              Py_ssize_t** rhi) noexcept nogil:
    """Guarded coverage buffer: rows -1..bh, columns -1..bw+1; row ranges reset."""
    cdef Py_ssize_t r
    stride[0] = bw + 3
    if _reserve(sc, 2 * (bh + 2) * stride[0]) != ST_OK or _ireserve(ir, 2 * (bh + 2)) != ST_OK:
        return ST_NOMEM
    base[0] = sc.buf + 2 * (stride[0] + 1)
    rlo[0] = ir.buf + 1
    rhi[0] = ir.buf + (bh + 2) + 1
    for r in range(-1, bh + 1):
        rlo[0][r] = bw + 2
        rhi[0][r] = -2
    return ST_OK


cdef int _square_tile(Acc* a, Scratch* sc, IScratch* ir, const double* qx, const double* qy,
                      const double* qd, const double* qw, Py_ssize_t n,
                      double xmin, double xmax, double ymin, double ymax) noexcept nogil:
    """Exact square-kernel overlap of a whole tile of drops at once.

    Every drop deposits its four edges into one coverage buffer spanning the
    tile's footprint, weighted by ``w / J`` (weight channel) and ``w d / J``
    (data channel); a single running sum along each buffer row then yields,
    for every output pixel, the sums over the tile of ``w a_pq d`` and
    ``w a_pq`` (a_pq = overlap area / J).  The cost grows with the drops'
    perimeters plus the footprint area, not with a polygon clip per drop and
    output pixel.  Returns ST_FALLBACK when the footprint is too large.
    """
    cdef Py_ssize_t ii0, ii1, jj0, jj1, bw, bh, stride, r, c, k, p, q, lo, hi, onx
    cdef int clipped = 0, bit
    cdef double jac, cd, cw, cwmax = 0.0, thr, sd, sw
    cdef double u[4]
    cdef double v[4]
    cdef double* buf
    cdef double* cell
    cdef float* out
    cdef int* ctx
    cdef Py_ssize_t* rlo
    cdef Py_ssize_t* rhi
    ii0 = _iround(xmin)
    ii1 = _iround(xmax)
    jj0 = _iround(ymin)
    jj1 = _iround(ymax)
    if ii0 < 0:
        ii0 = 0
        clipped = 1
    if ii1 > a.onx - 1:
        ii1 = a.onx - 1
        clipped = 1
    if jj0 < 0:
        jj0 = 0
        clipped = 1
    if jj1 > a.ony - 1:
        jj1 = a.ony - 1
        clipped = 1
    if ii0 > ii1 or jj0 > jj1:
        return ST_OK
    bw = ii1 - ii0 + 1
    bh = jj1 - jj0 + 1
    if (bh + 2) * (bw + 3) > MAX_TILE_CELLS:
        return ST_FALLBACK
    if _tile_buffers(sc, ir, bw, bh, &buf, &stride, &rlo, &rhi) != ST_OK:
        return ST_NOMEM
    for p in range(n):
        jac = 0.5 * ((qx[4 * p + 1] - qx[4 * p + 3]) * (qy[4 * p] - qy[4 * p + 2])
                     - (qx[4 * p] - qx[4 * p + 2]) * (qy[4 * p + 1] - qy[4 * p + 3]))
        cw = qw[p] / jac
        cd = cw * qd[p]
        if fabs(cw) > cwmax:
            cwmax = fabs(cw)
        for k in range(4):
            u[k] = qx[4 * p + k] + 0.5 - <double>ii0
            v[k] = qy[4 * p + k] + 0.5 - <double>jj0
        _range_update(rlo, rhi, u, v, bw, bh)
        if clipped:
            for k in range(4):
                _edge2(u[k], v[k], u[(k + 1) & 3], v[(k + 1) & 3], buf, stride, bw, bh, cd, cw, rlo, rhi)
        else:
            for k in range(4):
                _edge2_inside(u[k], v[k], u[(k + 1) & 3], v[(k + 1) & 3], buf, stride, cd, cw)
    _flush_tile(a, buf, stride, bw, bh, ii0, jj0, rlo, rhi, 1e-11 * cwmax)
    return ST_OK


cdef int _square_pixel(Acc* a, Scratch* sc, double* xs, double* ys,
                       double d, double w) noexcept nogil:
    """Spread one shrunken input pixel (quadrilateral xs, ys) over the output."""
    cdef double jac, xmin, xmax, ymin, ymax, s, thr, invj, frac
    cdef Py_ssize_t ii0, ii1, jj0, jj1, bw, bh, r, c, k, stride
    cdef int clipped, bit
    cdef double wj, wd
    cdef float* out
    cdef double* cell
    cdef int* ctx
    cdef Py_ssize_t onx, q
    cdef double u[4]
    cdef double v[4]
    cdef double* acc
    # signed area with the orientation that the coverage sums produce
    jac = 0.5 * ((xs[1] - xs[3]) * (ys[0] - ys[2]) - (xs[0] - xs[2]) * (ys[1] - ys[3]))
    # (this is minus the shoelace area: the sign convention of the coverage sums)
    if jac == 0.0 or not isfinite(jac):
        return ST_OK
    xmin = xmax = xs[0]
    ymin = ymax = ys[0]
    for k in range(1, 4):
        if xs[k] < xmin: xmin = xs[k]
        if xs[k] > xmax: xmax = xs[k]
        if ys[k] < ymin: ymin = ys[k]
        if ys[k] > ymax: ymax = ys[k]
    if xmax - xmin > MAX_DROP_SIDE or ymax - ymin > MAX_DROP_SIDE:
        return ST_HUGE
    if xmax < -0.5 or xmin >= <double>a.onx - 0.5 or ymax < <double>a.band0 - 0.5 \
            or ymin >= <double>a.band1 - 0.5:
        return ST_OK
    ii0 = _iround(xmin)
    ii1 = _iround(xmax)
    jj0 = _iround(ymin)
    jj1 = _iround(ymax)
    clipped = 0
    if ii0 < 0:
        ii0 = 0
        clipped = 1
    if ii1 > a.onx - 1:
        ii1 = a.onx - 1
        clipped = 1
    # Clip rows to the image, not to the band: the coverage arithmetic must not
    # depend on how the output is split (bit-identical threads); rows outside
    # the band are computed and dropped.
    if jj0 < 0:
        jj0 = 0
        clipped = 1
    if jj1 > a.ony - 1:
        jj1 = a.ony - 1
        clipped = 1
    if ii0 > ii1 or jj0 > jj1:
        return ST_OK
    invj = 1.0 / jac
    # whole drop inside one output pixel
    if ii0 == ii1 and jj0 == jj1 and clipped == 0:
        if a.band0 <= jj0 < a.band1:
            _add(a, ii0, jj0, w, d)
        return ST_OK
    bw = ii1 - ii0 + 1
    bh = jj1 - jj0 + 1
    stride = bw + 1
    if _reserve(sc, bh * stride) != ST_OK:
        return ST_NOMEM
    acc = sc.buf       # all zero between calls
    for k in range(4):
        u[k] = xs[k] + 0.5 - <double>ii0
        v[k] = ys[k] + 0.5 - <double>jj0
    if clipped:
        for k in range(4):
            _edge(u[k], v[k], u[(k + 1) & 3], v[(k + 1) & 3], acc, bw, bh)
    else:
        for k in range(4):
            _edge_inside(u[k], v[k], u[(k + 1) & 3], v[(k + 1) & 3], acc, bw, bh)
    thr = 1e-12 * fabs(jac) + 1e-14
    out = a.acc
    ctx = a.ctx
    bit = <int>a.bit
    onx = a.onx
    wj = w * invj
    wd = wj * d
    for r in range(bh):
        cell = acc + r * stride
        if jj0 + r < a.band0 or jj0 + r >= a.band1:
            memset(cell, 0, stride * sizeof(double))
            continue
        s = 0.0
        q = (jj0 + r) * onx + ii0
        for c in range(bw):
            s += cell[c]
            cell[c] = 0.0
            if fabs(s) > thr:
                out[2 * (q + c)] = <float>(out[2 * (q + c)] + s * wd)
                out[2 * (q + c) + 1] = <float>(out[2 * (q + c) + 1] + s * wj)
                if ctx != NULL and s * wj > 0.0:
                    ctx[q + c] |= bit
        cell[bw] = 0.0
    return ST_OK


cdef inline void _lerp_row(const double* pm, Py_ssize_t nx, Py_ssize_t ny,
                           double y, double* outx, double* outy,
                           Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    """Pixel-map row at fractional row ``y``, columns [i0, i1) (linear, extrapolated at the ends)."""
    cdef Py_ssize_t jl = _ifloor(y)
    cdef Py_ssize_t i
    cdef double f
    cdef const double* r0
    cdef const double* r1
    if jl < 0: jl = 0
    if jl > ny - 2: jl = ny - 2
    f = y - <double>jl
    r0 = pm + jl * nx * 2
    r1 = r0 + nx * 2
    for i in range(i0, i1):
        outx[i] = r0[2 * i] + f * (r1[2 * i] - r0[2 * i])
        outy[i] = r0[2 * i + 1] + f * (r1[2 * i + 1] - r0[2 * i + 1])


cdef inline double _lerp_at(const double* row, Py_ssize_t nx, double x) noexcept nogil:
    cdef Py_ssize_t il = _ifloor(x)
    if il < 0: il = 0
    if il > nx - 2: il = nx - 2
    return row[il] + (x - <double>il) * (row[il + 1] - row[il])


cdef inline void _corner_row(const double* rx, const double* ry, Py_ssize_t nx,
                             Py_ssize_t cs, Py_ssize_t ce, double dh,
                             double* lx, double* ly, double* hx, double* hy) noexcept nogil:
    """Drop corners of one interpolated pixel-map row at ``i - dh`` and ``i + dh``.

    For ``cs <= i <= ce`` (stored at ``i - cs``).  With ``0 < dh < 1`` the
    left corner of every interior column lies in segment [i-1, i] at fraction
    ``1 - dh`` and the right one in [i, i+1] at fraction ``dh``, so the
    interpolation needs no floor or clamp and vectorises; the first and last
    columns of the image (extrapolated) go through ``_lerp_at``.
    """
    cdef Py_ssize_t i, fa = cs, fb = ce + 1
    cdef double fl = 1.0 - dh
    if 0.0 < dh < 1.0:
        if fa < 1: fa = 1
        if fb > nx - 1: fb = nx - 1
        if fb < fa: fb = fa
    else:
        fa = ce + 1
        fb = ce + 1
    for i in range(cs, fa):
        lx[i - cs] = _lerp_at(rx, nx, <double>i - dh)
        ly[i - cs] = _lerp_at(ry, nx, <double>i - dh)
        hx[i - cs] = _lerp_at(rx, nx, <double>i + dh)
        hy[i - cs] = _lerp_at(ry, nx, <double>i + dh)
    for i in range(fa, fb):
        lx[i - cs] = rx[i - 1] + fl * (rx[i] - rx[i - 1])
        ly[i - cs] = ry[i - 1] + fl * (ry[i] - ry[i - 1])
        hx[i - cs] = rx[i] + dh * (rx[i + 1] - rx[i])
        hy[i - cs] = ry[i] + dh * (ry[i + 1] - ry[i])
    for i in range(fb, ce + 1):
        lx[i - cs] = _lerp_at(rx, nx, <double>i - dh)
        ly[i - cs] = _lerp_at(ry, nx, <double>i - dh)
        hx[i - cs] = _lerp_at(rx, nx, <double>i + dh)
        hy[i - cs] = _lerp_at(ry, nx, <double>i + dh)


# ---------------------------------------------------------------------------
# separable helpers for turbo / gaussian / lanczos
# ---------------------------------------------------------------------------

cdef int _tile_pf1(Acc* a, Scratch* sc, IScratch* ir, const float* data, const float* wmap,
                   const unsigned char* mask, const double* pm, Py_ssize_t nx, Py_ssize_t ny,
                   double dscale, double wscale, Py_ssize_t tj0, Py_ssize_t tj1,
                   Py_ssize_t cs, Py_ssize_t ce, double* rows, double* g,
                   long long* nskipped) noexcept nogil:
    """Square kernel, pixfrac 1, one tile: each shared edge is walked once.

    With pixfrac 1 neighbouring drops share their edges, so every interior
    edge is deposited once with the difference of the two pixels'
    coefficients (w/J and w d/J), halving the edge work of ``_square_tile``.
    ``g`` is scratch for the corner grid and per-pixel values.
    """
    cdef Py_ssize_t R = tj1 - tj0 + 1, C = ce - cs + 1, r, c, k, m, j, i
    cdef Py_ssize_t li0, li1, ii0, ii1, jj0, jj1, bw, bh, stride, lo, hi, q, onx
    cdef double* CX = g
    cdef double* CY = g + (R + 1) * (C + 1)
    cdef double* PW = CY + (R + 1) * (C + 1)       # w / J (0: no drop)
    cdef double* PD = PW + R * C                    # w d / J
    cdef double* PDD = PD + R * C                   # d (for the fallback)
    cdef double* PWW = PDD + R * C                  # w
    cdef double xs[4]
    cdef double ys[4]
    cdef double d, w, jac, xmin, xmax, ymin, ymax, txmin = 1e300, txmax = -1e300
    cdef double tymin = 1e300, tymax = -1e300, cd, cw, cwmax = 0.0, thr, sd, sw
    cdef double u0, v0, u1, v1
    cdef double u[4]
    cdef double v[4]
    cdef int clipped = 0, bit, st, any_ = 0
    cdef double* buf
    cdef double* cell
    cdef float* out
    cdef int* ctx
    cdef Py_ssize_t* rlo
    cdef Py_ssize_t* rhi
    li0 = cs - 1 if cs > 0 else 0
    li1 = ce + 2 if ce + 2 <= nx else nx
    for r in range(R + 1):
        _lerp_row(pm, nx, ny, <double>(tj0 + r) - 0.5, rows, rows + nx, li0, li1)
        for c in range(C + 1):
            CX[r * (C + 1) + c] = _lerp_at(rows, nx, <double>(cs + c) - 0.5)
            CY[r * (C + 1) + c] = _lerp_at(rows + nx, nx, <double>(cs + c) - 0.5)
    for r in range(R):
        j = tj0 + r
        for c in range(C):
            i = cs + c
            m = r * C + c
            PW[m] = 0.0
            PD[m] = 0.0
            k = j * nx + i
            if mask != NULL and mask[k] == 0:
                continue
            w = wscale
            if wmap != NULL:
                w = w * wmap[k]
            if w == 0.0:
                continue
            d = <double>data[k]
            if isnan(d):
                nskipped[0] += 1
                continue
            d = d * dscale
            xs[0] = CX[r * (C + 1) + c]
            ys[0] = CY[r * (C + 1) + c]
            xs[1] = CX[r * (C + 1) + c + 1]
            ys[1] = CY[r * (C + 1) + c + 1]
            xs[2] = CX[(r + 1) * (C + 1) + c + 1]
            ys[2] = CY[(r + 1) * (C + 1) + c + 1]
            xs[3] = CX[(r + 1) * (C + 1) + c]
            ys[3] = CY[(r + 1) * (C + 1) + c]
            if not (isfinite(xs[0]) and isfinite(xs[1]) and isfinite(xs[2]) and isfinite(xs[3])
                    and isfinite(ys[0]) and isfinite(ys[1]) and isfinite(ys[2]) and isfinite(ys[3])):
                nskipped[0] += 1
                continue
            jac = 0.5 * ((xs[1] - xs[3]) * (ys[0] - ys[2]) - (xs[0] - xs[2]) * (ys[1] - ys[3]))
            if jac == 0.0:
                continue
            xmin = xmax = xs[0]
            ymin = ymax = ys[0]
            for k in range(1, 4):
                if xs[k] < xmin: xmin = xs[k]
                if xs[k] > xmax: xmax = xs[k]
                if ys[k] < ymin: ymin = ys[k]
                if ys[k] > ymax: ymax = ys[k]
            if xmax - xmin > MAX_DROP_SIDE or ymax - ymin > MAX_DROP_SIDE:
                return ST_HUGE
            if xmax < -0.5 or xmin >= <double>a.onx - 0.5 or ymax < -0.5 or ymin >= <double>a.ony - 0.5:
                continue
            PW[m] = w / jac
            PD[m] = PW[m] * d
            PDD[m] = d
            PWW[m] = w
            any_ = 1
            if fabs(PW[m]) > cwmax: cwmax = fabs(PW[m])
            if xmin < txmin: txmin = xmin
            if xmax > txmax: txmax = xmax
            if ymin < tymin: tymin = ymin
            if ymax > tymax: tymax = ymax
    if not any_:
        return ST_OK
    ii0 = _iround(txmin)
    ii1 = _iround(txmax)
    jj0 = _iround(tymin)
    jj1 = _iround(tymax)
    if ii0 < 0:
        ii0 = 0
        clipped = 1
    if ii1 > a.onx - 1:
        ii1 = a.onx - 1
        clipped = 1
    if jj0 < 0:
        jj0 = 0
        clipped = 1
    if jj1 > a.ony - 1:
        jj1 = a.ony - 1
        clipped = 1
    if ii0 > ii1 or jj0 > jj1:
        return ST_OK
    bw = ii1 - ii0 + 1
    bh = jj1 - jj0 + 1
    if (bh + 2) * (bw + 3) > MAX_TILE_CELLS:
        # scattered drops: fall back to one drop at a time
        for r in range(R):
            for c in range(C):
                m = r * C + c
                if PW[m] == 0.0:
                    continue
                xs[0] = CX[r * (C + 1) + c]
                ys[0] = CY[r * (C + 1) + c]
                xs[1] = CX[r * (C + 1) + c + 1]
                ys[1] = CY[r * (C + 1) + c + 1]
                xs[2] = CX[(r + 1) * (C + 1) + c + 1]
                ys[2] = CY[(r + 1) * (C + 1) + c + 1]
                xs[3] = CX[(r + 1) * (C + 1) + c]
                ys[3] = CY[(r + 1) * (C + 1) + c]
                st = _square_pixel(a, sc, xs, ys, PDD[m], PWW[m])
                if st != ST_OK:
                    return st
        return ST_OK
    if _tile_buffers(sc, ir, bw, bh, &buf, &stride, &rlo, &rhi) != ST_OK:
        return ST_NOMEM
    for r in range(R):
        for c in range(C):
            if PW[r * C + c] == 0.0:
                continue
            u[0] = CX[r * (C + 1) + c] + 0.5 - <double>ii0
            v[0] = CY[r * (C + 1) + c] + 0.5 - <double>jj0
            u[1] = CX[r * (C + 1) + c + 1] + 0.5 - <double>ii0
            v[1] = CY[r * (C + 1) + c + 1] + 0.5 - <double>jj0
            u[2] = CX[(r + 1) * (C + 1) + c + 1] + 0.5 - <double>ii0
            v[2] = CY[(r + 1) * (C + 1) + c + 1] + 0.5 - <double>jj0
            u[3] = CX[(r + 1) * (C + 1) + c] + 0.5 - <double>ii0
            v[3] = CY[(r + 1) * (C + 1) + c] + 0.5 - <double>jj0
            _range_update(rlo, rhi, u, v, bw, bh)
    # vertical edges: corner (r+1, c) -> (r, c), coefficient P(r, c) - P(r, c-1)
    for r in range(R):
        for c in range(C + 1):
            cw = 0.0
            cd = 0.0
            if c < C:
                cw = PW[r * C + c]
                cd = PD[r * C + c]
            if c > 0:
                cw = cw - PW[r * C + c - 1]
                cd = cd - PD[r * C + c - 1]
            if cw == 0.0 and cd == 0.0:
                continue
            u0 = CX[(r + 1) * (C + 1) + c] + 0.5 - <double>ii0
            v0 = CY[(r + 1) * (C + 1) + c] + 0.5 - <double>jj0
            u1 = CX[r * (C + 1) + c] + 0.5 - <double>ii0
            v1 = CY[r * (C + 1) + c] + 0.5 - <double>jj0
            if clipped:
                _edge2(u0, v0, u1, v1, buf, stride, bw, bh, cd, cw, rlo, rhi)
            else:
                _edge2_inside(u0, v0, u1, v1, buf, stride, cd, cw)
    # horizontal edges: corner (r, c) -> (r, c+1), coefficient P(r, c) - P(r-1, c)
    for r in range(R + 1):
        for c in range(C):
            cw = 0.0
            cd = 0.0
            if r < R:
                cw = PW[r * C + c]
                cd = PD[r * C + c]
            if r > 0:
                cw = cw - PW[(r - 1) * C + c]
                cd = cd - PD[(r - 1) * C + c]
            if cw == 0.0 and cd == 0.0:
                continue
            u0 = CX[r * (C + 1) + c] + 0.5 - <double>ii0
            v0 = CY[r * (C + 1) + c] + 0.5 - <double>jj0
            u1 = CX[r * (C + 1) + c + 1] + 0.5 - <double>ii0
            v1 = CY[r * (C + 1) + c + 1] + 0.5 - <double>jj0
            if clipped:
                _edge2(u0, v0, u1, v1, buf, stride, bw, bh, cd, cw, rlo, rhi)
            else:
                _edge2_inside(u0, v0, u1, v1, buf, stride, cd, cw)
    _flush_tile(a, buf, stride, bw, bh, ii0, jj0, rlo, rhi, 1e-11 * cwmax)
    return ST_OK


cdef inline double _lanczos(double u, double n) noexcept nogil:
    cdef double pu
    u = fabs(u)
    if u >= n:
        return 0.0
    if u < 1e-12:
        return 1.0
    pu = M_PI * u
    return n * sin(pu) * sin(pu / n) / (pu * pu)


cdef void _separable_add(Acc* a, const double* fx, const double* fy, Py_ssize_t ii0, Py_ssize_t ii1,
                         Py_ssize_t jj0, Py_ssize_t jj1, double w, double d) noexcept nogil:
    """Add one drop of a separable kernel (weights ``fx[i] fy[j]``), branch-free per
    pixel: a zero weight adds 0 and sets no context bit.  The same sums as
    ``_add``: ``(ox w) d`` and ``ox w``, rounded once.  Written as a function of its
    own: with these loops spelled out inside ``_kernel_rows`` the compiled square
    path took 672M instead of 662M instructions (callgrind, one WF chip, pixfrac 0.7)."""
    cdef Py_ssize_t ii, jj, k
    cdef double oy, ox
    for jj in range(jj0, jj1 + 1):
        oy = fy[jj - jj0]
        if oy == 0.0:
            continue
        k = jj * a.onx
        if a.ctx != NULL:
            for ii in range(ii0, ii1 + 1):
                ox = fx[ii - ii0] * oy * w
                df_add_pair(a.acc + 2 * (k + ii), ox, d, 1.0)
                a.ctx[k + ii] |= <int>a.bit & -(<int>(ox > 0.0))
        else:
            for ii in range(ii0, ii1 + 1):
                ox = fx[ii - ii0] * oy * w
                df_add_pair(a.acc + 2 * (k + ii), ox, d, 1.0)


cdef inline void _turbo4(Acc* a, double X, double Y, double pfo, double fac,
                         Py_ssize_t ii0, Py_ssize_t jj0, Py_ssize_t jj1, double w, double d) noexcept nogil:
    """A turbo drop at most 4 output columns wide, as 4 columns from ``ii0`` (the
    caller checks that they exist): the products and sums of the general path, in
    its order; columns past the drop get overlap 0 and add 0, which leaves a
    float32 sum as it is (only a -0.0 sum, which takes an underflow, would turn
    +0.0; the caller sends finite data only, as 0 x inf is NaN) and sets no context
    bit.  Fixed trip counts instead of the general path's 2-4 column loops, whose
    exits mispredict: 20.5 -> 24.6 Mpix/s on one thread (benchmarks/core.py)."""
    cdef double fx[4]
    cdef double ox, oy, lo, hi, c
    cdef Py_ssize_t m, jj, k
    lo = X - pfo
    hi = X + pfo
    for m in range(4):
        c = <double>(ii0 + m)
        ox = (hi if hi < c + 0.5 else c + 0.5) - (lo if lo > c - 0.5 else c - 0.5)
        fx[m] = ox if ox > 0.0 else 0.0
    for jj in range(jj0, jj1 + 1):
        oy = (Y + pfo if Y + pfo < jj + 0.5 else jj + 0.5) - (Y - pfo if Y - pfo > jj - 0.5 else jj - 0.5)
        if not oy > 0.0:
            continue
        oy = oy * fac
        k = jj * a.onx + ii0
        if a.ctx != NULL:
            for m in range(4):
                ox = fx[m] * oy * w
                df_add_pair(a.acc + 2 * (k + m), ox, d, 1.0)
                a.ctx[k + m] |= <int>a.bit & -(<int>(ox > 0.0))
        else:
            for m in range(4):
                ox = fx[m] * oy * w
                df_add_pair(a.acc + 2 * (k + m), ox, d, 1.0)


cdef int _kernel_rows(int kernel, const float* data, Py_ssize_t nx, Py_ssize_t ny,
                      const float* wmap, const unsigned char* mask,
                      const double* pm, Acc* a,
                      double pixfrac, double pscale, double dscale, double wscale,
                      Py_ssize_t x0, Py_ssize_t x1, Py_ssize_t y0, Py_ssize_t y1,
                      const double* chunks, Py_ssize_t chunk, Py_ssize_t nchunk,
                      const int* tsel, int want, long long* nskipped) noexcept nogil:
    cdef Py_ssize_t i, j, ii, jj, ii0, ii1, jj0, jj1, c, k, nb, cs, ce, tj0, tj1, li0, li1
    cdef int share = pixfrac == 1.0
    cdef double X, Y, d, w, dh, pfo, fac, efac, es, order, ox, oy, lo, hi
    cdef double xs[4]
    cdef double ys[4]
    cdef double* rows = NULL
    cdef double* cb = NULL
    cdef double* fx = NULL
    cdef double* fy = NULL
    cdef Scratch sc
    cdef IScratch ir
    cdef double* qx = NULL
    cdef double* qy = NULL
    cdef double* qd = NULL
    cdef double* qw = NULL
    cdef double* grid = NULL
    cdef Py_ssize_t nq = 0, m
    cdef double jac, qxmin, qxmax, qymin, qymax, txmin, txmax, tymin, tymax
    cdef Py_ssize_t di0, di1, dj0, dj1
    cdef const double* lr
    cdef double fl = 1.0 - 0.5 * pixfrac
    # output extent in locals (the compiler cannot keep Acc fields in registers)
    cdef Py_ssize_t onx = a.onx, ony = a.ony
    cdef double xhi = <double>a.onx - 0.5, yhi = <double>a.ony - 0.5
    cdef double lb[(LB + 2) * LS]
    cdef int st = ST_OK
    cdef double band_lo = <double>a.band0 - 0.5
    cdef double band_hi = <double>a.band1 - 0.5
    sc.buf = NULL
    sc.cap = 0
    ir.buf = NULL
    ir.cap = 0
    memset(lb, 0, sizeof(lb))
    dh = 0.5 * pixfrac
    order = 3.0 if kernel == K_LANCZOS3 else 2.0
    pfo = 0.0
    fac = 1.0
    efac = 0.0
    es = 0.0
    if kernel == K_TURBO:
        pfo = pixfrac / pscale / 2.0
        fac = 1.0 / (4.0 * pfo * pfo)
    elif kernel == K_GAUSSIAN:
        pfo = 2.5 * pixfrac / 2.3548 / pscale
        if pfo < 1.2 / pscale:
            pfo = 1.2 / pscale
        efac = 2.3548 * 2.3548 * pscale * pscale / (2.0 * pixfrac * pixfrac)
        es = efac / M_PI
    elif kernel == K_LANCZOS2 or kernel == K_LANCZOS3:
        pfo = order * pixfrac / pscale
    if kernel == K_SQUARE:
        rows = <double*>malloc((4 * nx + 8 * chunk) * sizeof(double))
        if rows == NULL:
            return ST_NOMEM
        qx = <double*>malloc(10 * TILE_ROWS * chunk * sizeof(double))
        if qx == NULL:
            free(rows)
            return ST_NOMEM
        qy = qx + 4 * TILE_ROWS * chunk
        qd = qy + 4 * TILE_ROWS * chunk
        qw = qd + TILE_ROWS * chunk
        grid = <double*>malloc((2 * (TILE_ROWS + 1) * (chunk + 1) + 4 * TILE_ROWS * chunk) * sizeof(double))
        if grid == NULL:
            free(rows)
            free(qx)
            return ST_NOMEM
    else:
        nb = <Py_ssize_t>(2.0 * pfo) + 3
        if nb > MAX_DROP_SIDE:
            return ST_HUGE
        fx = <double*>malloc(2 * nb * sizeof(double))
        if fx == NULL:
            return ST_NOMEM
        fy = fx + nb
    # Input order: tiles of TILE_ROWS rows x `chunk` columns, row-major inside
    # a tile.  Neighbouring drops then hit the same few output cache lines.
    # The order is fixed (it does not depend on the band), so every output
    # pixel sees its contributions in the same order whatever the banding.
    for tj0 in range(y0, y1 + 1, TILE_ROWS):
      tj1 = tj0 + TILE_ROWS - 1
      if tj1 > y1: tj1 = y1
      for c in range(x0 // chunk, x1 // chunk + 1):
        cs = c * chunk
        ce = cs + chunk - 1
        if cs < x0: cs = x0
        if ce > x1: ce = x1
        nq = 0
        txmin = tymin = 1e300
        txmax = tymax = -1e300
        if kernel == K_SQUARE and tsel != NULL and tsel[((tj0 - y0) // TILE_ROWS) * nchunk + c] != want:
            # the square kernel works on whole tiles, each in the work unit
            # ``tsel`` assigns it to (see tile_yranges / core.py)
            continue
        if kernel == K_SQUARE and share:
            st = _tile_pf1(a, &sc, &ir, data, wmap, mask, pm, nx, ny, dscale, wscale,
                           tj0, tj1, cs, ce, rows, grid, nskipped)
            if st != ST_OK:
                break
            continue
        for j in range(tj0, tj1 + 1):
          if chunks != NULL and kernel != K_SQUARE and (chunks[(j * nchunk + c) * 2] > band_hi or
                                                        chunks[(j * nchunk + c) * 2 + 1] < band_lo):
              continue
          if kernel == K_SQUARE:
              li0 = cs - 1 if cs > 0 else 0
              li1 = ce + 2 if ce + 2 <= nx else nx
              _lerp_row(pm, nx, ny, <double>j - dh, rows, rows + nx, li0, li1)
              _lerp_row(pm, nx, ny, <double>j + dh, rows + 2 * nx, rows + 3 * nx, li0, li1)
              cb = rows + 4 * nx
              # interior columns get their corners in the drop loop (no store and
              # reload); a tile touching the image's first or last column keeps
              # the extrapolating corner rows
              if cs < 1 or ce > nx - 2:
                  _corner_row(rows, rows + nx, nx, cs, ce, dh, cb, cb + chunk, cb + 2 * chunk, cb + 3 * chunk)
                  _corner_row(rows + 2 * nx, rows + 3 * nx, nx, cs, ce, dh, cb + 4 * chunk, cb + 5 * chunk,
                              cb + 6 * chunk, cb + 7 * chunk)
          for i in range(cs, ce + 1):
              k = j * nx + i
              if mask != NULL and mask[k] == 0:
                  continue
              w = wscale
              if wmap != NULL:
                  w = w * wmap[k]
              if w == 0.0:
                  continue
              d = <double>data[k]
              if isnan(d):
                  nskipped[0] += 1
                  continue
              d = d * dscale
              if kernel == K_SQUARE:
                  if 0 < i < nx - 1:
                      # as _corner_row's interior formula: corners at i -/+ dh on the
                      # map rows at j - dh (rows[0:2nx]) and j + dh (rows[2nx:4nx])
                      # (lr points at column i - 1 of each row)
                      lr = rows + i - 1
                      xs[0] = lr[0] + fl * (lr[1] - lr[0])
                      xs[1] = lr[1] + dh * (lr[2] - lr[1])
                      lr = rows + nx + i - 1
                      ys[0] = lr[0] + fl * (lr[1] - lr[0])
                      ys[1] = lr[1] + dh * (lr[2] - lr[1])
                      lr = rows + 2 * nx + i - 1
                      xs[3] = lr[0] + fl * (lr[1] - lr[0])
                      xs[2] = lr[1] + dh * (lr[2] - lr[1])
                      lr = rows + 3 * nx + i - 1
                      ys[3] = lr[0] + fl * (lr[1] - lr[0])
                      ys[2] = lr[1] + dh * (lr[2] - lr[1])
                  else:
                      m = i - cs
                      xs[0] = cb[m]
                      ys[0] = cb[chunk + m]
                      xs[1] = cb[2 * chunk + m]
                      ys[1] = cb[3 * chunk + m]
                      xs[2] = cb[6 * chunk + m]
                      ys[2] = cb[7 * chunk + m]
                      xs[3] = cb[4 * chunk + m]
                      ys[3] = cb[5 * chunk + m]
                  jac = 0.5 * ((xs[1] - xs[3]) * (ys[0] - ys[2]) - (xs[0] - xs[2]) * (ys[1] - ys[3]))
                  # every corner coordinate enters jac once, in a difference times a
                  # difference: a NaN or infinity anywhere makes it non-finite, so the
                  # eight-value test is needed only then (finite corners whose jac
                  # overflows go on to the huge-drop check below)
                  if not isfinite(jac):
                      if not isfinite(xs[0] + xs[1] + xs[2] + xs[3] + ys[0] + ys[1] + ys[2] + ys[3]):
                          nskipped[0] += 1
                          continue
                  elif jac == 0.0:
                      continue
                  qxmin = qxmax = xs[0]
                  qymin = qymax = ys[0]
                  for m in range(1, 4):
                      if xs[m] < qxmin: qxmin = xs[m]
                      if xs[m] > qxmax: qxmax = xs[m]
                      if ys[m] < qymin: qymin = ys[m]
                      if ys[m] > qymax: qymax = ys[m]
                  if qxmax - qxmin > MAX_DROP_SIDE or qymax - qymin > MAX_DROP_SIDE:
                      st = ST_HUGE
                      break
                  if qxmax < -0.5 or qxmin >= xhi or qymax < -0.5 or qymin >= yhi:
                      continue
                  # a small drop inside the output image is resolved on its own, at once
                  # (with qxmin, qymin >= -0.5 every shifted corner is >= 0: truncation is floor)
                  if qxmin >= -0.5 and qymin >= -0.5:
                      di0 = <Py_ssize_t>(qxmin + 0.5)
                      di1 = <Py_ssize_t>(qxmax + 0.5)
                      dj0 = <Py_ssize_t>(qymin + 0.5)
                      dj1 = <Py_ssize_t>(qymax + 0.5)
                      if di1 - di0 < LB and dj1 - dj0 < LB and di1 < onx and dj1 < ony:
                          ox = w / jac
                          _drop_local(a, xs, ys, di0, dj0, di1 - di0 + 1, dj1 - dj0 + 1, jac, ox * d, ox, lb)
                          continue
                  for m in range(4):
                      qx[4 * nq + m] = xs[m]
                      qy[4 * nq + m] = ys[m]
                  qd[nq] = d
                  qw[nq] = w
                  nq += 1
                  if qxmin < txmin: txmin = qxmin
                  if qxmax > txmax: txmax = qxmax
                  if qymin < tymin: tymin = qymin
                  if qymax > tymax: tymax = qymax
                  continue
              X = pm[2 * k]
              Y = pm[2 * k + 1]
              if not (isfinite(X) and isfinite(Y)):
                  nskipped[0] += 1
                  continue
              if X + pfo < -0.5 or X - pfo >= <double>a.onx - 0.5 or \
                      Y + pfo < band_lo or Y - pfo >= band_hi:
                  continue
              if kernel == K_POINT:
                  ii = _iround(X)
                  jj = _iround(Y)
                  if 0 <= ii < a.onx and a.band0 <= jj < a.band1:
                      _add(a, ii, jj, w, d)
                  continue
              ii0 = _iround(X - pfo)
              ii1 = _iround(X + pfo)
              jj0 = _iround(Y - pfo)
              jj1 = _iround(Y + pfo)
              if ii0 < 0: ii0 = 0
              if ii1 > a.onx - 1: ii1 = a.onx - 1
              if jj0 < a.band0: jj0 = a.band0
              if jj1 > a.band1 - 1: jj1 = a.band1 - 1
              if ii0 > ii1 or jj0 > jj1:
                  continue
              if ii1 - ii0 + 1 > nb or jj1 - jj0 + 1 > nb:
                  st = ST_HUGE
                  break
              if kernel == K_TURBO and ii1 - ii0 < 4 and ii0 + 4 <= a.onx and isfinite(d):
                  _turbo4(a, X, Y, pfo, fac, ii0, jj0, jj1, w, d)
                  continue
              if kernel == K_TURBO:
                  for ii in range(ii0, ii1 + 1):
                      ox = (X + pfo if X + pfo < ii + 0.5 else ii + 0.5) - \
                           (X - pfo if X - pfo > ii - 0.5 else ii - 0.5)
                      fx[ii - ii0] = ox if ox > 0.0 else 0.0
                  for jj in range(jj0, jj1 + 1):
                      oy = (Y + pfo if Y + pfo < jj + 0.5 else jj + 0.5) - \
                           (Y - pfo if Y - pfo > jj - 0.5 else jj - 0.5)
                      fy[jj - jj0] = oy * fac if oy > 0.0 else 0.0
              elif kernel == K_GAUSSIAN:
                  for ii in range(ii0, ii1 + 1):
                      ox = X - <double>ii
                      fx[ii - ii0] = exp(-ox * ox * efac)
                  for jj in range(jj0, jj1 + 1):
                      oy = Y - <double>jj
                      fy[jj - jj0] = es * exp(-oy * oy * efac)
              else:
                  for ii in range(ii0, ii1 + 1):
                      fx[ii - ii0] = _lanczos((X - <double>ii) * pscale / pixfrac, order)
                  for jj in range(jj0, jj1 + 1):
                      fy[jj - jj0] = _lanczos((Y - <double>jj) * pscale / pixfrac, order)
              _separable_add(a, fx, fy, ii0, ii1, jj0, jj1, w, d)
          if st != ST_OK:
              break
        if st == ST_OK and nq > 0:
            st = _square_tile(a, &sc, &ir, qx, qy, qd, qw, nq, txmin, txmax, tymin, tymax)
            if st == ST_FALLBACK:
                st = ST_OK
                for m in range(nq):
                    st = _square_pixel(a, &sc, qx + 4 * m, qy + 4 * m, qd[m], qw[m])
                    if st != ST_OK:
                        break
        if st != ST_OK:
            break
      if st != ST_OK:
          break
    free(rows)
    free(qx)
    free(grid)
    free(ir.buf)
    free(fx)
    free(sc.buf)
    return st


def drizzle_band(const float[:, ::1] data,
                 const float[:, ::1] weight,
                 const unsigned char[:, ::1] mask,
                 const double[:, :, ::1] pixmap,
                 float[:, :, ::1] acc,
                 int[:, ::1] ctx,
                 unsigned int bit,
                 int kernel,
                 double pixfrac,
                 double pscale,
                 double dscale,
                 double wscale,
                 Py_ssize_t xmin, Py_ssize_t xmax, Py_ssize_t ymin, Py_ssize_t ymax,
                 Py_ssize_t band0, Py_ssize_t band1,
                 const double[:, :, ::1] chunks,
                 Py_ssize_t chunk,
                 const int[:, ::1] tiles=None,
                 int want=0):
    """Drizzle one input image into output rows ``[band0, band1)``.

    ``weight``, ``mask``, ``ctx`` and ``chunks`` may be None.  ``chunks``
    (``chunk_yranges``) lets the separable kernels skip runs of input pixels
    that cannot reach the band.  ``tiles`` (square kernel only, shape
    ``(ntile_rows, nchunk)`` as in ``tile_yranges``) restricts the work to the
    tiles labelled ``want``.  Returns ``(status, nskipped)``; status 0 is
    success (see core.py for the others).
    """
    cdef Acc a
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1]
    cdef const float* wp = NULL
    cdef const unsigned char* mp = NULL
    cdef const double* cp = NULL
    cdef Py_ssize_t nchunk = 0
    cdef const int* tp = NULL
    cdef long long nskipped = 0
    cdef int st
    a.onx = acc.shape[1]
    a.ony = acc.shape[0]
    a.acc = &acc[0, 0, 0]
    a.ctx = NULL
    a.bit = bit
    if band0 < 0:
        band0 = 0
    if band1 > a.ony:
        band1 = a.ony
    a.band0 = band0
    a.band1 = band1
    if ctx is not None:
        a.ctx = &ctx[0, 0]
    if weight is not None:
        wp = &weight[0, 0]
    if mask is not None:
        mp = &mask[0, 0]
    if chunks is not None:
        cp = &chunks[0, 0, 0]
        nchunk = chunks.shape[1]
    if band0 >= band1 or xmin > xmax or ymin > ymax:
        return 0, 0
    if chunk <= 0:
        chunk = 32
    if tiles is not None:
        if tiles.shape[0] != (ymax - ymin) // TILE_ROWS + 1 or tiles.shape[1] != (nx + chunk - 1) // chunk:
            raise ValueError("tiles: shape does not match the input tiling")
        tp = &tiles[0, 0]
        nchunk = tiles.shape[1]
    with nogil:
        st = _kernel_rows(kernel, &data[0, 0], nx, ny, wp, mp, &pixmap[0, 0, 0], &a,
                          pixfrac, pscale, dscale, wscale, xmin, xmax, ymin, ymax,
                          cp, chunk, nchunk, tp, want, &nskipped)
    return st, nskipped


def chunk_yranges(const double[:, :, ::1] pixmap, double margin, Py_ssize_t chunk):
    """Output-y range reached by each run of ``chunk`` pixels of every input row.

    Returns float64 ``(ny, nchunk, 2)``: ``[ymin, ymax]`` of the pixel centres
    in the run, widened by the local pixel-to-pixel step (drop corners) and by
    ``margin`` (kernel support).  Runs whose centres are all NaN get an empty
    range.  Used to skip work outside a band of output rows.
    """
    cdef Py_ssize_t ny = pixmap.shape[0], nx = pixmap.shape[1]
    cdef Py_ssize_t nchunk = (nx + chunk - 1) // chunk
    cdef cnp.ndarray[cnp.float64_t, ndim=3] out = np.empty((ny, nchunk, 2), dtype=np.float64)
    cdef double[:, :, ::1] o = out
    cdef Py_ssize_t i, j, c, i0, i1
    cdef double lo, hi, step, y, t
    with nogil:
        for j in range(ny):
            for c in range(nchunk):
                i0 = c * chunk
                i1 = i0 + chunk
                if i1 > nx:
                    i1 = nx
                lo = 1e300
                hi = -1e300
                step = 0.0
                for i in range(i0, i1):
                    y = pixmap[j, i, 1]
                    if isnan(y):
                        continue
                    if y < lo: lo = y
                    if y > hi: hi = y
                    if i + 1 < nx:
                        t = fabs(pixmap[j, i + 1, 1] - y)
                        if t > step: step = t
                    if i > 0:
                        t = fabs(pixmap[j, i - 1, 1] - y)
                        if t > step: step = t
                    if j + 1 < ny:
                        t = fabs(pixmap[j + 1, i, 1] - y)
                        if t > step: step = t
                    if j > 0:
                        t = fabs(pixmap[j - 1, i, 1] - y)
                        if t > step: step = t
                if lo > hi:
                    o[j, c, 0] = 1e300
                    o[j, c, 1] = -1e300
                else:
                    o[j, c, 0] = lo - 2.0 * step - margin
                    o[j, c, 1] = hi + 2.0 * step + margin
    return out


cdef inline double _border_step(const double* pm, Py_ssize_t nx, Py_ssize_t i, Py_ssize_t j,
                                Py_ssize_t di, Py_ssize_t dj, Py_ssize_t n,
                                Py_ssize_t inward) noexcept nogil:
    """Largest |step in y| between neighbours along ``n`` pixels of an image border line
    (from (i, j) in steps (di, dj)): to the next pixel on the line and to the one
    ``inward`` pixels (in memory) into the image."""
    cdef double step = 0.0, t, y
    cdef Py_ssize_t k, q
    inward *= 2
    for k in range(n):
        q = 2 * ((j + k * dj) * nx + i + k * di) + 1
        y = pm[q]
        t = fabs(pm[q + inward] - y)
        if t > step: step = t
        if k + 1 < n:
            t = fabs(pm[q + 2 * (dj * nx + di)] - y)
            if t > step: step = t
    return step


cdef inline void _yrange(const double* y, Py_ssize_t n, double* lo, double* hi) noexcept nogil:
    """Fold the ``n`` values ``y[0], y[2], ...`` (the y of (x, y) pairs) into
    ``lo``/``hi``; a NaN fails both tests and changes nothing."""
    cdef double l = lo[0], h = hi[0], v
    cdef Py_ssize_t k
    for k in range(n):
        v = y[2 * k]
        l = v if v < l else l
        h = v if v > h else h
    lo[0] = l
    hi[0] = h


def tile_yranges(const double[:, :, ::1] pixmap, double pixfrac, double margin, Py_ssize_t chunk,
                 Py_ssize_t ymin, Py_ssize_t ymax):
    """Output-y range that each square-kernel tile of the input can reach.

    Tiles as in ``drizzle_band``: ``TILE_ROWS`` input rows from ``ymin`` x
    ``chunk`` columns.  Returns float64 ``(ntile_rows, nchunk, 2)``, ``[ymin,
    ymax]`` of the pixel centres of the tile and of the ring of pixels its
    drop corners are interpolated from, widened by ``margin`` and, at the
    image border, for corners extrapolated beyond it (by a multiple of the
    largest step between border pixels and their neighbours); ``[1e300,
    -1e300]`` for tiles without finite centres.  Conservative, so that a
    tile labelled with one band never writes outside it.  (Tiles are taken
    whole: the x extent of a ``drizzle_band`` call only narrows them.)
    """
    cdef Py_ssize_t ny = pixmap.shape[0], nx = pixmap.shape[1]
    cdef Py_ssize_t nchunk = (nx + chunk - 1) // chunk
    cdef Py_ssize_t ntr = (ymax - ymin) // TILE_ROWS + 1 if ymax >= ymin else 0
    cdef cnp.ndarray[cnp.float64_t, ndim=3] out = np.empty((ntr, nchunk, 2), dtype=np.float64)
    cdef double[:, :, ::1] o = out
    cdef Py_ssize_t tr, c, i, j, j0, j1, i0, i1
    cdef double dh = 0.5 * pixfrac
    # corners lie within `ring` pixels of their own pixel; a bilinear
    # extrapolation by e <= dh beyond a border moves at most 2 e (1 + e) steps
    cdef Py_ssize_t ring = 1 + <Py_ssize_t>dh
    cdef double widen = 2.0 * dh * (1.0 + dh) if dh > 0.5 else 1.5
    cdef double lo, hi, step
    cdef const double* pm = &pixmap[0, 0, 0]
    with nogil:
        for tr in range(ntr):
            j0 = ymin + tr * TILE_ROWS - ring
            j1 = ymin + tr * TILE_ROWS + TILE_ROWS - 1 + ring
            if j0 < 0: j0 = 0
            if j1 > ny - 1: j1 = ny - 1
            # the extremes of all the tiles of this tile row, row by row: the map is
            # read front to back (tile by tile it was 34 short strided streams)
            for c in range(nchunk):
                o[tr, c, 0] = 1e300
                o[tr, c, 1] = -1e300
            for j in range(j0, j1 + 1):
                for c in range(nchunk):
                    i0 = c * chunk - ring
                    i1 = c * chunk + chunk - 1 + ring
                    if i0 < 0: i0 = 0
                    if i1 > nx - 1: i1 = nx - 1
                    _yrange(pm + 2 * (j * nx + i0) + 1, i1 - i0 + 1, &o[tr, c, 0], &o[tr, c, 1])
            for c in range(nchunk):
                i0 = c * chunk - ring
                i1 = c * chunk + chunk - 1 + ring
                if i0 < 0: i0 = 0
                if i1 > nx - 1: i1 = nx - 1
                lo = o[tr, c, 0]
                hi = o[tr, c, 1]
                step = 0.0
                if i0 == 0 and nx > 1:
                    step = fmax(step, _border_step(pm, nx, 0, j0, 0, 1, j1 - j0 + 1, 1))
                if i1 == nx - 1 and nx > 1:
                    step = fmax(step, _border_step(pm, nx, nx - 1, j0, 0, 1, j1 - j0 + 1, -1))
                if j0 == 0 and ny > 1:
                    step = fmax(step, _border_step(pm, nx, i0, 0, 1, 0, i1 - i0 + 1, nx))
                if j1 == ny - 1 and ny > 1:
                    step = fmax(step, _border_step(pm, nx, i0, ny - 1, 1, 0, i1 - i0 + 1, -nx))
                if lo > hi:
                    o[tr, c, 0] = 1e300
                    o[tr, c, 1] = -1e300
                else:
                    lo = lo - widen * step - margin
                    hi = hi + widen * step + margin
                    if isnan(lo) or isnan(hi):     # infinities in the map: anywhere
                        lo = -1e300
                        hi = 1e300
                    o[tr, c, 0] = lo
                    o[tr, c, 1] = hi
    return out


def count_nonfinite(const double[:, :, ::1] pixmap):
    """Number of pixel-map entries that are NaN or infinite."""
    cdef Py_ssize_t n = pixmap.shape[0] * pixmap.shape[1] * pixmap.shape[2], k
    cdef const double* p = &pixmap[0, 0, 0]
    cdef long long bad = 0
    with nogil:
        for k in range(n):
            if not isfinite(p[k]):
                bad += 1
    return bad


def finish_block(const float[:, :, ::1] acc, float[:, ::1] out_img, float[:, ::1] out_wht,
                 float fillval, float scale, bint big_endian, float wfloor):
    """The weighted mean ``sum / wht`` (float32, ``fillval`` where ``wht == 0``) and
    the total weight of a block of rows, with what its consumers need done in
    the same pass: the mean times ``scale`` (a float32
    product; ``fillval`` where the weight is <= 0 once scaled), the statistics
    ``(sum of weights > wfloor as float64, their number, number of weights <= 0)``
    and, with ``big_endian``, both images stored byte-swapped for a FITS file
    (their arrays then hold big-endian float32).  Returns the statistics."""
    cdef Py_ssize_t ny = acc.shape[0], nx = acc.shape[1], i, j
    cdef double w, wsum = 0.0
    cdef float wf, v
    cdef long long nabove = 0, nzero = 0
    cdef unsigned int* oi
    cdef unsigned int* ow
    cdef bint scaled = scale != 1.0
    if out_img.shape[0] != ny or out_img.shape[1] != nx or out_wht.shape[0] != ny or out_wht.shape[1] != nx:
        raise ValueError("finish_block: output blocks must have the accumulator's shape")
    with nogil:
        for j in range(ny):
            oi = <unsigned int*>&out_img[j, 0]
            ow = <unsigned int*>&out_wht[j, 0]
            for i in range(nx):
                w = acc[j, i, 1]
                wf = <float>w
                if w != 0.0:
                    v = <float>(<double>acc[j, i, 0] / w)
                else:
                    v = fillval
                if scaled:
                    v = v * scale
                    if wf <= 0.0:
                        v = fillval
                if wf > wfloor:
                    wsum += <double>wf
                    nabove += 1
                if wf <= 0.0:
                    nzero += 1
                if big_endian:
                    oi[i] = df_f32_bits_be(v)
                    ow[i] = df_f32_bits_be(wf)
                else:
                    out_img[j, i] = v
                    out_wht[j, i] = wf
    return wsum, nabove, nzero
