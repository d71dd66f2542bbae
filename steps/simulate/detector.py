"""Render one WFPC2 chip of one exposure: stars through the true distortion,
sky, vignetting, noise, cosmic rays, static defects, A/D saturation, DQ.

Everything is in electrons until the last step, which digitises to raw DN
(ATODGAIN setting 7: each chip's own gain from the instrument table, 7.12,
7.12, 6.90 and 7.10 e-/DN, the values every WFPC2 reader -- DrizzlePac's and
ours -- converts back with; bias ~330 DN, 12-bit A/D ceiling 4095) and
subtracts the bias to give calibrated DN as in a ``c0m`` file.  Random streams are keyed by
(seed, purpose, exposure, chip), so a render without cosmic rays differs from
the normal render only where cosmic rays fell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drizzleflow.steps.instruments.wfpc2 import reference_files as rf
from drizzleflow.steps.instruments.wfpc2.constants import detector_gain

from . import psf as psfmod
from .geometry import REF_CHIP, chip_specs

__all__ = ["DetectorParams", "Pointing", "ChipRender", "render_chip", "static_defects",
           "cosmic_rays", "vignetting", "star_pixels", "DQ_VIGNETTED", "DQ_SATURATED",
           "DQ_BADCOL", "DQ_HOT", "DQ_WARM_REPAIRED", "flat_field", "bleed"]

DQ_VIGNETTED = 2
DQ_BADCOL = 2
DQ_SATURATED = 8
DQ_HOT = 512
DQ_WARM_REPAIRED = 1024

#: stream ids for numpy's SeedSequence entropy [seed, stream, exposure, chip]
_NOISE, _CR, _DEFECTS, _BIAS, _FLAT = 1, 2, 3, 4, 7


@dataclass(frozen=True)
class DetectorParams:
    gain: float = 7.0            # the ATODGAIN setting (7 or 15); each chip's e-/DN is the table's
    read_noise: float | None = None   # e-; None: each chip's value in the table
    bias: float = 330.0          # DN, removed in calibration
    adc_max: int = 4095          # raw DN ceiling
    sat_flag_dn: float = 3500.0  # calibrated DN above which DQ 8 is set
    full_well: float = 53000.0   # e-; charge beyond it blooms along the column
    sky_wf: float = 40.0         # e- per WF pixel per exposure (PC: scaled by pixel area)
    cr_per_chip: float = 30.0    # per 10 s on a full 800x800 chip
    n_badcols: int = 3
    n_hot: int = 120
    n_warm: int = 1500
    exptime: float = 10.0


@dataclass(frozen=True)
class Pointing:
    """Sky position of the reference chip's (XREF, YREF) and the position
    angle (deg E of N) of its +y axis: the whole model's pointing."""

    ra: float
    dec: float
    pv: float


@dataclass
class ChipRender:
    sci: np.ndarray      # float32 calibrated DN
    dq: np.ndarray       # int16
    cr: np.ndarray       # float32 electrons of cosmic-ray charge per pixel
    electrons: np.ndarray | None = None


def vignetting(size, detector):
    """(vx, vy) 1-D throughput profiles: the pyramid shadow dims the first
    ``edge`` columns / rows linearly from 1 down to ~0.15."""
    spec = chip_specs(size)[detector]
    t = np.arange(size, dtype=np.float64)
    vx = np.clip(0.15 + 0.85 * (t + 0.5) / spec.edge_x, 0.0, 1.0)
    vy = np.clip(0.15 + 0.85 * (t + 0.5) / spec.edge_y, 0.0, 1.0)
    return vx, vy


