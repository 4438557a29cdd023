"""A loose kept link on no loop (its sub-pixel fit's 1 px placeholder error) gets its loop back from the candidate that
contradicts it, when the solve with that candidate keeps it and every kept pair (session c10; recorded pairs of
foreign c185 489 slice 3, overlap 10 %, stage +-8 px)."""

import numpy as np

from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.loose_loops import closed_loose_loops
from linumpy.stitching.pairwise import PairRegistration

STEP = (86.0, 86.0)
TILES = [(r, c) for r in range(4) for c in range(4)]
#: The true tile positions (the generator's), pixels.
TRUTH = {(0, 0): (4.96, 1.17), (0, 1): (5.05, 85.62), (0, 2): (-0.25, 167.94), (0, 3): (6.13, 260.61),
         (1, 0): (79.35, 2.98), (1, 1): (92.72, 81.93), (1, 2): (91.50, 166.05), (1, 3): (91.42, 256.82),
         (2, 0): (178.09, -2.49), (2, 1): (165.91, 82.64), (2, 2): (168.69, 175.00), (2, 3): (173.30, 259.38),
         (3, 0): (264.28, 4.66), (3, 1): (263.93, 81.73), (3, 2): (257.78, 165.86), (3, 3): (263.73, 254.72)}
#: The pairs main kept: ``(a, b, offset, standard error, loose)``; (0, 2)-(0, 3) and (2, 3)-(3, 3) overlap by 4 px,
#: their fits' placeholder 1 px; (2, 3)-(3, 3) alone joins the top rows to the rest, 1.52 px off.
KEPT = [((0, 0), (1, 0), (74.58, 1.85), 0.13, False), ((0, 0), (0, 1), (-0.02, 84.57), 0.15, False),
        ((0, 1), (0, 2), (-5.12, 82.02), 0.10, False), ((0, 2), (0, 3), (6.40, 92.36), 1.03, True),
        ((0, 3), (1, 3), (85.04, -4.62), 0.35, False), ((1, 1), (2, 1), (73.14, 0.94), 0.17, False),
        ((1, 3), (2, 3), (81.76, 2.61), 0.07, False), ((2, 0), (3, 0), (85.65, 7.87), 0.22, False),
        ((2, 0), (2, 1), (-12.52, 85.72), 0.25, False), ((2, 3), (3, 3), (91.94, -4.65), 1.01, True),
        ((3, 0), (3, 1), (-0.38, 77.08), 0.07, False), ((3, 1), (3, 2), (-6.18, 84.19), 0.09, False),
        ((3, 2), (3, 3), (5.90, 89.02), 0.13, False), ((1, 1), (1, 2), (-1.19, 84.22), 0.14, False),
        ((1, 2), (2, 2), (76.53, 8.06), 0.16, False)]
#: The candidates not kept across it: ``(a, b, offset, standard error, significance)``; the first right (0.33 px
#: off), the second wrong (2.1 px off).
CANDIDATES = [((0, 1), (1, 1), (87.72, -4.01), 0.52, 1.87), ((2, 2), (2, 3), (3.48, 82.62), 0.52, 2.33)]


def _errors(positions: dict) -> np.ndarray:
    """Each tile's distance to the truth once the mean translation is removed, pixels."""
    d = np.array([np.asarray(positions[t]) - TRUTH[t] for t in TILES])
    return np.linalg.norm(d - d.mean(axis=0), axis=1)


def _recorded() -> tuple[list[PairOffset], list[PairOffset], dict]:
    kept = [PairOffset(a, b, offset, 1 / sigma**2) for a, b, offset, sigma, _ in KEPT]
    candidates = [PairOffset(a, b, offset, 1 / sigma**2, strong=False) for a, b, offset, sigma, _ in CANDIDATES]
    registrations = {(a, b): PairRegistration(offset, 0.9, 8.0, (1.0, 1.0) if loose else (sigma, sigma))
                     for a, b, offset, sigma, loose in KEPT}
    registrations.update({(a, b): PairRegistration(offset, 0.5, significance, (sigma, sigma))
                          for a, b, offset, sigma, significance in CANDIDATES})
    return kept, candidates, registrations


def test_the_right_candidate_closes_the_loose_links_loop():
    kept, candidates, registrations = _recorded()
    solved = solve_positions(TILES, kept, STEP)
    before = _errors(solved[0])
    assert before.mean() > 1.0 and before.max() > 1.5
    (positions, _, now), closing, _ = closed_loose_loops(TILES, solved, candidates, registrations, STEP)
    assert closing == {((0, 1), (1, 1))}
    assert {(p.a, p.b) for p in kept} | closing == {(p.a, p.b) for p in now}
    after = _errors(positions)
    assert after.mean() < 0.5 and after.max() < 1.0
    assert np.all(after <= before + 0.1)


def test_lone_links_fitted_below_a_pixel_keep_their_loop_open():
    kept, candidates, registrations = _recorded()
    for pair in (((0, 2), (0, 3)), ((2, 3), (3, 3))):  # both on the candidates' loop, both on no loop
        registrations[pair] = PairRegistration(registrations[pair].offset, 0.9, 8.0, (0.3, 0.3))
    solved = solve_positions(TILES, kept, STEP)
    assert closed_loose_loops(TILES, solved, candidates, registrations, STEP)[1] == set()


def test_the_wrong_candidate_alone_is_not_kept():
    kept, candidates, registrations = _recorded()
    solved = solve_positions(TILES, kept, STEP)
    (positions, _, now), closing, _ = closed_loose_loops(TILES, solved, candidates[1:], registrations, STEP)
    assert closing == set()
    assert np.allclose([positions[t] for t in TILES], [solved[0][t] for t in TILES])
