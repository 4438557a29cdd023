"""Depth-resolved attenuation (Vermeer et al. 2014) and its compensation.

For an A-line of noise-free, single-scattering OCT signal ``I[k]`` sampled
every ``dz`` (in mm), Vermeer et al. (Biomed. Opt. Express 5(1):322, 2014)
estimate the attenuation coefficient of voxel ``k`` from the signal
below it. With ``T[k] = sum_{j >= k} I[j]`` (the inclusive tail sum), we use
the exact form for a piecewise-constant attenuation

    mu[k] = ln(T[k] / T[k + 1]) / (2 dz)

whose first-order expansion is Vermeer's ``I[k] / (2 dz sum_{j > k} I[j])``.
The light reaching voxel ``k`` then is ``T[k] / T[0]`` of the light entering
the A-line, so the attenuation-compensated signal is

    C[k] = I[k] * T[0] / T[k]

(constant with depth in a homogeneous medium, and never above ``T[0]``).
The A-line is finite: the part of the tail sum beyond the last sample is
extended as a geometric series whose ratio is measured on the last two
windows of the A-line (see :func:`tail_sums`). On short A-lines that
extension is the largest error of the compensation (see ``docs/intensity.md``).
The sums are averaged laterally against speckle: a box (:func:`tail_sums`),
or, for the compensation, a guided filter that does not mix tissues of
different levels (:func:`edge_aware_tails`).

The attenuation *map* (one value per A-line, :func:`window_attenuation`)
does not use the extension at all: it is the decay rate of the laterally
averaged signal (:func:`slope_attenuation`), fitted from the A-line's
surface down to its first change (a region of another reflectivity below).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

#: Largest window-to-window decay ratio accepted for the end-of-range extension.
MAX_TAIL_RATIO = 0.95
#: Planes handled by one numpy call in the plane-by-plane loops (bounded temporaries, few calls).
GROUP_PLANES = 16


def tail_sums(
    signal: np.ndarray, tail_window_px: int | None = None, lateral_sigma_px: float = 0.0
) -> np.ndarray:
    """Inclusive tail sums ``T[k] = sum_{j >= k} I[j]`` along axis 0, extended past the end.

    The signal beyond the imaged range is modelled as continuing the decay
    measured at the end of the A-line: with ``W1`` the sum of the last
    ``tail_window_px`` samples and ``W0`` that of the window before it, the
    ratio ``q = W1 / W0`` (clipped to ``[0, MAX_TAIL_RATIO]``) is the decay
    per window and the unseen rest is ``W1 * q / (1 - q)``.

    Speckle makes the sums of single A-lines noisy, and the compensation
    gain ``T[0] / T[k]`` (and the tail, nonlinear in ``q``) with them. For a
    ``(z, y, x)`` block the sums are therefore averaged laterally (a box of
    ``2 * round(sqrt(3) * lateral_sigma_px) + 1`` A-lines a side, the box with
    that standard deviation; 0 = per A-line) before the extension is measured.

    Parameters
    ----------
    signal : ndarray, shape (z, ...)
        Non-negative, noise-floor-subtracted intensity.
    tail_window_px : int, optional
        Window length of the end-of-range extension; default a quarter of the
        A-line (long windows average the speckle out of the ratio ``q``).
    lateral_sigma_px : float
        Lateral smoothing of the sums (3D input only); see :func:`box_width`.

    Returns
    -------
    ndarray, shape (z + 1, ...), float32
        ``T[0..z]``; ``T[z]`` is the extension alone.
    """
    n_z = signal.shape[0]
    window = _tail_window(n_z, tail_window_px)
    sums = np.zeros((n_z + 1,) + signal.shape[1:], dtype=np.float32)
    if signal.ndim == 1:
        np.cumsum(signal[::-1], dtype=np.float32, out=sums[n_z - 1 :: -1])
    else:  # plane by plane: several times faster than np.cumsum along the first axis
        for k in range(n_z - 1, -1, -1):
            np.add(sums[k + 1], signal[k], out=sums[k], casting="unsafe")
    if lateral_sigma_px > 0 and signal.ndim == 3:
        for axis in (1, 2):
            ndimage.uniform_filter1d(sums, box_width(lateral_sigma_px), axis=axis, mode="nearest", output=sums)
    _extend(sums, window)
    return sums


def _extend(sums: np.ndarray, window: int) -> None:
    """Add the end-of-range extension ``W1 q / (1 - q)`` (see :func:`tail_sums`) to every ``T[k]``, in place."""
    n_z = sums.shape[0] - 1
    sums += _extension(sums[n_z - window], sums[n_z - 2 * window])


def _extension(last: np.ndarray, before: np.ndarray) -> np.ndarray:
    """The end-of-range extension ``W1 q / (1 - q)`` from the sums ``T[z - w]`` (``last``) and ``T[z - 2 w]``."""
    before = before - last
    ratio = np.clip(np.divide(last, before, out=np.zeros_like(last), where=before > 0), 0.0, MAX_TAIL_RATIO)
    return (last * ratio / (1.0 - ratio)).astype(np.float32)


def _tail_window(n_z: int, tail_window_px: int | None) -> int:
    window = n_z // 4 if tail_window_px is None else tail_window_px
    return max(1, min(window, n_z // 2))


#: Regularisation of :func:`edge_aware_tails`: lateral variance of the guide (log level) below which a
#: neighbourhood counts as one tissue (plain box mean); a log-level spread of about 0.1 (10%).
EDGE_EPSILON = 0.01
#: Planes of the sums filtered at a time by :func:`edge_aware_tails` (bounds its temporaries).
EDGE_PLANES = 16
#: A-lines a side of the bins on which :func:`edge_aware_tails` fits its coefficients.
EDGE_BIN = 2
#: Planes between those on which :func:`edge_aware_tails` fits its coefficients (linear in between).
EDGE_STEP = 4


def level_guide(signal: np.ndarray) -> np.ndarray:
    """Guide of :func:`edge_aware_tails`: log of each A-line's mean over the upper half of the block.

    The upper half (the tissue just below the cut, little attenuated) tells
    which tissue an A-line belongs to; its mean over depth already averages
    the speckle (a lateral smoothing of the guide would blur the edges it is
    there to keep: the A-lines next to an edge would take both tissues'
    decay). Levels below 1e-3 of the block's mean level are raised to it
    (agarose, padding), so the log stays finite.

    Parameters
    ----------
    signal : ndarray, shape (z, y, x)

    Returns
    -------
    ndarray, shape (y, x), float32
    """
    level = signal[: max(1, signal.shape[0] // 2)].mean(axis=0, dtype=np.float32)
    floor = max(float(level.mean()) * 1e-3, np.finfo(np.float32).tiny)
    return np.log(np.maximum(level, floor)).astype(np.float32)


@dataclass(frozen=True)
class BinGrid:
    """Bins of :data:`EDGE_BIN` x :data:`EDGE_BIN` A-lines of a block, on its slice's grid.

    The bins follow the slice's grid whatever the block (``phase``: the
    index of the block's first A-line in the slice), so that neighbouring
    blocks bin alike (no seams); a block's first and last bins may be
    narrower.
    """

    starts: tuple[np.ndarray, np.ndarray]
    counts: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, shape: tuple[int, int], phase: tuple[int, int] = (0, 0)) -> BinGrid:
        """The bins of a block of lateral ``shape`` whose first A-line is ``phase`` in the slice."""
        starts = tuple(np.r_[0, np.arange(-p % EDGE_BIN or EDGE_BIN, n, EDGE_BIN)] for p, n in zip(phase, shape))
        return cls(starts, tuple(np.diff(np.r_[start, n]) for start, n in zip(starts, shape)))

    def binned(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Mean over each bin of the last two axes of float32 ``values``, float32 (into ``out`` when given).

        Binned along y, then along x, each pass writing a C-ordered array (no transposed copies).
        """
        rows = _bin_axis(values, -2, self.starts[0])
        out = _bin_axis(rows, -1, self.starts[1], out)
        out /= np.float32(self.counts[0][:, None] * self.counts[1][None, :])
        return out

    def fine(self, values: np.ndarray) -> np.ndarray:
        """Each bin's value repeated to its A-lines."""
        return np.repeat(np.repeat(values, self.counts[0], axis=-2), self.counts[1], axis=-1)

    def covering(
        self, inner: tuple[slice, slice]
    ) -> tuple[BinGrid, tuple[slice, slice], tuple[slice, slice], tuple[slice, slice]]:
        """The bins that cover the A-lines ``inner`` of the block.

        Returns
        -------
        grid : BinGrid
            Those bins, as a grid of their own.
        bins : (slice, slice)
            Their indices in this grid.
        lines : (slice, slice)
            The A-lines they cover, in the block.
        within : (slice, slice)
            The A-lines ``inner`` among ``lines``.
        """
        grids, bins, lines, within = [], [], [], []
        for starts, counts, part in zip(self.starts, self.counts, inner):
            low, high, _ = part.indices(int(starts[-1] + counts[-1]))
            first, stop = int(np.searchsorted(starts, low, side="right")) - 1, int(np.searchsorted(starts, high))
            grids.append((starts[first:stop] - starts[first], counts[first:stop]))
            bins.append(slice(first, stop))
            lines.append(slice(int(starts[first]), int(starts[first] + counts[first:stop].sum())))
            within.append(slice(low - int(starts[first]), high - int(starts[first])))
        return BinGrid(*zip(*grids)), tuple(bins), tuple(lines), tuple(within)

    def evaluate(self, slope: np.ndarray, guide: np.ndarray, offset: np.ndarray, out: np.ndarray) -> None:
        """``out = fine(slope) * guide + fine(offset)`` (binned ``(z, y', x')`` coefficients, ``out`` ``(z, y, x)``).

        When every bin is whole, one strided view per position in the bin (no repeated copies).
        """
        if all(np.all(c == EDGE_BIN) for c in self.counts):
            view = out.reshape(out.shape[0], self.counts[0].size, EDGE_BIN, self.counts[1].size, EDGE_BIN)
            for i in range(EDGE_BIN):
                for j in range(EDGE_BIN):
                    np.multiply(slope, guide[i::EDGE_BIN, j::EDGE_BIN], out=view[:, :, i, :, j])
                    view[:, :, i, :, j] += offset
        else:
            np.multiply(self.fine(slope), guide, out=out)
            out += self.fine(offset)


