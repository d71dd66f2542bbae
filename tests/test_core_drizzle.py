"""Physics invariants and boundary behaviour of the Cython drizzle core."""
import threading

import numpy as np
import pytest

from drizzleflow.engine.errors import DrizzleflowError
from drizzleflow.steps.drizzle import Drizzle, DrizzleArrayError, DrizzleInput, core, drizzle_many


def _grid(ny, nx):
    y, x = np.indices((ny, nx), dtype=np.float64)
    return x, y


def _affine_map(ny, nx, scale=1.0, theta=0.0, shift=(0.0, 0.0), curve=0.0, mirror=False):
    """Input pixel -> output position: rotate/scale (output px per input px = 1/scale), shift, bend."""
    x, y = _grid(ny, nx)
    c, s = np.cos(theta) / scale, np.sin(theta) / scale
    sx = -1.0 if mirror else 1.0
    X = sx * (c * x - s * y) + curve * (x - nx / 2) ** 2 / scale + shift[0]
    Y = s * x + c * y + 0.5 * curve * (x - nx / 2) * (y - ny / 2) / scale + shift[1]
    return np.ascontiguousarray(np.dstack([X, Y]))


def _data(ny=40, nx=50, seed=3):
    rng = np.random.default_rng(seed)
    return (rng.random((ny, nx)) + 0.5).astype(np.float32)


def _flux(drz):
    img, wht, _ = drz.finish()
    good = wht > 0
    return float(np.sum(img[good].astype(np.float64) * wht[good]))


@pytest.mark.parametrize("kernel", ["square", "turbo", "point"])
@pytest.mark.parametrize("pixfrac", [0.5, 0.8, 1.0])
@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.5])
def test_flux_conservation(kernel, pixfrac, ratio):
    # "flux" = sum over output of SCI * WHT with unit weights and iscale=1
    # (ALGORITHMS 2.1): each input pixel's weight fractions sum to 1.
    data = _data()
    ny, nx = data.shape
    scale = 1.0 / ratio  # output/input pixel size; drop is `ratio` output pixels wide
    theta = 0.0 if kernel == "turbo" else 0.4
    pm = _affine_map(ny, nx, scale=scale, theta=theta, shift=(30 * ratio + 10, 10), curve=0.002)
    out = (int(90 * ratio) + 30, int(90 * ratio) + 40)
    assert pm[..., 0].min() > 2 and pm[..., 1].min() > 2
    assert pm[..., 0].max() < out[1] - 3 and pm[..., 1].max() < out[0] - 3
    drz = Drizzle(out, kernel=kernel)
    drz.add_image(data, pm, pixfrac=pixfrac, scale=scale, iscale=1.0)
    total = float(data.astype(np.float64).sum())
    assert _flux(drz) == pytest.approx(total, rel=1e-5)
    assert float(drz.out_wht.astype(np.float64).sum()) == pytest.approx(data.size, rel=1e-5)


def test_iscale_default_is_scale_squared_and_counts_divide_by_exptime():
    data = _data()
    pm = _affine_map(*data.shape, scale=0.5, shift=(5, 5))
    a = Drizzle((120, 140))
    a.add_image(data, pm, scale=0.5)
    b = Drizzle((120, 140))
    b.add_image(data * np.float32(8.0), pm, scale=0.5, exptime=8.0, in_units="counts")
    assert _flux(a) == pytest.approx(0.25 * float(data.astype(np.float64).sum()), rel=1e-6)
    np.testing.assert_allclose(a.out_img, b.out_img, rtol=1e-6)
    assert b.total_exptime == 8.0


def test_identity_returns_input_exactly():
    data = _data()
    pm = _affine_map(*data.shape)
    for kernel in ("square", "turbo", "point"):
        drz = Drizzle(data.shape, kernel=kernel)
        drz.add_image(data, pm)
        assert np.array_equal(drz.out_img, data), kernel
        assert np.array_equal(drz.out_wht, np.ones_like(data)), kernel
    # a power-of-two weight keeps the division exact too
    drz = Drizzle(data.shape)
    drz.add_image(data, pm, weight=np.full(data.shape, 2.0, np.float32))
    assert np.array_equal(drz.out_img, data)


