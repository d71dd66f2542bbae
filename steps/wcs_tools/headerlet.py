"""Headerlets: one exposure's complete WCS solution (all chips) in a small FITS
file, in the layout stwcs/DrizzlePac use, so solutions can be shipped, attached
to an image, listed, and applied as its primary WCS.

Layout (learned from stwcs): PRIMARY header with DESTIM, HDRNAME, WCSNAME,
DISTNAME, SIPNAME, NPOLFILE, D2IMFILE, IDCTAB, AUTHOR, DESCRIP, RMS_RA/RMS_DEC,
NMATCH, CATALOG, UPWCSVER, PYWCSVER, DATE; one ``SIPWCS`` image extension
(no data) per chip with the WCS keywords and ``TG_ENAME``/``TG_EVER`` naming the
target extension; copies of the ``D2IMARR`` lookup tables.  Attached to an
image, a headerlet is a ``HDRLET`` extension whose data is the headerlet file.
"""
from __future__ import annotations

import datetime as _dt
import getpass
import logging
import re
from pathlib import Path

from astropy import __version__ as astropy_version
from astropy.io import fits
from astropy.io.fits.hdu.nonstandard import FitsHDU

from drizzleflow.engine.atomic import atomic_path
from drizzleflow.engine.errors import InputFileError, OutputError

from . import altwcs, wcscorr

__all__ = ["HeaderletHDU", "create_headerlet", "write_headerlet", "read_headerlet", "attach_headerlet",
           "apply_headerlet_as_primary", "list_headerlets", "headerlet_name", "WCS_KEY_PATTERNS"]

log = logging.getLogger(__name__)

UPWCSVER = "drizzleflow-1"

#: SCI-header keywords that make up a primary WCS solution (linear, SIP, IDC, D2IM)
WCS_KEY_PATTERNS = re.compile(
    r"^(WCSAXES|CRPIX[12]|CRVAL[12]|CTYPE[12]|CUNIT[12]|CD[12]_[12]|LONPOLE|LATPOLE|RADESYS|EQUINOX|"
    r"WCSNAME|ORIENTAT|VAFACTOR|A_ORDER|B_ORDER|AP_ORDER|BP_ORDER|A_\d+_\d+|B_\d+_\d+|AP_\d+_\d+|BP_\d+_\d+|"
    r"IDCSCALE|IDCV2REF|IDCV3REF|IDCTHETA|IDCXREF|IDCYREF|OCX1[01]|OCY1[01]|D2IMDIS[12]|D2IMERR[12]|"
    r"D2IMEXT|D2IM[12]\..*|CRDER[12])$")


class HeaderletHDU(FitsHDU):
    """A non-standard ``XTENSION='HDRLET'`` extension holding a headerlet FITS file."""

    _extension = "HDRLET"

    @classmethod
    def from_headerlet(cls, hlet, compress=False):
        hdu = cls.fromhdulist(hlet, compress=compress)
        ph = hlet[0].header
        for k in ("HDRNAME", "DATE", "SIPNAME", "WCSNAME", "DISTNAME", "NPOLFILE", "D2IMFILE"):
            hdu.header[k] = (ph.get(k, ""), ph.comments[k] if k in ph else "")
        hdu.header["EXTNAME"] = ("HDRLET", "Extension name")
        return hdu


try:  # stwcs registers an equivalent class; one registration is enough
    fits.register_hdu(HeaderletHDU)
except Exception:  # pragma: no cover
    pass


def headerlet_name(path) -> str:
    """Default headerlet file name: ``x_c0m.fits`` -> ``x_c0m_hlet.fits``."""
    p = Path(path)
    return p.name[:-5] + "_hlet.fits" if p.name.endswith(".fits") else p.name + "_hlet.fits"


def _scis(hdul):
    return [h for h in hdul[1:] if str(h.header.get("EXTNAME", "")).upper() == "SCI"
            and h.header.get("NAXIS", 0) == 2]


def _open(path_or_hdul, mode="readonly"):
    if isinstance(path_or_hdul, fits.HDUList):
        return path_or_hdul, False
    path = Path(path_or_hdul)
    if not path.exists():
        raise InputFileError(path, "file not found")
    try:
        hdul = fits.open(path, memmap=False)
        hdul.readall()
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"cannot read FITS ({exc})") from None
    return hdul, True


