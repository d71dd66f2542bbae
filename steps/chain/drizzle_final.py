"""Final drizzle: every good pixel of every chip onto one output grid
(ALGORITHMS §1.9), written as ``<root>_drz_sci/wht/ctx.fits`` with provenance.

Choices that differ from AstroDrizzle 3.11, on purpose:

* the output is e-/s (``cps``) or e- (``counts``) — never DN/s divided by the
  gain of whichever chip came last;
* ``fillval`` is written exactly as given (AstroDrizzle writes fillval/gain);
  zero-weight pixels hold exactly ``fillval`` (NaN only when ``fillval`` is
  null/INDEF);
* ``wt_scl``: ``exptime`` weights by exposure time, ``expsq`` by its square
  (AstroDrizzle's ``expsq`` silently equals ``exptime``), a number multiplies
  the exposure time;
* ``wht_type: ERR`` is refused: WFPC2 files have no ERR array (AstroDrizzle
  silently falls back to unit weights).
"""
from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Literal

import numpy as np
from astropy.io import fits
from pydantic import Field, field_validator

from drizzleflow.engine.atomic import temp_dir
from drizzleflow.engine.errors import StepError
from drizzleflow.engine.legacy import Bits, OptionalFloat
from drizzleflow.engine.malloc import trim_heap
from drizzleflow.engine.step import Params, Step

from drizzleflow.steps.drizzle.core import FinishStats
from drizzleflow.steps.drizzle.pipeline import DrizzlePipeline
from drizzleflow.steps.drizzle.pixmap import DEFAULT_STEPSIZE

from . import final_inputs
from .chip_feed import ChipFeed, ChipSpill, SpilledChip, chip_rows
from .common import (Scratch, add_chip, core_threads, exposure_records, exposure_weight, new_drizzle, pixmap_for,
                     read_static_mask, sky_for)
from .geometry import archive_geometry, exposure_cells, gather_geometry
from .grid_params import GRID_ALIASES, GridFields, grid_key_files, resolve_grid
from .output_wcs import Grid
from .banding import BandWriter, bands as _bands
from .products import _kind_header, product_header, write_products

__all__ = ["DrizzleFinalStep", "chip_weight"]

ERR_MESSAGE = ("wht_type ERR needs an ERR array, which WFPC2 c0m/c1m data do not have "
               "(AstroDrizzle silently uses unit weights); use EXP (exposure-time weights) or IVM")

#: accumulator bytes per output pixel: float32 (sum, weight) pair and int32 context;
#: the products are streamed to their files in row blocks, so nothing else scales
#: with the grid
ACC_BYTES_PER_PIXEL = 12

#: chips queued or being drizzled at once (steps/drizzle/pipeline.py): two let the
#: next chip's tiles fill the gaps of the last one's
AHEAD = 2

#: the same for a run served by kept chips (no exposure in memory, each chip read
#: back and mapped on this thread while the pipeline works): a third chip keeps the
#: pipeline fed.  Six interleaved pixfrac-only M2 reruns each: the step 1.80 ->
#: 1.64 s (median), the run 2.76 -> 2.35 s, peak 191 -> 198 MiB.  Not for the full
#: run: there a third prepared chip raised the peak to 257 MiB in one of five runs
AHEAD_KEPT = 3

#: dark current used by the automatic IVM weights, e-/s (as AstroDrizzle)
DARK_RATE = 0.005


def chip_weight(good, wht_type, wt_scl, exptime, sky=0.0, rdnoise=0.0, rho=1.0):
    """Weight image of one chip.

    ``EXP``: ``good * exptime`` (× exptime again for ``expsq``, × a number);
    ``IVM``: ``good * exptime**2 / (dark*exptime + sky + rn**2) / rho**4`` — the
    inverse variance of the e-/s data after the ``rho**2`` intensity scaling
    (flat field taken as 1: no flat reference file is used).
    """
    if wht_type == "EXP":
        f = exposure_weight(wt_scl, exptime)
    elif wht_type == "IVM":
        var = DARK_RATE * exptime + max(sky, 0.0) + rdnoise ** 2
        f = exptime ** 2 / var / rho ** 4
        if wt_scl not in ("exptime", "expsq"):
            f *= float(wt_scl)
    else:
        raise ValueError(f"unsupported wht_type {wht_type}")
    # one pass, straight from the mask (no float32 copy of it first): 0 or exactly f
    return np.multiply(good, np.float32(f), dtype=np.float32)


