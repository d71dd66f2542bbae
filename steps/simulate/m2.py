"""Simulate the tutorial's data set: six dithered 10 s F814W WFPC2 exposures
of an outer field of M2, in archive format, with reference files and truth.

Public API
----------
``simulate_m2(dest, seed=1, size=800, nexp=6, nstars=None, waivered=False)``
    writes ``dest/<root>_c0m.fits`` + ``_c1m.fits`` (or ``c0f``/``c1f``),
    ``dest/uref/`` and ``dest/truth/`` and returns the science file paths.
``setup(dest, SimParams(...), write_refs=False)`` + ``render_exposure_chip(setup, index, chip, crs=True)``
    re-render one chip of a written data set in memory (``crs=False``: the
    same exposure without cosmic rays, identical elsewhere).
``provide(spec, dest)``
    the ``drizzleflow.inputs`` provider ``simulate`` (``input: {simulate: m2,
    seed: 1}``); reuses files whose ``truth/params.json`` matches.
``register(subparsers)``
    the ``drizzleflow simulate m2 DIR`` command.
"""
from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np
from astropy.io import fits

from drizzleflow.engine.errors import RecipeError
from drizzleflow.steps.instruments.wfpc2 import reference_files as rf

from . import field, geometry, patterns, truth, writer
from .detector import DetectorParams, Pointing, render_chip

__all__ = ["simulate_m2", "setup", "render_exposure_chip", "provide", "register",
           "ROOTS", "PA_V3", "TUTORIAL_PC_CRVAL", "SIM_VERSION"]

log = logging.getLogger(__name__)

#: bumped whenever the same parameters would render different files (2: per-chip gains),
#: so a provider never reuses a set made by an older simulator
SIM_VERSION = 2
ROOTS = ("ua060502m", "ua060504m", "ua060506m", "ua060508m", "ua06050am", "ua06050cm")
TIMES = ("13:51:16", "13:59:16", "14:07:16", "14:15:16", "14:23:16", "14:31:16")
LINENUMS = ("05.002",) * 4 + ("05.004",) * 2
DATE_OBS = "2007-08-01"
MJD_DATE = 54313.0                       # 2007-08-01T00:00 UTC
#: PA_V3 that makes the Phase II pattern reproduce the tutorial's CRVALs
PA_V3 = 214.0357
#: PC1 reference-pixel CRVAL of ua060502m listed by the tutorial
TUTORIAL_PC_CRVAL = (323.3147138686913, -0.8710668436652544)
REF_NAMES = {"idctab": "m2sim_idc.fits", "offtab": "m2sim_off.fits", "dgeofile": "m2sim_dxy.fits"}
#: (chip, x, y at size 800, F814W magnitude) of the very bright stars; two on WF4 as in the tutorial
BRIGHT = ((4, 260.0, 560.0, 9.6), (4, 610.0, 330.0, 10.4), (2, 520.0, 640.0, 10.0), (3, 640.0, 260.0, 10.8))
PHOTFLAM = {1: 2.5075e-18, 2: 2.5189e-18, 3: 2.5083e-18, 4: 2.5280e-18}


@dataclass(frozen=True)
class SimParams:
    seed: int = 1
    size: int = 800
    nexp: int = 6
    nstars: int | None = None
    waivered: bool = False

    def resolved_nstars(self):
        return int(self.nstars) if self.nstars is not None else int(round(60000 * (self.size / 800.0) ** 2))


@dataclass
class Setup:
    """Everything needed to render any chip of the data set."""

    params: SimParams
    models: dict
    d2im: np.ndarray
    header_pointing: list
    true_pointing: list
    postargs: np.ndarray
    stars: dict
    bright: dict
    detector: DetectorParams


# ----------------------------------------------------------------------------- geometry

def _pc_reference_frame(models):
    pc, ref = models[1], models[geometry.REF_CHIP]
    return rf.chip_offset(pc, ref)          # PC (XREF, YREF) in the reference frame


def _pv(pa_v3, dec, models):
    ref = models[geometry.REF_CHIP]
    return (rf.troll(pa_v3, dec, ref.v2ref, ref.v3ref) + ref.theta) % 360.0


