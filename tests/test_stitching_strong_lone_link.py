"""A strong lone link is judged against the far-bridge window, a weak one against the search window (session
window10, issue #10: foreign ``ha`` 454 slices 2 / 4, a right link of significance 7.70 / 6.54 refused); the tiles a
strong link frees measure no window of the links they carry (session window10b: ``c185`` 464 slice 1)."""

from __future__ import annotations

import numpy as np
import pytest

from linumpy.stitching.departures import solve_plausible
from linumpy.stitching.global_solve import PairOffset, TileIndex, solve_positions
from linumpy.stitching.lone_links import (STRONG_LONE_SIGNIFICANCE, far_lone_links, far_lone_links_to_stage,
                                          far_side_unsupported, strong_lone_candidates)
from linumpy.stitching.pairwise import PairRegistration

STEP = (100.0, 100.0)
TILES = [(r, c) for r in range(3) for c in range(3)]
#: The stage's error per tile, pixels: at most 3 px on eight tiles, 8 px along y on (2, 0) (``ha``: +-6 px per
#: tile, (2, 0) 7.2-9.0 px off on 454).
STAGE_ERROR = {(0, 0): (1.0, -2.0), (0, 1): (-2.5, 1.0), (0, 2): (2.0, 2.5), (1, 0): (-1.0, 1.5),
               (1, 1): (3.0, -1.0), (1, 2): (-2.0, -2.5), (2, 0): (8.0, 1.0), (2, 1): (1.5, 2.0),
               (2, 2): (-1.5, 0.5)}
TRUTH = {t: np.array([t[0] * STEP[0], t[1] * STEP[1]]) + STAGE_ERROR[t] for t in TILES}
#: Every neighbour pair but (2, 0)-(2, 1), refused in depth on 454 (10 px off): (1, 0)-(2, 0) alone places (2, 0).
LINKS = [((r, c), (r, c + 1)) for r in range(3) for c in range(2) if (r, c) != (2, 0)] + \
        [((r, c), (r + 1, c)) for r in range(2) for c in range(3)]
LONE = ((1, 0), (2, 0))


def _pairs(lone_error: tuple[float, float]) -> list[PairOffset]:
    """The links at their true offsets, the lone one ``lone_error`` from its own."""
    return [PairOffset(a, b, tuple(TRUTH[b] - TRUTH[a] + (lone_error if (a, b) == LONE else 0.0)), 1.0)
            for a, b in LINKS]


def _registrations(pairs: list[PairOffset], lone_significance: float) -> dict[tuple[TileIndex, TileIndex],
                                                                              PairRegistration]:
    """Registrations at the pairs' offsets (no evidence maps: the lone link's side has no other scored overlap),
    significance 10 but the lone link's."""
    return {(p.a, p.b): PairRegistration(p.offset, 0.8, lone_significance if (p.a, p.b) == LONE else 10.0)
            for p in pairs}


def _error(positions, tile: TileIndex) -> float:
    """``tile``'s distance from the truth, both in the gauge of the other tiles."""
    others = [t for t in TILES if t != tile]
    gauge = np.mean([TRUTH[t] - np.asarray(positions[t]) for t in others], axis=0)
    return float(np.linalg.norm(np.asarray(positions[tile]) + gauge - TRUTH[tile]))


def test_the_search_window_alone_refuses_the_right_link():
    """The eight other tiles deviate at most ~3.5 px from the stage model in their gauge (window ~7 px); the
    right link puts (2, 0) ~8 px from it: beyond the search window, within the far-bridge window (~12.5 px)."""
    solved = solve_positions(TILES, _pairs((0.0, 0.0)), STEP)
    links = [(p.a, p.b) for p in solved[2]]
    [(pair, tiles, deviation, window)] = far_lone_links(links, *solved[:2])
    assert pair == LONE and tiles == [(2, 0)] and 7.0 < deviation and window < deviation
    assert far_lone_links(links, *solved[:2], strong={LONE}) == []


@pytest.mark.parametrize("significance", [STRONG_LONE_SIGNIFICANCE, 7.7])
def test_a_strong_right_lone_link_beyond_the_search_window_is_kept(significance):
    pairs = _pairs((0.0, 0.0))
    registrations = _registrations(pairs, significance)
    assert LONE in strong_lone_candidates([LONE], registrations)
    (positions, model, kept), dropped, _, lone = solve_plausible(TILES, pairs, STEP, registrations=registrations)
    assert not dropped and not lone and LONE in {(p.a, p.b) for p in kept}
    stage = {t: model.position(t) for t in TILES}
    assert _error(positions, (2, 0)) < 0.5 < _error(stage, (2, 0)) - 6.0  # on the truth; the stage ~8 px off
    (positions, _, kept), to_stage, refused = far_lone_links_to_stage(TILES, (positions, model, kept),
                                                                      registrations, STEP)
    assert not to_stage and not refused and _error(positions, (2, 0)) < 0.5


def test_a_weak_right_lone_link_there_is_still_refused():
    """Below :data:`STRONG_LONE_SIGNIFICANCE` the search window judges (harsh 152, ``c185`` 201, ``odd2`` 389: wrong
    links of significance 3.2-3.8 it alone refused): the same right link of significance 3.5 is refused."""
    pairs = _pairs((0.0, 0.0))
    registrations = _registrations(pairs, 3.5)
    assert far_side_unsupported(solve_positions(TILES, pairs, STEP), registrations) == (LONE, [(2, 0)])


