"""Fusion of placed tiles into one output block.

Tiles are placed at integer positions (the estimated subpixel positions
rounded to the nearest pixel); each output block (a lateral box over a range
of depths) is computed from the parts of the tiles that cover it. Three rules
combine overlapping tiles:

- ``feather``: weighted mean, each tile's weight rising linearly from its
  edge over the width of the nominal overlap (no seams, flat fields stay flat);
- ``average``: plain mean;
- ``max``: maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from linumpy.stitching.options import BLEND_MODES, TileIndex

#: ``read_tile(tile, (y_slice, x_slice)) -> (z, h, w)`` part of one tile, at the
#: depths of the block being fused (the fusion does not modify it).
TileReader = Callable[[TileIndex, tuple[slice, slice]], np.ndarray]

#: ``correct(values, (y_slice, x_slice), out)``: writes the corrected ``(z, h, w)`` float32 ``values`` of that
#: part of a tile into ``out`` (e.g. :meth:`~linumpy.stitching.fusion_flatfield.FusionFlatField.correct_into`).
PartCorrection = Callable[[np.ndarray, tuple[slice, slice], np.ndarray], None]

#: A tile part is corrected, weighted and added plane group by plane group, each group at most this many bytes
#: (it stays in the core's cache between the element-wise passes; same arithmetic per voxel).
GROUP_BYTES = 256 * 2**10


@dataclass(frozen=True)
class Box:
    """Half-open lateral rectangle ``[y0, y1) x [x0, x1)`` of the output."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)


def feather_weights(tile_shape: Sequence[int], ramp_px: Sequence[float]) -> np.ndarray:
    """Return the feathering weight of each pixel of a tile.

    The weight is the product of one linear ramp per axis, rising from
    ``0.5 / ramp`` at the edge to 1 at ``ramp`` pixels from it, so that it is
    positive everywhere.

    Parameters
    ----------
    tile_shape : sequence of int
        ``(y, x)`` shape of a tile.
    ramp_px : sequence of float
        ``(y, x)`` ramp lengths, usually the nominal overlap (at least 1).

    Returns
    -------
    np.ndarray
        ``float32`` array of shape ``tile_shape``.

    Examples
    --------
    >>> feather_weights((3, 6), (1, 2))[1].tolist()
    [0.25, 0.75, 1.0, 1.0, 0.75, 0.25]
    """
    ramps = []
    for size, ramp in zip(tile_shape, ramp_px):
        ramp = max(float(ramp), 1.0)
        index = np.arange(size, dtype=np.float64)
        distance = np.minimum(index, size - 1 - index) + 0.5
        ramps.append(np.minimum(distance / ramp, 1.0))
    return np.outer(ramps[0], ramps[1]).astype(np.float32)


def placement_origins(
    positions: Mapping[TileIndex, Sequence[float]],
) -> tuple[dict[TileIndex, tuple[int, int]], tuple[float, float]]:
    """Round positions to pixels and translate them so the smallest is 0.

    Before rounding, all positions are shifted by the circular mean of their
    fractional parts, so that a common sub-pixel translation (which any
    estimate has) does not make neighbouring tiles round in opposite
    directions.

    Returns
    -------
    origins : dict
        ``(row, col) -> (y, x)`` integer origin of each tile in the output.
    translation : tuple of float
        What was subtracted from the positions: the common sub-pixel shift
        plus the integer shift to 0, so that each origin is
        ``round(position - translation)`` and ``position - translation`` is
        the tile's sub-pixel origin in the output frame.
    """
    values = np.array([np.asarray(p, dtype=float) for p in positions.values()])
    angles = 2 * np.pi * values
    common = np.arctan2(np.sin(angles).sum(axis=0), np.cos(angles).sum(axis=0)) / (2 * np.pi)
    common = np.round(common, 6) + 0.0  # whole-pixel positions: exactly 0, not -3e-15 (or -0.0)
    rounded = {t: np.rint(np.asarray(p, dtype=float) - common).astype(int) for t, p in positions.items()}
    low = np.min(np.array(list(rounded.values())), axis=0)
    origins = {t: (int(p[0] - low[0]), int(p[1] - low[1])) for t, p in rounded.items()}
    return origins, (float(low[0] + common[0]), float(low[1] + common[1]))


