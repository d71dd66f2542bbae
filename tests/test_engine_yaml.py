"""The strict YAML loader: YAML 1.2 core typing, duplicate keys, positions."""
import math

import pytest

from drizzleflow.engine.errors import RecipeError
from drizzleflow.engine.yaml_loader import load_yaml, parse_value


def test_yaml12_values_are_what_a_person_means(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("ra: 12:30:00\nbits: 0755\nsnr: 1e3\nsnr2: 1.0e3\nflag: on\nans: yes\nno_: off\n"
                 "t: true\nf: False\nn: null\nt2: ~\nempty:\ni: 42\nneg: -7\noct: 0o17\nhex: 0x1F\n"
                 "inf: .inf\nnan: .nan\nday: 2026-01-01\n")
    d, _ = load_yaml(f)
    assert d["ra"] == "12:30:00"            # YAML 1.1 would give 45000
    assert d["bits"] == "0755"              # YAML 1.1 would give 493
    assert d["snr"] == 1000.0 and isinstance(d["snr"], float)  # YAML 1.1: the string '1e3'
    assert d["snr2"] == 1000.0
    assert d["flag"] == "on" and d["ans"] == "yes" and d["no_"] == "off"
    assert d["t"] is True and d["f"] is False
    assert d["n"] is None and d["t2"] is None and d["empty"] is None
    assert d["i"] == 42 and isinstance(d["i"], int) and d["neg"] == -7
    assert d["oct"] == 15 and d["hex"] == 31
    assert d["inf"] == math.inf and math.isnan(d["nan"])
    assert d["day"] == "2026-01-01"


def test_duplicate_keys_are_errors_with_position(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("steps:\n  - name: a\n    params:\n      pixfrac: 1\n      pixfrac: 2\n")
    with pytest.raises(RecipeError) as e:
        load_yaml(f)
    assert f"{f}:5:7" in str(e.value)
    assert "duplicate key 'pixfrac'" in str(e.value) and "line 4" in str(e.value)


def test_positions_of_keys_and_values(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("a:\n  b: [1, 2]\n  c: {d: x}\n")
    _, pos = load_yaml(f)
    assert pos.where(("a", "b")) == f"{f}:2:6"
    assert pos.where(("a", "b"), key=True) == f"{f}:2:3"
    assert pos.where(("a", "b", 1)) == f"{f}:2:10"
    assert pos.where(("a", "c", "d")) == f"{f}:3:10"
    assert pos.where(("a", "zzz")) == f"{f}:2:3" or pos.where(("a", "zzz")).startswith(f"{f}:1:")


def test_syntax_error_names_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(RecipeError) as e:
        load_yaml(f)
    assert str(e.value).startswith(f"{f}:3:1") and "YAML syntax error" in str(e.value)


def test_missing_file():
    with pytest.raises(RecipeError, match="file not found"):
        load_yaml("/nonexistent/recipe.yaml")


def test_command_line_values_use_the_same_rules():
    assert parse_value("0.8") == 0.8
    assert parse_value("1e3") == 1000.0
    assert parse_value("on") == "on"
    assert parse_value("[8, 1024]") == [8, 1024]
    assert parse_value("12:30:00") == "12:30:00"
    assert parse_value("null") is None
    assert parse_value("a: [") == "a: ["   # unparsable stays a string
