"""Round trips of the WFPC2 reference-file formats and the distortion model."""
import numpy as np
import pytest
from astropy.io import fits

from drizzleflow.engine.errors import ReferenceFileError
from drizzleflow.steps.instruments.wfpc2 import reference_files as rf
from drizzleflow.steps.simulate import geometry as geo


@pytest.fixture(scope="module")
def uref(tmp_path_factory):
    d = tmp_path_factory.mktemp("uref")
    rf.write_idctab(d / "sim_idc.fits", geo.idc_rows())
    rf.write_offtab(d / "sim_off.fits", geo.off_rows())
    rf.write_dgeofile(d / "sim_dxy.fits", geo.row34_table())
    return d


def test_idctab_round_trip(uref):
    rows = rf.read_idctab_rows(uref / "sim_idc.fits")
    assert [r.detchip for r in rows] == [1, 2, 3, 4]
    for got, want in zip(rows, geo.idc_rows()):
        assert got.xref == want.xref and got.yref == want.yref and got.scale == want.scale
        np.testing.assert_array_equal(got.cx, want.cx)
        np.testing.assert_array_equal(got.cy, want.cy)
        assert got.v2ref is None          # positions come from the OFFTAB
    with fits.open(uref / "sim_idc.fits") as h:
        assert h[0].header["NORDER"] == 3
        assert "CX33" in h[1].columns.names and "V2REF" not in h[1].columns.names
    with pytest.raises(ReferenceFileError):
        rf.read_idctab(uref / "sim_idc.fits", 2, filter1="F555W")


def test_offtab_interpolates_between_dates(uref):
    rows = [r for r in geo.off_rows() if r.detchip == 1]
    a, b = rows[3], rows[4]                       # 2005-01-01 .. 2009-06-01
    v2, v3, th = rf.read_offtab(uref / "sim_off.fits", "2007-08-01", 1)
    f = (rf.date_seconds("2007-08-01") - rf.date_seconds(a.obsdate)) / (
        rf.date_seconds(b.obsdate) - rf.date_seconds(a.obsdate))
    assert 0 < f < 1
    assert v2 == pytest.approx(a.v2ref + f * (b.v2ref - a.v2ref), abs=1e-12)
    assert th == pytest.approx(a.theta + f * (b.theta - a.theta), abs=1e-12)
    # exactly on a row date -> that row
    assert rf.read_offtab(uref / "sim_off.fits", a.obsdate, 1)[0] == pytest.approx(a.v2ref)
    model = rf.idc_model(uref / "sim_idc.fits", 1, date="2007-08-01", offtab=uref / "sim_off.fits")
    assert (model.v2ref, model.v3ref, model.theta) == pytest.approx((v2, v3, th))


def test_dgeofile_carries_the_34th_row_table(uref):
    table = geo.row34_table()
    got = rf.read_dgeo_d2im(uref / "sim_dxy.fits", chip=1)
    np.testing.assert_allclose(got, table, atol=1e-7)
    with fits.open(uref / "sim_dxy.fits") as h:
        assert h["DX", 4].data.shape == (800, 800) and not h["DX", 4].data.any()
        assert h["DY", 3].header["DETECTOR"] == 3
    # narrow rows produce a sawtooth: a ~3 % step (split over the two half
    # rows around the narrow row's centre) once every 34 rows
    jumps = np.flatnonzero(np.diff(table) < -0.01)
    assert set(jumps % 34) == {15, 16} and jumps.size == 2 * 24
    assert 0.025 < np.ptp(table) < 0.05
    assert rf.d2im_offset(1.5, table) == pytest.approx(0.5 * (table[0] + table[1]))


