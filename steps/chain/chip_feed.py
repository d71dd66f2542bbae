"""Chips made ready for the drizzle core.

The final drizzle visits every chip of every exposure once per band of output
rows.  Making a chip ready (reading its exposure, the pixel map onto the
grid, the good-pixel mask from DQ, static and cosmic-ray masks, the weight
image) is numpy and astropy work that holds the GIL only part of the time;
the core releases it, so the caller prepares the next chip while the
:class:`~drizzleflow.steps.drizzle.pipeline.DrizzlePipeline`'s threads
drizzle the last ones.  :class:`ChipFeed` skips the chips (and whole
exposures) whose outline cannot reach the band.

With several bands, the first band keeps what the later ones need of each chip
(its sky-subtracted data and its good-pixel mask) in a :class:`ChipSpill`
on disk: the later bands then read 2.6 MB per chip instead of the whole
exposure again (30 ms and a 32 MB transient per WFPC2 exposure).  Each band
evaluates the pixel map only where the chip can reach it: the map's nodes
are computed once per chip (``WindowedMap``), not once per band.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .banding import drop_reach
from .common import band_window, good_from_bits, load_exposure, pixmap_for, sky_for, windowed_map_for

__all__ = ["ExposureInfo", "ReadyChip", "ChipFeed", "ChipSpill", "SpilledChip", "chip_rows"]


@dataclass(frozen=True)
class ExposureInfo:
    """What the products need to know about a chip's exposure, without its
    pixels: a prepared chip must not keep the other chips of its exposure in
    memory (15 MB per WFPC2 exposure, while the next one is being read)."""

    root: str
    sci_path: object
    exptime: float
    photplam: float = 0.0   # the primary header's PHOTPLAM (a chip's own card wins)

    @classmethod
    def of(cls, exp) -> "ExposureInfo":
        return cls(exp.root, exp.sci_path, float(exp.exptime), _float(exp.primary.get("PHOTPLAM", 0.0)))


@dataclass(frozen=True)
class SpilledChip:
    """The parts of a Chip that a later band (and the products' provenance)
    needs besides its pixels.  ``wcs`` is None for a chip read back from
    the kept inputs (steps/chain/final_inputs.py): its map nodes come with it."""

    root: str
    extver: int
    detector: int
    shape: tuple
    wcs: object
    pscale: float
    exptime: float
    rdnoise: float
    wcsname: str = ""
    photflam: float = 0.0
    photplam: float = 0.0

    @classmethod
    def of(cls, chip, info: Optional[ExposureInfo] = None) -> "SpilledChip":
        hdr = chip.header
        return cls(chip.root, chip.extver, chip.detector, tuple(chip.shape), chip.wcs, chip.pscale,
                   chip.exptime, chip.rdnoise, str(hdr.get("WCSNAME", "")), float(chip.photflam or 0.0),
                   _float(hdr.get("PHOTPLAM", info.photplam if info is not None else 0.0)))


def _float(value) -> float:
    return float(value or 0.0)


class ChipSpill:
    """Sky-subtracted data (float32) and good-pixel mask (packed bits) of the
    chips that later bands need, written during the first band into
    ``directory`` (the caller removes it).  Reading them back gives the same
    bytes, so a band drizzles exactly what it would from the exposure."""

    def __init__(self, directory, wanted, writer=None):
        self.dir, self.wanted = Path(directory), frozenset(int(u) for u in wanted)
        self.meta: dict[int, tuple] = {}   # every chip the first band saw: (info, k, SpilledChip)
        self.saved: set[int] = set()       # ... and those whose pixels were written
        self.complete = False              # set when the first band is done: later bands read from here
        # an executor: the files are written behind the caller, who goes on preparing
        # the next chip (:meth:`flush` waits for them)
        self._writer, self._pending = writer, []

    def note(self, uid, info, k, chip):
        self.meta[uid] = (info, k, SpilledChip.of(chip, info))

    def wants(self, uid) -> bool:
        return uid in self.wanted and uid not in self.saved

    def put(self, uid, data, good):
        """Write a chip's pixels (``data``, ``good`` must not change afterwards)."""
        data = np.ascontiguousarray(data, dtype=np.float32)
        if self._writer is None:
            self._write(uid, data, good)
        else:
            while len(self._pending) >= 2:     # at most two chips' pixels wait for the disk
                self._pending.pop(0).result()
            self._pending.append(self._writer.submit(self._write, uid, data, good))
        self.saved.add(uid)

    def _write(self, uid, data, good):
        data.tofile(self.dir / f"{uid}.data")
        np.packbits(good, axis=None).tofile(self.dir / f"{uid}.good")

    def flush(self):
        """Wait until every chip put is on disk (a write's error is raised here)."""
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def get(self, uid):
        """``(data, good)`` of a spilled chip; ``data`` read-only.

        The data are mapped, not read: the pages the band's box touches are the
        page cache's own, where reading copied each chip once per band (126 MB in a
        pixfrac-only M2 rerun; mapped, the rerun took 1.21 instead of 1.25 s, twelve
        runs each interleaved by hand with a temporary switch, not a committed
        command).  The files are written whole (their sizes are checked when kept
        inputs are taken up) and never rewritten in place -- kept inputs are replaced
        as a folder -- so a mapped file does not shrink under its reader."""
        shape = self.meta[uid][2].shape
        data = np.memmap(self.dir / f"{uid}.data", dtype=np.float32, mode="r", shape=shape)
        bits = np.fromfile(self.dir / f"{uid}.good", dtype=np.uint8)
        good = np.unpackbits(bits, count=shape[0] * shape[1]).view(bool).reshape(shape)
        return data, good


@dataclass
class ReadyChip:
    """One chip of one exposure, prepared for a band (``pixmap is None``: it
    cannot land in the band and nothing else was computed)."""

    exp: ExposureInfo
    k: int                      # chip index in its exposure
    chip: object                # the Chip (its own pixels only)
    uid: int                    # 0-based input id over all chips (the context bit)
    rho: float                  # output scale / chip scale
    sky: float                  # sky subtracted from the data (electrons per pixel)
    box: Optional[tuple] = None  # (y0, y1, x0, x1): the part of the chip that can land in the band
    pixmap: Optional[np.ndarray] = None
    data: Optional[np.ndarray] = None
    weight: Optional[np.ndarray] = None


class ChipFeed:
    """Prepare the chips of ``recs`` for output rows ``[y0, y1)`` of ``grid``.

    ``weight_of(chip, good, rho)`` turns the good-pixel mask into the
    chip's weight image; ``masks(kind, key, path)`` reads (or serves) a static
    or cosmic-ray mask.  ``reach`` are the output rows each chip's outline can
    reach (:func:`chip_rows`, indexed by input id) or None: then every chip is
    prepared.  With ``whole=True`` (a single band covering the grid) the
    whole chip is mapped; otherwise each chip's map is a ``WindowedMap`` kept
    in ``maps`` across the bands, and a band maps and drizzles only the part
    of the chip that can reach it.
    """

    def __init__(self, context, params, grid, recs, band, *, whole: bool, reach, first_uid,
                 static_masks: dict, crmasks: dict, masks: Callable, weight_of: Callable,
                 spill: Optional[ChipSpill] = None, maps: Optional[dict] = None):
        self.context, self.params, self.grid, self.recs = context, params, grid, recs
        self.maps = {} if maps is None else maps   # input id -> WindowedMap, shared by the bands
        self.y0, self.y1 = band
        self.whole, self.reach, self.first_uid = whole, reach, first_uid
        self.static_masks, self.crmasks, self.masks, self.weight_of = static_masks, crmasks, masks, weight_of
        self.spill = spill

    def _pad(self, rho):
        return drop_reach(self.params.pixfrac, rho)

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
            if self.spill is not None and self.spill.complete:
                # a later band: every chip it can reach was spilled by the first band
                for u in range(int(self.first_uid[n]), int(self.first_uid[n + 1])):
                    yield self._prepare_spilled(u)
                continue
            exp = load_exposure(self.context, self.recs[n])
            info, pending = ExposureInfo.of(exp), list(enumerate(exp.chips))
            del exp   # from here each chip lives only as long as its item (and `pending`)
            if self.first_uid is not None:
                uid = int(self.first_uid[n])
            while pending:
                k, chip = pending.pop(0)
                yield self._prepare(info, k, chip, uid)
                del chip
                uid += 1

    def _prepare(self, info, k, chip, uid) -> ReadyChip:
        rho = self.grid.scale / chip.pscale
        item = ReadyChip(info, k, chip, uid, rho, sky_for(self.context, chip, "computed"))
        prepared = None
        if self.spill is not None:
            self.spill.note(uid, info, k, chip)
            if self.spill.wants(uid):
                prepared = self._data_good(info, k, chip, item.sky)
                self.spill.put(uid, *prepared)
        if not self._place(item, chip):
            return item
        data, good = prepared or self._data_good(info, k, chip, item.sky)
        self._fill(item, data, good)
        return item

    def _prepare_spilled(self, uid) -> ReadyChip:
        info, k, chip = self.spill.meta[uid]
        item = ReadyChip(info, k, chip, uid, self.grid.scale / chip.pscale, sky_for(self.context, chip, "computed"))
        if uid not in self.spill.saved or not self._place(item, chip):
            return item   # not saved: its outline reaches no later band
        self._fill(item, *self.spill.get(uid))
        return item

    def _fill(self, item, data, good):
        """Data and weight of the part of the chip the band needs."""
        if item.box is not None:
            y0, y1, x0, x1 = item.box
            data, good = data[y0:y1, x0:x1], good[y0:y1, x0:x1]
        item.data = data
        item.weight = self.weight_of(item.chip, good, item.rho)

    def _place(self, item, chip) -> bool:
        """Pixel map (and box) of ``item`` for the band; False when it cannot land in the band."""
        if not self.reaches(item.uid, item.rho):
            return False
        if self.whole:
            item.pixmap = pixmap_for(chip, self.grid, self.params.stepsize)
        else:
            # only the input pixels that can reach the band are mapped (and drizzled)
            wmap = self.maps.get(item.uid)
            if wmap is None:
                wmap = self.maps[item.uid] = windowed_map_for(chip, self.grid, self.params.stepsize)
            placed = band_window(wmap, (self.y0, self.y1), self._pad(item.rho))
            if placed is None:
                return False
            item.box, item.pixmap = placed
        return True

    def _data_good(self, info, k, chip, sky):
        """Sky-subtracted data and good-pixel mask (DQ ``bits``, static and cosmic-ray masks)."""
        good = good_from_bits(chip.dq, self.params.bits)
        sig = f"{chip.detector}:{chip.shape[0]}x{chip.shape[1]}"
        if self.static_masks.get(sig):
            good &= self.masks("static", sig, self.context.abs(self.static_masks[sig]))
        cm = self.crmasks.get(info.root)
        if cm:
            good &= self.masks("cr", cm[k], self.context.abs(cm[k]))
        return chip.sci - np.float32(sky), good


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
