"""Attenuation measured through the overlap of two consecutive slices.

Slice ``k`` images, at its depth ``step`` below its cut (its placed step to
the next slice), the tissue that slice ``k + 1`` images from its own cut.
Before any attenuation compensation (focus corrected, noise floor
subtracted) both see the same voxels with the same reflectivity; slice
``k``'s light has in addition crossed the slab between the two cuts, twice.
So, per A-line, the ratio of the two

    previous / following = exp(-2 * integral of mu over the slab)

measures the slab's attenuation without any assumption on how the
reflectivity changes with depth: a per-A-line decay fit
(:func:`linumpy.intensity.attenuation.slope_attenuation`) reads a dark
region over a bright one as attenuation (the map's window stops at such a
change, :func:`linumpy.intensity.attenuation_map.window_attenuation`, but a
region thinner than its shortest window stays), the ratio does not. It assumes
that both slices have the same system gain after the focus correction
(the same instrument, normalised at the same reference depth) and that
they are registered (the stack's placement). The last slice of a stack
has no slice below it: it keeps the decay fit (the caller says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

#: Lateral Gaussian smoothing of both overlaps' depth means (pixels), against speckle.
SIGMA_PX = 4.0
#: Pixels whose neighbourhood holds signal in both slices over less than this fraction are not measured.
MIN_SUPPORT = 0.5
#: Tissue: smoothed level of the following slice at least this fraction of its median over supported pixels
#: (as the stack's boundary ratio without two classes of levels, :data:`linumpy.stack.gains.RATIO_TISSUE_FRACTION`;
#: with gel beside tissue the ratio now takes Otsu's brighter class, :func:`linumpy.stack.gains.overlap_tissue`,
#: not measured here): gel (and tissue as dim as
#: gel) is left out; 0.2 let the gel columns in (harsh seed 0: worst slice 0.13 -> 0.39 low).
TISSUE_FRACTION = 0.5
#: Fewest tissue pixels for a tissue mean; fewer: no estimate (flagged).
MIN_TISSUE_PIXELS = 64
#: A tissue column shorter than this fraction of the step is not measured (the ratio is then mostly noise).
MIN_PATH_FRACTION = 0.25


@dataclass(frozen=True)
class OverlapAttenuation:
    """Attenuation of the slab between two cuts, measured on their overlap (see the module docstring).

    Attributes
    ----------
    map_per_mm : ndarray, shape (y, x)
        Mean attenuation of each A-line's tissue between the cuts, NaN where not measured.
    tissue_mean_per_mm : float or None
        Mean over the tissue voxels of the measured A-lines (``sum(-ln ratio) / (2 dz sum path)``);
        None when fewer than :data:`MIN_TISSUE_PIXELS` tissue pixels.
    n_tissue_pixels : int
        A-lines the tissue mean is taken over.
    supported_fraction : float
        Their fraction of the overlap's pixels.
    path_um : float
        Mean tissue path through the slab (one way) of those A-lines.
    flags : list of str
        Why the estimate is missing or weak.
    """

    map_per_mm: np.ndarray
    tissue_mean_per_mm: float | None
    n_tissue_pixels: int
    supported_fraction: float
    path_um: float
    flags: list[str] = field(default_factory=list)

    def qc(self) -> dict:
        """QC fields: ``overlap_attenuation_per_mm``, ``..._pixels``, ``..._supported_fraction``, ``..._path_um``."""
        return {
            "overlap_attenuation_per_mm": None if self.tissue_mean_per_mm is None
            else round(self.tissue_mean_per_mm, 4),
            "overlap_attenuation_pixels": self.n_tissue_pixels,
            "overlap_attenuation_supported_fraction": round(self.supported_fraction, 4),
            "overlap_attenuation_path_um": round(self.path_um, 3),
        }


def held_signal(reference: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Voxels of an overlap where both ``(z, y, x)`` views hold signal, each plane's mask eroded by one pixel.

    A slice is flattened to the plane fitted to its cut, not to the cut
    itself: where the cut dips below that plane (its bumps, a residual of the
    tilt), the next slice's first planes below the plane lie above its cut and
    are empty (:func:`linumpy.intensity.surface.flatten_surface` fills 0), and
    so are the previous slice's deepest planes where its cut lay deep in the
    tiles (nothing below the imaged range). On the simulator's ``tilted``
    seed 20, 11-26 % of an overlap's A-lines held an empty plane in the next
    slice (their means 0.55-0.9 of the full ones'), 16-18 % in the previous.
    The erosion (within each plane, not across the window's edges) also drops
    the pixels next to such a hole, which at a coarser registration level are
    means of partly empty pixels.

    Examples
    --------
    >>> image = np.ones((2, 5, 5)); image[1, :, 3:] = 0  # the deepest plane empty on the right
    >>> held = held_signal(np.ones((2, 5, 5)), image)
    >>> bool(held[0].all()), held[1, 0].astype(int).tolist()
    (True, [1, 1, 0, 0, 0])
    """
    held = (reference > 0) & (image > 0)
    return _eroded_planes(held)


