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

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from astropy.io import fits
from pydantic import Field, field_validator

from drizzleflow.engine.errors import StepError
from drizzleflow.engine.legacy import Bits, OptionalFloat
from drizzleflow.engine.step import Params, Step

from drizzleflow.steps.drizzle.pixmap import DEFAULT_STEPSIZE

from .common import (add_chip, clear_cache, exposure_records, finish_rows, good_from_bits, load_exposure,
                     new_drizzle, pixmap_for, sky_for, trim_heap)
from .geometry import archive_geometry, exposure_cells, gather_geometry
from .grid_params import GRID_ALIASES, GridFields, resolve_grid
from .output_wcs import Grid, grid_to_product
from .banding import BandWriter, bands as _bands, region as _region
from .products import _kind_header, product_header, write_products

__all__ = ["DrizzleFinalStep", "chip_weight"]

ERR_MESSAGE = ("wht_type ERR needs an ERR array, which WFPC2 c0m/c1m data do not have "
               "(AstroDrizzle silently uses unit weights); use EXP (exposure-time weights) or IVM")

#: accumulator bytes per output pixel: float32 (sum, weight) pair and int32 context;
#: the products are streamed to their files in row blocks, so nothing else scales
#: with the grid
ACC_BYTES_PER_PIXEL = 12

#: dark current used by the automatic IVM weights, e-/s (as AstroDrizzle)
DARK_RATE = 0.005


def chip_weight(good, wht_type, wt_scl, exptime, sky=0.0, rdnoise=0.0, rho=1.0):
    """Weight image of one chip.

    ``EXP``: ``good * exptime`` (× exptime again for ``expsq``, × a number);
    ``IVM``: ``good * exptime**2 / (dark*exptime + sky + rn**2) / rho**4`` — the
    inverse variance of the e-/s data after the ``rho**2`` intensity scaling
    (flat field taken as 1: no flat reference file is used).
    """
    g = np.asarray(good, dtype=np.float32)
    if wht_type == "EXP":
        if wt_scl == "exptime":
            f = exptime
        elif wt_scl == "expsq":
            f = exptime * exptime
        else:
            f = float(wt_scl) * exptime
        return g * np.float32(f)
    if wht_type == "IVM":
        var = DARK_RATE * exptime + max(sky, 0.0) + rdnoise ** 2
        f = exptime ** 2 / var / rho ** 4
        if wt_scl not in ("exptime", "expsq"):
            f *= float(wt_scl)
        return g * np.float32(f)
    raise ValueError(f"unsupported wht_type {wht_type}")


