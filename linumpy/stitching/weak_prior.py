"""Place the weakly supported tiles between their links and the stage, by their uncertainties.

Once every decision is made (which pairs are kept), the placed tiles are cut
into pieces joined by anchoring pairs (:func:`~linumpy.stitching.reanchor.pieces`);
the largest is trusted, the tiles of every other piece hang on weak links
only. The solve places them by those links' ``sigma_px`` alone (the stage
prior's weight is 1e-3 of a pair's), though a weak link whose evidence peak
is broad errs 2-3 times more than its ``sigma_px`` says (docs/stitching.md,
stitch13 round 2). One last weighted least-squares solve, no pruning,
combines for those tiles:

- each of their weak links at its **honest variance**: its standard error
  and its own peak spread (``spread_px``) in quadrature, per axis;
- a **stage prior** on each of them, its stage-model position shifted by
  the trusted tiles' median residual (position minus stage-model position:
  the frame), with the variance of the trusted tiles' residuals around that
  median, per axis (the stage's own scatter, measured; at least
  :data:`MIN_SIGMA_PX`).

A weak tile with sharp links keeps their position; one with broad links
lands between them and its stage position in proportion to the two
uncertainties. The trusted tiles are held where they are (a strongly linked
tile ignores the prior, and the frame does not move): only the weak tiles
move, relative to them.
Nothing is dropped or added: the pairs kept and every status are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from linumpy.stitching.global_solve import PRIOR_WEIGHT, PairOffset, StageModel, TileIndex, weighted_positions
from linumpy.stitching.reanchor import pieces

Pair = tuple[TileIndex, TileIndex]

#: Trusted tiles needed to measure the stage's scatter (as the stage residual model).
MIN_TRUSTED_TILES = 6
#: Floor of the stage prior's standard error, pixels.
MIN_SIGMA_PX = 0.3


@dataclass(frozen=True)
class WeakPrior:
    """The stage prior given to the weakly supported tiles.

    Attributes
    ----------
    sigma_px : tuple of float
        Standard error ``(y, x)`` of the stage prior, pixels: the scatter of
        the trusted tiles' residuals (NaN where no tile was re-placed).
    shifts : dict
        ``(row, col) -> (dy, dx)`` how far the re-solve moved each weak tile,
        pixels (the trusted piece keeps its mean position).
    """

    sigma_px: tuple[float, float] = (float("nan"), float("nan"))
    shifts: dict[TileIndex, tuple[float, float]] = field(default_factory=dict)


def place_weak_tiles(
    tiles: Sequence[TileIndex],
    positions: Mapping[TileIndex, np.ndarray],
    model: StageModel,
    kept: Sequence[PairOffset],
    anchoring: set[Pair],
    spreads: Mapping[Pair, Sequence[float]],
) -> tuple[dict[TileIndex, np.ndarray], WeakPrior]:
    """Re-place the tiles outside the trusted piece between their weak links and the stage.

    Parameters
    ----------
    tiles : sequence of (row, col)
        All tiles.
    positions : mapping
        ``(row, col) -> (y, x)`` solved positions.
    model : StageModel
        The fitted stage model.
    kept : sequence of PairOffset
        The pairs the solve kept (weights: inverse ``sigma_px`` squared).
    anchoring : set of pairs
        Pairs that join their tiles into one piece (kept before the joint
        search, or own significance >= ``ANCHOR_SIGNIFICANCE``).
    spreads : mapping
        ``(a, b) -> (y, x)`` peak spread of each kept pair (NaN: none).

    Returns
    -------
    positions : dict
        The new positions (unchanged where no tile is weak, or with fewer
        than :data:`MIN_TRUSTED_TILES` trusted tiles).
    prior : WeakPrior
        The prior used and how far each weak tile moved.

    Examples
    --------
    >>> place_weak_tiles([(0, 0)], {(0, 0): np.zeros(2)}, StageModel.nominal((90, 90)), [], set(), {})[1].shifts
    {}
    """
    placed = {t for p in kept for t in (p.a, p.b)}
    trusted, *_ = pieces(placed, [(p.a, p.b) for p in kept if (p.a, p.b) in anchoring]) or [[]]
    weak = placed - set(trusted)
    if not weak or len(trusted) < MIN_TRUSTED_TILES:
        return dict(positions), WeakPrior()
    tiles = sorted(tiles)
    residuals = np.array([np.asarray(positions[t], float) - model.position(t) for t in trusted])
    centre = np.median(residuals, axis=0)
    sigma = np.maximum(np.sqrt(np.mean((residuals - centre) ** 2, axis=0)), MIN_SIGMA_PX)
    least = min(float(p.axis_weights().min()) for p in kept)
    prior_positions = np.array([model.position(t) + (centre if t in weak else 0.0) for t in tiles])
    prior_weights = np.array([1 / sigma**2 if t in weak else np.full(2, PRIOR_WEIGHT * least) for t in tiles])
    honest = [_honest(p, spreads.get((p.a, p.b), (np.nan, np.nan)))
              if (p.a, p.b) not in anchoring and weak & {p.a, p.b} else p for p in kept]
    solved = weighted_positions(tiles, honest, prior_positions, prior_weights)
    index = {t: i for i, t in enumerate(tiles)}
    # the trusted piece keeps its mean position: the weak tiles' common translation stays free
    solved -= np.mean([solved[index[t]] - positions[t] for t in trusted], axis=0)
    shifts = {t: tuple(float(v) for v in solved[index[t]] - positions[t]) for t in sorted(weak)}
    out = dict(positions)
    out.update({t: solved[index[t]] for t in placed})
    return out, WeakPrior(sigma_px=tuple(float(v) for v in sigma), shifts=shifts)


def _honest(pair: PairOffset, spread_px: Sequence[float]) -> PairOffset:
    """``pair`` weighted by its honest variance: ``1 / weight`` plus its peak spread squared, per axis."""
    spread = np.nan_to_num(np.asarray(spread_px, float))
    variance = 1 / pair.axis_weights() + spread**2
    return PairOffset(pair.a, pair.b, pair.offset, tuple(float(v) for v in 1 / variance), pair.strong,
                      pair.test_weight)
