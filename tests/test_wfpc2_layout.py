"""Reading a pair again from its kept layout (parsed headers, pixel offsets):
the same Exposure as a full read, no header parsed, and never a stale file."""
import os

import numpy as np
import pytest
from astropy.io import fits

from drizzleflow.engine.errors import InputFileError
from drizzleflow.steps.chain.common import IdentityCache, chip_wcs_for
from drizzleflow.steps.instruments.wfpc2 import files as wfiles, open_exposure
from drizzleflow.steps.instruments.wfpc2.layout import Span
from drizzleflow.steps.instruments.wfpc2.reader import chip_geometry

import wfpc2_synth as S


def _same(a, b):
    assert [c.extver for c in a.chips] == [c.extver for c in b.chips]
    for x, y in zip(a.chips, b.chips):
        assert x.sci.dtype == y.sci.dtype == np.float32 and x.sci.dtype.isnative
        assert x.dq.dtype == y.dq.dtype == np.uint16
        np.testing.assert_array_equal(x.sci, y.sci)
        np.testing.assert_array_equal(x.dq, y.dq)
        assert (x.detector, x.gain, x.rdnoise, x.exptime, x.pscale, x.photflam) == \
               (y.detector, y.gain, y.rdnoise, y.exptime, y.pscale, y.photflam)
        assert x.header.tostring() == y.header.tostring()
        np.testing.assert_array_equal(x.wcs.all_pix2world([[0, 0], [17.5, 33.25]], 0),
                                      y.wcs.all_pix2world([[0, 0], [17.5, 33.25]], 0))
    assert a.root == b.root and a.primary.tostring() == b.primary.tostring()


def _count_reads(monkeypatch):
    calls = []
    real = wfiles.read_fits

    def counting(path, **kw):
        calls.append(path)
        return real(path, **kw)
    monkeypatch.setattr("drizzleflow.steps.instruments.wfpc2.reader.read_fits", counting)
    return calls


@pytest.mark.parametrize("nan", [False, True])
def test_second_read_takes_pixels_only_and_equals_a_full_read(tmp_path, monkeypatch, nan):
    sci, dq = S.make_exposure(tmp_path, nan=nan)
    calls = _count_reads(monkeypatch)
    layouts = IdentityCache(8)
    first = open_exposure(sci, ignore_bits=4096, wcs_for=chip_wcs_for(sci), layouts=layouts)
    assert len(calls) == 2
    again = open_exposure(sci, ignore_bits=4096, wcs_for=chip_wcs_for(sci), layouts=layouts)
    assert len(calls) == 2                       # served from the layout: no astropy read
    _same(first, again)
    _same(first, open_exposure(sci, ignore_bits=4096))   # and equal to a plain read
    del calls[2:]
    assert again.chips[1].dq[30, 31] == 0 and again.chips[1].dq[20, 20] == 1024
    # the pixels are fresh arrays, not shared between reads
    assert not np.shares_memory(first.chips[0].sci, again.chips[0].sci)
    # a layout without cached WCS opens the file for them
    third = open_exposure(sci, ignore_bits=4096, layouts=layouts)
    assert len(calls) == 2
    _same(first, third)


def test_a_rewritten_file_is_read_in_full_again(tmp_path, monkeypatch):
    sci, dq = S.make_exposure(tmp_path)
    calls = _count_reads(monkeypatch)
    layouts = IdentityCache(8)
    open_exposure(sci, layouts=layouts)
    with fits.open(dq) as h:
        h = fits.HDUList([x.copy() for x in h])
    h[2].data[5, 6] = 8
    h[0].header["HISTORY"] = "a longer header: every later offset moves"
    for _ in range(40):
        h[0].header["HISTORY"] = "padding"
    h.writeto(dq, overwrite=True)
    exp = open_exposure(sci, layouts=layouts)
    assert len(calls) == 4 and exp.chips[1].dq[5, 6] == 8


def test_a_file_replaced_after_the_lookup_is_not_read_from_the_layout(tmp_path):
    """The layout's key is taken before the files are opened; a file replaced in
    between (a new inode) must not be read at the old offsets."""
    sci, dq = S.make_exposure(tmp_path)
    layouts = IdentityCache(8)
    open_exposure(sci, layouts=layouts)
    key = next(k for k in layouts._items if k[0] != "sci")
    assert key[:2] == (str(sci), str(dq))
    layout = layouts.peek(key)
    handles = layout.open(key)
    assert handles is not None
    for fh in handles:
        fh.close()
    with fits.open(dq) as h:
        h = fits.HDUList([x.copy() for x in h])
    h[1].data[3, 3] = 2048
    h.writeto(tmp_path / "new.fits")
    os.replace(tmp_path / "new.fits", dq)
    assert layout.open(key) is None
    assert open_exposure(sci, layouts=layouts).chips[0].dq[3, 3] == 2048


