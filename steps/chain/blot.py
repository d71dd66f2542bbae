"""Blot: the median resampled back onto every input chip, in electrons with
the sky added back (ALGORITHMS §1.7) — the model the cosmic-ray test compares
each input against.  Output ``chain/blot/<root>_sci<N>_blt.fits``."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from drizzleflow.engine.malloc import trim_heap
from drizzleflow.engine.step import Params, Step
from drizzleflow.steps.drizzle.pixmap import DEFAULT_STEPSIZE

from .common import blot_chip, pixmap_for, read_image, sky_for, write_image
from .geometry import gather_geometry
from .output_wcs import PerThreadGrid, grid_from_product

__all__ = ["BlotStep"]


class BlotStep(Step):
    """Resample the median back onto each input chip (electrons, sky added)."""

    name = "blot"
    reads = ("exposures", "median", "sep_grid", "sky")
    writes = ("blots",)
    aliases = {"blot": "enabled", "blot_interp": "interp", "blot_sinscl": "sinscl",
               "blot_addsky": "addsky", "blot_skyval": "skyval"}

    class Params(Params):
        enabled: bool = Field(True, description="Run the blot step.")
        interp: Literal["nearest", "linear", "poly3", "poly5", "sinc", "lanczos3"] = Field(
            "poly5", description="Interpolant used to resample the median.")
        sinscl: float = Field(1.0, gt=0, le=10, description="Scale of the sinc interpolant.")
        addsky: bool = Field(True, description="Add the sky subtracted before drizzling back.")
        skyval: float = Field(0.0, description="Sky (electrons/pixel) added when addsky is false.")
        stepsize: int = Field(DEFAULT_STEPSIZE, ge=0, le=100, description="Pixel-map sampling step: the "
                              "WCS is evaluated every this many pixels and interpolated (0 = every pixel).")

    def run(self, context, params):
        med = context.get("median")
        if not params.enabled or not med:
            context.put("blots", {})
            return
        trim_heap()  # memory the previous step freed
        grid = grid_from_product(context.get("sep_grid"))
        image = read_image(context.abs(med["path"]))

        geoms = gather_geometry(context, self.name)   # WCS and shapes only: no pixel data needed

        grids = PerThreadGrid(grid)

        def mapped(chip):
            return pixmap_for(chip, grids.get(), params.stepsize)

        def resampled(chip, pm):
            b = blot_chip(image, pm, interp=params.interp, sinscl=params.sinscl,
                          exptime=chip.exptime, pscale_ratio=grid.scale / chip.pscale)
            sky = sky_for(context, chip, "computed") if params.addsky else params.skyval
            return np.add(b, np.float32(sky), out=b, dtype=np.float32)

        def written(chip, b):
            h = chip.wcs.to_header(relax=True)
            h["BUNIT"] = "ELECTRONS"
            p = context.path("chain", "blot", f"{chip.root}_sci{chip.extver}_blt.fits")
            write_image(p, b, h)
            return chip.root, context.rel(p)

        if getattr(context.executor, "kind", "serial") == "serial":
            done = _pipelined(geoms, mapped, resampled, written)
        else:
            done = context.map(lambda chip: written(chip, resampled(chip, mapped(chip))), geoms)
        blots: dict = {}
        for root, path in done:
            blots.setdefault(root, []).append(path)
        context.put("blots", blots)


def _pipelined(chips, mapped, resampled, written):
    """``written(c, resampled(c, mapped(c)))`` for every chip, in order, with the
    pixel map of the next chip and the file of the previous one made in a helper
    thread while the core resamples the current chip on all cores.

    The map (astropy's WCS on a sparse grid) and the FITS write hold the GIL and
    would leave a core idle between chips; one chip at a time in the core keeps
    memory at one map, one result in writing and one being made (two whole chips
    at once in the core raised the peak by ~40 MB).
    """
    from concurrent.futures import ThreadPoolExecutor
    out = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="blot_io") as helper:
        writes = []
        nxt = helper.submit(mapped, chips[0]) if chips else None
        try:
            for i, chip in enumerate(chips):
                pm = nxt.result()
                nxt = helper.submit(mapped, chips[i + 1]) if i + 1 < len(chips) else None
                b = resampled(chip, pm)
                del pm
                writes.append(helper.submit(written, chip, b))
                del b
                while writes and writes[0].done():   # errors surface early, results stay in order
                    out.append(writes.pop(0).result())
            out.extend(f.result() for f in writes)
        except BaseException:
            for f in [*writes, nxt]:
                if f is not None:
                    f.cancel()
            raise
    return out
