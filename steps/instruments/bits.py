"""DQ bit-flag expressions as integers, for the instrument readers.

The parsing itself (``"8,1024"``, ``"8+1024"``, ``"~4"``, integers, ``None``)
is ``drizzleflow.engine.legacy.parse_bits``; this module turns its flag list
into the integer mask the file-level code uses.  ``good = (dq & ~bits) == 0``.
"""
from __future__ import annotations

import numpy as np

from drizzleflow.engine.legacy import parse_bits

__all__ = ["bits_mask", "good_mask"]


def bits_mask(value, nbits: int = 16):
    """Integer mask of a bit-flag expression; ``None`` when DQ is to be ignored."""
    flags = parse_bits(value, nbits)
    return None if flags is None else int(sum(flags))


def good_mask(dq, bits):
    """True where a pixel is usable: no DQ bit set outside ``bits`` (``None`` = all good)."""
    mask = bits_mask(bits)
    dq = np.asarray(dq)
    if mask is None:
        return np.ones(dq.shape, dtype=bool)
    return (dq.astype(np.int64) & (~mask & 0xFFFF)) == 0
