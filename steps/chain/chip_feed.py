"""Chips made ready for the drizzle core, one ahead in a worker thread.

The final drizzle visits every chip of every exposure once per band of output
rows.  Making a chip ready (reading its exposure, the pixel map onto the
grid, the good-pixel mask from DQ, static and cosmic-ray masks, the weight
image) is numpy and astropy work that holds the GIL only part of the time;
the core releases it.  :class:`ChipFeed` therefore prepares the next chip in
a worker thread while the caller drizzles the current one, and skips the
chips (and whole exposures) whose outline cannot reach the band.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .banding import region as band_region
from .common import good_from_bits, load_exposure, pixmap_for, sky_for

__all__ = ["ReadyChip", "ChipFeed", "chip_rows", "one_ahead"]

_END = object()


def one_ahead(iterable):
    """Iterate ``iterable`` in a worker thread, one item ahead of the consumer."""
    it = iter(iterable)
    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(next, it, _END)
        while True:
            item = nxt.result()
            if item is _END:
                return
            nxt = pool.submit(next, it, _END)
            yield item


@dataclass
class ReadyChip:
    """One chip of one exposure, prepared for a band (``region is False``: it
    cannot land in the band and nothing else was computed)."""

    exp: object
    k: int                      # chip index in its exposure
    uid: int                    # 0-based input id over all chips (the context bit)
    rho: float                  # output scale / chip scale
    sky: float                  # sky subtracted from the data (electrons per pixel)
    region: object = False      # None: the whole chip; a dict of xmin/xmax/ymin/ymax; False: skip
    pixmap: Optional[np.ndarray] = None
    data: Optional[np.ndarray] = None
    weight: Optional[np.ndarray] = None

    @property
    def chip(self):
        return self.exp.chips[self.k]


class ChipFeed:
    """Prepare the chips of ``recs`` for output rows ``[y0, y1)`` of ``grid``.

    ``weight_of(chip, good, rho)`` turns the good-pixel mask into the
    chip's weight image; ``masks(kind, key, path)`` reads (or serves) a static
    or cosmic-ray mask.  ``reach`` are the output rows each chip's outline can
    reach (:func:`chip_rows`, indexed by input id) or None: then every chip is
    prepared.  With ``whole=True`` (a single band covering the grid) no
    sub-region is computed.
    """

    def __init__(self, context, params, grid, recs, band, *, whole: bool, reach, first_uid,
                 static_masks: dict, crmasks: dict, masks: Callable, weight_of: Callable):
        self.context, self.params, self.grid, self.recs = context, params, grid, recs
        self.y0, self.y1 = band
        self.whole, self.reach, self.first_uid = whole, reach, first_uid
        self.static_masks, self.crmasks, self.masks, self.weight_of = static_masks, crmasks, masks, weight_of

    def _pad(self, rho):
        # a drop reaches pixfrac/rho output pixels beyond its centre (plus the kernel's margin)
        return 3.0 * self.params.pixfrac / rho + 3.0

    def reaches(self, uid, rho) -> bool:
        if self.reach is None:
            return True
        lo, hi = self.reach[uid]
        pad = self._pad(rho) + 2.0
        return hi > self.y0 - pad and lo < self.y1 - 1 + pad

    def exposures(self, rhos) -> list[int]:
        """Exposures with at least one chip that can reach the band (all without ``reach``)."""
        if self.reach is None:
            return list(range(len(self.recs)))
        return [n for n in range(len(self.recs))
                if any(self.reaches(u, rhos[u]) for u in range(self.first_uid[n], self.first_uid[n + 1]))]

    def chips(self, todo):
        """Yield a :class:`ReadyChip` per chip of the exposures ``todo``, in order."""
        uid = 0
        for n in todo:
            exp = load_exposure(self.context, self.recs[n], False)
            if self.first_uid is not None:
                uid = int(self.first_uid[n])
            for k, chip in enumerate(exp.chips):
                yield self._prepare(exp, k, chip, uid)
                uid += 1

    def _prepare(self, exp, k, chip, uid) -> ReadyChip:
        rho = self.grid.scale / chip.pscale
        item = ReadyChip(exp, k, uid, rho, sky_for(self.context, chip, "computed"))
        if not self.reaches(uid, rho):
            return item
        pm = pixmap_for(chip, self.grid, self.params.stepsize)
        if not self.whole:
            pm[..., 1] -= self.y0
            item.region = band_region(pm, self.y1 - self.y0, pad=self._pad(rho))
            if item.region is False:
                return item
        else:
            item.region = None
        good = good_from_bits(chip.dq, self.params.bits)
        sig = f"{chip.detector}:{chip.shape[0]}x{chip.shape[1]}"
        if self.static_masks.get(sig):
            good &= self.masks("static", sig, self.context.abs(self.static_masks[sig]))
        cm = self.crmasks.get(exp.root)
        if cm:
            good &= self.masks("cr", cm[k], self.context.abs(cm[k]))
        item.pixmap = pm
        item.data = chip.sci - np.float32(item.sky)
        item.weight = self.weight_of(chip, good, rho)
        return item


def chip_rows(geoms, grid):
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
