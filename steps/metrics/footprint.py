"""Where each input chip lands in the output frame.

Both metrics need to know which part of a drizzled mosaic belongs to which
WFPC2 chip: ``weight_stats`` measures the weight image in a box centred on
each chip's footprint, and ``psf_fwhm`` labels each star with the chip it
fell on.  A chip's footprint is the quadrilateral of its (inset) corners
mapped through its own WCS to the sky and from the sky to the output pixel
grid; over one chip the WFPC2 distortion bends edges by a few pixels only, so
four corners are enough for labelling and box placement.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

__all__ = ["ChipFootprint", "chip_label", "read_chip_geometry", "footprints_in_output",
           "point_in_quad", "output_pixel_scale"]

log = logging.getLogger("drizzleflow.metrics")

_LABELS = {1: "PC1", 2: "WF2", 3: "WF3", 4: "WF4"}


def chip_label(detector: int) -> str:
    """The name the tutorial uses for a WFPC2 chip (``PC1``, ``WF2`` ...)."""
    return _LABELS.get(int(detector), f"CHIP{int(detector)}")


@dataclass
class ChipFootprint:
    """One chip's outline and centre in output pixel coordinates (0-based)."""

    detector: int
    corners: np.ndarray  # (4, 2) x, y in output pixels, in order around the chip
    centre: tuple        # (x, y) in output pixels

    @property
    def label(self) -> str:
        return chip_label(self.detector)


def output_pixel_scale(wcs: WCS) -> float:
    """Mean output pixel scale in arcsec/pixel of a celestial WCS."""
    from astropy.wcs.utils import proj_plane_pixel_scales
    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)


def read_chip_geometry(sci_path) -> list[tuple[int, tuple[int, int], WCS]]:
    """``(detector, (ny, nx), wcs)`` for every SCI extension of a file.

    The WCS includes lookup-table distortions (``D2IMARR``) and is shared with
    the chain's WCS cache (keyed by the file's identity), because both metric
    steps read the same working copies; callers must not modify it.
    """
    from drizzleflow.steps.chain.common import chip_wcs_for
    from drizzleflow.steps.instruments.wfpc2.reader import chip_geometry
    return [(g.detector, g.shape, g.wcs) for g in chip_geometry(sci_path, wcs_for=chip_wcs_for(sci_path))]


def footprints_in_output(chips, out_wcs: WCS, inset: float = 0.0) -> list[ChipFootprint]:
    """Footprints of chips ``[(detector, (ny, nx), wcs), ...]`` in an output frame.

    When several exposures contribute the same detector, the footprint of the
    first one is used (dithers move it by a few output pixels only).

    Parameters
    ----------
    chips : list of (int, (int, int), astropy.wcs.WCS)
        As returned by :func:`read_chip_geometry`.
    out_wcs : astropy.wcs.WCS
        WCS of the drizzled image.
    inset : float
        Input pixels trimmed from each edge before mapping (the vignetted
        pyramid edges of WFPC2 chips are ~50 pixels wide).
    """
    seen, result = set(), []
    for det, (ny, nx), wcs in chips:
        if det in seen:
            continue
        seen.add(det)
        lo_x, hi_x = inset - 0.5, nx - 0.5 - inset
        lo_y, hi_y = inset - 0.5, ny - 0.5 - inset
        px = np.array([[lo_x, lo_y], [hi_x, lo_y], [hi_x, hi_y], [lo_x, hi_y],
                       [(nx - 1) / 2.0, (ny - 1) / 2.0]])
        sky = wcs.all_pix2world(px, 0)
        out = out_wcs.all_world2pix(sky, 0)
        result.append(ChipFootprint(det, np.asarray(out[:4], float), (float(out[4, 0]), float(out[4, 1]))))
    return sorted(result, key=lambda f: f.detector)


def point_in_quad(x, y, corners) -> np.ndarray:
    """True where points lie inside a convex quadrilateral (either orientation)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    c = np.asarray(corners, float)
    signs = []
    for i in range(len(c)):
        x0, y0 = c[i]
        x1, y1 = c[(i + 1) % len(c)]
        signs.append((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0))
    s = np.stack(signs)
    return np.all(s >= 0, axis=0) | np.all(s <= 0, axis=0)


def chips_from_exposures(context_exposures, abs_path) -> list:
    """Chip geometry of every exposure in an ``exposures`` product."""
    chips = []
    for exp in context_exposures or []:
        p = Path(abs_path(exp["sci"]))
        if p.exists():
            chips.extend(read_chip_geometry(p))
    return chips