class DrizzleFinalStep(Step):
    """Drizzle all chips onto the final grid: <root>_drz_sci/wht/ctx.fits."""

    name = "drizzle_final"
    reads = ("exposures", "sky", "static_masks", "crmasks")
    writes = ("final",)
    aliases = {"driz_combine": "enabled", "final_wht_type": "wht_type", "final_wt_scl": "wt_scl",
               "final_kernel": "kernel", "final_pixfrac": "pixfrac", "final_fillval": "fillval",
               "final_bits": "bits", "final_units": "units", "context": "context", **GRID_ALIASES("final")}

    @classmethod
    def key_files(cls, params):
        return grid_key_files(params)

    class Params(Params, GridFields):
        enabled: bool = Field(True, description="Run the final drizzle.")
        wht_type: Literal["EXP", "IVM", "ERR"] = Field(
            "EXP", description="Input weights: EXP = exposure time; IVM = inverse variance from sky, "
            "read noise and dark; ERR is refused for WFPC2 (no ERR array).")
        wt_scl: Literal["exptime", "expsq"] | float = Field(
            "exptime", description="EXP weight per exposure: exptime, expsq (exptime²) or a number "
            "times exptime.")
        kernel: Literal["square", "point", "turbo", "gaussian", "lanczos3"] = Field(
            "square", description="Drop kernel; square, turbo and point conserve flux.")
        pixfrac: float = Field(1.0, gt=0, le=1, description="Linear drop size relative to an input "
                               "pixel (0 < pixfrac <= 1: a drop is at most the pixel). Smaller sharpens "
                               "the PSF but makes the weight map noisier.")
        fillval: OptionalFloat = Field(0.0, description="Value of output pixels with zero weight, "
                                      "written exactly as given (null/INDEF: NaN).")
        bits: Bits = Field(default_factory=list, description="DQ flags treated as good, e.g. '8,1024'; null ignores the DQ array.")
        units: Literal["cps", "counts"] = Field("cps", description="Output units: electrons/s or electrons.")
        root: str = Field("final", min_length=1, description="Product root: <root>_drz_sci.fits etc.")
        context: bool = Field(True, description="Write the context image <root>_drz_ctx.fits (bit k-1: "
                              "chip k contributed; AstroDrizzle `context`). A sweep that only measures "
                              "the image and its weights can leave it out: less memory and I/O.")
        per_chip: bool = Field(False, description="Also write one product per detector "
                               "(<root>_chip<N>_drz_*) with that chip's PHOTFLAM (tutorial note IX).")
        use_crmask: bool = Field(True, description="Exclude pixels flagged by the cosmic_rays step.")
        keep_inputs: bool = Field(True, description="Keep the chips as prepared for drizzling (sky-"
                                  "subtracted data, good-pixel masks, map nodes: 63 MB on M2) in "
                                  "chain/final_inputs/, so that a rerun changing only pixfrac, kernel, "
                                  "fillval, units, weights, root, context or band_mb reads them instead "
                                  "of the exposures (a new grid reuses their pixels and maps them "
                                  "afresh). Not with per_chip.")
        stepsize: int = Field(DEFAULT_STEPSIZE, ge=0, le=100, description="Pixel-map sampling step: the "
                              "WCS is evaluated every this many pixels and interpolated (0 = every pixel).")
        band_mb: int = Field(48, ge=8, le=65536, description="Memory (MB) for the output accumulators "
                             "(12 bytes per output pixel: the default holds a 4-Mpix grid; the M2 mosaic "
                             "at 0.0455\" takes three bands). Larger outputs are drizzled in bands of "
                             "rows, each written as soon as it is done: less memory, pixels equal to a "
                             "single pass but for the last float32 bit of some; each band maps and "
                             "drizzles only the part of a chip that can reach it. A rerun served by "
                             "kept inputs (no exposure in memory) takes two band accumulators, to write "
                             "one band while the next is drizzled.")

        @field_validator("wht_type")
        @classmethod
        def _no_err_for_wfpc2(cls, v):
            if v == "ERR":
                raise ValueError(ERR_MESSAGE)
            return v

    # -- validation that must happen before any work -------------------
    def _check(self, params):
        if params.wht_type == "ERR":
            raise StepError(self.name, ERR_MESSAGE)

    def preflight(self, context, params):
        """Parameters, grid size and grid coverage from the archive headers, before ingest
        writes its copies (it runs these checks while its workers convert)."""
        self._check(params)
        geoms = archive_geometry(context.inputs)
        if params.enabled and geoms:
            self._checked_grid(context, params, geoms)

    def _checked_grid(self, context, params, geoms):
        grid = resolve_grid(params, geoms, self.name, bool(context.options.get("force", False)))
        if not any(exposure_cells(geoms, grid).values()):
            raise StepError(self.name, "no input chip falls on the output grid (check ra/dec, "
                            "outnx/outny or refimage)")
        return grid  # overlap between exposures is drizzle_separate's concern

    def run(self, context, params):
        self._check(params)
        if not params.enabled:
            context.put("final", {})
            return
        t0 = time.monotonic()
        trim_heap()  # the largest step: start from what earlier steps freed
        recs = exposure_records(context, self.name)
        fill = np.nan if params.fillval is None else float(params.fillval)
        crmasks = (context.get("crmasks", {}) or {}) if params.use_crmask else {}
        static_masks = context.get("static_masks", {}) or {}
        # input id of each exposure's first chip (records without chip counts: unknown)
        first_uid = np.cumsum([0] + [int(r.get("nchips") or 0) for r in recs])
        keep = params.keep_inputs and not params.per_chip and 0 < first_uid[-1] <= 32
        keys = kept = None
        if keep:
            keys = final_inputs.inputs_keys(context, params, recs, static_masks, crmasks)
            kept = final_inputs.load(context, keys, int(first_uid[-1]))
        elif not params.per_chip:
            final_inputs.discard(context)   # none kept: none left stale either
        # a run that reuses another folder's steps (a sweep point) reads the kept chips
        # of that folder (the baseline's) when they match, but keeps none of its own:
        # nothing would read them (writing them cost a seven-point sweep 0.2-0.7 s)
        write_kept = keep and kept is None and not context.options.get("reuse_dirs")
        # ``frame``: the grid as the products and the summary need it (no astropy WCS);
        # ``grid`` (with its WCS) only when the chips are mapped here
        if kept is not None and kept.grid is not None:
            grid = geoms = None
            frame, rhos = kept.grid, kept.rhos(kept.grid.scale)
            context.log.info("final: chips as prepared by an earlier run read back from %s (inputs unchanged)",
                             context.rel(kept.folder))
        else:
            geoms = gather_geometry(context, self.name)
            grid = self._checked_grid(context, params, geoms)
            frame, rhos = final_inputs.KeptGrid.of(grid), [grid.scale / g.pscale for g in geoms]
            if kept is not None:
                if len(geoms) != len(kept.spill.meta):
                    kept = None
                else:
                    # pixels kept for another grid: read back, mapped afresh with the chips' WCS
                    kept.spill.meta = {u: (info, k, replace(chip, wcs=geoms[u].wcs))
                                       for u, (info, k, chip) in kept.spill.meta.items()}
                    context.log.info("final: chips' pixels read back from %s (kept for another grid)",
                                     context.rel(kept.folder))
        nchips_all = len(rhos)
        if first_uid[-1] != nchips_all:
            first_uid, write_kept = None, False   # every band visits every chip; nothing kept
        ny, nx = frame.shape

        per_chip = _SingleChipProducts(params, grid, geoms, fill) if params.per_chip else None
        acc_bytes = ACC_BYTES_PER_PIXEL if params.context else ACC_BYTES_PER_PIXEL - 4   # no int32 context
        bands = (_bands(ny, nx, params.band_mb, bytes_per_pixel=acc_bytes)
                 if per_chip is None and nchips_all <= 32 else [(0, ny)])
        # output rows each chip's outline can reach, so that a band skips the chips --
        # and the exposures -- that cannot land in it without reading them; the exact
        # test is on each chip's map nodes (WindowedMap.reach)
        reach = None
        if kept is not None and kept.reach is not None:
            reach = kept.reach
        elif (len(bands) > 1 or write_kept) and first_uid is not None:
            reach = chip_rows(geoms, grid)
        prov = _Provenance(params, frame, crmasks)
        feed_args = dict(static_masks=static_masks, crmasks=crmasks, maps=kept.maps if kept is not None else {},
                         masks=_read_mask, weight_of=lambda chip, good, rho: chip_weight(
                             good, params.wht_type, params.wt_scl, chip.exptime,
                             sky_for(context, chip, "subtracted"), chip.rdnoise, rho))
        out = spill = writer = spill_writer = None
        installed = False
        # one accumulator for every band (zeroed pages, not fresh ones); a run served by
        # kept chips holds no exposure, so it takes a second one and writes each band
        # while the next is drizzled (the drizzle threads idled 0.12-0.18 s of a
        # pixfrac-only M2 rerun through the writes; peak 181-190 MiB, the full run's 220-236)
        overlap = kept is not None and len(bands) > 1
        ahead = AHEAD_KEPT if kept is not None else AHEAD
        scratches = [Scratch(), Scratch()] if overlap else [Scratch()]
        written = [None] * len(scratches)   # the write of the band each accumulator last held
        try:
            if kept is not None:
                spill = kept.spill   # complete: every band reads its chips from there
            elif reach is not None:
                # what the later bands need of each chip (every chip, when the inputs
                # are kept for the next run) is written to disk by the first band
                feeds = [ChipFeed(context, params, grid, recs, b, whole=False, reach=reach, first_uid=first_uid,
                                  **feed_args) for b in bands[1:]]
                later = [u for u in range(nchips_all) if write_kept or any(f.reaches(u, rhos[u]) for f in feeds)]
                # written by a thread of its own: the first band is paced by the chips'
                # preparation on this thread, of which the writes were 0.13 s on M2
                spill_writer = ThreadPoolExecutor(1, thread_name_prefix="drizzle-final-spill")
                spill = ChipSpill(temp_dir(context.outdir, "drizzle_final_bands"), later, writer=spill_writer)
            if overlap:
                writer = ThreadPoolExecutor(1, thread_name_prefix="drizzle-final-write")
            for bi, band in enumerate(bands):
                slot = bi % len(scratches)
                if written[slot] is not None:
                    written[slot].result()   # this accumulator's last band is in its files
                    written[slot] = None
                feed = ChipFeed(context, params, frame if grid is None else grid, recs, band,
                                whole=reach is None, reach=reach, first_uid=first_uid, spill=spill, **feed_args)
                todo = feed.exposures(rhos) if bi else list(range(len(recs)))
                driz = new_drizzle((band[1] - band[0], nx), params.kernel, fill, context=params.context,
                                   scratch=scratches[slot])
                desc = "drizzle_final" if len(bands) == 1 else f"drizzle_final band {bi + 1}/{len(bands)}"
                nchips = nchips_all if first_uid is None else int(sum(first_uid[n + 1] - first_uid[n] for n in todo))
                # chips are queued as they come; the next chip's tiles start while this one's
                # last finish (steps/drizzle/pipeline.py: same bits as one chip at a time)
                with DrizzlePipeline(driz, threads=core_threads(), ahead=ahead) as pipe:
                    for item in context.progress(_paced(feed.chips(todo), pipe), desc=desc, total=nchips):
                        if item.pixmap is not None:
                            add_chip(pipe, item.data, item.pixmap, exptime=item.chip.exptime, weight=item.weight,
                                     pixfrac=params.pixfrac, pscale_ratio=item.rho, input_id=item.uid)
                        if bi == 0:
                            entry = prov.add(item)
                            if per_chip is not None:
                                per_chip.add(item, entry)
                        del item
                if bi == 0:
                    if spill is not None:
                        spill.flush()   # every chip on disk before a later band reads one
                        spill.complete = True
                    # with a writer thread the product header (~30 ms of astropy cards) is built
                    # there, at the first band's write, while this thread starts the next band
                    header = partial(prov.header, context) if writer is not None else prov.header(context)
                    out = _ProductWriter(context.outdir, params, frame.shape, header, fill, prov.texp)
                if writer is not None:
                    written[slot] = writer.submit(out.write, driz)   # bands reach the files in order
                else:
                    out.write(driz)
                del driz
                # no trim_heap() here: what this band's chips freed is what the next band's
                # chips and context plane reuse (given back, it came back as fresh pages:
                # final 1.37 -> 1.31 s over ten interleaved M2 runs, a rerun 1.30-1.36 ->
                # 1.27-1.30 s; the peak did not move, 215 MiB on average either way)
            for w in written:
                if w is not None:
                    w.result()
            paths = out.close()
            if write_kept and spill is not None:
                installed = _keep_inputs(context, keys, grid, frame, spill, feed_args["maps"], reach,
                                         params.stepsize)
        except BaseException:
            if writer is not None:
                writer.shutdown(wait=True, cancel_futures=True)   # no write under the abort's feet
            if out is not None:
                out.abort()   # no partial products left behind
            raise
        finally:
            for pool in (writer, spill_writer):
                if pool is not None:
                    pool.shutdown(wait=True)
            if spill is not None and kept is None and not installed:
                shutil.rmtree(spill.dir, ignore_errors=True)
        product = {"sci": context.rel(paths["sci"]), "wht": context.rel(paths["wht"]),
                   "ctx": context.rel(paths["ctx"]) if "ctx" in paths else None, "grid": frame.product,
                   "units": params.units, "fillval": params.fillval, "chips": {}, "bands": len(bands)}
        if per_chip is not None:
            product["chips"] = per_chip.write(context, prov)
        context.put("final", product)
        self._summary(context, frame, out.zero_weight, fill, time.monotonic() - t0, len(bands))

    def _summary(self, context, grid, nzero, fill, seconds, nbands):
        log = context.log
        log.info("final: %d x %d pixels at %.4f\"/pix, rot %.2f deg; %d zero-weight pixels = %s; "
                 "%d band(s); %.1f s", grid.shape[1], grid.shape[0], grid.scale, grid.orientat, nzero, fill,
                 nbands, seconds)
        counts = context.get("cr_counts", {}) or {}
        for root, c in counts.items():
            log.info("  CR pixels flagged %s: %d (%s per chip)", root, sum(c), ", ".join(map(str, c)))


