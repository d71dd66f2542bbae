"""One exposure against the reference, on plain catalogs and astropy WCS.

Sources of every chip go to the sky through that chip's full WCS (SIP and
lookup tables) and then onto the common tangent plane, so all chips of an
exposure are matched and fitted together.  After the first fit, the pairs are
re-matched with the fitted transform and refitted (``refine`` passes), which
recovers pairs the single histogram shift missed at the field edges.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .fitting import FitError, apply_fit, iter_fit
from .matching import match_xy, offset_histogram
from .wcs_update import plane_center, world_to_plane

__all__ = ["PlaneCatalog", "chips_to_plane", "radec_to_plane", "align_catalog", "AlignFailure"]

log = logging.getLogger(__name__)


class AlignFailure(Exception):
    """An exposure that could not be aligned (too few matches, bad fit)."""


@dataclass
class PlaneCatalog:
    """Sources of one exposure (or a reference catalog) on the tangent plane."""

    xy: np.ndarray                       # (N, 2) plane pixels, 0-based
    orig: np.ndarray                     # (N, 2) chip pixels, 0-based (or plane xy for a refcat)
    ids: np.ndarray                      # per-chip source ids
    extver: np.ndarray                   # chip EXTVER (0 for a catalog)
    radec: np.ndarray                    # (N, 2) degrees
    flux: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self):
        return len(self.xy)


def chips_to_plane(chip_catalogs, plane):
    """``chip_catalogs``: iterable of ``(table, wcs, extver)`` with 0-based
    ``x``/``y`` columns; returns one :class:`PlaneCatalog`."""
    xy, orig, ids, ext, radec, flux = [], [], [], [], [], []
    for table, wcs, extver in chip_catalogs:
        if len(table) == 0:
            continue
        x = np.asarray(table["x"], float)
        y = np.asarray(table["y"], float)
        ra, dec = wcs.all_pix2world(x, y, 0)
        px, py = world_to_plane(plane, ra, dec)
        xy.append(np.column_stack([px, py]))
        orig.append(np.column_stack([x, y]))
        ids.append(np.asarray(table["id"], int))
        ext.append(np.full(len(x), int(extver)))
        radec.append(np.column_stack([ra, dec]))
        flux.append(np.asarray(table["flux"], float) if "flux" in table.colnames else np.zeros(len(x)))
    if not xy:
        z = np.zeros((0, 2))
        return PlaneCatalog(z, z, np.zeros(0, int), np.zeros(0, int), z, np.zeros(0))
    return PlaneCatalog(np.vstack(xy), np.vstack(orig), np.concatenate(ids), np.concatenate(ext),
                        np.vstack(radec), np.concatenate(flux))


def radec_to_plane(ra, dec, plane, flux=None):
    """An external RA/Dec reference catalog on the plane."""
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    px, py = world_to_plane(plane, ra, dec)
    xy = np.column_stack([px, py])
    return PlaneCatalog(xy, xy.copy(), np.arange(1, len(ra) + 1), np.zeros(len(ra), int),
                        np.column_stack([ra, dec]),
                        np.zeros(len(ra)) if flux is None else np.asarray(flux, float))


def align_catalog(img, ref, plane, *, searchrad=1.0, use2dhist=True, xoffset=0.0, yoffset=0.0,
                  tolerance=1.0, separation=0.5, minobj=15, fitgeometry="rscale",
                  nclip=3, sigma=3.0, refine=2, static_radius=0.3):
    """Match and fit one exposure's plane catalog to the reference.

    All distances are in plane pixels.  Raises :class:`AlignFailure` with a
    reason when fewer than ``minobj`` pairs are found or the fit cannot be made.

    Returns
    -------
    dict
        ``hist`` (offset histogram info or None), ``fit`` (see
        ``fitting.iter_fit``), ``pairs`` ``(ii, jj)`` into ``img``/``ref``.
    """
    img, ref, nstatic = drop_static_pairs(img, ref, static_radius)
    if nstatic:
        log.warning("align: dropped %d sources that sit on the same detector pixels in the image and "
                    "the reference although the exposures are dithered (hot pixels or other detector "
                    "artefacts, not stars)", nstatic)
    hist = None
    if use2dhist:
        hist = offset_histogram(img.xy[:, 0], img.xy[:, 1], ref.xy[:, 0], ref.xy[:, 1], searchrad)
        shift0 = hist["shift"]
    else:
        shift0 = (float(xoffset), float(yoffset))
    ii, jj = match_xy(img.xy[:, 0], img.xy[:, 1], ref.xy[:, 0], ref.xy[:, 1],
                      tolerance=tolerance, separation=separation, shift=shift0)
    if len(ii) < minobj:
        where = f" (histogram peak {hist['npeak']} at {shift0[0]:+.3f},{shift0[1]:+.3f})" if hist else ""
        hint = (f"; {nstatic} sources were dropped as detector artefacts (same chip pixel in both "
                "exposures although the headers say they were dithered): if these exposures were "
                "not really dithered, set static_radius: 0") if nstatic else ""
        raise AlignFailure(f"only {len(ii)} matches within tolerance {tolerance:g} px, "
                           f"minobj is {minobj}{where}{hint}")
    center = plane_center(plane)
    try:
        fit = iter_fit(ref.xy[jj], img.xy[ii], fitgeometry, center=center, nclip=nclip, sigma=sigma)
        for _ in range(int(refine)):
            pred = apply_fit(fit, ref.xy)
            # match image sources to the fitted reference prediction (no extra shift)
            i2, j2 = match_xy(img.xy[:, 0], img.xy[:, 1], pred[:, 0], pred[:, 1],
                              tolerance=tolerance, separation=separation)
            if len(i2) < minobj:
                break
            ii, jj = i2, j2
            fit = iter_fit(ref.xy[jj], img.xy[ii], fitgeometry, center=center, nclip=nclip, sigma=sigma)
    except FitError as exc:
        raise AlignFailure(str(exc)) from None
    if fit["nfit"] < minobj:
        raise AlignFailure(f"only {fit['nfit']} pairs left after clipping, minobj is {minobj}")
    return {"hist": hist, "fit": fit, "pairs": (ii, jj), "img": img, "ref": ref, "nstatic": nstatic}


def _subset(cat, keep):
    return PlaneCatalog(cat.xy[keep], cat.orig[keep], cat.ids[keep], cat.extver[keep], cat.radec[keep],
                        cat.flux[keep] if len(cat.flux) == len(keep) else cat.flux)


def drop_static_pairs(img, ref, radius=0.3, min_dither=1.0):
    """Remove detector artefacts that would fake a match.

    A hot pixel or cosmic-ray-free artefact sits at the same chip pixel in
    every exposure; between dithered exposures it therefore "matches" at the
    dither offset with an impossibly small scatter.  Sources of the same chip
    found within ``radius`` chip pixels of each other in both lists, whose
    plane positions differ by more than ``min_dither`` plane pixels (so the
    exposures really were dithered there), are dropped from both lists.

    Returns ``(img, ref, n_dropped_from_img)``.
    """
    if radius <= 0 or len(img) == 0 or len(ref) == 0 or not np.any(ref.extver):
        return img, ref, 0
    from scipy.spatial import cKDTree
    bad_i = np.zeros(len(img), bool)
    bad_r = np.zeros(len(ref), bool)
    for ev in np.unique(img.extver):
        si = np.flatnonzero(img.extver == ev)
        sr = np.flatnonzero(ref.extver == ev)
        if not len(si) or not len(sr):
            continue
        tree = cKDTree(ref.orig[sr])
        d, k = tree.query(img.orig[si], k=1, distance_upper_bound=radius)
        hit = np.isfinite(d)
        if not hit.any():
            continue
        a, b = si[hit], sr[k[hit]]
        moved = np.hypot(*(img.xy[a] - ref.xy[b]).T) > min_dither
        bad_i[a[moved]] = True
        bad_r[b[moved]] = True
    n = int(bad_i.sum())
    if n == 0:
        return img, ref, 0
    return _subset(img, ~bad_i), _subset(ref, ~bad_r), n
