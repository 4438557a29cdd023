"""How likely a stitched tile is more than 1.5 px off: weak links that no loop checks.

A tile's honest standard error (``sigma_px``, :mod:`linumpy.stitching.uncertainty`)
treats every pair as a Gaussian measurement. It is conservative for most tiles
(on the stitching matrix the median error is half of it) but it does not see the
failures that put a tile pixels off: a weak pair (significance below
:data:`HINGE_SIGNIFICANCE`) on its wrong peak, that the rest of the evidence
cannot contradict because the tile's position hangs on it (session calib65,
``benchmarks/README.md``: the honest sigma reads 1.51 px on a slice whose
largest error is 0.64 px and 1.07 px on tiles 11.9 px off).

A **hinge link** is an accepted pair of significance below
:data:`HINGE_SIGNIFICANCE` whose offset moves some tile placed by pairs by at
least :data:`HINGE_INFLUENCE` of its own change (the tile follows the link
rather than the other pairs: a bridge, or a link of a loop of weak links). The
influence is the derivative of the global solve's positions (the same weights:
each pair's honest variance, an edge link free along its ridge, the stage
prior) with respect to the link's offset, the slice's mean translation
removed. Each hinge link is taken to be wrong (beyond 1.5 px at its tiles)
with probability :data:`HINGE_FAILURE_PROBABILITY`, independently: a tile held
by ``n`` hinge links is more than 1.5 px off with probability ``1 - (1 - p)**n``,
and the slice has such a tile with ``1 - (1 - p)**N`` over its ``N`` distinct
hinge links. Measured, not assumed: see the calibration tables of session
calib65 (held out: the slice flag kept its precision, the per-tile probability
did not: groups of tiles shifted against the rest, or a wrong strong placement, are
not seen). Stage-placed tiles are left out (their error is the stage's,
``sigma_px`` the stage scatter; the stitch record flags a slice when more than
a quarter of its tiles are on the stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from linumpy.stitching.pair_terms import edge_variance
from linumpy.stitching.global_solve import PRIOR_WEIGHT, PairOffset, TileIndex
from linumpy.stitching.link_conflicts import honest_variance
from linumpy.stitching.options import DEFAULT_MAX_SHIFT_PX
from linumpy.stitching.transform import PairRecord, TileTransform

#: Accepted pairs below this significance can be on a wrong peak: on the tuning seeds of session calib65, 20 % of
#: those that hold a tile (:data:`HINGE_INFLUENCE`) were more than 1.5 px off, 1.5 % of those between 2.5 and 3.
HINGE_SIGNIFICANCE = 2.5
#: A link holds a tile when the tile moves by at least this fraction of a change of the link's offset.
HINGE_INFLUENCE = 0.5
#: Probability that a hinge link puts the tiles it holds more than 1.5 px off (fitted on the tuning seeds: the
#: maximum-likelihood fit of the slices' outcomes, 0.09-0.10; of the tiles one hinge link holds, 9 % were).
HINGE_FAILURE_PROBABILITY = 0.1
#: The slice is flagged when a tile placed by pairs is more than 1.5 px off with at least this probability (six hinge
#: links): on the 52 slices it was set on, every slice with five or more had such a tile, the two with four had
#: none; on all 85 tuning slices, 6 of the 8 with five or more.
FLAG_PROBABILITY = 0.45


@dataclass(frozen=True)
class TileRisk:
    """The hinge links of a slice and what they imply for its tiles.

    Attributes
    ----------
    hinge_links : dict
        ``(a, b) -> significance`` of every hinge link.
    tile_links : dict
        ``tile -> [(a, b), ...]``: the hinge links holding each tile placed by pairs.
    by_pairs : frozenset
        The tiles placed by pairs (the others are on the stage model: no probability).
    """

    hinge_links: dict[tuple[TileIndex, TileIndex], float]
    tile_links: dict[TileIndex, list[tuple[TileIndex, TileIndex]]]
    by_pairs: frozenset[TileIndex] = frozenset()

    def tile_probability(self, tile: TileIndex) -> float:
        """Probability that ``tile`` is more than 1.5 px off (0 for tiles no hinge link holds)."""
        return _probability(len(self.tile_links.get(tile, [])))

    def slice_probability(self) -> float:
        """Probability that some tile placed by pairs is more than 1.5 px off."""
        return _probability(len(self.hinge_links))

    def flagged(self) -> bool:
        """Whether the slice's probability reaches :data:`FLAG_PROBABILITY`."""
        return self.slice_probability() >= FLAG_PROBABILITY


def _probability(n_links: int) -> float:
    """Probability that at least one of ``n_links`` independent hinge links fails."""
    return float(1 - (1 - HINGE_FAILURE_PROBABILITY) ** n_links)


def _link(record: PairRecord, max_shift_px: float) -> PairOffset:
    """The accepted pair as the solve weighs it: inverse honest variance, free along an edge's ridge."""
    edge = {} if record.free_direction is None else {"free_direction": tuple(record.free_direction),
                                                     "ridge_variance": edge_variance(max_shift_px)}
    variance = honest_variance(record.sigma_px, record.spread_px)
    return PairOffset(record.a, record.b, tuple(record.offset), weight=tuple(1 / variance), **edge)


