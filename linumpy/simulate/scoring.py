"""Score pipeline outputs of a simulated acquisition against its ground truth.

Used by the tests and the benchmarks of the depth correction and the
stacking (``benchmarks/bench_intensity.py``, ``benchmarks/bench_stack.py``):

- :func:`true_slice_origins`: where each normalised slice truly starts;
- :func:`phantom_on_stack_grid`: the phantom's reflectivity resampled on the
  stacked volume's grid;
- :func:`stack_scores`: NCC with the phantom inside tissue, the per-plane
  mean-intensity ratio to the truth (its CV along depth and its steps at the
  slab boundaries) and the slice placement error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from linumpy.io.zarr import read_omezarr, read_omezarr_info

#: Fewest tissue voxels for a plane to count in the per-plane ratios.
MIN_PLANE_VOXELS = 200
#: Output planes averaged on each side of a slab boundary.
BOUNDARY_PLANES = 2


def stitched_offset(attributes: dict, slice_truth: dict) -> np.ndarray:
    """``(y, x)``: a stitched pixel ``p`` is the mosaic pixel ``p - offset`` of that slice.

    The stitcher pastes tile ``(r, c)`` at its rounded estimated position.
    """
    estimated = {(r, c): (round(y), round(x)) for r, c, y, x in attributes["tile_positions_px"]}
    return np.mean([np.subtract(estimated[(r, c)], (y, x)) for r, c, y, x in slice_truth["tile_positions_px"]],
                   axis=0)


def true_slice_origins(truth: dict, slice_path: Callable[[int], Path]) -> np.ndarray:
    """True ``(depth, y, x)`` of each normalised slice's first useful voxel, slice pixels, relative to slice 0.

    Depth: the flattened surface of slice ``k`` lies at world depth
    ``k * thickness + mean true surface`` (the true cut, thickness variation
    included). Laterally: the stitched frame's offset and the sample shift.
    ``slice_path(slice_id)`` gives the normalised slice (for its attributes).
    """
    origins = []
    for s in truth["slices"]:
        offset = stitched_offset(read_omezarr_info(slice_path(s["slice_id"])).attributes, s)
        depth = s["slice_id"] * truth["slice_thickness_px"] + s["surface"]["mean_px"]
        origins.append([depth, *(-offset - np.asarray(s["sample_shift_px"]))])
    origins = np.asarray(origins)
    return origins - origins[0]


def phantom_on_stack_grid(
    acquisition: Path, truth: dict, first_slice: Path, record: Sequence[dict], shape: Sequence[int],
    resolution_um: float,
) -> np.ndarray:
    """The phantom's reflectivity averaged over each output voxel of the stack.

    Output voxel ``v`` of slice 0 covers slice-0 voxels ``[(v - o) s, (v - o + 1) s)``
    (``o`` its origin voxel, ``s`` the output voxel in slice voxels); their
    world position follows :func:`true_slice_origins`. A box filter of the
    output voxel's size, sampled at the voxel centres, stands in for the
    area average.
    """
    phantom = read_omezarr(acquisition / "ground_truth" / "phantom.ome.zarr")[0].compute()
    phantom_step = np.asarray(truth["phantom"]["step_px"], np.float64)
    steps = resolution_um / np.asarray(truth["resolution_um"])
    box = ndimage.uniform_filter(phantom, tuple(max(1, int(round(s))) for s in steps / phantom_step), mode="nearest")
    attributes = read_omezarr_info(first_slice).attributes
    offset = stitched_offset(attributes, truth["slices"][0])
    world_start = np.array([truth["slices"][0]["surface"]["mean_px"] - attributes.get("surface_depth_px", 0),
                            *(-offset - np.asarray(truth["slices"][0]["sample_shift_px"]))])
    origin = np.asarray(record[0]["origin_voxel"])
    grid = np.indices(tuple(shape), dtype=np.float64)
    coordinates = [
        ((grid[a] - origin[a] + 0.5) * steps[a] - 0.5 + world_start[a] - truth["phantom"]["world_origin_px"][a])
        / phantom_step[a]
        for a in range(3)
    ]
    return ndimage.map_coordinates(box, coordinates, order=1, cval=0.0)


def plane_ratios(volume: np.ndarray, reference: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Per output plane, mean(volume) / mean(reference) over tissue (NaN for planes with little tissue)."""
    ratios = np.full(volume.shape[0], np.nan)
    for z in range(volume.shape[0]):
        inside = tissue[z]
        if inside.sum() >= MIN_PLANE_VOXELS:
            ratios[z] = volume[z][inside].mean() / reference[z][inside].mean()
    return ratios


def boundary_steps(ratios: np.ndarray, boundaries: Sequence[int]) -> list[float]:
    """At each slab boundary plane ``b``: mean ratio of the planes below over the planes above, minus 1."""
    steps = []
    for b in boundaries:
        above = ratios[max(0, b - BOUNDARY_PLANES) : b]
        below = ratios[b : b + BOUNDARY_PLANES]
        if np.isfinite(above).any() and np.isfinite(below).any():
            steps.append(float(np.nanmean(below) / np.nanmean(above) - 1.0))
    return steps


def stack_scores(
    acquisition: Path, stack_path: Path, record: Sequence[dict], slice_path: Callable[[int], Path],
) -> dict[str, Any]:
    """Scores of a stacked simulated acquisition against its truth.

    Returns
    -------
    dict
        ``ncc`` (inside tissue: phantom > 0.2 and volume > 0), ``plane_ratio_cv``
        (CV along depth of the per-plane mean ratio to the truth),
        ``max_boundary_step`` (largest ``|step|`` of that ratio at a slab
        boundary), ``z_error_px`` (per slice, placed minus true depth, axial
        voxels), ``max_z_error_px``, ``lateral_error_px``.
    """
    import json

    truth = json.loads((acquisition / "ground_truth" / "truth.json").read_text())
    volume, resolution_mm = read_omezarr(stack_path)
    volume = volume.compute()
    resolution_um = resolution_mm[0] * 1000
    reference = phantom_on_stack_grid(acquisition, truth, slice_path(truth["slice_ids"][0]), record, volume.shape,
                                      resolution_um)
    tissue = (reference > 0.2) & (volume > 0)
    a, b = volume[tissue].astype(np.float64), reference[tissue].astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    ncc = float(a @ b / np.sqrt((a @ a) * (b @ b)))
    ratios = plane_ratios(volume, reference, tissue)
    finite = ratios[np.isfinite(ratios)]
    steps = boundary_steps(ratios, [s["origin_voxel"][0] for s in record[1:]])
    found = np.array([s["origin_um"] for s in record]) / np.asarray(truth["resolution_um"])
    error = found - true_slice_origins(truth, slice_path)
    return {
        "ncc": round(ncc, 4),
        "plane_ratio_cv": round(float(finite.std() / finite.mean()), 4),
        "max_boundary_step": round(max((abs(s) for s in steps), default=0.0), 4),
        "z_error_px": np.round(error[:, 0], 3).tolist(),
        "max_z_error_px": round(float(np.abs(error[:, 0]).max()), 3),
        "lateral_error_px": round(float(np.abs(error[:, 1:]).max()), 3),
    }
