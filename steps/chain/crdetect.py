"""The driz_cr cosmic-ray test on plain arrays, in electrons.

A pixel is a cosmic ray when the input differs from the blotted median by more
than the noise plus a multiple of the blot's local derivative (which absorbs
small misregistrations of sharp sources).  Two passes: a strict one that finds
the core of each hit, and a looser one applied only next to first-pass hits.

Deviation from AstroDrizzle (deliberate): the noise model is
``sqrt(|B| + rn**2)`` with the blot ``B`` (sky included) and the read noise in
**electrons** and no gain factor.  AstroDrizzle passes WFPC2's gain (~7) into a
DN-domain formula while the data are already electrons, which shrinks the
noise by ~1/sqrt(gain) and flags about 11 % of sky pixels; it also adds the sky
a second time.
"""
from __future__ import annotations

import numpy as np

__all__ = ["deriv", "driz_cr", "grow_mask", "cte_grow", "cr_mask"]


def deriv(b, legacy_edges=False):
    """Maximum absolute difference of each pixel with its four neighbours.

    With ``legacy_edges=True`` the exact ``quickDeriv.qderiv`` program is
    reproduced: the shifted copies are zero outside a window that excludes the
    last row and column, so border pixels get ``D >= |B|`` (lenient there).
    The default treats missing neighbours as equal to the pixel (difference 0).
    """
    b = np.asarray(b, dtype=np.float32)
    R, C = b.shape
    if legacy_edges:
        d = np.zeros_like(b)
        s = np.zeros_like(b)
        s[:R - 1, 1:C - 1] = b[:R - 1, 0:C - 2]
        np.maximum(d, np.abs(b - s), out=d)
        s[:] = 0
        s[:R - 1, :C - 2] = b[:R - 1, 1:C - 1]
        np.maximum(d, np.abs(b - s), out=d)
        s[:] = 0
        s[1:R - 1, :C - 1] = b[0:R - 2, :C - 1]
        np.maximum(d, np.abs(b - s), out=d)
        s[:] = 0
        s[:R - 2, :C - 1] = b[1:R - 1, :C - 1]
        np.maximum(d, np.abs(b - s), out=d)
        return d
    d = np.zeros_like(b)
    dx = np.abs(np.diff(b, axis=1))
    np.maximum(d[:, 1:], dx, out=d[:, 1:])
    np.maximum(d[:, :-1], dx, out=d[:, :-1])
    dy = np.abs(np.diff(b, axis=0))
    np.maximum(d[1:, :], dy, out=d[1:, :])
    np.maximum(d[:-1, :], dy, out=d[:-1, :])
    return d


def _box_sum_symmetric(a, n):
    """Sum of an n×n box (n odd or even, as scipy's 'same' convolution centres
    it) with symmetric (mirror) boundary."""
    a = np.asarray(a, dtype=np.int32)
    if n <= 1:
        return a.copy()
    before = n // 2
    after = n - 1 - before
    # convolve2d(mode='same') with an n×n kernel centres at index (n-1)//2 of the
    # flipped kernel; for odd n this is symmetric.  For even n the window spans
    # [i-after, i+before] after flipping.
    lo, hi = after, before
    p = np.pad(a, ((lo, hi), (lo, hi)), mode="symmetric")
    ny, nx = a.shape
    out = np.zeros_like(a)
    for dy in range(n):
        for dx in range(n):
            out += p[dy:dy + ny, dx:dx + nx]
    return out


def driz_cr(data, blot, rdnoise, snr=(3.5, 3.0), scale=(1.2, 0.7), legacy_edges=False):
    """Two-pass derivative test. Returns ``good`` (True = not a cosmic ray).

    Parameters
    ----------
    data : ndarray
        Input chip in electrons, sky included.
    blot : ndarray
        Blotted median in electrons, sky added back.
    rdnoise : float
        Read noise, electrons.
    snr, scale : (float, float)
        Signal-to-noise and derivative multipliers of the first and second test.

    Notes
    -----
    ``T_k = scale_k * D + snr_k * sqrt(|B| + rn**2)``; a pixel is bad when
    ``|I - B| > T_2`` and some pixel of its 3×3 neighbourhood (itself
    included) has ``|I - B| > T_1``.
    """
    data = np.asarray(data, dtype=np.float32)
    blot = np.asarray(blot, dtype=np.float32)
    if legacy_edges or data.ndim != 2 or data.shape != blot.shape:
        return _driz_cr_numpy(data, blot, rdnoise, snr, scale, legacy_edges)
    from ._crdetect import driz_cr_flags
    f = np.float32
    return driz_cr_flags(np.ascontiguousarray(data), np.ascontiguousarray(blot), f(rdnoise) ** 2,
                         f(scale[0]), f(scale[1]), f(snr[0]), f(snr[1]))


def _driz_cr_numpy(data, blot, rdnoise, snr, scale, legacy_edges):
    """The numpy program of :func:`driz_cr` (the compiled ``_crdetect`` gives the
    same pixels in two sweeps instead of some twenty): the reference, and the path
    for the legacy edges."""
    diff = np.abs(data - blot)
    d = deriv(blot, legacy_edges=legacy_edges)
    noise = np.sqrt(np.abs(blot) + np.float32(rdnoise) ** 2)
    t1 = scale[0] * d + snr[0] * noise
    t2 = scale[1] * d + snr[1] * noise
    ok1 = diff <= t1
    near = _box_sum_symmetric(ok1, 3) >= 9
    return (diff <= t2) | near


def grow_mask(good, n):
    """Spread bad pixels over an n×n window (n = 1: no growth)."""
    if n <= 1:
        return np.asarray(good, dtype=bool).copy()
    return _box_sum_symmetric(good, n) == n * n


def cte_grow(good, length, cte_dir=-1):
    """Flag a CTE tail of ``length`` pixels along columns after each bad pixel.

    ``cte_dir = -1`` (WFPC2) puts the tail at larger row indices, ``+1`` at
    smaller ones, ``0`` disables it.  Returns ``good`` with the tails removed.
    """
    good = np.asarray(good, dtype=bool)
    if length <= 0 or cte_dir == 0:
        return good.copy()
    out = good.copy()
    ny = good.shape[0]
    for k in range(1, int(length) + 1):
        if k >= ny:
            break
        if cte_dir < 0:
            out[k:, :] &= good[:-k, :]
        else:
            out[:-k, :] &= good[k:, :]
    return out


def cr_mask(data, blot, rdnoise, snr=(3.5, 3.0), scale=(1.2, 0.7), grow=1, ctegrow=0,
            cte_dir=-1, legacy_edges=False):
    """Full per-chip CR mask (True = good): test, growth, CTE tail."""
    good = driz_cr(data, blot, rdnoise, snr, scale, legacy_edges=legacy_edges)
    g = grow_mask(good, grow)
    if ctegrow > 0:
        g &= cte_grow(good, ctegrow, cte_dir)
    return g
