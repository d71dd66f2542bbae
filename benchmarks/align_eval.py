"""Accuracy of aligned WCS solutions against the simulator's truth.

``truth/wcs_grid.ecsv`` holds, per exposure and chip, a grid of pixel
positions with their true sky positions (``ra_true``/``dec_true``) and those of
the header pointing.  An aligned WCS is scored there in two ways:

* absolute: aligned sky position - true sky position;
* relative: the same minus the reference exposure's own header error (its
  mean offset header - truth), because relative alignment can only put every
  exposure on the reference's frame.  This is what "recovered pointing vs
  truth" means for exposures 2..N.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

__all__ = ["load_grid", "sky_errors_mas", "score"]


def load_grid(truth_dir):
    return Table.read(Path(truth_dir) / "wcs_grid.ecsv", format="ascii.ecsv")


def _wcs_of(path, ext):
    with fits.open(path) as h:
        return WCS(h[ext].header, h)


def sky_errors_mas(grid, root, sci_path, ext_for_chip=lambda c: ("SCI", int(c)), use="wcs"):
    """(N, 2) arrays of (dRA*cos(dec), dDec) in mas of ``sci_path``'s WCS vs the
    true grid, and of the header-pointing grid vs truth."""
    g = grid[grid["root"] == root]
    out, hdr = [], []
    for chip in np.unique(g["chip"]):
        gc = g[g["chip"] == chip]
        w = _wcs_of(sci_path, ext_for_chip(chip))
        ra, dec = w.all_pix2world(np.asarray(gc["x"], float), np.asarray(gc["y"], float), 0)
        cosd = np.cos(np.radians(np.asarray(gc["dec_true"], float)))
        out.append(np.column_stack([(ra - gc["ra_true"]) * cosd, dec - gc["dec_true"]]) * 3.6e6)
        hdr.append(np.column_stack([(gc["ra_header"] - gc["ra_true"]) * cosd,
                                    gc["dec_header"] - gc["dec_true"]]) * 3.6e6)
    return np.vstack(out), np.vstack(hdr)


def score(grid, files, reference=None):
    """Per-exposure and overall errors (mas) of the WCS in ``files`` ({root: path}).

    Returns a dict: ``per_exposure`` {root: {abs_rms, rel_rms, rel_mean, before_rel}},
    ``rel_rms_all`` (rms over exposures other than the reference), ``ref_offset``.
    """
    roots = list(files)
    reference = reference or roots[0]
    _, ref_hdr = sky_errors_mas(grid, reference, files[reference])
    ref_off = ref_hdr.mean(axis=0)
    per = {}
    allrel = []
    for r in roots:
        e, h = sky_errors_mas(grid, r, files[r])
        rel = e - ref_off
        before = h - ref_off
        per[r] = {"abs_rms": float(np.sqrt(np.mean(np.sum(e ** 2, axis=1)))),
                  "rel_rms": float(np.sqrt(np.mean(np.sum(rel ** 2, axis=1)))),
                  "rel_mean": [float(v) for v in rel.mean(axis=0)],
                  "before_rel_rms": float(np.sqrt(np.mean(np.sum(before ** 2, axis=1))))}
        if r != reference:
            allrel.append(rel)
    allrel = np.vstack(allrel) if allrel else np.zeros((0, 2))
    return {"per_exposure": per, "reference": reference, "ref_offset_mas": [float(v) for v in ref_off],
            "rel_rms_all": float(np.sqrt(np.mean(np.sum(allrel ** 2, axis=1)))) if len(allrel) else 0.0}
