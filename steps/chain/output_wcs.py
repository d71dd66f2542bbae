"""Output grids for the drizzle steps: the AstroDrizzle default and custom frames.

Default (ALGORITHMS §1.2): a north-agnostic tangent-plane frame whose pixel
scale and orientation are those of a *reference chip* (by default the first
chip of the first exposure — for WFPC2 the PC, 0.0455″; tutorial note III),
centred on the mid-point of all chip footprints and just large enough to hold
them.  Custom frames change the scale, the rotation (PA of +Y, degrees east of
north), the size, the tangent point or copy a reference image's WCS.

A grid travels between steps as a JSON-serialisable dict
``{"header": <WCS header text>, "shape": [ny, nx]}`` (:func:`grid_to_product`).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["Grid", "PerThreadGrid", "orientat", "footprint", "default_grid", "custom_grid", "grid_from_image",
           "grid_to_product", "grid_from_product", "check_size", "MAX_PIXELS"]

#: output grids larger than this (20k × 20k) need ``force``
MAX_PIXELS = 20000 * 20000


@dataclass
class Grid:
    """A linear TAN output frame and its shape (ny, nx)."""

    wcs: WCS
    shape: tuple[int, int]

    @property
    def scale(self) -> float:
        """Pixel scale in arcsec."""
        return float(math.sqrt(abs(np.linalg.det(self.wcs.pixel_scale_matrix))) * 3600.0)

    @property
    def orientat(self) -> float:
        return orientat(self.wcs)

    def linear_header(self) -> fits.Header:
        """The linear TAN WCS cards of the products made on this grid."""
        from .products import linear_wcs_header
        return linear_wcs_header(self.wcs)


class PerThreadGrid:
    """An output grid with one copy of its WCS per thread (wcslib objects are not
    shared between threads); pickles to Dask workers as the grid alone."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self._local = threading.local()

    def get(self) -> Grid:
        if not hasattr(self._local, "grid"):
            self._local.grid = Grid(self.grid.wcs.deepcopy(), self.grid.shape)
        return self._local.grid

    def __getstate__(self):
        return {"grid": self.grid}

    def __setstate__(self, state):
        self.__init__(state["grid"])


def orientat(wcs: WCS) -> float:
    """Position angle of the image +Y axis, degrees east of north."""
    cd = wcs.pixel_scale_matrix
    return float(np.degrees(np.arctan2(cd[0, 1], cd[1, 1])))


def _cd(scale_arcsec: float, rot_deg: float, flipped: bool) -> np.ndarray:
    s = scale_arcsec / 3600.0
    c, n = math.cos(math.radians(rot_deg)), math.sin(math.radians(rot_deg))
    if flipped:
        return s * np.array([[c, n], [-n, c]])
    return s * np.array([[-c, n], [n, c]])


def footprint(wcs: WCS, shape, nedge: int = 8) -> np.ndarray:
    """Sky positions (deg, shape (M, 2)) sampled along the outer edges of a chip,
    through the full distortion model."""
    ny, nx = shape
    t = np.linspace(0.0, 1.0, nedge + 1)
    x0, x1, y0, y1 = -0.5, nx - 0.5, -0.5, ny - 0.5
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 - (y1 - y0) * t])
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    return np.column_stack([ra, dec])


def _midpoint(radec: np.ndarray) -> tuple[float, float]:
    ra, dec = np.radians(radec[:, 0]), np.radians(radec[:, 1])
    v = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]).mean(axis=0)
    lon = math.degrees(math.atan2(v[1], v[0])) % 360.0
    lat = math.degrees(math.atan2(v[2], math.hypot(v[0], v[1])))
    return lon, lat


def _tan(crval, cd, crpix=(1.0, 1.0)) -> WCS:
    from astropy.wcs import WCS
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.cd = np.asarray(cd)
    w.wcs.crpix = list(crpix)
    w.wcs.set()
    return w