def binned_tail_sums(signal: np.ndarray, grid: BinGrid) -> np.ndarray:
    """Inclusive tail sums of the ``(z, y, x)`` signal binned on ``grid`` (no extension), shape ``(z + 1, ...)``."""
    binned = grid.binned(signal)
    sums = np.zeros((signal.shape[0] + 1,) + binned.shape[1:], np.float32)
    sums[:-1] = binned
    for k in range(signal.shape[0] - 1, -1, -1):
        sums[k] += sums[k + 1]
    return sums


def clipped_binned_tail_sums(signal: np.ndarray, grid: BinGrid) -> tuple[np.ndarray, np.ndarray]:
    """:func:`binned_tail_sums` of ``signal`` as given and clipped at 0; clips ``signal`` in place.

    One pass over the block, :data:`GROUP_PLANES` planes at a time (each group binned,
    clipped and binned again while it is in the cache). Returns ``(unclipped, clipped)``.
    """
    shape = (signal.shape[0] + 1, grid.counts[0].size, grid.counts[1].size)
    unclipped, clipped = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for a in range(0, signal.shape[0], GROUP_PLANES):
        part = signal[a : a + GROUP_PLANES]
        grid.binned(part, out=unclipped[a : a + part.shape[0]])
        np.maximum(part, 0, out=part)
        grid.binned(part, out=clipped[a : a + part.shape[0]])
    for sums in (unclipped, clipped):
        for k in range(signal.shape[0] - 1, -1, -1):
            sums[k] += sums[k + 1]
    return unclipped, clipped


