"""The metric steps on synthetic final products and working copies written to tmp_path."""
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from drizzleflow.engine.errors import StepError
from drizzleflow.engine.step import Context
from drizzleflow.steps.metrics.psf_fwhm import SIGMA_TO_FWHM
from drizzleflow.steps.metrics.steps import PsfFwhm, WeightStats

CRVAL = (323.3147, -0.8711)


def _wcs(scale, crpix, rot=0.0):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(CRVAL)
    w.wcs.crpix = list(crpix)
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    d = scale / 3600.0
    w.wcs.cd = [[-d * c, d * s], [d * s, d * c]]
    return w


def _setup(tmp_path, scale=0.05, fwhm_arcsec=0.175, sat_star=True):
    """Two chips side by side (PC1 on the left half, WF2 on the right) and a final image."""
    n = 240
    out = _wcs(scale, (n / 2 + 0.5, n / 2 + 0.5))
    # chips of 0.1"/pix, 60x120 pixels = 6" x 12", centred left/right of the output centre
    pc = _wcs(0.1, (30.5 + 30, 60.5))   # chip centre 3" east (left in x, RA increases to -x)
    wf = _wcs(0.1, (30.5 - 30, 60.5))
    work = tmp_path / "work"
    work.mkdir(parents=True)
    hdus, dqs = [fits.PrimaryHDU()], [fits.PrimaryHDU()]
    for det, w in ((1, pc), (2, wf)):
        h = w.to_header()
        h["EXTNAME"], h["EXTVER"], h["DETECTOR"] = "SCI", det, det
        hdus.append(fits.ImageHDU(np.zeros((120, 60), np.float32), header=h))
        dq = np.zeros((120, 60), np.int16)
        dqs.append(fits.ImageHDU(dq, header=fits.Header({"EXTNAME": "SCI", "EXTVER": det})))
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:n, :n]
    sci = rng.normal(0, 0.5, (n, n))
    sig = fwhm_arcsec / scale / SIGMA_TO_FWHM
    stars = []
    for x in (30.3, 80.6, 160.2, 210.7):
        for y in (40.4, 120.1, 200.8):
            stars.append((x, y))
            sci += 300 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sig ** 2))
    # a saturated star: its input pixels carry DQ bit 8
    if sat_star:
        sx, sy = 100.0, 80.0
        sci += 300 * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * sig ** 2))
        ra, dec = out.all_pix2world([sx], [sy], 0)
        px, py = wf.all_world2pix(ra, dec, 0) if sx > n / 2 else pc.all_world2pix(ra, dec, 0)
        target = dqs[2] if sx > n / 2 else dqs[1]
        target.data[int(round(py[0])), int(round(px[0]))] = 8
    fits.HDUList(hdus).writeto(work / "a_c0m.fits")
    fits.HDUList(dqs).writeto(work / "a_c1m.fits")
    wht = np.where(xx < n / 2, 50.0, 12.0) + rng.normal(0, 1.0, (n, n))
    fits.PrimaryHDU(sci.astype(np.float32), header=out.to_header()).writeto(tmp_path / "final_drz_sci.fits")
    fits.PrimaryHDU(wht.astype(np.float32), header=out.to_header()).writeto(tmp_path / "final_drz_wht.fits")
    ctx = Context(outdir=tmp_path, products={
        "exposures": [{"root": "a", "sci": "work/a_c0m.fits", "dq": "work/a_c1m.fits", "source": "x", "nchips": 2}]})
    return ctx, stars


def test_psf_fwhm_selects_measures_and_labels(tmp_path):
    ctx, stars = _setup(tmp_path)
    params = PsfFwhm.Params(fwhm_window=(3.0, 4.5), isolation=1.0, ref_scale=0.05, thresh=5)
    PsfFwhm().run(ctx, params)
    res = ctx.get("psf_fwhm")
    assert res["ALL"]["n_stars"] == len(stars)  # the saturated one is dropped
    assert res["ALL"]["fwhm_arcsec"] == pytest.approx(0.175, rel=0.03)
    assert res["ALL"]["fwhm_pix"] == pytest.approx(3.5, rel=0.03)
    assert res["chips"]["PC1"]["n_stars"] == 6 and res["chips"]["WF2"]["n_stars"] == 6
    lst = Table.read(ctx.abs(res["star_list"]))
    assert set(lst.colnames) >= {"ra", "dec"}
    PsfFwhm().run(ctx, params.model_copy(update={"saturated_bits": None}))
    assert ctx.get("psf_fwhm")["ALL"]["n_stars"] == len(stars) + 1


def test_psf_fwhm_window_scales_with_output_scale(tmp_path):
    # same stars (0.175") at a finer grid: 0.035"/pix -> 5 pix; a 3.0-4.5 pix window at 0.05" still keeps them
    ctx, stars = _setup(tmp_path, scale=0.035, sat_star=False)
    PsfFwhm().run(ctx, PsfFwhm.Params(fwhm_window=(3.0, 4.5), isolation=1.0, ref_scale=0.05, thresh=5))
    res = ctx.get("psf_fwhm")
    assert res["ALL"]["n_stars"] == len(stars)
    assert res["ALL"]["fwhm_pix"] == pytest.approx(5.0, rel=0.03)


def test_psf_fwhm_reuses_a_star_list(tmp_path):
    base, _ = _setup(tmp_path / "base")
    PsfFwhm().run(base, PsfFwhm.Params(fwhm_window=(3.0, 4.5), isolation=1.0, ref_scale=0.05, thresh=5))
    lst = base.abs(base.get("psf_fwhm")["star_list"])
    tab = Table.read(lst)
    tab = tab[:5]
    tab.write(tmp_path / "five.ecsv")
    other, _ = _setup(tmp_path / "other", fwhm_arcsec=0.2)
    PsfFwhm().run(other, PsfFwhm.Params(stars=str(tmp_path / "five.ecsv"), ref_scale=0.05))
    res = other.get("psf_fwhm")
    assert res["ALL"]["n_stars"] == 5
    assert res["ALL"]["fwhm_arcsec"] == pytest.approx(0.2, rel=0.03)
    assert "star_list" not in res


def test_weight_stats_per_chip(tmp_path):
    ctx, _ = _setup(tmp_path)
    WeightStats().run(ctx, WeightStats.Params(box=100, ref_scale=0.05, inset=5))
    res = ctx.get("weight_stats")
    assert res["box_pixels"] == 100
    assert res["chips"]["PC1"]["wht_median"] == pytest.approx(50, abs=0.1)
    assert res["chips"]["WF2"]["wht_median"] == pytest.approx(12, abs=0.1)
    assert res["chips"]["WF2"]["wht_rms_over_median"] == pytest.approx(1 / 12, rel=0.1)
    assert res["chips"]["PC1"]["meets_guidance"] and res["chips"]["WF2"]["meets_guidance"]
    # box clipped to the footprint: the PC box does not reach into the WF chip
    assert res["chips"]["PC1"]["wht_std"] < 2
    # the mosaic row reports the worst chip
    assert res["ALL"]["worst_chip"] == "WF2"
    assert res["ALL"]["wht_rms_over_median"] == res["chips"]["WF2"]["wht_rms_over_median"]
    assert res["ALL"]["meets_guidance"]


def test_missing_final_image_is_a_step_error(tmp_path):
    ctx = Context(outdir=tmp_path)
    with pytest.raises(StepError, match="drizzle_final"):
        WeightStats().run(ctx, WeightStats.Params())
