"""What each tile's record says of how it was placed: the open loops it is placed through and its
flags (step 8 of :mod:`linumpy.stitching.estimate`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from linumpy.stitching.global_solve import PairOffset, StageModel, TileIndex
from linumpy.stitching.link_conflicts import CULPRIT_MARGIN, honest_error, open_loops
from linumpy.stitching.reanchor import pieces
from linumpy.stitching.tile_search import PRIOR_SLACK_PX
from linumpy.stitching.transform import TileRecord

logger = logging.getLogger(__name__)


def open_loop_tiles(tiles: Sequence[TileIndex], kept: Sequence[PairOffset], tile_step_px: Sequence[float],
                     spreads: Mapping[tuple[TileIndex, TileIndex], Sequence[float]]) -> dict[TileIndex, float]:
    """The tiles placed through a loop of the final ``kept`` pairs that does not close, each with the loop's
    largest miss (pixels; :func:`~linumpy.stitching.link_conflicts.open_loops`).

    The suspects are the pairs of such loops that may have erred: those whose honest error (standard error
    and peak spread, ``spreads``, :func:`~linumpy.stitching.link_conflicts.honest_error`) is at least
    1 / :data:`~linumpy.stitching.link_conflicts.CULPRIT_MARGIN` of the least certain one's, so that none is
    clearly the culprit (:func:`~linumpy.stitching.link_conflicts.drop_broken_loop_links` drops that one, if
    not significant on its own). Without them the kept pairs join the tiles into pieces; the largest is the
    frame, and the tiles of every other one lie where the suspects put them (all the suspects' tiles if they
    cut nothing off). No tile moves: the record says so (``open_loop_px``) and the report warns
    (:func:`linumpy.qc.flags.open_loop_warnings`). Foreign ``c185`` seed 209, slice 0: suspects (0, 0)-(1, 0)
    (wrong, 4.5 px off between tiles that do not overlap) and (2, 3)-(3, 3) (right), honest errors 3.0 and
    3.3 px, the loop missing by 3.5 px; the tiles named are the seven 2.1-3.3 px off, the frame's 1.1-1.5 px.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    kept : Sequence[PairOffset]
        The final kept pairs.
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.
    spreads : Mapping[tuple[TileIndex, TileIndex], Sequence[float]]
        Each kept pair's ``(y, x)`` peak spread, pixels (:func:`~linumpy.stitching.pairwise.offset_spread`).

    Returns
    -------
    dict[TileIndex, float]
        Each tile named with the largest miss of the open loops, pixels; empty if every loop closes.
    """
    missing = open_loops(tiles, kept, tile_step_px)
    if not missing:
        return {}
    errors = {p: honest_error(p, spreads[(p.a, p.b)]) for p in kept if (p.a, p.b) in missing}
    suspects = {(p.a, p.b) for p, error in errors.items() if CULPRIT_MARGIN * error >= max(errors.values())}
    placed = {t for pair in kept for t in (pair.a, pair.b)}
    frame = set((pieces(placed, [(p.a, p.b) for p in kept if (p.a, p.b) not in suspects]) or [[]])[0])
    named = (placed - frame) or {t for pair in suspects for t in pair}
    miss = max(missing.values())
    logger.info("loop(s) of kept pairs miss by up to %.1f px, none clearly the culprit (suspects %s): %d tile(s) "
                "placed through them, left where they are", miss, sorted(suspects), len(named))
    return {t: miss for t in sorted(named)}


def far_open_loop_pieces_to_stage(
    positions: Mapping[TileIndex, np.ndarray], model: StageModel, kept: Sequence[PairOffset],
    open_loop: Mapping[TileIndex, float],
) -> tuple[dict[TileIndex, np.ndarray], list[PairOffset], set[TileIndex]]:
    """Put on the stage model the pieces an open loop places farther from it than any other tile lies.

    The tiles of :func:`open_loop_tiles` lie where the suspects of a loop that does not close put them, no pair
    clearly the one that erred: the stitcher cannot tell which placement is right. The other placed tiles (the
    frame) sample the stage's error: each departs from the stage model by its own error, after their common
    translation. A piece of the named tiles (joined by kept pairs among them) whose mean departs, after that
    translation, more than the frame's largest departure plus
    :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX` (larger axis) is placed where no stage error puts it:
    the wrong link is one of its suspects. It is translated as a whole onto its tiles' stage-model mean (its
    pairs within it keep its shape) and the kept pairs joining it to the other tiles are dropped, so that its
    tiles' standard errors include the stage scatter. A piece within that bound stays where it is (a loop's
    miss may lie elsewhere: the earlier false alarms). Foreign ``c185`` seed 238, slice 1: a corner link of own
    significance 2.5, 26 px off, and a weak one, 7 px off, held five right-shaped tiles 15-17 px (per axis) from
    their stage-model mean, the eleven others at most 6.9 px from theirs: the five 17.7 px off the truth, the
    stage 1.2-8.2 px.

    Parameters
    ----------
    positions : Mapping[TileIndex, np.ndarray]
        Each tile's ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.
    kept : Sequence[PairOffset]
        The final kept pairs.
    open_loop : Mapping[TileIndex, float]
        The tiles placed through an open loop (:func:`open_loop_tiles`).

    Returns
    -------
    tuple
        ``(positions, kept, moved)``: the positions with the far pieces on the stage model, the kept pairs
        without those joining them to the other tiles, and the tiles moved.
    """
    positions = dict(positions)
    named = set(open_loop)
    frame = sorted({t for pair in kept for t in (pair.a, pair.b)} - named)
    if not named or not frame:
        return positions, list(kept), set()
    departure = {t: np.asarray(positions[t], float) - model.position(t) for t in positions}
    common = np.mean([departure[t] for t in frame], axis=0)
    bound = max(float(np.abs(departure[t] - common).max()) for t in frame) + PRIOR_SLACK_PX
    moved: set[TileIndex] = set()
    for piece in pieces(named, [(p.a, p.b) for p in kept if p.a in named and p.b in named]):
        shift = np.mean([departure[t] for t in piece], axis=0) - common
        if np.abs(shift).max() <= bound:
            continue
        logger.info("piece %s placed through an open loop %.1f px from its stage-model mean (the other tiles "
                    "within %.1f px of theirs): on the stage model", piece, float(np.abs(shift).max()), bound)
        for tile in piece:
            positions[tile] = positions[tile] - shift
        moved |= set(piece)
    return positions, [p for p in kept if (p.a in moved) == (p.b in moved)], moved


def build_tile_records(tiles: Sequence[TileIndex], kept: Sequence[PairOffset], corroborated: set[TileIndex],
                  sigmas: Mapping[TileIndex, float], trusted: set[TileIndex],
                  flagged: Mapping[str, set[TileIndex]], open_loop: Mapping[TileIndex, float]
                  ) -> dict[TileIndex, TileRecord]:
    """Per tile: accepted pairs, its honest standard error (``sigmas``,
    :func:`~linumpy.stitching.uncertainty.tile_sigmas`), whether a corroborated weak joint
    peak placed it (:func:`~linumpy.stitching.corroboration.place_corroborated`), whether its pairs are all weak links
    (registered, but outside the ``trusted`` piece of anchoring pairs), the miss of the open loop it is
    placed through (``open_loop``, :func:`open_loop_tiles`; NaN if none), and its boolean flags:
    ``flagged`` maps a flag of :class:`~linumpy.stitching.transform.TileRecord` (each is
    described there, with the step that sets it) to the tiles it is set for.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    kept : Sequence[PairOffset]
        The accepted pairs (the rigid pieces' included).
    corroborated : set[TileIndex]
        The tiles a corroborated weak joint peak placed.
    sigmas : Mapping[TileIndex, float]
        Each tile's honest standard error, pixels.
    trusted : set[TileIndex]
        The tiles of the trusted piece of anchoring pairs (and of the rigid pieces).
    flagged : Mapping[str, set[TileIndex]]
        Each boolean flag of :class:`~linumpy.stitching.transform.TileRecord` with the tiles it is set for.
    open_loop : Mapping[TileIndex, float]
        The tiles placed through an open loop, with its miss, pixels.

    Returns
    -------
    dict[TileIndex, TileRecord]
        Each tile's record: ``source`` ``"pairs"`` if a kept pair touches it, else ``"stage"``.
    """
    counts = {t: 0 for t in tiles}
    for pair in kept:
        for tile in (pair.a, pair.b):
            counts[tile] += 1
    flags = {t: {name: t in members for name, members in flagged.items()} for t in tiles}
    return {
        t: TileRecord(source="pairs", n_pairs=counts[t], sigma_px=sigmas[t], corroborated=t in corroborated,
                      weak=t not in trusted, open_loop_px=open_loop.get(t, float("nan")), **flags[t])
        if counts[t] else TileRecord(source="stage", n_pairs=0, sigma_px=sigmas[t], **flags[t])
        for t in tiles
    }
