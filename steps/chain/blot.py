"""Blot: the median resampled back onto every input chip, in electrons with
the sky added back (ALGORITHMS §1.7) — the model the cosmic-ray test compares
each input against.  Output ``chain/blot/<root>_sci<N>_blt.fits``."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from drizzleflow.engine.step import Params, Step

from .common import (blot_chip, exposure_records, load_exposure, pixmap_for, read_image, sky_for,
                     write_image)
from .output_wcs import grid_from_product

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
        stepsize: int = Field(10, ge=0, le=100, description="Pixel-map sampling step (0 = every pixel).")

    def run(self, context, params):
        med = context.get("median")
        if not params.enabled or not med:
            context.put("blots", {})
            return
        grid = grid_from_product(context.get("sep_grid"))
        image = read_image(context.abs(med["path"]))

        def one(rec):
            exp = load_exposure(context, rec)
            paths = []
            for chip in exp.chips:
                pm = pixmap_for(chip, grid, params.stepsize)
                b = blot_chip(image, pm, interp=params.interp, sinscl=params.sinscl,
                              exptime=chip.exptime, pscale_ratio=grid.scale / chip.pscale)
                sky = sky_for(context, chip, "computed") if params.addsky else params.skyval
                b = np.asarray(b, dtype=np.float32) + np.float32(sky)
                h = chip.wcs.to_header(relax=True)
                h["BUNIT"] = "ELECTRONS"
                p = context.path("chain", "blot", f"{exp.root}_sci{chip.extver}_blt.fits")
                write_image(p, b, h)
                paths.append(context.rel(p))
            return exp.root, paths

        blots = dict(context.map(one, exposure_records(context, self.name)))
        context.put("blots", blots)
