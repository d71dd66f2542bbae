"""Recipe steps ``find_sources`` and ``align`` (tutorial sections 3 and 4).

``find_sources`` writes per-chip catalogs (TweakReg's ``*_sci?_xy_catalog.coo``
plus ECSV) and the product ``catalogs``.  ``align`` matches every exposure to
the reference in a common tangent plane, fits all chips of an exposure
together, reports like TweakReg, and carries the solution into the working
copies (``updatehdr``) and/or headerlets.  A failed exposure is never given a
wrong solution: it raises (``on_failure: error``) or keeps its WCS with a
warning naming it (``on_failure: skip``).
"""
from __future__ import annotations

import fnmatch
import logging
import time
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
from astropy.table import Table
from pydantic import BaseModel, ConfigDict, Field

from drizzleflow.engine.errors import StepError
from drizzleflow.engine.step import Params, Step

from . import masks as M
from .reports import (plot_histogram, plot_residuals, write_catalog_ecsv, write_coo,
                      write_fit_match, write_shiftfile)
from .solve import AlignFailure, align_catalog, chips_to_plane, radec_to_plane
from .sources import find_sources as _find
from .sources import robust_sigma as _robust_sigma
from .wcs_update import corrected_wcs, tangent_plane

__all__ = ["FindSources", "Align", "open_exposure_for"]

log = logging.getLogger("drizzleflow.align")

CR_BIT = 4096


# --------------------------------------------------------------------------- helpers
def open_exposure_for(context, rec, path=None):
    """Open an exposure (optionally a different science file, e.g. the
    CR-cleaned one, with the same DQ) through the WFPC2 reader."""
    from drizzleflow.steps.instruments.wfpc2 import open_exposure
    return open_exposure(Path(path) if path else context.abs(rec["sci"]), context.abs(rec["dq"]))


def chip_geometries(path):
    """``[ChipGeom]`` of the SCI chips of a working copy, headers only (WCS cached)."""
    from drizzleflow.steps.chain.common import chip_wcs_for
    from drizzleflow.steps.instruments.wfpc2.reader import chip_geometry
    return chip_geometry(path, wcs_for=chip_wcs_for(path))


def _crclean_paths(context) -> dict:
    """Map root -> CR-cleaned science file from the cosmic-ray step's product,
    whatever of the accepted shapes it has ({root: path}, or a list of dicts
    with 'root' and 'crclean'/'path'/'sci')."""
    for name in ("crclean", "crclean_images", "cosmic_rays"):
        prod = context.get(name, None)
        if not prod:
            continue
        out = {}
        if isinstance(prod, dict):
            items = prod.get("crclean", prod) if isinstance(prod.get("crclean", None), (dict, list)) else prod
            if isinstance(items, dict):
                for k, v in items.items():
                    if isinstance(v, str):
                        out[k] = v
                    elif isinstance(v, dict):
                        p = v.get("crclean") or v.get("path")
                        if p:
                            out[k] = p
            else:
                prod = items
        if isinstance(prod, list):
            for e in prod:
                if isinstance(e, str):   # cosmic_rays: "work/<root>_c0m_crclean.fits"
                    out[Path(e).name.split("_")[0]] = e
                elif isinstance(e, dict) and e.get("root") and (e.get("crclean") or e.get("path")):
                    out[e["root"]] = e.get("crclean") or e.get("path")
        if out:
            return out
    return {}


def _image_matches(pattern, rec):
    """Whether an image name or glob from a recipe/exclusion list names this
    exposure: matched against the root, working and archive file names, then
    by rootname (the part before the first '_'), so the tutorial's
    ``ua060502m_c0m_cleanmask.fits`` names the exposure ``ua060502m``."""
    p = Path(str(pattern)).name.lower()
    names = [rec["root"], Path(rec.get("sci", "")).name, Path(rec.get("source", "") or "").name,
             Path(rec.get("image", "") or "").name]
    if any(fnmatch.fnmatch(n.lower(), p) for n in names if n):
        return True
    head = p.split(".")[0].split("_")[0]
    return bool(head) and fnmatch.fnmatch(rec["root"].lower(), head)


