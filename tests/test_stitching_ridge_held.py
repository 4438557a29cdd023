"""Tiles outside the largest piece that only edge links along nearly parallel ridges hold go to the stage,
however near the stage model they lie (session worse213, issue #10)."""

from __future__ import annotations

import numpy as np

from linumpy.stitching.pair_terms import edge_variance
from linumpy.stitching.stage_pieces import ridge_held_to_stage
from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.pairwise import PairRegistration

STEP = (86.0, 86.0)
TILES = [(r, c) for r in range(4) for c in range(4)]
#: Foreign ``c185`` seed 209 slice 3: the right two columns, a piece of significant pairs, hung on the left
#: ones by three weak edge links across overlaps of a few pixels, their ridges along x within 16 degrees.
RIDGES = {((0, 1), (0, 2)): (0.28, -0.96), ((1, 1), (1, 2)): (0.08, 1.0), ((2, 1), (2, 2)): (0.14, -0.99)}
#: How far those links read off the truth along x (pixels): 12.4, 13.7 and 10.3 there.
ALONG_PX = 12.0


def _slice(ridges: dict, along_px: float = ALONG_PX) -> tuple[tuple, dict, dict]:
    """The solve of the grid's kept pairs, their registrations and the truth (the stage errs by up to 8 px).

    Every pair within the left two columns and within the right two is right (significance 10); the
    links in ``ridges`` join them, significance 0.6, ``along_px`` off along x (a ``None`` ridge: an ordinary
    peak)."""
    rng = np.random.default_rng(209)
    truth = {t: np.multiply(t, STEP) + rng.uniform(-8, 8, 2) for t in TILES}
    registrations, kept = {}, []
    for a in TILES:
        for b in ((a[0] + 1, a[1]), (a[0], a[1] + 1)):
            if b not in truth or ((a, b) not in ridges and (a[1] < 2) != (b[1] < 2)):
                continue
            offset = truth[b] - truth[a]
            if (a, b) in ridges:
                free = ridges[(a, b)]
                edge = {} if free is None else {
                    "free_direction": tuple(np.divide(free, np.linalg.norm(free))), "ridge_variance": edge_variance(20)}
                offset = offset + (0.0, along_px)
                registrations[(a, b)] = PairRegistration(tuple(offset), 0.5, 0.6)
                kept.append(PairOffset(a, b, tuple(offset), 1.0, strong=False, **edge))
            else:
                registrations[(a, b)] = PairRegistration(tuple(offset), 0.9, 10.0)
                kept.append(PairOffset(a, b, tuple(offset), 100.0))
    solved = solve_positions(TILES, kept, STEP)
    assert len(solved[2]) == len(kept)
    return solved, registrations, truth


def _off(positions: dict, truth: dict) -> dict:
    """Distance of each tile to the truth once the left columns' mean translation is removed."""
    frame = [t for t in TILES if t[1] < 2]
    translation = np.mean([np.asarray(positions[t]) - truth[t] for t in frame], axis=0)
    return {t: float(np.linalg.norm(np.asarray(positions[t]) - translation - truth[t])) for t in TILES}


def test_a_piece_held_along_parallel_ridges_goes_to_the_stage_within_the_bar():
    """209 slice 3: the right columns lie where three weak edge links along x put them, 12 px off along
    their ridges and within every deviation bar: several tiles farther from the truth than their stage
    positions (main: left there). Here they go to the stage model: none is farther than its stage position,
    the left columns stay on the truth."""
    solved, registrations, truth = _slice(RIDGES)
    right = {t for t in TILES if t[1] >= 2}
    stage = _off({t: solved[1].position(t) for t in TILES}, truth)
    before = _off(solved[0], truth)
    assert sum(before[t] > stage[t] + 0.5 for t in right) >= 2
    (positions, model, kept), to_stage, detached = ridge_held_to_stage(TILES, solved, registrations, STEP)
    assert to_stage == right and detached == set(RIDGES)
    assert {t for p in kept for t in (p.a, p.b)} == set(TILES) - right
    ours, on_stage = _off(positions, truth), _off({t: model.position(t) for t in TILES}, truth)
    assert all(ours[t] <= on_stage[t] + 0.5 for t in TILES), (ours, on_stage)
    assert max(ours[t] for t in TILES if t not in right) < 0.05


def test_a_piece_also_held_by_an_ordinary_peak_stays():
    """The same grid, its links right and (1, 1)-(1, 2) an ordinary peak: the ridges no longer hold the piece
    alone and it is left where its links put it, on the truth."""
    solved, registrations, truth = _slice({**RIDGES, ((1, 1), (1, 2)): None}, 0.0)
    assert max(_off(solved[0], truth).values()) < 0.05
    assert ridge_held_to_stage(TILES, solved, registrations, STEP) == (solved, set(), set())
