"""The compiled drizzle core, in the best build this CPU can run.

On x86-64, setup.py compiles ``_core.pyx`` twice: as ``_core`` for any x86-64
CPU (SSE2), and through ``_core_avx2.pyx`` (which includes it) with
``-mavx2``.  The AVX2 build gains from the three-operand VEX instructions
(11% fewer instructions in the square kernel, about 4% less time); FMA stays
off (``-mno-fma -ffp-contract=off``), so both builds give the same bits.
The choice is made once, at import, from numpy's CPU feature table;
``DRIZZLEFLOW_CORE=baseline`` forces the generic build.
"""
from __future__ import annotations

import os

from . import _blot

__all__ = ["_core", "_blot", "CORE_BUILD"]


def _cpu_has_avx2() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return False
    return bool(features.get("AVX2"))


def _load():
    want = os.environ.get("DRIZZLEFLOW_CORE", "auto").strip().lower()
    if want not in ("auto", "avx2", "baseline"):
        raise ImportError(f"DRIZZLEFLOW_CORE={want!r}: expected auto, avx2 or baseline")
    if want != "baseline" and (want == "avx2" or _cpu_has_avx2()):
        try:
            from . import _core_avx2
            return _core_avx2, "avx2"
        except ImportError:
            if want == "avx2":
                raise
    from . import _core
    return _core, "baseline"


_core, CORE_BUILD = _load()
