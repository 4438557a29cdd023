"""The ``truth.json`` of a simulated acquisition (every field: ``docs/simulator.md``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from linumpy.io.naming import slice_tag
from linumpy.simulate.geometry import AcquisitionGeometry
from linumpy.simulate.imaging import tissue_fraction
from linumpy.simulate.phantom import TISSUE_CLASSES, Phantom

FORMAT_VERSION = 1
#: Tiles with less sample than this fraction of their footprint are "empty".
EMPTY_TILE_FRACTION = 0.05


def build_truth(phantom: Phantom, geometry: AcquisitionGeometry, seed: int, layout: str) -> dict[str, Any]:
    """Return the JSON-able ground truth of a simulated acquisition."""
    preset = geometry.preset
    nz, ny, nx = preset.tile_shape
    (z0, z1), (y0, y1), (x0, x1) = geometry.world_extent()
    step = preset.truth_step
    truth = {
        "format_version": FORMAT_VERSION,
        "preset": preset.name,
        "seed": seed,
        "layout": layout,
        "n_slices": preset.n_slices,
        "slice_ids": [s.slice_id for s in geometry.slices],
        "grid_shape": list(preset.grid_shape),
        "tile_shape": list(preset.tile_shape),
        "resolution_um": [preset.axial_resolution_um, preset.lateral_resolution_um, preset.lateral_resolution_um],
        "tile_step_px": list(preset.tile_step_px),
        "overlap_fraction": preset.overlap,
        "mosaic_shape_px": list(geometry.mosaic_shape),
        "stage_error_max_px": preset.stage_error_px,
        "slice_shift_max_px": preset.slice_shift_px,
        "slice_thickness_px": preset.slice_thickness_px,
        "slice_thickness_um": preset.slice_thickness_px * preset.axial_resolution_um,
        "raw": {
            "n_repeat": preset.n_repeat,
            "n_extra": preset.n_extra,
            "n_bin_files": preset.n_bin_files,
            "top_z": preset.top_z,
            "bottom_z": preset.top_z + nz - 1,
            "focus_z": preset.top_z + round(preset.focus_px),
        },
        "imaging": {
            "focus_px": preset.focus_px,
            "focus_sigma_px": preset.focus_sigma_px,
            "vignetting": preset.vignetting,
            "noise_floor": preset.noise_floor,
            "speckle_mean": 1.0,
            "round_trip_factor": 2,
            "surface_offset_px": preset.surface_offset_px,
            "surface_tilt_px_per_px": list(preset.surface_tilt),
            "surface_bump_px": preset.surface_bump_px,
        },
        "tissue_classes": [
            {"label": c.label, "name": c.name, "reflectivity": c.reflectivity, "attenuation_per_mm": c.attenuation_per_mm}
            for c in TISSUE_CLASSES
        ],
        "phantom": {
            "reflectivity_path": "phantom.ome.zarr",
            "attenuation_path": "attenuation.ome.zarr",
            "world_origin_px": [z0, y0, x0],
            "step_px": [1, step, step],
            "shape": [z1 - z0, len(range(y0, y1, step)), len(range(x0, x1, step))],
        },
        "reference_columns": [
            {"label": c.label, "center_world_px": _rounded(c.center_px), "radius_px": round(c.radius_px, 3)}
            for c in phantom.columns
        ],
        "empty_tile_fraction": EMPTY_TILE_FRACTION,
        "slices": [_slice_truth(phantom, geometry, index) for index in range(preset.n_slices)],
    }
    conditions = preset.conditions()
    if conditions:  # test-matrix conditions only: the standard presets' truth is unchanged
        truth["conditions"] = {k: list(v) if isinstance(v, tuple) else v for k, v in conditions.items()}
        for entry, slice_geometry in zip(truth["slices"], geometry.slices):
            entry["cut_depth_px"] = round(slice_geometry.world_z_offset_px + slice_geometry.cut_offset_px, 4)
    if preset.slice_rotation_deg:  # each slice's rotation_deg is about this point
        truth["rotation_centre_world_px"] = list(geometry.center_px)
    return truth


def _rounded(values, digits: int = 3) -> list[float]:
    return [round(float(v), digits) for v in values]


def _slice_truth(phantom: Phantom, geometry: AcquisitionGeometry, index: int) -> dict[str, Any]:
    preset = geometry.preset
    rows, cols = preset.grid_shape
    sg = geometry.slices[index]
    surface = geometry.surface_in_mosaic(index)
    fractions = [
        [r, c, round(tissue_fraction(phantom, geometry, index, r, c), 4)] for r in range(rows) for c in range(cols)
    ]
    galvo = {"galvo_shift_px": sg.galvo_shift_px} if preset.galvo_shift_px else {}
    if preset.field_curvature_px:
        galvo["field_curvature_px"] = preset.field_curvature_px
    if preset.slice_rotation_deg:
        galvo["rotation_deg"] = sg.rotation_deg
    return galvo | {
        "slice_id": sg.slice_id,
        "world_z_offset_px": sg.world_z_offset_px,
        "sample_shift_px": list(sg.sample_shift_px),
        "motor_position_mm": geometry.motor_position_mm(index, 0, 0),
        "tile_positions_px": [[r, c, y, x] for (r, c), (y, x) in sorted(sg.tile_origins_px.items())],
        "surface": {
            "path": f"surface_{slice_tag(sg.slice_id)}.ome.zarr",
            "origin_px": list(geometry.surface_origin_px),
            "shape": list(surface.shape),
            "mean_px": round(float(surface.mean()), 4),
            "min_px": round(float(surface.min()), 4),
            "max_px": round(float(surface.max()), 4),
        },
        "homogeneous_regions": [_homogeneous_region(phantom, geometry, index, k) for k in range(len(phantom.columns))],
        "tile_tissue_fraction": fractions,
        "empty_tiles": [[r, c] for r, c, f in fractions if f < EMPTY_TILE_FRACTION],
    }


def _homogeneous_region(phantom: Phantom, geometry: AcquisitionGeometry, index: int, k: int) -> dict[str, Any]:
    """The square inscribed in reference column ``k``, in slice ``index``'s mosaic frame."""
    column = phantom.columns[k]
    tissue = next(c for c in TISSUE_CLASSES if c.label == column.label)
    sg = geometry.slices[index]
    half = int(math.floor(column.radius_px / math.sqrt(2))) - 1
    centre = geometry.unturned_world(index, column.center_px)  # the column turns with the sample
    cy = int(round(centre[0])) + sg.sample_shift_px[0]
    cx = int(round(centre[1])) + sg.sample_shift_px[1]
    box = [cy - half, cy + half + 1, cx - half, cx + half + 1]
    world_y = np.arange(box[0], box[1]) - sg.sample_shift_px[0]
    world_x = np.arange(box[2], box[3]) - sg.sample_shift_px[1]
    top = int(math.ceil(float(geometry.surface_depth(index, world_y, world_x).max()))) + 1
    nz, ny, nx = geometry.preset.tile_shape
    tiles = []
    for (r, c), (ty, tx) in sorted(sg.tile_origins_px.items()):
        if ty <= box[0] and box[1] <= ty + ny and tx <= box[2] and box[3] <= tx + nx:
            tiles.append([r, c, box[0] - ty, box[1] - ty, box[2] - tx, box[3] - tx])
    return {
        "label": tissue.label,
        "name": tissue.name,
        "reflectivity": tissue.reflectivity,
        "attenuation_per_mm": tissue.attenuation_per_mm,
        "box_px": box,
        "depth_px": [top, nz],
        "tiles": tiles,
    }