def header_pointings(models, postargs):
    """Header (planned) pointings: exposure 1 puts the PC reference pixel on
    the tutorial's CRVAL; the others follow the POS TARG offsets."""
    P, Q = _pc_reference_frame(models)
    ra, dec = TUTORIAL_PC_CRVAL
    ra_r, dec_r = ra, dec
    for _ in range(4):                       # place WF3's reference so the PC lands on the CRVAL
        pv = _pv(PA_V3, dec_r, models)
        ra_c, dec_c = rf.frame_to_sky(P, Q, ra_r, dec_r, pv)
        ra_r += float(ra - ra_c)
        dec_r += float(dec - dec_c)
    pv1 = _pv(PA_V3, dec_r, models)
    out = []
    for x, y in postargs:
        r, d = rf.frame_to_sky(-x, -y, ra_r, dec_r, pv1)
        out.append(Pointing(float(r), float(d), _pv(PA_V3, float(d), models)))
    return out


def true_pointings(seed, header):
    """Header pointing + an error of 0.02-0.05 arcsec in a random direction."""
    rng = np.random.default_rng([seed, 5])
    out = []
    for p in header:
        amp = rng.uniform(0.02, 0.05)
        ang = rng.uniform(0.0, 2 * math.pi)
        r, d = rf.frame_to_sky(amp * math.cos(ang), amp * math.sin(ang), p.ra, p.dec, p.pv)
        out.append(Pointing(float(r), float(d), p.pv))
    return out


def _chip_wcs(model, ref, pointing):
    """Old-format linear WCS (CRPIX, CRVAL, CD, ORIENTAT) of a chip: what
    stwcs MakeWCS computes from the IDCTAB/OFFTAB for this pointing."""
    P, Q = rf.chip_offset(model, ref)
    crval = rf.frame_to_sky(P, Q, pointing.ra, pointing.dec, pointing.pv)
    c, s = math.cos(math.radians(pointing.pv)), math.sin(math.radians(pointing.pv))
    t = math.radians(model.theta - ref.theta)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    sky = np.array([[-c, s], [s, c]])
    cd = sky @ rot @ model.linear / 3600.0
    orientat = math.degrees(math.atan2(cd[0, 1], cd[1, 1]))
    return (model.xref, model.yref), (float(crval[0]), float(crval[1])), cd, orientat


# ----------------------------------------------------------------------------- setup

def _write_reference_files(uref, size):
    rf.write_idctab(uref / REF_NAMES["idctab"], geometry.idc_rows(size))
    rf.write_offtab(uref / REF_NAMES["offtab"], geometry.off_rows(size))
    rf.write_dgeofile(uref / REF_NAMES["dgeofile"], geometry.row34_table(size), shape=(size, size))


def _models(uref):
    return {k: rf.idc_model(uref / REF_NAMES["idctab"], k, date=DATE_OBS, offtab=uref / REF_NAMES["offtab"])
            for k in (1, 2, 3, 4)}


def setup(dest, params: SimParams, write_refs=True) -> Setup:
    dest = Path(dest)
    uref = dest / "uref"
    if write_refs or not (uref / REF_NAMES["idctab"]).exists():
        _write_reference_files(uref, params.size)
    models = _models(uref)
    d2im = rf.read_dgeo_d2im(uref / REF_NAMES["dgeofile"], 1)
    postargs = patterns.tutorial_offsets()[:params.nexp]
    hdr = header_pointings(models, postargs)
    true = true_pointings(params.seed, hdr)

    # stars: a square around the field centre wide enough for every chip and dither
    size = params.size
    corners = []
    ref = models[geometry.REF_CHIP]
    for k, m in models.items():
        for x in (1, size):
            for y in (1, size):
                corners.append(rf.chip_to_frame(m, ref, *rf.idc_forward(m, x, y)))
    corners = np.array(corners, dtype=float)
    centre_f = corners.mean(axis=0)
    half = float(np.max(np.abs(corners - centre_f))) * math.sqrt(2) + 6.0
    centre = rf.frame_to_sky(centre_f[0], centre_f[1], hdr[0].ra, hdr[0].dec, hdr[0].pv)
    rng = np.random.default_rng([params.seed, 6])
    ra, dec, mag, flux = field.make_stars(rng, (float(centre[0]), float(centre[1])), half,
                                          params.resolved_nstars())
    stars = {"ra": ra, "dec": dec, "mag": mag, "flux_e": flux}

    f = size / 800.0
    bra, bdec, bmag = [], [], []
    for chip, x, y, m in BRIGHT:
        r, d = rf.pixel_to_sky(x * f, y * f, models[chip], ref, d2im, hdr[0].ra, hdr[0].dec, hdr[0].pv)
        bra.append(float(r))
        bdec.append(float(d))
        bmag.append(m)
    bright = {"ra": np.array(bra), "dec": np.array(bdec), "mag": np.array(bmag),
              "flux_e": field.magnitude_to_electrons(np.array(bmag))}
    return Setup(params, models, d2im, hdr, true, postargs, stars, bright, DetectorParams())


