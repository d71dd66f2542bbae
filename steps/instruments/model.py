"""The in-memory data model every processing step works on.

One ``Exposure`` per input file, one ``Chip`` per SCI extension.  Arrays are
native-endian, C-contiguous: ``sci`` float32 in **electrons** (DN x gain),
``dq`` uint16 flags.  Instrument readers (``steps.instruments.wfpc2``) build
these from working copies; the drizzle chain and alignment never read FITS
headers to find gains or exposure times themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["Chip", "ChipGeom", "Exposure", "CR_BIT"]

#: DQ bit that the cosmic-ray step sets in the working DQ (AstroDrizzle's crbit)
CR_BIT = 4096


@dataclass
class Chip:
    """One detector readout (a SCI extension) with everything the chain needs."""

    root: str            # exposure rootname, e.g. "ua060502m"
    extver: int          # SCI EXTVER in the file (1..4 for WFPC2)
    detector: int        # WFPC2 chip number: 1 = PC1, 2-4 = WF2-WF4
    sci: np.ndarray      # float32 (ny, nx), electrons
    dq: np.ndarray       # uint16 (ny, nx), data-quality bit flags
    wcs: WCS             # full WCS (SIP + lookup-table distortion), origin 0 for pixel arrays
    header: fits.Header  # the SCI extension header (working copy)
    exptime: float       # seconds
    gain: float          # e-/DN (ATODGAIN)
    rdnoise: float       # e- per pixel
    pscale: float        # nominal undistorted scale, arcsec/pixel (IDCSCALE)
    photflam: float = 0.0  # erg/s/cm2/A per (e-/s)
    sky: float = 0.0     # sky level in electrons per pixel, set by the sky step

    @property
    def shape(self):
        return self.sci.shape

    @property
    def name(self):
        """How messages name the chip: ``ua060502m[sci,2]``."""
        return f"{self.root}[sci,{self.extver}]"


@dataclass
class ChipGeom:
    """A chip's geometry without its pixels: what grids, footprints and
    catalog-to-sky transforms need (read from headers only)."""

    root: str
    extver: int
    detector: int
    shape: tuple
    wcs: WCS
    pscale: float        # nominal undistorted scale, arcsec/pixel
    exptime: float


@dataclass
class Exposure:
    """One input exposure: its working files and its chips."""

    root: str
    sci_path: Path       # working copy of the science file (new-format MEF)
    dq_path: Path        # working copy of the data-quality file
    source: Path         # the archive file it came from (never written)
    primary: fits.Header
    chips: list[Chip] = field(default_factory=list)

    @property
    def exptime(self):
        return self.chips[0].exptime if self.chips else float(self.primary.get("EXPTIME", 0.0))
