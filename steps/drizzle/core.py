"""Drizzle and blot on plain numpy arrays: the public face of the Cython core.

The core knows nothing about WCS: a *pixel map* says where each input pixel
centre lands on the output grid (see :mod:`drizzleflow.steps.drizzle.pixmap`),
and the kernels move flux.  Everything here validates arrays once, at the
boundary, and raises :class:`DrizzleArrayError` naming the argument and the
fix; the compiled loops then run without the GIL.

Quick start::

    from drizzleflow.steps.drizzle.core import Drizzle, blot
    drz = Drizzle(out_shape=(ny, nx), kernel="square", fillval=float("nan"))
    drz.add_image(sci, pixmap, exptime=400.0, weight=wht, pixfrac=0.8,
                  in_units="counts", scale=0.457)
    sci_out, wht_out, ctx = drz.finish()
    back = blot(sci_out, pixmap, interp="poly5", exptime=400.0, scale=0.457)
"""
from __future__ import annotations

import itertools
import logging
import math
import mmap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from drizzleflow.engine.errors import DrizzleflowError

from ._native import CORE_BUILD, _blot, _core

__all__ = [
    "CORE_BUILD",
    "DrizzleArrayError",
    "Drizzle",
    "DrizzleInput",
    "FinishStats",
    "drizzle_many",
    "blot",
    "KERNELS",
    "INTERPOLANTS",
]

log = logging.getLogger(__name__)

#: drizzle kernels and their codes in the Cython core
KERNELS = {"square": 0, "turbo": 1, "point": 2, "gaussian": 3, "lanczos2": 4, "lanczos3": 5}
#: blot interpolants and their codes in the Cython core
INTERPOLANTS = {"nearest": 0, "linear": 1, "poly3": 2, "poly5": 3, "sinc": 4, "lanczos3": 5}

_CTX_BITS = 32
_CHUNK = 32          # input pixels per run when skipping work outside a band (= square tile width)
_MAX_BANDS = 32      # square kernel: most output bands (work units) per phase
_ST_NOMEM, _ST_HUGE = 1, 2


class DrizzleArrayError(DrizzleflowError, ValueError):
    """An array or parameter given to the drizzle/blot core is unusable.

    ``argument`` names the offending argument; the message says how to fix it.
    """

    def __init__(self, argument: str, problem: str):
        self.argument, self.problem = argument, problem
        super().__init__(f"{argument}: {problem}")


# ---------------------------------------------------------------------------
# boundary checks
# ---------------------------------------------------------------------------

def _check_array(name, arr, dtype, ndim, shape=None):
    """Return ``arr`` if it is a native-endian C-contiguous ``dtype`` array, else raise."""
    dtype = np.dtype(dtype)
    if not isinstance(arr, np.ndarray):
        raise DrizzleArrayError(name, f"expected a numpy array, got {type(arr).__name__}; "
                                      f"use np.asarray({name}, dtype=np.{dtype.name})")
    if arr.ndim != ndim:
        raise DrizzleArrayError(name, f"expected {ndim} dimensions, got shape {arr.shape}")
    if arr.dtype.kind != dtype.kind or arr.dtype.itemsize != dtype.itemsize:
        raise DrizzleArrayError(name, f"dtype {arr.dtype} is not {dtype.name}; convert it once "
                                      f"with {name}.astype(np.{dtype.name})")
    if not arr.dtype.isnative:
        raise DrizzleArrayError(name, f"big-endian {arr.dtype.str} data (as read from FITS); convert "
                                      f"it with {name}.astype(np.{dtype.name}) (native byte order)")
    if not arr.flags.c_contiguous:
        raise DrizzleArrayError(name, f"array is not C-contiguous (a slice or transpose?); use "
                                      f"np.ascontiguousarray({name})")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise DrizzleArrayError(name, f"shape {arr.shape} does not match the expected {tuple(shape)}")
    return arr


def _check_mask(name, mask, shape):
    if mask is None:
        return None
    if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
        mask = _check_array(name, mask.view(np.uint8), np.uint8, 2, shape)
        return mask
    return _check_array(name, mask, np.uint8, 2, shape)


