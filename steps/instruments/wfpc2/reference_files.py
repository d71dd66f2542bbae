"""WFPC2 geometric reference files (IDCTAB, OFFTAB, DGEOFILE): writers, readers
and the exact distortion model they describe.

The simulator writes these files and builds its pixels with the functions
below; ``updatewcs`` (steps.instruments.wfpc2) reads the same files and must
reproduce the simulator's truth.  The formats follow what stwcs reads
(``distortion.mutil.readIDCtab`` / ``readOfftab`` and
``updatewcs.wfpc2_dgeo``), so DrizzlePac can read them too.

File formats
------------
IDCTAB (``*_idc.fits``)
    Primary header: ``INSTRUME='WFPC2'``, ``NORDER`` (polynomial order, 3).
    Extension 1: binary table, one row per (chip, filter pair, direction):
    ``DETCHIP`` (int, 1 = PC1 .. 4 = WF4), ``DIRECTION`` ('FORWARD'),
    ``FILTER1``, ``FILTER2`` (e.g. 'F814W', 'CLEAR'), ``XSIZE``, ``YSIZE``,
    ``XREF``, ``YREF`` (1-based FITS pixel of the model origin), ``SCALE``
    (arcsec/pixel), ``CX10 .. CX33``, ``CY10 .. CY33`` (arcsec / pixel**n).
    There are deliberately NO ``V2REF/V3REF/THETA`` columns: as for real
    WFPC2 data, stwcs then takes them from the OFFTAB (``readIDCtab`` only
    consults the OFFTAB when the IDCTAB lacks ``V2REF``).  The readers here
    accept both layouts.
OFFTAB (``*_off.fits``)
    Extension 1: binary table ``DETCHIP`` (int; -999 = all chips),
    ``OBSDATE`` ('YYYY-MM-DD'), ``V2REF``, ``V3REF`` (arcsec), ``THETA``
    (degrees), rows in increasing date per chip.  Values are linearly
    interpolated in the observation date (``DATE-OBS`` at 00:00 UTC, in
    seconds since 1970) between the bracketing rows; before the first row the
    first row is used, after the last row stwcs extrapolates linearly from the
    last two rows (reproduced here).  The simulator's table brackets 2007.
DGEOFILE (``*_dxy.fits``)
    Old-style full-size distortion images: extensions ``('DX', k)`` and
    ``('DY', k)`` for k = 1..4 (header ``DETECTOR = CCDCHIP = k``), float32
    800 x 800, the offset in pixels to ADD to the detector position.  WFPC2
    only uses it for the 34th-row pattern: ``DX = 0`` and ``DY[j, i] = D(j+1)``
    for every column i.  stwcs converts it by taking ``DY[:, 0]`` of chip 1
    into an 800-element D2IM table (the same table for every chip, which is
    why all four chips carry the same pattern here).

The model (pixel -> sky), exactly
---------------------------------
Pixel coordinates ``(x, y)`` are 1-based FITS coordinates in this section
(numpy index + 1).  For chip k with IDC row ``R_k`` and reference chip
r = WF3 (``REFERENCE_CHIP``):

1. 34th-row correction (``d2im_offset``): ``y' = y + D(y)`` with ``D`` the
   piecewise-linear interpolation of the 800-value table at y = 1..800
   (``numpy.interp``, constant beyond the ends); ``x' = x``.
2. Polynomial (``idc_forward``): with ``dx = x' - XREF``, ``dy = y' - YREF``::

       u = sum_{i=1..N} sum_{j=0..i} CX{i}{j} * dx**j * dy**(i-j)
       v = sum_{i=1..N} sum_{j=0..i} CY{i}{j} * dx**j * dy**(i-j)

   (u, v) are undistorted arcsec in the chip's own frame (``CX11 ~ SCALE``,
   ``CY10 ~ SCALE``), the convention of stwcs ``GeometryModel.apply``.
3. Chip -> reference frame (``chip_to_frame``): rotate by
   ``dtheta = THETA_k - THETA_r`` counter-clockwise and add the chip offset::

       U = cos(dtheta) u - sin(dtheta) v + P
       V = sin(dtheta) u + cos(dtheta) v + Q
       (P, Q) = |dV| (sin phi, cos phi),
       phi = atan2(-(V2_k - V2_r), V3_k - V3_r) + THETA_r   (radians)

   with V2/V3/THETA from the OFFTAB at the observation date.  (U, V) is in
   arcsec, axes along the reference chip's undistorted x/y, origin at the
   reference chip's (XREF, YREF).  This is stwcs ``MakeWCS`` geometry
   (parity diag(-1, 1)).
4. Frame -> sky (``frame_to_sky``): gnomonic (TAN) projection about
   ``(ra_ref, dec_ref)`` = the sky position of the reference chip's
   (XREF, YREF), with intermediate world coordinates in degrees::

       xi  = (-cos(pv) U + sin(pv) V) / 3600
       eta = ( sin(pv) U + cos(pv) V) / 3600

   ``pv`` = position angle (east of north) of the reference chip's +y axis
   = ``troll(PA_V3, dec_ref, V2_r, V3_r) + THETA_r`` (``troll`` as stwcs
   computes the roll at the aperture from the roll at V1).

A SIP WCS per chip (CRPIX = XREF, YREF; CRVAL = sky of (P, Q); CD = the
linear part rotated to the sky; A/B = L^-1 (higher-order terms)) plus a
D2IM lookup of ``D`` reproduces this to ~1e-4 pixel: the only differences
are the per-chip tangent points (< 1e-4 arcsec over a WFPC2 field).
Velocity aberration is not modelled (headers carry ``VAFACTOR = 1``).

What stwcs (benchenv: stwcs + astropy) does with these files, checked on a
simulated 800-pixel set: ``readIDCtab``/``readOfftab``/``troll`` give the
same numbers as this module, and ``stwcs.updatewcs`` reproduces the header
model to 0.016 pixel, which is exactly the 34th-row amplitude it misses.
It drops the pattern because (a) its D2IM file has ``DETECTOR`` but no
``CCDCHIP`` in its extensions, so only chip 1 gets a ``D2IMARR``, and (b) the
1 x 800 table with ``D2IM2.AXIS.1 = 1`` is looked up by astropy with the x
(column) coordinate, so on PC1 the y correction varies with x.
drizzleflow's updatewcs applies ``D(y)`` to every chip.  AstroDrizzle
(``updatewcs=True``, tutorial parameters) runs on the simulated files.
"""
from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from astropy.io import fits

