"""Recipes that cannot succeed stop before any step writes a product (issue 6, bad
input): an output grid beyond the 20k x 20k bound, and exposures that share no sky.
Ingest's worker processes convert while the later steps are checked
(``Step.preflight_in_run``): a failed check stops them and removes their copies."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

RECIPE = """\
extends: {base}
input: "{data}/*_c0m.fits"
uref: {data}/uref
output: out
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from drizzleflow.steps.simulate.m2 import simulate_m2
    d = tmp_path_factory.mktemp("pre") / "data"
    simulate_m2(d, seed=3, size=64, nexp=2)
    return d


def _run(work, data, *overrides):
    base = Path(__file__).resolve().parents[1] / "configs" / "wfpc2_default.yaml"
    (work / "r.yaml").write_text(RECIPE.format(base=base, data=data))
    cmd = [sys.executable, "-m", "drizzleflow.engine.cli", "run", "r.yaml", "-q", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=work)


def test_huge_grid_refused_before_any_copy(sim, tmp_path):
    p = _run(tmp_path, sim, "drizzle_final.scale=0.0002")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "step 'drizzle_final': output grid" in p.stderr and "force" in p.stderr
    left = sorted(f.name for f in (tmp_path / "out").iterdir())
    assert left == ["drizzleflow.log", "manifest.json", "recipe.resolved.yaml"], left
    log = (tmp_path / "out" / "drizzleflow.log").read_text()
    assert "step ingest (ingest) v1" in log and "step ingest (ingest): done" not in log


def test_exposures_without_overlap_refused_before_any_copy(sim, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sim, data)
    moved = sorted(data.glob("*_c0m.fits"))[1]
    with fits.open(moved, mode="update") as h:       # a copy: point it a minute of arc away
        for ext in h[1:]:
            if ext.header.get("EXTNAME") == "SCI":
                ext.header["CRVAL2"] += 60 / 3600
    p = _run(tmp_path, data)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "inputs with no overlap" in p.stderr and "overlaps no other exposure" in p.stderr
    assert not (tmp_path / "out" / "work").exists()