def test_integer_shift_moves_the_image():
    data = _data()
    pm = _affine_map(*data.shape, shift=(3, 5))
    drz = Drizzle((50, 60), fillval=-7.0)
    drz.add_image(data, pm)
    img = drz.out_img
    assert np.array_equal(img[5:45, 3:53], data)
    assert np.all(img[:5] == -7.0) and np.all(img[:, :3] == -7.0)


def test_half_pixel_shift_averages_neighbours():
    data = _data()
    pm = _affine_map(*data.shape, shift=(0.5, 0.0))
    drz = Drizzle((40, 52))
    drz.add_image(data, pm)
    # output pixel ii covers halves of input pixels ii-1 and ii
    expect = 0.5 * (data[:, :-1].astype(np.float64) + data[:, 1:])
    np.testing.assert_allclose(drz.out_img[:, 1:50], expect, rtol=1e-6)
    np.testing.assert_allclose(drz.out_wht[:, 1:50], 1.0, rtol=1e-12)


def test_mirrored_map_conserves_flux():
    data = _data()
    ny, nx = data.shape
    pm = _affine_map(ny, nx, theta=0.3, shift=(80, 10), mirror=True)
    drz = Drizzle((100, 100))
    drz.add_image(data, pm, iscale=1.0)
    assert np.all(drz.out_wht >= 0)
    assert _flux(drz) == pytest.approx(float(data.astype(np.float64).sum()), rel=1e-6)


def _polygon_clip_area(poly, x0, y0):
    """Area of polygon ∩ [x0, x0+1] x [y0, y0+1] (Sutherland-Hodgman), for reference."""
    def clip(pts, inside, cross):
        out = []
        for k in range(len(pts)):
            p, q = pts[k], pts[(k + 1) % len(pts)]
            if inside(q):
                if not inside(p):
                    out.append(cross(p, q))
                out.append(q)
            elif inside(p):
                out.append(cross(p, q))
        return out

    def xcut(v):
        return lambda p, q: (v, p[1] + (q[1] - p[1]) * (v - p[0]) / (q[0] - p[0]))

    def ycut(v):
        return lambda p, q: (p[0] + (q[0] - p[0]) * (v - p[1]) / (q[1] - p[1]), v)

    pts = list(poly)
    for inside, cross in ((lambda p: p[0] >= x0, xcut(x0)), (lambda p: p[0] <= x0 + 1, xcut(x0 + 1)),
                          (lambda p: p[1] >= y0, ycut(y0)), (lambda p: p[1] <= y0 + 1, ycut(y0 + 1))):
        if not pts:
            return 0.0
        pts = clip(pts, inside, cross)
    if len(pts) < 3:
        return 0.0
    a = 0.0
    for k in range(len(pts)):
        a += pts[k][0] * pts[(k + 1) % len(pts)][1] - pts[(k + 1) % len(pts)][0] * pts[k][1]
    return abs(a) / 2


@pytest.mark.parametrize("seed, stretch", [(s, 1.0) for s in range(6)]
                         + [(s, f) for s in (1, 3) for f in (0.4, 1.7, 2.3, 2.9)])
