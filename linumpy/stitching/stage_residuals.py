"""Systematic stage errors beyond the stage model, learned from the registered tiles.

The stage model (:class:`~linumpy.stitching.global_solve.StageModel`) is an
affine grid whose steps depart from the nominal ones only where the pairs
prove it. Real stages also err systematically: the x axis's backlash shifts
the rows scanned in one direction against those scanned in the other
(serpentine order: alternate rows), the stage drifts slowly during the
acquisition, and a small rotation or step error of the grid may stay below
the stage model's significance test (the smooth model sees these only
near the registered tiles: it is never extrapolated). The registered tiles see these errors:
their residual ``position - stage-model position`` is the stage's error
there. A tile left without pairs can then be placed at its stage-model
position plus the residual the registered tiles predict for it.

A prediction is used only when it is validated, axis by axis: each
registered tile's residual is predicted from the other registered tiles
(leave-one-out; the tiles around it are left out too, as far as the farthest
tile to correct is from the registered ones, so that a cluster of tiles
without pairs is validated as an extrapolation, not an interpolation), and
the best model must lower the root mean square of these prediction errors
by at least :data:`MIN_GAIN` relative to the plain stage model (which
predicts a zero residual). Otherwise that axis keeps the plain stage model,
and the record says so. Even a right model predicts the systematic part of a
tile's error, not its own random part: a correction moves a tile at most
:data:`MAX_CORRECTION_PX`, so no tile ends more than that farther from the
truth than its stage-model position. Models (:data:`MODELS`):

``row_parity``
    One offset per row parity, the robust mean residual of the registered
    tiles of rows of that parity (backlash).
``smooth``
    A Gaussian-weighted mean of the registered tiles' residuals around the
    tile in grid coordinates (:data:`SMOOTH_TILES` tiles), shrunk towards zero
    as if :data:`SHRINK_WEIGHT` tiles of zero residual sat on the tile
    (drift); far from every registered tile it falls to zero.
``row_parity+smooth``
    The row-parity offsets, then the smooth mean of what they leave.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from linumpy.stitching.global_solve import StageModel, TileIndex

#: Candidate models, tried in this order (a tie keeps the earlier, simpler one).
MODELS: tuple[str, ...] = ("row_parity", "smooth", "row_parity+smooth")
#: Relative reduction of an axis's leave-one-out RMS error a model must reach to be used.
#: At 0.1 pure stage noise passed (overlap 10 %, seed 0); at 0.15 models validated by
#: gains of 15-25 % moved 11 tiles of seeds 0-14 (backlash over +-3 px stage noise,
#: 8 x 8 drift) and 8 of them ended farther from the truth; gains of 30 % or more
#: (backlash over +-1.5 px, seeds 0-9) moved 7 tiles, all closer, but on fresh seeds
#: 10-19 only 7 of 13 (hence :data:`MAX_CORRECTION_PX`; docs/stitching.md, stitch12).
MIN_GAIN = 0.3
#: Registered tiles needed to fit and validate a model.
MIN_TILES = 6
#: Standard deviation of the smooth model's Gaussian weights, in tiles.
SMOOTH_TILES = 1.5
#: Weight of the zero-residual pseudo-observation of the smooth model (in tiles at distance 0).
SHRINK_WEIGHT = 1.0
#: Residuals farther than this many robust standard deviations from their row parity's
#: median (a wrong registration) are left out of its mean.
OUTLIER_MADS = 3.0
#: Largest correction of a tile's stage-model position (pixels): a tile ends at most this
#: much farther from the truth than its stage-model position (triangle inequality).
MAX_CORRECTION_PX = 0.5
#: Axis names, in the order of positions.
AXES = ("y", "x")


@dataclass(frozen=True)
class StageResidualModel:
    """The models chosen for a slice's stage residuals and their validation.

    Attributes
    ----------
    kinds : tuple of str
        Per axis ``(y, x)``: ``none`` (plain stage model) or one of :data:`MODELS`.
    loo_px_before : tuple of float
        Per axis, RMS residual of the registered tiles against their
        stage-model positions (the plain stage model's leave-one-out error),
        pixels; NaN when fewer than :data:`MIN_TILES` tiles were registered.
    loo_px_after : tuple of float
        Per axis, the chosen model's leave-one-out RMS error (``loo_px_before``
        where the model is ``none``).
    n_tiles : int
        Registered tiles the models were fitted to and validated on.
    exclude_tiles : int
        Rows and columns around each left-out tile whose residuals were left
        out with it: the farthest tile to correct lies this many tiles plus
        one from its nearest registered tile, and the validation predicts
        from as far.
    loo_px : dict
        Leave-one-out RMS error ``(y, x)`` of every candidate model.
    corrections : dict
        ``(row, col) -> (dy, dx)`` predicted residual added to the stage-model
        position of each tile without pairs (empty when both axes are ``none``).
    """

    kinds: tuple[str, str] = ("none", "none")
    loo_px_before: tuple[float, float] = (float("nan"), float("nan"))
    loo_px_after: tuple[float, float] = (float("nan"), float("nan"))
    n_tiles: int = 0
    exclude_tiles: int = 0
    loo_px: dict[str, tuple[float, float]] = field(default_factory=dict)
    corrections: dict[TileIndex, tuple[float, float]] = field(default_factory=dict)

    @property
    def used(self) -> bool:
        """Whether any axis uses a model (the stage-placed tiles were corrected)."""
        return any(kind != "none" for kind in self.kinds)

    def describe(self) -> str:
        """One-line summary, e.g. ``y none, x row_parity (LOO 2.68 -> 2.20 px)``."""
        return ", ".join(
            f"{axis} {kind}" + (f" (LOO {before:.2f} -> {after:.2f} px)" if kind != "none" else "")
            for axis, kind, before, after in zip(AXES, self.kinds, self.loo_px_before, self.loo_px_after))


def predict_residual(kind: str, tile: TileIndex, residuals: Mapping[TileIndex, np.ndarray],
                     exclude_tiles: int = 0) -> np.ndarray:
    """Residual ``(dy, dx)`` of ``tile`` predicted by model ``kind`` from the other tiles' residuals.

    Parameters
    ----------
    kind : str
        One of :data:`MODELS`.
    tile : (row, col)
        The tile to predict (its own residual, if in ``residuals``, is left out).
    residuals : mapping
        ``(row, col) -> (dy, dx)`` position minus stage-model position of the
        registered tiles.
    exclude_tiles : int
        The residuals of the tiles within this many rows and columns of
        ``tile`` are left out too.

    Returns
    -------
    np.ndarray
        ``(dy, dx)``, pixels.

    Examples
    --------
    >>> residuals = {(r, c): np.array([0.0, 1.0 if r % 2 else -1.0]) for r in range(4) for c in range(3)}
    >>> predict_residual("row_parity", (1, 1), residuals).tolist()
    [0.0, 1.0]
    """
    others = {t: np.asarray(r, float) for t, r in residuals.items() if _gap(t, tile) > exclude_tiles}
    base = np.zeros(2)
    if kind.startswith("row_parity"):
        offsets = {p: _parity_offset(others, p) for p in (0, 1)}
        base = offsets[tile[0] % 2]
        others = {t: r - offsets[t[0] % 2] for t, r in others.items()}
    if kind.endswith("smooth"):
        base = base + _smooth_mean(tile, others)
    return base


def _gap(a: TileIndex, b: TileIndex) -> int:
    """Chebyshev distance of two tiles in the grid (1 for neighbours, diagonal ones too)."""
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]))


def _parity_offset(residuals: Mapping[TileIndex, np.ndarray], parity: int) -> np.ndarray:
    """Robust mean residual of the tiles in rows of ``parity`` (zero if there are none)."""
    chosen = np.array([r for t, r in residuals.items() if t[0] % 2 == parity]).reshape(-1, 2)
    if not len(chosen):
        return np.zeros(2)
    median = np.median(chosen, axis=0)
    spread = OUTLIER_MADS * 1.4826 * np.median(np.abs(chosen - median), axis=0)
    inside = np.abs(chosen - median) <= np.maximum(spread, 1e-9)
    return np.array([chosen[inside[:, axis], axis].mean() for axis in range(2)])


def _smooth_mean(tile: TileIndex, residuals: Mapping[TileIndex, np.ndarray]) -> np.ndarray:
    """Gaussian-weighted mean of ``residuals`` around ``tile``, shrunk towards zero."""
    if not residuals:
        return np.zeros(2)
    tiles = np.array(list(residuals), float)
    values = np.array(list(residuals.values()), float)
    weights = np.exp(-np.sum((tiles - np.asarray(tile, float)) ** 2, axis=1) / (2 * SMOOTH_TILES**2))
    return weights @ values / (weights.sum() + SHRINK_WEIGHT)


def leave_one_out_rms(kind: str, residuals: Mapping[TileIndex, np.ndarray], exclude_tiles: int = 0) -> np.ndarray:
    """Per axis, RMS error of predicting each tile's residual from the others with model ``kind``
    (leaving out, with it, the tiles within ``exclude_tiles`` rows and columns)."""
    errors = [np.asarray(r, float) - predict_residual(kind, t, residuals, exclude_tiles)
              for t, r in residuals.items()]
    return np.sqrt(np.mean(np.square(errors), axis=0))


def fit_stage_residuals(
    positions: Mapping[TileIndex, np.ndarray],
    model: StageModel,
    registered: Iterable[TileIndex],
    unregistered: Iterable[TileIndex],
) -> StageResidualModel:
    """Choose and validate a model of the stage residuals per axis; predict the unregistered tiles'.

    Parameters
    ----------
    positions : mapping
        ``(row, col) -> (y, x)`` solved positions (in the stage model's frame).
    model : StageModel
        The fitted stage model.
    registered : iterable of (row, col)
        Tiles placed by pairs (their residuals are the data).
    unregistered : iterable of (row, col)
        Tiles without pairs, corrected where a model is validated.

    Returns
    -------
    StageResidualModel
        An axis keeps ``none`` unless a model lowers its leave-one-out RMS
        error over the registered tiles by :data:`MIN_GAIN` or more.
    """
    residuals = {t: np.asarray(positions[t], float) - model.position(t) for t in sorted(registered)}
    unregistered = sorted(unregistered)
    if len(residuals) < MIN_TILES:
        return StageResidualModel(n_tiles=len(residuals))
    # validate at the distance the predictions will be made from: the farthest tile to correct
    exclude = max((min(_gap(u, t) for t in residuals) for u in unregistered), default=1) - 1
    before = np.sqrt(np.mean(np.square(list(residuals.values())), axis=0))
    loo = {kind: leave_one_out_rms(kind, residuals, exclude) for kind in MODELS}
    kinds, after = [], []
    for axis in range(2):
        best = min(MODELS, key=lambda kind: loo[kind][axis])  # first of equals: the simpler
        use = loo[best][axis] <= (1 - MIN_GAIN) * before[axis]
        kinds.append(best if use else "none")
        after.append(loo[best][axis] if use else before[axis])
    corrections = {}
    if any(kind != "none" for kind in kinds):
        for tile in unregistered:
            correction = np.array([predict_residual(kind, tile, residuals)[axis] if kind != "none" else 0.0
                                   for axis, kind in enumerate(kinds)])
            correction *= min(1.0, MAX_CORRECTION_PX / max(float(np.linalg.norm(correction)), 1e-12))
            corrections[tile] = tuple(float(v) for v in correction)
    return StageResidualModel(
        kinds=tuple(kinds), loo_px_before=tuple(float(v) for v in before),
        loo_px_after=tuple(float(v) for v in after), n_tiles=len(residuals), exclude_tiles=exclude,
        loo_px={kind: tuple(float(v) for v in values) for kind, values in loo.items()},
        corrections=corrections)
