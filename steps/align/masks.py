"""Masks that keep the source finder away from artefacts.

* Pyramid edges: the WFPC2 pyramid mirror vignettes the first rows and columns
  of every chip; the tutorial's ``edges.py`` zeroes ``[0:y, :]`` and ``[:, 0:x]``.
  Here an ``edges`` block ``{chip: {x: .., y: ..}}`` does the same as a mask.
* DS9 regions (circle, box, ellipse, polygon; fk5/icrs/galactic or image
  coordinates) read with the ``regions`` package.  Every shape in an exclusion
  file excludes (the tutorial's ``wf4_exclude.reg`` semantics).
* The tutorial's ``exclude.list``: ``image reg_chip1 reg_chip2 ...`` with
  ``none``/``INDEF`` for chips without regions; paths relative to the list.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["WFPC2_EDGES", "RegionFileError", "edge_mask", "default_edges",
           "read_regions", "region_mask", "read_exclude_list"]

log = logging.getLogger(__name__)

#: the tutorial's ``edges.py`` boundaries (800x800 chips), by WFPC2 detector
WFPC2_EDGES = {1: {"x": 49, "y": 62}, 2: {"x": 53, "y": 39},
               3: {"x": 39, "y": 53}, 4: {"x": 49, "y": 49}}

_SUPPORTED = ("CirclePixelRegion", "CircleSkyRegion", "RectanglePixelRegion",
              "RectangleSkyRegion", "EllipsePixelRegion", "EllipseSkyRegion",
              "PolygonPixelRegion", "PolygonSkyRegion")


class RegionFileError(ValueError):
    """A region file or string that cannot be used as an exclusion mask."""


def edge_mask(shape, x=0, y=0):
    """Mask (True = excluded) of the first ``x`` columns and ``y`` rows."""
    m = np.zeros(shape, bool)
    if x:
        m[:, :int(x)] = True
    if y:
        m[:int(y), :] = True
    return m


def default_edges(detector, shape):
    """The tutorial's edges for a WFPC2 detector, scaled to the chip size when
    the chip is not 800x800 (simulated sub-arrays keep the same fraction)."""
    e = WFPC2_EDGES.get(int(detector))
    if e is None:
        return {"x": 0, "y": 0}
    fy, fx = shape[0] / 800.0, shape[1] / 800.0
    return {"x": int(round(e["x"] * fx)), "y": int(round(e["y"] * fy))}


def read_regions(source):
    """Parse a DS9 region file path or a region string into a list of regions.

    Raises
    ------
    RegionFileError
        When the file is missing/unreadable or holds a shape other than
        circle, box, ellipse or polygon (the message names the shape).
    """
    from regions import Regions

    text = None
    label = "inline region"
    if isinstance(source, (str, Path)) and "(" not in str(source):
        p = Path(source)
        label = str(p)
        if not p.is_file():
            raise RegionFileError(f"{p}: region file not found")
        text = p.read_text()
    else:
        text = str(source)
    # reject shapes we cannot turn into masks before `regions` silently
    # drops or accepts them
    import re
    for m in re.finditer(r"^\s*[-+]?\s*(?:(?:fk5|icrs|image|physical|galactic|fk4|ecliptic|j2000)\s*;\s*)?"
                         r"([a-z_]+)\s*\(", text, flags=re.I | re.M):
        shape = m.group(1).lower()
        if shape not in ("circle", "box", "ellipse", "polygon"):
            raise RegionFileError(f"{label}: unsupported region shape '{shape}' "
                                  "(use circle, box, ellipse or polygon)")
    try:
        regs = Regions.parse(text, format="ds9")
    except Exception as exc:
        raise RegionFileError(f"{label}: cannot parse DS9 regions ({exc})") from None
    for r in regs:
        if type(r).__name__ not in _SUPPORTED:
            raise RegionFileError(f"{label}: unsupported region shape "
                                  f"'{type(r).__name__}' (use circle, box, ellipse or polygon)")
    return list(regs)


def region_mask(regions, shape, wcs=None):
    """Mask (True = excluded) covered by any of ``regions`` on a chip.

    Sky regions need the chip's ``wcs`` (full distortion is used through
    ``regions``' pixel conversion); pixel regions use DS9's 1-based image
    coordinates, which ``regions`` already converts to 0-based.
    """
    m = np.zeros(shape, bool)
    for r in regions:
        if hasattr(r, "to_pixel") and not hasattr(r, "to_sky"):
            if wcs is None:
                raise RegionFileError("sky-coordinate region needs the chip WCS")
            r = r.to_pixel(wcs)
        rm = r.to_mask(mode="center")
        img = rm.to_image(shape)
        if img is not None:
            m |= img.astype(bool)
    return m


def read_exclude_list(path):
    """Read the tutorial's ``exclude.list``.

    Returns
    -------
    dict
        ``{image_name: [path_or_None per chip in EXTVER order]}``; region paths
        are resolved relative to the list file.
    """
    p = Path(path)
    if not p.is_file():
        raise RegionFileError(f"{p}: exclusion list not found")
    out = {}
    for n, line in enumerate(p.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2:
            raise RegionFileError(f"{p}:{n}: expected 'image region_chip1 ...', got '{line}'")
        chips = []
        for tok in parts[1:]:
            if tok.lower() in ("none", "indef", "''", '""'):
                chips.append(None)
            else:
                rp = Path(tok)
                chips.append(rp if rp.is_absolute() else (p.parent / rp))
        out[parts[0]] = chips
    return out
