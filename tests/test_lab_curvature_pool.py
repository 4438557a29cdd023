"""One field-curvature decision per acquisition: pooled over slices, applied alike to every slice."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from linumpy.errors import InputError
from linumpy.io.acquisition import open_acquisition
from linumpy.mosaic.curvature_pool import (
    AcquisitionCurvature, estimate_acquisition_curvature, load_acquisition_curvature, sample_slice_ids,
    save_acquisition_curvature,
)
from linumpy.mosaic.grid import write_mosaic_grid
from linumpy.simulate import get_preset, simulate_acquisition
from linumpy.simulate.conditions import condition_preset
from linumpy.simulate.imaging import field_curvature_map
from test_nextflow_static import load_script


@pytest.fixture(scope="module")
def harsh(tmp_path_factory):
    """``tiny`` under every condition at once (3-voxel curvature, tilt, bumps, dark tissue, cavity), 4 slices."""
    preset = condition_preset(get_preset("tiny"), "harsh", 4)
    return preset, simulate_acquisition(tmp_path_factory.mktemp("harsh") / "raw", preset, seed=106)


def test_one_decision_applied_alike_to_every_slice(harsh, tmp_path):
    """Seed 106 (tuning used seeds 0-2): the pooled fit leaves <= 1 voxel of the curvature (the depth step
    at tile borders), and every slice's mosaic grid applies the same decision and says where it came from."""
    preset, raw = harsh
    acquisition = open_acquisition(raw)
    estimate = estimate_acquisition_curvature(acquisition, workers=1)
    metrics = estimate.metrics()
    assert estimate.slice_ids == [0, 1, 2, 3] and metrics["curvature_n_tiles"] == 4 * 6, metrics
    assert estimate.curvature.applied, metrics
    truth = field_curvature_map(preset)
    assert np.ptp(truth - estimate.curvature.offset_map(truth.shape)) <= 1.0, metrics
    assert estimate.curvature.mismatch_after_px < estimate.curvature.mismatch_before_px
    decision = save_acquisition_curvature(estimate, tmp_path / "field_curvature.json")
    assert load_acquisition_curvature(decision) == estimate  # the JSON holds the whole decision
    record = json.loads((tmp_path / "field_curvature_qc.json").read_text())
    assert record["step"] == "field_curvature" and record["metrics"]["curvature_slice_ids"] == [0, 1, 2, 3]

    recorded = []
    for slice_id in acquisition.slice_ids:
        section = acquisition.slice(slice_id)
        grid = tmp_path / f"grid_{slice_id}.ome.zarr"
        write_mosaic_grid(section, grid, tmp_path / f"aip_{slice_id}.ome.zarr", n_levels=0, workers=1,
                          field_curvature=load_acquisition_curvature(decision).for_slice(section))
        qc = json.loads((tmp_path / f"grid_{slice_id}_qc.json").read_text())
        recorded.append({k: v for k, v in qc["metrics"].items() if k.startswith("curvature_")})
        assert not qc["flags"]  # an acquisition-wide decision is flagged once, in its own record
    assert all(r == recorded[0] for r in recorded), recorded
    assert recorded[0]["curvature_source"] == "acquisition" and recorded[0]["curvature_applied"] is True


def test_weak_or_disabled_decisions_are_stated_and_mismatched_tiles_refused(harsh, tmp_path):
    preset, raw = harsh
    script = load_script("linum_estimate_field_curvature.py")
    out = tmp_path / "off.json"
    script.main(script.build_parser().parse_args([str(raw), str(out), "--no_fix_field_curvature"]))
    off = load_acquisition_curvature(out)
    assert (off.curvature.applied, off.curvature.status, off.slice_ids) == (False, "disabled", [])
    # a decision left in is a red flag of the estimate's own record, naming the whole acquisition
    weak = replace(off, curvature=replace(off.curvature, status="no_gain", amplitude_px=2.5), slice_ids=[0, 3])
    save_acquisition_curvature(weak, tmp_path / "weak.json")
    flags = json.loads((tmp_path / "weak_qc.json").read_text())["flags"]
    assert len(flags) == 1 and "not removed (no_gain)" in flags[0] and "whole acquisition" in flags[0], flags
    section = open_acquisition(raw).slice(1)
    other = AcquisitionCurvature(off.curvature, [0], [80, 32, 64])
    with pytest.raises(InputError, match="rerun linum_estimate_field_curvature.py"):
        other.for_slice(section, "x.json")
    (tmp_path / "bad.json").write_text('{"schema": "something else"}')
    with pytest.raises(InputError, match="not a field curvature decision"):
        load_acquisition_curvature(tmp_path / "bad.json")


def test_sampled_slices_spread_through_the_acquisition():
    assert sample_slice_ids([5, 1, 3]) == [1, 3, 5]
    picked = sample_slice_ids(list(range(100)), 8)
    assert len(picked) == 8 and picked[0] == 0 and picked[-1] == 99
    assert max(np.diff(picked)) - min(np.diff(picked)) <= 1


def test_unreadable_slice_is_left_out_of_the_estimate_and_flagged(harsh, tmp_path):
    """A damaged slice (left out of the run with exclude_slices) must not stop the one estimate."""
    raw = shutil.copytree(harsh[1], tmp_path / "raw")
    (raw / "tile_x01_y01_z02" / "image_1.bin").write_bytes(b"0" * 100)  # truncated
    estimate = estimate_acquisition_curvature(open_acquisition(raw), workers=1)
    assert estimate.slice_ids == [0, 1, 3] and estimate.skipped_slices == [2]
    assert any("without slices [2]" in flag for flag in estimate.flags())
    assert estimate.metrics()["curvature_skipped_slices"] == [2]
