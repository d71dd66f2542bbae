"""Two-chip exposures with a known pointing error: match, fit jointly in the
tangent plane, correct the WCS, and compare with the true WCS."""

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS, Sip

from drizzleflow.steps.align.solve import AlignFailure, align_catalog, chips_to_plane
from drizzleflow.steps.align.wcs_update import corrected_wcs, tangent_plane

RA0, DEC0 = 323.36, -0.82


def _chip_wcs(offset_arcsec=(0, 0), rot=0.0, scale=0.1, dra=0.0, ddec=0.0, drot=0.0):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [RA0 + (offset_arcsec[0] / 3600 + dra) / np.cos(np.radians(DEC0)),
                   DEC0 + offset_arcsec[1] / 3600 + ddec]
    w.wcs.crpix = [200.5, 200.5]
    th = np.radians(rot + drot)
    s = scale / 3600.0
    w.wcs.cd = s * np.array([[-np.cos(th), np.sin(th)], [np.sin(th), np.cos(th)]])
    a = np.zeros((3, 3)); b = np.zeros((3, 3))
    a[2, 0] = 3e-6; b[0, 2] = -2e-6
    w.sip = Sip(a, b, None, None, w.wcs.crpix)
    w.pixel_shape = (400, 400)
    w.wcs.set()
    return w


def _exposure(stars, err=(0, 0, 0), seed=0, noise=0.03, n_drop=0):
    """Two chips 45" apart; returns (catalogs with header WCS, true WCS list)."""
    rng = np.random.default_rng(seed)
    cats, truths = [], []
    for k, off in enumerate([(-22.0, 0.0), (22.0, 0.0)], start=1):
        true = _chip_wcs(off, rot=15.0)
        # a rigid pointing error: the whole exposure turns about its centre
        th = np.radians(err[2])
        roff = (off[0] * np.cos(th) + off[1] * np.sin(th), -off[0] * np.sin(th) + off[1] * np.cos(th))
        hdr = _chip_wcs(roff, rot=15.0, dra=err[0] / 3600, ddec=err[1] / 3600, drot=err[2])
        x, y = true.all_world2pix(stars[:, 0], stars[:, 1], 0)
        ok = (x > 5) & (x < 395) & (y > 5) & (y < 395)
        x, y = x[ok] + rng.normal(0, noise, ok.sum()), y[ok] + rng.normal(0, noise, ok.sum())
        t = Table({"id": np.arange(1, ok.sum() + 1), "x": x, "y": y, "flux": np.ones(ok.sum())})
        cats.append((t, hdr, k))
        truths.append(true)
    return cats, truths


@pytest.fixture(scope="module")
def stars():
    rng = np.random.default_rng(11)
    n = 600
    return np.column_stack([RA0 + rng.uniform(-70, 70, n) / 3600 / np.cos(np.radians(DEC0)),
                            DEC0 + rng.uniform(-45, 45, n) / 3600])


@pytest.mark.parametrize("geometry", ["shift", "rscale", "general"])
def test_joint_two_chip_fit_recovers_pointing(stars, geometry):
    ref_cats, _ = _exposure(stars, seed=1)
    err = (0.12, -0.07, 0.0 if geometry == "shift" else 0.003)   # arcsec, arcsec, deg
    img_cats, truths = _exposure(stars, err=err, seed=2)
    plane = tangent_plane([c[1] for c in ref_cats], [(400, 400)] * 2, pscale=0.0455)
    ref = chips_to_plane(ref_cats, plane)
    img = chips_to_plane(img_cats, plane)
    res = align_catalog(img, ref, plane, searchrad=1.0 / 0.0455, tolerance=1.0,
                        minobj=15, fitgeometry=geometry, static_radius=0)   # undithered set
    fit = res["fit"]
    assert fit["nfit"] > 120
    # fit rms in plane pixels ~ noise (0.03 chip px = 0.066 plane px) per axis
    assert max(fit["rms"]) < 0.1
    errs = []
    for (t, hdr, k), true in zip(img_cats, truths):
        new = corrected_wcs(hdr, fit, plane, shape=(400, 400))
        pix = np.random.default_rng(k).uniform(0, 399, (100, 2))
        a = new.all_pix2world(pix, 0)
        b = true.all_pix2world(pix, 0)
        d = (a - b) * [np.cos(np.radians(DEC0)), 1] * 3.6e6
        errs.append(np.hypot(d[:, 0], d[:, 1]))
        # the header error before correction was > 100 mas
        before = (hdr.all_pix2world(pix, 0) - b) * [np.cos(np.radians(DEC0)), 1] * 3.6e6
        assert np.hypot(*before.T).min() > 100
    rms_mas = np.sqrt(np.mean(np.concatenate(errs) ** 2))
    assert rms_mas < 2.0


def test_too_few_matches_is_a_failure(stars):
    ref_cats, _ = _exposure(stars[:12], seed=1)
    img_cats, _ = _exposure(stars[:12], err=(0.05, 0, 0), seed=2)
    plane = tangent_plane([c[1] for c in ref_cats], [(400, 400)] * 2, pscale=0.0455)
    with pytest.raises(AlignFailure, match="minobj is 15"):
        align_catalog(chips_to_plane(img_cats, plane), chips_to_plane(ref_cats, plane), plane,
                      searchrad=20, minobj=15)


def test_shift_larger_than_searchrad_fails_not_wrong(stars):
    ref_cats, _ = _exposure(stars, seed=1)
    img_cats, _ = _exposure(stars, err=(3.0, 0, 0), seed=2)   # 3" = 66 PC px
    plane = tangent_plane([c[1] for c in ref_cats], [(400, 400)] * 2, pscale=0.0455)
    with pytest.raises(AlignFailure, match="matches"):
        align_catalog(chips_to_plane(img_cats, plane), chips_to_plane(ref_cats, plane), plane,
                      searchrad=1.0 / 0.0455, minobj=15)


def test_undithered_header_error_gives_clear_hint(stars):
    """Same detector pixels but headers 2.6 px apart: the artefact filter drops
    the stars, and the failure says why and how to switch it off."""
    ref_cats, _ = _exposure(stars, seed=1, noise=0.0)
    img_cats, _ = _exposure(stars, err=(0.12, -0.07, 0.0), seed=2, noise=0.0)
    plane = tangent_plane([c[1] for c in ref_cats], [(400, 400)] * 2, pscale=0.0455)
    with pytest.raises(AlignFailure, match="static_radius: 0"):
        align_catalog(chips_to_plane(img_cats, plane), chips_to_plane(ref_cats, plane), plane,
                      searchrad=22, minobj=15)
