"""Which pieces the joint searches hung on weak links are searched again against the trusted tiles
(the search itself: :mod:`linumpy.stitching.reanchor`), and the links that anchor a piece."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from linumpy.stitching.global_solve import PairOffset, Solution, StageModel, TileIndex, solve_positions
from linumpy.stitching.joint_placement import refined_pairs, solve_with
from linumpy.stitching.pair_terms import JOINT_SIGNIFICANCE, MIN_CORROBORATING_LINKS, OWN_PEAK_PX, STRONG_SIGNIFICANCE
from linumpy.stitching.pairwise import PairRegistration
from linumpy.stitching.reanchor import ANCHOR_SIGNIFICANCE, moved, pieces, research_piece
from linumpy.stitching.tile_search import Placement

logger = logging.getLogger(__name__)


def reanchor(
    tiles: Sequence[TileIndex],
    positions: dict[TileIndex, np.ndarray],
    model: StageModel,
    kept: list[PairOffset],
    anchoring: set[tuple[TileIndex, TileIndex]],
    contested: set[tuple[TileIndex, TileIndex]],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
    flattened: Mapping[TileIndex, np.ndarray],
    tile_step_px: Sequence[float],
) -> tuple[dict[TileIndex, np.ndarray], StageModel, list[PairOffset], dict]:
    """Search again the pieces the joint searches hung on weak links, all tiles placed (:mod:`reanchor`).

    ``anchoring`` are the pairs kept before the joint search; a later pair
    joins two tiles into one piece if its own significance reaches
    :data:`~linumpy.stitching.reanchor.ANCHOR_SIGNIFICANCE`; a ``contested``
    pair (:func:`~linumpy.stitching.link_conflicts.contested_links`) never
    does, nor is it re-snapped when its piece moves. The largest piece is
    trusted; every other is searched against the trusted tiles.
    Where its joint peak is significant (:data:`~linumpy.stitching.pair_terms.JOINT_SIGNIFICANCE`) the
    piece becomes trusted: as it is if the peak is where it lies, else moved
    there, its links to the other tiles replaced by the re-snapped, refined
    ones, each with the joint peak's spread in quadrature in its standard
    error (the placement, not the pair, locates it), if the solve keeps
    every pair (:func:`~linumpy.stitching.joint_placement.solve_with`) and no tile loses its registration.
    Repeated until no piece changes.

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
    anchoring : set[tuple[TileIndex, TileIndex]]
        The pairs kept before the joint search.
    contested : set[tuple[TileIndex, TileIndex]]
        The contested pairs, which never join a piece.
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration.
    flattened : Mapping[TileIndex, np.ndarray]
        Each tile's flat-field-corrected projection, for the sub-pixel refinement.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``(positions, model, kept, relinked)``, ``relinked`` the refined links
        of the pieces moved.
    """
    relinked: dict[tuple[TileIndex, TileIndex], PairRegistration] = {}
    placed = {t for pair in kept for t in (pair.a, pair.b)}
    trusted, *untrusted = pieces(placed, anchoring_links(kept, anchoring, contested, registrations)) or [[]]
    trusted = set(trusted)
    changed = True
    while changed:
        changed = False
        for piece in [piece for piece in untrusted if not trusted & set(piece)]:
            with threadpool_limits(limits=1, user_api="blas"):
                placement = research_piece(piece, registrations, positions, trusted, model)
                if placement is None or placement.significance < JOINT_SIGNIFICANCE:
                    if placement is not None and moved(placement, positions) and (
                            unheld := _without_contested(tiles, kept, piece, contested, tile_step_px)) is not None:
                        logger.info("piece %s held by contested links only, not where all its links point "
                                    "(joint significance %.1f): its links dropped", piece, placement.significance)
                        (positions, model, kept), placed = unheld, placed - set(piece)
                        changed = True
                    continue
                if not moved(placement, positions):
                    trusted |= set(piece)
                    changed = True
                    continue
                # A contested link that still agrees gives way to the links that placed the piece.
                links = {pair: offset for pair, offset in placement.offsets.items() if pair not in contested}
                if len(links) < MIN_CORROBORATING_LINKS and placement.significance < STRONG_SIGNIFICANCE:
                    continue  # one link moves a piece only as the only link between tiles may: strong
                if (direct := _direct_pairs_overruled(piece, placement, links, positions, kept, registrations)):
                    logger.info("piece %s not moved off its direct pairs %s (own significance >= %.1f) by a "
                                "joint peak of significance %.1f that fewer than %d of its links have their own "
                                "peak at", piece, direct, ANCHOR_SIGNIFICANCE, placement.significance,
                                MIN_CORROBORATING_LINKS)
                    continue
                refined = refined_pairs(links, placement.significance, registrations, flattened, placement.spread_px)
            inside = set(piece)
            accepted = solve_with(tiles, [p for p in kept if (p.a in inside) == (p.b in inside)], refined,
                                   tile_step_px)
            if accepted is not None and placed <= {t for pair in accepted[0][2] for t in (pair.a, pair.b)}:
                logger.info("piece %s searched again once all tiles were placed: moved by %s px "
                            "(joint significance %.1f, %d links)", piece,
                            np.subtract(placement.position, np.rint(positions[piece[0]])).astype(int).tolist(),
                            placement.significance, len(accepted[1]))
                (positions, model, kept), links = accepted
                relinked.update(links)
                trusted |= inside
                changed = True
    return positions, model, kept, relinked


def _direct_pairs_overruled(
    piece: Sequence[TileIndex],
    placement: Placement,
    links: Mapping[tuple[TileIndex, TileIndex], tuple[int, int]],
    positions: Mapping[TileIndex, np.ndarray],
    kept: Sequence[PairOffset],
    registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
) -> list[tuple[TileIndex, TileIndex]]:
    """The kept direct pairs a piece search (:func:`reanchor`) would overrule without two witnesses.

    A kept pair between the piece and the other tiles that is significant on
    its own (:data:`~linumpy.stitching.reanchor.ANCHOR_SIGNIFICANCE`) and
    whose offset at the joint peak lies farther than :data:`~linumpy.stitching.pair_terms.OWN_PEAK_PX` (on
    an axis) from its own peak is overruled by the move. The joint peak sums
    the evidence maps of all the piece's ``links``, and two wrong links that
    disagree with each other can add up, between their own peaks, to a joint
    peak more significant than the one right pair: the move stands against a
    significant direct pair only if at least :data:`~linumpy.stitching.pair_terms.MIN_CORROBORATING_LINKS`
    of the ``links`` have their own peak at the placement (within
    :data:`~linumpy.stitching.pair_terms.OWN_PEAK_PX` on each axis). ``control`` seed 180 (session
    piece180): (1, 3) held 0.44 px from the truth by (0, 3)-(1, 3), own
    significance 5.07 (contested by (1, 2)-(1, 3), 5.2, 4.7 px off), moved
    4.2 px by a joint peak of significance 7.0 at the own peak of
    (1, 2)-(1, 3) only: (1, 3)-(2, 3) was snapped 3.4 px from its own peak.

    Returns
    -------
    list
        The overruled pairs; empty if the move may stand.
    """
    inside = set(piece)
    shift = np.subtract(placement.position, np.rint(positions[placement.tile]))

    def moved_offset(p: PairOffset) -> np.ndarray:
        return np.subtract(positions[p.b], positions[p.a]) + (shift if p.b in inside else -shift)

    overruled = [(p.a, p.b) for p in kept if (p.a in inside) != (p.b in inside)
                 and registrations[(p.a, p.b)].significance >= ANCHOR_SIGNIFICANCE
                 and np.max(np.abs(moved_offset(p) - registrations[(p.a, p.b)].offset)) > OWN_PEAK_PX]
    witnesses = sum(float(np.max(np.abs(np.subtract(offset, registrations[pair].offset)))) <= OWN_PEAK_PX
                    for pair, offset in links.items())
    return overruled if witnesses < MIN_CORROBORATING_LINKS else []


def _without_contested(
    tiles: Sequence[TileIndex],
    kept: list[PairOffset],
    piece: Sequence[TileIndex],
    contested: set[tuple[TileIndex, TileIndex]],
    tile_step_px: Sequence[float],
) -> Solution | None:
    """The solve without the links that hold ``piece`` to the other tiles, if all of them are ``contested``
    and the solve keeps every other pair; else ``None``.

    A piece held only by contested links whose search with all its links
    finds no significant peak where it lies is placed by nothing that was
    checked: its tiles go to the later searches and, failing those, to the
    stage model (harsh foreign seed 31, slice 4: the centre tile on a wrong
    link of significance 2.4 and a loop-closure switch chosen to agree with
    it, 6.8 px off, its stage position 3.9 px).
    """
    inside = set(piece)
    crossing = {(p.a, p.b) for p in kept if (p.a in inside) != (p.b in inside)}
    if not crossing or not crossing <= contested:
        return None
    rest = [p for p in kept if (p.a, p.b) not in crossing]
    solved = solve_positions(tiles, rest, tile_step_px)
    return solved if len(solved[2]) == len(rest) else None


def anchoring_links(kept: Sequence[PairOffset], anchoring: set[tuple[TileIndex, TileIndex]],
                     contested: set[tuple[TileIndex, TileIndex]],
                     registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
                     ) -> list[tuple[TileIndex, TileIndex]]:
    """The kept pairs that join their tiles into one piece (:func:`~linumpy.stitching.reanchor.pieces`):
    those in ``anchoring`` or at least :data:`~linumpy.stitching.reanchor.ANCHOR_SIGNIFICANCE`
    significant on their own, unless ``contested``.

    Parameters
    ----------
    kept : Sequence[PairOffset]
        The pairs the solve kept.
    anchoring : set[tuple[TileIndex, TileIndex]]
        The pairs kept before the joint search.
    contested : set[tuple[TileIndex, TileIndex]]
        The contested pairs (:func:`~linumpy.stitching.link_conflicts.contested_links`).
    registrations : Mapping[tuple[TileIndex, TileIndex], PairRegistration]
        Every neighbour pair's own registration.

    Returns
    -------
    list[tuple[TileIndex, TileIndex]]
        The ``(a, b)`` keys of those kept pairs.
    """
    return [(p.a, p.b) for p in kept if (p.a, p.b) not in contested
            and ((p.a, p.b) in anchoring or registrations[(p.a, p.b)].significance >= ANCHOR_SIGNIFICANCE)]
