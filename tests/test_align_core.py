"""Alignment algorithms on synthetic star lists: histogram peak, matching,
fits with clipping, and the WCS correction."""
import numpy as np
import pytest
from astropy.wcs import WCS

from drizzleflow.steps.align.fitting import FitError, apply_fit, iter_fit
from drizzleflow.steps.align.matching import match_xy, offset_histogram
from drizzleflow.steps.align.wcs_update import (corrected_wcs, tangent_plane,
                                                 world_to_plane)


def _stars(n=300, size=800, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, size, (n, 2))


def _transform(ref, shift=(0, 0), rot_deg=0.0, scale=1.0, center=(400, 400)):
    th = np.radians(rot_deg)
    M = scale * np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])
    c = np.asarray(center, float)
    return (ref - c) @ M.T + c + np.asarray(shift, float)


@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.5, -0.5), (2.3, -1.7), (-0.4, 3.6), (3.5, 0.2)])
@pytest.mark.parametrize("searchrad", [4.0, 6.5])
def test_histogram_peak_recovers_shift_incl_half_pixel_and_axis_order(shift, searchrad):
    ref = _stars()
    rng = np.random.default_rng(3)
    img = ref + shift + rng.normal(0, 0.05, ref.shape)
    h = offset_histogram(img[:, 0], img[:, 1], ref[:, 0], ref[:, 1], searchrad)
    assert h["shift"][0] == pytest.approx(shift[0], abs=0.05)
    assert h["shift"][1] == pytest.approx(shift[1], abs=0.05)
    # hist is [iy, ix]: the peak row must correspond to the y shift
    iy, ix = np.unravel_index(np.argmax(h["hist"]), h["hist"].shape)
    assert abs(h["offsets"][ix] - shift[0]) <= 0.5 + 1e-9
    assert abs(h["offsets"][iy] - shift[1]) <= 0.5 + 1e-9
    assert h["npeak"] >= 60 and h["nbox"] >= 280


def test_histogram_no_overlap_gives_zero_shift():
    h = offset_histogram([], [], [1.0], [2.0], 3)
    assert h["shift"] == (0.0, 0.0) and h["npeak"] == 0


def test_match_one_to_one_and_separation():
    ref = _stars(200)
    img = ref + (1.2, -0.7)
    # a close double in the reference is dropped (separation)
    ref2 = np.vstack([ref, ref[0] + (0.3, 0.0)])
    ii, jj = match_xy(img[:, 0], img[:, 1], ref2[:, 0], ref2[:, 1], tolerance=1.0,
                      separation=0.5, shift=(1.2, -0.7))
    assert 0 not in jj and 200 not in jj
    assert len(ii) == 199
    assert np.all(ii == jj)
    assert len(set(ii.tolist())) == len(ii)


@pytest.mark.parametrize("geometry", ["shift", "rscale", "general"])
def test_fit_recovers_transform_and_clips_outliers(geometry):
    ref = _stars(400)
    truth = dict(shift=(0.31, -0.22), rot_deg=0.0 if geometry == "shift" else 0.01,
                 scale=1.0 if geometry == "shift" else 1.00005)
    img = _transform(ref, **truth)
    rng = np.random.default_rng(5)
    img += rng.normal(0, 0.03, img.shape)
    bad = rng.choice(len(img), 20, replace=False)
    img[bad] += rng.uniform(0.5, 1.0, (20, 2)) * rng.choice([-1, 1], (20, 2))
    fit = iter_fit(ref, img, geometry, center=(400, 400), nclip=3, sigma=3.0)
    assert fit["shift"][0] == pytest.approx(0.31, abs=0.01)
    assert fit["shift"][1] == pytest.approx(-0.22, abs=0.01)
    mask = np.asarray(fit["mask"])
    assert not mask[bad].any()            # every injected outlier clipped
    assert fit["nfit"] >= 370
    assert fit["rms"][0] == pytest.approx(0.03, abs=0.01)
    if geometry != "shift":
        rot = (fit["rot"] + 180) % 360 - 180
        assert rot == pytest.approx(0.01, abs=0.002)
        assert fit["scale"] == pytest.approx(1.00005, abs=2e-5)
    pred = apply_fit(fit, ref)
    assert np.median(np.hypot(*(pred - img)[mask].T)) < 0.06


def test_negative_rotation_reads_like_tweakreg():
    ref = _stars(100)
    img = _transform(ref, rot_deg=-0.002)
    fit = iter_fit(ref, img, "rscale", center=(400, 400))
    assert 359.99 < fit["rot"] < 360.0


def test_fit_too_few_points():
    with pytest.raises(FitError, match="at least 3"):
        iter_fit([[0, 0], [1, 1]], [[0, 0], [1, 1]], "general")


def _sip_wcs(crval=(323.36, -0.82), rot=30.0, scale=0.1):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [400.5, 400.5]
    th = np.radians(rot)
    s = scale / 3600.0
    w.wcs.cd = s * np.array([[-np.cos(th), np.sin(th)], [np.sin(th), np.cos(th)]])
    from astropy.wcs import Sip
    a = np.zeros((4, 4)); b = np.zeros((4, 4))
    a[2, 0] = 2e-6; a[0, 2] = -1e-6; b[1, 1] = 3e-6; a[3, 0] = 1e-9
    w.sip = Sip(a, b, None, None, w.wcs.crpix)
    w.pixel_shape = (800, 800)
    w.wcs.set()
    return w


def test_corrected_wcs_reproduces_plane_correction():
    chip = _sip_wcs()
    plane = tangent_plane([_sip_wcs(rot=31.0, scale=0.0455)], [(800, 800)], pscale=0.0455)
    fit = {"matrix": [[1.00002 * np.cos(1e-4), 1.00002 * np.sin(1e-4)],
                      [-1.00002 * np.sin(1e-4), 1.00002 * np.cos(1e-4)]],
           "shift": [0.7, -0.4], "center": [plane.wcs.crpix[0] - 1, plane.wcs.crpix[1] - 1]}
    new = corrected_wcs(chip, fit, plane)
    rng = np.random.default_rng(2)
    pix = rng.uniform(0, 799, (200, 2))
    ra0, dec0 = chip.all_pix2world(pix[:, 0], pix[:, 1], 0)
    x0, y0 = world_to_plane(plane, ra0, dec0)
    ra1, dec1 = new.all_pix2world(pix[:, 0], pix[:, 1], 0)
    x1, y1 = world_to_plane(plane, ra1, dec1)
    # image plane position = fit(reference position): new positions are the reference ones
    pred = apply_fit(fit, np.column_stack([x1, y1]))
    err = np.hypot(pred[:, 0] - x0, pred[:, 1] - y0)
    assert err.max() < 1e-3   # plane pixels (0.0455"): < 0.05 mas
    assert new.sip is not None and np.array_equal(new.sip.a, chip.sip.a)
