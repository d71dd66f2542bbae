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
from drizzleflow.engine.manifest import file_identity

from ..bits import bits_mask
from ..model import Chip, ChipGeom, Exposure
from .constants import NAN_BIT, detector_gain
from .files import as_uint16, check_pair, dq_partner, read_fits, rootname
from .layout import PairLayout

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


def chip_geometry(path, root=None, wcs_for=None, layouts=None) -> list[ChipGeom]:
    """Geometry of every SCI chip of a file, from its headers (no pixel data).

    ``wcs_for(hdul, ext)`` supplies the WCS (default :func:`chip_wcs`); callers
    that read the same files repeatedly pass a caching one, and ``layouts``
    (see :func:`open_exposure`): a file version read before is not parsed again.
    """
    wcs_for = wcs_for or chip_wcs
    layout = None
    if layouts is not None:
        try:
            layout = layouts.peek(_geometry_key(path, file_identity(path)))
        except OSError:
            layout = None
    if layout is not None:
        with _WcsFromFile(path, wcs_for) as wcs_at:
            return _geometry(path, root, layout.primary, [(h, ext) for h, ext, _s, _d in layout.chips], wcs_at)
    with fits.open(path, memmap=True) as hdul:
        return _geometry(path, root, hdul[0].header, [(h.header, hdul.index_of(h)) for h in sci_extensions(hdul)],
                         lambda ext: wcs_for(hdul, ext))


def _geometry(path, root, prim, chips, wcs_at) -> list[ChipGeom]:
    root = root or str(prim.get("ROOTNAME", "")).lower() or Path(path).name.split("_")[0]
    out = []
    for i, (hdr, ext) in enumerate(chips, 1):
        w = wcs_at(ext)
        extver = int(hdr.get("EXTVER", i))
        out.append(ChipGeom(root, extver, int(hdr.get("DETECTOR", extver)),
                            (int(hdr["NAXIS2"]), int(hdr["NAXIS1"])), w, chip_pscale(hdr, w),
                            float(prim.get("EXPTIME", 0.0))))
    return out


class _WcsFromFile:
    """``wcs_at(ext)`` for a file whose headers came from a layout: the WCS from the
    caller's cache (``wcs_for.cached``) when it has it, else built by ``wcs_for``
    from the file, opened once for that and closed on exit."""

    def __init__(self, path, wcs_for):
        self.path, self.wcs_for, self.hdul = path, wcs_for, None
        self.cached = getattr(wcs_for, "cached", None)

    def __enter__(self):
        return self

    def __call__(self, ext):
        w = self.cached(ext) if self.cached is not None else None
        if w is None:
            if self.hdul is None:
                self.hdul = fits.open(self.path, memmap=True)
            w = self.wcs_for(self.hdul, ext)
        return w

    def __exit__(self, *exc):
        if self.hdul is not None:
            self.hdul.close()


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


