"""Tile positions from pairwise offsets: stage model and weighted least squares.

Every accepted pair ``(a, b)`` says ``position(b) - position(a) = offset``
with a weight per axis (the inverse variance of its measurement), or a ``2 x 2`` information matrix for a
pair on an edge's ridge (:class:`PairOffset`, ``free_direction``). All pairs are solved together, loops included, so
errors are spread instead of accumulated along a spanning tree. The stage
model (one affine map from the tile index ``(row, col)`` to a position: step,
rotation and non-orthogonality of the two stage axes) is a weak prior on every tile: it fixes the global translation and places tiles
without any reliable link (empty agarose) where the stage put them. The pair
with the largest residual is dropped and the system solved again until every
residual is small.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse, special
from scipy.sparse.linalg import spsolve

from linumpy.stitching.options import TileIndex

logger = logging.getLogger(__name__)

#: Weight of the stage-model prior relative to the least weighted pair (so that
#: it never outweighs a pair, even one whose sub-pixel fit failed).
PRIOR_WEIGHT = 1e-3
#: Pairs are pruned while the largest residual exceeds this many pixels.
MAX_RESIDUAL_PX = 1.5
#: ... or while it exceeds this many of the pair's standard errors ...
MAX_NORMALIZED_RESIDUAL = 6.0
#: ... and this many pixels.
MIN_PRUNED_RESIDUAL_PX = 0.3
#: A step of the stage model is fitted only from at least this many pairs of its direction.
MIN_MODEL_PAIRS = 4
#: Pairs are used only if their group of linked tiles holds this fraction of all tiles.
MIN_GROUP_FRACTION = 0.25
#: ... and from at least this fraction of the neighbour pairs of its direction.
MIN_MODEL_FRACTION = 0.5
#: Two-sided probability that a step component fitted to pairs carrying only
#: random stage errors departs from the nominal one (Student-t test, see
#: :func:`model_significance`).
MODEL_FALSE_DEPARTURE = 1e-3
#: A fitted step differing from the nominal one by more than this is reported.
STEP_TOLERANCE = 0.01


@dataclass(frozen=True)
class PairOffset:
    """Measured offset ``position(b) - position(a)`` of two tiles, in pixels.

    ``weight`` is one number or one per axis ``(y, x)``. A pair that is not
    ``strong`` is kept only inside a loop of pairs (where the solve can check
    it), never as the only link between two groups of tiles.
    ``test_weight`` (default ``weight``) scales the pair's residual in the
    outlier test of :func:`solve_positions`. ``free_direction`` (a unit
    ``(y, x)`` vector) makes the link anisotropic: its evidence is a ridge
    along that direction (an edge, the aperture problem), so the pair
    locates the offset across it as its weight says, but along it only
    within the ridge's extent: ``ridge_variance`` (pixels squared) is added
    to its variance along the direction (infinite: the pair says nothing
    along it). Its residual along the direction is not tested; the tiles'
    positions there come from other pairs when they have any.
    """

    a: TileIndex
    b: TileIndex
    offset: tuple[float, float]
    weight: float | tuple[float, float]
    strong: bool = True
    test_weight: float | tuple[float, float] | None = None
    free_direction: tuple[float, float] | None = None
    ridge_variance: float = float("inf")

    def axis_weights(self) -> np.ndarray:
        """Return the ``(y, x)`` weights."""
        return np.broadcast_to(np.asarray(self.weight, dtype=float), (2,))

    def test_weights(self) -> np.ndarray:
        """Return the ``(y, x)`` weights of the outlier test."""
        weight = self.weight if self.test_weight is None else self.test_weight
        return np.broadcast_to(np.asarray(weight, dtype=float), (2,))

    def information(self) -> np.ndarray:
        """``2 x 2`` information matrix of the offset: the axis weights, with the ridge's
        variance added along the free direction."""
        weights = np.diag(self.axis_weights())
        if self.free_direction is None:
            return weights
        along = np.outer(self.free_direction, self.free_direction)
        across = np.eye(2) - along
        return across @ weights @ across + along / (1 / np.sum(along * weights) + self.ridge_variance)

    def projection(self) -> np.ndarray:
        """``2 x 2`` projection onto the directions the pair constrains (across its free direction)."""
        if self.free_direction is None:
            return np.eye(2)
        return np.eye(2) - np.outer(self.free_direction, self.free_direction)

    def constrained(self, vector: np.ndarray) -> np.ndarray:
        """``vector`` (a residual, ``(y, x)``) without its component along the free direction."""
        vector = np.asarray(vector, dtype=float)
        if self.free_direction is None:
            return vector
        return self.projection() @ vector


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


def fit_stage_model(pairs: Sequence[PairOffset], tile_step_px: Sequence[float],
                    tiles: Iterable[TileIndex] | None = None) -> StageModel:
    """Fit the row and column steps of the stage model to measured offsets.

    A step (a ``(y, x)`` vector: its length is the step, its direction the
    axis's rotation, the two together the non-orthogonality) is the mean
    offset of the pairs of its direction (anisotropic pairs left out: their
    offset along the free direction is not measured). Each component departs from the
    nominal grid only where the data say so: by more than
    :func:`model_significance` standard errors (the empirical scatter of
    the pairs over the square root of their number), from at least
    :data:`MIN_MODEL_PAIRS` pairs covering at least :data:`MIN_MODEL_FRACTION`
    of the neighbour pairs of ``tiles`` in that direction. With few pairs, or
    pairs from one corner of a drifting stage, a fitted step would move far
    tiles more than the stage errs.

    Parameters
    ----------
    pairs : sequence of PairOffset
        Accepted pairs.
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step between neighbouring tiles.
    tiles : iterable of (row, col), optional
        All tiles (default: those of ``pairs``).

    Returns
    -------
    StageModel
        With origin ``(0, 0)``.
    """
    nominal = StageModel.nominal(tile_step_px)
    steps = {(1, 0): np.asarray(nominal.row_step), (0, 1): np.asarray(nominal.col_step)}
    present = set(tiles) if tiles is not None else {t for p in pairs for t in (p.a, p.b)}
    for direction, step in steps.items():
        offsets = np.array([p.offset for p in pairs if (p.b[0] - p.a[0], p.b[1] - p.a[1]) == direction
                            and p.free_direction is None])
        possible = sum((t[0] + direction[0], t[1] + direction[1]) in present for t in present)
        if len(offsets) < max(MIN_MODEL_PAIRS, MIN_MODEL_FRACTION * possible):
            continue
        mean = offsets.mean(axis=0)
        standard_error = offsets.std(axis=0, ddof=1) / np.sqrt(len(offsets))
        departs = np.abs(mean - step) > model_significance(len(offsets)) * standard_error
        steps[direction] = np.where(departs, mean, step)
    return StageModel(
        origin=(0.0, 0.0),
        row_step=tuple(float(v) for v in steps[(1, 0)]),
        col_step=tuple(float(v) for v in steps[(0, 1)]),
    )


def model_significance(n_pairs: int) -> float:
    """Standard errors by which a step component fitted to ``n_pairs`` offsets must depart.

    The Student-t critical value with ``n_pairs - 1`` degrees of freedom at
    the two-sided probability :data:`MODEL_FALSE_DEPARTURE`: the standard
    error comes from the scatter of the same few offsets, which is itself
    uncertain (6 pairs: 6.9 standard errors, 12: 4.4, many: 3.3). A
    component of 6 pairs whose scatter happened to be small passed the
    former fixed 3 standard errors on random stage errors alone (stitching
    matrix, depth change, seed 2: a column step 1.8 px off in y, carried
    three columns out to tiles left on the stage, 4.5 px worse than the
    stage). Pairs along a row share tiles, so their offsets telescope and
    their mean varies less than the scatter says: the test errs on the side
    of the nominal step.

    Examples
    --------
    >>> round(model_significance(6), 2)
    6.87
    """
    # scipy.special's inverse Student-t CDF, which scipy.stats.t.ppf calls: the same value without the
    # ~0.9 s import of scipy.stats on the stitch's main thread.
    return float(special.stdtrit(n_pairs - 1, 1 - MODEL_FALSE_DEPARTURE / 2))


def warn_if_steps_differ(model: StageModel, tile_step_px: Sequence[float]) -> None:
    """Log a warning for each fitted step more than 1 % away from the nominal step."""
    for name, step, axis in (("row", model.row_step, 0), ("col", model.col_step, 1)):
        fitted, expected = float(np.linalg.norm(step)), float(tile_step_px[axis])
        if expected > 0 and abs(fitted - expected) > STEP_TOLERANCE * expected:
            logger.warning(
                "fitted %s step %.2f px differs from the nominal step %.2f px by %+.1f%%",
                name, fitted, expected, 100 * (fitted / expected - 1),
            )


def _normal_equations(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    model: StageModel,
    prior_weight: float,
    axis: int,
) -> tuple[sparse.csc_matrix, np.ndarray]:
    """Weighted normal matrix and right-hand side of one axis (pairs plus the stage-model prior)."""
    index = {tile: i for i, tile in enumerate(tiles)}
    n = len(tiles)
    rows, cols, values = list(range(n)), list(range(n)), [prior_weight] * n
    right = prior_weight * np.array([model.position(t)[axis] for t in tiles], float)
    for pair in pairs:
        i, j, w = index[pair.a], index[pair.b], pair.axis_weights()[axis]
        rows += [i, i, j, j]
        cols += [i, j, i, j]
        values += [w, -w, -w, w]
        right[j] += w * pair.offset[axis]
        right[i] -= w * pair.offset[axis]
    return sparse.csc_matrix((values, (rows, cols)), shape=(n, n)), right


def _coupled_normal_equations(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    model: StageModel,
    prior_weight: float,
) -> tuple[sparse.csc_matrix, np.ndarray]:
    """Normal matrix and right-hand side of both axes together (unknowns ``y0, x0, y1, x1, ...``).

    Each pair adds its ``2 x 2`` :meth:`PairOffset.information`; an anisotropic
    pair couples the axes.
    """
    index = {tile: i for i, tile in enumerate(tiles)}
    n = len(tiles)
    rows, cols, values = list(range(2 * n)), list(range(2 * n)), [prior_weight] * (2 * n)
    right = prior_weight * np.array([model.position(t) for t in tiles], float).reshape(2 * n)
    block = np.indices((2, 2)).reshape(2, 4)
    for pair in pairs:
        i, j, information = index[pair.a], index[pair.b], pair.information()
        for first, second, sign in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
            rows += list(2 * first + block[0])
            cols += list(2 * second + block[1])
            values += list(sign * information.ravel())
        measured = information @ np.asarray(pair.offset, dtype=float)
        right[2 * j:2 * j + 2] += measured
        right[2 * i:2 * i + 2] -= measured
    return sparse.csc_matrix((values, (rows, cols)), shape=(2 * n, 2 * n)), right


def _anisotropic(pairs: Sequence[PairOffset]) -> bool:
    """Whether any pair has a free direction (the axes must then be solved together)."""
    return any(p.free_direction is not None for p in pairs)


def _least_squares_positions(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    model: StageModel,
    prior_weight: float,
) -> np.ndarray:
    """Solve the weighted normal equations, one per axis (both together when a pair is
    anisotropic); returns ``(n_tiles, 2)`` positions."""
    if _anisotropic(pairs):
        normal, right = _coupled_normal_equations(tiles, pairs, model, prior_weight)
        return spsolve(normal, right).reshape(len(tiles), 2)
    solution = np.empty((len(tiles), 2))
    for axis in range(2):
        normal, right = _normal_equations(tiles, pairs, model, prior_weight, axis)
        solution[:, axis] = spsolve(normal, right)
    return solution


def leave_one_out_offsets(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    tile_step_px: Sequence[float],
    prior_weight: float = PRIOR_WEIGHT,
) -> tuple[np.ndarray, np.ndarray]:
    """Offset of every pair as the other pairs (and the stage prior) predict it, and its covariance.

    The weighted solve without pair ``k`` puts its two tiles ``r_k / (1 - h_k)``
    away from the solve with all pairs, ``r_k`` being the pair's residual and
    ``h_k`` its leverage (the standard deletion formula of least squares): one
    solve gives every prediction. The prediction's variance is that of the
    difference of the two tiles' positions in the solve without the pair,
    ``v_k / (1 - h_k)`` (``v_k`` the variance with it). A pair on no loop is
    predicted by the prior alone (nominal grid, a large variance). An edge
    link (:class:`PairOffset`, ``free_direction``) counts in the covariance as
    knowing nothing along its ridge (``ridge_variance`` infinite): the
    variance the solve gives it there is the stage's, not evidence, so a pair
    whose loops pass only through edge links along some direction is
    predicted there by the stage prior alone.

    Parameters
    ----------
    tiles : sequence of (row, col)
    pairs : sequence of PairOffset
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step (the prior).
    prior_weight : float
        Relative to the least pair weight, as in :func:`solve_positions`.

    Returns
    -------
    predicted : np.ndarray
        ``(n_pairs, 2)`` predicted ``(y, x)`` offsets.
    covariance : np.ndarray
        ``(n_pairs, 2, 2)`` covariance of each prediction (pixels squared, the
        weights taken as inverse variances).
    """
    tiles = sorted(set(tiles))
    if not pairs:
        return np.zeros((0, 2)), np.zeros((0, 2, 2))
    index = {tile: i for i, tile in enumerate(tiles)}
    model = StageModel.nominal(tile_step_px)
    prior_weight *= _least_weight(pairs)
    if _anisotropic(pairs):
        return _coupled_leave_one_out(tiles, pairs, model, prior_weight)
    predicted = np.empty((len(pairs), 2))
    covariance = np.zeros((len(pairs), 2, 2))
    for axis in range(2):
        normal, right = _normal_equations(tiles, pairs, model, prior_weight, axis)
        inverse = np.linalg.inv(normal.toarray())
        positions = inverse @ right
        for k, pair in enumerate(pairs):
            i, j, w = index[pair.a], index[pair.b], pair.axis_weights()[axis]
            variance = inverse[i, i] + inverse[j, j] - 2 * inverse[i, j]
            kept = max(1 - w * variance, 1e-12)
            residual = positions[j] - positions[i] - pair.offset[axis]
            predicted[k, axis] = pair.offset[axis] + residual / kept
            covariance[k, axis, axis] = variance / kept
    return predicted, covariance


def _coupled_leave_one_out(
    tiles: Sequence[TileIndex], pairs: Sequence[PairOffset], model: StageModel, prior_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`leave_one_out_offsets` with both axes solved together: the deletion formula with
    ``2 x 2`` blocks, ``offset + (I - H W)^-1 r`` and covariance ``(I - H W)^-1 H`` (``H`` the
    covariance of the pair's difference of positions, ``W`` its information, ``r`` its residual),
    the covariance with every edge link's ridge variance infinite."""
    predicted = np.array([np.asarray(pair.offset) + np.linalg.lstsq(deletion, residual, rcond=1e-12)[0]
                          for pair, _, deletion, residual in _deletions(tiles, pairs, model, prior_weight)])
    unknown_along = [pair if pair.free_direction is None else replace(pair, ridge_variance=np.inf) for pair in pairs]
    covariance = np.array([np.linalg.lstsq(deletion, spread, rcond=1e-12)[0]
                           for _, spread, deletion, _ in _deletions(tiles, unknown_along, model, prior_weight)])
    return predicted, (covariance + covariance.transpose(0, 2, 1)) / 2


def _deletions(
    tiles: Sequence[TileIndex], pairs: Sequence[PairOffset], model: StageModel, prior_weight: float
) -> Iterator[tuple[PairOffset, np.ndarray, np.ndarray, np.ndarray]]:
    """Per pair of the coupled solve: the pair, ``H`` (the covariance of its difference of positions),
    ``I - H W`` and its residual ``r`` (:func:`_coupled_leave_one_out`)."""
    index = {tile: i for i, tile in enumerate(tiles)}
    normal, right = _coupled_normal_equations(tiles, pairs, model, prior_weight)
    inverse = np.linalg.inv(normal.toarray())
    positions = (inverse @ right).reshape(len(tiles), 2)
    for pair in pairs:
        i, j = 2 * index[pair.a], 2 * index[pair.b]
        spread = (inverse[i:i + 2, i:i + 2] + inverse[j:j + 2, j:j + 2]
                  - inverse[i:i + 2, j:j + 2] - inverse[j:j + 2, i:i + 2])
        residual = positions[index[pair.b]] - positions[index[pair.a]] - np.asarray(pair.offset)
        yield pair, spread, np.eye(2) - spread @ pair.information(), residual


def departs_from_prediction(pair: PairOffset, predicted: np.ndarray, covariance: np.ndarray,
                            tolerance_px: float = MAX_RESIDUAL_PX) -> bool:
    """Whether a pair's offset departs from its leave-one-out prediction beyond ``tolerance_px``,
    in the metric of the prediction's covariance.

    The residual ``predicted - offset`` (across the pair's own free direction
    only) is measured by its Mahalanobis length in ``covariance + tolerance_px**2``:
    along a direction the prediction determines (variance well below the
    tolerance's) that is its length over ``tolerance_px``, the former test;
    along one it does not (a loop closed only through an edge link's ridge,
    hundreds of pixels squared) a residual of several pixels is no evidence
    of a broken loop: the prediction there is the stage's, not the loop's.

    Examples
    --------
    >>> pair = PairOffset((0, 0), (0, 1), (0.0, 10.0), 4.0)
    >>> departs_from_prediction(pair, np.array([0.0, 12.0]), np.diag([0.01, 0.01]))
    True
    >>> departs_from_prediction(pair, np.array([0.0, 12.0]), np.diag([0.01, 130.0]))
    False
    """
    projection = pair.projection()
    residual = projection @ (np.asarray(predicted, dtype=float) - np.asarray(pair.offset))
    metric = projection @ np.asarray(covariance, dtype=float) @ projection + tolerance_px**2 * np.eye(2)
    return bool(residual @ np.linalg.solve(metric, residual) > 1.0)


def _least_weight(pairs: Sequence[PairOffset]) -> float:
    """Smallest axis weight of ``pairs`` (the unit of the prior's weight)."""
    return float(min(p.axis_weights().min() for p in pairs))


def _residual_vectors(
    positions: np.ndarray, tiles: Sequence[TileIndex], pairs: Sequence[PairOffset]
) -> np.ndarray:
    """``(y, x)`` residual of every pair given the positions (across a pair's free direction only)."""
    index = {tile: i for i, tile in enumerate(tiles)}
    return np.array([p.constrained(positions[index[p.b]] - positions[index[p.a]] - np.asarray(p.offset))
                     for p in pairs]).reshape(len(pairs), 2)


def _residuals(
    positions: np.ndarray, tiles: Sequence[TileIndex], pairs: Sequence[PairOffset]
) -> np.ndarray:
    """Euclidean residual of every pair given the positions."""
    return np.linalg.norm(_residual_vectors(positions, tiles, pairs), axis=1)


#: A solve's result: ``(positions, stage model, kept pairs)`` (:func:`solve_positions`).
Solution = tuple[dict[TileIndex, np.ndarray], StageModel, list[PairOffset]]


def solve_positions(
    tiles: Iterable[TileIndex],
    pairs: Sequence[PairOffset],
    tile_step_px: Sequence[float],
    prior_weight: float = PRIOR_WEIGHT,
    max_residual_px: float = MAX_RESIDUAL_PX,
    weighted: bool = True,
    warn_steps: bool = True,
    min_group_fraction: float = MIN_GROUP_FRACTION,
) -> Solution:
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
        this, or (if ``weighted``) exceeds :data:`MAX_NORMALIZED_RESIDUAL`
        standard errors of the pair (weights are inverse variances) and
        :data:`MIN_PRUNED_RESIDUAL_PX`.
    weighted : bool
        Whether the weights are inverse variances (enables the test above).
    warn_steps : bool
        Log a warning when a fitted step departs from the nominal one
        (:func:`warn_if_steps_differ`).
    min_group_fraction : float
        Fewest tiles, as a fraction of ``tiles``, of the linked group whose
        pairs are kept (:func:`largest_group`).

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
    model = fit_stage_model(_median_consistent(kept), tile_step_px, tiles)
    if kept:
        prior_weight *= _least_weight(kept)
    while True:
        positions = _least_squares_positions(tiles, kept, model, prior_weight)
        if not kept:
            break
        residuals = _residuals(positions, tiles, kept)
        # Residual in standard errors of the pair (weights are inverse variances).
        normalized = np.array([
            np.sqrt(np.sum(p.test_weights() * r**2)) if np.hypot(*r) > MIN_PRUNED_RESIDUAL_PX else 0.0
            for p, r in zip(kept, _residual_vectors(positions, tiles, kept))
        ]) if weighted else np.zeros(len(kept))
        worst = int(np.argmax(np.maximum(residuals / max_residual_px, normalized / MAX_NORMALIZED_RESIDUAL)))
        if residuals[worst] > max_residual_px or normalized[worst] > MAX_NORMALIZED_RESIDUAL:
            logger.debug("dropping pair %s-%s (residual %.2f px)", kept[worst].a, kept[worst].b,
                         residuals[worst])
            del kept[worst]
            continue
        weak_bridges = [k for k in bridges(kept) if not kept[k].strong]
        if not weak_bridges:
            break
        for k in sorted(weak_bridges, reverse=True):
            logger.debug("dropping weak pair %s-%s outside any loop", kept[k].a, kept[k].b)
            del kept[k]
    kept = largest_group(kept, len(tiles), min_group_fraction)
    model = fit_stage_model(kept, tile_step_px, tiles)
    positions = _least_squares_positions(tiles, kept, model, prior_weight)
    if warn_steps:
        warn_if_steps_differ(model, tile_step_px)
    return {tile: positions[i] for i, tile in enumerate(tiles)}, model, kept


def solve_without(
    tiles: Sequence[TileIndex],
    kept: Sequence[PairOffset],
    removed: AbstractSet[tuple[TileIndex, TileIndex]],
    tile_step_px: Sequence[float],
    inside: AbstractSet[TileIndex] = frozenset(),
) -> Solution | None:
    """The positions solved again without the ``removed`` pairs, or None when that solve drops another kept pair.

    The rules that send a tile or a piece to the stage model refuse its links this way: a solve that loses
    other pairs too (a pair of the group outside the side, its loop broken) would change more than the rule
    judged, so the links are left.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    kept : Sequence[PairOffset]
        The pairs of the current solve.
    removed : set of tuple
        The ``(a, b)`` pairs to solve without.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    inside : set of TileIndex
        Tiles going to the stage model with the removed pairs: the solve may drop the pairs from them.

    Returns
    -------
    Solution or None
        ``(positions, model, kept)`` without the pairs, or None.

    Examples
    --------
    >>> pairs = [PairOffset((0, 0), (0, 1), (0.0, 90.0), 1.0), PairOffset((0, 1), (0, 2), (0.0, 91.0), 1.0)]
    >>> solve_without([(0, 0), (0, 1), (0, 2)], pairs, {((0, 1), (0, 2))}, (100, 90))[2] == pairs[:1]
    True
    """
    rest = [p for p in kept if (p.a, p.b) not in removed]
    attempt = solve_positions(tiles, rest, tile_step_px)
    if not {(p.a, p.b) for p in rest if p.a not in inside} <= {(p.a, p.b) for p in attempt[2]}:
        return None
    return attempt


def _groups(pairs: Sequence[PairOffset]) -> list[set[TileIndex]]:
    """Connected groups of tiles linked by ``pairs``."""
    groups: list[set[TileIndex]] = []
    for pair in pairs:
        joined = [g for g in groups if pair.a in g or pair.b in g]
        merged = set().union({pair.a, pair.b}, *joined)
        groups = [g for g in groups if not any(g is j for j in joined)] + [merged]
    return groups


def largest_group(pairs: Sequence[PairOffset], n_tiles: int = 0,
                  min_fraction: float = MIN_GROUP_FRACTION) -> list[PairOffset]:
    """The pairs of the largest connected group of tiles (ties: the first tile's group).

    A group is placed as a whole by the mean stage error of its tiles, which
    for a few tiles can put one of them farther from the truth than the stage
    did: only the largest group is kept, and only if it holds at least
    ``min_fraction`` (default :data:`MIN_GROUP_FRACTION`) of the ``n_tiles``
    tiles; the others keep their stage-model positions.
    """
    groups = _groups(pairs)
    if not groups:
        return []
    main = max(groups, key=lambda g: (len(g), [-v for v in min(g)]))
    if len(main) < min_fraction * n_tiles:
        return []
    return [p for p in pairs if p.a in main]


def bridges(pairs: Sequence[PairOffset]) -> list[int]:
    """Indices of the pairs that lie on no loop (removing one disconnects its two tiles).

    Examples
    --------
    >>> square = [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((0, 1), (1, 1)), ((1, 0), (1, 1))]
    >>> pairs = [PairOffset(a, b, (0.0, 0.0), 1.0) for a, b in square + [((1, 1), (1, 2))]]
    >>> bridges(pairs)
    [4]
    """
    found = []
    for k, pair in enumerate(pairs):
        neighbours: dict[TileIndex, list[TileIndex]] = {}
        for other in pairs[:k] + pairs[k + 1:]:
            neighbours.setdefault(other.a, []).append(other.b)
            neighbours.setdefault(other.b, []).append(other.a)
        reached, frontier = {pair.a}, [pair.a]
        while frontier and pair.b not in reached:
            frontier = [n for t in frontier for n in neighbours.get(t, []) if n not in reached]
            reached.update(frontier)
        if pair.b not in reached:
            found.append(k)
    return found


def _median_consistent(pairs: Sequence[PairOffset]) -> list[PairOffset]:
    """Pairs whose offset is near their direction's median: within 2 MAX_RESIDUAL_PX
    or 3 robust standard deviations of the direction's offsets, whichever is larger.

    Used only for the initial stage model, so that a few wrong pairs do not
    bias the prior before pruning.
    """
    by_direction: dict[TileIndex, list[PairOffset]] = {}
    for pair in pairs:
        by_direction.setdefault((pair.b[0] - pair.a[0], pair.b[1] - pair.a[1]), []).append(pair)
    consistent = []
    for group in by_direction.values():
        offsets = np.array([p.offset for p in group])
        distances = np.linalg.norm(offsets - np.median(offsets, axis=0), axis=1)
        tolerance = max(2 * MAX_RESIDUAL_PX, 3 * 1.4826 * float(np.median(distances)))
        consistent += [p for p, d in zip(group, distances) if d <= tolerance]
    return consistent
