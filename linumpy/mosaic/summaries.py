"""The per-tile summary the stitcher needs of every tile before registration.

A tile's summary is its average intensity projection (float32, the mean over
depth accumulated in float64) and its least plane mean (the smallest mean of
one depth plane, float64: the fusion flat field's noise floor is their median
over the tiles). The mosaic grid computes it from each tile as it writes it
(the projection is the tile's part of the AIP, the least plane means an
attribute of the AIP, :data:`LEAST_PLANE_MEANS_ATTRIBUTE`), so that the stitcher
need not read every tile again; the stitcher computes it from the tiles it
reads back with the same function when the AIP cannot be used. Both see the
same stored values in the same C layout, so both give the same bits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Attribute of the mosaic grid's AIP: ``(rows, cols)`` nested list of each tile's least plane mean
#: (``None`` for a missing tile).
LEAST_PLANE_MEANS_ATTRIBUTE = "tile_least_plane_means"


@dataclass(frozen=True)
class TileSummary:
    """One tile's ``(y, x)`` float32 average intensity projection and least plane mean."""

    projection: np.ndarray
    least_plane_mean: float


def tile_summary(tile: np.ndarray) -> TileSummary:
    """Summarise one ``(z, y, x)`` tile as stored (its stored dtype).

    The tile is made C-contiguous first (no copy when it is): numpy's summation
    order, hence the last bits of a mean, follows the memory layout.

    Examples
    --------
    >>> s = tile_summary(np.arange(8, dtype=np.float32).reshape(2, 2, 2))
    >>> s.projection.tolist(), s.least_plane_mean
    ([[2.0, 3.0], [4.0, 5.0]], 1.5)
    """
    tile = np.ascontiguousarray(tile)
    projection = tile.mean(axis=0, dtype=np.float64).astype(np.float32)
    return TileSummary(projection, float(tile.mean(axis=(1, 2), dtype=np.float64).min()))


def least_plane_means_attribute(least_plane_means: Mapping[tuple[int, int], float],
                                grid_shape: Sequence[int]) -> list[list[float | None]]:
    """The AIP attribute holding ``tile -> least plane mean``: a ``(rows, cols)`` nested list, ``None`` where no tile.

    Examples
    --------
    >>> least_plane_means_attribute({(0, 1): 0.25}, (1, 2))
    [[None, 0.25]]
    """
    return [[least_plane_means.get((r, c)) for c in range(grid_shape[1])] for r in range(grid_shape[0])]
