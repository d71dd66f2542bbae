"""Exact array programs of the drizzle chain on small hand-made arrays
(ALGORITHMS §1.4.1, §1.6, §1.8)."""
import numpy as np
import pytest

from drizzleflow.steps.chain.crdetect import cr_mask, cte_grow, deriv, driz_cr, grow_mask
from drizzleflow.steps.chain.imagestats import clipped_stats
from drizzleflow.steps.chain.minmed import box_sum, masked_median, min_candidates, minmed


# ---------------------------------------------------------------- statistics
def test_clipped_stats_rejects_outliers():
    rng = np.random.default_rng(1)
    v = rng.normal(100.0, 5.0, 20000)
    v[:200] = 5000.0
    st = clipped_stats(v, nclip=5, lsig=4, usig=4, fields=("mean", "median", "mode"))
    assert abs(st.mean - 100) < 0.3
    assert abs(st.median - 100) < 0.3
    assert abs(st.mode - 100) < 1.5
    assert 4.5 < st.stddev < 5.5
    assert st.npix < 20000 - 199


def test_clipped_stats_range_and_empty():
    st = clipped_stats([1.0, 2.0, 3.0, 100.0], lower=0, upper=10, nclip=0)
    assert st.mean == pytest.approx(2.0)
    # nclip=0: median over all values, ignoring the range (as imagestats does)
    assert st.median == pytest.approx(2.5)
    with pytest.raises(ValueError):
        clipped_stats([1.0, 2.0], lower=5, upper=6)


def test_mode_interpolates_histogram_peak():
    v = np.concatenate([np.full(10, 0.0), np.full(50, 1.0), np.full(30, 2.0), np.full(5, 3.0)])
    st = clipped_stats(v, nclip=0, binwidth=0.5)
    assert 0.8 < st.mode < 2.0


# ---------------------------------------------------------------- median
def test_masked_median_nlow_nhigh_and_decrement():
    sci = np.array([1, 5, 3, 9, 7], dtype=np.float32).reshape(5, 1, 1)
    bad = np.zeros_like(sci, dtype=bool)
    med, n = masked_median(sci, bad, nlow=1, nhigh=1)
    assert med[0, 0] == 5.0 and n[0, 0] == 5            # drop 1 and 9 -> median of 3,5,7
    med, _ = masked_median(sci, bad, nlow=0, nhigh=1)   # drop 9 -> (3+5)/2
    assert med[0, 0] == 4.0
    bad[[0, 1, 2], 0, 0] = True                          # only 9 and 7 left; nlow+nhigh=2 >= 2
    med, n = masked_median(sci, bad, nlow=1, nhigh=1)    # decrement both -> median(7, 9)
    assert n[0, 0] == 2 and med[0, 0] == 8.0
    bad[:] = True
    med, _ = masked_median(sci, bad, fill=-1.0)
    assert med[0, 0] == -1.0


def test_box_sum_zero_fill():
    a = np.zeros((4, 4)); a[0, 0] = 1
    s = box_sum(a, 1)
    assert s[0, 0] == 1 and s[1, 1] == 1 and s[2, 2] == 0


def test_minmed_picks_minimum_only_when_significant():
    # 3 images, 1x3 pixels; weights 10 s each; sky 0, rn 0
    sci = np.array([[[100.0, 100.0, 0.0]],
                    [[100.0, 100.0, 0.0]],
                    [[5000.0, 100.0, 0.0]]], dtype=np.float32)
    wht = np.full_like(sci, 10.0)
    bad = np.zeros_like(sci, dtype=bool)
    out = minmed(sci, wht, bad, [10] * 3, [0] * 3, [0] * 3, nsigma=(4, 3), grow=0)
    # Med (nhigh=1) of (100,100,5000) = 100; Min = 100 -> 100
    assert out[0, 0] == 100.0
    # a CR in two of three: Med drops highest -> (100, 5000) mean 2550, Min 100 -> Min
    sci[1, 0, 0] = 5000.0
    out = minmed(sci, wht, bad, [10] * 3, [0] * 3, [0] * 3, nsigma=(4, 3), grow=0)
    assert out[0, 0] == 100.0
    # all masked -> 0
    bad[:, 0, 2] = True
    sci[:, 0, 2] = 7.0
    out = minmed(sci, wht, bad, [10] * 3, [0] * 3, [0] * 3)
    assert out[0, 2] == 0.0


