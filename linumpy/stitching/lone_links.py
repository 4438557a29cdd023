"""Kept links on no loop that alone place their side of the grid far from the stage model: found
(:func:`far_lone_links`), refused where their side's other overlaps do not prefer that placement to the
stage's, and edge links among them kept across their ridge only (step 6 of
:mod:`linumpy.stitching.estimate`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from functools import partial

import numpy as np

from linumpy.stitching.global_solve import (PairOffset, Solution, StageModel, TileIndex, bridges, solve_positions,
                                             solve_without)
from linumpy.stitching.link_conflicts import honest_variance
from linumpy.stitching.pair_terms import WEAK_PIECE_MARGIN, bridged_side, lone_side, pair_sigma
from linumpy.stitching.pairwise import PairRegistration, offset_spread
from linumpy.stitching.reanchor import evidence_over, evidence_over_stage, links_out
from linumpy.stitching.tile_search import PRIOR_MARGIN, PRIOR_SLACK_PX, largest_deviation, reference_gauge
from linumpy.stitching.uncertainty import stage_scatter

logger = logging.getLogger(__name__)

Pair = tuple[TileIndex, TileIndex]
#: A rule's ruling on a link (:func:`refuse_one_at_a_time`): None leaves it; ``(side, inside, reason)`` refuses it,
#: ``side`` to the stage model, the solve without it may drop the pairs from ``inside``, ``reason`` for the log.
Ruling = tuple[set[TileIndex], frozenset[TileIndex] | set[TileIndex], str] | None


#: Fewest tiles on the other side of a lone link for its window to measure the stage's error (:func:`far_lone_links`:
#: one tile, in its own gauge, deviates by nothing).
MIN_REFERENCE_TILES = 2
#: A lone link beyond the search window: ``(pair, tiles, deviation, window)`` (:func:`far_lone_links`).
LoneLink = tuple[tuple[TileIndex, TileIndex], list[TileIndex], float, float]
#: Significance from which a lone link is judged against the far-bridge window (:func:`far_lone_links`, ``strong``):
#: the wrong lone links the search window refused were of significance 3.2-4.4 (harsh 150 / 152, ``c185`` 201,
#: ``odd2`` 389), the right ones it refused on foreign ``ha`` 454 of 6.5-7.7 (``odd2`` 359 / 266: 13.7-18.1).
STRONG_LONE_SIGNIFICANCE = 6.0


def strong_lone_candidates(links: Iterable[tuple[TileIndex, TileIndex]],
                           registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration]
                           ) -> set[tuple[TileIndex, TileIndex]]:
    """The ``links`` whose registration's significance is at least :data:`STRONG_LONE_SIGNIFICANCE` (the ``strong``
    of :func:`far_lone_links`).

    Examples
    --------
    >>> strong_lone_candidates([((0, 0), (1, 0)), ((0, 0), (0, 1))],
    ...                        {((0, 0), (1, 0)): PairRegistration((96.0, 0.0), 0.9, 7.7),
    ...                         ((0, 0), (0, 1)): PairRegistration((0.0, 96.0), 0.9, 3.6)})
    {((0, 0), (1, 0))}
    """
    return {pair for pair in links if pair in registrations
            and registrations[pair].significance >= STRONG_LONE_SIGNIFICANCE}


def side_deviations(side: AbstractSet[TileIndex], reference: AbstractSet[TileIndex],
                    positions: Mapping[TileIndex, np.ndarray], model: StageModel, far: bool = False
                    ) -> tuple[dict[TileIndex, float], float]:
    """Each tile of ``side``'s largest deviation (pixels, per axis) from its stage-model position in the gauge of the
    ``reference`` tiles (:func:`~linumpy.stitching.tile_search.reference_gauge`), and the window they are judged
    against: the joint search's (:func:`~linumpy.stitching.tile_search.search_radius` of ``reference``) or, ``far``,
    the far-bridge window (:func:`~linumpy.stitching.pair_terms.bridged_side`: twice the reference's largest
    deviation, times the margin, plus the slack).

    Examples
    --------
    >>> model = StageModel.nominal((100.0, 100.0))
    >>> positions = {(0, 0): np.array([1.0, 0.0]), (0, 1): np.array([-1.0, 100.0]), (0, 2): np.array([6.0, 200.0])}
    >>> side_deviations({(0, 2)}, {(0, 0), (0, 1)}, positions, model)
    ({(0, 2): 6.0}, 3.5)
    >>> side_deviations({(0, 2)}, {(0, 0), (0, 1)}, positions, model, far=True)[1]
    5.0
    """
    aligned = reference_gauge(positions, reference, model)
    deviation = largest_deviation(positions, reference, aligned)
    window = PRIOR_MARGIN * (2 if far else 1) * deviation + PRIOR_SLACK_PX
    return {t: largest_deviation(positions, [t], aligned) for t in side}, window


def freed_sides(sides: Mapping[tuple[TileIndex, TileIndex], AbstractSet[TileIndex]],
                strong: AbstractSet[tuple[TileIndex, TileIndex]], placed: AbstractSet[TileIndex],
                positions: Mapping[TileIndex, np.ndarray], model: StageModel) -> set[TileIndex]:
    """The tiles that links of ``strong`` place beyond the joint search's window: the ``sides`` (each link on no
    loop's side, :func:`~linumpy.stitching.pair_terms.bridged_side`) of the strong links with a tile beyond the
    search window of the other ``placed`` tiles (:func:`side_deviations`). The strong link alone claims where they
    lie, so they measure none of the stage's error (:func:`far_lone_links`).

    Examples
    --------
    >>> model = StageModel.nominal((100.0, 100.0))
    >>> positions = {(0, 0): np.array([1.0, 0.0]), (0, 1): np.array([-1.0, 100.0]), (0, 2): np.array([6.0, 200.0])}
    >>> link = ((0, 1), (0, 2))
    >>> placed = set(positions)
    >>> freed_sides({link: {(0, 2)}}, {link}, placed, positions, model), freed_sides({link: {(0, 2)}}, set(), placed,
    ...                                                                                positions, model)
    ({(0, 2)}, set())
    """
    freed: set[TileIndex] = set()
    for pair, side in sides.items():
        if pair in strong:
            beyond, window = side_deviations(side, placed - side, positions, model)
            if max(beyond.values()) > window:
                logger.info("strong lone link %s-%s places %s up to %.1f px from the stage model, beyond the search "
                            "window (%.1f px): judged against the far-bridge window", *pair, sorted(side),
                            max(beyond.values()), window)
                freed |= side
    return freed


def far_lone_links(links: Sequence[tuple[TileIndex, TileIndex]], positions: Mapping[TileIndex, np.ndarray],
                   model: StageModel, strong: AbstractSet[tuple[TileIndex, TileIndex]] = frozenset()
                   ) -> list[LoneLink]:
    """The kept ``links`` on no loop that place tiles they alone join farther from their stage-model
    positions than the joint search's window (:func:`~linumpy.stitching.tile_search.search_radius` of the
    other side, in its gauge, :func:`~linumpy.stitching.pair_terms.bridged_side`; half the far-bridge window of step 5
    less the slack): one unchecked link decides where those tiles lie, beyond what the stage errs on the others (fresh
    harsh foreign seed 152, slice 2: (2, 0)-(2, 1), significance 3.77, 13.4 px from the truth, put (2, 1) and
    (2, 2) 13.7 px from their stage positions, the window 10.8 px, the far-bridge window 19.7 px and the
    pairs' departure bound not exceeded; a right bridge can be beyond it where the stage erred on its tiles
    more than on the others). Each tile is named once, by the link with the fewest tiles on its side (the
    nearest of a chain). A link whose other side is one tile is not judged: in its own gauge one tile shows
    none of the stage's error, so its window would be the slack alone (2 px) while the stage errs by several
    pixels between any two tiles (foreign ``odd2`` 292, a 1 x 4 strip whose two end tiles see only gel: the one
    pair with tissue, significance 10.6-17.1 and 0.03-0.17 px from the truth, put its far tile 2.5-3.0 px from
    the stage model and was refused on four of five slices, both tiles left on the stage 1.8-2.3 px off). A link
    whose other side is two tiles is judged: their window often shows little of the stage's error and refuses right
    strong links (``odd2`` 359 / 266 slice 2, significance 18.1 / 13.7), but it is the only check of a wrong weak one
    (``odd2`` 389 slice 2: significance 3.2, 5.3 px off, (0, 3) refused to the stage 2.3 px off; kept, 4.3 px off).

    A link of ``strong`` (significance at least :data:`STRONG_LONE_SIGNIFICANCE`) is judged against the far-bridge
    window instead (:func:`~linumpy.stitching.pair_terms.bridged_side`: twice the other side's largest deviation,
    the range of one tile's stage error measured from their mean, times the margin, plus the slack), the window
    :func:`~linumpy.stitching.departures.solve_plausible` keeps a far bridge within: the other side's few tiles
    sample the stage's error poorly, and a strong peak is seldom a wrong one. Foreign ``ha`` 454 slices 2 / 4 (stage
    +-6 px per tile): (1, 0)-(2, 0), significance 7.70 / 6.54, 0.67 / 0.34 px from the truth, put (2, 0)
    7.96 / 9.55 px from its stage position (the search window 6.98 / 9.41 px, six / eight reference tiles; the
    far-bridge window 12.0 / 16.8 px); its other overlap, 10 px off, refused in depth: refused, the tile stayed on
    the stage 7.20 / 9.01 px off (session window10). Such a kept link's tiles stay beyond the search window and are
    counted by the QC (``n_far_lone_link_tiles``).

    The tiles a strong link places beyond the search window (:func:`freed_sides`) are its claim, not a sample of the
    stage's error: a link whose side lies within them is judged against the window of the tiles outside every freed
    side (unless fewer than :data:`MIN_REFERENCE_TILES` are left), the one it would face were the strong link
    refused; links elsewhere keep their other side's (measured without the freed tiles, a right weak link of
    ``c185`` 466 slice 3's top half was judged on two tiles and dropped). Foreign ``c185`` 464 slice 1 (session
    window10b): the right strong links (3, 0)-(3, 1) and (3, 1)-(3, 2) (significance 21.0 / 9.9) have on their
    side (0, 0), 16.9 / 17.7 px from the stage model (search windows 16.5 / 15.8 px), placed there by the wrong weak
    (0, 0)-(1, 0) (significance 4.97, 25 px off), whose own window, measured with the left column among its
    reference, held it: 22.5 px from the truth (its stage position 9.1 px). Measured on the other eleven tiles, it
    is beyond it, and its side's other overlaps do not support it: refused, (0, 0) on the stage.

    Returns ``[(pair, tiles, deviation, window)]``, nearest first, pixels (per axis), the tiles beyond the
    window only.

    Parameters
    ----------
    links : Sequence[tuple[TileIndex, TileIndex]]
        The ``(a, b)`` keys of the kept pairs.
    positions : Mapping[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.
    strong : AbstractSet[tuple[TileIndex, TileIndex]]
        The links judged against the far-bridge window (:func:`strong_lone_candidates`); none by default.

    Returns
    -------
    list[LoneLink]
        ``(pair, tiles, deviation, window)`` per such link, nearest first: the tiles of its side beyond the
        window, their largest deviation and the window, pixels.
    """
    kept = [PairOffset(a, b, (0.0, 0.0), 1.0) for a, b in links]
    placed = {t for pair in links for t in pair}
    sides = {links[k]: bridged_side(links[k], [pair for j, pair in enumerate(links) if j != k], positions, model)[0]
             for k in bridges(kept)}
    sides = {pair: side for pair, side in sides.items() if len(placed - side) >= MIN_REFERENCE_TILES}
    freed = freed_sides(sides, strong, placed, positions, model)
    judged = []
    for pair, side in sides.items():
        carried = side <= freed and len(placed - freed) >= MIN_REFERENCE_TILES
        reference = placed - freed if carried else placed - side
        beyond, window = side_deviations(side, reference, positions, model, far=pair in strong and side <= freed)
        judged.append((len(side), pair, {t: d for t, d in beyond.items() if d > window}, window))
    found, named = [], set()
    for _, pair, beyond, window in sorted(judged):
        tiles = sorted(set(beyond) - named)
        if tiles:
            named.update(tiles)
            found.append((pair, tiles, max(beyond[t] for t in tiles), window))
    return found


def side_over_stage(pair: tuple[TileIndex, TileIndex], links: Sequence[tuple[TileIndex, TileIndex]],
                     positions: Mapping[TileIndex, np.ndarray], model: StageModel,
                     registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration]
                     ) -> tuple[set[TileIndex], float]:
    """The side that the kept link ``pair`` alone joins to the others among the kept ``links``
    (:func:`~linumpy.stitching.pair_terms.bridged_side`) and the evidence of the side's other scored overlaps with the
    other tiles for where it lies over the stage model's placement in the other side's gauge
    (:func:`~linumpy.stitching.reanchor.evidence_over_stage`; NaN if none scores both).

    Parameters
    ----------
    pair : tuple of TileIndex
        The kept link on no loop.
    links : Sequence[tuple[TileIndex, TileIndex]]
        The ``(a, b)`` keys of the kept pairs.
    positions : Mapping[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's registration, for the side's other scored overlaps.

    Returns
    -------
    tuple
        ``(side, margin)``: the tiles the link alone joins and their evidence margin over the stage placement.
    """
    side, aligned, _ = bridged_side(pair, [link for link in links if link != pair], positions, model)
    placed = {t for link in links for t in link}
    others = [(link, r) for link, r in links_out(sorted(side), registrations, placed - side) if link != pair]
    return side, evidence_over_stage(sorted(side), others, positions, aligned)


def far_side_unsupported(solved: Solution, registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration]
                          ) -> tuple[tuple[TileIndex, TileIndex], list[TileIndex]] | None:
    """Of the kept links on no loop that place tiles they alone join beyond the joint search's window
    (:func:`far_lone_links`), those whose side's other overlaps do not support that placement (their
    evidence for it over the stage's placement, :func:`side_over_stage`, below
    :data:`~linumpy.stitching.pair_terms.WEAK_PIECE_MARGIN`, as for a weakly attached piece, or none scoring both), the
    one with the largest side, and its side; else ``None``.

    In a chain of such links the one nearest the other tiles carries every far tile on its side (201 slice
    3: the wrong (2, 0)-(3, 0) holds {(1, 0), (2, 0), (2, 1)}, its other overlap (2, 1)-(3, 1), between
    tiles that do not overlap, reads -0.08 standard errors; the right (1, 0)-(2, 0), significance 25.8, also
    names (1, 0), whose side has no other overlap with the placed tiles).

    Parameters
    ----------
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's registration, for the side's other scored overlaps with the other tiles.

    Returns
    -------
    tuple[tuple[TileIndex, TileIndex], list[TileIndex]] or None
        The unsupported link with the largest side and that side's tiles, sorted; ``None`` if there is none.
    """
    positions, model, kept = solved
    links = [(p.a, p.b) for p in kept]
    strong = strong_lone_candidates(links, registrations)
    judged = [(pair, *side_over_stage(pair, links, positions, model, registrations))
              for pair, _, _, _ in far_lone_links(links, positions, model, strong)]
    unsupported = [(len(side), pair, sorted(side)) for pair, side, margin in judged
                   if not margin >= WEAK_PIECE_MARGIN]
    return max(unsupported)[1:] if unsupported else None


def lone_kept_links(solved: Solution) -> Iterator[tuple[PairOffset, list[Pair]]]:
    """Each kept link of ``solved`` on no loop (:func:`~linumpy.stitching.global_solve.bridges`), with the ``(a, b)``
    keys of all the kept links: the candidates the lone-link rules judge."""
    kept = solved[2]
    links = [(p.a, p.b) for p in kept]
    for k in bridges(kept):
        yield kept[k], links


def refuse_one_at_a_time(
    tiles: Sequence[TileIndex],
    solved: Solution,
    tile_step_px: Sequence[float],
    candidates: Callable[[Solution], Iterable[tuple[Pair, Callable[[], Ruling]]]],
) -> tuple[Solution, set[TileIndex], set[Pair]]:
    """Judge a rule's candidate links one at a time, each once, refusing one and solving again before the next.

    The loop of the rules that send a link's side to the stage model: ``candidates(solved)`` gives the current
    solve's links to judge in order, each with its ruling (called only for a link not judged yet): None leaves the
    link; ``(side, inside, reason)`` refuses it, its ``side`` going to the stage model, when the solve without it
    (:func:`~linumpy.stitching.global_solve.solve_without`, the pairs from ``inside`` droppable) keeps every other
    pair; otherwise the link is left. After a refusal the candidates are taken again from the new solve.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    candidates : callable
        The rule: a solve -> its ``(pair, ruling)`` in the order the rule judges them.

    Returns
    -------
    tuple
        ``((positions, model, kept), to_stage, refused)``: the tiles put on the stage model and the links refused.
    """
    to_stage: set[TileIndex] = set()
    refused: set[Pair] = set()
    judged: set[Pair] = set()
    while True:
        for pair, ruling in candidates(solved):
            if pair in judged:
                continue
            judged.add(pair)
            verdict = ruling()
            if verdict is None:
                continue
            side, inside, reason = verdict
            attempt = solve_without(tiles, solved[2], {pair}, tile_step_px, inside)
            if attempt is None:
                logger.info("lone link %s-%s %s, left: the solve without it drops other pairs", *pair, reason)
                continue
            logger.info("lone link %s-%s %s: refused, %s on the stage model", *pair, reason, sorted(side))
            solved = attempt
            to_stage |= side
            refused.add(pair)
            break
        else:
            return solved, to_stage, refused


def far_lone_links_to_stage(
    tiles: Sequence[TileIndex],
    solved: Solution,
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    tile_step_px: Sequence[float],
) -> tuple[Solution, set[TileIndex], set[tuple[TileIndex, TileIndex]]]:
    """Refuse the kept links on no loop that place tiles beyond the search window (:func:`far_lone_links`)
    and put the tiles they alone join on the stage model.

    Such a link is the only evidence for its side, and no loop checks it: where it puts a tile farther from
    its stage position than the stage errs on the other tiles (1.5 times their largest deviation plus
    2 px, in their gauge, the joint search's window), it is refused unless the side's other scored pairs
    with the other tiles prefer its placement to the stage's
    (:func:`~linumpy.stitching.reanchor.evidence_over_stage` with the stage model in the other side's gauge,
    margin >= 0; none scoring both placements: refused). The nearest such link (fewest tiles on its side)
    is judged first; a refused one is dropped, the positions solved again (its side leaves the largest group
    and falls back to the stage model), if that solve keeps every pair outside the side, and the links
    judged again; each link is judged once. Fresh harsh foreign seed 152, slice 2: every kept pair on no
    loop (a tree of 8 pairs), (2, 0)-(2, 1), significance 3.77, 13.4 px from the truth, put (2, 1) and
    (2, 2) 13.7 px from their stage positions, the window 10.8 px, their other pairs' margin -11.7: they
    ended 10.1 and 10.0 px off, their stage positions 2.7 and 3.3 px. A right link beyond the window, where
    the stage erred more on its side than on the others, is kept where the side's other overlaps agree.
    The first solve refuses such links already (:func:`far_side_unsupported`); this catches those that
    later steps make so.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's registration, for the side's other scored overlaps with the other tiles.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``((positions, model, kept), to_stage, refused)``: the tiles put on the stage model and the links
        refused.
    """

    def candidates(current: Solution) -> Iterator[tuple[Pair, Callable[[], Ruling]]]:
        positions, model, kept = current
        links = [(p.a, p.b) for p in kept]
        strong = strong_lone_candidates(links, registrations)
        for pair, beyond, deviation, window in far_lone_links(links, positions, model, strong):
            yield pair, partial(far_ruling, pair, beyond, deviation, window, links, positions, model)

    def far_ruling(pair: Pair, beyond: set[TileIndex], deviation: float, window: float, links: list[Pair],
                   positions: Mapping[TileIndex, np.ndarray], model: StageModel) -> Ruling:
        reason = f"places {sorted(beyond)} up to {deviation:.1f} px from the stage model, beyond the search window " \
                 f"({window:.1f} px)"
        side, margin = side_over_stage(pair, links, positions, model, registrations)
        if margin >= 0:
            logger.info("lone link %s-%s %s, left: the side's other links prefer that placement to the stage's "
                        "(%.2f)", *pair, reason, margin)
            return None
        return side, side, f"{reason}, the side's other links' evidence over the stage placement {margin:.2f}"

    return refuse_one_at_a_time(tiles, solved, tile_step_px, candidates)


def lone_edge_links_across_only(
    tiles: Sequence[TileIndex],
    solved: Solution,
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    tile_step_px: Sequence[float],
) -> tuple[Solution, set[TileIndex], set[tuple[TileIndex, TileIndex]]]:
    """Keep only the evidence across their ridge of the kept edge links on no loop that nothing else confirms
    along it, their side on the stage model along the ridge.

    Along an edge's ridge the overlap does not tell one offset from another
    (:func:`~linumpy.stitching.pair_terms.edge_variance`); an edge link on no loop is then the only evidence of where
    its side lies along the ridge, and a wrong peak there moves the whole side, within the pairs' departure bound and
    the search window. Each such link is judged once: the positions are solved again with its evidence along the ridge
    taken away (the stage model places the side along it), and that placement replaces the link's unless the side's
    other scored pairs with the other tiles prefer the link's (:func:`~linumpy.stitching.reanchor.evidence_over`, margin
    >= 0; none scoring both placements: the stage along the ridge) or the new solve drops a pair. Fresh harsh foreign
    seed 162, slice 1: the top row, joined to the rest by (0, 0)-(1, 0) alone (joint search, significance 2.22, an
    outline's ridge, right across it, 14.6 px off along it, where the true overlap is under a pixel), lay
    5.5-5.8 px off, two tiles 0.8-1.5 px farther than their stage positions; (0, 2)-(1, 2) preferred the
    stage along the ridge by 1.53: 2.4-2.6 px off. A right lone edge link whose side's other overlaps agree
    stays.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's registration, for the side's other scored overlaps with the other tiles.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``((positions, model, kept), along_stage, links)``: the tiles placed on the stage model along the ridge
        and the links kept across it only.
    """
    positions, model, kept = solved
    along_stage: set[TileIndex] = set()
    judged: set[tuple[TileIndex, TileIndex]] = set()
    while True:
        links = [(p.a, p.b) for p in kept]
        lone = [kept[k] for k in bridges(kept) if kept[k].free_direction is not None
                and np.isfinite(kept[k].ridge_variance) and links[k] not in judged]
        if not lone:
            return (positions, model, kept), along_stage, judged & {(p.a, p.b) for p in kept
                                                                     if not np.isfinite(p.ridge_variance)}
        link = lone[0]
        pair = (link.a, link.b)
        judged.add(pair)
        attempt = solve_positions(tiles, [replace(p, ridge_variance=float("inf")) if p is link else p for p in kept],
                                  tile_step_px)
        side = lone_side(pair, links, positions, model)
        placed = {t for other in links for t in other}
        others = [(other, r) for other, r in links_out(sorted(side), registrations, placed - side) if other != pair]
        margin = evidence_over(others, positions, attempt[0])
        if margin >= 0 or {(p.a, p.b) for p in attempt[2]} != set(links):
            logger.info("lone edge link %s-%s left: the side's other links prefer its placement along its ridge "
                        "(%.2f) or the solve without it there drops pairs", *pair, margin)
            continue
        logger.info("lone edge link %s-%s: the side's other links' evidence over the stage along its ridge %.2f: "
                    "evidence across its ridge only, %s on the stage model along it", *pair, margin, sorted(side))
        positions, model, kept = attempt
        along_stage |= side


def unrefined(registration: PairRegistration) -> bool:
    """Whether the sub-pixel fit left a pair's peak where the evidence map put it: a whole-pixel offset with the
    fit's placeholder standard error of 1 px (:func:`~linumpy.stitching.pairwise.refine_subpixel`: the fit failed
    or left its box).

    Examples
    --------
    >>> unrefined(PairRegistration((96.0, -3.0), 0.7)), unrefined(PairRegistration((96.56, 2.01), 0.9, (0.2, 0.2)))
    (True, False)
    """
    return registration.sigma_px == (1.0, 1.0) and all(float(v).is_integer() for v in registration.offset)


def broad_lone_links_to_stage(
    tiles: Sequence[TileIndex],
    solved: Solution,
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    tile_step_px: Sequence[float],
    max_shift_px: float,
) -> tuple[Solution, set[TileIndex], set[tuple[TileIndex, TileIndex]]]:
    """Refuse the kept links on no loop, not on an edge's ridge, that alone place one tile at a peak the sub-pixel fit
    did not refine and know its position less well than the stage model does; put that tile on the stage model.

    Such a link is the tile's only evidence. Where the sub-pixel fit did not refine its peak (:func:`unrefined`: the
    fit failed or left its box, the offset a whole pixel), the width of its evidence peak is its error: on an axis
    where its honest standard error (:func:`~linumpy.stitching.link_conflicts.honest_variance`: the standard error
    and the peak's width in quadrature) exceeds the stage scatter (:func:`~linumpy.stitching.uncertainty.stage_scatter`:
    how far the registered tiles lie from the stage model), the stage places the tile better than the link, in
    expectation. Held-out matrix seed 173, ``control`` (0, 3)-(1, 3): significance 3.56, unrefined, a broad hump
    3.6 px wide along y on a tile of little texture, honest error 3.77 px along y against a scatter of 2.43 px: 5.5 px
    off, it put (0, 3) 5.17 px from the truth, its stage position 3.58. A refined peak's width overstates its error
    (accepted pairs of matrix seeds 0-2, 150-154, 165-174: refined axes with a width of 3 px or more err 0.91 px on
    average, at most 2.65), so a refined link is left: ``control`` seed 180, the same overlap, 3.0 px wide, refined,
    0.47 px off (session sigma10). Edge links are :func:`lone_edge_links_across_only`'s. Each link is judged once; one
    whose removal makes the solve drop another pair is left.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        The registration of every kept pair at its kept peak (its sub-pixel error and evidence maps).
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    max_shift_px : float
        Half-width of the pairs' search window, pixels (the scatter with too few registered tiles).

    Returns
    -------
    tuple
        ``((positions, model, kept), to_stage, refused)``: the tiles put on the stage model and the links refused.
    """

    def candidates(current: Solution) -> Iterator[tuple[Pair, Callable[[], Ruling]]]:
        positions, model, kept = current
        scatter = stage_scatter(positions, model, sorted({t for p in kept for t in (p.a, p.b)}), max_shift_px)
        for link, links in lone_kept_links(current):
            if link.free_direction is None:
                yield (link.a, link.b), partial(broad_ruling, (link.a, link.b), links, positions, model, scatter)

    def broad_ruling(pair: Pair, links: list[Pair], positions: Mapping[TileIndex, np.ndarray], model: StageModel,
                     scatter: np.ndarray) -> Ruling:
        side = lone_side(pair, links, positions, model)
        registration = registrations[pair]
        error = np.sqrt(honest_variance(pair_sigma(registration),
                                        offset_spread(registration.scores, registration.offset)))
        if len(side) != 1 or not unrefined(registration) or not np.any(error > scatter):
            return None
        return side, frozenset(), (f"knows {sorted(side)} less well than the stage ({np.round(error, 2)} px against "
                                   f"{np.round(scatter, 2)})")

    return refuse_one_at_a_time(tiles, solved, tile_step_px, candidates)
