"""Helpers shared by the chain steps: loading exposures from the ``exposures``
product, DQ masks, per-chip sky values, FITS writes into the output folder, and
the thin adapter over the Cython core's API."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from astropy.io import fits

from drizzleflow.engine.atomic import atomic_path
from drizzleflow.engine.errors import StepError
from drizzleflow.engine.manifest import file_identity

from ..instruments.bits import good_mask

__all__ = ["IdentityCache", "LAYOUTS", "load_exposure", "chip_wcs_for", "exposure_weight", "iter_exposures", "exposure_records", "good_from_bits", "chip_key",
           "sky_for", "write_image", "update_file", "read_image", "static_mask_for", "read_static_mask",
           "wcs_kept", "pixmap_for", "windowed_map_for", "Scratch", "band_window", "new_drizzle", "add_chip", "blot_chip", "THREADS", "core_threads"]

log = logging.getLogger("drizzleflow.chain")

#: threads for the per-chip work of the chain steps (results do not depend on the number)
THREADS = max(1, min(4, os.cpu_count() or 1))


def core_threads() -> int:
    """Threads given to the drizzle/blot core by this process.

    ``DRIZZLEFLOW_THREADS`` when set (a sweep running points in parallel worker
    processes sets it so that the processes share the cores instead of each
    taking all of them), else :data:`THREADS`.  Results do not depend on it.
    """
    try:
        n = int(os.environ.get("DRIZZLEFLOW_THREADS", "") or 0)
    except ValueError:
        n = 0
    return n if n >= 1 else THREADS


def exposure_records(context, step: str) -> list[dict]:
    recs = context.get("exposures")
    if not recs:
        raise StepError(step, "the 'exposures' product is empty: no input exposures")
    return list(recs)


class IdentityCache:
    """A small thread-safe LRU of read-only objects keyed by file identity (the
    key changes when the file does, so a stale entry is never served)."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = int(size), OrderedDict(), threading.Lock()

    def clear(self):
        with self._lock:
            self._items.clear()

    def copy_entries(self, rename):
        """Serve each entry also under ``rename(key)`` (where not ``None``)."""
        with self._lock:
            for key, value in list(self._items.items()):
                new = rename(key)
                if new is not None:
                    self._items[new] = value
            self._trim()

    def peek(self, key, default=None):
        """The cached object of ``key``, or ``default``."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return default

    def put(self, key, value):
        """Keep ``value`` under ``key``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            self._trim()

    def get(self, key, make):
        """The cached object of ``key``, else ``make()`` (outside the lock), kept."""
        value = self.peek(key, _MISSING)
        if value is _MISSING:
            value = make()
            self.put(key, value)
        return value

    def _trim(self):
        """Drop the least recently used entries beyond ``size`` (lock held)."""
        while len(self._items) > self.size:
            self._items.popitem(last=False)


_MISSING = object()


#: Chip WCS objects (SIP + lookup tables; ~14 ms each to build) keyed by the
#: SCI file's identity and the extension index; shared read-only
_WCS = IdentityCache(256)


def chip_wcs_for(path):
    """A ``wcs_for(hdul, ext)`` callable serving cached WCS objects of ``path``
    (the file's identity taken now, before it is read)."""
    from drizzleflow.steps.instruments.wfpc2.reader import chip_wcs
    ident = file_identity(path)

    def wcs_for(hdul, ext):
        return _WCS.get((ident, int(ext)), lambda: chip_wcs(hdul, ext))
    wcs_for.cached = lambda ext: _WCS.peek((ident, int(ext)))
    return wcs_for


#: Parsed headers and pixel offsets of the exposures read (a
#: :class:`~drizzleflow.steps.instruments.wfpc2.layout.PairLayout` per version of a
#: c0m/c1m pair, also under its c0m's identity alone for ``chip_geometry``): later
#: reads of the same versions take only the pixel bytes, and no header is parsed again
LAYOUTS = IdentityCache(128)


@contextlib.contextmanager
def wcs_kept(path):
    """Around a rewrite of ``path`` that leaves its WCS keywords, lookup tables and
    extension order alone (MDRIZSKY): the chip WCS cached for the old file serve
    the new one (the sky step's rewrite otherwise cost every later step a fresh
    WCS per chip, 24 x ~8 ms on M2)."""
    old = file_identity(path)
    yield
    new = file_identity(path)
    if new != old:
        _WCS.copy_entries(lambda key: (new, key[1]) if key[0] == old else None)


