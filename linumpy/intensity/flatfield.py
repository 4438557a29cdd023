"""Lateral illumination (flat-field) correction estimated across the tiles of a slice.

Every tile of a slice sees the same lateral illumination profile ``V(u, v)``
(vignetting of the scan lens), ``u, v`` the pixel inside the tile. We
estimate it from the tissue-masked AIP of the tiles, in the spirit of BaSiC
(Peng et al. 2017, Nat. Commun. 8:14836) but much simpler (no low-rank plus
sparse decomposition, no dark field):

1. each tile's AIP is divided by the median AIP of its tissue pixels (so
   bright and dim tiles weigh the same); tiles with less than
   ``min_tissue_fraction`` tissue are skipped;
2. the ratios are averaged over the tiles, pixel by pixel, tissue pixels only;
3. a quadratic polynomial in ``(u, v)`` is fitted to that average (least
   squares weighted by the number of tiles behind each pixel), which fills
   the pixels no tile saw as tissue and removes the remaining anatomy;
4. the fit is scaled to a mean of 1 over the tile and clipped below at
   ``min_gain``.

The corrected image is the image divided by the flat-field of the tile each
pixel belongs to (the tile whose centre is nearest, among the tiles covering it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class FlatFieldEstimator:
    """Average tissue-masked, per-tile-normalized AIPs of tiles of shape ``tile_yx``."""

    def __init__(self, tile_yx: tuple[int, int], min_tissue_fraction: float = 0.05) -> None:
        self.tile_yx = tuple(int(n) for n in tile_yx)
        self.min_tissue_fraction = min_tissue_fraction
        self.sums = np.zeros(self.tile_yx, np.float64)
        self.counts = np.zeros(self.tile_yx, np.int64)
        self.n_tiles = 0

    def add(self, aip: np.ndarray, tissue: np.ndarray, offset: tuple[int, int] = (0, 0)) -> None:
        """Add one tile's AIP and tissue mask; ``offset`` places a partial tile inside the tile frame."""
        tissue = tissue & (aip > 0)
        if tissue.sum() < self.min_tissue_fraction * self.sums.size:
            return
        ratio = aip / np.median(aip[tissue])
        region = tuple(slice(o, o + n) for o, n in zip(offset, aip.shape))
        self.sums[region] += np.where(tissue, ratio, 0.0)
        self.counts[region] += tissue
        self.n_tiles += 1

    def estimate(self, min_gain: float = 0.1) -> np.ndarray | None:
        """The flat-field (mean 1 over the tile), or None if too few pixels were seen."""
        seen = self.counts > 0
        if seen.sum() < 6:
            return None
        design = _quadratic_design(self.tile_yx)
        weights = np.sqrt(self.counts[seen])
        mean = self.sums[seen] / self.counts[seen]
        coefficients = np.linalg.lstsq(design[seen.ravel()] * weights[:, None], mean * weights, rcond=None)[0]
        field = (design @ coefficients).reshape(self.tile_yx)
        field /= field.mean()
        return np.maximum(field, min_gain).astype(np.float32)


def _quadratic_design(shape: tuple[int, int]) -> np.ndarray:
    """Columns ``1, u, v, u^2, uv, v^2`` over a tile, ``u, v`` in [-1, 1]."""
    u, v = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    u, v = u.ravel(), v.ravel()
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)


def flatfield_map(
    field: np.ndarray, origins: Sequence[tuple[int, int]], block_origin: tuple[int, int], block_shape: tuple[int, int]
) -> np.ndarray:
    """The flat-field gain of every pixel of a block of the slice.

    Parameters
    ----------
    field : ndarray, shape (ty, tx)
        Flat-field of one tile.
    origins : sequence of (int, int)
        (y, x) of every tile's first pixel in the slice.
    block_origin, block_shape : (int, int)
        The block of the slice to cover.

    Returns
    -------
    ndarray, shape block_shape, float32
        The gain of the covering tile whose centre is nearest; 1 outside every tile.

    Examples
    --------
    >>> f = np.array([[0.5, 2.0]], np.float32)
    >>> flatfield_map(f, [(0, 0), (0, 2)], (0, 1), (1, 4))
    array([[2. , 0.5, 2. , 1. ]], dtype=float32)
    """
    tile_y, tile_x = field.shape
    by, bx = block_origin
    gain = np.ones(block_shape, np.float32)
    best = np.full(block_shape, np.inf)
    yy = np.arange(by, by + block_shape[0])[:, None]
    xx = np.arange(bx, bx + block_shape[1])[None, :]
    for ty, tx in origins:
        y0, y1 = max(ty, by), min(ty + tile_y, by + block_shape[0])
        x0, x1 = max(tx, bx), min(tx + tile_x, bx + block_shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        rows, cols = slice(y0 - by, y1 - by), slice(x0 - bx, x1 - bx)
        distance = (yy[rows] - ty - (tile_y - 1) / 2) ** 2 + (xx[:, cols] - tx - (tile_x - 1) / 2) ** 2
        closer = distance < best[rows, cols]
        best[rows, cols] = np.where(closer, distance, best[rows, cols])
        gain[rows, cols] = np.where(closer, field[y0 - ty : y1 - ty, x0 - tx : x1 - tx], gain[rows, cols])
    return gain
