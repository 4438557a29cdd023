"""Edge links (a ridge, not a peak, in their evidence map): tiles the solve puts beyond the ridges of all
their links, edge links far from the stage model along their ridge, and tiles held only along nearly
parallel ridges."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from linumpy.stitching.departures import departure, departure_vector
from linumpy.stitching.global_solve import PairOffset, Solution, StageModel, TileIndex, solve_positions
from linumpy.stitching.pair_terms import MIN_DEPARTURE_PAIRS, PARALLEL_RIDGES_DEG
from linumpy.stitching.pairwise import PairRegistration, edge_ridge
from linumpy.stitching.tile_search import PRIOR_MARGIN, PRIOR_SLACK_PX

logger = logging.getLogger(__name__)


def tiles_beyond_edge_ridges(
    tiles: Sequence[TileIndex],
    solved: Solution,
    current: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    tile_step_px: Sequence[float],
) -> tuple[Solution, dict[tuple[TileIndex, TileIndex], TileIndex]]:
    """Take out of the solve the tiles that no kept link holds on its peak: every kept link of the tile an
    edge link that the solve puts farther than half its ridge's length from its own peak along the ridge.

    An edge link locates its tiles across its ridge only (:func:`~linumpy.stitching.pair_terms.edge_variance`); two edge
    links of one tile whose ridges cross place it at the crossing whatever their peaks, and a wrong one of them moves
    the crossing along the other's ridge, beyond both ridges: the evidence of neither link is where the tile is
    put. The tile's links are dropped and the positions solved again if that solve keeps every other pair;
    the tile goes to the later searches or the stage model. An edge link solved beyond half its ridge is
    alone no sign (a peak that slid along its ridge, which the tile's other links rightly override).
    Held-out ``stage +-8 + drift`` seed 127 (session stitch49): (1, 0) held by two weak edge links with
    ridges ~75 deg apart, (1, 0)-(1, 1) right and (0, 0)-(1, 0) 18 px off at the nominal step; solved 13.44
    and 17.00 px along them from their peaks (half-ridges 4.96 and 6.21 px), the tile 15.16 px from the
    truth, 6.67 px farther than its stage position.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    current : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        The pairs' registrations as kept (switched peaks included), for their ridges.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``((positions, model, kept), dropped)``, ``dropped`` the links dropped, each with its tile
        beyond their ridges.
    """
    positions, model, kept = solved
    links = {t: [p for p in kept if t in (p.a, p.b)] for t in {t for p in kept for t in (p.a, p.b)}}
    unheld = sorted(t for t, held in links.items() if all(solved_beyond_ridge(p, positions, current) for p in held))
    dropped = {(p.a, p.b): t for t in unheld for p in links[t]}
    if not dropped:
        return solved, {}
    rest = [p for p in kept if (p.a, p.b) not in dropped]
    attempt = solve_positions(tiles, rest, tile_step_px)
    if len(attempt[2]) < len(rest):
        logger.info("tiles %s lie beyond the ridges of all their edge links, left: the solve without them drops "
                    "other pairs", unheld)
        return solved, {}
    logger.info("tiles %s lie beyond the ridges of all their edge links: their links dropped", unheld)
    return attempt, dropped


def solved_beyond_ridge(pair: PairOffset, positions: Mapping[TileIndex, np.ndarray],
                        current: Mapping[tuple[TileIndex, TileIndex], PairRegistration], reach: float = 0.5) -> bool:
    """Whether ``positions`` put the tiles of an edge link farther than ``reach`` times its ridge's length from its
    own peak along the ridge (half: the extent of its evidence there); ``False`` for a link that is not an edge link.

    Parameters
    ----------
    pair : PairOffset
        A kept link.
    positions : Mapping[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    current : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        The pairs' registrations as kept (switched peaks included), for their ridges.
    reach : float
        The departure counted as beyond, in ridge lengths.

    Returns
    -------
    bool
        Whether the solved offset departs from the link's peak along its free direction beyond ``reach`` ridges.
    """
    if pair.free_direction is None:
        return False
    registration = current[(pair.a, pair.b)]
    bound = edge_ridge(registration.scores, registration.offset)[1] * reach
    residual = positions[pair.b] - positions[pair.a] - np.asarray(pair.offset)
    return abs(float(np.dot(residual, pair.free_direction))) > bound


def unmeasured_ridges(
    tiles: Sequence[TileIndex],
    solved: Solution,
    tile_step_px: Sequence[float],
) -> Solution:
    """Take away the evidence along their ridge of the edge links that depart from the stage there beyond what it errs.

    Along an edge's ridge the overlap does not tell one offset from another and the peak tends to where the
    overlap is largest; a loop of parallel edge links does not check it (they share the bias). The departure of an
    edge link from the nominal grid along its ridge is compared with the kept isotropic links' departures (the
    stage's error, :func:`~linumpy.stitching.departures.implausible_departure`'s rule:
    :data:`~linumpy.stitching.tile_search.PRIOR_MARGIN` times the largest plus
    :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX`); beyond it the link keeps only its evidence across the ridge
    and the positions are solved again (the stage model places the tiles along it). Held-out stack matrix ``baseline``
    seed 14, slice 6: two edge links 14.6 and 16 px from the nominal row step along their ridges (the isotropic links at
    most 4 px) put a tile row ~11-15 px off; a stage that errs <= 3 px. With fewer than
    :data:`~linumpy.stitching.pair_terms.MIN_DEPARTURE_PAIRS` isotropic links the stage's error is not measured: nothing
    changes.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    Solution
        ``(positions, model, kept)`` solved again with those links' ridge variance infinite (``solved`` itself if
        none departs beyond the bound or too few isotropic links are kept).
    """
    positions, model, kept = solved
    nominal = StageModel.nominal(tile_step_px)
    isotropic = [p for p in kept if p.free_direction is None]
    if len(isotropic) < MIN_DEPARTURE_PAIRS:
        return solved
    bound = PRIOR_MARGIN * max(departure(p, nominal, across_only=False) for p in isotropic) + PRIOR_SLACK_PX

    def along(pair: PairOffset) -> float:
        return abs(float(np.dot(departure_vector(pair, nominal), pair.free_direction)))

    unmeasured = [replace(p, ridge_variance=float("inf")) if p.free_direction is not None and along(p) > bound else p
                  for p in kept]
    if all(p is q for p, q in zip(unmeasured, kept, strict=True)):
        return solved
    logger.info("%d edge links depart from the stage along their ridge beyond %.1f px: evidence across only",
                sum(p is not q for p, q in zip(unmeasured, kept, strict=True)), bound)
    return solve_positions(tiles, unmeasured, tile_step_px)


def held_along_parallel_ridges(links: Sequence[PairOffset]) -> bool:
    """Whether ``links`` are all edge links whose ridges lie within
    :data:`~linumpy.stitching.pair_terms.PARALLEL_RIDGES_DEG` of one another.

    Along an edge's ridge the overlap does not tell one offset from another
    (:func:`~linumpy.stitching.pair_terms.edge_variance`), so the evidence of such links is as high anywhere along their
    common ridge and the evidence margin over the stage (:func:`~linumpy.stitching.reanchor.evidence_over_stage`) only
    says that the piece sits on the ridges. Where they lie is set by the angle between the ridges alone: an error ``e``
    across them moves the tiles ``e / sin(angle)`` along them (foreign 192 slice 4: tile (1, 1) held by (1, 1)-(2, 1)
    and (1, 1)-(1, 2), significance 1.17 and 1.41, ridges 15.8 degrees apart, 5.0 and 1.8 px off across them: the tile
    18 px from its stage-model position along them, 12.1 px from the truth, its stage position 6.6 px; their evidence
    preferred it to the stage by 2.37 standard errors).

    Parameters
    ----------
    links : Sequence[PairOffset]
        The kept links that hold a piece to the other tiles.

    Returns
    -------
    bool
        ``True`` if there are links, all are edge links, and every two ridges are within
        :data:`~linumpy.stitching.pair_terms.PARALLEL_RIDGES_DEG`.
    """
    if not links or any(p.free_direction is None for p in links):
        return False
    directions = [np.asarray(p.free_direction, float) for p in links]
    cosine = min(abs(float(np.dot(u, v))) for u in directions for v in directions)
    return cosine >= np.cos(np.radians(PARALLEL_RIDGES_DEG))
