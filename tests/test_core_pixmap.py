"""Pixel maps on a coarse grid vs the full astropy evaluation (WFPC2-like WCS)."""
import threading

import numpy as np
import pytest

from drizzleflow.steps.drizzle import DrizzleArrayError, corner_pixmap, pixmap
from drizzleflow.steps.drizzle.synthwcs import chip_wcs, output_wcs


@pytest.fixture(scope="module")
def wcs_pair():
    out = output_wcs(shape=(1600, 1600))
    return chip_wcs("WF3", out, offset=(2.3, -1.7), dtheta=0.02, shape=(300, 260)), out


def test_distortion_is_wfpc2_like(wcs_pair):
    win, out = wcs_pair
    full = pixmap(win, out, (300, 260), stepsize=1)
    nodist = win.deepcopy()
    nodist.sip = None
    nodist.det2im2 = None
    lin = pixmap(nodist, out, (300, 260), stepsize=1)
    shift = np.hypot(*(full - lin).transpose(2, 0, 1))
    assert shift.max() > 0.5  # SIP moves the corners by a good fraction of a pixel
    # the D2IM sawtooth: a 34-row periodic jump in the y displacement
    only_d2im = win.deepcopy()
    only_d2im.sip = None
    d = pixmap(only_d2im, out, (300, 260), stepsize=1) - lin
    jumps = np.hypot(np.diff(d[:, 10, 0]), np.diff(d[:, 10, 1]))
    assert jumps.max() > 0.025 and np.argmax(jumps) % 34 == 33


@pytest.mark.parametrize("stepsize", [8, 32, 64])
def test_coarse_grid_accuracy(wcs_pair, stepsize):
    win, out = wcs_pair
    full = pixmap(win, out, (300, 260), stepsize=1)
    fast = pixmap(win, out, (300, 260), stepsize=stepsize)
    assert fast.shape == (300, 260, 2) and fast.dtype == np.float64 and fast.flags.c_contiguous
    assert np.abs(fast - full).max() < 1e-3


def test_d2im_applied_exactly_not_smeared(wcs_pair):
    # Without the exact D2IM term, a coarse grid misses the sawtooth (error ~ its amplitude)
    win, out = wcs_pair
    full = pixmap(win, out, (300, 260), stepsize=1)
    fast = pixmap(win, out, (300, 260), stepsize=32)
    no_d2im = win.deepcopy()
    no_d2im.det2im2 = None
    smooth = pixmap(no_d2im, out, (300, 260), stepsize=32)
    assert np.abs(smooth - full).max() > 0.01
    assert np.abs(fast - full).max() < 1e-5