from drizzleflow.engine.atomic import atomic_path
from drizzleflow.engine.errors import ReferenceFileError

__all__ = [
    "IDCRow", "OffRow", "REFERENCE_CHIP",
    "write_idctab", "read_idctab_rows", "read_idctab", "idc_model",
    "write_offtab", "read_offtab_rows", "read_offtab",
    "write_dgeofile", "read_dgeo_d2im", "d2im_offset",
    "idc_forward", "idc_inverse", "chip_offset", "chip_to_frame", "frame_to_chip",
    "troll", "frame_to_sky", "sky_to_frame", "pixel_to_sky", "sky_to_pixel",
    "date_seconds", "resolve_uref",
]

#: chip whose frame defines the focal-plane reference (stwcs: WF3)
REFERENCE_CHIP = 3


@dataclass
class IDCRow:
    """One IDCTAB row: the polynomial model of one chip for one filter pair.

    ``cx[i, j]`` multiplies ``dx**j * dy**(i-j)`` (stwcs ``fx`` layout);
    ``v2ref``, ``v3ref``, ``theta`` are filled from the OFFTAB when the
    IDCTAB has no such columns (``None`` until then).
    """

    detchip: int
    xref: float
    yref: float
    scale: float
    cx: np.ndarray
    cy: np.ndarray
    xsize: int = 800
    ysize: int = 800
    filter1: str = "F814W"
    filter2: str = "CLEAR"
    direction: str = "FORWARD"
    v2ref: float | None = None
    v3ref: float | None = None
    theta: float | None = None

    @property
    def norder(self):
        return self.cx.shape[0] - 1

    @property
    def linear(self):
        """The 2x2 linear part ``L`` with (u, v) = L @ (dx, dy) to first order."""
        return np.array([[self.cx[1, 1], self.cx[1, 0]], [self.cy[1, 1], self.cy[1, 0]]])