def test_minmed_noise_formula_boundary():
    # 4 images, weights 7.5 s (Wt = 30), sky 15 e-, rn 5 e-; Med (nhigh=1) = 100 e/s
    wt, B, R = 30.0, 4 * 7.5 * 15.0 / 10, 4 * 25.0
    s = np.sqrt(100 * wt + B + R)
    edge = (100 * wt - 4 * s) / wt
    for mn, expect_min in [(edge + 0.02, False), (edge - 0.02, True)]:
        sci = np.array([[[mn]], [[100.0]], [[100.0]], [[200.0]]], dtype=np.float32)
        wht = np.full_like(sci, 7.5)
        bad = np.zeros_like(sci, dtype=bool)
        out = minmed(sci, wht, bad, [10] * 4, [15.0] * 4, [5.0] * 4, nsigma=(4, 3), grow=0)
        assert (out[0, 0] == np.float32(mn)) == expect_min
        assert out[0, 0] in (np.float32(mn), np.float32(100.0))


def test_minmed_grow_uses_second_threshold_next_to_detections():
    # pixel 0: strong outlier (first test), pixel 1: mild (only passes second test)
    med = 100.0
    wt = 30.0
    sigma = np.sqrt(med * wt)
    mild = (med * wt - 3.5 * sigma) / wt    # below 3 sigma, above 4 sigma
    sci = np.array([[[0.0, mild, mild]], [[med, med, med]], [[med, med, med]], [[999, 999, 999]]],
                   dtype=np.float32)
    wht = np.full_like(sci, 7.5)
    bad = np.zeros_like(sci, dtype=bool)
    args = ([10] * 4, [0] * 4, [0] * 4)
    out0 = minmed(sci, wht, bad, *args, nsigma=(4, 3), grow=0)
    out1 = minmed(sci, wht, bad, *args, nsigma=(4, 3), grow=1)
    assert out0[0, 0] == 0.0 and out0[0, 1] == med and out0[0, 2] == med
    assert out1[0, 0] == 0.0 and out1[0, 1] == np.float32(mild) and out1[0, 2] == med



def test_minmed_minimum_only_from_singles_that_fully_sample_the_pixel():
    """The peak of an undersampled WF star on the PC grid (values from the
    simulated M2 set, e-/s): five singles cover the pixel fully (weight 2.09 s =
    10 s x (0.0455/0.0996)^2); the sixth has a bad column through the star's
    core, so only half the pixel is covered (1.09 s, still above maskpt) and its
    value is the PSF wing next to the column.  AstroDrizzle's minmed takes that
    wing value as the minimum and carves a hole into the median."""
    sci = np.array([14.8, 20.6, 20.2, 19.6, 9.8, 5.6], dtype=np.float32).reshape(6, 1, 1)
    wht = np.array([2.09] * 5 + [1.09], dtype=np.float32).reshape(6, 1, 1)
    bad = np.zeros_like(sci, dtype=bool)
    args = ([10] * 6, [41.0] * 6, [5.3] * 6)
    assert minmed(sci, wht, bad, *args, grow=0, min_coverage=0)[0, 0] == np.float32(5.6)
    assert minmed(sci, wht, bad, *args, grow=0)[0, 0] == np.float32(14.8)   # the median
    # the same stack with every single covering fully: the minimum is tested as before
    full = np.full_like(wht, 2.09)
    assert minmed(sci, full, bad, *args, grow=0)[0, 0] == np.float32(5.6)
    # a median spoiled by cosmic rays in 4 of 6 singles still falls back to the minimum
    cr = np.array([10, 10, 500, 500, 500, 500], dtype=np.float32).reshape(6, 1, 1)
    assert minmed(cr, full, bad, *args, grow=0)[0, 0] == 10.0
    assert minmed(cr, wht, bad, *args, grow=0)[0, 0] == 10.0


def test_min_candidates_per_second_of_exposure_and_seams():
    # columns: full coverage with exposure times 10 s and 20 s (both candidates);
    # a WF single (0.21 of a PC pixel per second) among PC singles; a masked single
    # (weights in s: exposure time x the fraction of an input pixel in the output pixel)
    wht = np.array([[[10.0, 10.0, 10.0]], [[20.0, 4.2, 20.0]], [[9.6, 10.0, 0.0]]], dtype=np.float32)
    bad = np.zeros_like(wht, dtype=bool)
    bad[2, 0, 2] = True
    c = min_candidates(wht, bad, [10, 20, 10])
    assert c[:, 0, 0].all()                              # 1.0, 1.0, 0.96 of the best per second
    assert c[:, 0, 1].tolist() == [True, False, True]    # the coarser single is no candidate
    assert c[:, 0, 2].tolist() == [True, True, False]    # masked singles never are
    assert (min_candidates(wht, bad, [10, 20, 10], 0) == ~bad).all()   # AstroDrizzle: all unmasked


