"""Separate drizzle: each exposure alone onto a common grid, for the median
(ALGORITHMS §1.5).  Output ``chain/single/<root>_single_sci.fits`` (e-/s) and
``_single_wht.fits`` (exposure-time weights).  Two exposures are drizzled at
once, so that one keeps the cores busy while the other is read or written."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Literal

import numpy as np
from pydantic import Field

from drizzleflow.engine.errors import StepError
from drizzleflow.engine.legacy import Bits, OptionalFloat
from drizzleflow.engine.malloc import trim_heap
from drizzleflow.engine.step import Params, Step

from drizzleflow.steps.drizzle.core import FinishStats
from drizzleflow.steps.drizzle.pixmap import DEFAULT_STEPSIZE

from .common import (Scratch, add_chip, band_window, core_threads, exposure_records, exposure_weight,
                     good_from_bits, load_exposure, new_drizzle, pixmap_for, sky_for, static_mask_for, windowed_map_for)
from .banding import BandWriter, bands, drop_reach
from .chip_feed import SpilledChip
from .geometry import archive_geometry, check_overlap, gather_geometry
from .grid_params import GRID_ALIASES, GridFields, grid_key_files, resolve_grid
from .output_wcs import PerThreadGrid, grid_to_product

__all__ = ["DrizzleSeparateStep"]

#: weights above this count in a single's mean weight, to which the median's
#: ``maskpt`` threshold is relative (AstroDrizzle: ``ImageStats(lower=1e-8)``)
WEIGHT_FLOOR = 1e-8

#: accumulator bytes per output pixel: a float32 (sum, weight) pair (no context
#: image); the singles are streamed to their files in row blocks
ACC_BYTES_PER_PIXEL = 8

#: exposures drizzled at once; ``band_mb`` is shared between them
AT_ONCE = 2

#: output rows per block streamed to the singles' files
FINISH_ROWS = 256


class DrizzleSeparateStep(Step):
    """Drizzle each exposure separately onto a common grid (input to the median)."""

    name = "drizzle_separate"
    reads = ("exposures", "sky", "static_masks")
    writes = ("singles", "sep_grid")
    aliases = {"driz_separate": "enabled", "driz_sep_kernel": "kernel", "driz_sep_pixfrac": "pixfrac",
               "driz_sep_fillval": "fillval", "driz_sep_bits": "bits", "driz_sep_wt_scl": "wt_scl",
               **GRID_ALIASES("driz_sep")}

    @classmethod
    def key_files(cls, params):
        return grid_key_files(params)

    class Params(Params, GridFields):
        enabled: bool = Field(True, description="Run the separate drizzle (needed by median, blot "
                              "and cosmic_rays).")
        kernel: Literal["square", "point", "turbo", "gaussian", "lanczos3"] = Field(
            "turbo", description="Drop kernel. turbo (AstroDrizzle's default here) is fast and exact "
            "for unrotated frames; square is exact for any geometry.")
        pixfrac: float = Field(1.0, gt=0, le=1, description="Linear size of the drop relative to "
                               "the input pixel (1 = whole pixel, the largest).")
        fillval: OptionalFloat = Field(None, description="Value of output pixels with no weight "
                                       "(null: 0). The tutorial uses 99999 to make gaps obvious.")
        bits: Bits = Field(default_factory=list, description="DQ flags treated as good, e.g. '8,1024'; null ignores the DQ array.")
        wt_scl: Literal["exptime", "expsq"] | float = Field(
            "exptime", description="Weight per exposure: exptime, expsq (exptime²) or a number "
            "multiplying the exposure time.")
        stepsize: int = Field(DEFAULT_STEPSIZE, ge=0, le=100, description="Pixel-map sampling step: the "
                              "WCS is evaluated every this many pixels and interpolated (0 = every pixel).")
        band_mb: int = Field(48, ge=8, le=65536, description="Memory (MB) for the output accumulators "
                             "(8 bytes per output pixel), shared by the two exposures drizzled at once: the "
                             "default holds 3 Mpix of each single, so the M2 mosaic at 0.0455\" takes four "
                             "bands. Larger grids are drizzled in bands of rows; each band maps and drizzles "
                             "only the part of a chip that can reach it. The bands change the last float32 "
                             "bit of a few pixels, nothing else.")

    def preflight(self, context, params):
        """Grid size and overlap from the archive headers, before ingest writes its copies
        (it runs these checks while its workers convert)."""
        geoms = archive_geometry(context.inputs)
        if geoms:
            self._checked_grid(context, params, geoms)

    def _checked_grid(self, context, params, geoms):
        grid = resolve_grid(params, geoms, self.name, bool(context.options.get("force", False)))
        problems = check_overlap(geoms, grid)
        if problems:
            raise StepError(self.name, "inputs with no overlap: " + "; ".join(problems) +
                            " (the median and cosmic-ray steps need overlapping exposures)")
        return grid

    def run(self, context, params):
        geoms = gather_geometry(context, self.name)
        grid = self._checked_grid(context, params, geoms)
        context.put("sep_grid", grid_to_product(grid))
        if not params.enabled:
            context.put("singles", [])
            return
        context.log.info("separate drizzle grid %d x %d at %.4f\"/pix", grid.shape[1], grid.shape[0],
                         grid.scale)
        hdr = grid.wcs.to_header()
        recs = exposure_records(context, self.name)

        trim_heap()  # start from what earlier steps freed
        # band_mb is shared by the exposures drizzled at once; the bands depend on the
        # recipe only (not on the cores or the executor), so the singles do too
        row_bands = bands(grid.shape[0], grid.shape[1], max(8, params.band_mb // AT_ONCE),
                          bytes_per_pixel=ACC_BYTES_PER_PIXEL)
        multi = len(row_bands) > 1
        grids = PerThreadGrid(grid)   # exposures drizzled at once map onto their own WCS copies

        def prepare(chip, with_pixmap):
            good = good_from_bits(chip.dq, params.bits)
            sm = static_mask_for(context, chip)
            if sm is not None:
                good &= sm
            data = chip.sci - np.float32(sky_for(context, chip, "computed"))
            if not with_pixmap:
                return SpilledChip.of(chip), data, good, None
            weight = good.astype(np.float32) * np.float32(exposure_weight(params.wt_scl, chip.exptime))
            return chip, data, weight, pixmap_for(chip, grids.get(), params.stepsize)

        def one(rec, scratch=None, threads=None, reading=None):
            # with ``reading`` (a lock) one exposure is read and prepared at a time: the
            # reading holds the GIL anyway, and its 32 MB transient must not come twice
            with reading or nullcontext():
                exp = load_exposure(context, rec)
                root, exptime = exp.root, float(exp.exptime)
                bsky = min(sky_for(context, c, "subtracted") for c in exp.chips)
                rn = float(np.sqrt(np.mean([c.rdnoise ** 2 for c in exp.chips])))
                chips = list(exp.chips)
                del exp   # each chip's pixels (3.75 MB) are freed once it is drizzled or prepared
                # one band: each chip is prepared, drizzled and dropped (its pixel map alone is
                # 10 MB); several bands: the data and good-pixel mask of every chip (3.2 MB) are
                # kept for all of them, the chips' pixels are not, and each band maps only the
                # part of each chip that can reach it (the map's nodes are kept: a few kB, where
                # whole maps would cost 40 MB per WFPC2 exposure)
                if multi:
                    prepared = [prepare(chips.pop(0), with_pixmap=False) for _ in range(len(chips))]
                    maps = [windowed_map_for(chip, grids.get(), params.stepsize) for chip, *_ in prepared]
                    if scratch is None:
                        scratch = Scratch()
                else:
                    prepared = (prepare(chips.pop(0), with_pixmap=True) for _ in range(len(chips)))
            h = hdr.copy()
            h["BUNIT"] = "ELECTRONS/S"
            h["EXPTIME"] = exptime
            p_sci = context.path("chain", "single", f"{root}_single_sci.fits")
            p_wht = context.path("chain", "single", f"{root}_single_wht.fits")
            wstats = FinishStats(floor=WEIGHT_FLOOR)
            writer = None
            try:
                for y0, y1 in row_bands:
                    # the accumulator is reused from band to band (in ``scratch``): zeroing it
                    # costs less than the page faults of a fresh one.  The heap's free pages
                    # (what the last band's windows left) are given back so that they do not
                    # stay resident beside it
                    trim_heap()
                    driz = new_drizzle((y1 - y0, grid.shape[1]), params.kernel, params.fillval, context=False,
                                       scratch=scratch)
                    for i, (chip, data, weight, pm) in enumerate(prepared):
                        rho = grid.scale / chip.pscale
                        if multi:
                            placed = band_window(maps[i], (y0, y1), drop_reach(params.pixfrac, rho), scratch)
                            if placed is None:
                                continue
                            box, pm = placed
                            data = scratch.cut("data", data, box)
                            weight = scratch.weight("weight", weight, box, exposure_weight(params.wt_scl, chip.exptime))
                        add_chip(driz, data, pm, exptime=chip.exptime, weight=weight, pixfrac=params.pixfrac,
                                 pscale_ratio=rho, input_id=i, threads=threads)
                        del chip, data, weight, pm   # not alive while the next chip is prepared
                    if writer is None:
                        writer = BandWriter({"sci": p_sci, "wht": p_wht}, {"sci": h, "wht": h}, grid.shape, {})
                    # streamed in row blocks (no second full-size copy of the single in memory),
                    # big-endian and with the weight statistics from the same pass
                    rows = _row_blocks(scratch, grid.shape[1])
                    for sci, wht, _ in driz.iter_finished(block=FINISH_ROWS, reuse=rows, big_endian=True,
                                                          stats=wstats):
                        writer.write(sci=sci, wht=wht)
                    del driz
                writer.close()
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
            finally:
                if scratch is not None:
                    # not kept while this thread reads its next exposure (with the other
                    # thread's accumulator and reading, ~25 MB of peak memory on M2), nor
                    # after the step (the row blocks would stay resident in the thread's heap)
                    for key in ("acc", "sci_rows", "wht_rows"):
                        scratch.drop(key)
            return {"root": root, "sci": context.rel(p_sci), "wht": context.rel(p_wht),
                    "exptime": exptime, "bsky": float(bsky), "rdnoise": rn, "wht_mean": wstats.mean_above}

        if getattr(context.executor, "kind", "serial") == "serial":
            # AT_ONCE exposures in threads, sharing the cores: while one is read, mapped,
            # finished or written (numpy, astropy and file work that leaves a core idle)
            # the other is drizzled.  Each thread keeps its boxes of data, weight and map
            # in arrays reused by all its exposures (fresh ones cost ~20k page faults on M2).
            # Measured on M2 (four interleaved CLI runs each, 2 cores): the step 1.69-2.01 ->
            # 1.25-1.38 s, the run 6.67-6.88 -> 6.09-6.31 s, peak 218-232 -> 218-222 MiB.
            local, reading = threading.local(), threading.Lock()
            threads = max(1, core_threads() // AT_ONCE)

            def in_thread(rec):
                if not hasattr(local, "scratch"):
                    local.scratch = Scratch()
                return one(rec, local.scratch, threads, reading)

            with ThreadPoolExecutor(max_workers=AT_ONCE, thread_name_prefix="drizzle_separate") as pool:
                futures = [pool.submit(in_thread, rec) for rec in recs]
                try:
                    singles = [f.result() for f in context.progress(futures, desc="drizzle_separate")]
                except BaseException:
                    for f in futures:   # a failed exposure stops the ones not yet started
                        f.cancel()
                    raise
        else:
            singles = context.map(one, recs)
        context.put("singles", list(singles))


def _row_blocks(scratch, nx):
    """Two float32 arrays of ``FINISH_ROWS`` output rows for ``Drizzle.iter_finished``, kept in
    ``scratch`` from band to band (fresh ones cost 7 MB of page faults per band on M2);
    ``True`` (arrays made per band) without a scratch."""
    if scratch is None:
        return True
    return (scratch.take("sci_rows", (FINISH_ROWS * nx,), np.float32),
            scratch.take("wht_rows", (FINISH_ROWS * nx,), np.float32))