def test_a_strong_wrong_lone_link_beyond_the_far_bridge_window_is_refused():
    """The link 12 px off along y (significance 7.7) puts (2, 0) ~20 px from its stage position, 12 px from the
    truth: beyond the far-bridge window too, refused (the first solve drops it already as an implausible departure);
    (2, 0) on the stage model (~8 px off) is nearer the truth."""
    pairs = _pairs((12.0, 0.0))
    registrations = _registrations(pairs, 7.7)
    solved = solve_positions(TILES, pairs, STEP)
    assert _error(solved[0], (2, 0)) > 11.0
    assert far_side_unsupported(solved, registrations) == (LONE, [(2, 0)])
    (_, _, kept), dropped, _, _ = solve_plausible(TILES, pairs, STEP, registrations=registrations)
    assert LONE in dropped and LONE not in {(p.a, p.b) for p in kept}


#: ``c185`` 464 slice 1's shape (session window10b): the stage erred ~9 px along y on the whole left column, whose
#: overlaps with the middle column are refused but the bottom one, (2, 0)-(2, 1); the column's lower link is strong
#: and right, its upper one, (0, 0)-(1, 0), weak and wrong ((0, 0)-(1, 0) of 464: significance 4.97, 25 px off).
COLUMN_ERROR = {**STAGE_ERROR, (0, 0): (9.0, 0.5), (1, 0): (9.5, -0.5), (2, 0): (8.5, 0.0)}
COLUMN_TRUTH = {t: np.array([t[0] * STEP[0], t[1] * STEP[1]]) + COLUMN_ERROR[t] for t in TILES}
COLUMN_LINKS = [pair for pair in LINKS + [((2, 0), (2, 1))] if pair not in {((0, 0), (0, 1)), ((1, 0), (1, 1))}]
FREEING = [((2, 0), (2, 1)), ((1, 0), (2, 0))]
WRONG = ((0, 0), (1, 0))
#: The wrong link's error: (0, 0) ~10 px from its stage position along x in the middle and right columns' gauge
#: (their search window ~6.5 px; ~12.8 px with the freed column among the tiles that measure it).
WRONG_ERROR = (9.0, -10.0)


def _column_pairs() -> list[PairOffset]:
    """The column's links at their true offsets, the wrong one ``WRONG_ERROR`` from its own."""
    return [PairOffset(a, b, tuple(COLUMN_TRUTH[b] - COLUMN_TRUTH[a] + (WRONG_ERROR if (a, b) == WRONG else 0.0)),
                       1.0) for a, b in COLUMN_LINKS]


def _column_registrations(pairs: list[PairOffset]) -> dict[tuple[TileIndex, TileIndex], PairRegistration]:
    """Significance 10 for the strong links, 4.97 for the wrong one (no evidence maps: no other overlap scores)."""
    return {(p.a, p.b): PairRegistration(p.offset, 0.8, 4.97 if (p.a, p.b) == WRONG else 10.0) for p in pairs}


def _column_error(positions, tile: TileIndex) -> float:
    """``tile``'s distance from the truth in the gauge of the middle and right columns."""
    others = [t for t in TILES if t[1] > 0]
    gauge = np.mean([COLUMN_TRUTH[t] - np.asarray(positions[t]) for t in others], axis=0)
    return float(np.linalg.norm(np.asarray(positions[tile]) + gauge - COLUMN_TRUTH[tile]))


def test_a_freed_side_does_not_widen_the_window_of_its_weak_links():
    """The strong links free the column (beyond the search window, within the far-bridge window), but the tiles they
    place measure none of the stage's error: the wrong weak link is judged against the other tiles' search window
    and named alone."""
    pairs = _column_pairs()
    solved = solve_positions(TILES, pairs, STEP)
    assert _column_error(solved[0], (0, 0)) > 12.0
    links = [(p.a, p.b) for p in solved[2]]
    strong = strong_lone_candidates(links, _column_registrations(pairs))
    assert set(FREEING) <= strong and WRONG not in strong
    [(pair, tiles, deviation, window)] = far_lone_links(links, *solved[:2], strong)
    assert pair == WRONG and tiles == [(0, 0)] and window < 7.0 < deviation


def test_a_freed_side_held_by_a_wrong_weak_link_keeps_the_stage_there():
    """The first solve drops the wrong weak link alone: the strong links place the column's two other tiles on the
    truth, (0, 0) leaves the placed tiles for the stage model (~9 px off against ~13.5 px on the wrong link)."""
    pairs = _column_pairs()
    registrations = _column_registrations(pairs)
    (positions, model, kept), dropped, _, lone = solve_plausible(TILES, pairs, STEP, registrations=registrations)
    assert dropped == {WRONG} and lone == {WRONG: {(0, 0)}}
    assert set(FREEING) <= {(p.a, p.b) for p in kept} and (0, 0) not in {t for p in kept for t in (p.a, p.b)}
    assert max(_column_error(positions, t) for t in [(1, 0), (2, 0)]) < 0.5
    assert _column_error({(0, 0): model.position((0, 0)), **positions}, (0, 0)) < 10.0
    (_, _, kept), to_stage, refused = far_lone_links_to_stage(TILES, solve_positions(TILES, pairs, STEP),
                                                              registrations, STEP)
    assert to_stage == {(0, 0)} and refused == {WRONG}