# --------------------------------------------------------------------------- find_sources
class EdgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int = Field(0, ge=0, description="columns 0..x-1 are masked (pyramid edge)")
    y: int = Field(0, ge=0, description="rows 0..y-1 are masked (pyramid edge)")


class Exclusion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field("*", description="exposure rootname or file-name glob the regions apply to")
    chip: Optional[int] = Field(None, ge=1, description="SCI EXTVER (chip) the regions apply to; all chips if unset")
    region: str = Field(..., description="DS9 region file path (relative to the run directory) or inline "
                                         "region text such as 'fk5; circle(323.3,-0.86,3\")'")


class FindSourcesParams(Params):
    conv_width: float = Field(3.0, gt=0, description="FWHM (px) of the Gaussian detection filter; "
                                                      "the tutorial uses 2x the PSF FWHM (3.0 for WF)")
    threshold: float = Field(5.0, gt=0, description="detection threshold in units of the robust background sigma")
    peakmin: Optional[float] = Field(None, description="keep sources whose background-subtracted peak "
                                                       "(electrons) is above this")
    peakmax: Optional[float] = Field(None, description="keep sources whose peak (electrons) is below this "
                                                       "(drops saturated stars)")
    fluxmin: Optional[float] = Field(None, description="minimum isophotal flux (electrons)")
    fluxmax: Optional[float] = Field(None, description="maximum isophotal flux (electrons)")
    roundhi: Optional[float] = Field(None, ge=0, le=1, description="maximum roundness 1-b/a (0 = round)")
    sharplo: Optional[float] = Field(None, ge=0, le=1, description="minimum sharpness (peak / 3x3 sum)")
    sharphi: Optional[float] = Field(None, ge=0, le=1, description="maximum sharpness; ~0.7 rejects "
                                                                   "single-pixel cosmic rays and hot pixels")
    nbright: Optional[int] = Field(None, ge=1, description="keep only the N brightest sources per chip")
    centroid_sigma: Optional[float] = Field(None, gt=0, description="Gaussian window (px) of the windowed "
                                            "centroid; default max(1, conv_width/3)")
    use_crclean: bool = Field(True, description="detect on the CR-cleaned images of the cosmic_rays step when "
                                                "available; otherwise on the working SCI with CR-flagged pixels masked")
    protect_stars: bool = Field(True, description="ignore CR flags (keep the measured pixels) where the "
                                "blotted median shows a star: flags made before alignment hit star cores "
                                "and would pull centroids toward the header position")
    protect_nsigma: float = Field(5.0, gt=0, description="a CR-flagged pixel is on a star when the blotted "
                                  "median there is this many sigma above the background")
    protect_radius: int = Field(2, ge=0, le=10, description="...within this many pixels of a pixel "
                                "where the blotted median is above protect_nsigma (misalignment margin)")
    dqbits: Optional[int] = Field(None, ge=0, description="mask pixels with any DQ bit outside these good bits "
                                                         "(None: 8+1024 on the working SCI, no DQ mask on "
                                                         "CR-cleaned images, whose flagged pixels are replaced)")
    edges: Union[Literal["wfpc2", "none"], dict[int, EdgeSpec]] = Field(
        "wfpc2", description="pyramid-edge masks per chip {chip: {x: .., y: ..}}; 'wfpc2' = the tutorial's "
                             "edges.py values (scaled to sub-array size), 'none' = no edge mask")
    exclusions: list[Exclusion] = Field(default_factory=list, description="DS9 exclusion regions per image/chip "
                                        "(circle, box, ellipse, polygon; fk5 or image coordinates)")
    exclude_list: Optional[str] = Field(None, description="the tutorial's exclude.list file "
                                        "('image reg_chip1 reg_chip2 ...', none = no regions)")
    min_sources: int = Field(1, ge=0, description="warn when a chip yields fewer sources than this")


