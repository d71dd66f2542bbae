"""Legacy AstroDrizzle value spellings and their normalised forms."""
import pytest
from pydantic import Field, ValidationError

from drizzleflow.engine.legacy import (Bits, FloatPair, OptionalFloat, bits_to_mask, indef_to_none, parse_bits,
                                       parse_floats, parse_pair)
from drizzleflow.engine.step import Params


@pytest.mark.parametrize("value, expected", [
    ("8,1024", [8, 1024]), ("8+1024", [8, 1024]), ("1024, 8", [8, 1024]), ("8 1024", [8, 1024]),
    (1032, [8, 1024]), ("1032", [8, 1024]), ([1024, 8, 8], [8, 1024]), (0, []), ("0", []),
    (None, None), ("INDEF", None), ("None", None), ("", None), (6, [2, 4]),
])
def test_parse_bits(value, expected):
    assert parse_bits(value) == expected


def test_parse_bits_inversion():
    flags = parse_bits("~4")
    assert 4 not in flags and len(flags) == 15 and sum(flags) == 65535 - 4
    assert bits_to_mask("~4,8") == 65535 - 12
    assert bits_to_mask("8,1024") == 1032 and bits_to_mask(None) == 65535


@pytest.mark.parametrize("bad", ["8,x", -1, True, 2.5, [1.5], {"a": 1}, 1 << 16])
def test_parse_bits_rejects(bad):
    with pytest.raises(ValueError):
        parse_bits(bad)


def test_pairs_and_floats():
    assert parse_pair("5.5 3.5") == [5.5, 3.5]
    assert parse_pair("2.0,1.5") == [2.0, 1.5]
    assert parse_pair([5, 3]) == [5.0, 3.0]
    with pytest.raises(ValueError, match="expected 2 numbers"):
        parse_pair("5.5")
    with pytest.raises(ValueError):
        parse_pair("a b")
    assert parse_floats(3) == [3.0]
    assert indef_to_none("indef") is None and indef_to_none(0) == 0 and indef_to_none("x") == "x"


def test_annotated_types_in_a_params_model():
    class P(Params):
        bits: Bits = Field(None, description="good DQ flags")
        snr: FloatPair = Field([5.0, 4.0], description="thresholds")
        lthresh: OptionalFloat = Field(None, description="lower threshold")

    p = P(bits="8,1024", snr="5.5 3.5", lthresh="INDEF")
    assert p.bits == [8, 1024] and p.snr == [5.5, 3.5] and p.lthresh is None
    assert P(lthresh="3.5").lthresh == 3.5
    with pytest.raises(ValidationError):
        P(snr="1 2 3")
    schema = P.model_json_schema()["properties"]
    assert {"type": "string"} in schema["bits"]["anyOf"]   # editors accept the legacy spelling
