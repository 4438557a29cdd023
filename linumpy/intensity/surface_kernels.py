"""Compiled loops of the surface detection (:func:`linumpy.intensity.surface.detect_surface`), its bits kept.

numpy and scipy ran the detection of a block as ~15 passes over its memory: two scipy running boxes (lateral
smoothing), the log, two binomial passes of four adds each, the difference along depth, the argmax, the
parabola's gathers and the two window means' gathers, masks and sums. Here the lateral boxes are one compiled
pass (scipy's float64 running sums replayed in its order) and the rest after numpy's log another, one row of
A-lines at a time (its planes in the cache): float32 (and float64 where scipy and numpy take it) operations in
numpy's order, ``fastmath`` off, so that the surface is numpy's to the bit; the log stays numpy's (numba's
float32 log differs by an ulp on some inputs). Compiled and cached as :mod:`linumpy.intensity.attenuation_kernels`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from linumpy.intensity import surface
from linumpy.intensity.attenuation import box_width
from linumpy.intensity.kernel_cache import JIT_OPTIONS

_LOG_FLOOR = np.float32(surface.LOG_FLOOR)


def detect_surface(
    volume: np.ndarray,
    *,
    lateral_sigma_px: float = 2.0,
    axial_sigma_px: float = 1.0,
    min_contrast: float = 2.0,
    window_px: int = 4,
) -> np.ndarray:
    """:func:`linumpy.intensity.surface.detect_surface`'s surface, the same bits, in two compiled passes.

    Parameters and result as there (``min_contrast``: a Python float, taken as float32 against the float32
    window means, as numpy takes it). Volumes with fewer than two depths or no A-line go to numpy's function.

    Examples
    --------
    >>> vol = np.full((40, 3, 3), 1e-3, np.float32); vol[12:] = 1.0
    >>> detect_surface(vol)[1, 1].round(1)
    np.float32(12.0)
    """
    if volume.ndim != 3 or volume.shape[0] < 2 or 0 in volume.shape:
        return surface.detect_surface(volume, lateral_sigma_px=lateral_sigma_px, axial_sigma_px=axial_sigma_px,
                                      min_contrast=min_contrast, window_px=window_px)
    if lateral_sigma_px > 0:  # the box means and, beside them, the same clamped at the log's floor
        linear, logs = np.empty(volume.shape, np.float32), np.empty(volume.shape, np.float32)
        lateral_box_means(np.ascontiguousarray(volume), box_width(lateral_sigma_px), linear, logs)
        np.log(logs, out=logs)
    else:
        linear = np.array(volume, np.float32)
        logs = surface.log_intensity(linear)
    found = np.empty(volume.shape[1:], np.float32)
    steepest_rise(logs, linear, int(round(2 * axial_sigma_px**2)), surface.axial_reach(axial_sigma_px), window_px,
                  np.float32(min_contrast), found)
    return found


@numba.njit(**JIT_OPTIONS)
def lateral_box_means(volume: np.ndarray, width: int, out: np.ndarray, clamped: np.ndarray) -> None:
    """``out`` = the mean of ``volume`` over ``width`` A-lines along y, then along x, edges repeated.

    scipy's ``uniform_filter1d(mode="nearest")`` along axis 1 then axis 2 (float32 out), replayed: each line
    read as float64, a running float64 sum (the first ``width`` samples added from 0, then the sample entering
    minus the one leaving), divided by ``width`` and rounded to float32. ``clamped``: ``out`` clamped below at
    :data:`~linumpy.intensity.surface.LOG_FLOOR` as :func:`~linumpy.intensity.surface.log_intensity` clamps it
    (``np.maximum``: NaN kept).
    """
    n_z, n_y, n_x = volume.shape
    before = width // 2
    after = width - before - 1
    column = np.empty(n_x, np.float64)  # the running sums of a plane's columns, side by side
    line = np.empty(n_x + width - 1, np.float64)  # a row padded with its edge samples
    for z in range(n_z):
        column[:] = 0.0
        for j in range(width):
            row = min(max(j - before, 0), n_y - 1)
            for x in range(n_x):
                column[x] += np.float64(volume[z, row, x])
        for x in range(n_x):
            out[z, 0, x] = np.float32(column[x] / width)
        for y in range(1, n_y):
            entering, leaving = min(y + after, n_y - 1), max(y - 1 - before, 0)
            for x in range(n_x):
                column[x] += np.float64(volume[z, entering, x]) - np.float64(volume[z, leaving, x])
                out[z, y, x] = np.float32(column[x] / width)
        for y in range(n_y):
            for i in range(line.size):
                line[i] = out[z, y, min(max(i - before, 0), n_x - 1)]
            total = 0.0
            for i in range(width):
                total += line[i]
            out[z, y, 0] = np.float32(total / width)
            for i in range(1, n_x):
                total += line[i - 1 + width] - line[i - 1]
                out[z, y, i] = np.float32(total / width)
            for i in range(n_x):
                value = out[z, y, i]
                clamped[z, y, i] = value if not value < _LOG_FLOOR else _LOG_FLOOR


@numba.njit(**JIT_OPTIONS)
def steepest_rise(
    logs: np.ndarray, linear: np.ndarray, passes: int, reach: int, window: int, min_contrast: np.float32,
    out: np.ndarray,
) -> None:
    """``out`` = each A-line's surface from its log intensity ``logs`` and intensity ``linear`` (NaN: none).

    :func:`~linumpy.intensity.surface.detect_surface` after the log: ``passes`` binomial passes along depth
    (:func:`~linumpy.intensity.surface.binomial_smooth`'s adds in its order), the first steepest rise, the
    parabola's sub-voxel offset, and the contrast of the ``window`` samples below and above it (``reach``
    voxels away). One row of A-lines at a time, its planes side by side.
    """
    n_z, n_y, n_x = logs.shape
    smoothed = np.empty((n_z, n_x), np.float32)
    spare = np.empty((n_z, n_x), np.float32)
    best = np.empty(n_x, np.float32)
    peak = np.empty(n_x, np.int64)
    for y in range(n_y):
        smoothed[:] = logs[:, y, :]
        for _ in range(passes):
            _binomial_pass(smoothed, spare)
            smoothed, spare = spare, smoothed
        for x in range(n_x):
            best[x] = smoothed[1, x] - smoothed[0, x]
            peak[x] = 0
        for k in range(1, n_z - 1):
            for x in range(n_x):
                rise = smoothed[k + 1, x] - smoothed[k, x]
                if not rise <= best[x] and best[x] == best[x]:  # numpy's argmax: the first maximum, or NaN
                    best[x] = rise
                    peak[x] = k
        for x in range(n_x):
            out[y, x] = _line_surface(smoothed, linear, y, x, peak[x], best[x], reach, window, min_contrast)


@numba.njit(inline="always", error_model="numpy")
def _binomial_pass(values: np.ndarray, out: np.ndarray) -> None:
    """``out`` = one ``[1, 2, 1] / 4`` pass of ``values`` along axis 0, edges repeated, in numpy's order."""
    n_z = values.shape[0]
    for k in range(n_z):
        above, below = max(k - 1, 0), min(k + 1, n_z - 1)
        for x in range(values.shape[1]):
            out[k, x] = (values[k, x] * np.float32(2.0) + values[above, x] + values[below, x]) * np.float32(0.25)


