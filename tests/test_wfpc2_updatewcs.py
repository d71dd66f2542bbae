"""updatewcs: the converted WCS reproduces the true distortion, matches stwcs,
keeps the OPUS WCS, records WCSCORR, and a rerun changes nothing."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from drizzleflow.steps.ingest import ingest_pairs
from drizzleflow.steps.instruments.wfpc2.updatewcs import (_linear_wcs_from_header, is_converted, update_wcs,
                                                          update_wcs_file)
from drizzleflow.steps.wcs_tools import wcscorr

import wfpc2_synth as S


def _sky_err_px(w1, w2, pix, scale):
    a, b = w1.all_pix2world(pix, 0), w2.all_pix2world(pix, 0)
    d = a - b
    d[:, 0] *= np.cos(np.radians(a[:, 1]))
    return np.hypot(d[:, 0], d[:, 1]).max() * 3600 / scale


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A small simulated set (256 px, 2 exposures) from the simulator's Python API."""
    m2 = pytest.importorskip("drizzleflow.steps.simulate.m2")
    d = tmp_path_factory.mktemp("sim")
    m2.simulate_m2(d, seed=3, size=256, nexp=2)
    return d


@pytest.mark.slow
def test_simulated_truth_reproduced(simulated, tmp_path):
    made = ingest_pairs(sorted(simulated.glob("*_c0m.fits")), tmp_path / "out", updatewcs=True,
                        uref=str(simulated / "uref"))
    grid = Table.read(simulated / "truth" / "wcs_grid.ecsv")
    worst = 0.0
    for m in made:
        with fits.open(m["sci"]) as hd:
            assert [h.name for h in hd] == ["PRIMARY", "SCI", "SCI", "SCI", "SCI", "D2IMARR", "WCSCORR"]
            for chip in (1, 2, 3, 4):
                sel = (grid["root"] == m["root"]) & (grid["chip"] == chip)
                assert sel.sum() > 100
                w = WCS(hd["SCI", chip].header, hd)
                ra, dec = w.all_pix2world(np.asarray(grid["x"][sel]), np.asarray(grid["y"][sel]), 0)
                dra = (ra - grid["ra_header"][sel]) * np.cos(np.radians(dec)) * 3600
                ddec = (dec - grid["dec_header"][sel]) * 3600
                err = np.hypot(dra, ddec).max() / hd["SCI", chip].header["IDCSCALE"]
                worst = max(worst, err)
    assert worst < 0.01, worst
    # the distortion is real: the archive's linear WCS misses it by far more
    with fits.open(made[0]["sci"]) as hd:
        old = _linear_wcs_from_header(hd["SCI", 2].header, "O")
        sel = (grid["root"] == made[0]["root"]) & (grid["chip"] == 2)
        ra, dec = old.all_pix2world(np.asarray(grid["x"][sel]), np.asarray(grid["y"][sel]), 0)
        dra = (ra - grid["ra_header"][sel]) * np.cos(np.radians(dec)) * 3600
        assert np.abs(dra).max() / 0.0996 > 0.03  # 256-px chips: ~0.09 px of distortion


def test_converted_file_layout_and_history(tmp_path):
    uref = S.write_references(tmp_path / "uref")
    sci, _ = S.make_exposure(tmp_path / "arch")
    orig = fits.getheader(sci, ("SCI", 2))
    made = ingest_pairs([sci], tmp_path / "out", updatewcs=True, uref=str(uref))
    with fits.open(made[0]["sci"]) as hd:
        ph, h = hd[0].header, hd["SCI", 2].header
        assert ph["DGEOFILE"] == "N/A" and ph["ODGEOFIL"] == "uref$synth_dxy.fits"
        assert ph["D2IMFILE"] == "ua060502m_d2im.fits" and ph["NEXTEND"] == len(hd) - 1
        assert ph["DISTNAME"] == "ua060502m_synth-NOMODEL-ua060502m" and ph["SIPNAME"] == "ua060502m_synth"
        assert h["WCSNAME"] == "IDC_synth" and h["WCSNAMEO"] == "OPUS"
        assert h["CTYPE1"] == "RA---TAN-SIP" and h["A_ORDER"] == 3
        for k in ("CRVAL1", "CRVAL2", "CRPIX1", "CD1_1", "CD2_2"):
            assert h[k + "O"] == orig[k]
        assert h["IDCSCALE"] == S.SCALES[2] and h["IDCV2REF"] == S.V2V3[2][0] and h["IDCTHETA"] == S.THETA[2]
        cx, cy = S.idc_coeffs(2)
        assert (h["OCX10"], h["OCX11"], h["OCY10"], h["OCY11"]) == (cx[1, 0], cx[1, 1], cy[1, 0], cy[1, 1])
        assert h["D2IMDIS2"] == "Lookup" and h["D2IM2.EXTVER"] == 2
        rows = wcscorr.read_rows(hd)
        assert [r["WCS_ID"] for r in rows] == ["OPUS"] * 4 + ["IDC_synth"] * 4
        assert rows[1]["CRVAL1"] == orig["CRVAL1"] and rows[5]["CRVAL1"] == h["CRVAL1"]
        assert len(hd["WCSCORR"].columns) == 24
    assert (tmp_path / "out" / "work" / "ua060502m_d2im.fits").exists()


