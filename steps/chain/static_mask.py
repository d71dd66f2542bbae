"""Static mask: pixels far below the sky in any exposure (over-subtracted hot
pixels, dark-current artefacts), one mask per chip signature (ALGORITHMS §1.3)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pydantic import Field

from drizzleflow.engine.step import Params, Step

from .common import THREADS, iter_exposures, write_image
from .imagestats import clipped_stats

__all__ = ["StaticMaskStep", "static_bad"]


def static_bad(data, nsigma: float) -> np.ndarray:
    """Pixels below ``mode - nsigma * sigma`` (3×3σ-clipped statistics, bin 0.1σ).

    Returns an all-False mask when the statistics cannot be computed or the
    mode histogram has a single bin.
    """
    v = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(v)
    try:
        st = clipped_stats(v[finite], nclip=3, lsig=3.0, usig=3.0, binwidth=0.1, fields=("mode",))
    except ValueError:
        return np.zeros(v.shape, dtype=bool)
    if not np.isfinite(st.stddev) or st.stddev <= 0 or (st.max - st.min) < 0.1 * st.stddev:
        return np.zeros(v.shape, dtype=bool)
    return finite & (v < st.mode - nsigma * st.stddev)


class StaticMaskStep(Step):
    """Mask pixels far below the sky in any exposure, per chip signature."""

    name = "static_mask"
    reads = ("exposures",)
    writes = ("static_masks",)
    aliases = {"static": "enabled", "static_sig": "nsigma"}

    class Params(Params):
        enabled: bool = Field(True, description="Build the static mask (AstroDrizzle `static`). When "
                              "false no mask is made and later steps use the DQ arrays only.")
        nsigma: float = Field(4.0, gt=0, le=100, description="Threshold below the clipped mode, in "
                              "units of the clipped sigma (AstroDrizzle `static_sig`).")

    def run(self, context, params):
        masks = {}
        if not params.enabled:
            context.put("static_masks", {})
            return
        good: dict[str, np.ndarray] = {}
        # chips in threads (numpy releases the GIL); masks combined in chip order
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            for _rec, exp in iter_exposures(context, self.name):
                bads = pool.map(lambda c: static_bad(c.sci, params.nsigma), exp.chips)
                for chip, bad in zip(exp.chips, bads):
                    sig = f"{chip.detector}:{chip.shape[0]}x{chip.shape[1]}"
                    good[sig] = ~bad if sig not in good else good[sig] & ~bad
        for sig, g in sorted(good.items()):
            det, shape = sig.split(":")
            path = context.path("chain", "static", f"chip{det}_{shape}_staticMask.fits")
            write_image(path, g.astype(np.uint8))
            masks[sig] = context.rel(path)
            context.log.info("static mask chip %s (%s): %d pixels masked", det, shape, int((~g).sum()))
        context.put("static_masks", masks)
