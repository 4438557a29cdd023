"""A slice's lateral gain map fades with its overlap confidence: no cliff in the volume at the gate."""

from __future__ import annotations

import numpy as np
import pytest
from test_stack import assembled, darkened_brain, volumes

from linumpy.stack import gains, stacking
from linumpy.stack.gains import LateralGain, map_strength
from linumpy.stack.refine import normalized_cross_correlation
from linumpy.stack.quality import boundary_flags, stack_metrics
from linumpy.stack.stacking import plan_stack

#: The known field: half of each slab (in x, the phantom's frame) darkens with depth to this at its bottom.
BOTTOM_GAIN = 0.6


def test_strength_is_none_below_the_band_full_above_and_monotone_between():
    confidences = np.linspace(0.0, 1.0, 2001)
    strength = np.array([map_strength(c) for c in confidences])
    assert np.all(strength[confidences <= gains.MAP_MIN_CONFIDENCE] == 0)
    assert np.all(strength[confidences >= gains.MAP_FULL_CONFIDENCE] == 1)
    assert np.all(np.diff(strength) >= 0)
    # no jump anywhere: 0.0005 of confidence moves the strength by at most 1.5 / band width of it
    band = gains.MAP_FULL_CONFIDENCE - gains.MAP_MIN_CONFIDENCE
    assert np.abs(np.diff(strength)).max() <= 1.5 * 0.0005 / band + 1e-9
    assert map_strength((gains.MAP_MIN_CONFIDENCE + gains.MAP_FULL_CONFIDENCE) / 2) == pytest.approx(0.5)


def test_a_faded_map_scales_its_log_gain_and_level():
    log_map = np.random.default_rng(0).normal(0, 0.3, (5, 7)).astype(np.float32)
    full = LateralGain(log_map, (10.0, 10.0), 0.6, partial_fraction=0.1, level_log=0.08)
    faded = full.faded(0.25)
    np.testing.assert_allclose(faded.log_map, 0.25 * log_map, rtol=1e-6)
    assert faded.level_log == pytest.approx(0.02) and faded.strength == 0.25
    assert (faded.depth, faded.pixel_um, faded.partial_fraction) == (full.depth, full.pixel_um, full.partial_fraction)


@pytest.fixture(scope="module")
def brain():
    return darkened_brain(BOTTOM_GAIN)


def _stacked_at(brain, confidence: float, monkeypatch) -> tuple[float, list[dict]]:
    """Volume error (1 - NCC with the phantom) and slice records with every overlap read at ``confidence``."""
    with monkeypatch.context() as patch:
        patch.setattr(stacking, "confidence_faded", lambda lateral, _: gains.confidence_faded(lateral, confidence))
        plan = plan_stack(volumes(brain), brain.motors_mm, brain.thickness_um, 10.0)
    volume, reference, tissue = assembled(plan, brain)
    return 1 - normalized_cross_correlation(volume[tissue], reference[tissue]), plan.record


def test_the_volume_error_is_continuous_across_the_band(brain, monkeypatch):
    """Full map above the band, none below, the known field's share corrected in between; the volume's error
    moves with the confidence by small steps, where the gate at 0.5 jumped by the map's whole worth."""
    confidences = [0.3, 0.39, 0.41, 0.45, 0.5, 0.55, 0.59, 0.61, 0.8]
    errors, spreads, strengths, records = [], [], [], []
    for confidence in confidences:
        error, record = _stacked_at(brain, confidence, monkeypatch)
        slices = record["slices"][:-1]  # the last has no slice below it
        errors.append(error)
        strengths.append([e["lateral_gain_strength"] for e in slices])
        spreads.append([0.0 if e["lateral_gain"] is None else np.log(e["lateral_gain"]["p95"] / e["lateral_gain"]["p5"])
                        for e in slices])
        records.append(record)
    print([round(e, 5) for e in errors], strengths)
    for confidence, strength in zip(confidences, strengths, strict=True):
        assert strength == [pytest.approx(map_strength(confidence), abs=1e-4)] * len(strength)
    spreads = np.array(spreads)
    # the applied field is the measured one scaled: its log spread in proportion to the strength
    np.testing.assert_allclose(spreads, np.array(strengths) * spreads[-1], atol=0.01)
    assert np.all(spreads[-1] > np.log(1.25))  # the known field's ratio at the overlap: 0.6 ** -0.55 = 1.32
    worth = errors[0] - errors[-1]
    assert worth > 0.015, errors  # the map's worth on this field (measured 1 - 0.943 vs 1 - 0.976)
    assert errors[1] == pytest.approx(errors[0], abs=1e-9) and errors[-2] == pytest.approx(errors[-1], abs=1e-9)
    assert np.all(np.diff(errors) <= 1e-4 * worth), errors  # more map, less error: monotone
    assert np.abs(np.diff(errors)).max() < 0.45 * worth, errors  # no step takes the map's whole worth
    assert abs(errors[2] - errors[1]) < 0.05 * worth and abs(errors[-2] - errors[-3]) < 0.05 * worth, errors
    faded = records[4]["slices"]  # mid band: the map applied at half strength, flagged, no fallback
    assert all(e["lateral_gain_fallback"] is None for e in faded[:-1])
    metrics = stack_metrics(records[4], 10.0)
    assert metrics["lateral_gain_strength"][:-1] == [0.5] * (len(faded) - 1)
    assert sum("applied at 50.0% strength" in f for f in boundary_flags(metrics)) == len(faded) - 1
    assert all(e["lateral_gain_fallback"].startswith("overlap NCC") for e in records[0]["slices"][:-1])


def test_the_old_gate_was_a_cliff(brain, monkeypatch):
    """Control: a band of zero width (the former hard gate at 0.5) moves the error by the map's whole worth between
    confidences 0.002 apart."""
    monkeypatch.setattr(gains, "MAP_MIN_CONFIDENCE", 0.5)
    monkeypatch.setattr(gains, "MAP_FULL_CONFIDENCE", 0.5 + 1e-9)
    below, _ = _stacked_at(brain, 0.499, monkeypatch)
    above, _ = _stacked_at(brain, 0.501, monkeypatch)
    assert below - above > 0.015, (below, above)