def test_rerun_does_nothing(tmp_path):
    uref = S.write_references(tmp_path / "uref")
    sci, _ = S.make_exposure(tmp_path / "arch")
    made = ingest_pairs([sci], tmp_path / "out", updatewcs=True, uref=str(uref))
    before = Path(made[0]["sci"]).read_bytes()
    assert update_wcs_file(made[0]["sci"], uref=str(uref)) is False
    assert Path(made[0]["sci"]).read_bytes() == before
    with fits.open(made[0]["sci"]) as hd:
        assert is_converted(hd)


def test_offtab_interpolated_in_date(tmp_path):
    """IDCTAB without V2REF: chip positions come from the OFFTAB, interpolated by DATE-OBS."""
    uref = S.write_references(tmp_path / "uref", with_v2ref=False)
    sci, _ = S.make_exposure(tmp_path / "arch", date_obs="2007-01-01")
    with fits.open(sci) as hd:
        hd.readall()
        update_wcs(hd, uref=str(uref))
        h = hd["SCI", 4].header
    t0 = np.datetime64("2005-01-01").astype(int)
    t1 = np.datetime64("2009-01-01").astype(int)
    f = (np.datetime64("2007-01-01").astype(int) - t0) / (t1 - t0)
    assert h["IDCV2REF"] == pytest.approx(S.V2V3[4][0] + 0.4 * f, abs=1e-12)
    assert h["IDCV3REF"] == pytest.approx(S.V2V3[4][1] - 0.2 * f, abs=1e-12)


@pytest.mark.oracle
@pytest.mark.parametrize("with_v2ref", [True, False])
def test_same_wcs_as_stwcs(tmp_path, monkeypatch, with_v2ref):
    """stwcs.updatewcs and ours agree on CRVAL/CD/SIP to machine precision (DGEOFILE
    off: stwcs applies its D2IM to chip 1 only and indexes the table by x)."""
    stwcs_updatewcs = pytest.importorskip("stwcs.updatewcs")
    uref = S.write_references(tmp_path / "uref", with_v2ref=with_v2ref)
    sci, _ = S.make_exposure(tmp_path / "arch", dgeofile="N/A")
    theirs = tmp_path / "stwcs"
    theirs.mkdir()
    shutil.copy(sci, theirs)
    monkeypatch.setenv("uref", str(uref) + "/")
    monkeypatch.chdir(theirs)
    stwcs_updatewcs.updatewcs(str(theirs / sci.name), checkfiles=False, use_db=False)
    with fits.open(sci) as ours, fits.open(theirs / sci.name) as ref:
        ours.readall()
        update_wcs(ours, uref=str(uref))
        yy, xx = np.mgrid[0:S.N:7, 0:S.N:7]
        pix = np.c_[xx.ravel(), yy.ravel()].astype(float)
        for chip in (1, 2, 3, 4):
            a, b = ours["SCI", chip].header, ref["SCI", chip].header
            for k in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
                      "A_2_0", "B_0_2", "A_3_0", "IDCV2REF", "IDCV3REF", "IDCTHETA", "IDCSCALE", "OCX10"):
                assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15), (chip, k)
            err = _sky_err_px(WCS(a, ours), WCS(b, ref), pix, a["IDCSCALE"])
            assert err < 1e-6