class FindSources(Step):
    """Find point sources on every chip (sep) and write TweakReg-style catalogs."""

    name = "find_sources"
    Params = FindSourcesParams
    reads = ("exposures",)
    writes = ("catalogs",)
    version = "1"

    @classmethod
    def key_files(cls, params):
        """Region files (inline regions are in the parameters already), the
        exclude.list and the region files it names."""
        files = [x.region for x in params.exclusions if "(" not in x.region]
        if params.exclude_list:
            files.append(params.exclude_list)
            p = Path(params.exclude_list)
            try:
                listed = M.read_exclude_list(p if p.is_absolute() else Path.cwd() / p)
            except M.RegionFileError:
                listed = {}   # reported when the step runs
            files += [str(r) for chips in listed.values() for r in chips if r is not None]
        return files

    def run(self, context, params):
        recs = context.get("exposures")
        if not recs:
            raise StepError(self.name, "the 'exposures' product is empty: no input exposures")
        all_clean = _crclean_paths(context)
        nprot = 0
        if params.use_crclean and not all_clean:
            context.log.info("find_sources: no CR-cleaned images from cosmic_rays; detecting on the working "
                             "SCI with CR-flagged pixels masked")
        exclude_list = {}
        if params.exclude_list:
            p = Path(params.exclude_list)
            if not p.is_absolute():
                p = Path.cwd() / p
            try:
                exclude_list = M.read_exclude_list(p)
            except M.RegionFileError as exc:
                raise StepError(self.name, str(exc)) from None
        region_cache = {}

        def regions_of(src):
            if src not in region_cache:
                s = str(src)
                if "(" not in s:
                    p = Path(s)
                    s = p if p.is_absolute() else Path.cwd() / p
                region_cache[src] = M.read_regions(s)
            return region_cache[src]

        outdir = context.path("align")
        out = []
        unlisted = set(exclude_list)
        for rec in context.progress(recs, desc="find_sources"):
            root = rec["root"]
            src = all_clean.get(root)
            exp = open_exposure_for(context, rec)
            exp_cl = open_exposure_for(context, rec, context.abs(src)) if src else None
            use_clean = params.use_crclean and exp_cl is not None
            image_path = context.abs(src) if use_clean else context.abs(rec["sci"])
            stem = image_path.name[:-5] if image_path.name.endswith(".fits") else image_path.stem
            listed = None
            for key, chips in exclude_list.items():
                if _image_matches(key, rec) or key == image_path.name:
                    listed = chips
                    unlisted.discard(key)
                    break
            chips_out = []
            for ci, chip in enumerate(exp.chips):
                where = f"{root}[sci,{chip.extver}]"
                chip_cl = exp_cl.chips[ci] if exp_cl is not None else None
                data = (chip_cl.sci if use_clean else chip.sci).copy()
                cr = (chip.dq & np.uint16(CR_BIT)) != 0
                protect = np.zeros(chip.shape, bool)
                if params.protect_stars and chip_cl is not None and cr.any():
                    # CR flags made before alignment fall on star cores where the
                    # blotted median (the replacement value) still shows a star: keep
                    # the measured pixels there, or every centroid is pulled toward
                    # the header position
                    other = (chip.dq & np.uint16(~CR_BIT & 0xFFFF)) != 0
                    bk, sg = _robust_sigma(chip_cl.sci, cr | other)
                    from scipy.ndimage import maximum_filter
                    near = maximum_filter(chip_cl.sci, size=2 * params.protect_radius + 1)
                    protect = cr & (near - bk > params.protect_nsigma * sg)
                    data[protect] = chip.sci[protect]
                    nprot += int(protect.sum())
                bad = ~np.isfinite(data)
                if not use_clean or params.dqbits is not None:
                    # CR-cleaned images already carry blotted values in flagged pixels;
                    # on the working SCI, flagged pixels (hot, bad columns, CRs) are masked
                    good_bits = params.dqbits if params.dqbits is not None else 8 | 1024
                    bad |= ((chip.dq.astype(np.uint32) & (~good_bits & 0xFFFF)) != 0) & ~protect
                # edges
                if params.edges == "wfpc2":
                    e = M.default_edges(chip.detector, chip.shape)
                elif params.edges == "none":
                    e = {"x": 0, "y": 0}
                else:
                    spec = params.edges.get(chip.detector) or params.edges.get(chip.extver)
                    e = {"x": spec.x, "y": spec.y} if spec else {"x": 0, "y": 0}
                bad |= M.edge_mask(chip.shape, **e)
                # exclusion regions
                srcs = [x.region for x in params.exclusions
                        if _image_matches(x.image, rec) and (x.chip is None or x.chip == chip.extver)]
                if listed is not None and ci < len(listed) and listed[ci] is not None:
                    srcs.append(str(listed[ci]))
                nexcl = 0
                for s in srcs:
                    try:
                        rm = M.region_mask(regions_of(s), chip.shape, wcs=chip.wcs)
                    except M.RegionFileError as exc:
                        raise StepError(self.name, f"{where}: {exc}") from None
                    nexcl += int(rm.sum())
                    bad |= rm
                try:
                    cat = _find(data, bad, conv_width=params.conv_width, threshold=params.threshold,
                                peakmin=params.peakmin, peakmax=params.peakmax, fluxmin=params.fluxmin,
                                fluxmax=params.fluxmax, roundhi=params.roundhi, sharplo=params.sharplo,
                                sharphi=params.sharphi, nbright=params.nbright,
                                centroid_sigma=params.centroid_sigma)
                except (RuntimeError, ValueError) as exc:
                    raise StepError(self.name, f"{where}: {exc}") from None
                if len(cat) < params.min_sources:
                    context.log.warning("find_sources: %s: %d sources found (threshold %g sigma, sigma %.3g e-)"
                                        "; this chip will not help the alignment", where, len(cat),
                                        params.threshold, cat.meta.get("sigma", 0.0))
                cat.meta.update(image=str(image_path.name), extver=chip.extver, detector=chip.detector,
                                conv_width=params.conv_width, threshold=params.threshold, edges=e,
                                excluded_pixels=nexcl)
                coo = outdir / f"{stem}_sci{chip.extver}_xy_catalog.coo"
                ecsv = outdir / f"{stem}_sci{chip.extver}_xy_catalog.ecsv"
                write_coo(coo, cat, f"{image_path.name}[sci,{chip.extver}]")
                write_catalog_ecsv(ecsv, cat)
                chips_out.append({"extver": chip.extver, "detector": chip.detector, "n": len(cat),
                                  "coo": context.rel(coo), "ecsv": context.rel(ecsv),
                                  "sigma": float(cat.meta.get("sigma", 0.0))})
            context.log.info("find_sources: %s: %s sources (%s)", root,
                             sum(c["n"] for c in chips_out),
                             ", ".join(f"chip {c['extver']}: {c['n']}" for c in chips_out))
            out.append({"root": root, "image": context.rel(image_path), "stem": stem,
                        "sci": rec["sci"], "dq": rec["dq"], "chips": chips_out})
        for key in sorted(unlisted):
            context.log.warning("find_sources: exclude_list %s names '%s', which is not one of the inputs "
                                "(%s); its regions are not used", params.exclude_list, key,
                                ", ".join(r["root"] for r in recs))
        if nprot:
            context.log.info("find_sources: %d CR-flagged pixels on stars of the blotted median kept as "
                             "measured (flags made before alignment)", nprot)
        context.put("catalogs", out)