def output_extent(origins: Mapping[TileIndex, tuple[int, int]],
                  tile_shape: Sequence[int]) -> tuple[int, int]:
    """Return the ``(y, x)`` size covering every placed tile."""
    return (
        max(o[0] for o in origins.values()) + int(tile_shape[0]),
        max(o[1] for o in origins.values()) + int(tile_shape[1]),
    )


def tiles_in_box(box: Box, origins: Mapping[TileIndex, tuple[int, int]],
                 tile_shape: Sequence[int]) -> list[tuple[TileIndex, Box]]:
    """Return the tiles overlapping ``box`` and, for each, the box in tile pixels."""
    found = []
    for tile, (oy, ox) in sorted(origins.items()):
        y0, y1 = max(box.y0, oy), min(box.y1, oy + tile_shape[0])
        x0, x1 = max(box.x0, ox), min(box.x1, ox + tile_shape[1])
        if y0 < y1 and x0 < x1:
            found.append((tile, Box(y0 - oy, y1 - oy, x0 - ox, x1 - ox)))
    return found


def fuse_block(
    box: Box,
    depth: int,
    origins: Mapping[TileIndex, tuple[int, int]],
    tile_shape: Sequence[int],
    read_tile: TileReader,
    weights: np.ndarray,
    mode: str = "feather",
    correct: PartCorrection | None = None,
) -> np.ndarray:
    """Return the fused ``(depth, h, w)`` float32 block of the output at ``box``.

    Pixels covered by no tile are 0. Each tile part is corrected (``correct``),
    weighted and added to the block :data:`GROUP_BYTES` of planes at a time,
    through one small buffer: the element-wise passes run in the cache instead
    of over the whole part in memory (the same operations on every voxel).

    Parameters
    ----------
    box : Box
        Lateral extent of the block in output pixels.
    depth : int
        Number of z planes.
    origins : mapping
        Integer output origin of every tile (see :func:`placement_origins`).
    tile_shape : sequence of int
        ``(y, x)`` tile shape.
    read_tile : callable
        Returns the ``(depth, h, w)`` part of a tile for a ``(y, x)`` slice pair (not modified).
    weights : np.ndarray
        Per-pixel tile weights (see :func:`feather_weights`); used by ``feather``.
    mode : {"feather", "average", "max"}
        Fusion rule.
    correct : callable, optional
        Correction of every tile part before it is fused (:data:`PartCorrection`).
    """
    if mode not in BLEND_MODES:
        raise ValueError(f"unknown blend mode {mode!r}; expected one of {BLEND_MODES}")
    shape = (depth, *box.shape)
    if mode == "max":
        fused = np.full(shape, -np.inf, dtype=np.float32)
    else:
        fused = np.zeros(shape, dtype=np.float32)
        total_weight = np.zeros(box.shape, dtype=np.float32)
    for tile, part in tiles_in_box(box, origins, tile_shape):
        oy, ox = origins[tile]
        lateral = (slice(part.y0 + oy - box.y0, part.y1 + oy - box.y0),
                   slice(part.x0 + ox - box.x0, part.x1 + ox - box.x0))
        yx = (slice(part.y0, part.y1), slice(part.x0, part.x1))
        data = read_tile(tile, yx)
        weight = weights[yx] if mode == "feather" else None
        group = _planes_per_group(part.shape)
        buffer = np.empty((min(group, depth), *part.shape), np.float32)
        for z0 in range(0, depth, group):
            planes = slice(z0, min(z0 + group, depth))
            values = buffer[: planes.stop - z0]
            if correct is not None:
                correct(data[planes], yx, values)
            else:
                values[...] = data[planes]
            target = fused[(planes, *lateral)]
            if mode == "max":
                np.maximum(target, values, out=target)
                continue
            if weight is not None:
                values *= weight
            target += values
        if mode != "max":
            total_weight[lateral] += 1 if weight is None else weight
    if mode == "max":
        fused[np.isneginf(fused)] = 0.0
        return fused
    # Pixels no tile covers hold 0 and are divided by 1 (0 / 1 is 0): one plain division, no masked loop.
    total_weight[total_weight == 0] = 1
    group = _planes_per_group(box.shape)
    for z0 in range(0, depth, group):
        planes = fused[z0 : z0 + group]
        np.divide(planes, total_weight, out=planes)
    return fused


def _planes_per_group(plane_shape: tuple[int, int]) -> int:
    """Planes of float32 ``plane_shape`` in one group of at most :data:`GROUP_BYTES` (at least one)."""
    return max(1, GROUP_BYTES // (4 * plane_shape[0] * plane_shape[1]))
