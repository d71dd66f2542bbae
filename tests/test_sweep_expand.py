"""Sweep parsing, expansion and validation (toy steps, real recipe files)."""
import textwrap

import pytest
from pydantic import Field

from drizzleflow.engine import registry
from drizzleflow.engine.errors import RecipeError
from drizzleflow.engine.step import Params, Step
from drizzleflow.engine.sweep import format_points, load_sweep


class _UpParams(Params):
    level: float = Field(1.0, description="toy upstream knob")


class ToyUpstream(Step):
    """toy upstream"""
    name = "toy_upstream"
    Params = _UpParams
    writes = ("up",)

    def run(self, context, params):
        context.put("up", params.level)


class _DrzParams(Params):
    pixfrac: float = Field(1.0, gt=0, le=1, description="drop size")
    scale: float = Field(0.046, gt=0, description="arcsec/pix")


class ToyDrizzle(Step):
    """toy final drizzle"""
    name = "toy_drizzle"
    Params = _DrzParams
    aliases = {"final_pixfrac": "pixfrac", "final_scale": "scale"}
    reads = ("up",)
    writes = ("toy",)

    def run(self, context, params):
        context.put("toy", {"pixfrac": params.pixfrac, "scale": params.scale, "up": context.get("up")})


@pytest.fixture
def toy_steps(monkeypatch):
    reg = registry.steps()
    monkeypatch.setitem(reg, "toy_upstream", ToyUpstream)
    monkeypatch.setitem(reg, "toy_drizzle", ToyDrizzle)
    return reg


@pytest.fixture
def base(tmp_path, toy_steps):
    (tmp_path / "a_c0m.fits").write_bytes(b"x")
    (tmp_path / "base.yaml").write_text(textwrap.dedent("""\
        name: toybase
        input: a_c0m.fits
        output: out
        steps:
          - {name: up, step: toy_upstream}
          - {name: drizzle_final, step: toy_drizzle, params: {pixfrac: 1.0}}
        """))
    return tmp_path


def _sweep(tmp_path, body, name="sw.yaml"):
    p = tmp_path / name
    p.write_text("extends: base.yaml\n" + textwrap.dedent(body))
    return p


def test_grid_expands_cartesian_and_keeps_texts(base):
    p = _sweep(base, """\
        sweep:
          mode: grid
          params:
            drizzle_final.pixfrac: [1.0, 0.90]
            drizzle_final.scale: [0.046, 0.0410, 1e-2]
        metrics: []
        """)
    spec = load_sweep(p, cwd=base)
    names = [pt.name for pt in spec.points]
    assert names == ["pixfrac=1.0,scale=0.046", "pixfrac=1.0,scale=0.0410", "pixfrac=1.0,scale=1e-2",
                     "pixfrac=0.90,scale=0.046", "pixfrac=0.90,scale=0.0410", "pixfrac=0.90,scale=1e-2"]
    rec = spec.points[4].recipe
    assert rec.step("drizzle_final").params.pixfrac == 0.9
    assert rec.step("drizzle_final").params.scale == 0.041
    assert rec.output == base / "out" / "pixfrac=0.90,scale=0.0410"
    assert spec.columns() == ["drizzle_final_pixfrac", "drizzle_final_scale"]


def test_zip_and_rows_and_aliases(base):
    z = load_sweep(_sweep(base, """\
        sweep: {mode: zip, params: {final_pixfrac: [1.0, 0.8], final_scale: [0.046, 0.032]}}
        metrics: []
        """), cwd=base)
    assert [pt.name for pt in z.points] == ["final_pixfrac=1.0,final_scale=0.046", "final_pixfrac=0.8,final_scale=0.032"]
    assert z.points[1].recipe.step("drizzle_final").params.scale == 0.032
    r = load_sweep(_sweep(base, """\
        sweep:
          mode: rows
          rows:
            - {drizzle_final.pixfrac: 1.0, drizzle_final.scale: 0.046}
            - {drizzle_final.pixfrac: 0.7, drizzle_final.scale: 0.046}
            - {drizzle_final.pixfrac: 1, drizzle_final.scale: 0.032}
          baseline: {drizzle_final.pixfrac: 1.0, drizzle_final.scale: 0.046}
        metrics: []
        """), cwd=base)
    assert [pt.name for pt in r.points] == ["pixfrac=1.0,scale=0.046", "pixfrac=0.7,scale=0.046",
                                             "pixfrac=1,scale=0.032"]
    assert r.baseline == 0
    out = format_points(r)
    assert "#001 drizzle_final.pixfrac=0.7 drizzle_final.scale=0.046" in out