def test_corner_map(wcs_pair):
    win, out = wcs_pair
    corners = corner_pixmap(win, out, (300, 260), stepsize=32)
    assert corners.shape == (301, 261, 2)
    x, y = np.meshgrid([-0.5, 259.5], [-0.5, 299.5])
    ra, dec = win.all_pix2world(x.ravel(), y.ravel(), 0)
    ox, oy = out.wcs_world2pix(ra, dec, 0)
    got = corners[[0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_allclose(got, np.column_stack([ox, oy]), atol=1e-4)


def test_pixmap_from_threads_does_not_share_wcs(wcs_pair):
    win, out = wcs_pair
    ref = pixmap(win, out, (300, 260))
    results = []

    def work():
        results.append(pixmap(win, out, (300, 260)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.array_equal(r, ref) for r in results)


def test_bad_shape_and_stepsize(wcs_pair):
    win, out = wcs_pair
    with pytest.raises(DrizzleArrayError, match="shape"):
        pixmap(win, out, (0, 10))
    with pytest.raises(DrizzleArrayError, match="stepsize"):
        pixmap(win, out, (10, 10), stepsize=-2)


@pytest.mark.parametrize("layout", ["row", "column+row", "2-D"])
def test_other_d2im_layouts_applied_exactly(wcs_pair, layout):
    """A table along x (stwcs' 1 x N layout), tables on both axes, and a full 2-D
    table: each within 1e-5 px of the full evaluation (the 1-D ones are folded
    into the interpolation weights, a 2-D one takes the general path)."""
    from astropy.wcs import DistortionLookupTable
    win, out = wcs_pair
    win = win.deepcopy()
    ny, nx = 300, 260
    saw = 0.03 * ((np.arange(nx) % 34) / 33.0 - 0.5)
    row = DistortionLookupTable(saw.astype(np.float32).reshape(1, nx), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    if layout == "row":
        win.det2im1, win.det2im2 = row, None
    elif layout == "column+row":
        win.det2im1 = row
    else:
        tab = 0.02 * np.sin(np.arange(ny)[:, None] / 5.0) * np.cos(np.arange(nx)[None, :] / 7.0)
        win.det2im1 = None
        win.det2im2 = DistortionLookupTable(tab.astype(np.float32), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    full = pixmap(win, out, (ny, nx), stepsize=1)
    fast = pixmap(win, out, (ny, nx), stepsize=32)
    assert np.abs(fast - full).max() < 1e-5


@pytest.mark.parametrize("stepsize", [1, 8, 32])
def test_windowed_map_windows_and_reach(wcs_pair, stepsize):
    """A window holds the whole map's values at its pixels, and ``reach`` never
    leaves out a pixel whose map falls within ``pad`` of the rows asked for."""
    from drizzleflow.steps.drizzle.pixmap import WindowedMap
    win, out = wcs_pair
    full = pixmap(win, out, (300, 260), stepsize=stepsize)
    wmap = WindowedMap(win, out, np.arange(260.0), np.arange(300.0), stepsize)
    for y0, y1, x0, x1 in [(0, 300, 0, 260), (37, 211, 5, 259), (299, 300, 0, 1)]:
        part = wmap.window(y0, y1, x0, x1)
        assert part.shape == (y1 - y0, x1 - x0, 2) and part.flags.c_contiguous
        np.testing.assert_allclose(part, full[y0:y1, x0:x1], rtol=0, atol=1e-9)
    y = full[..., 1]
    lo_all, hi_all = y.min(), y.max()
    seen_smaller = False
    for lo in np.linspace(lo_all - 20, hi_all, 41):
        hi, pad = lo + 40, 4.0
        box = wmap.reach(lo, hi, pad, align=32)
        inside = (y > lo - pad) & (y < hi + pad)
        if box is None:
            assert not inside.any()
            continue
        by0, by1, bx0, bx1 = box
        assert by0 % 32 == 0 and bx0 % 32 == 0
        covered = np.zeros_like(inside)
        covered[by0:by1, bx0:bx1] = True
        assert not (inside & ~covered).any()
        seen_smaller |= covered.mean() < 0.8
    assert seen_smaller                       # it does cut the chip down
    assert wmap.reach(hi_all + 50, hi_all + 60, 4.0) is None


@pytest.mark.parametrize("layout", ["column", "none", "2-D"])
def test_windowed_map_rebuilt_from_its_nodes_gives_the_same_bits(wcs_pair, layout):
    """The final drizzle keeps a map's nodes (steps/chain/final_inputs.py): the
    map rebuilt from them, without any WCS, gives every window bit for bit and
    the same reach; a 2-D D2IM table needs the WCS, so there are no nodes."""
    from astropy.wcs import DistortionLookupTable
    from drizzleflow.steps.drizzle.pixmap import WindowedMap
    win, out = wcs_pair
    win = win.deepcopy()
    if layout == "none":
        win.det2im1 = win.det2im2 = None
    elif layout == "2-D":
        tab = 0.02 * np.sin(np.arange(300)[:, None] / 5.0) * np.cos(np.arange(260)[None, :] / 7.0)
        win.det2im1 = None
        win.det2im2 = DistortionLookupTable(tab.astype(np.float32), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    wmap = WindowedMap(win, out, np.arange(261.0) - 0.5, np.arange(301.0) - 0.5, 32)
    nodes = wmap.nodes()
    if layout == "2-D":
        assert nodes is None
        return
    assert ("dy" in nodes) == (layout == "column")
    again = WindowedMap.from_nodes({k: np.array(v) for k, v in nodes.items()})
    for box in [(0, 301, 0, 261), (37, 211, 5, 259), (300, 301, 0, 1)]:
        assert wmap.window(*box).tobytes() == again.window(*box).tobytes()
    assert wmap.reach(50.0, 90.0, 3.0, align=32) == again.reach(50.0, 90.0, 3.0, align=32)