# ---------------------------------------------------------------- driz_cr
def test_deriv_interior_and_legacy_edges():
    b = np.arange(25, dtype=np.float32).reshape(5, 5)
    d = deriv(b)
    assert d[2, 2] == 5.0          # vertical neighbours differ by 5
    assert d[0, 0] == 5.0          # no lenient border
    dl = deriv(b, legacy_edges=True)
    assert dl[2, 2] == 5.0
    assert dl[4, 4] == 24.0        # last row/col: shifted copies are 0 -> |B|


def test_driz_cr_two_pass_and_neighbour_rule():
    blot = np.full((7, 7), 100.0, dtype=np.float32)
    data = blot.copy()
    rn = 5.0
    noise = np.sqrt(100 + 25.0)
    data[3, 3] += 10 * noise        # fails both tests
    data[3, 4] += 3.2 * noise       # fails only the second (snr2=3) test, next to a first-test failure
    data[0, 0] += 3.2 * noise       # fails only the second test, isolated
    good = driz_cr(data, blot, rn, snr=(3.5, 3.0), scale=(1.2, 0.7))
    assert not good[3, 3]
    assert not good[3, 4]
    assert good[0, 0]
    assert good.sum() == 49 - 2


def test_derivative_term_protects_sharp_sources():
    blot = np.full((9, 9), 10.0, dtype=np.float32)
    blot[4, 4] = 5000.0             # a star peak in the median
    data = blot.copy()
    data[4, 4] = 5000.0 * 1.3       # 30 % mismatch (misregistration)
    good = driz_cr(data, blot, 5.0, snr=(5.5, 3.5), scale=(2.0, 1.5))
    assert good[4, 4]
    good0 = driz_cr(data, blot, 5.0, snr=(5.5, 3.5), scale=(0.0, 0.0))
    assert not good0[4, 4]


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (3, 5), (61, 47), (200, 300)])
def test_compiled_driz_cr_equals_the_numpy_program(shape):
    """The compiled two-sweep test gives the numpy program's pixels: sky noise, hits,
    sharp stars, both thresholds near their edges, NaN in the data and in the blot,
    every border (the 3 x 3 rule is clamped there)."""
    from drizzleflow.steps.chain.crdetect import _driz_cr_numpy
    rng = np.random.default_rng(sum(shape))
    for trial in range(4):
        blot = rng.normal(60.0, 3.0, shape).astype(np.float32)
        blot.flat[rng.integers(0, blot.size, max(1, blot.size // 40))] = rng.uniform(500, 3e4)
        data = (blot + rng.normal(0.0, 9.0, shape)).astype(np.float32)
        hits = rng.integers(0, data.size, max(1, data.size // 30))
        data.flat[hits] += rng.uniform(20, 400, hits.size).astype(np.float32)
        if trial >= 2:
            data.flat[rng.integers(0, data.size, 3)] = np.nan
            blot.flat[rng.integers(0, blot.size, 2)] = np.nan
        for snr, scale, rn in (((5.5, 3.5), (2.0, 1.5), 5.0), ((3.5, 3.0), (1.2, 0.7), 0.73),
                               ((1.0, 0.5), (0.0, 0.0), 13.0)):
            want = _driz_cr_numpy(data, blot, rn, snr, scale, False)
            got = driz_cr(data, blot, rn, snr, scale)
            assert got.dtype == bool and got.shape == shape
            assert np.array_equal(got, want), (trial, snr, int((got != want).sum()))
    # a non-contiguous view is taken as its values
    assert np.array_equal(driz_cr(data[:, ::-1], blot[:, ::-1], 5.0), _driz_cr_numpy(
        data[:, ::-1], blot[:, ::-1], 5.0, (3.5, 3.0), (1.2, 0.7), False))


def test_grow_and_cte():
    good = np.ones((7, 7), dtype=bool)
    good[3, 3] = False
    assert grow_mask(good, 1).sum() == 48
    g3 = grow_mask(good, 3)
    assert (~g3).sum() == 9 and not g3[2, 2] and not g3[4, 4]
    t = cte_grow(good, 2, cte_dir=-1)
    assert not t[4, 3] and not t[5, 3] and t[6, 3] and t[2, 3]
    t = cte_grow(good, 2, cte_dir=1)
    assert not t[2, 3] and not t[1, 3] and t[4, 3]
    m = cr_mask(np.where(good, 100, 2000).astype(np.float32), np.full((7, 7), 100, np.float32),
                5.0, grow=1, ctegrow=1)
    assert not m[3, 3] and not m[4, 3] and m.sum() == 47


def test_electron_noise_model_flags_few_sky_pixels():
    """A pure-noise chip (sky 50 e-, rn 5 e-) in electrons must flag ≪ 1 % with the
    tutorial thresholds; the DN-domain formula with gain 7 (DrizzlePac 3.11's WFPC2
    behaviour) flags far more — this test would catch a units slip."""
    rng = np.random.default_rng(3)
    sky, rn, gain = 50.0, 5.0, 7.0
    blot = np.full((200, 200), sky, dtype=np.float32)
    data = (rng.poisson(sky, blot.shape) + rng.normal(0, rn, blot.shape)).astype(np.float32)
    good = driz_cr(data, blot, rn, snr=(5.5, 3.5), scale=(2.0, 1.5))
    assert (~good).mean() < 0.002
    # the units bug: noise sqrt(g*|B| + r^2)/g with B in electrons
    noise_bug = np.sqrt(gain * blot + rn ** 2) / gain
    diff = np.abs(data - blot)
    ok1 = diff <= 5.5 * noise_bug
    assert (~(diff <= 3.5 * noise_bug)).mean() > 0.05 and (~ok1).mean() > 0.01


def test_bits_none_ignores_the_dq_array():
    """AstroDrizzle's final_bits=None turns DQ masking off; 0 makes every flag bad."""
    import numpy as np

    from drizzleflow.steps.chain.common import good_from_bits
    dq = np.array([0, 8, 1024, 4096, 8 | 1024], dtype=np.uint16)
    assert good_from_bits(dq, None).all()
    assert good_from_bits(dq, []).tolist() == [True, False, False, False, False]
    assert good_from_bits(dq, [8, 1024]).tolist() == [True, True, True, False, True]


@pytest.mark.parametrize("nimg", [2, 3, 4, 6, 8, 9])
def test_compiled_minmed_gives_the_numpy_programs_bits(nimg):
    """The row-by-row compiled minmed (``_minmed.pyx``) against its reference,
    the numpy program (``fast=False``): the same bits for every stack depth it
    takes (2-8; 9 runs the numpy program), masks, all-masked pixels, ties,
    min_coverage on and off, grow 0-2, and NaN among unmasked values (numpy)."""
    from drizzleflow.steps.chain import minmed as M
    rng = np.random.default_rng(nimg)
    shape = (nimg, 23, 37)
    sci = rng.normal(50, 20, shape).astype(np.float32)
    sci[:, 5, :] = np.float32(42.5)                            # ties across the stack
    sci[rng.random(shape) < 0.02] *= np.float32(40)           # cosmic-ray-like highs
    wht = (rng.uniform(0.2, 1.0, shape) * 10).astype(np.float32)
    wht[:, :, :3] *= np.float32(0.3)                           # partial coverage at an edge
    bad = rng.random(shape) < 0.15
    bad[:, 7, 4:9] = True                                      # every single masked
    args = ([10.0 + i for i in range(nimg)], [15.0 + 2 * i for i in range(nimg)], [5.0] * nimg)
    for grow in (0, 1, 2):
        for cov in (None, 0.0, 0.5):
            ref = M.minmed(sci, wht, bad, *args, nsigma=(3, 2), grow=grow, min_coverage=cov, fast=False)
            got = M.minmed(sci, wht, bad, *args, nsigma=(3, 2), grow=grow, min_coverage=cov)
            assert got.dtype == np.float32 and (got.view(np.uint32) == ref.view(np.uint32)).all(), (grow, cov)
            assert (ref[7, 4:9] == 0).all()
    ran = M._fast_minmed(sci, wht, bad, args[0], np.ones(nimg), np.ones(nimg), (3, 2), 1, None)
    assert (ran is not None) == (2 <= nimg <= 8)
    nan_sci = sci.copy()
    nan_sci[0, 3, 3] = np.nan
    bad[0, 3, 3] = False
    assert M._fast_minmed(nan_sci, wht, bad, args[0], np.ones(nimg), np.ones(nimg), (3, 2), 1, None) is None
    with np.errstate(invalid="ignore"):
        ref = M.minmed(nan_sci, wht, bad, *args, fast=False)
        got = M.minmed(nan_sci, wht, bad, *args)
    np.testing.assert_array_equal(got, ref)