@dataclass
class OffRow:
    """One OFFTAB row: chip position and rotation valid at ``obsdate``."""

    detchip: int
    obsdate: str
    v2ref: float
    v3ref: float
    theta: float


# ----------------------------------------------------------------------------- paths

def resolve_uref(name, uref=None):
    """Turn ``'uref$x_idc.fits'`` into a path using ``uref`` (a folder).

    Without ``uref`` the ``uref`` environment variable is used, as IRAF did.
    Plain paths are returned unchanged.
    """
    import os
    name = str(name).strip()
    if "$" not in name:
        return Path(name)
    prefix, rest = name.split("$", 1)
    folder = uref if uref is not None else os.environ.get(prefix)
    if folder is None:
        raise ReferenceFileError(name, f"set '{prefix}' (the reference-file folder) to find it")
    return Path(folder) / rest


def _open(path, what):
    try:
        return fits.open(path, memmap=False)
    except (OSError, ValueError) as exc:
        raise ReferenceFileError(path, f"cannot read {what} ({exc})") from None


# ----------------------------------------------------------------------------- IDCTAB

def write_idctab(path, rows, *, descrip="drizzleflow simulated WFPC2 distortion", pedigree="SIMULATION"):
    """Write an IDCTAB holding ``rows`` (list of :class:`IDCRow`, one order)."""
    order = rows[0].norder
    if any(r.norder != order for r in rows):
        raise ValueError("all IDCTAB rows must have the same polynomial order")
    cols = [
        fits.Column("DETCHIP", "J", array=[r.detchip for r in rows]),
        fits.Column("DIRECTION", "8A", array=[r.direction for r in rows]),
        fits.Column("FILTER1", "8A", array=[r.filter1 for r in rows]),
        fits.Column("FILTER2", "8A", array=[r.filter2 for r in rows]),
        fits.Column("XSIZE", "J", array=[r.xsize for r in rows]),
        fits.Column("YSIZE", "J", array=[r.ysize for r in rows]),
        fits.Column("XREF", "D", array=[r.xref for r in rows]),
        fits.Column("YREF", "D", array=[r.yref for r in rows]),
        fits.Column("SCALE", "D", array=[r.scale for r in rows]),
    ]
    if all(r.v2ref is not None for r in rows):
        cols += [fits.Column("V2REF", "D", array=[r.v2ref for r in rows]),
                 fits.Column("V3REF", "D", array=[r.v3ref for r in rows]),
                 fits.Column("THETA", "D", array=[r.theta for r in rows])]
    for name, attr in (("CX", "cx"), ("CY", "cy")):
        for i in range(1, order + 1):
            for j in range(i + 1):
                cols.append(fits.Column(f"{name}{i}{j}", "D",
                                        array=[getattr(r, attr)[i, j] for r in rows]))
    phdu = fits.PrimaryHDU()
    h = phdu.header
    h["INSTRUME"] = "WFPC2"
    h["FILETYPE"] = "DISTORTION COEFFICIENTS"
    h["NORDER"] = (order, "order of the distortion polynomials")
    h["PARITY"] = (-1, "parity of the detector frame w.r.t. V2/V3")
    h["USEAFTER"] = "Jan 01 1993 00:00:00"
    h["PEDIGREE"] = pedigree
    h["DESCRIP"] = descrip
    h["ORIGIN"] = "drizzleflow simulator"
    h["SIMULATE"] = (True, "simulated reference file")
    table = fits.BinTableHDU.from_columns(cols)
    with atomic_path(path) as tmp:
        fits.HDUList([phdu, table]).writeto(tmp)


