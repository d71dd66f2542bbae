"""Source finding (sep) and the masks: pyramid edges, DS9 regions, exclude.list."""
import numpy as np
import pytest
from astropy.wcs import WCS

from drizzleflow.steps.align.masks import (RegionFileError, default_edges, edge_mask,
                                            read_exclude_list, read_regions, region_mask)
from drizzleflow.steps.align.sources import find_sources


def _image(n=200, nstars=40, fwhm=2.0, seed=0, spikes_at=None):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    img = np.full((n, n), 20.0)
    sig = fwhm / 2.3548
    pos = rng.uniform(15, n - 15, (nstars, 2))
    flux = rng.uniform(2000, 8000, nstars)
    for (x, y), f in zip(pos, flux):
        img += f / (2 * np.pi * sig ** 2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sig ** 2))
    if spikes_at is not None:
        x0, y0 = spikes_at
        img += 5e5 / (2 * np.pi * 2.0 ** 2) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 8.0)
        # diffraction spikes: clumpy ridges along x and y
        for d in range(4, 40):
            for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                px, py = int(x0 + sx * d), int(y0 + sy * d)
                if 0 <= px < n and 0 <= py < n and d % 5 == 0:
                    img[py, px] += 3000.0 / (1 + d / 10)
    img += rng.normal(0, 3.0, img.shape)
    return img.astype(np.float32), pos


def _wcs(n=200):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [323.36, -0.82]
    w.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    w.wcs.cd = np.array([[-0.1, 0], [0, 0.1]]) / 3600
    w.wcs.set()
    return w


def test_find_sources_positions_accurate():
    img, pos = _image()
    cat = find_sources(img, conv_width=4.0, threshold=5.0)
    assert 35 <= len(cat) <= 41   # a few random stars blend
    d = np.hypot(cat["x"][:, None] - pos[:, 0], cat["y"][:, None] - pos[:, 1]).min(axis=1)
    assert np.median(d) < 0.05
    assert {"roundness", "sharpness", "peak", "flux"} <= set(cat.colnames)


def test_peak_limits_and_sharpness_reject_hot_pixels():
    img, pos = _image(nstars=20)
    img[50, 50] += 3000.0   # hot pixel / cosmic ray
    img[150, 30] += 3000.0
    cat = find_sources(img, conv_width=3.0, threshold=5.0)
    assert np.any(np.hypot(cat["x"] - 50, cat["y"] - 50) < 1)
    cat2 = find_sources(img, conv_width=3.0, threshold=5.0, sharphi=0.7)
    assert not np.any(np.hypot(cat2["x"] - 50, cat2["y"] - 50) < 1)
    assert len(cat2) >= 18
    cat3 = find_sources(img, conv_width=3.0, threshold=5.0, peakmax=10.0)
    assert len(cat3) == 0


def test_empty_chip_gives_empty_table():
    rng = np.random.default_rng(1)
    cat = find_sources(rng.normal(0, 1, (64, 64)).astype(np.float32), threshold=50)
    assert len(cat) == 0
    cat = find_sources(np.zeros((64, 64), np.float32))
    assert len(cat) == 0


def test_edges_mask_and_default():
    m = edge_mask((100, 100), x=10, y=5)
    assert m[:, :10].all() and m[:5, :].all() and not m[5:, 10:].any()
    assert default_edges(1, (800, 800)) == {"x": 49, "y": 62}
    assert default_edges(4, (400, 400)) == {"x": 24, "y": 24}


def test_exclusion_region_removes_spike_sources(tmp_path):
    n = 200
    img, _ = _image(n=n, nstars=15, spikes_at=(100.0, 100.0), seed=4)
    w = _wcs(n)
    cat = find_sources(img, conv_width=3.0, threshold=8.0)
    near = lambda c: np.sum(np.hypot(c["x"] - 100, c["y"] - 100) < 45)
    assert near(cat) >= 4          # spurious detections along the spikes
    ra, dec = w.all_pix2world([[100, 100]], 0)[0]
    reg = tmp_path / "wf4_exclude.reg"
    reg.write_text("# Region file format: DS9 version 4.1\nfk5\n"
                   f"circle({ra:.7f},{dec:.7f},4.5\")\n")
    regs = read_regions(reg)
    mask = region_mask(regs, img.shape, wcs=w)
    assert mask[100, 100] and not mask[0, 0]
    cat2 = find_sources(img, mask=mask, conv_width=3.0, threshold=8.0)
    assert near(cat2) <= near(cat) - 4
    assert np.sum(np.hypot(cat2["x"] - 100, cat2["y"] - 100) < 44) == 0


def test_image_box_and_polygon_regions():
    regs = read_regions("image; box(11,21,5,3,0)\nimage; polygon(50,50,60,50,55,60)")
    m = region_mask(regs, (100, 100))
    assert m[20, 10] and not m[20, 20]     # 1-based DS9 (11,21) -> 0-based (10,20)
    assert m[53, 54] and not m[70, 70]


@pytest.mark.parametrize("text", ["image; point(10,10)", "image; annulus(10,10,2,4)",
                                  "fk5; ruler(1,1,2,2)"])
def test_unsupported_shape_is_a_clear_error(tmp_path, text):
    p = tmp_path / "bad.reg"
    p.write_text(text + "\n")
    with pytest.raises(RegionFileError, match="unsupported region shape"):
        read_regions(p)


def test_exclude_list_tutorial_format(tmp_path):
    (tmp_path / "wf4_exclude.reg").write_text("fk5\ncircle(323.3,-0.86,3\")\n")
    lst = tmp_path / "exclude.list"
    lst.write_text("ua060502m_c0m_cleanmask.fits none none none wf4_exclude.reg\n"
                   "ua060504m_c0m_cleanmask.fits INDEF none none wf4_exclude.reg\n")
    d = read_exclude_list(lst)
    assert d["ua060502m_c0m_cleanmask.fits"][:3] == [None, None, None]
    assert d["ua060504m_c0m_cleanmask.fits"][3] == tmp_path / "wf4_exclude.reg"
    with pytest.raises(RegionFileError, match="not found"):
        read_exclude_list(tmp_path / "missing.list")
