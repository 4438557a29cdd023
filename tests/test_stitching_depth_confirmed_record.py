"""A pair the depth check would refuse but its most significant range confirmed is named in the transform JSON and
the QC record (per pair ``depth_confirmed_significance``, per slice ``n_depth_confirmed_links``; session rule10d)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from linumpy.stitching import estimate
from linumpy.stitching.depth_check import DEPTH_AGREEMENT_PX, DepthCheck
from linumpy.stitching.fusion_flatfield import FusionFlatField
from linumpy.stitching.pair_terms import CONFIDENT_SIGNIFICANCE
from linumpy.stitching.stitch import MosaicGridLayout, stitch_qc
from linumpy.stitching.summaries import SummarySource
from linumpy.stitching.transform import transform_from_dict, transform_to_dict
from test_stitching_depth_check import BLOCK, DEPTH, STEP, TILE, _block
from test_stitching_depth_confirmed import _pair_with_a_foreign_range

PAIR = ((0, 1), (0, 2))


def test_the_check_reports_its_strongest_range_significance():
    """The right pair of ``test_stitching_depth_confirmed`` (``b``'s deepest range another sample's planes): the
    range that confirms it is confident, and the significance the check reports is at least the bar it passed."""
    check = _pair_with_a_foreign_range(0)[3]
    assert check.disagreement > DEPTH_AGREEMENT_PX and check.confirmed
    assert check.strongest_significance >= CONFIDENT_SIGNIFICANCE


def _estimate(monkeypatch, check: DepthCheck):
    """The block's estimate with (0, 1)-(0, 2), right, a candidate of significance 2.5 whose depth check is
    ``check``."""
    volumes, projections = _block(0, (0, 0))
    register, checks = estimate.register_neighbours, estimate.depth_checks

    def candidate(*args, **kwargs):
        flattened, registrations = register(*args, **kwargs)
        return flattened, {p: replace(r, significance=2.5) if p == PAIR else r for p, r in registrations.items()}

    def checked(registrations, *args, **kwargs):
        return {**checks(registrations, *args, **kwargs), PAIR: check}

    monkeypatch.setattr(estimate, "register_neighbours", candidate)
    monkeypatch.setattr(estimate, "depth_checks", checked)
    return estimate.estimate_transform(projections, (STEP, STEP), 12,
                                       depth_reader=lambda tile, part: volumes[tile][(slice(None), *part)])


@pytest.mark.parametrize(("check", "named"), [(DepthCheck(9.0, True, 2.7), True),
                                              (DepthCheck(9.0, False, 1.4), False),
                                              (DepthCheck(1.2, True, 3.1), False)])
def test_a_pair_its_strongest_range_spared_is_named_in_the_json_and_the_qc_record(monkeypatch, check, named):
    """Spared (a range 9 px away, the strongest confirming it): the pair is kept, its tile placed within 1 px of
    the truth, and named with the confirming range's significance in the transform (through its JSON) and the QC
    record, counted once. Refused, or never beyond the bar: named nowhere, counted 0."""
    transform = _estimate(monkeypatch, check)
    record = next(p for p in transform.pairs if (p.a, p.b) == PAIR)
    placed = np.subtract(transform.positions[(0, 2)], transform.positions[(0, 1)])
    error = np.hypot(*(placed - np.subtract(BLOCK[(0, 2)], BLOCK[(0, 1)])))
    assert record.accepted == (check.confirmed or check.disagreement <= DEPTH_AGREEMENT_PX)
    if record.accepted:
        assert error < 1.0
    read = transform_from_dict(json.loads(json.dumps(transform_to_dict(transform))))
    layout = MosaicGridLayout((DEPTH, TILE, TILE), (2, 3), (STEP, STEP), tuple(BLOCK))
    metrics, _, _ = stitch_qc(transform, layout, FusionFlatField("off"), SummarySource("none", "test"))
    others = [p for p in read.pairs if (p.a, p.b) != PAIR]
    assert all(np.isnan(p.depth_confirmed_significance) for p in others)
    in_json = next(p for p in read.pairs if (p.a, p.b) == PAIR).depth_confirmed_significance
    in_qc = metrics["pairs"][f"{PAIR[0]}-{PAIR[1]}"]["depth_confirmed_significance"]
    if named:
        assert record.depth_confirmed_significance == in_json == in_qc == check.strongest_significance
    else:
        assert np.isnan(record.depth_confirmed_significance) and np.isnan(in_json) and in_qc is None
    assert metrics["n_depth_confirmed_links"] == int(named)
