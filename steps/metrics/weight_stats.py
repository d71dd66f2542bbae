"""Weight-image statistics per chip: how evenly a drizzle setting samples the sky.

The DrizzlePac Handbook's rule of thumb, quoted by the tutorial: the RMS of
the final weight image should stay within about 20% of its median.  When the
drop (pixfrac × input pixel) becomes small compared with the output pixel,
some output pixels get few or no drops and the weight image turns blotchy —
its std/median rises.  The tutorial measures the median and standard
deviation in the central 500×500 output pixels of each chip (at 0.046″/pixel).

Here the box is centred on each chip's footprint centre (the chip's centre
pixel mapped through its WCS into the output frame) and its side is given in
pixels of a reference scale (500 at 0.046″ by default) and converted to the
current output scale, so every sweep point measures the same patch of sky.
The box is clipped to the chip's footprint (inset by the vignetted edge) so a
small chip or a large box never mixes in a neighbouring chip or the gaps.
"""
from __future__ import annotations

import numpy as np

from .footprint import point_in_quad

__all__ = ["box_side_pixels", "weight_box_stats", "meets_guidance"]


def box_side_pixels(box_ref, ref_scale, scale):
    """Side in output pixels of a box of ``box_ref`` pixels at ``ref_scale``."""
    return max(1, int(round(box_ref * ref_scale / scale)))


def weight_box_stats(wht, centre, side, corners=None):
    """Median, std and std/median of the weight image in a box around ``centre``.

    Parameters
    ----------
    wht : 2-D array
        Final weight image.
    centre : (float, float)
        Box centre ``(x, y)``, 0-based output pixels.
    side : int
        Box side in output pixels.
    corners : array (4, 2), optional
        Chip footprint quadrilateral; pixels outside it are excluded.

    Returns
    -------
    dict with ``wht_median``, ``wht_std``, ``wht_rms_over_median``,
    ``zero_wht_frac`` (pixels of the footprint box with zero weight — holes)
    and ``n_pix`` (pixels used).  Zero-weight pixels count in the statistics,
    as they do in a box measured with ``imexam``: holes are exactly what a
    too-small pixfrac produces.
    """
    ny, nx = wht.shape
    cx, cy = centre
    h = side / 2.0
    x0, x1 = int(np.floor(cx - h + 0.5)), int(np.floor(cx + h + 0.5))
    y0, y1 = int(np.floor(cy - h + 0.5)), int(np.floor(cy + h + 0.5))
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, nx), min(y1, ny)
    nan = float("nan")
    if x1 <= x0 or y1 <= y0:
        return {"wht_median": nan, "wht_std": nan, "wht_rms_over_median": nan, "zero_wht_frac": nan, "n_pix": 0}
    sub = np.asarray(wht[y0:y1, x0:x1], float)
    if corners is not None:
        yy, xx = np.mgrid[y0:y1, x0:x1]
        inside = point_in_quad(xx, yy, corners)
        vals = sub[inside]
    else:
        vals = sub.ravel()
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return {"wht_median": nan, "wht_std": nan, "wht_rms_over_median": nan, "zero_wht_frac": nan, "n_pix": 0}
    med = float(np.median(vals))
    std = float(np.std(vals))
    return {"wht_median": med, "wht_std": std,
            "wht_rms_over_median": std / med if med > 0 else nan,
            "zero_wht_frac": float(np.mean(vals <= 0)), "n_pix": int(vals.size)}


def meets_guidance(rms_over_median, limit=0.2):
    """The Handbook's sampling rule: weight RMS within ``limit`` of the median."""
    return bool(np.isfinite(rms_over_median) and rms_over_median <= limit)
