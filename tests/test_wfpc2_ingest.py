"""The ingest step and the working-copy helpers: archive inputs are never
modified, products point at the working copies, later steps write through
atomic helpers; plus the ``info`` command."""
import argparse
import hashlib
import multiprocessing as mp
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from drizzleflow.engine.errors import InputFileError, OutputError
from drizzleflow.steps import ingest as ingest_module
from drizzleflow.engine.step import Context
from drizzleflow.steps.info import catfits_lines, hselect_lines, register
from drizzleflow.steps.ingest import Ingest, IngestParams
from drizzleflow.steps.instruments.wfpc2 import open_exposure, set_sci_keywords, update_chip_wcs, write_dq
from drizzleflow.steps.wcs_tools import wcscorr

import wfpc2_synth as S


def _sha(paths):
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _run_ingest(tmp_path, inputs, out="out", **params):
    ctx = Context(outdir=tmp_path / out, inputs=[Path(p) for p in inputs],
                  options={"uref": str(tmp_path / "uref")})
    Ingest().run(ctx, IngestParams(**params))
    return ctx


def test_step_product_and_archive_untouched(tmp_path):
    S.write_references(tmp_path / "uref")
    pairs = S.make_set(tmp_path / "arch", 2)
    archive = [p for pair in pairs for p in pair] + sorted((tmp_path / "uref").iterdir())
    before = _sha(archive)
    ctx = _run_ingest(tmp_path, [p[0] for p in pairs], updatewcs=True)
    exps = ctx.get("exposures")
    assert [e["root"] for e in exps] == ["ua060502m", "ua060504m"]
    assert exps[0]["sci"] == "work/ua060502m_c0m.fits" and exps[0]["dq"] == "work/ua060502m_c1m.fits"
    assert exps[0]["nchips"] == 4 and exps[0]["source"] == str(pairs[0][0])
    # later steps write through the helpers
    exp = open_exposure(ctx.abs(exps[0]["sci"]), ctx.abs(exps[0]["dq"]))
    dq = exp.chips[0].dq.copy()
    dq[5, 5] |= 4096
    write_dq(exp, 1, dq)
    set_sci_keywords(exp, {1: {"MDRIZSKY": (3.5, "sky subtracted (DN)")}, 2: {"MDRIZSKY": 4.0}})
    w = exp.chips[2].wcs.deepcopy()
    w.wcs.crval = w.wcs.crval + [1e-5, 0]
    update_chip_wcs(exp, 3, w, wcsname="TWEAK", descrip="test shift")
    assert _sha(archive) == before
    exp2 = open_exposure(ctx.abs(exps[0]["sci"]))
    assert exp2.chips[0].dq[5, 5] & 4096
    assert exp2.chips[0].header["MDRIZSKY"] == 3.5 and exp2.chips[1].header["MDRIZSKY"] == 4.0
    h = exp2.chips[2].header
    assert h["WCSNAME"] == "TWEAK" and h["CRVAL1"] == pytest.approx(w.wcs.crval[0], abs=1e-12)
    assert "A_ORDER" in h and h["D2IMDIS2"] == "Lookup"  # distortion kept
    keys = [k for k in "ABCDEFGHIJKLMNPQRSTUVWXYZ" if h.get(f"WCSNAME{k}") == "IDC_synth"]
    assert keys  # previous solution archived under an alternate key
    with fits.open(ctx.abs(exps[0]["sci"])) as hd:
        assert wcscorr.read_rows(hd)[-1]["WCS_ID"] == "TWEAK"
    # the DQ working copy keeps int16 like the archive
    assert fits.getdata(ctx.abs(exps[0]["dq"]), 1).dtype.kind == "i"


def test_resetbits_clears_cr_flags_in_copy_only(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "arch")
    ctx = _run_ingest(tmp_path, [sci])
    work = ctx.abs(ctx.get("exposures")[0]["dq"])
    assert fits.getdata(work, 1)[30, 31] == 0          # 4096 reset (default resetbits)
    assert fits.getdata(dq, 1)[30, 31] == 4096          # archive keeps it
    assert fits.getdata(work, 1)[20, 20] == 1024
    ctx = _run_ingest(tmp_path, [sci], resetbits=0)
    assert fits.getdata(ctx.abs(ctx.get("exposures")[0]["dq"]), 1)[30, 31] == 4096


def test_helpers_refuse_archive_files(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "arch")
    before = _sha([sci, dq])
    with pytest.raises(OutputError, match="not a drizzleflow working copy"):
        write_dq(dq, 1, np.zeros((S.N, S.N), np.uint16))
    with pytest.raises(OutputError):
        set_sci_keywords(sci, 1, {"MDRIZSKY": 1.0})
    with pytest.raises(OutputError):
        update_chip_wcs(sci, 1, WCS(fits.getheader(sci, 1)), wcsname="X")
    assert _sha([sci, dq]) == before


def test_params_validation():
    with pytest.raises(ValueError):
        IngestParams(resetbits="8,x")
    with pytest.raises(ValueError):
        IngestParams(unknown=1)
    assert IngestParams(resetbits="~4").resetbits == "~4"


