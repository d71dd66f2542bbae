"""Where the reference software lives: a separate environment, so DrizzlePac's pins
never touch drizzleflow's.  ``make bench-env`` creates ``.benchenv`` with
drizzlepac, drizzle, tweakwcs and stwcs; ``DRIZZLEFLOW_BENCH_PYTHON`` points
elsewhere."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench_python() -> Path:
    """The interpreter of the reference-software environment."""
    return Path(os.environ.get("DRIZZLEFLOW_BENCH_PYTHON", ROOT / ".benchenv" / "bin" / "python"))