def _keep_inputs(context, keys, grid, frame, spill, maps, reach, stepsize) -> bool:
    """Keep the prepared chips for the next run (steps/chain/final_inputs.py); a
    failure costs the next rerun its shortcut, not this run its products."""
    try:
        if not final_inputs.save(spill.dir, keys, grid, frame, spill, maps, reach, stepsize):
            context.log.info("final: the chips' maps need their WCS (2-D D2IM table); inputs not kept")
            return False
        final_inputs.install(context, spill.dir)
        return True
    except (OSError, ValueError) as exc:   # disk full, a folder in the way, a map that will not save
        context.log.warning("final: could not keep the prepared inputs for the next run: %s", exc)
        return False


def _paced(chips, pipe):
    """Each chip is prepared (read, masked, mapped) only once the pipeline has room
    for it: at most ``ahead`` (``AHEAD``, ``AHEAD_KEPT``) chips are in memory, queued,
    running or being prepared."""
    while True:
        pipe.wait_for_room()
        item = next(chips, None)
        if item is None:
            return
        yield item


def _finish(driz, params, fill, texp):
    sci, wht, ctx = driz.finish()   # fresh float32 arrays owned by us
    sci = np.asarray(sci, dtype=np.float32)
    wht = np.asarray(wht, dtype=np.float32)
    if ctx is not None:
        ctx = np.asarray(ctx)
        if ctx.ndim == 3 and ctx.shape[0] == 1:
            ctx = ctx[0]
    if params.units == "counts":
        sci *= np.float32(texp)
    sci[wht <= 0] = np.float32(fill)
    return sci, wht, None if ctx is None else ctx.astype(np.int32, copy=False)


