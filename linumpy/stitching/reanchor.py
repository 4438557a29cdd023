"""Search again, once all tiles are placed, the pieces that the joint search hung on weak links.

The joint search (:mod:`linumpy.stitching.tile_search`) places tiles one at
a time and treats every placed tile as an exact anchor, including one it
placed a moment before from a single weak link. Tiles placed next from that
anchor inherit its error, their links to the other placed tiles are snapped
to peaks near joint peaks it pulled off, and in the solve these links agree
with each other, so the outlier removal keeps them against a better one.

Here the placed tiles are cut into **pieces**: tiles joined by anchoring
pairs (those kept before the joint search, and any pair whose own
significance reaches :data:`ANCHOR_SIGNIFICANCE`). The largest piece is
trusted; every other hangs on weak links only, chosen greedily. Each is
searched again as one rigid piece (its tiles at their solved relative
positions) by the summed evidence of *all* its pairs with the trusted tiles
(:func:`~linumpy.stitching.tile_search.joint_placement` with ``members``).
The caller (:func:`linumpy.stitching.reanchor_pieces.reanchor`) trusts a piece
whose joint peak is significant, and moves it there first (links
re-snapped, refined, solved again) if that peak lies more than
:data:`~linumpy.stitching.tile_search.SNAP_RADIUS_PX` from where it is
(:func:`moved`).

Once the solve is final, a piece that weak links alone hold can still lie
far from the stage model where its links hardly prefer that placement to the
stage's: :func:`evidence_over_stage` measures by how much they do (the
caller is :func:`linumpy.stitching.stage_pieces.weak_pieces_to_stage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from linumpy.stitching.cluster_search import clusters
from linumpy.stitching.global_solve import StageModel, TileIndex
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration
from linumpy.stitching.tile_search import SNAP_RADIUS_PX, Placement, joint_placement, search_radius

Pair = tuple[TileIndex, TileIndex]

#: A pair at least this significant alone joins its two tiles into one piece
#: (the significance a pair needs to be the only link between tiles).
ANCHOR_SIGNIFICANCE = 3.0


def pieces(placed: Iterable[TileIndex], anchoring: Iterable[Pair]) -> list[list[TileIndex]]:
    """The groups of ``placed`` tiles joined by ``anchoring`` pairs, largest first.

    The largest (ties: the one holding the first tile) is the reference the
    others are searched against.
    """
    return sorted(clusters(sorted(placed), list(anchoring)), key=lambda piece: (-len(piece), piece))


def research_piece(
    piece: Sequence[TileIndex],
    registrations: Mapping[Pair, PairRegistration],
    positions: Mapping[TileIndex, np.ndarray],
    trusted: set[TileIndex],
    model: StageModel,
) -> Placement | None:
    """Search ``piece`` again as one rigid piece against the ``trusted`` tiles at their solved ``positions``.

    Returns
    -------
    Placement or None
        The joint placement of the piece (``tile`` its first tile; the
        offsets of its links to ``trusted`` tiles); ``None`` if no pair links
        it to them.
    """
    links = links_out(piece, registrations, trusted)
    if not links:
        return None
    origin = piece[0]
    members = {t: np.rint(np.asarray(positions[t], float) - positions[origin]).astype(int) for t in piece}
    anchors = {t: np.rint(np.asarray(positions[t], float)).astype(int) for t in trusted}
    prior = (model.position(origin), search_radius(positions, trusted, model))
    return joint_placement(origin, links, anchors, prior, members)


def links_out(piece: Sequence[TileIndex], registrations: Mapping[Pair, PairRegistration],
              others: set[TileIndex]) -> list[tuple[Pair, PairRegistration]]:
    """The scored pairs between a tile of ``piece`` and a tile of ``others``."""
    inside = set(piece)
    return [(pair, r) for pair, r in registrations.items() if r.scores
            and (pair[0] in inside) != (pair[1] in inside) and (pair[0] in others or pair[1] in others)]


def moved(placement: Placement, positions: Mapping[TileIndex, np.ndarray]) -> bool:
    """Whether the joint peak of ``placement`` lies farther than
    :data:`~linumpy.stitching.tile_search.SNAP_RADIUS_PX` from where its tile is."""
    current = np.rint(np.asarray(positions[placement.tile], float))
    return bool(np.max(np.abs(np.asarray(placement.position) - current)) > SNAP_RADIUS_PX)


def evidence_over_stage(piece: Sequence[TileIndex], links: Sequence[tuple[Pair, PairRegistration]],
                        positions: Mapping[TileIndex, np.ndarray], model: StageModel) -> float:
    """Evidence of the links of ``piece`` for where it lies over where the stage model puts it, standard errors.

    Each of the scored ``links`` of the piece with other tiles (:func:`links_out`;
    those at their solved positions) is read with the piece's tiles at their solved
    ``positions`` and with each at its stage-model position (:func:`evidence_over`).

    Returns
    -------
    float
        The margin; NaN if no pair scores both placements.
    """
    return evidence_over(links, positions, {**positions, **{t: model.position(t) for t in piece}})


def evidence_over(links: Sequence[tuple[Pair, PairRegistration]], positions: Mapping[TileIndex, np.ndarray],
                  alternative: Mapping[TileIndex, np.ndarray]) -> float:
    """Evidence of ``links`` for the tiles at ``positions`` over the tiles at ``alternative``, standard errors.

    Each scored link is read at two offsets, its tiles' difference in ``positions`` and in
    ``alternative``. A pair's value at an offset is its evidence maximum within
    :data:`~linumpy.stitching.tile_search.SNAP_RADIUS_PX` of the rounded
    offset (positions are not whole pixels); a pair that does not score
    both offsets (one beyond its search, no overlap) is left
    out. Per speckle scale, the summed difference divided by ``sqrt(k)`` for
    ``k`` pairs (as the joint search sums evidence); the smallest over the
    scales is returned: the searches put the tiles on maxima of these noisy
    maps, which inflates the evidence where they lie at the scale whose noise
    they followed (with speckle drawn anew in each tile, the finer one), so
    ``positions`` are preferred only as far as every scale prefers them.

    Returns
    -------
    float
        The margin; NaN if no pair scores both placements.
    """
    margins = []
    for scale in sorted({m.speckle_px for _, r in links for m in r.scores}):
        differences = []
        for (a, b), registration in links:
            for evidence_map in (m for m in registration.scores if m.speckle_px == scale):
                here = _evidence_near(evidence_map, np.asarray(positions[b], float) - positions[a])
                there = _evidence_near(evidence_map, np.asarray(alternative[b], float) - alternative[a])
                if np.isfinite(here) and np.isfinite(there):
                    differences.append(here - there)
        if differences:
            margins.append(float(np.sum(differences) / np.sqrt(len(differences))))
    return min(margins, default=float("nan"))


def _evidence_near(evidence_map: EvidenceMap, offset: np.ndarray) -> float:
    """The largest evidence of ``evidence_map`` within :data:`SNAP_RADIUS_PX` of the rounded ``offset``
    (NaN where it scores none)."""
    index = np.rint(offset).astype(int) - np.asarray(evidence_map.centre) + evidence_map.radius
    lows = np.maximum(index - SNAP_RADIUS_PX, 0)
    window = evidence_map.values[lows[0]:max(index[0] + SNAP_RADIUS_PX + 1, 0),
                                 lows[1]:max(index[1] + SNAP_RADIUS_PX + 1, 0)]
    return float(np.nanmax(window)) if np.any(np.isfinite(window)) else float("nan")
