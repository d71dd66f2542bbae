"""Physics and format checks of the M2 simulator (small chips for speed)."""
import hashlib
import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from drizzleflow.engine.errors import RecipeError
from drizzleflow.steps.instruments.wfpc2 import reference_files as rf
from drizzleflow.steps.instruments.wfpc2.constants import detector_gain
from drizzleflow.steps.simulate import m2, patterns
from drizzleflow.steps.simulate.detector import DQ_SATURATED, star_pixels
from drizzleflow.steps.simulate.geometry import chip_specs
from drizzleflow.steps.simulate.psf import psf_for

TUTORIAL_CRVALS = np.array([
    [323.3147138686913, -0.8710668436652544], [323.3149432083502, -0.8704559656029925],
    [323.3154170817679, -0.8700073543893925], [323.3151877409566, -0.8706182316527187],
    [323.3147625476145, -0.8709934880785906], [323.3149918871733, -0.8703826100133287]])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("m2small")
    files = m2.simulate_m2(d, seed=3, size=192, nexp=2)
    return d, files


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(small, tmp_path):
    d, _ = small
    m2.simulate_m2(tmp_path / "a", seed=3, size=192, nexp=2)
    assert _digest(tmp_path / "a") == _digest(d)
    m2.simulate_m2(tmp_path / "b", seed=4, size=192, nexp=2)
    a = fits.getdata(tmp_path / "a" / "ua060502m_c0m.fits", 2)
    b = fits.getdata(tmp_path / "b" / "ua060502m_c0m.fits", 2)
    assert not np.array_equal(a, b)


def test_archive_format_as_drizzlepac_reads_it(small):
    d, files = small
    assert [f.name for f in files] == ["ua060502m_c0m.fits", "ua060504m_c0m.fits"]
    with fits.open(files[0]) as sci, fits.open(d / "ua060502m_c1m.fits") as dq:
        p = sci[0].header
        assert p["INSTRUME"] == "WFPC2" and p["ATODGAIN"] == 7.0 and p["MODE"] == "FULL"
        assert p["EXPTIME"] == 10.0 and p["DARKTIME"] == 10.0 and "PA_V3" in p
        assert p["SIMULATE"] is True and p["ORIGIN"] == "drizzleflow simulator"
        assert p["DATE"] == p["DATE-OBS"] == "2007-08-01" and p["FILTNAM1"] == "F814W"
        for key in ("IDCTAB", "OFFTAB", "DGEOFILE"):
            assert p[key].startswith("uref$") and rf.resolve_uref(p[key], d / "uref").exists()
        assert len(sci) == 5 and len(dq) == 5
        for k in range(1, 5):
            h = sci[k].header
            assert (h["EXTNAME"], h["EXTVER"], h["DETECTOR"], h["EXPNAME"]) == ("SCI", k, k, "ua060502m")
            assert sci[k].data.dtype == np.dtype(">f4") and h["BUNIT"] == "COUNTS"
            assert not any(key.startswith(("A_", "B_", "D2IM")) for key in h)   # old format
            assert h["CTYPE1"] == "RA---TAN"
            # DrizzlePac reads c1m extension i for chip i, named SCI
            assert dq[k].header["EXTNAME"] == "SCI" and dq[k].data.dtype == np.dtype(">i2")
            assert dq[k].data.shape == sci[k].data.shape
        assert dq[0].header["FILETYPE"] == "SDQ"
        # the first exposure's PC1 CRVAL is the tutorial's
        assert sci[1].header["CRVAL1"] == pytest.approx(TUTORIAL_CRVALS[0, 0], abs=1e-9)
        assert sci[1].header["CRVAL2"] == pytest.approx(TUTORIAL_CRVALS[0, 1], abs=1e-9)