class _ProductWriter:
    """``<root>_drz_sci/wht/ctx.fits`` band after band, streamed in row blocks
    straight from the accumulators (no second full-size copy of the output);
    with more than 32 inputs the context is a cube of bit planes, written whole
    (one band)."""

    def __init__(self, outdir, params, shape, header, fill, texp):
        self.outdir, self.params, self.shape, self.header = outdir, params, shape, header
        self.fill, self.texp = fill, texp
        self.zero_weight = 0
        self._writer, self._paths = None, None

    def write(self, driz):
        p = self.params
        if callable(self.header):   # built on first use (a writer thread's first band)
            self.header = self.header()
        if driz.out_ctx is not None and driz.out_ctx.shape[0] > 1:
            sci, wht, ctx = _finish(driz, p, self.fill, self.texp)
            self.zero_weight += int((wht <= 0).sum())
            self._paths = write_products(self.outdir, p.root, sci, wht, ctx, self.header)
            return
        if self._writer is None:
            kinds = ("sci", "wht", "ctx") if p.context else ("sci", "wht")
            names = {k: self.outdir / f"{p.root}_drz_{k}.fits" for k in kinds}
            # around the page cache: nothing in the run reads the products again
            self._writer = BandWriter(names, {k: _kind_header(self.header, k) for k in names}, self.shape,
                                      {"sci": -32, "wht": -32, "ctx": 32}, direct=True)
        # the band's accumulators are dropped after this: its context rows are
        # byte-swapped in place on their way to the file (the image blocks come
        # big-endian out of the finishing pass).  The context goes to its file from
        # a second thread while this one finishes and writes the sci and wht rows:
        # nothing else runs during a full run's band writes (0.07-0.13 s per band on M2)
        stats = FinishStats()
        ctx = driz.out_ctx
        with ThreadPoolExecutor(1, thread_name_prefix="drizzle-final-ctx") as side:
            ctx_done = None if ctx is None else side.submit(self._write_plane, ctx[0])
            for sci, wht, _ in driz.iter_finished(scale=self.texp if p.units == "counts" else 1.0, reuse=True,
                                                  big_endian=True, stats=stats):
                self._writer.write(sci=sci, wht=wht)
            if ctx_done is not None:
                ctx_done.result()
        self.zero_weight += stats.nzero

    def _write_plane(self, plane, block=256):
        for r0 in range(0, plane.shape[0], block):
            self._writer.write(ctx=plane[r0:r0 + block])

    def close(self) -> dict:
        return self._writer.close() if self._writer is not None else self._paths

    def abort(self):
        if self._writer is not None:
            self._writer.abort()


