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


def _poly5_oracle(img, pm, factor):
    """poly5 in numpy with the operations of the scalar definition, in their order:
    Lagrange weights as running products over the other nodes divided by the
    integer denominator, each row's sum over columns left to right, then the sum
    over rows top to bottom (double precision, one float32 rounding at the end)."""
    x, y = pm[..., 0].ravel(), pm[..., 1].ravel()
    ix, iy = np.floor(x).astype(int), np.floor(y).astype(int)

    def weights(s):
        w = []
        for k in range(6):
            num, den = np.ones_like(s), 1.0
            for m in range(6):
                if m != k:
                    num = num * (s - float(m - 2))
                    den *= float(k - m)
            w.append(num / den)
        return w

    wx, wy = weights(x - ix), weights(y - iy)
    acc = np.zeros_like(x)
    for k in range(6):
        row = np.zeros_like(x)
        for i in range(6):
            row = row + wx[i] * img[iy - 2 + k, ix - 2 + i].astype(np.float64)
        acc = acc + wy[k] * row
    return (acc * factor).astype(np.float32).reshape(pm.shape[:2])


def test_poly5_matches_its_definition_bit_for_bit():
    """The compiled poly5 (weights and 6 x 6 sums laid out for the vector units)
    must give exactly the bits of the plain definition, for stencils inside the
    image: a wrong node, weight, stencil offset or factor fails it.  (Reordering
    the double-precision sums is mostly hidden by the float32 result; the layout
    was checked against the previous build on a whole chip instead.)"""
    rng = np.random.default_rng(11)
    img = rng.normal(50.0, 20.0, (60, 70)).astype(np.float32)
    pm = _map(25, 30, shift=(16.37, 4.91), scale=1.37, theta=0.23)
    pm[..., 0] += 1e-3 * pm[..., 1] ** 2 / 60          # not affine
    assert pm[..., 0].min() >= 2 and pm[..., 0].max() < 70 - 4
    assert pm[..., 1].min() >= 2 and pm[..., 1].max() < 60 - 4
    out = blot(img, pm, interp="poly5", exptime=3.0, scale=1.37)
    expect = _poly5_oracle(img, pm, 3.0 / 1.37 ** 2)
    assert np.array_equal(out.view(np.uint32), expect.view(np.uint32))


def test_avx2_blot_gives_the_generic_builds_bits():
    """The blot is compiled twice on x86-64 (``_native.py``), like the core."""
    from drizzleflow.steps.drizzle import _native
    generic, avx2 = _native.builds("_blot")
    if avx2 is None:
        pytest.skip("no AVX2 build of the blot, or no AVX2 on this CPU")
    rng = np.random.default_rng(5)
    img = rng.normal(10.0, 3.0, (50, 60)).astype(np.float32)
    pm = _map(40, 45, shift=(-3.2, -2.7), scale=1.4, theta=0.15)   # edges and outside too
    for code in range(6):
        a, b = np.empty((40, 45), np.float32), np.empty((40, 45), np.float32)
        na = generic.blot_rows(img, pm, a, code, 1.0, 2.0, -7.0, 0, 40)
        nb = avx2.blot_rows(img, pm, b, code, 1.0, 2.0, -7.0, 0, 40)
        assert na == nb and 0 < na < 40 * 45
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), code