def read_idctab_rows(path):
    """All rows of an IDCTAB as :class:`IDCRow` objects (file order)."""
    with _open(path, "IDCTAB") as hdul:
        try:
            norder = int(hdul[0].header["NORDER"])
            data = hdul[1].data
            names = [n.upper() for n in data.names]
        except (KeyError, IndexError, AttributeError) as exc:
            raise ReferenceFileError(path, f"not an IDCTAB ({exc})") from None
        prefix = ("CX", "CY") if "CX10" in names else ("A", "B")
        rows = []
        for k in range(len(data)):
            cx = np.zeros((norder + 1, norder + 1))
            cy = np.zeros((norder + 1, norder + 1))
            for i in range(1, norder + 1):
                for j in range(i + 1):
                    cx[i, j] = data[f"{prefix[0]}{i}{j}"][k]
                    cy[i, j] = data[f"{prefix[1]}{i}{j}"][k]
            get = (lambda col: float(data[col][k]) if col in names else None)
            rows.append(IDCRow(
                detchip=int(data["DETCHIP"][k]) if "DETCHIP" in names else 1,
                xref=float(data["XREF"][k]), yref=float(data["YREF"][k]),
                scale=float(data["SCALE"][k]), cx=cx, cy=cy,
                xsize=int(data["XSIZE"][k]), ysize=int(data["YSIZE"][k]),
                filter1=str(data["FILTER1"][k]).strip() if "FILTER1" in names else "CLEAR",
                filter2=str(data["FILTER2"][k]).strip() if "FILTER2" in names else "CLEAR",
                direction=str(data["DIRECTION"][k]).strip().upper() if "DIRECTION" in names else "FORWARD",
                v2ref=get("V2REF"), v3ref=get("V3REF"), theta=get("THETA")))
    return rows


def _norm_filter(name):
    name = (name or "").strip().upper()
    return "CLEAR" if (not name or name.startswith("CLEAR")) else name


def read_idctab(path, chip, filter1="F814W", filter2="", direction="FORWARD", rows=None):
    """The row of an IDCTAB for one chip and filter pair (stwcs matching rules:
    blank or CLEAR* filters match 'CLEAR'; DETCHIP -999 matches any chip).
    ``rows``: the table's rows as :func:`read_idctab_rows` gave them (not read again)."""
    f1, f2 = _norm_filter(filter1), _norm_filter(filter2)
    for row in read_idctab_rows(path) if rows is None else rows:
        if (_norm_filter(row.filter1) == f1 and _norm_filter(row.filter2) == f2
                and row.direction.upper() == direction.upper()
                and row.detchip in (int(chip), -999)):
            return row
    raise ReferenceFileError(path, f"no IDCTAB row for chip {chip}, filters {f1}/{f2}, {direction}")


def idc_model(idctab, chip, *, date, offtab=None, filter1="F814W", filter2=""):
    """IDCTAB row with ``v2ref``/``v3ref``/``theta`` resolved (stwcs semantics):
    from the IDCTAB if it has ``V2REF``, otherwise from the OFFTAB at ``date``."""
    row = read_idctab(idctab, chip, filter1, filter2)
    if row.v2ref is None:
        if offtab is None:
            v2, v3, th = 0.0, 0.0, row.theta
        else:
            v2, v3, th = read_offtab(offtab, date, chip)
        row = replace(row, v2ref=v2, v3ref=v3, theta=th if th is not None else 0.0)
    if row.theta is None:
        row = replace(row, theta=0.0)
    return row


# ----------------------------------------------------------------------------- OFFTAB

def write_offtab(path, rows, *, descrip="drizzleflow simulated WFPC2 chip offsets"):
    """Write an OFFTAB from a list of :class:`OffRow` (sorted by chip, then date)."""
    rows = sorted(rows, key=lambda r: (r.detchip, date_seconds(r.obsdate)))
    cols = [
        fits.Column("DETCHIP", "J", array=[r.detchip for r in rows]),
        fits.Column("OBSDATE", "10A", array=[r.obsdate for r in rows]),
        fits.Column("V2REF", "D", array=[r.v2ref for r in rows]),
        fits.Column("V3REF", "D", array=[r.v3ref for r in rows]),
        fits.Column("THETA", "D", array=[r.theta for r in rows]),
    ]
    phdu = fits.PrimaryHDU()
    phdu.header["INSTRUME"] = "WFPC2"
    phdu.header["FILETYPE"] = "CHIP OFFSETS"
    phdu.header["DESCRIP"] = descrip
    phdu.header["PEDIGREE"] = "SIMULATION"
    phdu.header["ORIGIN"] = "drizzleflow simulator"
    phdu.header["SIMULATE"] = (True, "simulated reference file")
    with atomic_path(path) as tmp:
        fits.HDUList([phdu, fits.BinTableHDU.from_columns(cols)]).writeto(tmp)