def test_waivered_files(tmp_path):
    files = m2.simulate_m2(tmp_path, seed=2, size=96, nexp=1, waivered=True)
    assert files[0].name == "ua060502m_c0f.fits"
    with fits.open(files[0]) as h, fits.open(tmp_path / "ua060502m_c1f.fits") as q:
        assert h[0].data.shape == (4, 96, 96) and h[0].data.dtype.kind == "f"
        assert isinstance(h[1], fits.TableHDU) and len(h[1].data) == 4
        assert list(h[1].data["DETECTOR"]) == [1, 2, 3, 4]
        assert q[0].data.dtype == np.dtype(">i2") and q[0].header["FILETYPE"] == "SDQ"
        crval = float(h[1].data["CRVAL1"][0])
        assert crval == pytest.approx(TUTORIAL_CRVALS[0, 0], abs=1e-9)
        # same data and group keywords as the multi-extension form of the same seed
        m2.simulate_m2(tmp_path / "mef", seed=2, size=96, nexp=1)
        with fits.open(tmp_path / "mef" / "ua060502m_c0m.fits") as mef:
            for k in range(1, 5):
                np.testing.assert_array_equal(h[0].data[k - 1], mef[k].data)
                for col in h[1].columns:
                    v = h[1].data[col.name][k - 1]
                    if col.unit == "LOGICAL-":
                        v = v.strip() == "T"
                    elif col.format.startswith("E"):
                        v = float("%.7G" % v)
                    want = mef[k].header[col.name]
                    assert (v.strip() if isinstance(v, str) else v) == want, col.name


def test_pattern_offsets_match_the_tutorial(small):
    off = patterns.tutorial_offsets()
    assert off.shape == (6, 2)
    assert np.hypot(*(off[1] - off[0])) == pytest.approx(2.349)
    assert off[4] == pytest.approx([0.2241, 0.2241])
    # header pointings from the pattern reproduce all six tutorial CRVALs
    d, _ = small
    models = m2._models(d / "uref")
    hdr = m2.header_pointings(models, off)
    P, Q = m2._pc_reference_frame(models)
    for p, want in zip(hdr, TUTORIAL_CRVALS):
        ra, dec = rf.frame_to_sky(P, Q, p.ra, p.dec, p.pv)
        err = math.hypot((ra - want[0]) * math.cos(math.radians(want[1])), dec - want[1]) * 3600
        assert err < 0.002
    # the true pointing of the first exposure is off by the simulated 20-50 mas
    t = Table.read(d / "truth" / "pointing.ecsv")
    miss = np.hypot(t["dra_arcsec"], t["ddec_arcsec"])
    assert np.all((miss >= 0.02) & (miss <= 0.05))
    err1 = math.hypot((t["pc_crval1_true"][0] - TUTORIAL_CRVALS[0, 0]) * math.cos(math.radians(-0.87)),
                      t["pc_crval2_true"][0] - TUTORIAL_CRVALS[0, 1]) * 3600
    assert 0.019 < err1 < 0.051


def test_cosmic_rays_are_exactly_the_changed_pixels(small):
    d, files = small
    s = m2.setup(d, m2.SimParams(seed=3, size=192, nexp=2), write_refs=False)
    nhit = 0
    with fits.open(d / "truth" / "crs.fits") as crs, fits.open(files[1]) as sci:
        for chip in (1, 2, 3, 4):
            with_cr = m2.render_exposure_chip(s, 1, chip)
            clean = m2.render_exposure_chip(s, 1, chip, crs=False)
            np.testing.assert_array_equal(with_cr.sci, sci[chip].data)       # the file is this render
            cr = crs["UA060504M", chip].data
            np.testing.assert_array_equal(cr, with_cr.cr)
            changed = with_cr.sci != clean.sci
            hit = (cr > 0) & ~((clean.dq & DQ_SATURATED) > 0)
            nhit += hit.sum()
            np.testing.assert_array_equal(changed, hit)
    assert nhit > 3


def test_sky_ratio_follows_pixel_area(tmp_path):
    size = 160
    m2.simulate_m2(tmp_path, seed=5, size=size, nexp=1, nstars=0)
    s = m2.setup(tmp_path, m2.SimParams(seed=5, size=size, nexp=1, nstars=0), write_refs=False)
    specs = chip_specs(size)
    yy, xx = np.mgrid[0:size, 0:size]
    level = {}
    with fits.open(tmp_path / "ua060502m_c0m.fits") as sci, fits.open(tmp_path / "ua060502m_c1m.fits") as dq, \
            fits.open(tmp_path / "truth" / "crs.fits") as crs:
        for k in (1, 2, 3, 4):
            good = (dq[k].data == 0) & (crs["UA060502M", k].data == 0)
            bx, by = star_pixels(s.bright["ra"], s.bright["dec"], s.models[k], s.models[3], s.d2im,
                                 s.true_pointing[0])
            for xb, yb in zip(bx, by):
                good &= np.hypot(xx - xb, yy - yb) > 70
            vals = sci[k].data[good].astype(float)
            for _ in range(5):
                vals = vals[np.abs(vals - vals.mean()) < 4 * vals.std()]
            level[k] = vals.mean()
    want = (specs[1].scale / specs[3].scale) ** 2
    wf = np.mean([level[k] for k in (2, 3, 4)])
    assert level[1] / wf == pytest.approx(want, rel=0.03)
    assert level[3] * detector_gain(7, 3)[0] == pytest.approx(40.0, rel=0.03)   # e- per WF pixel


