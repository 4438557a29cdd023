"""The attenuation map of the tissue just below the cut: each A-line's decay fitted down to its first change.

:func:`window_attenuation` fits the decay rate of each A-line's laterally
averaged signal (:func:`linumpy.intensity.attenuation.slope_attenuation`)
from its surface down to the first change of the A-line (a region of
another reflectivity or attenuation below, the floor of a cavity), found by
a two-line split tested on the neighbours' box (:func:`neighbour_box_sums`:
a wide box without the fit's own) and confirmed on the fit's own box. Its cost is one pass of the fit's log
signal (:func:`linumpy.intensity.attenuation.fit_sums`, which gives the
whole-range fit and every window's sums) and one of both boxes' on a coarse
grid (:func:`linumpy.intensity.attenuation.cumulated_sums`); see
``docs/intensity.md``, *The map of the tissue below the cut*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
from scipy import ndimage

from linumpy.intensity import attenuation_kernels
from linumpy.intensity.attenuation import CumulatedSums, LineSums, cumulated_sums, fit_range, fit_sums

#: Shortest window (um below the margin) the map's decay rate is fitted on when its range is split.
MIN_WINDOW_UM = 30.0
#: Mean square of the log signal per sample, ``(SSE_1 - SSE_2) / n``, that the best split of the wide box must
#: explain for an A-line to be taken to change there (:func:`window_attenuation`): the size of the change in log
#: units, which does not depend on the frames averaged or the box (the statistic ``F`` does). 0.0015 until grey57
#: (harsh one-frame grey 3 over grey 5 left unstopped, benchmarks/README.md).
SPLIT_EFFECT = 0.001
#: The statistic ``F`` the wide box's split must reach as well: a change beyond the noise.
SPLIT_SIGNIFICANCE = 20.0
#: Lateral standard deviation (A-lines) of the wide box whose A-lines outside the fit's own box the split is tested
#: on (:func:`neighbour_box_sums`; the fit keeps its own box).
SPLIT_SIGMA_PX = 6.0
#: Explained mean square (as :data:`SPLIT_EFFECT`) the fit's own box must reach as well (a wide box straddling a
#: homogeneous column sees its neighbours' layers).
OWN_SPLIT_EFFECT = 0.005
#: The statistic ``F`` the own box's split must reach as well.
OWN_SPLIT_SIGNIFICANCE = 10.0
#: Mean signal over the window below which (in units of the noise floor there) an A-line's decay is not mapped.
MIN_SNR = 1.0
#: Mean level of the fit's box above which, in units of the A-line's own level, the box's decay is its neighbours'
#: (most of its light comes from a brighter region beside the A-line): not mapped (``mixed``, :func:`mixed_lines`).
MAX_BOX_RATIO = 1.5
#: Width (bins) of the opening of the agarose class before :func:`class_boundary` looks for its changes.
CLASS_OPENING = 3
#: Lateral distance (A-lines) within which an A-line without a detected surface is fitted from its nearest
#: detected neighbour's surface (:func:`borrowed_surface`; within the axial step's block halo).
BORROW_SURFACE_PX = 8
#: Share of the imaged A-lines of its class (tissue, or agarose and tissue as dim) within :data:`BORROW_SURFACE_PX`
#: whose surface was detected, below which an A-line is without support (:func:`surface_support`): its region's
#: cut is seen only where another light lifts it (the gel and dark tissue far above the focus).
MIN_SURFACE_SUPPORT = 0.25
#: Planes between the candidate splits (a split is found to within this; fewer residuals to evaluate).
SPLIT_STEP_PX = 3
#: Splits of the top window tried, one after the other (each stops the window at the best split above it).
MAX_SPLITS = 2
#: Planes above (and below) a split within which the window's stop is moved to the start of the change, a ramp
#: in the neighbours' box (:meth:`SplitSums.ramp_start`); 0: the split.
RAMP_REACH_PX = 12


@dataclass(frozen=True)
class WindowedAttenuation:
    """The attenuation map of :func:`window_attenuation` and how each value was measured.

    Attributes
    ----------
    mu : ndarray, shape (y, x), float32
        mm^-1, ``>= 0``; NaN where the A-line has no start, too few samples, is ``faint`` or ``mixed``.
    window_px : ndarray, shape (y, x), float32
        Planes of the range fitted (from ``start + margin``), NaN where ``mu`` is.
    shortened : ndarray of bool
        The range stopped at a change of the A-line (a different region below).
    clamped : ndarray of bool
        The fitted decay rate was negative (the signal rose with depth) and was set to 0.
    faint : ndarray of bool
        The window's mean signal is below :data:`MIN_SNR` times the noise floor: no decay rate (NaN).
    mixed : ndarray of bool
        The fit's box holds more than :data:`MAX_BOX_RATIO` times the A-line's own level (a dim A-line
        beside a bright region: the box's decay is the region's): no decay rate (NaN, :func:`mixed_lines`).
    whole : ndarray, shape (y, x), float32
        The decay rate over the whole range (:func:`~linumpy.intensity.attenuation.slope_attenuation`, the
        same bits: not stopped, not clamped, NaN only without a start or samples): the attenuation over the
        depth the slice images.
    stepped : ndarray of bool
        Not the map's: the compensation divided a reflectivity step out of this A-line's signal before its
        tail sums (:func:`~linumpy.intensity.attenuation.reflectivity_steps`).
    borrowed : ndarray of bool
        Mapped from a neighbour's surface: no surface was detected at this A-line (:func:`borrowed_surface`).
    sparse : ndarray of bool
        Imaged, and too few A-lines of its class around it have a detected surface (:func:`surface_support`):
        its region's cut is rarely seen there (a value rests on a cut another light lifted, or on the cut plane).
    planed : ndarray of bool
        Fitted from the slice's cut plane (mapped or not: too faint, mixed): without support, and no surface
        was detected at this A-line nor borrowed (:func:`planed_surface`).
    """

    mu: np.ndarray
    window_px: np.ndarray
    shortened: np.ndarray
    clamped: np.ndarray
    faint: np.ndarray
    mixed: np.ndarray
    whole: np.ndarray
    stepped: np.ndarray
    borrowed: np.ndarray
    sparse: np.ndarray
    planed: np.ndarray

    def apply(self, function: Callable[[np.ndarray], np.ndarray]) -> WindowedAttenuation:
        """The same fields, each passed through ``function`` (e.g. repeated from bins to A-lines)."""
        return WindowedAttenuation(*(function(getattr(self, f.name)) for f in fields(self)))

    def without(self, mixed: np.ndarray) -> WindowedAttenuation:
        """NaN where ``mixed`` (:func:`mixed_lines`) and a value was mapped, recorded as ``mixed`` there."""
        mixed = mixed & np.isfinite(self.mu)
        return WindowedAttenuation(np.where(mixed, np.nan, self.mu).astype(np.float32),
                                   np.where(mixed, np.nan, self.window_px).astype(np.float32),
                                   self.shortened & ~mixed, self.clamped & ~mixed, self.faint, self.mixed | mixed,
                                   self.whole, self.stepped, self.borrowed & ~mixed, self.sparse, self.planed)

    def with_steps(self, stepped: np.ndarray) -> WindowedAttenuation:
        """The same map with ``stepped`` (see the attribute) set."""
        return replace(self, stepped=stepped)

    def with_sparse(self, sparse: np.ndarray) -> WindowedAttenuation:
        """The same map with ``sparse`` (see the attribute) set."""
        return replace(self, sparse=sparse)

    def with_borrowed(self, borrowed: np.ndarray, planed: np.ndarray) -> WindowedAttenuation:
        """The same map with ``borrowed`` (where a value was mapped) and ``planed`` (see the attributes) set."""
        return replace(self, borrowed=borrowed & np.isfinite(self.mu), planed=planed)

    def unsupported(self, keep: np.ndarray) -> WindowedAttenuation:
        """NaN (and not shortened, clamped, faint or mixed) where ``keep`` is False (e.g. no surface)."""
        return WindowedAttenuation(np.where(keep, self.mu, np.nan).astype(np.float32),
                                   np.where(keep, self.window_px, np.nan).astype(np.float32),
                                   self.shortened & keep, self.clamped & keep, self.faint & keep, self.mixed & keep,
                                   np.where(keep, self.whole, np.nan).astype(np.float32), self.stepped & keep,
                                   self.borrowed & keep, self.sparse & keep, self.planed & keep)


def window_attenuation(
    tails: np.ndarray, start_px: np.ndarray, depth_px: int, voxel_size_mm: float, margin_px: int = 3,
    min_samples: int = 8, min_window_um: float = MIN_WINDOW_UM, split_effect: float = SPLIT_EFFECT,
    split_tails: np.ndarray | None = None, split_stride: int = 1, noise: np.ndarray | None = None,
    noise_variance: np.ndarray | None = None,
) -> WindowedAttenuation:
    """The attenuation of the tissue just below each A-line's start: ``slope_attenuation`` up to a change.

    The decay rate of one region is the slope of ``log(signal)`` while the
    A-line stays in it; where a region of another reflectivity or
    attenuation lies below (a brighter grey class, a fibre bundle, the
    floor of a cavity), the signal stops following one exponential and a
    line fitted across both reads neither (a region over a brighter one
    reads as less attenuating, or as negative attenuation). Each A-line's
    range ``[start + margin, start + depth)`` is therefore tested for a
    change point: two lines fitted on either side of every candidate depth
    ``b`` (every :data:`SPLIT_STEP_PX`-th plane; the window above at least
    ``min_window_um``, the part below at least half of it), the depth with
    the least summed squared residual ``SSE_2`` kept, and the range stopped
    there when the split explains enough of the log signal and more than its
    noise:

        R = (SSE_1 - SSE_2) / n > split_effect   and
        F = (SSE_1 - SSE_2) / (SSE_2 / (n - 4)) > SPLIT_SIGNIFICANCE

    (``SSE_1``: one line over the range, ``n`` samples; on the fit's own
    box too, :data:`OWN_SPLIT_EFFECT`, :data:`OWN_SPLIT_SIGNIFICANCE`).
    ``R`` is the size of the change (a step of ``s`` in the log signal at a
    fraction ``p`` of the range explains ``s^2 p (1 - p) (1 - 3 p (1 - p))``,
    what one line does not absorb of it), which is what biases a fit
    across it; ``F`` is ``R`` over the residual variance, which the speckle
    sets (one frame or two, the box's A-lines): a threshold on ``F`` alone
    asks a change twice as large of an acquisition of one frame as of one
    of two. The test is
    repeated on the window kept (:data:`MAX_SPLITS` times in all), so the
    value is that of the first region below the start. A boundary oblique
    under the box reaches its signal as a ramp, inside which the split
    lands: the window stops where the ramp starts
    (:meth:`SplitSums.ramp_start`). The split and the ramp are found on
    ``split_tails`` (the neighbours' box, :func:`neighbour_box_sums`), not
    on the fit's box: the tissue's texture explains part of every log
    signal, and a stop chosen on the signal the slope is then fitted on
    lands where that signal's texture dips, ahead of its rise (the window
    ending in the dip reads high: homogeneous textured tissue +8 %, its
    windows stopped by texture, session window63); the neighbours' texture
    is another realization, a region below is laterally extended and
    seen by both. A homogeneous
    A-line keeps its whole range (the least noisy fit). A decay rate below
    0 is not physical (the signal rose within the window: a region brighter
    below that no split isolated, a cavity opening at the cut over the
    tissue below it): it is set to 0 and reported (``clamped``). Where the
    window's mean signal is below :data:`MIN_SNR` times the noise floor
    (``noise``; a cavity, the deep end of dark tissue) there is nothing to
    fit: NaN (``faint``). Nothing is ``mixed`` here (see
    :meth:`WindowedAttenuation.without`, :func:`mixed_lines`). Near the
    noise floor the log of the signal reads low, the more so the deeper
    (``E[log(S + n)] = log S - v / (2 S^2)``), and the decay rate high (the
    agarose): with ``noise_variance`` the fits' log samples carry the
    second-order correction (:func:`~linumpy.intensity.attenuation.fit_sums`);
    the split test does not (its wide box is many times less noisy).

    The log signal of ``tails`` is taken once for both fits
    (:func:`~linumpy.intensity.attenuation.fit_sums`: the whole range's, the
    same bits as ``slope_attenuation``, and the window's), that of the
    split's two boxes on the coarse A-lines once
    (:func:`~linumpy.intensity.attenuation.cumulated_sums`: the sums down to
    every candidate depth, of which each round's windows are differences).

    Parameters
    ----------
    tails, start_px, depth_px, voxel_size_mm, margin_px, min_samples
        As in :func:`~linumpy.intensity.attenuation.slope_attenuation`.
    min_window_um : float
        Shortest window kept above a split.
    split_effect : float
        Threshold of ``R`` on the wide box (:data:`SPLIT_EFFECT`). The
        tissue's texture, correlated along depth, explains some of the log
        signal of a homogeneous A-line too, so ``R`` (and ``F``, which runs
        well above the independent-noise F(3, n - 4) quantiles) of a
        homogeneous textured A-line is not 0 (see ``docs/intensity.md``).
    split_tails : ndarray, optional
        The tail sums the split is tested and its ramp found on, at every
        ``split_stride``-th A-line of each lateral axis (default: ``tails``
        there): summed over the A-lines of a wider box outside the fit's own
        (:data:`SPLIT_SIGMA_PX`, :func:`neighbour_box_sums`; any scale, no
        end-of-range extension needed), so that the tissue's texture, which
        changes from A-line to A-line, splits fewer homogeneous A-lines and
        does not place the stop of the A-line's own signal, while a region
        below, laterally extended, stays.
    split_stride : int
        The split is tested on every ``split_stride``-th A-line of each
        lateral axis and its depth repeated to the A-lines between (the
        wide box's sums change little from one A-line to the next). Each
        A-line's own window starts at its own start, and is not stopped
        above ``min_samples``.
    noise : ndarray, shape (z,), optional
        The noise floor of each plane in the signal's units (the floor over
        the focus profile); None: nothing is ``faint``.
    noise_variance : ndarray, shape (z,), optional
        The variance of the noise of each plane of the fitted signal (of
        ``tails``' planes, i.e. of a mean over the box, in the signal's
        units); None: no noise bias correction.

    Returns
    -------
    WindowedAttenuation

    Examples
    --------
    >>> from linumpy.intensity.attenuation import slope_attenuation, tail_sums
    >>> dz = 0.0015
    >>> k = np.arange(90.0)
    >>> upper = np.exp(-2 * 3.0 * dz * k)  # 3 /mm over a region 4x brighter from plane 40 down (8 /mm)
    >>> line = np.where(k < 40, upper, 4 * upper[40] * np.exp(-2 * 8.0 * dz * (k - 40)))
    >>> tails = tail_sums(line[:, None, None] * np.ones((1, 2, 2)))
    >>> result = window_attenuation(tails, np.zeros((2, 2)), 90, dz)
    >>> round(float(result.mu[0, 0]), 2), float(result.window_px[0, 0])  # 37 planes; a step read as a ramp
    (3.0, 33.0)
    >>> round(float(slope_attenuation(tails, np.zeros((2, 2)), 90, dz)[0, 0]), 2)  # one line over both
    -1.78
    """
    first, whole_stop = fit_range(start_px, depth_px, tails.shape[0] - 1, margin_px)
    min_above = max(min_samples, int(round(min_window_um / (voxel_size_mm * 1000.0))))
    stop = _window_stops(tails, first, whole_stop, (min_above, max(min_samples, min_above // 2)), min_samples,
                         split_effect, split_tails, split_stride)
    whole, window = fit_sums(tails, first, whole_stop, stop, noise_variance)
    valid = np.isfinite(start_px) & (window.n >= min_samples)
    faint = valid & (window_snr(tails, first, stop, noise) < MIN_SNR) if noise is not None else np.zeros_like(valid)
    valid &= ~faint
    mu = np.where(valid, -window.slope() / (2.0 * voxel_size_mm), np.nan).astype(np.float32)
    clamped = mu < 0
    mu[clamped] = 0.0
    window_px = np.where(valid, stop - first, np.nan).astype(np.float32)
    whole_mu = np.where(np.isfinite(start_px) & (whole.n >= min_samples), -whole.slope() / (2.0 * voxel_size_mm),
                        np.nan).astype(np.float32)
    return WindowedAttenuation(mu, window_px, valid & (stop < whole_stop), clamped, faint, np.zeros_like(valid),
                               whole_mu, np.zeros_like(valid), np.zeros_like(valid), np.zeros_like(valid),
                               np.zeros_like(valid))


def _window_stops(
    tails: np.ndarray, first: np.ndarray, stop: np.ndarray, minimum: tuple[int, int], min_samples: int,
    split_effect: float, split_tails: np.ndarray | None, stride: int,
) -> np.ndarray:
    """Each A-line's stop plane after :data:`MAX_SPLITS` rounds of :func:`window_attenuation`'s split test.

    The test runs on the coarse grid (every ``stride``-th A-line; ``minimum``: the samples a split
    leaves above and below). The log signal of both boxes is cumulated once, in one pass
    (:class:`SplitSums`), and each round's windows are differences of those sums; the own box is
    tested only where the wide box sees a change, a second round only where the first stopped the
    coarse A-line's window (elsewhere it would find the same split again). Each coarse A-line's
    split is carried to the A-lines it stands for, which stop there when it lies inside their own
    range (at least ``min_samples`` planes below their first).
    """
    n_y, n_x = first.shape
    coarse = (np.arange(0, n_y, stride)[:, None] * n_x + np.arange(0, n_x, stride)).ravel()  # flat indices
    first_c, stop_c = first.ravel()[coarse], stop.ravel()[coarse]
    lines = np.flatnonzero(stop_c - first_c >= sum(minimum))  # the coarse A-lines a split fits in
    boxes = [tails[:, ::stride, ::stride]] if split_tails is None else [split_tails, tails[:, ::stride, ::stride]]
    # one pass for both boxes: their columns side by side
    columns = np.concatenate([box.reshape(box.shape[0], -1)[:, lines] for box in boxes], axis=1)
    sums = cumulated_sums(columns, np.tile(first_c[lines], len(boxes)), np.tile(stop_c[lines], len(boxes)),
                          SPLIT_STEP_PX)
    boxed = [SplitSums(lines, first_c[lines], stop_c[lines], sums.part(slice(i * lines.size, (i + 1) * lines.size)))
             for i in range(len(boxes))]
    wide, own = boxed[0], boxed[-1]
    window_stop = None  # the coarse windows' stops after the first round (boundaries), None: the whole range
    for _ in range(MAX_SPLITS):
        if lines.size == 0:
            break
        statistic, explained, split = wide.statistic(lines, *minimum, window_stop)
        changed = (explained > split_effect) & (statistic > SPLIT_SIGNIFICANCE)
        if split_tails is not None:  # the A-line's own box must see a change too, not only its neighbours
            tested = np.flatnonzero(changed)
            own_statistic, own_explained, _ = own.statistic(lines[tested], *minimum, None if window_stop is None
                                                            else window_stop[tested])
            changed[tested] = (own_explained > OWN_SPLIT_EFFECT) & (own_statistic > OWN_SPLIT_SIGNIFICANCE)
        moved = np.flatnonzero(changed)  # the change is a ramp in the box: the window stops where it starts
        split[moved] = wide.ramp_start(lines[moved], split[moved], minimum[0],
                                      None if window_stop is None else window_stop[moved])
        coarse_split = np.full(first_c.size, np.inf)
        coarse_split[lines[changed]] = split[changed]
        spread = np.repeat(np.repeat(coarse_split.reshape(-(-n_y // stride), -1), stride, 0), stride, 1)
        spread = spread[:n_y, :n_x]
        accept = (spread >= first + min_samples) & (spread < stop)
        if not accept.any():
            break
        stop = np.where(accept, spread, stop)
        stopped = accept.ravel()[coarse[lines]]  # a second round where the coarse A-line's own window stopped
        lines, window_stop = lines[stopped], split[stopped]
    return stop


@dataclass(frozen=True)
class SplitSums:
    """The split test's line sums of some coarse A-lines: over their range and down to every candidate split.

    Attributes
    ----------
    lines : ndarray of int
        The coarse A-lines (indices among all of them) the columns of ``sums`` hold, sorted.
    first, stop : ndarray
        Their ranges.
    sums : CumulatedSums
        Their sums (:func:`~linumpy.intensity.attenuation.cumulated_sums`): the boundaries are the
        candidate splits (every :data:`SPLIT_STEP_PX`-th plane), the window above a split ``b`` is
        ``[first, b)``.
    """

    lines: np.ndarray
    first: np.ndarray
    stop: np.ndarray
    sums: CumulatedSums

    def statistic(
        self, lines: np.ndarray, min_above: int, min_below: int, stop: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The best split of the coarse A-lines ``lines``' windows in two lines, its statistic ``F`` and effect.

        The window is ``[first, stop)``, ``stop`` one of the boundaries per A-line (None: the whole
        range); ``F`` and the explained mean square ``(SSE_1 - SSE_2) / n`` as in
        :func:`window_attenuation`. Returns ``(F, explained, split plane)``; F and the explained mean
        square are 0 and the split ``inf`` where no split leaves ``min_above`` samples above and
        ``min_below`` below.
        """
        columns = np.arange(lines.size) if lines.size == self.lines.size else np.searchsorted(self.lines, lines)
        boundaries = self.sums.boundaries
        total = (np.stack([values[columns] for values in self.sums.total.fields()]) if stop is None
                 else np.take_along_axis(self.sums.above[:, :, columns], np.searchsorted(boundaries, stop)[None, None],
                                         axis=0)[0])
        # the candidates: the boundaries that can leave min_above samples above some window and min_below below
        rows = (int(np.searchsorted(boundaries, self.first[columns].min(initial=np.inf) + min_above)),
                int(np.searchsorted(boundaries, (self.stop[columns] if stop is None else stop).max(initial=0)
                                    - min_below, side="right")))
        statistic, explained, split = (np.empty(lines.size) for _ in range(3))
        attenuation_kernels.best_splits(self.sums.above, columns, rows, np.ascontiguousarray(total),
                                        (min_above, min_below), boundaries, statistic, explained, split)
        return statistic, explained, split

    def ramp_start(self, lines: np.ndarray, split: np.ndarray, min_above: int, stop: np.ndarray | None) -> np.ndarray:
        """Where the change found at ``split`` starts: the first knee of the best line bent twice around it.

        A region below whose boundary is oblique under the box (or blurred by the mosaic) enters
        the box's log signal as a ramp several planes long, and the least-squares split of two
        separate lines lands inside it or at its end, so that the window above holds part of the
        ramp and reads the region's decay low (grey 3 mm⁻¹ over a brighter, more attenuating grey).
        A continuous line bent at two knees ``h1 < h2`` (regressors ``1, k, (k - h1)+, (k - h2)+``:
        the region, the ramp, the region below) is fitted to the window ``[first, stop)`` (None: the
        whole range) for every pair of candidate splits with ``h1`` at most :data:`RAMP_REACH_PX`
        planes above ``split`` (leaving ``min_above`` samples above it) and ``h2`` at or below the split
        (the split lies in the ramp), at most as far below it; where the best pair fits better than the two
        separate lines split at ``split`` (as many parameters: a ramp rather than a step), the window
        stops at its ``h1``.
        """
        columns = np.searchsorted(self.lines, lines)
        boundaries = self.sums.boundaries
        above = self.sums.above[:, :, columns]
        window = (np.stack(self.sums.total.fields())[:, columns] if stop is None
                  else np.take_along_axis(above, np.searchsorted(boundaries, stop)[None, None], axis=0)[0])

        split_row = np.searchsorted(boundaries, split)
        reach = RAMP_REACH_PX // SPLIT_STEP_PX
        # the candidate knees around the split (rows: offsets -reach..reach) and the window's sums below them
        rows = split_row + np.arange(-reach, reach + 1)[:, None]
        inside = np.clip(rows, 0, boundaries.size - 1)
        knees = boundaries[inside].astype(float)
        parts = window[:, None] - np.take_along_axis(above, inside[:, None], axis=0).swapaxes(0, 1)
        # every pair (h1 back, h2 ahead of the split) fitted in one batch, in the order back, then ahead
        back, ahead = np.array([(b, a) for b in range(reach + 1) for a in range(0 if b else 1, reach + 1)]).T
        first, second = reach - back, reach + ahead
        # the pairs that can hold the ramp: both knees among the boundaries, min_above samples above the first,
        # two below the second (the others, inf, are not fitted)
        pairs, fitted = np.nonzero((rows[first] >= 0) & (rows[second] < boundaries.size)
                                   & (window[0] - parts[0, first] >= min_above) & (parts[0, second] >= 2))
        residual = np.full(knees[first].shape, np.inf)
        residual[pairs, fitted] = _bent_residual(window, parts, knees, (fitted, first[pairs], second[pairs]))
        residual[np.isnan(residual)] = np.inf
        pair = np.argmin(residual, axis=0)[None]  # the first of the least residuals
        best_residual = np.take_along_axis(residual, pair, axis=0)[0]
        best = np.take_along_axis(knees[first], pair, axis=0)[0]
        split_above = LineSums(*np.take_along_axis(above, split_row[None, None], axis=0)[0])
        step = split_above.residual() + LineSums(*window).minus(split_above).residual()
        return np.where(best_residual < step, best, split)


def _bent_residual(window: np.ndarray, parts: np.ndarray, knees: np.ndarray,
                   fits: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Least-squares residual of ``log = a + s k + c_1 (k - h_1)+ + c_2 (k - h_2)+`` over a window, from its sums.

    ``window``: the six :class:`LineSums` fields (rows) over the window of each A-line; ``parts``: the same
    over its samples ``k >= h`` for every candidate knee ``h`` (``knees``, ``(candidates, A-lines)``);
    ``fits``: the A-line and the candidates ``(h_1, h_2)`` of each fit (``h_1 < h_2``). Returns the residual
    of each fit, inf where singular. The normal equations are built in one compiled pass
    (:func:`~linumpy.intensity.attenuation_kernels.bent_normal_equations`) and solved by numpy (LAPACK, each
    matrix alone). Their Gram matrices hold integers (counts and sums of plane indices, integer knees):
    a nonsingular one has ``|det| >= 1``, so ``det`` is 0 exactly where the factorization meets a zero pivot,
    where ``solve`` refuses the batch; only then are the determinants taken, and the singular ones left out.
    """
    gram = np.empty((fits[0].size, 4, 4))
    moments = np.empty(gram.shape[:2])
    attenuation_kernels.bent_normal_equations(*map(np.ascontiguousarray, (window, parts, knees)),
                                              tuple(map(np.ascontiguousarray, fits)), gram, moments)
    try:
        coefficients, ok = np.linalg.solve(gram, moments[..., None])[..., 0], True
    except np.linalg.LinAlgError:
        ok = np.linalg.det(gram) != 0
        gram[~ok] = np.eye(4)
        coefficients = np.linalg.solve(gram, moments[..., None])[..., 0]
    residual = window[5, fits[0]] - np.sum(coefficients * moments, -1)
    return np.where(ok, np.maximum(residual, 0.0), np.inf)


def neighbour_offsets(fit_width: int, wide_width: int) -> tuple[int, int, int]:
    """Offsets at which the fit's box (``fit_width`` A-lines) tiles the split's box (:func:`neighbour_box_sums`).

    ``(-s, 0, s)`` along each axis, ``s`` at least the fit's width (the boxes
    around do not overlap the fit's own) and half what the wide box
    (``wide_width`` A-lines, :data:`SPLIT_SIGMA_PX`) leaves beside it: the
    3 x 3 boxes span about the wide box (11 bins from boxes of 3, with a bin
    between the own box and its neighbours; 21 A-lines from boxes of 7).

    Examples
    --------
    >>> neighbour_offsets(3, 11), neighbour_offsets(7, 21)
    ((-4, 0, 4), (-7, 0, 7))
    """
    spacing = max(fit_width, (wide_width - fit_width) // 2)
    return -spacing, 0, spacing


def neighbour_box_sums(
    tails: np.ndarray, offsets: tuple[int, int, int], part: tuple[slice, slice], stride: int,
) -> np.ndarray:
    """The split's tail sums: the fit's box at the eight ``offsets`` around each coarse A-line, not its own.

    The sums of :func:`coarse_box_sums` over the 3 x 3 offsets
    (:func:`neighbour_offsets`, on tails already averaged over the fit's
    box) less the centre's: a wide box that holds none of the A-lines whose
    decay the fit reads, so that where the split stops a window does not
    depend on that window's own texture (:func:`window_attenuation`).

    Parameters
    ----------
    tails : ndarray, shape (z + 1, y, x)
    offsets : (int, int, int)
    part : (slice, slice)
        The A-lines of ``tails`` the split is tested for.
    stride : int

    Returns
    -------
    ndarray, shape (z + 1, y', x'), float32
    """
    around = coarse_box_sums(tails, offsets, part, stride)
    around -= coarse_box_sums(tails, (0,), part, stride)
    return around


def coarse_box_sums(
    tails: np.ndarray, offsets: tuple[int, ...], part: tuple[slice, slice], stride: int,
) -> np.ndarray:
    """Tail sums summed over a box, at every ``stride``-th A-line of ``part`` only.

    The boxes of :func:`window_attenuation`'s split on its coarse grid (:func:`neighbour_box_sums`):
    the sums of ``tails`` at the A-lines ``offsets`` away along y and x (on tails already averaged
    over the fit's box), along y at the rows kept, then along x at the columns
    kept (one strided slice an offset; the edges of ``tails`` repeated), in float32. Any scale will
    do: the split reads differences of the log signal ``T[k] - T[k + 1]``.

    Parameters
    ----------
    tails : ndarray, shape (z + 1, y, x)
    offsets : tuple of int
    part : (slice, slice)
        The A-lines of ``tails`` the split is tested for.
    stride : int

    Returns
    -------
    ndarray, shape (z + 1, y', x'), float32
    """
    values = tails
    for axis, (size, within) in enumerate(zip(tails.shape[1:], part), start=1):
        kept = np.arange(size)[within][::stride]
        total = np.zeros((*values.shape[:axis], kept.size, *values.shape[axis + 1 :]), np.float32)
        for offset in offsets:
            index = kept + offset
            if kept.size and index[0] >= 0 and index[-1] < size:
                total += values[(slice(None),) * axis + (slice(index[0], index[-1] + 1, stride),)]
            else:
                total += np.take(values, np.clip(index, 0, size - 1), axis=axis)
        values = total
    return values


def mixed_lines(level: np.ndarray, width: int, max_ratio: float = MAX_BOX_RATIO) -> np.ndarray:
    """A-lines whose fit box holds more than ``max_ratio`` times their own mean level (:data:`MAX_BOX_RATIO`).

    The map's fit reads the log of the box's mean signal, a mean weighted by
    brightness: where an A-line is dim beside a bright region (the gel or dark
    tissue at the edge of brighter tissue, a cavity's rim), the few bright
    A-lines in its box (and in its bin, the map being fitted on bins of
    :data:`~linumpy.intensity.attenuation.EDGE_BIN` A-lines) outweigh it and
    its value is their decay (the foreign gel within 4 A-lines of the sample
    read 1.4 mm⁻¹ for 0.4). ``level``: each A-line's mean signal (e.g. the
    exponential of :func:`~linumpy.intensity.attenuation.level_guide`), ``(y, x)``;
    ``width``: the box's width (A-lines), its mean taken with the edges repeated.

    Examples
    --------
    >>> level = np.array([[1.0, 1.0, 1.0, 1.0, 10.0, 10.0]])
    >>> mixed_lines(level, 3).tolist()
    [[False, False, False, True, False, False]]
    """
    box = ndimage.uniform_filter(np.asarray(level, np.float32), width, mode="nearest")
    return box > max_ratio * level


def class_boundary(tissue: np.ndarray, opening: int = CLASS_OPENING) -> np.ndarray:
    """The A-lines (bins) that have one of the other class among their 8 neighbours: at a change of class.

    ``tissue``: boolean ``(y, x)``, tissue (pass 1's level above the slice's tissue level) or not (agarose,
    tissue as dim). The agarose is first opened over ``opening`` x ``opening`` bins (edges repeated): a
    tissue A-line's level can fall under the tissue level (fast decay, out of focus; 11% of the
    independent generator's grey_c on harsh B), and such specks inside the tissue are no change of class.
    The map's box (3 bins) of a bin at a change holds both classes, and so may its own signal:
    the tiles are resampled to the mosaic (linear interpolation, blending) and registered to within a
    pixel or two, so the gel A-line beside the sample holds some of the tissue's light, whose decay is
    many times the gel's (the independent generator's gel within 2 A-lines of the sample read 3.1 mm⁻¹
    for 0.4, through the box or not). Such bins are not mapped (:meth:`WindowedAttenuation.without`).

    Examples
    --------
    >>> tissue = np.array([[False, False, False, True, True, True, False, True, True]])
    >>> class_boundary(tissue, opening=1).astype(int).tolist()  # each change of class
    [[0, 0, 1, 1, 0, 1, 1, 1, 0]]
    >>> class_boundary(tissue).astype(int).tolist()  # the agarose opened: the one dim A-line is no change
    [[0, 0, 1, 1, 0, 0, 0, 0, 0]]
    """
    agarose = ndimage.grey_opening(~np.asarray(tissue, bool), size=(opening, opening), mode="nearest")
    tissue = ~agarose
    around = np.ones((3, 3), bool)
    return (ndimage.binary_dilation(tissue, around) & ~tissue) | (ndimage.binary_dilation(~tissue, around) & tissue)


def borrowed_surface(
    found_px: np.ndarray, imaged: np.ndarray, max_distance: float = BORROW_SURFACE_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """The surface the map is fitted from: where none was detected, the nearest detected A-line's.

    Dim tissue far above the focus shows its cut only where its texture is bright just below it; the
    A-lines left without a surface are the others, and a map of the detected ones alone keeps the
    tissue whose signal falls back from a bright cut (it reads as extra decay: the independent
    generator's harsh-B dark tissue, 2 mm⁻¹, read +15 %, the A-lines left out 1.6-1.7 mm⁻¹ without
    noise). An imaged A-line (``imaged``: not padding) without a surface takes that of its nearest
    detected A-line within ``max_distance`` A-lines (``scipy.ndimage.distance_transform_edt``).

    Returns
    -------
    surface : ndarray, shape (y, x)
        ``found_px`` with the borrowed values (NaN where none was detected nor borrowed).
    borrowed : ndarray of bool
        The A-lines whose surface was borrowed.

    Examples
    --------
    >>> found = np.array([[5.0, np.nan, np.nan, np.nan]])
    >>> surface, borrowed = borrowed_surface(found, np.array([[True, True, True, False]]), max_distance=1)
    >>> surface.tolist(), borrowed.tolist()
    ([[5.0, 5.0, nan, nan]], [[False, True, False, False]])
    """
    missing = ~np.isfinite(found_px)
    if missing.all() or not missing.any():
        return found_px, np.zeros(found_px.shape, bool)
    distance, nearest = ndimage.distance_transform_edt(missing, return_indices=True)
    borrowed = missing & np.asarray(imaged, bool) & (distance <= max_distance)
    return np.where(borrowed, found_px[tuple(nearest)], found_px), borrowed


def planed_surface(
    found_px: np.ndarray, sparse: np.ndarray, cut_px: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The surface the map is fitted from where its class's cut is rarely detected: the slice's cut plane.

    The vibratome cuts a plane; where a region's cut is under the noise floor (the gel and dark tissue far
    above the focus) its surface is detected only where another light lifts it, and those A-lines and the
    ones fitted from their surfaces (:func:`borrowed_surface`) read that light's decay (the gel beside the
    sample, session rim67). The rest of the region, more than :data:`BORROW_SURFACE_PX` from a detected
    surface, was left unmapped; its signal below the cut is its own. An A-line without support (``sparse``,
    :func:`surface_support`) with no surface, detected or borrowed, is fitted from ``cut_px``: the plane
    fitted to the slice's detected surfaces, lowered by that fit's inlier tolerance (the cut lies above it
    wherever it lies within the plane's spread: the window holds no plane above the cut).

    Returns
    -------
    surface : ndarray, shape (y, x)
        ``found_px`` with ``cut_px`` where planed.
    planed : ndarray of bool

    Examples
    --------
    >>> found = np.array([[5.0, np.nan, np.nan]])
    >>> surface, planed = planed_surface(found, np.array([[True, True, False]]), np.full((1, 3), 7.0))
    >>> surface.tolist(), planed.tolist()
    ([[5.0, 7.0, nan]], [[False, True, False]])
    """
    planed = np.asarray(sparse, bool) & ~np.isfinite(found_px)
    return np.where(planed, cut_px, found_px), planed


def surface_support(
    detected: np.ndarray, imaged: np.ndarray, tissue: np.ndarray | None = None, radius: int = BORROW_SURFACE_PX,
) -> np.ndarray:
    """Per A-line, the share of the imaged A-lines of its class within ``radius`` whose surface was detected.

    The map fits an A-line from its surface, detected or borrowed from a neighbour within
    :data:`BORROW_SURFACE_PX` (:func:`borrowed_surface`: dim tissue shows its cut where its texture
    is bright just below it). Where a region's cut is hardly ever detected (the gel and dark tissue far
    above the focus: their signal at the cut under the noise floor), the A-lines left are the few
    whose cut another light lifts, at the rim of a brighter tissue, and their neighbours fitted from
    those surfaces: they hold that tissue's light and read its decay (the independent generator's
    harsh B with the focus 90 planes deep: the gel +250 %, dark tissue +25 %), a value that stands
    for no region. A share below :data:`MIN_SURFACE_SUPPORT` marks an A-line without support
    (``sparse``, counted in the QC record and flagged; its value is kept: leaving those A-lines out
    leaves the rim, whose cut is detected, and reads the gel worse, ``benchmarks/README.md``, rim67).

    Parameters
    ----------
    detected, imaged : ndarray of bool, shape (y, x)
        A surface was detected at the A-line; the A-line holds data (not padding).
    tissue : ndarray of bool, shape (y, x), optional
        The A-lines' class (tissue, or agarose and tissue as dim); None: one class.
    radius : int
        Half the side of the square box (A-lines).

    Returns
    -------
    ndarray, shape (y, x), float32
        0 where no imaged A-line of the class lies within the box.

    Examples
    --------
    >>> detected = np.array([[True, True, False, False, False, False]])
    >>> [round(float(v), 2) for v in surface_support(detected, np.ones((1, 6), bool), radius=1)[0]]
    [1.0, 0.67, 0.33, 0.0, 0.0, 0.0]
    """
    imaged = np.asarray(imaged, bool)
    classes = [np.ones(imaged.shape, bool)] if tissue is None else [np.asarray(tissue, bool), ~np.asarray(tissue, bool)]
    share = np.zeros(imaged.shape, np.float32)
    for members in classes:
        pool = imaged & members
        count = ndimage.uniform_filter(pool.astype(np.float32), 2 * radius + 1, mode="constant")
        hits = ndimage.uniform_filter((pool & detected).astype(np.float32), 2 * radius + 1, mode="constant")
        share = np.where(members, np.divide(hits, count, out=np.zeros_like(count), where=count > 1e-6), share)
    return share


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
