"""Tissue mask and robust percentile normalization of a slice.

The tissue mask is a threshold on the smoothed average intensity projection
(AIP, mean over depth) of the slice: Otsu's threshold on the histogram of the
logarithm of the positive AIP values. The intensity normalization maps the
``low`` and ``high`` percentiles of the tissue voxels to 0 and 1 and clips:

    out = clip((v - p_low) / (p_high - p_low), 0, 1)

Before that map, each voxel may be capped at a multiple of the mean of the box
of :data:`SPECKLE_BOX` voxels around it (:func:`speckle_capped`): the
speckle's long tail is trimmed relative to the local level, so that every
tissue loses the same small share of its level, where the percentile clip
alone takes most of it from the brightest tissue. The capped voxels are then
scaled back to the mean of the :data:`RESTORE_BOX` around them: the share the
cap takes depends on how many speckle draws a voxel averages (one tile's
frames, or two tiles' in their fused overlap), and left as it is it makes the
overlaps brighter than the rest of the tile (a seam).
"""

from __future__ import annotations

import numpy as np

from linumpy.intensity.histogram import LogHistogram

#: Largest value of the ``uint16`` output (1.0 after normalization).
UINT16_MAX = np.iinfo(np.uint16).max
#: Side (voxels, along every axis) of the box whose mean sets a voxel's speckle cap.
SPECKLE_BOX = 5
#: Box ``(z, y, x)`` whose mean the speckle cap keeps (:func:`speckle_capped`): a voxel's share of the cap's loss
#: is read over 21 planes of its 5 x 5 A-lines (one A-line's whole depth mixes the noise below the tissue in,
#: which the cap trims otherwise: odd2 477's level step 1.4 -> 3.2 %).
RESTORE_BOX = (21, SPECKLE_BOX, SPECKLE_BOX)
#: Rows (y) of a block restored at once (:func:`mean_restored`): the box sums (and their float64 running sums
#: along z) are held for these rows and the box's reach around them only; the same values as the whole block's.
RESTORE_ROWS = 16


def smooth_aip(aip: np.ndarray, sigma_px: float = 2.0) -> np.ndarray:
    """Gaussian-smoothed AIP (float32) for the tissue mask."""
    from scipy import ndimage  # imported when needed: the normalization imports it beside its first pass

    return ndimage.gaussian_filter(np.asarray(aip, np.float32), sigma_px, mode="nearest")


def tissue_threshold(aip_histogram: LogHistogram) -> float | None:
    """AIP value separating tissue from background (Otsu on log AIP).

    Returns 0 (every positive A-line is tissue) when the positive values fall
    in a single histogram bin, None when no value is positive (empty slice).

    Examples
    --------
    >>> h = LogHistogram(); h.add(np.r_[np.full(50, 0.01), np.full(50, 1.0)])
    >>> 0.01 < tissue_threshold(h) < 1.0
    True
    """
    if not aip_histogram.counts.any():
        return None
    threshold = aip_histogram.otsu()
    return 0.0 if threshold is None else threshold


def tissue_threshold_keys(aip_histogram: LogHistogram) -> np.ndarray:
    """Every threshold :func:`tissue_threshold` may return for histograms of these bins, as the float32 a
    float32 map is compared with, sorted (unique).

    With ``keys`` these thresholds, ``smoothed > threshold`` is ``searchsorted(keys, smoothed) > k`` where
    ``keys[k]`` is the threshold: an A-line's rank among them decides its mask whatever the threshold.

    Examples
    --------
    >>> keys = tissue_threshold_keys(LogHistogram())
    >>> keys[0], keys.dtype, bool(np.all(np.diff(keys) > 0))
    (np.float32(0.0), dtype('float32'), True)
    """
    thresholds = [0.0] + [float(10**center) for center in aip_histogram.centers]  # tissue_threshold's arithmetic
    return np.unique(np.asarray(thresholds, np.float64).astype(np.float32))


