"""Weak links that only an edge link's ridge checks along one direction, and that the ridge contradicts.

A weak pair is kept only on a loop, where the solve can check it (:func:`~linumpy.stitching.global_solve.
solve_positions`). A loop closed by an edge link checks nothing along that link's ridge: the solve does not test a
residual along a free direction, so the weak pair alone places its side along it, and where the solve then puts the
edge link beyond its ridge the one piece of evidence there is against the weak pair.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from linumpy.stitching.global_solve import PairOffset, TileIndex, solve_positions
from linumpy.stitching.pair_terms import PARALLEL_RIDGES_DEG
from linumpy.stitching.pairwise import PairRegistration
from linumpy.stitching.reanchor import pieces
from linumpy.stitching.ridges import solved_beyond_ridge

logger = logging.getLogger(__name__)

Pair = tuple[TileIndex, TileIndex]

#: How far, in ridge lengths, the solve must put an edge link from its own peak along its ridge for the ridge to
#: contradict the weak pair placing it there (:func:`~linumpy.stitching.ridges.solved_beyond_ridge`): a whole
#: ridge, not half. An edge link's peak tends to the larger overlap, so the truth can lie beyond half its ridge
#: (foreign ``a205`` 335 slice 3: (2, 1)-(2, 2), ridge 7.3 px, true offset 4.35 px from its peak; with half, the
#: right weak pair (1, 1)-(1, 2), 0.08 px from the truth, was refused and the slice's mean error rose 0.64 ->
#: 1.69 px); ``8 x 8 harsh`` 173's was solved 11.6 px from its peak, ridge 8.2 px.
CONTRADICTING_REACH = 1.0


def measures_along(pair: PairOffset, direction: Sequence[float]) -> bool:
    """Whether ``pair`` locates its tiles along ``direction`` (a unit ``(y, x)`` vector): a link that is not an edge
    link, or an edge link whose ridge lies more than :data:`~linumpy.stitching.pair_terms.PARALLEL_RIDGES_DEG` from
    it."""
    if pair.free_direction is None:
        return True
    return abs(float(np.dot(pair.free_direction, direction))) < np.cos(np.radians(PARALLEL_RIDGES_DEG))


def ridge_contradicted_bridges(tiles: Sequence[TileIndex], kept: Sequence[PairOffset],
                               beyond: Sequence[PairOffset], weak: set[Pair]) -> set[Pair]:
    """The ``weak`` pairs of ``kept`` that alone join the two tiles of an edge link of ``beyond`` along its ridge.

    Among the kept links that locate tiles along the edge link's ridge (:func:`measures_along`), such a pair is the
    only one on every path between the edge link's tiles: no loop checks it along the ridge, and the ridge, the
    only other evidence there, does not reach where the solve put the tiles.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    kept : Sequence[PairOffset]
        The pairs the solve kept.
    beyond : Sequence[PairOffset]
        The edge links of ``kept`` that the solve puts beyond their ridge
        (:func:`~linumpy.stitching.ridges.solved_beyond_ridge`, :data:`CONTRADICTING_REACH`).
    weak : set[Pair]
        The weak pairs that may be blamed.

    Returns
    -------
    set[Pair]
        The blamed pairs.

    Examples
    --------
    >>> square = [PairOffset((0, 0), (0, 1), (0.0, 90.0), 10.0), PairOffset((1, 0), (1, 1), (0.0, 90.0), 10.0)]
    >>> edge = PairOffset((0, 0), (1, 0), (90.0, 0.0), 1.0, free_direction=(0.0, 1.0))
    >>> weak = PairOffset((0, 1), (1, 1), (90.0, 10.0), 1.0, strong=False)
    >>> ridge_contradicted_bridges([(0, 0), (0, 1), (1, 0), (1, 1)], square + [edge, weak], [edge],
    ...                            {((0, 1), (1, 1))})
    {((0, 1), (1, 1))}
    """
    blamed: set[Pair] = set()
    for edge in beyond:
        along = [p for p in kept if p is not edge and measures_along(p, edge.free_direction)]
        if not _joined(tiles, along, edge):
            continue
        blamed |= {(p.a, p.b) for p in along
                   if (p.a, p.b) in weak and not _joined(tiles, [q for q in along if q is not p], edge)}
    return blamed


def _joined(tiles: Sequence[TileIndex], links: Sequence[PairOffset], edge: PairOffset) -> bool:
    """Whether ``links`` join the two tiles of ``edge``."""
    return any(edge.a in piece and edge.b in piece for piece in pieces(tiles, [(p.a, p.b) for p in links]))


def weak_without_ridge_contradicted_bridges(
    tiles: Sequence[TileIndex],
    confident: Sequence[PairOffset],
    weak: Sequence[PairOffset],
    current: Mapping[Pair, PairRegistration],
    tile_step_px: Sequence[float],
) -> tuple[list[PairOffset], set[Pair]]:
    """The plausible weak pairs without those an edge link's ridge contradicts where nothing else checks them.

    The confident and ``weak`` pairs are solved; a weak pair :func:`ridge_contradicted_bridges` blames (the only link
    placing an edge link's tiles along its ridge, the solve putting that edge link beyond its whole ridge, :data:`CONTRADICTING_REACH`) is taken out
    and the pairs solved again, until none is blamed. Only edge links beyond their ridge count: a ridge the solve
    respects is no sign. ``8 x 8 harsh`` seed 173 (session empty10, traced by sigma10): (7, 1)-(7, 2), significance
    0.99 between two empty tiles, 16 px off along x, was the only link placing (7, 2) along x; (6, 2)-(7, 2), an edge
    link free along x (ridge 8.2 px), was solved 11.6 px from its peak there, and the right (6, 3)-(7, 3) (0.69)
    was dropped by the solve as the larger residual. The piece {(7, 2), (7, 3)} (with the textured (7, 3)) lay
    17 px off, and the joint search placed the empty (7, 4) on it, 19.6 px off: (7, 3) ended 11.9 px farther from
    the truth than its stage position. Without the pair the cluster search placed row 7 within 1.6 px.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    confident : Sequence[PairOffset]
        The confident pairs.
    weak : Sequence[PairOffset]
        The plausible weak pairs.
    current : Mapping[Pair, PairRegistration]
        The pairs' registrations as kept (switched peaks included), for the edge links' ridges.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    weak : list[PairOffset]
        ``weak`` without the blamed pairs.
    refused : set[Pair]
        The blamed pairs.
    """
    refused: set[Pair] = set()
    while weak:
        positions, _, kept = solve_positions(tiles, list(confident) + list(weak), tile_step_px)
        beyond = [p for p in kept if solved_beyond_ridge(p, positions, current, CONTRADICTING_REACH)]
        blamed = ridge_contradicted_bridges(tiles, kept, beyond, {(p.a, p.b) for p in weak})
        if not blamed:
            break
        logger.info("weak pairs %s alone place an edge link's tiles along its ridge, beyond it: refused",
                    sorted(blamed))
        refused |= blamed
        weak = [p for p in weak if (p.a, p.b) not in blamed]
    return list(weak), refused
