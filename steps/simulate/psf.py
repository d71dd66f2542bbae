"""Undersampled WFPC2-like PSFs, integrated over pixels.

Normal stars: a sum of three circular Gaussians (core, halo, wide halo)
integrated exactly over each pixel with error functions, which is separable
in x and y, so a batch of stars costs a few (N, S) arrays and one outer
product.  Very bright stars: the same profile plus two diffraction spikes,
evaluated on a 3x super-sampled grid and binned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PSFModel", "PSF_WF", "PSF_PC", "psf_for", "erf", "gaussian_stamps", "bright_stamp",
           "add_stamps"]


def erf(x):
    """Error function, |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26), vectorised."""
    x = np.asarray(x, dtype=np.float64)
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return s * y


@dataclass(frozen=True)
class PSFModel:
    """Gaussian components (sigma in pixels, weights summing to 1) and the
    stamp half-width used for normal stars."""

    sigmas: tuple
    weights: tuple
    half: int
    spike_width: float       # pixels (Gaussian sigma across the spike)
    spike_fraction: float    # of the total flux, both spikes together


#: WF: FWHM ~1.5 px once integrated over pixels; PC: ~2.5 px
PSF_WF = PSFModel((0.50, 1.4, 3.2), (0.78, 0.17, 0.05), 10, 0.45, 0.02)
PSF_PC = PSFModel((0.96, 2.6, 6.5), (0.78, 0.17, 0.05), 20, 0.9, 0.02)


def psf_for(detector):
    return PSF_PC if int(detector) == 1 else PSF_WF


def _axis_weights(centre, start, n, sigma):
    """(N, n) fraction of a unit 1-D Gaussian falling in pixels start..start+n-1
    (0-based pixel i spans [i - 0.5, i + 0.5])."""
    edges = start[:, None] + np.arange(n + 1)[None, :] - 0.5
    c = erf((edges - centre[:, None]) / (math.sqrt(2.0) * sigma))
    return 0.5 * np.diff(c, axis=1)


def gaussian_stamps(x, y, flux, model):
    """Pixel-integrated stamps for stars at 0-based (x, y).

    Returns ``(x0, y0, stamps)``: the 0-based lower-left pixel of every
    (S, S) stamp (S = 2 * half + 1) and the stamps, each summing to its
    star's flux (the small part of the wide halo beyond the stamp is
    renormalised into it).
    """
    h = model.half
    n = 2 * h + 1
    x0 = np.rint(x).astype(np.int64) - h
    y0 = np.rint(y).astype(np.int64) - h
    stamps = np.zeros((x.size, n, n))
    for sigma, w in zip(model.sigmas, model.weights):
        wx = _axis_weights(x, x0.astype(np.float64), n, sigma)
        wy = _axis_weights(y, y0.astype(np.float64), n, sigma)
        stamps += w * wy[:, :, None] * wx[:, None, :]
    total = stamps.sum(axis=(1, 2))
    stamps *= (flux / total)[:, None, None]
    return x0, y0, stamps


def bright_stamp(x, y, flux, model, spike_angle_deg, half=64, sub=3):
    """One very bright star with diffraction spikes along ``spike_angle_deg``
    and ``spike_angle_deg + 90`` (degrees from +x).  Returns ``(x0, y0, stamp)``."""
    n = 2 * half + 1
    x0 = int(round(x)) - half
    y0 = int(round(y)) - half
    # super-sampled centres relative to the star
    offs = (np.arange(n * sub) + 0.5) / sub - 0.5
    gx = x0 + offs - x
    gy = y0 + offs - y
    xx, yy = np.meshgrid(gx, gy)
    r2 = xx * xx + yy * yy
    img = np.zeros_like(xx)
    core_w = 1.0 - model.spike_fraction - 0.06
    for sigma, w in zip(model.sigmas, model.weights):
        img += core_w * w * np.exp(-0.5 * r2 / sigma ** 2) / (2 * math.pi * sigma ** 2)
    # extended power-law wing (Moffat, beta = 1.5) carrying 6 %
    alpha = 4.0 * model.sigmas[0] / 0.56
    moff = (1.0 + r2 / alpha ** 2) ** -1.5
    img += 0.06 * moff / (moff.sum() / sub ** 2)
    spikes = np.zeros_like(xx)
    for ang in (spike_angle_deg, spike_angle_deg + 90.0):
        t = math.radians(ang)
        along = xx * math.cos(t) + yy * math.sin(t)
        across = -xx * math.sin(t) + yy * math.cos(t)
        spikes += np.exp(-0.5 * (across / model.spike_width) ** 2) / (1.0 + (along / (3 * model.sigmas[0])) ** 2)
    img += model.spike_fraction * spikes / (spikes.sum() / sub ** 2)
    binned = img.reshape(n, sub, n, sub).mean(axis=(1, 3))
    return x0, y0, binned * (flux / binned.sum())


def add_stamps(image, x0, y0, stamps):
    """Add (N, S, S) stamps with lower-left pixels (x0, y0) into ``image``
    (float64, modified in place), clipping at the borders."""
    ny, nx = image.shape
    if stamps.shape[0] == 0:
        return image
    s = stamps.shape[1]
    iy = y0[:, None, None] + np.arange(s)[None, :, None]
    ix = x0[:, None, None] + np.arange(s)[None, None, :]
    ok = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    flat = (iy * nx + ix)
    idx = np.broadcast_to(flat, stamps.shape)[np.broadcast_to(ok, stamps.shape)]
    image.ravel()[:] += np.bincount(idx, weights=stamps[np.broadcast_to(ok, stamps.shape)],
                                    minlength=nx * ny)
    return image
