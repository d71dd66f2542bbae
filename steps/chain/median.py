"""Median of the single drizzles: a cosmic-ray-free model of the sky
(ALGORITHMS §1.6).  Works in row strips read straight from the single images'
files (each strip's rows of every single into one buffer) so memory stays
bounded by the strips in flight plus the output.

minmed takes its minimum only from the singles that sample a pixel fully at the
finest input scale there (``min_coverage``, default ``minmed.MIN_COVERAGE``;
AstroDrizzle takes it from every unmasked single, which carves holes into
undersampled stars next to masked input pixels).

Units: the single images are e-/s; ``lthresh``/``hthresh`` are in the same
units (AstroDrizzle converts them from native units cumulatively inside its
image loop — not reproduced).  ``hthresh=90000`` therefore keeps the 99999
fill pixels of the tutorial's single drizzles out of a plain median.

Memory: each strip in flight holds the N singles' sci and wht rows plus the
combination's temporaries (~24 bytes per pixel and input for minmed); the
combined strips go to the output file in order as they are done, so no
full-size output image is held (46 MB on the M2 grid).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from astropy.io import fits
from pydantic import Field

from drizzleflow.engine.errors import InputFileError, StepError
from drizzleflow.engine.legacy import FloatPair, OptionalFloat
from drizzleflow.engine.malloc import trim_heap
from drizzleflow.engine.step import Params, Step

from .banding import BandWriter
from .common import THREADS
from .minmed import MIN_COVERAGE, masked_median, minmed

__all__ = ["MedianStep", "combine_strip"]


def combine_strip(sci, wht, singles, params, wmeans):
    """Combine one strip (N, ny, nx) of single drizzles; returns (ny, nx)."""
    bad = np.zeros(sci.shape, dtype=bool)
    for i, wm in enumerate(wmeans):
        bad[i] = wht[i] < params.maskpt * wm
    if params.lthresh is not None:
        bad |= sci < params.lthresh
    if params.hthresh is not None:
        bad |= sci >= params.hthresh
    ct = params.combine_type
    if ct in ("minmed", "iminmed"):
        return minmed(sci, wht, bad, [s["exptime"] for s in singles], [s["bsky"] for s in singles],
                      [s["rdnoise"] for s in singles], nsigma=params.nsigma, grow=params.grow,
                      ignore_masks=(ct == "iminmed"), min_coverage=params.min_coverage)
    med, n = masked_median(sci, bad, params.nlow, params.nhigh)
    if ct == "imedian":
        allbad = n == 0
        if allbad.any():
            med = np.where(allbad, masked_median(sci, np.zeros_like(bad), params.nlow, params.nhigh)[0], med)
    return med


class MedianStep(Step):
    """Combine the single drizzles into a median image (median, minmed, ...)."""

    name = "median"
    reads = ("singles", "sep_grid")
    writes = ("median",)
    aliases = {"median": "enabled", "combine_type": "combine_type", "combine_nsigma": "nsigma",
               "combine_nlow": "nlow", "combine_nhigh": "nhigh", "combine_lthresh": "lthresh",
               "combine_hthresh": "hthresh", "combine_grow": "grow", "combine_maskpt": "maskpt",
               "combine_bufsize": "rows"}

    class Params(Params):
        enabled: bool = Field(True, description="Run the median step.")
        combine_type: Literal["median", "imedian", "minmed", "iminmed"] = Field(
            "minmed", description="median: masked median after dropping nlow/nhigh; minmed: the "
            "minimum where it is significantly below the median (best for 2–6 images); the i- "
            "variants use the unmasked values where every input is masked instead of 0.")
        nsigma: FloatPair = Field([4.0, 3.0], description="minmed thresholds: first test and test "
                                  "next to first-test pixels, in sigma.")
        nlow: int = Field(0, ge=0, le=100, description="Lowest values dropped per pixel (median types).")
        nhigh: int = Field(0, ge=0, le=100, description="Highest values dropped per pixel (median types).")
        lthresh: OptionalFloat = Field(None, description="Values below this (e-/s) are masked.")
        hthresh: OptionalFloat = Field(None, description="Values at or above this (e-/s) are masked; "
                                       "90000 keeps 99999 fill pixels out.")
        grow: int = Field(1, ge=0, le=10, description="minmed: radius (px) around first-test pixels "
                          "where the second threshold applies.")
        maskpt: float = Field(0.3, ge=0, le=1, description="Pixels whose weight is below this fraction "
                              "of the image's mean weight are masked.")
        min_coverage: float = Field(MIN_COVERAGE, ge=0, le=1, description="minmed: a single supplies the "
                                    "minimum only where its weight per second is at least this fraction "
                                    "of the best single's there (partly covered pixels next to masked "
                                    "ones hold a neighbouring patch of sky); 0 = AstroDrizzle, every "
                                    "unmasked single.")
        rows: int = Field(64, ge=8, le=100000, description="Rows per processing strip (memory bound: "
                          "two strips are combined at a time; a strip of 64 rows of 6 singles on the M2 "
                          "grid takes ~31 MB, and fewer rows cost no measurable CPU down to 32).")

    def run(self, context, params):
        singles = context.get("singles")
        if not params.enabled:
            context.put("median", {})
            return
        if len(singles) < 2:
            raise StepError(self.name, f"needs at least 2 exposures, got {len(singles)}; disable "
                            "median, blot and cosmic_rays for a single exposure")
        if params.combine_type in ("median", "imedian") and params.nlow + params.nhigh >= len(singles):
            context.log.warning("nlow + nhigh >= number of images: both are reduced per pixel")
        trim_heap()  # memory the previous step freed
        readers = []
        try:
            for kind in ("sci", "wht"):
                readers.extend(_RowReader(context.abs(s[kind])) for s in singles)
            self._combine(context, params, singles, readers)
        finally:
            for r in readers:
                r.close()

    def _combine(self, context, params, singles, readers):
        n = len(singles)
        ny, nx = readers[0].shape
        for r in readers[1:]:
            if r.shape != (ny, nx):
                raise InputFileError(r.path, f"a single drizzle of {r.shape[1]} x {r.shape[0]} pixels beside "
                                     f"{nx} x {ny} ones: rerun drizzle_separate")
        hdr = readers[0].header.copy()
        pad = params.grow if params.combine_type in ("minmed", "iminmed") else 0
        wmeans = [s["wht_mean"] for s in singles]

        def strip(y0):
            y1 = min(ny, y0 + params.rows)
            a0, a1 = max(0, y0 - pad), min(ny, y1 + pad)
            # every single's rows read straight into one buffer, swapped to native order
            # in place: no per-file array, no stacked copy (half the median's read time)
            rows = np.empty((2 * n, a1 - a0, nx), dtype=">f4")
            for r, out in zip(readers, rows):
                r.read_into(a0, out)
            rows = rows.byteswap(inplace=True).view(np.float32)
            res = combine_strip(rows[:n], rows[n:], singles, params, wmeans)
            return res[y0 - a0:y0 - a0 + (y1 - y0)].copy()   # the strip alone, not its padded parent

        hdr["BUNIT"] = "ELECTRONS/S"
        hdr["COMBTYPE"] = (params.combine_type, "median combination")
        path = context.path("chain", "median_med.fits")
        writer = BandWriter({"med": path}, {"med": hdr}, (ny, nx), {"med": -32})
        try:
            # strips are independent and numpy's sorts release the GIL; finished strips are
            # written in order as they arrive (only the few done ahead of the writer wait)
            with ThreadPoolExecutor(max_workers=THREADS) as pool:
                for res in _bounded_map(pool, strip, range(0, ny, params.rows), ahead=2 * THREADS):
                    writer.write(med=res)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        context.put("median", {"path": context.rel(path)})


def _bounded_map(pool, fn, items, ahead):
    """``pool.map(fn, items)`` with at most ``ahead`` tasks submitted and not yet
    consumed (``Executor.map`` submits every task at once, so results finished
    ahead of a slow consumer would pile up)."""
    from collections import deque
    pending = deque()
    for it in items:
        pending.append(pool.submit(fn, it))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class _RowReader:
    """Rows of a simple float32 FITS image read straight from the file, so
    only the current strip is in memory (a memory map would leave every page
    it touched resident).  Reads at explicit offsets, so threads share it."""

    def __init__(self, path):
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                self.header = hdul[0].header.copy()
                self.offset = hdul[0].fileinfo()["datLoc"]
        except (OSError, ValueError) as exc:
            raise InputFileError(path, f"cannot read this single drizzle ({exc}); rerun drizzle_separate") from None
        if self.header.get("BITPIX") != -32 or self.header.get("NAXIS") != 2:
            raise InputFileError(path, "expected a 2-D float32 image (a single drizzle)")
        self.path = path
        self.shape = (int(self.header["NAXIS2"]), int(self.header["NAXIS1"]))
        self._file = open(path, "rb", buffering=0)
        self._lock = threading.Lock()
        self._pread = getattr(os, "preadv", None)   # none on Windows: seek and read under the lock

    def read_into(self, y0, out):
        """Rows ``y0 ...`` into ``out`` (C-contiguous big-endian float32 rows), as stored."""
        want = out.nbytes
        at = self.offset + 4 * y0 * self.shape[1]
        view = memoryview(out.reshape(-1).view(np.uint8))
        got = 0
        while got < want:   # a read may return less than asked (then: the rest, or 0 at the end)
            if self._pread is not None:
                n = self._pread(self._file.fileno(), [view[got:]], at + got)
            else:   # a lock keeps seek and read together
                with self._lock:
                    self._file.seek(at + got)
                    n = self._file.readinto(view[got:])
            if not n:
                break
            got += n
        if got != want:
            raise InputFileError(self.path, f"cut short: {got} of {want} bytes of rows {y0}.. read; "
                                 "rerun drizzle_separate")

    def close(self):
        self._file.close()
