"""HST Phase II dither patterns -> POS TARG offsets.

A Phase II proposal describes dithers by pattern parameters rather than by
offsets.  This module turns them into the POS TARG offsets (arcsec, in the
POS-TARG frame of the aperture) of every exposure, so a user can predict the
offsets of their own proposal and the simulator can reproduce the tutorial's
visit (proposal 11100, visit 5).

Conventions (checked against the tutorial's CRVALs, see tests):

* ``LINE``: point k (k = 0..n-1) at ``k * point_spacing`` along
  ``pattern_orient`` (degrees from the POS-TARG +X axis towards +Y).
* ``BOX`` (a parallelogram of 4 points): with A = ``point_spacing`` along
  ``pattern_orient`` and B = ``line_spacing`` along
  ``pattern_orient + (180 - angle_between_sides)``, the points are
  0, A, A + B, B (the interior angle at the second point is
  ``angle_between_sides``).
* ``center_pattern=True`` moves the pattern's centroid onto the origin.
* A POS TARG given with the exposure is added to every point of its pattern.

The telescope pointing moves by minus the offset: a target placed at POS
TARG (x, y) is seen at (x, y) from the aperture reference point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Pattern", "pattern_offsets", "exposure_offsets", "TUTORIAL_PATTERNS", "tutorial_offsets"]


@dataclass(frozen=True)
class Pattern:
    """Phase II pattern parameters (names as in the proposal's pattern section)."""

    pattern_type: str                 # "BOX" or "LINE"
    number_of_points: int
    point_spacing: float              # arcsec
    line_spacing: float | None = None
    pattern_orient: float = 0.0       # degrees
    angle_between_sides: float | None = None
    center_pattern: bool = False
    coordinate_frame: str = "POS-TARG"


def _unit(angle_deg):
    t = math.radians(angle_deg)
    return np.array([math.cos(t), math.sin(t)])


def pattern_offsets(p: Pattern) -> np.ndarray:
    """(n, 2) POS TARG offsets in arcsec of the points of one pattern."""
    kind = p.pattern_type.strip().upper()
    if p.coordinate_frame.strip().upper() != "POS-TARG":
        raise ValueError(f"coordinate frame {p.coordinate_frame!r}: only POS-TARG is supported")
    a = p.point_spacing * _unit(p.pattern_orient)
    if kind == "LINE":
        pts = np.array([k * a for k in range(p.number_of_points)])
    elif kind in ("BOX", "PARALLELOGRAM"):
        if p.number_of_points != 4 or p.line_spacing is None or p.angle_between_sides is None:
            raise ValueError("a BOX pattern needs 4 points, line_spacing and angle_between_sides")
        b = p.line_spacing * _unit(p.pattern_orient + 180.0 - p.angle_between_sides)
        pts = np.array([0 * a, a, a + b, b])
    else:
        raise ValueError(f"pattern type {p.pattern_type!r}: only BOX and LINE are supported")
    if p.center_pattern:
        pts = pts - pts.mean(axis=0)
    return pts


def exposure_offsets(lines) -> np.ndarray:
    """POS TARG offsets of a visit: ``lines`` is a sequence of
    ``(pos_targ, pattern)`` pairs, one per exposure line, in execution order."""
    out = [np.asarray(pos_targ, dtype=float) + pattern_offsets(pat) for pos_targ, pat in lines]
    return np.concatenate(out, axis=0)


#: The tutorial's visit: line 2 with pattern 1 (BOX), line 4 with POS TARG
#: 0.2241, 0.2241 and pattern 2 (LINE).
TUTORIAL_PATTERNS = (
    ((0.0, 0.0), Pattern("BOX", 4, 2.349, 2.349, 32.01, 154.01)),
    ((0.2241, 0.2241), Pattern("LINE", 2, 2.349, None, 32.01)),
)


def tutorial_offsets() -> np.ndarray:
    """(6, 2) POS TARG offsets of ua060502m ... ua06050cm."""
    return exposure_offsets(TUTORIAL_PATTERNS)
