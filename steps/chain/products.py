"""FITS products of the final drizzle, with provenance keywords.

Three simple FITS files per product (``<root>_drz_sci.fits``, ``_drz_wht.fits``,
``_drz_ctx.fits``, as the tutorial lists them).  Every file carries the
output WCS, ``BUNIT``, ``EXPTIME``/``TEXPTIME``, ``PHOTFLAM``/``PHOTPLAM``,
``NDRIZIM``, the recipe hash and, per drizzled chip k, DrizzlePac's
``D%03d*`` provenance block (``DATA``, ``DEXP``, ``KERN``, ``PIXF``, ``FVAL``,
``BITS``, ``WKEY``, ``WTSC``, ``OUUN``, ``SCAL``, ``ISCL``, ...).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from .common import write_image

__all__ = ["provenance_cards", "product_header", "write_products", "linear_wcs_header"]

try:
    from importlib.metadata import version as _version
    _VER = f"drizzleflow {_version('drizzleflow')}"
except Exception:  # pragma: no cover - not installed
    _VER = "drizzleflow"


def provenance_cards(k: int, entry: dict) -> list[tuple[str, object, str]]:
    """The ``D%03d*`` cards of drizzled chip ``k`` (1-based)."""
    p = f"D{k:03d}"
    return [
        (p + "VER", _VER, "Drizzle, task version"),
        (p + "GEOM", "wcs", "Drizzle, source of geometric information"),
        (p + "DATA", entry["data"], "Drizzle, input data image"),
        (p + "DEXP", float(entry["exptime"]), "Drizzle, input image exposure time (s)"),
        (p + "OUDA", entry["ouda"], "Drizzle, output data image"),
        (p + "OUWE", entry["ouwe"], "Drizzle, output weighting image"),
        (p + "OUCO", entry["ouco"], "Drizzle, output context image"),
        (p + "MASK", entry.get("mask", ""), "Drizzle, input weighting image"),
        (p + "WTSC", float(entry["wtscl"]), "Drizzle, weighting factor for input image"),
        (p + "KERN", entry["kernel"], "Drizzle, form of weight distribution kernel"),
        (p + "PIXF", float(entry["pixfrac"]), "Drizzle, linear size of drop"),
        (p + "COEF", "SIP", "Drizzle, source of coefficients"),
        (p + "OUUN", entry["units"], "Drizzle, units of output image - counts or cps"),
        (p + "FVAL", entry["fillval"], "Drizzle, fill value for zero weight output pix"),
        (p + "BITS", entry["bits"], "Drizzle, DQ flags treated as good"),
        (p + "WKEY", entry.get("wcsname", ""), "Input image WCS name"),
        (p + "SKY", float(entry.get("sky", 0.0)), "Sky subtracted (electrons/pixel)"),
        (p + "SCAL", float(entry["outscale"]), "Drizzle, pixel size (arcsec) of output image"),
        (p + "ISCL", float(entry["inscale"]), "Drizzle, default IDCTAB pixel size(arcsec)"),
    ]


def product_header(grid, entries, *, units, exptime_total, photflam, photplam, bunit,
                   recipe_hash="", root="final", ncombine=0, extra=None) -> fits.Header:
    """Header shared by the sci/wht/ctx files of one product (``grid``: an
    ``output_wcs.Grid`` or the ``final_inputs.KeptGrid`` of kept inputs)."""
    hdr = grid.linear_header()
    _set(hdr, "ROOTNAME", root, "root name of the drizzled product")
    _set(hdr, "PROD_VER", _VER, "software that made this product")
    _set(hdr, "BUNIT", bunit, "units of the science image")
    _set(hdr, "EXPTIME", float(exptime_total), "total exposure time of distinct exposures (s)")
    _set(hdr, "TEXPTIME", float(exptime_total), "total exposure time of distinct exposures (s)")
    _set(hdr, "PHOTFLAM", float(photflam), "erg/cm2/A per e-/s (mean of the chips)")
    _set(hdr, "PHOTPLAM", float(photplam), "pivot wavelength (Angstroms)")
    _set(hdr, "NDRIZIM", len(entries), "number of chips drizzled")
    _set(hdr, "NCOMBINE", int(ncombine), "number of exposures combined")
    _set(hdr, "D_UNITS", units, "output units: cps or counts")
    _set(hdr, "RECIPEH", recipe_hash or "", "hash of the resolved recipe")
    for key, value in (extra or {}).items():
        hdr[key] = value
    for k, e in enumerate(entries, 1):
        for card in provenance_cards(k, e):
            _set(hdr, *card)
    return hdr


def _set(hdr, key, value, comment):
    """Set a card, shortening the comment so the card fits in 80 columns."""
    room = 80 - 10 - max(20, len(repr(value)) + 2) - 5
    hdr[key] = (value, comment[:max(room, 0)])


def linear_wcs_header(wcs) -> fits.Header:
    """TAN WCS with a CD matrix (the form HST products and DrizzlePac use)."""
    h = fits.Header()
    h["WCSAXES"] = 2
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"], h["CRPIX2"] = float(wcs.wcs.crpix[0]), float(wcs.wcs.crpix[1])
    h["CRVAL1"], h["CRVAL2"] = float(wcs.wcs.crval[0]), float(wcs.wcs.crval[1])
    cd = wcs.pixel_scale_matrix
    h["CD1_1"], h["CD1_2"] = float(cd[0, 0]), float(cd[0, 1])
    h["CD2_1"], h["CD2_2"] = float(cd[1, 0]), float(cd[1, 1])
    h["RADESYS"] = wcs.wcs.radesys or "ICRS"
    h["ORIENTAT"] = (float(np.degrees(np.arctan2(cd[0, 1], cd[1, 1]))), "PA of image +Y, deg E of N")
    return h


def _kind_header(header, kind):
    """The product header specialised for the sci, wht or ctx file."""
    h = header.copy()
    if kind == "wht":
        h["BUNIT"] = ("UNITLESS", "weight: effective exposure time (s)")
    elif kind == "ctx":
        h["BUNIT"] = ("UNITLESS", "bit k-1 of plane (k-1)//32: chip k used")
    return h


def write_products(outdir, root, sci, wht, ctx, header) -> dict:
    """Write ``<root>_drz_sci/wht/ctx.fits`` atomically (no ctx file when ``ctx``
    is None); return their paths."""
    outdir = Path(outdir)
    paths = {k: outdir / f"{root}_drz_{k}.fits" for k in ("sci", "wht", "ctx") if k != "ctx" or ctx is not None}
    write_image(paths["sci"], sci.astype(np.float32, copy=False), _kind_header(header, "sci"))
    write_image(paths["wht"], wht.astype(np.float32, copy=False), _kind_header(header, "wht"))
    if ctx is not None:
        write_image(paths["ctx"], ctx.astype(np.int32, copy=False), _kind_header(header, "ctx"))
    return paths