def link_influence(tiles: Sequence[TileIndex], links: Sequence[PairOffset], probes: Sequence[int]) -> np.ndarray:
    """``(len(probes), n_tiles)``: how far each tile moves per pixel of change of the offset of each link
    ``links[k]``, ``k`` in ``probes``.

    The derivative of the weighted least-squares positions (each link's 2 x 2
    information, a stage prior of :data:`~linumpy.stitching.global_solve.PRIOR_WEIGHT`
    times the least weight on every tile) with respect to the link's offset,
    the mean over ``tiles`` removed, as the 2 x 2 matrix's largest singular value.
    One dense solve with two right-hand sides per probe: ``(2 n)**3`` operations
    (8 x 8 tiles: milliseconds; 30 x 30: about 3 s on a loaded machine).
    """
    index = {t: i for i, t in enumerate(tiles)}
    n = len(tiles)
    prior = PRIOR_WEIGHT * min(float(np.min(link.axis_weights())) for link in links)
    infos = [link.information() for link in links]
    ends = [(2 * index[link.a], 2 * index[link.b]) for link in links]
    normal = prior * np.eye(2 * n)
    for info, (a, b) in zip(infos, ends, strict=True):
        for i, j, sign in ((a, a, 1), (b, b, 1), (a, b, -1), (b, a, -1)):
            normal[i:i + 2, j:j + 2] += sign * info
    right = np.zeros((2 * n, 2 * len(probes)))
    for column, k in enumerate(probes):
        (a, b), block = ends[k], slice(2 * column, 2 * column + 2)
        right[a:a + 2, block], right[b:b + 2, block] = -infos[k], infos[k]
    moves = np.linalg.solve(normal, right) if probes else right
    moves = moves.reshape(n, 2, len(probes), 2).transpose(2, 0, 1, 3)
    moves -= moves.mean(axis=1, keepdims=True)
    return np.linalg.norm(moves, ord=2, axis=(2, 3))


def tile_risk(transform: TileTransform, max_shift_px: float = DEFAULT_MAX_SHIFT_PX) -> TileRisk:
    """The hinge links of ``transform`` and the tiles placed by pairs that each holds.

    ``max_shift_px`` is the search window the estimate used (an edge link's
    variance along its ridge, :func:`~linumpy.stitching.pair_terms.edge_variance`).
    """
    records = [r for r in transform.pairs if r.accepted]
    placed = frozenset(t for t, record in transform.tiles.items() if record.source == "pairs")
    if not records:
        return TileRisk({}, {}, placed)
    tiles = sorted(set(transform.tiles) | {t for r in records for t in (r.a, r.b)})
    weak = [k for k, r in enumerate(records) if r.significance < HINGE_SIGNIFICANCE]
    influence = link_influence(tiles, [_link(r, max_shift_px) for r in records], weak)
    by_pairs = [i for i, t in enumerate(tiles) if t in placed]
    hinges: dict[tuple[TileIndex, TileIndex], float] = {}
    tile_links: dict[TileIndex, list[tuple[TileIndex, TileIndex]]] = {}
    for k, row in zip(weak, influence, strict=True):
        record = records[k]
        held = [tiles[i] for i in by_pairs if row[i] >= HINGE_INFLUENCE]
        if held:
            hinges[(record.a, record.b)] = float(record.significance)
        for tile in held:
            tile_links.setdefault(tile, []).append((record.a, record.b))
    return TileRisk(hinges, tile_links, placed)


def _name(link: tuple[TileIndex, TileIndex]) -> str:
    """``"(r, c)-(r, c)"``, as the stitch record names pairs."""
    return f"{link[0]}-{link[1]}"


def risk_fields(risk: TileRisk) -> dict:
    """The slice's QC metrics: ``n_hinge_links``, ``hinge_links`` (name -> significance) and
    ``tile_off_probability``."""
    return {"n_hinge_links": len(risk.hinge_links),
            "hinge_links": {_name(link): round(s, 2) for link, s in risk.hinge_links.items()},
            "tile_off_probability": round(risk.slice_probability(), 3)}


def tile_risk_fields(risk: TileRisk, tile: TileIndex) -> dict:
    """A tile's QC fields: the ``hinge_links`` holding it and its ``off_probability`` (null for a tile on the
    stage model: its error is the stage's, its ``sigma_px`` the stage scatter)."""
    return {"hinge_links": [_name(link) for link in risk.tile_links.get(tile, [])],
            "off_probability": round(risk.tile_probability(tile), 3) if tile in risk.by_pairs else None}


def hinge_flag(risk: TileRisk) -> str:
    """The red flag of a slice whose tiles hang on many weak links no other evidence checks."""
    tiles = sorted(risk.tile_links)
    return (f"{len(risk.hinge_links)} weak links (significance < {HINGE_SIGNIFICANCE}) alone hold {len(tiles)} "
            f"tile(s) {', '.join(map(str, tiles))}: a tile more than 1.5 px off is likely "
            f"(probability {risk.slice_probability():.2f}), check the stitched slice's seams")