def test_aperture_photometry_matches_truth(tmp_path):
    size = 256
    m2.simulate_m2(tmp_path, seed=7, size=size, nexp=1, nstars=1500)
    s = m2.setup(tmp_path, m2.SimParams(seed=7, size=size, nexp=1, nstars=1500), write_refs=False)
    stars = Table.read(tmp_path / "truth" / "stars.ecsv")
    yy, xx = np.mgrid[0:size, 0:size]
    r, sky = 6.0, 40.0
    ratios, pulls = [], []
    with fits.open(tmp_path / "ua060502m_c0m.fits") as h, fits.open(tmp_path / "ua060502m_c1m.fits") as q:
        for chip in (2, 3, 4):
            x, y = star_pixels(np.asarray(stars["ra"]), np.asarray(stars["dec"]), s.models[chip], s.models[3],
                               s.d2im, s.true_pointing[0])
            flux = np.asarray(stars["flux_e"]) * m2.PHOTFLAM[3] / m2.PHOTFLAM[chip]
            img = h[chip].data.astype(float) * detector_gain(7, chip)[0]
            dq = q[chip].data
            spec = chip_specs(size)[chip]
            edge = max(spec.edge_x, spec.edge_y) + 8
            on = ((x > edge) & (x < size - 9) & (y > edge) & (y < size - 9) & (flux > 3000)
                  & ~np.asarray(stars["bright"]))
            pm = psf_for(chip)
            # encircled energy of the pixel-integrated Gaussian mixture (pixel adds variance 1/12)
            ee = sum(w * (1 - math.exp(-r * r / (2 * (sg * sg + 1 / 12)))) for sg, w in zip(pm.sigmas, pm.weights))
            for i in np.flatnonzero(on):
                near = np.hypot(x - x[i], y - y[i])
                if np.any((near < 10) & (near > 0) & (flux > 0.01 * flux[i])):
                    continue
                m = np.hypot(xx - x[i], yy - y[i]) <= r
                if (dq[m] & ~1024).any():
                    continue
                meas = img[m].sum() - sky * m.sum()
                expect = flux[i] * ee
                noise = math.sqrt(expect + m.sum() * (sky + 27.0 + 7.0 ** 2 / 12) + (0.01 * expect) ** 2)
                ratios.append(meas / expect)
                pulls.append((meas - expect) / noise)
    assert len(ratios) >= 8
    assert np.median(ratios) == pytest.approx(1.0, abs=0.015)
    assert 0.5 < np.std(pulls) < 2.0


def test_header_model_is_reproduced_by_a_sip_wcs(small):
    """What updatewcs must do: CD + SIP from the IDCTAB/OFFTAB and the
    34th-row table reproduce truth/wcs_grid.ecsv (header pointing) < 0.01 px."""
    d, files = small
    grid = Table.read(d / "truth" / "wcs_grid.ecsv")
    models = m2._models(d / "uref")
    table = rf.read_dgeo_d2im(d / "uref" / m2.REF_NAMES["dgeofile"], 1)
    with fits.open(files[0]) as sci:
        for chip in (1, 2, 3, 4):
            h = sci[chip].header
            row = models[chip]
            lin_inv = np.linalg.inv(row.linear)
            w = WCS(naxis=2)
            w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
            w.wcs.crpix = [row.xref, row.yref]
            w.wcs.crval = [h["CRVAL1"], h["CRVAL2"]]
            w.wcs.cd = [[h["CD1_1"], h["CD1_2"]], [h["CD2_1"], h["CD2_2"]]]
            a = np.zeros((4, 4))
            b = np.zeros((4, 4))
            for i in (2, 3):
                for j in range(i + 1):
                    da, db = lin_inv @ [row.cx[i, j], row.cy[i, j]]
                    a[j, i - j], b[j, i - j] = da, db
            from astropy.wcs import Sip
            w.sip = Sip(a, b, None, None, w.wcs.crpix)
            sel = (grid["root"] == "ua060502m") & (grid["chip"] == chip)
            x = np.asarray(grid["x"][sel]) + 1.0
            y = np.asarray(grid["y"][sel]) + 1.0
            ra, dec = w.all_pix2world(x, y + rf.d2im_offset(y, table), 1)
            err = np.hypot((ra - grid["ra_header"][sel]) * math.cos(math.radians(dec[0])),
                           dec - grid["dec_header"][sel]) * 3600 / row.scale
            assert err.max() < 0.01
            # the true pointing differs by the 20-50 mas pointing error
            terr = np.hypot((grid["ra_true"][sel] - grid["ra_header"][sel]) * math.cos(math.radians(dec[0])),
                            grid["dec_true"][sel] - grid["dec_header"][sel]) * 3600
            assert 0.019 < np.median(terr) < 0.051


