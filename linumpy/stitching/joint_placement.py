"""Tiles the first solve left out, placed by the joint evidence of their links to the placed tiles: one
tile at a time (:mod:`linumpy.stitching.tile_search`), groups registered among themselves as rigid pieces,
clusters of neighbours in one search (:mod:`linumpy.stitching.cluster_search`); and the small strong group
the searches start from when no confident group is large enough."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits

from linumpy.stitching.cluster_search import clusters, place_cluster
from linumpy.stitching.departures import departure_bound, plausible
from linumpy.stitching.global_solve import (MIN_GROUP_FRACTION, PairOffset, Solution, StageModel, TileIndex,
                                            solve_positions)
from linumpy.stitching.off_peak import off_own_peak
from linumpy.stitching.pair_terms import (CONFIDENT_SIGNIFICANCE, JOINT_SIGNIFICANCE, MIN_DEPARTURE_PAIRS, OWN_PEAK_PX,
                                          STRONG_SIGNIFICANCE, pair_offset)
from linumpy.stitching.pairwise import PairRegistration, narrow_joint_offset, refine_subpixel
from linumpy.stitching.refusals import drop_broken_placements, survivors_hold_tile
from linumpy.stitching.tile_search import (PRIOR_SLACK_PX, Placement, joint_placement, largest_deviation,
                                          lone_departure, place_by_neighbours, search_radius)

logger = logging.getLogger(__name__)


def joint_search(
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    positions: Mapping[TileIndex, np.ndarray],
    model: StageModel,
    kept: Sequence[PairOffset],
    flattened: Mapping[TileIndex, np.ndarray],
) -> tuple[dict[tuple[TileIndex, TileIndex], PairRegistration], dict[tuple[TileIndex, TileIndex], TileIndex],
           set[TileIndex]]:
    """Pairs of the tiles placed by :func:`~linumpy.stitching.tile_search.place_by_neighbours`.

    Each pair's integer offset is refined below a pixel; its significance is
    that of the joint peak that placed its tile. Also returns the tile each
    pair placed, and the tiles whose joint peak was refused as a lone link
    beyond the stage's error.

    A joint peak that one link alone holds is that pair's own registration,
    and it would be its tile's only link: it is not taken if its offset
    departs from the stage model's step farther than the kept confident pairs
    do (:func:`~linumpy.stitching.departures.departure_bound`, the bar of a weak pair,
    :func:`~linumpy.stitching.departures.plausible`), however significant. ``8 x 8 harsh`` seed 107: the empty tile (1,
    7) on its link to the empty (2, 7) alone, significance 2.2, 20 px from the step
    (the confident pairs at most 14 px), 26.6 px from the truth; (1, 6) was
    placed next on it and on two wrong peaks that agree with it, 18.4 px off,
    7.9 px farther than its stage position. Refused, the two tiles went to the
    corroborated search (2-3 links each): 3.2 and 2.8 px off. With fewer than
    :data:`~linumpy.stitching.pair_terms.MIN_DEPARTURE_PAIRS` confident pairs kept the stage's error is not
    measured and nothing is refused (``overlap 10 %`` seed 108: a seed of two
    tiles, one confident pair 1.9 px from the step; a bound of 3.9 px refused the
    first lone link and every tile stayed on the stage, 1.51 -> 3.12 px).
    Nor is a weak lone link's peak that puts its tile farther from its stage-model position than every placed
    tile lies from its own plus :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX`
    (:func:`lone_beyond_placed`).

    Parameters
    ----------
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration.
    positions : Mapping[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.
    kept : Sequence[PairOffset]
        The pairs the solve kept; their tiles are the placed ones the search starts from.
    flattened : Mapping[TileIndex, np.ndarray]
        Each tile's flat-field-corrected projection, for the sub-pixel refinement.

    Returns
    -------
    joint : dict[tuple[TileIndex, TileIndex], PairRegistration]
        The refined pairs of the tiles placed.
    placed_by : dict[tuple[TileIndex, TileIndex], TileIndex]
        The tile each of those pairs placed.
    refused : set[TileIndex]
        The tiles whose joint peak one link alone held beyond the departure bound.
    """
    placed = {t for pair in kept for t in (pair.a, pair.b)}
    if not placed:
        return {}, {}, set()
    confident = [p for p in kept if registrations[(p.a, p.b)].significance >= CONFIDENT_SIGNIFICANCE]
    measured = len(confident) >= MIN_DEPARTURE_PAIRS
    bound = departure_bound(confident, model) if measured else float("inf")
    tile_bound = largest_deviation(positions, placed, model) + PRIOR_SLACK_PX if measured else float("inf")
    refused: set[TileIndex] = set()

    def accept(placement: Placement) -> bool:
        beyond = lone_beyond_placed(placement, model, tile_bound) and not confident_alone(placement, registrations)
        if lone_departure(placement, model) <= bound and not beyond:
            return True
        refused.add(placement.tile)
        return False

    joint, placed_by = {}, {}
    with threadpool_limits(limits=1, user_api="blas"):
        for placement in place_by_neighbours(registrations, positions, placed, JOINT_SIGNIFICANCE, model, accept):
            refined = refined_pairs(placement.offsets, placement.significance, registrations, flattened)
            joint.update(refined)
            placed_by.update(dict.fromkeys(refined, placement.tile))
    if refused:
        logger.info("joint peaks of %s held by one link departing from the stage model beyond %.1f px, or a weak "
                    "one placing its tile beyond the placed tiles' deviation plus %.0f px (%.1f px): refused",
                    sorted(refused), bound, PRIOR_SLACK_PX, tile_bound)
    return joint, placed_by, refused


def lone_beyond_placed(placement: Placement, model: StageModel, tile_bound: float) -> bool:
    """Whether one link alone, below :data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE`, holds
    ``placement`` and puts its tile farther from its stage-model position (larger axis) than ``tile_bound``: the
    placed tiles' largest deviation from their own plus :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX`
    (the bar of a corroborated weak peak, :func:`~linumpy.stitching.corroboration.place_corroborated`).

    The pair bound of :func:`joint_search` (the confident pairs' largest departure from the stage model's
    step) measures the difference of two tiles' stage errors, up to twice one tile's: a lone weak link's
    wrong peak passes it where it puts its tile beyond every stage error the placed tiles measured, and
    nothing checks it there. ``8 x 8 harsh`` seed 181 (session lone10): the empty (6, 0) on its link to the
    empty (5, 0) alone, joint significance 2.19, 14 px from the step (pair bound 16.4 px), 13 px from its
    stage-model position (the 48 placed tiles at most 10.6 px from theirs, bound 12.6 px), 20.5 px from
    the truth, its stage position 8.4 px.

    Parameters
    ----------
    placement : Placement
        A joint peak of :func:`~linumpy.stitching.tile_search.place_by_neighbours`.
    model : StageModel
        The stage model fitted to the solve (the frame of the placement).
    tile_bound : float
        How far (pixels, larger axis) a tile may lie from its stage-model position.

    Returns
    -------
    bool
        True if the placement is a lone weak link's beyond ``tile_bound``.
    """
    if len(placement.offsets) != 1 or placement.significance >= STRONG_SIGNIFICANCE:
        return False
    return float(np.max(np.abs(np.asarray(placement.position, float) - model.position(placement.tile)))) > tile_bound


def confident_alone(placement: Placement,
                    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration]) -> bool:
    """Whether ``placement``'s one link, registered alone over its whole window, reached
    :data:`~linumpy.stitching.pair_terms.CONFIDENT_SIGNIFICANCE` at the joint peak (within
    :data:`~linumpy.stitching.pair_terms.OWN_PEAK_PX` of its own peak,
    :func:`~linumpy.stitching.off_peak.off_own_peak`).

    :func:`lone_beyond_placed` guards against a peak that only the joint search's narrower window made
    significant: ``8 x 8 harsh`` seed 181's (6, 0), its link's own significance 1.07, read at 2.19 in the
    joint window, 21 px off. A link confident on its own carries the tile's own texture, and its departure
    beyond the placed tiles' deviation can be the stage's: the bound, the largest deviation of the tiles the
    stage model was fitted to, is short where those tiles are few (the fit absorbs their errors) and the tile
    lies beyond them. Foreign ``sparse`` seed 377 slice 3 (session lone10b): (2, 0) on (1, 0)-(2, 0), own and
    joint significance 2.40, 9 px from its stage-model position, the six placed tiles at most 4.84 px (bound
    6.84); refused it stayed on the stage 5.85 px off, kept 2.47. ``overlap 10 %`` seed 193: (3, 1) on its
    link alone (own significance 2.53), 5 px against a bound of 4.11 px, 1.4 px from the truth, its stage 5.7 px.

    Parameters
    ----------
    placement : Placement
        A joint peak of :func:`~linumpy.stitching.tile_search.place_by_neighbours`.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration.

    Returns
    -------
    bool
        True if one link holds the placement and its own registration is confident at the joint peak.
    """
    if len(placement.offsets) != 1:
        return False
    (pair, offset), = placement.offsets.items()
    own = registrations[pair]
    return own.significance >= CONFIDENT_SIGNIFICANCE and off_own_peak(offset, own) <= OWN_PEAK_PX


def late_joint_search(
    tiles: Sequence[TileIndex],
    solved: Solution,
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    flattened: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
) -> tuple[dict[TileIndex, np.ndarray], StageModel, list[PairOffset], dict, set[TileIndex]]:
    """The joint search (:func:`joint_search`) again, once a corroborated placement has placed a tile.

    The joint search runs before the corroborated one, so a tile whose only placed neighbour is
    placed by a corroborated peak was never searched from it (``stage error +-8 px + drift`` seed
    66: tile (3, 3), its one link to (2, 3) right to 0.5 px at significance 3.0, stayed on the stage
    11 px off). Same gates as the first search (significance, window, the solve keeping the pairs
    of every placement, :func:`~linumpy.stitching.refusals.drop_broken_placements`); the new pairs are kept only if the
    solve keeps every pair kept before.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the solve after the corroborated placement.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration.
    flattened : Mapping[TileIndex, np.ndarray]
        Each tile's flat-field-corrected projection, for the sub-pixel refinement.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``(positions, model, kept, links, refused, unsupported, held)``, ``links`` the refined pairs of the tiles
        placed (empty if none), ``refused`` the tiles whose lone link :func:`joint_search` refused,
        ``unsupported`` the pairs :func:`~linumpy.stitching.refusals.drop_broken_placements` dropped (pair -> its tile),
        ``held`` those it kept strong on their own.
    """
    positions, model, kept = solved
    links, placed_by, refused = joint_search(registrations, positions, model, kept, flattened)
    if not links:
        return positions, model, kept, {}, refused, {}, set()
    searched = solve_positions(tiles, kept + [pair_offset(a, b, r, True) for (a, b), r in links.items()],
                               tile_step_px)
    searched, unsupported, held = drop_broken_placements(tiles, *searched, placed_by, registrations, tile_step_px)
    if not {(p.a, p.b) for p in kept} <= {(p.a, p.b) for p in searched[2]}:
        return positions, model, kept, {}, refused, {}, set()
    logger.info("joint search after the corroborated placement: %d tiles placed",
                len(set(placed_by.values())))
    return (*searched, links, refused, unsupported, held)


def place_group(
    tiles: Sequence[TileIndex],
    positions: Mapping[TileIndex, np.ndarray],
    model: StageModel,
    kept: list[PairOffset],
    candidates: Sequence[PairOffset],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    flattened: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
    refused: set[TileIndex],
) -> tuple[tuple, dict[tuple[TileIndex, TileIndex], PairRegistration]] | None:
    """Place the largest group of tiles registered among themselves but not to the placed tiles.

    The candidate pairs between tiles left out are solved alone; their
    largest linked group keeps its relative positions and is searched as one
    rigid piece by the joint evidence of all its pairs with placed tiles
    (:func:`~linumpy.stitching.tile_search.joint_placement` with
    ``members``): each link alone may hold too little, together they can.
    The group is placed only if that joint peak is significant
    (:data:`~linumpy.stitching.pair_terms.JOINT_SIGNIFICANCE`) and the solve with its links and inner pairs
    keeps every one of them and every pair kept before. If the solve drops
    some of its links, the others must alone hold a significant joint peak
    where the group was placed, as the survivors of a joint placement of
    one tile (:func:`~linumpy.stitching.refusals.survivors_hold_tile`, step 6); else the placement is
    refused and its tiles added to ``refused`` (``backlash`` seed 129: row 0
    placed as one group by four links, the solve dropped two, and the two
    left, own significance 0.22 and 0.29, held alone a peak of significance
    1.82 2.4 px from the group's; kept as weak links they held (0, 1) 2.57 px
    off, its stage position 0.92 px).

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    positions : Mapping[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.
    kept : list[PairOffset]
        The pairs the current solve kept.
    candidates : Sequence[PairOffset]
        The candidate pairs; those between tiles left out form the groups.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration.
    flattened : Mapping[TileIndex, np.ndarray]
        Each tile's flat-field-corrected projection, for the sub-pixel refinement.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    refused : set[TileIndex]
        Tiles refused so far; updated in place with the group's tiles when the survivors of its links hold
        no significant peak.

    Returns
    -------
    tuple or None
        ``((positions, model, kept), links)``, ``links`` the refined pairs
        joining the group to the placed tiles; ``None`` if no group is placed.
    """
    placed = {t for pair in kept for t in (pair.a, pair.b)}
    left = [t for t in tiles if t not in placed]
    inner = [p for p in candidates if p.a not in placed and p.b not in placed]
    if not placed or not inner:
        return None
    relative, group_pairs = _grown_group(left, inner, kept, model, tile_step_px)
    group = sorted({t for pair in group_pairs for t in (pair.a, pair.b)})
    if len(group) < 2:
        return None
    origin = group[0]
    members = {t: np.rint(relative[t] - relative[origin]).astype(int) for t in group}
    anchors = {t: np.rint(np.asarray(positions[t], float)).astype(int) for t in placed}
    links = [(pair, r) for pair, r in registrations.items() if r.scores
             and (pair[0] in members) != (pair[1] in members) and (pair[0] in placed or pair[1] in placed)]
    if not links:
        return None
    prior = (model.position(origin), search_radius(positions, placed, model))
    with threadpool_limits(limits=1, user_api="blas"):
        placement = joint_placement(origin, links, anchors, prior, members)
        if placement is None or placement.significance < JOINT_SIGNIFICANCE:
            return None
        refined = refined_pairs(placement.offsets, placement.significance, registrations, flattened)
    held: list[bool] = []

    def survivors_hold(survivors: set[tuple[TileIndex, TileIndex]]) -> bool:
        held.append(survivors_hold_tile(origin, [(pair, r) for pair, r in links if pair in survivors], anchors, prior,
                                    np.asarray(placement.position), members))
        return held[-1]

    accepted = solve_with(tiles, list(kept) + list(group_pairs), refined, tile_step_px, survivors_hold)
    if held and not held[-1]:
        refused.update(group)
        logger.info("group of %d tiles %s: the solve dropped links of its joint placement and the others hold no "
                    "significant joint peak without them: refused", len(group), group)
    if accepted is not None:
        logger.info("group of %d tiles %s placed by %d pairs (joint significance %.1f)",
                    len(group), group, len(accepted[1]), placement.significance)
    return accepted


def _grown_group(
    left: Sequence[TileIndex],
    inner: Sequence[PairOffset],
    kept: Sequence[PairOffset],
    model: StageModel,
    tile_step_px: Sequence[float],
) -> tuple[dict[TileIndex, np.ndarray], list[PairOffset]]:
    """The relative positions and pairs of the group of :func:`place_group`: the largest group the
    ``inner`` pairs (between the tiles ``left`` out) link, grown by their weak pairs that depart from
    the stage model no more than the ``kept`` pairs do (:func:`~linumpy.stitching.departures.plausible`).

    Solved alone, the inner pairs lose every weak pair on no loop, so a tile joined to a strong pair
    by a right weak one stays out of its group and neither is placed (``speckle per tile`` seed 94:
    (2, 3)-(3, 3), significance 5.7, and (3, 2)-(3, 3), 1.5, both right; the group of two reached a
    joint significance of 0.4, the group of three 2.2, and all three tiles stayed 4.6 px off on the
    stage). A weak pair only grows a group that the inner pairs make on their own (a strong pair or
    a loop; weak pairs alone are a chain of unchecked peaks: ``6x6`` seed 64, a weak pair 20 px off
    in agarose then joined a group placed 18 px off), and only if the stage could have made its
    departure; it stays weak in the placement's solve (:func:`solve_with`), kept only on a loop
    that the group's links close.
    """
    relative, _, group_pairs = solve_positions(left, inner, tile_step_px, warn_steps=False)
    if not group_pairs:
        return relative, group_pairs
    members = {t for pair in group_pairs for t in (pair.a, pair.b)}
    ids = {(p.a, p.b) for p in group_pairs}
    pool = plausible([p for p in inner if (p.a, p.b) not in ids], kept, model)
    grown = list(group_pairs)
    while (joining := [p for p in pool if (p.a in members) != (p.b in members)]):
        grown.append(joining[0])
        members |= {joining[0].a, joining[0].b}
        pool.remove(joining[0])
    if len(grown) == len(group_pairs):
        return relative, group_pairs
    wider, _, solid = solve_positions(left, [replace(p, strong=True) for p in grown], tile_step_px,
                                      warn_steps=False)
    return (wider, grown) if len(solid) == len(grown) else (relative, group_pairs)


def solve_with(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    refined: dict[tuple[TileIndex, TileIndex], PairRegistration],
    tile_step_px: Sequence[float],
    survivors_hold: Callable[[set[tuple[TileIndex, TileIndex]]], bool] | None = None,
    strong: bool = True,
) -> tuple[tuple, dict[tuple[TileIndex, TileIndex], PairRegistration]] | None:
    """Solve with the ``refined`` pairs of a joint placement added to ``pairs``, if it keeps them all.

    A pair the solve drops demotes the others to weak (as a joint placement
    that lost a pair, step 6: they stand only on loops) and the solve is
    repeated; the placement is refused if it then loses a pair, or any of
    ``pairs``, or if ``survivors_hold``, given, says the pairs left (their
    keys) hold no significant joint peak alone (:func:`~linumpy.stitching.refusals.survivors_hold_tile`).

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    pairs : Sequence[PairOffset]
        The pairs kept before, every one of which the solve must keep.
    refined : dict[tuple[TileIndex, TileIndex], PairRegistration]
        The refined pairs of the joint placement.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    survivors_hold : Callable[[set[tuple[TileIndex, TileIndex]]], bool] or None
        Given the keys of the placement's pairs the solve kept, whether they alone hold a significant joint peak.
    strong : bool
        Whether the placement's pairs enter the first solve as strong (``False`` for corroborated placements).

    Returns
    -------
    tuple or None
        ``((positions, model, kept), refined)`` with the pairs kept.
    """
    new_pairs = [pair_offset(a, b, r, strong) for (a, b), r in refined.items()]
    solved = solve_positions(tiles, list(pairs) + new_pairs, tile_step_px)
    dropped = {(p.a, p.b) for p in new_pairs} - {(p.a, p.b) for p in solved[2]}
    if dropped:
        if survivors_hold is not None and not survivors_hold(set(refined) - dropped):
            return None
        new_pairs = [replace(p, strong=False) for p in new_pairs if (p.a, p.b) not in dropped]
        refined = {key: r for key, r in refined.items() if key not in dropped}
        solved = solve_positions(tiles, list(pairs) + new_pairs, tile_step_px)
    wanted = {(p.a, p.b) for p in list(pairs) + new_pairs}
    if not new_pairs or wanted - {(p.a, p.b) for p in solved[2]}:
        return None
    return solved, refined


def place_clusters(
    tiles: Sequence[TileIndex],
    positions: Mapping[TileIndex, np.ndarray],
    model: StageModel,
    kept: list[PairOffset],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    flattened: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
) -> tuple[tuple, dict[tuple[TileIndex, TileIndex], PairRegistration]] | None:
    """Place the significant tiles of the first cluster of unplaced tiles that the solve accepts.

    Clusters are the connected groups (two tiles or more) of tiles left out,
    linked by their pairs whatever their significance; each is searched as
    a whole (:func:`~linumpy.stitching.cluster_search.place_cluster`) within
    the window of the joint search. The offsets of the placed tiles are
    refined below a pixel and must all survive the solve (:func:`solve_with`).

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    positions : Mapping[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.
    kept : list[PairOffset]
        The pairs the current solve kept.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration.
    flattened : Mapping[TileIndex, np.ndarray]
        Each tile's flat-field-corrected projection, for the sub-pixel refinement.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple or None
        ``((positions, model, kept), refined)``, ``refined`` the pairs that
        placed the cluster's tiles; ``None`` if no cluster is placed.
    """
    placed = {t for pair in kept for t in (pair.a, pair.b)}
    if not placed:
        return None
    scored = [pair for pair, r in registrations.items() if r.scores]
    radius = search_radius(positions, placed, model)
    anchors = {t: np.rint(np.asarray(positions[t], float)).astype(int) for t in placed}
    for group in clusters([t for t in tiles if t not in placed], scored):
        if len(group) < 2:
            continue
        with threadpool_limits(limits=1, user_api="blas"):
            placement = place_cluster(group, registrations, anchors, model, radius, JOINT_SIGNIFICANCE)
            if placement is None:
                continue
            refined = {}
            for (a, b), offset in placement.offsets.items():
                offset_px, sigma = refine_subpixel(flattened[a], flattened[b],
                                                   narrow_joint_offset(offset, registrations[(a, b)].scores))
                significance = min(placement.significance.get(t, np.inf) for t in (a, b))
                refined[(a, b)] = replace(registrations[(a, b)], offset=offset_px, sigma_px=sigma,
                                          significance=float(significance))
        accepted = solve_with(tiles, kept, refined, tile_step_px)
        if accepted is not None:
            logger.info("cluster %s: tiles %s placed by %d pairs (significance %s)", group,
                        sorted(placement.significance), len(accepted[1]),
                        ", ".join(f"{v:.1f}" for _, v in sorted(placement.significance.items())))
            return accepted
    return None


def refined_pairs(
    offsets: Mapping[tuple[TileIndex, TileIndex], tuple[int, int]],
    significance: float,
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    flattened: Mapping[TileIndex, np.ndarray],
    spread_px: Sequence[float] | None = None,
) -> dict[tuple[TileIndex, TileIndex], PairRegistration]:
    """The pairs of a joint placement at its integer ``offsets``, refined below a pixel, with its ``significance``;
    with ``spread_px`` (the placement's peak spread) added in quadrature to each pair's standard error.

    Parameters
    ----------
    offsets : Mapping[tuple[TileIndex, TileIndex], tuple[int, int]]
        Each pair's integer ``(y, x)`` offset at the joint peak, pixels.
    significance : float
        The joint peak's significance, given to every pair.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration.
    flattened : Mapping[TileIndex, np.ndarray]
        Each tile's flat-field-corrected projection, for the sub-pixel refinement.
    spread_px : Sequence[float] or None
        The joint peak's ``(y, x)`` spread, pixels; ``None`` adds nothing.

    Returns
    -------
    dict[tuple[TileIndex, TileIndex], PairRegistration]
        Each pair's registration with its refined offset, standard error and the placement's significance.
    """
    refined = {}
    for (a, b), offset in offsets.items():
        offset_px, sigma = refine_subpixel(flattened[a], flattened[b],
                                           narrow_joint_offset(offset, registrations[(a, b)].scores))
        if spread_px is not None:
            sigma = tuple(float(v) for v in np.hypot(sigma, spread_px))
        refined[(a, b)] = replace(registrations[(a, b)], offset=offset_px, sigma_px=sigma, significance=significance)
    return refined


def strong_seed(
    tiles: Sequence[TileIndex],
    confident: Sequence[PairOffset],
    tile_step_px: Sequence[float],
) -> Solution:
    """The largest group of strong pairs, however small, solved as the anchor of the searches.

    Used when no group of confident pairs holds :data:`~linumpy.stitching.global_solve.MIN_GROUP_FRACTION`
    of the tiles (at 10 % overlap, strong pairs that form no loop make groups of 2-3 tiles): without an
    anchor no search can place a tile, and every tile stays on the stage. The searches then grow it from
    the stage prior; :func:`drop_small_group` sends everything back to the stage if they do not.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    confident : Sequence[PairOffset]
        The confident pairs; only the strong ones are solved.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    Solution
        ``(positions, model, kept)`` of the solve with the largest group of strong pairs (nothing kept if none).
    """
    seeded = solve_positions(tiles, [p for p in confident if p.strong], tile_step_px, min_group_fraction=0.0)
    if seeded[2]:
        logger.info("no group of confident pairs holds %.0f%% of the tiles: the searches start from the %d "
                    "tiles of the largest group of strong pairs", 100 * MIN_GROUP_FRACTION,
                    len({t for p in seeded[2] for t in (p.a, p.b)}))
    return seeded


def drop_small_group(
    tiles: Sequence[TileIndex],
    positions: dict[TileIndex, np.ndarray],
    model: StageModel,
    kept: list[PairOffset],
    tile_step_px: Sequence[float],
) -> Solution:
    """Every tile on the stage model when the registered tiles are fewer than
    :data:`~linumpy.stitching.global_solve.MIN_GROUP_FRACTION` of them (a :func:`strong_seed` that the
    searches did not grow): a small group is placed by the mean stage error of its few tiles.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    positions : dict[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.
    kept : list[PairOffset]
        The pairs the current solve kept.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    Solution
        ``(positions, model, kept)`` unchanged, or the stage-model solve with no pairs if too few tiles are
        registered.
    """
    registered = {t for pair in kept for t in (pair.a, pair.b)}
    if not kept or len(registered) >= MIN_GROUP_FRACTION * len(tiles):
        return positions, model, kept
    logger.info("only %d of %d tiles registered: all on the stage model", len(registered), len(tiles))
    return solve_positions(tiles, [], tile_step_px)
