"""The metric functions on synthetic images with known answers."""
import numpy as np
import pytest
from astropy.wcs import WCS

from drizzleflow.steps.metrics import footprint, psf_fwhm, weight_stats


def _star_field(shape=(200, 200), stars=(), sky=10.0, noise=1.0, seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = np.full(shape, sky, float)
    for x, y, amp, fwhm in stars:
        s = fwhm / psf_fwhm.SIGMA_TO_FWHM
        img += amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    return (img + rng.normal(0, noise, shape)).astype(np.float32)


def test_gaussian_fit_recovers_known_fwhm():
    truth = [2.5, 3.0, 3.5, 4.5]
    stars = [(40 + 40 * i + 0.3 * i, 60.7, 500.0, f) for i, f in enumerate(truth)]
    img = _star_field(stars=stars)
    good = np.ones(img.shape, bool)
    fwhm, xc, yc = psf_fwhm.measure_fwhm(img, good, [s[0] for s in stars], [s[1] for s in stars],
                                         fwhm_guess=3.0)
    np.testing.assert_allclose(fwhm, truth, rtol=0.02)
    np.testing.assert_allclose(xc, [s[0] for s in stars], atol=0.05)
    np.testing.assert_allclose(yc, 60.7, atol=0.05)


def test_moments_agree_roughly_with_fit():
    stars = [(100.2, 100.6, 800.0, 3.2)]
    img = _star_field(stars=stars, noise=0.3)
    good = np.ones(img.shape, bool)
    f, _, _ = psf_fwhm.measure_fwhm(img, good, [100.2], [100.6], method="moments", box=8)
    assert f[0] == pytest.approx(3.2, rel=0.1)


def test_masked_pixels_in_cutout_give_nan():
    img = _star_field(stars=[(50, 50, 500, 3.0), (120, 120, 500, 3.0)])
    good = np.ones(img.shape, bool)
    good[50, 52] = False
    f, _, _ = psf_fwhm.measure_fwhm(img, good, [50, 120], [50, 120], fwhm_guess=3.0)
    assert np.isnan(f[0]) and np.isfinite(f[1])


def test_selection_keeps_isolated_single_stars_in_window():
    singles = [(30 + 45 * i, 40, 400.0, 3.5) for i in range(4)]
    wide = [(40, 120, 400.0, 6.0)]                         # a galaxy-like blob: outside the window
    pair = [(120, 120, 400.0, 3.5), (124.5, 121, 300.0, 3.5)]  # a close pair: not isolated / blended
    near_hole = [(160, 170, 400.0, 3.5)]
    img = _star_field(shape=(200, 200), stars=singles + wide + pair + near_hole, noise=0.5)
    good = np.ones(img.shape, bool)
    good[170:, 165:] = False
    sel = psf_fwhm.select_psf_stars(img, good, thresh=10, isolation_pix=8, fwhm_window_pix=(3.1, 4.0))
    got = sorted(zip(np.round(sel["x"]).astype(int), np.round(sel["y"]).astype(int)))
    assert got == [(int(x), int(y)) for x, y, *_ in singles]
    assert sel["counts"]["kept"] == 4
    np.testing.assert_allclose(sel["fwhm"], 3.5, rtol=0.05)


def test_summarise_units():
    s = psf_fwhm.summarise([3.0, 3.5, 4.0, np.nan], 0.046)
    assert s["n_stars"] == 3
    assert s["fwhm_pix"] == 3.5
    assert s["fwhm_arcsec"] == pytest.approx(3.5 * 0.046)
    assert s["fwhm_std_pix"] == pytest.approx(0.5)


def test_weight_box_stats_known_values_and_holes():
    rng = np.random.default_rng(3)
    wht = rng.normal(50.0, 5.0, (300, 300))
    st = weight_stats.weight_box_stats(wht, (150, 150), 100)
    assert st["n_pix"] == 100 * 100
    assert st["wht_median"] == pytest.approx(50, rel=0.01)
    assert st["wht_rms_over_median"] == pytest.approx(0.1, rel=0.05)
    wht[::4, ::4] = 0.0  # holes raise the scatter and are counted
    st2 = weight_stats.weight_box_stats(wht, (150, 150), 100)
    assert st2["zero_wht_frac"] == pytest.approx(1 / 16, rel=0.05)
    assert st2["wht_rms_over_median"] > 0.2
    assert weight_stats.meets_guidance(st["wht_rms_over_median"])
    assert not weight_stats.meets_guidance(st2["wht_rms_over_median"])


def test_weight_box_clipped_to_footprint():
    wht = np.zeros((200, 200))
    wht[:, :100] = 10.0
    wht[:, 100:] = 50.0
    corners = np.array([[0, 0], [99.4, 0], [99.4, 199], [0, 199]])
    st = weight_stats.weight_box_stats(wht, (90, 100), 60, corners=corners)
    assert st["wht_median"] == 10.0 and st["wht_std"] == 0.0
    assert st["n_pix"] == 40 * 60


def test_box_side_scales_with_output_scale():
    assert weight_stats.box_side_pixels(500, 0.046, 0.046) == 500
    assert weight_stats.box_side_pixels(500, 0.046, 0.032) == round(500 * 0.046 / 0.032)


def _tan_wcs(scale_arcsec, crpix, rot=0.0, crval=(323.3147, -0.8711)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = list(crpix)
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    d = scale_arcsec / 3600.0
    w.wcs.cd = [[-d * c, d * s], [d * s, d * c]]
    return w


def test_footprint_maps_chip_centre_and_labels_points():
    out = _tan_wcs(0.05, (201, 201))
    chip = _tan_wcs(0.1, (50.5, 50.5), rot=30.0)  # 100x100 chip of 0.1" pixels, centred on the output centre
    fps = footprint.footprints_in_output([(3, (100, 100), chip)], out)
    assert fps[0].label == "WF3"
    assert fps[0].centre == pytest.approx((200.0, 200.0), abs=0.01)
    # the 10" chip covers 200 output pixels on a side, rotated
    assert footprint.point_in_quad(200 + 90, 200, fps[0].corners)
    assert not footprint.point_in_quad(200 + 120, 200 + 120, fps[0].corners)
    assert footprint.output_pixel_scale(out) == pytest.approx(0.05)


def test_clear_box_at_stars_matches_a_brute_force_test():
    """A star is 'clear' only when its whole (2r+1)^2 box is inside the image and good."""
    rng = np.random.default_rng(3)
    good = rng.random((120, 150)) > 0.003
    good[:, 140:] = False
    xi, yi = rng.integers(0, 150, 800), rng.integers(0, 120, 800)
    for r in (0, 1, 4, 9):
        want = [0 <= x - r and x + r < 150 and 0 <= y - r and y + r < 120
                and bool(good[y - r:y + r + 1, x - r:x + r + 1].all()) for x, y in zip(xi, yi)]
        assert psf_fwhm._clear_at(good, xi, yi, r).tolist() == want


def test_cutouts_from_weights_equal_cutouts_from_a_mask():
    """Measuring with good=None tests finite sci and wht > 0 inside the cutouts only:
    the same cutouts as with the full-image mask."""
    rng = np.random.default_rng(4)
    sci = rng.normal(10, 1, (60, 70)).astype(np.float32)
    sci[5, 7] = np.nan
    wht = (rng.random((60, 70)) > 0.05).astype(np.float32)
    good = np.isfinite(sci) & (wht > 0)
    x, y = rng.uniform(-3, 73, 200), rng.uniform(-3, 63, 200)
    a = psf_fwhm._cutouts(sci, good, x, y, 4)[0]
    b = psf_fwhm._cutouts(sci, None, x, y, 4, wht=wht)[0]
    assert np.isnan(a).any() and np.array_equal(a, b, equal_nan=True)
