"""How much of each slice's depth the stack averages with the slices below it, and with what weight.

Two consecutive slices image the tissue below a cut twice, each with its own
speckle: averaging the two images where both image it well raises the
volume's NCC with the tissue; a slice's deep planes, its worst compensated
(noise floor divided by the transmission, the compensation's end-of-range
field), should not be let in at the weight of the slice below's top planes.

Each pair's overlap is measured plane by plane on the two placed, gained
images of the same tissue (:func:`plane_measures`): after dividing each plane
by its mean, each image's error variance is its variance less the covariance
the two share (the structure: their noise is what they do not share), the
upper (deeper) image's level offset from the lower's counted on it as a bias.
Per slice these errors form a profile along its depth (:func:`error_profiles`);
the assembly weighs each plane by its inverse (an inverse-variance mean:
equal where both slices image the tissue equally well, falling where one's
deep planes are noise), and a slice is kept below its blend overlap only as
deep as it still carries :data:`MIN_SHARE` of the weight against the slice
below (:func:`averaged_stop`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Smallest weight share (against the next slice's plane at the same depth) a slice's plane keeps to be
#: averaged in below its blend overlap; deeper planes are dropped.
MIN_SHARE = 0.2
#: Planes over which an error profile is smoothed (a running mean, the nearest value repeated at the ends).
PROFILE_SMOOTH_PLANES = 5
#: Floor of an error variance (relative to the plane mean's square): two images nearly alike weigh alike.
ERROR_FLOOR = 1e-4
#: The overlap is measured on the coarsest pyramid level at least this many pixels wide (block-averaged to
#: between one and two times this size), a few planes at a time.
MEASURE_SIZE_PX = 256
#: Planes read at a time while measuring an overlap.
MEASURE_BATCH_PLANES = 16
#: A stack is averaged only when its overlaps' median agreement (the NCC of the two images, mean over each
#: overlap's planes) is below this: images that share less are speckle-dominated (foreign ``odd2``, ``deep``,
#: ``ha``: 0.40-0.66 per pair, medians 0.43-0.65, gains +0.001-0.015); images that agree better differ by what
#: is not independent speckle (the simulator's matrix, where the same structure decays and blurs with depth:
#: medians 0.74-0.84, 0.69-0.94 per pair; averaged there it lost 0.002-0.007), which the variance split
#: (:func:`plane_measures`) reads as shared and would weigh up.
MAX_AGREEMENT = 0.7
#: Largest level offset (absolute log ratio of the plane means, after gains) a slice's plane may have from the
#: slice that owns its depth (the shallowest slice covering it) to be averaged in below its blend overlap: the
#: offset of the averaged planes is the averaged volume's plane-mean error, whatever their weight.
LEVEL_TOLERANCE = 0.03


@dataclass(frozen=True)
class OverlapErrors:
    """One pair's overlap measured plane by plane (:func:`plane_measures`).

    Attributes
    ----------
    upper_first, lower_first : int
        Useful-range plane of the upper (previous) and lower (current) slice where the measure starts; plane
        ``j`` of the arrays is ``upper_first + j`` of the upper and ``lower_first + j`` of the lower.
    upper, lower : numpy.ndarray
        Error variance of each image per plane, relative to the square of its plane mean, at the output
        voxel size.
    agreement : numpy.ndarray
        The two images' NCC per plane.
    level : numpy.ndarray, optional
        The upper image's level offset from the lower's per plane (:func:`plane_measures`); None: not measured.
    """

    upper_first: int
    lower_first: int
    upper: np.ndarray
    lower: np.ndarray
    agreement: np.ndarray
    level: np.ndarray | None = None


def plane_measures(upper: np.ndarray, lower: np.ndarray, noise_scale: float = 1.0,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per plane, the error variance of two images of the same tissue, their NCC and their level offset.

    Each plane is divided by its mean; the covariance of the two is the
    structure they share, each one's variance beyond it its own error
    (``var - cov``). ``noise_scale`` converts the variance of the measured
    pixels to that of an output voxel (white noise: the pixel area over the
    voxel's). The upper image's squared relative level offset from the
    lower's is added to its error (the lower, shallower in its slice, is the
    reference); the offset is also returned as the log ratio of the plane
    means. Computed one plane at a time in float64 (:func:`_plane_moments`).

    Parameters
    ----------
    upper, lower : numpy.ndarray
        ``(z, y, x)`` planes of the same tissue, the same shape.
    noise_scale : float
        Factor on the variances.

    Returns
    -------
    tuple of numpy.ndarray
        ``(upper_error, lower_error, agreement, level)``, one value per
        plane; NaN where a plane's mean is not positive.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tissue = 1 + 0.3 * rng.standard_normal((1, 64, 64))
    >>> a = tissue + 0.1 * rng.standard_normal(tissue.shape)
    >>> b = tissue + 0.3 * rng.standard_normal(tissue.shape)
    >>> [round(float(e[0]), 2) for e in plane_measures(a, b)[:2]]
    [0.01, 0.09]
    >>> plane_measures(np.full((2, 4, 4), 1.1), np.ones((2, 4, 4)))[3].round(4).tolist()
    [0.0953, 0.0953]
    """
    mu, mv, cu, cv, shared = _plane_moments(upper, lower)
    valid = (mu > 0) & (mv > 0)
    bias = (mu / np.where(valid, mv, 1.0) - 1.0) ** 2
    upper_error = np.maximum((cu - shared) * noise_scale + bias, ERROR_FLOOR)
    lower_error = np.maximum((cv - shared) * noise_scale, ERROR_FLOOR)
    agreement = shared / np.sqrt(np.maximum(cu * cv, 1e-30))
    nan = np.where(valid, 1.0, np.nan)
    level = np.where(valid, np.log(np.where(valid, mu, 1.0) / np.where(valid, mv, 1.0)), np.nan)
    return upper_error * nan, lower_error * nan, agreement * nan, level


