"""How far a pair's offset departs from the stage model, and the first solve's refusals that rest on it:
weak pairs departing more than the confident ones, confident pairs no loop checks departing far, and kept
pairs on no loop departing implausibly (steps 3-4 of :mod:`linumpy.stitching.estimate`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet

import numpy as np

from linumpy.stitching.global_solve import PairOffset, Solution, StageModel, TileIndex, bridges, solve_positions
from linumpy.stitching.lone_links import far_side_unsupported
from linumpy.stitching.pair_terms import MIN_DEPARTURE_PAIRS, bridged_side
from linumpy.stitching.pairwise import PairRegistration
from linumpy.stitching.tile_search import PRIOR_MARGIN, PRIOR_SLACK_PX, largest_deviation

logger = logging.getLogger(__name__)


def plausible(weak: Sequence[PairOffset], confident: Sequence[PairOffset],
               model: StageModel) -> list[PairOffset]:
    """The weak pairs whose offset departs from the stage model no more than confident pairs do.

    The confident pairs sample the stage's error on the offset of two
    neighbours; a weak pair farther from the stage model than their largest
    departure plus :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX` is
    a wrong peak, even where two wrong pairs close a loop between them (as in
    empty agarose). Without confident pairs no weak pair is plausible.

    Parameters
    ----------
    weak : Sequence[PairOffset]
        The weak pairs to judge.
    confident : Sequence[PairOffset]
        The confident pairs (or the kept ones) that measure the stage's error.
    model : StageModel
        The stage model fitted to the solve.

    Returns
    -------
    list[PairOffset]
        The pairs of ``weak`` within :func:`departure_bound` of the confident pairs (all axes); empty without them.
    """
    if not confident:
        return []
    bound = departure_bound(confident, model)
    return [p for p in weak if departure(p, model, across_only=False) <= bound]


def departure_bound(confident: Sequence[PairOffset], model: StageModel) -> float:
    """How far (pixels, larger axis) a pair's offset may depart from the stage model's step: as far as the
    ``confident`` pairs' largest departure plus :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX`
    (the stage's error on the offset of two neighbours, as they measure it); unbounded without them.

    Parameters
    ----------
    confident : Sequence[PairOffset]
        The pairs that measure the stage's error.
    model : StageModel
        The stage model fitted to the solve.

    Returns
    -------
    float
        The bound, pixels; ``inf`` without ``confident`` pairs.
    """
    if not confident:
        return float("inf")
    return max(departure(p, model, across_only=False) for p in confident) + PRIOR_SLACK_PX


def unchecked_far_pairs(confident: Sequence[PairOffset], kept: Sequence[PairOffset],
                         model: StageModel) -> set[tuple[TileIndex, TileIndex]]:
    """The confident pairs the solve of the confident pairs did not keep whose offset departs from the
    stage model's step beyond what the stage errs: :func:`implausible_departure`'s bound,
    :data:`~linumpy.stitching.tile_search.PRIOR_MARGIN` times the ``kept`` pairs' largest departure plus
    :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX` (an edge link's departure across its ridge only).

    That rule judges the kept pairs on no loop; a confident pair the solve did not keep (on no loop of
    confident pairs and not strong enough to stand alone, or inconsistent with them) escapes it, and
    comes back in the solve with the weak pairs, where a loop of weak links can keep it without
    checking its departure. ``6x6`` seed 110: (5, 1)-(5, 2), between two empty tiles, significance
    2.41, 19 px from the step (the kept confident pairs at most 6.7 px), 20.3 px from the truth, on no
    confident loop; kept by the wider solve on a loop of weak links, one of them an edge link free along
    x, the axis of the departure: the empty (5, 2) ended 18.7 px farther from the truth than its stage
    position, and (5, 3), placed next to it, 6.0 px. The bound of a weak pair (:func:`departure_bound`,
    no margin) refused a right pair where four kept pairs measured the stage's error (``overlap 10 %``
    seed 110: 6.5 px against at most 4.1 px; a tile 1.5 px farther than the stage). With fewer than
    :data:`~linumpy.stitching.pair_terms.MIN_DEPARTURE_PAIRS` kept pairs the stage's error is not measured and no pair
    is returned (nor when the confident solve kept no group, :func:`~linumpy.stitching.joint_placement.strong_seed`: the
    confident pairs outside a small seed are not judged by its few pairs).

    Parameters
    ----------
    confident : Sequence[PairOffset]
        The confident pairs.
    kept : Sequence[PairOffset]
        The pairs the solve of the confident pairs kept.
    model : StageModel
        The stage model fitted to the solve.

    Returns
    -------
    set[tuple[TileIndex, TileIndex]]
        The ``(a, b)`` keys of the confident pairs not kept that depart beyond the bound.
    """
    if len(kept) < MIN_DEPARTURE_PAIRS:
        return set()
    kept_ids = {(p.a, p.b) for p in kept}
    bound = PRIOR_MARGIN * max(departure(p, model) for p in kept) + PRIOR_SLACK_PX
    far = {(p.a, p.b) for p in confident if (p.a, p.b) not in kept_ids and departure(p, model) > bound}
    if far:
        logger.info("confident pairs %s, not kept by the solve of the confident pairs, depart from the stage "
                    "model's step beyond %.1f px: refused", sorted(far), bound)
    return far


def solve_plausible(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    tile_step_px: Sequence[float],
    moved: AbstractSet[tuple[TileIndex, TileIndex]] = frozenset(),
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration] | None = None,
) -> tuple[Solution, set[tuple[TileIndex, TileIndex]], dict[tuple[TileIndex, TileIndex], set[TileIndex]],
           dict[tuple[TileIndex, TileIndex], set[TileIndex]]]:
    """Solve, dropping one at a time the kept pair that departs implausibly from the stage model
    (:func:`implausible_departure`) and solving again without it, unless the tiles it alone places lie
    within the joint search's window (:func:`_bridged_within_window`): then it is kept and the loop ends.
    Then, given the ``registrations``, a kept pair on no loop that places the tiles it alone joins beyond
    the joint search's window, its side's other overlaps not preferring that placement to the stage's
    (:func:`~linumpy.stitching.lone_links.far_side_unsupported`, the test of
    :func:`~linumpy.stitching.lone_links.far_lone_links_to_stage`), is dropped likewise.

    Such a link decides alone which group is the largest, before any later step can form a loop through
    it: fresh foreign ``c185`` seed 201, slice 3 (grid 4 x 4, 10 % overlap, stage +-8 px): (2, 0)-(3, 0),
    significance 3.57, 27.9 px off between tiles that do not overlap (true overlap -0.5 px, a peak claiming
    27 px, 17.4 px from the step, the other kept pairs up to 13.9), joined {(1, 0), (2, 0), (2, 1)} to the
    bottom row's five tiles, a group of 8 that outnumbered the 7 top tiles (right pairs of significance
    3.8-11.6, cut off with the weak bridge (1, 1)-(2, 1)); the corroborated search then closed a loop
    through it with another pair whose tiles hardly overlap, and 7 tiles ended worse than their stage, up to
    20.5 px. At the first solve it put (2, 0) and (2, 1) 17.7 px from their stage positions in the bottom
    row's gauge (window 13.7 px), and the other overlap across it, (2, 1)-(3, 1), read -0.08 standard errors
    for that placement over the stage's.

    Returns ``((positions, model, kept), dropped, within, lone)``, ``within`` such a kept pair and the tiles
    of its side (empty if none), ``lone`` the pairs of ``dropped`` refused as far lone links, with their
    sides. ``moved``: the pairs moved by loop closure (they close no loop that checks a pair,
    :func:`implausible_departure`, nor join the bridged side to the others).

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    pairs : Sequence[PairOffset]
        The pairs to solve (the confident ones).
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    moved : AbstractSet[tuple[TileIndex, TileIndex]]
        The pairs moved by loop closure (:func:`~linumpy.stitching.loops.switch_conflicting_peaks`).
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration] or None
        Every pair's registration (the moved ones at their new peak); ``None`` skips the far lone link test.

    Returns
    -------
    solved : Solution
        ``(positions, model, kept)`` of the last solve.
    dropped : set[tuple[TileIndex, TileIndex]]
        The pairs dropped, as implausible departures or far lone links.
    within : dict[tuple[TileIndex, TileIndex], set[TileIndex]]
        The implausible pair kept because its side lies within the window, with that side's tiles (empty if none).
    lone : dict[tuple[TileIndex, TileIndex], set[TileIndex]]
        The pairs of ``dropped`` refused as far lone links, with the tiles of their side.
    """
    dropped: set[tuple[TileIndex, TileIndex]] = set()
    lone: dict[tuple[TileIndex, TileIndex], set[TileIndex]] = {}
    while True:
        solved = solve_positions(tiles, [p for p in pairs if (p.a, p.b) not in dropped], tile_step_px)
        worst = implausible_departure(solved[2], solved[1], moved)
        if worst is None:
            far = None if registrations is None else far_side_unsupported(solved, registrations)
            if far is None:
                return solved, dropped, {}, lone
            logger.info("pair %s-%s, on no loop, places %s beyond the search window and their other overlaps do "
                        "not support that placement over the stage's: dropped from the first solve", *far[0], far[1])
            dropped.add(far[0])
            lone[far[0]] = set(far[1])
            continue
        side = _bridged_within_window(worst, *solved, moved)
        if side:
            logger.info("pair %s-%s departs %.1f px from the stage model's step, beyond the other pairs' bound, "
                        "but the tiles it alone places, %s, lie within the stage's window: kept",
                        worst.a, worst.b, departure(worst, solved[1]), sorted(side))
            return solved, dropped, {(worst.a, worst.b): side}, lone
        logger.info("pair %s-%s departs %.1f px from the stage model's step, the other kept pairs at most "
                    "%.1f px: dropped", worst.a, worst.b, departure(worst, solved[1]),
                    max(departure(p, solved[1]) for p in solved[2] if p is not worst))
        dropped.add((worst.a, worst.b))


def _bridged_within_window(bridge: PairOffset, positions: Mapping[TileIndex, np.ndarray], model: StageModel,
                           kept: Sequence[PairOffset],
                           moved: AbstractSet[tuple[TileIndex, TileIndex]] = frozenset()) -> set[TileIndex]:
    """The tiles that ``bridge`` alone joins to the others (its smaller side among the ``kept`` pairs, the
    ``moved`` ones excepted: :func:`implausible_departure`), if they lie within the stage's window around
    their stage-model positions; else the empty set.

    Both sides are measured in the other side's (the reference's) gauge
    (:func:`~linumpy.stitching.tile_search.reference_gauge`): the stage model is shifted by the reference
    tiles' mean deviation from it, which the solve fitted to all tiles, the bridged side included. The
    window is :data:`~linumpy.stitching.tile_search.PRIOR_MARGIN` times twice the reference tiles' largest
    deviation so aligned (a tile's stage error measured from their mean ranges up to twice what they show)
    plus :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX`. In the solve's gauge a wrong bridge drags the
    reference away from its stage positions and widens its own window: fresh harsh foreign seed 150,
    slice 0, (0, 0)-(1, 0), significance 4.4, 30 px from the truth, the only link of two groups of 5 and 4
    tiles; the reference sat 8-15 px from its stage positions (window 25 px), the bridged side 12-18 px:
    kept, every tile of the slice 19 px off (stage 4 px). Aligned, the reference deviates at most 3.6 px
    (window 12.7 px), the bridged side 29.6 px: refused.

    A pair's departure from the step is the difference of two tiles' stage errors, so it ranges twice as
    far as one tile's, and a few pairs sample its range poorly; where the pair puts its tiles is what the
    stage bounds, and what the joint search's window tests for a tile placed by the evidence of its
    overlaps. Harsh foreign seed 99, slice 4 (stage +-6 px per tile): (0, 1)-(0, 2), significance 12.3,
    0.05 px from the truth, 10.8 px from the step against at most 5.5 px for the other kept pairs (bound
    10.3 px), dropped by :func:`implausible_departure`; (0, 2) then lost its only other link (a wrong
    peak over a 1 px true overlap) and stayed on the stage, 8.07 px off. The pair puts (0, 2) 7.7 px from
    its stage-model position, the other tiles at most 4.5 px (window 8.8 px, both in the solve's gauge).
    The wrong pair of harsh foreign seed 60, slice 3 (18 px from the step) would put its tile ~20 px from
    its stage position.
    """
    others = [(p.a, p.b) for p in kept if p is not bridge and (p.a, p.b) not in moved]
    side, aligned, window = bridged_side((bridge.a, bridge.b), others, positions, model)
    return side if largest_deviation(positions, side, aligned) <= window else set()


def implausible_departure(pairs: Sequence[PairOffset], model: StageModel,
                          moved: AbstractSet[tuple[TileIndex, TileIndex]] = frozenset()) -> PairOffset | None:
    """The pair on no loop whose offset departs from the stage model beyond what the stage errs, if any.

    A pair's departure (:func:`departure`) is the difference of its two
    tiles' stage errors; the other pairs sample that error. A pair that no
    loop checks (:func:`~linumpy.stitching.global_solve.bridges`) departing
    by more than :data:`~linumpy.stitching.tile_search.PRIOR_MARGIN` times the
    largest departure of all the others plus
    :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX` (the rule of the
    joint search's window) is a wrong peak however significant: harsh foreign
    seed 60, slice 3, the pair (1, 0)-(2, 0), significance 10.3, 18 px from
    the stage model's step against at most 8.5 px for the others (stage
    +-6 px), 27.5 px from the truth, on no loop once the solve had dropped
    the right weak link of the loop it broke; kept as its tile's only link,
    it put the tile 24 px off (its stage position 5.6 px). A pair on a loop
    that closes is confirmed by the other pairs, whatever its departure
    (harsh foreign seed 70, slice 2: a right pair of significance 14.3,
    9.3 px from the step, the others at most 4.2 px). Only the largest
    departure can exceed the bound; with fewer than
    :data:`~linumpy.stitching.pair_terms.MIN_DEPARTURE_PAIRS` other pairs the stage's error is not measured
    and no pair is implausible.

    A pair ``moved`` by loop closure (:func:`~linumpy.stitching.loops.switch_conflicting_peaks`)
    sits where the other pairs of its loop put it: that loop closes by
    construction and checks nothing. A pair not moved is on a loop only if
    it is on a loop of the pairs not moved; a moved pair on a loop is
    neither tested nor counted (its departure is its loop's), one on no
    loop is tested as any other. ``6x6`` seed 149: (3, 0)-(4, 0), between
    two empty tiles, significance 2.29, 20.1 px from the step (the others
    at most 7.5 px), 20 px from the truth; loop closure moved the right
    (3, 1)-(4, 1) onto it, and the loop of the two, the only links of six
    tiles, put them 15-18 px from the truth (stage 0.7-4.9 px).

    Parameters
    ----------
    pairs : Sequence[PairOffset]
        The pairs the solve kept.
    model : StageModel
        The stage model fitted to the solve.
    moved : AbstractSet[tuple[TileIndex, TileIndex]]
        The pairs moved by loop closure (:func:`~linumpy.stitching.loops.switch_conflicting_peaks`).

    Returns
    -------
    PairOffset or None
        The pair of largest departure if it is on no loop and beyond the bound; else ``None``.
    """
    fixed = [k for k, p in enumerate(pairs) if (p.a, p.b) not in moved]
    loose_moved = set(bridges(pairs)) - set(fixed) if len(fixed) < len(pairs) else set()
    counted = fixed + sorted(loose_moved)
    if len(counted) <= MIN_DEPARTURE_PAIRS:
        return None
    departures = sorted(((departure(pairs[k], model), k) for k in counted), reverse=True)
    (largest, k), (second, _) = departures[:2]
    if largest <= PRIOR_MARGIN * second + PRIOR_SLACK_PX:
        return None
    if k not in loose_moved and fixed.index(k) not in bridges([pairs[j] for j in fixed]):
        return None
    return pairs[k]


def departure(pair: PairOffset, model: StageModel, across_only: bool = True) -> float:
    """Largest ``(y, x)`` departure (pixels) of a pair's offset from the stage model's step between its tiles;
    if ``across_only``, across an edge link's ridge only (along it the offset is not measured).

    Parameters
    ----------
    pair : PairOffset
        The pair.
    model : StageModel
        The stage model fitted to the solve.
    across_only : bool
        Whether to measure across an edge link's ridge only (:meth:`~linumpy.stitching.global_solve.PairOffset.constrained`).

    Returns
    -------
    float
        The largest absolute departure over the axes, pixels.
    """
    departure = departure_vector(pair, model)
    return float(np.max(np.abs(pair.constrained(departure) if across_only else departure)))


def departure_vector(pair: PairOffset, model: StageModel) -> np.ndarray:
    """``(y, x)`` departure (pixels) of a pair's offset from the stage model's step between its tiles.

    Parameters
    ----------
    pair : PairOffset
        The pair.
    model : StageModel
        The stage model fitted to the solve.

    Returns
    -------
    np.ndarray
        The pair's offset minus the stage model's ``(y, x)`` step from tile ``a`` to tile ``b``, pixels.
    """
    return np.asarray(pair.offset) - (model.position(pair.b) - model.position(pair.a))