def load_exposure(context, rec):
    """Open one exposure (working copies) as an :class:`Exposure` in electrons.

    The CR bit is cleared on reading (AstroDrizzle's ``resetbits=4096``): flags
    from an earlier run must not change what this run computes; the cosmic-ray
    mask travels as the ``crmasks`` product instead.  Every call reads the
    files: keeping the six M2 exposures between steps saved the sky step
    ~0.25 s of CPU but held 90 MB through static_mask and sky (static_mask
    peaked at 285 MiB with them, 220 without).  Chip WCS objects are shared
    (:func:`chip_wcs_for`), and so are the parsed headers of file versions read
    before (``LAYOUTS``: such a read takes only the pixel bytes).  Pixel arrays
    and headers are read-only.
    """
    from drizzleflow.steps.instruments.model import CR_BIT
    from drizzleflow.steps.instruments.wfpc2 import open_exposure
    sci, dq = context.abs(rec["sci"]), context.abs(rec["dq"])
    exp = open_exposure(sci, dq, ignore_bits=CR_BIT, wcs_for=chip_wcs_for(sci), layouts=LAYOUTS)
    for c in exp.chips:
        c.sci.flags.writeable = False
        c.dq.flags.writeable = False
    return exp


def iter_exposures(context, step: str):
    """Yield ``(record, Exposure)`` one exposure at a time (bounded memory)."""
    for rec in exposure_records(context, step):
        yield rec, load_exposure(context, rec)


def chip_key(chip) -> str:
    return f"{chip.root}:{chip.extver}"


def good_from_bits(dq, bits) -> np.ndarray:
    """True where a pixel is usable: only flags listed in ``bits`` may be set.

    ``bits`` is the normalised list from ``engine.legacy.Bits``; ``None`` ignores
    the DQ array (every pixel good), as AstroDrizzle's ``final_bits=None``.
    """
    return good_mask(dq, bits)


def sky_for(context, chip, kind: str = "computed") -> float:
    """Sky (electrons per pixel) of a chip from the ``sky`` product (0 if none)."""
    sky = context.get("sky", {}) or {}
    entry = sky.get(chip_key(chip))
    if entry is None:
        return 0.0
    return float(entry[kind])


#: static masks read, by file identity: one file serves every chip of its
#: signature (4 files for the 24 M2 chips, 0.64 MB each as bool)
_STATIC = IdentityCache(8)


def static_mask_for(context, chip):
    """The static mask (bool, True = good, read-only) of the chip's signature, or None.

    Read once per file version and shared by every chip and step that asks."""
    masks = context.get("static_masks", {}) or {}
    rel = masks.get(f"{chip.detector}:{chip.shape[0]}x{chip.shape[1]}")
    if not rel:
        return None
    return read_static_mask(context.abs(rel))


def read_static_mask(path) -> np.ndarray:
    """A static mask file as bool (read-only), read once per file version."""
    def read():
        mask = fits.getdata(path).astype(bool)
        mask.flags.writeable = False
        return mask
    return _STATIC.get(file_identity(path), read)


def write_image(path, data, header=None, extra_hdus=()) -> Path:
    """Write a simple FITS image atomically (float32/uint8/int32 kept as given)."""
    path = Path(path)
    hdu = fits.PrimaryHDU(data=np.ascontiguousarray(data), header=header)
    hdul = fits.HDUList([hdu, *extra_hdus])
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)
    return path


def read_image(path, rows=None) -> np.ndarray:
    """Native-endian float32 copy of a simple FITS image (optionally a row slice)."""
    with fits.open(path, memmap=True) as hdul:
        d = hdul[0].data
        if rows is not None:
            d = d[rows[0]:rows[1]]
        return np.array(d, dtype=np.float32)


def update_file(path, edit) -> None:
    """Rewrite a FITS file atomically after ``edit(hdul)`` changed it in memory.

    Used for the working copies (MDRIZSKY, CR bits); archive files are never
    passed here.
    """
    path = Path(path)
    with fits.open(path, memmap=False) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    edit(hdul)
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, output_verify="silentfix")


def pixmap_for(chip, grid, stepsize: int | None = None) -> np.ndarray:
    """Pixel map (ny, nx, 2) of a chip onto an output grid (default sampling:
    ``pixmap.DEFAULT_STEPSIZE``, 2e-8 px from the full evaluation on WFPC2)."""
    from drizzleflow.steps.drizzle.pixmap import DEFAULT_STEPSIZE, pixmap
    return pixmap(chip.wcs, grid.wcs, chip.shape, DEFAULT_STEPSIZE if stepsize is None else stepsize)


def windowed_map_for(chip, grid, stepsize: int | None = None):
    """The chip's pixel map onto ``grid`` as a :class:`~drizzleflow.steps.drizzle.pixmap.WindowedMap`:
    for outputs drizzled in bands, each band maps only the input pixels that can reach it."""
    from drizzleflow.steps.drizzle.pixmap import DEFAULT_STEPSIZE, WindowedMap
    ny, nx = chip.shape
    return WindowedMap(chip.wcs, grid.wcs, np.arange(nx, dtype=np.float64), np.arange(ny, dtype=np.float64),
                       DEFAULT_STEPSIZE if stepsize is None else stepsize)


