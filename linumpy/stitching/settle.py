"""Kept searched links whose whole pixel the sub-pixel fit leaves, settled once every search has run.

The searches (:mod:`linumpy.stitching.joint_placement`, :mod:`linumpy.stitching.cluster_search`,
:mod:`linumpy.stitching.reanchor_pieces`, :mod:`linumpy.stitching.corroboration`, a loop's switch) leave a link at its
whole pixel where its sub-pixel fit leaves its box. Settling it there, inside the searches (session flat10), changed
what they ranked and accepted on slices where no link ended settled (held-out foreign ``a205`` 414 slice 3: tiles
1.282 -> 1.307 px, volume NCC 0.9289 -> 0.9259; reverted). Here only the links kept after the last search are
settled (:func:`~linumpy.stitching.pairwise.settled_search_offset`) and the positions solved again with the same
links: a slice none of whose kept links is settled is left exactly as it was (session flat10b).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from linumpy.stitching.global_solve import Solution, TileIndex, solve_positions
from linumpy.stitching.pair_terms import pair_offset
from linumpy.stitching.pairwise import PairRegistration, settled_search_offset

logger = logging.getLogger(__name__)


def settled_links(
    kept: Sequence,
    searched: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    flattened: Mapping[TileIndex, np.ndarray],
) -> dict[tuple[TileIndex, TileIndex], PairRegistration]:
    """The kept links a search placed whose whole pixel the fit leaves, each settled from its evidence.

    Parameters
    ----------
    kept : sequence of PairOffset
        The links of the current solve.
    searched : mapping
        ``(a, b) -> PairRegistration`` as the searches refined them; a kept link is settled only where its offset is
        the search's (not its own registration's, kept by another route).
    flattened : mapping
        ``tile -> flat-fielded projection``.

    Returns
    -------
    dict
        ``(a, b) -> PairRegistration`` at the settled offset and standard error, ``settled`` true.
    """
    settled = {}
    for link in kept:
        pair = (link.a, link.b)
        registration = searched.get(pair)
        if registration is None or tuple(link.offset) != tuple(registration.offset):
            continue
        found = settled_search_offset(flattened[link.a], flattened[link.b], registration)
        if found is not None:
            settled[pair] = replace(registration, offset=found[0], sigma_px=found[1], settled=True)
    return settled


def settle_kept_searches(
    tiles: Sequence[TileIndex],
    solved: Solution,
    searched: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    flattened: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
) -> tuple[Solution, dict[tuple[TileIndex, TileIndex], PairRegistration]]:
    """The solve with its settled searched links (:func:`settled_links`), if the solve keeps every link.

    Parameters
    ----------
    tiles : sequence of TileIndex
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` after the last search.
    searched : mapping
        ``(a, b) -> PairRegistration`` as the searches refined them.
    flattened : mapping
        ``tile -> flat-fielded projection``.
    tile_step_px : sequence of float
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``(solution, settled)``: ``solved`` itself and ``{}`` where no kept link is settled or the solve with them
        drops a link (logged); else the solve with the settled links in place and their registrations.
    """
    settled = settled_links(solved[2], searched, flattened)
    if not settled:
        return solved, {}
    links = [pair_offset(p.a, p.b, settled[(p.a, p.b)], p.strong) if (p.a, p.b) in settled else p
             for p in solved[2]]
    attempt = solve_positions(tiles, links, tile_step_px)
    lost = {(p.a, p.b) for p in links} - {(p.a, p.b) for p in attempt[2]}
    if lost:
        logger.info("settled links %s not used: the solve with them drops %s", sorted(settled), sorted(lost))
        return solved, {}
    logger.info("searched links settled from their evidence: %s", sorted(settled))
    return attempt, settled
