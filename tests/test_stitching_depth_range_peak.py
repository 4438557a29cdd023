"""A pair refused in depth takes its strongest depth range's peak when that range is strong
(linumpy.stitching.depth_check.strong_range_peak, session ha10)."""

from __future__ import annotations

import numpy as np
from pair_flags import assert_pair_flag_round_trips
from test_stitching_depth_check import BLOCK, block_with_a_confident_link

from linumpy.stitching.depth_check import DepthCheck, strong_range_peak
from linumpy.stitching.pairwise import PairRegistration
from linumpy.stitching.transform import PairRecord

#: Foreign ``ha`` 488 slice 4's checked pairs as recorded (main 4bd0815 on the pool's grids): the pair's own offset,
#: its largest range disagreement, whether its strongest range confirmed it, that range's offset and significance,
#: and the true offset.
HA_488_S4 = {
    ((0, 0), (0, 1)): ((2.38, 89.03), 4.81, False, (-1.20, 92.24), 2.59, (-2.48, 92.98)),
    ((0, 1), (1, 1)): ((77.67, 0.45), 2.07, True, (78.49, 1.99), 4.42, (78.81, 1.73)),
    ((1, 0), (1, 1)): ((-7.53, 81.94), 16.48, False, (-6.62, 91.32), 4.92, (-6.68, 91.39)),
    ((1, 1), (2, 1)): ((84.53, -9.59), 10.37, True, (84.79, -9.23), 2.14, (85.57, -8.20)),
    ((1, 1), (1, 2)): ((0.40, 69.83), 8.56, False, (0.17, 69.35), 1.50, (5.93, 80.40)),
    ((2, 1), (2, 2)): ((4.14, 92.12), 5.64, False, (2.69, 87.71), 3.50, (3.08, 88.66)),
}


def test_recorded_refusals_take_only_their_strong_ranges():
    """Of ha 488 slice 4's six checked pairs, the two refused ones whose strongest range is strong take it, each
    within 1.1 px of the truth where their own peaks lay 9.5 and 3.6 px off; the confirmed pairs (one with a strong
    range) and the refused ones whose ranges are weak are left as they were."""
    taken = {}
    for pair, (own, disagreement, confirmed, best, significance, true) in HA_488_S4.items():
        found = strong_range_peak(DepthCheck(disagreement, confirmed, significance,
                                             PairRegistration(best, 0.5, significance)))
        if found is not None:
            taken[pair] = np.hypot(*np.subtract(found.offset, true)), np.hypot(*np.subtract(own, true))
    assert sorted(taken) == [((1, 0), (1, 1)), ((2, 1), (2, 2))]
    assert all(error < 1.1 < own_error for error, own_error in taken.values())


def test_a_refused_pair_takes_its_strong_range_peak(monkeypatch):
    """(0, 1)-(0, 2), made a confident candidate, is (0, 2)'s one link; its projection is drawn 3 px off along both
    axes (4.2 px) while its depth ranges lie on the truth, strong: refused in depth, it takes its strongest range's
    peak, is kept, flagged, and places (0, 2) within 0.5 px of the truth; no search reads its maps."""
    transform = block_with_a_confident_link(monkeypatch, (3, 3))
    record = next(p for p in transform.pairs if (p.a, p.b) == ((0, 1), (0, 2)))
    true = np.subtract(BLOCK[(0, 2)], BLOCK[(0, 1)])
    assert record.depth_range_peak and record.accepted and record.significance >= 3.0
    assert record.depth_disagreement_px > 2.0 and np.hypot(*np.subtract(record.offset, true)) < 0.5
    placed = np.subtract(transform.positions[(0, 2)], transform.positions[(0, 1)])
    assert np.hypot(*(placed - true)) < 0.5 and transform.tiles[(0, 2)].source == "pairs"
    assert [p for p in transform.pairs if p.depth_range_peak] == [record]


def test_depth_range_peak_survives_the_transform_json():
    """``depth_range_peak`` is written with each pair and read back (missing in older files: False)."""
    records = (PairRecord((0, 0), (1, 0), (86.0, 0.0), 0.6, True, depth_range_peak=True),
               PairRecord((0, 0), (0, 1), (0.0, 84.0), 0.9, True))
    assert_pair_flag_round_trips(records, "depth_range_peak", {(0, 0): (0.0, 0.0), (1, 0): (86.0, 0.0),
                                                               (0, 1): (0.0, 84.0)}, (84.0, 84.0), (96, 96))