def create_headerlet(image, hdrname, *, wcsname=None, destim=None, author=None, descrip="",
                     catalog="", nmatch=0, rms_ra=0.0, rms_dec=0.0, history=None) -> fits.HDUList:
    """Build a headerlet from the current primary WCS of every SCI chip of ``image``.

    Parameters
    ----------
    image : path or HDUList
        A new-format image (c0m working copy).
    hdrname : str
        Unique name of the solution (HDRNAME).
    wcsname : str, optional
        Default: the chips' WCSNAME (written to the SCI headers when applied).
    destim : str, optional
        Target exposure rootname; default the image's ROOTNAME.
    """
    hdul, close = _open(image)
    try:
        ph = hdul[0].header
        scis = _scis(hdul)
        if not scis:
            raise InputFileError(image if not isinstance(image, fits.HDUList) else "<memory>", "no SCI extensions")
        destim = destim or str(ph.get("ROOTNAME", "")).strip() or \
            (Path(str(image)).name.split("_")[0] if not isinstance(image, fits.HDUList) else "unknown")
        wcsname = wcsname or str(scis[0].header.get("WCSNAME", "")).strip() or hdrname
        d2im_present = any(str(h.header.get("EXTNAME", "")).upper() == "D2IMARR" for h in hdul[1:])
        sipname = str(ph.get("SIPNAME", "")).strip() or ("UNKNOWN" if "A_ORDER" in scis[0].header else "NOMODEL")
        distname = str(ph.get("DISTNAME", "")).strip() or sipname
        p = fits.PrimaryHDU()
        h = p.header
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        for k, v, c in [
            ("DESTIM", destim, "Destination observation root name"),
            ("HDRNAME", hdrname, "Headerlet name"),
            ("DATE", now, "Date FITS file was generated"),
            ("WCSNAME", wcsname, "Coordinate system title"),
            ("DISTNAME", distname, "Distortion model name"),
            ("SIPNAME", sipname, "origin of SIP polynomial distortion model"),
            ("NPOLFILE", str(ph.get("NPOLFILE", "N/A")), "origin of non-polynmial distortion model"),
            ("D2IMFILE", str(ph.get("D2IMFILE", "N/A")) if d2im_present else "N/A",
             "origin of detector to image correction"),
            ("IDCTAB", str(ph.get("IDCTAB", "N/A")), "origin of Polynomial Distortion"),
            ("AUTHOR", author or getpass.getuser(), "headerlet created by this user"),
            ("DESCRIP", descrip, "Short description of the solution"),
            ("RMS_RA", float(rms_ra), "RMS in RA at ref pix of headerlet solution"),
            ("RMS_DEC", float(rms_dec), "RMS in Dec at ref pix of headerlet solution"),
            ("NMATCH", int(nmatch), "Number of sources used for headerlet solution"),
            ("CATALOG", catalog, "Astrometric catalog used for headerlet solution"),
            ("UPWCSVER", UPWCSVER, "Version of the software that updated the WCS"),
            ("PYWCSVER", astropy_version, "Version of astropy.wcs used"),
        ]:
            h[k] = (v, c)
        for line in ([history] if isinstance(history, str) else (history or [])):
            h["HISTORY"] = line
        out = fits.HDUList([p])
        for sci in scis:
            s = fits.ImageHDU(name="SIPWCS")
            for card in sci.header.cards:
                if WCS_KEY_PATTERNS.match(card.keyword):
                    s.header.append(card, end=True)
            s.header["WCSNAME"] = (wcsname, "Coordinate system title")
            s.header["EXTVER"] = int(sci.header.get("EXTVER", 1))
            s.header["TG_ENAME"] = ("SCI", "Target science data extname")
            s.header["TG_EVER"] = (int(sci.header.get("EXTVER", 1)), "Target science data extver")
            s.header["NPIX1"] = (int(sci.header["NAXIS1"]), "chip size along axis 1")
            s.header["NPIX2"] = (int(sci.header["NAXIS2"]), "chip size along axis 2")
            out.append(s)
        for d in hdul[1:]:
            if str(d.header.get("EXTNAME", "")).upper() == "D2IMARR":
                out.append(d.copy())
        return out
    finally:
        if close:
            hdul.close()