def test_zip_length_mismatch_cites_line(base):
    p = _sweep(base, """\
        sweep:
          mode: zip
          params:
            drizzle_final.pixfrac: [1.0, 0.8]
            drizzle_final.scale: [0.046]
        """)
    with pytest.raises(RecipeError) as e:
        load_sweep(p, cwd=base)
    assert f"{p}:6:" in str(e.value) and "zip" in str(e.value)


def test_bad_value_in_a_point_cites_its_own_line(base):
    p = _sweep(base, """\
        sweep:
          mode: rows
          rows:
            - {drizzle_final.pixfrac: 1.0}
            - {drizzle_final.pixfrac: 1.5}
        metrics: []
        """)
    with pytest.raises(RecipeError) as e:
        load_sweep(p, cwd=base)
    msg = str(e.value)
    assert msg.startswith(f"{p}:6:")
    assert "pixfrac" in msg


def test_unknown_param_and_step_are_reported_before_running(base):
    p = _sweep(base, """\
        sweep:
          params:
            drizzle_final.pixfrak: [1.0]
        metrics: []
        """)
    with pytest.raises(RecipeError, match="did you mean `pixfrac`"):
        load_sweep(p, cwd=base)
    p2 = _sweep(base, """\
        sweep:
          mode: grid
          params: {drizzle_final.pixfrac: [1.0]}
        metrics: [psf_fwhmm]
        """, name="sw2.yaml")
    with pytest.raises(RecipeError, match=r"did you mean `psf_fwhm`") as e:
        load_sweep(p2, cwd=base)
    assert f"{p2}:5:" in str(e.value)


def test_metric_params_validated(base):
    p = _sweep(base, """\
        sweep: {params: {drizzle_final.pixfrac: [1.0]}}
        metrics:
          - step: weight_stats
          - {step: psf_fwhm, params: {thresh: -1}}
        """)
    with pytest.raises(RecipeError) as e:
        load_sweep(p, cwd=base)
    assert f"{p}:5:" in str(e.value) and "psf_fwhm.thresh" in str(e.value)
    p.write_text(p.read_text().replace("thresh: -1", "thresh: 8"))
    spec = load_sweep(p, cwd=base)
    steps = [s.name for s in spec.points[0].recipe.steps]
    assert steps == ["up", "drizzle_final", "weight_stats", "psf_fwhm"]


def test_exclude_duplicates_and_max_points(base):
    spec = load_sweep(_sweep(base, """\
        sweep:
          params: {drizzle_final.pixfrac: [1.0, 0.9], drizzle_final.scale: [0.046, 0.041]}
          exclude: [{drizzle_final.pixfrac: 0.9, drizzle_final.scale: 0.041}]
        metrics: []
        """), cwd=base)
    assert len(spec.points) == 3
    with pytest.raises(RecipeError, match="max_points"):
        load_sweep(_sweep(base, """\
            sweep:
              params: {drizzle_final.pixfrac: [1.0, 0.9], drizzle_final.scale: [0.046, 0.041]}
              max_points: 3
            """, name="b.yaml"), cwd=base)
    with pytest.raises(RecipeError, match="appears twice"):
        load_sweep(_sweep(base, """\
            sweep:
              mode: rows
              rows: [{drizzle_final.pixfrac: 0.9}, {drizzle_final.pixfrac: 0.9}]
            """, name="c.yaml"), cwd=base)