class DrizzleFinalStep(Step):
    """Drizzle all chips onto the final grid: <root>_drz_sci/wht/ctx.fits."""

    name = "drizzle_final"
    reads = ("exposures", "sky", "static_masks", "crmasks")
    writes = ("final",)
    aliases = {"driz_combine": "enabled", "final_wht_type": "wht_type", "final_wt_scl": "wt_scl",
               "final_kernel": "kernel", "final_pixfrac": "pixfrac", "final_fillval": "fillval",
               "final_bits": "bits", "final_units": "units", **GRID_ALIASES("final")}

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
        per_chip: bool = Field(False, description="Also write one product per detector "
                               "(<root>_chip<N>_drz_*) with that chip's PHOTFLAM (tutorial note IX).")
        use_crmask: bool = Field(True, description="Exclude pixels flagged by the cosmic_rays step.")
        stepsize: int = Field(DEFAULT_STEPSIZE, ge=0, le=100, description="Pixel-map sampling step: the "
                              "WCS is evaluated every this many pixels and interpolated (0 = every pixel).")
        band_mb: int = Field(320, ge=8, le=65536, description="Memory (MB) for the output accumulators "
                             "(12 bytes per output pixel: the default holds a 26-Mpix grid, e.g. the M2 "
                             "mosaic at 0.032\"). Larger outputs are drizzled in bands of rows, each "
                             "written as soon as it is done (same pixels, less memory, but inputs are "
                             "re-read and pixel maps recomputed per band).")

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
        if params.fillval is not None and not np.isfinite(params.fillval):
            pass  # NaN/inf asked for explicitly

    def preflight(self, context, params):
        """Parameters, grid size and grid coverage from the archive headers, before ingest runs."""
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
        clear_cache()  # the largest step: keep only what it needs in memory
        geoms = gather_geometry(context, self.name)
        grid = self._checked_grid(context, params, geoms)
        crmasks = (context.get("crmasks", {}) or {}) if params.use_crmask else {}
        recs = exposure_records(context, self.name)

        # per-detector sub-grids for single-chip products
        subgrids = {}
        if params.per_chip:
            for det in sorted({g.detector for g in geoms}):
                subgrids[det] = _subgrid(grid, [g for g in geoms if g.detector == det])

        fill = np.nan if params.fillval is None else float(params.fillval)
        ny, nx = grid.shape
        nchips = len(geoms)
        bands = (_bands(ny, nx, params.band_mb, bytes_per_pixel=ACC_BYTES_PER_PIXEL)
                 if not subgrids and nchips <= 32 else [(0, ny)])
        chip_driz = {d: new_drizzle(sg.shape, params.kernel, fill) for d, sg in subgrids.items()}
        entries, chip_entries = [], {d: [] for d in subgrids}
        photflams, photplams, chip_phot = [], [], {}
        texp, nexp = 0.0, 0
        sci_name = f"{params.root}_drz_sci.fits"
        writer = None
        zero_w = 0
        # output rows each chip can reach (from its outline), so a band skips the
        # chips -- and the exposures -- that cannot land in it without computing
        # their pixel maps; the exact test is still region() on the pixel map
        rows = _chip_rows(geoms, grid) if len(bands) > 1 else None
        first_uid = np.cumsum([0] + [int(r.get("nchips") or 0) for r in recs])
        if rows is not None and first_uid[-1] != len(rows):
            rows = None   # records without chip counts: no skipping
        masks_read: dict = {}

        def mask(kind, key, path):
            # static and CR masks are used by every band: read once (one band: no need to keep them)
            if len(bands) == 1:
                return fits.getdata(path).astype(bool)
            if (kind, key) not in masks_read:
                masks_read[(kind, key)] = fits.getdata(path).astype(bool)
            return masks_read[(kind, key)]

        try:
            for bi, (y0, y1) in enumerate(bands):
                first = bi == 0

                def reaches(uid0, rho):
                    if rows is None:
                        return True
                    lo, hi = rows[uid0]
                    pad = 3.0 * params.pixfrac / rho + 3.0 + 2.0
                    return hi > y0 - pad and lo < y1 - 1 + pad

                todo = [n for n in range(len(recs)) if first or rows is None
                        or any(reaches(u, grid.scale / geoms[u].pscale) for u in range(first_uid[n], first_uid[n + 1]))]
                driz = new_drizzle((y1 - y0, nx), params.kernel, fill)
                # one worker thread reads the exposures and prepares the next chip (pixel
                # map, weights) while the core (GIL released) drizzles this one
                pool = ThreadPoolExecutor(max_workers=1)
                state: dict = {}

                def prep(n, k, uid0, y0=y0, y1=y1, reaches=reaches):
                    if state.get("n") != n:
                        state["n"], state["exp"] = None, None
                        state["exp"] = load_exposure(context, recs[n], False)
                        state["n"] = n
                    exp = state["exp"]
                    chip = exp.chips[k]
                    rho = grid.scale / chip.pscale
                    sky = sky_for(context, chip, "computed")
                    item = {"exp": exp, "chip": chip, "rho": rho, "sky": sky, "region": False}
                    if not reaches(uid0 + k, rho):
                        return item
                    pm = pixmap_for(chip, grid, params.stepsize)
                    region = None
                    if len(bands) > 1:
                        pm[..., 1] -= y0
                        region = _region(pm, y1 - y0, pad=3.0 * params.pixfrac / rho + 3.0)
                    item["region"] = region
                    if region is False:
                        return item
                    good = good_from_bits(chip.dq, params.bits)
                    sig = f"{chip.detector}:{chip.shape[0]}x{chip.shape[1]}"
                    sm_rel = (context.get("static_masks", {}) or {}).get(sig)
                    if sm_rel:
                        good &= mask("static", sig, context.abs(sm_rel))
                    cm = crmasks.get(exp.root)
                    if cm:
                        good &= mask("cr", cm[k], context.abs(cm[k]))
                    item["pm"] = pm
                    item["data"] = chip.sci - np.float32(sky)
                    item["w"] = chip_weight(good, params.wht_type, params.wt_scl, chip.exptime,
                                            sky_for(context, chip, "subtracted"), chip.rdnoise, rho)
                    return item

                uid_run = 0
                desc = "drizzle_final" if len(bands) == 1 else f"drizzle_final band {bi + 1}/{len(bands)}"
                nxt = pool.submit(prep, todo[0], 0, int(first_uid[todo[0]]) if rows is not None else 0) if todo else None
                for i, n in enumerate(context.progress(todo, desc=desc)):
                    uid = int(first_uid[n]) if rows is not None else uid_run
                    uid0 = uid
                    k = 0
                    while True:
                        item = nxt.result()
                        exp, chip = item["exp"], item["chip"]
                        if k + 1 < len(exp.chips):
                            nxt = pool.submit(prep, n, k + 1, uid0)
                        elif i + 1 < len(todo):
                            m = todo[i + 1]
                            nxt = pool.submit(prep, m, 0, int(first_uid[m]) if rows is not None else uid0 + k + 1)
                        if k == 0 and first:
                            texp += exp.exptime
                            nexp += 1
                        masks = crmasks.get(exp.root)
                        uid += 1
                        rho, sky, region = item["rho"], item["sky"], item["region"]
                        if region is not False:
                            data, w = item["data"], item["w"]
                            add_chip(driz, data, item["pm"], exptime=chip.exptime, weight=w, pixfrac=params.pixfrac,
                                     pscale_ratio=rho, input_id=uid - 1, region=region or None)
                        del item
                        last = k + 1 >= len(exp.chips)
                        if not first:
                            k += 1
                            if last:
                                break
                            continue
                        entry = {"data": f"{exp.sci_path.name}[sci,{chip.extver}]", "exptime": chip.exptime,
                                 "ouda": sci_name, "ouwe": f"{params.root}_drz_wht.fits",
                                 "ouco": f"{params.root}_drz_ctx.fits", "wtscl": _wtscl_value(params.wt_scl),
                                 "kernel": params.kernel, "pixfrac": params.pixfrac, "units": params.units,
                                 "fillval": "INDEF" if params.fillval is None else str(params.fillval),
                                 "bits": str(sum(params.bits or [])),
                                 "wcsname": str(chip.header.get("WCSNAME", "")),
                                 "sky": sky, "outscale": grid.scale, "inscale": chip.pscale,
                                 "mask": masks[k] if masks else ""}
                        entries.append(entry)
                        if chip.photflam:
                            photflams.append(chip.photflam)
                        plam = float(chip.header.get("PHOTPLAM", exp.primary.get("PHOTPLAM", 0.0)) or 0.0)
                        if plam:
                            photplams.append(plam)
                        if chip.detector in chip_driz:
                            sg = subgrids[chip.detector]
                            pm2 = pixmap_for(chip, sg, params.stepsize)
                            m = len(chip_entries[chip.detector]) + 1
                            add_chip(chip_driz[chip.detector], data, pm2, exptime=chip.exptime, weight=w,
                                     pixfrac=params.pixfrac, pscale_ratio=sg.scale / chip.pscale, input_id=m - 1)
                            e2 = dict(entry, ouda=f"{params.root}_chip{chip.detector}_drz_sci.fits",
                                      ouwe=f"{params.root}_chip{chip.detector}_drz_wht.fits",
                                      ouco=f"{params.root}_chip{chip.detector}_drz_ctx.fits")
                            chip_entries[chip.detector].append(e2)
                            chip_phot.setdefault(chip.detector, ([], []))
                            if chip.photflam:
                                chip_phot[chip.detector][0].append(chip.photflam)
                            if plam:
                                chip_phot[chip.detector][1].append(plam)
                        k += 1
                        if last:
                            break
                    uid_run = uid
                    del exp
                pool.shutdown()
                if first:
                    common = dict(units=params.units, exptime_total=texp, recipe_hash=str(
                        context.options.get("recipe_sha256") or context.options.get("recipe_hash") or ""),
                        ncombine=nexp, bunit="ELECTRONS/S" if params.units == "cps" else "ELECTRONS")
                    hdr = product_header(grid, entries, photflam=_mean(photflams), photplam=_mean(photplams),
                                         root=params.root, **common)
                if driz.out_ctx.shape[0] > 1:
                    # more than 32 inputs: the context is a cube of bit planes, written whole
                    sci, wht, ctx = _finish(driz, params, fill, texp)
                    zero_w += int((wht <= 0).sum())
                    paths = write_products(context.outdir, params.root, sci, wht, ctx, hdr)
                    del sci, wht, ctx
                else:
                    # streamed in row blocks: no second full-size copy of the output
                    if writer is None:
                        names = {k: context.outdir / f"{params.root}_drz_{k}.fits" for k in ("sci", "wht", "ctx")}
                        writer = BandWriter(names, {k: _kind_header(hdr, k) for k in names}, (ny, nx),
                                            {"sci": -32, "wht": -32, "ctx": 32})
                    for sci, wht, ctx in finish_rows(driz, scale=texp if params.units == "counts" else 1.0):
                        zero_w += int((wht <= 0).sum())
                        writer.write(sci=sci, wht=wht, ctx=ctx)
                del driz
                trim_heap()   # the next band's accumulators reuse this band's pages
        except BaseException:
            if writer is not None:
                writer.abort()   # no partial products left behind
            raise
        if writer is not None:
            paths = writer.close()
        product = {"sci": context.rel(paths["sci"]), "wht": context.rel(paths["wht"]),
                   "ctx": context.rel(paths["ctx"]), "grid": grid_to_product(grid),
                   "units": params.units, "fillval": params.fillval, "chips": {}, "bands": len(bands)}
        for det, d in chip_driz.items():
            s2, w2, c2 = _finish(d, params, fill, texp)
            r2 = f"{params.root}_chip{det}"
            h2 = product_header(subgrids[det], chip_entries[det], photflam=_mean(chip_phot.get(det, ([], []))[0]),
                                photplam=_mean(chip_phot.get(det, ([], []))[1]), root=r2, **common)
            p2 = write_products(context.outdir, r2, s2, w2, c2, h2)
            product["chips"][str(det)] = {k: context.rel(v) for k, v in p2.items()}
        context.put("final", product)
        self._summary(context, grid, zero_w, fill, time.monotonic() - t0, len(bands))

    def _summary(self, context, grid, nzero, fill, seconds, nbands):
        log = context.log
        log.info("final: %d x %d pixels at %.4f\"/pix, rot %.2f deg; %d zero-weight pixels = %s; "
                 "%d band(s); %.1f s", grid.shape[1], grid.shape[0], grid.scale, grid.orientat, nzero, fill,
                 nbands, seconds)
        counts = context.get("cr_counts", {}) or {}
        for root, c in counts.items():
            log.info("  CR pixels flagged %s: %d (%s per chip)", root, sum(c), ", ".join(map(str, c)))