def _check_positive(name, value, allow_zero=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DrizzleArrayError(name, f"expected a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise DrizzleArrayError(name, f"must be a finite number > 0, got {value!r}")
    return value


def _fill_value(fillval):
    """None / "INDEF" / "nan" -> NaN; numbers as float32 (the value written)."""
    if fillval is None:
        return np.float32(np.nan)
    if isinstance(fillval, str):
        text = fillval.strip().upper()
        if text in ("", "INDEF", "NAN"):
            return np.float32(np.nan)
        try:
            return np.float32(float(text))
        except ValueError:
            raise DrizzleArrayError("fillval", f"expected a number, NaN or 'INDEF', got {fillval!r}") from None
    try:
        return np.float32(fillval)
    except (TypeError, ValueError):
        raise DrizzleArrayError("fillval", f"expected a number, got {fillval!r}") from None


def _raise_status(status):
    if status == _ST_NOMEM:
        raise MemoryError("drizzle core: out of memory for a scratch buffer")
    if status == _ST_HUGE:
        raise DrizzleArrayError("pixmap", "one input pixel spans more than 4096 output pixels; the "
                                          "pixel map (or scale/pixfrac) is wrong for this output grid")
    if status:
        raise RuntimeError(f"drizzle core: unexpected status {status}")


def _bands(n, parts):
    """Split ``range(n)`` into ``parts`` contiguous [start, stop) bands."""
    parts = max(1, min(parts, n))
    edges = [round(k * n / parts) for k in range(parts + 1)]
    return [(edges[k], edges[k + 1]) for k in range(parts) if edges[k + 1] > edges[k]]


def _check_threads(threads):
    if threads is None:
        return 1
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise DrizzleArrayError("threads", f"expected an integer >= 1, got {threads!r}")
    return int(threads)


# ---------------------------------------------------------------------------
# drizzle
# ---------------------------------------------------------------------------

@dataclass
class DrizzleInput:
    """One image to drizzle, with everything :meth:`Drizzle.add_image` takes.

    Used by :func:`drizzle_many` / :meth:`Drizzle.add_images`; the fields have
    the meaning of the :meth:`Drizzle.add_image` arguments of the same names.
    """

    data: np.ndarray
    pixmap: np.ndarray
    exptime: float = 1.0
    weight: np.ndarray | None = None
    pixfrac: float = 1.0
    in_units: str = "cps"
    scale: float = 1.0
    input_id: int | None = None
    xmin: int | None = None
    xmax: int | None = None
    ymin: int | None = None
    ymax: int | None = None
    mask: np.ndarray | None = None
    iscale: float | None = None
    wt_scl: float = 1.0
    on_nan: str = "raise"


@dataclass
class _Job:
    """A validated input, ready for the compiled core."""

    data: np.ndarray
    weight: np.ndarray | None
    mask: np.ndarray | None
    pixmap: np.ndarray
    kernel: int
    pixfrac: float
    scale: float
    dscale: float
    wscale: float
    box: tuple
    ctx_id: int | None
    support: float
    nskipped: int
    chunks: np.ndarray | None = None


def _flat_float32(name, buffer, n):
    """The first ``n`` elements of a caller's C-contiguous float32 array (1-D view)."""
    if (not isinstance(buffer, np.ndarray) or buffer.dtype != np.float32 or buffer.size < n
            or not buffer.flags.c_contiguous):
        raise DrizzleArrayError(name, f"expected a C-contiguous float32 array of at least {n} elements")
    return buffer.reshape(-1)[:n]


def _accumulator(ny, nx, buffer):
    """A zeroed ``(ny, nx, 2)`` float32 accumulator: in ``buffer`` (a float32 array of
    at least ``ny * nx * 2`` elements) when given, else fresh.  A caller drizzling
    many bands or images in turn passes the same buffer each time: zeroing pages
    already mapped is several times cheaper than faulting in fresh ones (~90k page
    faults in one M2 separate drizzle)."""
    if buffer is None:
        return np.zeros((ny, nx, 2), dtype=np.float32)
    acc = _flat_float32("acc_buffer", buffer, ny * nx * 2).reshape(ny, nx, 2)
    acc.fill(0.0)
    return acc


class Drizzle:
    """Accumulate images onto one output grid with the drizzle algorithm.

    Each input pixel is shrunk by ``pixfrac``, mapped through its pixel map
    onto the output grid and its value is shared among the output pixels it
    overlaps, weighted by the overlap fraction times its input weight
    (Fruchter & Hook 2002).  The output is the weighted mean of everything
    that landed on each pixel; the output weight is the sum of the weights.

    Parameters
    ----------
    out_shape : tuple of int
        ``(ny, nx)`` of the output grid.
    kernel : str
        How an input pixel's flux is spread on the output:

        * ``"square"`` (default) -- the exact overlap area of the shrunken,
          mapped pixel (a quadrilateral: rotation, shear and distortion are
          honoured) with each output pixel.  Flux conserving.
        * ``"turbo"`` -- an axis-aligned square of side ``pixfrac / scale``
          output pixels around the mapped centre: fast, exact only without
          rotation; flux conserving.
        * ``"point"`` -- all of it into the output pixel containing the
          mapped centre; flux conserving, leaves holes unless heavily dithered.
        * ``"gaussian"`` -- a Gaussian of FWHM ``pixfrac`` input pixels; not
          normalised on the grid, so *not* flux conserving.
        * ``"lanczos2"``, ``"lanczos3"`` -- separable Lanczos windows of
          ``n * pixfrac`` input pixels; negative lobes, not flux conserving,
          meant for ``pixfrac = scale = 1``.
    fillval : float, str or None
        Value written into output pixels whose **total weight is exactly 0**
        (nothing with a non-zero weight landed there).  Exactly that value is
        written (as float32); ``None``, ``"INDEF"`` and ``"nan"`` mean NaN.
        Pixels with weight keep the weighted mean.  Zero-weight inputs never
        write data (drizzle 2.x semantics, not AstroDrizzle's INDEF "last
        zero-weight value").
    max_ctx_id : int or None
        Largest context id you expect, to size the context image up front.
        More planes are added automatically when a larger id arrives.
    disable_ctx : bool
        Do not keep a context image.
    acc_buffer : float32 ndarray, optional
        Memory for the accumulator (at least ``2 * ny * nx`` elements, zeroed
        here), to reuse between consecutive outputs instead of mapping fresh
        pages; it must not be shared by two live ``Drizzle`` objects.

    Notes
    -----
    **Context image (bits).**  ``out_ctx`` is int32 of shape
    ``(nplanes, ny, nx)``; input number ``k`` (``input_id``, 0-based, by
    default the order of :meth:`add_image` calls) sets bit ``k % 32`` of
    plane ``k // 32`` in every output pixel to which it contributed a
    positive weight.  Test it with ``(ctx[k // 32] >> (k % 32)) & 1``;
    bit 31 makes the int32 negative, which is expected.

    **Accumulation.**  Internally the sums ``sum(w * a * d)`` and
    ``sum(w * a)`` (``a`` = overlap fraction) are kept as interleaved float32
    pairs (8 bytes per output pixel; each tile's or drop's contribution is
    formed in float64 and rounded once) and the float32 mean is formed by
    :meth:`finish` (and the ``out_img`` property); an identity map with
    pixfrac 1 returns the input exactly.  Results do not depend on the number of
    threads: the arithmetic done for an output pixel is the same however
    the output rows are split between threads.

    **Edges.**  Every drop that overlaps the output contributes, also when
    its centre falls outside (the ``drizzle`` package skips input pixels
    whose centres map off the output, so the two differ in the outermost
    output pixels).
    """

    def __init__(self, out_shape, kernel="square", fillval=0.0, max_ctx_id=None, disable_ctx=False,
                 acc_buffer=None):
        try:
            ny, nx = (int(v) for v in out_shape)
        except (TypeError, ValueError):
            raise DrizzleArrayError("out_shape", f"expected (ny, nx), got {out_shape!r}") from None
        if ny < 1 or nx < 1:
            raise DrizzleArrayError("out_shape", f"must be positive, got {out_shape!r}")
        if kernel == "tophat":
            raise DrizzleArrayError("kernel", "'tophat' was removed from AstroDrizzle; use 'square' or 'gaussian'")
        if kernel not in KERNELS:
            raise DrizzleArrayError("kernel", f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
        self.kernel = kernel
        self.out_shape = (ny, nx)
        self.fillval = _fill_value(fillval)
        # interleaved (sum of w*a*d, sum of w*a): one cache line serves both
        self._acc = _accumulator(ny, nx, acc_buffer)
        self._disable_ctx = bool(disable_ctx)
        if self._disable_ctx:
            self._ctx = None
        else:
            nplanes = 1 if max_ctx_id is None else int(max_ctx_id) // _CTX_BITS + 1
            self._ctx = np.zeros((nplanes, ny, nx), dtype=np.int32)
        self._next_id = 0
        self._threads = 1          # used by finish(): the last add_images() setting
        self.total_exptime = 0.0
        self.ninputs = 0
        self._cache = None

    # ---- results -----------------------------------------------------------------
    @property
    def out_img(self):
        """float32 weighted mean; ``fillval`` where the total weight is 0."""
        return self._finished()[0]

    @property
    def out_wht(self):
        """float32 total weight of each output pixel."""
        return self._finished()[1]

    @property
    def out_ctx(self):
        """int32 context bit planes ``(nplanes, ny, nx)``, or None if disabled."""
        return self._ctx

    def finish(self):
        """Return ``(out_img, out_wht, out_ctx)`` with the fill value applied.

        The accumulator stays valid: more images may be added afterwards.
        """
        img, wht = self._finished()
        return img, wht, self._ctx

    def iter_finished(self, block=256, scale=1.0, reuse=False, big_endian=False, stats=None):
        """Yield ``(out_img, out_wht, out_ctx)`` for consecutive blocks of
        ``block`` output rows, to stream a large product to its file without a
        second full-size copy in memory.

        ``out_img`` is the weighted mean times ``scale`` (e.g. the total
        exposure time for a product in counts), ``fillval`` where the weight
        is zero; ``out_ctx`` is the block of the first context plane (None
        when the context is disabled).  With ``reuse`` every block is written
        into the same two arrays (a consumer that writes each block away
        before asking for the next saves a fresh 2 x 3.5 MB per block on M2,
        and its page faults); the caller may then change them freely.
        ``reuse`` may also be a pair of float32 arrays (each at least ``block``
        rows of the output) to write the blocks into: a caller finishing one
        output after another passes the same pair each time.
        ``big_endian``: the image blocks come as big-endian float32, ready for
        a FITS file (formed in the same pass, not swapped afterwards).
        ``stats`` (a :class:`FinishStats`) receives the weight statistics of
        every block, from the same pass.
        """
        ny, nx = self.out_shape
        scale = np.float32(scale)
        dtype = np.dtype(">f4" if big_endian else "=f4")
        floor = np.float32(stats.floor if stats is not None else 0.0)
        bufs = None
        if isinstance(reuse, (tuple, list)):
            if len(reuse) != 2:
                raise DrizzleArrayError("reuse", f"expected True, False or two arrays, got {len(reuse)}")
            bufs = tuple(_flat_float32("reuse", b, min(ny, int(block)) * nx) for b in reuse)
        for r0 in range(0, ny, int(block)):
            r1 = min(ny, r0 + int(block))
            n = (r1 - r0) * nx
            if reuse:
                if bufs is None:
                    bufs = (np.empty(min(ny, int(block)) * nx, dtype=np.float32),
                            np.empty(min(ny, int(block)) * nx, dtype=np.float32))
                img, wht = (b[:n].reshape(r1 - r0, nx) for b in bufs)
            else:
                img = np.empty((r1 - r0, nx), dtype=np.float32)
                wht = np.empty((r1 - r0, nx), dtype=np.float32)
            wsum, nabove, nzero = _core.finish_block(self._acc[r0:r1], img, wht, self.fillval, scale,
                                                     big_endian, floor)
            if stats is not None:
                stats.add(wsum, nabove, nzero)
            yield img.view(dtype), wht.view(dtype), (None if self._ctx is None else self._ctx[0, r0:r1])

    def _finished(self):
        if self._cache is None:
            img = _fresh_array(self.out_shape, np.float32)
            wht = _fresh_array(self.out_shape, np.float32)

            def run(band):   # the streaming finish's arithmetic, on rows band[0]:band[1]
                b0, b1 = band
                _core.finish_block(self._acc[b0:b1], img[b0:b1], wht[b0:b1], self.fillval, 1.0, False, 0.0)

            if self._threads == 1:
                run((0, self.out_shape[0]))
            else:
                with ThreadPoolExecutor(max_workers=self._threads) as pool:
                    list(pool.map(run, _bands(self.out_shape[0], self._threads)))
            self._cache = (img, wht)
        return self._cache

    # ---- adding images -----------------------------------------------------------
    def add_image(self, data, pixmap, exptime=1.0, weight=None, pixfrac=1.0, in_units="cps",
                  scale=1.0, input_id=None, xmin=None, xmax=None, ymin=None, ymax=None, *,
                  mask=None, iscale=None, wt_scl=1.0, on_nan="raise", threads=1):
        """Drizzle one image onto the output.

        Parameters
        ----------
        data : float32 ndarray (ny, nx)
            Input values, native byte order, C-contiguous (convert FITS data
            once with ``data.astype(np.float32)``).  NaN pixels are skipped.
        pixmap : float64 ndarray (ny, nx, 2)
            ``pixmap[j, i] = (x, y)``, 0-based output coordinates of the
            centre of input pixel (i, j); see :func:`.pixmap.pixmap`.
        exptime : float
            Exposure time (s).  With ``in_units="counts"`` the data are divided
            by it, so the output is a rate; it is also summed into
            ``total_exptime``.
        weight : float32 ndarray (ny, nx), optional
            Per-pixel input weight (e.g. ``exptime * good`` or an inverse
            variance); 0 excludes a pixel.  Default 1 everywhere.
        mask : uint8 or bool ndarray (ny, nx), optional
            Good-pixel mask; pixels where it is 0/False are excluded.
        pixfrac : float
            Linear size of the drop as a fraction of an input pixel: the input
            pixel is shrunk about its centre to ``pixfrac`` of its side before
            it is mapped.  1 spreads the flux over the whole pixel footprint;
            smaller values sharpen the output at the cost of weight uniformity
            (keep it large enough that every output pixel gets some drops).
            Values below 0.001 switch to the ``point`` kernel.
        in_units : {"cps", "counts"}
            Units of ``data``; "counts" are divided by ``exptime``.
        scale : float
            Pixel scale ratio ``s`` = output pixel size / input pixel size
            (e.g. 0.0455"/0.0996" = 0.457 for WFPC2 WF onto a PC-like grid).
            It sizes the turbo/gaussian/lanczos kernels (in output pixels a
            drop is ``pixfrac / s`` wide) and sets the default ``iscale``.
        iscale : float, optional
            Factor applied to the data values.  Default ``scale**2``: the
            drizzlepac convention for per-pixel quantities (counts or counts/s
            per *input* pixel become per *output* pixel).  Use ``iscale=1`` for
            surface-brightness units.
        wt_scl : float
            Factor applied to the weights.
        input_id : int, optional
            Context id (0-based) of this image; default: the next unused one.
        xmin, xmax, ymin, ymax : int, optional
            Inclusive 0-based sub-region of the input to drizzle (default all).
        on_nan : {"raise", "skip"}
            What to do with NaN/inf in ``pixmap``: raise
            :class:`DrizzleArrayError` (default) or skip the pixels whose
            drop needs such a value (for the square kernel, also the
            neighbours whose corners are interpolated from it).
        threads : int
            Threads working on disjoint bands of output rows.

        Returns
        -------
        int
            Number of input pixels with NaN data or a NaN/inf map entry
            (skipped; the square kernel may skip a few more neighbours).
        """
        item = DrizzleInput(data=data, pixmap=pixmap, exptime=exptime, weight=weight, mask=mask,
                            pixfrac=pixfrac, in_units=in_units, scale=scale, iscale=iscale,
                            wt_scl=wt_scl, input_id=input_id, xmin=xmin, xmax=xmax, ymin=ymin,
                            ymax=ymax, on_nan=on_nan)
        return self.add_images([item], threads=threads)

    def add_images(self, items: Iterable, threads=1):
        """Drizzle several images (``DrizzleInput``, dicts or tuples), possibly in threads.

        With ``threads > 1`` the work is split by output rows: bands of rows
        for the separable kernels, units of whole input tiles lying in (or
        straddling the edge of) fixed output bands for the square kernel.
        The result is bit-identical to ``threads=1``.  Returns the number of
        input pixels with NaN data or NaN/inf map entries (skipped).
        """
        threads = _check_threads(threads)
        jobs = []
        for n, item in enumerate(items):
            if isinstance(item, dict):
                item = DrizzleInput(**item)
            elif isinstance(item, (tuple, list)):
                item = DrizzleInput(*item)
            elif not isinstance(item, DrizzleInput):
                raise DrizzleArrayError(f"images[{n}]", "expected a DrizzleInput, dict or tuple")
            jobs.append(self._prepare(item))
        if not jobs:
            return 0
        self._cache = None
        self._threads = threads
        pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        try:
            # consecutive images of the same kernel family share one decomposition
            for square, group in itertools.groupby(jobs, key=lambda j: j.kernel == KERNELS["square"]):
                if square:
                    self._run_tiles(list(group), pool)
                else:
                    self._run_bands(list(group), pool, threads)
        finally:
            if pool is not None:
                pool.shutdown()
        self.ninputs += len(jobs)
        return sum(job.nskipped for job in jobs)

    def _run_bands(self, jobs, pool, threads):
        """Separable kernels: each thread takes bands of output rows over all images.

        Every addition is computed per drop and output pixel, so clipping
        drops to a band changes nothing (bit-identical for any banding).
        """
        ny = self.out_shape[0]
        if pool is None:
            for job in jobs:
                self._run(job, 0, ny)
            return
        for job, ch in zip(jobs, pool.map(lambda j: _core.chunk_yranges(j.pixmap, j.support, _CHUNK), jobs)):
            job.chunks = ch
        bands = _bands(ny, 2 * threads)
        list(pool.map(lambda b: [self._run(job, *b) for job in jobs], bands))

    def _run_tiles(self, jobs, pool):
        """Square kernel: work units of whole input tiles, the same for any number of threads.

        A tile's contributions are summed in a buffer before they reach the
        output, so a tile must never be split between threads.  The output
        rows are cut into bands (how many depends on the output and on the
        tiles' footprint heights, never on the threads).  A tile whose
        footprint lies in one band belongs to that band's unit, one straddling
        the edge between two bands to that edge's unit, the rare taller ones
        to one last unit.  Units run phase by phase: bands, even edges, odd
        edges, the rest.  Units of one phase write disjoint rows, so threads
        can take them in any order; each tile is computed once and every
        output pixel receives its contributions in the same order whatever
        the number of threads (bit-identical results).
        """
        mapper = map if pool is None else pool.map
        labels, counts, phases = self._tile_plan(jobs, mapper)

        def run(unit):
            code, (b0, b1) = unit
            for job, lab, cnt in zip(jobs, labels, counts):
                if cnt[code]:
                    self._run(job, b0, b1, lab, code)

        for units in phases:
            list(mapper(run, units))

    def _tile_plan(self, jobs, mapper=map):
        """The work units of square-kernel ``jobs`` (see :meth:`_run_tiles`):
        ``(labels, counts, phases)`` -- each tile's unit code and the number of
        tiles per code for every job, and per phase the units that have tiles,
        ``(code, (first row, end row))``, biggest first."""
        ny = self.out_shape[0]
        spans = list(mapper(lambda j: self._tile_rows(j, ny), jobs))
        heights = np.concatenate([(r1 - r0 + 1)[r1 >= r0] for r0, r1 in spans])
        height = float(np.percentile(heights, 90)) if heights.size else float(ny)
        bands = _bands(ny, max(1, min(_MAX_BANDS, int(ny // max(1.0, 2.0 * height)))))
        nb = len(bands)
        starts = np.array([b[0] for b in bands])
        labels, counts = [], []
        for r0, r1 in spans:
            k0 = np.searchsorted(starts, r0, side="right") - 1
            k1 = np.searchsorted(starts, r1, side="right") - 1
            lab = np.where(k0 == k1, k0, np.where(k1 == k0 + 1, nb + k1, 2 * nb)).astype(np.int32)
            lab[r1 < r0] = -1
            labels.append(lab)
            counts.append(np.bincount(lab[lab >= 0].ravel(), minlength=2 * nb + 1))
        # (label, band of output rows it may write) per phase
        phases = [[(k, bands[k]) for k in range(nb)],
                  [(nb + k, (bands[k - 1][0], bands[k][1])) for k in range(2, nb, 2)],
                  [(nb + k, (bands[k - 1][0], bands[k][1])) for k in range(1, nb, 2)],
                  [(2 * nb, (0, ny))]]

        total = np.sum(counts, axis=0)
        # biggest first: better balance, and the order of disjoint units does not matter
        phases = [sorted((u for u in units if total[u[0]]), key=lambda u: -total[u[0]]) for units in phases]
        return labels, counts, phases

    @staticmethod
    def _tile_rows(job, ny):
        """First and last output row each input tile of ``job`` may touch (empty: last < first)."""
        x0, x1, y0, y1 = job.box
        yr = _core.tile_yranges(job.pixmap, job.pixfrac, job.support, _CHUNK, y0, y1)
        yr = np.clip(yr, -2.0, ny + 2.0)
        r0 = np.maximum(np.floor(yr[..., 0] + 0.5), 0).astype(np.int64)
        r1 = np.minimum(np.floor(yr[..., 1] + 0.5), ny - 1).astype(np.int64)
        return r0, r1

    def _run(self, job, band0, band1, tiles=None, want=0):
        if job.ctx_id is None:
            ctx, bit = None, 0
        else:
            ctx = self._ctx[job.ctx_id // _CTX_BITS]
            bit = 1 << (job.ctx_id % _CTX_BITS)
        x0, x1, y0, y1 = job.box
        status, skipped = _core.drizzle_band(
            job.data, job.weight, job.mask, job.pixmap, self._acc, ctx, bit,
            job.kernel, job.pixfrac, job.scale, job.dscale, job.wscale, x0, x1, y0, y1,
            band0, band1, job.chunks, _CHUNK, tiles, want)
        _raise_status(status)

    def _prepare(self, it: DrizzleInput) -> _Job:
        data = _check_array("data", it.data, np.float32, 2)
        ny, nx = data.shape
        if ny < 2 or nx < 2:
            raise DrizzleArrayError("data", f"needs at least 2 x 2 pixels, got shape {data.shape}")
        pixmap = _check_array("pixmap", it.pixmap, np.float64, 3, (ny, nx, 2))
        weight = None if it.weight is None else _check_array("weight", it.weight, np.float32, 2, (ny, nx))
        mask = _check_mask("mask", it.mask, (ny, nx))
        pixfrac = _check_positive("pixfrac", it.pixfrac)
        scale = _check_positive("scale", it.scale)
        wscale = float(it.wt_scl)
        if not math.isfinite(wscale):
            raise DrizzleArrayError("wt_scl", f"must be finite, got {it.wt_scl!r}")
        if it.in_units not in ("cps", "counts"):
            raise DrizzleArrayError("in_units", f"expected 'cps' or 'counts', got {it.in_units!r}")
        exptime = _check_positive("exptime", it.exptime, allow_zero=it.in_units == "cps")
        iscale = scale * scale if it.iscale is None else float(it.iscale)
        if not math.isfinite(iscale):
            raise DrizzleArrayError("iscale", f"must be finite, got {it.iscale!r}")
        dscale = iscale / exptime if it.in_units == "counts" else iscale
        if it.on_nan not in ("raise", "skip"):
            raise DrizzleArrayError("on_nan", f"expected 'raise' or 'skip', got {it.on_nan!r}")
        if it.on_nan == "raise":
            nbad = _core.count_nonfinite(pixmap)
            if nbad:
                raise DrizzleArrayError("pixmap", f"{nbad} NaN/inf entries; fix the WCS mapping or pass "
                                                  "on_nan='skip' to leave those pixels out")
        kernel = self.kernel
        if pixfrac < 0.001 and kernel != "point":
            log.info("pixfrac %g < 0.001: using the point kernel", pixfrac)
            kernel = "point"
        box = []
        for name, value, default, top in (("xmin", it.xmin, 0, nx - 1), ("xmax", it.xmax, nx - 1, nx - 1),
                                          ("ymin", it.ymin, 0, ny - 1), ("ymax", it.ymax, ny - 1, ny - 1)):
            if value is None:
                value = default
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise DrizzleArrayError(name, f"expected an integer pixel index, got {value!r}") from None
            box.append(min(max(value, 0), top))
        ctx_id = None
        if not self._disable_ctx:
            ctx_id = self._next_id if it.input_id is None else int(it.input_id)
            if ctx_id < 0:
                raise DrizzleArrayError("input_id", f"must be >= 0, got {it.input_id!r}")
            self._next_id = max(self._next_id, ctx_id + 1)
            plane = ctx_id // _CTX_BITS
            if plane >= self._ctx.shape[0]:
                grow = np.zeros((plane + 1 - self._ctx.shape[0],) + self.out_shape, dtype=np.int32)
                self._ctx = np.concatenate([self._ctx, grow])
        self.total_exptime += exptime
        support = {"square": 1.0, "point": 1.0, "turbo": pixfrac / scale / 2 + 1,
                   "gaussian": max(2.5 * pixfrac / 2.3548 / scale, 1.2 / scale) + 1,
                   "lanczos2": 2 * pixfrac / scale + 1, "lanczos3": 3 * pixfrac / scale + 1}[kernel]
        x0, x1, y0, y1 = box
        nskipped = int(np.count_nonzero(np.isnan(data[y0:y1 + 1, x0:x1 + 1])))
        if it.on_nan == "skip":
            bad = ~np.isfinite(pixmap[y0:y1 + 1, x0:x1 + 1]).all(axis=2)
            nskipped += int(np.count_nonzero(bad))
        return _Job(data, weight, mask, pixmap, KERNELS[kernel], pixfrac, scale, dscale, wscale,
                    tuple(box), ctx_id, support, nskipped)


def drizzle_many(images: Sequence, out_shape, kernel="square", fillval=0.0, threads=1,
                 disable_ctx=False, max_ctx_id=None) -> Drizzle:
    """Drizzle a list of images onto one new output grid.

    ``images`` holds :class:`DrizzleInput` objects (or dicts / tuples in the
    field order ``(data, pixmap, exptime, weight, pixfrac, in_units, scale,
    input_id, ...)``).  ``threads`` threads share the work by bands of output
    rows; the result is bit-identical whatever ``threads`` is.  Returns the
    :class:`Drizzle` accumulator; call ``.finish()`` for the arrays.
    """
    images = list(images)
    if max_ctx_id is None and images:
        max_ctx_id = len(images) - 1
    drz = Drizzle(out_shape, kernel=kernel, fillval=fillval, max_ctx_id=max_ctx_id,
                  disable_ctx=disable_ctx)
    drz.add_images(images, threads=threads)
    return drz


class FinishStats:
    """Weight statistics gathered while an output is finished block by block:
    the sum (float64) and number of weights above ``floor``, and the number of
    pixels with no weight (<= 0)."""

    def __init__(self, floor=0.0):
        self.floor, self.wsum, self.nabove, self.nzero = float(floor), 0.0, 0, 0

    def add(self, wsum, nabove, nzero):
        self.wsum += wsum
        self.nabove += int(nabove)
        self.nzero += int(nzero)

    @property
    def mean_above(self) -> float:
        """Mean of the weights above ``floor`` (0 when there are none)."""
        return self.wsum / self.nabove if self.nabove else 0.0


def _fresh_array(shape, dtype) -> np.ndarray:
    """A zero-filled array in its own anonymous memory map, with 4 KiB pages.

    numpy asks the kernel for transparent huge pages on every large
    allocation; where the kernel then compacts memory synchronously on the
    first write (``defrag = madvise``, the usual default) that first write can
    cost 0.1-0.3 s per 100 MB.  An output that is written once, front to
    back, gains nothing from huge pages, so it gets plain pages instead.
    The map is released with the last array that views it.
    """
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    if n == 0:
        return np.zeros(shape, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, n), dtype=dtype).reshape(shape)


# ---------------------------------------------------------------------------
# blot
# ---------------------------------------------------------------------------

def blot(image, pixmap, interp="poly5", sinscl=1.0, exptime=1.0, scale=1.0, iscale=None,
         fillval=0.0, out=None, threads=1):
    """Resample an output-frame image back onto an input grid.

    ``result[j, i] = iscale * I(image, pixmap[j, i])`` where ``pixmap`` is
    the *same* map that drizzled input pixel (i, j) onto ``image``'s grid and
    ``I`` interpolates ``image`` at that position.

    Parameters
    ----------
    image : float32 ndarray (NY, NX)
        The image to sample (e.g. the median of the separate drizzles).
    pixmap : float64 ndarray (ny, nx, 2)
        Position ``(x, y)`` in ``image`` of every pixel of the result.
    interp : str
        ``nearest``, ``linear`` (bilinear), ``poly3`` / ``poly5`` (4x4 / 6x6
        Lagrange polynomials, the IRAF/drizzle interior polynomials;
        ``poly5`` is AstroDrizzle's default), ``sinc`` (15-tap tapered sinc,
        argument multiplied by ``sinscl``), ``lanczos3`` (6x6, normalised).
        Beyond the image edge the polynomials use point reflection.
    sinscl : float
        Scale of the sinc argument (``sinc`` only).
    exptime, scale : float
        Define the default ``iscale = exptime / scale**2``: it undoes
        :meth:`Drizzle.add_image` with ``in_units="counts"`` and the default
        ``iscale = scale**2`` (a rate per output pixel becomes counts per
        input pixel).  ``scale`` is the same output/input pixel-size ratio.
    iscale : float, optional
        Explicit multiplicative factor (overrides exptime/scale).
    fillval : float
        Written where the position is outside ``0 <= x < NX``, ``0 <= y < NY``
        or NaN.
    out : float32 ndarray (ny, nx), optional
        Where to write the result.
    threads : int
        Threads over disjoint row ranges (result independent of the number).

    Returns
    -------
    float32 ndarray (ny, nx)
    """
    image = _check_array("image", image, np.float32, 2)
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise DrizzleArrayError("image", "is empty")
    pixmap = _check_array("pixmap", pixmap, np.float64, 3)
    if pixmap.shape[2] != 2:
        raise DrizzleArrayError("pixmap", f"last axis must hold (x, y), got shape {pixmap.shape}")
    if interp not in INTERPOLANTS:
        raise DrizzleArrayError("interp", f"unknown interpolant {interp!r}; choose one of {sorted(INTERPOLANTS)}")
    sinscl = _check_positive("sinscl", sinscl)
    if iscale is None:
        factor = _check_positive("exptime", exptime) / _check_positive("scale", scale) ** 2
    else:
        factor = float(iscale)
        if not math.isfinite(factor):
            raise DrizzleArrayError("iscale", f"must be finite, got {iscale!r}")
    shape = pixmap.shape[:2]
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    else:
        out = _check_array("out", out, np.float32, 2, shape)
    fill = _fill_value(fillval)
    threads = _check_threads(threads)
    code = INTERPOLANTS[interp]

    def run(band):
        return _blot.blot_rows(image, pixmap, out, code, sinscl, factor, fill, band[0], band[1])

    if threads == 1:
        run((0, shape[0]))
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, _bands(shape[0], 4 * threads)))
    return out
