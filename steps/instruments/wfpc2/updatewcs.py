"""Convert an archive ("old format") WFPC2 file to the distortion-aware "new
format" DrizzlePac works with — what ``updatewcs=True`` does in the tutorial.

From the reference files named in the primary header (``uref$...``):

* **IDCTAB** — per chip/filter polynomial ``x_ideal = sum cx[n,m] x^m y^(n-m)``
  (arcsec, relative to XREF/YREF) with the chip's V2/V3 position and THETA.
  The CD matrix comes from the linear terms, the orientation from PA_V3 rolled
  to the reference chip (WF3) position, each chip's CRVAL from its V2/V3 offset
  from the reference chip; SIP A/B = L^-1 x (higher-order terms).  These are
  stwcs's MakeWCS/CompSIP/VACorr conventions, re-derived here so that stwcs and
  drizzleflow give the same WCS for the same file.
* **OFFTAB** — time-dependent V2REF/V3REF/THETA per chip, linearly interpolated
  in DATE-OBS; used, as in stwcs, when the IDCTAB has no V2REF column.
* **DGEOFILE** — the 34th-row pixel-size defect: column 0 of each chip's ``DY``
  image (the y correction as a function of row) becomes a ``D2IMARR`` lookup
  table correcting axis 2 (``D2IMDIS2='Lookup'``, ``D2IM2.*`` record keywords
  read by astropy.wcs).  Deviation from stwcs, which stores the column as a
  1 x 800 row so astropy indexes it by x (and matches chips by a CCDCHIP
  keyword WFPC2 files lack, so only chip 1 gets a table): here the table is
  800 rows x 1 column, indexed by y, one per chip, shared when identical.

The archive's linear WCS is kept as alternate WCS ``O`` (``WCSNAMEO='OPUS'``)
and every change is recorded in a ``WCSCORR`` table.  A file that already
carries a converted WCS (``WCSNAMEO`` and ``IDCSCALE``) is left alone.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import __version__ as astropy_version
from astropy.io import fits

from drizzleflow.engine.errors import InputFileError, ReferenceFileError
from drizzleflow.steps.wcs_tools import altwcs, wcscorr

from . import reference_files
from .reference_files import troll  # the V3 roll at an aperture (one formula for simulator and updatewcs)
from .constants import REFERENCE_CHIP

__all__ = ["IDCModel", "resolve_reference", "read_idc_model", "read_offtab", "read_dgeo_dy",
           "is_converted", "update_wcs", "update_wcs_file", "sip_from_idc", "troll", "UPWCSVER"]

log = logging.getLogger(__name__)

UPWCSVER = "drizzleflow-1"
_NOT_SET = ("", "N/A", "NONE", "INDEF")
#: WFPC2 image parity: sky x grows to the left of detector x
_PARITY = np.array([[-1.0, 0.0], [0.0, 1.0]])


@dataclass
class IDCModel:
    """One IDCTAB row: forward polynomial (arcsec) and the chip's reference point."""

    cx: np.ndarray        # (order+1, order+1): cx[n, m] multiplies x^m y^(n-m)
    cy: np.ndarray
    order: int
    xref: float
    yref: float
    v2ref: float
    v3ref: float
    theta: float          # degrees
    scale: float          # arcsec / pixel
    row: int = -1         # 1-based table row used


# --------------------------------------------------------------------------- references
def _uref_dir(prefix, options_uref):
    if prefix.lower() == "uref" and options_uref:
        return str(options_uref), "recipe/CLI uref"
    env = os.environ.get(prefix) or os.environ.get(prefix.lower()) or os.environ.get(prefix.upper())
    if env:
        return env, f"environment variable {prefix}"
    return None, None