def _read_mask(kind, key, path):
    """A static or cosmic-ray mask as a bool array.  The few static masks (one
    per chip signature, 4 on M2) come from the cache the sky step filled; each
    cosmic-ray mask is read when its chip is prepared (once: later bands read
    the spilled chips), as keeping all of them held 0.64 MB per chip (15 MB on
    M2) through the whole step."""
    if kind == "static":
        return read_static_mask(path)
    return fits.getdata(path).astype(bool)


class _Provenance:
    """What the product headers say about the inputs (DrizzlePac's D###*
    cards per chip, total exposure time, mean PHOTFLAM/PHOTPLAM), collected
    while the first band is drizzled."""

    def __init__(self, params, grid, crmasks):
        self.params, self.grid, self.crmasks = params, grid, crmasks
        self.entries, self.photflams, self.photplams = [], [], []
        self.texp, self.nexp = 0.0, 0

    def add(self, item) -> dict:
        """Record one chip; returns its provenance entry."""
        p, exp = self.params, item.exp
        chip = item.chip if isinstance(item.chip, SpilledChip) else SpilledChip.of(item.chip, exp)
        if item.k == 0:
            self.texp += exp.exptime
            self.nexp += 1
        masks = self.crmasks.get(exp.root)
        self.entries.append({
            "data": f"{exp.sci_path.name}[sci,{chip.extver}]", "exptime": chip.exptime,
            "ouda": f"{p.root}_drz_sci.fits", "ouwe": f"{p.root}_drz_wht.fits",
            "ouco": f"{p.root}_drz_ctx.fits" if p.context else "",
            "wtscl": _wtscl_value(p.wt_scl), "kernel": p.kernel, "pixfrac": p.pixfrac, "units": p.units,
            "fillval": "INDEF" if p.fillval is None else str(p.fillval), "bits": str(sum(p.bits or [])),
            "wcsname": chip.wcsname, "sky": item.sky, "outscale": self.grid.scale,
            "inscale": chip.pscale, "mask": masks[item.k] if masks else ""})
        if chip.photflam:
            self.photflams.append(chip.photflam)
        if chip.photplam:
            self.photplams.append(chip.photplam)
        return self.entries[-1]

    def common(self, context):
        p = self.params
        return dict(units=p.units, exptime_total=self.texp, ncombine=self.nexp,
                    recipe_hash=str(context.options.get("recipe_sha256") or context.options.get("recipe_hash") or ""),
                    bunit="ELECTRONS/S" if p.units == "cps" else "ELECTRONS")

    def header(self, context):
        return product_header(self.grid, self.entries, photflam=_mean(self.photflams),
                              photplam=_mean(self.photplams), root=self.params.root, **self.common(context))