def render_exposure_chip(s: Setup, index, chip, crs=True, keep_electrons=False):
    """Render chip ``chip`` (1-4) of exposure ``index`` (0-based)."""
    return render_chip(seed=s.params.seed, exp_index=index, size=s.params.size, detector=chip,
                       models=s.models, d2im=s.d2im, pointing=s.true_pointing[index], stars=s.stars,
                       bright=s.bright, params=s.detector, crs=crs, photflam=PHOTFLAM,
                       keep_electrons=keep_electrons)


# ----------------------------------------------------------------------------- writing

def _exposure_info(s: Setup, i):
    p = s.header_pointing[i]
    ref = s.models[geometry.REF_CHIP]
    # V1 axis: (V2, V3) = (0, 0) in the reference frame
    d2, d3 = -ref.v2ref, -ref.v3ref
    phi = math.atan2(-d2, d3) + math.radians(ref.theta)
    dist = math.hypot(d2, d3)
    ra_v1, dec_v1 = rf.frame_to_sky(dist * math.sin(phi), dist * math.cos(phi), p.ra, p.dec, p.pv)
    hh, mm, ss = (int(v) for v in TIMES[i].split(":"))
    start = MJD_DATE + (hh * 3600 + mm * 60 + ss) / 86400.0
    return {
        "seed": s.params.seed, "root": ROOTS[i], "date_obs": DATE_OBS, "time_obs": TIMES[i],
        "ra_targ": TUTORIAL_PC_CRVAL[0], "dec_targ": TUTORIAL_PC_CRVAL[1], "linenum": LINENUMS[i],
        "pa_v3": PA_V3, "ra_v1": round(float(ra_v1), 8), "dec_v1": round(float(dec_v1), 8),
        "postarg": (round(float(s.postargs[i][0]), 4), round(float(s.postargs[i][1]), 4)),
        "exptime": s.detector.exptime,
        "expstart": round(start, 8), "expend": round(start + s.detector.exptime / 86400.0, 8),
        "idctab": "uref$" + REF_NAMES["idctab"], "offtab": "uref$" + REF_NAMES["offtab"],
        "dgeofile": "uref$" + REF_NAMES["dgeofile"],
    }


def _card(v):
    """``v`` as it reads back from a FITS header card (at most 20 characters),
    so MEF headers and waivered tables hold identical values."""
    return float(fits.Card("X", float(v)).image[10:30])


def _g7(v):
    """``v`` with 7 significant digits (the waivered tables' E15.7 columns)."""
    return float("%.7G" % v)


def _group(s: Setup, i, chip, info, sci):
    crpix, crval, cd, orientat = _chip_wcs(s.models[chip], s.models[geometry.REF_CHIP], s.header_pointing[i])
    return {"crpix": crpix, "crval": tuple(_card(v) for v in crval),
            "cd": [[_card(v) for v in row] for row in cd], "orientat": _g7(orientat),
            "datamin": _g7(sci.min()), "datamax": _g7(sci.max()), "expstart": info["expstart"],
            "expend": info["expend"], "detector": chip, "root": info["root"],
            "photmode": f"WFPC2,{chip},A2D7,F814W,,CAL", "photflam": PHOTFLAM[chip]}


