"""Compiled loops of the attenuation model (:mod:`linumpy.intensity.attenuation`), one pass where numpy made several.

numpy ran the guided compensation of each group of planes as ~8 passes over the same memory (coefficients
interpolated, repeated to the A-lines, multiplied, added, clipped, extended, tested, divided, multiplied),
:class:`~linumpy.intensity.attenuation.BlockPass` as 5 (any nonzero, two binnings, clip, level), the box mean
as 2 (width - 1) shifted adds, and the decay fits' line sums as a dozen (mask, noise bias, terms, per-plane
adds). These loops do each in one pass, with numpy's float32 (and float64) operations in numpy's order (no
fused multiply-add, no reassociation: ``fastmath`` off), so that they give numpy's bits; the logs stay
numpy's (numba's float32 log differs by an ulp on some inputs). The bins of
:class:`~linumpy.intensity.attenuation.BinGrid` are 1 or 2 A-lines a side (``EDGE_BIN`` 2).
``nogil``: the step's worker threads run them on both cores. ``cache``: compiled at the first call on a
machine (~14 CPU s) into ``__pycache__`` beside this file when that is writable, else ``~/.cache/numba``;
``NUMBA_CACHE_DIR`` chooses the place (numba refuses to import this module when none is writable); a
container's image holds them compiled ahead (:mod:`linumpy.intensity.kernel_cache`, :data:`SIGNATURES`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from linumpy.intensity.kernel_cache import JIT_OPTIONS


@numba.njit(inline="always", error_model="numpy")
def _clip(value: np.float32) -> np.float32:
    """``np.maximum(value, 0)`` against an array of zeros: NaN kept, -0 and negatives to +0."""
    return value if not value <= 0 else np.float32(0.0)


@numba.njit(**JIT_OPTIONS)
def block_pass_add(
    part: np.ndarray, first: int, starts: tuple[np.ndarray, np.ndarray], counts: tuple[np.ndarray, np.ndarray],
    unclipped: np.ndarray, clipped: np.ndarray, imaged: np.ndarray, level: np.ndarray, level_planes: int,
    correction: tuple[bool, np.float32, np.ndarray, np.ndarray],
) -> None:
    """:meth:`~linumpy.intensity.attenuation.BlockPass.add`'s pass over the planes ``part`` from plane ``first``.

    ``correction``: ``(correct, noise_floor, profile, padding)``; with ``correct``, each row of ``part`` is
    first made the focus-corrected signal in place, as the axial correction's numpy did it group by group:
    ``noise_floor`` subtracted (float32), divided by ``profile[first + k]`` (float64, then rounded to float32;
    an empty profile: not divided) and set to +0 on the ``padding`` A-lines (:func:`zero_lines`).
    Bins of 1 or 2 A-lines a side (``starts``, ``counts`` of the grid): each bin's sum is taken as numpy's
    binning takes it (along y, then along x, then divided by the float32 count), of the samples as given
    (``unclipped``) and clipped at 0 (``clipped``, also written back into ``part``). ``imaged``: the A-lines
    with a sample other than 0; ``level``: the clipped samples of the planes below ``level_planes`` summed.
    """
    y_starts, x_starts = starts
    y_counts, x_counts = counts
    correct, noise_floor, profile, padding = correction
    divided = profile.size > 0
    for k in range(part.shape[0]):
        z = first + k
        divisor = profile[z] if divided else 1.0
        for i in range(y_starts.size):
            y0, n_y = y_starts[i], y_counts[i]
            if correct:  # this row of bins' rows made the corrected signal while they are in the cache
                for y in range(y0, y0 + n_y):
                    for x in range(part.shape[2]):
                        # numpy's float32 subtraction, its division by the float64 profile (in float64, then
                        # rounded), the padding's +0
                        value = part[k, y, x] - noise_floor
                        if divided:
                            value = np.float32(np.float64(value) / divisor)
                        part[k, y, x] = np.float32(0.0) if padding[y, x] else value
            y1 = y0 + n_y - 1  # the bin's second row (its first when it is 1 row)
            for j in range(x_starts.size):
                x0, n_x = x_starts[j], x_counts[j]
                x1 = x0 + n_x - 1
                # the bin's samples (y0, x0), (y1, x0), (y0, x1), (y1, x1): those of a narrow bin read twice,
                # summed once
                a, b, c, d = part[k, y0, x0], part[k, y1, x0], part[k, y0, x1], part[k, y1, x1]
                scale = np.float32(1.0) / np.float32(n_y * n_x)  # 1, 1/2, 1/4: exact, so x * scale is x / count
                unclipped[z, i, j] = _bin_sum(a, b, c, d, n_y, n_x) * scale
                clipped[z, i, j] = _bin_sum(_clip(a), _clip(b), _clip(c), _clip(d), n_y, n_x) * scale
            for y in range(y0, y0 + n_y):  # the rows of this row of bins, while they are in the cache
                for x in range(part.shape[2]):
                    value = part[k, y, x]
                    imaged[y, x] |= value != 0
                    part[k, y, x] = _clip(value)
                if z < level_planes:
                    for x in range(part.shape[2]):
                        level[y, x] = part[k, y, x] if z == 0 else level[y, x] + part[k, y, x]


@numba.njit(**JIT_OPTIONS)
def zero_lines(data: np.ndarray) -> np.ndarray:
    """``~data.any(axis=0)`` of a ``(z, y, x)`` float32 block: the A-lines whose samples are all +-0.

    Each A-line is read down only until its first sample other than 0 (NaN counts, as in numpy's ``any``).
    """
    n_z, n_y, n_x = data.shape
    zero = np.empty((n_y, n_x), np.bool_)
    for y in range(n_y):
        for x in range(n_x):
            k = 0
            while k < n_z and data[k, y, x] == 0:
                k += 1
            zero[y, x] = k == n_z
    return zero


@numba.njit(inline="always", error_model="numpy")
def _bin_sum(a: np.float32, b: np.float32, c: np.float32, d: np.float32, n_y: int, n_x: int) -> np.float32:
    """A bin's sum as numpy's binning takes it: along y (``a + b``, ``c + d``), then along x."""
    left = a + b if n_y == 2 else a
    if n_x == 1:
        return left
    return left + (c + d if n_y == 2 else c)


@numba.njit(**JIT_OPTIONS)
def guided_planes(
    planes: np.ndarray, fitted: np.ndarray, coefficients: np.ndarray, steps: np.ndarray, guide: np.ndarray,
    bins: tuple[np.ndarray, np.ndarray], extension: np.ndarray, out: np.ndarray,
) -> None:
    """``out[n]`` = the guided filter's sums at plane ``planes[n]``, clipped at 0, plus ``extension``.

    The coefficients ``(a, b)`` fitted on the planes ``fitted`` (``coefficients``, shape ``(2, fitted, y', x')``;
    ``steps``: their differences between consecutive fitted planes) are interpolated linearly to the plane,
    ``a * guide + b`` is evaluated at each A-line (``bins``: its bin's row and column), clipped at 0, and the
    A-line's ``extension`` added: float32, in numpy's order.
    """
    row_bin, column_bin = bins
    slope, mean = _row_buffers(guide)
    for n in range(planes.size):
        below, weight = _interpolation(planes[n], fitted)
        for y in range(guide.shape[0]):
            if y == 0 or row_bin[y] != row_bin[y - 1]:
                _interpolated_row(coefficients, steps, below, weight, row_bin[y], column_bin, slope, mean)
            for x in range(guide.shape[1]):
                out[n, y, x] = _clip(slope[x] * guide[y, x] + mean[x]) + extension[y, x]


@numba.njit(**JIT_OPTIONS)
def compensate_guided(
    signal: np.ndarray, corner: tuple[int, int], planes: tuple[int, int], fitted: np.ndarray,
    coefficients: np.ndarray, steps: np.ndarray, guide: np.ndarray, bins: tuple[np.ndarray, np.ndarray],
    extension: np.ndarray, floor: np.ndarray, floored: np.ndarray, ends: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """``signal[k] = signal[k] / T[k] * T[0]`` (unchanged where ``T[k]`` <= 0 before the product), in place.

    ``T``: :func:`guided_planes`' sums of the A-lines of ``guide`` (its shape), which are those of
    ``signal`` from ``corner``; the planes ``[start, stop)`` of ``planes``. numpy's
    ``compensate_attenuation`` of those sums, evaluated one A-line at a time. ``floor``: each plane's
    least sum (``T[k]`` raised to ``floor[k]``; empty: none), ``floored[0]`` counts the voxels it changed (raised
    sums, signal other than 0). ``ends``: ``(end, offset, beyond)`` of each A-line (empty: none), its sums
    ``T[k] + offset`` above the plane ``end`` and ``beyond`` from it on (the range ended where the signal
    reaches the noise, :func:`linumpy.intensity.attenuation.noise_ends`), before the floor.
    """
    row_bin, column_bin = bins
    top, left = corner
    n_x = guide.shape[1]
    first = np.empty((1, *guide.shape), np.float32)  # T[0], every plane's numerator
    guided_planes(np.zeros(1, np.int64), fitted, coefficients, steps, guide, bins, extension, first)
    end, offset, beyond = ends
    ended = end.size > 0
    least = floor.size > 0
    for y in range(guide.shape[0]):
        for x in range(guide.shape[1]):
            if ended:
                first[0, y, x] = first[0, y, x] + offset[y, x] if 0 < end[y, x] else beyond[y, x]
            if least and first[0, y, x] < floor[0]:
                first[0, y, x] = floor[0]
    raised = 0
    slope, mean = _row_buffers(guide)
    for k in range(planes[0], planes[1]):
        below, weight = _interpolation(k, fitted)
        for y in range(guide.shape[0]):
            if y == 0 or row_bin[y] != row_bin[y - 1]:
                _interpolated_row(coefficients, steps, below, weight, row_bin[y], column_bin, slope, mean)
            line = signal[k, top + y, left : left + n_x]
            for x in range(n_x):
                sums = _clip(slope[x] * guide[y, x] + mean[x]) + extension[y, x]
                if ended:
                    sums = sums + offset[y, x] if k < end[y, x] else beyond[y, x]
                value = line[x]
                if least and sums < floor[k]:
                    sums = floor[k]
                    raised += value != 0
                quotient = value / sums
                line[x] = (quotient if sums > 0 else value) * first[0, y, x]
    floored[0] += raised


@numba.njit(inline="always", error_model="numpy")
def _row_buffers(guide: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients ``(a, b)`` of a row of A-lines."""
    return np.empty(guide.shape[1], np.float32), np.empty(guide.shape[1], np.float32)


@numba.njit(inline="always", error_model="numpy")
def _interpolation(plane: int, fitted: np.ndarray) -> tuple[int, np.float32]:
    """The fitted plane at or above ``plane`` (the last but one at most) and the weight of the next one."""
    below = min(np.searchsorted(fitted, plane, side="right") - 1, fitted.size - 2)
    return below, np.float32((plane - fitted[below]) / (fitted[below + 1] - fitted[below]))


@numba.njit(error_model="numpy")
def _interpolated_row(coefficients: np.ndarray, steps: np.ndarray, below: int, weight: np.float32, row: int,
                      column_bin: np.ndarray, slope: np.ndarray, mean: np.ndarray) -> None:
    """``slope``, ``mean`` = each A-line's coefficients in a row of bins, at ``weight`` from ``below`` to the next."""
    for x in range(slope.size):
        c = column_bin[x]
        slope[x] = coefficients[0, below, row, c] + weight * steps[0, below, row, c]
        mean[x] = coefficients[1, below, row, c] + weight * steps[1, below, row, c]


@numba.njit(**JIT_OPTIONS)
def box_sums(planes: np.ndarray, width: int, out: np.ndarray) -> None:
    """``out`` = the mean of each ``(y, x)`` plane of ``planes`` over a box of ``width`` (odd), edges repeated.

    Summed along y first (each row and the ``width - 1`` below it, from the top, in float32), then along x
    the same way, then divided by ``width ** 2``: the sums of numpy's shifted views, in their order.
    """
    radius = width // 2
    n_y, n_x = planes.shape[1], planes.shape[2]
    column = np.empty(n_x, np.float32)
    padded = np.empty(n_x + 2 * radius, np.float32)
    area = np.float32(width * width)
    for p in range(planes.shape[0]):
        for y in range(n_y):
            for x in range(n_x):
                column[x] = planes[p, min(max(y - radius, 0), n_y - 1), x]
            for d in range(1, width):
                row = min(max(y - radius + d, 0), n_y - 1)
                for x in range(n_x):
                    column[x] += planes[p, row, x]
            padded[radius : radius + n_x] = column
            padded[:radius] = column[0]
            padded[radius + n_x :] = column[n_x - 1]
            row = out[p, y]
            row[:] = padded[:n_x]
            for d in range(1, width):
                for x in range(n_x):
                    row[x] += padded[x + d]
            for x in range(n_x):
                row[x] /= area


@numba.njit(inline="always", error_model="numpy")
def _used_log(signal: np.float32, log: np.float32, plane: int, first: float, stop: float, biased: bool,
              variance: np.float32, cap: np.float32) -> tuple[bool, np.float32]:
    """Whether a sample of the decay fits is used (positive, inside ``[first, stop)``) and its log (0 if not).

    ``biased``: the log carries the noise bias ``min(variance / (2 signal^2), cap)`` in numpy's float32
    order (NaN kept by the minimum, as ``np.minimum``'s), see :func:`linumpy.intensity.attenuation.fit_sums`.
    """
    if not (signal > 0 and first <= plane and stop > plane):
        return False, np.float32(0.0)
    if biased:
        bias = variance / (signal * signal) * np.float32(0.5)
        log = log + (bias if not bias > cap else cap)
    return True, log


@numba.njit(**JIT_OPTIONS)
def fit_line_sums(
    signal: np.ndarray, log: np.ndarray, low: int, first: np.ndarray, stop: np.ndarray, window_stop: np.ndarray,
    variance: np.ndarray, cap: np.float32, whole: np.ndarray, window: np.ndarray,
) -> None:
    """:func:`linumpy.intensity.attenuation.fit_sums`' sums, one pass over the planes ``low + k`` of each A-line.

    ``signal``, ``log``: ``(planes, lines)`` float32, the signal ``T[k] - T[k + 1]`` and its numpy log;
    ``whole``, ``window``: ``(6, lines)`` float64 zeros, filled with ``(n, sz, szz, sl, szl, 0)`` over
    ``[first, stop)`` and, for the A-lines with ``window_stop < stop``, over ``[first, window_stop)`` (left 0
    when the window stops above the first plane). Counts are integers (exact); ``sl`` and ``szl`` are
    added plane after plane, ``szl``'s terms rounded to float32 first (numpy's order). ``variance``, ``cap``:
    the noise bias (:func:`_used_log`; ``variance`` per plane, empty: none).
    """
    biased = variance.size > 0
    for k in range(signal.shape[0]):  # plane after plane, the A-lines side by side (contiguous)
        plane = low + k
        plane_variance = variance[plane] if biased else np.float32(0.0)
        for i in range(signal.shape[1]):
            used, value = _used_log(signal[k, i], log[k, i], plane, first[i], stop[i], biased, plane_variance, cap)
            if used:
                whole[0, i] += 1.0
                whole[1, i] += plane
                whole[2, i] += plane * plane
            whole[3, i] += value
            whole[4, i] += value * np.float32(plane)
            if plane + 1 == window_stop[i] and window_stop[i] < stop[i]:
                for field in range(5):
                    window[field, i] = whole[field, i]


@numba.njit(**JIT_OPTIONS)
def cumulated_line_sums(
    signal: np.ndarray, log: np.ndarray, low: int, first: np.ndarray, stop: np.ndarray, boundaries: np.ndarray,
    total: np.ndarray, above: np.ndarray,
) -> None:
    """:func:`linumpy.intensity.attenuation.cumulated_sums`' sums, one pass over the planes ``low + k``.

    ``signal``, ``log`` as in :func:`fit_line_sums`; ``total``: ``(6, lines)`` float64 zeros, filled with the
    sums ``(n, sz, szz, sl, szl, sll)`` over each A-line's range, each term rounded to float32 first (numpy's
    order); ``above``: ``(boundaries, 6, lines)``, the sums down to each boundary (those past the last plane:
    the total).
    """
    row = 0  # the next boundary (all are below low)
    for k in range(signal.shape[0]):  # plane after plane, the A-lines side by side (contiguous)
        plane = low + k
        weight = np.float32(plane)
        for i in range(signal.shape[1]):
            used, value = _used_log(signal[k, i], log[k, i], plane, first[i], stop[i], False, np.float32(0.0),
                                    np.float32(0.0))
            count = np.float32(1.0) if used else np.float32(0.0)
            total[0, i] += count
            total[1, i] += count * weight
            total[2, i] += count * weight * weight
            total[3, i] += value
            total[4, i] += value * weight
            total[5, i] += value * value
        if row < boundaries.size and plane + 1 == boundaries[row]:
            above[row] = total
            row += 1
    for later in range(row, boundaries.size):
        above[later] = total


@numba.njit(inline="always", error_model="numpy")
def _line_residual(n: float, sz: float, szz: float, sl: float, szl: float, sll: float) -> float:
    """:meth:`linumpy.intensity.attenuation.LineSums.residual` of one A-line's sums, in numpy's float64 order."""
    count = n if n > 1.0 else 1.0  # np.maximum(n, 1) of a count (never NaN)
    residual = sll - sl * sl / count
    spread = szz - sz * sz / count
    covariance = szl - sz * sl / count
    covariance = covariance * covariance
    residual -= covariance / spread if spread > 0 else 0.0
    residual = residual if not residual <= 0.0 else 0.0  # np.maximum(residual, 0): NaN kept, -0 to +0
    return 0.0 if n <= 2 else residual


@numba.njit(**JIT_OPTIONS)
def best_splits(
    above: np.ndarray, columns: np.ndarray, rows: tuple[int, int], total: np.ndarray, minimum: tuple[int, int],
    boundaries: np.ndarray, statistic: np.ndarray, explained: np.ndarray, split: np.ndarray,
) -> None:
    """:meth:`linumpy.intensity.attenuation_map.SplitSums.statistic`'s search, one pass over the candidates.

    ``above``: ``(boundaries, 6, lines)`` line sums down to each boundary; ``columns``: the A-lines searched
    (their columns of ``above``); ``rows``: the candidate boundaries ``[start, stop)``; ``total``: ``(6, A-lines)``
    the sums over each window; ``minimum``: the samples a split leaves above and below. Each candidate's
    residual (the two lines' residuals added, inf where a side has too few samples), the first least one
    (numpy's ``argmin``: a NaN wins), then ``F``, the explained mean square and the split plane (inf where none
    is finite) into ``statistic``, ``explained``, ``split``: numpy's float64 operations in numpy's order.
    """
    min_above, min_below = minimum
    lines = columns.size
    best = np.full(lines, np.inf)
    index = np.full(lines, -1, np.int64)
    for row in range(rows[0], rows[1]):
        for i in range(lines):
            if index[i] >= 0 and np.isnan(best[i]):
                continue  # argmin keeps the first NaN
            c = columns[i]
            n, sz, szz, sl, szl, sll = (above[row, 0, c], above[row, 1, c], above[row, 2, c], above[row, 3, c],
                                        above[row, 4, c], above[row, 5, c])
            below_n = total[0, i] - n
            if n < min_above or below_n < min_below:
                residual = np.inf
            else:
                residual = (_line_residual(n, sz, szz, sl, szl, sll)
                            + _line_residual(below_n, total[1, i] - sz, total[2, i] - szz, total[3, i] - sl,
                                             total[4, i] - szl, total[5, i] - sll))
            if index[i] < 0 or residual < best[i] or np.isnan(residual):
                best[i], index[i] = residual, row
    for i in range(lines):
        n = total[0, i]
        whole = _line_residual(n, total[1, i], total[2, i], total[3, i], total[4, i], total[5, i])
        value = best[i]
        found = np.isfinite(value)
        statistic[i] = (whole - value) * (n - 4.0 if n - 4.0 > 1.0 else 1.0) / value if found and value > 0 else 0.0
        explained[i] = (whole - value) / n if found and n > 0 else 0.0
        split[i] = np.float64(boundaries[index[i]]) if found else np.inf


@numba.njit(**JIT_OPTIONS)
def bent_normal_equations(
    window: np.ndarray, parts: np.ndarray, knees: np.ndarray, fits: tuple[np.ndarray, np.ndarray, np.ndarray],
    gram: np.ndarray, moments: np.ndarray,
) -> None:
    """The normal equations of :func:`linumpy.intensity.attenuation_map._bent_residual`'s line bent at two knees.

    ``window``: ``(6, lines)`` the :class:`~linumpy.intensity.attenuation.LineSums` fields over each window;
    ``parts``: ``(6, candidates, lines)`` the same over its samples below each candidate knee ``knees``
    (``(candidates, lines)``); ``fits``: the A-line and the candidates of the first and second knee of each
    fit. Fills ``gram`` ``(fits, 4, 4)`` (symmetric) and ``moments`` ``(fits, 4)`` of the regressors
    ``1, k, (k - h1)+, (k - h2)+``, each entry in numpy's float64 order.
    """
    lines, first, second = fits
    for f in range(lines.size):
        i, a, b = lines[f], first[f], second[f]
        g, m = gram[f], moments[f]
        g[0, 0], g[0, 1], g[1, 1] = window[0, i], window[1, i], window[2, i]
        m[0], m[1] = window[3, i], window[4, i]
        for j, c in ((2, a), (3, b)):
            knee = knees[c, i]
            n, sz, szz, sl, szl = parts[0, c, i], parts[1, c, i], parts[2, c, i], parts[3, c, i], parts[4, c, i]
            g[0, j] = sz - knee * n
            g[1, j] = szz - knee * sz
            m[j] = szl - knee * sl
            g[j, j] = szz - 2.0 * knee * sz + knee * knee * n
        other = knees[a, i]  # over k >= h2, the later knee
        knee = knees[b, i]
        n, sz, szz = parts[0, b, i], parts[1, b, i], parts[2, b, i]
        g[2, 3] = szz - (knee + other) * sz + knee * other * n
        for row in range(1, 4):
            for column in range(row):
                g[row, column] = g[column, row]


def _array(dtype: types.Type, ndim: int, layout: str = "C") -> types.Array:
    """numba's type of a writable ``ndim``-D array of ``dtype`` (``layout``: C, F or A, any)."""
    return types.Array(dtype, ndim, layout)


_F32_1, _F32_2, _F32_3, _F32_4 = (_array(types.float32, n) for n in (1, 2, 3, 4))
_F64_1, _F64_2, _F64_3 = (_array(types.float64, n) for n in (1, 2, 3))
_I64_1, _I64_2 = _array(types.int64, 1), _array(types.int64, 2)
_GRID = types.UniTuple(_I64_1, 2)  # a BinGrid's starts or counts, a guided filter's bins
_CORNER = types.UniTuple(types.int64, 2)

#: The argument types the axial correction calls each kernel with (its layouts and dtypes met on real slices:
#: the guide as a view or a copy, the window stops as float32 or float64, the planes' signal C or F ordered),
#: compiled ahead for a container's image (:func:`linumpy.intensity.kernel_cache.compile_kernels`).
SIGNATURES = {
    block_pass_add: [(_F32_3, types.int64, _GRID, _GRID, _F32_3, _F32_3, _array(types.boolean, 2), _F32_2,
                      types.int64, types.Tuple((types.boolean, types.float32, _F64_1, _array(types.boolean, 2))))],
    zero_lines: [(_F32_3,)],
    bent_normal_equations: [(_F64_2, _F64_3, _F64_2, types.UniTuple(_I64_1, 3), _F64_3, _F64_2)],
    best_splits: [(above, _I64_1, _CORNER, _F64_2, _CORNER, _I64_1, _F64_1, _F64_1, _F64_1)
                  for above in (_array(types.float64, 3, "A"), _F64_3)],  # both boxes' sums, or one box's
    guided_planes: [(_I64_1, _I64_1, _F32_4, _F32_4, guide, _GRID, _F32_2, _F32_3)
                    for guide in (_array(types.float32, 2, "A"), _F32_2)],
    compensate_guided: [(_F32_3, _CORNER, _CORNER, _I64_1, _F32_4, _F32_4, _F32_2, _GRID, _F32_2, _F32_1, _I64_1,
                         types.Tuple((_I64_2, _F32_2, _F32_2)))],
    box_sums: [(_F32_3, types.int64, _F32_3)],
    fit_line_sums: [(_F32_2, _F32_2, types.int64, _F32_1, _F32_1, stops, _F32_1, types.float32, _F64_2, _F64_2)
                    for stops in (_F64_1, _F32_1)],
    cumulated_line_sums: [(planes, planes, types.int64, _F32_1, _F32_1, _I64_1, _F64_2, _F64_3)
                          for planes in (_array(types.float32, 2, "F"), _F32_2)],
}