class _SingleChipProducts:
    """``per_chip``: one product per detector on the part of the grid its chips
    cover (tutorial note IX: photometry per chip), with that detector's PHOTFLAM."""

    def __init__(self, params, grid, geoms, fill):
        self.params, self.fill = params, fill
        self.grids = {det: _subgrid(grid, [g for g in geoms if g.detector == det])
                      for det in sorted({g.detector for g in geoms})}
        self.driz = {d: new_drizzle(sg.shape, params.kernel, fill, context=params.context)
                     for d, sg in self.grids.items()}
        self.entries = {d: [] for d in self.grids}
        self.phot = {d: ([], []) for d in self.grids}

    def add(self, item, entry):
        """Drizzle one chip (prepared for the whole grid) onto its detector's product."""
        p, chip, det = self.params, item.chip, item.chip.detector
        if det not in self.driz:
            return
        sg = self.grids[det]
        add_chip(self.driz[det], item.data, pixmap_for(chip, sg, p.stepsize), exptime=chip.exptime,
                 weight=item.weight, pixfrac=p.pixfrac, pscale_ratio=sg.scale / chip.pscale,
                 input_id=len(self.entries[det]))
        root = f"{p.root}_chip{det}"
        self.entries[det].append(dict(entry, ouda=f"{root}_drz_sci.fits", ouwe=f"{root}_drz_wht.fits",
                                      ouco=f"{root}_drz_ctx.fits" if p.context else ""))
        facts = SpilledChip.of(chip, item.exp)
        if facts.photflam:
            self.phot[det][0].append(facts.photflam)
        if facts.photplam:
            self.phot[det][1].append(facts.photplam)

    def write(self, context, prov):
        out = {}
        for det, d in self.driz.items():
            s2, w2, c2 = _finish(d, self.params, self.fill, prov.texp)
            root = f"{self.params.root}_chip{det}"
            h2 = product_header(self.grids[det], self.entries[det], photflam=_mean(self.phot[det][0]),
                                photplam=_mean(self.phot[det][1]), root=root, **prov.common(context))
            out[str(det)] = {k: context.rel(v) for k, v in
                             write_products(context.outdir, root, s2, w2, c2, h2).items()}
        return out


def _mean(v):
    return float(np.mean(v)) if len(v) else 0.0


def _wtscl_value(wt_scl):
    return 1.0 if wt_scl in ("exptime", "expsq") else float(wt_scl)


def _subgrid(grid: Grid, geoms) -> Grid:
    """The part of ``grid`` covering the given chips (same WCS, shifted CRPIX)."""
    from .output_wcs import footprint
    xs, ys = [], []
    for g in geoms:
        fp = footprint(g.wcs, g.shape)
        x, y = grid.wcs.all_world2pix(fp[:, 0], fp[:, 1], 0)
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    x0 = max(0, int(np.floor(x.min() + 0.5)))
    y0 = max(0, int(np.floor(y.min() + 0.5)))
    x1 = min(grid.shape[1], int(np.ceil(x.max() + 0.5)))
    y1 = min(grid.shape[0], int(np.ceil(y.max() + 0.5)))
    w = grid.wcs.deepcopy()
    w.wcs.crpix = [w.wcs.crpix[0] - x0, w.wcs.crpix[1] - y0]
    w.wcs.set()
    return Grid(w, (max(1, y1 - y0), max(1, x1 - x0)))

