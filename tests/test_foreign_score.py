"""The benchmark-only foreign scorer's depth truth (``benchmarks/foreign/score.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

SCORER = Path(__file__).resolve().parents[1] / "benchmarks" / "foreign" / "score.py"


def _scorer():
    spec = importlib.util.spec_from_file_location("foreign_score", SCORER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_slice_shifted_under_a_tilted_surface_is_not_charged_the_tilt():
    """Slice 1 is cut 44 planes deeper and shifted 10 px in y; the surface falls 0.06 plane per px in y.

    Placed right, its plane 0 at the output point of its centre lies 44 planes (66 um) below slice 0's
    plane 0 there; the old scorer compared the planes' intercepts and charged 0.6 plane (0.9 um).
    """
    truth = SimpleNamespace(cfg={"axial_um": 1.5, "lateral_um": 4.0}, truth={"slices": [
        {"world_z_offset_px": 0.0, "motor_z_mm": 5.0}, {"world_z_offset_px": 44.0, "motor_z_mm": 5.066}]})
    plane = [18.0, 0.06, 0.0]
    shifts = {"slices": [
        {"slice_id": 0, "flatten_plane": plane, "shape_voxel": [20, 100, 100], "origin_um": [0.0, 0.0, 0.0],
         "used_registration_z": False},
        {"slice_id": 1, "flatten_plane": plane, "shape_voxel": [20, 100, 100],
         "origin_um": [(44.0 - 0.06 * 10) * 1.5, 40.0, 0.0], "used_registration_z": True}]}
    rows = _scorer().motor_z_errors(truth, shifts)["per_slice"]
    assert rows[1]["placed_error_um"] == 0.0
    assert rows[1]["motor_error_um"] == 0.9
