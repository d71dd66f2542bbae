"""Waivered FITS (c0f/c1f) <-> multi-extension (c0m/c1m): lossless round trip,
and ingest of waivered inputs (including the simulator's --waivered files)."""
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from drizzleflow.steps.ingest import ingest_pairs
from drizzleflow.steps.instruments.wfpc2 import mef_to_waivered, open_exposure, waivered_to_mef

import wfpc2_synth as S

_SKIP = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT"}


def test_round_trip_identical_data_and_wcs(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "mef")
    wf = tmp_path / "waivered"
    wf.mkdir()
    c0f = mef_to_waivered(sci, wf)
    c1f = mef_to_waivered(dq, wf)
    assert c0f.name == "ua060502m_c0f.fits" and c1f.name == "ua060502m_c1f.fits"
    with fits.open(c0f) as h:
        assert h[0].data.shape == (4, S.N, S.N)
        assert isinstance(h[1], fits.TableHDU) and len(h[1].data) == 4
        assert "CRVAL1" in h[1].columns.names and "DETECTOR" in h[1].columns.names
    back = tmp_path / "back"
    back.mkdir()
    m0 = waivered_to_mef(c0f, back)
    m1 = waivered_to_mef(c1f, back)
    assert m0.name == "ua060502m_c0m.fits" and m1.name == "ua060502m_c1m.fits"
    with fits.open(sci) as a, fits.open(m0) as b, fits.open(dq) as c, fits.open(m1) as d:
        assert len(a) == len(b) == 5
        for k, v in a[0].header.items():
            if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND"):
                assert b[0].header[k] == v, k
        for i in range(1, 5):
            assert np.array_equal(a[i].data, b[i].data)
            assert a[i].data.dtype.newbyteorder("=") == b[i].data.dtype.newbyteorder("=")
            assert np.array_equal(c[i].data, d[i].data)
            for k, v in a[i].header.items():
                if k not in _SKIP:
                    assert b[i].header[k] == v, (i, k)
            wa, wb = WCS(a[i].header), WCS(b[i].header)
            pix = np.array([[0.0, 0.0], [63.0, 17.5]])
            assert np.array_equal(wa.all_pix2world(pix, 0), wb.all_pix2world(pix, 0))


def test_ingest_waivered_input(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "mef")
    wf = tmp_path / "arch"
    wf.mkdir()
    c0f, c1f = mef_to_waivered(sci, wf), mef_to_waivered(dq, wf)
    made = ingest_pairs([c0f], tmp_path / "out", resetbits=0)
    assert made[0]["source"] == str(c0f) and made[0]["source_dq"] == str(c1f)
    a, b = open_exposure(sci), open_exposure(made[0]["sci"])
    for ca, cb in zip(a.chips, b.chips):
        assert np.array_equal(ca.sci, cb.sci) and np.array_equal(ca.dq, cb.dq)
        assert ca.detector == cb.detector and ca.gain == cb.gain


def test_waivered_missing_c1f(tmp_path):
    from drizzleflow.engine.errors import InputFileError
    sci, dq = S.make_exposure(tmp_path / "mef")
    wf = tmp_path / "arch"
    wf.mkdir()
    c0f = mef_to_waivered(sci, wf)
    with pytest.raises(InputFileError, match="ua060502m_c1f.fits"):
        ingest_pairs([c0f], tmp_path / "out")


def test_simulator_waivered_files(tmp_path):
    m2 = pytest.importorskip("drizzleflow.steps.simulate.m2")
    paths = m2.simulate_m2(tmp_path / "sim", seed=2, size=64, nexp=1, waivered=True)
    made = ingest_pairs(paths, tmp_path / "out", updatewcs=True, uref=str(tmp_path / "sim" / "uref"))
    exp = open_exposure(made[0]["sci"])
    assert [c.detector for c in exp.chips] == [1, 2, 3, 4]
    assert all(c.wcs.sip is not None for c in exp.chips)
    with fits.open(paths[0]) as h:
        cube = h[0].data
    np.testing.assert_allclose(exp.chips[2].sci, cube[2].astype(np.float32) * exp.chips[2].gain, rtol=1e-6)


def test_simulator_waivered_logical_keyword(tmp_path):
    """The archive spells logical columns' unit 'LOGICAL-'; they must come back as booleans."""
    m2 = pytest.importorskip("drizzleflow.steps.simulate.m2")
    paths = m2.simulate_m2(tmp_path / "sim", seed=2, size=64, nexp=1, waivered=True)
    made = ingest_pairs(paths, tmp_path / "out")
    with fits.open(made[0]["sci"]) as h:
        assert h[1].header["MIR_REVR"] is True
