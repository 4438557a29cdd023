"""Estimate every tile's position from the 2D projections of a mosaic grid.

1. The flat field (vignetting) shared by the tiles is fitted to the
   differences of their overlaps (:mod:`linumpy.stitching.flatfield`) and
   divided out.
2. Neighbouring tiles (right and down) are registered pairwise
   (:mod:`linumpy.stitching.pairwise`) within ``max_shift_px`` of the stage
   offset.
3. A pair is a candidate when its peak stands out of the NCC at wrong offsets
   (significance >= :data:`~linumpy.stitching.pair_terms.MIN_SIGNIFICANCE`), its peak not on the border of
   its scored window and, when the grid's reader is given, below
   :data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE` repeated by the depth ranges of its overlap
   strips (:mod:`linumpy.stitching.depth_check`); one refused so whose most significant range is strong takes that
   range's peak instead (:func:`~linumpy.stitching.depth_check.strong_range_peak`), one whose two most significant
   ranges are confident and near its peak keeps it (:func:`~linumpy.stitching.depth_check.corroborated_in_depth`).
   Candidates go to the global
   least-squares solve (:mod:`linumpy.stitching.global_solve`), which drops
   those inconsistent with the others (loop residuals) and those that are the
   only link between two groups of tiles without being clearly significant
   (>= :data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE`): such a pair cannot be checked; and a
   kept pair on no loop departing from the stage model far more than every
   other (:func:`~linumpy.stitching.departures.implausible_departure`), a wrong peak however significant,
   unless the tiles it alone places stay within the joint search's window
   (:func:`~linumpy.stitching.departures._bridged_within_window`); and a kept pair on no loop placing the
   tiles it alone joins beyond that window where their other overlaps do not
   support it (:func:`~linumpy.stitching.lone_links.far_side_unsupported`), which then leaves every search
   (:func:`~linumpy.stitching.depth_check.out_of_the_searches`). Pairs
   below :data:`~linumpy.stitching.pair_terms.CONFIDENT_SIGNIFICANCE` are used only if their offset
   departs from the stage model no more than the confident pairs' do, and a
   confident pair the first solve did not keep only if it departs no farther
   than :func:`~linumpy.stitching.departures.implausible_departure` allows
   (:func:`~linumpy.stitching.departures.unchecked_far_pairs`); one the solve dropped replaces a kept
   weak pair when their loop clearly blames the kept one
   (:func:`~linumpy.stitching.refusals.swap_dropped_weak`). A tile whose kept links are all edge links
   the solve puts beyond half their ridge from their own peaks loses them
   (:func:`~linumpy.stitching.ridges.tiles_beyond_edge_ridges`). Before that solve, a weak pair that alone places an
   edge link's tiles along its ridge (no loop checks it there) while the solve puts that edge link beyond its ridge
   is refused (:func:`~linumpy.stitching.ridge_bridges.weak_without_ridge_contradicted_bridges`).
4. Only the largest connected group of tiles is placed by its pairs.
5. The tiles left out are placed one at a time by the joint evidence of all
   their pairs with placed neighbours (:mod:`linumpy.stitching.tile_search`)
   when it is significant (>= :data:`~linumpy.stitching.pair_terms.JOINT_SIGNIFICANCE`) and, if one link
   alone holds it, that link departs from the stage model no more than the
   confident pairs do (a link below strong that was never a candidate is
   checked in depth at its joint peak first, :func:`_joint_links_in_depth`);
   and all positions are solved again, a pair the solve
   dropped taking the place of the one kept pair it alone checks when it is
   clearly more significant on its own
   (:func:`~linumpy.stitching.link_conflicts.swap_clearly_weaker`); then groups of
   tiles registered among themselves but not to the placed tiles, each as
   one rigid piece (grown by the plausible weak pairs that join it), alike;
   then clusters
   of neighbouring tiles left out, by one search over all their positions
   (:mod:`linumpy.stitching.cluster_search`), each tile placed only where
   its own peak is significant. Once all are placed, each piece that these
   searches hung on weak links is searched again against the trusted tiles
   with all its links at once (:mod:`linumpy.stitching.reanchor`). Then
   the least certain weak link of each loop that does not close is dropped
   (:mod:`linumpy.stitching.link_conflicts`), and a searched link left
   holding a piece whose other pairs were dropped counts as weak
   (:func:`~linumpy.stitching.refusals.orphaned_searches`). Last, a tile still left out is
   placed by a weak joint peak (>= :data:`~linumpy.stitching.pair_terms.WEAK_JOINT_SIGNIFICANCE`) if several
   of its links corroborate it, the peak is sharp, it departs from the stage
   model no farther than the placed tiles do plus 2 px, no stronger overlap
   ties the tile to a tile left out (:func:`~linumpy.stitching.corroboration._tied_to_left_out`) and the solve keeps
   those links on their loops; after each such placement the joint search runs
   again from the tile placed. Once every search has run, a kept link that a search left at a whole pixel where its
   sub-pixel fit leaves its box is settled from its evidence as its own registration's peak and the positions solved
   again with the same links (:func:`~linumpy.stitching.settle.settle_kept_searches`). An edge link that departs
   from the stage along its ridge beyond what the stage errs keeps its evidence across the ridge only
   (:func:`~linumpy.stitching.ridges.unmeasured_ridges`); one on no loop that the solve then puts beyond half its
   ridge from its own peak along it is refused and the side it alone holds put on the stage model
   (:func:`~linumpy.stitching.ridge_reach.beyond_reach_edge_links_to_stage`). Last, a piece of tiles that
   only weak links
   (own significance below :data:`~linumpy.stitching.pair_terms.CONFIDENT_SIGNIFICANCE`) join to the
   largest piece, lying farther than :data:`~linumpy.stitching.pair_terms.WEAK_PIECE_DEVIATION_PX` from the
   stage model and than the largest piece's tiles do plus 2 px, where its links prefer that placement to the stage's by
   less than :data:`~linumpy.stitching.pair_terms.FAR_PIECE_MARGIN`, goes back to the stage model
   (:func:`~linumpy.stitching.stage_pieces.weak_pieces_to_stage`), as does one lying nearer whose links prefer the
   stage's placement by :data:`~linumpy.stitching.pair_terms.WEAK_PIECE_MARGIN`; and a kept pair on no loop that
   places tiles it alone joins beyond the joint search's window of the other tiles, its side's other overlaps not
   preferring that placement to the stage's, is refused and its side put on the stage model
   (:func:`~linumpy.stitching.lone_links.far_lone_links_to_stage`); tiles outside the largest piece that two or more
   edge links along nearly parallel ridges alone hold go to the stage model, wherever they lie
   (:func:`~linumpy.stitching.stage_pieces.ridge_held_to_stage`); a kept edge link on no loop keeps only its evidence
   across its ridge, its side on the stage model along it, unless the side's other overlaps prefer the link's
   placement along the ridge (:func:`~linumpy.stitching.lone_links.lone_edge_links_across_only`); a kept link on no
   loop that two or more candidates not kept contradict (it separates their tiles; the most contradicted, ties the
   least significant; a candidate whose contradiction the kept pairs absorb once solved with it does not vote) is
   refused when the solve without it keeps two or more candidates joining its two blocks
   (:func:`~linumpy.stitching.outvoted.outvoted_lone_links`); a kept link on no loop, not an edge link, that a search
   placed off its own peak is refused and its side put on the stage model, unless the search's peak is strong and
   its own weaker (:func:`~linumpy.stitching.off_peak.off_peak_lone_links_to_stage`); a candidate not kept that
   contradicts the solve across a kept link on no loop whose sub-pixel fit kept its 1 px placeholder error (a narrow
   overlap) is kept when the solve with it keeps it and every kept pair, and so is one across a lone edge link, that
   link's term along its ridge freed, the solve unweighted
   (:func:`~linumpy.stitching.loose_loops.closed_loose_loops`).
6. A tile linked by no accepted pair, or placed farther from the stage model
   than ``max_shift_px``, keeps its position on the stage model fitted to the
   accepted pairs: the estimate is never a guess.
   A piece placed through a loop of kept pairs that does not close, no pair clearly the one that erred, and
   departing from the stage model farther than every other placed tile goes onto its stage-model mean
   (:func:`~linumpy.stitching.tile_records.far_open_loop_pieces_to_stage`).
7. Such tiles are moved by the stage residual (backlash, drift) the
   registered tiles predict for them, on an axis only where leave-one-out
   over the registered tiles validates the prediction
   (:mod:`linumpy.stitching.stage_residuals`).
   Then a piece of such tiles that strong pairs join, its loops closed, is
   placed as one at its tiles' stage-model mean (:func:`~linumpy.stitching.stage_pieces.place_rigid_pieces`);
   pieces that weak pairs on a loop join are judged as one first
   (:func:`~linumpy.stitching.stage_pieces.loop_joined_pieces`).
8. Each tile's honest standard error (the solve's covariance under the pairs'
   errors and peak spreads, :mod:`linumpy.stitching.uncertainty`) and whether
   it hangs on weak links only are recorded; no tile moves for them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from linumpy.parallel import ordered_map
from linumpy.stitching.corroboration import place_corroborated
from linumpy.stitching.departures import plausible, solve_plausible, unchecked_far_pairs
from linumpy.stitching.depth_check import (DEPTH_AGREEMENT_PX, DepthCheck, StripReader, confirmed_significance,
                                          corroborated_in_depth, depth_checks, judged_disagreement,
                                          out_of_the_searches,
                                          refused_by_a_margin, refused_in_depth, strong_range_peak)
from linumpy.stitching.flatfield import estimate_flat_field
from linumpy.stitching.global_solve import PairOffset, TileIndex, solve_positions
from linumpy.stitching.joint_placement import (drop_small_group, joint_search, late_joint_search, place_clusters,
                                               place_group, strong_seed)
from linumpy.stitching.link_conflicts import (closed_by_switches, contested_links, drop_broken_loop_links,
                                              swap_clearly_weaker)
from linumpy.stitching.lone_links import (broad_lone_links_to_stage, far_lone_links_to_stage,
                                         lone_edge_links_across_only, unrefined)
from linumpy.stitching.loops import Switch, switch_conflicting_peaks
from linumpy.stitching.options import DEFAULT_MAX_SHIFT_PX
from linumpy.stitching.loose_loops import closed_loose_loops
from linumpy.stitching.off_peak import off_peak_lone_links_to_stage
from linumpy.stitching.outvoted import outvoted_lone_links
from linumpy.stitching.pair_terms import (CONFIDENT_SIGNIFICANCE, FAR_PIECE_MARGIN, JOINT_SIGNIFICANCE,
                                          MIN_SIGNIFICANCE, STRONG_SIGNIFICANCE, WEAK_JOINT_SIGNIFICANCE,
                                          WEAK_PIECE_DEVIATION_PX, WEAK_PIECE_MARGIN, link_variance,
                                          neighbour_pairs, nominal_offset, pair_offset, pair_sigma, pair_status)
from linumpy.stitching.pairwise import (PairRegistration, edge_ridge, narrow_joint_offset, offset_spread,
                                        offset_unlocated, refine_subpixel, register_pair)
from linumpy.stitching.reanchor import ANCHOR_SIGNIFICANCE, pieces
from linumpy.stitching.reanchor_pieces import anchoring_links, reanchor
from linumpy.stitching.refusals import (drop_broken_placements, drop_implausible, links_costing_kept, orphaned_searches,
                                        swap_dropped_weak)
from linumpy.stitching.ridge_bridges import weak_without_ridge_contradicted_bridges
from linumpy.stitching.ridge_reach import beyond_reach_edge_links_to_stage
from linumpy.stitching.ridges import tiles_beyond_edge_ridges, unmeasured_ridges
from linumpy.stitching.settle import settle_kept_searches
from linumpy.stitching.stage_pieces import (correct_stage_residuals, pieces_joined_to_main, place_rigid_pieces,
                                            ridge_held_to_stage, rigid_piece_links, weak_pieces_to_stage)
from linumpy.stitching.tile_records import build_tile_records, far_open_loop_pieces_to_stage, open_loop_tiles
from linumpy.stitching.transform import (BEYOND_REACH_EDGE_LINK_REFUSED, BROAD_LONE_LINK_REFUSED, DEPTH_PEAK_REFUSED,
                                         FAR_BRIDGE_KEPT, FAR_LONE_LINK_REFUSED, FAR_LONE_LINK_REFUSED_FIRST,
                                         EDGE_LOOP_CLOSED, LONE_EDGE_LINK_ACROSS_ONLY, LOOSE_LOOP_CLOSED,
                                         OFF_PEAK_LINK_REFUSED, OPEN_LOOP_PIECE_TO_STAGE, OUTVOTED_LINK_REFUSED,
                                         PIECE_JOINED_TO_MAIN, REFUSED_JOIN_CHECK, RIDGE_CONTRADICTED_REFUSED,
                                         RIGID_PIECE_KEPT, RIGID_PIECES_JOINED, STRONG_SURVIVOR_KEPT, PairRecord,
                                         TileTransform)
from linumpy.stitching.uncertainty import stage_scatter, tile_sigmas

#: The public API, with the thresholds the steps above name (defined in :mod:`linumpy.stitching.pair_terms`).
__all__ = ["CONFIDENT_SIGNIFICANCE", "FAR_PIECE_MARGIN", "JOINT_SIGNIFICANCE", "MIN_SIGNIFICANCE",
           "STRONG_SIGNIFICANCE", "WEAK_JOINT_SIGNIFICANCE", "WEAK_PIECE_DEVIATION_PX", "WEAK_PIECE_MARGIN",
           "estimate_transform", "pair_confidence", "refused_unfit", "register_neighbours"]

logger = logging.getLogger(__name__)


def pair_confidence(significance: float) -> float:
    """Map a significance to [0, 1]: 0.5 at :data:`~linumpy.stitching.pair_terms.CONFIDENT_SIGNIFICANCE`, 1 at twice
    it.

    Parameters
    ----------
    significance : float
        A pair's significance (robust z-score of its NCC peak).

    Returns
    -------
    float
        ``significance / (2 CONFIDENT_SIGNIFICANCE)`` clipped to [0, 1].
    """
    return float(np.clip(significance / (2 * CONFIDENT_SIGNIFICANCE), 0.0, 1.0))


def _refused_on_border(registration: PairRegistration) -> PairRegistration:
    """``registration`` without evidence (significance 0: no candidate of its own) when its peak lies on the
    border of its scored window (``border_peak``): no local maximum, so the match may peak anywhere beyond the
    window. On the simulator matrix all 44 such peaks were 12-38 px off; on the foreign 10 % overlaps the two
    strong ones, between tiles that do not overlap, 4.6 and 17.3 px (c185 215 slice 4: 7 tiles worse than the
    stage kept, 1 refused; session edgepeak, coordinator stop 60). Its map still serves the joint searches."""
    return replace(registration, significance=0.0) if registration.border_peak else registration


def refused_unfit(registration: PairRegistration) -> PairRegistration:
    """A strong own peak (:data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE`, never depth-checked) that the
    sub-pixel fit did not refine (:func:`~linumpy.stitching.lone_links.unrefined`: a whole-pixel offset, standard
    error 1 px: the fit left its box, the match's optimum elsewhere, or could not run) refused as a pair refused in
    depth is: significance 0, its maps out of the searches
    (:func:`~linumpy.stitching.depth_check.out_of_the_searches`), flagged ``unfit_peak``.

    Foreign c185 470 (overlap 10 %, stage +-8 px), the 84 pairs of own significance >= 2: two such peaks, both fits
    leaving their box: slice 2's (2, 3)-(3, 3) (3.47, 14.8 px off on a 1 px true overlap, its ranges repeating the
    structure) and slice 3's (0, 3)-(1, 3) (4.46, 1.3 px off). Kept, the first's peak placed (2, 3) 17.1 px off by the
    joint search; refused, on the stage model (6.9 px); the narrow slivers whose fit keeps 1 px at a refined
    offset (0.3 px off) are not such peaks (session sliver10).

    Examples
    --------
    >>> refused = refused_unfit(PairRegistration((96.0, -3.0), 0.8, 3.5, scores=("map",)))
    >>> refused.significance, refused.scores, refused.unfit_peak
    (0.0, (), True)
    >>> refused_unfit(PairRegistration((96.0, -3.0), 0.8, 2.5)).significance
    2.5
    """
    if registration.significance < STRONG_SIGNIFICANCE or not unrefined(registration):
        return registration
    return out_of_the_searches(replace(registration, significance=0.0, unfit_peak=True))


def neighbour_flat_field(projections: Mapping[TileIndex, np.ndarray], tile_step_px: Sequence[float]) -> np.ndarray:
    """The flat field shared by the tiles, fitted to the neighbour overlaps at the stage's offsets
    (:func:`~linumpy.stitching.flatfield.estimate_flat_field`)."""
    pairs = neighbour_pairs(sorted(projections))
    return estimate_flat_field(projections, [
        (a, b, tuple(int(round(v)) for v in nominal_offset((b[0] - a[0], b[1] - a[1]), tile_step_px)))
        for a, b in pairs])


def register_neighbours(
    projections: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
    max_shift_px: float = DEFAULT_MAX_SHIFT_PX,
    progress: bool = False,
    workers: int | None = None,
    flat: np.ndarray | None = None,
) -> tuple[dict[TileIndex, np.ndarray], dict[tuple[TileIndex, TileIndex], PairRegistration]]:
    """Flat-field the projections and register every tile with its right and down neighbours.

    Parameters are those of :func:`estimate_transform`. Returns the
    flat-fielded projections and ``(a, b) -> PairRegistration`` (with the
    evidence maps) of every neighbour pair.

    Parameters
    ----------
    projections : Mapping[TileIndex, np.ndarray]
        ``(row, col) -> 2D array`` projection of every present tile, all of the same shape.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    max_shift_px : float
        Largest correction of the nominal offset searched for a pair, pixels.
    progress : bool
        Show a progress bar.
    workers : int or None
        Threads registering the pairs (default: :func:`linumpy.parallel.default_workers`).
    flat : np.ndarray or None
        The flat field shared by the tiles, when known (default: :func:`neighbour_flat_field`).

    Returns
    -------
    flattened : dict[TileIndex, np.ndarray]
        Each tile's flat-fielded projection.
    registrations : dict[tuple[TileIndex, TileIndex], PairRegistration]
        Each neighbour pair's registration, with its evidence maps.
    """
    tiles = sorted(projections)
    pairs = neighbour_pairs(tiles)
    offsets = {(a, b): nominal_offset((b[0] - a[0], b[1] - a[1]), tile_step_px) for a, b in pairs}
    # The registrations multiply small matrices: BLAS threads only add overhead.
    with threadpool_limits(limits=1, user_api="blas"):
        flat = neighbour_flat_field(projections, tile_step_px) if flat is None else flat
        flattened = {t: np.asarray(projections[t], np.float64) / flat for t in tiles}
        registered = ordered_map(
            lambda pair: register_pair(flattened[pair[0]], flattened[pair[1]], offsets[pair], max_shift_px),
            pairs, workers)
        registrations = dict(zip(pairs, tqdm(registered, total=len(pairs), desc="register pairs",
                                             disable=not progress)))
    return flattened, registrations


def _confirmed_significances(checks: Mapping[tuple[TileIndex, TileIndex], DepthCheck],
                              ) -> dict[tuple[TileIndex, TileIndex], float]:
    """The pairs of ``checks`` their most significant range spared, with its significance
    (:func:`~linumpy.stitching.depth_check.confirmed_significance`)."""
    spared = {pair: confirmed_significance(check) for pair, check in checks.items()}
    return {pair: significance for pair, significance in spared.items() if np.isfinite(significance)}


def _joint_links_in_depth(
    joint: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    in_depth: dict[tuple[TileIndex, TileIndex], float],
    read: StripReader,
    flat: np.ndarray,
    tile_step_px: Sequence[float],
    max_shift_px: float,
    confirmed: dict[tuple[TileIndex, TileIndex], float] | None = None,
) -> tuple[dict, dict, set[tuple[TileIndex, TileIndex]]]:
    """The joint search's links that were never candidates (their own peak a border peak, or below
    :data:`~linumpy.stitching.pair_terms.MIN_SIGNIFICANCE`: not checked in depth), checked at the joint offset; those
    whose ranges do not repeat it leave the joint links and every later search.

    Returns the joint links kept, the registrations (the refused ones without their maps,
    :func:`~linumpy.stitching.depth_check.out_of_the_searches`) and the pairs refused; ``in_depth`` gains the
    disagreements measured, ``confirmed`` (when given) the significance of the range that spared a link
    (:func:`~linumpy.stitching.depth_check.confirmed_significance`).
    """
    unchecked = {pair: replace(r, border_peak=False) for pair, r in joint.items()
                 if registrations[pair].border_peak or registrations[pair].significance < MIN_SIGNIFICANCE}
    measured = depth_checks(unchecked, read, flat, tile_step_px, max_shift_px)
    in_depth.update({pair: check.disagreement for pair, check in measured.items()})
    if confirmed is not None:
        confirmed.update(_confirmed_significances(measured))
    refused = {pair for pair, check in measured.items() if judged_disagreement(check) > DEPTH_AGREEMENT_PX}
    if refused:
        logger.info("joint links %s: their peak not repeated on the depth ranges of their overlap, refused",
                    sorted(refused))
    return ({pair: r for pair, r in joint.items() if pair not in refused},
            {pair: out_of_the_searches(r) if pair in refused else r for pair, r in registrations.items()}, refused)


def _range_peaks(checks: Mapping[tuple[TileIndex, TileIndex], DepthCheck],
                 refused: set[tuple[TileIndex, TileIndex]]) -> dict[tuple[TileIndex, TileIndex], PairRegistration]:
    """The pairs ``refused`` in depth that take their strong depth range's peak
    (:func:`~linumpy.stitching.depth_check.strong_range_peak`), with it; a range's peak on the border of its scored
    window or not refined by the sub-pixel fit is not taken, as a pair's own is refused (:func:`_refused_on_border`,
    :func:`refused_unfit`)."""
    ranged = {}
    for pair in sorted(refused):
        found = strong_range_peak(checks[pair])
        if found is not None and refused_unfit(_refused_on_border(found)).significance > 0:
            ranged[pair] = found
    if ranged:
        logger.info("pairs %s refused in depth: each takes its strongest depth range's peak", sorted(ranged))
    return ranged


def _corroborated(checks: Mapping[tuple[TileIndex, TileIndex], DepthCheck],
                  refused: set[tuple[TileIndex, TileIndex]],
                  registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
                  ) -> set[tuple[TileIndex, TileIndex]]:
    """The pairs ``refused`` in depth that keep their own peak, two confident depth ranges near it
    (:func:`~linumpy.stitching.depth_check.corroborated_in_depth`)."""
    kept = {pair for pair in refused if corroborated_in_depth(checks[pair], registrations[pair])}
    if kept:
        logger.info("pairs %s refused in depth: each keeps its peak, two confident depth ranges near it", sorted(kept))
    return kept


def estimate_transform(
    projections: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
    max_shift_px: float = DEFAULT_MAX_SHIFT_PX,
    progress: bool = False,
    workers: int | None = None,
    depth_reader: StripReader | None = None,
) -> TileTransform:
    """Estimate tile positions from the 2D projection of every present tile.

    Parameters
    ----------
    projections : mapping
        ``(row, col) -> 2D array``; all of the same shape.
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step between neighbouring tiles.
    max_shift_px : float
        Largest correction of the nominal offset searched for a pair: the
        stage's uncertainty on the offset of two neighbours.
    progress : bool
        Show a progress bar.
    workers : int, optional
        Threads registering the pairs (default: :func:`linumpy.parallel.default_workers`);
        the result does not depend on it.
    depth_reader : callable, optional
        ``read(tile, (ys, xs))``, every plane of a part of a tile: the candidate pairs below strong are then
        checked on depth ranges of their overlap strips (:mod:`linumpy.stitching.depth_check`) and those
        whose ranges do not repeat their peak refused.

    Returns
    -------
    TileTransform
        Positions of all tiles in ``projections``, with per-pair and per-tile
        diagnostics.
    """
    tiles = sorted(projections)
    shapes = {projections[t].shape for t in tiles}
    if len(shapes) != 1:
        raise ValueError(f"all projections must have the same shape, got {sorted(shapes)}")
    with threadpool_limits(limits=1, user_api="blas"):
        flat = neighbour_flat_field(projections, tile_step_px)
    flattened, registrations = register_neighbours(projections, tile_step_px, max_shift_px, progress, workers, flat)
    registrations = {pair: refused_unfit(_refused_on_border(r)) for pair, r in registrations.items()}
    checks = {} if depth_reader is None else depth_checks(registrations, depth_reader, flat, tile_step_px, max_shift_px)
    in_depth = {pair: check.disagreement for pair, check in checks.items()}  # the records'
    confirmed = _confirmed_significances(checks)  # the records' too
    judged = {pair: judged_disagreement(check) for pair, check in checks.items()}
    unrefused = registrations
    registrations = {pair: refused_in_depth(r, judged.get(pair)) for pair, r in registrations.items()}
    depth_refused = {pair for pair, r in registrations.items() if pair in in_depth and r.significance == 0}
    ranged = _range_peaks(checks, depth_refused)
    registrations.update(ranged)
    depth_corroborated = _corroborated(checks, depth_refused - set(ranged), unrefused)
    registrations.update({pair: unrefused[pair] for pair in depth_corroborated})
    depth_refused -= set(ranged) | depth_corroborated
    own_refused = set(depth_refused)  # refused in depth at their own peak (a joint link's check adds others)
    judged.update({pair: 0.0 for pair in set(ranged) | depth_corroborated})
    own = registrations  # the records keep a refused pair's maps; no search reads them
    registrations = {pair: out_of_the_searches(r) if pair in depth_refused else r for pair, r in own.items()}
    # refused by a margin: a candidate again that only a loop keeps (its record the refusal's where none does)
    margin = refused_by_a_margin(unrefused, judged)
    registrations.update({pair: out_of_the_searches(unrefused[pair]) for pair in margin})
    candidates = [pair_offset(a, b, r, r.significance >= STRONG_SIGNIFICANCE)
                  for (a, b), r in registrations.items() if r.significance >= MIN_SIGNIFICANCE]
    confident = [p for p in candidates if registrations[(p.a, p.b)].significance >= CONFIDENT_SIGNIFICANCE]
    moved: dict[tuple[TileIndex, TileIndex], PairRegistration] = {}

    def move(switch: Switch) -> PairOffset:
        (a, b), registration = switch.pair, registrations[switch.pair]
        refined, sigma = refine_subpixel(flattened[a], flattened[b],
                                         narrow_joint_offset(switch.offset, registration.scores))
        moved[switch.pair] = replace(registration, offset=refined, sigma_px=sigma,
                                     significance=switch.significance)
        return pair_offset(a, b, moved[switch.pair], False)

    with threadpool_limits(limits=1, user_api="blas"):
        confident = switch_conflicting_peaks(tiles, confident, registrations, tile_step_px, move)[0]
    (positions, model, kept), implausible, far_bridged, far_first = solve_plausible(
        tiles, confident, tile_step_px, set(moved), {**registrations, **moved})
    # a far lone link's refused peak is its map's highest: a joint search of its side would put it back there
    registrations = {pair: out_of_the_searches(r) if pair in far_first else r for pair, r in registrations.items()}
    confident = [p for p in confident if (p.a, p.b) not in implausible]
    candidates = [p for p in candidates if (p.a, p.b) not in implausible]
    far = unchecked_far_pairs(confident, kept, model)
    confident = [p for p in confident if (p.a, p.b) not in far]
    candidates = [p for p in candidates if (p.a, p.b) not in far]
    if not kept:
        positions, model, kept = strong_seed(tiles, confident, tile_step_px)
    confident_ids = {(p.a, p.b) for p in confident}
    weak = plausible([p for p in candidates if (p.a, p.b) not in confident_ids], confident, model)
    weak, ridge_refused = weak_without_ridge_contradicted_bridges(tiles, confident, weak, {**registrations, **moved},
                                                                   tile_step_px)
    if weak:
        wider = solve_positions(tiles, confident + weak, tile_step_px)
        if {(p.a, p.b) for p in kept} <= {(p.a, p.b) for p in wider[2]}:
            positions, model, kept = swap_dropped_weak(tiles, wider, weak, {**registrations, **moved},
                                                        registrations, tile_step_px)
    (positions, model, kept), beyond_ridges = tiles_beyond_edge_ridges(tiles, (positions, model, kept),
                                                                        {**registrations, **moved}, tile_step_px)
    anchoring = {(p.a, p.b) for p in kept}
    contested = contested_links(kept, [p for p in confident if (p.a, p.b) not in anchoring],
                                {pair: r.significance for pair, r in {**registrations, **moved}.items()})
    contested |= closed_by_switches(kept, set(moved), {pair: r.significance for pair, r in registrations.items()},
                                    ANCHOR_SIGNIFICANCE)
    joint, placed_by, lone_refused = joint_search(registrations, positions, model, kept, flattened)
    if depth_reader is not None:
        joint, registrations, joint_refused = _joint_links_in_depth(joint, registrations, in_depth, depth_reader, flat,
                                                                   tile_step_px, max_shift_px, confirmed)
        placed_by = {pair: tile for pair, tile in placed_by.items() if pair in joint}
        depth_refused |= joint_refused
    swapped_out: set[tuple[TileIndex, TileIndex]] = set()
    costly: set[tuple[TileIndex, TileIndex]] = set()
    unsupported: dict[tuple[TileIndex, TileIndex], TileIndex] = {}
    held: set[tuple[TileIndex, TileIndex]] = set()  # survivors of broken placements kept strong on their own
    if joint:
        joint_pairs = [pair_offset(a, b, r, True) for (a, b), r in joint.items()]
        solved, costly = links_costing_kept(tiles, kept, joint_pairs, placed_by, registrations, tile_step_px)
        kept_ids = {(p.a, p.b) for p in solved[2]}
        (positions, model, kept), swaps = swap_clearly_weaker(
            tiles, solved, [p for p in joint_pairs if (p.a, p.b) not in kept_ids | costly],
            {pair: r.significance for pair, r in registrations.items()}, tile_step_px)
        swapped_out = {blamed for _, blamed in swaps}
        (positions, model, kept), unsupported, held = drop_broken_placements(tiles, positions, model, kept,
                                                                              placed_by, registrations, tile_step_px)
    refused_groups: set[TileIndex] = set()
    while (group := place_group(tiles, positions, model, kept, candidates, registrations, flattened,
                                 tile_step_px, refused_groups)) is not None:
        (positions, model, kept), links = group
        joint.update(links)
    clustered: dict[tuple[TileIndex, TileIndex], PairRegistration] = {}
    while (cluster := place_clusters(tiles, positions, model, kept, registrations, flattened,
                                      tile_step_px)) is not None:
        (positions, model, kept), links = cluster
        clustered.update(links)
    positions, model, kept, relinked = reanchor(tiles, positions, model, kept, anchoring, contested, registrations,
                                                 flattened, tile_step_px)
    current = {**own, **moved, **joint, **clustered, **relinked}
    (positions, model, kept), unlinked, broad = drop_broken_loop_links(
        tiles, (positions, model, kept),
        {(p.a, p.b): offset_spread(current[(p.a, p.b)].scores, current[(p.a, p.b)].offset) for p in kept},
        {pair: r.significance for pair, r in registrations.items()}, ANCHOR_SIGNIFICANCE, tile_step_px)
    positions, model, kept = orphaned_searches(tiles, (positions, model, kept), set(unlinked) | set(broad),
                                                set(joint) | set(clustered) | set(relinked), registrations,
                                                tile_step_px)
    corroborated: dict[tuple[TileIndex, TileIndex], PairRegistration] = {}
    placed_before = {t for pair in kept for t in (pair.a, pair.b)}
    late: dict[tuple[TileIndex, TileIndex], PairRegistration] = {}
    far_weak: set[TileIndex] = set()
    uncorroborated: set[TileIndex] = set()
    tied: set[TileIndex] = set()
    while (weak := place_corroborated(tiles, (positions, model, kept), registrations, flattened,
                                       tile_step_px, max_shift_px, far_weak, uncorroborated, tied)) is not None:
        (positions, model, kept), links = weak
        corroborated.update(links)
        positions, model, kept, searched, refused, dropped, late_held = late_joint_search(
            tiles, (positions, model, kept), registrations, flattened, tile_step_px)
        late.update(searched)
        lone_refused |= refused
        unsupported.update(dropped)
        held |= late_held
    (positions, model, kept), settled = settle_kept_searches(
        tiles, (positions, model, kept), {**moved, **joint, **clustered, **relinked, **late, **corroborated},
        flattened, tile_step_px)
    positions, model, kept = unmeasured_ridges(tiles, (positions, model, kept), tile_step_px)
    (positions, model, kept), reach_to_stage, beyond_reach = beyond_reach_edge_links_to_stage(
        tiles, (positions, model, kept), {**current, **late, **corroborated, **settled}, tile_step_px)
    positions, model, kept = drop_implausible(tiles, positions, model, kept, tile_step_px, max_shift_px)
    positions, model, kept = drop_small_group(tiles, positions, model, kept, tile_step_px)
    (positions, model, kept), to_stage, detached = weak_pieces_to_stage(tiles, (positions, model, kept),
                                                                         registrations, tile_step_px)
    (positions, model, kept), lone_to_stage, lone_refused_links = far_lone_links_to_stage(
        tiles, (positions, model, kept), registrations, tile_step_px)
    (positions, model, kept), ridge_to_stage, ridge_detached = ridge_held_to_stage(
        tiles, (positions, model, kept), registrations, tile_step_px)
    to_stage |= ridge_to_stage
    detached |= ridge_detached
    (positions, model, kept), along_stage, across_only = lone_edge_links_across_only(
        tiles, (positions, model, kept), registrations, tile_step_px)
    final = {**current, **late, **corroborated, **settled}
    (positions, model, kept), broad_to_stage, broad_refused = broad_lone_links_to_stage(
        tiles, (positions, model, kept), final, tile_step_px, max_shift_px)
    voters = [pair_offset(p.a, p.b, moved[(p.a, p.b)], False) if (p.a, p.b) in moved else p for p in candidates]
    (positions, model, kept), outvoted, absorbed_votes = outvoted_lone_links(
        tiles, (positions, model, kept), voters, {pair: r.significance for pair, r in final.items()}, tile_step_px)
    (positions, model, kept), off_peak_to_stage, off_peak = off_peak_lone_links_to_stage(
        tiles, (positions, model, kept), registrations, tile_step_px, final)
    (positions, model, kept), loop_closing, edge_loop_closing = closed_loose_loops(
        tiles, (positions, model, kept), voters, final, tile_step_px)
    open_loop = open_loop_tiles(tiles, kept, tile_step_px,
                                 {(p.a, p.b): offset_spread(final[(p.a, p.b)].scores, final[(p.a, p.b)].offset)
                                  for p in kept})
    positions, loop_kept, open_loop_to_stage = far_open_loop_pieces_to_stage(positions, model, kept, open_loop)
    open_loop_cut = {(p.a, p.b) for p in kept} - {(p.a, p.b) for p in loop_kept}
    kept = loop_kept
    positions, residual_model = correct_stage_residuals(tiles, positions, model, kept)
    positions, rigid, rigid_joining = place_rigid_pieces(positions, *rigid_piece_links(tiles, kept, registrations),
                                                         tile_step_px)
    positions, main_joined, join_checks = pieces_joined_to_main(
        positions, kept, {pair: r for pair, r in registrations.items() if pair not in depth_refused},
        {pair: unrefused[pair] for pair in sorted(own_refused)})
    rigid += main_joined
    main_joined_ids = {(p.a, p.b) for p in main_joined}
    join_check_ids = {(p.a, p.b) for p in join_checks}
    kept_ids = {(p.a, p.b) for p in kept + rigid}
    # a weak pair not kept between tiles the kept pairs join closed a loop that contradicted it: not a bridge
    piece_of = {t: i for i, piece in enumerate(pieces(tiles, kept_ids)) for t in piece}
    candidate_ids = {(p.a, p.b): p for p in candidates}
    rigid_ids = {(p.a, p.b) for p in rigid}
    records = []
    for (a, b), r in {**final, **{pair: registrations[pair] for pair in rigid_ids},
                      **{pair: unrefused[pair] for pair in margin & kept_ids}}.items():
        if (a, b) in detached:
            status = "weak attachment, piece on the stage"
        elif (a, b) in open_loop_cut:
            status = OPEN_LOOP_PIECE_TO_STAGE
        elif (a, b) in main_joined_ids:
            status = PIECE_JOINED_TO_MAIN
        elif (a, b) in join_check_ids:
            status = REFUSED_JOIN_CHECK
        elif (a, b) in rigid_joining:
            status = RIGID_PIECES_JOINED
        elif (a, b) in rigid_ids:
            status = RIGID_PIECE_KEPT
        elif (a, b) in edge_loop_closing and (a, b) in kept_ids:
            status = EDGE_LOOP_CLOSED
        elif (a, b) in loop_closing and (a, b) in kept_ids:
            status = LOOSE_LOOP_CLOSED
        elif (a, b) in broad_refused:
            status = BROAD_LONE_LINK_REFUSED
        elif (a, b) in outvoted:
            status = OUTVOTED_LINK_REFUSED
        elif (a, b) in off_peak:
            status = OFF_PEAK_LINK_REFUSED
        elif (a, b) in beyond_reach:
            status = BEYOND_REACH_EDGE_LINK_REFUSED
        elif (a, b) in lone_refused_links:
            status = FAR_LONE_LINK_REFUSED
        elif (a, b) in far_first:
            status = FAR_LONE_LINK_REFUSED_FIRST
        elif (a, b) in across_only:
            status = LONE_EDGE_LINK_ACROSS_ONLY
        elif (a, b) in corroborated:
            status = "kept (corroborated search)" if (a, b) in kept_ids else "corroborated search, inconsistent"
        elif (a, b) in unlinked:
            status = "least certain of a broken loop"
        elif (a, b) in broad:
            status = "broad link of a broken loop"
        elif (a, b) in relinked:
            status = "kept (piece search)" if (a, b) in kept_ids else "piece search, inconsistent"
        elif (a, b) in clustered:
            status = "kept (cluster search)" if (a, b) in kept_ids else "cluster search, inconsistent"
        elif (a, b) in swapped_out and (a, b) not in kept_ids:
            status = "weaker link of a loop, swapped out"
        elif (a, b) in costly and (a, b) not in kept_ids:
            status = "joint search, costs pairs kept before"
        elif (a, b) in unsupported and (a, b) not in kept_ids:
            status = "joint search, no significant peak without its dropped pairs"
        elif (a, b) in held and (a, b) in kept_ids:
            status = STRONG_SURVIVOR_KEPT
        elif (a, b) in joint or (a, b) in late:
            status = "kept (joint search)" if (a, b) in kept_ids else "joint search, inconsistent"
        elif (a, b) in beyond_ridges and (a, b) not in kept_ids:
            status = "edge link, its tile solved beyond the ridges of all its links"
        elif (a, b) in moved:
            status = "kept (loop closure)" if (a, b) in kept_ids else "loop closure, inconsistent"
        elif (a, b) in far_bridged and (a, b) in kept_ids:
            status = FAR_BRIDGE_KEPT
        elif (a, b) in depth_refused and (a, b) not in kept_ids:
            status = DEPTH_PEAK_REFUSED
        elif (a, b) in ridge_refused and (a, b) not in kept_ids:
            status = RIDGE_CONTRADICTED_REFUSED
        else:
            status = pair_status(r, (a, b) in kept_ids, (a, b) in candidate_ids,
                                  (a, b) in candidate_ids and not candidate_ids[(a, b)].strong
                                  and piece_of[a] != piece_of[b],
                                  (a, b) in implausible, (a, b) in far)
        records.append(PairRecord(a, b, r.offset, r.ncc, (a, b) in kept_ids, significance=r.significance,
                                  sigma_px=pair_sigma(r), confidence=pair_confidence(r.significance),
                                  status=status, spread_px=offset_spread(r.scores, r.offset),
                                  border_peak=r.border_peak and r.offset == registrations[(a, b)].offset,
                                  split_peak=r.split_peak and r.offset == registrations[(a, b)].offset,
                                  unlocated_px=offset_unlocated(r.scores, r.offset),
                                  depth_disagreement_px=in_depth.get((a, b), float("nan")),
                                  depth_confirmed_significance=confirmed.get((a, b), float("nan")),
                                  settled=r.settled, unfit_peak=registrations[(a, b)].unfit_peak,
                                  absorbed_vote=(a, b) in absorbed_votes, depth_range_peak=(a, b) in ranged,
                                  depth_corroborated=(a, b) in depth_corroborated,
                                  **_edge_fields(r)))
    records = tuple(records)
    registered = sorted({t for pair in kept for t in (pair.a, pair.b)})
    far_sides = set().union(*far_first.values())
    scatter = stage_scatter(positions, model, registered, max_shift_px)
    sigmas = tile_sigmas(tiles, [(r.a, r.b, link_variance(r, max_shift_px)) for r in records if r.accepted], scatter)
    trusted = set((pieces(registered, anchoring_links(kept, anchoring, contested - set(relinked), registrations))
                   or [[]])[0])
    flagged = {
        "lone_link_refused": lone_refused,
        "far_link_refused": {t for pair in far for t in pair},
        "weak_link_swapped": {t for pair in swapped_out - kept_ids for t in pair},
        "far_bridge_kept": {t for pair, side in far_bridged.items() if pair in kept_ids for t in side},
        "far_weak_peak_refused": far_weak,
        "weak_piece_to_stage": to_stage,
        "unsupported_placement_dropped": set(unsupported.values()) | refused_groups,
        "beyond_edge_ridges": set(beyond_ridges.values()),
        "costly_link_refused": {t for pair in costly for t in pair},
        "corroboration_refused": uncorroborated,
        "far_lone_link_to_stage": lone_to_stage | (far_sides - set(registered)),
        "far_lone_link_searched": far_sides & set(registered),
        "lone_edge_link_along_stage": along_stage,
        "broad_lone_link_to_stage": broad_to_stage,
        "ridge_contradicted_link_refused": {t for pair in ridge_refused for t in pair},
        "outvoted_link_refused": {t for pair in outvoted for t in pair},
        "off_peak_link_to_stage": off_peak_to_stage,
        "beyond_reach_edge_link_to_stage": reach_to_stage,
        "tied_to_left_out": tied,
        "rigid_piece": {t for pair in rigid_ids - main_joined_ids for t in pair},
        "open_loop_to_stage": open_loop_to_stage,
        "depth_refused_on_stage": {t for pair in depth_refused for t in pair} - {t for pair in kept_ids for t in pair},
    }
    tile_records = build_tile_records(tiles, kept + rigid, {t for pair in corroborated for t in pair} - placed_before,
                                 sigmas, trusted | flagged["rigid_piece"], flagged, open_loop)
    n_stage = sum(record.source == "stage" for record in tile_records.values())
    logger.info("%d of %d neighbour pairs accepted; %d of %d tiles placed by the stage model",
                len(kept), len(records), n_stage, len(tiles))
    return TileTransform(
        tile_shape=next(iter(shapes)),
        tile_step_px=(float(tile_step_px[0]), float(tile_step_px[1])),
        positions={t: (float(p[0]), float(p[1])) for t, p in positions.items()},
        stage_model=model,
        min_significance=MIN_SIGNIFICANCE,
        pairs=records,
        tiles=tile_records,
        stage_residuals=residual_model,
    )


def _edge_fields(registration: PairRegistration) -> dict:
    """``free_direction`` and ``ridge_px`` of a pair's record (:func:`~linumpy.stitching.pairwise.edge_ridge`)."""
    edge = edge_ridge(registration.scores, registration.offset)
    return {} if edge is None else {"free_direction": edge[0], "ridge_px": edge[1]}
