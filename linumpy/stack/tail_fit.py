"""Each slab's Vermeer compensation refitted to the light its overlap with the next slice measures.

The axial step compensates attenuation by Vermeer's gain ``g(z) = T(0) /
T(z)`` (:mod:`linumpy.intensity.attenuation`), ``T`` the A-line's tail sums.
Its largest error is the part of ``T`` beyond the imaged range, which it
extends as a geometric series measured on the A-line's last windows. The
stack knows more: the next slice images, from its cut at depth ``s``, the
tissue this slice images at ``s`` and below, so the ratio of the two
uncompensated signals on their overlap is the light lost through the slab,
``e^-l`` (:mod:`linumpy.intensity.transmission`), and the true gain at ``s``
is ``e^l``. Per bin of the uncompensated file (``T`` its tail sums within the
file, averaged over :data:`TAIL_BOX_BINS` bins a side), the unseen tail

    delta = (T(top) - e^l T(s)) / (e^l - 1)       (>= 0)

makes ``g_fit(z) = (T(top) + delta) / (T(z) + delta)`` equal ``e^l`` at
``s``. The slice, as the axial step compensated and normalised it, is
multiplied by ``g_fit / g_V``, ``g_V`` its realised gain read back as its
compensated signal over its uncompensated one (both box-averaged alike;
the normalisation undone), smoothed (:data:`RATIO_SIGMA` planes and bins)
and clipped to ``[1 / MAX_RATIO, MAX_RATIO]``; the lateral gain maps and the
scalar gains (:mod:`linumpy.stack.gains`) are then fitted on the corrected
slices.

Fallbacks, each stated in the slice's record (``tail_fit``): bins where the
overlap measures no light loss (gel, too little tissue) take the median
relative tail ``delta / T(top)`` of the slice's fitted bins; a loss larger
than the file's own gain ``T(top) / T(s)`` is clipped to ``delta = 0``; a
slice without a measured overlap (the last slice, a slice before a gap, too
little tissue) keeps Vermeer's compensation as the axial step made it.

The correction is lazy: each block of a corrected level is computed from one
column of the uncompensated file and of the slice (their full depth, which
the tail sums need, over the block's lateral window and a halo), so the
memory depends on the chunk size, not on the volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import dask.array as da
import numpy as np
from scipy import ndimage

from linumpy.intensity.transmission import MIN_SUPPORT, TISSUE_FRACTION
from linumpy.stack.attenuation import PLANES, SKIP

#: Bins a side of the lateral box averaging the tail sums (and the realised gain's signals).
TAIL_BOX_BINS = 3
#: Bins a side of the lateral box averaging the compensated and uncompensated signals whose ratio is the
#: realised gain.
REALISED_BOX_BINS = 3
#: Fill the bins without a measured loss with the slice's median relative tail (else: no correction there).
FILL_UNMEASURED = False
#: Lateral Gaussian (bins) of the overlap's depth means before their ratio (the overlap attenuation's
#: 4 output pixels at the axial step's binning of 4).
LOSS_SIGMA_BINS = 1.0
#: Smallest light loss ``l`` fitted: below it the slab's loss is within the overlap's noise.
MIN_LOSS = 0.02
#: Remove the correction's mean depth profile (keep its lateral structure only).
LATERAL_ONLY = False
HOLD = True
#: Power of the fitted correction applied (1: the whole fit).
STRENGTH = 0.5
#: Largest factor of the correction either way.
MAX_RATIO = 3.0
#: Gaussian smoothing (planes, bins) of the correction.
RATIO_SIGMA = (1.0, 1.0)
#: Fewest fitted bins for a slice's fit.
MIN_FIT_BINS = 16
#: Lateral chunk (level pixels) of the correction's blocks at the uncompensated file's bin size.
BLOCK_BINS = 32

SOURCE_OVERLAP = "overlap"
FALLBACK_NO_OVERLAP = "no slice below: Vermeer's compensation kept"
FALLBACK_FEW_BINS = "overlap loss measured on fewer than {} bins: Vermeer's compensation kept"
FALLBACK_NO_SIGNAL = "no uncompensated signal: Vermeer's compensation kept"


@dataclass(frozen=True)
class Uncompensated:
    """A slice's signal before attenuation compensation, as the stack reads it.

    Attributes
    ----------
    data : dask.array.Array, shape (z, y', x')
        ``slice_zNN_axial_corr_uncompensated.ome.zarr`` (flattened as the slice, binned laterally).
    binning : int
        Level-0 pixels of the slice per bin a side.
    normalisation : tuple of float
        ``(low, high)`` of the slice's normalisation (:mod:`linumpy.intensity.normalize`): the
        compensated signal is ``low + normalised * (high - low)``.
    """

    data: da.Array
    binning: int
    normalisation: tuple[float, float]


@dataclass(frozen=True)
class TailFit:
    """A slice's fitted unseen tail on its level-``level`` grid (after the stack's re-tilt and turn).

    Attributes
    ----------
    delta : ndarray, shape (y, x), float32
        Unseen tail per pixel (in the uncompensated signal's units).
    level : int
        The slice level ``delta`` is on.
    qc : dict
        The record's ``tail_fit`` fields (:func:`fit_slice`).
    """

    delta: np.ndarray
    level: int
    qc: dict
    cut: int | None = None


def fallback_qc(reason: str) -> dict:
    """The ``tail_fit`` record of a slice left as the axial step compensated it."""
    return {"applied": False, "fallback": reason, "relative_tail_median": None, "fitted_fraction": 0.0,
            "filled_fraction": 0.0, "clipped_fraction": 0.0, "ratio_at_cut_p5_p95": None,
            "ratio_at_cut_clipped_fraction": None}


def bin_pixels(binning: int, level_factor: float) -> float:
    """Level pixels per bin of the uncompensated file (``level_factor``: level-0 pixels per level pixel).

    Examples
    --------
    >>> bin_pixels(4, 1), bin_pixels(4, 2), bin_pixels(4, 8)
    (4.0, 2.0, 0.5)
    """
    return binning / level_factor


def on_level_grid(bins: da.Array, binning: int, level_factor: int, shape_yx: Sequence[int]) -> da.Array:
    """The bins on a level's grid of ``shape_yx`` pixels: repeated when finer than a bin, block-averaged when
    coarser (edges repeated), cut to the shape."""
    out = bins
    if binning % level_factor == 0 and binning > level_factor:
        per_bin = binning // level_factor
        out = da.repeat(da.repeat(out, per_bin, axis=-2), per_bin, axis=-1)
    elif level_factor % binning == 0 and level_factor > binning:
        per_pixel = level_factor // binning
        pad = [(0, 0)] * (out.ndim - 2) + [(0, (-n) % per_pixel) for n in out.shape[-2:]]
        out = da.coarsen(np.mean, da.pad(out, pad, mode="edge") if any(p for _, p in pad) else out,
                         {out.ndim - 2: per_pixel, out.ndim - 1: per_pixel}, trim_excess=True)
    elif binning != level_factor:
        raise ValueError(f"level pixels of {level_factor} level-0 pixels do not nest in bins of {binning}")
    pad = [(0, 0)] * (out.ndim - 2) + [(0, max(0, n - m)) for n, m in zip(shape_yx, out.shape[-2:], strict=True)]
    if any(p for _, p in pad):
        out = da.pad(out, pad, mode="edge")
    return out[..., : shape_yx[0], : shape_yx[1]]


def box(values: np.ndarray, width: int) -> np.ndarray:
    """Lateral box mean (``width`` pixels a side, edges repeated) of the last two axes."""
    if width <= 1:
        return values
    size = (1,) * (values.ndim - 2) + (width, width)
    return ndimage.uniform_filter(values, size, mode="nearest")


def loss_map(previous: np.ndarray, following: np.ndarray, sigma_px: float) -> np.ndarray:
    """Light loss ``l = ln(following / previous)`` per pixel of an overlap, NaN where not measured.

    Both ``(z, y, x)``, uncompensated, the same voxels: ``previous`` at and
    below the next cut, ``following`` below its own cut. Their depth means
    are smoothed laterally (Gaussian ``sigma_px``, normalised over the pixels
    where both hold signal); measured where at least ``MIN_SUPPORT`` of the
    neighbourhood holds signal and the following slice's level is at least
    ``TISSUE_FRACTION`` of its median (gel left out), as
    :func:`linumpy.intensity.transmission.overlap_attenuation`.

    Examples
    --------
    >>> following = np.ones((4, 24, 24))
    >>> round(float(loss_map(following * np.exp(-0.5), following, 1.0)[12, 12]), 3)
    0.5
    """
    upper = np.asarray(previous, np.float64).mean(axis=0)
    lower = np.asarray(following, np.float64).mean(axis=0)
    both = ((upper > 0) & (lower > 0)).astype(np.float64)
    weight = ndimage.gaussian_filter(both, sigma_px, mode="constant")
    smooth_upper = ndimage.gaussian_filter(upper * both, sigma_px, mode="constant")
    smooth_lower = ndimage.gaussian_filter(lower * both, sigma_px, mode="constant")
    supported = (weight >= MIN_SUPPORT) & (smooth_upper > 0) & (smooth_lower > 0)
    out = np.full(upper.shape, np.nan, np.float32)
    if supported.any():
        supported &= smooth_lower >= TISSUE_FRACTION * np.median(smooth_lower[supported])
        out[supported] = np.log(smooth_lower[supported] / smooth_upper[supported])
    return out


def fit_delta(t_top: np.ndarray, t_cut: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, dict]:
    """The unseen tail making ``(T(top) + delta) / (T(s) + delta) = e^l``, and how it was found.

    Parameters
    ----------
    t_top, t_cut : ndarray
        Tail sums within the file at the slice's top and at the next cut.
    loss : ndarray
        Light loss through the slab (NaN: not measured).

    Returns
    -------
    delta : ndarray, float32
        The tail; where ``l`` is not measured (or below :data:`MIN_LOSS`) the
        median relative tail ``delta / T(top)`` of the fitted pixels times
        ``T(top)``; where ``e^l`` exceeds the file's own gain ``T(top) / T(s)``, 0.
        NaN everywhere when fewer than :data:`MIN_FIT_BINS` pixels are fitted.
    qc : dict
        ``fitted_fraction``, ``filled_fraction``, ``clipped_fraction`` (of the
        pixels with signal) and ``relative_tail_median``.

    Examples
    --------
    >>> t_top, t_cut = np.full((6, 6), 10.0), np.full((6, 6), 4.0)  # the file alone: gain 2.5 at the cut
    >>> loss = np.full((6, 6), np.log(2.0)); loss[0, 0] = np.nan
    >>> delta, qc = fit_delta(t_top, t_cut, loss)
    >>> float(delta[1, 1]), float(delta[0, 0]), qc["filled_fraction"]  # (10 + 2) / (4 + 2) = 2
    (2.0, 2.0, 0.0278)
    """
    signal = t_top > 0
    gain = np.exp(np.nan_to_num(loss, nan=0.0))
    fitted = signal & np.isfinite(loss) & (np.nan_to_num(loss) >= MIN_LOSS) & (t_cut > 0)
    delta = np.full(t_top.shape, np.nan, np.float64)
    delta[fitted] = (t_top[fitted] - gain[fitted] * t_cut[fitted]) / (gain[fitted] - 1.0)
    clipped = fitted & (delta < 0)
    delta[clipped] = 0.0
    n_signal = max(1, int(signal.sum()))
    qc = {"fitted_fraction": round(float(fitted.sum()) / n_signal, 4),
          "clipped_fraction": round(float(clipped.sum()) / n_signal, 4)}
    if fitted.sum() < MIN_FIT_BINS:
        return np.full(t_top.shape, np.nan, np.float32), {**qc, "filled_fraction": 0.0, "relative_tail_median": None}
    relative = float(np.median(delta[fitted] / t_top[fitted]))
    filled = signal & ~fitted
    delta[filled] = relative * t_top[filled] if FILL_UNMEASURED else np.nan
    delta[~signal] = 0.0
    return delta.astype(np.float32), {**qc, "filled_fraction": round(float(filled.sum()) / n_signal, 4),
                                      "relative_tail_median": round(relative, 4)}


def _widths(bin_px: float) -> tuple[int, float]:
    """Box width (pixels) of :data:`TAIL_BOX_BINS` bins and the lateral smoothing sigma (pixels), at ``bin_px``."""
    return max(1, int(round(TAIL_BOX_BINS * bin_px))), max(0.5, RATIO_SIGMA[1] * bin_px)


def correction_ratio(compensated: np.ndarray, plain: np.ndarray, delta: np.ndarray, bin_px: float,
                     normalisation: tuple[float, float], cut: int | None = None) -> np.ndarray:
    """``g_fit / g_V`` of a column of whole A-lines, smoothed and clipped (see the module docstring).

    Parameters
    ----------
    compensated : ndarray, shape (z, y, x)
        The normalised slice (every plane of the file, the level's pixels).
    plain : ndarray, shape (z, y, x)
        Its uncompensated signal on the same grid (:func:`on_level_grid`).
    delta : ndarray, shape (y, x)
        The unseen tail on the same grid (NaN: no correction).
    bin_px : float
        Level pixels per bin (:func:`bin_pixels`).
    normalisation : tuple of float
        ``(low, high)`` of the normalisation.

    Returns
    -------
    ndarray, shape (z, y, x), float32
        1 where either signal or the tail is missing.

    Examples
    --------
    >>> plain = np.ones((20, 8, 8), np.float32)  # a homogeneous column: T(z) = 20 - z
    >>> vermeer = 20.0 / (20.0 - np.arange(20))  # realised gain, no tail beyond the file
    >>> ratio = correction_ratio(vermeer[:, None, None] * plain, plain, np.full((8, 8), 20.0), 1.0, (0.0, 1.0))
    >>> round(float(ratio[10, 4, 4]), 3)  # (40 / 30) / 2
    0.667
    """
    width, sigma = _widths(bin_px)
    realised = max(1, int(round(REALISED_BOX_BINS * bin_px)))
    plain = np.maximum(np.asarray(plain, np.float32), 0)
    tails = np.cumsum(box(plain, width)[::-1], axis=0, dtype=np.float32)[::-1]
    plain = box(plain, realised)
    low, high = normalisation
    values = np.asarray(compensated, np.float32)
    raw = box(np.where(values > 0, low + values * np.float32(high - low), 0).astype(np.float32), realised)
    tail = np.nan_to_num(delta, nan=0.0).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (tails[0] + tail) / (tails + tail) * plain / raw
    valid = np.isfinite(ratio) & (raw > 0) & (plain > 0) & np.isfinite(delta)[None]
    ratio = np.where(valid, np.clip(ratio, 1 / MAX_RATIO, MAX_RATIO) ** STRENGTH, 1.0).astype(np.float32)
    if HOLD and cut is not None and 0 <= cut < len(ratio) - 1:
        ratio[cut + 1 :] = ratio[cut]
    return ndimage.gaussian_filter(ratio, (RATIO_SIGMA[0], sigma, sigma), mode="nearest")


def ratio_level(data: da.Array, plain: da.Array, delta: np.ndarray, bin_px: float,
                normalisation: tuple[float, float], cut: int | None = None) -> da.Array:
    """The lazy :func:`correction_ratio` of a level, blocks of whole A-lines (see :func:`corrected_level`)."""
    width, sigma = _widths(bin_px)
    halo = width // 2 + int(math.ceil(4 * sigma)) + 1
    side = max(16, int(round(BLOCK_BINS * bin_px)))
    chunks = (data.shape[0], side, side)
    tails = da.from_array(delta[None].astype(np.float32), chunks=(1, side, side))
    return da.map_overlap(
        lambda c, p, d: correction_ratio(c, p, d[0], bin_px, normalisation, cut), data.rechunk(chunks),
        plain.astype(np.float32).rechunk(chunks), tails, depth={0: 0, 1: halo, 2: halo}, boundary="nearest",
        dtype=np.float32, meta=np.array((), np.float32), align_arrays=False)


def plane_profile(ratio: da.Array, data: da.Array) -> np.ndarray:
    """Per plane, the mean log of the correction over the pixels with signal (streamed block by block)."""
    log = da.where((data > 0) & (ratio != 1), da.log(ratio), 0.0)
    count = ((data > 0) & (ratio != 1)).sum(axis=(1, 2))
    total, n = da.compute(log.sum(axis=(1, 2)), count)
    return np.where(n > 0, total / np.maximum(n, 1), 0.0).astype(np.float32)


def corrected_level(data: da.Array, plain: da.Array, delta: np.ndarray, bin_px: float,
                    normalisation: tuple[float, float], profile: np.ndarray | None = None,
                    cut: int | None = None) -> da.Array:
    """``data`` (a slice level) times its lazy :func:`correction_ratio`, block by block of whole A-lines.

    ``plain``: the uncompensated signal on the level's grid (same shape);
    ``delta``: the tail on the level's grid. Each block of the ratio spans the
    whole depth and :data:`BLOCK_BINS` bins a side, with a halo covering the
    boxes and the smoothing; the product keeps ``data``'s chunks.
    """
    ratio = ratio_level(data, plain, delta, bin_px, normalisation, cut)
    if profile is not None:  # the depth profile's mean change removed: only the lateral structure is kept
        ratio = ratio * np.exp(-profile).astype(np.float32)[:, None, None]
    product = data * ratio.rechunk(data.chunks)
    if np.issubdtype(data.dtype, np.integer):  # e.g. uint16 normalised slices: no wrap-around
        limits = np.iinfo(data.dtype)
        product = da.clip(da.rint(product), limits.min, limits.max)
    return product.astype(data.dtype)


def resample_map(values: np.ndarray, shape_yx: Sequence[int]) -> np.ndarray:
    """A 2D map on another level's grid of the same slice (nearest pixel centre).

    Examples
    --------
    >>> resample_map(np.arange(4.0).reshape(2, 2), (4, 4))[:, 0].tolist()
    [0.0, 0.0, 2.0, 2.0]
    """
    rows = np.minimum(((np.arange(shape_yx[0]) + 0.5) * values.shape[0] / shape_yx[0]).astype(int),
                      values.shape[0] - 1)
    columns = np.minimum(((np.arange(shape_yx[1]) + 0.5) * values.shape[1] / shape_yx[1]).astype(int),
                         values.shape[1] - 1)
    return values[np.ix_(rows, columns)]


def level_factors(volume) -> list[int]:
    """Level-0 pixels per pixel of each level of a SliceVolume."""
    full = volume.levels[0][0].shape[1]
    return [max(1, int(round(full / data.shape[1]))) for data, _ in volume.levels]


def plain_levels(volume, signal: Uncompensated) -> list[da.Array]:
    """The uncompensated signal on each level's grid of ``volume`` (the slice as read, before the stack moves it)."""
    return [on_level_grid(signal.data, signal.binning, factor, data.shape[1:])
            for factor, (data, _) in zip(level_factors(volume), volume.levels, strict=True)]


def apply_fit(volume, plains: Sequence[da.Array], fit: TailFit, binning: int,
              normalisation: tuple[float, float]):
    """A SliceVolume with every level corrected; ``plains`` as its levels (:func:`plain_levels`, re-tilted
    and turned as the slice).

    The correction is computed once, on the fit level (:func:`ratio_level`), and
    put on every level's grid (:func:`on_level_grid`): every level, the
    registration's (where the gains are fitted) and the assembly's, gets the
    same correction.
    """
    factors = level_factors(volume)
    data = volume.levels[fit.level][0]
    ratio = ratio_level(data, plains[fit.level], resample_map(fit.delta, data.shape[1:]),
                        bin_pixels(binning, factors[fit.level]), normalisation, fit.cut)
    if LATERAL_ONLY:
        ratio = ratio * np.exp(-plane_profile(ratio, data)).astype(np.float32)[:, None, None]
    levels = []
    for factor, (data, resolution) in zip(factors, volume.levels, strict=True):
        level_ratio = on_level_grid(ratio, factors[fit.level], factor, data.shape[1:])
        product = data * level_ratio.rechunk(data.chunks)
        if np.issubdtype(data.dtype, np.integer):  # e.g. uint16 normalised slices: no wrap-around
            limits = np.iinfo(data.dtype)
            product = da.clip(da.rint(product), limits.min, limits.max)
        levels.append((product.astype(data.dtype), resolution))
    return replace(volume, levels=levels)


def fit_level(volume, binning: int) -> int:
    """The level the tails are fitted on: the finest whose pixel is at least a bin, else level 0."""
    factors = level_factors(volume)
    return next((i for i, f in enumerate(factors) if f >= binning), 0)


def fit_slice(previous, following, previous_plain: da.Array, following_plain: da.Array, level: int,
              step_um: np.ndarray, signal: Uncompensated) -> TailFit:
    """Fit the unseen tail of ``previous`` on its overlap with ``following`` (the next slice id, placed
    ``step_um`` below), on level ``level`` of both (their re-tilted, turned uncompensated signal
    ``*_plain`` on that level's grid).

    The ``qc`` holds :func:`fit_delta`'s fields, ``applied``, ``fallback`` and the
    correction at the cut (``ratio_at_cut_p5_p95`` over the fitted pixels, the
    fraction of them clipped at :data:`MAX_RATIO`).
    """
    data, source_um = previous.levels[level]
    factor = level_factors(previous)[level]
    bin_px = bin_pixels(signal.binning, factor)
    width, _ = _widths(bin_px)
    p0, c0 = previous.useful_range[0], following.useful_range[0]
    cut = p0 + int(round(step_um[0] / source_um[0]))
    shape = np.asarray(data.shape[1:])
    offset = np.rint(np.asarray(step_um[1:]) / np.asarray(source_um[1:])).astype(int)
    lo = np.maximum(0, offset)
    hi = np.minimum(shape, offset + np.asarray(following_plain.shape[1:]))
    depth = min(PLANES, previous_plain.shape[0] - cut - SKIP, following_plain.shape[0] - c0 - SKIP)
    if depth < 1 or cut < p0 or np.any(hi - lo < 8):
        return TailFit(np.full(tuple(shape), np.nan, np.float32), level, fallback_qc(FALLBACK_NO_OVERLAP))
    window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    shifted = tuple(slice(w.start - o, w.stop - o) for w, o in zip(window, offset, strict=True))
    sums = previous_plain.sum(axis=0)
    below = previous_plain[cut:].sum(axis=0)
    upper, lower, t_top, t_cut, plain_cut, compensated_cut = da.compute(
        previous_plain[(slice(cut + SKIP, cut + SKIP + depth), *window)],
        following_plain[(slice(c0 + SKIP, c0 + SKIP + depth), *shifted)], sums, below,
        previous_plain[cut], data[cut])
    loss = np.full(tuple(shape), np.nan, np.float32)
    loss[window] = loss_map(upper, lower, LOSS_SIGMA_BINS * bin_px)
    t_top, t_cut = box(np.asarray(t_top, np.float32), width), box(np.asarray(t_cut, np.float32), width)
    delta, qc = fit_delta(t_top, t_cut, loss)
    if not np.isfinite(delta).any():
        return TailFit(delta, level, {**fallback_qc(FALLBACK_FEW_BINS.format(MIN_FIT_BINS)), **qc})
    # at the cut g_fit = e^l where fitted: the correction there is e^l over the realised gain
    low, high = signal.normalisation
    raw = box(np.where(compensated_cut > 0, low + np.asarray(compensated_cut, np.float32) * (high - low), 0), width)
    plain = box(np.maximum(np.asarray(plain_cut, np.float32), 0), width)
    fitted = np.isfinite(loss) & (raw > 0) & (plain > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        at_cut = np.exp(loss[fitted]) * plain[fitted] / raw[fitted]
    p5_p95 = [round(float(v), 4) for v in np.percentile(at_cut, [5, 95])] if at_cut.size else None
    clipped = round(float(np.mean((at_cut > MAX_RATIO) | (at_cut < 1 / MAX_RATIO))), 4) if at_cut.size else None
    return TailFit(delta, level, cut=cut, qc={"applied": True, "fallback": None, **qc, "ratio_at_cut_p5_p95": p5_p95,
                                  "ratio_at_cut_clipped_fraction": clipped})


def tail_fitted_slices(slices: Sequence, signals: Sequence[Uncompensated | None], origins_um: np.ndarray,
                       move) -> tuple[list, list[dict]]:
    """Every slice with a slice id below it corrected by its fitted tail, and each slice's ``tail_fit`` record.

    Parameters
    ----------
    slices : sequence of SliceVolume
        As the stack placed them (re-tilted, turned), in slice-id order.
    signals : sequence of Uncompensated or None
        Each slice's uncompensated signal (None: not given; the slice keeps its compensation).
    origins_um : ndarray, shape (n, 3)
        Placed origins of the slices' first useful planes.
    move : callable
        ``(k, volume) -> volume``: the stack's re-tilt and turn of slice ``k``, applied to a volume of its
        shape (the uncompensated signal on its levels' grids).
    """
    plains = [None if signal is None else [data for data, _ in move(k, replace(s, levels=[
        (plain, resolution) for plain, (_, resolution) in zip(plain_levels(s, signal), s.levels, strict=True)])).levels]
        for k, (s, signal) in enumerate(zip(slices, signals, strict=True))]
    out, records = list(slices), []
    for k, (s, signal) in enumerate(zip(slices, signals, strict=True)):
        following = k + 1 < len(slices) and slices[k + 1].slice_id == s.slice_id + 1
        if signal is None or (following and signals[k + 1] is None):
            records.append(fallback_qc(FALLBACK_NO_SIGNAL))
            continue
        if not following:
            records.append(fallback_qc(FALLBACK_NO_OVERLAP))
            continue
        level = fit_level(s, signal.binning)
        fit = fit_slice(s, slices[k + 1], plains[k][level], plains[k + 1][level], level,
                        np.subtract(origins_um[k + 1], origins_um[k]), signal)
        records.append(fit.qc)
        if fit.qc["applied"]:
            out[k] = apply_fit(s, plains[k], fit, signal.binning, signal.normalisation)
    return out, records
