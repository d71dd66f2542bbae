"""Tiny synthetic WFPC2 archive files and reference files for the I/O tests.

64 x 64 chips, old-format headers (linear WCS only), an IDCTAB with a cubic
polynomial per chip, an OFFTAB with two dates and a DGEOFILE with a 34th-row
pattern.  Not the simulator: just enough structure to exercise the readers.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits

N = 64
SCALES = {1: 0.0455, 2: 0.0996, 3: 0.0996, 4: 0.0996}
V2V3 = {1: (1.2, -3.1), 2: (-4.9, 2.3), 3: (3.4, 6.0), 4: (7.6, -1.9)}
THETA = {1: 224.6, 2: 314.3, 3: 44.55, 4: 134.2}
ROOTS = ["ua060502m", "ua060504m"]
RA0, DEC0 = 323.3147138686913, -0.8710668436652544


def idc_coeffs(det):
    """(cx, cy) 4x4 arrays, arcsec, cx[n, m] multiplies x^m y^(n-m)."""
    s = SCALES[det]
    cx = np.zeros((4, 4))
    cy = np.zeros((4, 4))
    cx[1, 1], cx[1, 0] = s, 2e-4 * s
    cy[1, 1], cy[1, 0] = -1e-4 * s, s * 1.001
    cx[2, 0], cx[2, 1], cx[2, 2] = 3e-6 * det, -2e-6, 4e-6
    cy[2, 0], cy[2, 1], cy[2, 2] = -1e-6, 5e-6, 2e-6 * det
    cx[3, 0], cx[3, 3] = 4e-8, -6e-8
    cy[3, 1], cy[3, 2] = 3e-8, -2e-8
    return cx, cy


def write_idctab(path, with_v2ref=True):
    cols = {k: [] for k in ["DETCHIP", "DIRECTION", "FILTER1", "FILTER2", "XSIZE", "YSIZE", "XREF", "YREF",
                            "V2REF", "V3REF", "SCALE", "THETA"]}
    coef = {f"C{a}{n}{m}": [] for a in "XY" for n in range(1, 4) for m in range(n + 1)}
    for det in (1, 2, 3, 4):
        for filt in ("F555W", "F814W"):
            cx, cy = idc_coeffs(det)
            if filt == "F555W":
                cx, cy = cx * 1.01, cy * 1.01
            vals = dict(DETCHIP=det, DIRECTION="FORWARD", FILTER1=filt, FILTER2="CLEAR2A", XSIZE=N, YSIZE=N,
                        XREF=N / 2 + 0.5, YREF=N / 2 + 0.5, V2REF=V2V3[det][0], V3REF=V2V3[det][1],
                        SCALE=SCALES[det], THETA=THETA[det])
            for k, v in vals.items():
                cols[k].append(v)
            for n in range(1, 4):
                for m in range(n + 1):
                    coef[f"CX{n}{m}"].append(cx[n, m])
                    coef[f"CY{n}{m}"].append(cy[n, m])
    columns = []
    for k, v in {**cols, **coef}.items():
        if not with_v2ref and k in ("V2REF", "V3REF", "THETA"):
            continue
        if isinstance(v[0], str):
            columns.append(fits.Column(name=k, format="8A", array=np.array(v)))
        elif k in ("DETCHIP", "XSIZE", "YSIZE"):
            columns.append(fits.Column(name=k, format="J", array=np.array(v, dtype=np.int32)))
        else:
            columns.append(fits.Column(name=k, format="D", array=np.array(v, dtype=float)))
    ph = fits.PrimaryHDU()
    ph.header["INSTRUME"] = "WFPC2"
    ph.header["NORDER"] = 3
    fits.HDUList([ph, fits.BinTableHDU.from_columns(columns)]).writeto(path, overwrite=True)


def write_offtab(path):
    rows = []
    for det in (1, 2, 3, 4):
        v2, v3 = V2V3[det]
        rows.append((det, "2005-01-01", v2, v3, THETA[det]))
        rows.append((det, "2009-01-01", v2 + 0.4, v3 - 0.2, THETA[det] + 0.01))
    det, date, v2, v3, th = zip(*rows)
    cols = [fits.Column(name="DETCHIP", format="J", array=np.array(det)),
            fits.Column(name="OBSDATE", format="10A", array=np.array(date)),
            fits.Column(name="V2REF", format="D", array=np.array(v2)),
            fits.Column(name="V3REF", format="D", array=np.array(v3)),
            fits.Column(name="THETA", format="D", array=np.array(th))]
    ph = fits.PrimaryHDU()
    ph.header["INSTRUME"] = "WFPC2"
    fits.HDUList([ph, fits.BinTableHDU.from_columns(cols)]).writeto(path, overwrite=True)


def dgeo_pattern(det):
    """y correction (pixels) per row: a sawtooth with period 34 rows."""
    rows = np.arange(N)
    return (0.03 * ((rows % 34) / 34.0 - 0.5) * (1 + 0.1 * det)).astype(np.float32)


def write_dgeofile(path):
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["INSTRUME"] = "WFPC2"
    for det in (1, 2, 3, 4):
        for name in ("DX", "DY"):
            data = np.zeros((N, N), np.float32)
            if name == "DY":
                data[:] = dgeo_pattern(det)[:, None]
            h = fits.ImageHDU(data, name=name)
            h.header["EXTVER"] = det
            h.header["DETECTOR"] = det
            hdus.append(h)
    fits.HDUList(hdus).writeto(path, overwrite=True)


def write_references(uref: Path, with_v2ref=True):
    uref.mkdir(parents=True, exist_ok=True)
    write_idctab(uref / "synth_idc.fits", with_v2ref)
    write_offtab(uref / "synth_off.fits")
    write_dgeofile(uref / "synth_dxy.fits")
    return uref


def _linear_header(det, shift=(0.0, 0.0), pa_v3=40.0):
    """A plausible old-format linear WCS for a chip (as OPUS would write it)."""
    s = SCALES[det] / 3600.0
    ang = math.radians(pa_v3 + THETA[det] - THETA[3])
    cd = np.array([[-math.cos(ang), math.sin(ang)], [math.sin(ang), math.cos(ang)]]) * s
    dra = (V2V3[det][0] - V2V3[3][0]) / 3600.0 + shift[0]
    ddec = (V2V3[det][1] - V2V3[3][1]) / 3600.0 + shift[1]
    return {"CRPIX1": N / 2 + 0.5, "CRPIX2": N / 2 + 0.5, "CRVAL1": RA0 + dra, "CRVAL2": DEC0 + ddec,
            "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CD1_1": cd[0, 0], "CD1_2": cd[0, 1],
            "CD2_1": cd[1, 0], "CD2_2": cd[1, 1], "ORIENTAT": math.degrees(math.atan2(cd[0, 1], cd[1, 1]))}


def make_exposure(directory: Path, root="ua060502m", *, nchips=4, seed=0, instrume="WFPC2", nan=False,
                  dgeofile="uref$synth_dxy.fits", offtab="uref$synth_off.fits", shift=(0.0, 0.0),
                  dq_groups=None, atodgain=7.0, date_obs="2007-08-01"):
    """Write ``<root>_c0m.fits`` + ``<root>_c1m.fits``; returns (sci, dq) paths."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    ph = fits.PrimaryHDU()
    h = ph.header
    for k, v in [("INSTRUME", instrume), ("ROOTNAME", root.upper()), ("FILENAME", f"{root}_c0f.fits"),
                 ("FILTNAM1", "F814W"), ("FILTNAM2", ""), ("MODE", "FULL"), ("EXPTIME", 10.0),
                 ("DARKTIME", 10.0), ("ATODGAIN", atodgain), ("DATE-OBS", date_obs), ("TIME-OBS", "13:51:16"),
                 ("LINENUM", "05.002"), ("PA_V3", 40.0), ("RA_TARG", RA0), ("DEC_TARG", DEC0),
                 ("IDCTAB", "uref$synth_idc.fits"), ("OFFTAB", offtab), ("DGEOFILE", dgeofile),
                 ("EXPSTART", 54313.577), ("EXPEND", 54313.5772)]:
        h[k] = v
    sci = fits.HDUList([ph])
    for det in range(1, nchips + 1):
        data = (rng.normal(50, 5, (N, N))).astype(">f4")
        if nan and det == 2:
            data[3, 5] = np.nan
            data[10, 11] = np.inf
        eh = fits.ImageHDU(data, name="SCI")
        eh.header["EXTVER"] = det
        eh.header["DETECTOR"] = det
        eh.header["BUNIT"] = "COUNTS"
        eh.header["PHOTFLAM"] = 2.5e-18 * (1 + 0.01 * det)
        for k, v in _linear_header(det, shift).items():
            eh.header[k] = v
        sci.append(eh)
    ngroups = dq_groups or nchips
    dq = fits.HDUList([fits.PrimaryHDU()])
    dq[0].header["INSTRUME"] = instrume
    dq[0].header["ROOTNAME"] = root.upper()
    for det in range(1, ngroups + 1):
        flags = np.zeros((N, N), ">i2")
        flags[:2, :] = 2
        flags[20, 20] = 1024
        flags[30, 31] = 4096
        eh = fits.ImageHDU(flags, name="SCI")
        eh.header["EXTVER"] = det
        dq.append(eh)
    sp, dp = directory / f"{root}_c0m.fits", directory / f"{root}_c1m.fits"
    sci.writeto(sp, overwrite=True)
    dq.writeto(dp, overwrite=True)
    return sp, dp


def make_set(directory: Path, n=2, **kw):
    return [make_exposure(directory, r, seed=i, shift=(i * 1e-5, -i * 1e-5), **kw)
            for i, r in enumerate(["ua060502m", "ua060504m", "ua060506m", "ua060508m"][:n])]