def test_a_hard_link_elsewhere_names_its_own_path(tmp_path, monkeypatch):
    """A sweep point's working copies are hard links of the baseline's: the same
    file, but the steps write through the exposure's paths, so a read through the
    link must not be served as the baseline's exposure."""
    sci, dq = S.make_exposure(tmp_path / "base")
    (tmp_path / "point").mkdir()
    lsci, ldq = tmp_path / "point" / sci.name, tmp_path / "point" / dq.name
    os.link(sci, lsci)
    os.link(dq, ldq)
    layouts = IdentityCache(8)
    base = open_exposure(sci, wcs_for=chip_wcs_for(sci), layouts=layouts)
    point = open_exposure(lsci, wcs_for=chip_wcs_for(lsci), layouts=layouts)
    assert (point.sci_path, point.dq_path) == (lsci, ldq)
    assert (base.sci_path, base.dq_path) == (sci, dq)
    assert chip_geometry(lsci, layouts=layouts)[0].root == base.root
    again = open_exposure(lsci, wcs_for=chip_wcs_for(lsci), layouts=layouts)
    assert again.sci_path == lsci
    _same(point, again)


def test_unsigned_dq_and_scaled_science(tmp_path, monkeypatch):
    sci, dq = S.make_exposure(tmp_path)
    # DQ stored as unsigned 16-bit (BZERO 32768), with the top bit in use
    with fits.open(dq) as h:
        h = fits.HDUList([x.copy() for x in h])
    for e in h[1:]:
        flags = e.data.astype(np.uint16)
        flags[7, 8] = 0x8004
        e.data = flags
    h.writeto(dq, overwrite=True)
    assert fits.getheader(dq, 1)["BZERO"] == 32768
    calls = _count_reads(monkeypatch)
    layouts = IdentityCache(8)
    first = open_exposure(sci, layouts=layouts)
    again = open_exposure(sci, layouts=layouts)
    assert len(calls) == 2 and again.chips[0].dq[7, 8] == 0x8004
    _same(first, again)
    # science stored scaled (BSCALE): no layout is kept, every read goes through astropy
    with fits.open(sci) as h:
        h = fits.HDUList([x.copy() for x in h])
    h[1].scale("int16", bscale=0.01, bzero=50.0)
    h.writeto(sci, overwrite=True)
    first = open_exposure(sci, layouts=layouts)
    again = open_exposure(sci, layouts=layouts)
    assert len(calls) == 6
    _same(first, again)
    # float32 with a BZERO on disk: astropy adds it on reading, so must we; not kept either
    with fits.open(sci) as h:
        h = fits.HDUList([x.copy() for x in h])
    h[2].scale("float32", bzero=5.0)
    h.writeto(sci, overwrite=True)
    first = open_exposure(sci, layouts=layouts)
    again = open_exposure(sci, layouts=layouts)
    assert len(calls) == 10
    _same(first, again)


def test_geometry_from_the_layout(tmp_path, monkeypatch):
    sci, dq = S.make_exposure(tmp_path)
    layouts = IdentityCache(8)
    full = chip_geometry(sci, wcs_for=chip_wcs_for(sci))
    open_exposure(sci, wcs_for=chip_wcs_for(sci), layouts=layouts)
    opened = []
    real_open = fits.open
    monkeypatch.setattr(fits, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    kept = chip_geometry(sci, wcs_for=chip_wcs_for(sci), layouts=layouts)
    assert opened == []                          # headers and WCS from the caches
    assert [(g.root, g.extver, g.detector, g.shape, g.pscale, g.exptime) for g in kept] == \
           [(g.root, g.extver, g.detector, g.shape, g.pscale, g.exptime) for g in full]


def test_span_read_cut_short_names_the_file(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"\0" * 100)
    with open(path, "rb", buffering=0) as fh, pytest.raises(InputFileError, match="short.bin.*cut short"):
        Span(80, (4, 4), ">f4").read(fh, path)
    assert os.path.getsize(path) == 100
