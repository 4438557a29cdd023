"""A pair refused in depth keeps its own peak when its two most significant depth ranges are confident and near it
(linumpy.stitching.depth_check.corroborated_in_depth, session ha10b)."""

from __future__ import annotations

import numpy as np
import pytest
from pair_flags import assert_pair_flag_round_trips
from test_stitching_depth_check import BLOCK, block_with_a_confident_link

from linumpy.stitching import estimate
from linumpy.stitching.depth_check import DepthCheck, corroborated_in_depth, ranges_corroborate
from linumpy.stitching.pairwise import PairRegistration
from linumpy.stitching.transform import DEPTH_PEAK_REFUSED, PairRecord

#: The pairs the depth check refused, not edge links, on the tuning seeds (foreign ``ha`` 488 and ``c185`` 493, every
#: slice; main 12afe20 on the pool's grids): each range's significance and distance (px) from the pair's own
#: offset, and that offset's distance from the truth.
TUNING_REFUSED = {
    ("ha 488", 0, (1, 0), (1, 1)): ((2.07, 0.64, 2.05), (2.04, 12.79, 0.60), 0.57),
    ("ha 488", 4, (1, 0), (1, 1)): ((4.92, 0.59, 0.62), (9.42, 5.66, 16.48), 9.48),
    ("ha 488", 4, (1, 1), (1, 2)): ((1.50, 1.18, 0.90), (0.54, 2.88, 8.56), 11.93),
    ("ha 488", 4, (2, 1), (2, 2)): ((2.35, 3.50, 2.32), (1.14, 4.64, 5.64), 3.62),
    ("c185 493", 0, (1, 1), (1, 2)): ((0.39, 0.30, 0.37), (1.99, 20.05, 6.09), 39.16),
    ("c185 493", 0, (2, 2), (3, 2)): ((0.76, 1.18, 0.17), (2.32, 13.49, 2.91), 15.25),
    ("c185 493", 1, (1, 2), (2, 2)): ((0.29, 0.20, 2.56), (22.23, 18.85, 5.19), 22.32),
    ("c185 493", 3, (1, 0), (1, 1)): ((0.38, 0.84, 3.10), (32.50, 32.21, 33.08), 32.47),
    ("c185 493", 3, (1, 2), (2, 2)): ((2.16, 3.25, 5.56), (3.32, 1.95, 2.68), 3.65),
    ("c185 493", 4, (0, 1), (0, 2)): ((2.01, 0.96, 1.46), (5.42, 4.69, 1.01), 4.72),
    ("c185 493", 4, (2, 1), (2, 2)): ((2.23, 0.89, 2.07), (4.44, 9.93, 4.32), 4.32),
    ("c185 493", 4, (2, 2), (3, 2)): ((1.97, 1.29, 0.68), (1.91, 0.84, 15.07), 0.51),
}


def test_recorded_refusals_keep_only_a_right_corroborated_peak():
    """Of the tuning seeds' 12 pairs refused in depth (not edge links), one keeps its peak: ha 488 slice 0's
    (1, 0)-(1, 1), 0.57 px from the truth; c185 493 slice 3's (1, 2)-(2, 2), whose two strongest ranges also lie
    near its (wrong) peak, takes its strong range's peak instead; every other refused pair 3.6 px or more off stays
    refused (c185 493 slice 4's right (2, 2)-(3, 2), its strongest range 1.97, too)."""
    kept = []
    for case, (significances, distances, own_error) in TUNING_REFUSED.items():
        check = DepthCheck(max(distances), False, max(significances), None,
                           ranges_corroborate(significances, distances))
        if corroborated_in_depth(check, PairRegistration((0.0, 90.0), 0.5, 1.0)):
            kept.append((case, own_error))
    assert kept == [(("ha 488", 0, (1, 0), (1, 1)), 0.57)]


@pytest.mark.parametrize("corroborated", [True, False])
def test_a_corroborated_pair_keeps_its_peak_and_places_its_tile(monkeypatch, corroborated):
    """(0, 1)-(0, 2), a confident candidate and (0, 2)'s one link, on the truth; its depth check made a refusal by a
    weak range 12.8 px off (strongest range 2.07, not confirming). Corroborated by its two strongest ranges it keeps
    its peak, is kept and flagged, and places (0, 2) within 1 px of the truth; otherwise it is refused and (0, 2)
    stays on the stage model."""
    checks = estimate.depth_checks

    def refusing(registrations, *args, **kwargs):
        return {pair: DepthCheck(12.8, False, 2.07, None, corroborated) if pair == ((0, 1), (0, 2)) else check
                for pair, check in checks(registrations, *args, **kwargs).items()}

    monkeypatch.setattr(estimate, "depth_checks", refusing)
    transform = block_with_a_confident_link(monkeypatch, (0, 0))
    record = next(p for p in transform.pairs if (p.a, p.b) == ((0, 1), (0, 2)))
    placed = np.subtract(transform.positions[(0, 2)], transform.positions[(0, 1)])
    error = np.hypot(*(placed - np.subtract(BLOCK[(0, 2)], BLOCK[(0, 1)])))
    if corroborated:
        assert record.accepted and record.depth_corroborated and not record.depth_range_peak
        assert error < 1.0 and transform.tiles[(0, 2)].source == "pairs"
        assert [p for p in transform.pairs if p.depth_corroborated] == [record]
        return
    assert not record.accepted and record.status == DEPTH_PEAK_REFUSED and not record.depth_corroborated
    assert transform.tiles[(0, 2)].source == "stage"


def test_depth_corroborated_survives_the_transform_json():
    """``depth_corroborated`` is written with each pair and read back (missing in older files: False)."""
    records = (PairRecord((0, 0), (1, 0), (86.0, 0.0), 0.6, True, depth_corroborated=True),
               PairRecord((0, 0), (0, 1), (0.0, 84.0), 0.9, True))
    assert_pair_flag_round_trips(records, "depth_corroborated", {(0, 0): (0.0, 0.0), (1, 0): (86.0, 0.0),
                                                                 (0, 1): (0.0, 84.0)}, (84.0, 84.0), (96, 96))
