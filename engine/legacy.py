"""Normalise AstroDrizzle's legacy string values into typed ones.

AstroDrizzle (and MDRIZTAB, and the HAP JSON parameter files) write bit masks
as ``'8,1024'`` or ``'8+1024'`` or ``'~4'``, number pairs as ``'5.5 3.5'`` and
"no value" as ``'INDEF'``.  Recipes accept those spellings, but only through
these explicit validators, and the resolved recipe always shows the typed form
(``[8, 1024]``, ``[5.5, 3.5]``, ``null``).

Step authors use the plain functions inside their own pydantic validators, or
the ready-made annotated types::

    from drizzleflow.engine.legacy import Bits, FloatPair, OptionalFloat

    class Params(engine.step.Params):
        bits: Bits = Field(default=None, description="DQ flags treated as good")
        snr: FloatPair = Field(default=(5.0, 4.0), description="...")
"""
from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

__all__ = [
    "parse_bits", "bits_to_mask", "parse_pair", "parse_floats", "indef_to_none",
    "Bits", "FloatPair", "OptionalFloat",
]

_INDEF = {"indef", "none", "null", ""}


def indef_to_none(value):
    """Map AstroDrizzle's "no value" spellings (``'INDEF'``, ``'None'``, ``''``,
    ``None``; any case, surrounding blanks ignored) to ``None``; anything else is
    returned unchanged."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in _INDEF:
        return None
    return value


def _flags_of(mask: int) -> list[int]:
    return [1 << i for i in range(mask.bit_length()) if mask >> i & 1]


def parse_bits(value, nbits: int = 16):
    """Normalise a DQ bit specification to a sorted list of single-bit flags.

    The bits listed are the DQ flags that are *ignored* (pixels carrying only
    those flags count as good), as in AstroDrizzle's ``driz_sep_bits`` and
    ``final_bits``.

    Parameters
    ----------
    value : None, int, str or sequence of int
        ``None``/``'INDEF'``/``'None'`` -> ``None``: the DQ array is ignored and
        every pixel counts as good (AstroDrizzle's ``final_bits=None``, astropy's
        ``ignore_flags=None``); an integer mask (``1032``) or a list of flags
        (``[8, 1024]``); a string ``'8,1024'``, ``'8+1024'``, ``'8 1024'`` or
        ``'1032'``; ``'~4'`` (or ``'~4,8'``) means every flag *except* those, up
        to ``nbits``.
    nbits : int
        Width of the DQ array, for ``~`` inversion.

    Returns
    -------
    list of int or None
        Distinct powers of two in increasing order (``[8, 1024]``); ``[]`` for 0.

    Raises
    ------
    ValueError
        For negative numbers, non-integers and unparsable strings.
    """
    value = indef_to_none(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a bit mask cannot be true/false; give flags such as [8, 1024] or 0")
    invert = False
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("~"):
            invert, text = True, text[1:].strip()
        parts = [p for p in re.split(r"[,+\s]+", text) if p]
        if not parts:
            raise ValueError(f"cannot read bit flags from {value!r}")
        try:
            items = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"cannot read bit flags from {value!r}; expected e.g. '8,1024', '8+1024' "
                             "or '~4'") from None
    elif isinstance(value, int):
        items = [value]
    elif isinstance(value, float) and value.is_integer():
        items = [int(value)]
    elif isinstance(value, (list, tuple)):
        items = []
        for v in value:
            if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
                raise ValueError(f"bit flags must be integers, got {v!r}")
            items.append(int(v))
    else:
        raise ValueError(f"cannot read bit flags from {value!r}")
    mask = 0
    for v in items:
        if v < 0:
            raise ValueError(f"bit flags must be non-negative, got {v}")
        mask |= v
    if invert:
        mask = ((1 << nbits) - 1) & ~mask
    if mask >= 1 << nbits:
        raise ValueError(f"bit mask {mask} does not fit in {nbits} DQ bits")
    return _flags_of(mask)


def bits_to_mask(bits, nbits: int = 16) -> int:
    """The integer mask of ignored flags (``None`` -> all ``nbits`` flags: DQ ignored)."""
    flags = parse_bits(bits, nbits)
    return (1 << nbits) - 1 if flags is None else sum(flags)


def parse_floats(value, n: int | None = None) -> list[float]:
    """Read a list of numbers from ``'5.5 3.5'``, ``'5.5,3.5'``, a number or a list.

    Parameters
    ----------
    n : int, optional
        Required length; ``None`` accepts any length >= 1.

    Raises
    ------
    ValueError
        When the text is not numbers or the length is wrong.
    """
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s]+", value.strip()) if p]
        try:
            out = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"cannot read numbers from {value!r}; expected e.g. '5.5 3.5'") from None
    elif isinstance(value, bool):
        raise ValueError("expected numbers, got true/false")
    elif isinstance(value, (int, float)):
        out = [float(value)]
    elif isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise ValueError(f"expected numbers, got {v!r}")
            out.append(float(v))
    else:
        raise ValueError(f"expected numbers, got {value!r}")
    if not out:
        raise ValueError("expected at least one number")
    if any(math.isnan(v) for v in out):
        raise ValueError("NaN is not allowed here")
    if n is not None and len(out) != n:
        raise ValueError(f"expected {n} numbers, got {len(out)} ({value!r})")
    return out


def parse_pair(value) -> list[float]:
    """``'5.5 3.5'`` / ``'5.5,3.5'`` / ``[5.5, 3.5]`` -> ``[5.5, 3.5]`` (exactly two)."""
    return parse_floats(value, n=2)


def _optional_float(value):
    value = indef_to_none(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number or INDEF, got {value!r}") from None
    return value


#: DQ flags ignored as good: ``None`` or a sorted list of powers of two.
Bits = Annotated[list[int] | None, BeforeValidator(parse_bits, json_schema_input_type=int | str | list[int] | None)]
#: Two numbers; legacy ``'5.5 3.5'`` accepted.
FloatPair = Annotated[list[float], BeforeValidator(parse_pair, json_schema_input_type=str | list[float])]
#: A number or ``None``; ``'INDEF'`` accepted.
OptionalFloat = Annotated[float | None, BeforeValidator(_optional_float, json_schema_input_type=float | str | None)]