def read_offtab_rows(path):
    with _open(path, "OFFTAB") as hdul:
        try:
            d = hdul[1].data
            return [OffRow(int(d["DETCHIP"][k]), str(d["OBSDATE"][k]).strip(), float(d["V2REF"][k]),
                           float(d["V3REF"][k]), float(d["THETA"][k])) for k in range(len(d))]
        except (KeyError, IndexError, AttributeError) as exc:
            raise ReferenceFileError(path, f"not an OFFTAB ({exc})") from None


def date_seconds(date):
    """'YYYY-MM-DD' (anything after the day is ignored) -> seconds since 1970, UTC midnight."""
    y, m, d = (int(p) for p in str(date).strip()[:10].split("-"))
    return calendar.timegm((y, m, d, 0, 0, 0, 0, 0, 0))


def read_offtab(path, date, chip, rows=None):
    """(V2REF, V3REF, THETA) of ``chip`` at ``date`` ('YYYY-MM-DD'), interpolated
    linearly between the bracketing rows as stwcs ``readOfftab`` does.
    ``rows``: the table's rows as :func:`read_offtab_rows` gave them (not read again)."""
    rows = [r for r in (read_offtab_rows(path) if rows is None else rows) if r.detchip in (int(chip), -999)]
    if not rows:
        raise ReferenceFileError(path, f"no OFFTAB row for chip {chip}")
    rows.sort(key=lambda r: date_seconds(r.obsdate))
    t = date_seconds(date)
    ts = [date_seconds(r.obsdate) for r in rows]
    later = [i for i, ti in enumerate(ts) if t <= ti]
    if later:
        end = later[0]
        start = end - 1 if end > 0 else None
    else:                       # after the last row: stwcs extrapolates from the last two
        end = len(rows) - 1
        start = end - 1 if end > 0 else None
    if start is None:
        r = rows[end]
        return r.v2ref, r.v3ref, r.theta
    a, b = rows[start], rows[end]
    f = (t - ts[start]) / (ts[end] - ts[start])
    return (a.v2ref + f * (b.v2ref - a.v2ref), a.v3ref + f * (b.v3ref - a.v3ref),
            a.theta + f * (b.theta - a.theta))


# ----------------------------------------------------------------------------- DGEOFILE

def write_dgeofile(path, dy_table, *, shape=(800, 800), chips=(1, 2, 3, 4)):
    """Write an old-style DGEOFILE whose DY images carry ``dy_table`` (one value
    per row, pixels to add to the detector y) in every column; DX is zero."""
    dy_table = np.asarray(dy_table, dtype=np.float32)
    ny, nx = shape
    if dy_table.shape != (ny,):
        raise ValueError(f"dy_table must have {ny} values")
    phdu = fits.PrimaryHDU()
    h = phdu.header
    h["INSTRUME"] = "WFPC2"
    h["FILETYPE"] = "DISTORTION CORRECTION IMAGE"
    h["DESCRIP"] = "34th-row pixel-width correction (simulated)"
    h["PEDIGREE"] = "SIMULATION"
    h["ORIGIN"] = "drizzleflow simulator"
    h["SIMULATE"] = (True, "simulated reference file")
    hdus = [phdu]
    dy_img = np.repeat(dy_table[:, None], nx, axis=1)
    for name, img in (("DX", np.zeros(shape, np.float32)), ("DY", dy_img)):
        for k in chips:
            hdu = fits.ImageHDU(img, name=name, ver=k)
            hdu.header["DETECTOR"] = (k, "CCD number: PC 1, WF 2-4")
            hdu.header["CCDCHIP"] = k
            hdu.header["BUNIT"] = "PIXELS"
            hdus.append(hdu)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_dgeo_d2im(path, chip=1):
    """The 34th-row table of a DGEOFILE: column 0 of ``('DY', chip)`` (stwcs uses chip 1)."""
    with _open(path, "DGEOFILE") as hdul:
        try:
            return np.array(hdul["DY", int(chip)].data[:, 0], dtype=np.float64)
        except (KeyError, IndexError, TypeError) as exc:
            raise ReferenceFileError(path, f"no DY extension for chip {chip} ({exc})") from None