def normalize_values(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low`` to 0 and ``high`` to 1, clipped to [0, 1], float32.

    A degenerate range (``high <= low``) maps everything at or above ``low`` to 1.

    Examples
    --------
    >>> normalize_values(np.array([0.0, 1.0, 2.0, 5.0]), 1.0, 3.0)
    array([0. , 0. , 0.5, 1. ], dtype=float32)
    """
    values = np.asarray(values, np.float32)
    if high <= low:
        return (values >= low).astype(np.float32)
    scaled = values - np.float32(low)  # the one new array: divided and clipped in place
    scaled /= np.float32(high - low)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def speckle_capped(outer: np.ndarray, cap: float, inner: tuple[slice, slice]) -> tuple[np.ndarray, int]:
    """The ``inner`` A-lines of ``outer`` ``(z, y, x)``, each voxel capped at ``cap`` times the mean of the
    :data:`SPECKLE_BOX` box around it (edge values repeated), then the capped volume scaled voxel by voxel back
    to the mean of the :data:`RESTORE_BOX` around it (:func:`mean_restored`), as float32, and the number of
    voxels capped.

    With ``SPECKLE_BOX // 2`` A-lines of ``outer`` around ``inner`` wherever the volume goes on, a block gives
    the cap of the whole volume at once (the restoring box is read within ``inner``). A box whose mean is not
    positive caps at 0.

    Examples
    --------
    >>> speckle = np.ones((5, 5, 5), np.float32); speckle[2, 2, 2] = 126.0  # its box: mean 2
    >>> capped, n = speckle_capped(speckle, 2.0, (slice(0, 5), slice(0, 5)))
    >>> n, float(capped[2, 2, 2] / capped[1, 1, 1]), bool(capped[1, 1, 1] > 1.0)  # capped at 4, the mean put back
    (1, 4.0, True)
    """
    values = np.asarray(outer, np.float32)
    limit = box_mean(values, SPECKLE_BOX)[(slice(None), *inner)]
    np.maximum(limit, 0.0, out=limit)
    limit *= np.float32(cap)
    values = values[(slice(None), *inner)]
    n_capped = int(np.count_nonzero(values > limit))
    return mean_restored(np.minimum(values, limit, out=limit), values), n_capped


def mean_restored(capped: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``capped`` scaled in place by the mean of ``values`` over the mean of ``capped`` in the
    :data:`RESTORE_BOX` around each voxel (edge values repeated; 1 where either mean is not positive),
    :data:`RESTORE_ROWS` rows at a time.

    The cap takes 14 % of the mean of one exponential speckle frame (``1 - exp(-2)`` kept), 5 % of a two-frame
    average: left as it is, a fused overlap of two tiles reads brighter than either tile alone.

    Examples
    --------
    >>> values = np.ones((3, 1, 4), np.float32); values[:, :, 2:] = 3.0
    >>> mean_restored(values / 2, values)[0, 0].tolist()  # halved everywhere: the mean is put back
    [1.0, 1.0, 3.0, 3.0]
    """
    reach = RESTORE_BOX[1] // 2
    above = capped[:, :0]  # the rows above a batch its boxes reach, as capped (before they are scaled)
    for start in range(0, capped.shape[1], RESTORE_ROWS):
        stop = min(start + RESTORE_ROWS, capped.shape[1])
        around = slice(max(start - reach, 0), min(stop + reach, capped.shape[1]))
        inner = (slice(None), slice(start - around.start, stop - around.start))
        kept = _box_sums(np.concatenate([above, capped[:, start:around.stop]], axis=1), RESTORE_BOX)[inner]
        ratio = _box_sums(values[:, around], RESTORE_BOX)[inner]
        usable = (kept > 0) & (ratio > 0)
        np.divide(ratio, kept, out=ratio, where=usable)
        ratio[~usable] = 1.0
        above = capped[:, max(stop - reach, 0):stop].copy()
        capped[:, start:stop] *= ratio
    return capped


def _box_sums(values: np.ndarray, widths: tuple[int, int, int]) -> np.ndarray:
    """Each voxel's sum over its ``widths`` (odd) box, edge values repeated (float32): float64 running sums along
    z (:func:`_running_box_sums`), :func:`_edge_box_sum` along y and scipy's 1D filter along x, in place."""
    from scipy import ndimage

    sums = _edge_box_sum(_running_box_sums(values, widths[0]), widths[1], 1)
    ndimage.uniform_filter1d(sums, widths[2], axis=2, mode="nearest", output=sums)
    sums *= np.float32(widths[2])
    return sums


def _running_box_sums(values: np.ndarray, width: int) -> np.ndarray:
    """Each voxel's sum over ``width`` (odd) planes around it, edge planes repeated, in float64: the cumulative
    sum of the padded planes taken plane by plane, each box the difference of two, in one array.

    ``np.cumsum(padded, axis=0, dtype=np.float64)``'s sums, the same bits, ten times faster on a slice's blocks
    (numpy's cumulative sum along z walks each A-line apart).

    Examples
    --------
    >>> _running_box_sums(np.array([1.0, 2.0, 6.0], np.float32)[:, None, None], 3).ravel().tolist()
    [4.0, 9.0, 14.0]
    """
    half, depth = width // 2, values.shape[0]
    running = np.empty((depth + 2 * half, *values.shape[1:]))
    running[:half], running[half:half + depth], running[half + depth:] = values[:1], values, values[-1:]
    for k in range(1, running.shape[0]):
        running[k] += running[k - 1]
    for stop in range(depth, 1, -width):  # deepest boxes first, ``width`` at a time: the sums above a box (the
        start = max(stop - width, 1)  # planes it subtracts) are read before they are replaced
        running[start + width - 1:stop + width - 1] -= running[start - 1:stop - 1]
    return running[width - 1:]


def box_mean(values: np.ndarray, width: int) -> np.ndarray:
    """The mean of each voxel's ``width`` (odd) box in a 3D float32 array, edge values repeated: a new array.

    ``scipy.ndimage.uniform_filter(values, width, mode="nearest")`` to float32 rounding, ten times faster on a
    slice's blocks: scipy's 1D filter walks the strided (z and y) axes one element at a time, so those two are
    summed here as whole shifted planes and rows (:func:`_edge_box_sum`), and only x is left to scipy.

    Examples
    --------
    >>> box_mean(np.array([[[1.0, 2.0, 6.0]]], np.float32), 3).astype(float).round(3).tolist()  # z, y repeat the row
    [[[1.333, 3.0, 4.667]]]
    """
    from scipy import ndimage

    sums = _edge_box_sum(_edge_box_sum(values, width, 0), width, 1)
    ndimage.uniform_filter1d(sums, width, axis=2, mode="nearest", output=sums)
    sums *= np.float32(1.0 / (width * width))
    return sums


def _edge_box_sum(values: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Each element's sum over ``width`` (odd) neighbours along ``axis`` (0 or 1), edge values repeated."""

    def along(part: slice) -> tuple[slice, ...]:
        return (slice(None),) * axis + (part,)

    sums = np.array(values, np.float32)
    for shift in range(1, width // 2 + 1):
        sums[along(slice(shift, None))] += values[along(slice(None, -shift))]
        sums[along(slice(None, shift))] += values[along(slice(0, 1))]
        sums[along(slice(None, -shift))] += values[along(slice(shift, None))]
        sums[along(slice(-shift, None))] += values[along(slice(-1, None))]
    return sums


def to_dtype(normalized: np.ndarray, dtype: str) -> np.ndarray:
    """Cast values in [0, 1] to ``"float32"`` or ``"uint16"`` (scaled to 0..65535, rounded)."""
    if dtype == "float32":
        return normalized.astype(np.float32, copy=False)
    if dtype == "uint16":
        return np.rint(normalized * UINT16_MAX).astype(np.uint16)
    raise ValueError(f"unsupported output dtype {dtype!r}")
