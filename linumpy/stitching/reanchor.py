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
The caller (:func:`linumpy.stitching.estimate._reanchor`) trusts a piece
whose joint peak is significant, and moves it there first (links
re-snapped, refined, solved again) if that peak lies more than
:data:`~linumpy.stitching.tile_search.SNAP_RADIUS_PX` from where it is
(:func:`moved`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from linumpy.stitching.cluster_search import clusters
from linumpy.stitching.global_solve import StageModel, TileIndex
from linumpy.stitching.pairwise import PairRegistration
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
    inside = set(piece)
    links = [(pair, r) for pair, r in registrations.items() if r.scores
             and (pair[0] in inside) != (pair[1] in inside) and (pair[0] in trusted or pair[1] in trusted)]
    if not links:
        return None
    origin = piece[0]
    members = {t: np.rint(np.asarray(positions[t], float) - positions[origin]).astype(int) for t in piece}
    anchors = {t: np.rint(np.asarray(positions[t], float)).astype(int) for t in trusted}
    prior = (model.position(origin), search_radius(positions, trusted, model))
    return joint_placement(origin, links, anchors, prior, members)


def moved(placement: Placement, positions: Mapping[TileIndex, np.ndarray]) -> bool:
    """Whether the joint peak of ``placement`` lies farther than
    :data:`~linumpy.stitching.tile_search.SNAP_RADIUS_PX` from where its tile is."""
    current = np.rint(np.asarray(positions[placement.tile], float))
    return bool(np.max(np.abs(np.asarray(placement.position) - current)) > SNAP_RADIUS_PX)
