"""Slab-to-slab intensity continuity: gains fitted on the overlaps of consecutive slices.

Consecutive slices image the same tissue in their overlap: the bottom of
slice ``k-1`` (below the next cut) is the top of slice ``k``. Their mean
intensities there should agree; the ratio ``r_k = mean(previous) /
mean(current)`` measured on the overlap's tissue (:func:`overlap_ratio`) is
the *boundary ratio*.

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
``a`` would drift), a single odd slice in ``a``. The levels are taken on the
compensated scale every slice shares (:func:`compensated_levels`), not on
each slice's own normalised one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from linumpy.intensity.transmission import held_means

#: Weight of a boundary equation relative to the ridge terms.
MATCH_WEIGHT = 10.0
#: Ridge weights on the level ``a``, the trend ``b`` and the difference of neighbouring trends.
LEVEL_WEIGHT, TREND_WEIGHT, SMOOTH_WEIGHT = 1.0, 0.1, 2.0
#: Weight of the priors (level 0, trend 0) of an ``untied`` slice (:func:`fit_gains`): its level and trend are the
#: focus's, unknown; the priors only keep the fit defined where no overlap measures them.
UNTIED_WEIGHT = 0.01


def fit_gains(
    ratios: Sequence[float | None], overlap_depths: Sequence[tuple[float, float] | None],
    untied: Sequence[bool] | None = None, trend_offsets: Sequence[float] | None = None,
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
    untied : sequence of bool, optional
        Slices whose depth trend is not tied to their neighbours' (a slice
        that keeps the focus: its trend is the focus's); None: all tied.
    trend_offsets : sequence of float, optional
        ``trend_offsets[k]``: what the tie of neighbouring trends makes
        ``b_k - b_{k-1}`` (:func:`borrowed_trends`); None: 0, alike.

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
    untied = [False] * n if untied is None else list(untied)
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
        equation({k: 1.0}, 0.0, UNTIED_WEIGHT if untied[k] else LEVEL_WEIGHT)
        equation({n + k: 1.0}, 0.0, UNTIED_WEIGHT if untied[k] else TREND_WEIGHT)
        if k > 0 and not (untied[k] or untied[k - 1]):
            equation({n + k: 1.0, n + k - 1: -1.0}, 0.0 if trend_offsets is None else trend_offsets[k], SMOOTH_WEIGHT)
    solution = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return solution[:n], solution[n:]


def compensated_levels(scales: Sequence[float | None]) -> tuple[np.ndarray, str]:
    """Log level of each normalised slice in the compensated units, relative to their median, and its source.

    Each slice's normalisation divides it by its own percentile range
    (``scales``), which follows its tissue: a slice holding more bright tissue
    is divided more. The axial correction's compensated units are shared by
    every slice (the light at each fresh cut is 1, the focus profile peaks
    at 1), so ``ln(scale / median scale)`` puts the slices back on one scale.
    Zeros (``"normalised"``: each slice at its own level) when a scale is
    missing or not positive.

    Examples
    --------
    >>> levels, source = compensated_levels([100.0, 110.0, 121.0])
    >>> np.round(np.exp(levels), 3).tolist(), source
    ([0.909, 1.0, 1.1], 'compensated')
    >>> compensated_levels([100.0, None])[1]
    'normalised'
    """
    if not scales or any(s is None or not s > 0 for s in scales):
        return np.zeros(len(scales)), "normalised"
    logs = np.log(np.asarray(scales, float))
    return logs - np.median(logs), "compensated"


def compensated_ratios(ratios: Sequence[float | None], levels: np.ndarray) -> list[float | None]:
    """Boundary ratios of the slices once put on the compensated scale (``levels``, :func:`compensated_levels`).

    Examples
    --------
    >>> [None if r is None else round(r, 3) for r in compensated_ratios([None, 1.0], np.log([1.0, 1.1]))]
    [None, 0.909]
    """
    return [None if r is None or k == 0 else float(r * np.exp(levels[k - 1] - levels[k]))
            for k, r in enumerate(ratios)]


def trend_measured(ratios: Sequence[float | None], overlap_depths: Sequence[tuple[float, float] | None]) -> list[bool]:
    """Per slice: whether a boundary with the slice below measures its depth trend ``b``.

    False for the last slice and a slice before a gap or an unmatched
    boundary: :func:`fit_gains` then gives it its neighbour's trend (the
    ridge tying neighbouring ``b``, plus the level of the neighbour's lateral
    map, :func:`borrowed_trends`), which nothing below it checks.

    Examples
    --------
    >>> trend_measured([None, 0.9, None, 1.1], [None, (1.0, 0.0), None, (1.0, 0.0)])
    [True, False, True, False]
    """
    return [k + 1 < len(ratios) and ratios[k + 1] is not None and overlap_depths[k + 1] is not None
            and ratios[k + 1] > 0 for k in range(len(ratios))]


def borrowed_trends(measured: Sequence[bool], lateral: Sequence[LateralGain | None]) -> list[float | None]:
    """Per slice whose trend no boundary below measures (``measured``, :func:`trend_measured`), what its tie to the
    slice above adds to that slice's trend ``b``: the trend of the level the slice above's lateral map gives its
    tissue (:attr:`LateralGain.level_log` over the map's depth); None elsewhere or where the slice above has no map.

    The slice above matched the slice below with its scalar trend and its map together (its boundary ratio is taken
    with the map applied), and a map less its median still moves the tissue's mean where the gain is skewed
    (foreign ``wm`` / ``deep`` tuning seeds: -1.3 to +7.7 % on the overlap's tissue); a slice with nothing below it
    gets no map, so a trend tied to the scalar one alone leaves its deep planes that much off the slabs above
    (``docs/stacking.md``, *The last slab's trend*).

    Examples
    --------
    >>> above = LateralGain(np.zeros((2, 2), np.float32), (1.0, 1.0), 0.5, level_log=0.05)
    >>> borrowed_trends([True, True, False], [None, above, None])
    [None, None, 0.1]
    """
    return [None if measured[k] or k == 0 or lateral[k - 1] is None
            else float(lateral[k - 1].level_log / lateral[k - 1].depth) for k in range(len(measured))]


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


#: Tissue of an overlap, for its scalar ratio, when its A-line levels are not two classes (see
#: :func:`overlap_tissue`): A-lines whose mean over the overlap is at least this fraction of the median over
#: the A-lines with signal.
RATIO_TISSUE_FRACTION = 0.5
#: Least ratio of the median A-line levels of the two classes Otsu's threshold splits the overlap into for the
#: brighter class to be taken as the tissue (gel and tissue); closer classes are one class (tissue filling the
#: field) and :data:`RATIO_TISSUE_FRACTION` decides.
RATIO_MIN_CLASS_SEPARATION = 4.0


@dataclass(frozen=True)
class OverlapRatio:
    """Boundary ratio of an overlap and how its tissue was chosen (:func:`overlap_ratio`).

    Attributes
    ----------
    value : float or None
        ``previous / current`` over the tissue (None: too few pixels, no positive ratio).
    tissue : str
        ``"otsu"`` (the brighter of two classes of A-line levels) or ``"half median"``
        (the levels are one class: :data:`RATIO_TISSUE_FRACTION` of their median).
    separation : float or None
        Ratio of the two Otsu classes' median levels (None: no signal or one level).
    """

    value: float | None
    tissue: str
    separation: float | None

    def summary(self) -> dict[str, str | float | None]:
        """JSON-ready ``{"tissue": ..., "separation": ...}``."""
        return {"tissue": self.tissue,
                "separation": None if self.separation is None else round(self.separation, 2)}


def overlap_tissue(level: np.ndarray) -> tuple[np.ndarray, str, float | None]:
    """The A-lines of an overlap taken as tissue for its ratio, the rule used and the class separation.

    ``level``: each A-line's mean over the overlap (0: no signal). Otsu's
    threshold on the log levels with signal splits them in two classes; when
    their medians are at least :data:`RATIO_MIN_CLASS_SEPARATION` apart the
    brighter class is the tissue (``"otsu"``), else the A-lines at least
    :data:`RATIO_TISSUE_FRACTION` of the median level (``"half median"``).
    With gel filling half of the field the half-median rule let in dim tissue
    and the tissue's edges, where the previous slice's deep planes read 1.2-1.6x
    the next slice's top (contrast lost with depth): on the simulator's
    ``harsh`` matrix the ratio then read above the truth's tissue ratio at
    every boundary (by 1.6% / 2.4% on average on seeds 1 / 0), the Otsu class
    by 0.1% / 0.4% (see ``docs/stacking.md``, *The boundary ratio's tissue*).

    Examples
    --------
    >>> level = np.full((16, 16), 0.05); level[:, 8:] = 1.0; level[:, 7] = 0.2  # gel, an edge, tissue
    >>> tissue, rule, separation = overlap_tissue(level)
    >>> rule, int(tissue.sum()), round(separation)
    ('otsu', 128, 20)
    >>> overlap_tissue(np.linspace(0.5, 1.0, 256).reshape(16, 16))[1]  # tissue fills the field
    'half median'
    """
    signal = level > 0
    if not signal.any():
        return signal, "half median", None
    fallback = level >= RATIO_TISSUE_FRACTION * np.median(level[signal])
    log_level = np.log(level[signal])
    if np.ptp(log_level) <= 0:
        return fallback, "half median", None
    threshold = threshold_otsu(log_level)
    dim, bright = log_level[log_level < threshold], log_level[log_level >= threshold]
    separation = float(np.exp(np.median(bright) - np.median(dim)))
    if separation < RATIO_MIN_CLASS_SEPARATION:
        return fallback, "half median", separation
    return level >= np.exp(threshold), "otsu", separation


def overlap_ratio(previous: np.ndarray, current: np.ndarray) -> OverlapRatio:
    """``previous / current`` over the tissue where both overlap planes hold signal: the median of the planes' ratios.

    Both are ``(z, y, x)`` views of the same tissue (same shape). Tissue: the
    A-lines :func:`overlap_tissue` keeps by their mean over ``current`` (dim
    agarose and the tissue's edges, where a lateral gain map moves most, are
    left out: the volume's intensity is judged on the tissue). Each plane's
    ratio of means, then their median: the new slice's first planes below
    its cut face can still be dim (on the simulator's ``tilted`` and ``harsh``
    matrix, planes 2 and 3 at 85-96% of the planes below; the per-plane
    ratios of an overlap then ran from 1.55 down to 1.14 and their mean read
    5% high). No value when fewer than 64 pixels are common or no ratio is positive.

    Examples
    --------
    >>> current = np.ones((4, 16, 16)); current[:, :, :4] = 0.05  # a dim agarose band
    >>> previous = 0.8 * current; previous[:, :, :4] = 0.2
    >>> ratio = overlap_ratio(previous, current)
    >>> round(ratio.value, 3), ratio.tissue  # the tissue's ratio, not the agarose's
    (0.8, 'otsu')
    >>> current[0] *= 0.6  # a dim first plane
    >>> round(overlap_ratio(previous, current).value, 3)
    0.8
    """
    tissue, rule, separation = overlap_tissue(current.mean(axis=0))
    both = (previous > 0) & (current > 0) & tissue[None]
    if both.sum() < 64:
        return OverlapRatio(None, rule, separation)
    planes = []
    for upper, lower, mask in zip(previous, current, both, strict=True):
        if mask.sum() >= 16 and (lower_mean := float(lower[mask].mean())) > 0:
            planes.append(float(upper[mask].mean()) / lower_mean)
    ratio = float(np.median(planes)) if planes else 0.0
    return OverlapRatio(ratio if ratio > 0 else None, rule, separation)



#: Lateral Gaussian (registration pixels) of the overlap means before their ratio is taken.
MAP_SIGMA_PX = 4.0
#: Smoothed fraction of overlap pixels (both slices with signal) below which the map is 0 (no correction).
MAP_MIN_SUPPORT = 0.5
#: Fewest supported pixels for a lateral map at all.
MAP_MIN_PIXELS = 64
#: Overlap NCC relative to its speckle ceiling (the lateral registration's confidence,
#: ``linumpy.stack.refine.speckle_ceiling``) below which a slice gets no lateral map: the overlap's tissue differs
#: too much (deformation, a cavity torn out at the cut) for a pixel-wise ratio. From it to
#: :data:`MAP_FULL_CONFIDENCE` the map fades in (:func:`map_strength`).
MAP_MIN_CONFIDENCE = 0.4
#: Overlap confidence from which a slice's lateral map is applied at full strength.
MAP_FULL_CONFIDENCE = 0.6
#: Largest |log gain| of the lateral map (a factor of 2 either way).
MAP_MAX_LOG = float(np.log(2.0))
#: ``lateral_gain_fallback`` of a slice with no slice right below it (the last slice, one before a gap):
#: no overlap measures its compensation error, which grows with depth (the end-of-range extension of the
#: attenuation compensation's tail sums; ``docs/stacking.md``, *The last slab's lateral field*).
NO_SLICE_BELOW = "no slice right below it: no lateral gain map (its deep planes keep the compensation's error)"
#: Median ``p95 / p5`` of the stack's measured lateral maps from which a slice with no slice below it is
#: flagged: the slabs above needed a lateral field of about +-10% or more at their bottom.
UNMEASURED_FLAG_SPREAD = 1.2
#: Lateral windows of a slice's map kept interpolated by :meth:`LateralGain.sampler` (bounds its memory).
SAMPLER_WINDOWS_KEPT = 16
#: Largest side (pixels) of a stored map; larger maps are block-averaged down (memory per slice <= 256 KiB).
MAP_MAX_SIDE = 256


@dataclass(frozen=True)
class LateralGain:
    """A slice's lateral log-gain map, measured on its overlap with the next slice.

    Attributes
    ----------
    log_map : ndarray, shape (y, x)
        Log gain at the overlap depth; pixel ``(i, j)`` is centred at
        ``((i + 0.5) * pixel_um[0], (j + 0.5) * pixel_um[1])`` from the
        slice's lateral corner.
    pixel_um : tuple of float
        Map pixel size ``(y, x)``.
    depth : float
        Relative depth of the overlap (0 top, 1 bottom of the kept planes):
        the log gain grows linearly from 0 at the top to the map there.
    partial_fraction : float
        Fraction of the overlap's A-lines with a plane left out of the map's
        depth means (:func:`partial_fraction`, :func:`log_ratio_map`).
    level_log : float
        Log gain the map gives the overlap's tissue level (:func:`map_level_log`).
    """

    log_map: np.ndarray
    pixel_um: tuple[float, float]
    depth: float
    partial_fraction: float = 0.0
    level_log: float = 0.0
    strength: float = 1.0

    def faded(self, strength: float) -> LateralGain | None:
        """The map and its level scaled by ``strength`` (:func:`map_strength`): None at 0, itself at 1.

        Examples
        --------
        >>> full = LateralGain(np.full((2, 2), 0.2, np.float32), (1.0, 1.0), 0.5, level_log=0.04)
        >>> half = full.faded(0.5)
        >>> round(float(half.log_map[0, 0]), 3), round(half.level_log, 3), half.strength
        (0.1, 0.02, 0.5)
        >>> full.faded(0.0) is None, full.faded(1.0) is full
        (True, True)
        """
        if strength <= 0:
            return None
        if strength >= 1:
            return self
        return replace(self, log_map=(self.log_map * strength).astype(np.float32),
                       level_log=self.level_log * strength, strength=float(strength))

    def summary(self) -> dict[str, float]:
        """Spread of the gain over the supported pixels (5th and 95th percentiles), the supported fraction and
        the fraction of the overlap's A-lines partly empty (``partial_fraction``)."""
        supported = self.log_map[self.log_map != 0]
        partial = {"partial_fraction": round(self.partial_fraction, 4)}
        if supported.size == 0:
            return {"p5": 1.0, "p95": 1.0, "supported_fraction": 0.0, **partial}
        p5, p95 = np.exp(np.percentile(supported, [5, 95]))
        return {"p5": round(float(p5), 4), "p95": round(float(p95), 4),
                "supported_fraction": round(supported.size / self.log_map.size, 4), **partial}

    def sampler(self, shape_yx: Sequence[int], resolution_um: float, offset_um: Sequence[float],
                ) -> Callable[[tuple[int, int], tuple[int, int]], np.ndarray]:
        """The map at output voxel centres ``(j + 0.5) * resolution - offset`` (bilinear, edges repeated).

        Returns ``sample((y0, y1), (x0, x1))``: the map over those output rows
        and columns of a slice ``shape_yx`` voxels wide, float32, each voxel
        interpolated on its own, so the values do not depend on the window.
        The last :data:`SAMPLER_WINDOWS_KEPT` windows are kept (the blocks of
        every depth of a lateral chunk ask for the same window; the caller
        must not write into the array returned): memory bounded per slice,
        whatever its size.
        """
        (rows, row_fraction), (columns, column_fraction) = (
            _interpolation_indices(n, self.log_map.shape[a], resolution_um, offset_um[a], self.pixel_um[a])
            for a, n in enumerate(shape_yx))
        last = np.array(self.log_map.shape) - 1

        def sample(y_range: tuple[int, int], x_range: tuple[int, int]) -> np.ndarray:
            return interpolated(*y_range, *x_range)

        @functools.lru_cache(maxsize=SAMPLER_WINDOWS_KEPT)
        def interpolated(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            y, fy = rows[y0:y1, None], row_fraction[y0:y1, None]
            x, fx = columns[None, x0:x1], column_fraction[None, x0:x1]
            y1_, x1_ = np.minimum(y + 1, last[0]), np.minimum(x + 1, last[1])
            m = self.log_map
            upper = m[y, x] * (1 - fx) + m[y, x1_] * fx
            lower = m[y1_, x] * (1 - fx) + m[y1_, x1_] * fx
            return (upper * (1 - fy) + lower * fy).astype(np.float32)

        return sample


def map_strength(confidence: float) -> float:
    """Strength at which a slice's lateral map is applied, from its overlap confidence with the next slice.

    0 below :data:`MAP_MIN_CONFIDENCE`, 1 from :data:`MAP_FULL_CONFIDENCE`,
    a smoothstep between (monotone, no jump at either end). A hard gate made
    the volume jump with the confidence: on foreign ``a205`` 373 a 0.2 px
    nudge of one tile moved slice 0's confidence 0.504 -> 0.496, across the
    old gate at 0.5, and the volume NCC 0.9158 -> 0.9129 (``docs/stacking.md``,
    *The lateral map's fade*).

    Examples
    --------
    >>> [round(map_strength(c), 3) for c in (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.9)]
    [0.0, 0.0, 0.156, 0.5, 0.844, 1.0, 1.0]
    """
    x = float(np.clip((confidence - MAP_MIN_CONFIDENCE) / (MAP_FULL_CONFIDENCE - MAP_MIN_CONFIDENCE), 0.0, 1.0))
    return x * x * (3 - 2 * x)


def confidence_faded(lateral: LateralGain, confidence: float) -> tuple[LateralGain | None, str | None]:
    """A slice's lateral map faded by its overlap confidence (:func:`map_strength`) and the fallback's reason
    (None while some of the map is applied; the strength is the map's :attr:`LateralGain.strength`)."""
    faded = lateral.faded(map_strength(confidence))
    if faded is not None:
        return faded, None
    return None, (f"overlap NCC {confidence:.3f} (of its speckle ceiling) with the next slice < "
                  f"{MAP_MIN_CONFIDENCE}: no lateral gain")


def _interpolation_indices(n_out: int, n_map: int, resolution_um: float, offset_um: float,
                           pixel_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Map pixel below each output voxel centre and the fraction towards the next (linear interpolation).

    Examples
    --------
    >>> index, fraction = _interpolation_indices(3, 2, 10.0, 0.0, 20.0)
    >>> index.tolist(), fraction.tolist()
    ([0, 0, 0], [0.0, 0.25, 0.75])
    """
    position = np.clip(((np.arange(n_out) + 0.5) * resolution_um - offset_um) / pixel_um - 0.5, 0, n_map - 1)
    lower = np.minimum(np.floor(position).astype(int), max(0, n_map - 2))
    return lower, position - lower


def map_level_log(with_map: OverlapRatio, without_map: OverlapRatio) -> float:
    """``ln`` of an overlap's boundary ratio taken with the previous slice's lateral map over the one taken without:
    the log gain the map gives the tissue's level at the overlap (0 when either ratio is missing).

    Examples
    --------
    >>> round(map_level_log(OverlapRatio(1.05, "otsu", 9.0), OverlapRatio(1.0, "otsu", 9.0)), 4)
    0.0488
    >>> map_level_log(OverlapRatio(None, "otsu", None), OverlapRatio(1.0, "otsu", 9.0))
    0.0
    """
    if with_map.value is None or without_map.value is None:
        return 0.0
    return float(np.log(with_map.value / without_map.value))


def partial_fraction(held: np.ndarray) -> float:
    """Fraction of an overlap's A-lines with a held voxel whose planes are not all held.

    ``held``: :func:`~linumpy.intensity.transmission.held_signal` of the overlap.

    Isolated empty voxels (dim gel at the noise floor) count with the pixels
    the erosion drops around them: 0.44-0.49 on ``baseline`` seed 21, 0.45-0.63
    on ``tilted`` seed 20.
    """
    some = held.any(axis=0)
    return float((some & ~held.all(axis=0)).sum() / max(1, some.sum()))


def log_ratio_map(reference: np.ndarray, image: np.ndarray, sigma_px: float = MAP_SIGMA_PX,
                  held: np.ndarray | None = None) -> np.ndarray:
    """Lateral map of ``ln(reference / image)`` over an overlap, less its median.

    Both ``(z, y, x)`` views of the same tissue (``reference``: the next
    slice's top, ``image``: the slice whose gain is fitted). Each pixel's
    means over depth are taken over the same planes in both, those where both
    hold signal (``held``, default :func:`~linumpy.intensity.transmission.held_signal`: a column's mean over
    planes one slice does not hold, above the next slice's cut or below the
    previous slice's imaged range, reads low and made the map darken or
    brighten the previous slab's bottom there); they are smoothed laterally
    (Gaussian ``sigma_px``, normalised over the pixels with a held plane), their
    log ratio taken and its median over the supported pixels removed: the
    overlap's scalar ratio is :func:`fit_gains`' job. 0 where fewer than
    :data:`MAP_MIN_SUPPORT` of the pixels around hold signal, everywhere
    when fewer than :data:`MAP_MIN_PIXELS` pixels are supported; clipped to
    ``+-MAP_MAX_LOG``.

    Examples
    --------
    >>> image = np.ones((4, 48, 48), np.float32)
    >>> reference = image * np.where(np.arange(48) < 24, 1.0, 2.0)
    >>> log = log_ratio_map(reference, image)
    >>> round(float(log[24, 44] - log[24, 3]), 3)  # ln 2
    0.693
    >>> image[2:, :, 24:] = 0  # the previous slice's deep planes empty on the right: no ratio made of them
    >>> round(float(log_ratio_map(reference, image)[24, 44] - log[24, 44]), 3)
    0.0
    """
    upper, lower, supported_any = held_means(reference, image, held)
    both = supported_any.astype(np.float64)
    weight = ndimage.gaussian_filter(both, sigma_px, mode="constant")
    smooth_upper = ndimage.gaussian_filter(upper * both, sigma_px, mode="constant")
    smooth_lower = ndimage.gaussian_filter(lower * both, sigma_px, mode="constant")
    supported = (weight >= MAP_MIN_SUPPORT) & (smooth_upper > 0) & (smooth_lower > 0)
    out = np.zeros(upper.shape, np.float32)
    if supported.sum() < MAP_MIN_PIXELS:
        return out
    log = np.log(smooth_upper[supported] / smooth_lower[supported])
    out[supported] = np.clip(log - np.median(log), -MAP_MAX_LOG, MAP_MAX_LOG)
    return out


def coarse_map(log_map: np.ndarray, pixel_um: tuple[float, float]) -> tuple[np.ndarray, tuple[float, float]]:
    """Block-average a map so that neither side exceeds :data:`MAP_MAX_SIDE` pixels (its pixel size grows alike)."""
    factor = max(1, -(-max(log_map.shape) // MAP_MAX_SIDE))
    if factor == 1:
        return log_map, pixel_um
    shape = [-(-n // factor) * factor for n in log_map.shape]
    padded = np.zeros(shape, np.float32)
    padded[: log_map.shape[0], : log_map.shape[1]] = log_map
    coarse = padded.reshape(shape[0] // factor, factor, shape[1] // factor, factor).mean(axis=(1, 3))
    return coarse.astype(np.float32), (pixel_um[0] * factor, pixel_um[1] * factor)
