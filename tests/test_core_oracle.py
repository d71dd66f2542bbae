"""Oracle comparisons: our core vs spacetelescope's ``drizzle`` package and scipy.

Identical pixel maps in, sci and wht compared to 1e-5 relative.  The
``drizzle`` package is a test-only extra; the tests skip without it.
"""
import warnings

import numpy as np
import pytest

from drizzleflow.steps.drizzle import Drizzle, blot

pytestmark = pytest.mark.oracle


def _distorted_map(ny, nx, ratio, theta=0.35, shift=(40.0, 12.0)):
    y, x = np.indices((ny, nx), dtype=np.float64)
    c, s = np.cos(theta) * ratio, np.sin(theta) * ratio
    X = c * x - s * y + 0.002 * ratio * (x - nx / 2) ** 2 + shift[0] + ny * ratio
    Y = s * x + c * y + 0.001 * ratio * (x - 20) * (y - 30) + shift[1]
    return np.ascontiguousarray(np.dstack([X, Y]))


@pytest.mark.parametrize("kernel", ["square", "turbo", "point"])
@pytest.mark.parametrize("pixfrac", [0.6, 1.0])
@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.2])
def test_drizzle_matches_reference_package(kernel, pixfrac, ratio):
    resample = pytest.importorskip("drizzle.resample")
    rng = np.random.default_rng(7)
    ny, nx = 48, 56
    data = (rng.random((ny, nx)) + 0.5).astype(np.float32)
    wmap = (rng.random((ny, nx)) + 0.25).astype(np.float32)
    theta = 0.0 if kernel == "turbo" else 0.35
    pm = _distorted_map(ny, nx, ratio, theta=theta)
    shape = (int(120 * ratio) + 40, int(140 * ratio) + 60)
    ours = Drizzle(shape, kernel=kernel, fillval=0.0)
    ours.add_image(data, pm, weight=wmap, pixfrac=pixfrac, scale=1 / ratio, iscale=1.0)
    ref = resample.Drizzle(kernel=kernel, out_shape=shape, fillval=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.add_image(data, exptime=1.0, pixmap=pm, weight_map=wmap, pixfrac=pixfrac,
                      pixel_scale_ratio=1 / ratio, iscale=1.0)
    assert np.array_equal(ours.out_wht > 0, ref.out_wht > 0)
    assert (ref.out_wht > 0).sum() > 500
    np.testing.assert_allclose(ours.out_wht, ref.out_wht, rtol=1e-5, atol=1e-5 * ref.out_wht.max())
    np.testing.assert_allclose(ours.out_img, ref.out_img, rtol=1e-5, atol=1e-6)
    assert np.array_equal(ours.out_ctx[0], ref.out_ctx[0])


def _source_image():
    rng = np.random.default_rng(9)
    y, x = np.indices((70, 80), dtype=np.float64)
    smooth = 2.0 + np.sin(x / 7.0) * np.cos(y / 9.0) + 0.01 * x
    return (smooth + 0.05 * rng.random((70, 80))).astype(np.float32)


def _blot_map():
    y, x = np.indices((60, 66), dtype=np.float64)
    X = 0.93 * x + 0.21 * y - 4.0 + 0.0015 * x * y
    Y = -0.2 * x + 0.97 * y + 6.0 + 0.001 * x * x
    # float32-representable positions: drizzle's C blot rounds positions to float32
    return np.ascontiguousarray(np.dstack([X, Y]).astype(np.float32).astype(np.float64))


@pytest.mark.parametrize("interp", ["nearest", "linear", "poly3", "poly5"])
def test_blot_matches_reference_package(interp):
    resample = pytest.importorskip("drizzle.resample")
    image, pm = _source_image(), _blot_map()
    ours = blot(image, pm, interp=interp, iscale=3.0, fillval=-1.0)
    ref = resample.blot_image(image, pm, interp=interp, iscale=3.0, fillval=-1.0)
    inside = (pm[..., 0] >= 0) & (pm[..., 0] < 80) & (pm[..., 1] >= 0) & (pm[..., 1] < 70)
    assert 0 < (~inside).sum() < inside.sum()
    assert np.all(ours[~inside] == -1.0)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("interp, order", [("nearest", 0), ("linear", 1)])
def test_blot_matches_map_coordinates(interp, order):
    ndimage = pytest.importorskip("scipy.ndimage")
    image, pm = _source_image(), _blot_map()
    ours = blot(image, pm, interp=interp)
    ref = ndimage.map_coordinates(image, [pm[..., 1], pm[..., 0]], order=order, mode="nearest")
    inside = (pm[..., 0] >= 0) & (pm[..., 0] < 79) & (pm[..., 1] >= 0) & (pm[..., 1] < 69)
    np.testing.assert_allclose(ours[inside], ref[inside], rtol=1e-6)