def test_square_overlap_matches_polygon_clipping(seed, stretch):
    # A 2x2 input whose pixmap is 4 random points: pixel (0,0)'s drop is the
    # bilinear image of its (shrunken) square, a general quadrilateral.
    # ``stretch`` scales the map so that pixfrac 0.7 drops span 1x1 to 5x5
    # output pixels (small drops and the tile path).
    rng = np.random.default_rng(seed)
    pixfrac = [1.0, 0.7][seed % 2]
    base = np.array([[[5.0, 5.0], [7.2, 5.4]], [[4.6, 7.5], [7.1, 7.9]]]) * stretch
    pm = np.ascontiguousarray(base + rng.uniform(-0.6, 0.6, size=base.shape) * stretch)
    data = np.array([[3.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    weight = np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    drz = Drizzle((14, 14) if stretch == 1.0 else (30, 30), disable_ctx=True)
    drz.add_image(data, pm, weight=weight, pixfrac=pixfrac)
    h = pixfrac / 2

    def bil(u, v):  # bilinear extrapolation of the 2x2 pixmap at input (u, v)
        return ((1 - u) * (1 - v) * pm[0, 0] + u * (1 - v) * pm[0, 1]
                + (1 - u) * v * pm[1, 0] + u * v * pm[1, 1])

    quad = [tuple(bil(u, v)) for u, v in ((-h, -h), (h, -h), (h, h), (-h, h))]
    area = 0.5 * abs(sum(quad[k][0] * quad[(k + 1) % 4][1] - quad[(k + 1) % 4][0] * quad[k][1]
                         for k in range(4)))
    n = drz._acc.shape[0]
    expect = np.zeros((n, n))
    for jj in range(n):
        for ii in range(n):
            expect[jj, ii] = _polygon_clip_area(quad, ii - 0.5, jj - 0.5) / area
    np.testing.assert_allclose(drz._acc[..., 1], expect, rtol=1e-6, atol=1e-7)


def test_context_bits_match_weight_and_more_than_32_inputs():
    rng = np.random.default_rng(5)
    n = 37
    drz = Drizzle((30, 30))
    weights = []
    for k in range(n):
        data = rng.random((12, 12)).astype(np.float32)
        wt = (rng.random((12, 12)) > 0.3).astype(np.float32)
        pm = _affine_map(12, 12, theta=0.2, shift=(rng.uniform(2, 14), rng.uniform(2, 14)))
        d1 = Drizzle((30, 30), disable_ctx=True)
        d1.add_image(data, pm, weight=wt)
        weights.append(d1.out_wht > 0)
        drz.add_image(data, pm, weight=wt)
    ctx = drz.out_ctx
    assert ctx.shape == (2, 30, 30) and ctx.dtype == np.int32
    for k in range(n):
        bit = (ctx[k // 32] >> (k % 32)) & 1
        assert np.array_equal(bit.astype(bool), weights[k]), k
    assert np.array_equal(ctx.any(axis=0), drz.out_wht > 0)


def test_explicit_input_id_grows_planes():
    data = _data(8, 8)
    drz = Drizzle((10, 10))
    drz.add_image(data, _affine_map(8, 8), input_id=70)
    assert drz.out_ctx.shape[0] == 3
    assert np.all(drz.out_ctx[2, :8, :8] == (1 << 6))
    assert not drz.out_ctx[:2].any()


def test_fill_only_where_weight_is_zero_exact_value():
    data = _data(20, 20)
    wt = np.ones_like(data)
    wt[5:8, 5:8] = 0.0
    pm = _affine_map(20, 20, shift=(2, 2))
    for fill in (np.nan, -99.25, 0.0):
        drz = Drizzle((30, 30), fillval=fill)
        drz.add_image(data, pm, weight=wt)
        img, whtout, _ = drz.finish()
        empty = whtout == 0
        assert empty.sum() == 30 * 30 - 20 * 20 + 9
        if np.isnan(fill):
            assert np.all(np.isnan(img[empty])) and not np.isnan(img[~empty]).any()
        else:
            assert np.all(img[empty] == np.float32(fill))
        assert np.array_equal(img[~empty], data[wt > 0])
    assert np.isnan(Drizzle((2, 2), fillval="INDEF").out_img).all()
    assert np.isnan(Drizzle((2, 2), fillval=None).out_img).all()


def test_mask_and_nan_data_are_skipped():
    data = _data(10, 10)
    data[2, 3] = np.nan
    mask = np.ones((10, 10), dtype=bool)
    mask[4, 4] = False
    drz = Drizzle((10, 10), fillval=0.0)
    nskip = drz.add_image(data, _affine_map(10, 10), mask=mask)
    assert nskip == 1
    assert drz.out_wht[2, 3] == 0 and drz.out_wht[4, 4] == 0
    assert drz.out_img[2, 3] == 0 and not np.isnan(drz.out_img).any()


def test_input_subregion():
    data = _data(10, 10)
    drz = Drizzle((10, 10))
    drz.add_image(data, _affine_map(10, 10), xmin=2, xmax=4, ymin=1, ymax=6)
    assert np.array_equal(drz.out_wht > 0, np.pad(np.ones((6, 3), bool), ((1, 3), (2, 5))))


def _threaded_inputs(pixfrac):
    rng = np.random.default_rng(11)
    items = []
    for k in range(5):
        data = rng.normal(size=(60, 70)).astype(np.float32)
        data[rng.random(data.shape) < 0.01] = np.nan
        pm = _affine_map(60, 70, scale=0.6, theta=0.3 + 0.05 * k, shift=(60 + 1.7 * k, 5 + 0.9 * k), curve=0.002)
        weight = rng.random((60, 70)).astype(np.float32)
        weight[rng.random(data.shape) < 0.05] = 0.0
        items.append(DrizzleInput(data, pm, weight=weight, scale=0.6, pixfrac=pixfrac))
    return items


@pytest.mark.parametrize("kernel, pixfrac", [("square", 1.0), ("square", 0.8), ("turbo", 0.8),
                                             ("gaussian", 1.0), ("lanczos3", 1.0), ("point", 1.0)])
def test_threads_give_bit_identical_results_run_concurrently(kernel, pixfrac):
    items = _threaded_inputs(pixfrac)
    reference = drizzle_many(items, (180, 200), kernel=kernel, threads=1).finish()
    results = {}

    def work(n, threads):
        results[n] = drizzle_many(items, (180, 200), kernel=kernel, threads=threads).finish()

    workers = [threading.Thread(target=work, args=(n, t)) for n, t in enumerate([4, 1, 4, 2])]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert len(results) == 4
    for res in results.values():
        for a, b in zip(reference, res):
            assert np.array_equal(a, b, equal_nan=True)
    assert (reference[1] > 0).sum() > 10000


def _strip_inputs(pixfrac):
    """Tall inputs on a tall output: several output bands, tiles straddling their edges."""
    rng = np.random.default_rng(5)
    items = []
    for k in range(3):
        data = (rng.random((400, 50)) + 0.5).astype(np.float32)
        pm = _affine_map(400, 50, scale=0.8, theta=0.25 + 0.03 * k, shift=(160 + 2.3 * k, 4.1 + 1.7 * k),
                         curve=0.0005)
        assert pm[..., 0].min() > 1 and pm[..., 1].min() > 1
        assert pm[..., 0].max() < 258 and pm[..., 1].max() < 538
        items.append(DrizzleInput(data, pm, scale=0.8, pixfrac=pixfrac, iscale=1.0))
    return items


@pytest.mark.parametrize("pixfrac", [1.0, 0.6])
def test_square_work_units_conserve_flux_and_ignore_threads(pixfrac, monkeypatch):
    # The square kernel's work units (tiles inside one output band, tiles
    # straddling a band edge) are fixed by the geometry; check that there are
    # several of each kind here, that no tile is lost or done twice (flux) and
    # that the thread count changes nothing.
    items = _strip_inputs(pixfrac)
    calls = []
    real = core._core.drizzle_band

    def spy(*args):
        calls.append(args[-1])          # the tile label worked on
        return real(*args)

    monkeypatch.setattr(core._core, "drizzle_band", spy)
    ref = drizzle_many(items, (540, 260), threads=1).finish()
    nunits = len(set(calls))
    monkeypatch.setattr(core._core, "drizzle_band", real)
    assert nunits >= 6
    flux = sum(float(it.data.astype(np.float64).sum()) for it in items)
    good = ref[1] > 0
    assert float(np.sum(ref[0][good].astype(np.float64) * ref[1][good])) == pytest.approx(flux, rel=1e-5)
    assert float(ref[1].astype(np.float64).sum()) == pytest.approx(sum(it.data.size for it in items), rel=1e-5)
    for threads in (2, 3, 5):
        res = drizzle_many(items, (540, 260), threads=threads).finish()
        for a, b in zip(ref, res):
            assert np.array_equal(a, b, equal_nan=True)


def test_square_work_units_with_nonfinite_map_entries():
    # NaN/inf map entries (on_nan="skip") must neither lose tiles nor break the labelling
    items = _strip_inputs(0.8)
    for it, rows in zip(items, (slice(100, 140), slice(0, 40), slice(300, 400))):
        it.pixmap = it.pixmap.copy()
        it.pixmap[rows, 10:20] = np.inf
        it.pixmap[rows, 30:33] = np.nan
        it.on_nan = "skip"
    ref = drizzle_many(items, (540, 260), threads=1).finish()
    assert np.isfinite(ref[0]).all() and (ref[1] > 0).sum() > 30000
    res = drizzle_many(items, (540, 260), threads=3).finish()
    for a, b in zip(ref, res):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("pixfrac", [0.3, 1.0, 1.5, 3.0])
def test_tile_yranges_contain_every_drop_corner(pixfrac):
    # labels of the work units rely on these ranges being conservative,
    # also for corners extrapolated beyond the image border
    ny, nx = 70, 75
    pm = _affine_map(ny, nx, scale=0.7, theta=2.0, shift=(60, 60), curve=0.02)
    pm[..., 1] += 0.3 * np.sin(np.arange(ny) * 1.3)[:, None]          # row-to-row jitter
    y = pm[..., 1]
    dh = pixfrac / 2

    def lerp(a, t, axis):
        i = np.clip(np.floor(t).astype(int), 0, a.shape[axis] - 2)
        f = (t - i).reshape([-1 if k == axis else 1 for k in range(a.ndim)])
        return np.take(a, i, axis=axis) * (1 - f) + np.take(a, i + 1, axis=axis) * f

    yr = core._core.tile_yranges(pm, pixfrac, 0.0, 32, 0, ny - 1)
    for sj in (-dh, dh):
        for si in (-dh, dh):
            corners = lerp(lerp(y, np.arange(ny) + sj, 0), np.arange(nx) + si, 1)
            for tr in range(yr.shape[0]):
                for c in range(yr.shape[1]):
                    block = corners[32 * tr:32 * tr + 32, 32 * c:32 * c + 32]
                    assert yr[tr, c, 0] <= block.min() and block.max() <= yr[tr, c, 1]


def test_add_image_after_finish_keeps_accumulating():
    data = _data(10, 10)
    pm = _affine_map(10, 10)
    drz = Drizzle((10, 10))
    drz.add_image(data, pm)
    first = drz.out_img.copy()
    drz.add_image(data * np.float32(3.0), pm)
    np.testing.assert_allclose(drz.out_img, 2 * first, rtol=1e-6)
    np.testing.assert_allclose(drz.out_wht, 2.0)


def test_finished_arrays_are_ordinary_and_independent():
    """finish() hands out its own page-mapped arrays: C-contiguous, writable,
    usable by blot, and not views of the accumulator (adding more later
    leaves them alone)."""
    data = _data(40, 30)
    pm = _affine_map(40, 30)
    drz = Drizzle((40, 30), fillval=-7.0)
    drz.add_image(data, pm)
    img, wht, _ = drz.finish()
    for a in (img, wht):
        assert a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable
    kept = img.copy()
    img[0, 0] = 123.0                       # writable, and a copy of the result only
    drz.add_image(data, pm)
    assert img[0, 0] == 123.0 and np.array_equal(img[1:], kept[1:])
    back = core.blot(drz.out_img, pm, interp="linear")
    assert back.shape == data.shape and np.isfinite(back).all()


# ---------------------------------------------------------------------------
# the boundary: typed errors naming the argument
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("argument, kwargs", [
    ("data", dict(data=np.ones((8, 8), np.float64))),
    ("data", dict(data=np.ones((8, 8), ">f4"))),
    ("data", dict(data=np.ones((8, 16), np.float32)[:, ::2])),
    ("data", dict(data=[[1.0, 2.0]])),
    ("pixmap", dict(pixmap=np.zeros((8, 8, 2), np.float32))),
    ("pixmap", dict(pixmap=np.zeros((8, 9, 2)))),
    ("pixmap", dict(pixmap=np.zeros((8, 8, 2), ">f8"))),
    ("weight", dict(weight=np.ones((8, 8), np.float64))),
    ("weight", dict(weight=np.ones((7, 8), np.float32))),
    ("mask", dict(mask=np.ones((8, 8), np.int32))),
    ("pixfrac", dict(pixfrac=0.0)),
    ("scale", dict(scale=-1.0)),
    ("exptime", dict(exptime=0.0, in_units="counts")),
    ("in_units", dict(in_units="electrons")),
    ("on_nan", dict(on_nan="ignore")),
])
def test_bad_arrays_raise_typed_errors(argument, kwargs):
    args = dict(data=np.ones((8, 8), np.float32), pixmap=_affine_map(8, 8))
    args.update(kwargs)
    drz = Drizzle((10, 10))
    with pytest.raises(DrizzleArrayError) as info:
        drz.add_image(**args)
    assert info.value.argument == argument
    assert isinstance(info.value, DrizzleflowError) and isinstance(info.value, ValueError)
    assert argument in str(info.value)


def test_nan_in_pixmap_raises_or_skips():
    data = _data(10, 10)
    pm = _affine_map(10, 10)
    pm[3, 4] = np.nan
    drz = Drizzle((10, 10))
    with pytest.raises(DrizzleArrayError, match="pixmap.*on_nan='skip'"):
        drz.add_image(data, pm)
    assert not drz.out_wht.any()  # nothing was drizzled
    for kernel in ("square", "point", "turbo"):
        drz = Drizzle((10, 10), kernel=kernel)
        assert drz.add_image(data, pm, on_nan="skip") == 1
        assert drz.out_wht[3, 4] == 0 and np.isfinite(drz.out_img).all()
        assert (drz.out_wht > 0).sum() >= 100 - 9


def test_bad_constructor_arguments():
    with pytest.raises(DrizzleArrayError, match="kernel"):
        Drizzle((4, 4), kernel="tophat")
    with pytest.raises(DrizzleArrayError, match="kernel"):
        Drizzle((4, 4), kernel="box")
    with pytest.raises(DrizzleArrayError, match="out_shape"):
        Drizzle((0, 4))
    with pytest.raises(DrizzleArrayError, match="fillval"):
        Drizzle((4, 4), fillval="lots")
    with pytest.raises(DrizzleArrayError, match="threads"):
        drizzle_many([], (4, 4), threads=0)


@pytest.mark.parametrize("kernel", ["square", "turbo"])
def test_reused_accumulator_buffer_gives_the_fresh_result(kernel):
    data = _data()
    pm = _affine_map(*data.shape, scale=0.6, theta=0.3, shift=(30, 5))
    fresh = Drizzle((110, 120), kernel=kernel)
    fresh.add_image(data, pm, pixfrac=0.8, scale=0.6)
    # a buffer left dirty by an earlier output, larger than needed
    buf = np.full(2 * 110 * 120 + 17, 7.5, dtype=np.float32)
    first = Drizzle((50, 30), kernel=kernel, acc_buffer=buf)
    first.add_image(data, pm, pixfrac=0.8, scale=0.6)
    reused = Drizzle((110, 120), kernel=kernel, acc_buffer=buf)
    reused.add_image(data, pm, pixfrac=0.8, scale=0.6)
    for a, b in zip(fresh.finish()[:2], reused.finish()[:2]):
        assert a.tobytes() == b.tobytes()
    assert np.shares_memory(reused._acc, buf)
    for bad in (np.zeros(2 * 110 * 120 - 1, np.float32), np.zeros(2 * 110 * 120, np.float64),
                np.zeros((2, 2 * 110 * 120), np.float32)[:, ::2]):
        with pytest.raises(DrizzleArrayError, match="acc_buffer"):
            Drizzle((110, 120), acc_buffer=bad)


def test_broken_map_that_explodes_a_pixel_is_an_error():
    data = _data(4, 4)
    pm = _affine_map(4, 4)
    pm[2, 2] = (1e7, 1e7)
    with pytest.raises(DrizzleArrayError, match="pixmap"):
        Drizzle((10, 10)).add_image(data, pm)


def test_iter_finished_blocks_equal_finish():
    """Streaming the product in row blocks gives finish()'s arrays (times scale),
    with the fill value exactly where the weight is zero."""
    rng = np.random.default_rng(5)
    data = rng.normal(100, 10, (40, 50)).astype(np.float32)
    yy, xx = np.mgrid[0:40, 0:50].astype(float)
    pm = np.ascontiguousarray(np.stack([xx * 0.9 + 3.2, yy * 1.1 + 2.7], axis=-1))
    drz = Drizzle((70, 60), kernel="square", fillval=-7.0)
    drz.add_image(data, pm, exptime=10.0, pixfrac=0.8, in_units="counts", input_id=3)
    img, wht, ctx = drz.finish()
    blocks = list(drz.iter_finished(block=16, scale=2.5))
    assert [b[0].shape[0] for b in blocks] == [16, 16, 16, 16, 6]
    simg = np.concatenate([b[0] for b in blocks])
    swht = np.concatenate([b[1] for b in blocks])
    sctx = np.concatenate([b[2] for b in blocks])
    np.testing.assert_array_equal(swht, wht)
    np.testing.assert_array_equal(sctx, ctx[0])
    assert (wht == 0).any() and (simg[wht == 0] == np.float32(-7.0)).all()
    np.testing.assert_array_equal(simg[wht > 0], img[wht > 0] * np.float32(2.5))
    # reused block arrays: the same values, block after block, in the same two arrays
    seen, ids = [], set()
    for bi, bw, _ in drz.iter_finished(block=16, scale=2.5, reuse=True):
        seen.append((bi.copy(), bw.copy()))
        ids.add((bi.__array_interface__["data"][0], bw.__array_interface__["data"][0]))
        bi[...] = np.nan   # the consumer may change them: the next block is complete anyway
        bw[...] = np.nan
    assert len(ids) == 1 and [b[0].shape for b in seen] == [b[0].shape for b in blocks]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in seen]), simg)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in seen]), swht)
    # the caller's two arrays (dirty, larger than a block), passed again for a second output
    pair = (np.full(16 * 60 + 5, np.inf, np.float32), np.full(16 * 60, np.inf, np.float32))
    for _ in range(2):
        got = [(bi.copy(), bw.copy(), np.shares_memory(bi, pair[0]) and np.shares_memory(bw, pair[1]))
               for bi, bw, _ in drz.iter_finished(block=16, scale=2.5, reuse=pair)]
        assert all(g[2] for g in got)
        np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), simg)
        np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), swht)
    for bad in ((pair[0],), (pair[0], pair[1][:16 * 60 - 1]), (pair[0], pair[1].astype(np.float64))):
        with pytest.raises(DrizzleArrayError, match="reuse"):
            next(drz.iter_finished(block=16, reuse=bad))


