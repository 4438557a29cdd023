"""Drop the least certain weak link of a loop that does not close, once all tiles are placed.

Around a loop of pairs the offsets must add up to zero. The global solve
removes a pair only while its residual exceeds
:data:`~linumpy.stitching.global_solve.MAX_RESIDUAL_PX`; a loop that misses
by 2-3 px spreads the miss over its pairs by their weights (``sigma_px``,
which does not see a broad peak), each residual below the bar, and the tiles
end between what the pairs say. Each pair's offset predicted from all the
others (:func:`~linumpy.stitching.global_solve.leave_one_out_offsets`) shows
the whole miss instead. Every pair of a loop broken once departs from its
prediction by about as much, so the departure says that the loop is broken,
not which pair broke it; the culprit is the pair whose offset is the least
certain, by its **honest error**: its standard error and its own peak spread
(``spread_px``, the best predictor of a weak pair's error, docs/stitching.md)
in quadrature, the larger over the axes. The spread only chooses the pair to
drop; it weights nothing.

The culprit is dropped only if it is clearly the least certain (its honest
error at least :data:`CULPRIT_MARGIN` times that of every other pair of a
broken loop: two links of similar quality are a coin flip), its own
significance is below :data:`~linumpy.stitching.reanchor.ANCHOR_SIGNIFICANCE`,
and the solve without it keeps every other pair (no tile loses its
registration, no weak pair is left outside a loop). Repeated until no
culprit is found.

Loops may still miss with no clear culprit (two broad links of similar
honest error, as on `backlash +-1.5` seed 27 of the stitching matrix: tile
(1, 0) hung on two broad links, one 2.4 px off). The weak links of those
loops whose peak is broad (spread above :data:`BROAD_SPREAD_PX`; for an edge
link, across its ridge) are then
dropped together, all or none: only if the others keep every tile placed and
every other pair kept. No tile goes to the stage model here.

The same rule judges the weak pairs a solve dropped (:func:`swap_least_certain`):
put back, a dropped pair whose loop clearly blames a kept weak pair takes its place.
A pair of a joint placement that the solve dropped takes the place of the one kept
pair that only it checked when it is clearly more significant on its own
(:func:`swap_clearly_weaker`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from linumpy.stitching.global_solve import (
    PairOffset,
    Solution,
    TileIndex,
    bridges,
    departs_from_prediction,
    leave_one_out_offsets,
    solve_positions,
)

logger = logging.getLogger(__name__)

Pair = tuple[TileIndex, TileIndex]

#: The culprit's honest error must be at least this many times that of every other
#: pair of a broken loop. Tuned on seeds 0-4 of the stitching matrix: 1.5 also drops
#: a link of 8 x 8 harsh seed 3 (excess over the stage +0.25 px), 2.5 no longer
#: drops the broad link of backlash +-3 seed 4 (ratio 2.5).
CULPRIT_MARGIN = 2.0
#: A link of a broken loop whose evidence peak spreads over more than this (pixels, on
#: either axis) may be dropped without being clearly the least certain.
BROAD_SPREAD_PX = 1.0


def honest_variance(sigma_px: Sequence[float], spread_px: Sequence[float]) -> np.ndarray:
    """``(y, x)`` variance of a pair's offset: its standard error ``sigma_px`` and its peak
    ``spread_px`` in quadrature (a NaN spread counts as 0)."""
    return np.asarray(sigma_px, float) ** 2 + np.nan_to_num(np.asarray(spread_px, float)) ** 2


def honest_error(pair: PairOffset, spread_px: Sequence[float]) -> float:
    """The pair's standard error (``1 / sqrt(weight)``) and peak spread in quadrature,
    the larger over the axes (pixels; :func:`honest_variance`)."""
    return float(np.sqrt(np.max(honest_variance(1 / np.sqrt(pair.axis_weights()), spread_px))))


def contested_links(kept: Sequence[PairOffset], dropped: Sequence[PairOffset],
                    significance: Mapping[Pair, float]) -> set[Pair]:
    """The kept pairs whose only check was a pair the solve ``dropped`` as inconsistent, of like quality.

    Adding a dropped pair back closes a loop through kept pairs that lie on no
    other loop: nothing but the dropped pair checks them, and it disagreed.
    When all but one of them are clearly more significant than the dropped
    pair (at least :data:`CULPRIT_MARGIN` times its ``significance``), the
    disagreement is between two links of like quality, and the solve's
    choice between them was a coin flip (it drops the larger residual in
    standard errors, and those come from the sub-pixel fits' precision, not
    from which peak is right): that kept pair is contested, and the tiles it
    alone places are searched again with all their links
    (:func:`linumpy.stitching.reanchor_pieces.reanchor`), whatever its
    significance. When several are of like quality, the blame has several
    candidates and the solve's choice stands.

    Examples
    --------
    >>> square = [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((0, 1), (1, 1)), ((1, 0), (1, 1))]
    >>> pairs = [PairOffset(a, b, (0.0, 0.0), 1.0) for a, b in square]
    >>> contested_links(pairs[:3], pairs[3:], dict(zip(square, (12.0, 14.0, 5.0, 3.0))))
    {((0, 1), (1, 1))}
    >>> contested_links(pairs[:3], pairs[3:], dict(zip(square, (12.0, 4.0, 5.0, 3.0))))
    set()
    """
    unchecked = {(kept[k].a, kept[k].b) for k in bridges(kept)}
    contested: set[Pair] = set()
    for pair in dropped:
        both = list(kept) + [pair]
        checked = unchecked - {(both[k].a, both[k].b) for k in bridges(both)}
        alike = [key for key in checked if significance[key] < CULPRIT_MARGIN * significance[(pair.a, pair.b)]]
        if len(alike) == 1:
            contested.add(alike[0])
    return contested


def closed_by_switches(kept: Sequence[PairOffset], switched: Collection[Pair],
                       significance: Mapping[Pair, float], strong_significance: float) -> set[Pair]:
    """The kept pairs that a loop closure chose, and the weak ones only such loops check.

    A pair moved to a rival peak by a loop closure
    (:mod:`linumpy.stitching.loops`) was chosen *because* it closes its loops,
    so those loops no longer check it, nor the other pairs on them: two wrong
    peaks can close a loop once one of them was picked to match the other.
    Returned: the ``switched`` pairs among ``kept``, and every kept pair whose
    own ``significance`` is below ``strong_significance`` (the bar of a pair
    allowed to be the only link between tiles) and that lies on no loop of
    the kept pairs without the switched ones.

    Examples
    --------
    >>> square = [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((0, 1), (1, 1)), ((1, 0), (1, 1))]
    >>> pairs = [PairOffset(a, b, (0.0, 0.0), 1.0) for a, b in square]
    >>> sorted(closed_by_switches(pairs, {square[3]}, dict(zip(square, (12.0, 14.0, 2.4, 0.5))), 3.0))
    [((0, 1), (1, 1)), ((1, 0), (1, 1))]
    """
    chosen = {(p.a, p.b) for p in kept} & set(switched)
    if not chosen:
        return set()
    rest = [p for p in kept if (p.a, p.b) not in chosen]
    unchecked = {(rest[k].a, rest[k].b) for k in bridges(rest)}
    return chosen | {key for key in unchecked if significance[key] < strong_significance}


def broken_loop_culprit(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    spreads: Mapping[Pair, Sequence[float]],
    tile_step_px: Sequence[float],
    excluded: Collection[Pair] = (),
) -> int | None:
    """Index of the clearly least certain pair among those on a loop that misses.

    A pair is on a broken loop when its offset predicted from all the other
    pairs departs from its own by more than ``MAX_RESIDUAL_PX``.

    Parameters
    ----------
    tiles : sequence of (row, col)
    pairs : sequence of PairOffset
        Kept pairs.
    spreads : mapping
        ``(a, b) -> (y, x)`` peak spread of every pair.
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step.
    excluded : collection of (a, b)
        Pairs not to name (their drop was refused).

    Returns
    -------
    int or None
        ``None`` if every loop closes within ``MAX_RESIDUAL_PX`` or no pair
        of a broken loop is :data:`CULPRIT_MARGIN` times less certain than
        all the others.

    Examples
    --------
    >>> square = [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((0, 1), (1, 1)), ((1, 0), (1, 1))]
    >>> true = {((0, 0), (0, 1)): (0.0, 10.0), ((0, 0), (1, 0)): (10.0, 0.0),
    ...         ((0, 1), (1, 1)): (10.0, 0.0), ((1, 0), (1, 1)): (3.0, 10.0)}
    >>> pairs = [PairOffset(a, b, true[(a, b)], 4.0) for a, b in square]
    >>> spreads = {(a, b): (0.0, 0.0) for a, b in square} | {((1, 0), (1, 1)): (2.0, 2.0)}
    >>> broken_loop_culprit([t for pair in square for t in pair], pairs, spreads, (10, 10))
    3
    """
    broken = _broken(tiles, pairs, tile_step_px, excluded)
    if not broken:
        return None
    errors = {k: honest_error(pairs[k], spreads[(pairs[k].a, pairs[k].b)]) for k in broken}
    ranked = sorted(broken, key=lambda k: (-errors[k], k))
    if len(ranked) > 1 and errors[ranked[0]] < CULPRIT_MARGIN * errors[ranked[1]]:
        return None
    return ranked[0]


def broad_broken_links(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    spreads: Mapping[Pair, Sequence[float]],
    tile_step_px: Sequence[float],
    excluded: Collection[Pair] = (),
) -> list[int]:
    """Indices of the pairs on a loop that misses whose evidence peak is broad.

    When no pair of a broken loop is clearly the least certain
    (:func:`broken_loop_culprit`), the links whose peak spreads over more
    than :data:`BROAD_SPREAD_PX` across any direction they constrain
    (:func:`spread_across_ridge`) are still the suspects: such
    pairs err 2-3 times more than their standard error says
    (docs/stitching.md, QC fields). ``excluded`` pairs are not named.
    """
    return [k for k in _broken(tiles, pairs, tile_step_px, excluded)
            if spread_across_ridge(pairs[k], spreads[(pairs[k].a, pairs[k].b)]) > BROAD_SPREAD_PX]


def spread_across_ridge(pair: PairOffset, spread_px: Sequence[float]) -> float:
    """The pair's peak spread (``(y, x)``, pixels; NaN counts as 0) over the directions it constrains, the
    largest over them: the larger over the axes for a pair measuring every direction, the spread across
    the ridge for an edge link (``free_direction``).

    Along its ridge an edge link's peak is broad by nature, and a loop's test
    (:func:`_broken`) ignores its residual there: breadth along the ridge does
    not make it a suspect. ``8x8 harsh`` seed 3 of the stitching matrix: the
    right edge link (4, 7)-(5, 7) (spread 0.27 px across its ridge, 1.52 along
    it, 1.1 px off) was dropped as broad, and the wrong parallel (4, 6)-(5, 6)
    (2.9 px off) placed tile (5, 6) 1.1 px farther from the truth than the stage.

    Examples
    --------
    >>> spread_across_ridge(PairOffset((0, 0), (1, 0), (90.0, 0.0), 1.0), (0.3, 1.5))
    1.5
    >>> spread_across_ridge(PairOffset((0, 0), (1, 0), (90.0, 0.0), 1.0, free_direction=(0.0, 1.0)), (0.3, 1.5))
    0.3
    """
    projection = pair.projection()
    variance = projection @ np.diag(np.nan_to_num(np.asarray(spread_px, float)) ** 2) @ projection
    return float(np.sqrt(max(np.linalg.eigvalsh(variance).max(), 0.0)))


def _broken(tiles: Sequence[TileIndex], pairs: Sequence[PairOffset], tile_step_px: Sequence[float],
            excluded: Collection[Pair]) -> list[int]:
    """Indices of the pairs on a loop (not ``excluded``) whose offset predicted from all the others
    departs from their own by more than ``MAX_RESIDUAL_PX`` in the metric of the prediction's covariance
    (:func:`~linumpy.stitching.global_solve.departs_from_prediction`).

    Through an edge link the prediction is undetermined along the edge's ridge: a residual there says
    nothing about the loop (``tiny`` preset, slice 1: an edge link 4.8 px off along its ridge made the
    right weak link of its loop depart by as much, and the weak link was dropped).
    """
    if not pairs:
        return []
    predicted, covariance = leave_one_out_offsets(tiles, pairs, tile_step_px)
    on_no_loop = set(bridges(pairs))
    return [k for k, pair in enumerate(pairs)
            if k not in on_no_loop and (pair.a, pair.b) not in excluded
            and departs_from_prediction(pair, predicted[k], covariance[k])]


def drop_broken_loop_links(
    tiles: Sequence[TileIndex],
    solved: Solution,
    spreads: Mapping[Pair, Sequence[float]],
    own_significance: Mapping[Pair, float],
    anchor_significance: float,
    tile_step_px: Sequence[float],
) -> tuple[Solution, list[Pair], list[Pair]]:
    """Drop, one at a time, the least certain weak pair of a loop that does not close; then the broad links
    of the loops that still miss, together.

    Parameters
    ----------
    tiles : sequence of (row, col)
    solved : tuple
        ``(positions, model, kept)`` of the current solve.
    spreads : mapping
        ``(a, b) -> (y, x)`` peak spread of every kept pair.
    own_significance : mapping
        ``(a, b) -> significance`` of each pair's own registration (not that
        of a joint peak that placed it).
    anchor_significance : float
        A culprit at least this significant is kept.
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step.

    Returns
    -------
    tuple
        ``((positions, model, kept), dropped, broad)``: ``dropped`` the
        culprits, one at a time, then ``broad`` the broad links of the loops
        that still miss, dropped together (:func:`_drop_broad_links`).
    """
    dropped: list[Pair] = []
    refused: set[Pair] = set()
    while (culprit := broken_loop_culprit(tiles, solved[2], spreads, tile_step_px, refused)) is not None:
        pair = solved[2][culprit]
        key = (pair.a, pair.b)
        if own_significance[key] >= anchor_significance:
            break
        rest = [p for k, p in enumerate(solved[2]) if k != culprit]
        without = solve_positions(tiles, rest, tile_step_px)
        if len(without[2]) < len(rest):
            refused.add(key)
            continue
        logger.info("pair %s-%s dropped: its loop does not close and it is the least certain "
                    "(honest error %.2f px, own significance %.2f)", pair.a, pair.b,
                    honest_error(pair, spreads[key]), own_significance[key])
        dropped.append(key)
        solved = without
    anchoring = {(p.a, p.b) for p in solved[2] if own_significance[(p.a, p.b)] >= anchor_significance}
    solved, broad = _drop_broad_links(tiles, solved, spreads, anchoring, tile_step_px)
    return solved, dropped, broad


def open_loops(tiles: Sequence[TileIndex], pairs: Sequence[PairOffset],
               tile_step_px: Sequence[float]) -> dict[Pair, float]:
    """The kept ``pairs`` on a loop that still does not close, each with its miss (pixels).

    A pair is on such a loop when its offset departs from what all the other pairs predict beyond
    ``MAX_RESIDUAL_PX`` (:func:`_broken`); its miss is the length of that departure across its own free
    direction (the whole of it for a pair measuring every direction). :func:`drop_broken_loop_links`
    leaves such a loop when no pair of it is clearly the least certain or the culprit is significant on
    its own: which of its pairs erred is then not known, and the tiles it places may lie off by up to the
    miss (fresh foreign ``c185`` seed 209, slice 0: (0, 0)-(1, 0), own significance 3.29 between tiles that
    do not overlap, 4.5 px off, and the right (2, 3)-(3, 3), 4.01, both broad along y, a loop missing by
    3.5 px; the piece {(1, 0), (2, 0), (2, 1), (3, 0), (3, 1)} ended 3.2-3.3 px off, the others 1.1-1.5).

    Examples
    --------
    >>> square = [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((0, 1), (1, 1)), ((1, 0), (1, 1))]
    >>> offsets = [(0.0, 10.0), (10.0, 0.0), (10.0, 0.0), (0.0, 10.0)]
    >>> closed = [PairOffset(a, b, o, 4.0) for (a, b), o in zip(square, offsets)]
    >>> open_loops([t for pair in square for t in pair], closed, (10, 10))
    {}
    >>> missing = closed[:3] + [PairOffset((1, 0), (1, 1), (0.0, 14.0), 4.0)]
    >>> sorted(round(miss, 1) for miss in open_loops([t for pair in square for t in pair], missing, (10, 10)).values())
    [4.0, 4.0, 4.0, 4.0]
    """
    if not pairs:
        return {}
    predicted, _ = leave_one_out_offsets(tiles, pairs, tile_step_px)
    return {(pairs[k].a, pairs[k].b): float(np.linalg.norm(
                pairs[k].projection() @ (predicted[k] - np.asarray(pairs[k].offset, float))))
            for k in _broken(tiles, pairs, tile_step_px, ())}


def _drop_broad_links(tiles: Sequence[TileIndex], solved: tuple, spreads: Mapping[Pair, Sequence[float]],
                      anchoring: Collection[Pair], tile_step_px: Sequence[float]) -> tuple[tuple, list[Pair]]:
    """Drop together the broad links, not ``anchoring``, of the loops that still miss
    (:func:`broad_broken_links`) in ``solved`` (``(positions, model, kept)``).

    All or none: only if the solve without them keeps every other pair and
    every registered tile keeps a pair (the others place the tiles; none is
    left to the stage model). Returns ``((positions, model, kept), dropped)``.
    """
    pairs = solved[2]
    broad = set(broad_broken_links(tiles, pairs, spreads, tile_step_px, anchoring))
    if not broad:
        return solved, []
    rest = [p for k, p in enumerate(pairs) if k not in broad]
    without = solve_positions(tiles, rest, tile_step_px)
    registered = {t for p in pairs for t in (p.a, p.b)}
    if len(without[2]) < len(rest) or registered - {t for p in without[2] for t in (p.a, p.b)}:
        return solved, []
    keys = [(pairs[k].a, pairs[k].b) for k in sorted(broad)]
    logger.info("broad links %s of loops that do not close dropped together", keys)
    return without, keys


def swap_least_certain(
    tiles: Sequence[TileIndex],
    solved: Solution,
    dropped: Sequence[PairOffset],
    spreads: Mapping[Pair, Sequence[float]],
    own_significance: Mapping[Pair, float],
    anchor_significance: float,
    tile_step_px: Sequence[float],
) -> tuple[Solution, list[tuple[Pair, Pair]]]:
    """Put back each weak pair a solve ``dropped``, and keep it instead of the kept pair its loop blames.

    The solve drops the pair of largest residual, and between two weak links of a loop that misses the
    residuals come from the sub-pixel fits' precision, not from which peak is right: a broad wrong link
    that another loop closes (through links that do not check it) stays, the right one goes. Put back, a
    dropped pair makes its loop miss; when the loop's clearly least certain pair by honest error
    (:func:`broken_loop_culprit`) is a kept pair below ``anchor_significance`` (not the dropped one),
    the two change places, if the solve with the dropped pair and without the culprit keeps every pair.
    ``dropped`` are tried from the most significant. Returns ``((positions, model, kept), swaps)``,
    ``swaps`` the ``(put back, dropped)`` keys.
    """
    swaps: list[tuple[Pair, Pair]] = []
    for pair in sorted(dropped, key=lambda p: (-own_significance[(p.a, p.b)], p.a, p.b)):
        both = list(solved[2]) + [pair]
        culprit = broken_loop_culprit(tiles, both, spreads, tile_step_px)
        if culprit is None or both[culprit] is pair:
            continue
        blamed = (both[culprit].a, both[culprit].b)
        if own_significance[blamed] >= anchor_significance:
            continue
        rest = [p for k, p in enumerate(both) if k != culprit]
        swapped = solve_positions(tiles, rest, tile_step_px)
        if len(swapped[2]) < len(rest):
            continue
        logger.info("pair %s-%s put back instead of %s-%s, the least certain of their loop (honest error "
                    "%.2f px, own significance %.2f)", pair.a, pair.b, *blamed,
                    honest_error(both[culprit], spreads[blamed]), own_significance[blamed])
        swaps.append(((pair.a, pair.b), blamed))
        solved = swapped
    return solved, swaps


def swap_clearly_weaker(
    tiles: Sequence[TileIndex],
    solved: Solution,
    dropped: Sequence[PairOffset],
    own_significance: Mapping[Pair, float],
    tile_step_px: Sequence[float],
) -> tuple[Solution, list[tuple[Pair, Pair]]]:
    """Put back each pair a solve ``dropped`` that was the only check of one kept pair, and keep it
    instead of that pair if it is clearly more significant on its own.

    The pairs of a joint placement (:mod:`~linumpy.stitching.tile_search`) enter the solve with the
    joint peak's significance, whatever each one's own: between two such links of a loop that misses,
    the solve's choice follows the sub-pixel fits, not which peak is right. When the loop that a
    dropped pair closes checks exactly one kept pair (one that lay on no loop without it,
    :func:`contested_links`' test) and the dropped pair's ``own_significance`` is at least
    :data:`CULPRIT_MARGIN` times that pair's, the two change places, if the solve with the dropped
    pair and without the other keeps every pair. ``6x6`` seed 107 of the stitching matrix: the
    corner {(4, 4), (4, 5), (5, 4), (5, 5)}, right among itself, hung on the edge link (3, 4)-(4, 4)
    (own significance 0.55, 3.5 px off across its ridge, joint 3.4) while the right (3, 5)-(4, 5)
    (own 2.46, 0.4 px off) was dropped; three tiles ended 1.0-2.8 px farther from the truth than
    their stage positions. ``dropped`` are tried from the most significant. Returns
    ``((positions, model, kept), swaps)``, ``swaps`` the ``(put back, dropped)`` keys.
    """
    swaps: list[tuple[Pair, Pair]] = []
    for pair in sorted(dropped, key=lambda p: (-own_significance[(p.a, p.b)], p.a, p.b)):
        kept = list(solved[2])
        both = kept + [pair]
        checked = ({(kept[k].a, kept[k].b) for k in bridges(kept)}
                   - {(both[k].a, both[k].b) for k in bridges(both)})
        if len(checked) != 1:
            continue
        blamed, = checked
        if CULPRIT_MARGIN * own_significance[blamed] > own_significance[(pair.a, pair.b)]:
            continue
        rest = [p for p in both if (p.a, p.b) != blamed]
        swapped = solve_positions(tiles, rest, tile_step_px)
        if len(swapped[2]) < len(rest):
            continue
        logger.info("pair %s-%s put back instead of %s-%s, the one link it checks (own significance %.2f "
                    "against %.2f)", pair.a, pair.b, *blamed, own_significance[blamed],
                    own_significance[(pair.a, pair.b)])
        swaps.append(((pair.a, pair.b), blamed))
        solved = swapped
    return solved, swaps