def d2im_offset(y, table):
    """Pixels to add to the 1-based detector ``y``: the 34th-row table ``table``
    (value k at y = k+1) interpolated linearly, constant beyond the ends."""
    table = np.asarray(table, dtype=np.float64)
    return np.interp(y, np.arange(1, table.size + 1, dtype=np.float64), table)


# ----------------------------------------------------------------------------- polynomial

def _poly(c, dx, dy):
    out = np.zeros(np.broadcast(dx, dy).shape)
    n = c.shape[0] - 1
    for i in range(1, n + 1):
        for j in range(i + 1):
            if c[i, j] != 0.0:
                out = out + c[i, j] * dx ** j * dy ** (i - j)
    return out


def idc_forward(row, x, y):
    """Undistorted arcsec (u, v) in the chip frame for 1-based image pixel (x, y)
    (after the 34th-row correction)."""
    dx = np.asarray(x, dtype=np.float64) - row.xref
    dy = np.asarray(y, dtype=np.float64) - row.yref
    return _poly(row.cx, dx, dy), _poly(row.cy, dx, dy)


def _poly_jac(c, dx, dy):
    ddx = np.zeros(np.broadcast(dx, dy).shape)
    ddy = np.zeros_like(ddx)
    n = c.shape[0] - 1
    for i in range(1, n + 1):
        for j in range(i + 1):
            if c[i, j] == 0.0:
                continue
            if j > 0:
                ddx = ddx + c[i, j] * j * dx ** (j - 1) * dy ** (i - j)
            if i - j > 0:
                ddy = ddy + c[i, j] * (i - j) * dx ** j * dy ** (i - j - 1)
    return ddx, ddy


def idc_inverse(row, u, v, tol=1e-10, maxiter=30):
    """1-based image pixel (x, y) for chip-frame arcsec (u, v): Newton iterations
    on the forward polynomial (converges to < 1e-8 pixel for WFPC2 models)."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    lin = np.linalg.inv(row.linear)
    dx = lin[0, 0] * u + lin[0, 1] * v
    dy = lin[1, 0] * u + lin[1, 1] * v
    for _ in range(maxiter):
        fu = _poly(row.cx, dx, dy) - u
        fv = _poly(row.cy, dx, dy) - v
        a, b = _poly_jac(row.cx, dx, dy)
        c, d = _poly_jac(row.cy, dx, dy)
        det = a * d - b * c
        sx = (d * fu - b * fv) / det
        sy = (-c * fu + a * fv) / det
        dx = dx - sx
        dy = dy - sy
        if np.all(np.abs(sx) < tol) and np.all(np.abs(sy) < tol):
            break
    return dx + row.xref, dy + row.yref


# ----------------------------------------------------------------------------- focal plane

def chip_offset(row, ref_row):
    """(P, Q): the chip's (XREF, YREF) in the reference frame, arcsec (step 3)."""
    d2 = row.v2ref - ref_row.v2ref
    d3 = row.v3ref - ref_row.v3ref
    dist = math.hypot(d2, d3)
    phi = math.atan2(-d2, d3) + math.radians(ref_row.theta)
    return dist * math.sin(phi), dist * math.cos(phi)


def chip_to_frame(row, ref_row, u, v):
    """Chip-frame arcsec (u, v) -> reference-frame arcsec (U, V)."""
    t = math.radians(row.theta - ref_row.theta)
    p, q = chip_offset(row, ref_row)
    c, s = math.cos(t), math.sin(t)
    return c * u - s * v + p, s * u + c * v + q


def frame_to_chip(row, ref_row, U, V):
    """Inverse of :func:`chip_to_frame`."""
    t = math.radians(row.theta - ref_row.theta)
    p, q = chip_offset(row, ref_row)
    c, s = math.cos(t), math.sin(t)
    a, b = np.asarray(U) - p, np.asarray(V) - q
    return c * a + s * b, -s * a + c * b