def static_defects(seed, size, detector, params: DetectorParams):
    """Static DQ and the per-pixel extra dark (e-) of hot pixels, identical
    in every exposure of a data set."""
    rng = np.random.default_rng([seed, _DEFECTS, 0, detector])
    spec = chip_specs(size)[detector]
    dq = np.zeros((size, size), dtype=np.int16)
    dq[:, :spec.edge_x] |= DQ_VIGNETTED
    dq[:spec.edge_y, :] |= DQ_VIGNETTED
    frac = (size / 800.0) ** 2
    cols = rng.choice(np.arange(spec.edge_x + 5, size - 5), size=max(1, int(round(params.n_badcols * size / 800))),
                      replace=False)
    badcols = []
    for c in cols:
        start = int(rng.integers(0, size // 2))
        dq[start:, c] |= DQ_BADCOL          # dead from ``start`` up; render_chip dims it
        badcols.append((int(c), start))
    n_hot = max(1, int(round(params.n_hot * frac)))
    n_warm = max(1, int(round(params.n_warm * frac)))
    pix = rng.choice(size * size, size=n_hot + n_warm, replace=False)
    hot, warm = pix[:n_hot], pix[n_hot:]
    dark = np.zeros(size * size)
    dark[hot] = rng.uniform(300.0, 6000.0, n_hot)
    dark[warm] = rng.normal(0.0, 3.0, n_warm)           # residual after repair
    dq.ravel()[hot] |= DQ_HOT
    dq.ravel()[warm] |= DQ_WARM_REPAIRED
    # (the start row is kept as drawn: DQ_BADCOL shares its bit with the vignetted
    # edge, so it cannot be recovered from the DQ array)
    return dq, dark.reshape(size, size), badcols


def flat_field(seed, size, detector):
    """Static relative response: ~1.5 % pixel-to-pixel plus a gentle gradient."""
    rng = np.random.default_rng([seed, _FLAT, 0, detector])
    t = np.linspace(-1.0, 1.0, size)
    slope = rng.uniform(-0.02, 0.02, 2)
    return (1.0 + rng.normal(0.0, 0.015, (size, size))) * (1.0 + slope[0] * t[None, :] + slope[1] * t[:, None])


def bleed(img, full_well):
    """Move charge above ``full_well`` along its column, half up and half
    down, filling the neighbouring pixels to the full well (CCD blooming)."""
    cols = np.flatnonzero((img > full_well).any(axis=0))
    for c in cols:
        col = img[:, c]
        over = col > full_well
        excess = float((col[over] - full_well).sum())
        col[over] = full_well
        rows = np.flatnonzero(over)
        for start, step in ((rows.max() + 1, 1), (rows.min() - 1, -1)):
            idx = np.arange(start, col.size if step > 0 else -1, step)
            if idx.size == 0:
                continue
            room = np.maximum(full_well - col[idx], 0.0)
            fill = np.minimum(room, np.maximum(0.5 * excess - (np.cumsum(room) - room), 0.0))
            col[idx] += fill
        img[:, c] = col
    return img


def cosmic_rays(seed, exp_index, size, detector, params: DetectorParams):
    """Cosmic-ray charge (e-) per pixel: ~30 tracks of 1-8 pixels per chip
    per 10 s, every hit pixel getting at least 60 e-."""
    rng = np.random.default_rng([seed, _CR, exp_index, detector])
    img = np.zeros((size, size))
    n = rng.poisson(params.cr_per_chip * params.exptime / 10.0 * (size / 800.0) ** 2)
    for _ in range(n):
        x0, y0 = rng.uniform(0, size - 1, 2)
        length = min(8.0, rng.exponential(2.0))
        ang = rng.uniform(0, 2 * math.pi)
        t = np.linspace(0.0, length, max(2, int(length * 3) + 2))
        px = np.rint(x0 + t * math.cos(ang)).astype(int)
        py = np.rint(y0 + t * math.sin(ang)).astype(int)
        keep = (px >= 0) & (px < size) & (py >= 0) & (py < size)
        cells = np.unique(py[keep] * size + px[keep])
        if cells.size == 0:
            continue
        total = rng.lognormal(math.log(1800.0), 0.6)
        share = rng.dirichlet(np.full(cells.size, 3.0)) * total
        img.ravel()[cells] += np.maximum(share, 60.0)
    return img


def star_pixels(ra, dec, model, ref_model, d2im, pointing):
    """0-based pixel positions of sky positions on one chip (true model)."""
    x, y = rf.sky_to_pixel(ra, dec, model, ref_model, d2im, pointing.ra, pointing.dec, pointing.pv)
    return x - 1.0, y - 1.0


def render_chip(*, seed, exp_index, size, detector, models, d2im, pointing, stars, bright,
                params: DetectorParams = DetectorParams(), crs=True, photflam=None,
                keep_electrons=False):
    """Render one chip.

    ``models``: {detector: IDCRow with v2ref/v3ref/theta}, ``d2im``: the
    34th-row table, ``pointing``: the TRUE :class:`Pointing`, ``stars``:
    dict of arrays ra, dec, flux_e; ``bright``: same for the very bright
    stars (rendered with spikes).  ``photflam``: {detector: PHOTFLAM}; chip
    counts scale by PHOTFLAM(WF3) / PHOTFLAM(chip).
    """
    model, ref = models[detector], models[REF_CHIP]
    resp = 1.0 if photflam is None else photflam[REF_CHIP] / photflam[detector]
    pm = psfmod.psf_for(detector)
    vx, vy = vignetting(size, detector)
    img = np.zeros((size, size))

    h = pm.half
    # cheap linear pre-selection (distortion is < 10 px), then the exact inverse model
    U, V = rf.sky_to_frame(stars["ra"], stars["dec"], pointing.ra, pointing.dec, pointing.pv)
    u, v = rf.frame_to_chip(model, ref, U, V)
    lin = np.linalg.inv(model.linear)
    ax = lin[0, 0] * u + lin[0, 1] * v + model.xref - 1.0
    ay = lin[1, 0] * u + lin[1, 1] * v + model.yref - 1.0
    m = h + 12
    near = np.flatnonzero((ax > -m) & (ax < size - 1 + m) & (ay > -m) & (ay < size - 1 + m))
    x, y = star_pixels(stars["ra"][near], stars["dec"][near], model, ref, d2im, pointing)
    on = (x > -h) & (x < size - 1 + h) & (y > -h) & (y < size - 1 + h)
    xs, ys = x[on], y[on]
    fl = stars["flux_e"][near][on] * resp
    # vignetting at the star's centre (the shadow varies slowly across a PSF)
    fl = fl * np.interp(xs, np.arange(size), vx) * np.interp(ys, np.arange(size), vy)
    for lo in range(0, xs.size, 4000):
        sl = slice(lo, lo + 4000)
        x0, y0, st = psfmod.gaussian_stamps(xs[sl], ys[sl], fl[sl], pm)
        psfmod.add_stamps(img, x0, y0, st)

    if bright is not None and len(bright["ra"]):
        bx, by = star_pixels(bright["ra"], bright["dec"], model, ref, d2im, pointing)
        spike = (model.theta % 90.0)
        for xb, yb, fb in zip(bx, by, bright["flux_e"]):
            if -64 < xb < size + 63 and -64 < yb < size + 63:
                x0, y0, st = psfmod.bright_stamp(xb, yb, fb * resp, pm, spike, half=64 if detector > 1 else 100)
                psfmod.add_stamps(img, np.array([x0]), np.array([y0]), st[None])

    bleed(img, params.full_well)
    spec = chip_specs(size)[detector]
    sky = params.sky_wf * (spec.scale / chip_specs(size)[REF_CHIP].scale) ** 2
    img += sky * np.outer(vy, vx)
    dq, dark, badcols = static_defects(seed, size, detector, params)
    img += np.maximum(dark, 0.0)

    # pixel-to-pixel response (the flat field), removed again by the calibration below:
    # calibrated values are then not on a lattice of integer DN, as in real c0m files
    qe = flat_field(seed, size, detector)
    rng = np.random.default_rng([seed, _NOISE, exp_index, detector])
    # the chip's own gain and read noise: a flat ATODGAIN of 7 e-/DN would put each
    # chip's electrons off by up to 1.7 % once a reader applies the real gains
    gain, table_rn = detector_gain(params.gain, detector)
    read_noise = table_rn if params.read_noise is None else params.read_noise
    elec = rng.poisson(img * qe).astype(np.float64) + rng.normal(0.0, read_noise, img.shape)
    elec += np.minimum(dark, 0.0)
    for col, start in badcols:            # a dead stretch of column: ~10 % response
        elec[start:, col] *= 0.1
    cr = cosmic_rays(seed, exp_index, size, detector, params)
    if crs:
        elec += cr
    bias = params.bias + np.random.default_rng([seed, _BIAS, exp_index, detector]).normal(0.0, 0.3)
    raw = np.clip(np.floor(elec / gain + bias + 0.5), 0, params.adc_max)
    sci = ((raw - bias) / qe).astype(np.float32)
    dq = dq.copy()
    dq[(raw >= params.adc_max) | (sci > params.sat_flag_dn)] |= DQ_SATURATED
    return ChipRender(sci=sci, dq=dq, cr=cr.astype(np.float32), electrons=img if keep_electrons else None)