# --------------------------------------------------------------------------- align
class AlignParams(Params):
    refimage: Optional[str] = Field(None, description="reference exposure (rootname or file name); "
                                                      "default the first input")
    refcat: Optional[str] = Field(None, description="external reference catalog (ECSV/FITS/CSV) with RA/Dec "
                                                    "in degrees; replaces the reference image")
    refxcol: str = Field("RA", description="RA column of refcat")
    refycol: str = Field("DEC", description="Dec column of refcat")
    searchrad: float = Field(1.0, gt=0, description="search radius of the offset histogram")
    searchunits: Literal["arcseconds", "pixels"] = Field("arcseconds", description="units of searchrad "
                                                         "(pixels = reference-plane pixels)")
    use2dhist: bool = Field(True, description="initial shift from the 2-D histogram of offsets")
    xoffset: float = Field(0.0, description="initial x shift (plane px) when use2dhist is false")
    yoffset: float = Field(0.0, description="initial y shift (plane px) when use2dhist is false")
    tolerance: float = Field(1.0, gt=0, description="matching radius (plane pixels) after the initial shift")
    separation: float = Field(0.5, ge=0, description="drop sources closer than this (plane px) to a neighbour")
    minobj: int = Field(15, ge=1, description="minimum matched (and kept) pairs for a fit")
    fitgeometry: Literal["shift", "rshift", "rscale", "general"] = Field("rscale", description="fit model")
    nclip: int = Field(3, ge=0, description="sigma-clipping iterations")
    sigma: float = Field(3.0, gt=0, description="clipping limit in units of the per-axis fit rms")
    refine: int = Field(2, ge=0, description="re-match with the fitted transform and refit this many times")
    static_radius: float = Field(0.3, ge=0, description="drop sources found on the same detector pixel "
                                 "(within this many chip px) in image and reference although dithered: "
                                 "hot pixels and other artefacts (0 = off)")
    maxrms: float = Field(1.0, gt=0, description="largest acceptable fit rms per axis (plane pixels); "
                                                 "above it the exposure is a failure")
    on_failure: Literal["error", "skip"] = Field("error", description="failed exposure: stop the run "
                                                 "(error) or keep its WCS and warn (skip)")
    updatehdr: bool = Field(True, description="write the new WCS into the working copies")
    wcsname: str = Field("TWEAK", description="WCSNAME of the new solution")
    headerlet: bool = Field(False, description="write a headerlet per exposure")
    hdrname: Optional[str] = Field(None, description="HDRNAME of the headerlets (required with headerlet)")
    attach: bool = Field(False, description="attach the headerlet to the working copy as an HDRLET extension")
    hdrfile: Optional[str] = Field(None, description="headerlet file name pattern; {root} and {stem} are "
                                                     "replaced (default '{stem}_hlet.fits')")
    apply: bool = Field(False, description="apply the headerlet as the primary WCS of the working copy "
                                           "(the tutorial's apply_headerlet_as_primary)")
    shiftfile: bool = Field(True, description="write a TweakReg shift file")
    outshifts: str = Field("shifts.txt", description="shift file name (inside the align folder)")
    plots: bool = Field(True, description="write the offset histogram and residual PNGs")