def test_iter_finished_big_endian_blocks_and_weight_statistics():
    """Blocks formed big-endian in the finishing pass hold the native blocks'
    values, and the statistics from the same pass match numpy on the weights:
    the count above the floor (compared in float32, as numpy compares a float32
    array with a Python float) and of empty pixels exactly, the sum to rounding."""
    from drizzleflow.steps.drizzle import FinishStats
    rng = np.random.default_rng(8)
    data = rng.normal(100, 10, (40, 50)).astype(np.float32)
    weight = rng.random((40, 50)).astype(np.float32)
    weight[weight < 0.2] = 0.0
    weight[5, 5] = 3e-9                                   # a weight between the floor and 0
    yy, xx = np.mgrid[0:40, 0:50].astype(float)
    pm = np.ascontiguousarray(np.stack([xx * 0.9 + 3.2, yy * 1.1 + 2.7], axis=-1))
    drz = Drizzle((70, 60), kernel="point", fillval=-7.0)
    drz.add_image(data, pm, weight=weight, exptime=10.0)
    for scale in (1.0, 2.5):
        native = [(a.copy(), b.copy()) for a, b, _ in drz.iter_finished(block=16, scale=scale)]
        stats = FinishStats(floor=1e-8)
        big = [(a.copy(), b.copy()) for a, b, _ in drz.iter_finished(block=16, scale=scale, reuse=True,
                                                                      big_endian=True, stats=stats)]
        assert all(a.dtype == np.dtype(">f4") and b.dtype == np.dtype(">f4") for a, b in big)
        for (na, nb), (ba, bb) in zip(native, big):
            assert np.array_equal(na.astype(">f4").tobytes(), ba.tobytes())
            assert np.array_equal(nb.astype(">f4").tobytes(), bb.tobytes())
        wht = np.concatenate([b for _, b in native])
        assert stats.nabove == int((wht > 1e-8).sum()) and stats.nzero == int((wht <= 0).sum())
        assert 0 < stats.nabove < wht.size and stats.nzero > 0
        assert stats.mean_above == pytest.approx(float(wht[wht > 1e-8].mean(dtype=np.float64)), rel=1e-12)


