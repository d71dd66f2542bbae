"""Check a chain run against the simulator's truth (``DIR/truth/``).

Used by the end-to-end tests and ``benchmarks/chain_accuracy.py``:

* cosmic rays: event recall (a true CR track counts as found when any of its
  pixels is flagged), the fraction of flagged pixels more than 1 px from a
  true CR pixel, and unsaturated star cores that were flagged;
* photometry: aperture flux (r = 1″, local sky from an annulus) of isolated
  unsaturated stars in the final image over the true e-/s;
* the final weight image: median and std in a central box of each chip
  (the tutorial's 500×500 at 0.046″).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

__all__ = ["cr_metrics", "coverage_count", "star_cores_flagged", "star_photometry", "weight_boxes",
           "align_to_truth"]


def _label(mask):
    from scipy import ndimage
    return ndimage.label(mask, structure=np.ones((3, 3)))


def _dilate(mask, r=1):
    from scipy import ndimage
    return ndimage.binary_dilation(mask, structure=np.ones((2 * r + 1, 2 * r + 1)))


def coverage_count(outdir, root, chip, maskpt=0.3, exclude_self=True):
    """Number of *other* exposures whose single drizzle has good weight at the
    sky position of every pixel of one chip (the median can only reject a CR
    where at least two others look at the same sky)."""
    from drizzleflow.steps.chain.output_wcs import grid_from_image
    from drizzleflow.steps.drizzle.pixmap import pixmap
    from drizzleflow.steps.instruments.wfpc2.reader import chip_wcs, sci_extensions
    outdir = Path(outdir)
    grid = grid_from_image(outdir / "chain" / "median_med.fits")
    with fits.open(outdir / "work" / f"{root}_c0m.fits") as h:
        ext = next(e for e in sci_extensions(h) if e.header["EXTVER"] == chip)
        w = chip_wcs(h, h.index_of(ext))
        shape = ext.data.shape
    pm = pixmap(w, grid.wcs, shape, 10)
    xi = np.clip(np.rint(pm[..., 0]).astype(int), 0, grid.shape[1] - 1)
    yi = np.clip(np.rint(pm[..., 1]).astype(int), 0, grid.shape[0] - 1)
    count = np.zeros(shape, int)
    for f in sorted((outdir / "chain" / "single").glob("*_single_wht.fits")):
        if exclude_self and f.name.startswith(root):
            continue
        wt = fits.getdata(f)
        good = wt >= maskpt * wt[wt > 1e-8].mean()
        count += good[yi, xi]
    return count


def cr_metrics(outdir, truth_dir, bits=(8, 1024), min_cover=2, edge=0):
    """Compare the CR masks of a run with ``crs.fits``.

    Parameters
    ----------
    outdir : path
        The run's output folder (``work/``, ``chain/crmask``, ``chain/single``).
    truth_dir : path
        The simulator's truth folder.
    bits : sequence of int
        DQ flags treated as good by the final drizzle: a CR on a pixel that is
        bad anyway, or a flag on such a pixel, changes nothing and is not
        counted.
    min_cover : int
        Only CR events where at least this many *other* exposures cover the
        same sky count for the recall (elsewhere the median contains the CR).
    edge : int
        Pixels within this distance of a chip border are left out of the
        precision count (vignetted pyramid edges, PC/WF seams).

    The precision count (``far``: flagged pixels more than 1 px from a true
    CR pixel) uses *clean* pixels only: DQ 0 and not next to a saturated
    (DQ 8) pixel, so bleed trails and flagged hot pixels — which differ from
    the median for real and are flagged by AstroDrizzle too — are not
    counted as false detections.

    Returns
    -------
    dict: ``total`` (events, found, recall, flagged usable pixels, far, far_fraction)
    and per chip.
    """
    outdir = Path(outdir)
    truth = fits.open(Path(truth_dir) / "crs.fits")
    okbits = np.uint16(sum(bits) | 4096)
    per = {}
    tot = dict(events=0, found=0, flagged=0, far=0, truth_pixels=0, uncovered_events=0)
    for h in truth[1:]:
        root, chip = h.name.lower(), h.ver
        mp = outdir / "chain" / "crmask" / f"{root}_sci{chip}_crmask.fits"
        if not mp.exists():
            continue
        dq = _dq(outdir / "work", root, chip)
        usable = (dq & ~okbits) == 0
        clean = ((dq & ~np.uint16(4096)) == 0) & ~_dilate((dq & 8) != 0, 1)
        if edge:
            inner = np.zeros_like(clean)
            inner[edge:-edge, edge:-edge] = True
            clean &= inner
        crm = fits.getdata(mp) == 0
        flagged = crm & clean
        t = np.asarray(h.data) > 0
        cover = coverage_count(outdir, root, chip) if min_cover else None
        lab, n = _label(t)
        found = counted = uncovered = 0
        for k, sl in enumerate(_objects(lab), 1):
            ev = lab[sl] == k
            if not usable[sl][ev].any():
                continue
            if cover is not None and (cover[sl][ev] < min_cover).any():
                uncovered += 1
                continue
            counted += 1
            found += bool(crm[sl][ev].any())
        far = int((flagged & ~_dilate(t, 1)).sum())
        per[f"{root}[{chip}]"] = dict(events=counted, found=found, flagged=int(flagged.sum()), far=far)
        for k, v in (("events", counted), ("found", found), ("flagged", int(flagged.sum())), ("far", far),
                     ("truth_pixels", int(t.sum())), ("uncovered_events", uncovered)):
            tot[k] += v
    tot["recall"] = tot["found"] / max(tot["events"], 1)
    tot["far_fraction"] = tot["far"] / max(tot["flagged"], 1)
    return {"total": tot, "chips": per}


def _objects(lab):
    from scipy import ndimage
    return ndimage.find_objects(lab)


def _dq(work_dir, root, chip):
    p = Path(work_dir) / f"{root}_c1m.fits"
    if not p.exists():
        return None
    with fits.open(p) as h:
        exts = [e for e in h[1:] if e.header.get("NAXIS", 0) == 2]
        return np.asarray(exts[chip - 1].data).astype(np.uint16)


def star_cores_flagged(work_dir, crmask_dir, truth_dir, min_flux=2000.0, edge=20, blot_dir=None,
                       snr=(5.5, 3.5), scale=(2.0, 1.5)):
    """Unsaturated stars whose core pixel (brightest of the 3×3 around the
    predicted position) was flagged as a CR.

    A star is checked only where the median can model it: every exposure sees
    it on the same detector, at least ``edge`` pixels inside (a star on the PC
    in one exposure and on a WF chip in the others is undersampled in the
    median — the PC/WF seams), the core pixel and its neighbours carry no DQ
    flag (saturation, warm pixels: not the star's own signal) and no true CR
    lies within 1 px.

    With ``blot_dir`` (the run's ``chain/blot``) and the run's driz_cr ``snr``
    and ``scale``, also the headroom: for every checked core the driz_cr test
    ratio ``min(|I-B|/T2 at the core, max |I-B|/T1 over its 3×3)`` (> 1 means
    flagged, before growth), reported as ``worst_ratio`` with the ``closest``
    cores.
    """
    stars = Table.read(Path(truth_dir) / "stars.ecsv")
    stars = stars[stars["flux_e"] > min_flux]
    ra, dec = np.asarray(stars["ra"]), np.asarray(stars["dec"])
    truth = fits.open(Path(truth_dir) / "crs.fits")
    files = [p for p in sorted(Path(work_dir).glob("*_c0m.fits")) if "crclean" not in p.name]
    # detector of every star in every exposure (0 = none / near an edge)
    where = []
    for sci in files:
        det = np.zeros(ra.size, int)
        pos = {}
        with fits.open(sci) as hd:
            for e in (e for e in hd[1:] if e.header.get("EXTNAME") == "SCI"):
                w = WCS(e.header, hd)
                ny, nx = e.data.shape
                x, y = w.all_world2pix(ra, dec, 0, quiet=True)
                ok = (x > edge) & (x < nx - 1 - edge) & (y > edge) & (y < ny - 1 - edge) & np.isfinite(x)
                det[ok] = e.header["EXTVER"]
                pos[e.header["EXTVER"]] = (x, y)
        where.append((sci, det, pos))
    same = np.all([d == where[0][1] for _s, d, _p in where], axis=0) & (where[0][1] > 0)
    bad, checked, ratios = [], 0, []
    for sci, det, pos in where:
        root = sci.name[:9]
        ratio = _cr_test_ratios(sci, Path(blot_dir), snr, scale) if blot_dir is not None else {}
        with fits.open(sci) as hd:
            for e in (e for e in hd[1:] if e.header.get("EXTNAME") == "SCI"):
                chip = e.header["EXTVER"]
                mp = Path(crmask_dir) / f"{root}_sci{chip}_crmask.fits"
                sel = same & (det == chip)
                if not mp.exists() or not sel.any():
                    continue
                data = np.asarray(e.data, dtype=np.float32)
                flagged = fits.getdata(mp) == 0
                dq = _dq(work_dir, root, chip)
                tcr = np.asarray(truth[root.upper(), chip].data) > 0
                x, y = pos[chip]
                for xi, yi in zip(np.rint(x[sel]).astype(int), np.rint(y[sel]).astype(int)):
                    box = data[yi - 1:yi + 2, xi - 1:xi + 2]
                    dy, dx = np.unravel_index(np.argmax(box), box.shape)
                    cy, cx = yi - 1 + dy, xi - 1 + dx
                    if dq is not None and (dq[cy - 1:cy + 2, cx - 1:cx + 2] & ~np.uint16(4096)).any():
                        continue  # saturated, warm or otherwise flagged: not the star's signal
                    if tcr[cy - 1:cy + 2, cx - 1:cx + 2].any():
                        continue  # a real CR on the star
                    checked += 1
                    if flagged[cy, cx]:
                        bad.append((root, chip, int(cx), int(cy)))
                    if chip in ratio:
                        r2, r1 = ratio[chip]
                        ratios.append((float(min(r2[cy, cx], r1[cy - 1:cy + 2, cx - 1:cx + 2].max())),
                                       root, chip, int(cx), int(cy)))
    out = {"checked": checked, "flagged": len(bad), "examples": bad[:10]}
    if ratios:
        ratios.sort(reverse=True)
        out["worst_ratio"] = round(ratios[0][0], 3)
        out["closest"] = [(round(r, 3), *rest) for r, *rest in ratios[:5]]
    return out


def _cr_test_ratios(sci_path, blot_dir, snr, scale):
    """Per chip of one exposure: ``|I-B|/T2`` and ``|I-B|/T1`` of the driz_cr
    test (:mod:`drizzleflow.steps.chain.crdetect`), in electrons."""
    from drizzleflow.steps.chain.crdetect import deriv
    from drizzleflow.steps.instruments.model import CR_BIT
    from drizzleflow.steps.instruments.wfpc2 import open_exposure
    sci_path = Path(sci_path)
    exp = open_exposure(sci_path, sci_path.with_name(sci_path.name.replace("_c0m", "_c1m")), ignore_bits=CR_BIT)
    out = {}
    for chip in exp.chips:
        bp = blot_dir / f"{sci_path.name[:9]}_sci{chip.extver}_blt.fits"
        if not bp.exists():
            continue
        b = fits.getdata(bp).astype(np.float32)
        diff = np.abs(chip.sci - b)
        d = deriv(b)
        noise = np.sqrt(np.abs(b) + np.float32(chip.rdnoise) ** 2)
        out[chip.extver] = (diff / (scale[1] * d + snr[1] * noise), diff / (scale[0] * d + snr[0] * noise))
    return out


def star_photometry(final_sci, data_dir, radius=1.0, min_flux=3000.0, max_flux=None, edge_px=60,
                    iso_arcsec=1.5, iso_frac=0.02):
    """Aperture flux / truth for isolated unsaturated stars in the final image.

    The truth in e-/s on chip k is ``flux_e * PHOTFLAM(WF3)/PHOTFLAM(k) / exptime``
    (stars.ecsv convention).  Stars within ``edge_px`` input pixels of a chip
    edge (vignetting), with another star of more than ``iso_frac`` of their flux
    within ``iso_arcsec``, or with
    saturated pixels (DQ 8) in the first exposure are skipped.
    """
    data_dir = Path(data_dir)
    stars = Table.read(data_dir / "truth" / "stars.ecsv")
    with fits.open(final_sci) as h:
        img = np.asarray(h[0].data, dtype=np.float64)
        w = WCS(h[0].header)
    scale = float(np.sqrt(abs(np.linalg.det(w.pixel_scale_matrix))) * 3600)
    first = sorted(p for p in data_dir.glob("*_c0m.fits"))[0]
    dqf = Path(str(first).replace("_c0m.fits", "_c1m.fits"))
    ra, dec, flux = np.asarray(stars["ra"]), np.asarray(stars["dec"]), np.asarray(stars["flux_e"], float)
    cosd = np.cos(np.radians(np.median(dec)))
    # isolation
    order = np.argsort(ra)
    iso = np.ones(ra.size, bool)
    rs = ra[order]
    win = iso_arcsec / 3600 / cosd
    for n, i in enumerate(order):
        lo, hi = np.searchsorted(rs, ra[i] - win), np.searchsorted(rs, ra[i] + win)
        j = order[lo:hi]
        d = np.hypot((ra[j] - ra[i]) * cosd, dec[j] - dec[i]) * 3600
        close = (d < iso_arcsec) & (j != i) & (flux[j] > iso_frac * flux[i])
        iso[i] = not close.any()
    sel = iso & (flux > min_flux)
    if max_flux:
        sel &= flux < max_flux
    with fits.open(first) as hd, fits.open(dqf) as hq:
        exptime = float(hd[0].header["EXPTIME"])
        scis = [e for e in hd[1:] if e.header.get("EXTNAME") == "SCI"]
        pf3 = next(float(e.header["PHOTFLAM"]) for e in scis if e.header.get("DETECTOR", e.header["EXTVER"]) == 3)
        dqs = [e for e in hq[1:] if e.header.get("NAXIS", 0) == 2]
        chip_of = np.zeros(ra.size, int)
        ratio_k = np.zeros(ra.size)
        for e, q in zip(scis, dqs):
            cw = WCS(e.header, hd)
            ny, nx = e.data.shape
            x, y = cw.all_world2pix(ra, dec, 0, quiet=True)
            ins = (x > edge_px) & (x < nx - edge_px) & (y > edge_px) & (y < ny - edge_px) & sel
            dq = np.asarray(q.data).astype(np.uint16)
            xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
            for i in np.nonzero(ins)[0]:
                if (dq[yi[i] - 2:yi[i] + 3, xi[i] - 2:xi[i] + 3] & 8).any():
                    continue
                chip_of[i] = int(e.header["EXTVER"])
                ratio_k[i] = pf3 / float(e.header["PHOTFLAM"])
    use = np.nonzero(chip_of > 0)[0]
    x, y = w.all_world2pix(ra[use], dec[use], 0)
    r_pix = radius / scale
    r_in, r_out = 1.5 / scale, 2.2 / scale
    half = int(np.ceil(r_out)) + 1
    ratios, chips = [], []
    ny, nx = img.shape
    for k, (xc, yc) in enumerate(zip(x, y)):
        xi, yi = int(round(xc)), int(round(yc))
        if xi - half < 0 or yi - half < 0 or xi + half >= nx or yi + half >= ny:
            continue
        cut = img[yi - half:yi + half + 1, xi - half:xi + half + 1]
        yy, xx = np.mgrid[yi - half:yi + half + 1, xi - half:xi + half + 1]
        rr = np.hypot(xx - xc, yy - yc)
        ann = cut[(rr >= r_in) & (rr < r_out)]
        ap = rr < r_pix
        if ann.size < 10 or not np.isfinite(cut[ap]).all() or (np.abs(cut[ap]) > 9e4).any():
            continue
        sky = float(np.median(ann))
        f = float((cut[ap] - sky).sum())
        i = use[k]
        ratios.append(f / (flux[i] * ratio_k[i] / exptime))
        chips.append(chip_of[i])
    ratios = np.asarray(ratios)
    chips = np.asarray(chips)
    out = {"n": int(ratios.size), "median_ratio": float(np.median(ratios)) if ratios.size else float("nan")}
    for c in (1, 2, 3, 4):
        m = chips == c
        if m.any():
            out[f"chip{c}"] = {"n": int(m.sum()), "median_ratio": float(np.median(ratios[m]))}
    return out


def weight_boxes(final_wht, work_dir, box_ref=500, ref_scale=0.046):
    """Median and std of the weight in a central box of each chip of the first
    exposure (side ``box_ref`` pixels at ``ref_scale``, clipped to the chip)."""
    with fits.open(final_wht) as h:
        wht = np.asarray(h[0].data, dtype=np.float64)
        w = WCS(h[0].header)
    scale = float(np.sqrt(abs(np.linalg.det(w.pixel_scale_matrix))) * 3600)
    first = sorted(p for p in Path(work_dir).glob("*_c0m.fits") if "crclean" not in p.name)[0]
    out = {}
    with fits.open(first) as hd:
        for e in (e for e in hd[1:] if e.header.get("EXTNAME") == "SCI"):
            cw = WCS(e.header, hd)
            ny, nx = e.data.shape
            det = int(e.header.get("DETECTOR", e.header["EXTVER"]))
            pscale = float(e.header.get("IDCSCALE", 0.1))
            ra, dec = cw.all_pix2world([(nx - 1) / 2], [(ny - 1) / 2], 0)
            xc, yc = w.all_world2pix(ra, dec, 0)
            # box no larger than the chip minus its vignetted edges
            side = min(box_ref * ref_scale / scale, (min(nx, ny) - 120) * pscale / scale)
            h2 = side / 2
            x0, x1 = int(round(xc[0] - h2)), int(round(xc[0] + h2))
            y0, y1 = int(round(yc[0] - h2)), int(round(yc[0] + h2))
            v = wht[max(0, y0):y1, max(0, x0):x1]
            name = "PC1" if det == 1 else f"WF{det}"
            out[name] = {"median": float(np.median(v)), "std": float(np.std(v)), "side": int(x1 - x0)}
    return out


def align_to_truth(outdir, data_dir):
    """Put the simulator's TRUE pointing into the working copies in ``outdir/work``.

    What a perfect alignment step would do: the simulated headers carry 0.02-0.05"
    pointing errors (truth/pointing.ecsv), which is a shift of every chip's CRVAL.
    Used to measure the chain's accuracy apart from the alignment's.
    """
    from drizzleflow.steps.instruments.wfpc2 import set_sci_keywords
    for row in Table.read(Path(data_dir) / "truth" / "pointing.ecsv"):
        path = Path(outdir) / "work" / f"{row['root']}_c0m.fits"
        upd = {}
        with fits.open(path) as h:
            for e in h[1:]:
                if e.header.get("EXTNAME") == "SCI":
                    upd[e.header["EXTVER"]] = {
                        "CRVAL1": e.header["CRVAL1"] + row["ra_ref_true"] - row["ra_ref_header"],
                        "CRVAL2": e.header["CRVAL2"] + row["dec_ref_true"] - row["dec_ref_header"]}
        set_sci_keywords(path, upd)
