"""Kept links on no loop that a search placed off their own peak: the side they alone hold goes to the stage model.

The searches (one tile, a cluster, a piece searched again) place tiles at the joint peak of their links' evidence
maps. Where one link alone holds a side of the grid at an offset away from the link's own peak (the one its
registration chose: the map's best inside the search's window where the own peak lay on the border of its scored
window or outside the window), the pair's two readings disagree, no loop checks either, and where the side's other
overlaps do not prefer the placement to the stage's nothing else supports it. On the foreign acquisitions measured
neither reading was right: the true overlap was a sliver the registration does not score (session stage10).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial

import numpy as np

from linumpy.stitching.global_solve import Solution, StageModel, TileIndex
from linumpy.stitching.lone_links import (STRONG_LONE_SIGNIFICANCE, Ruling, lone_kept_links, refuse_one_at_a_time,
                                         side_over_stage)
from linumpy.stitching.pair_terms import OWN_PEAK_PX
from linumpy.stitching.pairwise import PairRegistration, edge_ridge

logger = logging.getLogger(__name__)

Pair = tuple[TileIndex, TileIndex]


def off_own_peak(offset: Sequence[float], registration: PairRegistration) -> float:
    """How far ``offset`` lies from ``registration``'s own peak, pixels (larger axis; across its ridge only where
    the own peak is an edge's, :func:`~linumpy.stitching.pairwise.edge_ridge`: along it the peak locates nothing).

    Examples
    --------
    >>> off_own_peak((90.0, 3.5), PairRegistration((90.0, 0.0), 0.8))
    3.5
    """
    apart = np.subtract(offset, registration.offset)
    edge = edge_ridge(registration.scores, registration.offset)
    if edge is not None:
        apart = apart - np.dot(apart, edge[0]) * np.asarray(edge[0])
    return float(np.max(np.abs(apart)))


def shared_search_peak(pair: Pair, searched: Mapping[Pair, PairRegistration]) -> bool:
    """Whether another link of ``pair``'s tiles in ``searched`` carries ``pair``'s significance: one search placed
    both, at one peak (each link of a placement takes its peak's significance,
    :func:`~linumpy.stitching.joint_placement.refined_pairs`), which the other links may have held without ``pair``.

    Foreign ``c185`` 507 slice 3 (session joint507): (1, 2) placed at a peak of significance 13.31 by (0, 2)-(1, 2)
    and (1, 2)-(1, 3), right, and (1, 1)-(1, 2), its own map 1.1 there against its own peak's 11.6 (its anchor
    (1, 1) then 6 px off); moved with (1, 1) and settled, that link alone held the piece {(0, 2), (0, 3), (1, 2),
    (1, 3)} 6.8 px off its own peak, 5.5-6.3 px off the truth (stage 3.7-6.1).

    Examples
    --------
    >>> searched = {((0, 0), (0, 1)): PairRegistration((0.0, 90.0), 0.5, 7.0),
    ...             ((0, 1), (1, 1)): PairRegistration((90.0, 0.0), 0.5, 7.0),
    ...             ((1, 0), (1, 1)): PairRegistration((0.0, 90.0), 0.5, 8.0)}
    >>> [shared_search_peak(pair, searched) for pair in searched]
    [True, True, False]
    """
    return any(other != pair and set(other) & set(pair) and registration.significance == searched[pair].significance
               for other, registration in searched.items())


def off_peak_lone_links_to_stage(
    tiles: Sequence[TileIndex],
    solved: Solution,
    own: Mapping[Pair, PairRegistration],
    tile_step_px: Sequence[float],
    searched: Mapping[Pair, PairRegistration] | None = None,
) -> tuple[Solution, set[TileIndex], set[Pair]]:
    """Refuse, one at a time, the kept links on no loop, not edge links, whose offset lies farther than
    :data:`~linumpy.stitching.pair_terms.OWN_PEAK_PX` from their own peak (:func:`off_own_peak`) where the other
    overlaps of the side each alone holds (:func:`~linumpy.stitching.pair_terms.bridged_side`) do not prefer its
    placement to the stage's (:func:`~linumpy.stitching.reanchor.evidence_over_stage`, margin >= 0, as for
    :func:`~linumpy.stitching.lone_links.far_lone_links_to_stage`; none scoring both: refused), and put that side on
    the stage model.

    Such a link's two readings disagree (its registration chose one peak, a search another: its map's best inside the
    window, the own peak lying on the border of its scored window or outside the window) and no loop checks either.
    Foreign ``a205`` 349 slice 4:
    (2, 0)-(3, 0) (true overlap 0.6 px: not scored; own peak on the border of its window, 2.6 px off) placed (3, 0),
    (3, 1), (4, 0) by the tile search 4.0 px from its own peak, 6.6 px from the truth; a cluster search and a piece
    search put them back there (two tiles 1.05 and 3.70 px farther than on the stage). Edge links are
    :func:`~linumpy.stitching.lone_links.lone_edge_links_across_only`'s (``c185`` 350 slice 2: (1, 1)-(2, 1), kept
    across its ridge only, 24 px off its own border peak across it, tiles that do not overlap, held a piece of four
    tiles 3.1-3.9 px off, 5.0-8.5 px on the stage). The side's other overlaps keep a link the searches placed with them
    (matrix ``overlap 10 %`` seed 166: (2, 0) placed by three links, (2, 0)-(2, 1) left alone holding it 12.8 px off
    its own peak, 1.15 px off the truth, its stage position 2.75). So is a link the search placed at a strong peak
    (its ``searched`` significance at least :data:`~linumpy.stitching.lone_links.STRONG_LONE_SIGNIFICANCE`) off a
    weaker own peak (foreign ``ha`` 465 slice 2: (2, 0)-(2, 1), own peak on its border, significance 0, 25.8 px off;
    the joint search's peak 7.15, 0.7 px off, its side's stage positions 5.2-5.4 px off; ``a205`` 349's search peak
    was 4.4), unless another link of its tiles carries the same search's peak (:func:`shared_search_peak`): that
    peak is not the link's own evidence (foreign ``c185`` 507 slice 3). A link whose removal makes the solve drop
    another pair is left.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    own : Mapping[Pair, PairRegistration]
        Every neighbour pair's own registration (its own peak; the evidence maps the searches read, for the side's
        other overlaps).
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    searched : Mapping[Pair, PairRegistration], optional
        Each kept link's registration as the searches left it (its significance the peak's that placed it); none:
        every link off its own peak is judged.

    Returns
    -------
    tuple
        ``((positions, model, kept), to_stage, refused)``: the tiles put on the stage model and the links refused.
    """

    def candidates(current: Solution) -> Iterator[tuple[Pair, Callable[[], Ruling]]]:
        positions, model, _ = current
        for link, links in lone_kept_links(current):
            if link.free_direction is None:
                yield (link.a, link.b), partial(off_peak_ruling, (link.a, link.b), link.offset, links, positions, model)

    def off_peak_ruling(pair: Pair, offset: Sequence[float], links: list[Pair],
                        positions: Mapping[TileIndex, np.ndarray], model: StageModel) -> Ruling:
        distance = off_own_peak(offset, own[pair])
        if distance <= OWN_PEAK_PX:
            return None
        if searched is not None and pair in searched and searched[pair].significance >= STRONG_LONE_SIGNIFICANCE \
                and own[pair].significance < STRONG_LONE_SIGNIFICANCE and not shared_search_peak(pair, searched):
            logger.info("lone link %s-%s lies %.1f px off its own peak (significance %.2f), left: its search's peak is "
                        "strong (%.2f)", *pair, distance, own[pair].significance, searched[pair].significance)
            return None
        side, margin = side_over_stage(pair, links, positions, model, own)
        if margin >= 0:
            logger.info("lone link %s-%s lies %.1f px off its own peak, left: the side's other links prefer its "
                        "placement to the stage's (%.2f)", *pair, distance, margin)
            return None
        return side, side, (f"lies {distance:.1f} px off its own peak, the side's other links' evidence over the "
                            f"stage placement {margin:.2f}")

    return refuse_one_at_a_time(tiles, solved, tile_step_px, candidates)