def _finish(driz, params, fill, texp):
    sci, wht, ctx = driz.finish()   # fresh float32 arrays owned by us
    sci = np.asarray(sci, dtype=np.float32)
    wht = np.asarray(wht, dtype=np.float32)
    ctx = np.asarray(ctx)
    if ctx.ndim == 3 and ctx.shape[0] == 1:
        ctx = ctx[0]
    if params.units == "counts":
        sci *= np.float32(texp)
    sci[wht <= 0] = np.float32(fill)
    return sci, wht, ctx.astype(np.int32, copy=False)


def _chip_rows(geoms, grid):
    """(lowest, highest) output row each chip's outline reaches on ``grid``;
    unbounded when the outline cannot be placed on the grid."""
    from .output_wcs import footprint
    out = []
    for g in geoms:
        fp = footprint(g.wcs, g.shape, nedge=64)
        try:
            with np.errstate(invalid="ignore"):
                _x, y = grid.wcs.all_world2pix(fp[:, 0], fp[:, 1], 0, quiet=True)
            y = np.asarray(y, dtype=float)
        except Exception:  # noqa: BLE001 - no convergence far off the grid: keep the chip
            y = np.array([np.nan])
        out.append((float(y.min()), float(y.max())) if np.isfinite(y).all() else (-np.inf, np.inf))
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