def troll(pa_v3, dec, v2, v3):
    """Roll (degrees) at an aperture at (v2, v3) arcsec given the roll ``pa_v3``
    at the V1 axis and the declination ``dec`` (degrees) of the pointing.

    Spherical-triangle relation used by HST ground systems (and stwcs):
    the angle between north and +V3 changes across the field by the
    convergence of meridians towards the pole.
    """
    roll = math.radians(pa_v3)
    dec_r = math.radians(dec)
    a2 = math.radians(v2 / 3600.0)
    a3 = math.radians(v3 / 3600.0)
    s2, s3 = math.sin(a2), math.sin(a3)
    sin_rho = math.sqrt(s2 * s2 + s3 * s3 - s2 * s2 * s3 * s3)
    if sin_rho == 0.0:
        return pa_v3
    rho = math.asin(sin_rho)
    beta = math.asin(s3 / sin_rho)
    if a2 < 0:
        beta = math.pi - beta
    gamma = math.asin(s2 / sin_rho)
    if a3 < 0:
        gamma = math.pi - gamma
    big_a = math.pi / 2.0 + roll - beta
    big_b = math.atan2(math.sin(big_a) * math.cos(dec_r),
                       math.sin(dec_r) * sin_rho - math.cos(dec_r) * math.cos(rho) * math.cos(big_a))
    return math.degrees(math.pi - (gamma + big_b))


def frame_to_sky(U, V, ra_ref, dec_ref, pv):
    """Reference-frame arcsec -> (ra, dec) degrees (step 4, TAN projection)."""
    c, s = math.cos(math.radians(pv)), math.sin(math.radians(pv))
    U = np.asarray(U, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    xi = np.radians((-c * U + s * V) / 3600.0)
    eta = np.radians((s * U + c * V) / 3600.0)
    a0, d0 = math.radians(ra_ref), math.radians(dec_ref)
    den = math.cos(d0) - eta * math.sin(d0)
    ra = a0 + np.arctan2(xi, den)
    dec = np.arctan2(math.sin(d0) + eta * math.cos(d0), np.hypot(xi, den))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def sky_to_frame(ra, dec, ra_ref, dec_ref, pv):
    """Inverse of :func:`frame_to_sky`."""
    a = np.radians(np.asarray(ra, dtype=np.float64))
    d = np.radians(np.asarray(dec, dtype=np.float64))
    a0, d0 = math.radians(ra_ref), math.radians(dec_ref)
    cosc = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.degrees(np.cos(d) * np.sin(a - a0) / cosc) * 3600.0
    eta = np.degrees((math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc) * 3600.0
    c, s = math.cos(math.radians(pv)), math.sin(math.radians(pv))
    # (xi, eta) = M (U, V) with M = [[-c, s], [s, c]]; M is its own inverse
    return -c * xi + s * eta, s * xi + c * eta


def pixel_to_sky(x, y, row, ref_row, d2im_table, ra_ref, dec_ref, pv):
    """Full model, 1-based detector pixel -> (ra, dec) degrees (steps 1-4)."""
    y_img = np.asarray(y, dtype=np.float64)
    if d2im_table is not None:
        y_img = y_img + d2im_offset(y_img, d2im_table)
    u, v = idc_forward(row, x, y_img)
    U, V = chip_to_frame(row, ref_row, u, v)
    return frame_to_sky(U, V, ra_ref, dec_ref, pv)


def sky_to_pixel(ra, dec, row, ref_row, d2im_table, ra_ref, dec_ref, pv):
    """Inverse of :func:`pixel_to_sky`: 1-based detector pixel (x, y)."""
    U, V = sky_to_frame(ra, dec, ra_ref, dec_ref, pv)
    u, v = frame_to_chip(row, ref_row, U, V)
    x, y_img = idc_inverse(row, u, v)
    if d2im_table is None:
        return x, y_img
    y = y_img.copy()
    for _ in range(8):          # |dD/dy| <= ~0.03: fixed point converges fast
        y = y_img - d2im_offset(y, d2im_table)
    return x, y
