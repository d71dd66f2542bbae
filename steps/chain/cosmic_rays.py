"""Cosmic-ray identification against the blotted median (ALGORITHMS §1.8), in
electrons throughout (see :mod:`.crdetect` for the deliberate noise-model fix).

Writes, per chip, ``chain/crmask/<root>_sci<N>_crmask.fits`` (uint8, 1 = good,
0 = CR) and sets DQ bit 4096 in the working DQ copy (cleared first, so reruns
are idempotent).  With ``corr: true`` also ``work/<root>_c0m_crclean.fits``:
the working SCI with CR and DQ-flagged pixels replaced by the blot (DN).
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from drizzleflow.engine.legacy import FloatPair
from drizzleflow.engine.malloc import trim_heap
from drizzleflow.engine.step import Params, Step
from drizzleflow.steps.instruments.model import CR_BIT

from drizzleflow.steps.instruments.wfpc2 import patched_copy, write_dq

from .common import exposure_records, load_exposure, read_image, write_image
from .crdetect import cr_mask

__all__ = ["CosmicRaysStep"]


class CosmicRaysStep(Step):
    """Flag cosmic rays by comparing each chip with the blotted median."""

    name = "cosmic_rays"
    reads = ("exposures", "blots")
    writes = ("crmasks", "cr_counts", "crclean")
    aliases = {"driz_cr": "enabled", "driz_cr_snr": "snr", "driz_cr_scale": "scale",
               "driz_cr_grow": "grow", "driz_cr_ctegrow": "ctegrow", "driz_cr_corr": "corr"}

    class Params(Params):
        enabled: bool = Field(True, description="Run the cosmic-ray test.")
        snr: FloatPair = Field([3.5, 3.0], description="Signal-to-noise thresholds of the first "
                               "(strict) and second (neighbour) tests; the tutorial uses '5.5 3.5'.")
        scale: FloatPair = Field([1.2, 0.7], description="Multipliers of the blot's local derivative "
                                 "added to the thresholds (tolerance for misregistered sharp "
                                 "sources); the tutorial uses '2.0 1.5'.")
        grow: int = Field(1, ge=1, le=21, description="Box size (px) over which each CR pixel is grown; "
                          "1 = no growth.")
        ctegrow: int = Field(0, ge=0, le=50, description="Length (px) of the CTE tail masked along "
                             "columns after each CR; 0 = none.")
        corr: bool = Field(False, description="Write CR-cleaned copies of the inputs (*_crclean.fits).")
        cte_dir: int = Field(-1, ge=-1, le=1, description="CTE tail direction: -1 (WFPC2) towards "
                             "larger row numbers, +1 towards smaller, 0 none.")
        legacy_edges: bool = Field(False, description="Reproduce AstroDrizzle's lenient derivative "
                                   "on the last row/column (quickDeriv) instead of clamped edges.")

    def run(self, context, params):
        blots = context.get("blots", {}) or {}
        if not params.enabled or not blots:
            context.put("crmasks", {})
            context.put("cr_counts", {})
            context.put("crclean", [])
            return

        trim_heap()  # memory the previous step freed
        def one(rec):
            exp = load_exposure(context, rec)
            masks, counts, crs = [], [], {}
            for chip, bpath in zip(exp.chips, blots[exp.root]):
                b = read_image(context.abs(bpath))
                good = cr_mask(chip.sci, b, chip.rdnoise, tuple(params.snr), tuple(params.scale),
                               params.grow, params.ctegrow, params.cte_dir, params.legacy_edges)
                p = context.path("chain", "crmask", f"{exp.root}_sci{chip.extver}_crmask.fits")
                write_image(p, good.astype(np.uint8))
                masks.append(context.rel(p))
                counts.append(int((~good).sum()))
                # the CR-cleaned copy needs the blotted values of the bad pixels only: those
                # (a few per cent of the chip) are kept, not the whole blot (2.5 MB a chip)
                if params.corr:
                    bad = ~good | ((chip.dq & np.uint16(~CR_BIT & 0xFFFF)) != 0)
                    crs[chip.extver] = (good, bad, (b[bad] / chip.gain).astype(np.float32))
                else:
                    crs[chip.extver] = (good, None, None)
                del b

            new_dq = {}
            for chip in exp.chips:
                dq = chip.dq & np.uint16(~CR_BIT & 0xFFFF)
                dq[~crs[chip.extver][0]] |= np.uint16(CR_BIT)
                new_dq[chip.extver] = dq
            write_dq(exp.dq_path, new_dq)
            clean = None
            if params.corr:
                clean = context.path("work", f"{exp.root}_c0m_crclean.fits")

                def bad_and_blot(header):
                    """(bad pixels, their blotted values in DN) of a SCI extension, or None."""
                    ev = header.get("EXTVER", 1)
                    if header.get("EXTNAME", "SCI") != "SCI" or ev not in crs:
                        return None
                    return crs[ev][1:]

                def replace(hdul):
                    for h in hdul[1:]:
                        found = None if h.data is None else bad_and_blot(h.header)
                        if found is not None:
                            d = np.array(h.data, dtype=np.float32)
                            d[found[0]] = found[1]
                            h.data = d

                def patch(header, data):
                    found = bad_and_blot(header)
                    if found is not None:
                        data[found[0]] = found[1]

                # the working copy's own bytes with the bad pixels replaced; through astropy
                # only where its SCI data are not plain float32
                if not (all(int(c.header.get("BITPIX", -32)) == -32 for c in exp.chips)
                        and patched_copy(exp.sci_path, clean, patch)):
                    _copy_and_edit(exp.sci_path, clean, replace)
                clean = context.rel(clean)
            return exp.root, masks, counts, clean

        recs = exposure_records(context, self.name)
        if getattr(context.executor, "kind", "serial") == "serial":
            # in-process: two exposures at a time (numpy and file I/O release the GIL)
            from concurrent.futures import ThreadPoolExecutor

            from .common import THREADS
            with ThreadPoolExecutor(max_workers=THREADS) as pool:
                results = list(pool.map(one, recs))
        else:
            results = context.map(one, recs)
        crmasks = {r: m for r, m, _c, _cl in results}
        counts = {r: c for r, _m, c, _cl in results}
        clean = [cl for *_x, cl in results if cl]
        for r, c in counts.items():
            context.log.info("cosmic rays %s: %s pixels flagged per chip", r, c)
        context.put("crmasks", crmasks)
        context.put("cr_counts", counts)
        context.put("crclean", clean)


def _copy_and_edit(src, dest, edit):
    from astropy.io import fits

    from drizzleflow.engine.atomic import atomic_path
    # read everything into memory and edit that in place: the file is closed after
    # readall, so no per-card copy of every header (and of the data) is needed
    with fits.open(src, memmap=False) as hdul:
        hdul.readall()
        edit(hdul)
        with atomic_path(dest) as tmp:
            hdul.writeto(tmp, output_verify="silentfix")