def test_cli_override_of_a_swept_key_is_refused(base):
    p = _sweep(base, """\
        sweep: {params: {drizzle_final.pixfrac: [1.0, 0.9]}}
        metrics: []
        """)
    with pytest.raises(RecipeError, match="swept"):
        load_sweep(p, ["drizzle_final.pixfrac=0.5"], cwd=base)
    spec = load_sweep(p, ["up.level=3"], cwd=base)
    assert all(pt.recipe.step("up").params.level == 3 for pt in spec.points)


def test_base_that_extends_defaults_and_sweep_file_settings(base):
    (base / "defaults.yaml").write_text(textwrap.dedent("""\
        name: defaults
        input: a_c0m.fits
        steps:
          - {name: up, step: toy_upstream, params: {level: 5}}
          - {name: drizzle_final, step: toy_drizzle, params: {pixfrac: 0.5}}
        """))
    (base / "tutorial.yaml").write_text(textwrap.dedent("""\
        name: tutorial
        extends: defaults.yaml
        output: tut_out
        astrodrizzle: {final_pixfrac: 1.0}
        """))
    p = base / "sw.yaml"
    p.write_text(textwrap.dedent("""\
        name: mysweep
        extends: tutorial.yaml
        output: sweep_here
        steps:
          - {name: up, params: {level: 7}}
        sweep:
          mode: rows
          rows:
            - {drizzle_final.scale: 0.046}
            - {drizzle_final.scale: 0.032}
        metrics: []
        """))
    spec = load_sweep(p, cwd=base)
    r = spec.points[1].recipe
    assert r.name == "mysweep"
    assert r.step("up").params.level == 7
    assert r.step("drizzle_final").params.pixfrac == 1.0 and r.step("drizzle_final").params.scale == 0.032
    assert r.output == base / "sweep_here" / "scale=0.032"
    # the command line wins over the sweep file
    spec = load_sweep(p, ["up.level=9"], cwd=base)
    assert spec.points[0].recipe.step("up").params.level == 9
    # a bad value in the sweep file's own settings is reported at its line
    p.write_text(p.read_text().replace("level: 7", "level: seven"))
    with pytest.raises(RecipeError) as e:
        load_sweep(p, cwd=base)
    assert str(e.value).startswith(f"{p}:5:")


def test_the_shipped_m2_sweep_recipe_expands_to_the_tutorial_rows(tmp_path):
    from pathlib import Path
    cfg = Path(__file__).resolve().parents[1] / "configs" / "m2_sweep.yaml"
    spec = load_sweep(cfg, output=tmp_path / "o", cwd=tmp_path)
    assert [p.name for p in spec.points] == [
        "pixfrac=1.0,scale=0.046", "pixfrac=0.9,scale=0.046", "pixfrac=0.8,scale=0.046", "pixfrac=0.7,scale=0.046",
        "pixfrac=1.0,scale=0.041", "pixfrac=1.0,scale=0.037", "pixfrac=1.0,scale=0.032"]
    rec = spec.points[3].recipe
    assert [s.name for s in rec.steps][-3:] == ["drizzle_final", "psf_fwhm", "weight_stats"]
    assert rec.step("drizzle_final").params.pixfrac == 0.7
    assert rec.step("cosmic_rays").params.snr == spec.points[0].recipe.step("cosmic_rays").params.snr
    assert not (tmp_path / "o").exists()  # validation writes nothing


def test_self_contained_sweep_recipe_without_extends(base):
    p = base / "alone.yaml"
    p.write_text(textwrap.dedent("""\
        input: a_c0m.fits
        output: alone_out
        steps:
          - {name: up, step: toy_upstream}
          - {name: drizzle_final, step: toy_drizzle}
        sweep:
          mode: grid
          params:
            drizzle_final.pixfrac: [0.5, 1.0]   # comments after values are fine
        metrics: []
        """))
    spec = load_sweep(p, cwd=base)
    assert [pt.name for pt in spec.points] == ["pixfrac=0.5", "pixfrac=1.0"]
    assert spec.points[0].recipe.name == "alone"