def test_input_provider_reuses_matching_files(tmp_path):
    out = m2.provide({"simulate": "m2", "seed": 2, "size": 96, "nexp": 1}, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in out["files"]] == ["ua060502m_c0m.fits"]
    assert out["uref"].endswith("uref")
    stamp = (tmp_path / "ua060502m_c0m.fits").stat().st_mtime_ns
    again = m2.provide({"simulate": "m2", "seed": 2, "size": 96, "nexp": 1}, tmp_path)
    assert again == out and (tmp_path / "ua060502m_c0m.fits").stat().st_mtime_ns == stamp
    with pytest.raises(RecipeError):
        m2.provide({"simulate": "m2", "seeed": 2}, tmp_path)
    with pytest.raises(RecipeError):
        m2.provide({"simulate": "m3"}, tmp_path)


def test_cli_command(tmp_path):
    import argparse
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    m2.register(sub)
    args = parser.parse_args(["simulate", "m2", str(tmp_path / "o"), "--size", "64", "--nexp", "1",
                              "--seed", "9", "--nstars", "50"])
    assert args.func(args) == 0
    assert (tmp_path / "o" / "ua060502m_c1m.fits").exists()
    assert len(Table.read(tmp_path / "o" / "truth" / "stars.ecsv")) == 50 + len(m2.BRIGHT)


def test_blooming_conserves_charge_along_the_column():
    from drizzleflow.steps.simulate.detector import bleed
    img = np.full((60, 5), 100.0)
    img[30, 2] = 500000.0
    img[31, 2] = 200000.0
    total = img.sum()
    out = bleed(img.copy(), 53000.0)
    assert out.sum() == pytest.approx(total)
    assert out.max() <= 53000.0
    full = np.flatnonzero(out[:, 2] >= 53000.0 - 1e-6)
    assert np.all(np.diff(full) == 1) and full.size == 12          # one contiguous trail (700 ke- = 13.2 full wells)
    np.testing.assert_array_equal(out[:, [0, 1, 3, 4]], img[:, [0, 1, 3, 4]])


def test_dead_column_stretches_are_flagged_exactly():
    """Only the flagged part of a bad column is dimmed: the flag bit is shared with the
    vignetted edge, so the start row must come from the simulator, not the DQ array."""
    from drizzleflow.steps.simulate.detector import DQ_BADCOL, DetectorParams, static_defects
    size = 256
    for det in (1, 2, 3, 4):
        dq, _, badcols = static_defects(5, size, det, DetectorParams())
        spec = chip_specs(size)[det]
        assert badcols
        for col, start in badcols:
            flagged = (dq[:, col] & DQ_BADCOL) != 0
            assert flagged[start:].all()
            # above the vignetted edge and before the dead stretch, the column is clean
            assert not flagged[spec.edge_y:start].any()


def test_each_chip_is_digitised_with_the_gain_readers_apply(tmp_path):
    """DN x the instrument table's gain of the chip (what DrizzlePac's reader and
    ours multiply by) gives back the electrons rendered, per chip to 0.3 %: a
    flat 7 e-/DN put the chips off by -1.4 % (WF3) to +1.7 % (PC1, WF2)."""
    s = m2.setup(tmp_path, m2.SimParams(seed=4, size=256, nexp=1, nstars=300))
    for chip in (1, 2, 3, 4):
        r = m2.render_exposure_chip(s, 0, chip, crs=False, keep_electrons=True)
        good = r.dq == 0
        got = float(np.mean(r.sci[good].astype(np.float64))) * detector_gain(7, chip)[0]
        assert got / float(np.mean(r.electrons[good])) == pytest.approx(1.0, abs=0.003), chip
