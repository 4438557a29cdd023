"""A kept link on no loop outvoted by the other candidate links that join the same two blocks of tiles.

The solve drops, one at a time, the pair with the largest residual: where one strong link and several weak ones
join two blocks of tiles and disagree, the strong link's weight leaves the residual on the weak ones, and they go
one after the other, however many agree with each other. A strong peak is no proof that its tiles overlap as it
says: the tissue's content continuing across a narrow overlap makes strong wrong peaks (session sliver10).

A candidate whose contradiction the kept pairs absorb once it is solved with them (:func:`absorbed`: a tile they
hold loosely, along the ridges of its edge links, moves to it) says nothing against a link: no vote (session
outvote10).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from linumpy.stitching.global_solve import (MAX_RESIDUAL_PX, PairOffset, Solution, TileIndex, bridges,
                                             solve_positions)
from linumpy.stitching.reanchor import Pair, pieces

#: ``(link, (positions, model, kept), candidates kept in its place)`` of a refusal (:func:`outvoted_link`).
Outvoting = tuple[Pair, Solution, list[Pair]]

logger = logging.getLogger(__name__)

#: Fewest candidate links, other than the kept one, that must contradict it and that the solve must keep together
#: in its place: one weak link against a strong one is no vote.
MIN_OUTVOTING_LINKS = 2


def outvoted_lone_links(
    tiles: Sequence[TileIndex],
    solved: Solution,
    candidates: Sequence[PairOffset],
    significance: Mapping[Pair, float],
    tile_step_px: Sequence[float],
) -> tuple[Solution, dict[Pair, list[Pair]], set[Pair]]:
    """Refuse, one at a time, the kept link on no loop that several candidate links joining its two blocks outvote
    (:func:`outvoted_link`), and keep those in its place.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    candidates : Sequence[PairOffset]
        Every candidate pair at its own peak (those not kept vote; a refused link no longer does).
    significance : Mapping[Pair, float]
        The significance of every kept pair.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``((positions, model, kept), refused, absorbed)``: ``refused`` maps each refused link to the links kept in its
        place; ``absorbed`` holds the candidates whose votes the kept pairs absorbed (:func:`absorbed`).
    """
    refused: dict[Pair, list[Pair]] = {}
    absorbed_votes: set[Pair] = set()
    while True:
        outvoted, absorbed_now = outvoted_link(tiles, solved, [c for c in candidates if (c.a, c.b) not in refused],
                                               significance, tile_step_px)
        if absorbed_now - absorbed_votes:
            logger.info("candidate(s) %s contradict the solve across a link on no loop, absorbed by the kept pairs "
                        "when solved with them: no vote", sorted(absorbed_now - absorbed_votes))
        absorbed_votes |= absorbed_now
        if outvoted is None:
            return solved, refused, absorbed_votes
        link, solved, refused[link] = outvoted
        logger.info("kept link %s-%s on no loop outvoted by %s, refused", *link, refused[link])


def outvoted_link(
    tiles: Sequence[TileIndex],
    solved: Solution,
    candidates: Sequence[PairOffset],
    significance: Mapping[Pair, float],
    tile_step_px: Sequence[float],
) -> tuple[Outvoting | None, set[Pair]]:
    """The kept link on no loop that the candidates not kept outvote, the solve without it and the candidates kept.

    Each candidate not kept whose tiles the solve places beyond
    :data:`~linumpy.stitching.global_solve.MAX_RESIDUAL_PX` from its offset says that a kept link on its loop erred,
    unless the kept pairs absorb it (:func:`absorbed`): a vote against each kept link on no loop that separates its
    two tiles. The link with the most votes (ties: the least significant, the likeliest to err) is refused when at
    least :data:`MIN_OUTVOTING_LINKS` candidates vote against it and the solve without it, the candidates joining
    its two blocks added, keeps at least :data:`MIN_OUTVOTING_LINKS` of them (they agree with each other) and every
    other kept pair, and places the link's tiles beyond :data:`~linumpy.stitching.global_solve.MAX_RESIDUAL_PX` from
    its offset (else the candidates agree with it: nothing to refuse).

    Returns
    -------
    tuple
        ``(outvoting, absorbed)``: ``outvoting`` is ``(link, (positions, model, kept), candidates kept in its
        place)``, or None when no link is outvoted; ``absorbed`` the candidates that contradict the solve across a
        kept link on no loop whose contradiction the kept pairs absorb (no vote).
    """
    positions, _, kept = solved
    kept_ids = {(p.a, p.b) for p in kept}
    placed = {t for p in kept for t in (p.a, p.b)}
    voters = [replace(c, strong=False) for c in candidates if (c.a, c.b) not in kept_ids and {c.a, c.b} <= placed]
    sides = {k: _side(kept, kept[:k] + kept[k + 1:], kept[k].a) for k in bridges(kept)}
    contradicting = [c for c in voters if residual_px(positions, c) > MAX_RESIDUAL_PX
                     and any((c.a in side) != (c.b in side) for side in sides.values())]
    absorbed_votes = {(c.a, c.b) for c in contradicting if absorbed(tiles, kept, c, tile_step_px)}
    against = [c for c in contradicting if (c.a, c.b) not in absorbed_votes]
    tally = [(sum((c.a in side) != (c.b in side) for c in against), -significance[(kept[k].a, kept[k].b)], k, side)
             for k, side in sides.items()]
    if not tally or max(tally)[0] < MIN_OUTVOTING_LINKS:
        return None, absorbed_votes
    _, _, k, side = max(tally, key=lambda vote: vote[:2])
    rest = kept[:k] + kept[k + 1:]
    crossing = [c for c in voters if (c.a in side) != (c.b in side)]
    attempt = solve_positions(tiles, rest + crossing, tile_step_px)
    attempt_ids = {(p.a, p.b) for p in attempt[2]}
    instead = [(c.a, c.b) for c in crossing if (c.a, c.b) in attempt_ids]
    if (len(instead) < MIN_OUTVOTING_LINKS or not {(p.a, p.b) for p in rest} <= attempt_ids
            or residual_px(attempt[0], kept[k]) <= MAX_RESIDUAL_PX):
        return None, absorbed_votes
    return ((kept[k].a, kept[k].b), attempt, instead), absorbed_votes


def absorbed(tiles: Sequence[TileIndex], kept: Sequence[PairOffset], candidate: PairOffset,
             tile_step_px: Sequence[float]) -> bool:
    """Whether the kept pairs absorb ``candidate``'s contradiction: solved with it, nothing pruned, its residual lies
    within :data:`~linumpy.stitching.global_solve.MAX_RESIDUAL_PX`.

    The solve places a tile that the kept pairs hold loosely (along the ridges of its edge links, by the stage
    model's weak pull) where they leave it; a candidate that contradicts that placement moves the tile when solved
    with them, and contradicts none of their links. Foreign ``ha`` 483 slice 3: (1, 1), held by two edge links
    whose ridges lie 6 degrees apart, sat 1.46 px off along them; the right (1, 0)-(1, 1) (0.3 px off the truth),
    2.14 px from the solve, is absorbed (0.54 px), and so is the wrong (2, 0)-(2, 1) (4.7 px off, 5.12 px from the
    solve, 1.11 px once solved with the pairs: (2, 0) is held across its edge link's ridge only); counted, they had
    outvoted the right strong (0, 0)-(1, 0).

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    kept : Sequence[PairOffset]
        The pairs of the current solve.
    candidate : PairOffset
        A candidate not kept, at its own peak.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    bool
        True when the candidate's residual, solved with the kept pairs, is at most ``MAX_RESIDUAL_PX``.
    """
    pairs = [replace(p, strong=True) for p in [*kept, candidate]]  # strong: no pair dropped as a weak bridge
    positions = solve_positions(tiles, pairs, tile_step_px, max_residual_px=np.inf, weighted=False,
                                warn_steps=False, min_group_fraction=0.0)[0]
    return residual_px(positions, candidate) <= MAX_RESIDUAL_PX


def _side(kept: Sequence[PairOffset], rest: Sequence[PairOffset], tile: TileIndex) -> set[TileIndex]:
    """The tiles of ``kept`` that the ``rest`` join to ``tile``."""
    placed = {t for p in kept for t in (p.a, p.b)}
    return set(next(g for g in pieces(placed, [(p.a, p.b) for p in rest]) if tile in g))


def residual_px(positions: Mapping[TileIndex, np.ndarray], pair: PairOffset) -> float:
    """Length of ``pair``'s residual at ``positions`` (across its free direction only), pixels."""
    return float(np.hypot(*pair.constrained(np.asarray(positions[pair.b], float) - positions[pair.a]
                                            - np.asarray(pair.offset))))