def test_info_lists_extensions_and_keywords(tmp_path, capsys):
    S.write_references(tmp_path / "uref")
    sci, dq = S.make_exposure(tmp_path / "arch")
    ctx = _run_ingest(tmp_path, [sci], updatewcs=True)
    work = ctx.abs(ctx.get("exposures")[0]["sci"])
    lines = catfits_lines(work)
    assert lines[0].startswith("EXT#")
    assert any(" SCI " in line and "64x64" in line and "-32" in line for line in lines)
    assert any("D2IMARR" in line for line in lines) and any("WCSCORR" in line and "24Fx" in line for line in lines)
    rows = hselect_lines(sci, ["linenum", "date-obs", "time-obs", "crval1", "crval2"])
    assert len(rows) == 4
    assert rows[0].startswith("ua060502m_c0m.fits[1] 05.002 2007-08-01 13:51:16 ")
    assert float(rows[0].split()[4]) == fits.getval(sci, "CRVAL1", 1)
    ap = argparse.ArgumentParser()
    register(ap.add_subparsers())
    args = ap.parse_args(["info", str(sci), str(tmp_path / "missing_c0m.fits"), "-k", "detector"])
    assert args.func(args) == 2
    out, err = capsys.readouterr()
    assert "ua060502m_c0m.fits[4] 4" in out and "missing_c0m.fits" in err and "not found" in err


def test_repeated_wcs_updates_keep_every_solution(tmp_path):
    S.write_references(tmp_path / "uref")
    sci, dq = S.make_exposure(tmp_path / "arch")
    ctx = _run_ingest(tmp_path, [sci], updatewcs=True)
    path = ctx.abs(ctx.get("exposures")[0]["sci"])
    crvals = []
    for step in range(3):
        with fits.open(path) as h:
            w = WCS(h["SCI", 1].header, h)
        w.wcs.crval = w.wcs.crval + [1e-5, 0]
        crvals.append(w.wcs.crval[0])
        update_chip_wcs(path, 1, w, wcsname="TWEAK")
    h = fits.getheader(path, ("SCI", 1))
    from drizzleflow.steps.wcs_tools.altwcs import wcs_names
    names = sorted(wcs_names(h).values())
    assert names == sorted(["TWEAK", "OPUS", "IDC_synth", "TWEAK", "TWEAK-2"])
    assert h["CRVAL1"] == pytest.approx(crvals[-1], abs=1e-12)


def test_info_on_waivered_file_lists_groups(tmp_path):
    from drizzleflow.steps.instruments.wfpc2 import mef_to_waivered
    sci, dq = S.make_exposure(tmp_path / "mef")
    (tmp_path / "w").mkdir()
    c0f = mef_to_waivered(sci, tmp_path / "w")
    rows = hselect_lines(c0f, ["linenum", "detector", "crval1"])
    assert [r.split()[0] for r in rows] == [f"ua060502m_c0f.fits[{g}]" for g in (1, 2, 3, 4)]
    assert [int(r.split()[2]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[2].split()[3]) == fits.getval(sci, "CRVAL1", ("SCI", 3))
    assert any("64x64x4" in line for line in catfits_lines(c0f))



_REAL_PREPARE = ingest_module._prepare


def _spy_prepare(pair, *args):
    """Module-level (worker processes get functions by name): notes which process made the copy."""
    Path(os.environ["DF_TEST_PIDS"], f"pid_{pair.root}").write_text(str(os.getpid()))
    return _REAL_PREPARE(pair, *args)


def _broken_prepare(pair, *args):
    if pair.root == "ua060504m":
        raise InputFileError(pair.dq, "DQ data unit unreadable")
    return _REAL_PREPARE(pair, *args)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="no fork here")
def test_worker_processes_write_the_bytes_of_one_pair_at_a_time(tmp_path, monkeypatch):
    """Several pairs go to forked worker processes (when the process has no other
    thread); the working copies are the same bytes as made here in turn, and a
    pair that fails in a worker fails the step with its own error and leaves no
    working folder behind."""
    S.write_references(tmp_path / "uref")
    pairs = S.make_set(tmp_path / "arch", 3)
    roots = [p[0].name[:9] for p in pairs]
    monkeypatch.setenv("DF_TEST_PIDS", str(tmp_path))
    monkeypatch.setattr(ingest_module, "_prepare", _spy_prepare)

    def makers():
        return {int((tmp_path / f"pid_{r}").read_text()) for r in roots}

    monkeypatch.setattr(ingest_module, "core_threads", lambda: 2)
    # a thread left by an earlier test (Dask keeps one) would rightly stop the fork
    monkeypatch.setattr(ingest_module.threading, "active_count", lambda: 1)
    ctx = _run_ingest(tmp_path, [p[0] for p in pairs], out="a", updatewcs=True)
    assert os.getpid() not in makers()            # made in worker processes
    monkeypatch.setattr(ingest_module, "core_threads", lambda: 1)
    ref = _run_ingest(tmp_path, [p[0] for p in pairs], out="b", updatewcs=True)
    assert makers() == {os.getpid()}              # made here, in turn
    monkeypatch.undo()
    monkeypatch.setenv("DF_TEST_PIDS", str(tmp_path))
    monkeypatch.setattr(ingest_module, "_prepare", _spy_prepare)
    monkeypatch.setattr(ingest_module, "core_threads", lambda: 2)
    other = threading.Event()
    t = threading.Thread(target=other.wait)
    t.start()
    try:
        _run_ingest(tmp_path, [p[0] for p in pairs], out="d", updatewcs=True)
    finally:
        other.set()
        t.join()
    assert makers() == {os.getpid()}              # another thread is running: no fork
    for a, b in zip(ctx.get("exposures"), ref.get("exposures")):
        for key in ("sci", "dq"):
            assert Path(ctx.abs(a[key])).read_bytes() == Path(ref.abs(b[key])).read_bytes()

    monkeypatch.setattr(ingest_module, "_prepare", _broken_prepare)
    monkeypatch.setattr(ingest_module.threading, "active_count", lambda: 1)
    with pytest.raises(InputFileError, match="ua060504m_c1m.fits: DQ data unit unreadable"):
        _run_ingest(tmp_path, [p[0] for p in pairs], out="c", updatewcs=True)
    assert not (tmp_path / "c" / "work").exists()
