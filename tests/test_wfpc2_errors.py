"""Every bad input gets one line naming the file and the problem, before any
output is written."""
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits

from drizzleflow.engine.errors import InputFileError, OutputError, ReferenceFileError
from drizzleflow.steps.ingest import ingest_pairs

import wfpc2_synth as S


def _no_output(out):
    """Nothing but (possibly) empty folders under the output directory."""
    if not out.exists():
        return True
    return not [p for p in out.rglob("*") if p.is_file()]


def _one_line(exc):
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_c1m_names_both_files(tmp_path):
    pairs = S.make_set(tmp_path / "arch", 2)
    os.remove(pairs[1][1])
    out = tmp_path / "out"
    with pytest.raises(InputFileError) as exc:
        ingest_pairs([p[0] for p in pairs], out)
    text = _one_line(exc)
    assert "ua060504m_c0m.fits" in text and "ua060504m_c1m.fits" in text and "missing" in text
    assert _no_output(out)  # the first (good) exposure was not copied either


def test_c1m_with_three_groups(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "arch", dq_groups=3)
    out = tmp_path / "out"
    with pytest.raises(InputFileError) as exc:
        ingest_pairs([sci], out)
    text = _one_line(exc)
    assert "ua060502m_c1m.fits" in text and "3 groups" in text and "ua060502m_c0m.fits" in text and "4" in text
    assert _no_output(out)


def test_dq_shape_mismatch(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "arch")
    with fits.open(dq, mode="update") as h:
        h[2].data = np.zeros((32, 64), np.int16)
    with pytest.raises(InputFileError) as exc:
        ingest_pairs([sci], tmp_path / "out")
    text = _one_line(exc)
    assert "group 2" in text and "c1m" in text and "c0m" in text


@pytest.mark.parametrize("which", ["sci", "dq"])
def test_truncated_fits(tmp_path, which):
    sci, dq = S.make_exposure(tmp_path / "arch")
    victim = sci if which == "sci" else dq
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate(size - 5000)
    out = tmp_path / "out"
    with pytest.raises(InputFileError) as exc:
        ingest_pairs([sci], out)
    text = _one_line(exc)
    assert victim.name in text and "truncated" in text
    assert _no_output(out)


def test_not_fits_at_all(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "arch")
    sci.write_bytes(b"this is not a FITS file" * 10)
    with pytest.raises(InputFileError) as exc:
        ingest_pairs([sci], tmp_path / "out")
    assert sci.name in _one_line(exc)


def test_nan_is_not_an_error(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "arch", nan=True)
    made = ingest_pairs([sci], tmp_path / "out")
    assert len(made) == 1 and os.path.exists(made[0]["sci"])


def test_unknown_instrument(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "arch", instrume="ACS")
    out = tmp_path / "out"
    with pytest.raises(InputFileError) as exc:
        ingest_pairs([sci], out)
    text = _one_line(exc)
    assert sci.name in text and "INSTRUME" in text and "ACS" in text
    assert _no_output(out)


def test_missing_reference_file(tmp_path):
    uref = S.write_references(tmp_path / "uref")
    os.remove(uref / "synth_off.fits")
    pairs = S.make_set(tmp_path / "arch", 2)
    out = tmp_path / "out"
    with pytest.raises(ReferenceFileError) as exc:
        ingest_pairs([p[0] for p in pairs], out, updatewcs=True, uref=str(uref))
    text = _one_line(exc)
    assert "OFFTAB" in text and "synth_off.fits" in text and str(uref) in text
    assert _no_output(out)


def test_uref_not_set(tmp_path, monkeypatch):
    monkeypatch.delenv("uref", raising=False)
    sci, dq = S.make_exposure(tmp_path / "arch")
    with pytest.raises(ReferenceFileError) as exc:
        ingest_pairs([sci], tmp_path / "out", updatewcs=True)
    text = _one_line(exc)
    assert "IDCTAB" in text and "uref" in text


def test_uref_from_environment(tmp_path, monkeypatch):
    uref = S.write_references(tmp_path / "uref")
    monkeypatch.setenv("uref", str(uref))
    sci, dq = S.make_exposure(tmp_path / "arch")
    made = ingest_pairs([sci], tmp_path / "out", updatewcs=True)
    assert "A_ORDER" in fits.getheader(made[0]["sci"], 1)


def test_unwritable_output_directory(tmp_path):
    """The output folder's parent is a regular file: the directory cannot exist
    (root ignores permission bits, so chmod would not make an honest test)."""
    sci, dq = S.make_exposure(tmp_path / "arch")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OutputError) as exc:
        ingest_pairs([sci], blocker / "out")
    text = _one_line(exc)
    assert "blocker" in text
    assert blocker.read_text() == "a file, not a folder"


def test_inputs_inside_work_folder_are_refused(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "arch")
    made = ingest_pairs([sci], tmp_path / "out")
    with pytest.raises(InputFileError, match="working folder"):
        ingest_pairs([made[0]["sci"]], tmp_path / "out")


def test_duplicate_rootnames(tmp_path):
    a, _ = S.make_exposure(tmp_path / "a")
    b, _ = S.make_exposure(tmp_path / "b")
    with pytest.raises(InputFileError, match="same rootname"):
        ingest_pairs([a, b], tmp_path / "out")
    shutil.rmtree(tmp_path / "a")


def test_truncated_inside_header(tmp_path):
    sci, dq = S.make_exposure(tmp_path / "arch")
    sci.write_bytes(sci.read_bytes()[:1000])
    with pytest.raises(InputFileError) as exc:
        ingest_pairs([sci], tmp_path / "out")
    text = _one_line(exc)
    assert sci.name in text and "truncated" in text