def coarse_box_tails(
    sums: np.ndarray, lateral_sigma_px: float, part: tuple[slice, slice], stride: int,
    tail_window_px: int | None = None,
) -> np.ndarray:
    """``binned_box_tails(sums, lateral_sigma_px)[:, part[0], part[1]][:, ::stride, ::stride]``, the same bits.

    The box is filtered along y, only the rows kept are filtered along x, and only the bins
    kept are extended (the wide box of :func:`window_attenuation`'s split, on its coarse grid).
    """
    width = box_width(lateral_sigma_px) // EDGE_BIN | 1
    rows = ndimage.uniform_filter1d(sums, width, axis=1, mode="nearest")[:, part[0]][:, ::stride]
    tails = ndimage.uniform_filter1d(rows, width, axis=2, mode="nearest")[:, :, part[1]][:, :, ::stride]
    _extend(tails, _tail_window(sums.shape[0] - 1, tail_window_px))
    return tails


def binned_box_tails(sums: np.ndarray, lateral_sigma_px: float, tail_window_px: int | None = None) -> np.ndarray:
    """:func:`tail_sums` with its lateral box, on binned sums (:func:`binned_tail_sums`): a new array.

    The box is ``box_width(lateral_sigma_px) // EDGE_BIN`` bins (made odd;
    3 bins = 6 A-lines for the default sigma 2, where the full-resolution box
    is 7).
    """
    width = box_width(lateral_sigma_px) // EDGE_BIN | 1
    tails = ndimage.uniform_filter(sums, (1, width, width), mode="nearest")
    _extend(tails, _tail_window(sums.shape[0] - 1, tail_window_px))
    return tails