def _grid_rows(s: Setup, i, chip, columns, n=33):
    size = s.params.size
    g = np.linspace(0.0, size - 1.0, n)
    x, y = (a.ravel() for a in np.meshgrid(g, g))
    ref = s.models[geometry.REF_CHIP]
    out = {}
    for kind, p in (("true", s.true_pointing[i]), ("header", s.header_pointing[i])):
        out[kind] = rf.pixel_to_sky(x + 1.0, y + 1.0, s.models[chip], ref, s.d2im, p.ra, p.dec, p.pv)
    columns["root"].extend([ROOTS[i]] * x.size)
    columns["chip"].extend([chip] * x.size)
    columns["x"].extend(x.tolist())
    columns["y"].extend(y.tolist())
    for kind in ("true", "header"):
        columns[f"ra_{kind}"].extend(out[kind][0].tolist())
        columns[f"dec_{kind}"].extend(out[kind][1].tolist())


def _pointing_row(s: Setup, i):
    h, t = s.header_pointing[i], s.true_pointing[i]
    P, Q = _pc_reference_frame(s.models)
    pc_h = rf.frame_to_sky(P, Q, h.ra, h.dec, h.pv)
    pc_t = rf.frame_to_sky(P, Q, t.ra, t.dec, t.pv)
    return {"root": ROOTS[i], "date_obs": DATE_OBS, "time_obs": TIMES[i],
            "postarg1": float(s.postargs[i][0]), "postarg2": float(s.postargs[i][1]), "pa_v3": PA_V3,
            "ra_ref_header": h.ra, "dec_ref_header": h.dec, "pv_header": h.pv,
            "ra_ref_true": t.ra, "dec_ref_true": t.dec, "pv_true": t.pv,
            "pc_crval1_header": float(pc_h[0]), "pc_crval2_header": float(pc_h[1]),
            "pc_crval1_true": float(pc_t[0]), "pc_crval2_true": float(pc_t[1]),
            "dra_arcsec": (t.ra - h.ra) * math.cos(math.radians(h.dec)) * 3600.0,
            "ddec_arcsec": (t.dec - h.dec) * 3600.0}


def _params_record(p: SimParams):
    return {"simulator": "m2", "version": SIM_VERSION, "seed": p.seed, "size": p.size, "nexp": p.nexp,
            "nstars": p.resolved_nstars(), "waivered": p.waivered}


def _output_names(dest, p: SimParams):
    suf = ("c0f", "c1f") if p.waivered else ("c0m", "c1m")
    return [(dest / f"{r}_{suf[0]}.fits", dest / f"{r}_{suf[1]}.fits") for r in ROOTS[:p.nexp]]


def _validate(p: SimParams):
    if not 1 <= p.nexp <= len(ROOTS):
        raise RecipeError(f"simulate m2: nexp must be 1..{len(ROOTS)}, not {p.nexp}")
    if not 64 <= p.size <= 800:
        raise RecipeError(f"simulate m2: size must be 64..800, not {p.size}")
    if p.nstars is not None and p.nstars < 0:
        raise RecipeError("simulate m2: nstars must be >= 0")


def simulate_m2(dest, seed=1, size=800, nexp=6, nstars=None, waivered=False):
    """Write the data set into ``dest`` and return the science file paths."""
    p = SimParams(int(seed), int(size), int(nexp), None if nstars is None else int(nstars), bool(waivered))
    _validate(p)
    dest = Path(dest)
    t0 = time.perf_counter()
    s = setup(dest, p)
    tdir = dest / "truth"
    crs, grid, pointing_rows = [], {k: [] for k in ("root", "chip", "x", "y", "ra_true", "dec_true",
                                                    "ra_header", "dec_header")}, []
    names = _output_names(dest, p)
    for i in range(p.nexp):
        info = _exposure_info(s, i)
        scis, dqs, groups = [], [], []
        for chip in (1, 2, 3, 4):
            r = render_exposure_chip(s, i, chip)
            scis.append(r.sci)
            dqs.append(r.dq)
            groups.append(_group(s, i, chip, info, r.sci))
            crs.append((ROOTS[i], chip, r.cr))
            _grid_rows(s, i, chip, grid)
        sci_path, dq_path = names[i]
        write = writer.write_waivered if p.waivered else writer.write_mef
        write(sci_path, info, groups, scis, dq=False)
        write(dq_path, info, groups, dqs, dq=True)
        pointing_rows.append(_pointing_row(s, i))
        log.info("simulate: %s written (%.1f s)", sci_path.name, time.perf_counter() - t0)
    allstars = {k: np.concatenate([s.stars[k], s.bright[k]]) for k in ("ra", "dec", "mag", "flux_e")}
    isbright = np.concatenate([np.zeros(s.stars["ra"].size, bool), np.ones(s.bright["ra"].size, bool)])
    truth.write_stars(tdir / "stars.ecsv", allstars["ra"], allstars["dec"], allstars["mag"],
                      allstars["flux_e"], isbright)
    truth.write_pointing(tdir / "pointing.ecsv", pointing_rows)
    truth.write_crs(tdir / "crs.fits", crs)
    truth.write_wcs_grid(tdir / "wcs_grid.ecsv", grid)
    record = _params_record(p)
    record.update({"reference_files": REF_NAMES, "detector": asdict(s.detector), "pa_v3": PA_V3,
                   "photflam": PHOTFLAM, "files": [a.name for a, _ in names]})
    truth.write_params(tdir / "params.json", record)      # written last: marks a complete set
    log.info("simulate: %d exposures in %s (%.1f s)", p.nexp, dest, time.perf_counter() - t0)
    return [a for a, _ in names]