@numba.njit(inline="always", error_model="numpy")
def _line_surface(
    smoothed: np.ndarray, linear: np.ndarray, y: int, x: int, peak: int, mid: np.float32, reach: int, window: int,
    min_contrast: np.float32,
) -> np.float32:
    """One A-line's surface: the parabola's peak past the rise ``peak`` (value ``mid``) if its contrast holds."""
    last = smoothed.shape[0] - 2  # the last rise
    low, high = min(max(peak - 1, 0), last), min(max(peak + 1, 0), last)
    left = smoothed[low + 1, x] - smoothed[low, x]
    right = smoothed[high + 1, x] - smoothed[high, x]
    curvature = left - np.float32(2.0) * mid + right
    offset = np.float32(0.0)
    if curvature < 0:
        offset = np.float32(0.5) * (left - right) / curvature
        offset = min(max(offset, np.float32(-0.5)), np.float32(0.5))
    below = _window_mean(linear, y, x, peak + 1 + reach, 1, window)
    above = _window_mean(linear, y, x, peak - reach, -1, window)
    found = (np.isfinite(below) and np.isfinite(above) and below > 0 and below >= min_contrast * above
             and peak < smoothed.shape[0] - 1)
    return np.float32(peak) + np.float32(1.0) + offset if found else np.float32(np.nan)


@numba.njit(inline="always", error_model="numpy")
def _window_mean(linear: np.ndarray, y: int, x: int, start: int, step: int, window: int) -> np.float32:
    """The mean of the ``window`` samples from depth ``start`` by ``step`` inside the volume (NaN: none).

    numpy's order: the samples (0 outside) summed in float32 from the first, divided in float64.
    """
    total = np.float32(0.0)
    count = 0
    for j in range(window):
        depth = start + step * j
        inside = 0 <= depth < linear.shape[0]
        value = linear[min(max(depth, 0), linear.shape[0] - 1), y, x] if inside else np.float32(0.0)
        total = value if j == 0 else total + value
        count += inside
    return np.float32(np.float64(total) / count) if count > 0 else np.float32(np.nan)


_F32_3 = types.Array(types.float32, 3, "C")
#: The argument types pass 1 calls the kernels with, compiled ahead for a container's image
#: (:func:`linumpy.intensity.kernel_cache.compile_kernels`).
SIGNATURES = {
    lateral_box_means: [(_F32_3, types.int64, _F32_3, _F32_3)],
    steepest_rise: [(_F32_3, _F32_3, types.int64, types.int64, types.int64, types.float32,
                     types.Array(types.float32, 2, "C"))],
}
