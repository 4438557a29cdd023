"""The last slice's borrowed depth trend carries the level the slice above's lateral map gave its tissue."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from test_stack import BELOW_PX, MARGIN, SURFACE_PX, USEFUL_PX, assembled, make_brain, volumes

from linumpy.stack import stacking
from linumpy.stack.gains import LateralGain, borrowed_trends, fit_gains
from linumpy.stack.quality import stack_metrics
from linumpy.stack.stacking import plan_stack


def _regional_error_brain(factor: float):
    """Every slice's compensation leaves a band of 30 % of the field (in x, the phantom's frame) ``factor`` x too
    bright at its bottom, growing from 1 at its top: the error the overlap maps measure and the last slice keeps."""
    brain = make_brain()
    out = []
    for data, (_, dx) in zip(brain.slices, brain.shifts_px, strict=True):
        x = np.arange(data.shape[2]) + dx + MARGIN
        region = ndimage.gaussian_filter1d((x > 0.7 * (data.shape[2] + 2 * MARGIN)).astype(float), 2.0)
        depth = np.concatenate([np.zeros(SURFACE_PX), np.linspace(0.0, 1.0, USEFUL_PX), np.ones(BELOW_PX)])
        out.append((data * np.exp(np.log(factor) * depth[:, None, None] * region[None, None])).astype(np.float32))
    brain.slices = out
    return brain


def _last_slab_deep_level(plan, brain) -> tuple[float, float]:
    """The last slab's deepest planes' mean over the phantom's, relative to the slabs above, and the plane CV."""
    volume, reference, tissue = assembled(plan, brain)
    ratio = np.array([volume[z][tissue[z]].mean() / reference[z][tissue[z]].mean() if tissue[z].sum() > 50
                      else np.nan for z in range(volume.shape[0])])
    last = int(round(plan.placed[-1].origin[0]))
    finite = ratio[np.isfinite(ratio)]
    return float(np.nanmean(ratio[-4:]) / np.nanmedian(ratio[:last])), float(finite.std() / finite.mean())


@pytest.mark.parametrize("factor", [0.6, 1.5])
def test_last_slab_borrows_the_level_of_the_map_above(monkeypatch, factor):
    """The slabs above get their band's error back from their maps, whose median (the field outside the band) is
    removed, so the maps raise (lower) the tissue's level too; the last slice (no map) tied to the scalar trend
    alone kept its deep planes 3.5 % too dark (bright). Borrowing the map's level brings them within 1 % of the
    slabs above (measured 0.965 -> 1.004 and 1.036 -> 0.993) and the plane CV down (0.0106 -> 0.0046, 0.0104 ->
    0.0048)."""
    brain = _regional_error_brain(factor)
    plan = plan_stack(volumes(brain), brain.motors_mm, brain.thickness_um, 10.0)
    level, cv = _last_slab_deep_level(plan, brain)
    borrowed = [e["gain_trend_map_level"] for e in plan.record["slices"]]
    assert borrowed[:-1] == [None] * (len(borrowed) - 1)
    assert borrowed[-1] is not None and np.sign(borrowed[-1]) == -np.sign(np.log(factor))  # the map's level
    assert stack_metrics(plan.record, 10.0)["gain_trend_map_level"] == borrowed
    monkeypatch.setattr(stacking, "borrowed_trends", lambda measured, lateral: [None] * len(measured))
    tied = plan_stack(volumes(brain), brain.motors_mm, brain.thickness_um, 10.0)
    tied_level, tied_cv = _last_slab_deep_level(tied, brain)
    assert abs(tied_level - 1) > 0.025, tied_level  # the scalar trend alone: 3.5 % off
    assert abs(level - 1) < 0.015 and abs(level - 1) < abs(tied_level - 1) / 2, (level, tied_level)
    assert cv < tied_cv * 0.7, (cv, tied_cv)


def test_nothing_borrowed_without_a_map_above():
    """A slice whose trend is measured, or whose slice above has no map, borrows nothing: the plain tie (the fit
    unchanged)."""
    above = LateralGain(np.ones((2, 2), np.float32), (1.0, 1.0), 1.0, level_log=0.05)
    assert borrowed_trends([True, True, False], [None, None, None]) == [None, None, None]
    assert borrowed_trends([True, False, True, False], [None, above, None, None]) == [None, None, None, None]
    ratios, depths = [None, 0.9, 0.9], [None, (1.0, 0.1), (1.0, 0.1)]
    plain, offsets = fit_gains(ratios, depths), fit_gains(ratios, depths, trend_offsets=[0.0, 0.0, 0.0])
    assert np.allclose(plain[0], offsets[0]) and np.allclose(plain[1], offsets[1])
    shifted = fit_gains(ratios, depths, trend_offsets=[0.0, 0.0, 0.05])
    assert shifted[1][2] - shifted[1][1] > plain[1][2] - plain[1][1] + 0.03  # the last trend moved by the offset