def _read_refcat(path, xcol, ycol, step):
    p = Path(path)
    if not p.is_file():
        raise StepError(step, f"refcat {p}: file not found")
    try:
        t = Table.read(p)
    except Exception as exc:
        raise StepError(step, f"refcat {p}: cannot read as a table ({exc})") from None
    cols = {c.lower(): c for c in t.colnames}
    if xcol.lower() not in cols or ycol.lower() not in cols:
        raise StepError(step, f"refcat {p}: needs columns '{xcol}' and '{ycol}' (has {', '.join(t.colnames)})")
    return (np.asarray(t[cols[xcol.lower()]], float), np.asarray(t[cols[ycol.lower()]], float))


class Align(Step):
    """Match every exposure's sources to the reference and fit a linear correction (TweakReg)."""

    name = "align"
    Params = AlignParams
    reads = ("exposures", "catalogs")
    writes = ("alignment",)
    version = "1"

    @classmethod
    def key_files(cls, params):
        return [params.refcat] if params.refcat else []

    def _fail(self, context, params, root, reason, results):
        msg = f"{root}: alignment failed: {reason}; its WCS is left unchanged"
        if params.on_failure == "error":
            raise StepError(self.name, msg + " (set on_failure: skip to continue without it)")
        context.log.warning("align: %s", msg)
        results[root] = {"status": "failed", "reason": reason}

    def run(self, context, params):
        t0 = time.perf_counter()
        cats = context.get("catalogs")
        recs = {r["root"]: r for r in context.get("exposures")}
        if not cats:
            raise StepError(self.name, "the 'catalogs' product is empty; run find_sources first")
        if params.headerlet and not params.hdrname:
            raise StepError(self.name, "headerlet: true needs hdrname (the tutorial uses hdrname: test1)")
        roots = [c["root"] for c in cats]
        # reference
        if params.refimage and not params.refcat:
            ref_root = None
            for c in cats:
                if _image_matches(params.refimage, dict(recs.get(c["root"], c), image=c["image"])) \
                        or Path(params.refimage).name == Path(c["image"]).name:
                    ref_root = c["root"]
                    break
            if ref_root is None:
                raise StepError(self.name, f"refimage '{params.refimage}' is not one of the inputs "
                                           f"({', '.join(roots)})")
        else:
            ref_root = roots[0]
        exps = {}
        chipcats = {}
        for c in cats:
            if c["root"] not in recs:
                raise StepError(self.name, f"catalog of {c['root']} has no exposure in the 'exposures' product")
            geoms = chip_geometries(context.abs(recs[c["root"]]["sci"]))
            exps[c["root"]] = geoms
            by_ext = {ch.extver: ch for ch in geoms}
            lst = []
            for cc in c["chips"]:
                t = Table.read(context.abs(cc["ecsv"]), format="ascii.ecsv")
                lst.append((t, by_ext[cc["extver"]].wcs, cc["extver"]))
            chipcats[c["root"]] = lst
        ref_chips = exps[ref_root]
        pscale = float(ref_chips[0].pscale) or float(
            np.sqrt(abs(np.linalg.det(ref_chips[0].wcs.pixel_scale_matrix))) * 3600)
        plane = tangent_plane([ch.wcs for ch in ref_chips], [ch.shape for ch in ref_chips], pscale=pscale)
        if params.refcat:
            ra, dec = _read_refcat(params.refcat, params.refxcol, params.refycol, self.name)
            ref = radec_to_plane(ra, dec, plane)
            refname = str(params.refcat)
        else:
            ref = chips_to_plane(chipcats[ref_root], plane)
            refname = next(c["image"] for c in cats if c["root"] == ref_root)
        if len(ref) == 0:
            raise StepError(self.name, f"reference {refname} has no sources; lower find_sources.threshold")
        radius = params.searchrad / pscale if params.searchunits == "arcseconds" else params.searchrad
        outdir = context.path("align")
        results, fits_for_shift = {}, {}
        for c in cats:
            root = c["root"]
            if root == ref_root and not params.refcat:
                results[root] = {"status": "reference", "shift": [0.0, 0.0], "rot": 0.0, "scale": 1.0,
                                 "rms": [0.0, 0.0], "nmatch": len(ref)}
                continue
            img = chips_to_plane(chipcats[root], plane)
            if len(img) == 0:
                self._fail(context, params, root, "no sources in any chip", results)
                continue
            try:
                res = align_catalog(img, ref, plane, searchrad=radius, use2dhist=params.use2dhist,
                                    xoffset=params.xoffset, yoffset=params.yoffset,
                                    tolerance=params.tolerance, separation=params.separation,
                                    minobj=params.minobj, fitgeometry=params.fitgeometry,
                                    nclip=params.nclip, sigma=params.sigma, refine=params.refine,
                                    static_radius=params.static_radius)
            except AlignFailure as exc:
                self._fail(context, params, root, str(exc), results)
                continue
            fit = res["fit"]
            ii, jj = res["pairs"]
            img, rref = res["img"], res["ref"]
            stem = c.get("stem", root)
            hist_png = resid_png = None
            peak = ""
            if params.plots and res["hist"] is not None:
                hist_png = outdir / f"hist2d_{stem}.png"
                peak = plot_histogram(hist_png, res["hist"], title=f"{stem} vs {Path(refname).name}")
            if params.plots:
                resid_png = outdir / f"vector_{stem}.png"
                plot_residuals(resid_png, fit, rref.xy[jj], title=f"{stem}")
            match = outdir / f"{stem}_catalog_fit.match"
            write_fit_match(match, c["image"], refname, fit, rref.xy[jj], img.xy[ii], rref.orig[jj],
                            img.orig[ii], rref.ids[jj], img.ids[ii], img.extver[ii], rref.radec[jj], pscale)
            rms_mas = [r * pscale * 1000 for r in fit["rms"]]
            if max(fit["rms"]) > params.maxrms:
                self._fail(context, params, root, f"fit rms {fit['rms'][0]:.3f} {fit['rms'][1]:.3f} plane px "
                           f"exceeds maxrms {params.maxrms:g}", results)
                continue
            context.log.info("align: %s: %s fit to %s with %d/%d pairs: shift %+.4f %+.4f px, rot %.6f deg, "
                             "scale %.7f, rms %.4f %.4f px (%.2f %.2f mas)%s", root, params.fitgeometry,
                             Path(refname).name, fit["nfit"], fit["nmatch"], fit["shift"][0], fit["shift"][1],
                             fit["rot"], fit["scale"], fit["rms"][0], fit["rms"][1], rms_mas[0], rms_mas[1],
                             f"; histogram: {peak}" if peak else "")
            fits_for_shift[stem] = fit
            results[root] = {"status": "aligned", "geometry": fit["geometry"], "shift": fit["shift"],
                             "matrix": fit["matrix"], "center": fit["center"], "rot": fit["rot"],
                             "scale": fit["scale"], "skew": fit["skew"], "rms": fit["rms"], "rms_mas": rms_mas,
                             "rmse": fit["rmse"], "nmatch": fit["nmatch"], "nfit": fit["nfit"],
                             "histogram_peak": peak, "static_dropped": res["nstatic"], "match_file": context.rel(match),
                             "hist_png": context.rel(hist_png) if hist_png else None,
                             "resid_png": context.rel(resid_png) if resid_png else None}
        if params.shiftfile:
            sp = outdir / params.outshifts
            write_shiftfile(sp, refname, fits_for_shift)
        # carry the solutions into the files
        for c in cats:
            root = c["root"]
            r = results.get(root, {})
            if r.get("status") not in ("aligned", "reference"):
                continue
            chips = exps[root]
            fit = None
            if r["status"] == "aligned":
                fit = {"matrix": r["matrix"], "shift": r["shift"], "center": r["center"]}
            new_wcs = {}
            for ch in chips:
                new_wcs[ch.extver] = corrected_wcs(ch.wcs, fit, plane, shape=ch.shape) if fit else ch.wcs
            rms_deg = [x * pscale / 3600.0 for x in r["rms"]]
            extra = {"CRDER1": rms_deg[0], "CRDER2": rms_deg[1], "NMATCH": int(r.get("nfit", r["nmatch"]))}
            sci_path = context.abs(recs[root]["sci"])
            if params.updatehdr:
                _update_working_copy(sci_path, new_wcs, params.wcsname, extra, catalog=refname)
                r["updated"] = True
            if params.headerlet:
                stem = c.get("stem", root)
                name = (params.hdrfile or "{stem}_hlet.fits").format(root=root, stem=stem)
                hpath = outdir / name
                hlet = _make_headerlet(hpath, sci_path, root, new_wcs, params, extra, refname)
                r["headerlet"] = context.rel(hpath)
                # with updatehdr the solution is already primary: only attach
                _attach_apply(sci_path, hlet, attach=params.attach,
                              apply=params.apply and not params.updatehdr)
                r["applied"] = bool(params.apply and not params.updatehdr)
        naligned = sum(1 for r in results.values() if r["status"] == "aligned")
        nfail = sum(1 for r in results.values() if r["status"] == "failed")
        context.log.info("align: %d aligned, %d failed, reference %s (%.1f s)", naligned, nfail,
                         Path(refname).name, time.perf_counter() - t0)
        context.put("alignment", {"reference": ref_root if not params.refcat else None, "refname": refname,
                                  "wcsname": params.wcsname, "fitgeometry": params.fitgeometry,
                                  "plane": {"crval": list(map(float, plane.wcs.crval)),
                                            "crpix": list(map(float, plane.wcs.crpix)),
                                            "cd": np.asarray(plane.wcs.cd).tolist(), "pscale": pscale},
                                  "images": results})


