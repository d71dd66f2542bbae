"""The metrics see the tutorial's trends on images drizzled by our own core.

Four dithered exposures of an undersampled star field (FWHM 1.5 input pixels,
pixel-integrated) are drizzled onto finer grids with different pixfrac and
scale; the metric functions must find: FWHM falls as pixfrac falls at a fixed
scale, weight scatter rises as pixfrac falls, and the weight median scales
with scale² at pixfrac 1.
"""
import numpy as np
import pytest
from scipy.special import erf

from drizzleflow.steps.metrics import psf_fwhm, weight_stats

core = pytest.importorskip("drizzleflow.steps.drizzle.core")

NIN = 96
SHIFTS = [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5)]   # a 4-point sub-pixel box (input pixels)
STARS = [(x + 0.17 * k, y + 0.29 * k) for k, (x, y) in enumerate(
    [(x, y) for x in (14, 30, 46, 62, 78) for y in (14, 30, 46, 62, 78)])]


def _exposure(shift, rng):
    sig = 1.5 / psf_fwhm.SIGMA_TO_FWHM
    edges = np.arange(NIN + 1, dtype=float) - 0.5
    img = np.full((NIN, NIN), 5.0)
    for x, y in STARS:
        fx = np.diff(erf((edges - (x - shift[0])) / (np.sqrt(2) * sig))) / 2
        fy = np.diff(erf((edges - (y - shift[1])) / (np.sqrt(2) * sig))) / 2
        img += 4000.0 * np.outer(fy, fx)
    return (img + rng.normal(0, 1.0, img.shape)).astype(np.float32)


def _drizzle(pixfrac, ratio):
    """Drizzle the 4 exposures onto an output grid of ``ratio`` input pixels per output pixel."""
    rng = np.random.default_rng(7)
    nout = int(np.ceil((NIN + 2) / ratio))
    d = core.Drizzle((nout, nout), kernel="square", fillval=0.0)
    jj, ii = np.mgrid[:NIN, :NIN].astype(float)
    for k, s in enumerate(SHIFTS):
        pm = np.empty((NIN, NIN, 2))
        pm[..., 0] = (ii + s[0] + 0.5) / ratio - 0.5 + 1.0 / ratio
        pm[..., 1] = (jj + s[1] + 0.5) / ratio - 0.5 + 1.0 / ratio
        d.add_image(_exposure(s, rng), pm, exptime=10.0, weight=np.full((NIN, NIN), 10.0, np.float32),
                    pixfrac=pixfrac, in_units="cps", scale=ratio, input_id=k)
    d.finish()
    sci, wht = np.asarray(d.out_img), np.asarray(d.out_wht)
    xs = np.array([(x + 0.5) / ratio - 0.5 + 1.0 / ratio for x, _ in STARS])
    ys = np.array([(y + 0.5) / ratio - 0.5 + 1.0 / ratio for _, y in STARS])
    return sci, wht, xs, ys


def _metrics(pixfrac, ratio):
    sci, wht, xs, ys = _drizzle(pixfrac, ratio)
    fwhm, _, _ = psf_fwhm.measure_fwhm(sci, wht > 0, xs, ys, fwhm_guess=1.7 / ratio)
    n = wht.shape[0]
    st = weight_stats.weight_box_stats(wht, (n / 2, n / 2), int(60 / ratio))
    return np.nanmedian(fwhm) * ratio, st   # FWHM in input pixels (an angle), weight stats


def test_fwhm_falls_and_weight_scatter_rises_as_pixfrac_falls():
    ratio = 0.46  # 0.046" output pixels from 0.1" input pixels, as WF -> the tutorial's grid
    res = {pf: _metrics(pf, ratio) for pf in (1.0, 0.8, 0.6)}
    f = [res[pf][0] for pf in (1.0, 0.8, 0.6)]
    r = [res[pf][1]["wht_rms_over_median"] for pf in (1.0, 0.8, 0.6)]
    assert f[0] > f[1] > f[2], f
    assert r[0] < r[1] < r[2], r
    assert f[0] > 1.5  # drizzling broadens the 1.5-pixel PSF


def test_weight_median_scales_with_scale_squared_at_pixfrac_1():
    m046 = _metrics(1.0, 0.46)[1]["wht_median"]
    m032 = _metrics(1.0, 0.32)[1]["wht_median"]
    assert m032 / m046 == pytest.approx((0.32 / 0.46) ** 2, rel=0.03)
