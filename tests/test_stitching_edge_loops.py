"""A lone edge link (its peak on an edge's ridge, measured across it only) gets its loop back from the candidate that
contradicts it along its ridge, when the unweighted solve with that candidate, the link free along its ridge, keeps it
and every kept pair (session w10; recorded pairs of foreign c185 496 slice 4, overlap 10 %, stage +-8 px)."""

import numpy as np

from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.loose_loops import closed_loose_loops
from linumpy.stitching.pairwise import PairRegistration

STEP = (86.0, 86.0)
TILES = [(r, c) for r in range(4) for c in range(4)]
#: The true tile positions (the generator's), pixels; (1, 3) and (2, 3) are joined by no kept pair.
TRUTH = {(0, 0): (4.84, 3.03), (0, 1): (1.70, 84.20), (0, 2): (-6.08, 175.11), (0, 3): (-4.61, 260.94),
         (1, 0): (79.98, 0.57), (1, 1): (93.24, 86.36), (1, 2): (83.65, 164.97), (1, 3): (89.23, 262.09),
         (2, 0): (175.39, 1.27), (2, 1): (165.67, 81.53), (2, 2): (172.36, 164.70), (2, 3): (169.98, 253.86),
         (3, 0): (250.87, -5.62), (3, 1): (259.61, 91.56), (3, 2): (260.71, 178.88), (3, 3): (261.46, 253.75)}
PLACED = [t for t in TILES if t not in ((1, 3), (2, 3))]
#: The pairs main kept: ``(a, b, offset, weight, sub-pixel standard error)``; the wrong edge link (2, 1)-(3, 1)
#: ((-6.18, -8.07) px off, 1.3 px across its diagonal ridge) alone joins row 3 to the rest.
KEPT = [((0, 0), (1, 0), (75.09, -2.49), 235.7, 0.02), ((0, 0), (0, 1), (-3.08, 81.12), 115.3, 0.05),
        ((0, 1), (1, 1), (91.22, 2.30), 0.95, 1.0), ((0, 1), (0, 2), (-7.88, 91.06), 0.97, 1.0),
        ((0, 2), (0, 3), (1.68, 85.40), 28.4, 0.14), ((1, 0), (1, 1), (12.94, 85.19), 15.8, 0.19),
        ((1, 1), (2, 1), (72.37, -4.61), 16.8, 0.06), ((1, 1), (1, 2), (-9.72, 78.34), 9.4, 0.08),
        ((2, 0), (3, 0), (75.37, -6.90), 189.7, 0.02), ((2, 0), (2, 1), (-9.67, 80.29), 158.5, 0.03),
        ((2, 1), (3, 1), (87.75, 1.96), 15.5, 0.14), ((2, 1), (2, 2), (6.66, 83.05), 15.1, 0.09),
        ((3, 1), (3, 2), (0.99, 87.24), 57.6, 0.06), ((3, 2), (3, 3), (0.94, 74.84), 210.2, 0.03)]
EDGE = ((2, 1), (3, 1))
RIDGE = (0.7071, 0.7071)
#: The right candidate across it: significance 2.67, 0.4 px off.
RIGHT = ((2, 2), (3, 2), (87.96, 14.08), 6.5, 2.67)


def _errors(positions: dict) -> np.ndarray:
    """Each placed tile's distance to the truth once the mean translation is removed, pixels."""
    d = np.array([np.asarray(positions[t]) - TRUTH[t] for t in PLACED])
    return np.linalg.norm(d - d.mean(axis=0), axis=1)


def _recorded(ridge: bool = True) -> tuple[list[PairOffset], dict]:
    kept = [PairOffset(a, b, offset, weight, free_direction=RIDGE if ridge and (a, b) == EDGE else None,
                       ridge_variance=133.3 if ridge and (a, b) == EDGE else float("inf"))
            for a, b, offset, weight, _ in KEPT]
    registrations = {(a, b): PairRegistration(offset, 0.9, 8.0, (sigma, sigma)) for a, b, offset, _, sigma in KEPT}
    return kept, registrations


def _candidate(offset: tuple[float, float], registrations: dict) -> PairOffset:
    a, b, _, weight, significance = RIGHT
    registrations[(a, b)] = PairRegistration(offset, 0.5, significance, (0.1, 0.1))
    return PairOffset(a, b, offset, weight, strong=False)


def test_the_right_candidate_places_the_edge_links_side_along_its_ridge():
    kept, registrations = _recorded()
    candidate = _candidate(RIGHT[2], registrations)
    solved = solve_positions(TILES, kept, STEP)
    before = _errors(solved[0])
    assert before.max() > 5.0
    (positions, _, now), closing, along_ridge = closed_loose_loops(TILES, solved, [candidate], registrations, STEP)
    assert closing == along_ridge == {(RIGHT[0], RIGHT[1])}
    assert {(p.a, p.b) for p in kept} | closing == {(p.a, p.b) for p in now}
    after = _errors(positions)
    assert after.mean() < 0.6 and after.max() < 1.0
    assert np.all(after <= before + 0.1)


def test_a_candidate_off_across_the_ridge_is_not_kept():
    kept, registrations = _recorded()
    across = np.array([RIDGE[0], -RIDGE[1]])
    candidate = _candidate(tuple(np.asarray(RIGHT[2]) + 5.0 * across), registrations)
    solved = solve_positions(TILES, kept, STEP)
    (positions, _, _), closing, _ = closed_loose_loops(TILES, solved, [candidate], registrations, STEP)
    assert closing == set()
    assert np.allclose([positions[t] for t in TILES], [solved[0][t] for t in TILES])


def test_a_link_measured_in_every_direction_keeps_its_loop_open():
    kept, registrations = _recorded(ridge=False)
    candidate = _candidate(RIGHT[2], registrations)
    solved = solve_positions(TILES, kept, STEP)
    assert closed_loose_loops(TILES, solved, [candidate], registrations, STEP)[1] == set()
