"""Ground-truth files of a simulated data set (``DIR/truth/``).

``stars.ecsv``
    One row per star: ``id``, ``ra``, ``dec`` (deg, ICRS/J2000), ``mag``
    (F814W), ``flux_e`` (electrons collected on WF3 in one 10 s exposure;
    chip k collects ``flux_e * PHOTFLAM(WF3)/PHOTFLAM(k)``, before
    vignetting), ``bright`` (rendered with diffraction spikes).
``pointing.ecsv``
    One row per exposure: ``root``, ``date_obs``, ``time_obs``,
    ``postarg1/2`` (arcsec), the model pointing for the HEADER and the TRUE
    pointing: ``ra_ref_*``, ``dec_ref_*`` (sky of WF3's (XREF, YREF)),
    ``pv_*`` (PA of WF3's +y), ``pa_v3``, the PC reference-pixel sky position
    ``pc_crval1_*``/``pc_crval2_*``, and the pointing error true - header as
    ``dra_arcsec`` (along RA, times cos dec) and ``ddec_arcsec``.
``crs.fits``
    Extension ``(ROOT, chip)`` (EXTNAME = upper-case root, EXTVER = chip):
    float32 cosmic-ray charge in electrons per pixel, 0 elsewhere.
``wcs_grid.ecsv``
    For each exposure and chip a 33 x 33 grid of 0-based pixel positions
    (``x``, ``y``; numpy convention, centre of the first pixel = 0) with
    ``ra_true, dec_true`` (through the simulator's full model at the TRUE
    pointing: what alignment should reach) and ``ra_header, dec_header``
    (the same model at the HEADER pointing: what ``updatewcs`` from the
    reference files must reproduce).
``params.json``
    Simulator parameters, package version and the per-exposure pointing.
"""
from __future__ import annotations

import json

import numpy as np
from astropy.io import fits
from astropy.table import Table

from drizzleflow.engine.atomic import atomic_path

__all__ = ["write_stars", "write_pointing", "write_crs", "write_wcs_grid", "write_params", "read_params"]


def _write_table(table, path):
    with atomic_path(path, suffix=".ecsv") as tmp:
        table.write(tmp, format="ascii.ecsv")


def write_stars(path, ra, dec, mag, flux_e, bright):
    t = Table()
    t["id"] = np.arange(1, ra.size + 1, dtype=np.int64)
    t["ra"] = ra
    t["dec"] = dec
    t["mag"] = np.round(mag, 4)
    t["flux_e"] = flux_e
    t["bright"] = bright
    t["ra"].unit = t["dec"].unit = "deg"
    t["flux_e"].unit = "electron"
    t["flux_e"].description = "electrons on WF3 in one exposure (chip k: x PHOTFLAM(WF3)/PHOTFLAM(k))"
    t.meta["comments"] = ["drizzleflow simulator truth: stars"]
    _write_table(t, path)


def write_pointing(path, rows):
    _write_table(Table(rows=rows, names=list(rows[0].keys())), path)


def write_crs(path, maps):
    """``maps``: list of (root, chip, array) in file order."""
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["ORIGIN"] = "drizzleflow simulator"
    hdus[0].header["SIMULATE"] = True
    hdus[0].header["BUNIT"] = "ELECTRONS"
    for root, chip, arr in maps:
        h = fits.ImageHDU(arr.astype(np.float32), name=root.upper(), ver=chip)
        h.header["BUNIT"] = "ELECTRONS"
        hdus.append(h)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def write_wcs_grid(path, columns):
    t = Table(columns)
    t.meta["pixel_origin"] = 0
    t.meta["comments"] = ["x, y: 0-based pixel (numpy) coordinates; ra/dec in degrees",
                          "*_true: simulator model at the true pointing; *_header: at the header pointing"]
    _write_table(t, path)


def write_params(path, params):
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")


def read_params(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
