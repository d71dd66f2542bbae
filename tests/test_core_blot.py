"""Blot: interpolant properties, flux scaling, fill, boundary errors, threads."""
import numpy as np
import pytest

from drizzleflow.steps.drizzle import Drizzle, DrizzleArrayError, blot


def _map(ny, nx, shift=(0.0, 0.0), scale=1.0, theta=0.0):
    y, x = np.indices((ny, nx), dtype=np.float64)
    c, s = np.cos(theta) * scale, np.sin(theta) * scale
    return np.ascontiguousarray(np.dstack([c * x - s * y + shift[0], s * x + c * y + shift[1]]))


def _poly_image(deg, ny=40, nx=44):
    y, x = np.indices((ny, nx), dtype=np.float64)
    img = 3.0 + 0.1 * x - 0.05 * y
    if deg >= 2:
        img = img + 0.002 * x * y - 0.001 * x ** 2
    if deg >= 3:
        img = img + 1e-5 * x ** 3 - 2e-5 * x * y ** 2
    return img.astype(np.float32), lambda X, Y: np.interp(0, [0], [0]) + (
        3.0 + 0.1 * X - 0.05 * Y
        + (0.002 * X * Y - 0.001 * X ** 2 if deg >= 2 else 0)
        + (1e-5 * X ** 3 - 2e-5 * X * Y ** 2 if deg >= 3 else 0))


@pytest.mark.parametrize("interp, deg", [("linear", 1), ("poly3", 3), ("poly5", 3), ("lanczos3", 0)])
def test_interpolants_reproduce_polynomials_inside(interp, deg):
    img, f = _poly_image(max(deg, 1))
    if deg == 0:
        img = np.full_like(img, 2.5)
    pm = _map(20, 20, shift=(8.3, 9.7), theta=0.2)
    out = blot(img, pm, interp=interp)
    expect = np.full(out.shape, 2.5) if deg == 0 else f(pm[..., 0], pm[..., 1])
    np.testing.assert_allclose(out, expect, rtol=2e-6)


def test_sinc_is_exact_on_nodes_and_smooth_between():
    img, _ = _poly_image(1)
    on = blot(img, _map(10, 10, shift=(15, 15)), interp="sinc")
    assert np.array_equal(on, img[15:25, 15:25])
    between = blot(img, _map(10, 10, shift=(15.5, 15.25)), interp="sinc")
    lin = blot(img, _map(10, 10, shift=(15.5, 15.25)), interp="linear")
    np.testing.assert_allclose(between, lin, rtol=2e-3)


def test_blot_undoes_drizzle_scaling():
    # drizzle counts at 2x finer output (scale 0.5), then blot back: same counts
    rng = np.random.default_rng(1)
    data = (100 + 5 * rng.random((30, 30))).astype(np.float32)
    data = np.full((30, 30), 120.0, np.float32)
    pm = _map(30, 30, shift=(5, 5), scale=2.0)
    drz = Drizzle((75, 75))
    drz.add_image(data, pm, exptime=10.0, in_units="counts", scale=0.5)
    back = blot(drz.out_img, pm, interp="poly5", exptime=10.0, scale=0.5)
    np.testing.assert_allclose(back[2:-2, 2:-2], 120.0, rtol=1e-5)


def test_outside_and_nan_positions_get_fill():
    img = np.ones((10, 10), np.float32)
    pm = _map(4, 4, shift=(-2, 8))
    pm[0, 3] = np.nan
    out = blot(img, pm, interp="linear", fillval=-5.0)
    x, y = pm[..., 0], pm[..., 1]
    outside = ~((x >= 0) & (x < 10) & (y >= 0) & (y < 10))
    assert np.all(out[outside] == -5.0) and np.all(out[~outside] == 1.0)
    assert out[0, 3] == -5.0
    assert np.isnan(blot(img, pm, fillval=np.nan)[0, 0])


def test_blot_threads_identical():
    img, _ = _poly_image(3, 80, 80)
    pm = _map(70, 70, shift=(3.3, 4.1), theta=0.1)
    a = blot(img, pm, interp="poly5", threads=1)
    b = blot(img, pm, interp="poly5", threads=3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("argument, kwargs", [
    ("image", dict(image=np.ones((8, 8)))),
    ("image", dict(image=np.ones((8, 8), ">f4"))),
    ("image", dict(image=np.ones((8, 8), np.float32).T[:, ::2])),
    ("pixmap", dict(pixmap=np.zeros((4, 4, 3)))),
    ("pixmap", dict(pixmap=np.zeros((4, 4, 2), np.float32))),
    ("interp", dict(interp="spline3")),
    ("exptime", dict(exptime=0.0)),
    ("out", dict(out=np.zeros((3, 4), np.float32))),
])
def test_blot_bad_arguments(argument, kwargs):
    args = dict(image=np.ones((8, 8), np.float32), pixmap=_map(4, 4))
    args.update(kwargs)
    with pytest.raises(DrizzleArrayError) as info:
        blot(**args)
    assert info.value.argument == argument
