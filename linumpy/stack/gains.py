"""Slab-to-slab intensity continuity: gains fitted on the overlaps of consecutive slices.

Consecutive slices image the same tissue in their overlap: the bottom of
slice ``k-1`` (below the next cut) is the top of slice ``k``. Their mean
intensities there should agree; the ratio ``r_k = mean(previous) /
mean(current)`` measured on the overlap is the *boundary ratio*.

Each slice gets a gain ``g_k(t) = exp(a_k + b_k t)`` along its kept depth
(``t`` = plane / kept planes, 0 at the surface, 1 at the bottom): ``a_k``
matches its level to its neighbours, ``b_k`` removes a residual trend with
depth (an under- or over-compensated attenuation or focus makes every slab
darker or brighter at the bottom, a step of the same sign at every boundary).
They solve one small least-squares problem: every boundary matched
(``a_{k-1} + b_{k-1} t_k - a_k - b_k u_k = -ln r_k``, ``t_k`` and ``u_k``
the overlap's relative depth in the previous and the current slice), with
ridge terms keeping ``a`` and ``b`` near 0 and the
``b`` of neighbours alike. A systematic step is cheapest in ``b`` (a chain of
``a`` would drift), a single odd slice in ``a``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Weight of a boundary equation relative to the ridge terms.
MATCH_WEIGHT = 10.0
#: Ridge weights on the level ``a``, the trend ``b`` and the difference of neighbouring trends.
LEVEL_WEIGHT, TREND_WEIGHT, SMOOTH_WEIGHT = 1.0, 0.1, 2.0


def fit_gains(
    ratios: Sequence[float | None], overlap_depths: Sequence[tuple[float, float] | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``(a, b)`` per slice from the boundary ratios.

    Parameters
    ----------
    ratios : sequence
        ``ratios[k]``: boundary ratio between slice ``k-1`` and ``k`` (None:
        not measured, e.g. the first slice or a gap).
    overlap_depths : sequence
        ``(t_k, u_k)``: relative depth (0 top, 1 bottom of the kept planes)
        of the overlap in slice ``k-1`` and in slice ``k``.

    Returns
    -------
    a, b : ndarray
        Log gain at the top of each slice and its change down to the bottom.

    Examples
    --------
    >>> a, b = fit_gains([None, 0.8, 0.8, 0.8], [None] + [(1.0, 0.0)] * 3)
    >>> bool(np.all(b > 0.15))  # each slab too dark at its bottom: a trend, not a drifting level
    True
    """
    n = len(ratios)
    rows, rhs = [], []

    def equation(coefficients: dict[int, float], value: float, weight: float) -> None:
        row = np.zeros(2 * n)
        for index, coefficient in coefficients.items():
            row[index] = coefficient * weight
        rows.append(row)
        rhs.append(value * weight)

    for k in range(1, n):
        if ratios[k] is not None and overlap_depths[k] is not None and ratios[k] > 0:
            t, u = overlap_depths[k]
            equation({k - 1: 1.0, n + k - 1: t, k: -1.0, n + k: -u}, -np.log(ratios[k]), MATCH_WEIGHT)
    for k in range(n):
        equation({k: 1.0}, 0.0, LEVEL_WEIGHT)
        equation({n + k: 1.0}, 0.0, TREND_WEIGHT)
        if k > 0:
            equation({n + k: 1.0, n + k - 1: -1.0}, 0.0, SMOOTH_WEIGHT)
    solution = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return solution[:n], solution[n:]


def corrected_ratios(
    ratios: Sequence[float | None], overlap_depths: Sequence[tuple[float, float] | None], a: np.ndarray,
    b: np.ndarray,
) -> list[float | None]:
    """Boundary ratios once the gains are applied (1 = seamless)."""
    out: list[float | None] = [None] * len(ratios)
    for k in range(1, len(ratios)):
        if ratios[k] is not None and overlap_depths[k] is not None:
            t, u = overlap_depths[k]
            out[k] = float(ratios[k] * np.exp(a[k - 1] + b[k - 1] * t - a[k] - b[k] * u))
    return out


def overlap_ratio(previous: np.ndarray, current: np.ndarray) -> float | None:
    """``mean(previous) / mean(current)`` over pixels where both overlap planes hold signal.

    Both are ``(z, y, x)`` views of the same tissue (same shape). None when
    fewer than 64 pixels are common or a mean is not positive.
    """
    both = (previous > 0) & (current > 0)
    if both.sum() < 64:
        return None
    upper, lower = float(previous[both].mean()), float(current[both].mean())
    return upper / lower if upper > 0 and lower > 0 else None