def resolve_reference(value, keyword, uref=None, image=None):
    """Path of a reference file named by a header value such as ``uref$x_idc.fits``.

    Returns None for ``N/A``/blank.  Raises ``ReferenceFileError`` naming the
    keyword, the file and where it looked when it cannot be found.
    """
    text = str(value if value is not None else "").strip()
    if text.upper() in _NOT_SET:
        return None
    where = f" of {image}" if image else ""
    if "$" in text:
        prefix, name = text.split("$", 1)
        directory, how = _uref_dir(prefix, uref)
        if directory is None:
            raise ReferenceFileError(name, f"{keyword} = '{text}'{where} needs the {prefix}$ directory: "
                                           f"set 'uref:' in the recipe, --uref, or the environment variable {prefix}")
        path = Path(os.path.expanduser(directory)) / name
        if not path.is_file():
            raise ReferenceFileError(path, f"{keyword} reference file (header value '{text}'{where}) not found; "
                                           f"looked in {directory} (from {how})")
        return path
    candidates = [Path(os.path.expanduser(text))]
    if uref and not candidates[0].is_absolute():
        candidates.append(Path(uref) / text)
    if image and not candidates[0].is_absolute():
        candidates.append(Path(image).parent / text)
    for c in candidates:
        if c.is_file():
            return c
    raise ReferenceFileError(text, f"{keyword} reference file{where} not found; looked at "
                                   + ", ".join(str(c) for c in candidates))


@functools.lru_cache(maxsize=16)
def _idc_rows(path, mtime_ns):
    """Every row of an IDCTAB, read once per file version: each ingest worker
    asks for 4 chips x its exposures (reading the table per chip cost each worker
    ~20 ms of its first exposure)."""
    return tuple(reference_files.read_idctab_rows(path))


@functools.lru_cache(maxsize=64)
def _idc_row(path, mtime_ns, detector, filter1, filter2):
    """One IDCTAB row, cached per file version."""
    return reference_files.read_idctab(path, detector, filter1, filter2, rows=_idc_rows(path, mtime_ns))


def read_idc_model(path, detector, filter1=None, filter2=None, binned=1) -> IDCModel:
    """The forward IDCTAB row for a chip and filter pair (CLEAR matches blank),
    read with the shared reader in ``reference_files``; V2REF/V3REF/THETA are
    NaN when the table has no such columns (they then come from the OFFTAB)."""
    row = _idc_row(str(path), Path(path).stat().st_mtime_ns, int(detector), filter1 or "", filter2 or "")
    norder = row.norder
    order = max(norder, 3)
    cx = np.zeros((order + 1, order + 1))
    cy = np.zeros((order + 1, order + 1))
    cx[:norder + 1, :norder + 1] = row.cx
    cy[:norder + 1, :norder + 1] = row.cy
    nan = float("nan")
    model = IDCModel(cx=cx, cy=cy, order=norder, xref=row.xref, yref=row.yref,
                     v2ref=nan if row.v2ref is None else row.v2ref, v3ref=nan if row.v3ref is None else row.v3ref,
                     theta=nan if row.theta is None else row.theta, scale=round(float(row.scale), 8))
    if cx[1, 1] == 1.0 and abs(cx[1, 1]) != model.scale:  # table in units of the scale (as stwcs allows)
        model.cx, model.cy = cx * model.scale, cy * model.scale
    if binned != 1:
        # pixels are binned x binned detector pixels: positions scale linearly,
        # an order-n term scales as binned**n
        for n in range(order + 1):
            model.cx[n] *= binned ** n
            model.cy[n] *= binned ** n
        model.xref /= binned
        model.yref /= binned
        model.scale *= binned
    return model


def read_offtab(path, detector, date_obs):
    """(V2REF, V3REF, THETA) of a chip at DATE-OBS, interpolated in date as stwcs
    does (first row before the table, linear extrapolation after it)."""
    return _offtab(str(path), _mtime_ns(path), int(detector), str(date_obs)[:10])


