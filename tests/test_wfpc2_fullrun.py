"""A full recipe run (ingest with updatewcs -> ... -> drizzle_final) never
modifies an archive input or reference file: sha256 before == after."""
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]


def _sha(paths):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.mark.slow
def test_full_run_leaves_archive_untouched(tmp_path):
    m2 = pytest.importorskip("drizzleflow.steps.simulate.m2")
    arch = tmp_path / "arch"
    m2.simulate_m2(arch, seed=4, size=128, nexp=2)
    inputs = sorted(p for p in arch.rglob("*") if p.is_file() and "truth" not in p.parts)
    assert len([p for p in inputs if p.name.endswith("_c1m.fits")]) == 2 and (arch / "uref").is_dir()
    before = _sha(inputs)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: sha_check\nextends: {ROOT / 'configs' / 'wfpc2_default.yaml'}\n"
                      f"input: \"{arch}/*_c0m.fits\"\nuref: {arch / 'uref'}\noutput: {tmp_path / 'out'}\n"
                      "astrodrizzle: {updatewcs: true}\n")
    exe = Path(sys.executable).with_name("drizzleflow")
    r = subprocess.run([str(exe), "run", "-q", str(recipe)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _sha(inputs) == before
    work = tmp_path / "out" / "work"
    # the run did write to the working copies: CR bits, MDRIZSKY, converted WCS
    h = fits.getheader(work / "ua060502m_c0m.fits", ("SCI", 1))
    assert "MDRIZSKY" in h and h["CTYPE1"] == "RA---TAN-SIP"
    assert "MDRIZSKY" not in fits.getheader(arch / "ua060502m_c0m.fits", ("SCI", 1))
