"""The tutorial recipe through the engine (runner, cache, CLI errors) on a tiny
simulated set (3 exposures of 128² chips)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from drizzleflow.engine.recipe import load_recipe
from drizzleflow.engine.runner import run_recipe

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _recipe(tmp_path, extra=""):
    text = (CONFIGS / "m2_tutorial.yaml").read_text()
    text = text.replace("extends: wfpc2_default.yaml", f"extends: {CONFIGS / 'wfpc2_default.yaml'}")
    text = text.replace("input: {simulate: m2, seed: 1}", "input: {simulate: m2, seed: 1, size: 128, nexp: 3}")
    p = tmp_path / "tiny_tutorial.yaml"
    p.write_text(text + extra)
    return p


def test_configs_load_with_tutorial_values():
    r = load_recipe(CONFIGS / "m2_tutorial.yaml")
    assert [s.name for s in r.steps] == ["ingest", "static_mask", "sky", "drizzle_separate", "median",
                                         "blot", "cosmic_rays", "drizzle_final"]
    assert r.step("drizzle_separate").params.fillval == 99999
    assert r.step("drizzle_separate").params.bits == [8, 1024]
    assert r.step("median").params.combine_type == "minmed"
    assert r.step("cosmic_rays").params.snr == [5.5, 3.5] and r.step("cosmic_rays").params.corr
    fin = r.step("drizzle_final").params
    assert (fin.wht_type, fin.wt_scl, fin.pixfrac, fin.fillval, fin.bits) == ("EXP", "exptime", 1.0, 99999, [8, 1024])
    assert fin.scale is None  # default: the PC scale (tutorial note III)
    med = load_recipe(CONFIGS / "m2_median.yaml").step("median").params
    assert med.combine_type == "median" and med.hthresh == 90000
    wf = load_recipe(CONFIGS / "m2_wfscale.yaml")
    assert wf.step("drizzle_final").params.scale == 0.1 and wf.step("drizzle_separate").params.scale == 0.1


def test_runner_products_and_cached_rerun(tmp_path):
    recipe = load_recipe(_recipe(tmp_path))
    run_recipe(recipe, tmp_path / "out")
    out = tmp_path / "out"
    for k in ("sci", "wht", "ctx"):
        assert (out / f"final_drz_{k}.fits").exists()
    sci = fits.getdata(out / "final_drz_sci.fits")
    wht = fits.getdata(out / "final_drz_wht.fits")
    assert np.isfinite(sci).all() and (sci[wht == 0] == 99999).all()
    assert len(list((out / "work").glob("*_crclean.fits"))) == 3
    # only drizzle_final.pixfrac changed: every other step comes from the cache
    recipe2 = load_recipe(_recipe(tmp_path), overrides=["drizzle_final.pixfrac=0.7"])
    res2 = run_recipe(recipe2, out)
    status = {s.name: s.status for s in res2.steps}
    assert status.pop("drizzle_final") == "ran"
    assert set(status.values()) == {"cached"}
    assert fits.getval(out / "final_drz_sci.fits", "D001PIXF") == 0.7
    # another pixfrac in a fresh process: the kept inputs (chain/final_inputs) serve
    # it, so it reads no exposure and never imports astropy.wcs (nor coordinates)
    code = ("import sys; from drizzleflow.engine.cli import main; "
            f"rc = main(['run', {str(_recipe(tmp_path))!r}, '--output', {str(out)!r}, '-q', "
            "'drizzle_final.pixfrac=0.6']); "
            "print('wcs modules:', sorted(m for m in sys.modules if m.startswith(('astropy.wcs', "
            "'astropy.coordinates')))); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "wcs modules: []"
    assert "read back from chain/final_inputs" in (out / "drizzleflow.log").read_text()
    assert fits.getval(out / "final_drz_sci.fits", "D001PIXF") == 0.6


def _cli(*args, cwd):
    exe = Path(sys.executable).with_name("drizzleflow")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("override,message", [
    ("median.combine_type=average", "combine_type"),
    ("final_pixfrac=0", "pixfrac"),
    ("drizzle_final.wht_type=ERR", "ERR array"),
])
def test_bad_parameters_rejected_when_loading(tmp_path, override, message):
    from drizzleflow.engine.errors import RecipeError
    with pytest.raises(RecipeError, match=message):
        load_recipe(_recipe(tmp_path), overrides=[override])


def test_bad_parameter_is_a_one_line_cli_error(tmp_path):
    r = _cli("run", _recipe(tmp_path), "--output", tmp_path / "bad", "median.combine_type=average", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "combine_type" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad" / "work").exists()


def test_oversized_grid_needs_force(tmp_path):
    r = _cli("run", _recipe(tmp_path), "--output", tmp_path / "big", "drizzle_separate.scale=0.0005",
             cwd=tmp_path)
    assert r.returncode == 2 and "20000 x 20000" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "big" / "chain" / "single").exists()  # refused before drizzling
