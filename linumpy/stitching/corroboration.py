"""The last placements: a tile still left out placed by a weak joint peak that several of its links
corroborate, unless its own peaks disagree or a stronger overlap ties it to a tile left out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from linumpy.stitching.global_solve import Solution, TileIndex
from linumpy.stitching.joint_placement import refined_pairs, solve_with
from linumpy.stitching.pair_terms import (MAX_WEAK_SPREAD_PX, MIN_CORROBORATING_LINKS, MIN_DEPARTURE_PAIRS, OWN_PEAK_PX,
                                          STRONG_SIGNIFICANCE, WEAK_JOINT_SIGNIFICANCE, WEAK_SPREAD_SCATTER_FRACTION)
from linumpy.stitching.pairwise import PairRegistration, edge_ridge
from linumpy.stitching.tile_search import PRIOR_SLACK_PX, Placement, corroborated_placements
from linumpy.stitching.uncertainty import stage_scatter

logger = logging.getLogger(__name__)


def place_corroborated(
    tiles: Sequence[TileIndex],
    solved: Solution,
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    flattened: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
    max_shift_px: float,
    far: set[TileIndex],
    refused: set[TileIndex],
    tied: set[TileIndex],
) -> tuple[tuple, dict[tuple[TileIndex, TileIndex], PairRegistration]] | None:
    """Place the first tile left out whose weak joint peak its links corroborate and the solve accepts.

    ``solved`` is ``(positions, model, kept)`` of the last solve; the tiles whose peak lies beyond the
    stage's error (below) are added to ``far``, those whose peak :func:`_corroboration_refused` refuses
    to ``refused``, those that :func:`_tied_to_left_out` refuses (a stronger overlap with a tile left out)
    to ``tied``.

    The candidates (:func:`~linumpy.stitching.tile_search.corroborated_placements`)
    have a joint peak of significance >= :data:`~linumpy.stitching.pair_terms.WEAK_JOINT_SIGNIFICANCE` only,
    but sharp and supported by at least :data:`~linumpy.stitching.pair_terms.MIN_CORROBORATING_LINKS` of its
    links. Sharp means a spread of at most :data:`~linumpy.stitching.pair_terms.MAX_WEAK_SPREAD_PX` on each
    axis, or at most :data:`~linumpy.stitching.pair_terms.WEAK_SPREAD_SCATTER_FRACTION` of the stage scatter
    of that axis (:func:`~linumpy.stitching.uncertainty.stage_scatter`, the
    registered tiles' departure from the stage model) where that is larger:
    a peak three times narrower than the stage's own error locates the tile
    better than the stage does (``stage +-8`` conditions, where the scatter is
    4-6 px). Those links, refined below
    a pixel, with the joint peak's spread added in quadrature to each one's
    standard error (the combined links, not the pair, locate the tile: with
    the sub-pixel fit's own error, ~0.13 px, the solve's outlier test dropped
    links of right placements whose own peaks lie a pixel apart), join the
    solve as weak pairs: each is kept only on a loop
    (through the other link and the placed tiles), so the solve checks that
    the overlaps agree on the position; the tile is placed only if the solve
    keeps every pair, old and new, all of its links included. A link the solve
    drops means its overlap disagrees: the tile is searched again without it
    (:func:`_corroborated_without`), once.

    A weak peak is not taken where it puts its tile farther from its stage-model
    position than any placed tile lies from its own plus
    :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX` (the bar of a weak pair,
    :func:`~linumpy.stitching.departures.plausible`: no margin), with at least
    :data:`~linumpy.stitching.pair_terms.MIN_DEPARTURE_PAIRS` pairs kept: the window of the search (the joint search's,
    1.5 times that deviation plus 2 px) is for significant peaks, and two overlaps of a tile can agree on
    a wrong position there. ``6x6`` seed 114: (1, 2), joint significance 1.5,
    both links 11 px off in x, placed 10.0 px from its stage-model position (the
    placed tiles at most 5.7 px), 6.9 px farther from the truth than its stage
    position.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the last solve.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration.
    flattened : Mapping[TileIndex, np.ndarray]
        Each tile's flat-field-corrected projection, for the sub-pixel refinement.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    max_shift_px : float
        Half-width of the pairs' search window, pixels.
    far : set[TileIndex]
        Tiles whose weak peak lies beyond the stage's error; updated in place.
    refused : set[TileIndex]
        Tiles whose peak :func:`_corroboration_refused` refuses; updated in place.
    tied : set[TileIndex]
        Tiles :func:`_tied_to_left_out` refuses; updated in place.

    Returns
    -------
    tuple or None
        ``((positions, model, kept), refined)``, ``refined`` the links that
        placed the tile; ``None`` if no tile is placed.
    """
    positions, model, kept = solved
    placed = {t for pair in kept for t in (pair.a, pair.b)}
    if not placed:
        return None

    bound = (max(float(np.max(np.abs(positions[t] - model.position(t)))) for t in placed) + PRIOR_SLACK_PX
             if len(kept) >= MIN_DEPARTURE_PAIRS else float("inf"))

    def search(links: Mapping[tuple[TileIndex, TileIndex], PairRegistration]) -> list[Placement]:
        max_spread = np.maximum(MAX_WEAK_SPREAD_PX, WEAK_SPREAD_SCATTER_FRACTION
                                * stage_scatter(positions, model, sorted(placed), max_shift_px))
        found = corroborated_placements(links, positions, placed, model, WEAK_JOINT_SIGNIFICANCE,
                                        MIN_CORROBORATING_LINKS, max_spread)
        beyond = {p.tile for p in found
                  if np.max(np.abs(np.asarray(p.position, float) - model.position(p.tile))) > bound}
        if beyond - far:
            logger.info("weak joint peaks of %s beyond the placed tiles' deviation from the stage model plus "
                        "%.0f px (%.1f px): refused", sorted(beyond - far), PRIOR_SLACK_PX, bound)
        far.update(beyond)
        unheld = {p.tile for p in found if _corroboration_refused(p, registrations)}
        if unheld - refused:
            logger.info("weak joint peaks of %s held along edge links' ridges, no link on its own peak: refused",
                        sorted(unheld - refused))
        refused.update(unheld)
        bound_out = {p.tile for p in found if _tied_to_left_out(p, registrations, placed)}
        if bound_out - tied:
            logger.info("weak joint peaks of %s, each tile tied to a tile left out by a stronger overlap: refused",
                        sorted(bound_out - tied))
        tied.update(bound_out)
        return [p for p in found if p.tile not in beyond | unheld | bound_out]

    with threadpool_limits(limits=1, user_api="blas"):
        for placement in search(registrations):
            refined = refined_pairs(placement.offsets, placement.significance, registrations, flattened,
                               placement.spread_px)
            accepted = solve_with(tiles, kept, refined, tile_step_px, strong=False)
            if accepted is not None and len(accepted[1]) < len(refined):
                placement = _corroborated_without(placement, set(refined) - set(accepted[1]), registrations,
                                                  search)
                if placement is None:
                    continue
                refined = refined_pairs(placement.offsets, placement.significance, registrations, flattened,
                                   placement.spread_px)
                accepted = solve_with(tiles, kept, refined, tile_step_px, strong=False)
            if accepted is not None and len(accepted[1]) == len(refined):
                logger.info("tile %s placed by %d corroborating links (joint significance %.1f, spread %s px)",
                            placement.tile, len(accepted[1]), placement.significance,
                            np.round(placement.spread_px, 2).tolist())
                return accepted
    return None


def _corroboration_refused(
    placement: Placement,
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
) -> bool:
    """Whether a corroborated placement (:func:`place_corroborated`) is refused: an edge link corroborates
    it away from its own peak along its ridge and no link has its own peak there.

    An edge link (:func:`~linumpy.stitching.pairwise.edge_ridge` at its own peak) has evidence above
    :data:`~linumpy.stitching.tile_search.MIN_LINK_EVIDENCE` all along its ridge: it corroborates the other
    links across its ridge, anywhere along it. Where a link has its own peak at the placement (within
    :data:`~linumpy.stitching.pair_terms.OWN_PEAK_PX` on each axis), that peak locates the tile along the ridge; where
    none has, the joint peak is the sum of the ridge with the flanks of the other links' evidence, and no overlap says
    the tile lies there. ``8x8 harsh`` seed 140 (session stitch52): (2, 0) placed by the edge link
    (1, 0)-(2, 0), own significance 0.66, 17.5 px along its ridge from its own peak, and (2, 0)-(3, 0),
    own 0.82, 16.2 px from its own peak: 9.58 px from the truth, 7.56 px farther than its stage position.
    (Counting an edge link only near its own peak, whatever the other links, refused ``6x6`` seed 64's
    (4, 0), its edge link 16.5 px along its ridge, its other link on its own peak: 0.75 px off, 2.54 px on
    the stage.)
    """
    off_ridge, on_own_peak = False, False
    for pair, offset in placement.offsets.items():
        registration = registrations[pair]
        found = edge_ridge(registration.scores, registration.offset)
        apart = np.subtract(offset, registration.offset)
        on_own_peak |= float(np.max(np.abs(apart))) <= OWN_PEAK_PX
        off_ridge |= found is not None and abs(float(np.dot(apart, found[0]))) > OWN_PEAK_PX
    return off_ridge and not on_own_peak


def _tied_to_left_out(
    placement: Placement,
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    placed: set[TileIndex],
) -> bool:
    """Whether a corroborated placement (:func:`place_corroborated`) is refused: its tile has an overlap with a
    tile left out that is strong on its own (:data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE`) and stronger
    than the joint peak.

    That overlap ties the two tiles together more firmly than the weak peak places either; the peak is read
    on the tile's links to the placed tiles only, so nothing checks it against the strong overlap's side, and
    the later joint search hangs the partner on it. ``8x8 harsh`` seed 159 (session weak62): (4, 6) placed at
    joint significance 1.17 by (4, 5)-(4, 6) and (4, 6)-(5, 6), off the truth by (7.9, -6.3) and
    (-6.7, 4.1) px, while its overlap with (4, 7), left out, was 5.23 and 0.1 px off: 8.62 px from the truth,
    4.39 px farther than its stage position.
    """
    return any(placement.tile in pair and not set(pair) <= placed | {placement.tile}
               and registration.significance >= max(STRONG_SIGNIFICANCE, placement.significance)
               for pair, registration in registrations.items())


def _corroborated_without(
    placement: Placement,
    dropped: set[tuple[TileIndex, TileIndex]],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    search: Callable[[Mapping[tuple[TileIndex, TileIndex], PairRegistration]], list[Placement]],
) -> Placement | None:
    """The corroborated placement of ``placement.tile`` by its links other than ``dropped``, if any.

    The joint peak summed the evidence of every link; once the solve shows
    that one of them disagrees with the loops, the others must corroborate
    a peak on their own (``search``, the gates of :func:`place_corroborated`),
    wherever it lies: a link that the solve dropped would otherwise have lent
    its evidence to the peak that placed the tile (``8 x 8`` seed 60 tile
    (2, 5): three links, one dropped; the two others, joint significance 1.07
    and spread 1.4 px, placed it 0.30 px from the truth instead of 12.09 px
    on the stage).
    """
    kept = {pair: r for pair, r in registrations.items() if pair not in dropped}
    return next((p for p in search(kept) if p.tile == placement.tile), None)
