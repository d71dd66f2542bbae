"""Every registered step honours the seam's contract (checked for all packages' steps)."""
import pytest

from drizzleflow.engine import registry
from drizzleflow.engine.step import Params, Step

STEPS = sorted(registry.steps().items())


def test_toy_steps_are_registered():
    assert {"toy_source", "toy_scale", "toy_drizzle", "toy_sum"} <= set(registry.steps())


@pytest.mark.parametrize("name, cls", STEPS, ids=[n for n, _ in STEPS])
def test_step_contract(name, cls):
    assert issubclass(cls, Step) and issubclass(cls.Params, Params)
    assert cls.name == name, "the class's name must equal its entry-point name"
    assert cls.describe(), "a step needs a docstring (its first line is listed by `drizzleflow steps`)"
    assert cls.Params.model_config.get("extra") == "forbid"
    for field, info in cls.Params.model_fields.items():
        assert info.description, f"{name}.{field} has no description"
    for alias, target in cls.aliases.items():
        assert target in cls.Params.model_fields, f"{name}: alias {alias} -> unknown parameter {target}"
        assert alias not in cls.Params.model_fields or alias == target
