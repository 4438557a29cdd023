"""Focus (confocal gate) profile: estimation from background A-lines, Gaussian model.

The focus of the objective multiplies every A-line by the same function of
the depth in the instrument frame, ``F(z)``. It is estimated from the
*background* A-lines (agarose around the tissue: a weak, homogeneous
scatterer): their mean depth profile below their own surface, minus the noise
floor, is proportional to ``F`` (model-free mode). The Gaussian mode fits
``F(z) = exp(-(z - z_f)^2 / (2 w^2))`` to that profile (a quadratic fit of its
logarithm, weighted by the signal), which extrapolates above the background
surface and smooths noise. Profiles are scaled to a maximum of 1 over the
imaged range and clipped below at ``min_gain`` so that dividing by them never
amplifies more than ``1 / min_gain``.

Background and tissue A-lines are told apart by their *level* (see
:func:`line_levels`): Otsu's threshold on the
histogram of log levels, accepted only if the two classes differ by at least
``min_class_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from linumpy.intensity.histogram import LogHistogram

#: Resolution of the histogram of A-line levels.
LEVEL_BINS_PER_DECADE = 20


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
        Surface depth in voxels, NaN for none (level 0).

    Returns
    -------
    ndarray, shape (y, x), float64
    """
    n_z = volume.shape[0]
    start = np.where(np.isfinite(surface), np.rint(np.nan_to_num(surface, nan=n_z)), n_z)
    below = np.arange(n_z)[:, None, None] >= start[None] + margin_px
    n_bands = -(-n_z // band_px)
    pad = ((0, n_bands * band_px - n_z), (0, 0), (0, 0))
    shape = (n_bands, band_px) + volume.shape[1:]
    sums = np.pad(np.where(below, volume, 0.0), pad).reshape(shape).sum(axis=1, dtype=np.float64)
    counts = np.pad(below, pad).reshape(shape).sum(axis=1)
    means = np.divide(sums, counts, out=np.zeros(counts.shape), where=counts >= (band_px + 1) // 2)
    levels = means.max(axis=0)
    if neighbourhood_px > 0:
        levels = ndimage.maximum_filter(levels, size=2 * neighbourhood_px + 1, mode="nearest")
    return levels


@dataclass(frozen=True)
class BlockBackground:
    """What one block adds to :class:`BackgroundStatistics`."""

    levels: np.ndarray  # level of every A-line with a surface
    noise_sum: float
    noise_count: int
    bins: np.ndarray  # level bins present
    sums: np.ndarray  # (bins, depth) sums of the intensities below the surface
    counts: np.ndarray  # (bins, depth) counts


class BackgroundStatistics:
    """Accumulate, block by block, what the focus profile and noise floor need.

    Per level bin (see :func:`line_levels`), the sum and count of the
    intensities below the surface at every depth; above the surface, the
    noise floor.

    Parameters
    ----------
    depth : int
        Number of voxels per A-line.
    margin_px : int
        Voxels skipped on each side of the surface.
    """

    def __init__(self, depth: int, margin_px: int = 3) -> None:
        self.depth = depth
        self.margin_px = margin_px
        self.levels = LogHistogram(bins_per_decade=LEVEL_BINS_PER_DECADE)
        n_bins = self.levels.counts.size
        self.profile_sums = np.zeros((n_bins, depth), np.float64)
        self.profile_counts = np.zeros((n_bins, depth), np.int64)
        self.noise_sum = 0.0
        self.noise_count = 0

    def add(self, volume: np.ndarray, surface: np.ndarray, levels: np.ndarray) -> None:
        """Add one block: ``volume`` (z, y, x), its surface (y, x; NaN for none) and levels (y, x)."""
        self.merge(self.measure(volume, surface, levels))

    def measure(
        self, volume: np.ndarray, surface: np.ndarray, levels: np.ndarray, weight: int = 1
    ) -> BlockBackground | None:
        """What one block adds (see :meth:`add`), without changing ``self`` (thread-safe).

        Blocks measured in parallel are merged in block order with :meth:`merge`,
        so the sums do not depend on the thread timing. ``weight``: the number
        of A-lines each A-line of ``volume`` stands for (e.g. 4 for a volume
        binned 2 x 2 laterally).
        """
        found = np.isfinite(surface)
        if not found.any():
            return None
        lines = np.asarray(volume, np.float32).reshape(self.depth, -1).T[found.ravel()]  # (n, z)
        start = np.rint(surface[found]).astype(np.intp)[:, None]
        depth = np.arange(self.depth)[None, :]
        above = depth < start - self.margin_px
        noise_sum = float(np.where(above, lines, 0).sum(dtype=np.float64))
        below = depth >= start + self.margin_px
        level = levels[found]
        bins = self.levels.bin_index(level)
        order = np.argsort(bins, kind="stable")
        present, starts = np.unique(bins[order], return_index=True)
        lines *= below
        sums = np.add.reduceat(lines[order], starts, axis=0, dtype=np.float64)
        counts = np.add.reduceat(below[order], starts, axis=0, dtype=np.int64)
        keep = present >= 0
        return BlockBackground(np.repeat(level, weight), noise_sum * weight, int(above.sum()) * weight,
                               present[keep], sums[keep] * weight, counts[keep] * weight)

    def merge(self, block: BlockBackground | None) -> None:
        """Add a block measured by :meth:`measure` (None: a block without surface)."""
        if block is None:
            return
        self.levels.add(block.levels)
        self.noise_sum += block.noise_sum
        self.noise_count += block.noise_count
        self.profile_sums[block.bins] += block.sums
        self.profile_counts[block.bins] += block.counts

    def noise_floor(self) -> float:
        """Mean intensity above the surface (0 when no voxel lies above a surface)."""
        return self.noise_sum / self.noise_count if self.noise_count else 0.0

    def background_bins(self, min_class_ratio: float = 4.0, min_lines: int = 20) -> np.ndarray | None:
        """Level bins classified as background, or None when no distinct background exists."""
        threshold = self.levels.otsu()
        if threshold is None:
            return None
        counts, centers = self.levels.counts, self.levels.centers
        low = centers <= np.log10(threshold)
        if counts[low].sum() < min_lines or counts[~low].sum() == 0:
            return None
        mean_low = np.average(centers[low], weights=counts[low])
        mean_high = np.average(centers[~low], weights=counts[~low])
        if mean_high - mean_low < np.log10(min_class_ratio):
            return None
        return np.nonzero(low)[0]

    def background_profile(self, bins: np.ndarray, min_lines: int = 5, extend: bool = True) -> np.ndarray | None:
        """Mean noise-subtracted depth profile of the background A-lines below their surface.

        Depths with fewer than ``min_lines`` contributing A-lines (above the
        highest background surface, typically) are filled by
        :func:`extend_profile`, or NaN if ``extend`` is false. Returns None
        when no depth is well sampled.
        """
        sums = self.profile_sums[bins].sum(axis=0)
        counts = self.profile_counts[bins].sum(axis=0)
        sampled = counts >= min_lines
        if not sampled.any():
            return None
        profile = np.divide(sums, counts, out=np.zeros_like(sums), where=sampled) - self.noise_floor()
        return extend_profile(profile, sampled) if extend else np.where(sampled, profile, np.nan)


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
    """Scale a focus profile to a maximum of 1 and clip it below at ``min_gain``.

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


def fit_gaussian_focus(profile: np.ndarray) -> tuple[float, float]:
    """Fit ``exp(-(z - z_f)^2 / (2 w^2))`` to a profile; return ``(z_f, w)`` in voxels.

    Weighted least squares on the logarithm of the positive samples (NaN and
    non-positive samples are ignored; weights = the profile squared, so the
    noisy tails count little).

    Examples
    --------
    >>> z = np.arange(100.0)
    >>> [round(v, 3) for v in fit_gaussian_focus(3 * np.exp(-(z - 40) ** 2 / (2 * 15**2)))]
    [40.0, 15.0]
    """
    profile = np.asarray(profile, np.float64)
    depth = np.nonzero(np.nan_to_num(profile) > 0)[0]
    if depth.size < 3:
        raise ValueError("focus profile has fewer than three positive samples")
    values = profile[depth]
    weights = values / values.max()
    design = np.stack([np.ones(depth.size), depth, depth.astype(np.float64) ** 2], axis=1)
    coef = np.linalg.lstsq(design * weights[:, None], np.log(values) * weights, rcond=None)[0]
    if coef[2] >= 0:
        raise ValueError("focus profile is not peaked (no Gaussian fits it)")
    width = np.sqrt(-1.0 / (2.0 * coef[2]))
    return float(-coef[1] / (2.0 * coef[2])), float(width)


def gaussian_profile(depth: int, focus_px: float, width_px: float) -> np.ndarray:
    """Gaussian focus profile over ``depth`` voxels (not normalized)."""
    z = np.arange(depth, dtype=np.float64)
    return np.exp(-((z - focus_px) ** 2) / (2.0 * width_px**2))
