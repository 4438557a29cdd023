"""The speckle frames a slice averages, read from its tissue's local contrast; the compensation's lateral average
narrowed by them.

The compensation's tail sums (:func:`linumpy.intensity.attenuation.edge_aware_tails`) are averaged laterally
to take the speckle out of the gain ``T[0] / T[k]``; the average also mixes neighbouring tissues, and their
sums decay at different rates: the fast tissue is lent a slower decay (under-compensated, more so deeper), the
slow one a faster decay (over-compensated). On the independent generator's ``odd2`` 487 (three frames averaged
per B-scan) the regions' levels spread from 0.906 (fibres, 11 mm^-1) to 1.064 (grey 3 mm^-1) of the tissue's,
growing with depth below the cut (``benchmarks/README.md``, *region12*). A signal that averages ``N`` frames has
``1 / N`` of one frame's speckle variance: the same noise in the sums needs ``1 / N`` of the A-lines, a
standard deviation ``1 / sqrt(N)`` as wide.

``N`` is read on the slice itself: for gamma-distributed speckle of ``N`` frames the local mean squared over the
local variance is ``N``; measured in boxes of :data:`BOX` voxels over the tissue just below the plane fitted to
the surface, in the slice's central :data:`SAMPLE_LINES` x :data:`SAMPLE_LINES` A-lines. The tissue's texture
and speckle correlated between voxels add variance: they lower the estimate, so the average is narrowed less,
never more. On the generator's kinds one frame reads 1.30-1.41 (``ha``: the tiles' feathered overlaps average
two draws), two 1.82-2.05 (``c185``) and 2.29-2.48 (``deep``), three 3.36-3.68 (``odd2``). Measured on full
runs, the narrowed average gains where three frames are averaged (``odd2`` 487) and loses where two are
(``c185`` 489, the sums' speckle then outweighs the tissues' mixing): a slice reading under
:data:`MULTI_FRAME` keeps the average of one frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from linumpy.intensity import surface

#: Lateral side of the central window sampled (A-lines).
SAMPLE_LINES = 128
#: Planes below the fitted surface plane sampled (first, stop): the tissue right below the cut.
SAMPLE_PLANES = (2, 22)
#: Side of the cubic boxes of the local mean and variance (voxels).
BOX = 5
#: Estimate from which the average is narrowed (between two frames' 2.48 and three frames' 3.36).
MULTI_FRAME = 2.9
#: A-lines of the window whose mean over the sampled planes reaches this fraction of the median of its brighter
#: half's means are tissue (the rest: gel, padding, the dark outside of the sample).
TISSUE_FRACTION = 0.5


def speckle_frames(volume: Any, plane: np.ndarray | None) -> float | None:
    """The frames of speckle averaged per voxel, estimated from the local contrast of the slice's tissue.

    Parameters
    ----------
    volume : array-like, shape (z, y, x)
        The slice (level 0, before any correction).
    plane : ndarray or None
        The plane fitted to the detected surface (``a + b y + c x``, voxels); None: no estimate.

    Returns
    -------
    float or None
        ``sum(m^2) / sum(v)`` over the sampled tissue voxels (``m`` and ``v`` the local mean and variance in
        boxes of :data:`BOX` voxels); None without a plane or without signal in the window.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> volume = rng.gamma(3.0, 1 / 3.0, (40, 64, 64)) * 100
    >>> round(speckle_frames(volume, np.array([5.0, 0.0, 0.0])), 1)
    3.0
    """
    if plane is None:
        return None
    n_z, n_y, n_x = np.shape(volume)
    y0, x0 = max(0, (n_y - SAMPLE_LINES) // 2), max(0, (n_x - SAMPLE_LINES) // 2)
    window = surface.plane_values(plane, (min(n_y, SAMPLE_LINES), min(n_x, SAMPLE_LINES)), y0, x0)
    first = int(np.clip(np.floor(window.min()) + SAMPLE_PLANES[0], 0, n_z))
    stop = int(np.clip(np.ceil(window.max()) + SAMPLE_PLANES[1], first, n_z))
    block = np.asarray(volume[first:stop, y0:y0 + window.shape[0], x0:x0 + window.shape[1]], np.float64)
    depth = np.arange(first, stop)[:, None, None] - window[None]
    sampled = (depth >= SAMPLE_PLANES[0]) & (depth < SAMPLE_PLANES[1])
    if not sampled.any():
        return None
    levels = np.where(sampled, block, 0).sum(axis=0) / np.maximum(sampled.sum(axis=0), 1)
    bright = levels[levels >= np.median(levels)]
    tissue = sampled & (levels >= TISSUE_FRACTION * np.median(bright))[None]
    tissue &= ndimage.binary_erosion(tissue, np.ones((BOX, 1, 1)), border_value=0)  # whole boxes along depth
    mean = ndimage.uniform_filter(block, BOX, mode="nearest")
    variance = np.maximum(ndimage.uniform_filter(block * block, BOX, mode="nearest") - mean * mean, 0)
    total = float(variance[tissue].sum())
    return float((mean[tissue] ** 2).sum() / total) if total > 0 else None


def narrowed_sigma(sigma_px: float, frames: float | None) -> float:
    """The lateral average's standard deviation for speckle of ``frames`` frames: ``sigma_px / sqrt(frames)``.

    ``sigma_px`` is the average for one frame; ``frames`` (:func:`speckle_frames`) under :data:`MULTI_FRAME`
    or None (not estimated): ``sigma_px`` unchanged; else rounded, at least 3.

    Examples
    --------
    >>> narrowed_sigma(2.0, 1.41), narrowed_sigma(2.0, 2.05), round(narrowed_sigma(2.0, 3.1), 3)
    (2.0, 2.0, 1.155)
    """
    if frames is None or frames < MULTI_FRAME:
        return sigma_px
    return sigma_px / float(np.sqrt(max(3, int(round(frames)))))
