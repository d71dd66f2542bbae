"""WFPC2 readers: units, gains, DQ, NaN handling, bit expressions, WCS content."""
import numpy as np
import pytest
from astropy.io import fits

from drizzleflow.engine.errors import InputFileError
from drizzleflow.steps.ingest import ingest_pairs
from drizzleflow.steps.instruments.bits import bits_mask, good_mask
from drizzleflow.steps.instruments.wfpc2 import GAIN_TABLE, NAN_BIT, dq_partner, open_exposure

import wfpc2_synth as S


def test_bits_expressions():
    assert bits_mask("8,1024") == 1032
    assert bits_mask("8+1024") == 1032
    assert bits_mask(1032) == 1032
    assert bits_mask(None) is None and bits_mask("None") is None
    assert bits_mask("~4") == 0xFFFF & ~4
    dq = np.array([0, 8, 1024, 1032, 4, 12], np.uint16)
    assert good_mask(dq, "8,1024").tolist() == [True, True, True, True, False, False]
    assert good_mask(dq, "~4").tolist() == [True, True, True, True, False, False]
    assert good_mask(dq, None).all()
    assert good_mask(dq, 0).tolist() == [True, False, False, False, False, False]
    with pytest.raises(ValueError):
        bits_mask("8,abc")


def test_dq_partner_names():
    assert dq_partner("/a/ua060502m_c0m.fits").name == "ua060502m_c1m.fits"
    assert dq_partner("ua060502m_c0f.fits").name == "ua060502m_c1f.fits"
    with pytest.raises(InputFileError, match="not a WFPC2 science file name"):
        dq_partner("image.fits")


@pytest.mark.parametrize("atod", [7, 15])
def test_open_exposure_units_and_constants(tmp_path, atod):
    sci, dq = S.make_exposure(tmp_path, atodgain=float(atod))
    exp = open_exposure(sci)
    raw = fits.getdata(sci, ("SCI", 2)).astype(np.float64)
    chip = exp.chips[1]
    assert chip.detector == 2
    assert chip.gain == GAIN_TABLE[atod][2][0] and chip.rdnoise == GAIN_TABLE[atod][2][1]
    assert chip.sci.dtype == np.float32 and chip.sci.dtype.isnative and chip.sci.flags.c_contiguous
    np.testing.assert_allclose(chip.sci, raw * chip.gain, rtol=1e-6)
    assert chip.dq.dtype == np.uint16
    assert chip.dq[20, 20] == 1024 and chip.dq[30, 31] == 4096 and chip.dq[0, 0] == 2
    assert chip.exptime == 10.0
    hdr_photflam = fits.getval(sci, "PHOTFLAM", ("SCI", 2))
    assert chip.photflam == pytest.approx(hdr_photflam / chip.gain)
    assert exp.chips[0].pscale == pytest.approx(0.0455, rel=1e-3)   # from the CD matrix (old format)
    assert exp.chips[2].pscale == pytest.approx(0.0996, rel=1e-3)
    # ignore_bits clears flags on reading
    assert open_exposure(sci, ignore_bits=4096).chips[1].dq[30, 31] == 0


def test_nan_pixels_are_bad_not_errors(tmp_path):
    sci, dq = S.make_exposure(tmp_path, nan=True)
    exp = open_exposure(sci)
    chip = exp.chips[1]
    assert chip.sci[3, 5] == 0.0 and chip.sci[10, 11] == 0.0
    assert chip.dq[3, 5] & NAN_BIT and chip.dq[10, 11] & NAN_BIT
    assert np.isfinite(chip.sci).all()
    assert int((chip.dq & NAN_BIT).astype(bool).sum()) == 2
    # ingest does the same in the working copies
    made = ingest_pairs([sci], tmp_path / "out")
    w = fits.getdata(made[0]["sci"], ("SCI", 2))
    d = fits.getdata(made[0]["dq"], 2)
    assert np.isfinite(w).all() and d[3, 5] & NAN_BIT


def test_noise_model_in_electrons_flags_few_pixels(tmp_path):
    """Pure sky + read noise in DN -> electrons: a 4-sigma test with the electron noise
    model (rdnoise^2 + signal) flags ~0 pixels.  Applying the gain to data already in
    electrons (DrizzlePac 3.11's WFPC2 CR noise term) would flag a large fraction."""
    sci, dq = S.make_exposure(tmp_path)
    rng = np.random.default_rng(5)
    with fits.open(sci, mode="update") as h:
        for det in range(1, 5):
            g, rn = GAIN_TABLE[7][det]
            sky_e = 20.0
            e = rng.poisson(sky_e, (S.N, S.N)) + rng.normal(0, rn, (S.N, S.N))
            h["SCI", det].data = (e / g).astype(">f4")
    exp = open_exposure(sci)
    for chip in exp.chips:
        sigma = np.sqrt(chip.rdnoise ** 2 + 20.0)
        frac = np.mean(np.abs(chip.sci - 20.0) > 4 * sigma)
        assert frac < 0.002
        wrong = np.sqrt(chip.rdnoise ** 2 + 20.0 / chip.gain) / chip.gain  # gain applied twice
        assert np.mean(np.abs(chip.sci - 20.0) > 4 * wrong) > 0.5


def test_wcs_after_updatewcs_has_sip_and_d2im(tmp_path):
    uref = S.write_references(tmp_path / "uref")
    sci, _ = S.make_exposure(tmp_path / "arch")
    made = ingest_pairs([sci], tmp_path / "out", updatewcs=True, uref=str(uref))
    exp = open_exposure(made[0]["sci"])
    for chip in exp.chips:
        assert chip.wcs.sip is not None and chip.wcs.det2im2 is not None
        assert chip.pscale == pytest.approx(S.SCALES[chip.detector])
        # the lookup table moves y by the 34th-row pattern (row 10 -> table value 10)
        x = np.array([[5.0, 10.0]])
        shifted = chip.wcs.det2im(x, 0)
        assert shifted[0, 1] - 10.0 == pytest.approx(float(S.dgeo_pattern(chip.detector)[10]), abs=1e-6)
