"""A confident wrong peak between tiles that do not overlap, the lone link that decides the main group
(issue #10, session wrongpeak; linumpy.stitching.departures.solve_plausible, far_side_unsupported).

Fresh foreign ``c185`` seed 201, slice 3 (grid 4 x 4, 10 % overlap, stage +-8 px): (2, 0)-(3, 0), significance
3.57, 27.9 px off, true overlap -0.5 px (a peak claiming a 27 px overlap, 17.4 px from the step, within the
departure bound the other pairs allow), joined {(1, 0), (2, 0), (2, 1)} to the bottom row; that group of 8
outnumbered the 7 top tiles (the weak bridge (1, 1)-(2, 1), significance 2.84, dropped), and 7 tiles ended worse
than their stage, up to 20.5 px. The grid below is that slice's, pair by pair (whole-pixel departures from the
step; significances; the wrong peaks where they were).
"""

from __future__ import annotations

import numpy as np

import linumpy.stitching.estimate as estimate
import linumpy.stitching.joint_placement as joint_placement
import linumpy.stitching.settle as settle
from linumpy.simulate.stitch_matrix import aligned_errors
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration
from linumpy.stitching.transform import FAR_LONE_LINK_REFUSED_FIRST

RADIUS = 20
STEP = (86.0, 86.0)
TILES = [(r, c) for r in range(4) for c in range(4)]
#: True positions minus the stage's, whole pixels (201 slice 3's, relative to (0, 0)).
ERRORS = {(0, 0): (0, 0), (0, 1): (-5, 4), (0, 2): (5, -8), (0, 3): (-2, -1), (1, 0): (8, -4), (1, 1): (-6, 2),
          (1, 2): (-1, -5), (1, 3): (0, -4), (2, 0): (-5, 1), (2, 1): (-6, -11), (2, 2): (2, -1), (2, 3): (6, -11),
          (3, 0): (6, 2), (3, 1): (7, -2), (3, 2): (5, -1), (3, 3): (1, -7)}
SIGNIFICANCE = {
    ((0, 0), (0, 1)): 4.05, ((0, 0), (1, 0)): 1.69, ((0, 1), (0, 2)): 11.64, ((0, 1), (1, 1)): 7.45,
    ((0, 2), (0, 3)): 3.75, ((0, 2), (1, 2)): 7.28, ((0, 3), (1, 3)): 2.97, ((1, 0), (1, 1)): 0.32,
    ((1, 0), (2, 0)): 25.78, ((1, 1), (1, 2)): 1.07, ((1, 1), (2, 1)): 2.84, ((1, 2), (1, 3)): 5.69,
    ((1, 2), (2, 2)): 0.43, ((1, 3), (2, 3)): 1.16, ((2, 0), (2, 1)): 6.90, ((2, 0), (3, 0)): 3.57,
    ((2, 1), (2, 2)): 0.51, ((2, 1), (3, 1)): 1.24, ((2, 2), (2, 3)): 2.46, ((2, 2), (3, 2)): 1.43,
    ((2, 3), (3, 3)): 20.42, ((3, 0), (3, 1)): 6.24, ((3, 1), (3, 2)): 6.93, ((3, 2), (3, 3)): 22.88}
#: The pairs whose best peak is wrong: its departure from the step (the truth's is ``ERRORS[b] - ERRORS[a]``).
WRONG = {((0, 0), (1, 0)): (0, -7), ((1, 0), (1, 1)): (-6, -12), ((1, 2), (2, 2)): (-1, -2),
         ((2, 0), (3, 0)): (-17, -7), ((2, 1), (2, 2)): (12, -9), ((2, 1), (3, 1)): (-20, 10),
         ((2, 2), (3, 2)): (-6, 1)}
LONE_WRONG = ((2, 0), (3, 0))


def _map(peak: tuple[int, int], height: float) -> np.ndarray:
    """An evidence map over offsets ``nominal + d``: a Gaussian bump of ``height`` at ``peak``."""
    yy, xx = np.indices((2 * RADIUS + 1,) * 2) - RADIUS
    return height * np.exp(-((yy - peak[0]) ** 2 + (xx - peak[1]) ** 2) / 2.0)


def _registrations() -> dict:
    """Every pair's one peak: at the truth, or :data:`WRONG`'s."""
    registrations = {}
    for (a, b), significance in SIGNIFICANCE.items():
        nominal = (int(STEP[0]) * (b[0] - a[0]), int(STEP[1]) * (b[1] - a[1]))
        best = WRONG.get((a, b), tuple(int(v) for v in np.subtract(ERRORS[b], ERRORS[a])))
        registrations[(a, b)] = PairRegistration((float(nominal[0] + best[0]), float(nominal[1] + best[1])), 0.5,
                                                 significance, (0.1, 0.1),
                                                 scores=(EvidenceMap(1.0, nominal, _map(best, 2.0 + significance)),))
    return registrations


def test_a_confident_lone_link_placing_its_side_beyond_the_window_does_not_choose_the_main_group(monkeypatch):
    """At the first solve the wrong (2, 0)-(3, 0) puts {(1, 0), (2, 0), (2, 1)} 18 px from their stage
    positions in the bottom row's gauge (window 12.8 px) and their other overlap with it, (2, 1)-(3, 1), does not
    support that: it is dropped there, the top tiles and that piece are the main group, and every tile is placed
    no farther from the truth than its stage position (main: the top group 4.96 px off, its stage 2.9-3.5 px for
    three of them)."""
    registrations = _registrations()
    monkeypatch.setattr(estimate, "register_neighbours",
                        lambda projections, *args, **kwargs: (dict.fromkeys(TILES), registrations))
    for module in (estimate, joint_placement):
        monkeypatch.setattr(module, "refine_subpixel", lambda a, b, offset: (tuple(map(float, offset)), (0.1, 0.1)))
    # the fit mocked exact: no whole pixel left by it to settle (session flat10b)
    monkeypatch.setattr(settle, "settled_search_offset", lambda a, b, registration: None)
    transform = estimate.estimate_transform(dict.fromkeys(TILES, np.zeros((4, 4))), STEP)
    truth = {t: np.multiply(t, STEP) + ERRORS[t] for t in TILES}
    positions = {t: transform.position(t) for t in TILES}
    ours = aligned_errors(positions, truth)
    on_stage = aligned_errors({t: np.multiply(t, STEP) for t in TILES}, truth, frame=positions)
    for tile in TILES:
        assert ours[tile] <= on_stage[tile] + 0.5, (tile, ours[tile], on_stage[tile])
    placed = [t for t in TILES if transform.tiles[t].source == "pairs"]
    assert len(placed) >= 15
    truth_errors = aligned_errors(positions, truth, placed)
    assert all(truth_errors[t] < 0.1 for t in placed), truth_errors
    record = next(r for r in transform.pairs if (r.a, r.b) == LONE_WRONG)
    assert not record.accepted and record.status == FAR_LONE_LINK_REFUSED_FIRST
