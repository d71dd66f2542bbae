"""WFPC2-like WCS objects built in memory, for tests and benchmarks.

Not a model of the real instrument: four 800 x 800 chips in the WFPC2 "stair"
layout (PC1 at 0.0455"/pix, three WFs at 0.0996"/pix, each turned by a
multiple of 90 degrees), a 3rd-order SIP distortion of a few pixels at the
chip corners and a D2IM table with a 34-row periodic sawtooth (the
"34th-row" manufacturing defect), plus a TAN output grid covering the mosaic.
Enough to exercise pixel maps and the drizzle core realistically without
reading any file.
"""
from __future__ import annotations

import numpy as np
from astropy.wcs import WCS, DistortionLookupTable, Sip

__all__ = ["chip_wcs", "output_wcs", "wfpc2_exposure", "CHIPS"]

#: name -> (pixel scale "/pix, focal-plane centre offset (arcsec, x, y), chip turn in degrees)
CHIPS = {
    "PC1": (0.0455, (17.0, 17.0), 0.0),
    "WF2": (0.0996, (-38.5, 38.5), 90.0),
    "WF3": (0.0996, (-38.5, -38.5), 180.0),
    "WF4": (0.0996, (38.5, -38.5), 270.0),
}


def _rot(deg):
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def output_wcs(scale=0.0455, shape=(3400, 3500), crval=(150.0, 2.2), pa=37.0):
    """Undistorted TAN output grid ``shape = (ny, nx)`` at ``scale`` "/pix, turned by ``pa``."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    w.wcs.cd = scale / 3600.0 * (_rot(pa) @ np.diag([-1.0, 1.0]))
    w.pixel_shape = (shape[1], shape[0])
    return w


def chip_wcs(chip, out, offset=(0.0, 0.0), dtheta=0.0, pa=37.0, sip_amp=1.0, d2im_amp=0.03,
             shape=(800, 800)):
    """Distorted WCS of one chip; ``offset`` (output pixels) and ``dtheta`` (deg) dither it."""
    scale, (fx, fy), turn = CHIPS[chip]
    oscale = np.sqrt(abs(np.linalg.det(out.wcs.cd))) * 3600.0
    # chip centre on the output grid (0-based), focal-plane offsets turned with the output
    cx = out.wcs.crpix[0] - 1 + fx / oscale + offset[0]
    cy = out.wcs.crpix[1] - 1 + fy / oscale + offset[1]
    ra, dec = out.wcs_pix2world([[cx, cy]], 0)[0]
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [nx / 2 + 0.5, ny / 2 + 0.5]
    w.wcs.cd = scale / 3600.0 * (_rot(pa + turn + dtheta) @ np.diag([-1.0, 1.0]))
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    # quadratic ~0.5 px and cubic ~3-4 px at the corners (r ~ 565 px)
    a[2, 0], a[1, 1], a[0, 2] = 2.0e-6, -1.0e-6, 1.5e-6
    b[2, 0], b[1, 1], b[0, 2] = -1.0e-6, 2.0e-6, 1.0e-6
    a[3, 0], a[1, 2] = 2.5e-8, 2.5e-8
    b[2, 1], b[0, 3] = 2.5e-8, 2.5e-8
    w.sip = Sip(a * sip_amp, b * sip_amp, None, None, w.wcs.crpix)
    if d2im_amp:
        rows = np.arange(ny)
        saw = d2im_amp * ((rows % 34) / 34.0 - 0.5)
        w.det2im2 = DistortionLookupTable(saw.astype(np.float32).reshape(ny, 1), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    w.pixel_shape = (nx, ny)
    return w


def wfpc2_exposure(out, offset=(0.0, 0.0), dtheta=0.0, pa=37.0, **kw):
    """The four chip WCSs of one dithered exposure: ``{chip name: WCS}``."""
    return {name: chip_wcs(name, out, offset=offset, dtheta=dtheta, pa=pa, **kw) for name in CHIPS}
