"""Build the in-memory :class:`~drizzleflow.steps.instruments.model.Exposure`
from a WFPC2 science file and its DQ file (normally the working copies).

Science values are converted once: native-endian float32, DN x gain ->
electrons; non-finite values become 0 with DQ bit ``NAN_BIT`` (16) set.
The chip WCS is built with the open file so SIP and the D2IMARR lookup tables
are part of it.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits

from drizzleflow.engine.errors import InputFileError

from ..bits import bits_mask
from ..model import Chip, ChipGeom, Exposure
from .constants import NAN_BIT, detector_gain
from .files import as_uint16, check_pair, read_fits, rootname

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["open_exposure", "chip_wcs", "chip_geometry", "chip_pscale", "sci_extensions", "dq_extensions"]

log = logging.getLogger(__name__)


def sci_extensions(hdul):
    """SCI image extensions in file order."""
    return [h for h in hdul[1:] if isinstance(h, fits.ImageHDU)
            and str(h.header.get("EXTNAME", "")).upper() == "SCI"]


def dq_extensions(hdul):
    """DQ image extensions: by index, as DrizzlePac reads c1m files (EXTNAME SCI or SDQ)."""
    return [h for h in hdul[1:] if isinstance(h, fits.ImageHDU) and h.header.get("NAXIS", 0) == 2
            and str(h.header.get("EXTNAME", "")).upper() not in ("D2IMARR", "WCSDVARR", "HDRLET")]


def chip_wcs(hdul, ext) -> WCS:
    """Full astropy WCS of an extension (SIP + lookup tables from the open file).

    ``astropy.wcs`` is imported here, when a WCS is first built, not with this
    module: it brings ``astropy.coordinates`` (~0.15 s), which a rerun served
    by kept inputs (steps/chain/final_inputs.py) never needs."""
    from astropy.wcs import WCS, FITSFixedWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(hdul[ext].header, hdul)


def chip_geometry(path, root=None, wcs_for=None) -> list[ChipGeom]:
    """Geometry of every SCI chip of a file, from its headers (no pixel data).

    ``wcs_for(hdul, ext)`` supplies the WCS (default :func:`chip_wcs`); callers
    that read the same files repeatedly pass a caching one.
    """
    wcs_for = wcs_for or chip_wcs
    with fits.open(path, memmap=True) as hdul:
        prim = hdul[0].header
        root = root or str(prim.get("ROOTNAME", "")).lower() or Path(path).name.split("_")[0]
        out = []
        for i, h in enumerate(sci_extensions(hdul), 1):
            hdr = h.header
            w = wcs_for(hdul, hdul.index_of(h))
            extver = int(hdr.get("EXTVER", i))
            out.append(ChipGeom(root, extver, int(hdr.get("DETECTOR", extver)),
                                (int(hdr["NAXIS2"]), int(hdr["NAXIS1"])), w, chip_pscale(hdr, w),
                                float(prim.get("EXPTIME", 0.0))))
    return out


def chip_pscale(header, wcs=None) -> float:
    """Undistorted pixel scale (arcsec): IDCSCALE, else from the CD matrix."""
    if "IDCSCALE" in header:
        return float(header["IDCSCALE"])
    if wcs is not None and wcs.wcs.has_cd():
        cd = wcs.wcs.cd
    else:
        cd = np.array([[header.get("CD1_1", 0.0), header.get("CD1_2", 0.0)],
                       [header.get("CD2_1", 0.0), header.get("CD2_2", 0.0)]])
    return float(np.sqrt(abs(np.linalg.det(cd))) * 3600.0)


def open_exposure(sci_path, dq_path=None, ignore_bits=0, *, source=None, wcs_for=None) -> Exposure:
    """Read a WFPC2 science file (multi-extension, new or old format) and its DQ file.

    Parameters
    ----------
    sci_path : path
        ``*_c0m.fits`` (normally the working copy written by ``ingest``).
    dq_path : path, optional
        Its DQ file; default the ``_c1m`` partner.  Checked for group count and shape.
    ignore_bits : int or str, optional
        DQ bits cleared on reading (e.g. ``resetbits``-style ``"4096"``).
    source : path, optional
        The archive file this working copy came from (recorded in the Exposure).
    wcs_for : callable, optional
        ``wcs_for(hdul, ext) -> WCS`` in place of :func:`chip_wcs` (a caller
        that reads the same file repeatedly can share the WCS objects).

    Returns
    -------
    Exposure
        Chips in electrons (float32), DQ uint16, full WCS, gain, read noise,
        exposure time, undistorted pixel scale, PHOTFLAM per e-/s.
    """
    files = {}

    def opened(path):
        # each file is read once: the pair check and the chips share it; tables
        # (WCSCORR) are not read: an Exposure has no use for them
        if path not in files:
            files[path] = read_fits(path, load_data="images")
        return files[path]

    try:
        pair = check_pair(sci_path, dq_path, opened=opened)
        if pair.kind != "mef":
            raise InputFileError(sci_path, "waivered (c0f) file: convert it with waivered_to_mef or the "
                                 "ingest step first")
        return _build_exposure(pair, opened(pair.sci), opened(pair.dq), ignore_bits, source, wcs_for or chip_wcs)
    finally:
        for h in files.values():
            h.close()


def _build_exposure(pair, sci, dqf, ignore_bits, source, wcs_for) -> Exposure:
    clear = bits_mask(ignore_bits) or 0
    primary = sci[0].header   # no copy: the HDUList is closed and dropped after this
    root = rootname(pair.sci, primary)
    exptime = float(primary.get("EXPTIME", 0.0))
    scis = sci_extensions(sci)
    dqs = dq_extensions(dqf)
    chips = []
    for i, (sh, dh) in enumerate(zip(scis, dqs), start=1):
        hdr = sh.header
        det = int(hdr.get("DETECTOR", primary.get("DETECTOR", i)))
        atod = primary.get("ATODGAIN", hdr.get("ATODGAIN"))
        try:
            gain, rdnoise = detector_gain(atod, det)
        except KeyError as exc:
            raise InputFileError(pair.sci, f"SCI,{hdr.get('EXTVER', i)}: {exc.args[0]}") from None
        data = np.array(sh.data, dtype=np.float32, order="C")  # native endian copy
        dq = as_uint16(dh.data)   # always a new array
        # the file's big-endian arrays go as soon as they are converted: a whole
        # exposure of them (15 MB on WFPC2) would otherwise stay beside the copies
        del sh.data, dh.data
        if clear:
            dq &= np.uint16(~clear & 0xFFFF)
        bad = ~np.isfinite(data)
        if bad.any():
            log.info("%s[sci,%s]: %d non-finite pixels set to 0 and flagged with DQ bit %d",
                     root, hdr.get("EXTVER", i), int(bad.sum()), NAN_BIT)
            data[bad] = 0.0
            dq[bad] |= np.uint16(NAN_BIT)
        bunit = str(hdr.get("BUNIT", primary.get("BUNIT", "COUNTS"))).upper()
        if "ELECTRON" not in bunit:
            data *= np.float32(gain)
        if "/S" in bunit:
            data *= np.float32(exptime)
        wcs = wcs_for(sci, sci.index_of(sh))
        photflam = float(hdr.get("PHOTFLAM", primary.get("PHOTFLAM", 0.0)) or 0.0)
        chips.append(Chip(
            root=root, extver=int(hdr.get("EXTVER", i)), detector=det, sci=data, dq=dq, wcs=wcs,
            header=hdr, exptime=exptime, gain=float(gain), rdnoise=float(rdnoise),
            pscale=chip_pscale(hdr, wcs), photflam=photflam / gain if photflam else 0.0,
        ))
    return Exposure(root=root, sci_path=Path(pair.sci), dq_path=Path(pair.dq),
                    source=Path(source) if source else Path(pair.sci), primary=primary, chips=chips)
