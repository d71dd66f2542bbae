"""Headerlets: create, write, attach, list, apply as primary (the tutorial's
HDRNAME check), and interoperability with stwcs where it is installed."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from drizzleflow.engine.errors import InputFileError
from drizzleflow.steps.ingest import ingest_pairs
from drizzleflow.steps.instruments.wfpc2 import update_chip_wcs
from drizzleflow.steps.wcs_tools import altwcs, wcscorr
from drizzleflow.steps.wcs_tools.headerlet import (apply_headerlet_as_primary, attach_headerlet,
                                                   create_headerlet, headerlet_name, list_headerlets,
                                                   read_headerlet, write_headerlet)

import wfpc2_synth as S


@pytest.fixture
def converted(tmp_path):
    S.write_references(tmp_path / "uref")
    pairs = S.make_set(tmp_path / "arch", 2)
    made = ingest_pairs([p[0] for p in pairs], tmp_path / "out", updatewcs=True, uref=str(tmp_path / "uref"))
    return [Path(m["sci"]) for m in made]


def _shifted(path, dra=2e-5):
    """A 'tweaked' copy of the solution: every chip shifted in RA."""
    out = path.with_name("tweaked_" + path.name)
    shutil.copy(path, out)
    with fits.open(out, mode="update") as h:
        h[0].header["DFWORK"] = True
        for i in range(1, 5):
            h["SCI", i].header["CRVAL1"] += dra
    return out


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
def test_create_write_read(converted, tmp_path):
    hl = create_headerlet(converted[0], "test1", wcsname="TWEAK", descrip="aligned", nmatch=42, catalog="GAIA")
    path = write_headerlet(hl, tmp_path / headerlet_name(converted[0]))
    assert path.name == "ua060502m_c0m_hlet.fits"
    back = read_headerlet(path)
    ph = back[0].header
    assert ph["HDRNAME"] == "test1" and ph["WCSNAME"] == "TWEAK" and ph["DESTIM"] == "UA060502M"
    assert ph["DISTNAME"] == "ua060502m_synth-NOMODEL-ua060502m" and ph["NMATCH"] == 42
    sip = [h for h in back if h.name == "SIPWCS"]
    assert [h.header["TG_EVER"] for h in sip] == [1, 2, 3, 4] and all(h.header["TG_ENAME"] == "SCI" for h in sip)
    assert sum(h.name == "D2IMARR" for h in back) == 4
    # the headerlet's chip WCS equals the image's (including SIP and D2IM)
    with fits.open(converted[0]) as img:
        w_img = WCS(img["SCI", 2].header, img)
    w_hl = WCS(back["SIPWCS", 2].header, back)
    pix = np.array([[1.0, 1.0], [40.0, 60.0]])
    assert np.array_equal(w_img.all_pix2world(pix, 0), w_hl.all_pix2world(pix, 0))
    with pytest.raises(InputFileError, match="not a headerlet"):
        read_headerlet(converted[0])


def test_apply_as_primary_tutorial_check(converted, tmp_path):
    """As in the tutorial: headerlets named test1 applied to every image; then
    HDRNAME is test1 in every SCI header and the WCS is the new one."""
    for img in converted:
        tweaked = _shifted(img)
        write_headerlet(create_headerlet(tweaked, "test1", wcsname="TWEAK"), tmp_path / headerlet_name(img))
    for img in converted:
        with fits.open(img) as h:
            old = {i: dict(h["SCI", i].header) for i in range(1, 5)}
        apply_headerlet_as_primary(img, tmp_path / headerlet_name(img), force=True)
        with fits.open(img) as h:
            for i in range(1, 5):
                hdr = h["SCI", i].header
                assert hdr["HDRNAME"] == "test1"
                assert hdr["WCSNAME"] == "TWEAK"
                assert hdr["CRVAL1"] == pytest.approx(old[i]["CRVAL1"] + 2e-5, abs=1e-12)
                assert hdr["A_2_0"] == old[i]["A_2_0"] and hdr["D2IMDIS2"] == "Lookup"
                key = altwcs.name_to_key(hdr, "IDC_synth")       # previous primary archived
                assert key and hdr[f"CRVAL1{key}"] == old[i]["CRVAL1"]
                assert hdr["CRVAL1O"] == old[i]["CRVAL1O"]        # OPUS copy untouched
            rows = wcscorr.read_rows(h)
            assert [r["HDRNAME"] for r in rows[-4:]] == ["test1"] * 4
            assert [d["hdrname"] for d in list_headerlets(h)] == ["test1"]


def test_attach_and_refusals(converted, tmp_path):
    img = converted[0]
    hl = create_headerlet(img, "sol_a")
    attach_headerlet(img, hl)
    attach_headerlet(img, create_headerlet(img, "sol_b"))
    names = list_headerlets(img)
    assert [d["hdrname"] for d in names] == ["sol_a", "sol_b"] and [d["extver"] for d in names] == [1, 2]
    with fits.open(img) as h:
        assert h[("HDRLET", 1)].header["XTENSION"] == "HDRLET"
        inner = h[("HDRLET", 2)].hdulist
        assert inner[0].header["HDRNAME"] == "sol_b"
    with pytest.raises(InputFileError, match="already attached"):
        attach_headerlet(img, hl)
    other = create_headerlet(converted[1], "for_other")
    with pytest.raises(InputFileError, match="is for"):
        apply_headerlet_as_primary(img, other)
    with fits.open(converted[0]) as h:
        assert "HDRNAME" not in h["SCI", 1].header


def test_update_chip_wcs_then_headerlet_round_trip(converted, tmp_path):
    img = converted[0]
    with fits.open(img) as h:
        w = WCS(h["SCI", 3].header, h)
    w.wcs.crval = w.wcs.crval + [0, 3e-5]
    update_chip_wcs(img, 3, w, wcsname="TWEAK")
    hl = create_headerlet(img, "after_tweak")
    assert hl["SIPWCS", 3].header["CRVAL2"] == pytest.approx(w.wcs.crval[1], abs=1e-12)
    assert hl[0].header["WCSNAME"] == "IDC_synth"  # default: chip 1's WCSNAME


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
@pytest.mark.filterwarnings("ignore:Some non-standard WCS keywords")
def test_stwcs_applies_our_headerlet_like_we_do(converted, tmp_path):
    """stwcs's apply_headerlet_as_primary on our files and headerlets gives the same
    WCS as ours, and stwcs lists a headerlet we attached."""
    stwcs_headerlet = pytest.importorskip("stwcs.wcsutil.headerlet")
    img = converted[0]
    tweaked = _shifted(img)
    hlet = write_headerlet(create_headerlet(tweaked, "test1", wcsname="TWEAK"), tmp_path / "h_hlet.fits")
    theirs = tmp_path / "theirs_c0m.fits"
    shutil.copy(img, theirs)
    attach_headerlet(img, create_headerlet(img, "attached_one"))
    stwcs_headerlet.apply_headerlet_as_primary(str(theirs), str(hlet), force=True)
    assert stwcs_headerlet.get_headerlet_kw_names(str(img)) == ["attached_one"]
    ours = tmp_path / "ours_c0m.fits"
    shutil.copy(img, ours)
    apply_headerlet_as_primary(ours, hlet, force=True)
    pix = np.array([[0.0, 0.0], [63.0, 63.0], [12.0, 45.0]])
    with fits.open(theirs) as a, fits.open(ours) as b:
        for i in range(1, 5):
            assert a["SCI", i].header["HDRNAME"] == "test1"
            wa, wb = WCS(a["SCI", i].header, a), WCS(b["SCI", i].header, b)
            np.testing.assert_allclose(wa.all_pix2world(pix, 0), wb.all_pix2world(pix, 0), rtol=0, atol=1e-11)


def test_stwcs_reader_accepts_ours_in_process(converted, tmp_path):
    """stwcs (test extra) opens our headerlet file and the HDRLET extension we attach."""
    stwcs_headerlet = pytest.importorskip("stwcs.wcsutil.headerlet")
    img = converted[0]
    path = write_headerlet(create_headerlet(img, "test1", wcsname="TWEAK"), tmp_path / "x_hlet.fits")
    h = stwcs_headerlet.Headerlet.fromfile(str(path))
    assert h[0].header["HDRNAME"] == "test1" and h[0].header["DESTIM"] == "UA060502M"
    attach_headerlet(img, path)
    assert stwcs_headerlet.get_headerlet_kw_names(str(img)) == ["test1"]
    assert stwcs_headerlet.find_headerlet_HDUs(str(img), hdrname="test1") != []


def test_headerlet_command(converted, tmp_path, capsys):
    import argparse
    from drizzleflow.steps.wcs_tools.cli import register
    ap = argparse.ArgumentParser()
    register(ap.add_subparsers())

    def run(*argv):
        args = ap.parse_args(["headerlet", *map(str, argv)])
        return args.func(args)

    assert run("create", *converted, "--hdrname", "test1", "-o", tmp_path) == 0
    hlets = [tmp_path / "ua060502m_c0m_hlet.fits", tmp_path / "ua060504m_c0m_hlet.fits"]
    assert all(h.exists() for h in hlets)
    for img, hl in zip(converted, hlets):
        assert run("apply", img, hl, "--force") == 0
        assert [fits.getval(img, "HDRNAME", ("SCI", i)) for i in range(1, 5)] == ["test1"] * 4
    capsys.readouterr()
    assert run("list", converted[0]) == 0
    assert "test1" in capsys.readouterr().out
    archive = tmp_path / "arch" / "ua060502m_c0m.fits"
    before = archive.read_bytes()
    assert run("apply", archive, hlets[0], "--force") == 2
    assert "not a drizzleflow working copy" in capsys.readouterr().err
    assert archive.read_bytes() == before