def edge_aware_tails(
    signal: np.ndarray, sums: np.ndarray, grid: BinGrid, sigma_px: float, tail_window_px: int | None = None,
    epsilon: float = EDGE_EPSILON, inner: tuple[slice, slice] = (slice(None), slice(None)),
    planes: tuple[int, int] | None = None,
) -> np.ndarray:
    """Tail sums of a ``(z, y, x)`` block averaged laterally without mixing tissues of different levels.

    Like :func:`tail_sums` with its lateral box, but the average is a guided
    filter (He, Sun and Tang 2013, IEEE TPAMI 35(6):1397) with the A-lines'
    log level as guide (:func:`level_guide`): in each box of the standard
    deviation ``sigma_px`` the plane of sums is modelled as
    ``a * guide + b`` by least squares (``a`` damped by ``epsilon``), and
    each A-line takes the box-averaged ``a`` and ``b`` at its own guide
    value. Where the guide is flat (one tissue) this is the box mean; across
    an edge of the guide (a dark region beside a bright one, a fibre) each
    side keeps its own decay, where the box lends the A-lines near the edge
    the other tissue's. Linear in the signal (scaling it scales the sums).
    As in the fast guided filter (He and Sun 2015, arXiv:1505.00996) the
    coefficients are fitted on the binned sums (boxes of ``1 / EDGE_BIN`` of
    the width), and on every :data:`EDGE_STEP`-th plane of sums only (and
    the last): the sums are smooth along depth (each plane adds one plane of
    signal, box-averaged, to the next), so ``a`` and ``b`` are interpolated
    linearly in between; only ``a * guide + b`` is evaluated for every voxel.
    Then the end-of-range extension of :func:`tail_sums`.

    Parameters
    ----------
    signal : ndarray, shape (z, y, x)
        Non-negative, noise-floor-subtracted intensity (for the guide).
    sums : ndarray, shape (z + 1, y', x')
        :func:`binned_tail_sums` of ``signal`` on ``grid``.
    grid : BinGrid
    sigma_px : float
        Standard deviation of the box (A-lines).
    tail_window_px : int, optional
        See :func:`tail_sums`.
    epsilon : float
        Variance of the guide treated as noise.
    inner : (slice, slice)
        The A-lines whose sums are wanted (the block without its halo): only
        they are evaluated.
    planes : (int, int), optional
        Only the planes 0 and ``[start, stop)`` of the sums are wanted (what
        :func:`compensate_attenuation` reads for those planes of the signal):
        the others are NaN.

    Returns
    -------
    ndarray, shape (z + 1, y', x'), float32
        The sums of the ``inner`` A-lines (a view).
    """
    width = box_width(sigma_px / EDGE_BIN)

    def box(values: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(values, (1, width, width) if values.ndim == 3 else width, mode="nearest")

    guide = level_guide(signal)
    small_guide = grid.binned(guide)
    mean_guide = box(small_guide)
    variance = np.maximum(box(small_guide * small_guide) - mean_guide**2, 0) + np.float32(epsilon)
    covering, bins, lines, within = grid.covering(inner)
    n_planes = sums.shape[0]
    fitted = np.unique(np.r_[np.arange(0, n_planes, EDGE_STEP), n_planes - 1])
    coefficients = np.empty((2, fitted.size, *(part.stop - part.start for part in bins)), np.float32)
    for first in range(0, fitted.size, EDGE_PLANES):
        fitted_sums = sums[fitted[first : first + EDGE_PLANES]]
        mean = box(fitted_sums)
        slope = box(fitted_sums * small_guide)
        slope -= mean * mean_guide
        slope /= variance
        mean -= slope * mean_guide
        for values, fit in zip(coefficients, (slope, mean)):
            values[first : first + EDGE_PLANES] = box(fit)[(slice(None), *bins)]
    guide = guide[lines]
    steps = coefficients[:, 1:] - coefficients[:, :-1]  # between consecutive fitted planes

    def planes_of_sums(k: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` = the planes ``k`` of sums, clipped at 0: coefficients interpolated linearly, then evaluated."""
        below = np.minimum(np.searchsorted(fitted, k, side="right") - 1, fitted.size - 2)
        weight = ((k - fitted[below]) / (fitted[below + 1] - fitted[below])).astype(np.float32)[:, None, None]
        slope, mean = (values[below] + weight * step[below] for values, step in zip(coefficients, steps))
        covering.evaluate(slope, guide, mean, out)
        return np.maximum(out, 0, out=out)

    # the end-of-range extension from its two planes first, so that each group of planes is evaluated,
    # clipped and extended while it is in the cache
    window = _tail_window(signal.shape[0], tail_window_px)
    ends = np.array([n_planes - 1 - window, n_planes - 1 - 2 * window])
    last, before = planes_of_sums(ends, np.empty((2, *guide.shape), np.float32))
    extension = _extension(last, before)
    out = np.empty((n_planes, *guide.shape), np.float32)
    if planes is None:
        runs = [(0, n_planes)]
    else:  # plane 0 (T[0], every compensated plane's numerator), then the planes asked for
        low = max(1, planes[0])
        high = max(low, min(n_planes, planes[1]))
        runs = [(0, 1), (low, high)]
        out[1:low] = np.nan
        out[high:] = np.nan
    for low, high in runs:
        for first in range(low, high, EDGE_PLANES):
            stop = min(high, first + EDGE_PLANES)
            group = planes_of_sums(np.arange(first, stop), out[first:stop])
            group += extension
    return out[(slice(None), *within)]


def _bin_axis(values: np.ndarray, axis: int, starts: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Sums of ``values`` over the bins starting at ``starts`` along ``axis`` (``np.add.reduceat``, faster).

    The bins between the first and the last are :data:`EDGE_BIN` wide and
    summed by strided adds (float32, C-ordered ``out``, a new array unless given); the first and the last
    may be narrower.
    """
    n = values.shape[axis]
    first = int(starts[1]) if starts.size > 1 else n
    full = max(0, (n - first) // EDGE_BIN)
    stop = first + full * EDGE_BIN

    def along(part: slice) -> tuple[slice, ...]:
        index = [slice(None)] * values.ndim
        index[axis] = part
        return tuple(index)

    if out is None:
        shape = list(values.shape)
        shape[axis] = starts.size
        out = np.empty(shape, np.float32)
    np.sum(values[along(slice(0, first))], axis=axis, keepdims=True, out=out[along(slice(0, 1))])
    middle = out[along(slice(1, 1 + full))]
    np.add(values[along(slice(first, stop, EDGE_BIN))], values[along(slice(first + 1, stop, EDGE_BIN))], out=middle)
    for offset in range(2, EDGE_BIN):
        middle += values[along(slice(first + offset, stop, EDGE_BIN))]
    if stop < n:
        np.sum(values[along(slice(stop, n))], axis=axis, keepdims=True, out=out[along(slice(-1, None))])
    return out


def box_width(sigma_px: float) -> int:
    """Odd width of the box filter whose standard deviation is about ``sigma_px``.

    Examples
    --------
    >>> box_width(3.0)
    11
    """
    return 2 * int(round(np.sqrt(3.0) * sigma_px)) + 1


def attenuation_coefficient(tails: np.ndarray, voxel_size_mm: float) -> np.ndarray:
    """Depth-resolved attenuation ``mu[k] = ln(T[k] / T[k+1]) / (2 dz)`` in mm^-1.

    Voxels where the tail sum is zero (no signal at or below) get 0.

    Parameters
    ----------
    tails : ndarray, shape (z + 1, ...)
        Output of :func:`tail_sums`.
    voxel_size_mm : float
        Axial voxel size ``dz``.

    Returns
    -------
    ndarray, shape (z, ...), float32

    Examples
    --------
    >>> dz, mu = 0.005, 4.0
    >>> line = np.exp(-2 * mu * dz * np.arange(200))
    >>> attenuation_coefficient(tail_sums(line), dz)[[0, 100, 199]].round(3)
    array([4., 4., 4.], dtype=float32)
    """
    upper, lower = tails[:-1], tails[1:]
    ratio = np.divide(upper, lower, out=np.ones_like(upper), where=(lower > 0) & (upper > 0))
    return (np.log(ratio) / (2.0 * voxel_size_mm)).astype(np.float32)


def compensate_attenuation(
    signal: np.ndarray, tails: np.ndarray, out: np.ndarray | None = None, planes: tuple[int, int] | None = None
) -> np.ndarray:
    """Attenuation-compensated signal ``C[k] = I[k] * T[0] / T[k]`` (0 where ``T[k]`` is 0).

    Parameters
    ----------
    signal : ndarray, shape (z, ...)
    tails : ndarray, shape (z + 1, ...)
        :func:`tail_sums` of ``signal``.
    out : ndarray, optional
        float32 array of the shape of ``signal`` to write into (may be ``signal``,
        when that is float32 and non-negative).
    planes : (int, int), optional
        Only the planes ``[start, stop)`` are compensated (``tails`` needs its
        plane 0 and those); the other planes of ``out`` are left as they are.

    Returns
    -------
    ndarray, shape (z, ...), float32
    """
    if out is None:
        out = np.zeros(np.shape(signal), np.float32)
    elif out is not signal:
        out[...] = 0
    # where T[k] = 0, I[k] = 0 too (T[k] includes I[k]): out keeps 0 there. GROUP_PLANES planes at a time:
    # the mask and both products stay small (no 3D temporary), few numpy calls; a group whose sums are all
    # positive (most) is divided without the mask (the same quotients, a faster loop than the masked one)
    lines, sums, result = (np.asarray(a)[..., None] for a in (signal, tails, out))  # views; planes never 0-d
    positive = np.empty((GROUP_PLANES, *sums.shape[1:]), bool)
    start, stop = (0, len(result)) if planes is None else planes
    for a in range(start, stop, GROUP_PLANES):
        b = min(stop, a + GROUP_PLANES)
        mask = np.greater(sums[a:b], 0, out=positive[: b - a])
        np.divide(lines[a:b], sums[a:b], out=result[a:b], where=True if mask.all() else mask, casting="unsafe")
        result[a:b] *= sums[0]
    return out


class LineSums:
    """Least-squares sums of straight lines fitted to ``log(signal)`` against the plane index, one per A-line.

    ``n``, ``sz`` and ``szz`` hold integers (exact in float64 in any order); the
    log sums are accumulated plane after plane in float64.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.n, self.sz, self.szz, self.sl, self.szl, self.sll = (np.zeros(shape) for _ in range(6))

    def add(self, log: np.ndarray, use: np.ndarray, k: np.ndarray) -> None:
        """Add the planes ``k`` (``(m,)``) of ``log`` (``(m, ...)``, float32, 0 where unused) where ``use``."""
        counts = np.stack([np.ones(k.size), k, k.astype(float) ** 2]) @ use.reshape(k.size, -1)
        for total, count in zip((self.n, self.sz, self.szz), counts, strict=True):
            total += count.reshape(total.shape)
        weights = k.astype(np.float32)[:, None]
        for plane, weight in zip(log.reshape(k.size, -1), weights):
            self.sl += plane.reshape(self.sl.shape)
            self.szl += (plane * weight).reshape(self.sl.shape)
            self.sll += (plane * plane).reshape(self.sl.shape)

    def minus(self, other: LineSums) -> LineSums:
        """The sums of the samples in ``self`` but not in ``other`` (a new object)."""
        out = LineSums(self.n.shape)
        for name in ("n", "sz", "szz", "sl", "szl", "sll"):
            setattr(out, name, getattr(self, name) - getattr(other, name))
        return out

    def slope(self) -> np.ndarray:
        """The fitted slope (0 where fewer than 2 distinct planes)."""
        spread = self.n * self.szz - self.sz**2
        return np.divide(self.n * self.szl - self.sz * self.sl, spread, out=np.zeros_like(self.n), where=spread > 0)

    def residual(self) -> np.ndarray:
        """Sum of squared residuals of the fitted line (0 where fewer than 3 samples)."""
        n = np.maximum(self.n, 1)
        centred_ll = self.sll - self.sl**2 / n
        centred_zz = self.szz - self.sz**2 / n
        centred_zl = self.szl - self.sz * self.sl / n
        explained = np.divide(centred_zl**2, centred_zz, out=np.zeros_like(n), where=centred_zz > 0)
        return np.where(self.n > 2, np.maximum(centred_ll - explained, 0.0), 0.0)


def _log_planes(
    tails: np.ndarray, first: np.ndarray, stop: np.ndarray,
    visit: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
) -> None:
    """Call ``visit(log, use, k)`` on groups of planes of ``log(T[k] - T[k + 1])`` inside ``[first, stop)``.

    Groups of :data:`GROUP_PLANES` planes (few numpy calls, so little time holding the GIL, and bounded
    temporaries); ``log`` is float32 and 0 where unused (non-positive signal, outside the range).
    """
    n_z = tails.shape[0] - 1
    low, high = max(0, int(first.min(initial=n_z))), min(n_z, int(stop.max(initial=0)))
    group = (min(GROUP_PLANES, max(high - low, 1)), *first.shape)
    signal, log = np.empty(group, np.float32), np.empty(group, np.float32)
    use, inside = np.empty(group, bool), np.empty(group, bool)
    for a in range(low, high, GROUP_PLANES):
        b = min(high, a + GROUP_PLANES)
        k = np.arange(a, b)
        part = slice(0, b - a)
        np.subtract(tails[a:b], tails[a + 1 : b + 1], out=signal[part])
        np.greater(signal[part], 0, out=use[part])
        use[part] &= np.less_equal(first, k[:, None, None], out=inside[part])
        use[part] &= np.greater(stop, k[:, None, None], out=inside[part])
        log[part] = 0
        np.log(signal[part], out=log[part], where=use[part])
        visit(log[part], use[part], k)


def _range(start_px: np.ndarray, depth_px: int, n_z: int, margin_px: int) -> tuple[np.ndarray, np.ndarray]:
    """First and stop plane of each A-line's fitted range (first ``n_z`` where the start is NaN)."""
    valid = np.isfinite(start_px)
    first = np.where(valid, np.rint(np.nan_to_num(start_px)), n_z) + margin_px
    return first, np.minimum(first - margin_px + depth_px, n_z)


def line_sums(tails: np.ndarray, first: np.ndarray, stop: np.ndarray) -> LineSums:
    """:class:`LineSums` of ``log(T[k] - T[k + 1])`` over each A-line's planes ``[first, stop)``."""
    sums = LineSums(first.shape)
    _log_planes(tails, first, stop, sums.add)
    return sums


def slope_attenuation(
    tails: np.ndarray, start_px: np.ndarray, depth_px: int, voxel_size_mm: float, margin_px: int = 3,
    min_samples: int = 8,
) -> np.ndarray:
    """Attenuation (mm^-1) of each A-line: the decay rate of its signal over ``[start + margin, start + depth)``.

    The signal is recovered from the (laterally averaged) tail sums as
    ``T[k] - T[k + 1]`` (the end-of-range extension cancels), and a straight
    line is fitted to its logarithm: ``mu = -slope / (2 dz)``. Unlike the
    telescoped Vermeer mean ``ln(T[start] / T[stop]) / (2 dz L)``, this does
    not depend on the extension beyond the A-line (on a short A-line the
    extension decides that mean), nor on the reflectivity of the first and
    last voxels of the range; a reflectivity that changes with depth inside
    the range (a layer boundary) biases both (:func:`window_attenuation`
    stops the range there).

    Parameters
    ----------
    tails : ndarray, shape (z + 1, y, x)
        Output of :func:`tail_sums`.
    start_px : ndarray, shape (y, x)
        First voxel of the range (e.g. the surface), NaN for none.
    depth_px : int
    voxel_size_mm : float
    margin_px : int
        Voxels below ``start`` left out (the cut's partial volume, surface errors).
    min_samples : int
        A-lines with fewer positive samples in the range get NaN.

    Returns
    -------
    ndarray, shape (y, x), float32
        NaN where the start is NaN or the range holds too few samples.

    Examples
    --------
    >>> dz = 0.0015
    >>> line = np.exp(-2 * 4.0 * dz * np.arange(60.0))[:, None, None] * np.ones((1, 2, 2))
    >>> float(slope_attenuation(tail_sums(line), np.zeros((2, 2)), 60, dz)[0, 0].round(3))
    4.0
    """
    sums = line_sums(tails, *_range(start_px, depth_px, tails.shape[0] - 1, margin_px))
    valid = np.isfinite(start_px) & (sums.n >= min_samples)
    return np.where(valid, -sums.slope() / (2.0 * voxel_size_mm), np.nan).astype(np.float32)


#: Shortest window (um below the margin) the map's decay rate is fitted on when its range is split.
MIN_WINDOW_UM = 30.0
#: Split statistic (:func:`window_attenuation`) above which an A-line is taken to change at its best split.
SPLIT_STATISTIC = 100.0
#: Lateral standard deviation (A-lines) of the box over which the split is tested (the fit keeps its own box).
SPLIT_SIGMA_PX = 6.0
#: Split statistic the fit's own box must reach as well (a wide box straddling a homogeneous column sees its
#: neighbours' layers; measured 4-17 in the simulator's reference columns, where the wide box read 80-380).
OWN_SPLIT_STATISTIC = 20.0
#: Mean signal over the window below which (in units of the noise floor there) an A-line's decay is not mapped.
MIN_SNR = 1.0
#: Planes between the candidate splits (a split is found to within this; fewer residuals to evaluate).
SPLIT_STEP_PX = 3
#: Splits of the top window tried, one after the other (each stops the window at the best split above it).
MAX_SPLITS = 2


@dataclass(frozen=True)
class WindowedAttenuation:
    """The attenuation map of :func:`window_attenuation` and how each value was measured.

    Attributes
    ----------
    mu : ndarray, shape (y, x), float32
        mm^-1, ``>= 0``; NaN where the A-line has no start, too few samples or is ``faint``.
    window_px : ndarray, shape (y, x), float32
        Planes of the range fitted (from ``start + margin``), NaN where ``mu`` is.
    shortened : ndarray of bool
        The range stopped at a change of the A-line (a different region below).
    clamped : ndarray of bool
        The fitted decay rate was negative (the signal rose with depth) and was set to 0.
    faint : ndarray of bool
        The window's mean signal is below :data:`MIN_SNR` times the noise floor: no decay rate (NaN).
    whole : ndarray, shape (y, x), float32
        The decay rate over the whole range (:func:`slope_attenuation`: not stopped, not clamped, NaN
        only without a start or samples): the attenuation over the depth the slice images.
    """

    mu: np.ndarray
    window_px: np.ndarray
    shortened: np.ndarray
    clamped: np.ndarray
    faint: np.ndarray
    whole: np.ndarray

    def apply(self, function: Callable[[np.ndarray], np.ndarray]) -> WindowedAttenuation:
        """The same fields, each passed through ``function`` (e.g. repeated from bins to A-lines)."""
        return WindowedAttenuation(*(function(getattr(self, f.name)) for f in fields(self)))

    def unsupported(self, keep: np.ndarray) -> WindowedAttenuation:
        """NaN (and not shortened, clamped or faint) where ``keep`` is False (e.g. no surface)."""
        return WindowedAttenuation(np.where(keep, self.mu, np.nan).astype(np.float32),
                                   np.where(keep, self.window_px, np.nan).astype(np.float32),
                                   self.shortened & keep, self.clamped & keep, self.faint & keep,
                                   np.where(keep, self.whole, np.nan).astype(np.float32))


def window_attenuation(
    tails: np.ndarray, start_px: np.ndarray, depth_px: int, voxel_size_mm: float, margin_px: int = 3,
    min_samples: int = 8, min_window_um: float = MIN_WINDOW_UM, split_threshold: float = SPLIT_STATISTIC,
    split_tails: np.ndarray | None = None, split_stride: int = 1, noise: np.ndarray | None = None,
) -> WindowedAttenuation:
    """The attenuation of the tissue just below each A-line's start: :func:`slope_attenuation` up to a change.

    The decay rate of one region is the slope of ``log(signal)`` while the
    A-line stays in it; where a region of another reflectivity or
    attenuation lies below (a brighter grey class, a fibre bundle, the
    floor of a cavity), the signal stops following one exponential and a
    line fitted across both reads neither (a region over a brighter one
    reads as less attenuating, or as negative attenuation). Each A-line's
    range ``[start + margin, start + depth)`` is therefore tested for a
    change point: two lines fitted on either side of every candidate depth
    ``b`` (the window above at least ``min_window_um``, the part below at
    least half of it), the depth with the least summed squared residual
    ``SSE_2`` kept, and the range stopped there when

        F = (SSE_1 - SSE_2) / (SSE_2 / (n - 4)) > split_threshold

    (``SSE_1``: one line over the range, ``n`` samples). The test is
    repeated on the window kept (:data:`MAX_SPLITS` times in all), so the
    value is that of the first region below the start. A homogeneous
    A-line keeps its whole range (the least noisy fit). A decay rate below
    0 is not physical (the signal rose within the window: a region brighter
    below that no split isolated, a cavity opening at the cut over the
    tissue below it): it is set to 0 and reported (``clamped``). Where the
    window's mean signal is below :data:`MIN_SNR` times the noise floor
    (``noise``; a cavity, the deep end of dark tissue) there is nothing to
    fit: NaN (``faint``).

    Parameters
    ----------
    tails, start_px, depth_px, voxel_size_mm, margin_px, min_samples
        As in :func:`slope_attenuation`.
    min_window_um : float
        Shortest window kept above a split.
    split_threshold : float
        Threshold of ``F``. Speckle averaged over a few A-lines and the
        tissue's texture are correlated along depth, so ``F`` of a
        homogeneous A-line runs well above the independent-noise F(3, n - 4)
        quantiles (see ``docs/intensity.md``).
    split_tails : ndarray, optional
        The tail sums the split is tested on, at every ``split_stride``-th
        A-line of each lateral axis (default: ``tails`` there): averaged
        over a wider box (:data:`SPLIT_SIGMA_PX`), so that the tissue's
        texture, which changes from A-line to A-line, splits fewer
        homogeneous A-lines, while a region below, laterally extended, stays.
    split_stride : int
        The split is tested on every ``split_stride``-th A-line of each
        lateral axis and its depth repeated to the A-lines between (the
        wide box's sums change little from one A-line to the next; the
        test is most of the map's cost). Each A-line's own window starts at
        its own start, and is not stopped above ``min_samples``.
    noise : ndarray, shape (z,), optional
        The noise floor of each plane in the signal's units (the floor over
        the focus profile); None: nothing is ``faint``.

    Returns
    -------
    WindowedAttenuation

    Examples
    --------
    >>> dz = 0.0015
    >>> k = np.arange(90.0)
    >>> upper = np.exp(-2 * 3.0 * dz * k)  # 3 /mm over a region 4x brighter from plane 40 down (8 /mm)
    >>> line = np.where(k < 40, upper, 4 * upper[40] * np.exp(-2 * 8.0 * dz * (k - 40)))
    >>> tails = tail_sums(line[:, None, None] * np.ones((1, 2, 2)))
    >>> result = window_attenuation(tails, np.zeros((2, 2)), 90, dz)
    >>> round(float(result.mu[0, 0]), 2), float(result.window_px[0, 0])  # 37 planes, to SPLIT_STEP_PX
    (3.0, 36.0)
    >>> round(float(slope_attenuation(tails, np.zeros((2, 2)), 90, dz)[0, 0]), 2)  # one line over both
    -1.78
    """
    n_z = tails.shape[0] - 1
    first, stop = _range(start_px, depth_px, n_z, margin_px)
    original_stop = stop
    min_above = max(min_samples, int(round(min_window_um / (voxel_size_mm * 1000.0))))

    def coarse(values: np.ndarray) -> np.ndarray:
        return values[..., ::split_stride, ::split_stride]

    def fine(values: np.ndarray) -> np.ndarray:
        spread = np.repeat(np.repeat(values, split_stride, axis=-2), split_stride, axis=-1)
        return spread[: first.shape[0], : first.shape[1]]

    for _ in range(MAX_SPLITS):
        bounds = (coarse(first), coarse(stop), min_above, max(min_samples, min_above // 2))
        statistic, split = split_statistic(coarse(tails) if split_tails is None else split_tails, *bounds)
        changed = statistic > split_threshold
        if split_tails is not None:  # the A-line's own box must see a change too, not only its neighbours
            changed &= split_statistic(coarse(tails), *bounds)[0] > OWN_SPLIT_STATISTIC
        split = fine(split)
        accept = fine(changed) & (split >= first + min_samples) & (split < stop)
        if not accept.any():
            break
        stop = np.where(accept, split, stop)
    sums = line_sums(tails, first, stop)
    valid = np.isfinite(start_px) & (sums.n >= min_samples)
    faint = valid & (window_snr(tails, first, stop, noise) < MIN_SNR) if noise is not None else np.zeros_like(valid)
    valid &= ~faint
    mu = np.where(valid, -sums.slope() / (2.0 * voxel_size_mm), np.nan).astype(np.float32)
    clamped = mu < 0
    mu[clamped] = 0.0
    window = np.where(valid, stop - first, np.nan).astype(np.float32)
    shortened = valid & (stop < original_stop)
    whole = sums if not shortened.any() else line_sums(tails, first, original_stop)
    whole_mu = np.where(np.isfinite(start_px) & (whole.n >= min_samples), -whole.slope() / (2.0 * voxel_size_mm),
                        np.nan).astype(np.float32)
    return WindowedAttenuation(mu, window, shortened, clamped, faint, whole_mu)


def window_snr(tails: np.ndarray, first: np.ndarray, stop: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Mean signal over each A-line's planes ``[first, stop)`` over the mean noise floor there.

    The signal summed over the window is ``T[first] - T[stop]`` (the end-of-range extension cancels);
    ``noise`` holds the noise floor of each plane in the signal's units (e.g. divided by the focus).
    """
    n_z = tails.shape[0] - 1
    low, high = np.clip(first, 0, n_z).astype(np.intp), np.clip(stop, 0, n_z).astype(np.intp)
    high = np.maximum(high, low)
    signal = np.take_along_axis(tails, low[None], 0)[0] - np.take_along_axis(tails, high[None], 0)[0]
    floor = np.concatenate([[0.0], np.cumsum(noise, dtype=float)])
    total = floor[high] - floor[low]
    return np.divide(signal, total, out=np.full(signal.shape, np.inf), where=total > 0)


def split_statistic(
    tails: np.ndarray, first: np.ndarray, stop: np.ndarray, min_above: int, min_below: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each A-line's best split of ``[first, stop)`` in two lines and its statistic ``F`` (:func:`window_attenuation`).

    The log signal of the whole range is held at once (the split is tested on a coarse
    lateral grid: small) and cumulated along depth; the sums above each candidate split
    (every :data:`SPLIT_STEP_PX`-th plane) are the cumulated ones there, those below the
    total minus them. Plane indices are counted from the range's top and each line's log
    from its mean (float64 sums of small numbers). Returns ``(F, split plane)``; F is 0
    where no split leaves ``min_above`` samples above and ``min_below`` below.
    """
    n_z = tails.shape[0] - 1
    low, high = max(0, int(first.min(initial=n_z))), min(n_z, int(stop.max(initial=0)))
    if high - low < 2:
        return np.zeros(first.shape), stop.copy()
    k = np.arange(low, high)[:, None, None]
    signal = tails[low:high] - tails[low + 1 : high + 1]
    use = (signal > 0) & (first <= k) & (stop > k)
    log = np.log(signal, out=np.zeros(signal.shape), where=use)
    count = use.sum(axis=0)
    log -= np.divide(log.sum(axis=0), count, out=np.zeros(first.shape), where=count > 0)
    log[~use] = 0.0
    depth = (k - low).astype(float)
    cumulated = LineSums(())
    for name, values in zip(("n", "sz", "szz", "sl", "szl", "sll"),
                            (use, use * depth, use * depth**2, log, log * depth, log**2)):
        setattr(cumulated, name, np.cumsum(values, axis=0, dtype=float))
    rows = np.flatnonzero((k.ravel() + 1) % SPLIT_STEP_PX == 0)
    total = LineSums(())
    running = LineSums(())
    for name in ("n", "sz", "szz", "sl", "szl", "sll"):
        setattr(total, name, getattr(cumulated, name)[-1])
        setattr(running, name, getattr(cumulated, name)[rows])
    below = total.minus(running)
    residual = running.residual() + below.residual()
    residual[(running.n < min_above) | (below.n < min_below)] = np.inf
    index = np.argmin(residual, axis=0)
    best = np.take_along_axis(residual, index[None], axis=0)[0]
    where = np.where(np.isfinite(best), k.ravel()[rows][index] + 1, stop)
    whole = total.residual()
    statistic = np.divide((whole - best) * np.maximum(total.n - 4, 1), best,
                          out=np.zeros_like(whole), where=np.isfinite(best) & (best > 0))
    return statistic, where
