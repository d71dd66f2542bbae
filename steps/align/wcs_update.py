"""The common tangent plane and the WCS correction of each chip.

All chips of all exposures are projected onto one undistorted TAN plane (the
reference plane): oriented like the reference's first chip, with its pixel
scale (PC scale for WFPC2), centred on the reference footprint.  A fit found
in that plane is carried into a chip's WCS as TweakReg does (ALGORITHMS
§4.6): the new CRVAL is the corrected sky position of the old CRPIX, and the
new CD is the old CD times the Jacobian of the correction expressed in the
chip's own tangent plane.  The Jacobian is a least-squares fit over a grid
spanning the chip, so no iteration is needed.  SIP and lookup-table
distortions are untouched.
"""
from __future__ import annotations

import copy

import numpy as np
from astropy.wcs import WCS

from .fitting import invert_fit

__all__ = ["cd_matrix", "tangent_plane", "world_to_plane", "plane_to_world",
           "corrected_wcs", "write_wcs_to_header", "free_wcs_key"]


def cd_matrix(wcs):
    """The CD matrix (degrees/pixel) of an astropy WCS whatever its form."""
    return np.array(wcs.wcs.get_pc() * wcs.wcs.get_cdelt()[:, None]) if not wcs.wcs.has_cd() \
        else np.array(wcs.wcs.cd, float)


def _tan(crval, cd, crpix=(0.0, 0.0)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [float(crval[0]), float(crval[1])]
    w.wcs.crpix = [float(crpix[0]), float(crpix[1])]
    w.wcs.cd = np.asarray(cd, float)
    w.wcs.set()
    return w


def tangent_plane(wcs_list, shapes, pscale=None):
    """Undistorted TAN WCS covering the footprints of ``wcs_list``.

    Parameters
    ----------
    wcs_list : list of astropy WCS
        The reference chips; the first sets orientation (and scale unless
        ``pscale`` is given).
    shapes : list of (ny, nx)
    pscale : float, optional
        Plane scale in arcsec/pixel.

    Returns
    -------
    astropy.wcs.WCS
        With ``pixel_shape`` set; pixel positions are 0-based.
    """
    cd0 = cd_matrix(wcs_list[0])
    s0 = np.sqrt(abs(np.linalg.det(cd0)))
    if pscale:
        cd0 = cd0 * (pscale / 3600.0) / s0
    corners = []
    for w, (ny, nx) in zip(wcs_list, shapes):
        px = np.array([[0, 0], [nx - 1, 0], [nx - 1, ny - 1], [0, ny - 1], [(nx - 1) / 2, (ny - 1) / 2]])
        corners.append(w.all_pix2world(px, 0))
    corners = np.vstack(corners)
    # centre: mean unit vector of the corners
    ra, dec = np.radians(corners[:, 0]), np.radians(corners[:, 1])
    v = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]).mean(axis=0)
    crval = (np.degrees(np.arctan2(v[1], v[0])) % 360.0, np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1]))))
    w = _tan(crval, cd0)
    xy = w.wcs_world2pix(corners, 0)
    lo, hi = np.floor(xy.min(axis=0)), np.ceil(xy.max(axis=0))
    size = (hi - lo + 1).astype(int)
    crpix = (-lo[0] + 1.0, -lo[1] + 1.0)   # FITS 1-based
    w = _tan(crval, cd0, crpix)
    w.pixel_shape = (int(size[0]), int(size[1]))
    return w


def world_to_plane(plane, ra, dec):
    """Sky (deg) to 0-based plane pixels."""
    x, y = plane.wcs_world2pix(np.asarray(ra, float), np.asarray(dec, float), 0)
    return np.asarray(x), np.asarray(y)


def plane_to_world(plane, x, y):
    ra, dec = plane.wcs_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
    return np.asarray(ra), np.asarray(dec)


def plane_center(plane):
    """0-based pixel position of the plane's CRPIX (the fit centre)."""
    return (float(plane.wcs.crpix[0] - 1.0), float(plane.wcs.crpix[1] - 1.0))


