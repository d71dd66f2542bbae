"""The command line, run as a user runs it: a subprocess, exit codes, messages."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drizzleflow.engine.schema import schema_text
from drizzleflow.engine.yaml_loader import load_yaml

ROOT = Path(__file__).resolve().parents[1]

# The tutorial's call exactly as printed (line continuations and the stray quote
# after `driz_cr_corr= True` included).
TUTORIAL_CALL = """astrodrizzle.AstroDrizzle('*c0m.fits', driz_sep_fillval=99999, \\
updatewcs='True', driz_sep_bits='8,1024',combine_type='minmed', \\
driz_cr_snr='5.5 3.5', driz_cr_scale='2.0 1.5', final_wht_type='EXP', \\
final_wt_scl='exptime', final_pixfrac=1.0, final_fillval=99999, \\
driz_cr_corr= True', final_bits='8,1024')
"""


def own_lines(stderr):
    """stderr without warnings about other packages' plugins that failed to import."""
    return [ln for ln in stderr.splitlines() if not (ln.startswith("WARNING: plugin '") and "failed to import" in ln)]


def cli(*args, cwd):
    """Run the command line as a user does: a new process."""
    return subprocess.run([sys.executable, "-m", "drizzleflow.engine.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def incli(capsys, monkeypatch):
    """Run the command line in this process (faster; for output checks that need no fresh process)."""
    from drizzleflow.engine.cli import main

    def run(*args, cwd):
        monkeypatch.chdir(cwd)
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out, err)
    return run


@pytest.fixture
def work(tmp_path):
    (tmp_path / "a.dat").write_text("abc")
    return tmp_path


def test_typo_gives_position_key_and_suggestion(work):
    (work / "r.yaml").write_text(textwrap.dedent("""\
        input: "*.dat"
        output: out
        steps:
          - step: toy_source
          - step: toy_drizzle
            params:
              pixfrak: 0.8
    """))
    for cmd in ("validate", "run"):
        p = cli(cmd, "r.yaml", cwd=work)
        assert p.returncode == 2
        assert "Traceback" not in p.stderr
        lines = own_lines(p.stderr)
        assert len(lines) == 1
        line = lines[0]
        assert line.startswith("drizzleflow: error: r.yaml:7:7: toy_drizzle.pixfrak:")
        assert "did you mean `pixfrac`?" in line
    assert not (work / "out").exists()       # nothing ran


def test_out_of_range_gives_allowed_range(work, incli):
    (work / "r.yaml").write_text('input: "*.dat"\nsteps:\n  - {step: toy_drizzle, params: {pixfrac: 1.5}}\n')
    p = incli("validate", "r.yaml", cwd=work)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "r.yaml:3:43: toy_drizzle.pixfrac:" in p.stderr and "allowed: 0 < value <= 1" in p.stderr
    # the same value from the command line, by its dotted name and by an alias
    p = incli("validate", "r.yaml", "toy_drizzle.pixfrac=0.5", cwd=work)
    assert p.returncode == 0 and "OK" in p.stdout
    (work / "s.yaml").write_text('input: "*.dat"\nsteps:\n  - {step: toy_source}\n  - {step: toy_scale}\n')
    p = incli("validate", "s.yaml", "toy_factor=500", cwd=work)
    assert p.returncode == 2 and "toy_scale.factor (given as toy_factor)" in p.stderr and "<= 100" in p.stderr


def test_bad_choice_names_the_choices_and_the_nearest(work, incli):
    """A misspelt choice on a real step (issue 6: unknown combine_type) is one clear line."""
    (work / "r.yaml").write_text('input: "*.dat"\nsteps:\n  - {step: median, params: {combine_type: minmedd}}\n')
    p = incli("validate", "r.yaml", cwd=work)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line = own_lines(p.stderr)[0]
    assert line.startswith("drizzleflow: error: r.yaml:3:43: median.combine_type: 'minmedd' is not allowed; allowed:")
    assert line.endswith("did you mean `minmed`?") and line.count("imedian") == 1


def test_real_step_pixfrac_out_of_range(work, incli):
    (work / "r.yaml").write_text('input: "*.dat"\nsteps:\n  - {step: drizzle_final, params: {pixfrac: 1.5}}\n')
    p = incli("validate", "r.yaml", cwd=work)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "r.yaml:3:45: drizzle_final.pixfrac:" in p.stderr and "allowed: 0 < value <= 1" in p.stderr


def test_yaml12_values_reach_the_validator_as_written(work, incli):
    # `mode: on` stays the string "on" (YAML 1.1 would make it True) and is then refused by the pattern
    (work / "r.yaml").write_text('input: "*.dat"\nsteps:\n  - {step: toy_source}\n  - {step: toy_scale, '
                                 'params: {mode: on}}\n')
    p = incli("validate", "r.yaml", cwd=work)
    assert p.returncode == 2 and "toy_scale.mode" in p.stderr
    assert "String should match pattern" in p.stderr       # a bool would fail as "not a valid string"


def test_run_prints_summary_and_second_run_is_cached(work):
    (work / "r.yaml").write_text('input: "*.dat"\noutput: out\nsteps:\n  - {step: toy_source}\n  - {step: toy_sum}\n')
    p = cli("run", "r.yaml", cwd=work)
    assert p.returncode == 0, p.stderr
    assert "2 steps: 2 ran, 0 from cache" in p.stdout
    p = cli("run", "r.yaml", "--output", "out", cwd=work)
    assert "2 steps: 0 ran, 2 from cache" in p.stdout
    assert (work / "out" / "drizzleflow.log").read_text().count("=== drizzleflow run") == 2
    p = cli("run", "r.yaml", "--output", "out", "--force", "-q", cwd=work)
    assert "2 steps: 2 ran" in p.stdout and own_lines(p.stderr) == []


@pytest.mark.parametrize("fails", [False, True])
def test_run_freezes_the_loaded_modules_and_leaves_the_collector_as_it_was(work, incli, monkeypatch, fails):
    """While the steps run, what was loaded is frozen and the collector is on; after
    the run (or its failure) nothing is left frozen or switched off."""
    import gc

    import drizzleflow.engine.runner as runner
    seen = {}
    real = runner.run_recipe

    def spy(*a, **k):
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())
        if fails:
            raise RuntimeError("boom")
        return real(*a, **k)
    monkeypatch.setattr(runner, "run_recipe", spy)
    (work / "r.yaml").write_text('input: "*.dat"\noutput: out\nsteps:\n  - {step: toy_source}\n')
    assert gc.isenabled() and gc.get_freeze_count() == 0
    if fails:
        with pytest.raises(RuntimeError, match="boom"):
            incli("run", "r.yaml", "-q", cwd=work)
    else:
        assert incli("run", "r.yaml", "-q", cwd=work).returncode == 0
    assert seen["enabled"] and seen["frozen"] > 10000
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_refused_output_is_one_line_exit_2(work, incli):
    (work / "out").mkdir()
    (work / "out" / "x").write_text("")
    (work / "r.yaml").write_text('input: "*.dat"\noutput: out\nsteps: [{step: toy_source}]\n')
    p = incli("run", "r.yaml", cwd=work)
    assert p.returncode == 2 and len(own_lines(p.stderr)) == 1 and "--overwrite" in p.stderr


def test_steps_and_explain(work, incli):
    p = incli("steps", cwd=work)
    assert p.returncode == 0
    for name in ("toy_source", "toy_scale", "toy_drizzle", "toy_sum"):
        assert f"\n{name}  (v" in "\n" + p.stdout
    assert "factor = 2.0  (alias: toy_factor)" in p.stdout
    p = incli("explain", "toy_drizzle", cwd=work)
    assert p.returncode == 0
    assert "pixfrac\n      type: float\n      default: 1.0\n      allowed: 0 < value <= 1" in p.stdout
    p = incli("explain", "toy_drizle", cwd=work)
    assert p.returncode == 2 and "did you mean `toy_drizzle`" in p.stderr


def test_schema_is_up_to_date_and_deterministic(work, incli):
    checked_in = ROOT / "schemas" / "recipe.schema.json"
    assert checked_in.exists(), "run `drizzleflow schema` to create schemas/recipe.schema.json"
    assert schema_text() == schema_text()
    assert checked_in.read_text() == schema_text(), \
        "schemas/recipe.schema.json is out of date: run `drizzleflow schema` and commit it"
    p = incli("schema", "--out", work / "s", cwd=work)
    assert p.returncode == 0 and (work / "s" / "recipe.schema.json").read_text() == schema_text()
    schema = json.loads(schema_text())
    branch = next(b for b in schema["properties"]["steps"]["items"]["anyOf"]
                  if b["properties"].get("step", {}).get("const") == "toy_drizzle")
    pix = branch["properties"]["params"]["properties"]["pixfrac"]
    assert pix["exclusiveMinimum"] == 0 and pix["maximum"] == 1
    toy = next(b for b in schema["properties"]["steps"]["items"]["anyOf"]
               if b["properties"].get("step", {}).get("const") == "toy_scale")
    assert "toy_factor" in toy["properties"]["params"]["properties"]


def test_configs_validate_against_the_schema_keys():
    # every recipe in configs/ points editors at the schema
    for f in sorted((ROOT / "configs").glob("*.yaml")):
        assert f.read_text().startswith("# yaml-language-server: $schema=../schemas/recipe.schema.json"), f


def test_import_astrodrizzle_tutorial_call(work, incli):
    (work / "call.txt").write_text(TUTORIAL_CALL)
    p = incli("import-astrodrizzle", "call.txt", cwd=work)
    assert p.returncode == 0, p.stderr
    data, _ = load_yaml(p.stdout, filename="<import>")
    assert data["input"] == "*c0m.fits"
    steps = {s["name"]: s for s in data["steps"]}
    from drizzleflow.engine import registry
    reg = registry.steps()
    expected = {"final_pixfrac": 1.0, "final_bits": [8, 1024], "driz_sep_bits": [8, 1024],
                "driz_cr_snr": [5.5, 3.5], "driz_cr_scale": [2.0, 1.5], "combine_type": "minmed",
                "final_wht_type": "EXP", "final_wt_scl": "exptime"}
    for alias, value in expected.items():
        owners = [n for n, c in reg.items() if alias in c.aliases]
        if owners:
            step = owners[0]
            assert steps[step]["params"][reg[step].aliases[alias]] == value, alias
        else:   # not registered (yet): listed, never silently dropped
            assert f"#   {alias}=" in p.stdout
    # the same text passed inline gives the same recipe
    p2 = incli("import-astrodrizzle", TUTORIAL_CALL, cwd=work)
    assert p2.stdout == p.stdout
    # and the recipe validates (when every name found its step)
    if "# NOT translated" not in p.stdout:
        (work / "imported.yaml").write_text(p.stdout)
        (work / "u1_c0m.fits").write_bytes(b"")
        p3 = incli("validate", "imported.yaml", cwd=work)
        assert p3.returncode == 0, p3.stderr


def test_import_astrodrizzle_maps_toy_alias_and_reports_unknown(work, incli):
    p = incli("import-astrodrizzle", "AstroDrizzle('*.dat', toy_factor=3, bogus_par=1, num_cores=4)", cwd=work)
    assert p.returncode == 0
    data, _ = load_yaml(p.stdout, filename="<import>")
    assert {"name": "toy_scale", "step": "toy_scale", "params": {"factor": 3.0}} in data["steps"]
    assert "bogus_par=1: no registered step declares" in p.stdout and "bogus_par" in p.stderr
    assert "num_cores=4: use --workers" in p.stdout
    p = incli("import-astrodrizzle", "AstroDrizzle('*.dat', final_pixfrac=some_variable)", cwd=work)
    assert p.returncode == 2 and "only literal values" in p.stderr and "Traceback" not in p.stderr


def test_import_astrodrizzle_output_is_the_product_root(work, incli):
    """AstroDrizzle's output='m2' names m2_drz_sci.fits: the final step's root, not a folder."""
    p = incli("import-astrodrizzle", "AstroDrizzle('*c0m.fits', output='m2', final_pixfrac=0.8)", cwd=work)
    assert p.returncode == 0, p.stderr
    data, _ = load_yaml(p.stdout, filename="<import>")
    final = {s["name"]: s for s in data["steps"]}["drizzle_final"]
    assert final["params"] == {"root": "m2", "pixfrac": 0.8}
    assert data["output"] == "m2_output"


def test_bad_override_syntax(work, incli):
    (work / "r.yaml").write_text('input: "*.dat"\nsteps: [{step: toy_source}]\n')
    p = incli("validate", "r.yaml", "toy_source.length", cwd=work)
    assert p.returncode == 2
    p = incli("validate", "missing.yaml", cwd=work)
    assert p.returncode == 2 and "missing.yaml: file not found" in p.stderr
