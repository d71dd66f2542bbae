"""The star field: M2 members from a King profile and a globular-cluster
luminosity function, plus a few very bright stars.

Fluxes are electrons collected by WF3 in a 10 s F814W exposure (other chips
scale by their PHOTFLAM ratio, see ``detector``).  Positions are exact sky
coordinates; nothing here knows about pixels.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["M2_CENTRE", "KING_RC_ARCSEC", "KING_RT_ARCSEC", "ZP_ELECTRONS", "king_density",
           "make_stars", "magnitude_to_electrons"]

#: M2 (NGC 7089) centre, degrees; the tutorial's field is ~4' south-west of it
M2_CENTRE = (323.36258, -0.82325)
KING_RC_ARCSEC = 19.2           # core radius 0.32'
KING_RT_ARCSEC = 19.2 * 10 ** 1.59
#: F814W zero point: magnitude giving 1 e-/s (WFPC2, gain 7 DN zero point 21.66 + 2.5 log 7)
ZP_ELECTRONS = 21.66 + 2.5 * math.log10(7.0)
EXPTIME = 10.0


def magnitude_to_electrons(mag, exptime=EXPTIME):
    return exptime * 10.0 ** (0.4 * (ZP_ELECTRONS - np.asarray(mag, dtype=np.float64)))


def king_density(r_arcsec):
    """King (1962) surface density, arbitrary normalisation, 0 beyond r_t."""
    rc, rt = KING_RC_ARCSEC, KING_RT_ARCSEC
    r = np.asarray(r_arcsec, dtype=np.float64)
    val = 1.0 / np.sqrt(1.0 + (r / rc) ** 2) - 1.0 / math.sqrt(1.0 + (rt / rc) ** 2)
    return np.where(r < rt, val ** 2, 0.0)


def _sample_magnitudes(rng, n):
    """Broken power law around the turn-off (I ~ 18.6) plus a horizontal branch."""
    m_to, m_lo, m_hi = 18.6, 12.0, 24.0
    # dN/dm ~ 10^(0.3 (m - m_to)) brighter than the TO, 10^(0.08 (m - m_to)) fainter
    a1, a2 = 0.3 * math.log(10), 0.08 * math.log(10)
    w1 = (1 - math.exp(-a1 * (m_to - m_lo))) / a1
    w2 = (math.exp(a2 * (m_hi - m_to)) - 1) / a2
    u = rng.random(n)
    bright = rng.random(n) < w1 / (w1 + w2)
    m = np.empty(n)
    m[bright] = m_to + np.log(1 - u[bright] * (1 - math.exp(-a1 * (m_to - m_lo)))) / a1
    m[~bright] = m_to + np.log(1 + u[~bright] * (math.exp(a2 * (m_hi - m_to)) - 1)) / a2
    hb = rng.random(n) < 0.012
    m[hb] = rng.normal(15.55, 0.12, hb.sum())
    return m


def make_stars(rng, centre, half_width_arcsec, nstars):
    """``nstars`` cluster stars in a square of half-width ``half_width_arcsec``
    around ``centre`` (ra, dec), with King-profile density.

    Returns ``ra, dec, mag, flux_e`` arrays (float64).
    """
    ra0, dec0 = centre
    cosd = math.cos(math.radians(dec0))
    cx = (M2_CENTRE[0] - ra0) * cosd * 3600.0
    cy = (M2_CENTRE[1] - dec0) * 3600.0
    rmin = max(0.0, math.hypot(cx, cy) - half_width_arcsec * math.sqrt(2))
    dmax = float(king_density(rmin)) if rmin > 0 else float(king_density(0.0))
    xs, ys = [], []
    need = nstars
    while need > 0:
        m = max(2 * need, 1000)
        x = rng.uniform(-half_width_arcsec, half_width_arcsec, m)
        y = rng.uniform(-half_width_arcsec, half_width_arcsec, m)
        keep = rng.random(m) * dmax < king_density(np.hypot(x - cx, y - cy))
        xs.append(x[keep][:need])
        ys.append(y[keep][:need])
        need -= xs[-1].size
    x = np.concatenate(xs) if xs else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0)
    dec = dec0 + y / 3600.0
    ra = ra0 + x / 3600.0 / np.cos(np.radians(dec))
    mag = _sample_magnitudes(rng, nstars)
    return ra, dec, mag, magnitude_to_electrons(mag)