def _bounding(crval, cd, radec) -> Grid:
    w = _tan(crval, cd)
    x, y = w.all_world2pix(radec[:, 0], radec[:, 1], 0)
    xmin, xmax, ymin, ymax = x.min(), x.max(), y.min(), y.max()
    nx = int(math.ceil(xmax - xmin - 1e-6))
    ny = int(math.ceil(ymax - ymin - 1e-6))
    w = _tan(crval, cd, (0.5 - xmin + (nx - (xmax - xmin)) / 2, 0.5 - ymin + (ny - (ymax - ymin)) / 2))
    return Grid(w, (max(ny, 1), max(nx, 1)))


def default_grid(chips, ref=None, scale=None, rot=None, ra=None, dec=None) -> Grid:
    """The default output frame of a list of chips (objects with ``wcs``,
    ``shape``, ``pscale``).

    Parameters
    ----------
    chips : sequence of Chip
    ref : Chip, optional
        Reference chip for scale and orientation; default the first chip.
    scale : float, optional
        Pixel scale (arcsec); default the reference chip's nominal ``pscale``.
    rot : float, optional
        PA of +Y (deg E of N); default the reference chip's orientation.
    ra, dec : float, optional
        Tangent point; default the mid-point of all footprints.
    """
    chips = list(chips)
    if not chips:
        raise ValueError("no chips to build an output grid from")
    ref = ref or chips[0]
    radec = np.concatenate([footprint(c.wcs, c.shape) for c in chips])
    crval = _midpoint(radec) if ra is None or dec is None else (float(ra), float(dec))
    s = float(scale) if scale else float(ref.pscale)
    r = orientat(ref.wcs) if rot is None else float(rot)
    flipped = np.linalg.det(ref.wcs.pixel_scale_matrix) > 0
    return _bounding(crval, _cd(s, r, flipped), radec)


def custom_grid(base: Grid, outnx=None, outny=None, crpix1=None, crpix2=None) -> Grid:
    """Impose a size (and optionally CRPIX) on a frame, keeping its tangent
    point, scale and orientation; CRPIX defaults to the centre."""
    if outnx is None and outny is None:
        return base
    if outnx is None or outny is None:
        raise ValueError("outnx and outny must be given together")
    w = base.wcs.deepcopy()
    w.wcs.crpix = [crpix1 if crpix1 is not None else (outnx + 1) / 2.0,
                   crpix2 if crpix2 is not None else (outny + 1) / 2.0]
    w.wcs.set()
    return Grid(w, (int(outny), int(outnx)))


def grid_from_image(path) -> Grid:
    """The celestial WCS and shape of a reference image (first HDU with data)."""
    from astropy.wcs import WCS
    with fits.open(path) as hdul:
        for hdu in hdul:
            if hdu.header.get("NAXIS", 0) == 2:
                w = WCS(hdu.header, naxis=2, relax=True)
                if not w.has_celestial:
                    continue
                lin = _tan(w.wcs.crval, w.pixel_scale_matrix, w.wcs.crpix)
                return Grid(lin, (int(hdu.header["NAXIS2"]), int(hdu.header["NAXIS1"])))
    raise ValueError("no 2-D image extension with a celestial WCS")


def grid_to_product(grid: Grid) -> dict:
    return {"header": grid.wcs.to_header_string(relax=False), "shape": [int(grid.shape[0]), int(grid.shape[1])]}


def grid_from_product(value: dict) -> Grid:
    from astropy.wcs import WCS
    hdr = fits.Header.fromstring(value["header"])
    return Grid(WCS(hdr), (int(value["shape"][0]), int(value["shape"][1])))


def check_size(grid: Grid, force: bool) -> None:
    """Refuse absurd output sizes (bad WCS, wrong scale units) unless forced."""
    ny, nx = grid.shape
    if ny * nx > MAX_PIXELS and not force:
        raise ValueError(f"output grid {nx} x {ny} pixels is larger than the 20000 x 20000 bound "
                         "(check scale/outnx/outny or the input WCS); run with --force to allow it")
