"""Score pipeline outputs of a simulated acquisition against its ground truth.

Used by the tests and the benchmarks of the depth correction and the
stacking (``benchmarks/bench_intensity.py``, ``benchmarks/bench_stack.py``):

- :func:`true_slice_origins`: where each normalised slice truly starts;
- :func:`phantom_on_stack_grid`: the phantom's reflectivity resampled on the
  stacked volume's grid;
- :func:`stack_scores`: NCC with the phantom inside tissue, the per-plane
  mean-intensity ratio to the truth (its CV along depth and its steps at the
  slab boundaries) and the slice placement error.

The volume is scored on its pyramid level closest to :data:`SCORE_RESOLUTION_UM`
(10 um, the issue's scale): at the slices' own resolution the simulator's
multiplicative speckle alone caps the NCC (about 0.71 for ``tiny`` at 3 um,
0.98 at 10 um). ``ncc_ceiling`` is that cap: the NCC of the noise-free,
speckled phantom with the phantom on the same grid.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from linumpy.io.zarr import read_omezarr, read_omezarr_info
from linumpy.simulate.imaging import speckle

#: Fewest tissue voxels for a plane to count in the per-plane ratios.
MIN_PLANE_VOXELS = 200
#: Output planes averaged on each side of a slab boundary.
BOUNDARY_PLANES = 2
#: Voxel size (um) of the pyramid level scored (the nearest level is used).
SCORE_RESOLUTION_UM = 10.0


def stitched_offset(attributes: dict, slice_truth: dict) -> np.ndarray:
    """``(y, x)``: a stitched pixel ``p`` is the mosaic pixel ``p - offset`` of that slice.

    The stitcher pastes tile ``(r, c)`` at its rounded estimated position.
    """
    estimated = {(r, c): (round(y), round(x)) for r, c, y, x in attributes["tile_positions_px"]}
    return np.mean([np.subtract(estimated[(r, c)], (y, x)) for r, c, y, x in slice_truth["tile_positions_px"]],
                   axis=0)


def true_slice_origins(truth: dict, slice_path: Callable[[int], Path],
                       planes: Sequence[Sequence[float] | None] | None = None) -> np.ndarray:
    """True ``(depth, y, x)`` of each normalised slice's first useful voxel, slice pixels, relative to slice 0.

    Laterally: the stitched frame's offset and the sample shift. In depth:
    where the slice's content truly lies. The axial correction shifted every
    A-line by the plane fitted to its surface (``surface_plane_px``), so
    useful plane 0 of slice ``k`` at stitched pixel ``p`` images world depth
    ``k * thickness + P_k(p)``; the slices' planes may tilt differently,
    so the depth offset to slice 0 is taken at the centroid of slice ``k``'s
    tissue (where the registration looks). Without a fitted plane the mean
    true surface stands in. :func:`true_cut_depths` gives the depth of the
    true cut instead (the axial correction's plane errors included).
    ``slice_path(slice_id)`` gives the normalised slice (for its attributes);
    ``planes``: per slice, the plane its plane 0 follows when the stack
    re-flattened it (the placement record's ``flatten_plane``), else None.
    """
    lateral, used, centroids = [], [], []
    for k, s in enumerate(truth["slices"]):
        path = slice_path(s["slice_id"])
        attributes = read_omezarr_info(path).attributes
        lateral.append(-stitched_offset(attributes, s) - np.asarray(s["sample_shift_px"]))
        plane = planes[k] if planes is not None and planes[k] is not None else attributes.get("surface_plane_px")
        used.append(np.array([s["surface"]["mean_px"], 0.0, 0.0]) if plane is None else np.asarray(plane))
        centroids.append(_tissue_centroid(path) + lateral[-1])  # world (y, x)
    depths = []
    for k, s in enumerate(truth["slices"]):
        depth = s["slice_id"] * truth["slice_thickness_px"]
        here = centroids[k]
        depth += _plane_at(used[k], here - lateral[k]) - _plane_at(used[0], here - lateral[0])
        depths.append(depth)
    origins = np.column_stack([depths, np.asarray(lateral)])
    return origins - origins[0]


def true_cut_depths(truth: dict) -> np.ndarray:
    """Depth (axial voxels) of each slice's true cut relative to slice 0's: the thickness variation included."""
    cuts = np.array([s.get("cut_depth_px", s["world_z_offset_px"]) for s in truth["slices"]], dtype=float)
    return cuts - cuts[0]


def _plane_at(plane: np.ndarray, yx: np.ndarray) -> float:
    """Value of the plane ``a + b y + c x`` at ``yx``."""
    return float(plane[0] + plane[1] * yx[0] + plane[2] * yx[1])


def _tissue_centroid(path: Path) -> np.ndarray:
    """``(y, x)`` centroid (level-0 pixels) of the voxels above the median of a slice's top planes."""
    data = read_omezarr(path)[0]
    top = np.asarray(data[: min(8, data.shape[0])].mean(axis=0).compute(), dtype=np.float64)
    mask = top > np.median(top)
    return np.argwhere(mask).mean(axis=0) if mask.any() else (np.asarray(top.shape) - 1) / 2.0


def phantom_on_stack_grid(
    acquisition: Path, truth: dict, first_slice: Path, record: Sequence[dict], shape: Sequence[int],
    resolution_um: float, level0_um: float | None = None, reflectivity: np.ndarray | None = None,
) -> np.ndarray:
    """The phantom's reflectivity averaged over each output voxel of the stack.

    Output voxel ``v`` of slice 0 covers slice-0 voxels ``[(v - o) s, (v - o + 1) s)``
    after its first kept plane (``o`` its origin voxel, ``s`` the output voxel in slice voxels); their
    world position follows :func:`true_slice_origins`. A box filter of the
    output voxel's size, sampled at the voxel centres, stands in for the
    area average. Depths follow the flattened frame: the true cut plane's
    tilt (:func:`cut_tilt`) is added. ``level0_um``: voxel size of the level the record's
    ``origin_voxel`` refers to (default ``resolution_um``; pyramid levels
    share its corner). ``reflectivity``: a field on the phantom's grid to
    resample instead of the phantom (e.g. the speckled phantom).
    """
    phantom = reflectivity if reflectivity is not None else read_omezarr(
        acquisition / "ground_truth" / "phantom.ome.zarr")[0].compute()
    phantom_step = np.asarray(truth["phantom"]["step_px"], np.float64)
    steps = resolution_um / np.asarray(truth["resolution_um"])
    box = ndimage.uniform_filter(phantom, tuple(max(1, int(round(s))) for s in steps / phantom_step), mode="nearest")
    attributes = read_omezarr_info(first_slice).attributes
    offset = stitched_offset(attributes, truth["slices"][0])
    # the first kept plane (below the first slice's cut face) is the one placed at ``origin_voxel``
    first_plane = record[0].get("kept_planes", [attributes.get("surface_depth_px", 0)])[0]
    world_start = np.array([truth["slices"][0]["surface"]["mean_px"] - attributes.get("surface_depth_px", 0)
                            + first_plane,
                            *(-offset - np.asarray(truth["slices"][0]["sample_shift_px"]))])
    origin = np.asarray(record[0]["origin_voxel"]) * (level0_um or resolution_um) / resolution_um
    grid = np.indices(tuple(shape), dtype=np.float64)
    world = [(grid[a] - origin[a] + 0.5) * steps[a] - 0.5 + world_start[a] for a in range(3)]
    world[0] += cut_tilt(truth, world[1], world[2])
    coordinates = [(world[a] - truth["phantom"]["world_origin_px"][a]) / phantom_step[a] for a in range(3)]
    return ndimage.map_coordinates(box, coordinates, order=1, cval=0.0)


def cut_tilt(truth: dict, world_y: np.ndarray, world_x: np.ndarray) -> np.ndarray:
    """Depth (slice voxels) of the true cut plane at world ``(y, x)`` minus its mean: the flattening's shear.

    The stack flattens every slice by one plane (the slices' common tilt), so
    output plane ``j`` lies ``j`` voxels below that plane, not below its mean
    depth. The true plane is the simulator's cut tilt
    (``imaging.surface_tilt_px_per_px``), the same for every slice; it is
    centred on slice 0's surface map, whose mean depth sets the reference's
    first plane. Not a least-squares fit to slice 0's true surface: its bumps
    are smooth, so their large scales tilt that fit (on ``harsh`` seed 0,
    ``(0.076, -0.103)`` for a cut tilt of ``(0.05, -0.06)``), the tissue
    below them does not move, and the other slices' fits tilt otherwise.

    Examples
    --------
    >>> truth = {"imaging": {"surface_tilt_px_per_px": [0.5, 0.0]},
    ...          "slices": [{"surface": {"origin_px": [0, 0], "shape": [5, 5]}, "sample_shift_px": [0, 0]}]}
    >>> cut_tilt(truth, np.array([0.0, 2.0, 4.0]), np.zeros(3)).tolist()
    [-1.0, 0.0, 1.0]
    """
    entry = truth["slices"][0]
    tilt_y, tilt_x = truth["imaging"]["surface_tilt_px_per_px"]
    centre = [entry["surface"]["origin_px"][a] - entry["sample_shift_px"][a] + (entry["surface"]["shape"][a] - 1) / 2
              for a in range(2)]
    return tilt_y * (world_y - centre[0]) + tilt_x * (world_x - centre[1])


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
        ``ncc`` (inside tissue: phantom > 0.2 and volume > 0; on the pyramid
        level closest to :data:`SCORE_RESOLUTION_UM`, ``score_resolution_um``),
        ``ncc_ceiling`` (the speckled phantom's NCC there), ``plane_ratio_cv``
        (CV along depth of the per-plane mean ratio to the truth),
        ``max_boundary_step`` (largest ``|step|`` of that ratio at a slab
        boundary), ``z_error_px`` (per slice, placed minus true depth of its
        content, axial voxels, :func:`true_slice_origins`), ``max_z_error_px``,
        ``motor_z_error_px`` (the same for the motor positions alone: the naive
        baseline), ``cut_z_error_px`` (placed minus the true cut depth,
        :func:`true_cut_depths`: includes the surface planes' errors), ``lateral_error_px``.
    """
    truth, scored = _truth(acquisition), scored_volume(acquisition, stack_path, record, slice_path)
    volume, reference, speckled, tissue = scored.volume, scored.reference, scored.speckled, scored.tissue
    resolution_um = scored.resolution_um
    ratios = plane_ratios(volume, reference, tissue)
    finite = ratios[np.isfinite(ratios)]
    steps = boundary_steps(ratios, scored.slab_starts[1:])
    true = true_slice_origins(truth, slice_path, [s.get("flatten_plane") for s in record])
    error = np.array([s["origin_um"] for s in record]) / np.asarray(truth["resolution_um"]) - true
    motor_error = np.array([s["motor_origin_um"][0] for s in record]) / truth["resolution_um"][0] - true[:, 0]
    cut_error = np.array([s["origin_um"][0] for s in record]) / truth["resolution_um"][0] - true_cut_depths(truth)
    return {
        "ncc": round(pearson(volume[tissue], reference[tissue]), 4),
        "ncc_ceiling": round(pearson(speckled[tissue], reference[tissue]), 4),
        "score_resolution_um": resolution_um,
        "plane_ratio_cv": round(float(finite.std() / finite.mean()), 4),
        "max_boundary_step": round(max((abs(s) for s in steps), default=0.0), 4),
        "z_error_px": np.round(error[:, 0], 3).tolist(),
        "max_z_error_px": round(float(np.abs(error[:, 0]).max()), 3),
        "motor_z_error_px": np.round(motor_error, 3).tolist(),
        "cut_z_error_px": np.round(cut_error, 3).tolist(),
        "lateral_error_px": round(float(np.abs(error[:, 1:]).max()), 3),
    }


@dataclass(frozen=True)
class ScoredVolume:
    """A stacked volume on its scored level beside the truth on the same grid (:func:`scored_volume`).

    Attributes
    ----------
    volume, reference, speckled : ndarray, shape (z, y, x)
        The stack's level closest to :data:`SCORE_RESOLUTION_UM`, the phantom's reflectivity and the
        speckled phantom averaged over its voxels (:func:`phantom_on_stack_grid`).
    tissue : ndarray of bool
        Voxels scored: phantom > 0.2 and volume > 0.
    resolution_um : float
        Voxel size of the level.
    slab_starts : list of int
        First plane of each slice (its placed origin) on the level.
    """

    volume: np.ndarray
    reference: np.ndarray
    speckled: np.ndarray
    tissue: np.ndarray
    resolution_um: float
    slab_starts: list[int]


def scored_volume(acquisition: Path, stack_path: Path, record: Sequence[dict],
                  slice_path: Callable[[int], Path]) -> ScoredVolume:
    """The arrays :func:`stack_scores` scores (see :class:`ScoredVolume`)."""
    truth = _truth(acquisition)
    level0_um = read_omezarr_info(stack_path).levels[0].scale_mm[0] * 1000
    volume, resolution_um = _scored_level(stack_path)
    first = slice_path(truth["slice_ids"][0])
    reference = phantom_on_stack_grid(acquisition, truth, first, record, volume.shape, resolution_um, level0_um)
    speckled = phantom_on_stack_grid(acquisition, truth, first, record, volume.shape, resolution_um, level0_um,
                                     speckled_phantom(acquisition, truth))
    scale = level0_um / resolution_um
    return ScoredVolume(volume, reference, speckled, (reference > 0.2) & (volume > 0), resolution_um,
                        [int(round(s["origin_voxel"][0] * scale)) for s in record])


def _truth(acquisition: Path) -> dict:
    """The simulator's ``truth.json`` of an acquisition."""
    return json.loads((acquisition / "ground_truth" / "truth.json").read_text())


def _scored_level(stack_path: Path) -> tuple[np.ndarray, float]:
    """The stack's pyramid level closest to :data:`SCORE_RESOLUTION_UM` and its voxel size (um)."""
    levels = read_omezarr_info(stack_path).levels
    level = int(np.argmin([abs(np.log(info.scale_mm[0] * 1000 / SCORE_RESOLUTION_UM)) for info in levels]))
    volume, resolution_mm = read_omezarr(stack_path, level)
    return volume.compute(), resolution_mm[0] * 1000


def speckled_phantom(acquisition: Path, truth: dict) -> np.ndarray:
    """The phantom's reflectivity times the simulator's speckle (noise-free, unattenuated), on the phantom's grid."""
    phantom = read_omezarr(acquisition / "ground_truth" / "phantom.ome.zarr")[0].compute()
    if truth["phantom"]["step_px"] != [1, 1, 1]:  # speckle lives on world voxels: only a full-resolution phantom
        return phantom
    z, y, x = (np.arange(n) + o for n, o in zip(phantom.shape, truth["phantom"]["world_origin_px"], strict=True))
    for start in range(0, z.size, 16):
        phantom[start : start + 16] *= speckle(truth["seed"], z[start : start + 16], y, x)
    return phantom


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays."""
    a, b = a.astype(np.float64) - a.mean(dtype=np.float64), b.astype(np.float64) - b.mean(dtype=np.float64)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))