def _linear_cards(wcs):
    """CRVAL and CD of a corrected WCS as keyword cards (SIP/D2IM stay in the file)."""
    cd = np.asarray(wcs.pixel_scale_matrix)
    return {"CRVAL1": float(wcs.wcs.crval[0]), "CRVAL2": float(wcs.wcs.crval[1]),
            "CD1_1": float(cd[0, 0]), "CD1_2": float(cd[0, 1]),
            "CD2_1": float(cd[1, 0]), "CD2_2": float(cd[1, 1]),
            "ORIENTAT": float(np.degrees(np.arctan2(cd[0, 1], cd[1, 1])))}


def _update_working_copy(sci_path, new_wcs, wcsname, extra, hdrname=None, catalog=""):
    """Make the corrected CRVAL/CD the primary WCS of every chip of the working
    copy through the WFPC2 helper (previous primary archived as an alternate
    key, a WCSCORR row added)."""
    from drizzleflow.steps.instruments.wfpc2 import update_chip_wcs
    cards = {ev: dict(_linear_cards(w), CRDER1=extra["CRDER1"], CRDER2=extra["CRDER2"],
                      NMATCH=extra["NMATCH"]) for ev, w in new_wcs.items()}
    update_chip_wcs(sci_path, cards, wcsname=wcsname, archive=True, keep_distortion=True,
                    hdrname=hdrname, descrip="drizzleflow align",
                    rms=(extra["CRDER1"], extra["CRDER2"]), nmatch=extra["NMATCH"],
                    catalog=str(catalog)[:60])


