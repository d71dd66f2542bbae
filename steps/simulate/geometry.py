"""The simulated WFPC2 camera geometry: four 800x800 chips around the pyramid
apex, their distortion polynomials, the 34th-row pattern and chip drifts.

These constants are the simulator's ground truth.  They reach the rest of
drizzleflow only through the reference files written from them
(``steps.instruments.wfpc2.reference_files``), exactly as real WFPC2
geometry reaches DrizzlePac.  Values are WFPC2-like (scales, rotations by
90 degrees, vignetted L-shaped inner edges, a few pixels of cubic distortion
at the corners) but are not the real calibration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from drizzleflow.steps.instruments.wfpc2.reference_files import IDCRow, OffRow

__all__ = ["CHIPS", "ChipSpec", "REF_CHIP", "chip_specs", "idc_rows", "off_rows", "row34_table",
           "NARROW_ROW_DEFICIT", "NARROW_ROW_PERIOD", "OFFTAB_DATES"]

REF_CHIP = 3
#: the narrow rows are this fraction narrower than the others
NARROW_ROW_DEFICIT = 0.03
NARROW_ROW_PERIOD = 34
_NARROW_ROW_FIRST = 16          # 0-based index of the first narrow row

#: WF3 position in the V2/V3 frame (arcsec) and its rotation (degrees)
_V2_WF3, _V3_WF3, _THETA_WF3 = -51.08, -76.76, 44.53


@dataclass(frozen=True)
class ChipSpec:
    """Static properties of one simulated chip."""

    detector: int
    name: str
    scale: float            # arcsec / pixel
    xref: float             # 1-based model origin
    yref: float
    rotation: float         # degrees, counter-clockwise from the WF3 frame (~multiple of 90)
    edge_x: int             # vignetted columns at low x (pyramid shadow)
    edge_y: int             # vignetted rows at low y
    k_radial: float         # cubic radial term, fraction of scale per pixel**2
    quad: tuple             # (cx22, cx21, cx20, cy22, cy21, cy20) as fraction of scale
    skew: float             # cx10 / scale (non-orthogonality of the axes)
    photflam: float


# The inner (low x, low y) corner of every chip points at the pyramid apex.
# edge_x/edge_y are the vignetted widths the tutorial's edges.py masks.
CHIPS = {
    1: ChipSpec(1, "PC1", 0.045540, 420.0, 424.5, 180.0 + 0.07, 49, 62,
                1.10e-8, (2.1e-6, -1.2e-6, 0.8e-6, -0.9e-6, 1.7e-6, 1.5e-6), 3.1e-4, 2.5075e-18),
    2: ChipSpec(2, "WF2", 0.099598, 423.5, 414.0, -90.0 + 0.05, 53, 39,
                1.66e-8, (1.6e-6, 0.9e-6, -1.1e-6, 1.3e-6, -1.4e-6, 0.7e-6), -2.2e-4, 2.5189e-18),
    3: ChipSpec(3, "WF3", 0.099576, 436.0, 424.5, 0.0, 39, 53,
                1.62e-8, (-1.4e-6, 1.1e-6, 1.2e-6, 1.0e-6, 1.3e-6, -1.6e-6), 1.5e-4, 2.5083e-18),
    4: ChipSpec(4, "WF4", 0.099611, 423.0, 421.0, 90.0 - 0.04, 49, 49,
                1.70e-8, (1.2e-6, -1.5e-6, -0.9e-6, -1.2e-6, 1.0e-6, 1.1e-6), -1.8e-4, 2.5280e-18),
}

#: OFFTAB calibration dates; the chips drift slowly relative to WF3
OFFTAB_DATES = ("1994-01-01", "1997-06-01", "2001-01-01", "2005-01-01", "2009-06-01")
_DRIFT = {1: (0.012, -0.008, 0.0006), 2: (-0.009, 0.011, -0.0004),
          3: (0.0, 0.0, 0.0), 4: (0.007, 0.010, 0.0005)}   # arcsec/yr, arcsec/yr, deg/yr


def chip_specs(size=800):
    """The chip table for a ``size`` x ``size`` detector.

    Smaller sizes (for fast tests) keep the pixel scales and distortion
    coefficients and shrink the chips around their inner corner: reference
    pixels and vignetted widths scale with ``size / 800``.
    """
    f = size / 800.0
    return {k: replace(s, xref=round(s.xref * f, 2), yref=round(s.yref * f, 2),
                       edge_x=max(2, int(round(s.edge_x * f))), edge_y=max(2, int(round(s.edge_y * f))))
            for k, s in CHIPS.items()}


def _coefficients(spec):
    s = spec.scale
    cx = np.zeros((4, 4))
    cy = np.zeros((4, 4))
    cx[1, 1] = s                  # dx
    cx[1, 0] = spec.skew * s      # dy
    cy[1, 0] = s                  # dy
    cy[1, 1] = 0.0                # dx
    q = spec.quad
    cx[2, 2], cx[2, 1], cx[2, 0] = q[0] * s, q[1] * s, q[2] * s
    cy[2, 2], cy[2, 1], cy[2, 0] = q[3] * s, q[4] * s, q[5] * s
    k = spec.k_radial * s         # u = s dx (1 + k r^2), v = s dy (1 + k r^2)
    cx[3, 3], cx[3, 1] = k, k     # dx^3, dx dy^2
    cy[3, 2], cy[3, 0] = k, k     # dx^2 dy, dy^3
    return cx, cy


def _layout(specs):
    """(V2, V3, THETA) of every chip at the base epoch from the apex layout."""
    ref = specs[REF_CHIP]
    # apex = WF3 frame position of WF3's inner corner (edge_x, edge_y)
    apex = np.array([(ref.edge_x - ref.xref) * ref.scale, (ref.edge_y - ref.yref) * ref.scale])
    out = {}
    for k, spec in specs.items():
        t = math.radians(spec.rotation)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        local = np.array([(spec.xref - spec.edge_x) * spec.scale, (spec.yref - spec.edge_y) * spec.scale])
        p, q = apex + rot @ local + 0.35 * np.sign(rot @ local)    # ~0.35" gaps between chips
        if k == REF_CHIP:
            p, q = 0.0, 0.0
        r = math.hypot(p, q)
        ang = math.atan2(p, q) - math.radians(_THETA_WF3)
        d2, d3 = -r * math.sin(ang), r * math.cos(ang)
        out[k] = (_V2_WF3 + d2, _V3_WF3 + d3, (_THETA_WF3 + spec.rotation) % 360.0)
    return out


def idc_rows(size=800, filter1="F814W", filter2="CLEAR"):
    """IDCTAB rows (no V2REF/V3REF/THETA: those live in the OFFTAB)."""
    rows = []
    for k, spec in chip_specs(size).items():
        cx, cy = _coefficients(spec)
        rows.append(IDCRow(detchip=k, xref=spec.xref, yref=spec.yref, scale=spec.scale,
                           cx=cx, cy=cy, xsize=size, ysize=size, filter1=filter1, filter2=filter2))
    return rows


def off_rows(size=800):
    """OFFTAB rows: the base layout (at 2001-01-01) plus a slow linear drift."""
    base = _layout(chip_specs(size))
    rows = []
    for k in CHIPS:
        v2, v3, th = base[k]
        for date in OFFTAB_DATES:
            years = (int(date[:4]) + (int(date[5:7]) - 1) / 12.0) - 2001.0
            d2, d3, dt = _DRIFT[k]
            rows.append(OffRow(k, date, round(v2 + d2 * years, 4), round(v3 + d3 * years, 4),
                               round(th + dt * years, 5)))
    return rows


def row34_table(n=800):
    """The 34th-row D2IM table: pixels to add to detector y at y = 1..n.

    Every 34th row is ``NARROW_ROW_DEFICIT`` narrower; positions are measured
    in units of the mean row width, so the table is a zero-mean sawtooth of
    about +-0.015 pixel.
    """
    widths = np.ones(n)
    widths[_NARROW_ROW_FIRST::NARROW_ROW_PERIOD] -= NARROW_ROW_DEFICIT
    mean = widths.mean()
    lower = np.concatenate([[0.0], np.cumsum(widths)[:-1]])   # lower edge of row j
    centre_true = (lower + 0.5 * widths) / mean                # physical centre, mean-width units
    table = centre_true - np.arange(n)
    return table - table.mean()
