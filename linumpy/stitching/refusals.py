"""Placements and links a later solve contradicts, dropped: joint placements the solve broke or that
cost pairs kept before, placements beyond the stage's window, weak links their loop blames, and searched
links left holding a piece whose other pairs were dropped."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from linumpy.stitching.cluster_search import clusters
from linumpy.stitching.global_solve import PairOffset, Solution, StageModel, TileIndex, bridges, solve_positions
from linumpy.stitching.link_conflicts import CULPRIT_MARGIN, swap_least_certain
from linumpy.stitching.off_peak import off_own_peak
from linumpy.stitching.pair_terms import JOINT_SIGNIFICANCE, OWN_PEAK_PX, STRONG_SIGNIFICANCE
from linumpy.stitching.pairwise import PairRegistration, offset_spread
from linumpy.stitching.reanchor import ANCHOR_SIGNIFICANCE
from linumpy.stitching.tile_search import SNAP_RADIUS_PX, joint_placement, search_radius

logger = logging.getLogger(__name__)


def drop_broken_placements(
    tiles: Sequence[TileIndex],
    positions: dict[TileIndex, np.ndarray],
    model: StageModel,
    kept: list[PairOffset],
    placed_by: Mapping[tuple[TileIndex, TileIndex], TileIndex],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    tile_step_px: Sequence[float],
) -> tuple[Solution, dict[tuple[TileIndex, TileIndex], TileIndex]]:
    """Demote to weak the surviving pairs of joint placements that lost a pair in the solve, and drop those
    that hold no significant joint peak without the lost pairs.

    A joint placement is significant only with all of its pairs: when the
    solve drops some of them as inconsistent, the others no longer have the
    support of the joint peak, and one left as the only link of a group of
    tiles (on no loop) would place the whole group by a wrong peak. Such a
    pair stays only inside a loop, as any weak pair (8 x 8 harsh seed 3: one
    pair 4.4 px off linked a group of 10 tiles, which ended 5 px off).
    Two survivors or more always close a loop, through the tile itself, and
    that loop checks nothing: each was snapped to its own peak next to the
    one joint peak (:func:`~linumpy.stitching.tile_search.joint_placement`),
    so they agree on the tile's position by construction, right or wrong.
    They stand only if they alone still hold a significant joint peak where
    the tile lies (:func:`survivors_hold_tile`); otherwise they are dropped and
    the tile goes to the later searches or the stage model. (``6x6`` seed
    116: (3, 4), joint significance 2.12 at the coarse speckle scale with
    three links of own significance 0.21, 1.33 and 0.68; the solve dropped
    the third, and the two left, 4.2 and 4.1 px off and agreeing, held the
    tile 4.1 px from the truth, 2.55 px farther than its stage position.)
    A survivor strong on its own (:func:`strong_on_its_own`: its own registration of significance
    :data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE` or more, the search leaving it at that peak) keeps
    its strength: it is the link the first solve keeps alone between tiles, and whether the first solve's largest
    group held it or a search placed its tile says nothing about its peak (foreign ``c185`` 481 slice 2: (2, 3)
    placed by (2, 3)-(3, 3), own significance 9.28, 0.16 px off, and (1, 3)-(2, 3), a border peak 1.7 px off;
    the solve dropped the second, and the first, weak, left (2, 3) alone on the stage model, 4.59 px off; kept,
    0.33 px; session cascade10).

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    positions : dict[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.
    kept : list[PairOffset]
        The pairs the solve kept.
    placed_by : Mapping[tuple[TileIndex, TileIndex], TileIndex]
        Each searched pair with the tile its joint placement placed.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration (its own significance).
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``((positions, model, kept), dropped, held)``, ``dropped`` the survivors
        dropped, each with the tile its placement placed, ``held`` the survivors kept strong on their own.
    """
    kept_ids = {(p.a, p.b) for p in kept}
    broken = {tile for pair, tile in placed_by.items() if pair not in kept_ids}
    placed = {t for p in kept for t in (p.a, p.b)}
    survivors = {tile: [((p.a, p.b), registrations[(p.a, p.b)]) for p in kept if placed_by.get((p.a, p.b)) == tile]
                 for tile in broken}

    def holds(tile: TileIndex) -> bool:
        others = placed - {tile}
        return survivors_hold_tile(tile, survivors[tile],
                               {t: np.rint(np.asarray(positions[t], float)).astype(int) for t in others},
                               (model.position(tile), search_radius(positions, others, model)),
                               np.rint(positions[tile]))

    unsupported = {tile for tile in broken if survivors[tile] and not holds(tile)}
    dropped = {(p.a, p.b): placed_by[(p.a, p.b)] for p in kept if placed_by.get((p.a, p.b)) in unsupported}
    held = {(p.a, p.b) for p in kept if placed_by.get((p.a, p.b)) in broken and (p.a, p.b) not in dropped
            and strong_on_its_own(p.offset, registrations[(p.a, p.b)])}
    demoted = [replace(p, strong=False) if placed_by.get((p.a, p.b)) in broken and (p.a, p.b) not in held else p
               for p in kept if (p.a, p.b) not in dropped]
    changed = bool(dropped) or any(p is not q for p, q in zip(demoted, kept))
    if changed or held:
        logger.info("joint placements of %s lost a pair in the solve: their other pairs count as weak, but %s "
                    "strong on their own; those of %s hold no significant joint peak without it: dropped",
                    sorted(broken), sorted(held), sorted(set(dropped.values())))
    return (solve_positions(tiles, demoted, tile_step_px) if changed else (positions, model, kept)), dropped, held


def strong_on_its_own(offset: Sequence[float], registration: PairRegistration) -> bool:
    """Whether a searched link at ``offset`` is its own strong registration: significance
    :data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE` or more on its own, ``offset`` within
    :data:`~linumpy.stitching.pair_terms.OWN_PEAK_PX` of its own peak
    (:func:`~linumpy.stitching.off_peak.off_own_peak`).

    Examples
    --------
    >>> strong_on_its_own((90.2, 0.1), PairRegistration((90.0, 0.0), 0.8, 9.3))
    True
    >>> strong_on_its_own((90.0, 4.0), PairRegistration((90.0, 0.0), 0.8, 9.3))
    False
    >>> strong_on_its_own((90.0, 0.0), PairRegistration((90.0, 0.0), 0.8, 2.9))
    False
    """
    return registration.significance >= STRONG_SIGNIFICANCE and off_own_peak(offset, registration) <= OWN_PEAK_PX


def links_costing_kept(
    tiles: Sequence[TileIndex],
    kept: Sequence[PairOffset],
    joint_pairs: Sequence[PairOffset],
    placed_by: Mapping[tuple[TileIndex, TileIndex], TileIndex],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    tile_step_px: Sequence[float],
) -> tuple[Solution, set[tuple[TileIndex, TileIndex]]]:
    """The solve of the ``kept`` pairs and the joint search's pairs, without the placements whose links cost
    pairs kept before.

    A joint placement's pairs enter the solve as strong, with the joint peak's
    significance, whatever each one's own; one of them from the placed tile to
    a neighbour placed earlier by weak pairs can then outweigh those pairs and
    the solve drops them instead of it. While the solve loses pairs kept
    before, the searched links touching their tiles are tried least
    significant (own significance) first, and the first whose removal gives
    back some of the lost pairs, losing no other, one of them at least
    :data:`~linumpy.stitching.link_conflicts.CULPRIT_MARGIN` times as
    significant on its own (clearly the better evidence, as in
    :func:`~linumpy.stitching.link_conflicts.swap_clearly_weaker`), names
    the placement (``placed_by``) refused, or that link alone when it alone
    cost every lost pair (:func:`_costly_refusal`): all its pairs leave the solve, as a
    group's placement or the late joint search's that loses a pair kept
    before, and its tile goes to the later searches. (Refusing the suspect
    link alone kept the placement on its other links: ``backlash +-1.5``
    seed 27, the right broad (1, 0)-(1, 1) refused, the wrong broad
    (1, 0)-(2, 0) kept, (1, 0) 1.10 px farther than its stage position.)
    Between links of like significance the solve's choice stands (``8x8
    harsh`` seed 116: a right searched link of own significance 2.75 cost a
    wrong pair of 0.68; refusing it put another tile 0.76 px farther than
    its stage position). (``tissue changing with depth`` seed
    133: (1, 0), placed 0.5 px off by its weak pairs to (0, 0) and (1, 1),
    own significance 2.98 and 0.91; the joint placement of (2, 0) linked it
    by (1, 0)-(2, 0), own 0.68, 4.3 px off; the solve dropped the two right
    pairs and (0, 0)-(0, 1), and (1, 0) ended 3.8 px off, 1.5 px farther than
    its stage position.)

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    kept : Sequence[PairOffset]
        The pairs kept before the joint search.
    joint_pairs : Sequence[PairOffset]
        The joint search's pairs (strong, at the joint peak's significance).
    placed_by : Mapping[tuple[TileIndex, TileIndex], TileIndex]
        Each searched pair with the tile its joint placement placed.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration (its own significance).
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``((positions, model, kept), refused)``, ``refused`` the keys of the pairs refused.
    """
    before = {(p.a, p.b) for p in kept}
    refused: set[tuple[TileIndex, TileIndex]] = set()
    solved = solve_positions(tiles, list(kept) + list(joint_pairs), tile_step_px)
    lost = before - {(p.a, p.b) for p in solved[2]}
    while lost:
        lost_tiles = {t for pair in lost for t in pair}
        suspects = sorted((p for p in joint_pairs if (p.a, p.b) not in refused and {p.a, p.b} & lost_tiles),
                          key=lambda p: registrations[(p.a, p.b)].significance)
        for suspect in suspects:
            trial = solve_positions(tiles, list(kept) + [p for p in joint_pairs if (p.a, p.b) not in refused
                                                         and p is not suspect], tile_step_px)
            left = before - {(p.a, p.b) for p in trial[2]}
            if left < lost and (max(registrations[pair].significance for pair in lost - left)
                                >= CULPRIT_MARGIN * registrations[(suspect.a, suspect.b)].significance):
                refused |= _costly_refusal(suspect, not left, tiles, kept, joint_pairs, refused, placed_by,
                                           tile_step_px)
                solved = solve_positions(tiles, list(kept) + [p for p in joint_pairs if (p.a, p.b) not in refused],
                                         tile_step_px)
                lost = before - {(p.a, p.b) for p in solved[2]}
                break
        else:
            break
    if refused:
        logger.info("searched links %s cost pairs kept before: refused", sorted(refused))
    return solved, refused


def _costly_refusal(
    suspect: PairOffset,
    gives_back_all: bool,
    tiles: Sequence[TileIndex],
    kept: Sequence[PairOffset],
    joint_pairs: Sequence[PairOffset],
    refused: set[tuple[TileIndex, TileIndex]],
    placed_by: Mapping[tuple[TileIndex, TileIndex], TileIndex],
    tile_step_px: Sequence[float],
) -> set[tuple[TileIndex, TileIndex]]:
    """The pairs :func:`links_costing_kept` refuses for a ``suspect`` searched link that costs pairs kept before:
    the link alone when its removal gives back every pair lost (``gives_back_all``) and no other link of its
    placement does, else every pair of its placement.

    When the lost pairs point to that one link, the rest of the placement agrees with the pairs kept before
    and keeps its tile (its survivors still face :func:`drop_broken_placements`). ``overlap 10 %`` seed 113:
    (2, 3)'s placement by (1, 3)-(2, 3) (own 0.06, 5.1 px off) and (2, 2)-(2, 3) (own 1.84, right); refusing
    it whole left one right pair lost, and then (2, 2)'s right placement was refused too (the tile on the stage
    4.43 px off); without the one link the solve keeps every pair, slice 0.99 / 4.43 -> 0.93 / 1.74 px before
    the later steps. When another link of the placement also gives the lost pairs back, the evidence does not
    say which of its links is wrong: the placement goes whole (``backlash +-1.5`` seed 27, two broad links of
    (1, 0)'s placement, each giving back (1, 1)-(2, 1); refusing the right one alone kept the wrong one,
    (1, 0) 1.10 px farther than its stage position)."""
    tile = placed_by[(suspect.a, suspect.b)]
    placement = {pair for pair, placed in placed_by.items() if placed == tile}
    if gives_back_all:
        before = {(p.a, p.b) for p in kept}
        rest = [p for p in joint_pairs if (p.a, p.b) not in refused]

        def gives_back_all_without(link: PairOffset) -> bool:
            solved = solve_positions(tiles, list(kept) + [p for p in rest if p is not link], tile_step_px)
            return before <= {(p.a, p.b) for p in solved[2]}

        if not any(gives_back_all_without(p) for p in rest if (p.a, p.b) in placement and p is not suspect):
            logger.info("searched link %s alone costs pairs kept before: refused, %s's placement stays on its other "
                        "links", (suspect.a, suspect.b), tile)
            return {(suspect.a, suspect.b)}
    return placement


def survivors_hold_tile(tile: TileIndex, survivors: Sequence[tuple[tuple[TileIndex, TileIndex], PairRegistration]],
                    anchors: Mapping[TileIndex, np.ndarray], prior: tuple[np.ndarray, float], where: np.ndarray,
                    members: Mapping[TileIndex, np.ndarray] | None = None) -> bool:
    """Whether the ``survivors`` of a broken joint placement of ``tile`` (of the group ``members`` placed by
    ``tile``, if given) alone hold a significant joint peak (:data:`~linumpy.stitching.pair_terms.JOINT_SIGNIFICANCE`)
    within :data:`~linumpy.stitching.tile_search.SNAP_RADIUS_PX` of ``where`` (the placement's position), the
    ``anchors`` and window ``prior`` those of the joint search
    (:func:`~linumpy.stitching.tile_search.joint_placement`).

    Parameters
    ----------
    tile : TileIndex
        The tile the placement placed (the group's origin for a group).
    survivors : Sequence[tuple[tuple[TileIndex, TileIndex], PairRegistration]]
        The placement's links the solve kept, each with its registration.
    anchors : Mapping[TileIndex, np.ndarray]
        The placed tiles' integer ``(y, x)`` positions, pixels.
    prior : tuple[np.ndarray, float]
        The search window: ``tile``'s stage-model position and the search radius, pixels.
    where : np.ndarray
        The placement's ``(y, x)`` position of ``tile``, pixels.
    members : Mapping[TileIndex, np.ndarray] or None
        The group's tiles with their integer offsets from ``tile``, pixels; ``None`` for one tile.

    Returns
    -------
    bool
        Whether the survivors' joint peak is significant and within the snap radius of ``where``.
    """
    placement = joint_placement(tile, survivors, anchors, prior, members)
    return (placement is not None and placement.significance >= JOINT_SIGNIFICANCE
            and float(np.max(np.abs(np.asarray(placement.position) - where))) <= SNAP_RADIUS_PX)


def swap_dropped_weak(
    tiles: Sequence[TileIndex],
    solved: Solution,
    weak: Sequence[PairOffset],
    current: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    tile_step_px: Sequence[float],
) -> Solution:
    """The solve of confident and plausible weak pairs, with each weak pair it dropped put back in place of
    the kept pair that their loop clearly blames (:func:`~linumpy.stitching.link_conflicts.swap_least_certain`).

    The solve drops the larger residual in standard errors, and between two weak links those come from the
    sub-pixel fits, not from which peak is right (``8 x 8 harsh`` seed 101: (5, 5)-(5, 6), significance 1.76,
    spread 0.34 px, 0.7 px off, dropped; (4, 5)-(4, 6), 0.93, spread 1.57 px, 2.8 px off, kept, and a corner
    of 13 tiles hung 2.5 px off on it, one tile 2.3 px farther than the stage). ``current`` holds the pairs'
    registrations as kept (switched peaks included), ``registrations`` their own significance.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the solve with the confident and plausible weak pairs.
    weak : Sequence[PairOffset]
        The plausible weak pairs given to that solve.
    current : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        The pairs' registrations as kept (switched peaks included), for their spreads.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration (its own significance).
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    Solution
        ``(positions, model, kept)`` after the swaps (``solved`` itself if the solve dropped no weak pair).
    """
    kept_ids = {(p.a, p.b) for p in solved[2]}
    dropped = [p for p in weak if (p.a, p.b) not in kept_ids]
    if not dropped:
        return solved
    spreads = {(p.a, p.b): offset_spread(current[(p.a, p.b)].scores, current[(p.a, p.b)].offset)
               for p in [*solved[2], *dropped]}
    return swap_least_certain(tiles, solved, dropped, spreads,
                              {pair: r.significance for pair, r in registrations.items()}, ANCHOR_SIGNIFICANCE,
                              tile_step_px)[0]


def orphaned_searches(
    tiles: Sequence[TileIndex],
    solved: Solution,
    dropped: set[tuple[TileIndex, TileIndex]],
    searched: set[tuple[TileIndex, TileIndex]],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    tile_step_px: Sequence[float],
) -> Solution:
    """Demote to weak the searched links left on no loop whose piece lost pairs to the broken-loop step.

    A joint (or cluster, or piece) search places a tile by the summed evidence of its links to tiles placed
    then, and its links join the solve as strong: each may then be a tile's only link. When the broken-loop
    step (:func:`~linumpy.stitching.link_conflicts.drop_broken_loop_links`) drops the pairs that had placed one
    of those neighbours, the neighbour now hangs on the searched tile, and the search's significance counted a
    neighbour that no longer stands (``8 x 8 harsh`` seed 102: empty tile (7, 7) placed at joint significance
    2.1 by (6, 7) and (7, 6); (7, 6)'s two broad links dropped; the piece {(7, 6), (7, 7)} then hung on
    (6, 7)-(7, 7) alone, own significance below 1, 6.6 px off, (7, 7) 2.6 px farther than the stage). Such a
    link (``searched``, on no loop, own significance below :data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE`,
    the side it holds containing a tile of a ``dropped`` pair that no search added) counts as weak: the solve drops it,
    and its tiles go to the later searches or the stage model. A dropped pair that a search added is one of the
    search's own links, and the others placed the tiles without it (``backlash +-3`` seed 4: the broad link
    (1, 3)-(2, 3) of a joint placement dropped, its good link (0, 0)-(0, 1), own significance 2.6, holds the
    piece, as the broken-loop step means it to).

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    dropped : set[tuple[TileIndex, TileIndex]]
        The pairs the broken-loop step dropped.
    searched : set[tuple[TileIndex, TileIndex]]
        The pairs added by the joint, cluster and piece searches.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration (its own significance).
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    Solution
        ``(positions, model, kept)``, solved again with such links weak (``solved`` itself if there are none).
    """
    kept = solved[2]
    touched = {t for pair in dropped - searched for t in pair}
    if not touched:
        return solved
    keys = [(p.a, p.b) for p in kept]
    demoted = set()
    for k in bridges(kept):
        if keys[k] not in searched or registrations[keys[k]].significance >= STRONG_SIGNIFICANCE:
            continue
        sides = [g for g in clusters(tiles, keys[:k] + keys[k + 1:]) if keys[k][0] in g or keys[k][1] in g]
        if set(min(sides, key=len)) & touched:
            demoted.add(keys[k])
    if not demoted:
        return solved
    logger.info("searched links %s hold tiles whose other pairs the broken loops dropped: weak", sorted(demoted))
    return solve_positions(tiles, [replace(p, strong=False) if (p.a, p.b) in demoted else p for p in kept],
                           tile_step_px)


def drop_implausible(
    tiles: Sequence[TileIndex],
    positions: dict[TileIndex, np.ndarray],
    model: StageModel,
    kept: list[PairOffset],
    tile_step_px: Sequence[float],
    max_shift_px: float,
) -> Solution:
    """Send back to the stage model the tiles placed farther from it than the stage can err.

    ``max_shift_px`` is the stage's uncertainty: pairs that put a tile
    farther than that from its stage-model position agree with each other
    (they passed the loop checks) but not with the stage, as wrong pairs in
    empty agarose can. All pairs of the farthest such tile are dropped and the
    positions solved again, until none is left.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    positions : dict[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.
    kept : list[PairOffset]
        The pairs the solve kept.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    max_shift_px : float
        The stage's uncertainty (the pairs' search half-width), pixels.

    Returns
    -------
    Solution
        ``(positions, model, kept)`` with no tile farther than ``max_shift_px`` from its stage-model position.
    """
    while kept:
        placed = {t for pair in kept for t in (pair.a, pair.b)}
        deviation = {t: float(np.max(np.abs(positions[t] - model.position(t)))) for t in placed}
        worst = max(placed, key=lambda t: (deviation[t], t))
        if deviation[worst] <= max_shift_px:
            break
        logger.info("tile %s placed %.1f px from its stage position: back on the stage model",
                    worst, deviation[worst])
        positions, model, kept = solve_positions(
            tiles, [p for p in kept if worst not in (p.a, p.b)], tile_step_px)
    return positions, model, kept
