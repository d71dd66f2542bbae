"""The memory bounds of the chain steps (issue 6: peak RSS) and the exactness of
the code paths that keep memory low: band sizes, band boxes, the spill of
prepared chips between bands, the median's bookkeeping."""
import threading
import time

import numpy as np
import pytest

from drizzleflow.steps.chain import banding, minmed
from drizzleflow.steps.chain.banding import bands
from drizzleflow.steps.chain.chip_feed import ChipSpill, ExposureInfo
from drizzleflow.steps.chain.drizzle_final import ACC_BYTES_PER_PIXEL as FINAL_BPP, DrizzleFinalStep
from drizzleflow.steps.chain.drizzle_separate import ACC_BYTES_PER_PIXEL as SEP_BPP, AT_ONCE, DrizzleSeparateStep
from drizzleflow.steps.chain.median import _bounded_map
from drizzleflow.steps.drizzle import core
from drizzleflow.steps.drizzle.core import Drizzle

MIB = 1024 * 1024
M2_GRID = (3378, 3408)   # the tutorial's output grid at 0.0455"


@pytest.mark.parametrize("step, bpp, at_once, nbands", [(DrizzleFinalStep, FINAL_BPP, 1, 3),
                                                        (DrizzleSeparateStep, SEP_BPP, AT_ONCE, 4)])
def test_default_band_mb_bands_the_m2_grid_within_the_bound(step, bpp, at_once, nbands):
    """The defaults band the M2 mosaic (the one-pass accumulators were 138 / 92 MB)
    and the accumulators of the drizzles running at once (two exposures in the
    separate drizzle) fit in ``band_mb`` together."""
    mb = step.Params().band_mb
    got = bands(*M2_GRID, mb // at_once, bytes_per_pixel=bpp)
    assert len(got) == nbands
    assert got[0][0] == 0 and got[-1][1] == M2_GRID[0]
    assert all(a[1] == b[0] for a, b in zip(got, got[1:]))
    assert all(at_once * (y1 - y0) * M2_GRID[1] * bpp <= mb * MIB for y0, y1 in got)


@pytest.mark.parametrize("mb", [8, 20, 47, 48, 100, 320])
def test_band_mb_is_an_upper_bound(mb):
    for y0, y1 in bands(*M2_GRID, mb, bytes_per_pixel=12):
        assert (y1 - y0) * M2_GRID[1] * 12 <= mb * MIB


def _rotated_input(seed=3, n=300):
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 10, (n, n)).astype(np.float32)
    j, i = np.mgrid[0:n, 0:n].astype(float)
    th, s = np.radians(33.0), 1.0 / 0.457
    x = s * (np.cos(th) * i - np.sin(th) * j) + 400.0 + 1e-3 * np.sin(j / 17.0)
    y = s * (np.sin(th) * i + np.cos(th) * j) + 5.0 + 1e-3 * np.cos(i / 13.0)
    pm = np.dstack([x, y])
    return data, pm, (int(y.max()) + 10, int(x.max()) + 10)


def _acc(shape, data, pm, kernel="turbo"):
    d = Drizzle(shape, kernel=kernel, fillval=0.0, disable_ctx=True)
    d.add_image(np.ascontiguousarray(data), np.ascontiguousarray(pm), exptime=1.0,
                weight=np.ones(data.shape, np.float32), pixfrac=1.0, scale=0.457, threads=2)
    return d._acc.copy()


def _box(pm, nrows, pad, align):
    """The input box whose drops can land in rows [0, nrows) (as WindowedMap.reach
    decides on the map's nodes, here on the map itself), start rounded down."""
    y = pm[..., 1]
    m = (y > -pad) & (y < nrows - 1 + pad)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    return rows[0] // align * align, rows[-1] + 1, cols[0] // align * align, cols[-1] + 1


def test_turbo_bands_of_aligned_boxes_equal_one_pass_bit_for_bit():
    """A band drizzles only a box of each input (data and map cut to it).  A box
    starting on a multiple of the core's run length is cut into the same runs as
    the whole input; an unaligned one changes the order of some float32 additions."""
    assert banding.ALIGN == core._CHUNK
    data, pm, out = _rotated_input()
    full = _acc(out, data, pm)
    ndiff = {}
    for align in (banding.ALIGN, 1):
        ndiff[align] = 0
        for y0, y1 in ((0, 300), (300, 600), (600, out[0])):
            p = pm.copy()
            p[..., 1] -= y0
            by0, by1, bx0, bx1 = _box(p, y1 - y0, 3.0 / 0.457 + 3.0, align)
            if align == banding.ALIGN:
                assert by0 % align == 0 and bx0 % align == 0
            got = _acc((y1 - y0, out[1]), data[by0:by1, bx0:bx1], p[by0:by1, bx0:bx1])
            ndiff[align] += int((got != full[y0:y1]).sum())
    assert ndiff[banding.ALIGN] == 0
    assert ndiff[1] > 0   # the case is one where alignment matters