def _plane_moments(upper: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per plane, the means of ``upper`` and ``lower``, and the mean squares and mean product of each plane
    divided by its mean less 1 (by 1 where either mean is not positive), in float64.

    One plane at a time through three float64 buffers of a plane (no float64 copy of the planes, no temporary
    of their size): the same operations on the same values per plane, so the same bits, as on the whole
    ``(z, y * x)`` arrays reduced along their rows.
    """
    size = upper[0].size
    moments = np.empty((5, len(upper)))
    u, v, work = np.empty(size), np.empty(size), np.empty(size)
    for k, (first, second) in enumerate(zip(upper, lower, strict=True)):
        u[:], v[:] = first.reshape(-1), second.reshape(-1)
        mu, mv = u.mean(), v.mean()
        valid = mu > 0 and mv > 0
        np.subtract(np.divide(u, mu if valid else 1.0, out=u), 1.0, out=u)
        np.subtract(np.divide(v, mv if valid else 1.0, out=v), 1.0, out=v)
        moments[:, k] = (mu, mv, np.multiply(u, u, out=work).mean(), np.multiply(v, v, out=work).mean(),
                         np.multiply(u, v, out=work).mean())
    return tuple(moments)


def owner_levels(depth: int, below: Sequence[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """A slice's level offset, per useful plane, from the slice that owns each depth (the deepest slice below
    whose top is at or above it: the shallowest image of it), chained over the consecutive pairs.

    ``below`` gives each consecutive slice below as ``(offset, first, level)``:
    its useful plane 0 at this slice's plane ``offset``; ``level`` the pair's
    (the slice above it against it) :attr:`OverlapErrors.level`, its plane
    ``j`` at the upper slice's useful plane ``first + j`` (planes beyond the
    measure take the nearest value), smoothed as the error profiles
    (:data:`PROFILE_SMOOTH_PLANES`). Planes above the first slice below: 0.

    Examples
    --------
    >>> owner_levels(6, [(2, 2, np.full(4, 0.1)), (4, 2, np.full(4, -0.02))]).round(3).tolist()
    [0.0, 0.0, 0.1, 0.1, 0.08, 0.08]
    """
    planes = np.arange(depth, dtype=np.float64)
    total = np.zeros(depth)
    previous = 0
    for offset, first, level in below:
        covered = planes >= offset
        good = np.flatnonzero(np.isfinite(level))
        if not good.size:
            return np.full(depth, np.nan)
        smooth = ndimage.uniform_filter1d(np.interp(np.arange(len(level)), good, level[good]),
                                          PROFILE_SMOOTH_PLANES, mode="nearest")
        # the pair (slice above ``offset``, this one): the upper slice's plane is ``planes - previous``
        total[covered] += np.interp(planes[covered] - previous - first, np.arange(len(level)), smooth)
        previous = offset
    return total


def error_profiles(depths: Sequence[int], overlaps: Sequence[OverlapErrors | None],
                   ) -> list[np.ndarray | None]:
    """Each slice's error along its useful depth, from its overlaps with the slices above and below.

    ``overlaps[k]`` is the pair ``(k - 1, k)`` (None: not a pair, or not
    measured). Where both pairs measure a plane their errors are averaged;
    planes neither measures take the nearest measured value; the profile is
    smoothed over :data:`PROFILE_SMOOTH_PLANES`. None for a slice no pair
    measures.

    Examples
    --------
    >>> pair = OverlapErrors(2, 0, np.array([4.0, 4.0]), np.array([1.0, 1.0]), np.ones(2))
    >>> [p.tolist() for p in error_profiles([4, 4], [None, pair])]
    [[4.0, 4.0, 4.0, 4.0], [1.0, 1.0, 1.0, 1.0]]
    """
    sums = [np.zeros(n) for n in depths]
    counts = [np.zeros(n) for n in depths]
    for k, pair in enumerate(overlaps):
        if pair is None:
            continue
        for index, first, errors in ((k - 1, pair.upper_first, pair.upper), (k, pair.lower_first, pair.lower)):
            planes = np.arange(first, first + len(errors))
            good = (planes >= 0) & (planes < depths[index]) & np.isfinite(errors)
            np.add.at(sums[index], planes[good], errors[good])
            np.add.at(counts[index], planes[good], 1.0)
    profiles = []
    for total, count in zip(sums, counts, strict=True):
        measured = np.flatnonzero(count)
        if not measured.size:
            profiles.append(None)
            continue
        filled = np.interp(np.arange(len(total)), measured, total[measured] / count[measured])
        profiles.append(ndimage.uniform_filter1d(filled, PROFILE_SMOOTH_PLANES, mode="nearest"))
    return profiles


def averaged_stop(upper: np.ndarray, below: Sequence[tuple[int, np.ndarray]], kept_stop: int,
                  levels: np.ndarray | None = None) -> int:
    """The upper slice's useful plane (exclusive) down to which it is averaged with the slices below.

    From ``kept_stop`` (its blend overlap's end) down, a plane is kept while
    the slices below still cover it and it carries at least
    :data:`MIN_SHARE` of the weight of the slices averaged there (its own
    inverse error against the sum of theirs); never above ``kept_stop``.
    ``below`` gives each slice below as ``(offset, errors)``: its useful
    plane 0 is the upper's plane ``offset``, ``errors`` its profile down to
    its last assembled plane.

    Examples
    --------
    >>> averaged_stop(np.array([1, 1, 1, 1, 1, 9, 9.0]), [(2, np.ones(5))], 3)
    5
    >>> averaged_stop(np.array([1, 1, 1, 1, 1, 9, 9.0]), [(2, np.ones(5)), (3, np.full(4, 0.2))], 3)
    3
    """
    stop = kept_stop
    while stop < len(upper):
        others = [1 / errors[stop - offset] for offset, errors in below if 0 <= stop - offset < len(errors)]
        if not others or (1 / upper[stop]) / (1 / upper[stop] + sum(others)) < MIN_SHARE:
            break
        if levels is not None and not abs(levels[stop]) <= LEVEL_TOLERANCE:
            break
        stop += 1
    return stop