def _eroded_planes(mask: np.ndarray) -> np.ndarray:
    """Each plane of a ``(z, y, x)`` mask eroded by a 3 x 3 square, the outside held (``border_value=1``).

    The square is the product of a 3-pixel line along y and one along x, so
    the erosion is two passes of neighbour ANDs on the planes: the same mask
    as :func:`scipy.ndimage.binary_erosion` with ``structure`` ``ones((1, 3,
    3))`` (18 -> 0.9 ms on an 8 x 460 x 460 overlap of the stack).

    Examples
    --------
    >>> mask = np.ones((1, 4, 5), bool); mask[0, 1, 2] = False
    >>> _eroded_planes(mask)[0].astype(int).tolist()
    [[1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
    """
    rows = mask.copy()
    rows[:, 1:] &= mask[:, :-1]
    rows[:, :-1] &= mask[:, 1:]
    out = rows.copy()
    out[:, :, 1:] &= rows[:, :, :-1]
    out[:, :, :-1] &= rows[:, :, 1:]
    return out


def held_means(reference: np.ndarray, image: np.ndarray,
               held: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pixel's means over depth of two ``(z, y, x)`` overlap views over the planes both hold, and where any is.

    ``held``: default :func:`held_signal`. Returns ``(reference mean, image mean, supported)``, the means 0
    and ``supported`` False where no plane is held: a mean over planes one view does not hold (above the
    next slice's cut, below the previous slice's imaged range) reads low, and on the simulator's ``tilted``
    seed 20 it made the stack's lateral gain maps scale slab bottoms by up to 2x and its overlap attenuation
    read slices 2-4's tissue 21-23 % low (3-11 % over the planes held).

    Examples
    --------
    >>> image = np.ones((4, 6, 6)); image[2:, :, 3:] = 0  # the previous slice's deep planes empty on the right
    >>> upper, lower, supported = held_means(np.full((4, 6, 6), 2.0), image)
    >>> float(lower[0, 5]), float(upper[0, 5] / lower[0, 5]), bool(supported.all())
    (1.0, 2.0, True)
    """
    held = held_signal(reference, image) if held is None else held
    count = held.sum(axis=0)
    planes = np.maximum(count, 1)
    return ((np.where(held, reference, 0).sum(axis=0) / planes), (np.where(held, image, 0).sum(axis=0) / planes),
            count > 0)


def overlap_attenuation(
    previous: np.ndarray, following: np.ndarray, step_px: float, voxel_size_mm: float,
    tissue_top_px: np.ndarray | None = None, sigma_px: float = SIGMA_PX,
) -> OverlapAttenuation:
    """Attenuation of slice ``k``'s tissue between its cut and the next cut, from the overlap with slice ``k + 1``.

    Parameters
    ----------
    previous : ndarray, shape (n, y, x)
        Slice ``k``, uncompensated (focus corrected, noise floor subtracted), at the
        depths ``step_px + j`` below its cut, on the lateral grid of ``following``.
    following : ndarray, shape (n, y, x)
        Slice ``k + 1``, likewise, at the depths ``j`` below its own cut (the same voxels).
    step_px : float
        Depth of slice ``k + 1``'s cut below slice ``k``'s (axial voxels): the slab.
    voxel_size_mm : float
        Axial voxel size.
    tissue_top_px : ndarray, shape (y, x), optional
        Where slice ``k``'s tissue begins below its cut (voxels; NaN or absent: at the
        cut). The path through tissue is ``step_px - tissue_top_px``: gel above a
        surface that lies below the cut does not count.
    sigma_px : float
        Lateral smoothing (pixels).

    Returns
    -------
    OverlapAttenuation

    Examples
    --------
    >>> dz, mu, step = 0.0015, 5.0, 40
    >>> following = np.ones((8, 32, 32))
    >>> previous = following * np.exp(-2 * mu * dz * step)
    >>> round(overlap_attenuation(previous, following, step, dz).tissue_mean_per_mm, 3)
    5.0
    """
    lower, upper, held = held_means(np.asarray(following, np.float64), np.asarray(previous, np.float64))
    both = held.astype(np.float64)
    weight = ndimage.gaussian_filter(both, sigma_px, mode="constant")
    smooth_upper = ndimage.gaussian_filter(upper * both, sigma_px, mode="constant")
    smooth_lower = ndimage.gaussian_filter(lower * both, sigma_px, mode="constant")
    supported = (weight >= MIN_SUPPORT) & (smooth_upper > 0) & (smooth_lower > 0)
    top = np.zeros(upper.shape) if tissue_top_px is None else np.nan_to_num(np.clip(tissue_top_px, 0, None))
    path = step_px - top
    flags = []
    if supported.any():
        supported &= smooth_lower >= TISSUE_FRACTION * np.median(smooth_lower[supported])
    tissue = supported & (path >= MIN_PATH_FRACTION * step_px)
    log_ratio = np.log(smooth_upper[tissue] / smooth_lower[tissue])
    out = np.full(upper.shape, np.nan, np.float32)
    out[tissue] = -log_ratio / (2.0 * voxel_size_mm * path[tissue])
    n = int(tissue.sum())
    mean = None
    if n >= MIN_TISSUE_PIXELS:
        mean = float(-log_ratio.sum() / (2.0 * voxel_size_mm * path[tissue].sum()))
    else:
        flags.append(f"overlap attenuation not measured: {n} tissue pixels in the overlap (< {MIN_TISSUE_PIXELS})")
    return OverlapAttenuation(out, mean, n, n / max(1, upper.size),
                              float(path[tissue].mean() * voxel_size_mm * 1000) if n else 0.0, flags)