def test_polynomial_inverse_and_corner_distortion(uref):
    row = rf.read_idctab(uref / "sim_idc.fits", 3)
    x, y = np.meshgrid(np.linspace(1, 800, 9), np.linspace(1, 800, 9))
    u, v = rf.idc_forward(row, x, y)
    xi, yi = rf.idc_inverse(row, u, v)
    np.testing.assert_allclose(xi, x, atol=1e-8)
    np.testing.assert_allclose(yi, y, atol=1e-8)
    lin_u = row.cx[1, 1] * (x - row.xref) + row.cx[1, 0] * (y - row.yref)
    nonlin = np.abs(u - lin_u) / row.scale
    assert 1.0 < nonlin.max() < 6.0             # a few pixels at the corners


def test_pixel_sky_round_trip_and_chip_layout(uref):
    kw = dict(date="2007-08-01", offtab=uref / "sim_off.fits")
    ref = rf.idc_model(uref / "sim_idc.fits", 3, **kw)
    table = geo.row34_table()
    centres = {}
    for k in range(1, 5):
        row = rf.idc_model(uref / "sim_idc.fits", k, **kw)
        x, y = np.meshgrid(np.linspace(1, 800, 7), np.linspace(1, 800, 7))
        ra, dec = rf.pixel_to_sky(x, y, row, ref, table, 323.3, -0.87, 250.0)
        xb, yb = rf.sky_to_pixel(ra, dec, row, ref, table, 323.3, -0.87, 250.0)
        np.testing.assert_allclose(xb, x, atol=1e-6)
        np.testing.assert_allclose(yb, y, atol=1e-6)
        centres[k] = rf.chip_to_frame(row, ref, *rf.idc_forward(row, 400.5, 400.5))
    # PC is diagonally opposite WF3, WF2 and WF4 beside both
    assert centres[1][0] < 0 and centres[1][1] < 0
    assert centres[3] == pytest.approx(rf.chip_to_frame(ref, ref, *rf.idc_forward(ref, 400.5, 400.5)))
    d = {k: np.hypot(*np.subtract(centres[k], centres[3])) for k in (1, 2, 4)}
    assert 60 < d[2] < 100 and 60 < d[4] < 100 and d[1] > d[2]


def test_uref_prefix(tmp_path, monkeypatch):
    assert rf.resolve_uref("uref$a_idc.fits", tmp_path) == tmp_path / "a_idc.fits"
    monkeypatch.setenv("uref", str(tmp_path))
    assert rf.resolve_uref("uref$b.fits") == tmp_path / "b.fits"
    monkeypatch.delenv("uref")
    with pytest.raises(ReferenceFileError):
        rf.resolve_uref("uref$b.fits")


@pytest.mark.oracle
def test_stwcs_reads_the_same_model(uref):
    """stwcs's own readers (the DrizzlePac side) see the same numbers."""
    mutil = pytest.importorskip("stwcs.distortion.mutil")
    makewcs = pytest.importorskip("stwcs.updatewcs.makewcs")
    for k in range(1, 5):
        fx, fy, refpix, order = mutil.readIDCtab(str(uref / "sim_idc.fits"), chip=k, date="2007-08-01",
                                                 filter1="F814W", filter2="", offtab=str(uref / "sim_off.fits"))
        ours = rf.idc_model(uref / "sim_idc.fits", k, date="2007-08-01", offtab=uref / "sim_off.fits")
        assert order == 3
        np.testing.assert_allclose(fx, ours.cx, rtol=1e-12, atol=0)
        np.testing.assert_allclose(fy, ours.cy, rtol=1e-12, atol=0)
        assert (refpix["XREF"], refpix["YREF"]) == (ours.xref, ours.yref)
        assert refpix["V2REF"] == pytest.approx(ours.v2ref, abs=1e-9)
        assert refpix["V3REF"] == pytest.approx(ours.v3ref, abs=1e-9)
        assert refpix["THETA"] == pytest.approx(ours.theta, abs=1e-9)
    for args in ((214.0357, -0.87, -51.08, -76.76), (10.0, 45.0, 30.0, -200.0), (300.0, -60.0, -5.0, 80.0)):
        assert rf.troll(*args) == pytest.approx(makewcs.troll(*args), abs=1e-9)
