"""Focus (confocal gate) profile, estimated from the agarose around the tissue.

The focus of the objective multiplies every A-line by the same function of
the depth in the instrument frame, ``F(z)``. The agarose around the tissue
(a weak, homogeneous scatterer) shows it: the mean depth profile of agarose
A-lines below their own surface, minus the noise floor, is proportional to
``F``.

The agarose is found **by position**, not by level alone (dark tissue is as
dim as agarose): A-lines are first classed by their *level* (see
:func:`line_levels`; Otsu's threshold on the histogram of log levels of
the A-lines with a detected surface, accepted only if the two classes differ
by at least ``min_class_ratio``; failing that, of every imaged A-line, when
the dim class is a gel around the sample, :meth:`BackgroundStatistics.gel_split`),
then the slice is cut into a coarse lateral grid of cells, a cell holding a
tissue A-line is tissue, and that mask is closed, hole-filled and dilated:
the agarose is what lies outside it (:class:`BackgroundStatistics`).

Each agarose cell is scaled by its own gain (a rank-1 fit, :func:`cell_gains`),
so that cells joining the mean at their own cut depth make no steps.
Every depth of the profile carries the number of A-lines behind it. Depths
with little support are filled by a fitted model (Lorentzian, the confocal
gate of a Gaussian beam, or Gaussian) and the profile is scaled to 1 at a
well-sampled depth (:func:`estimate_focus`), never at a depth a handful of
A-lines decide; it is clipped below (:func:`gain_floor`) at ``min_gain``
where nothing supports it, and where a measurement or a trusted fit does, at
the gain under which the tissue's signal sinks under the noise
(:func:`noise_gain`, at least ``MIN_NOISE_GAIN``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from linumpy.intensity.histogram import LogHistogram

#: Libraries the estimate uses only once the statistics are gathered (Otsu's threshold, the profile fits):
#: imported where used, so that a step can import them on a thread while its pass runs
#: (:func:`linumpy.parallel.import_in_background`) instead of before its first block.
FIT_MODULES = ("scipy.optimize", "skimage.filters.thresholding")
#: Resolution of the histogram of A-line levels.
LEVEL_BINS_PER_DECADE = 20
#: Largest number of lateral cells, along y or x, of the background statistics.
MAX_CELLS = 48


def line_levels(
    volume: np.ndarray, surface: np.ndarray, margin_px: int = 3, band_px: int = 10, neighbourhood_px: int = 0
) -> np.ndarray:
    """Level of every A-line: its brightest band below the surface, maximized over neighbours.

    The A-line is cut into fixed depth bands of ``band_px`` voxels; a band
    counts when at least half of it lies ``margin_px`` or more below the
    surface, and the level is the largest band mean. The level map is then
    replaced by its maximum over a ``(2 n + 1)^2`` lateral neighbourhood
    (``n = neighbourhood_px``). Both keep A-lines out of the background class
    when tissue appears deeper under agarose, or right beside them.

    Parameters
    ----------
    volume : ndarray, shape (z, y, x)
    surface : ndarray, shape (y, x)
        Surface depth in voxels, NaN for none: such an A-line is measured
        from its top (tissue whose surface lies in the first planes, above
        the scan, or too faint to detect, is still tissue).

    Returns
    -------
    ndarray, shape (y, x), float64
    """
    n_z = volume.shape[0]
    start = np.where(np.isfinite(surface), np.rint(np.nan_to_num(surface, nan=0.0)), 0.0) + margin_px
    below = np.where(np.arange(n_z)[:, None, None] >= start[None], volume, 0.0)
    n_bands, n_full = -(-n_z // band_px), n_z // band_px
    sums = np.empty((n_bands, *volume.shape[1:]))
    below[: n_full * band_px].reshape(n_full, band_px, *volume.shape[1:]).sum(axis=1, dtype=np.float64,
                                                                               out=sums[:n_full])
    if n_full < n_bands:  # the last band, short: its missing planes count as zeros, added last
        below[n_full * band_px :].sum(axis=0, dtype=np.float64, out=sums[-1])
        for _ in range(n_bands * band_px - n_z):
            sums[-1] += 0.0
    # voxels of each band at or below the start (integers: the count of a mask)
    band_start = np.arange(n_bands)[:, None, None] * band_px
    counts = (np.minimum(band_start + band_px, n_z) - np.clip(start[None], band_start, band_start + band_px))
    counts = np.maximum(counts, 0).astype(np.int64)
    means = np.divide(sums, counts, out=np.zeros(counts.shape), where=counts >= (band_px + 1) // 2)
    return neighbourhood_max(means.max(axis=0), neighbourhood_px)


def neighbourhood_max(levels: np.ndarray, neighbourhood_px: int) -> np.ndarray:
    """``levels`` replaced by their maximum over a ``(2 n + 1)^2`` lateral neighbourhood (``n = 0``: unchanged).

    Examples
    --------
    >>> neighbourhood_max(np.array([[0.0, 0.0, 5.0]]), 1).tolist()
    [[0.0, 5.0, 5.0]]
    """
    if neighbourhood_px <= 0:
        return levels
    return ndimage.maximum_filter(levels, size=2 * neighbourhood_px + 1, mode="nearest")


def whole_bins(binned: np.ndarray) -> np.ndarray:
    """Binned A-lines that hold no padding, as far as the bins tell: imaged, with no padding among their 8 neighbours.

    A bin at the edge of the imaged area (a mosaic's ragged border) may average padding (zeros) in with its
    imaged A-lines; it would count as ``factor**2`` imaged A-lines, and the noise floor subtracted for each
    lowers the profile where the signal is faint (the agarose lies at the sample's, so the mosaic's, edge:
    2.7-3.5% of its A-lines on the foreign acquisitions, 1% less signal at the bottom of the range, read as
    0.07 mm^-1 more gel decay; ``docs/intensity.md``). Beyond the array (``binned``'s own edge) counts as
    imaged: the caller gives a halo.

    Examples
    --------
    >>> block = np.ones((2, 4, 5)); block[:, :, 4] = 0  # the last column is padding
    >>> whole_bins(block).astype(int).tolist()[0]
    [1, 1, 1, 0, 0]
    """
    imaged = binned.any(axis=0)
    return ndimage.binary_erosion(imaged, structure=np.ones((3, 3), bool), border_value=1)


#: Otsu's classes of A-line levels must lie this far apart (ratio of their geometric means) for the dimmer to be
#: background (agarose): :meth:`BackgroundStatistics.level_split`.
MIN_CLASS_RATIO = 4.0
#: With the focus far below the cut the gel's surface is rarely detected: the levels of every imaged A-line are
#: split instead (:meth:`BackgroundStatistics.gel_split`), the classes at least this far apart...
MIN_GEL_CLASS_RATIO = 3.0
#: ... most of the dim class without a detected surface (the A-lines the first split did not see)...
MIN_GEL_SURFACELESS_FRACTION = 0.5
#: ... or, its cut detected (the first split saw it, under 4x: a gel near enough the focus, or dim tissue), a
#: decay no tissue has: the dim class's profile fitted with the focus (:meth:`BackgroundStatistics.dim_decay`)
#: reads at most this attenuation (mm^-1; a 1-2% agarose gel 0.3-0.4, the dimmest tissue of the generators 2)...
MAX_GEL_DECAY_PER_MM = 1.0
#: ... with this many of the fit's standard errors to spare...
GEL_DECAY_SIGMAS = 2.0
#: ... (a split under ``MIN_GEL_CLASS_RATIO``, down to this, is a gel only by its decay, whatever its surface: with
#: the focus far below the cut the tissue's brightest band is attenuated on its way to it, toward the gel's)...
MIN_GEL_DECAY_CLASS_RATIO = 2.0
#: ... and the dim class around the sample: at least this fraction of the imaged area's edge cells outside the
#: tissue mask (a gel embeds the sample; dim tissue beside bright tissue shares the edge with it).
MIN_GEL_EDGE_FRACTION = 0.75
#: Where the levels of :class:`LevelSplit` come from.
SURFACE_LEVELS, EVERY_LEVEL = "A-lines with a detected surface", "every imaged A-line"


@dataclass(frozen=True)
class LevelSplit:
    """The A-line levels split into background and tissue (:meth:`BackgroundStatistics.level_split`).

    Attributes
    ----------
    threshold : float or None
        Level above which an A-line is tissue; None: no distinct background (no split reached
        ``min_class_ratio``, or, for :meth:`BackgroundStatistics.gel_split`, the dim class is no gel).
    class_ratio : float or None
        Ratio of the two classes' geometric mean levels: of the split accepted, or the widest of the splits
        tried when none was (None: no split could be tried, e.g. one level or too few dim A-lines).
    min_class_ratio : float
        The ratio a split needed.
    source : str
        Whose levels were split: :data:`SURFACE_LEVELS` or :data:`EVERY_LEVEL`.
    surfaceless_fraction, edge_fraction : float or None
        Of a split of :data:`EVERY_LEVEL` wide enough: the share of the dim class without a detected surface
        and the share of the imaged area's edge cells outside the tissue mask
        (:meth:`BackgroundStatistics.gel_split`); None: not measured.
    tissue_mean_level : float or None
        Geometric mean level of the tissue (bright) class of the split accepted (None without one): a lower
        bound of the tissue's signal at the focus (the levels carry the focus and the attenuation), for the
        focus profile's noise-relative gain floor (:func:`estimate_focus`, ``noise_gain``).
    decay_checked : bool
        The dim class of a split of :data:`EVERY_LEVEL` around the sample, its cut detected or the split under
        :data:`MIN_GEL_CLASS_RATIO`, was checked by its decay (:meth:`BackgroundStatistics.gel_split`).
    decay_per_mm, decay_sd_per_mm : float or None
        Of that check: the attenuation the dim class's profile reads fitted with the focus and the fit's
        standard error (:meth:`BackgroundStatistics.dim_decay`; None: not checked, or no fit).
    """

    threshold: float | None
    class_ratio: float | None
    min_class_ratio: float
    source: str = SURFACE_LEVELS
    surfaceless_fraction: float | None = None
    edge_fraction: float | None = None
    tissue_mean_level: float | None = None
    decay_checked: bool = False
    decay_per_mm: float | None = None
    decay_sd_per_mm: float | None = None

    def describe(self) -> str:
        """Why this split found no distinct background (or, accepted, no agarose by position), in words (for the
        focus mode and the QC flag).

        Examples
        --------
        >>> LevelSplit(None, 3.75, 4.0).describe()
        'the levels of A-lines with a detected surface split at most 3.75x apart (4x needed)'
        >>> LevelSplit(10.0, 4.3, 4.0).describe()  # accepted, but the tissue mask covers the imaged area
        'the levels of A-lines with a detected surface split 4.30x apart, but no A-line of the dim class lies \
outside the tissue'
        >>> LevelSplit(None, 3.2, 3.0, EVERY_LEVEL, 0.9, 0.5).describe()
        'the levels of every imaged A-line split 3.20x apart, but the dim class is no gel around the sample: \
90% of it has no detected surface (50% needed), it holds 50% of the imaged edge (75% needed)'
        >>> LevelSplit(None, 3.6, 3.0, EVERY_LEVEL, 0.0, 1.0, decay_checked=True, decay_per_mm=2.97,
        ...            decay_sd_per_mm=0.12).describe()
        'the levels of every imaged A-line split 3.60x apart, but the dim class is no gel around the sample: \
0% of it has no detected surface (50% needed) and its profile decays at 2.97 +- 0.12 mm^-1 with the focus \
(a gel: at most 1 mm^-1, with 2 standard errors to spare), it holds 100% of the imaged edge (75% needed)'
        """
        if self.class_ratio is None:
            return f"the levels of {self.source} could not be split"
        if self.threshold is not None:
            return (f"the levels of {self.source} split {self.class_ratio:.2f}x apart, but no A-line of the dim "
                    f"class lies outside the tissue")
        if self.class_ratio < self.min_class_ratio or self.edge_fraction is None:
            return (f"the levels of {self.source} split at most {self.class_ratio:.2f}x apart "
                    f"({self.min_class_ratio:g}x needed)")
        low = self.min_class_ratio < MIN_GEL_CLASS_RATIO  # a gel by its decay only
        checks = [] if low else [f"{100 * self.surfaceless_fraction:.0f}% of it has no detected surface "
                                 f"({100 * MIN_GEL_SURFACELESS_FRACTION:.0f}% needed)"]
        checks += [self._describe_decay()] if self.decay_checked else []
        checks = [" and ".join(checks)] if checks else []
        checks.append(f"it holds {100 * self.edge_fraction:.0f}% of the imaged edge "
                      f"({100 * MIN_GEL_EDGE_FRACTION:.0f}% needed)")
        return (f"the levels of {self.source} split {self.class_ratio:.2f}x apart"
                f"{f' (under {MIN_GEL_CLASS_RATIO:g}x: a gel by its decay only)' if low else ''}, but the dim class "
                f"is no gel around the sample: {', '.join(checks)}")

    def _describe_decay(self) -> str:
        """The decay check of the dim class, in words."""
        need = f"(a gel: at most {MAX_GEL_DECAY_PER_MM:g} mm^-1, with {GEL_DECAY_SIGMAS:g} standard errors to spare)"
        if self.decay_per_mm is None or self.decay_sd_per_mm is None:
            return f"its profile's decay could not be fitted with the focus {need}"
        return (f"its profile decays at {self.decay_per_mm:.2f} +- {self.decay_sd_per_mm:.2f} mm^-1 with the focus "
                f"{need}")

    @property
    def gel_decay(self) -> bool:
        """The decay measured is a gel's: at most :data:`MAX_GEL_DECAY_PER_MM` with :data:`GEL_DECAY_SIGMAS`
        standard errors to spare.

        Examples
        --------
        >>> LevelSplit(None, 3.6, 3.0, decay_per_mm=0.4, decay_sd_per_mm=0.01).gel_decay
        True
        >>> LevelSplit(None, 3.6, 3.0, decay_per_mm=0.7, decay_sd_per_mm=0.2).gel_decay
        False
        """
        return (self.decay_per_mm is not None and self.decay_sd_per_mm is not None
                and self.decay_per_mm + GEL_DECAY_SIGMAS * self.decay_sd_per_mm <= MAX_GEL_DECAY_PER_MM)


@dataclass(frozen=True)
class BlockBackground:
    """What one block adds to :class:`BackgroundStatistics`."""

    levels: np.ndarray  # level of every A-line with a surface
    every_level: np.ndarray  # level of every counted A-line, with a surface or not
    cells: np.ndarray  # flat indices of the lateral cells present
    cell_noise: np.ndarray  # (cells, 3): sum, count and sum of squares of the voxels above the surface
    cell_surface: np.ndarray  # (cells, 2): sum and count of the detected surfaces
    sums: np.ndarray  # (cells, depth) sums of the intensities of the imaged A-lines
    lines: np.ndarray  # (cells,) number of those A-lines
    level_max: np.ndarray  # (cells,) largest A-line level
    shifted_sums: np.ndarray | None = None  # (cells, depth) the same sums, A-lines moved back by their applied shift
    shift_sums: np.ndarray | None = None  # (cells,) sum of the counted A-lines' applied shifts


#: Cells whose variance above the surface exceeds the cells' median by this factor are left out of the noise
#: variance (:meth:`BackgroundStatistics.noise_variance`): signal above a surface found late.
NOISE_VARIANCE_OUTLIER = 4.0


class BackgroundStatistics:
    """Accumulate, block by block, what the focus profile and noise floor need.

    The slice is cut into a coarse lateral grid of cells (at most
    ``max_cells`` a side); per cell, over all its imaged A-lines (not
    padding): the intensity summed at every depth, their number and the
    largest level (see :func:`line_levels`); over those with a detected
    surface: the mean surface and the noise above it. Neither A-lines nor
    depths are selected by their own surface: a dim agarose A-line's surface
    is found only where speckle happens to rise, which would bias the
    profile; the profile of a cell starts below the cell's mean surface
    (:meth:`background_profile`). Memory is
    ``max_cells^2 x depth`` sums, whatever the slice size (twice that when the
    blocks carry the mosaic step's applied shifts: the sums of the A-lines moved
    back to their tile's frame, :mod:`linumpy.intensity.focus_shift`).

    Parameters
    ----------
    depth : int
        Number of voxels per A-line.
    shape_yx : (int, int)
        Lateral shape of the (binned) slice the blocks come from.
    margin_px : int
        Voxels skipped on each side of the surface.
    max_cells : int
        Largest number of cells along y or x.
    """

    def __init__(self, depth: int, shape_yx: tuple[int, int] = (1, 1), margin_px: int = 3,
                 max_cells: int = MAX_CELLS) -> None:
        self.depth = depth
        self.margin_px = margin_px
        self.levels = LogHistogram(bins_per_decade=LEVEL_BINS_PER_DECADE)
        self.every_level = LogHistogram(bins_per_decade=LEVEL_BINS_PER_DECADE)
        self.cell_px = max(1, -(-max(shape_yx) // max_cells))
        self.grid = tuple(-(-n // self.cell_px) for n in shape_yx)
        n_cells = self.grid[0] * self.grid[1]
        self.cell_sums = np.zeros((n_cells, depth), np.float64)
        self.cell_lines = np.zeros(n_cells, np.int64)
        self.cell_level_max = np.zeros(n_cells, np.float64)
        self.cell_noise = np.zeros((n_cells, 3), np.float64)
        self.cell_surface = np.zeros((n_cells, 2), np.float64)
        self.cell_shifted_sums: np.ndarray | None = None  # allocated by the first block with shifts
        self.cell_shift_sums = np.zeros(n_cells, np.float64)

    def add(
        self, volume: np.ndarray, surface: np.ndarray, levels: np.ndarray, origin: tuple[int, int] = (0, 0)
    ) -> None:
        """Add one block: ``volume`` (z, y, x) at ``origin``, its surface (y, x; NaN for none) and levels (y, x)."""
        self.merge(self.measure(volume, surface, levels, origin))

    def measure(
        self, volume: np.ndarray, surface: np.ndarray, levels: np.ndarray, origin: tuple[int, int] = (0, 0),
        weight: int = 1, counted: np.ndarray | None = None, shift: np.ndarray | None = None,
    ) -> BlockBackground | None:
        """What one block adds (see :meth:`add`), without changing ``self`` (thread-safe).

        Blocks measured in parallel are merged in block order with :meth:`merge`,
        so the sums do not depend on the thread timing. ``weight``: the number
        of A-lines each A-line of ``volume`` stands for (e.g. 4 for a volume
        binned 2 x 2 laterally). ``counted``: ``(y, x)``, the A-lines whose
        intensities enter the cell sums and counts (default: every imaged A-line,
        i.e. with a nonzero voxel, not padding; for a binned volume see
        :func:`whole_bins`). ``shift``: ``(y, x)``, the up-shift the mosaic step
        applied to each A-line (:class:`linumpy.intensity.focus_shift.AppliedShift`):
        the cells also sum the A-lines moved back down by it (their tile's frame,
        Lanczos, :func:`linumpy.mosaic.curvature.shift_alines`) and the shifts.
        """
        volume = np.asarray(volume, np.float32)
        imaged = volume.any(axis=0)  # not padding
        counted = imaged if counted is None else counted & imaged
        if not imaged.any():
            return None
        found = np.isfinite(surface) & imaged
        start = np.rint(np.where(found, surface, 0)).astype(np.intp) - self.margin_px
        # cells are rectangles of the lateral grid: sum by runs along x, then along y (no copy, no sort)
        edges = [np.unique(np.r_[0, np.arange(-o % self.cell_px, n, self.cell_px)])
                 for o, n in zip(origin, volume.shape[1:])]
        edges = [e[e < n] for e, n in zip(edges, volume.shape[1:])]

        def per_cell(values: np.ndarray) -> np.ndarray:  # (..., y, x) -> (..., cells_y, cells_x)
            values = np.add.reduceat(values, edges[1], axis=-1, dtype=np.float64)
            return np.add.reduceat(values, edges[0], axis=-2)

        rows = (edges[0] + origin[0]) // self.cell_px
        cols = (edges[1] + origin[1]) // self.cell_px
        present = (rows[:, None] * self.grid[1] + cols[None, :]).ravel()
        left_out = np.nonzero(imaged & ~counted)  # imaged A-lines not counted: their sums taken out
        cell = ((np.searchsorted(edges[0], left_out[0], side="right") - 1) * edges[1].size
                + np.searchsorted(edges[1], left_out[1], side="right") - 1)

        def counted_sums(values: np.ndarray) -> np.ndarray:  # (z, y, x) -> (cells, z) over the counted A-lines
            sums = per_cell(values).reshape(self.depth, -1).T
            if left_out[0].size:
                np.subtract.at(sums, cell, values[:, left_out[0], left_out[1]].T.astype(np.float64))
            return sums

        sums = counted_sums(volume)
        shifted_sums = shift_sums = None
        if shift is not None:
            from linumpy.mosaic.curvature import shift_alines

            shifted_sums = counted_sums(shift_alines(volume, shift))
            shift_sums = per_cell(np.where(counted, shift, 0.0)).ravel()
        n_lines = per_cell(counted).ravel().astype(np.int64)
        above = np.arange(self.depth)[:, None, None] < np.where(found, start, 0)[None]
        top = above[: max(1, int(start.max(initial=0)))]  # the planes holding a voxel above a surface
        noise = np.stack([per_cell(np.einsum("zyx,zyx->yx", volume, above, dtype=np.float64)).ravel(),
                          per_cell(above.sum(axis=0)).ravel(),
                          per_cell(np.einsum("zyx,zyx,zyx->yx", volume[: top.shape[0]], volume[: top.shape[0]], top,
                                             dtype=np.float64)).ravel()], axis=1)
        surfaces = np.stack([per_cell(np.where(found, surface, 0.0)).ravel(), per_cell(found).ravel()], axis=1)
        level = np.where(imaged, levels, 0.0)  # with or without a surface: tissue cut above the scan is tissue
        level_max = np.maximum.reduceat(np.maximum.reduceat(level, edges[1], axis=1), edges[0], axis=0).ravel()
        keep = per_cell(imaged).ravel() > 0
        return BlockBackground(np.repeat(levels[found], weight), np.repeat(levels[counted], weight), present[keep],
                               noise[keep] * weight, surfaces[keep], sums[keep] * weight, n_lines[keep] * weight,
                               level_max[keep],
                               None if shifted_sums is None else shifted_sums[keep] * weight,
                               None if shift_sums is None else shift_sums[keep] * weight)

    def merge(self, block: BlockBackground | None) -> None:
        """Add a block measured by :meth:`measure` (None: a block without surface)."""
        if block is None:
            return
        self.levels.add(block.levels)
        self.every_level.add(block.every_level)
        self.cell_noise[block.cells] += block.cell_noise
        self.cell_surface[block.cells] += block.cell_surface
        self.cell_sums[block.cells] += block.sums
        self.cell_lines[block.cells] += block.lines
        np.maximum.at(self.cell_level_max, block.cells, block.level_max)
        if block.shifted_sums is not None:
            if self.cell_shifted_sums is None:
                self.cell_shifted_sums = np.zeros_like(self.cell_sums)
            self.cell_shifted_sums[block.cells] += block.shifted_sums
            self.cell_shift_sums[block.cells] += block.shift_sums

    def noise_floor(self, cells: np.ndarray | None = None) -> float:
        """Noise floor: the median over ``cells`` (default: all) of each cell's mean intensity above the surface.

        0 when no voxel lies above a surface. Give the tissue cells
        (:meth:`tissue_cells`), and the median, not the mean: above a dim
        scatterer (agarose or dark tissue out of focus) the surface is found
        late and the voxels "above" it still hold signal.
        """
        noise = self.cell_noise if cells is None else self.cell_noise[cells]
        noise = noise[noise[:, 1] > 0]
        return float(np.median(noise[:, 0] / noise[:, 1])) if noise.size else 0.0

    def noise_variance(self, cells: np.ndarray | None = None) -> float | None:
        """Variance of the noise above the surface: pooled within the ``cells`` (default: all), outliers left out.

        The same voxels as :meth:`noise_floor` (give the same cells): each cell's
        voxels above its A-lines' surfaces (less the margin), their mean square
        less their squared mean, pooled over the cells (weighted by their voxels)
        whose own variance is at most :data:`NOISE_VARIANCE_OUTLIER` times the
        cells' median (a dim scatterer whose surface is found late holds signal
        "above" it; a median of the cells' variances would read low where cells
        hold few voxels: the sample variance of skewed noise is skewed). In the
        units of the voxels measured: of the binned volume's voxels when the
        blocks are binned (each the mean of several A-lines, so less noisy than
        one A-line's). None when no cell holds two voxels above a surface (not
        estimable).

        Examples
        --------
        >>> statistics = BackgroundStatistics(4, margin_px=0)
        >>> statistics.cell_noise[:] = [[6.0, 4.0, 10.0]]  # voxels 1, 1, 2, 2: mean 1.5, variance 0.25
        >>> statistics.noise_variance()
        0.25
        """
        noise = self.cell_noise if cells is None else self.cell_noise[cells]
        noise = noise[noise[:, 1] > 1]
        if not noise.size:
            return None
        mean = noise[:, 0] / noise[:, 1]
        variance = np.maximum(noise[:, 2] / noise[:, 1] - mean**2, 0.0)
        kept = variance <= NOISE_VARIANCE_OUTLIER * np.median(variance)
        return float(np.average(variance[kept], weights=noise[kept, 1]))

    def tissue_cells(self, tissue_level: float) -> np.ndarray:
        """Boolean ``(cells,)``: cells whose A-lines are all tissue-bright or near it (eroded tissue mask)."""
        tissue = (self.cell_level_max > tissue_level).reshape(self.grid)
        return ndimage.binary_erosion(tissue, iterations=1).ravel()

    def level_split(self, min_class_ratio: float = MIN_CLASS_RATIO, min_lines: int = 20, max_splits: int = 3,
                    source: str = SURFACE_LEVELS) -> LevelSplit:
        """Split of the A-line levels into background (agarose) and tissue, or why there is none.

        Otsu's threshold on the histogram of log levels, accepted if the
        classes below and above it differ by at least ``min_class_ratio``
        with ``min_lines`` A-lines below. Otherwise (tissue of two
        brightnesses outnumbers a small agarose population: Otsu splits the
        tissue) Otsu is tried again on the lower class, ``max_splits`` times in all.
        ``source``: the histogram of the A-lines with a detected surface
        (:data:`SURFACE_LEVELS`) or of every imaged A-line (:data:`EVERY_LEVEL`).

        Examples
        --------
        >>> statistics = BackgroundStatistics(4)
        >>> statistics.levels.add(np.r_[np.full(50, 10.0), np.full(50, 25.0)])  # 2.5x: 2.2x in 1/20-decade bins
        >>> split = statistics.level_split()
        >>> split.threshold is None, round(split.class_ratio, 1), split.min_class_ratio
        (True, 2.2, 4.0)
        """
        from skimage.filters import threshold_otsu  # after the pass only (see FIT_MODULES)

        histogram = self.levels if source == SURFACE_LEVELS else self.every_level
        counts, centers = histogram.counts, histogram.centers
        candidate = counts > 0
        widest = None
        for _ in range(max_splits):
            if np.count_nonzero(candidate) < 2:
                break
            log_threshold = threshold_otsu(hist=(np.where(candidate, counts, 0), centers))
            low = candidate & (centers <= log_threshold)
            high = centers > log_threshold
            if counts[low].sum() < min_lines or counts[high].sum() == 0:
                break
            log_tissue = np.average(centers[high], weights=counts[high])
            ratio = 10 ** (log_tissue - np.average(centers[low], weights=counts[low]))
            widest = ratio if widest is None else max(widest, ratio)
            if ratio >= min_class_ratio:
                return LevelSplit(float(10 ** histogram.edges[np.nonzero(low)[0][-1] + 1]), float(ratio),
                                  min_class_ratio, source, tissue_mean_level=float(10**log_tissue))
            candidate = low
        return LevelSplit(None, None if widest is None else float(widest), min_class_ratio, source)

    def gel_split(
        self, min_class_ratio: float = MIN_GEL_CLASS_RATIO, dz_um: float | None = None,
        first_depth: np.ndarray | None = None,
    ) -> LevelSplit:
        """The levels of every imaged A-line split into a gel around the sample and tissue, or why not.

        For slices whose :meth:`level_split` finds no background: far above
        the focus the gel's cut surface is rarely detected, so the surface
        A-lines are mostly tissue. :meth:`level_split` of :data:`EVERY_LEVEL`
        at ``min_class_ratio``, accepted only if the dim class is a gel:
        around the tissue, at least :data:`MIN_GEL_EDGE_FRACTION` of the
        imaged area's edge cells outside the tissue mask (:meth:`edge_fraction`),
        and one the first split did not see, at least
        :data:`MIN_GEL_SURFACELESS_FRACTION` of its A-lines without a detected
        surface, or else (its cut detected: a gel near enough the focus, split
        under 4x from the tissue, or dim tissue) with a gel's decay: its
        profile fitted with the focus (:meth:`dim_decay`, axial voxel ``dz_um``,
        each cell from ``first_depth`` down) reads at most
        :data:`MAX_GEL_DECAY_PER_MM` with :data:`GEL_DECAY_SIGMAS` standard
        errors to spare (``dz_um`` None: not checked, refused). No split at
        ``min_class_ratio`` (and ``dz_um`` given): a split down to
        :data:`MIN_GEL_DECAY_CLASS_RATIO` is tried, a gel by its decay alone,
        whatever its surface (its ``min_class_ratio`` reads that bound).
        Dim tissue has a detected cut and decays as tissue does, or, far above
        the focus, lies beside bright tissue that shares the edge with it; a gel
        embeds the whole sample and barely attenuates.
        """
        split = self.level_split(min_class_ratio, source=EVERY_LEVEL)
        if split.threshold is None and dz_um is not None and min_class_ratio > MIN_GEL_DECAY_CLASS_RATIO:
            low = self.level_split(MIN_GEL_DECAY_CLASS_RATIO, source=EVERY_LEVEL)
            split = low if low.threshold is not None else split
        if split.threshold is None:
            return split
        by_surface = split.min_class_ratio >= MIN_GEL_CLASS_RATIO  # a low split is a gel by its decay only
        dim = self.every_level.centers <= np.log10(split.threshold)
        surfaceless = 1.0 - self.levels.counts[dim].sum() / max(1, self.every_level.counts[dim].sum())
        surfaceless_gel = by_surface and surfaceless >= MIN_GEL_SURFACELESS_FRACTION
        edge = self.edge_fraction(split.threshold)
        checked = edge >= MIN_GEL_EDGE_FRACTION and not surfaceless_gel and dz_um is not None
        decay = self.dim_decay(split.threshold, dz_um, first_depth) if checked else (None, None)
        verdict = LevelSplit(None, split.class_ratio, split.min_class_ratio, EVERY_LEVEL,
                             max(0.0, float(surfaceless)), edge, decay_checked=checked, decay_per_mm=decay[0],
                             decay_sd_per_mm=decay[1])
        gel = edge >= MIN_GEL_EDGE_FRACTION and (surfaceless_gel or verdict.gel_decay)
        if not gel:
            return verdict
        return replace(verdict, threshold=split.threshold, tissue_mean_level=split.tissue_mean_level)

    def dim_decay(
        self, tissue_level: float, dz_um: float, first_depth: np.ndarray | None = None
    ) -> tuple[float | None, float | None]:
        """Attenuation (mm^-1) of the A-lines below ``tissue_level`` outside the tissue, and its standard error.

        Their profile as the focus estimate takes it (:meth:`agarose_cells` with a guard of one cell, the cells
        brighter than the rest left out, each cell from ``first_depth`` down (default: its mean detected surface
        and the margin; the axial correction gives the deeper of that and its surface plane's: speckle detected
        as a faint gel's cut reads 5-8 mm^-1 on harsh B focused 90 planes deep with the default, a gel's 0.05-0.39
        with the plane), less the noise floor of the tissue cells), fitted with the focus (:func:`estimate_focus`
        with ``fit_decay``: the Lorentzian times the round-trip decay, the fit alone, not combined with the prior).
        ``(None, None)`` without a fit.
        """
        tissue = self.tissue_cells(tissue_level)
        noise_floor = self.noise_floor(tissue if tissue.any() else None)
        cells = self.agarose_cells(tissue_level)
        if first_depth is None:
            first_depth = np.ceil(self.cell_surfaces()) + self.margin_px
        if not (cells & np.isfinite(first_depth)).any():
            return None, None
        cells &= ~self.bright_cells(cells, noise_floor, first_depth)
        measured, support = self.background_profile(cells, noise_floor, first_depth)
        qc = estimate_focus(measured, support, 0.0, dz_um, fit_decay=True).qc
        return qc.get("focus_agarose_attenuation_fit_per_mm"), qc.get("focus_agarose_attenuation_fit_sd_per_mm")

    def tissue_mask(self, tissue_level: float) -> np.ndarray:
        """Boolean grid of the cells of tissue: a cell with an A-line above ``tissue_level``, the mask closed
        (one cell) and its holes filled (dark tissue enclosed by bright tissue, cavities)."""
        tissue = (self.cell_level_max > tissue_level).reshape(self.grid)
        tissue = ndimage.binary_closing(np.pad(tissue, 1), iterations=1)[1:-1, 1:-1]
        return ndimage.binary_fill_holes(tissue)

    def edge_fraction(self, tissue_level: float) -> float:
        """Share of the imaged area's edge cells outside the tissue mask (:meth:`tissue_mask`).

        Edge cells: cells holding A-lines with a 4-neighbour holding none or beyond the grid.

        Examples
        --------
        >>> statistics = BackgroundStatistics(1, (8, 8), max_cells=8)
        >>> statistics.cell_lines[:] = 1
        >>> statistics.cell_level_max.reshape(8, 8)[2:6, 2:6] = 10.0  # tissue inside a gel ring
        >>> statistics.edge_fraction(5.0)
        1.0
        >>> statistics.cell_level_max.reshape(8, 8)[:, 4:] = 10.0  # bright tissue over the right half
        >>> statistics.edge_fraction(5.0)
        0.5
        """
        imaged = (self.cell_lines > 0).reshape(self.grid)
        edge = imaged & ~ndimage.binary_erosion(imaged, border_value=0)
        if not edge.any():
            return 0.0
        return float(np.mean(~self.tissue_mask(tissue_level)[edge]))

    def agarose_cells(self, tissue_level: float, guard_cells: int = 1) -> np.ndarray:
        """Cells of agarose found by position: outside the cleaned tissue mask.

        A cell is tissue when one of its A-lines is above ``tissue_level``;
        the mask is closed (one cell), its holes filled (dark tissue enclosed
        by bright tissue, cavities) and dilated by ``guard_cells``. Returns a
        boolean ``(cells,)``: cells outside that mask that hold A-lines.
        """
        tissue = self.tissue_mask(tissue_level)
        if guard_cells > 0:
            tissue = ndimage.binary_dilation(tissue, iterations=guard_cells)
        return ~tissue.ravel() & (self.cell_lines > 0)

    def cell_shifts(self) -> np.ndarray:
        """Mean applied up-shift (voxels) of each cell's counted A-lines, 0 for a cell without any."""
        return np.divide(self.cell_shift_sums, self.cell_lines, out=np.zeros(self.cell_lines.shape),
                         where=self.cell_lines > 0)

    def in_tile_frame(self) -> BackgroundStatistics:
        """These statistics with the cell sums of the A-lines moved back to their tiles' frame (a shallow copy).

        Raises ``ValueError`` when no block carried applied shifts.
        """
        if self.cell_shifted_sums is None:
            raise ValueError("no applied shifts were measured")
        moved = copy.copy(self)
        moved.cell_sums = self.cell_shifted_sums
        return moved

    def cell_surfaces(self) -> np.ndarray:
        """Mean detected surface (voxels) of each cell's A-lines, NaN for a cell without any."""
        total, count = self.cell_surface.T
        return np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)

    def background_profile(
        self, cells: np.ndarray, noise_floor: float, first_depth: np.ndarray, decay_per_px: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Depth profile of the A-lines of ``cells``, minus ``noise_floor``, each cell scaled by its gain.

        Cell ``c`` contributes from depth ``first_depth[c]`` down (below its
        cut surface). The cells differ in brightness (vignetting, the gel's
        texture, the gel's decay from each cell's own cut) and join the mean at
        different depths (a tilted cut): a plain mean would step wherever a
        cell of another brightness joins. So the profile is the common shape
        of a rank-1 fit, ``signal[c, z] ~ gain[c] * profile[z]``
        (:func:`cell_gains`; gains averaging 1 over the A-lines).
        ``decay_per_px``: the agarose's own round-trip attenuation ``2 mu dz``;
        each cell's signal is multiplied by ``exp(decay_per_px * d)``, ``d``
        the depth below the cell's cut (``first_depth`` less the margin), so
        that the profile is the focus alone. Returns ``(profile, support)``:
        ``support[z]`` is the number of A-lines behind ``profile[z]`` (NaN where 0).

        Examples
        --------
        >>> statistics = BackgroundStatistics(4, margin_px=0)
        >>> statistics.cell_sums[:] = np.exp(-0.1 * np.arange(4.0)); statistics.cell_lines[:] = 1
        >>> profile, _ = statistics.background_profile(np.ones(1, bool), 0.0, np.zeros(1), 0.1)
        >>> profile.round(6).tolist()
        [1.0, 1.0, 1.0, 1.0]
        """
        _, signal, lines = self.cell_signal(cells, noise_floor, first_depth, decay_per_px)
        gains = cell_gains(signal, lines)
        weight = (gains[:, None] * lines).sum(axis=0)
        support = lines.sum(axis=0)
        return np.divide(signal.sum(axis=0), weight, out=np.full(self.depth, np.nan), where=weight > 0), support

    def bright_cells(
        self, cells: np.ndarray, noise_floor: float, first_depth: np.ndarray, decay_per_px: float = 0.0
    ) -> np.ndarray:
        """Cells of ``cells`` brighter than the gel: boolean ``(cells,)``, see :func:`bright_outliers`.

        The gains are those of :meth:`background_profile`'s rank-1 fit (same arguments). Tissue as dim as
        agarose at the sample's edge (dark tissue: the level classes cannot tell it from the gel, and the
        tissue mask, closed and hole-filled, encloses it only inside the sample) lies outside the tissue
        mask; it is brighter than the gel and decays faster, so it bends the profile's shape.
        """
        use, signal, lines = self.cell_signal(cells, noise_floor, first_depth, decay_per_px)
        bright = np.zeros(cells.shape, bool)
        bright[use] = bright_outliers(cell_gains(signal, lines), lines.sum(axis=1))
        return bright

    def cell_signal(
        self, cells: np.ndarray, noise_floor: float, first_depth: np.ndarray, decay_per_px: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices of the used cells, their signal sums (noise floor removed, 0 above their first depth, the
        gel's decay divided out) and the A-lines behind each sum: ``(cells,)``, ``(cells, depth)`` twice."""
        use = np.nonzero(cells & np.isfinite(first_depth))[0]
        depth = np.arange(self.depth)[None, :] - first_depth[use][:, None]
        valid = depth >= 0
        lines = self.cell_lines[use][:, None] * valid
        signal = (self.cell_sums[use] - noise_floor * self.cell_lines[use][:, None]) * valid
        if decay_per_px:
            signal *= np.exp(decay_per_px * np.maximum(depth + self.margin_px, 0.0))
        return use, signal, lines


#: Alternations of the rank-1 fit of :func:`cell_gains`.
GAIN_ITERATIONS = 10


def cell_gains(signal: np.ndarray, lines: np.ndarray, iterations: int = GAIN_ITERATIONS) -> np.ndarray:
    """Gain of every cell in a rank-1 fit ``signal[c, z] ~ gain[c] * lines[c, z] * profile[z]``.

    ``signal``: per-cell sums over A-lines at each depth (0 where a cell
    does not contribute), ``lines``: the number of A-lines behind each sum.
    Alternating least squares from gains of 1; the gains are scaled to a mean
    of 1 over the contributing A-line samples. Cells without a positive
    overlap with the profile keep a gain of 1.

    Examples
    --------
    >>> signal = np.array([[0.0, 2.0, 4.0], [3.0, 6.0, 12.0]])  # gains 1 and 3, the first cell from depth 1
    >>> lines = np.array([[0, 1, 1], [1, 1, 1]])
    >>> gains = cell_gains(signal, lines)
    >>> (gains / gains[0]).round(4).tolist()
    [1.0, 3.0]
    """
    gains = np.ones(signal.shape[0])
    total = signal.sum(axis=0)
    for _ in range(iterations):
        weight = (gains[:, None] * lines).sum(axis=0)
        profile = np.divide(total, weight, out=np.zeros(total.shape), where=weight > 0)
        numerator = (signal * profile).sum(axis=1)
        denominator = (lines * profile**2).sum(axis=1)
        gains = np.where((denominator > 0) & (numerator > 0),
                         numerator / np.where(denominator > 0, denominator, 1.0), 1.0)
        counts = lines.sum(axis=1)
        gains /= np.average(gains, weights=counts) if counts.sum() > 0 else 1.0
    return gains


#: A cell of the agarose profile is brighter than the gel when its gain exceeds the median gain by more than this
#: many robust standard deviations (1.4826 x the median absolute deviation)...
BRIGHT_CELL_Z = 4.0
#: ... and by more than this fraction of the median (a floor: a noiseless, uniform gel has a deviation of 0).
BRIGHT_CELL_MIN_MARGIN = 0.1


def bright_outliers(gains: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cells whose gain lies above the gel's: ``gain > median * (1 + max(z MAD' / median, margin))``.

    ``MAD'`` = 1.4826 x the median absolute deviation (the standard deviation of normal scatter),
    ``z`` = ``BRIGHT_CELL_Z``, ``margin`` = ``BRIGHT_CELL_MIN_MARGIN``; over the cells with A-lines
    (``counts > 0``), one pass. The gel is one homogeneous scatterer: its cells differ only by the
    illumination (vignetting, blended tiles), by a few percent; only the brighter side is tested
    (the dim side is the tile corners' vignetting, and tissue is brighter than the gel).

    Examples
    --------
    >>> bright_outliers(np.array([1.0, 0.98, 1.02, 1.01, 0.99, 1.6]), np.full(6, 36)).tolist()
    [False, False, False, False, False, True]
    """
    bright = np.zeros(gains.shape, bool)
    present = counts > 0
    if not present.any():
        return bright
    median = float(np.median(gains[present]))
    spread = 1.4826 * float(np.median(np.abs(gains[present] - median)))
    bright[present] = gains[present] > median + max(BRIGHT_CELL_Z * spread, BRIGHT_CELL_MIN_MARGIN * median)
    return bright


#: A depth is well sampled when at least this many agarose A-lines support it...
MIN_SUPPORT_LINES = 50
#: ... and at least this fraction of the best-supported depth's A-lines.
MIN_SUPPORT_FRACTION = 0.3
#: Below this fraction of the tissue depths measured (not modelled), the estimate is flagged.
MIN_MEASURED_FRACTION = 0.75
FOCUS_MODELS = ("lorentzian", "gaussian")
#: The Gaussian replaces the Lorentzian (the physical model) only if its relative RMS residual is this much lower.
GAUSSIAN_PENALTY = 1.5
#: Largest agarose attenuation (mm^-1) the Lorentzian x decay fit may find, either sign (see :func:`estimate_focus`):
#: wide enough to read dim tissue taken for agarose (2-3 mm^-1; :func:`combine_with_prior`).
MAX_AGAROSE_ATTENUATION_PER_MM = 8.0
#: A fit above the prior by this many standard errors (of the difference) decays as no gel does: dim tissue taken
#: for agarose (the first split accepts tissue 8x dimmer than the rest, with no gel, as agarose): the fit alone.
MIN_TISSUE_DECAY_SIGMAS = 4.0
#: Where a fit this close (relative RMS residual) supports it, the profile's gain floor is the noise's
#: (:func:`gain_floor`), not ``min_gain``...
MAX_TRUSTED_FIT_RMS = 0.05
#: ... nor below this (the gain never exceeds 200x).
MIN_NOISE_GAIN = 0.005
#: Prior of the agarose attenuation (mm^-1): mean and standard deviation. A thin embedding gel (1-2% agarose)
#: attenuates little; the two test generators' gels are 0.3 and 0.4 (see ``docs/intensity.md``,
#: *Agarose attenuation: prior and cell gains*). The fit is combined with it by inverse variance.
AGAROSE_ATTENUATION_PRIOR_PER_MM = (0.35, 0.25)
#: Above this weight of the prior in the combined estimate, the estimate is flagged as weakly supported.
MAX_AGAROSE_PRIOR_WEIGHT = 0.5
#: The source of an agarose attenuation read as no gel's (:func:`combine_with_prior`), and its flag's start.
TISSUE_DECAY = "decays as no gel does"


@dataclass(frozen=True)
class FocusEstimate:
    """A focus profile estimated from the agarose, with what supports it.

    Attributes
    ----------
    profile : ndarray or None
        Normalized profile (1 at the reference depth), one value per depth;
        None when no estimate is possible.
    qc : dict
        JSON-ready support fields (see ``docs/intensity.md``).
    flags : list of str
        Messages for the QC record when the estimate is weakly supported or fell back.
    """

    profile: np.ndarray | None
    qc: dict
    flags: list[str]


def estimate_focus(
    measured: np.ndarray,
    support: np.ndarray,
    first_tissue_px: float,
    dz_um: float,
    min_gain: float = 0.05,
    model: str | None = None,
    smooth_px: float = 2.0,
    fit_decay: bool = False,
    noise_gain: float | None = None,
    noise_floor: float | None = None,
) -> FocusEstimate:
    """Focus profile from an agarose depth profile and its per-depth support.

    Depths supported by fewer than ``max(MIN_SUPPORT_LINES,
    MIN_SUPPORT_FRACTION * max(support))`` A-lines are not trusted: the
    Lorentzian (Gaussian-beam) and Gaussian models are fitted to the
    well-sampled depths (weights: the support) and the better one fills the
    others (the Lorentzian unless the Gaussian's residual is
    ``GAUSSIAN_PENALTY`` times lower) (``model`` forces one and uses it everywhere). The profile is
    scaled to 1 at its highest well-sampled depth (the reference; never an
    unsupported one), and clipped below (:func:`gain_floor`): at ``min_gain``
    where nothing supports the profile, at ``noise_gain`` (if lower, not
    below ``MIN_NOISE_GAIN``) where it is measured or given by a trusted fit
    (relative RMS residual at most ``MAX_TRUSTED_FIT_RMS``, its centre
    among the well-sampled depths: the peak measured).

    With ``fit_decay``, the agarose's own round-trip decay is fitted with the
    Lorentzian, ``a / (1 + ((z - c) / w)^2) * exp(-2 mu dz z)``, ``|mu| <=
    MAX_AGAROSE_ATTENUATION_PER_MM``, and divided out of the profile (so that
    tissue attenuation does not read ``mu`` low). The decay is identifiable
    only because the Lorentzian's log is not a parabola (a Gaussian times an
    exponential is a shifted Gaussian), and weakly (one slice's agarose
    decays by a few percent over the range): the fitted value is combined
    with the prior ``AGAROSE_ATTENUATION_PRIOR_PER_MM`` by inverse variance
    (the prior alone when the fit fails or reaches its bound), clipped at 0,
    and the Lorentzian refitted with that decay fixed. Fitted only when the
    Lorentzian wins; otherwise ``mu = 0`` (the profile keeps the decay). The
    QC fields ``focus_agarose_attenuation_*`` give the value, its standard
    error, the fit alone, the prior's weight and the source; a flag when the
    prior outweighs the fit (``MAX_AGAROSE_PRIOR_WEIGHT``).

    Parameters
    ----------
    measured : ndarray, shape (depth,)
        Noise-subtracted mean agarose intensity per depth (NaN where unsupported).
    support : ndarray of int, shape (depth,)
        Number of A-lines behind each value.
    first_tissue_px : float
        Shallowest tissue surface: the depths from there down are the ones
        the correction matters for (the QC fractions count those).
    dz_um : float
        Axial voxel size, for the QC fields.
    min_gain : float
        Floor of the profile where no measurement or trusted fit supports it.
    model : {"lorentzian", "gaussian"} or None
        Force a model for every depth (None: measured where well sampled).
    smooth_px : float
        Gaussian smoothing of the measured part along depth.
    fit_decay : bool
        Estimate the agarose's attenuation with the Lorentzian (see above).
    noise_gain : float or None
        The gain below which the tissue's signal sinks under the noise: the noise's standard deviation over
        the tissue's level (None: ``min_gain`` everywhere).
    noise_floor : float or None
        The noise floor subtracted from ``measured`` (its units): where the agarose's signal is below it
        and the model is trusted (relative RMS residual at most ``MAX_TRUSTED_FIT_RMS``), the profile is
        the model's, not the measurement's (:func:`faint_depths`). None: measured wherever well sampled.

    Returns
    -------
    FocusEstimate
    """
    depth = measured.size
    support = np.asarray(support, np.int64)
    threshold = max(MIN_SUPPORT_LINES, int(np.ceil(MIN_SUPPORT_FRACTION * support.max(initial=0))))
    well = (support >= threshold) & np.isfinite(measured)
    tissue = np.arange(depth) >= max(0, int(np.floor(first_tissue_px)))
    qc = {
        "focus_support_threshold": threshold,
        "focus_support_lines": support.tolist(),
        "focus_support_min_tissue": int(support[tissue].min()) if tissue.any() else 0,
        "focus_measured_fraction": round(float(well[tissue].mean()) if tissue.any() else 0.0, 4),
        "focus_model": None, "focus_model_center_um": None, "focus_model_width_um": None, "focus_fit_rms": None,
        "focus_reference_depth_um": None, "focus_clipped_depths": 0, "focus_fallback": None,
        "focus_faint_depths": 0,
    }
    if well.sum() < 3:
        qc["focus_fallback"] = f"no focus correction: fewer than 3 depths with >= {threshold} agarose A-lines"
        return FocusEstimate(None, qc, [qc["focus_fallback"]])
    fits = {name: _fit_model(name, measured, support, well) for name in ((model,) if model else FOCUS_MODELS)}
    fits = {name: fit for name, fit in fits.items() if fit is not None}
    flags = []
    z = np.arange(depth, dtype=np.float64)
    if fit_decay:
        qc.update(focus_agarose_attenuation_per_mm=0.0, focus_agarose_attenuation_sd_per_mm=None,
                  focus_agarose_attenuation_source="not estimated: no Lorentzian fit",
                  focus_agarose_refit_failed=None)
    if fits:
        name = min(fits, key=lambda n: fits[n][1] * (1.0 if n == "lorentzian" else GAUSSIAN_PENALTY))
        params, rms = fits[name]
        decay = np.ones(depth)
        if fit_decay and name == "lorentzian":
            params, rms, decay, message = _fit_agarose_decay(measured, support, well, params, rms, dz_um, qc)
            if message:
                flags.append(message)
        elif fit_decay:
            qc["focus_agarose_attenuation_source"] = ("not estimated: a Gaussian focus fits better, and a Gaussian "
                                                      "times a decay is a shifted Gaussian")
        modelled = focus_model(name, z, *params)
        qc.update(focus_model=name, focus_model_center_um=round(params[1] * dz_um, 3),
                  focus_model_width_um=round(params[2] * dz_um, 3), focus_fit_rms=round(rms, 4))
        faint = faint_depths(measured, well, noise_floor, rms)
        qc["focus_faint_depths"] = int((faint & tissue).sum())
        if model:
            profile = modelled
        else:
            # measured where well sampled and above the noise (the agarose's decay divided out): the model times
            # the smoothed measured / (model x decay) ratio
            ratio = np.where(well & ~faint, measured / (modelled * decay), 1.0)
            if smooth_px > 0:
                ratio = ndimage.gaussian_filter1d(ratio, smooth_px, mode="nearest")
            profile = np.where(well, modelled * ratio, modelled)
    else:
        qc["focus_fallback"] = "no focus model fits the agarose profile: unsampled depths extended exponentially"
        flags.append(qc["focus_fallback"])
        profile = extend_profile(np.nan_to_num(measured), well)
        if smooth_px > 0:
            profile = ndimage.gaussian_filter1d(profile, smooth_px, mode="nearest")
    reference = int(np.nanargmax(np.where(well, profile, np.nan)))
    if not profile[reference] > 0:
        qc["focus_fallback"] = "no focus correction: the agarose profile has no positive well-sampled value"
        return FocusEstimate(None, qc, flags + [qc["focus_fallback"]])
    normalized = profile / profile[reference]
    qc["focus_reference_depth_um"] = round(reference * dz_um, 3)
    if qc["focus_measured_fraction"] < MIN_MEASURED_FRACTION:
        flags.append(
            f"focus profile weakly supported: {100 * qc['focus_measured_fraction']:.0f}% of the tissue depths have "
            f">= {threshold} agarose A-lines (fewest: {qc['focus_support_min_tissue']}); "
            f"{qc['focus_model'] or 'an exponential extension'} fills the rest")
    sampled = np.nonzero(well)[0]
    trusted = well | (qc["focus_model"] is not None and qc["focus_fit_rms"] <= MAX_TRUSTED_FIT_RMS
                      and sampled[0] <= qc["focus_model_center_um"] / dz_um <= sampled[-1])
    floor, floor_qc, floor_flags = gain_floor(normalized, trusted, well, tissue, min_gain, noise_gain,
                                              qc["focus_model"])
    qc.update(floor_qc)
    flags.extend(floor_flags)
    profile = np.maximum(normalized, floor).astype(np.float32)
    qc["focus_profile"] = [round(float(v), 4) for v in profile]
    return FocusEstimate(profile, qc, flags)


def faint_depths(measured: np.ndarray, well: np.ndarray, noise_floor: float | None, fit_rms: float) -> np.ndarray:
    """The well-sampled depths where the agarose's mean signal is below the noise floor, under a trusted fit.

    There the measurement is a small difference (the floor subtracted from a signal a few tenths of it)
    that any light other than the gel's (dim tissue taken for agarose, the floor's own error) changes by
    a large fraction, while the model rests on every depth. With the focus far below the cut, the top
    of the tissue lies there: a relative error of the profile at those depths is read as attenuation
    over the map's whole window (session atten90). Empty without a floor or a trusted fit
    (:data:`MAX_TRUSTED_FIT_RMS`).

    Examples
    --------
    >>> faint_depths(np.array([5.0, 30.0, 100.0]), np.ones(3, bool), 20.0, 0.01).tolist()
    [True, False, False]
    >>> faint_depths(np.array([5.0, 30.0, 100.0]), np.ones(3, bool), 20.0, 0.2).tolist()
    [False, False, False]
    """
    if noise_floor is None or not noise_floor > 0 or not fit_rms <= MAX_TRUSTED_FIT_RMS:
        return np.zeros_like(well)
    return well & (np.nan_to_num(measured) < noise_floor)


def noise_gain(noise_variance: float | None, split: LevelSplit) -> float | None:
    """The gain at which the tissue's signal sinks under the noise: the noise's standard deviation over the
    split's tissue level (a lower bound of the tissue's signal at the focus, so a conservative floor).

    ``noise_variance``: of one voxel of the volume corrected (:meth:`BackgroundStatistics.noise_variance` times
    the binning's ``factor**2``: every voxel is divided by the gain). None when either is unknown.

    Examples
    --------
    >>> noise_gain(4.0, LevelSplit(50.0, 5.0, 4.0, tissue_mean_level=100.0))
    0.02
    """
    if noise_variance is None or not split.tissue_mean_level:
        return None
    return float(np.sqrt(noise_variance)) / split.tissue_mean_level


def gain_floor(
    normalized: np.ndarray, trusted: np.ndarray, measured: np.ndarray, tissue: np.ndarray, min_gain: float,
    noise_gain: float | None, model: str | None,
) -> tuple[np.ndarray, dict, list[str]]:
    """Floor of a normalized focus profile per depth, its QC fields and flags.

    ``min_gain`` where the profile is not ``trusted`` (measured or given by a trusted fit); where it is,
    the data's own limit: ``noise_gain`` (the gain at which the tissue's signal sinks under the noise),
    not below :data:`MIN_NOISE_GAIN` and never above ``min_gain``. QC: the floor, the tissue depths
    clipped, and those the profile takes below ``min_gain`` (measured, or from the ``model``: flagged).

    Examples
    --------
    >>> profile = np.array([0.01, 0.03, 0.04, 0.2, 1.0])
    >>> floor, qc, flags = gain_floor(profile, np.array([True, True, False, True, True]),
    ...                               np.array([False, True, False, True, True]), np.ones(5, bool), 0.05, 0.02,
    ...                               "lorentzian")
    >>> floor.tolist(), qc["focus_clipped_depths"], qc["focus_deep_measured_depths"], qc["focus_deep_model_depths"]
    ([0.02, 0.02, 0.05, 0.02, 0.02], 2, 1, 0)
    """
    supported = min_gain if noise_gain is None else min(min_gain, max(noise_gain, MIN_NOISE_GAIN))
    floor = np.where(trusted, supported, min_gain)
    clipped = ~(normalized >= floor)
    deep = ~clipped & (normalized < min_gain) & tissue
    qc = {"focus_gain_floor": round(float(supported), 4),
          "focus_noise_gain": None if noise_gain is None else round(float(noise_gain), 4),
          "focus_clipped_depths": int(clipped[tissue].sum()),
          "focus_deep_measured_depths": int((deep & measured).sum()),
          "focus_deep_model_depths": int((deep & ~measured).sum())}
    flags = []
    if qc["focus_clipped_depths"]:
        at = f"{min_gain:g}" if supported == min_gain else f"{supported:.3g} (the noise; {min_gain:g} unsupported)"
        flags.append(f"focus profile clipped at {at} of its reference at {qc['focus_clipped_depths']} tissue depths")
    if qc["focus_deep_model_depths"]:
        lowest = float(normalized[deep & ~measured].min())
        flags.append(f"focus gain above {1 / min_gain:.0f}x from the {model} model at {qc['focus_deep_model_depths']} "
                     f"tissue depths with too few agarose A-lines (down to {lowest:.3f})")
    return floor, qc, flags


def focus_model(name: str, z: np.ndarray, amplitude: float, center: float, width: float) -> np.ndarray:
    """``amplitude / (1 + ((z - center) / width)^2)`` (Lorentzian: the confocal gate of a
    Gaussian beam, ``width`` its Rayleigh range) or ``amplitude * exp(-(z - center)^2 / (2 width^2))``.

    Examples
    --------
    >>> focus_model("lorentzian", np.array([0.0, 10.0]), 2.0, 10.0, 10.0).tolist()
    [1.0, 2.0]
    """
    if name == "lorentzian":
        return amplitude / (1.0 + ((z - center) / width) ** 2)
    return amplitude * np.exp(-((z - center) ** 2) / (2.0 * width**2))


def _fit_agarose_decay(
    measured: np.ndarray, support: np.ndarray, well: np.ndarray, params: np.ndarray, rms: float, dz_um: float,
    qc: dict,
) -> tuple[np.ndarray, float, np.ndarray, str | None]:
    """The Lorentzian times the agarose's round-trip decay, fitted to the well-sampled depths.

    The decay rate is the fit combined with the prior (see :func:`estimate_focus`);
    returns the Lorentzian's ``(amplitude, center, width)`` refitted with that
    decay, its relative RMS residual, the decay per depth to divide out of the
    measured profile and a flag message (None when the fit outweighs the
    prior); ``params`` and ``rms`` unchanged if the refit fails, which the QC
    field ``focus_agarose_refit_failed`` states (None when it succeeded). Updates the
    ``focus_agarose_attenuation_*`` QC fields.
    """
    from scipy import optimize  # the fits only: imported off the step's start (see FIT_MODULES)

    z = np.nonzero(well)[0].astype(np.float64)
    values = measured[well]
    sigma = 1.0 / np.sqrt(support[well].astype(np.float64))
    per_mm = 2.0 * dz_um / 1000.0  # exponent per depth voxel of 1 mm^-1, round trip
    limit = MAX_AGAROSE_ATTENUATION_PER_MM
    shape_bounds = ([0, -10 * z[-1] - 10, 0.5], [np.inf, 10 * z[-1] + 10, np.inf])

    def curve(x: np.ndarray, a: float, c: float, w: float, mu: float) -> np.ndarray:
        return focus_model("lorentzian", x, a, c, w) * np.exp(-mu * per_mm * (x - z[0]))

    try:
        fitted, covariance = optimize.curve_fit(curve, z, values, p0=(*params, 0.0), sigma=sigma,
                                                bounds=([*shape_bounds[0], -limit], [*shape_bounds[1], limit]),
                                                maxfev=2000)
        fit_mu = float(fitted[3])
        fit_sd = float(np.sqrt(covariance[3, 3])) if np.isfinite(covariance[3, 3]) else np.inf
        fit_sd *= correlation_inflation((values - curve(z, *fitted)) / sigma)
    except (RuntimeError, ValueError):
        fit_mu, fit_sd = None, np.inf
    mu, sd, weight, source = combine_with_prior(fit_mu, fit_sd, limit)
    qc.update(focus_agarose_attenuation_per_mm=round(mu, 4), focus_agarose_attenuation_sd_per_mm=round(sd, 4),
              focus_agarose_attenuation_fit_per_mm=None if fit_mu is None else round(fit_mu, 4),
              focus_agarose_attenuation_fit_sd_per_mm=round(fit_sd, 4) if np.isfinite(fit_sd) else None,
              focus_agarose_attenuation_prior_per_mm=list(AGAROSE_ATTENUATION_PRIOR_PER_MM),
              focus_agarose_attenuation_prior_weight=round(weight, 4), focus_agarose_attenuation_source=source)
    decay_at = np.exp(-mu * per_mm * (z - z[0]))
    try:
        shape, _ = optimize.curve_fit(lambda x, a, c, w: focus_model("lorentzian", x, a, c, w), z, values / decay_at,
                                      p0=params, sigma=sigma / decay_at, bounds=shape_bounds, maxfev=2000)
        residual = (values - curve(z, *shape, mu)) / sigma
        params, rms = shape, float(np.sqrt(np.mean(residual**2) / np.mean(1.0 / sigma**2))) / shape[0]
        qc["focus_agarose_refit_failed"] = None
    except (RuntimeError, ValueError) as error:
        qc["focus_agarose_refit_failed"] = f"the Lorentzian without the decay kept ({type(error).__name__}: {error})"
    decay = np.exp(-mu * per_mm * (np.arange(measured.size) - z[0]))
    flag = None if weight <= MAX_AGAROSE_PRIOR_WEIGHT else f"agarose attenuation weakly supported: {source}"
    return params, rms, decay, f"the agarose profile {source}" if source.startswith(TISSUE_DECAY) else flag


def correlation_inflation(residual: np.ndarray) -> float:
    """Factor on a fitted parameter's standard error for residuals correlated along depth.

    ``sqrt((1 + r) / (1 - r))``, ``r`` the lag-1 autocorrelation of the
    residuals (>= 0): a mismatched model or correlated noise leaves runs of
    residuals of one sign, and the ``N`` depths then carry the information of
    about ``N (1 - r) / (1 + r)`` independent ones. 1 for uncorrelated residuals.

    Examples
    --------
    >>> correlation_inflation(np.array([1.0, -1.0, 1.0, -1.0]))
    1.0
    >>> round(correlation_inflation(np.sin(np.linspace(0, 3, 40))), 1) > 3
    True
    """
    centred = residual - residual.mean()
    power = float(np.dot(centred, centred))
    r = float(np.dot(centred[1:], centred[:-1])) / power if power > 0 else 0.0
    r = min(max(r, 0.0), 0.99)
    return float(np.sqrt((1.0 + r) / (1.0 - r)))


def combine_with_prior(fit_mu: float | None, fit_sd: float, limit: float) -> tuple[float, float, float, str]:
    """The agarose attenuation from a fit (mm^-1, its standard error) and the prior, by inverse variance.

    A failed fit (``fit_mu`` None), an infinite error or a value at ``+-limit``
    leaves the prior alone; a fit above the prior by :data:`MIN_TISSUE_DECAY_SIGMAS`
    standard errors of the difference or more is no gel's decay (dim tissue
    taken for agarose): the fit alone, its source starting with
    :data:`TISSUE_DECAY`. Returns ``(mu, standard error, weight of the prior,
    source)``, ``mu`` clipped at 0 (a gel does not amplify).

    Examples
    --------
    >>> mu, sd, weight, _ = combine_with_prior(0.35, 0.25, 2.0)
    >>> round(mu, 3), round(sd, 3), weight
    (0.35, 0.177, 0.5)
    >>> combine_with_prior(None, float("inf"), 2.0)[2]
    1.0
    >>> combine_with_prior(3.0, 0.2, 8.0)[:3]
    (3.0, 0.2, 0.0)
    """
    prior, prior_sd = AGAROSE_ATTENUATION_PRIOR_PER_MM
    if fit_mu is None or not np.isfinite(fit_sd) or abs(fit_mu) >= 0.999 * limit:
        reason = "the fit failed" if fit_mu is None else f"the fit ({fit_mu:.2f} mm^-1) is unusable"
        return prior, prior_sd, 1.0, f"prior {prior} +- {prior_sd} mm^-1 alone: {reason}"
    if fit_mu - prior >= MIN_TISSUE_DECAY_SIGMAS * np.hypot(fit_sd, prior_sd):
        return fit_mu, fit_sd, 0.0, (f"{TISSUE_DECAY}: fit {fit_mu:.2f} +- {fit_sd:.2f} mm^-1, "
                                     f"{(fit_mu - prior) / np.hypot(fit_sd, prior_sd):.1f} standard errors above "
                                     f"the prior {prior} +- {prior_sd} (dim tissue taken for agarose?): the fit alone")
    weight = fit_sd**2 / (fit_sd**2 + prior_sd**2)
    mu = weight * prior + (1.0 - weight) * fit_mu
    sd = float(np.sqrt(1.0 / (1.0 / fit_sd**2 + 1.0 / prior_sd**2)))
    source = (f"estimated: fit {fit_mu:.2f} +- {fit_sd:.2f} combined with the prior {prior} +- {prior_sd} mm^-1 "
              f"(prior weight {weight:.2f})")
    return max(mu, 0.0), sd, weight, source


def _fit_model(
    name: str, measured: np.ndarray, support: np.ndarray, well: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """Least-squares fit of :func:`focus_model` to the well-sampled depths, weighted by the support.

    Returns ``(amplitude, center, width)`` and the weighted RMS residual
    relative to the amplitude, or None when the fit fails or is not peaked.
    """
    from scipy import optimize  # the fits only: imported off the step's start (see FIT_MODULES)

    z = np.nonzero(well)[0].astype(np.float64)
    values = measured[well]
    peak = float(values.max())
    if not peak > 0:
        return None
    start = (peak, z[int(np.argmax(values))], max(2.0, 0.5 * (z[-1] - z[0])))
    sigma = 1.0 / np.sqrt(support[well].astype(np.float64))
    try:
        params, _ = optimize.curve_fit(lambda x, a, c, w: focus_model(name, x, a, c, w), z, values, p0=start,
                                       sigma=sigma,
                                       bounds=([0, -10 * z[-1] - 10, 0.5], [np.inf, 10 * z[-1] + 10, np.inf]),
                                       maxfev=2000)
    except (RuntimeError, ValueError):
        return None
    residual = (values - focus_model(name, z, *params)) / sigma
    rms = float(np.sqrt(np.mean(residual**2) / np.mean(1.0 / sigma**2))) / params[0]
    return params, rms


def extend_profile(profile: np.ndarray, sampled: np.ndarray, fit_px: int = 8) -> np.ndarray:
    """Fill the unsampled depths of a profile.

    Gaps between sampled depths are interpolated linearly; beyond the first
    (last) sampled depth, the profile continues the exponential trend fitted
    to the ``fit_px`` nearest positive samples (constant if fewer than two).

    Examples
    --------
    >>> p = np.array([0, 0, 4.0, 8.0, 16.0, 0, 0])
    >>> extend_profile(p, p > 0, fit_px=3).round(6).tolist()
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    """
    depth = np.arange(profile.size)
    known = np.nonzero(sampled)[0]
    filled = np.interp(depth, known, profile[known])
    for edge, outside in ((known[:fit_px], depth < known[0]), (known[-fit_px:], depth > known[-1])):
        points = edge[profile[edge] > 0]
        if outside.any() and points.size >= 2:
            slope, intercept = np.polyfit(points, np.log(profile[points]), 1)
            filled[outside] = np.exp(intercept + slope * depth[outside])
    return filled


def normalized_profile(profile: np.ndarray, min_gain: float = 0.05, smooth_px: float = 2.0) -> np.ndarray:
    """Scale a given focus profile (``--focus_profile``) to a maximum of 1 and clip it below at ``min_gain``.

    The profile is first smoothed along depth (Gaussian, ``smooth_px``).

    Examples
    --------
    >>> normalized_profile(np.array([0.0, 2.0, 4.0, 2.0]), smooth_px=0)
    array([0.05, 0.5 , 1.  , 0.5 ], dtype=float32)
    """
    profile = np.asarray(profile, np.float64)
    if smooth_px > 0:
        profile = ndimage.gaussian_filter1d(profile, smooth_px, mode="nearest")
    peak = profile.max()
    if not peak > 0:
        raise ValueError("focus profile has no positive value")
    return np.clip(profile / peak, min_gain, 1.0).astype(np.float32)