def _make_headerlet(hpath, sci_path, root, new_wcs, params, extra, refname):
    """Headerlet of the new solution (wcs_tools.headerlet layout): built from
    the working copy's chips, with each SIPWCS extension's CRVAL/CD replaced by
    the aligned values (SIP and D2IM unchanged)."""
    from drizzleflow.steps.wcs_tools.headerlet import create_headerlet, write_headerlet
    hlet = create_headerlet(sci_path, params.hdrname, wcsname=params.wcsname, destim=root,
                            author="drizzleflow align", descrip=f"{params.fitgeometry} fit, drizzleflow",
                            catalog=Path(refname).name.split("_")[0][:18], nmatch=extra["NMATCH"],
                            rms_ra=extra["CRDER1"], rms_dec=extra["CRDER2"])
    for h in hlet[1:]:
        if h.name != "SIPWCS":
            continue
        ev = int(h.header.get("TG_EVER", h.header.get("EXTVER", 1)))
        if ev in new_wcs:
            for k, v in _linear_cards(new_wcs[ev]).items():
                h.header[k] = v
            h.header["CRDER1"] = extra["CRDER1"]
            h.header["CRDER2"] = extra["CRDER2"]
    write_headerlet(hlet, hpath)
    return hlet


def _attach_apply(sci_path, hlet, *, attach, apply):
    """The tutorial's apply_headerlet_as_primary (and/or attach) on the working copy."""
    from drizzleflow.steps.wcs_tools.headerlet import apply_headerlet_as_primary, attach_headerlet
    if apply:
        apply_headerlet_as_primary(sci_path, hlet, attach=attach, archive=True)
    elif attach:
        attach_headerlet(sci_path, hlet)
