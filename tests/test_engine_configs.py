"""Every recipe shipped in configs/ validates against the steps registered now
(catches a parameter renamed in a step but not in the recipes)."""
from pathlib import Path

import pytest

from drizzleflow.engine.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_recipe_validates(path, tmp_path):
    from drizzleflow.engine.sweep import is_sweep_recipe, load_sweep
    if is_sweep_recipe(path):
        spec = load_sweep(path, output=tmp_path / "sweep", cwd=ROOT)
        assert spec.points
        return
    from drizzleflow.engine.yaml_loader import load_yaml
    data, _ = load_yaml(path)
    # a base recipe (meant for `extends:`) names no input: give it one to validate its steps
    overrides = [] if "input" in data else ["input=pyproject.toml"]
    recipe = load_recipe(path, overrides, cwd=ROOT)
    assert recipe.steps
    assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/recipe.schema.json")