class Scratch:
    """Reusable arrays for the pieces of chips a band drizzles: each band needs a
    different box of each chip, and fresh arrays of ever-changing sizes would cost
    page faults (several microseconds per 4 KiB page here) on every band."""

    def __init__(self):
        self._bufs = {}

    def take(self, key, shape, dtype=np.float64) -> np.ndarray:
        """A C-contiguous array of ``shape`` in buffer ``key`` (valid until the next
        ``take`` of that key)."""
        n = int(np.prod(shape))
        buf = self._bufs.get(key)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = self._bufs[key] = np.empty(n, dtype=dtype)
        return buf[:n].reshape(shape)

    def drop(self, key) -> None:
        """Free buffer ``key`` (a later ``take`` allocates it afresh)."""
        self._bufs.pop(key, None)

    def cut(self, key, arr, box) -> np.ndarray:
        """``arr[y0:y1, x0:x1]`` copied into buffer ``key``."""
        y0, y1, x0, x1 = box
        out = self.take(key, (y1 - y0, x1 - x0), arr.dtype)
        np.copyto(out, arr[y0:y1, x0:x1])
        return out

    def weight(self, key, good, box, value) -> np.ndarray:
        """Weight image ``good[y0:y1, x0:x1] * value`` (float32) in buffer ``key``:
        a chip kept for several bands holds its 1-byte mask, not 4-byte weights."""
        y0, y1, x0, x1 = box
        out = self.take(key, (y1 - y0, x1 - x0), np.float32)
        np.multiply(good[y0:y1, x0:x1], np.float32(value), out=out, dtype=np.float32)
        return out


def band_window(wmap, band, pad, scratch=None):
    """Input box ``(y0, y1, x0, x1)`` of a chip for output rows ``band = (y0, y1)`` and
    its pixel map shifted to the band's first row (in ``scratch`` when given); None
    when no drop reaches the band."""
    from .banding import ALIGN
    box = wmap.reach(band[0], band[1] - 1, pad, align=ALIGN)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    pm = wmap.window(*box, out=None if scratch is None else scratch.take("pixmap", (y1 - y0, x1 - x0, 2)))
    if band[0]:
        pm[..., 1] -= band[0]
    return box, pm


def exposure_weight(wt_scl, exptime) -> float:
    """The weight of a good pixel of an exposure (``wt_scl``, AstroDrizzle's
    ``driz_sep_wt_scl`` / ``final_wt_scl``): ``exptime``, ``expsq`` (its square)
    or a number times the exposure time."""
    if wt_scl == "exptime":
        return exptime
    if wt_scl == "expsq":
        return exptime * exptime
    return float(wt_scl) * exptime


def new_drizzle(shape, kernel, fillval, context=True, scratch=None):
    """A running drizzle output from the core (sci, wht, ctx accumulators); with
    ``scratch`` (a :class:`Scratch`) its accumulator lives in the buffer ``"acc"``
    there, reused by the next output made with the same scratch."""
    from drizzleflow.steps.drizzle.core import Drizzle
    shape = tuple(int(n) for n in shape)
    acc = None if scratch is None else scratch.take("acc", (shape[0] * shape[1] * 2,), np.float32)
    return Drizzle(shape, kernel=kernel, fillval=fillval, disable_ctx=not context, acc_buffer=acc)


def add_chip(driz, data, pixmap, *, exptime, weight, pixfrac, pscale_ratio, input_id, threads=None):
    """Drizzle one chip in electrons onto ``driz``; output in e-/s per output pixel.

    ``input_id`` is the 0-based context id; ``threads`` for the core (default
    :func:`core_threads`; the result does not depend on it).
    ``pscale_ratio`` = output scale / chip scale (``s``); the intensity factor
    ``s**2`` keeps total flux: a point source's e-/s summed over output pixels
    equals its e-/s in the input.
    """
    driz.add_image(np.ascontiguousarray(data, dtype=np.float32), pixmap, exptime=float(exptime),
                   weight=np.ascontiguousarray(weight, dtype=np.float32), pixfrac=float(pixfrac),
                   in_units="counts", scale=float(pscale_ratio), input_id=int(input_id),
                   threads=threads or core_threads())


def blot_chip(image, pixmap, *, interp, sinscl, exptime, pscale_ratio, fillval=0.0):
    """Resample an e-/s image on the output grid back onto a chip, in electrons."""
    from drizzleflow.steps.drizzle.core import blot
    return blot(np.ascontiguousarray(image, dtype=np.float32), pixmap, interp=interp, sinscl=float(sinscl),
                exptime=float(exptime), scale=float(pscale_ratio), fillval=float(fillval), threads=core_threads())