def corrected_wcs(wcs, fit, plane, shape=None, ngrid=9):
    """A copy of a chip ``wcs`` with the alignment ``fit`` folded into CRVAL/CD.

    ``fit`` maps reference-plane positions to image-plane positions (as
    returned by ``fitting.iter_fit``); the correction applied is its inverse.

    Parameters
    ----------
    wcs : astropy WCS (may carry SIP / lookup tables, kept as they are)
    fit : dict
    plane : astropy WCS of the reference tangent plane
    shape : (ny, nx), optional
        Chip size used for the Jacobian grid (defaults to ``wcs.pixel_shape``
        or 800x800).
    """
    new = copy.deepcopy(wcs)
    cd_old = cd_matrix(wcs)
    crval_old = np.array(wcs.wcs.crval, float)
    if shape is None:
        shape = (wcs.pixel_shape[1], wcs.pixel_shape[0]) if wcs.pixel_shape else (800, 800)
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(-nx / 2, nx / 2, ngrid), np.linspace(-ny / 2, ny / 2, ngrid))
    d = np.column_stack([gx.ravel(), gy.ravel(), ])
    d = np.vstack([[0.0, 0.0], d])
    xi_old = d @ cd_old.T
    t_old = _tan(crval_old, np.eye(2))
    world = t_old.wcs_pix2world(xi_old, 1)
    px, py = world_to_plane(plane, world[:, 0], world[:, 1])
    ref = invert_fit(fit, np.column_stack([px, py]))
    ra, dec = plane_to_world(plane, ref[:, 0], ref[:, 1])
    crval_new = (float(ra[0]), float(dec[0]))
    t_new = _tan(crval_new, np.eye(2))
    xi_new = t_new.wcs_world2pix(np.column_stack([ra, dec]), 1)
    J, *_ = np.linalg.lstsq(xi_old, xi_new, rcond=None)   # xi_new = xi_old @ J
    cd_new = J.T @ cd_old
    new.wcs.crval = list(crval_new)
    if new.wcs.has_cd():
        new.wcs.cd = cd_new
    else:
        new.wcs.pc = cd_new
        new.wcs.cdelt = [1.0, 1.0]
    new.wcs.set()
    return new


def free_wcs_key(header):
    """First alternate WCS key A-Z (not O) unused in ``header``."""
    for k in "ABCDEFGHIJKLMNPQRSTUVWXYZ":
        if f"WCSNAME{k}" not in header and f"CRVAL1{k}" not in header:
            return k
    return None


def write_wcs_to_header(header, new_wcs, wcsname="TWEAK", archive=True, extra=None):
    """Write a corrected WCS's CRVAL/CD into a SCI header in place.

    With ``archive`` the current primary CRVAL/CRPIX/CD/CTYPE/WCSNAME is first
    copied to a free alternate key.  SIP (A_*/B_*) and lookup-table keywords
    are not touched.  ``extra`` adds keywords (e.g. CRDER1/2, NMATCH).
    """
    if archive:
        key = free_wcs_key(header)
        if key is not None:
            header[f"WCSNAME{key}"] = header.get("WCSNAME", "OLD_PRIMARY")
            for k in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
                      "CTYPE1", "CTYPE2"):
                if k in header:
                    header[f"{k}{key}"] = header[k]
    cd = cd_matrix(new_wcs)
    header["CRVAL1"] = float(new_wcs.wcs.crval[0])
    header["CRVAL2"] = float(new_wcs.wcs.crval[1])
    for k in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        header.remove(k, ignore_missing=True)
    header["CD1_1"], header["CD1_2"] = float(cd[0, 0]), float(cd[0, 1])
    header["CD2_1"], header["CD2_2"] = float(cd[1, 0]), float(cd[1, 1])
    header["WCSNAME"] = wcsname
    header["ORIENTAT"] = (float(np.degrees(np.arctan2(cd[0, 1], cd[1, 1]))),
                          "position angle of image y axis (deg. e of n)")
    for k, v in (extra or {}).items():
        header[k] = v
    return header
