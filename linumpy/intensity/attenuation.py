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

The attenuation *map* (one value per A-line,
:func:`linumpy.intensity.attenuation_map.window_attenuation`) does not use
the extension at all: it is the decay rate of the laterally
averaged signal (:func:`slope_attenuation`), fitted from the A-line's
surface down to its first change (a region of another reflectivity below).
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from linumpy.intensity import attenuation_kernels

#: Largest window-to-window decay ratio accepted for the end-of-range extension.
MAX_TAIL_RATIO = 0.95
#: Planes handled by one numpy call in the plane-by-plane loops (bounded temporaries, few calls).
GROUP_PLANES = 16
#: Largest noise bias correction ``v / (2 S^2)`` added to a log sample of the decay fits (:func:`fit_sums`):
#: reached at a signal twice the noise's standard deviation, below which the second-order term no longer holds.
MAX_NOISE_BIAS = 0.125


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
    return _log_level(signal[: _guide_planes(signal.shape[0])].mean(axis=0, dtype=np.float32))


def _guide_planes(n_z: int) -> int:
    """The upper planes of a block of ``n_z`` planes whose mean is :func:`level_guide`'s level."""
    return max(1, n_z // 2)


def _log_level(level: np.ndarray) -> np.ndarray:
    """:func:`level_guide` of the A-lines' mean ``level``: its log, raised to 1e-3 of its mean first."""
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


def binned_tail_sums(signal: np.ndarray, grid: BinGrid) -> np.ndarray:
    """Inclusive tail sums of the ``(z, y, x)`` signal binned on ``grid`` (no extension), shape ``(z + 1, ...)``."""
    binned = grid.binned(signal)
    sums = np.zeros((signal.shape[0] + 1,) + binned.shape[1:], np.float32)
    sums[:-1] = binned
    return _cumulate(sums, reverse=True)


#: :meth:`BlockPass.add`'s correction arguments when the signal is given made (no profile, no padding).
_NO_PROFILE, _NO_PADDING = np.zeros(0), np.zeros((0, 0), bool)


class BlockPass:
    """What the edge-aware path takes of a block in one pass, group of planes by group, while each is in the cache.

    Fed the noise-floor-subtracted signal (not clipped) group after group (:meth:`add`, which clips each group
    in place): :func:`binned_tail_sums` of the signal as given and clipped at 0 (:meth:`tail_sums`), the A-lines
    with a sample other than 0 before the clip (``imaged``) and :func:`level_guide` of the clipped signal
    (:meth:`guide`). The same bits as those functions on the whole block: each bin and each A-line's level is
    summed plane after plane in the same order.

    Parameters
    ----------
    shape : (int, int, int)
        The block's ``(z, y, x)``.
    grid : BinGrid
        Its bins.
    """

    def __init__(self, shape: tuple[int, int, int], grid: BinGrid) -> None:
        bins = (shape[0] + 1, grid.counts[0].size, grid.counts[1].size)
        self.grid = grid
        self.unclipped, self.clipped = np.zeros(bins, np.float32), np.zeros(bins, np.float32)
        self.imaged = np.zeros(shape[1:], bool)
        self.level = np.empty(shape[1:], np.float32)
        self.level_planes = _guide_planes(shape[0])

    def add(self, first: int, part: np.ndarray) -> None:
        """Take the planes ``[first, first + len(part))`` of the signal; clip ``part`` at 0 in place.

        One compiled pass over the planes (:func:`linumpy.intensity.attenuation_kernels.block_pass_add`).
        """
        self._add(first, part, (False, np.float32(0.0), _NO_PROFILE, _NO_PADDING))

    def add_corrected(self, first: int, part: np.ndarray, noise_floor: float, profile: np.ndarray | None,
                      padding: np.ndarray) -> None:
        """:meth:`add` of ``(part - noise_floor) / profile[first:]``, 0 on the ``padding`` A-lines, made in ``part``.

        The same pass makes the signal (float32 ``part`` less the float32 ``noise_floor``, divided by
        ``profile`` in float64 and rounded to float32 as numpy's in-place division by a float64 profile;
        None: not divided; then +0 where ``padding``) and takes it, so that the same bits are taken as
        :meth:`add` of that signal made by numpy (:func:`linumpy.intensity.attenuation_kernels.zero_lines`
        finds the padding).
        """
        profile = _NO_PROFILE if profile is None else np.ascontiguousarray(profile, np.float64)
        self._add(first, part, (True, np.float32(noise_floor), profile, padding))

    def _add(self, first: int, part: np.ndarray,
             correction: tuple[bool, np.float32, np.ndarray, np.ndarray]) -> None:
        attenuation_kernels.block_pass_add(part, first, self.grid.starts, self.grid.counts, self.unclipped,
                                           self.clipped, self.imaged, self.level, self.level_planes, correction)

    def tail_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """The inclusive tail sums ``(unclipped, clipped)``, cumulated in place (once every plane was added)."""
        return _cumulate(self.unclipped, reverse=True), _cumulate(self.clipped, reverse=True)

    def guide(self) -> np.ndarray:
        """:func:`level_guide` of the clipped signal (once every plane was added)."""
        return _log_level(np.divide(self.level, np.float32(self.level_planes)))


#: Planes of each window (above and below a depth) whose mean signals :func:`reflectivity_steps` compares.
STEP_WINDOW_PX = 6
#: Largest ``|log|`` of one reflectivity step (a step is clipped to it).
STEP_MAX_LOG = 3.0
#: The noise floor (over the focus) times this is added to both windows' means before their log ratio: a
#: window near the floor reads no step.
STEP_NOISE_FRACTION = 0.3
#: Planes below an A-line's (bin's) mean detected surface before a step may be read (the rise at the cut is not one).
STEP_SURFACE_MARGIN_PX = 2
#: Least ``|log|`` reflectivity an A-line's cumulated steps reach somewhere for its steps to be kept: a region
#: several times darker or brighter than the tissue at the cut (dark tissue, 0.12: 2.1), not the change between
#: tissues whose backscatter follows their attenuation as Vermeer assumes (grey to white matter: 1.05).
STEP_MIN_TOTAL_LOG = 1.2


def reflectivity_steps(
    sums: np.ndarray, start: np.ndarray, noise: np.ndarray, width: int, min_log: float,
    window: int = STEP_WINDOW_PX,
) -> np.ndarray:
    """Log reflectivity of each binned A-line relative to its cut: the sum of the steps above each plane.

    Vermeer's estimate assumes the backscatter proportional to the
    attenuation; a region darker or brighter than the tissue above it at the
    same attenuation (dark tissue) breaks it: the tissue above a dark region
    is over-compensated towards it, and the dark region reads as bright as
    its attenuation. A change of the laterally averaged signal by more than
    ``min_log`` (log) across a depth, from the ``window`` planes above to the
    ``window`` below, is much faster than any attenuation over that length
    (``min_log`` 0.5 over 6 planes of 1.5 um is 28 mm^-1): it is read as a
    step of reflectivity, at the depth where ``|change|`` peaks (the largest
    within ``window`` planes either way), clipped to :data:`STEP_MAX_LOG`
    (it includes the decay between the windows' centres, ``2 mu dz window``:
    0.09 for 5 mm^-1 at 1.5 um, left in). An A-line keeps its steps only
    where they add up to :data:`STEP_MIN_TOTAL_LOG` somewhere (a region
    several times darker or brighter than the tissue at its cut).
    Dividing the signal by the cumulated steps before its tail sums are
    taken (:func:`divide_steps`) leaves the attenuation alone to Vermeer's
    estimate, and the steps stay in the compensated signal.

    Parameters
    ----------
    sums : ndarray, shape (z + 1, y, x)
        :func:`binned_tail_sums` of the clipped signal (no extension).
    start : ndarray, shape (y, x)
        Each bin's first tissue voxel (mean detected surface), NaN where none (no step read).
    noise : ndarray, shape (z,)
        The noise floor over the focus profile at each plane (see :data:`STEP_NOISE_FRACTION`).
    width : int
        Lateral box (bins, odd) of the windows' means.
    min_log : float
        Least ``|log|`` change read as a step.
    window : int
        Planes of each window.

    Returns
    -------
    ndarray, shape (z, y, x), float32
        Cumulated log steps (0 down to the first step).

    Examples
    --------
    >>> z = np.arange(60)[:, None, None]
    >>> line = np.exp(-0.02 * z) * np.where(z < 30, 1.0, 0.12) * np.ones((1, 3, 3))  # dark tissue below plane 30
    >>> sums = np.concatenate([np.cumsum(line[::-1], 0)[::-1], np.zeros((1, 3, 3))]).astype(np.float32)
    >>> steps = reflectivity_steps(sums, np.zeros((3, 3)), np.zeros(60), 3, 0.5)
    >>> steps[[0, 29, 30, 59], 1, 1].astype(float).round(2).tolist()  # ln 0.12 = -2.12, and the decay across the windows
    [0.0, 0.0, -2.24, -2.24]
    """
    n_z = sums.shape[0] - 1
    steps = np.zeros((n_z,) + sums.shape[1:], np.float32)
    n_tested = n_z - 2 * window + 1  # the planes with a whole window above and below: window .. n_z - window
    first = np.where(np.isfinite(start), start, np.inf) + STEP_SURFACE_MARGIN_PX + window
    highest = float(np.min(first, initial=np.inf))
    if not np.isfinite(highest):
        return steps
    # the tested planes above every bin's first (``low``: the first tested plane of any, as an index of the
    # tested planes) read no step: their windows are not summed (the box mean is plane by plane)
    low = max(0, int(np.ceil(highest)) - window)
    if low >= n_tested:
        return steps
    changes = _step_changes(sums[low:], first, noise, width, min_log, window, low)
    kept = changes.kept_bins()
    if kept.size == 0:
        return steps
    own = np.isin(changes.bins, kept)
    cumulated = np.zeros((n_tested, kept.size), np.float32)
    cumulated[changes.planes[own] + low, np.searchsorted(kept, changes.bins[own])] = changes.values[own]
    _cumulate(cumulated)
    rows, cols = np.divmod(kept, sums.shape[-1])
    steps[window : window + n_tested, rows, cols] = cumulated
    steps[window + n_tested :, rows, cols] = cumulated[-1]
    return steps


@dataclass(frozen=True)
class _StepChanges:
    """The signed log steps of :func:`reflectivity_steps` at their planes, sorted by bin then plane."""

    bins: np.ndarray  # flat index of each step's bin
    planes: np.ndarray  # its plane, as an index of the tested planes from the first summed
    values: np.ndarray  # its signed size (float32)

    def kept_bins(self) -> np.ndarray:
        """The bins whose cumulated steps reach :data:`STEP_MIN_TOTAL_LOG` somewhere (sorted).

        Each bin's steps are added in its own column in plane order, as a cumulative sum over all
        planes would (the planes without a step add 0): the same float32 sums.
        """
        if self.bins.size == 0:
            return self.bins
        bins, begin, counts = np.unique(self.bins, return_index=True, return_counts=True)
        column = np.repeat(np.arange(bins.size), counts)
        table = np.zeros((int(counts.max()), bins.size), np.float32)
        table[np.arange(self.bins.size) - begin[column], column] = self.values
        _cumulate(table)
        return bins[np.maximum(table.max(axis=0), -table.min(axis=0)) >= STEP_MIN_TOTAL_LOG]


def _step_changes(
    sums: np.ndarray, first: np.ndarray, noise: np.ndarray, width: int, min_log: float, window: int, low: int,
) -> _StepChanges:
    """The steps of :func:`reflectivity_steps` (before they are cumulated) on the tested planes from ``low`` on.

    ``sums`` are the binned sums from plane ``low`` on. The window sums' ratio is taken on every
    plane, and a plane's change is measured only where the ratio is beyond ``e^±min_log`` (with a
    margin of a few float32 ulp, then the exact test on the log): a change no larger can be neither
    a step nor the largest change near one. Those few changes are then tested as a list sorted by
    bin and plane: the valid (both windows positive, below the bin's ``first`` plane) and the largest
    within ``window`` planes either way (the list's neighbours, up to ``window`` places apart).
    """
    box = box_mean(sums, width)
    n_planes = box.shape[0] - 2 * window
    regular = STEP_NOISE_FRACTION * window * np.asarray(noise, np.float32)[low + window : low + window + n_planes]
    bound = np.exp(np.float32(min_log))
    found = []
    for a in range(0, n_planes, GROUP_PLANES):  # a few planes at a time: the temporaries stay in the cache
        b = min(n_planes, a + GROUP_PLANES)
        plane_regular = regular[a:b, None, None]
        upper = box[a:b] - box[a + window : b + window] + plane_regular  # the window sums (times their means)
        lower = box[a + window : b + window] - box[a + 2 * window : b + 2 * window] + plane_regular
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # non-positive windows: dropped below
            ratio = np.divide(lower, upper)
            far = (ratio > bound * np.float32(1 - 1e-6)) | (ratio * bound < np.float32(1 + 1e-6))
        index = np.flatnonzero(far)
        planes, bins = np.divmod(index, ratio[0].size)
        planes += a
        valid = ((upper.reshape(-1)[index] > 0) & (lower.reshape(-1)[index] > 0)
                 & (planes + low + window >= first.reshape(-1)[bins]))
        found.append((ratio.reshape(-1)[index[valid]], planes[valid], bins[valid]))
    ratio, planes, bins = (np.concatenate(values) for values in zip(*found, strict=True))
    order = np.argsort(bins, kind="stable")  # by bin, then plane
    ratio, planes, bins = ratio[order], planes[order], bins[order]
    size = np.minimum(np.abs(np.log(ratio)), np.float32(STEP_MAX_LOG))
    changed = size > min_log
    ratio, planes, bins, size = ratio[changed], planes[changed], bins[changed], size[changed]
    largest = size.copy()
    for offset in range(1, window + 1):  # a change within ``window`` planes is at most ``window`` places away
        near = (bins[offset:] == bins[:-offset]) & (planes[offset:] - planes[:-offset] <= window)
        if not near.any():
            break
        np.maximum(largest[:-offset], np.where(near, size[offset:], np.float32(0)), out=largest[:-offset])
        np.maximum(largest[offset:], np.where(near, size[:-offset], np.float32(0)), out=largest[offset:])
    peak = size >= largest
    return _StepChanges(bins[peak], planes[peak], np.where(ratio > 1, size, -size)[peak])


def divide_steps(sums: np.ndarray, log_steps: np.ndarray) -> np.ndarray:
    """Tail sums (:func:`binned_tail_sums`) of the binned signal divided by ``exp(log_steps)``.

    Only the A-lines (bins) with a step are summed again; ``sums`` itself is returned when none has one.
    """
    n_z = log_steps.shape[0]
    steps = log_steps.reshape(n_z, -1)
    stepped = np.flatnonzero(np.any(steps != 0, axis=0))
    if stepped.size == 0:
        return sums
    out = sums.copy()
    columns = out.reshape(n_z + 1, -1)
    lines = np.take(columns, stepped, axis=1)
    lines[:-1] = (lines[:-1] - lines[1:]) * np.exp(-np.take(steps, stepped, axis=1))
    lines[-1] = 0
    _cumulate(lines[:-1], reverse=True)
    columns[:, stepped] = lines
    return out


def _cumulate(values: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Cumulative sums along the first axis, in place (from the last plane up with ``reverse``); returns ``values``.

    Plane after plane: ``np.cumsum``'s sums, several times faster along the first axis.
    """
    planes = range(len(values) - 2, -1, -1) if reverse else range(1, len(values))
    previous = 1 if reverse else -1
    for k in planes:
        values[k] += values[k + previous]
    return values


def binned_box_tails(sums: np.ndarray, lateral_sigma_px: float, tail_window_px: int | None = None) -> np.ndarray:
    """:func:`tail_sums` with its lateral box, on binned sums (:func:`binned_tail_sums`): a new array.

    The box is ``box_width(lateral_sigma_px) // EDGE_BIN`` bins (made odd;
    3 bins = 6 A-lines for the default sigma 2, where the full-resolution box
    is 7).
    """
    tails = box_mean(sums, box_width(lateral_sigma_px) // EDGE_BIN | 1)
    _extend(tails, _tail_window(sums.shape[0] - 1, tail_window_px))
    return tails


def edge_aware_tails(
    signal: np.ndarray, sums: np.ndarray, grid: BinGrid, sigma_px: float, tail_window_px: int | None = None,
    epsilon: float = EDGE_EPSILON, inner: tuple[slice, slice] = (slice(None), slice(None)),
    planes: tuple[int, int] | None = None, guide: np.ndarray | None = None,
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
    guide : ndarray, shape (y, x), optional
        :func:`level_guide` of ``signal``, when the caller has it already.

    Returns
    -------
    ndarray, shape (z + 1, y', x'), float32
        The sums of the ``inner`` A-lines (a view).
    """
    fitted = _guided_filter(signal, sums, grid, sigma_px, tail_window_px, epsilon, inner, guide)
    n_planes = sums.shape[0]
    out = np.empty((n_planes, *fitted.guide.shape), np.float32)
    if planes is None:
        runs = [(0, n_planes)]
    else:  # plane 0 (T[0], every compensated plane's numerator), then the planes asked for
        low = max(1, planes[0])
        high = max(low, min(n_planes, planes[1]))
        runs = [(0, 1), (low, high)]
        out[1:low] = np.nan
        out[high:] = np.nan
    for low, high in runs:
        fitted.evaluate(np.arange(low, high), out[low:high])
    return out[(slice(None), *fitted.within)]


def compensate_edge_aware(
    signal: np.ndarray, sums: np.ndarray, grid: BinGrid, sigma_px: float, tail_window_px: int | None = None,
    epsilon: float = EDGE_EPSILON, inner: tuple[slice, slice] = (slice(None), slice(None)),
    planes: tuple[int, int] | None = None, guide: np.ndarray | None = None, floor: np.ndarray | None = None,
    floored: np.ndarray | None = None, noise_end: float = 0.0, extension: np.ndarray | None = None,
) -> np.ndarray:
    """``compensate_attenuation(s, edge_aware_tails(signal, ...), out=s, planes=planes, floor=floor)``, ``s`` the
    ``inner`` signal.

    The same bits, without the sums' array: each sum is evaluated and divided into its sample in one compiled
    pass (:func:`linumpy.intensity.attenuation_kernels.compensate_guided`). Arguments as in
    :func:`edge_aware_tails`; ``signal`` (non-negative, float32) is compensated in place. ``floor``: see
    :func:`compensate_attenuation`; ``floored`` (int64, shape (2,)): the voxels whose sums it raised are added
    to its element 0, the A-lines whose range ended in the noise to element 1. ``noise_end`` > 0 (with
    ``floor``): each A-line's range ends where its signal falls to ``noise_end`` times the clipped noise's
    mean (:func:`noise_ends`; its sums there: :func:`ended_sums`). ``extension`` (shape of the ``inner``
    A-lines): their end-of-range extension instead of the one measured on ``sums``
    (:func:`linumpy.intensity.tail_extension.unclipped_extension`). Returns its ``inner`` A-lines (a view).
    """
    fitted = _guided_filter(signal, sums, grid, sigma_px, tail_window_px, epsilon, inner, guide)
    within = fitted.within
    if extension is not None:
        replaced = fitted.extension.copy()
        replaced[within] = extension
        fitted = dataclasses.replace(fitted, extension=replaced)
    corner = tuple(part.indices(n)[0] for part, n in zip(inner, signal.shape[1:]))
    planes = (0, signal.shape[0]) if planes is None else planes
    floored = np.zeros(2, np.int64) if floored is None else floored
    ends = (np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32))
    if noise_end > 0 and floor is not None:
        bins = grid.covering(inner)[1]
        boxed = box_mean(sums, box_width(sigma_px) // EDGE_BIN | 1)[(slice(None), *bins)]
        bin_ends = noise_ends(boxed, floor, noise_end)
        end = bin_ends[fitted.bins[0][within[0], None], fitted.bins[1][None, within[1]]]
        ends = ended_sums(fitted, end, within)
        floored[1] += int(np.count_nonzero(end < signal.shape[0]))
    attenuation_kernels.compensate_guided(
        signal, corner, (int(planes[0]), int(planes[1])), fitted.planes, fitted.coefficients, fitted.steps,
        np.ascontiguousarray(fitted.guide[within]), (fitted.bins[0][within[0]], fitted.bins[1][within[1]]),
        np.ascontiguousarray(fitted.extension[within]),
        np.zeros(0, np.float32) if floor is None else np.asarray(floor, np.float32), floored[:1], ends)
    return signal[(slice(None), *inner)]


#: Planes of each of the windows whose decay extends a range ended in the noise (:func:`ended_sums`).
NOISE_END_WINDOW = 8
#: Planes over which the signal is averaged before it is compared with the noise (:func:`noise_ends`).
NOISE_END_SMOOTH = 5


def noise_ends(sums: np.ndarray, floor: np.ndarray, factor: float) -> np.ndarray:
    """The plane below which each A-line's signal stays under ``factor`` times the clipped noise's mean.

    ``sums``: tail sums ``(z + 1, ...)`` (laterally averaged); the signal of plane ``k`` is
    ``T[k] - T[k + 1]``, summed over :data:`NOISE_END_SMOOTH` planes around ``k`` (fewer at the A-line's
    ends), the noise's mean ``floor[k] - floor[k + 1]`` (:func:`noise_sum_floor`) over the same planes. Below that plane what the A-line holds is the
    noise's positive part, whatever lies there (a cavity, tissue past the light's reach): the light
    that crosses it is not measured. ``z`` where the signal never falls so low; at least
    ``3 * NOISE_END_WINDOW`` (the windows of :func:`ended_sums` above it).

    Examples
    --------
    >>> line = np.r_[np.exp(-0.05 * np.arange(40)) * 100, np.zeros(20)].astype(np.float32)
    >>> sums = np.r_[np.cumsum(line[::-1])[::-1], 0]
    >>> int(noise_ends(sums, noise_sum_floor(np.full(60, 2.5)), 4.0))
    41
    """
    n_z = sums.shape[0] - 1
    # a mean over planes [k - h, k + h] of T[j] - T[j + 1] is (T[k - h] - T[k + h + 1]) / NOISE_END_SMOOTH: one
    # subtraction (the range cut at the A-line's ends), the noise's alike
    half = NOISE_END_SMOOTH // 2
    low, high = np.maximum(np.arange(n_z) - half, 0), np.minimum(np.arange(n_z) + half + 1, n_z)
    noise = (factor * (floor[low] - floor[high])).astype(np.float32).reshape(-1, *([1] * (sums.ndim - 1)))
    above = np.empty(sums[:-1].shape, bool)
    inner = slice(half, max(half, n_z - half))
    np.greater(np.subtract(sums[: inner.stop - half], sums[inner.start + half + 1 :]), noise[inner], out=above[inner])
    for k in (*range(min(half, n_z)), *range(max(half, n_z - half), n_z)):  # the planes at the A-line's ends
        above[k] = sums[low[k]] - sums[high[k]] > noise[k]
    end = np.where(above.any(axis=0), n_z - np.argmax(above[::-1], axis=0), 0)
    return np.clip(end, min(n_z, 3 * NOISE_END_WINDOW), n_z)


def ended_sums(fitted: _GuidedFilter, end: np.ndarray, within: tuple[slice, slice]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(end, offset, beyond)`` of the ``within`` A-lines of the guided sums ``fitted`` ended at ``end``.

    Above ``end`` the sums become ``T[k] - T[end] + X`` (``offset = X - T[end]``), from it on ``X``
    (``beyond``): ``X`` is what lies below ``end`` if the decay measured over the two windows of
    :data:`NOISE_END_WINDOW` planes ending a window above it continued (``W1 q^2 / (1 - q)``, ``q = W1 / W0``
    clipped to ``[0, MAX_TAIL_RATIO]``; the window right above the end holds the fall into the noise),
    instead of the noise's sum there. The gain then stops growing at the end. A-lines whose
    ``end`` is the A-line's length are unchanged (offset 0).
    """
    n_planes = fitted.planes[-1] + 1
    step = NOISE_END_WINDOW
    lines = np.nonzero(end < n_planes - 1)  # the ended A-lines only: the others keep their sums
    values = [_guided_at(fitted, end[lines] - n * step, within, lines) for n in range(4)]
    last, before = values[2] - values[1], values[3] - values[2]
    ratio = np.clip(np.divide(last, before, out=np.zeros_like(last), where=before > 0), 0.0, MAX_TAIL_RATIO)
    offset, beyond = np.zeros(end.shape, np.float32), np.zeros(end.shape, np.float32)
    beyond[lines] = last * ratio * ratio / (1.0 - ratio)
    offset[lines] = beyond[lines] - values[0]
    ended = np.full(end.shape, n_planes, np.int64)
    ended[lines] = end[lines]
    return ended, offset, beyond


def _guided_at(fitted: _GuidedFilter, planes: np.ndarray, within: tuple[slice, slice],
               lines: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The guided sums (clipped at 0, extended) of the ``within`` A-lines ``lines`` (indices among them), each
    at its own plane ``planes``."""
    planes = np.clip(planes, 0, fitted.planes[-1])
    below = np.minimum(np.searchsorted(fitted.planes, planes, side="right") - 1, fitted.planes.size - 2)
    weight = ((planes - fitted.planes[below]) / (fitted.planes[below + 1] - fitted.planes[below])).astype(np.float32)
    y, x = lines[0] + within[0].start, lines[1] + within[1].start
    rows, cols = fitted.bins[0][y], fitted.bins[1][x]
    a, b = (fitted.coefficients[n, below, rows, cols] + weight * fitted.steps[n, below, rows, cols] for n in (0, 1))
    return np.maximum(a * fitted.guide[y, x] + b, 0) + fitted.extension[y, x]


@dataclass(frozen=True)
class _GuidedFilter:
    """The guided filter of :func:`edge_aware_tails`, fitted on the bins covering the ``inner`` A-lines.

    ``coefficients`` ``(a, b)``, shape ``(2, planes, y', x')``, fitted on the planes of sums ``planes``
    (``steps``: their differences between consecutive fitted planes); ``guide``: the guide of the A-lines
    they cover, ``bins`` each one's bin row and column, ``extension`` each one's end-of-range extension;
    ``within``: the ``inner`` A-lines among them.
    """

    planes: np.ndarray
    coefficients: np.ndarray
    steps: np.ndarray
    guide: np.ndarray
    bins: tuple[np.ndarray, np.ndarray]
    extension: np.ndarray
    within: tuple[slice, slice]

    def evaluate(self, planes: np.ndarray, out: np.ndarray, extended: bool = True) -> np.ndarray:
        """``out`` = the ``planes`` of sums, clipped at 0 and (``extended``) extended; returns ``out``."""
        extension = self.extension if extended else np.zeros(self.guide.shape, np.float32)
        attenuation_kernels.guided_planes(planes, self.planes, self.coefficients, self.steps, self.guide, self.bins,
                                          extension, out)
        return out


def _guided_filter(
    signal: np.ndarray, sums: np.ndarray, grid: BinGrid, sigma_px: float, tail_window_px: int | None,
    epsilon: float, inner: tuple[slice, slice], guide: np.ndarray | None,
) -> _GuidedFilter:
    """The guided filter of :func:`edge_aware_tails`, fitted: its coefficients and the end-of-range extension."""
    width = box_width(sigma_px / EDGE_BIN)

    def box(values: np.ndarray) -> np.ndarray:
        return box_mean(values, width)

    guide = level_guide(signal) if guide is None else guide
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
    line_bins = tuple(np.repeat(np.arange(count.size), count) for count in covering.counts)
    unextended = _GuidedFilter(fitted, coefficients, coefficients[:, 1:] - coefficients[:, :-1], guide[lines],
                               line_bins, np.zeros(0, np.float32), within)
    # the end-of-range extension from its two planes (clipped at 0, not extended)
    window = _tail_window(signal.shape[0], tail_window_px)
    ends = np.array([n_planes - 1 - window, n_planes - 1 - 2 * window])
    last, before = unextended.evaluate(ends, np.empty((2, *unextended.guide.shape), np.float32), extended=False)
    return dataclasses.replace(unextended, extension=_extension(last, before))


def _bin_axis(values: np.ndarray, axis: int, starts: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Sums of ``values`` over the bins starting at ``starts`` along ``axis`` (``np.add.reduceat``, faster).

    The bins between the first and the last are :data:`EDGE_BIN` wide and
    summed by strided adds (float32, C-ordered ``out``, a new array unless given); the first and the last
    may be narrower (a whole first bin is summed with the middle ones: the same adds, no slow reduction).
    """
    n = values.shape[axis]
    lead = int(starts[1]) if starts.size > 1 else n  # the first bin's width
    head = int(lead != EDGE_BIN)  # bins summed apart at the start: a narrower first bin
    first = lead if head else 0
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
    if head:
        np.sum(values[along(slice(0, first))], axis=axis, keepdims=True, out=out[along(slice(0, 1))])
    middle = out[along(slice(head, head + full))]
    np.add(values[along(slice(first, stop, EDGE_BIN))], values[along(slice(first + 1, stop, EDGE_BIN))], out=middle)
    for offset in range(2, EDGE_BIN):
        middle += values[along(slice(first + offset, stop, EDGE_BIN))]
    if stop < n:
        np.sum(values[along(slice(stop, n))], axis=axis, keepdims=True, out=out[along(slice(-1, None))])
    return out


def box_mean(values: np.ndarray, width: int) -> np.ndarray:
    """Mean over a box of ``width`` x ``width`` (odd) along the last two axes, edges repeated: a new float32 array.

    ``scipy.ndimage.uniform_filter(values, (1, ..., width, width), mode="nearest")`` to float32
    rounding (each box's sum of float32 values, then divided by ``width ** 2``, where scipy keeps a
    float64 running mean: a few ulp apart), and faster on the small planes of binned blocks: a compiled
    loop (:func:`linumpy.intensity.attenuation_kernels.box_sums`).

    Examples
    --------
    >>> box_mean(np.array([[1.0, 2.0, 6.0]]), 3).astype(float).round(3).tolist()  # one row: y repeats it
    [[1.333, 3.0, 4.667]]
    """
    if width // 2 == 0:
        return np.array(values, np.float32)
    *lead, n_y, n_x = np.shape(values)
    planes = np.ascontiguousarray(np.reshape(values, (-1, n_y, n_x)), np.float32)
    out = np.empty(planes.shape, np.float32)
    attenuation_kernels.box_sums(planes, width, out)
    return out.reshape(*lead, n_y, n_x)


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
    signal: np.ndarray, tails: np.ndarray, out: np.ndarray | None = None, planes: tuple[int, int] | None = None,
    floor: np.ndarray | None = None,
) -> np.ndarray:
    """Attenuation-compensated signal ``C[k] = I[k] * T[0] / T[k]`` (0 where ``T[k]`` is 0).

    With ``floor``, every sum is first raised to its plane's ``floor[k]`` (:func:`noise_sum_floor`).

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
    floor : ndarray, shape (z + 1,), optional
        Each plane's least sum (:func:`noise_sum_floor`).

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
    start, stop = (0, len(result)) if planes is None else planes
    least = None if floor is None else np.asarray(floor, np.float32).reshape(-1, *([1] * (sums.ndim - 1)))
    first = sums[0] if least is None else np.maximum(sums[0], least[0])
    for a in range(start, stop, GROUP_PLANES):
        b = min(stop, a + GROUP_PLANES)
        group = sums[a:b] if least is None else np.maximum(sums[a:b], least[a:b])
        _compensate_planes(lines[a:b], group, first, result[a:b])
    return out


def noise_sum_floor(noise_sd: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """The least tail sums the data support: ``floor[k] = factor * sum_{j >= k} sd[j] / sqrt(2 pi)``.

    ``sd[j]``: the standard deviation of the noise of plane ``j``'s signal (after the focus correction).
    The compensation's sums are those of the signal clipped at 0, to which zero-mean noise adds
    ``sd / sqrt(2 pi)`` per sample (its positive part's mean, Gaussian): a sum below that of the
    noise alone, which a guided average extrapolated to A-lines its box does not hold can give
    (near 0 deep in a bright A-line over dark tissue), measures nothing, and its gain ``T[0] / T[k]``
    amplifies the noise without bound. Shape ``(z + 1,)``, float32; ``floor[z]`` is 0 (no extension:
    the noise beyond the range is not in the data).

    Examples
    --------
    >>> noise_sum_floor(np.full(3, np.sqrt(2 * np.pi))).tolist()
    [3.0, 2.0, 1.0, 0.0]
    """
    per_plane = np.asarray(noise_sd, np.float64) * (factor / np.sqrt(2.0 * np.pi))
    floor = np.zeros(per_plane.size + 1)
    floor[:-1] = np.cumsum(per_plane[::-1])[::-1]
    return floor.astype(np.float32)


def _compensate_planes(lines: np.ndarray, sums: np.ndarray, first_sums: np.ndarray, result: np.ndarray) -> None:
    """``result = lines / sums * first_sums`` where ``sums`` > 0 (``result`` kept elsewhere).

    A group of planes of :func:`compensate_attenuation`: one whose sums are all positive (most) is divided
    without the mask (the same quotients, a faster loop than the masked one).
    """
    mask = np.greater(sums, 0)
    np.divide(lines, sums, out=result, where=True if mask.all() else mask, casting="unsafe")
    result *= first_sums


class LineSums:
    """Least-squares sums of straight lines fitted to ``log(signal)`` against the plane index, one per A-line.

    ``n``, ``sz`` and ``szz`` hold integers (exact in float64 in any order); the
    log sums are accumulated plane after plane in float64 (:func:`fit_sums`, :func:`cumulated_sums`).
    """

    def __init__(self, *values: np.ndarray) -> None:
        self.n, self.sz, self.szz, self.sl, self.szl, self.sll = values

    def fields(self) -> tuple[np.ndarray, ...]:
        """``(n, sz, szz, sl, szl, sll)``."""
        return self.n, self.sz, self.szz, self.sl, self.szl, self.sll

    def minus(self, other: LineSums) -> LineSums:
        """The sums of the samples in ``self`` but not in ``other`` (a new object)."""
        return LineSums(*(mine - theirs for mine, theirs in zip(self.fields(), other.fields(), strict=True)))

    def slope(self) -> np.ndarray:
        """The fitted slope (0 where fewer than 2 distinct planes)."""
        spread = self.n * self.szz - self.sz**2
        return np.divide(self.n * self.szl - self.sz * self.sl, spread, out=np.zeros_like(self.n), where=spread > 0)

    def residual(self) -> np.ndarray:
        """Sum of squared residuals of the fitted line (0 where fewer than 3 samples)."""
        n = np.maximum(self.n, 1)

        def centred(product: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
            """``product - first * second / n`` (few temporaries)."""
            value = first * second
            value /= n
            return np.subtract(product, value, out=value)

        residual = centred(self.sll, self.sl, self.sl)
        spread, covariance = centred(self.szz, self.sz, self.sz), centred(self.szl, self.sz, self.sl)
        np.multiply(covariance, covariance, out=covariance)
        residual -= np.divide(covariance, spread, out=np.zeros_like(n), where=spread > 0)
        np.maximum(residual, 0.0, out=residual)
        residual[self.n <= 2] = 0.0
        return residual


@dataclass(frozen=True)
class CumulatedSums:
    """The :class:`LineSums` of each A-line's range and of its top down to every boundary (:func:`cumulated_sums`).

    Attributes
    ----------
    total : LineSums
        Over each A-line's range ``[first, stop)``.
    boundaries : ndarray of int, shape (r,)
        Planes ``b``, multiples of the step, above the lowest first and down to the deepest stop.
    above : ndarray, shape (r, 6, n), float64
        The fields (in :class:`LineSums`' order) over ``[first, min(b, stop))``, for every boundary ``b``.
    """

    total: LineSums
    boundaries: np.ndarray
    above: np.ndarray

    def part(self, columns: slice) -> CumulatedSums:
        """The sums of the A-lines ``columns`` only (views)."""
        return CumulatedSums(LineSums(*(values[columns] for values in self.total.fields())), self.boundaries,
                             self.above[:, :, columns])


def cumulated_sums(tails: np.ndarray, first: np.ndarray, stop: np.ndarray, step: int) -> CumulatedSums:
    """The :class:`LineSums` of ``log(T[k] - T[k + 1])`` over each A-line's ``[first, stop)`` and down to every ``b``.

    For the few A-lines of a coarse grid (``tails`` of shape ``(z + 1, n)``): every boundary ``b``
    (a multiple of ``step``) keeps the sums so far, so that the sums of any window ``[first, b)``
    are at hand (the split test of :func:`linumpy.intensity.attenuation_map.window_attenuation`).
    The six terms of each plane (``1, k, k^2`` where the sample is used, ``l, l k, l^2`` of its
    float32 log ``l``) are rounded to float32, then added to the float64 sums plane after plane
    (:func:`linumpy.intensity.attenuation_kernels.cumulated_line_sums`).
    """
    low, signal, log = _log_planes(tails, first, stop)
    high = low + len(signal)
    boundaries = np.arange((low // step + 1) * step, high + 1, step)
    total = np.zeros((6, *first.shape))
    above = np.empty((boundaries.size, *total.shape))
    attenuation_kernels.cumulated_line_sums(signal, log, low, first, stop, boundaries, total, above)
    return CumulatedSums(LineSums(*total), boundaries, above)


def fit_sums(
    tails: np.ndarray, first: np.ndarray, stop: np.ndarray, window_stop: np.ndarray | None = None,
    variance: np.ndarray | None = None,
) -> tuple[LineSums, LineSums]:
    """The sums of a straight line's fit to ``log(T[k] - T[k + 1])`` over each A-line's ``[first, stop)``.

    ``n, sz, szz`` counted, ``sl, szl`` added plane after plane in float64 (the fit of
    :func:`slope_attenuation`; ``sll`` is not summed: 0), in one compiled pass
    (:func:`linumpy.intensity.attenuation_kernels.fit_line_sums`). With ``window_stop``, the same
    sums over ``[first, window_stop)`` too (``window_stop <= stop``), in the same pass: those of
    the A-lines whose window stops early are taken as they stand when the pass reaches their
    stop. ``variance``: the noise variance of each plane's signal, ``(z,)``: the log carries the
    noise bias (None: none).

    A signal ``S`` read with additive zero-mean noise of variance ``v`` has
    ``E[log(S + n)] = log S - v / (2 S^2) + O(v^2 / S^4)``: where the signal
    nears the noise floor (the deep agarose, dark tissue), its log reads low,
    the more so the deeper, and the fitted decay rate high. Adding the term back
    (with the measured ``S`` for the unknown one) removes the bias to second
    order; it is capped at :data:`MAX_NOISE_BIAS` (``S`` twice the noise's
    standard deviation), below which the expansion fails. Returns ``(whole, window)``.
    """
    low, signal, log = _log_planes(tails, first, stop)
    lines = first.size
    whole, window = np.zeros((6, lines)), np.zeros((6, lines))
    window_stop = np.full(lines, np.inf) if window_stop is None else window_stop.ravel()
    variance = np.zeros(0, np.float32) if variance is None else np.asarray(variance, np.float32)
    attenuation_kernels.fit_line_sums(signal, log, low, first.ravel(), stop.ravel(), window_stop, variance,
                                      np.float32(MAX_NOISE_BIAS), whole, window)
    early = window_stop < stop.ravel()
    window[:, ~early] = whole[:, ~early]
    return LineSums(*whole.reshape(6, *first.shape)), LineSums(*window.reshape(6, *first.shape))


def _log_planes(tails: np.ndarray, first: np.ndarray, stop: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(low, signal, log)``: ``T[k] - T[k + 1]`` and its float32 log (numpy's) on the planes ``k`` from ``low``
    that some A-line's ``[first, stop)`` holds, shape ``(planes, A-lines)`` (the A-lines flattened)."""
    n_z = tails.shape[0] - 1
    low, high = max(0, int(first.min(initial=n_z))), min(n_z, int(stop.max(initial=0)))
    high = max(low, high)
    planes = tails.reshape(n_z + 1, -1)
    signal = np.subtract(planes[low:high], planes[low + 1 : high + 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return low, signal, np.log(signal)


def fit_range(start_px: np.ndarray, depth_px: int, n_z: int, margin_px: int) -> tuple[np.ndarray, np.ndarray]:
    """First and stop plane of each A-line's fitted range (first ``n_z + margin`` where the start is NaN)."""
    valid = np.isfinite(start_px)
    first = np.where(valid, np.rint(np.nan_to_num(start_px)), n_z) + margin_px
    return first, np.minimum(first - margin_px + depth_px, n_z)


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
    the range (a layer boundary) biases both
    (:func:`linumpy.intensity.attenuation_map.window_attenuation`
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
    sums = fit_sums(tails, *fit_range(start_px, depth_px, tails.shape[0] - 1, margin_px))[0]
    valid = np.isfinite(start_px) & (sums.n >= min_samples)
    return np.where(valid, -sums.slope() / (2.0 * voxel_size_mm), np.nan).astype(np.float32)
