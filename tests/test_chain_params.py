"""Parameter models of the chain steps, output grids and weight rules — the
bad-input checks that must fire before any work starts."""
import numpy as np
import pytest
from astropy.wcs import WCS
from pydantic import ValidationError

from drizzleflow.engine.errors import StepError
from drizzleflow.steps.chain.cosmic_rays import CosmicRaysStep
from drizzleflow.steps.chain.drizzle_final import DrizzleFinalStep, chip_weight
from drizzleflow.steps.chain.drizzle_separate import DrizzleSeparateStep
from drizzleflow.steps.chain.geometry import ChipGeom, check_overlap
from drizzleflow.steps.chain.median import MedianStep
from drizzleflow.steps.chain.output_wcs import (check_size, default_grid, grid_from_product,
                                               grid_to_product, orientat)
from drizzleflow.steps.chain.grid_params import resolve_grid
from drizzleflow.steps.chain.sky import SkyStep, combine_sky, match_offsets
from drizzleflow.steps.chain.static_mask import static_bad


def _wcs(ra, dec, scale, rot, shape=(100, 100)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    s = scale / 3600
    c, n = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    w.wcs.cd = s * np.array([[-c, n], [n, c]])
    w.wcs.set()
    return w


def _geom(root, ra, dec, scale=0.1, rot=30.0, det=2, shape=(100, 100)):
    return ChipGeom(root, 1, det, shape, _wcs(ra, dec, scale, rot, shape), scale, 10.0)


def test_legacy_strings_are_normalised():
    p = CosmicRaysStep.Params(snr="5.5 3.5", scale="2.0 1.5")
    assert p.snr == [5.5, 3.5] and p.scale == [2.0, 1.5]
    p = DrizzleFinalStep.Params(bits="8,1024", fillval="INDEF")
    assert p.bits == [8, 1024] and p.fillval is None
    p = DrizzleSeparateStep.Params(bits="8+1024", fillval=99999)
    assert p.bits == [8, 1024] and p.fillval == 99999


@pytest.mark.parametrize("cls,kw", [
    (MedianStep, {"combine_type": "average"}),
    (DrizzleFinalStep, {"pixfrac": 0}),
    (DrizzleSeparateStep, {"pixfrac": 0.0}),
    (DrizzleFinalStep, {"kernel": "tophat"}),
    (DrizzleFinalStep, {"outnx": 100}),
    (DrizzleFinalStep, {"scale": -0.1}),
    (SkyStep, {"method": "minimum"}),
    (CosmicRaysStep, {"snr": "5.5"}),
    (DrizzleFinalStep, {"no_such_param": 1}),
])
def test_bad_parameters_rejected(cls, kw):
    with pytest.raises(ValidationError):
        cls.Params(**kw)


def test_err_weights_refused_for_wfpc2():
    with pytest.raises(ValidationError, match="ERR array"):
        DrizzleFinalStep.Params(wht_type="ERR")
    p = DrizzleFinalStep.Params()
    p.__dict__["wht_type"] = "ERR"  # bypassing validation still fails before any work
    with pytest.raises(StepError, match="ERR array"):
        DrizzleFinalStep()._check(p)


def test_default_grid_uses_reference_chip_scale_and_orientation():
    pc = _geom("a", 10.0, 0.0, scale=0.0455, rot=30.0, det=1)
    wf = _geom("a", 10.0 + 8 / 3600, 0.0, scale=0.0996, rot=30.0, det=2)
    g = default_grid([pc, wf])
    assert g.scale == pytest.approx(0.0455, rel=1e-9)
    assert orientat(g.wcs) == pytest.approx(30.0, abs=1e-6)
    g2 = default_grid([pc, wf], ref=wf)
    assert g2.scale == pytest.approx(0.0996)
    g3 = default_grid([pc, wf], scale=0.1, rot=0.0)
    assert orientat(g3.wcs) == pytest.approx(0.0, abs=1e-6)
    # every footprint corner lands inside the frame
    for c in (pc, wf):
        ra, dec = c.wcs.all_pix2world([-0.5, 99.5], [-0.5, 99.5], 0)
        x, y = g.wcs.all_world2pix(ra, dec, 0)
        assert (x >= -0.5 - 1e-6).all() and (x <= g.shape[1] - 0.5 + 1e-6).all()
        assert (y >= -0.5 - 1e-6).all() and (y <= g.shape[0] - 0.5 + 1e-6).all()
    back = grid_from_product(grid_to_product(g))
    assert back.shape == g.shape and back.scale == pytest.approx(g.scale)


def test_grid_size_bound_and_force():
    chips = [_geom("a", 10.0, 0.0, scale=0.1)]
    huge = DrizzleFinalStep.Params(scale=0.0001)  # 10"/0.0001" = 100k pixels a side
    with pytest.raises(StepError, match="20000 x 20000"):
        resolve_grid(huge, chips, "drizzle_final", force=False)
    g = resolve_grid(DrizzleFinalStep.Params(scale=0.0005), chips, "drizzle_final", force=True)
    assert g.shape[0] > 15000
    check_size(g, force=False)  # 20k x 20k bound not exceeded here
    p = DrizzleFinalStep.Params(outnx=300, outny=200, ra=10.0, dec=0.0, scale=0.05)
    g = resolve_grid(p, chips, "drizzle_final", force=False)
    assert g.shape == (200, 300)
    assert list(g.wcs.wcs.crpix) == [150.5, 100.5]


def test_no_overlap_detected():
    grid = default_grid([_geom("a", 10.0, 0.0), _geom("b", 10.0 + 60 / 3600, 0.0)])
    problems = check_overlap([_geom("a", 10.0, 0.0), _geom("b", 10.0 + 60 / 3600, 0.0)], grid)
    assert len(problems) == 2 and "overlaps no other exposure" in problems[0]
    ok = [_geom("a", 10.0, 0.0), _geom("b", 10.0 + 2 / 3600, 0.0)]
    assert check_overlap(ok, default_grid(ok)) == []


def test_sky_localmin_scales_pc_by_pixel_area():
    # PC sees 30 e-/pix, WF 120 e-/pix: per arcsec^2 PC = 30/0.0455^2 = 14491, WF 120/0.0996^2 = 12096
    stats = [30.0, 120.0, 125.0, 130.0]
    areas = [0.0455 ** 2, 0.0996 ** 2, 0.0996 ** 2, 0.0996 ** 2]
    sky = combine_sky(stats, areas, [10] * 4, ["a"] * 4, "localmin")
    assert sky[1] == pytest.approx(120.0)
    assert sky[0] == pytest.approx(120.0 * (0.0455 / 0.0996) ** 2)
    sky2 = combine_sky(stats + [2 * v for v in stats], areas * 2, [10] * 4 + [20] * 4, ["a"] * 4 + ["b"] * 4, "globalmin")
    assert sky2[5] == pytest.approx(240.0)  # twice the exposure time, same brightness
    assert sky2[1] == pytest.approx(120.0)


def test_sky_match_offsets():
    d = match_offsets([(0, 1, 10.0, 7.0, 100), (1, 2, 7.5, 12.5, 100), (0, 2, 10.0, 12.0, 50)], 4)
    assert d[1] == pytest.approx(0.0, abs=0.2)
    assert d[0] == pytest.approx(3.0, abs=0.3)
    assert d[2] == pytest.approx(5.0, abs=0.3)
    assert np.isnan(d[3])


def test_static_mask_flags_only_deep_negatives():
    rng = np.random.default_rng(0)
    a = rng.normal(100, 5, (100, 100)).astype(np.float32)
    a[10, 10] = 20.0   # 16 sigma below
    a[20, 20] = 90.0   # 2 sigma below
    a[30, 30] = 5000.0  # star: above, never static-masked
    bad = static_bad(a, 4.0)
    assert bad[10, 10] and not bad[20, 20] and not bad[30, 30]
    assert bad.sum() < 5


def test_chip_weight_rules():
    good = np.array([[1, 0]], dtype=bool)
    assert chip_weight(good, "EXP", "exptime", 10.0).tolist() == [[10.0, 0.0]]
    assert chip_weight(good, "EXP", "expsq", 10.0).tolist() == [[100.0, 0.0]]
    assert chip_weight(good, "EXP", 0.5, 10.0).tolist() == [[5.0, 0.0]]
    w = chip_weight(good, "IVM", "exptime", 10.0, sky=20.0, rdnoise=5.0, rho=0.5)
    assert w[0, 0] == pytest.approx(100.0 / (0.05 + 20 + 25) / 0.5 ** 4, rel=1e-6) and w[0, 1] == 0