@pytest.mark.parametrize("behind", [False, True])
def test_chip_spill_round_trip(tmp_path, behind):
    """What the first band keeps for the later ones comes back byte for byte,
    also when a writer thread puts it on disk behind the caller (then ``flush``
    waits for it)."""
    from concurrent.futures import ThreadPoolExecutor
    class Chip:
        root, extver, detector, shape, wcs, pscale, exptime, rdnoise = "r", 2, 3, (7, 13), None, 0.1, 10.0, 5.0
        header, photflam = {"WCSNAME": "DRZ"}, 2e-18

    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, Chip.shape).astype(np.float32)
    good = rng.random(Chip.shape) < 0.7     # 91 pixels: not a multiple of 8
    pool = ThreadPoolExecutor(1) if behind else None
    spill = ChipSpill(tmp_path, wanted=[4], writer=pool)
    info = ExposureInfo("r", tmp_path / "r_c0m.fits", 10.0, 8000.0)
    spill.note(4, info, 1, Chip())
    spill.note(5, info, 2, Chip())
    assert spill.wants(4) and not spill.wants(5)
    spill.put(4, data, good)
    assert not spill.wants(4)
    spill.flush()
    if pool is not None:
        pool.shutdown()
    d2, g2 = spill.get(4)
    assert d2.dtype == np.float32 and d2.tobytes() == data.tobytes()
    assert g2.dtype == bool and np.array_equal(g2, good)
    facts = spill.meta[4][2]
    assert facts.shape == Chip.shape and facts.exptime == 10.0
    assert (facts.wcsname, facts.photflam, facts.photplam) == ("DRZ", 2e-18, 8000.0)   # the exposure's PHOTPLAM


def test_dilate_equals_box_sum():
    rng = np.random.default_rng(1)
    for half in (1, 2, 3):
        for shape in [(66, 301), (5, 7), (1, 1), (2, 9), (9, 2)]:
            m = rng.random(shape) < 0.02
            m[0, -1] = True
            assert np.array_equal(minmed._dilate(m, half), minmed.box_sum(m, half) > 0), (half, shape)


def test_sum_scaled_equals_the_float64_stack_sum():
    rng = np.random.default_rng(2)
    w = rng.random((6, 33, 41)).astype(np.float32) * 40
    f = rng.random(6) * 3
    ref = (w * f.reshape(-1, 1, 1)).sum(axis=0)
    assert minmed._sum_scaled(w, f).tobytes() == ref.tobytes()
    bad = rng.random((6, 33, 41)) < 0.3
    ref = ((~bad) * f.reshape(-1, 1, 1)).sum(axis=0)
    assert minmed._sum_scaled(~bad, f).tobytes() == ref.tobytes()


def _median_reference(sci, bad, nlow, nhigh, fill=0.0):
    out = np.empty(sci.shape[1:], dtype=np.float32)
    for idx in np.ndindex(*sci.shape[1:]):
        v = np.sort(sci[(slice(None),) + idx][~bad[(slice(None),) + idx]])
        nl, nh = nlow, nhigh
        while nl + nh >= len(v) and (nl > 0 or nh > 0):
            nl, nh = max(nl - 1, 0), max(nh - 1, 0)
        v = v[nl:len(v) - nh]
        if len(v) == 0:
            out[idx] = fill
        else:
            out[idx] = np.float32(0.5 * (np.float64(v[(len(v) - 1) // 2]) + np.float64(v[len(v) // 2])))
    return out


@pytest.mark.parametrize("nlow, nhigh", [(0, 0), (0, 1), (1, 1), (2, 1), (0, 3)])
def test_masked_median_matches_a_per_pixel_reference(nlow, nhigh):
    rng = np.random.default_rng(nlow * 10 + nhigh)
    sci = rng.normal(0, 5, (6, 9, 11)).astype(np.float32)
    bad = rng.random(sci.shape) < 0.4
    bad[:, 0, 0] = True                      # no good value at all
    med, n = minmed.masked_median(sci, bad, nlow, nhigh, fill=-7.0)
    assert med.dtype == np.float32
    assert np.array_equal(n, (~bad).sum(axis=0))
    assert med.tobytes() == _median_reference(sci, bad, nlow, nhigh, fill=-7.0).tobytes()


def test_bounded_map_keeps_order_and_bounds_the_work_ahead():
    """The median's strips are written in order, and finished strips waiting for
    the writer stay few whatever the consumer's speed."""
    from concurrent.futures import ThreadPoolExecutor
    lock, started, done = threading.Lock(), [], []

    def work(i):
        with lock:
            started.append(i)
        time.sleep(0.002 * (i % 3))
        return i * i

    out, ahead = [], 3
    with ThreadPoolExecutor(max_workers=2) as pool:
        for k, r in enumerate(_bounded_map(pool, work, range(20), ahead=ahead)):
            time.sleep(0.004)                # a slow writer
            with lock:
                assert len(started) - (k + 1) <= ahead
            out.append(r)
            done.append(k)
    assert out == [i * i for i in range(20)]