def write_headerlet(hlet, path) -> Path:
    """Write a headerlet file atomically (e.g. ``<root>_c0m_hlet.fits``)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            hlet.writeto(tmp)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write headerlet ({exc.strerror or exc})") from None
    return path


def read_headerlet(path) -> fits.HDUList:
    """Open a headerlet file (checks that it has HDRNAME and SIPWCS extensions)."""
    hdul, _ = _open(path)
    if "HDRNAME" not in hdul[0].header or not any(h.name == "SIPWCS" for h in hdul[1:]):
        raise InputFileError(path, "not a headerlet (needs HDRNAME and SIPWCS extensions)")
    return hdul


def _rewrite(path, edit):
    path = Path(path)
    hdul, _ = _open(path)
    with hdul:
        edit(hdul)
        hdul[0].header["NEXTEND"] = len(hdul) - 1
        with atomic_path(path) as tmp:
            hdul.writeto(tmp)


def list_headerlets(image) -> list[dict]:
    """Attached headerlets of an image: ``[{"extver", "hdrname", "wcsname", "distname", "date"}]``."""
    hdul, close = _open(image)
    try:
        out = []
        for h in hdul[1:]:
            if h.header.get("XTENSION") == "HDRLET" or str(h.header.get("EXTNAME", "")).upper() == "HDRLET":
                out.append({"extver": int(h.header.get("EXTVER", 1)), "hdrname": h.header.get("HDRNAME", ""),
                            "wcsname": h.header.get("WCSNAME", ""), "distname": h.header.get("DISTNAME", ""),
                            "date": h.header.get("DATE", "")})
        return out
    finally:
        if close:
            hdul.close()


def _attach(hdul, hlet):
    names = [d["hdrname"] for d in list_headerlets(hdul)]
    name = hlet[0].header["HDRNAME"]
    if name in names:
        raise InputFileError(name, "a headerlet with this HDRNAME is already attached")
    hdu = HeaderletHDU.from_headerlet(hlet)
    hdu.header["EXTVER"] = len(names) + 1
    hdul.append(hdu)


def attach_headerlet(image, hlet):
    """Append a headerlet to an image (working copy) as a ``HDRLET`` extension."""
    hlet = read_headerlet(hlet) if not isinstance(hlet, fits.HDUList) else hlet
    _rewrite(image, lambda hdul: _attach(hdul, hlet))


def apply_headerlet_as_primary(image, hlet, *, attach=True, archive=True, force=False):
    """Make a headerlet's solution the primary WCS of every target chip.

    The previous primary is saved as an alternate WCS (a free key, named by its
    WCSNAME) when ``archive``; ``WCSCORR`` gets one row per chip; ``HDRNAME``
    is written in each SCI header (the tutorial's check).  Refuses when DESTIM
    is not the image's rootname or the distortion model (DISTNAME) differs,
    unless ``force``.
    """
    hlet = read_headerlet(hlet) if not isinstance(hlet, fits.HDUList) else hlet
    hph = hlet[0].header

    def edit(hdul):
        ph = hdul[0].header
        root = str(ph.get("ROOTNAME", "")).strip().lower()
        destim = str(hph.get("DESTIM", "")).strip().lower()
        if not force and root and destim and destim != root:
            raise InputFileError(image, f"headerlet {hph['HDRNAME']!r} is for {destim}, not {root} (use force)")
        dist_img = str(ph.get("DISTNAME", "")).strip()
        dist_hlet = str(hph.get("DISTNAME", "")).strip()
        if not force and dist_img and dist_hlet and dist_img != dist_hlet:
            raise InputFileError(image, f"headerlet distortion model {dist_hlet!r} differs from the image's "
                                        f"{dist_img!r} (use force to replace it)")
        wcscorr.ensure_wcscorr(hdul)
        sipwcs = [h for h in hlet[1:] if h.name == "SIPWCS"]
        rows = []
        for s in sipwcs:
            target = (s.header.get("TG_ENAME", "SCI"), int(s.header.get("TG_EVER", s.header.get("EXTVER", 1))))
            if target not in hdul:
                raise InputFileError(image, f"has no extension {target} that the headerlet targets")
            hdr = hdul[target].header
            if archive and "CRVAL1" in hdr:
                altwcs.archive_primary(hdr, f"{root}_orig")
            from drizzleflow.steps.instruments.wfpc2.updatewcs import strip_distortion
            strip_distortion(hdr)
            for k in list(hdr.keys()):
                if k in ("D2IMEXT",) or k.startswith("D2IMERR"):
                    hdr.remove(k, ignore_missing=True, remove_all=True)
            for card in s.header.cards:
                if WCS_KEY_PATTERNS.match(card.keyword):
                    hdr[card.keyword] = (card.value, card.comment)
            hdr["WCSNAME"] = (hph["WCSNAME"], "Coordinate system title")
            hdr["HDRNAME"] = (hph["HDRNAME"], "name of the headerlet this WCS came from")
            rows.append(wcscorr.row_from_header(hdr, hph["WCSNAME"], " ", HDRNAME=hph["HDRNAME"],
                                                SIPNAME=hph.get("SIPNAME", ""), NPOLNAME=hph.get("NPOLFILE", ""),
                                                D2IMNAME=hph.get("D2IMFILE", ""), PA_V3=ph.get("PA_V3", 0.0),
                                                RMS_RA=hph.get("RMS_RA", 0.0), RMS_Dec=hph.get("RMS_DEC", 0.0),
                                                NMatch=hph.get("NMATCH", 0), Catalog=hph.get("CATALOG", ""),
                                                DESCRIP=str(hph.get("DESCRIP", ""))[:128]))
        new_d2im = [h for h in hlet[1:] if h.name == "D2IMARR"]
        if new_d2im or force:
            for i in reversed(range(1, len(hdul))):
                if str(hdul[i].header.get("EXTNAME", "")).upper() == "D2IMARR":
                    del hdul[i]
            pos = hdul.index_of("WCSCORR")
            for d in new_d2im:
                hdul.insert(pos, d.copy())
                pos += 1
        for k in ("DISTNAME", "SIPNAME", "D2IMFILE", "NPOLFILE", "IDCTAB"):
            if k in hph:
                ph[k] = hph[k]
        wcscorr.append_rows(hdul, rows)
        if attach and hph["HDRNAME"] not in [d["hdrname"] for d in list_headerlets(hdul)]:
            _attach(hdul, hlet)

    _rewrite(image, edit)
