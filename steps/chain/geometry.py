"""Light chip geometry (WCS, shape, scale) gathered without keeping pixel data,
and the overlap test between exposures on an output grid."""
from __future__ import annotations

import numpy as np

from drizzleflow.engine.manifest import file_identity
from drizzleflow.steps.instruments.model import ChipGeom
from drizzleflow.steps.instruments.wfpc2.reader import chip_geometry

from .common import IdentityCache

__all__ = ["ChipGeom", "gather_geometry", "archive_geometry", "exposure_cells", "check_overlap"]


def gather_geometry(context, step) -> list[ChipGeom]:
    """Geometry of every chip of every exposure, in input order (headers and
    WCS only: no pixel data is read; WCS objects and parsed headers shared with
    load_exposure)."""
    from .common import LAYOUTS, chip_wcs_for, exposure_records
    out = []
    for rec in exposure_records(context, step):
        path = context.abs(rec["sci"])
        out.extend(chip_geometry(path, rec.get("root"), chip_wcs_for(path), layouts=LAYOUTS))
    return out


#: archive geometry by file identity (device, inode, size, mtime): the preflight
#: of drizzle_separate and of drizzle_final read the same inputs; shared read-only
_ARCHIVE = IdentityCache(64)


def _archive_chips(path) -> list[ChipGeom]:
    return _ARCHIVE.get(file_identity(path), lambda: chip_geometry(path))


def archive_geometry(paths) -> list[ChipGeom]:
    """Chip geometry straight from the archive inputs' headers, for checks made
    before any step runs (the old-format linear WCS is good to a few pixels,
    plenty for a grid-size bound and an overlap test).  Waivered ``c0f`` files
    and unreadable ones are skipped here: ingest reports those properly.
    Cached per file identity (treat the result as read-only)."""
    out = []
    for path in paths:
        try:
            out.extend(_archive_chips(path))
        except (OSError, ValueError, KeyError):
            continue
    return out


def exposure_cells(geoms, grid, sample=25, cell=16) -> dict[str, set]:
    """Coarse output cells covered by each exposure (sampled chip pixels)."""
    cells: dict[str, set] = {}
    for g in geoms:
        ny, nx = g.shape
        yy, xx = np.mgrid[0:ny:sample, 0:nx:sample]
        ra, dec = g.wcs.all_pix2world(xx.ravel().astype(float), yy.ravel().astype(float), 0)
        x, y = grid.wcs.all_world2pix(ra, dec, 0)
        inside = (x >= -0.5) & (x < grid.shape[1] - 0.5) & (y >= -0.5) & (y < grid.shape[0] - 0.5)
        ids = (np.floor((y[inside] + 0.5) / cell).astype(np.int64) * 100000
               + np.floor((x[inside] + 0.5) / cell).astype(np.int64))
        cells.setdefault(g.root, set()).update(ids.tolist())
    return cells


def check_overlap(geoms, grid) -> list[str]:
    """Problems: exposures off the grid, or sharing no sky with any other."""
    cells = exposure_cells(geoms, grid)
    roots = list(dict.fromkeys(g.root for g in geoms))
    problems = []
    for r in roots:
        if not cells.get(r):
            problems.append(f"{r} does not fall on the output grid")
    if len(roots) > 1:
        for r in roots:
            if cells.get(r) and not any(cells[r] & cells.get(o, set()) for o in roots if o != r):
                problems.append(f"{r} overlaps no other exposure")
    return problems
