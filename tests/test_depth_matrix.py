"""The depth-correction test matrix: simulator conditions, and the chain on a harsh tiny case.

The conditions (``linumpy.simulate.conditions``) are checked on phantom boxes
and single tiles (fast). The chain test runs a ``tiny`` acquisition with
every condition at once (``harsh``) on a seed not used for tuning, through
mosaic grid, stitch, axial correction, normalization and stacking, and
checks the focus, attenuation, intensity continuity and placement against
the truth (the full matrix: ``benchmarks/bench_stack.py --matrix``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from linumpy.errors import InputError
from linumpy.simulate import get_preset
from linumpy.simulate.conditions import CONDITIONS, condition_preset
from linumpy.simulate.geometry import AcquisitionGeometry
from linumpy.simulate.imaging import tile_signal
from linumpy.simulate.phantom import Phantom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_standard_presets_have_no_conditions(tiny_acquisition):
    assert all(get_preset(name).conditions() == {} for name in ("tiny", "small", "large"))
    truth = json.loads((tiny_acquisition / "ground_truth" / "truth.json").read_text())
    assert "conditions" not in truth and "cut_depth_px" not in truth["slices"][0]
    with pytest.raises(InputError, match="unknown condition"):
        condition_preset(get_preset("tiny"), "nope")


def phantoms(condition: str, seed: int = 3) -> tuple[Phantom, Phantom, AcquisitionGeometry]:
    preset = condition_preset(get_preset("tiny"), condition)
    geometry = AcquisitionGeometry(preset, seed)
    return Phantom(seed, get_preset("tiny"), geometry.mosaic_shape), Phantom(seed, preset, geometry.mosaic_shape), \
        geometry


def test_dark_tissue_and_regional_attenuation_change_only_the_structured_tissue():
    plain, dark, _ = phantoms("dark")
    z, y, x = np.arange(0, 200, 8), np.arange(20, 150, 2), np.arange(15, 100, 2)
    a, b = plain.evaluate(z, y, x), dark.evaluate(z, y, x)
    ratio = b.reflectivity[a.label > 0] / a.reflectivity[a.label > 0]
    darkened = np.isclose(ratio, 0.12, rtol=1e-4)
    assert np.all(darkened | np.isclose(ratio, 1.0)) and 0.1 < darkened.mean() < 0.5
    plain, varied, _ = phantoms("attenuation")
    mu = varied.evaluate(z, y, x).attenuation_per_mm / a.attenuation_per_mm
    columns = np.any(plain.column_masks(y, x), axis=0)
    assert np.allclose(mu[:, columns], 1.0) and np.allclose(mu[a.label == 0], 1.0)
    assert mu[(a.label > 0) & ~columns[None]].std() > 0.2  # exp(0.35 g): a spread of about 35%


def test_cavity_opens_at_the_second_cut_and_thickness_varies():
    _, cavity, geometry = phantoms("cavity")
    cz, cy, cx = cavity.conditions.cavity.center_px
    box = cavity.evaluate(np.array([round(cz)]), np.array([round(cy)]), np.array([round(cx)]))
    assert box.label.item() == 0 and box.reflectivity.item() == pytest.approx(0.03)
    assert cz == pytest.approx(geometry.preset.slice_thickness_px + geometry.preset.surface_offset_px)
    _, _, jittered = phantoms("thickness")
    steps = np.diff([s.world_z_offset_px + s.cut_offset_px for s in jittered.slices])
    assert np.all(np.abs(steps / 45 - 1) <= 0.06) and np.ptp(steps) > 0.5


def test_deep_lorentzian_focus_and_field_curvature_shape_the_tiles():
    preset = condition_preset(get_preset("tiny"), "harsh")
    assert CONDITIONS["harsh"]["focus_model"] == "lorentzian" and preset.focus_px == preset.surface_offset_px + 30
    geometry = AcquisitionGeometry(preset, 3)
    signal = tile_signal(Phantom(3, preset, geometry.mosaic_shape), geometry, 3, 0, 1, 1)
    first = np.argmax(signal > 0, axis=0).astype(float)
    first[~(signal > 0).any(axis=0)] = np.nan
    cut = geometry.surface_depth(0, *geometry.tile_world_axes(0, 1, 1)[1:])
    excess = first - cut  # field curvature: the cut looks deeper at the tile's corners
    assert np.nanmean(excess[:8, :8]) > np.nanmean(excess[28:36, 28:36]) + 1.5


@pytest.mark.slow
def test_harsh_case_through_the_chain(tmp_path):
    """Seed 4, 4 slices: focus, attenuation, continuity and placement against the truth.

    No parameter was tuned on this case; its thresholds are its measured values with a margin (a
    regression guard; the Otsu retry came from slice 4 of the 8-slice seed-4 run, not in this case).
    """
    from matrix_chain import run_case

    case = run_case(tmp_path, "harsh", 4, n_slices=4)
    print(json.dumps({k: v for k, v in case.items() if k != "stack_qc"}))
    for entry in case["slices"]:
        assert entry["focus_error"] < 0.25, entry  # old estimate: clipped at 0.05 (errors up to 20x)
        assert abs(entry["tissue_ratio"] - 1) < 0.5, entry
    # the homogeneous white-matter column (8 /mm): within 15% on every slice (the target; the decay-rate
    # map, docs/intensity.md: worst slice 7-13% on harsh seeds 0-5 x 8 slices, 15-29% with the Vermeer mean)
    white = [abs(entry["column_ratio"]["white_matter"] - 1) for entry in case["slices"]]
    assert max(white) <= 0.15, white
    # measured on this case (flattened by the surface plane, scored at 10 um in the flattened frame): NCC 0.826
    # (speckle ceiling 0.982), step 0.078, CV 0.065; since `harsh` carries a 3-voxel field curvature that the
    # mosaic step corrected on the slices where it helped (0 and 2 here, each slice deciding alone): NCC 0.819,
    # step 0.082, CV 0.084 (left uncorrected: 0.819, 0.103, 0.077); one decision for the acquisition (every
    # slice corrected, Lanczos shift): NCC 0.829, step 0.090, CV 0.069; with the stack's lateral gain maps and
    # the boundary ratio below the new slice's cut face (docs/stacking.md, Intensity continuity): NCC 0.867,
    # step 0.038, CV 0.052; with each slice's cut face left to the previous slice and the boundary ratio taken
    # over the tissue: NCC 0.868, step 0.037, CV 0.053. The targets, NCC >= 0.95, steps <= 5% and CV <= 0.05, are not all met:
    # see docs/stacking.md.
    assert case["ncc"] >= 0.855 and case["max_boundary_step"] <= 0.05 and case["plane_ratio_cv"] <= 0.06, case
    # placement against where each slice's content lies; the target is 0.5 voxel per step, 1 cumulative.
    # Measured: 0.03 with the axial correction of 2026-11-30 04:00, 0.37 (step) / 0.46 (cumulative) once the
    # field curvature was corrected on slices 0 and 2 only (each slice deciding alone), 0.045 / 0.045 with one
    # decision for the acquisition (docs/lab-parity.md); before the common tilt and the top-plane skip: 1.13
    # per step, 3.17 on 8 slices.
    assert case["max_z_error_px"] <= 0.5 and np.abs(np.diff(case["z_error_px"])).max() <= 0.5, case
    assert len({s["curvature_status"] for s in case["slices"]}) == 1, case  # one decision for every slice
    assert case["max_z_error_px"] < np.abs(case["motor_z_error_px"]).max(), case  # never worse than the motors
    assert all(abs(r - 1) <= 0.05 for r in case["stack_qc"]["metrics"]["boundary_ratio"][1:] if r is not None)
    # the stack's attenuation, measured through each overlap (docs/intensity.md, Attenuation through the overlap):
    # within 15% of the true tissue mean on every slice with a slice below, where the decay fit is further off
    metrics = case["stack_qc"]["metrics"]
    assert metrics["attenuation_source"] == ["overlap"] * 3 + ["decay fit (no slice below)"], metrics
    assert not any("no slice below" in flag for flag in case["stack_qc"]["flags"])  # the last slice: source only
    overlap = [abs(entry["stack_tissue_ratio"] - 1) for entry in case["slices"][:-1]]
    decay_fit = [abs(entry["tissue_ratio"] - 1) for entry in case["slices"][:-1]]
    assert max(overlap) <= 0.15 and max(overlap) < max(decay_fit), (overlap, decay_fit)
