"""The compiled drizzle core and blot, in the best build this CPU can run.

On x86-64, setup.py compiles ``_core.pyx`` and ``_blot.pyx`` twice: for any
x86-64 CPU (SSE2), and through ``_core_avx2.pyx`` / ``_blot_avx2.pyx`` (which
include them) with ``-mavx2``.  The AVX2 builds gain from the three-operand VEX
instructions and wider vectors (11% fewer instructions in the square kernel,
about 4% less time; blot poly5 about 15% faster); FMA stays off (``-mno-fma
-ffp-contract=off``), so both builds give the same bits.
The choice is made once, at import, from numpy's CPU feature table;
``DRIZZLEFLOW_CORE=baseline`` forces the generic build.
"""
from __future__ import annotations

import importlib
import os

__all__ = ["_core", "_blot", "CORE_BUILD", "builds"]


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
            from . import _blot_avx2, _core_avx2
            return _core_avx2, _blot_avx2, "avx2"
        except ImportError:
            if want == "avx2":
                raise
    from . import _blot, _core
    return _core, _blot, "baseline"


_core, _blot, CORE_BUILD = _load()


def builds(stem: str) -> tuple:
    """``(baseline, avx2)`` modules of ``stem`` (``"_core"`` or ``"_blot"``), the
    second ``None`` where there is no AVX2 build or this CPU lacks AVX2: for
    tests that compare their bits."""
    baseline, avx2 = importlib.import_module(f"{__package__}.{stem}"), None
    if _cpu_has_avx2():
        try:
            avx2 = importlib.import_module(f"{__package__}.{stem}_avx2")
        except ImportError:
            pass
    return baseline, avx2