# ----------------------------------------------------------------------------- entry points

_SPEC_KEYS = {"seed", "size", "nexp", "nstars", "waivered"}


def provide(spec: dict, dest: Path):
    """Input provider ``simulate``: ``{simulate: m2, seed: 1, size: 800, ...}``.

    Reuses the files already in ``dest`` when their ``truth/params.json``
    matches; returns ``{"files": [...c0m], "uref": dest/uref}``.
    """
    spec = dict(spec)
    what = spec.pop("simulate", "m2")
    if what != "m2":
        raise RecipeError(f"input: simulate: unknown data set {what!r} (available: m2)")
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise RecipeError(f"input: simulate: unknown option(s) {', '.join(sorted(unknown))} "
                          f"(allowed: {', '.join(sorted(_SPEC_KEYS))})")
    try:
        p = SimParams(int(spec.get("seed", 1)), int(spec.get("size", 800)), int(spec.get("nexp", 6)),
                      None if spec.get("nstars") is None else int(spec["nstars"]), bool(spec.get("waivered", False)))
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"input: simulate: {exc}") from None
    _validate(p)
    dest = Path(dest)
    old = truth.read_params(dest / "truth" / "params.json")
    names = _output_names(dest, p)
    if old is not None and all(old.get(k) == v for k, v in _params_record(p).items()) \
            and all(a.exists() and b.exists() for a, b in names):
        log.info("simulate: reusing the data set in %s", dest)
        files = [a for a, _ in names]
    else:
        files = simulate_m2(dest, **{"seed": p.seed, "size": p.size, "nexp": p.nexp, "nstars": p.nstars,
                                     "waivered": p.waivered})
    return {"files": [str(f) for f in files], "uref": str(dest / "uref")}


def _cmd(args):
    files = simulate_m2(args.dir, seed=args.seed, size=args.size, nexp=args.nexp, nstars=args.nstars,
                        waivered=args.waivered)
    print(f"wrote {len(files)} exposures, reference files and truth in {args.dir}")
    return 0


def register(subparsers):
    """Add ``simulate m2 DIR`` to the ``drizzleflow`` command line."""
    p = subparsers.add_parser("simulate", help="write a simulated WFPC2 data set with ground truth",
                              description="Write a simulated data set in WFPC2 archive format.")
    sub = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    m2 = sub.add_parser("m2", help="the tutorial's six dithered F814W exposures of M2",
                        description="Six dithered 10 s F814W WFPC2 exposures of M2 (tutorial names "
                                    "ua060502m..ua06050cm) with uref/ reference files and truth/.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m2.add_argument("dir", type=Path, help="output folder")
    m2.add_argument("--seed", type=int, default=1, help="random seed (same seed, same bytes)")
    m2.add_argument("--size", type=int, default=800, help="chip size in pixels (64-800; smaller = faster)")
    m2.add_argument("--nexp", type=int, default=6, help="number of exposures (1-6)")
    m2.add_argument("--nstars", type=int, default=None,
                    help="stars in the simulated sky area (default 60000 at size 800, scaled by area)")
    m2.add_argument("--waivered", action="store_true", help="write waivered c0f/c1f instead of c0m/c1m")
    m2.set_defaults(func=_cmd)
    return p