def read_dgeo_dy(path, detector):
    """Column 0 of the chip's ``DY`` image of a DGEOFILE (the y correction in pixels
    as a function of row); chip 1's table when the chip has none (stwcs uses chip 1)."""
    return _dgeo_dy(str(path), _mtime_ns(path), int(detector)).copy()


def _mtime_ns(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0   # the reader says what is wrong with the path


@functools.lru_cache(maxsize=16)
def _offtab_rows(path, mtime_ns):
    return tuple(reference_files.read_offtab_rows(path))


@functools.lru_cache(maxsize=64)
def _offtab(path, mtime_ns, detector, date):
    """Cached per file version, as the IDCTAB rows: ingest asks 4 chips x N exposures."""
    return reference_files.read_offtab(path, date, detector, rows=_offtab_rows(path, mtime_ns))


@functools.lru_cache(maxsize=64)
def _dgeo_dy(path, mtime_ns, detector):
    try:
        return np.asarray(reference_files.read_dgeo_d2im(path, detector), dtype=np.float32)
    except ReferenceFileError:
        if detector == 1:
            raise
        return np.asarray(reference_files.read_dgeo_d2im(path, 1), dtype=np.float32)


# --------------------------------------------------------------------------- geometry
def _diff_angle(a, b):
    return (a - b - 180.0) % 360.0 - 180.0


def _tan_wcs(crpix, crval, cd):
    from astropy.wcs import WCS
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = crpix
    w.wcs.crval = crval
    w.wcs.cd = np.asarray(cd, dtype=float)
    w.wcs.set()
    return w


def _linear_wcs_from_header(h, key=""):
    cd = [[h.get(f"CD1_1{key}", 1.0), h.get(f"CD1_2{key}", 0.0)],
          [h.get(f"CD2_1{key}", 0.0), h.get(f"CD2_2{key}", 1.0)]]
    return _tan_wcs([h[f"CRPIX1{key}"], h[f"CRPIX2{key}"]], [h[f"CRVAL1{key}"], h[f"CRVAL2{key}"]], cd)


def sip_from_idc(model: IDCModel) -> dict:
    """SIP ``A_p_q``/``B_p_q`` keywords (p+q >= 2) from an IDC model:
    (A, B) = L^-1 (cx, cy) with L the linear part [[cx11, cx10], [cy11, cy10]]."""
    lin = np.array([[model.cx[1, 1], model.cx[1, 0]], [model.cy[1, 1], model.cy[1, 0]]])
    inv = np.linalg.inv(lin)
    order = model.cx.shape[0] - 1
    out = {"A_ORDER": model.order, "B_ORDER": model.order}
    for n in range(2, order + 1):
        for m in range(n + 1):
            a, b = inv @ np.array([model.cx[n, m], model.cy[n, m]])
            if n <= model.order:
                out[f"A_{m}_{n - m}"] = float(a)
                out[f"B_{m}_{n - m}"] = float(b)
    return out


def _chip_solutions(chips, ref_detector, pa_v3):
    """New CRVAL/CRPIX/CD per chip from the IDC models (stwcs MakeWCS + VACorr)."""
    ref = chips[ref_detector]
    rm = ref["model"]
    old = _linear_wcs_from_header(ref["header"], ref["okey"])
    crval_ref = old.wcs_pix2world(np.array([[rm.xref, rm.yref]]), 1)[0]
    pv = troll(pa_v3, crval_ref[1], rm.v2ref, rm.v3ref) + (rm.theta or 0.0)
    r_scale = rm.scale / 3600.0
    c, s = math.cos(math.radians(pv)), math.sin(math.radians(pv))
    ref_cd = np.array([[_PARITY[0, 0] * c, -_PARITY[0, 0] * s], [_PARITY[1, 1] * s, _PARITY[1, 1] * c]]) * r_scale
    ref_wcs = _tan_wcs([0.0, 0.0], crval_ref, ref_cd)
    out = {}
    for det, chip in chips.items():
        m = chip["model"]
        off = math.hypot(m.v2ref - rm.v2ref, m.v3ref - rm.v3ref) / (r_scale * 3600.0)
        theta = 0.0 if m.v3ref == rm.v3ref else math.atan2(_PARITY[0, 0] * (m.v2ref - rm.v2ref),
                                                           _PARITY[1, 1] * (m.v3ref - rm.v3ref))
        theta += math.radians(rm.theta or 0.0)
        px = np.array([[off * math.sin(theta), off * math.cos(theta)]])
        crval = ref_wcs.wcs_pix2world(px, 1)[0]
        delmat = np.array([[m.cx[1, 1], m.cy[1, 1]], [m.cx[1, 0], m.cy[1, 0]]]) / r_scale / 3600.0
        dth = math.radians((m.theta - rm.theta) if m.theta else 0.0)
        rot = np.array([[math.cos(dth), math.sin(dth)], [-math.sin(dth), math.cos(dth)]])
        wc = ref_wcs.wcs_pix2world(px + delmat @ rot, 1)
        cosd = math.cos(math.radians(crval[1]))
        cd = np.array([[_diff_angle(wc[0, 0], crval[0]) * cosd, _diff_angle(wc[1, 0], crval[0]) * cosd],
                       [_diff_angle(wc[0, 1], crval[1]), _diff_angle(wc[1, 1], crval[1])]])
        va = float(chip["header"].get("VAFACTOR", 1.0) or 1.0)
        if va != 1.0:
            cd = cd * va
            crval = np.array([crval_ref[0] + va * _diff_angle(crval[0], crval_ref[0]),
                              crval_ref[1] + va * _diff_angle(crval[1], crval_ref[1])])
        out[det] = {"crval": crval, "crpix": np.array([m.xref, m.yref]), "cd": cd}
    return out


# --------------------------------------------------------------------------- file update
def is_converted(hdul) -> bool:
    """True if every SCI header already has the converted WCS (IDCSCALE and the OPUS copy)."""
    scis = [h for h in hdul[1:] if str(h.header.get("EXTNAME", "")).upper() == "SCI"]
    return bool(scis) and all("IDCSCALE" in h.header and "CRVAL1O" in h.header for h in scis)


def _rootname_of(value, *suffixes):
    """File stem of a header value (``uref$x_idc.fits`` -> ``x``), one trailing suffix removed."""
    text = str(value).strip()
    text = text.split("$", 1)[-1]
    name = os.path.basename(text).split(".")[0]
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


_DISTORTION_PREFIXES = ("A_", "B_", "AP_", "BP_", "D2IM", "DP1", "DP2", "CPDIS", "CPERR")


def strip_distortion(header, sip_only=False):
    """Remove SIP (and, unless ``sip_only``, lookup-table) keywords from a chip
    header's primary WCS."""
    prefixes = _DISTORTION_PREFIXES[:4] if sip_only else _DISTORTION_PREFIXES
    for k in list(header.keys()):
        if k.startswith(prefixes) or k in ("A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER"):
            header.remove(k, ignore_missing=True, remove_all=True)
    for i in (1, 2):
        ct = str(header.get(f"CTYPE{i}", ""))
        if ct.endswith("-SIP"):
            header[f"CTYPE{i}"] = ct[:-4]


def update_wcs(hdul, *, uref=None, image=None, d2im_path=None):
    """Convert an in-memory archive WFPC2 HDUList to the new format (in place).

    Parameters
    ----------
    hdul : HDUList
        Primary + SCI extensions (the working copy being built).
    uref : str, optional
        Directory that ``uref$`` resolves to (else the ``uref`` environment variable).
    image : path, optional
        The file's name, for messages.
    d2im_path : path, optional
        Where to write the extracted D2IM reference file (``<root>_d2im.fits``);
        the D2IMFILE keyword names it.  Not written when None.

    Returns
    -------
    bool
        False when the file was already converted (nothing changed).
    """
    image = image or (hdul.filename() or "<memory>")
    ph = hdul[0].header
    scis = [h for h in hdul[1:] if str(h.header.get("EXTNAME", "")).upper() == "SCI"]
    if not scis:
        raise InputFileError(image, "no SCI extensions to update")
    if is_converted(hdul):
        log.info("%s: WCS already converted (IDCSCALE and WCSNAMEO present); updatewcs skipped", image)
        return False
    idc_path = resolve_reference(ph.get("IDCTAB", ""), "IDCTAB", uref, image)
    if idc_path is None:
        raise ReferenceFileError(image, "IDCTAB is not set (N/A); updatewcs needs the distortion table")
    off_path = resolve_reference(ph.get("OFFTAB", ""), "OFFTAB", uref, image)
    dgeo_value = ph.get("DGEOFILE", "")
    dgeo_path = resolve_reference(dgeo_value, "DGEOFILE", uref, image)
    binned = 2 if str(ph.get("MODE", "FULL")).strip().upper() == "AREA" else 1
    filt1, filt2 = ph.get("FILTNAM1"), ph.get("FILTNAM2")
    date_obs = ph.get("DATE-OBS") or scis[0].header.get("DATE-OBS")
    pa_v3 = float(ph.get("PA_V3", scis[0].header.get("PA_V3", 0.0)))

    chips = {}
    for h in scis:
        hdr = h.header
        if "DETECTOR" not in hdr:
            raise InputFileError(image, f"SCI,{hdr.get('EXTVER', '?')} has no DETECTOR keyword")
        det = int(hdr["DETECTOR"])
        model = read_idc_model(idc_path, det, filt1, filt2, binned)
        if np.isnan(model.v2ref) or np.isnan(model.theta):
            if off_path is None:
                if np.isnan(model.v2ref):
                    raise ReferenceFileError(idc_path, "IDCTAB has no V2REF/V3REF and the OFFTAB is N/A")
                model.theta = 0.0
            else:
                if date_obs is None:
                    raise InputFileError(image, "DATE-OBS missing; needed to interpolate the OFFTAB")
                v2, v3, th = read_offtab(off_path, det, date_obs)
                if np.isnan(model.v2ref):
                    model.v2ref, model.v3ref = v2, v3
                if np.isnan(model.theta):
                    model.theta = th
        okey = "O" if "CRVAL1O" in hdr else ""
        chips[det] = {"header": hdr, "model": model, "okey": okey}
    ref_det = REFERENCE_CHIP if REFERENCE_CHIP in chips else int(scis[0].header["DETECTOR"])
    solutions = _chip_solutions(chips, ref_det, pa_v3)

    # D2IM tables, one per distinct table, shared between chips when identical
    tables, chip_table = [], {}
    if dgeo_path is not None:
        for det in chips:
            dy = read_dgeo_dy(dgeo_path, det)
            dy = dy[::binned] if binned != 1 else dy  # rows of binned pixels (approximate)
            for i, t in enumerate(tables):
                if t.shape == dy.shape and np.array_equal(t, dy):
                    chip_table[det] = i + 1
                    break
            else:
                tables.append(dy)
                chip_table[det] = len(tables)

    root = str(ph.get("ROOTNAME", Path(str(image)).name.split("_")[0])).strip().lower()
    idc_root = _rootname_of(ph.get("IDCTAB"), "_idc")
    wcsname = f"IDC_{idc_root}"
    d2im_name = "NONE"
    if tables:
        d2im_file = Path(d2im_path).name if d2im_path else f"{root}_d2im.fits"
        d2im_name = _rootname_of(d2im_file, "_d2im", "_d2i")
    sipname = f"{root}_{idc_root}"
    distname = sipname + (f"-NOMODEL-{d2im_name}" if tables else "")

    for det, chip in chips.items():
        hdr, model, sol = chip["header"], chip["model"], solutions[det]
        if not chip["okey"]:
            altwcs.archive_wcs(hdr, "O", "OPUS")
        strip_distortion(hdr)
        hdr["WCSAXES"] = (2, "number of World Coordinate System axes")
        hdr["CTYPE1"] = ("RA---TAN-SIP", "the coordinate type for the first axis")
        hdr["CTYPE2"] = ("DEC--TAN-SIP", "the coordinate type for the second axis")
        for i in (0, 1):
            hdr[f"CRPIX{i + 1}"] = float(sol["crpix"][i])
            hdr[f"CRVAL{i + 1}"] = float(sol["crval"][i])
        for i in (0, 1):
            for j in (0, 1):
                hdr[f"CD{i + 1}_{j + 1}"] = float(sol["cd"][i, j])
        hdr["ORIENTAT"] = (float(np.degrees(np.arctan2(sol["cd"][0, 1], sol["cd"][1, 1]))),
                           "position angle of image y axis (deg. e of n)")
        for k, v in sip_from_idc(model).items():
            hdr[k] = int(v) if k.endswith("ORDER") else v
        idc_cards = [("IDCSCALE", model.scale, "pixel scale from the IDCTAB reference file"),
                     ("IDCV2REF", model.v2ref, "reference pixel V2 position (arcsec)"),
                     ("IDCV3REF", model.v3ref, "reference pixel V3 position (arcsec)"),
                     ("IDCTHETA", model.theta, "orientation of detector's Y-axis w.r.t. V3 axis"),
                     ("IDCXREF", model.xref, "reference pixel X position from IDCTAB"),
                     ("IDCYREF", model.yref, "reference pixel Y position from IDCTAB"),
                     ("OCX10", model.cx[1, 0], "IDCTAB linear term CX10"),
                     ("OCX11", model.cx[1, 1], "IDCTAB linear term CX11"),
                     ("OCY10", model.cy[1, 0], "IDCTAB linear term CY10"),
                     ("OCY11", model.cy[1, 1], "IDCTAB linear term CY11")]
        for k, v, c in idc_cards:
            hdr[k] = (float(v), c)
        hdr["WCSNAME"] = (wcsname, "Coordinate system title")
        if det in chip_table:
            table = tables[chip_table[det] - 1]
            hdr["D2IMERR2"] = (float(np.abs(table).max()), "Maximum error of D2IM correction for axis 2")
            hdr["D2IMDIS2"] = ("Lookup", "Detector to image correction type")
            hdr["D2IM2.EXTVER"] = (chip_table[det], "Version number of D2IMARR extension")
            hdr["D2IM2.NAXES"] = (2, "Number of independent variables in D2IM function")
            hdr["D2IM2.AXIS.1"] = (1, "Axis number of the 1st variable in a D2IM function")
            hdr["D2IM2.AXIS.2"] = (2, "Axis number of the 2nd variable in a D2IM function")
            hdr["D2IMEXT"] = (d2im_file, "D2IM reference file of the D2IMARR tables")

    for i in reversed(range(1, len(hdul))):
        if str(hdul[i].header.get("EXTNAME", "")).upper() == "D2IMARR":
            del hdul[i]
    wcscorr_pos = hdul.index_of("WCSCORR") if "WCSCORR" in hdul else None
    new_hdus = []
    for i, t in enumerate(tables, start=1):
        d = fits.ImageHDU(data=t.reshape(-1, 1).astype(np.float32), name="D2IMARR")
        d.header["EXTVER"] = (i, "Distortion array version number")
        for ax in (1, 2):
            d.header[f"CRPIX{ax}"] = (0.0, "Pixel coordinate of reference point")
            d.header[f"CRVAL{ax}"] = (0.0, "Coordinate value at reference point")
            d.header[f"CDELT{ax}"] = (1.0, "Coordinate increment at reference point")
        d.header["ODGEOFIL"] = (str(dgeo_value), "DGEOFILE the table was extracted from")
        new_hdus.append(d)
    for d in new_hdus:
        if wcscorr_pos is not None:
            hdul.insert(wcscorr_pos, d)
            wcscorr_pos += 1
        else:
            hdul.append(d)

    if tables and d2im_path is not None:
        _write_d2im_reference(d2im_path, tables, chip_table, dgeo_value)
    if dgeo_path is not None or str(dgeo_value).strip().upper() not in _NOT_SET:
        ph["ODGEOFIL"] = (str(dgeo_value), "original DGEOFILE (converted to D2IMFILE)")
    ph["DGEOFILE"] = ("N/A", "converted to D2IMFILE/D2IMARR by updatewcs")
    ph["D2IMFILE"] = (d2im_file if tables else "N/A", "detector to image correction file")
    ph["NPOLFILE"] = ph.get("NPOLFILE", "N/A")
    ph["UPWCSVER"] = (UPWCSVER, "Version of the software that updated the WCS")
    ph["PYWCSVER"] = (astropy_version, "Version of astropy.wcs used to update the WCS")
    ph["SIPNAME"] = (sipname, "SIP distortion model name")
    ph["DISTNAME"] = (distname, "Distortion model name")
    ph["NEXTEND"] = len(hdul) - 1 + (0 if "WCSCORR" in hdul else 1)

    # the OPUS rows (if the table is new) and this update's rows: one table build
    rows = [] if "WCSCORR" in hdul else wcscorr.opus_rows(hdul, pa_v3)
    rows += [wcscorr.row_from_header(h.header, wcsname, " ", SIPNAME=sipname, NPOLNAME="NOMODEL",
                                    D2IMNAME=d2im_name, PA_V3=pa_v3,
                                    DESCRIP=f"updatewcs: IDCTAB {idc_path.name}"
                                            + (f", OFFTAB {off_path.name}" if off_path else "")
                                            + (f", D2IM from {dgeo_path.name}" if dgeo_path else ""))
            for h in scis]
    wcscorr.append_rows(hdul, rows)
    ph["NEXTEND"] = len(hdul) - 1
    log.info("%s: WCS updated from %s (reference chip %d, %d D2IMARR table(s))",
             image, idc_path.name, ref_det, len(tables))
    return True


def _write_d2im_reference(path, tables, chip_table, dgeo_value):
    """The extracted ``<root>_d2im.fits``: one ``DY`` image per chip (as stwcs writes it,
    but shaped rows x 1 like the D2IMARR tables)."""
    from drizzleflow.engine.atomic import atomic_path
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["INSTRUME"] = "WFPC2"
    hdus[0].header["ODGEOFIL"] = str(dgeo_value)
    for det, idx in sorted(chip_table.items()):
        h = fits.ImageHDU(data=tables[idx - 1].reshape(-1, 1).astype(np.float32), name="DY")
        h.header["EXTVER"] = det
        h.header["DETECTOR"] = det
        for ax in (1, 2):
            h.header[f"CRPIX{ax}"] = 0.0
            h.header[f"CRVAL{ax}"] = 0.0
            h.header[f"CDELT{ax}"] = 1.0
        hdus.append(h)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def update_wcs_file(path, *, uref=None):
    """Run :func:`update_wcs` on a working-copy file on disk (atomically rewritten).
    Never call this on an archive file."""
    from drizzleflow.engine.atomic import atomic_path
    path = Path(path)
    with fits.open(path, memmap=False) as hdul:
        hdul.readall()
        root = str(hdul[0].header.get("ROOTNAME", path.name.split("_")[0])).strip().lower()
        changed = update_wcs(hdul, uref=uref, image=path, d2im_path=path.with_name(f"{root}_d2im.fits"))
        if changed:
            with atomic_path(path) as tmp:
                hdul.writeto(tmp)
    return changed
