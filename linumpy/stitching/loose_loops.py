"""A loose lone link's loop closed by the candidate that contradicts it.

Tiles overlapping by less than :data:`~linumpy.stitching.pairwise.NARROW_OVERLAP_PX` keep their sub-pixel fit's 1 px
placeholder standard error (:func:`~linumpy.stitching.pairwise.refine_subpixel`: such a fit's residuals understate
its error), as does a fit that failed: the link knows its offset to about a pixel. Kept on no loop, nothing checks it,
and a candidate not kept that joins its two blocks, contradicting the solve beyond
:data:`~linumpy.stitching.global_solve.MAX_RESIDUAL_PX`, is left out however right: the earlier solves dropped it as
a weak pair on no loop, or refused a wider solve that dropped the loose link. Solved with the kept pairs, such a
candidate closes the loop through the loose link, and the solve spreads the misclosure by the pairs' weights, most of
it onto the loose link: where that ordinary solve (its outlier tests on) keeps the candidate and every kept pair, the
candidate is kept (session c10).

Foreign c185 489 slice 3 (overlap 10 %, stage +-8 px): (2, 3)-(3, 3), own significance 8.28, its tiles overlapping by
4 px, alone joined the top rows to the rest, 1.52 px off across its strip; the right (0, 1)-(1, 1) (1.87, 0.33 px off)
sat 2.3 px from the solve. Kept, the slice's tiles 1.030 / 1.54 -> 0.449 / 0.98 px. The wrong (2, 2)-(2, 3) (2.1 px
off, 3.1 px from the solve) joins the same blocks: solved with the kept pairs it makes the solve drop the loose link
and others, and stays out.

A lone edge link (its peak on an edge's ridge, measured across it only, :func:`edge_link`) is closed the same way,
its term along the ridge freed and the solve unweighted, as :func:`~linumpy.stitching.outvoted.absorbed` solves: the
candidate places the side along the ridge, where the link knows nothing. Foreign c185 496 slice 4 (session w10):
the wrong (2, 1)-(3, 1) (significance 4.78, (-6.18, -8.07) px off, 1.3 px across its diagonal ridge) alone joined
row 3 to the rest; the right (2, 2)-(3, 2) (2.67, 0.4 px off) sat 8.8 px from the solve, absorbed, no vote. Kept,
the slice's tiles 3.431 / 7.27 -> 1.057 / 5.78 px, none worse than the stage (two before).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from linumpy.stitching.global_solve import MAX_RESIDUAL_PX, PairOffset, Solution, TileIndex, bridges, solve_positions
from linumpy.stitching.outvoted import residual_px
from linumpy.stitching.pairwise import PLACEHOLDER_SIGMA_PX, PairRegistration
from linumpy.stitching.reanchor import Pair, pieces

logger = logging.getLogger(__name__)


def closed_loose_loops(
    tiles: Sequence[TileIndex],
    solved: Solution,
    candidates: Sequence[PairOffset],
    registrations: Mapping[Pair, PairRegistration],
    tile_step_px: Sequence[float],
) -> tuple[Solution, set[Pair], set[Pair]]:
    """Keep, one at a time, a candidate that closes the loop of a loose kept link on no loop
    (:func:`loop_closing_candidate`).

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices of all the tiles of the slice.
    solved : Solution
        ``(positions, model, kept)`` of the current solve.
    candidates : Sequence[PairOffset]
        Every candidate pair at its own peak.
    registrations : Mapping[Pair, PairRegistration]
        The current registration of every pair (a kept pair's sub-pixel standard error, a candidate's significance).
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple
        ``((positions, model, kept), closing, along_ridge)``: ``closing`` holds the candidates kept,
        ``along_ridge`` those of them that closed the loop of an edge link (:func:`edge_link`).
    """
    closing: set[Pair] = set()
    along_ridge: set[Pair] = set()
    while (found := loop_closing_candidate(tiles, solved, candidates, registrations, tile_step_px)) is not None:
        pair, solved, edge = found
        closing.add(pair)
        if edge:
            along_ridge.add(pair)
        logger.info("candidate %s-%s closes a loop through a %s on no loop, kept with every kept pair: kept",
                    *pair, "lone edge link along its ridge" if edge else "loose link")
    return solved, closing, along_ridge


def loop_closing_candidate(
    tiles: Sequence[TileIndex],
    solved: Solution,
    candidates: Sequence[PairOffset],
    registrations: Mapping[Pair, PairRegistration],
    tile_step_px: Sequence[float],
) -> tuple[Pair, Solution, bool] | None:
    """The first candidate (most significant first) that joins the two blocks of a loose kept link on no loop, lies
    beyond :data:`~linumpy.stitching.global_solve.MAX_RESIDUAL_PX` from the solve, and that the solve with it added
    (weak) keeps together with every kept pair; with that solve. Of an edge link (:func:`edge_link`), the solve frees
    the link's term along its ridge and is unweighted, the candidate strong.

    A link is loose when its sub-pixel standard error is the placeholder
    :data:`~linumpy.stitching.pairwise.PLACEHOLDER_SIGMA_PX` (:func:`loose`). The parameters are those of
    :func:`closed_loose_loops`.

    Returns
    -------
    tuple or None
        ``(candidate, (positions, model, kept), edge)``, or None when no candidate closes such a loop; ``edge`` True
        when the link was an edge link.
    """
    positions, _, kept = solved
    kept_ids = {(p.a, p.b) for p in kept}
    placed = {t for p in kept for t in (p.a, p.b)}
    order = sorted((c for c in candidates if (c.a, c.b) not in kept_ids and {c.a, c.b} <= placed
                    and residual_px(positions, c) > MAX_RESIDUAL_PX),
                   key=lambda c: -registrations[(c.a, c.b)].significance)
    for k in bridges(kept):
        edge = edge_link(kept[k])
        if not edge and not loose(registrations[(kept[k].a, kept[k].b)]):
            continue
        side = next(g for g in pieces(placed, [(p.a, p.b) for p in kept[:k] + kept[k + 1:]]) if kept[k].a in g)
        freed = [replace(p, ridge_variance=float("inf")) if j == k else p for j, p in enumerate(kept)]
        for candidate in (c for c in order if (c.a in side) != (c.b in side)):
            attempt = (solve_positions(tiles, [*freed, replace(candidate, strong=True)], tile_step_px, weighted=False)
                       if edge else solve_positions(tiles, [*kept, replace(candidate, strong=False)], tile_step_px))
            if kept_ids | {(candidate.a, candidate.b)} <= {(p.a, p.b) for p in attempt[2]}:
                return (candidate.a, candidate.b), attempt, edge
    return None


def edge_link(link: PairOffset) -> bool:
    """Whether a kept link is an edge link: its peak on an edge's ridge, its offset measured across it only
    (a free direction and a finite variance along it)."""
    return link.free_direction is not None and bool(np.isfinite(link.ridge_variance))


def loose(registration: PairRegistration) -> bool:
    """Whether a pair's sub-pixel fit kept its placeholder standard error
    (:data:`~linumpy.stitching.pairwise.PLACEHOLDER_SIGMA_PX`): a narrow overlap or a fit that did not run, the offset
    known to about a pixel.

    Examples
    --------
    >>> loose(PairRegistration((91.94, -4.65), 0.9)), loose(PairRegistration((81.76, 2.61), 0.9, sigma_px=(0.07, 0.07)))
    (True, False)
    """
    return tuple(registration.sigma_px) == PLACEHOLDER_SIGMA_PX