def test_avx2_build_gives_the_generic_builds_bits(monkeypatch):
    """The core is compiled twice on x86-64 (``_native.py``): the AVX2 build must
    give exactly the generic build's bits, for every kernel and pixfrac."""
    from drizzleflow.steps.drizzle import _native
    generic, avx2 = _native.builds("_core")
    if avx2 is None:
        pytest.skip("no AVX2 build of the core, or no AVX2 on this CPU")
    rng = np.random.default_rng(7)
    data = rng.normal(10.0, 3.0, (90, 110)).astype(np.float32)
    weight = (rng.random((90, 110)) > 0.05).astype(np.float32)
    pm = _affine_map(90, 110, scale=0.457, theta=0.3, shift=(60.0, 20.0), curve=1e-4)
    results = {}
    for name, module in (("generic", generic), ("avx2", avx2)):
        monkeypatch.setattr(core, "_core", module)
        out = []
        for kernel, pixfrac in (("square", 1.0), ("square", 0.7), ("turbo", 1.0), ("point", 1.0),
                                ("gaussian", 0.8), ("lanczos3", 1.0)):
            drz = Drizzle((300, 320), kernel=kernel, fillval=-1.0)
            drz.add_image(data, pm, weight=weight, pixfrac=pixfrac, scale=0.457, threads=2)
            out.extend(a.copy() for a in drz.finish())
        results[name] = out
    assert all(np.array_equal(a, b) for a, b in zip(results["generic"], results["avx2"]))
    assert any(np.any(a > 0) for a in results["avx2"][1::3])   # something was drizzled


