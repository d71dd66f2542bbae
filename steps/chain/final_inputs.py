"""The final drizzle's prepared inputs, kept for the next run.

Changing ``pixfrac`` (or the kernel, fill value, units, weights, product root,
context or band memory) changes nothing the final drizzle prepares from its
inputs: each chip's sky-subtracted data and good-pixel mask, its pixel-map
nodes on the output grid, the grid itself and what the provenance cards say
about the chip.  The step keeps those in ``chain/final_inputs/``
(``keep_inputs``): the data and masks as the band spill writes them (2.6 MB
and 80 kB per WFPC2 chip, 63 MB on M2), the map nodes (a few kB per chip) in
``maps.npz`` and the rest in ``meta.json``.  A rerun whose inputs are
unchanged reads them back instead of opening six exposures, building 24 chip
WCS and evaluating their maps; it need not even import ``astropy.wcs`` (about
0.15 s on its own).  A rerun on another grid (scale, rotation, size) still
reads the chips' pixels from here and only maps them afresh.

"Unchanged" is decided by :func:`inputs_keys`: a data key -- the identity
(device, inode, size, mtime) of every file read (working copies, static and
cosmic-ray masks), the sky values, the DQ bits and whether cosmic-ray masks
are used -- and a grid key (the grid parameters, a reference image's
identity, the map step).  A rerun of an earlier step rewrites the files it
made, so their identities and the keys change with them.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from drizzleflow.engine.atomic import temp_dir, write_text
from drizzleflow.engine.manifest import file_identity
from drizzleflow.engine.recipe import sha256_of
from drizzleflow.steps.drizzle.pixmap import WindowedMap

from .chip_feed import ChipSpill, ExposureInfo, SpilledChip

__all__ = ["KEPT_DIR", "KeptGrid", "KeptInputs", "inputs_keys", "load", "save", "install", "discard",
           "DATA_PARAMS", "GRID_PARAMS"]

#: where the kept inputs live, inside the output folder
KEPT_DIR = ("chain", "final_inputs")
#: bumped whenever what is kept, or how the chips are prepared, changes
FORMAT = 2
#: drizzle_final parameters that decide which pixels of each chip are good, and
#: those that decide the output grid and the maps onto it; none of the others --
#: kernel, pixfrac, fillval, units, root, context, per_chip, band_mb, keep_inputs,
#: and the weights (wht_type, wt_scl: applied to the kept good-pixel masks as the
#: chips are drizzled) -- changes what is kept
DATA_PARAMS = ("bits", "use_crmask")
GRID_PARAMS = ("wcs", "scale", "rot", "outnx", "outny", "ra", "dec", "crpix1", "crpix2", "refimage", "ref_chip",
               "stepsize")


@dataclass(frozen=True)
class KeptGrid:
    """The output grid as far as the drizzle and its products need it, without
    an astropy WCS: shape, scale, orientation, its header text for the
    ``final`` product record and the linear WCS cards of the product headers."""

    shape: tuple
    scale: float
    orientat: float
    product: dict
    wcs_cards: str

    @classmethod
    def of(cls, grid) -> "KeptGrid":
        from .output_wcs import grid_to_product
        from .products import linear_wcs_header
        return cls(tuple(int(v) for v in grid.shape), float(grid.scale), float(grid.orientat),
                   grid_to_product(grid), linear_wcs_header(grid.wcs).tostring())

    def linear_header(self):
        from astropy.io import fits
        return fits.Header.fromstring(self.wcs_cards)


@dataclass
class KeptInputs:
    """Kept inputs read back: a complete spill, the maps, the grid and the
    output rows each chip's outline reaches (grid and reach None, maps empty,
    when they were kept for another grid)."""

    grid: Optional[KeptGrid]
    spill: ChipSpill
    maps: dict
    reach: Optional[list]
    folder: Path

    def rhos(self, scale: float) -> list:
        """Output scale / chip scale of every chip, in input-id order."""
        return [scale / self.spill.meta[u][2].pscale for u in sorted(self.spill.meta)]


def _identity(path) -> list:
    try:
        return list(file_identity(path))
    except OSError:
        return ["missing", str(path)]


def _size(path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def inputs_keys(context, params, recs, static_masks: dict, crmasks: dict) -> tuple[str, str]:
    """``(data key, grid key)``: digests of what the kept pixels depend on (the
    files read, the sky values, the good-pixel parameters) and of what the maps
    and the grid depend on besides (the grid parameters, a reference image)."""
    from drizzleflow import engine
    files = [[r.get("root", ""), _identity(context.abs(r["sci"])), _identity(context.abs(r["dq"]))] for r in recs]
    statics = {sig: _identity(context.abs(p)) for sig, p in sorted(static_masks.items()) if p}
    crs = {root: [_identity(context.abs(p)) for p in paths] for root, paths in sorted(crmasks.items()) if paths}
    data = sha256_of({"format": FORMAT, "software": getattr(engine, "__version__", ""), "files": files,
                    "static": statics, "cr": crs, "sky": context.get("sky", {}) or {},
                    "params": {k: getattr(params, k) for k in DATA_PARAMS}})
    ref = []
    if params.wcs and params.refimage:
        p = Path(params.refimage)
        ref = _identity(p if p.is_absolute() else Path.cwd() / p)
    grid = sha256_of({"data": data, "refimage": ref, "params": {k: getattr(params, k) for k in GRID_PARAMS}})
    return data, grid


def load(context, keys: tuple[str, str], nchips: int) -> Optional[KeptInputs]:
    """The kept inputs of ``keys`` (:func:`inputs_keys`), or None (none kept,
    other inputs, or unreadable).  When only the data key matches (another
    grid), the chips come without grid, maps and reach: the caller maps them.

    Looked for in the output folder, then in the folders this run reuses steps
    from (``reuse_from``: a sweep's baseline point, whose working copies the
    other points share as hard links, so the data key matches for every point
    and the grid key for those on the baseline's grid); those are only read.
    A folder that matches both keys wins over one that matches the data only."""
    found = None
    for folder in [Path(context.outdir)] + [Path(d) for d in context.options.get("reuse_dirs") or []]:
        kept = _load(folder.joinpath(*KEPT_DIR), keys, nchips)
        if kept is not None and kept.grid is not None:
            return kept
        found = found or kept
    return found


def _load(folder: Path, keys: tuple[str, str], nchips: int) -> Optional[KeptInputs]:
    """The kept inputs in ``folder`` if they match, else None -- also when anything
    there is unreadable: a damaged cache costs a rerun its shortcut, nothing else."""
    try:
        return _read(folder, keys, nchips)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None


def _read(folder: Path, keys: tuple[str, str], nchips: int) -> Optional[KeptInputs]:
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != FORMAT or meta.get("data_key") != keys[0] or len(meta["chips"]) != nchips:
        return None
    same_grid = meta.get("grid_key") == keys[1]
    arrays = {}
    if same_grid:
        with np.load(folder / "maps.npz") as z:
            arrays = {name: z[name] for name in z.files}
    g = meta["grid"]
    grid = KeptGrid(tuple(g["shape"]), g["scale"], g["orientat"], g["product"], g["wcs_cards"]) if same_grid else None
    spill = ChipSpill(folder, [])
    maps = {}
    for c in meta["chips"]:
        uid = int(c["uid"])
        info = ExposureInfo(c["exp_root"], Path(c["sci_path"]), c["exp_exptime"], c["exp_photplam"])
        chip = SpilledChip(c["root"], c["extver"], c["detector"], tuple(c["shape"]), None, c["pscale"],
                           c["exptime"], c["rdnoise"], c["wcsname"], c["photflam"], c["photplam"])
        spill.meta[uid] = (info, int(c["k"]), chip)
        npix = int(np.prod(chip.shape))
        if not (c["saved"] and _size(folder / f"{uid}.data") == 4 * npix
                and _size(folder / f"{uid}.good") == (npix + 7) // 8):
            return None   # a chip not kept, or a file lost or cut short: prepare the chips afresh
        spill.saved.add(uid)
        prefix = f"{uid}_"
        nodes = {name[len(prefix):]: a for name, a in arrays.items() if name.startswith(prefix)}
        if nodes:
            maps[uid] = WindowedMap.from_nodes(nodes)
    spill.complete = True
    reach = [tuple(r) for r in meta["reach"]] if same_grid else None
    return KeptInputs(grid, spill, maps, reach, folder)


def save(folder, keys: tuple[str, str], grid, kept_grid: KeptGrid, spill: ChipSpill, maps: dict, reach: list,
         stepsize: int) -> bool:
    """Write ``meta.json`` and ``maps.npz`` beside the spilled chips in ``folder``
    (``grid``: the output grid, to map a chip no band reached; ``kept_grid``: its
    :class:`KeptGrid`); False (nothing written) when a chip's map cannot be kept
    without its WCS."""
    folder = Path(folder)
    arrays, chips = {}, []
    for uid in sorted(spill.meta):
        info, k, chip = spill.meta[uid]
        wmap = maps.get(uid)
        if wmap is None and chip.wcs is not None:
            from .common import windowed_map_for
            wmap = windowed_map_for(chip, grid, stepsize)   # a chip no band reached
        nodes = wmap.nodes() if wmap is not None else None
        if nodes is None:
            return False
        arrays.update({f"{uid}_{name}": a for name, a in nodes.items()})
        chips.append({"uid": uid, "k": k, "exp_root": info.root, "sci_path": str(info.sci_path),
                      "exp_exptime": info.exptime, "exp_photplam": info.photplam, "root": chip.root,
                      "extver": chip.extver, "detector": chip.detector, "shape": list(chip.shape),
                      "pscale": chip.pscale, "exptime": chip.exptime, "rdnoise": chip.rdnoise,
                      "wcsname": chip.wcsname, "photflam": chip.photflam, "photplam": chip.photplam,
                      "saved": uid in spill.saved})
    np.savez(folder / "maps.npz", **arrays)
    meta = {"format": FORMAT, "data_key": keys[0], "grid_key": keys[1], "chips": chips,
            "reach": [list(r) for r in reach],
            "grid": {"shape": list(kept_grid.shape), "scale": kept_grid.scale, "orientat": kept_grid.orientat,
                     "product": kept_grid.product, "wcs_cards": kept_grid.wcs_cards}}
    write_text(folder / "meta.json", json.dumps(meta))   # last: its presence marks a complete folder
    return True


def install(context, folder) -> None:
    """Put a freshly written ``folder`` in the place of the kept inputs."""
    dest = Path(context.outdir, *KEPT_DIR)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        old = temp_dir(dest.parent, "final_inputs_old")
        os.replace(dest, old / "x")
        shutil.rmtree(old, ignore_errors=True)
    os.replace(folder, dest)


def discard(context) -> None:
    """Remove kept inputs that no longer match (a run that keeps none must not leave stale ones)."""
    shutil.rmtree(Path(context.outdir, *KEPT_DIR), ignore_errors=True)
