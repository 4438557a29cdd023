"""Where to cut orthogonal views: through the middle of the tissue, never through a gap.

A plain centre index lands in an excluded slice's gap (all zeros) or in the
agarose beside the brain. :func:`tissue_centre` looks at how much signal
each plane holds along each axis and picks, among the planes holding at
least half the signal of the fullest one, the plane nearest the
signal-weighted centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A plane qualifies when it holds at least this fraction of the fullest plane's signal.
MIN_PLANE_SIGNAL = 0.5


def tissue_centre(volume) -> tuple[int, ...]:
    """Index ``(z, y, x)`` of a 3D array's planes through the middle of its tissue.

    Tissue is every finite voxel > 0. Works on numpy and dask arrays (one
    pass); pass a coarse pyramid level. Without any tissue, the array's
    centre.

    Examples
    --------
    >>> v = np.zeros((9, 4, 4)); v[:3] = 1; v[5:] = 1   # a gap at z = 3, 4
    >>> tissue_centre(v)[0] in (2, 5)
    True
    """
    return tuple(centre_index(profile) for profile in tissue_profiles(volume))


def orthogonal_planes(volume, index: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the ``(xy, xz, yz)`` planes of a 3D array through ``index``.

    The default index cuts through the middle of the tissue, never through an
    empty plane such as an excluded slice's gap (:func:`tissue_centre`).
    Works on numpy and dask arrays; pass a coarse pyramid level.

    Examples
    --------
    >>> [p.shape for p in orthogonal_planes(np.ones((2, 3, 4)))]
    [(3, 4), (2, 4), (2, 3)]
    """
    z, y, x = index if index is not None else tissue_centre(volume)
    return np.asarray(volume[z, :, :]), np.asarray(volume[:, y, :]), np.asarray(volume[:, :, x])


def tissue_profiles(volume) -> list[np.ndarray]:
    """Tissue voxels (> 0) in each plane, along each axis of ``volume`` (numpy or dask)."""
    counts = tissue_counts(volume)
    if hasattr(counts[0], "compute"):
        import dask

        counts = list(dask.compute(*counts))
    return [np.asarray(c, dtype=np.float64) for c in counts]


def tissue_counts(volume) -> list:
    """:func:`tissue_profiles` before it is computed: lazy for a dask array (to compute with other reductions)."""
    mask = volume > 0
    return [mask.sum(axis=tuple(a for a in range(mask.ndim) if a != axis)) for axis in range(mask.ndim)]


def centre_index(profile: Sequence[float]) -> int:
    """The plane nearest the weighted centre of ``profile`` among its well-filled planes.

    Examples
    --------
    >>> centre_index([0, 5, 5, 0, 0, 0, 5, 5])   # the centre (4) is in a gap
    2
    >>> centre_index([0, 0, 0])
    1
    """
    weights = np.nan_to_num(np.asarray(profile, dtype=np.float64))
    if weights.size == 0 or weights.max() <= 0:
        return weights.size // 2
    centre = float(np.average(np.arange(weights.size), weights=weights))
    candidates = np.flatnonzero(weights >= MIN_PLANE_SIGNAL * weights.max())
    return int(candidates[np.argmin(np.abs(candidates - centre))])
