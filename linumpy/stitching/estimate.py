"""Estimate every tile's position from the 2D projections of a mosaic grid.

Neighbouring tiles (right and down) are registered pairwise. A pair is
accepted when its NCC beats what unrelated content reaches: the same
registration run on random non-adjacent tile pairs gives the null
distribution, and its high percentile is the threshold. Accepted pairs go to
the global least-squares solve; tiles without accepted links are placed by
the stage model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from linumpy.stitching.global_solve import PairOffset, TileIndex, solve_positions
from linumpy.stitching.transform import PairRecord, TileTransform

logger = logging.getLogger(__name__)

#: Neighbour directions registered: down and right.
DIRECTIONS: tuple[TileIndex, ...] = ((1, 0), (0, 1))
#: Percentile of the null NCC distribution used as acceptance threshold.
NULL_PERCENTILE = 99.0
#: Non-adjacent pairs registered per direction for the null distribution.
NULL_SAMPLES = 20
#: Threshold used when the grid is too small to have non-adjacent pairs.
FALLBACK_THRESHOLD = 0.3
#: Default largest correction of the nominal offset, pixels.
DEFAULT_MAX_SHIFT_PX = 20.0


def nominal_offset(direction: TileIndex, tile_step_px: Sequence[float]) -> tuple[float, float]:
    """Return the stage's ``(y, x)`` offset between tiles ``direction`` apart."""
    return (direction[0] * float(tile_step_px[0]), direction[1] * float(tile_step_px[1]))


def neighbour_pairs(tiles: Sequence[TileIndex]) -> list[tuple[TileIndex, TileIndex]]:
    """Return the (tile, right or down neighbour) pairs among ``tiles``, sorted."""
    present = set(tiles)
    return [
        (tile, (tile[0] + d[0], tile[1] + d[1]))
        for tile in sorted(present)
        for d in DIRECTIONS
        if (tile[0] + d[0], tile[1] + d[1]) in present
    ]


def null_ncc_threshold(
    projections: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
    max_shift_px: float,
    seed: int = 0,
    n_samples: int = NULL_SAMPLES,
    percentile: float = NULL_PERCENTILE,
) -> float:
    """NCC that registering unrelated tiles reaches, from non-adjacent pairs.

    For each direction, up to ``n_samples`` ordered tile pairs that are not
    neighbours in that direction are registered exactly like real
    neighbours; the ``percentile`` of their NCCs is returned.

    Parameters
    ----------
    projections : mapping
        ``(row, col) -> 2D projection`` of every present tile.
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step.
    max_shift_px : float
        As for :func:`~linumpy.stitching.pairwise.register_pair`.
    seed : int
        Seed of the pair sampling (deterministic).
    n_samples : int
        Pairs per direction.
    percentile : float
        Percentile of the null NCCs returned.

    Returns
    -------
    float
        The threshold, or :data:`FALLBACK_THRESHOLD` without non-adjacent pairs.
    """
    from linumpy.stitching.pairwise import register_pair

    rng = np.random.default_rng(seed)
    tiles = sorted(projections)
    scores = []
    for direction in DIRECTIONS:
        candidates = [
            (a, b) for a in tiles for b in tiles
            if (b[0] - a[0], b[1] - a[1]) not in (direction, (0, 0))
        ]
        if not candidates:
            continue
        chosen = rng.choice(len(candidates), size=min(n_samples, len(candidates)), replace=False)
        offset = nominal_offset(direction, tile_step_px)
        for k in sorted(chosen):
            a, b = candidates[k]
            scores.append(register_pair(projections[a], projections[b], offset, max_shift_px,
                                        refine=False).ncc)
    if not scores:
        logger.info("no non-adjacent tiles for a null distribution; NCC threshold %.2f",
                    FALLBACK_THRESHOLD)
        return FALLBACK_THRESHOLD
    return float(np.percentile(scores, percentile))


def estimate_transform(
    projections: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
    max_shift_px: float = DEFAULT_MAX_SHIFT_PX,
    seed: int = 0,
    progress: bool = False,
) -> TileTransform:
    """Estimate tile positions from the 2D projection of every present tile.

    Parameters
    ----------
    projections : mapping
        ``(row, col) -> 2D array``; all of the same shape.
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step between neighbouring tiles.
    max_shift_px : float
        Largest correction of the nominal offset accepted for a pair.
    seed : int
        Seed of the null-distribution sampling.
    progress : bool
        Show a progress bar.

    Returns
    -------
    TileTransform
        Positions of all tiles in ``projections``.
    """
    from linumpy.stitching.pairwise import register_pair

    tiles = sorted(projections)
    shapes = {projections[t].shape for t in tiles}
    if len(shapes) != 1:
        raise ValueError(f"all projections must have the same shape, got {sorted(shapes)}")
    # The registrations multiply small matrices: BLAS threads only add overhead.
    with threadpool_limits(limits=1, user_api="blas"):
        threshold = null_ncc_threshold(projections, tile_step_px, max_shift_px, seed)
        records, accepted = [], []
        for a, b in tqdm(neighbour_pairs(tiles), desc="register pairs", disable=not progress):
            direction = (b[0] - a[0], b[1] - a[1])
            result = register_pair(projections[a], projections[b],
                                   nominal_offset(direction, tile_step_px), max_shift_px)
            is_accepted = result.ncc > threshold
            records.append(PairRecord(a, b, result.offset, result.ncc, is_accepted))
            if is_accepted:
                accepted.append(PairOffset(a, b, result.offset, weight=result.ncc))
    logger.info("%d of %d neighbour pairs accepted (NCC threshold %.3f)",
                len(accepted), len(records), threshold)
    positions, model, kept = solve_positions(tiles, accepted, tile_step_px)
    kept_ids = {(p.a, p.b) for p in kept}
    records = [
        PairRecord(r.a, r.b, r.offset, r.ncc, r.accepted and (r.a, r.b) in kept_ids)
        for r in records
    ]
    return TileTransform(
        tile_shape=next(iter(shapes)),
        tile_step_px=(float(tile_step_px[0]), float(tile_step_px[1])),
        positions={t: (float(p[0]), float(p[1])) for t, p in positions.items()},
        stage_model=model,
        ncc_threshold=threshold,
        pairs=tuple(records),
    )
