"""The benchmark-only foreign scorer's depth truth (``benchmarks/foreign/score.py``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import zarr

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


def _last_slab():
    sys.path.insert(0, str(SCORER.parent))  # last_slab.py imports score.py as a sibling
    spec = importlib.util.spec_from_file_location("foreign_last_slab", SCORER.parent / "last_slab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_last_slab_model_sees_what_lies_below_the_range_only_with_the_true_tail(tmp_path):
    """One region down to the tile's bottom; below it the same attenuation but 3x the reflectivity.

    The compensation is exact on a uniform column either way; the end-of-range extension (the decay of
    the range's last windows) cannot see the brighter tissue below, the true tail does: its ``T[k]`` gains
    the bright signal, more so relative to ``T[k]`` the deeper ``k`` (a field growing darker with depth).
    """
    n_z, tile = 80, 40
    regions = [{"name": "a", "reflectivity": 0.3, "attenuation_per_mm": 5.0},
               {"name": "b", "reflectivity": 0.9, "attenuation_per_mm": 5.0}]
    labels = np.zeros((n_z, 4, 4), np.int64)
    truth = {"config": {"thickness": 20.0, "tile": [tile, 4, 4], "axial_um": 1.5, "regions": regions}}
    (tmp_path / "ground_truth").mkdir()
    (tmp_path / "ground_truth" / "truth.json").write_text(json.dumps(truth))
    np.save(tmp_path / "ground_truth" / "surfaces.npy", np.full((2, 4, 4), 25.0))  # slice 1 images 20-59
    for case in ("uniform", "bright below"):
        if case == "bright below":
            labels[60:] = 1
        np.save(tmp_path / "ground_truth" / "labels.npy", labels)
        np.save(tmp_path / "ground_truth" / "reflectivity.npy",
                np.array([r["reflectivity"] for r in regions], np.float32)[labels])
        # below the cut, relative to its first plane (a level, -2 mu dz here, is the scalar gains' matter)
        extension, true_tail = (field - field[0] for field in
                                (_last_slab().tail_field(tmp_path, 1, flag)[25:60, 1, 1] for flag in (True, False)))
        assert np.abs(extension).max() < 1e-3, case  # the range's last windows decay geometrically
        if case == "uniform":
            assert np.abs(true_tail).max() < 1e-3
        else:
            assert true_tail[-1] < -0.3 and np.all(np.diff(true_tail) < 0), true_tail  # measured -0.78 at the bottom


def test_the_attenuation_map_is_scored_in_the_stitched_slice_own_frame(tmp_path):
    """A stripe 8 A-lines wide of 2 /mm in gel (0.4 /mm); the transform's positions are 5 px below the output's.

    The fusion translates the solve's positions (here down to -5 px) so that the smallest is 0: the map,
    in that output frame, is exact, and scored through the stitched slice's own positions both regions
    read their truth; through the transform JSON's the stripe's A-lines would be read 5 px off (most of
    them the gel's 0.4).
    """
    regions = [{"name": "gel", "reflectivity": 0.06, "attenuation_per_mm": 0.4},
               {"name": "stripe", "reflectivity": 0.12, "attenuation_per_mm": 2.0}]
    n_z, size, margin = 60, 40, 3
    labels = np.zeros((n_z, size + 2 * margin, size + 2 * margin), np.uint8)
    labels[:, :, 20:28] = 1
    output = [[0, 0, 0.0, 0.0]]
    truth = {"config": {"thickness": 20.0, "tile": [n_z, size, size], "curvature": 2.0, "axial_um": 1.5,
                        "regions": regions},
             "margin_px": margin, "slices": [{"slice_id": 0, "sample_shift_px": [0.0, 0.0],
                                              "tile_positions_px": [[0, 0, 0.0, 0.0]]}]}
    (tmp_path / "ground_truth").mkdir()
    np.save(tmp_path / "ground_truth" / "labels.npy", labels)
    np.save(tmp_path / "ground_truth" / "reflectivity.npy", np.array([0.06, 0.12], np.float32)[labels])
    np.save(tmp_path / "ground_truth" / "surfaces.npy", np.full((1, *labels.shape[1:]), 5.0, np.float32))
    stitched = zarr.open_group(str(tmp_path / "stitch_3d" / "slice_z00_stitch_3d.ome.zarr"), mode="w")
    stitched.attrs["linumpy"] = {"tile_positions_px": output}
    (tmp_path / "stitch_3d" / "slice_z00_stitch_3d_transform.json").write_text(
        json.dumps({"tile_positions_px": [[0, 0, -5.0, -5.0]]}))
    world = np.array([r["attenuation_per_mm"] for r in regions])[labels[0, margin:-margin, margin:-margin]]
    mapped = zarr.open_group(str(tmp_path / "axial_corr" / "slice_z00_axial_corr_attenuation.ome.zarr"), mode="w")
    mapped.create_array("0", data=world.astype(np.float32))
    scores = _scorer().attenuation_scores(tmp_path, truth, tmp_path)
    assert scores["stripe"]["relative_error"] == 0.0 and scores["gel"]["relative_error"] == 0.0
    assert scores["stripe"]["n_alines"] == 8 * size


def test_the_texture_reference_is_what_the_true_signal_decays_at_over_the_scored_planes(tmp_path):
    """Two regions of 5 /mm; in one the reflectivity falls by 1 % a plane (its texture), in the other it is flat.

    Fitted over the 40 planes below the cut (less 3), the noise-free signal ``R * T`` of the falling region
    decays at ``5 + ln(1 / 0.99) / (2 dz)`` = 8.35 /mm (dz 1.5 um): the texture reference. A map that reads
    exactly that is off by +67 % from the region's attenuation and by 0 from the reference; the flat
    region's reference is its attenuation. Fails on main (no reference).
    """
    dz_um, n_z, size, margin, cut = 1.5, 70, 24, 2, 6.0
    regions = [{"name": "flat", "reflectivity": 0.5, "attenuation_per_mm": 5.0},
               {"name": "falling", "reflectivity": 0.5, "attenuation_per_mm": 5.0}]
    labels = np.zeros((n_z, size + 2 * margin, size + 2 * margin), np.uint8)
    labels[:, :, margin + size // 2:] = 1
    z = np.arange(n_z, dtype=np.float64)[:, None, None]
    reflectivity = np.where(labels == 1, 0.5 * 0.99 ** z, 0.5)
    (tmp_path / "ground_truth").mkdir()
    np.save(tmp_path / "ground_truth" / "labels.npy", labels)
    np.save(tmp_path / "ground_truth" / "reflectivity.npy", reflectivity.astype(np.float32))
    np.save(tmp_path / "ground_truth" / "surfaces.npy", np.full((1, *labels.shape[1:]), cut, np.float32))
    truth = {"config": {"thickness": 20.0, "tile": [n_z, size, size], "curvature": 2.0, "axial_um": dz_um,
                        "regions": regions},
             "margin_px": margin, "slices": [{"slice_id": 0, "sample_shift_px": [0.0, 0.0],
                                              "tile_positions_px": [[0, 0, 0.0, 0.0]]}]}
    stitched = zarr.open_group(str(tmp_path / "stitch_3d" / "slice_z00_stitch_3d.ome.zarr"), mode="w")
    stitched.attrs["linumpy"] = {"tile_positions_px": [[0, 0, 0.0, 0.0]]}
    falling = 5.0 + np.log(1 / 0.99) / (2 * dz_um / 1000)
    mapped = np.where(labels[0, margin:-margin, margin:-margin] == 1, falling, 5.0).astype(np.float32)
    group = zarr.open_group(str(tmp_path / "axial_corr" / "slice_z00_axial_corr_attenuation.ome.zarr"), mode="w")
    group.create_array("0", data=mapped)
    scores = _scorer().attenuation_scores(tmp_path, truth, tmp_path)
    assert scores["falling"]["texture_reference_per_mm"] == round(falling, 3)
    assert scores["falling"]["error_vs_texture_reference"] == 0.0
    assert scores["falling"]["relative_error"] == round(falling / 5.0 - 1, 3)
    assert scores["flat"]["texture_reference_per_mm"] == 5.0 and scores["flat"]["error_vs_texture_reference"] == 0.0


def test_the_flags_are_the_final_products_records_not_a_refused_first_correction(tmp_path):
    """A borrower's first axial record (axial_corr_refused/) is replaced by its final one (axial_corr/)."""
    def record(folder: str, slice_id: int, flag: str) -> None:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / f"slice_z{slice_id:02d}_axial_corr_qc.json").write_text(json.dumps(
            {"step": "axial_corr", "slice_id": slice_id, "flags": [flag]}))

    record("axial_corr_refused", 1, "focus correction skipped")
    record("axial_corr", 1, "focus profile borrowed")
    record("axial_corr_refused", 2, "kept: no final record replaces it")
    assert _scorer().qc_flags(tmp_path) == ["axial_corr 1: focus profile borrowed",
                                            "axial_corr 2: kept: no final record replaces it"]