@pytest.mark.parametrize("pixfrac, scale", [(1.0, 0.457), (0.6, 0.457), (1.0, 1.3)])
def test_turbo_fixed_width_drops_match_the_general_path(pixfrac, scale):
    """Turbo drops up to 4 output columns wide take a fixed-width path unless they
    sit within 4 columns of the right edge.  Widening the output on the right
    moves the drops near the old edge from the general path to the fixed one;
    every pixel of the narrower image must keep its bits."""
    rng = np.random.default_rng(21)
    data = rng.normal(5.0, 2.0, (40, 50)).astype(np.float32)
    data[3, 4] = -7.5
    weight = (rng.random((40, 50)) + 0.2).astype(np.float32)
    pm = _affine_map(40, 50, scale=scale, shift=(3.3, 2.7))
    width = int(pm[..., 0].max()) - 3          # the right edge cuts through the drops
    out = []
    for nx in (width, width + 8):
        drz = Drizzle((int(pm[..., 1].max()) + 6, nx), kernel="turbo", fillval=0.0)
        drz.add_image(data, pm, weight=weight, pixfrac=pixfrac, scale=scale, iscale=1.0)
        out.append([a.copy() for a in drz.finish()])
    (img_a, wht_a, ctx_a), (img_b, wht_b, ctx_b) = out
    assert (wht_a[:, -4:] > 0).sum() > 20              # drops do reach the old edge
    assert np.array_equal(wht_a.view(np.uint32), wht_b[:, :width].view(np.uint32))
    assert np.array_equal(img_a.view(np.uint32), img_b[:, :width].view(np.uint32))
    assert np.array_equal(ctx_a, ctx_b[..., :width])
