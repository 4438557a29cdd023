"""Tile positions from pairwise offsets: stage model and weighted least squares.

Every accepted pair ``(a, b)`` says ``position(b) - position(a) = offset``
with a weight (its NCC). All pairs are solved together, loops included, so
errors are spread instead of accumulated along a spanning tree. The stage
model (one affine map from the tile index ``(row, col)`` to a position) is a
weak prior on every tile: it fixes the global translation and places tiles
without any reliable link (empty agarose) where the stage put them. The pair
with the largest residual is dropped and the system solved again until every
residual is small.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

TileIndex = tuple[int, int]

#: Weight of the stage-model prior relative to a pair of NCC 1.
PRIOR_WEIGHT = 1e-3
#: Pairs are pruned while the largest residual exceeds this many pixels.
MAX_RESIDUAL_PX = 1.5
#: A fitted step differing from the nominal one by more than this is reported.
STEP_TOLERANCE = 0.01


@dataclass(frozen=True)
class PairOffset:
    """Measured offset ``position(b) - position(a)`` of two tiles, in pixels."""

    a: TileIndex
    b: TileIndex
    offset: tuple[float, float]
    weight: float


@dataclass(frozen=True)
class StageModel:
    """Affine map from tile index to the ``(y, x)`` pixel position of its origin.

    ``position(row, col) = origin + row * row_step + col * col_step``.
    """

    origin: tuple[float, float]
    row_step: tuple[float, float]
    col_step: tuple[float, float]

    def position(self, tile: TileIndex) -> np.ndarray:
        """Return the model position of ``tile`` as a ``(y, x)`` float array."""
        return (
            np.asarray(self.origin)
            + tile[0] * np.asarray(self.row_step)
            + tile[1] * np.asarray(self.col_step)
        )

    @classmethod
    def nominal(cls, tile_step_px: Sequence[float]) -> StageModel:
        """Return the model of a regular grid with the given ``(y, x)`` step."""
        return cls(origin=(0.0, 0.0), row_step=(float(tile_step_px[0]), 0.0),
                   col_step=(0.0, float(tile_step_px[1])))


def fit_stage_model(pairs: Sequence[PairOffset], tile_step_px: Sequence[float]) -> StageModel:
    """Fit the row and column steps of the stage model to measured offsets.

    Each pair contributes ``offset = d_row * row_step + d_col * col_step``;
    the two steps are the weighted least-squares solution. A step that no
    pair constrains keeps its nominal value.

    Parameters
    ----------
    pairs : sequence of PairOffset
        Accepted pairs.
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step between neighbouring tiles.

    Returns
    -------
    StageModel
        With origin ``(0, 0)``.
    """
    nominal = StageModel.nominal(tile_step_px)
    steps = {"row_step": np.asarray(nominal.row_step), "col_step": np.asarray(nominal.col_step)}
    if pairs:
        design = np.array([[p.b[0] - p.a[0], p.b[1] - p.a[1]] for p in pairs], dtype=float)
        offsets = np.array([p.offset for p in pairs], dtype=float)
        root_weights = np.sqrt(np.array([p.weight for p in pairs], dtype=float))[:, None]
        constrained = [name for name, column in zip(steps, design.T) if column.any()]
        columns = [list(steps).index(name) for name in constrained]
        solution, *_ = np.linalg.lstsq(
            design[:, columns] * root_weights, offsets * root_weights, rcond=None
        )
        steps.update(zip(constrained, solution))
    return StageModel(
        origin=(0.0, 0.0),
        row_step=tuple(float(v) for v in steps["row_step"]),
        col_step=tuple(float(v) for v in steps["col_step"]),
    )


def warn_if_steps_differ(model: StageModel, tile_step_px: Sequence[float]) -> None:
    """Log a warning for each fitted step more than 1 % away from the nominal step."""
    for name, step, axis in (("row", model.row_step, 0), ("col", model.col_step, 1)):
        fitted, expected = float(np.linalg.norm(step)), float(tile_step_px[axis])
        if expected > 0 and abs(fitted - expected) > STEP_TOLERANCE * expected:
            logger.warning(
                "fitted %s step %.2f px differs from the nominal step %.2f px by %+.1f%%",
                name, fitted, expected, 100 * (fitted / expected - 1),
            )


def _least_squares_positions(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    model: StageModel,
    prior_weight: float,
) -> np.ndarray:
    """Solve the weighted normal equations; returns ``(n_tiles, 2)`` positions."""
    from scipy import sparse  # imported here: scripts that only build a parser start fast
    from scipy.sparse.linalg import spsolve

    index = {tile: i for i, tile in enumerate(tiles)}
    n = len(tiles)
    rows, cols, values = [], [], []
    right = np.zeros((n, 2))
    for pair in pairs:
        i, j, w = index[pair.a], index[pair.b], pair.weight
        rows += [i, i, j, j]
        cols += [i, j, i, j]
        values += [w, -w, -w, w]
        right[j] += w * np.asarray(pair.offset)
        right[i] -= w * np.asarray(pair.offset)
    rows += list(range(n))
    cols += list(range(n))
    values += [prior_weight] * n
    right += prior_weight * np.array([model.position(t) for t in tiles]).reshape(n, 2)
    normal = sparse.csc_matrix((values, (rows, cols)), shape=(n, n))
    return np.column_stack([spsolve(normal, right[:, axis]) for axis in range(2)]).reshape(n, 2)


def _residuals(
    positions: np.ndarray, tiles: Sequence[TileIndex], pairs: Sequence[PairOffset]
) -> np.ndarray:
    """Euclidean residual of every pair given the positions."""
    index = {tile: i for i, tile in enumerate(tiles)}
    return np.array(
        [
            np.linalg.norm(positions[index[p.b]] - positions[index[p.a]] - np.asarray(p.offset))
            for p in pairs
        ]
    )


def solve_positions(
    tiles: Iterable[TileIndex],
    pairs: Sequence[PairOffset],
    tile_step_px: Sequence[float],
    prior_weight: float = PRIOR_WEIGHT,
    max_residual_px: float = MAX_RESIDUAL_PX,
) -> tuple[dict[TileIndex, np.ndarray], StageModel, list[PairOffset]]:
    """Return the position of every tile from the accepted pairwise offsets.

    Parameters
    ----------
    tiles : iterable of (row, col)
        Tiles to place (all present tiles, linked or not).
    pairs : sequence of PairOffset
        Accepted pairs between those tiles.
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step, used where no pair constrains the stage model.
    prior_weight : float
        Weight of each tile's pull towards the stage model.
    max_residual_px : float
        The worst pair is removed, one at a time, while its residual exceeds
        this.

    Returns
    -------
    positions : dict
        ``(row, col) -> array([y, x])``; the global translation is that of the
        stage model (origin ``(0, 0)``).
    model : StageModel
        Fitted to the pairs that were kept.
    kept : list of PairOffset
        Pairs that survived the pruning.

    Examples
    --------
    >>> pairs = [PairOffset((0, 0), (0, 1), (1.0, 90.0), 1.0)]
    >>> positions, model, kept = solve_positions([(0, 0), (0, 1), (1, 0)], pairs, (90, 90))
    >>> [round(float(v), 2) for v in positions[(1, 0)]]
    [90.0, 0.0]
    """
    tiles = sorted(set(tiles))
    kept = list(pairs)
    model = fit_stage_model(_median_consistent(kept), tile_step_px)
    while True:
        positions = _least_squares_positions(tiles, kept, model, prior_weight)
        if not kept:
            break
        residuals = _residuals(positions, tiles, kept)
        worst = int(np.argmax(residuals))
        if residuals[worst] <= max_residual_px:
            break
        logger.debug("dropping pair %s-%s (residual %.2f px)", kept[worst].a, kept[worst].b,
                     residuals[worst])
        del kept[worst]
    refitted = fit_stage_model(kept, tile_step_px)
    if refitted != model:
        model = refitted
        positions = _least_squares_positions(tiles, kept, model, prior_weight)
    warn_if_steps_differ(model, tile_step_px)
    return {tile: positions[i] for i, tile in enumerate(tiles)}, model, kept


def _median_consistent(pairs: Sequence[PairOffset]) -> list[PairOffset]:
    """Pairs whose offset is within MAX_RESIDUAL_PX * 2 of their direction's median.

    Used only for the initial stage model, so that a few wrong pairs do not
    bias the prior before pruning.
    """
    by_direction: dict[TileIndex, list[PairOffset]] = {}
    for pair in pairs:
        by_direction.setdefault((pair.b[0] - pair.a[0], pair.b[1] - pair.a[1]), []).append(pair)
    consistent = []
    for group in by_direction.values():
        median = np.median(np.array([p.offset for p in group]), axis=0)
        consistent += [
            p for p in group if np.linalg.norm(np.asarray(p.offset) - median) <= 2 * MAX_RESIDUAL_PX
        ]
    return consistent