def open_exposure(sci_path, dq_path=None, ignore_bits=0, *, source=None, wcs_for=None,
                  layouts=None) -> Exposure:
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
        that reads the same file repeatedly can share the WCS objects; one with
        a ``cached(ext)`` attribute, returning the WCS or None, spares a read
        served by ``layouts`` from opening the file for it).
    layouts : cache, optional
        ``peek(key)``/``put(key, value)`` store of :class:`~.layout.PairLayout`
        objects: a read of file versions already read takes only their pixel
        bytes (the headers are then shared between the exposures: read-only).

    Returns
    -------
    Exposure
        Chips in electrons (float32), DQ uint16, full WCS, gain, read noise,
        exposure time, undistorted pixel scale, PHOTFLAM per e-/s.
    """
    wcs_for = wcs_for or chip_wcs
    key = _pair_key(sci_path, dq_path) if layouts is not None else None
    layout = layouts.peek(key) if key is not None else None
    handles = layout.open(key) if layout is not None else None
    if handles is not None:
        return _from_layout(layout, handles, ignore_bits, source, wcs_for)
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
        sci, dqf = opened(pair.sci), opened(pair.dq)
        scis, dqs = sci_extensions(sci), dq_extensions(dqf)
        layout = PairLayout.of(pair, sci, scis, dqs) if key is not None else None
        exp = _build_exposure(pair, sci[0].header, _hdu_chips(sci, scis, dqs), ignore_bits, source,
                              lambda ext: wcs_for(sci, ext))
    finally:
        for h in files.values():
            h.close()
    if layout is not None:
        layouts.put(key, layout)
        layouts.put(_geometry_key(key[0], key[2]), layout)
    return exp


def _geometry_key(sci_path, ident):
    """Where a layout is kept for :func:`chip_geometry`: its science file alone."""
    return ("sci", str(Path(sci_path)), ident)


def _pair_key(sci_path, dq_path):
    """``(sci path, DQ path, sci identity, DQ identity)``, the identities taken before
    the files are read (None when one is missing: the full read then says which).
    The paths are part of it: a hard link elsewhere (a sweep point's working copy)
    is the same file, but the exposure read through it must name its own path, to
    which the steps write (MDRIZSKY, the CR bit)."""
    sci_path = Path(sci_path)
    dq_path = Path(dq_path) if dq_path else None
    try:
        dq_path = dq_path or dq_partner(sci_path)
        return (str(sci_path), str(dq_path), file_identity(sci_path), file_identity(dq_path))
    except (OSError, InputFileError):
        return None


def _hdu_chips(sci, scis, dqs):
    """``(header, extension index, science, DQ)`` per chip of HDULists read by astropy."""
    for sh, dh in zip(scis, dqs):
        data = np.array(sh.data, dtype=np.float32, order="C")  # native endian copy
        dq = as_uint16(dh.data)   # always a new array
        # the file's big-endian arrays go as soon as they are converted: a whole
        # exposure of them (15 MB on WFPC2) would otherwise stay beside the copies
        del sh.data, dh.data
        yield sh.header, sci.index_of(sh), data, dq


def _from_layout(layout, handles, ignore_bits, source, wcs_for):
    """An Exposure from file versions read before (``handles``: both files, open):
    pixel bytes only."""
    try:
        with _WcsFromFile(layout.pair.sci, wcs_for) as wcs_at:
            return _build_exposure(layout.pair, layout.primary, layout.read(handles), ignore_bits, source, wcs_at)
    finally:
        for fh in handles:
            fh.close()


def _build_exposure(pair, primary, chip_data, ignore_bits, source, wcs_at) -> Exposure:
    """``chip_data``: ``(SCI header, extension index, science float32, DQ uint16)`` per
    chip, the arrays fresh (converted in place here); ``wcs_at(ext)``: the chip's WCS."""
    clear = bits_mask(ignore_bits) or 0
    root = rootname(pair.sci, primary)
    exptime = float(primary.get("EXPTIME", 0.0))
    chips = []
    for i, (hdr, ext, data, dq) in enumerate(chip_data, start=1):
        det = int(hdr.get("DETECTOR", primary.get("DETECTOR", i)))
        atod = primary.get("ATODGAIN", hdr.get("ATODGAIN"))
        try:
            gain, rdnoise = detector_gain(atod, det)
        except KeyError as exc:
            raise InputFileError(pair.sci, f"SCI,{hdr.get('EXTVER', i)}: {exc.args[0]}") from None
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
        wcs = wcs_at(ext)
        photflam = float(hdr.get("PHOTFLAM", primary.get("PHOTFLAM", 0.0)) or 0.0)
        chips.append(Chip(
            root=root, extver=int(hdr.get("EXTVER", i)), detector=det, sci=data, dq=dq, wcs=wcs,
            header=hdr, exptime=exptime, gain=float(gain), rdnoise=float(rdnoise),
            pscale=chip_pscale(hdr, wcs), photflam=photflam / gain if photflam else 0.0,
        ))
    return Exposure(root=root, sci_path=Path(pair.sci), dq_path=Path(pair.dq),
                    source=Path(source) if source else Path(pair.sci), primary=primary, chips=chips)
