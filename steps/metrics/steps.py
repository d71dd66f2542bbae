"""The metric steps: ``psf_fwhm`` and ``weight_stats``, usable in any recipe.

Both read the final drizzle products (``drizzle_final`` writes them) and the
``exposures`` product (the working copies, for chip geometry and DQ), and
write a JSON-serialisable metric dict as a product of the same name, plus a
small ECSV file beside the outputs.  A sweep runs them after every point's
``drizzle_final`` and tabulates the dicts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from pydantic import Field, field_validator

from ...engine.atomic import atomic_path
from ...engine.errors import StepError
from ...engine.step import Params, Step
from . import footprint as fp
from . import psf_fwhm as pf
from . import weight_stats as ws

__all__ = ["PsfFwhm", "WeightStats", "final_image_path"]

#: product names under which drizzle_final may record its files, most specific first
_SCI_PRODUCTS = ("final_drz_sci", "final_sci", "drz_sci")
_WHT_PRODUCTS = ("final_drz_wht", "final_wht", "drz_wht")


def final_image_path(context, kind: str, product: Optional[str]) -> Path:
    """Path of the final science (``kind='sci'``) or weight image.

    Looks for the named product, then the usual ``drizzle_final`` product
    names, then ``final_drz_<kind>.fits`` in the output directory.
    """
    names = (product,) if product else (_SCI_PRODUCTS if kind == "sci" else _WHT_PRODUCTS)
    for name in names:
        value = context.products.get(name)
        if isinstance(value, dict):  # e.g. {"sci": ..., "wht": ..., "ctx": ...}
            value = value.get(kind)
        if isinstance(value, str):
            return context.abs(value)
    final = context.products.get("final") or context.products.get("drizzle_final")
    if isinstance(final, dict) and isinstance(final.get(kind), str):
        return context.abs(final[kind])
    candidates = sorted(Path(context.outdir).glob(f"*_drz_{kind}.fits"))
    if candidates:
        return candidates[0]
    raise StepError(context.step_name or "metrics",
                    f"cannot find the final {kind} image: no product "
                    f"{', '.join(repr(n) for n in names)} and no *_drz_{kind}.fits in {context.outdir}; "
                    "run drizzle_final before the metric steps")


def _image_hdu(hdul, path):
    hdu = next((h for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) == 2), None)
    if hdu is None:
        raise StepError("metrics", f"{path}: no 2-D image found")
    return hdu


def _read_image(path):
    with fits.open(path) as hdul:
        hdu = _image_hdu(hdul, path)
        data = np.asarray(hdu.data, dtype=np.float32)
        wcs = WCS(hdu.header)
    return np.ascontiguousarray(data, dtype=np.float32), wcs


def _geometry_by_exposure(context):
    """[(exposure product entry, [(detector, shape, wcs), ...]), ...] of the working copies."""
    out = []
    for exp in context.products.get("exposures") or []:
        p = context.abs(exp["sci"])
        if Path(p).exists():
            out.append((exp, fp.read_chip_geometry(p)))
    return out


def _chip_geometry(context, by_exposure=None):
    by_exposure = _geometry_by_exposure(context) if by_exposure is None else by_exposure
    return [chip for _, geo in by_exposure for chip in geo]


class PsfFwhmParams(Params):
    sci: Optional[str] = Field(None, description="product holding the final science image (default: drizzle_final's)")
    wht: Optional[str] = Field(None, description="product holding the final weight image (default: drizzle_final's)")
    stars: Optional[str] = Field(
        None, description="ECSV star list (columns ra, dec in degrees) from a baseline image; "
        "when given, exactly these stars are measured (sweeps set it so every point measures the same stars); "
        "when empty, stars are selected on this image")
    thresh: float = Field(10.0, gt=0, description="sep detection threshold in background sigma")
    minarea: int = Field(5, ge=1, description="minimum connected pixels of a detection")
    isolation: float = Field(0.5, ge=0, description="reject stars with another detection closer than this (arcsec)")
    fwhm_window: tuple[float, float] = Field(
        (3.1, 4.0), description="keep stars whose FWHM lies in this range, in pixels of ref_scale "
        "(the tutorial's 3.1-4 PC pixels at 0.046\"/pix); converted to output pixels")
    ref_scale: float = Field(0.046, gt=0, description="arcsec/pixel in which fwhm_window is given")
    method: Literal["gauss", "moments"] = Field("gauss", description="circular 2-D Gaussian fit or second moments")
    edge: float = Field(0.25, ge=0, description="minimum distance from zero-weight pixels and image edges (arcsec)")
    saturated_bits: Optional[int] = Field(
        8, ge=0, description="DQ bits marking saturated input pixels (WFPC2: 8); stars touching them in any "
        "input chip are dropped; null disables the check")
    max_stars: Optional[int] = Field(None, ge=1, description="keep at most this many stars (the brightest)")

    @field_validator("fwhm_window")
    @classmethod
    def _ordered(cls, v):
        if v[0] >= v[1]:
            raise ValueError("fwhm_window must be [low, high] with low < high")
        return v


class PsfFwhm(Step):
    """Median PSF FWHM of isolated single stars on the final image (arcsec and pixels)."""

    name = "psf_fwhm"
    Params = PsfFwhmParams
    reads = ("exposures",)
    writes = ("psf_fwhm",)
    version = "1"

    def run(self, context, params):
        sci_path = final_image_path(context, "sci", params.sci)
        wht_path = final_image_path(context, "wht", params.wht)
        with fits.open(sci_path, memmap=True) as sci_hdul, fits.open(wht_path, memmap=True) as wht_hdul:
            # memory maps: measuring a star list reads only the cutouts
            sci_hdu, wht_hdu = _image_hdu(sci_hdul, sci_path), _image_hdu(wht_hdul, wht_path)
            self._run(context, params, sci_path, sci_hdu.data, wht_hdu.data, WCS(sci_hdu.header))

    def _run(self, context, params, sci_path, sci, wht, wcs):
        scale = fp.output_pixel_scale(wcs)
        factor = params.ref_scale / scale
        lo, hi = params.fwhm_window[0] * factor, params.fwhm_window[1] * factor
        by_exposure = _geometry_by_exposure(context)
        chips = _chip_geometry(context, by_exposure)

        if params.stars:
            star_path = Path(params.stars)
            if not star_path.is_absolute():
                star_path = context.abs(params.stars)
            if not star_path.exists():
                raise StepError(self.name, f"star list {star_path} does not exist")
            ref = Table.read(star_path, format="ascii.ecsv")
            ra, dec = np.asarray(ref["ra"], float), np.asarray(ref["dec"], float)
            x, y = wcs.all_world2pix(ra, dec, 0)
            fwhm, xc, yc = pf.measure_fwhm(sci, None, x, y, fwhm_guess=0.5 * (lo + hi), method=params.method,
                                           wht=wht)
            star_ids = np.asarray(ref["id"]) if "id" in ref.colnames else np.arange(len(ra))
            selected_here = False
        else:
            sci = np.ascontiguousarray(sci, dtype=np.float32)
            good = np.isfinite(sci) & (np.asarray(wht) > 0)
            saturated = (self._saturation_test(context, wcs, params.saturated_bits, by_exposure)
                         if params.saturated_bits else None)
            sel = pf.select_psf_stars(sci, good, thresh=params.thresh, minarea=params.minarea,
                                      isolation_pix=params.isolation / scale, fwhm_window_pix=(lo, hi),
                                      saturated=saturated, method=params.method,
                                      edge_pix=max(1, int(round(params.edge / scale))))
            context.log.info("psf_fwhm: star selection %s", sel["counts"])
            xc, yc, fwhm = sel["x"], sel["y"], sel["fwhm"]
            if params.max_stars and len(xc) > params.max_stars:
                order = np.argsort(-sci[np.rint(yc).astype(int), np.rint(xc).astype(int)])[:params.max_stars]
                order.sort()
                xc, yc, fwhm = xc[order], yc[order], fwhm[order]
            ra, dec = wcs.all_pix2world(xc, yc, 0)
            star_ids = np.arange(len(xc))
            selected_here = True

        labels = np.full(len(xc), "", dtype=object)
        fps = fp.footprints_in_output(chips, wcs) if chips else []
        xs = np.where(np.isfinite(xc), xc, -1e9)
        ys = np.where(np.isfinite(yc), yc, -1e9)
        for f in fps:
            labels[(labels == "") & fp.point_in_quad(xs, ys, f.corners)] = f.label

        tab = Table({"id": np.asarray(star_ids, int), "ra": np.asarray(ra, float), "dec": np.asarray(dec, float),
                     "x": np.asarray(xc, float), "y": np.asarray(yc, float), "chip": labels.astype(str),
                     "fwhm_pix": np.asarray(fwhm, float), "fwhm_arcsec": np.asarray(fwhm, float) * scale})
        tab.meta.update({"scale_arcsec": scale, "image": str(sci_path.name), "method": params.method,
                         "fwhm_window_pix": [lo, hi], "selected_here": selected_here})
        per_star = context.path("metrics", "psf_fwhm_stars.ecsv")
        with atomic_path(per_star, suffix=".ecsv") as tmp:
            tab.write(tmp, format="ascii.ecsv")
        result = {"scale_arcsec": scale, "stars": context.rel(per_star), "method": params.method,
                  "selected_here": selected_here, "chips": {}}
        if selected_here:
            star_list = context.path("metrics", "psf_star_list.ecsv")
            with atomic_path(star_list, suffix=".ecsv") as tmp:
                tab["id", "ra", "dec", "chip"].write(tmp, format="ascii.ecsv")
            result["star_list"] = context.rel(star_list)
        result["ALL"] = pf.summarise(fwhm, scale)
        for f in fps:
            result["chips"][f.label] = pf.summarise(np.asarray(fwhm)[labels == f.label], scale)
        context.log.info("psf_fwhm: %d stars, median FWHM %.4f\" (%.3f pix) +/- %.4f\"", result["ALL"]["n_stars"],
                         result["ALL"]["fwhm_arcsec"], result["ALL"]["fwhm_pix"], result["ALL"]["fwhm_std_arcsec"])
        context.put("psf_fwhm", result)

    @staticmethod
    def _saturation_test(context, out_wcs, bits, by_exposure):
        """A function flagging output positions that touch saturated input pixels."""
        layers = []
        for exp, geo in by_exposure:
            dq_p = context.abs(exp.get("dq", ""))
            if not (exp.get("dq") and Path(dq_p).exists()):
                continue
            with fits.open(dq_p) as dq_hdul:
                dqs = [np.asarray(h.data) for h in dq_hdul if h.data is not None and getattr(h.data, "ndim", 0) == 2]
            for (det, shape, cwcs), dq in zip(geo, dqs):
                if dq.shape == shape:
                    layers.append((cwcs, (dq.astype(np.int64) & int(bits)) != 0))

        def saturated(x, y):
            flag = np.zeros(len(x), bool)
            ra, dec = out_wcs.all_pix2world(x, y, 0)
            for cwcs, sat in layers:
                px, py = cwcs.all_world2pix(ra, dec, 0)
                ny, nx = sat.shape
                for dx in (-2, -1, 0, 1, 2):
                    for dy in (-2, -1, 0, 1, 2):
                        ix = np.rint(px).astype(int) + dx
                        iy = np.rint(py).astype(int) + dy
                        ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
                        flag[ok] |= sat[iy[ok], ix[ok]]
            return flag

        return saturated if layers else None


class WeightStatsParams(Params):
    wht: Optional[str] = Field(None, description="product holding the final weight image (default: drizzle_final's)")
    box: int = Field(500, ge=1, description="side of the central box in pixels of ref_scale (the tutorial's "
                     "500x500 at 0.046\"/pix); converted to output pixels so every scale measures the same sky")
    ref_scale: float = Field(0.046, gt=0, description="arcsec/pixel in which box is given")
    inset: float = Field(50.0, ge=0, description="input pixels trimmed from each chip edge (vignetted pyramid "
                         "edges) when clipping the box to the chip footprint")
    limit: float = Field(0.2, gt=0, description="guidance: weight std/median at most this (DrizzlePac Handbook: 20%)")


class WeightStats(Step):
    """Median, std and std/median of the final weight image in a central box of each chip."""

    name = "weight_stats"
    Params = WeightStatsParams
    reads = ("exposures",)
    writes = ("weight_stats",)
    version = "1"

    def run(self, context, params):
        wht_path = final_image_path(context, "wht", params.wht)
        wht, wcs = _read_image(wht_path)
        scale = fp.output_pixel_scale(wcs)
        side = ws.box_side_pixels(params.box, params.ref_scale, scale)
        chips = _chip_geometry(context)
        if not chips:
            raise StepError(self.name, "no chip geometry: the 'exposures' product lists no readable working copies")
        result = {"scale_arcsec": scale, "box_pixels": side, "limit": params.limit, "chips": {}}
        for f in fp.footprints_in_output(chips, wcs, inset=params.inset):
            st = ws.weight_box_stats(wht, f.centre, side, corners=f.corners)
            st["meets_guidance"] = ws.meets_guidance(st["wht_rms_over_median"], params.limit)
            st["centre"] = [round(f.centre[0], 2), round(f.centre[1], 2)]
            result["chips"][f.label] = st
            context.log.info("weight_stats %s: %.4g +/- %.4g (%.1f%%) in %d px", f.label, st["wht_median"],
                             st["wht_std"], 100 * st["wht_rms_over_median"], st["n_pix"])
        # the mosaic as a whole: chips of different pixel areas have different weight levels, so a
        # median over all of them means nothing; report the worst chip (a mosaic is only as well
        # sampled as its worst chip) and whether every chip meets the guidance
        ratios = {k: c["wht_rms_over_median"] for k, c in result["chips"].items()
                  if np.isfinite(c["wht_rms_over_median"])}
        worst = max(ratios, key=ratios.get) if ratios else None
        result["ALL"] = {"wht_median": float("nan"), "wht_std": float("nan"),
                         "wht_rms_over_median": ratios[worst] if worst else float("nan"), "worst_chip": worst,
                         "zero_wht_frac": max((c["zero_wht_frac"] for c in result["chips"].values()
                                               if np.isfinite(c["zero_wht_frac"])), default=float("nan")),
                         "n_pix": int(sum(c["n_pix"] for c in result["chips"].values())),
                         "meets_guidance": bool(result["chips"]) and all(c["meets_guidance"]
                                                                         for c in result["chips"].values())}
        context.put("weight_stats", result)
