"""Linear fits between matched positions in the reference tangent plane.

Model (column vectors, coordinates centred on the plane's ``center``)::

    img - c = M @ (ref - c) + shift

``M`` is the identity for ``shift``, a scaled rotation for ``rscale``
(``rshift`` fixes the scale at 1) and free for ``general``.  Rotation, scale
and skew follow TweakReg's definitions so reported numbers can be compared
with its ``*_catalog_fit.match`` files: a small clockwise rotation of the image
reads as ~359.99 degrees.
"""
from __future__ import annotations

import numpy as np

__all__ = ["GEOMETRIES", "FitError", "fit_once", "iter_fit", "apply_fit", "invert_fit"]

GEOMETRIES = ("shift", "rshift", "rscale", "general")
_MIN_POINTS = {"shift": 1, "rshift": 2, "rscale": 2, "general": 3}


class FitError(ValueError):
    """Too few or degenerate points for the requested geometry."""


def fit_once(u, x, geometry="rscale"):
    """Least-squares ``x = M u + t`` for centred (N, 2) arrays ``u`` (reference)
    and ``x`` (image).  Returns ``(M, t)``."""
    if geometry not in GEOMETRIES:
        raise FitError(f"unknown fitgeometry '{geometry}' (use one of {', '.join(GEOMETRIES)})")
    u = np.asarray(u, np.float64)
    x = np.asarray(x, np.float64)
    n = len(u)
    if n < _MIN_POINTS[geometry]:
        raise FitError(f"{geometry} fit needs at least {_MIN_POINTS[geometry]} points, got {n}")
    um, xm = u.mean(axis=0), x.mean(axis=0)
    if geometry == "shift":
        M = np.eye(2)
    elif geometry in ("rscale", "rshift"):
        du, dx = u - um, x - xm
        den = np.sum(du * du)
        if den <= 0:
            raise FitError("suspected coincident points: no spread in the reference positions")
        a = np.sum(du[:, 0] * dx[:, 0] + du[:, 1] * dx[:, 1]) / den
        b = np.sum(du[:, 1] * dx[:, 0] - du[:, 0] * dx[:, 1]) / den
        if geometry == "rshift":
            s = np.hypot(a, b)
            a, b = a / s, b / s
        M = np.array([[a, b], [-b, a]])
    else:
        A = np.column_stack([u - um, np.ones(n)])
        if np.linalg.matrix_rank(A[:, :2]) < 2:
            raise FitError("suspected colinear points: general fit is singular")
        coef, *_ = np.linalg.lstsq(A, x - xm, rcond=None)
        M = coef[:2].T
    t = xm - M @ um
    return M, t


def _describe(M):
    """TweakReg's derived quantities of a fit matrix (column convention)."""
    det = M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]
    sgn = 1.0 if det >= 0 else -1.0
    sx = float(np.hypot(M[0, 0], M[1, 0]))
    sy = float(np.hypot(M[0, 1], M[1, 1]))
    N = M / np.array([sx, sy])[None, :]
    rot = np.degrees(np.arctan2(N[0, 1] - sgn * N[1, 0], N[0, 0] + sgn * N[1, 1])) % 360.0
    rotx = np.degrees(np.arctan2(-N[1, 0], N[0, 0])) % 360.0
    roty = np.degrees(np.arctan2(N[0, 1], N[1, 1])) % 360.0
    skew = (roty - rotx + 180.0) % 360.0 - 180.0
    return {"proper": bool(det >= 0), "scale": float(np.sqrt(abs(det))),
            "scale_xy": (sx, sy), "rot": float(rot), "rot_xy": (float(rotx), float(roty)),
            "skew": float(skew)}


def apply_fit(fit, ref_xy):
    """Image-plane positions predicted from reference positions."""
    c = np.asarray(fit["center"], float)
    M = np.asarray(fit["matrix"], float)
    return (np.asarray(ref_xy, float) - c) @ M.T + c + np.asarray(fit["shift"], float)


def invert_fit(fit, img_xy):
    """Reference-plane positions of image-plane positions (the correction)."""
    c = np.asarray(fit["center"], float)
    M = np.asarray(fit["matrix"], float)
    return (np.asarray(img_xy, float) - c - np.asarray(fit["shift"], float)) @ np.linalg.inv(M).T + c


def iter_fit(ref_xy, img_xy, geometry="rscale", center=(0.0, 0.0), nclip=3, sigma=3.0):
    """Fit with iterative per-axis sigma clipping (TweakReg style).

    At each of ``nclip`` iterations, pairs with ``|res_x| >= sigma*rms_x`` or
    ``|res_y| >= sigma*rms_y`` are rejected and the fit repeated; stops early
    when nothing changes or too few points would remain.

    Returns
    -------
    dict
        ``geometry``, ``matrix`` (2x2 list), ``shift``, ``center``, ``rms``
        (per axis, population std), ``rmse``, ``mae``, ``nmatch``, ``nfit``,
        ``mask`` (bool list, True = used), ``resid`` ((N, 2) list) and the
        derived ``rot``, ``rot_xy``, ``scale``, ``scale_xy``, ``skew``, ``proper``.
    """
    ref_xy = np.asarray(ref_xy, np.float64).reshape(-1, 2)
    img_xy = np.asarray(img_xy, np.float64).reshape(-1, 2)
    c = np.asarray(center, np.float64)
    u, x = ref_xy - c, img_xy - c
    n = len(u)
    use = np.ones(n, bool)
    M, t = fit_once(u, x, geometry)
    for _ in range(int(nclip)):
        res = x - (u @ M.T + t)
        rms = res[use].std(axis=0)
        if not np.all(rms > 0):
            break
        new = (np.abs(res[:, 0]) < sigma * rms[0]) & (np.abs(res[:, 1]) < sigma * rms[1])
        if new.sum() < max(_MIN_POINTS[geometry], 3) or np.array_equal(new, use):
            break
        use = new
        M, t = fit_once(u[use], x[use], geometry)
    res = x - (u @ M.T + t)
    r = res[use]
    out = {"geometry": geometry, "matrix": M.tolist(), "shift": [float(t[0]), float(t[1])],
           "center": [float(c[0]), float(c[1])],
           "rms": [float(v) for v in r.std(axis=0)],
           "rmse": float(np.sqrt(np.mean(np.sum(r * r, axis=1)))),
           "mae": float(np.mean(np.hypot(r[:, 0], r[:, 1]))),
           "nmatch": int(n), "nfit": int(use.sum()), "mask": use.tolist(),
           "resid": res.tolist()}
    out.update(_describe(M))
    return out
