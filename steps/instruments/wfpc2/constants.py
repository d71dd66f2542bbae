"""WFPC2 detector constants: the gain/read-noise table, DQ flag meanings,
chip names, and the DQ bit drizzleflow sets for non-finite science values."""
from __future__ import annotations

__all__ = ["GAIN_TABLE", "DQ_FLAGS", "NAN_BIT", "CHIP_NAMES", "REFERENCE_CHIP",
           "detector_gain", "INSTRUMENT"]

INSTRUMENT = "WFPC2"

#: (gain e-/DN, read noise e-) by ATODGAIN setting and DETECTOR (1 = PC1 .. 4 = WF4),
#: the values DrizzlePac's WFPC2 reader uses (ALGORITHMS.md §3.1).
GAIN_TABLE = {
    7: {1: (7.12, 5.24), 2: (7.12, 5.51), 3: (6.90, 5.22), 4: (7.10, 5.19)},
    15: {1: (13.99, 7.02), 2: (14.50, 7.84), 3: (13.95, 6.99), 4: (13.95, 8.32)},
}

#: WFPC2 c1m data-quality bits (WFPC2 Data Handbook; ALGORITHMS.md §3.2)
DQ_FLAGS = {
    1: "Reed-Solomon decoding error",
    2: "calibration-file defect (incl. vignetted edges, between-chip regions)",
    4: "permanent camera defect",
    8: "A/D saturation",
    16: "missing data (drizzleflow: non-finite SCI value, set to 0)",
    32: "other bad pixel",
    128: "permanent charge trap",
    256: "questionable pixel above a charge trap",
    512: "unrepaired warm pixel",
    1024: "repaired warm pixel",
    2048: "whole chip masked",
    4096: "cosmic ray (drizzleflow / AstroDrizzle crbit)",
}

#: DQ bit set where the SCI value is NaN/inf; the value itself becomes 0.
#: WFPC2's own "missing data" bit, which the archive pipeline never used.
NAN_BIT = 16

CHIP_NAMES = {1: "PC1", 2: "WF2", 3: "WF3", 4: "WF4"}

#: astrometric reference chip of stwcs (WF3; the first chip when WF3 is absent)
REFERENCE_CHIP = 3


def detector_gain(atodgain, detector):
    """(gain, read noise) for an ATODGAIN header value and a DETECTOR number.

    Raises ``KeyError`` with a readable message for values outside the table.
    """
    try:
        setting = int(round(float(atodgain)))
    except (TypeError, ValueError):
        raise KeyError(f"ATODGAIN = {atodgain!r} is not a number") from None
    if setting not in GAIN_TABLE or abs(float(atodgain) - setting) > 0.5:
        raise KeyError(f"ATODGAIN = {atodgain!r}; WFPC2 only has settings 7 and 15")
    try:
        return GAIN_TABLE[setting][int(detector)]
    except (KeyError, TypeError, ValueError):
        raise KeyError(f"DETECTOR = {detector!r}; WFPC2 chips are 1-4") from None
