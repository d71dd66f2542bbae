"""The Cython drizzle/blot core, pixel maps and the drizzle steps.

Public API of the core (plain arrays, no WCS)::

    from drizzleflow.steps.drizzle import Drizzle, drizzle_many, blot, pixmap
"""
from .core import (DrizzleArrayError, Drizzle, DrizzleInput, FinishStats, drizzle_many, blot,
                   KERNELS, INTERPOLANTS)
from .pixmap import pixmap, corner_pixmap, DEFAULT_STEPSIZE

__all__ = ["DrizzleArrayError", "Drizzle", "DrizzleInput", "FinishStats", "drizzle_many", "blot",
           "KERNELS", "INTERPOLANTS", "pixmap", "corner_pixmap", "DEFAULT_STEPSIZE"]
