"""A boundary ratio whose lateral map a fallback drops: the map's level out of it where the overlap's tissue is the
same (the map dropped for its lateral placement), left in where the tissue differs (dropped for its confidence)."""

from __future__ import annotations

import numpy as np
from test_stack import assembled, volumes
from test_stack_last_trend import _regional_error_brain

from linumpy.stack import stacking
from linumpy.stack.gains import MAP_MIN_CONFIDENCE
from linumpy.stack.quality import stack_metrics
from linumpy.stack.stacking import plan_stack


def _boundary_steps(plan, brain) -> list[float]:
    """Per slab boundary, the per-plane mean over the phantom's on the two planes below over the two above, less 1."""
    volume, reference, tissue = assembled(plan, brain)
    ratio = np.array([volume[z][tissue[z]].mean() / reference[z][tissue[z]].mean() if tissue[z].sum() > 50
                      else np.nan for z in range(volume.shape[0])])
    steps = []
    for placed in plan.placed[1:]:
        b = int(round(placed.origin[0]))
        steps.append(float(np.nanmean(ratio[b:b + 2]) / np.nanmean(ratio[b - 2:b]) - 1))
    return steps


def test_a_map_dropped_on_the_same_tissue_leaves_no_level_in_the_ratio(monkeypatch):
    """Every map dropped while the overlaps' tissue is the same (their confidence above the bar; the drop forced
    here by raising the stack's bar alone, as a motor-placed slice's is): the ratios without the maps' level, and
    every boundary within 1.5 % of the phantom (measured 0.1-0.9 %); with the level left in, the scalar gains
    matched bottoms the maps were to brighten: steps over twice as large (measured 2.8-6.7 %)."""
    brain = _regional_error_brain(0.6)
    monkeypatch.setattr(stacking, "MAP_MIN_CONFIDENCE", 1.01)  # the stack drops every map; the rule's bar is 0.5
    plan = plan_stack(volumes(brain), brain.motors_mm, brain.thickness_um, 10.0)
    entries = plan.record["slices"]
    assert all(e["lateral_gain"] is None for e in entries)
    assert all(e["registration"]["lateral_confidence"] >= MAP_MIN_CONFIDENCE for e in entries[1:])
    assert [e["boundary_ratio_dropped_map"] for e in entries] == [None] + ["without map"] * (len(entries) - 1)
    assert stack_metrics(plan.record, 10.0)["boundary_ratio_dropped_map"] == [None] + ["without map"] * (
        len(entries) - 1)
    fixed = _boundary_steps(plan, brain)
    monkeypatch.setattr(stacking, "ratio_for_dropped_map", lambda ratio, measured, confidence: (ratio, None))
    before = _boundary_steps(plan_stack(volumes(brain), brain.motors_mm, brain.thickness_um, 10.0), brain)
    assert max(map(abs, fixed)) < 0.015 and max(map(abs, before)) > 2 * max(map(abs, fixed)), (fixed, before)


def test_a_map_dropped_for_its_confidence_keeps_its_level(monkeypatch):
    """Maps dropped because the overlap's confidence is below the bar (both bars raised): the ratios as measured
    (the map's median-levelled ratio; the means compare tissue that differs), the record says so, the plan is the
    one the ratios as measured give."""
    brain = _regional_error_brain(0.6)
    monkeypatch.setattr(stacking, "MAP_MIN_CONFIDENCE", 1.01)
    monkeypatch.setattr("linumpy.stack.gains.MAP_MIN_CONFIDENCE", 1.01)
    plan = plan_stack(volumes(brain), brain.motors_mm, brain.thickness_um, 10.0)
    entries = plan.record["slices"]
    assert [e["boundary_ratio_dropped_map"] for e in entries] == [None] + ["with map"] * (len(entries) - 1)
    monkeypatch.setattr(stacking, "ratio_for_dropped_map", lambda ratio, measured, confidence: (ratio, None))
    as_measured = plan_stack(volumes(brain), brain.motors_mm, brain.thickness_um, 10.0).record["slices"]
    assert [e["boundary_ratio_raw"] for e in entries] == [e["boundary_ratio_raw"] for e in as_measured]
    assert [e["gain_top_bottom"] for e in entries] == [e["gain_top_bottom"] for e in as_measured]
