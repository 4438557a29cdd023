#!/usr/bin/env python3
"""How far a perfect correction gets the stacked volume: the chain rerun with truth-made slices.

For a case ``bench_stack.py --matrix`` ran (its stitched slices, the simulator's truth), the axial
correction, normalisation and stack are rerun (in ``CASE/oracle_MODE/``) with the axial
correction's focus and attenuation compensation of every block replaced (the surface, the flattening
shift, the maps and the uncompensated signal stay the chain's), then scored as the matrix scores
(:func:`linumpy.simulate.scoring.stack_scores`):

- ``chain``: nothing replaced (reproduces the matrix row);
- ``true_focus``: the true focus profile, Vermeer's compensation as the chain computes it;
- ``true_atten``: the estimated focus, the signal divided by the true round-trip transmission
  (from the true attenuation below the true cut);
- ``true_both``: the true focus and the true transmission: the ideal correction of the noisy data
  (what is left: speckle, noise, stitching, normalisation, placement, blending, resampling);
- ``noise_free``: the slice replaced by the speckled phantom below the true cut (no noise, no
  attenuation, no focus, exact stitching): what the normalisation, placement and stack cost alone;
- ``fitted_mu`` (no truth): the estimated focus and, instead of Vermeer's compensation, the
  transmission of the chain's own per-A-line attenuation map (its fitted decay rate) from the
  detected surface down (unsupported A-lines: the map's median).

It also prints ``clip_ceiling``: the matrix's ``ncc_ceiling`` with the speckled phantom first clipped at
its 1st / 95th percentiles over tissue at the slices' resolution, as the normalisation clips
(:data:`linumpy.intensity.options.DEFAULT_PERCENTILES`): what the clip alone costs.

Usage: python benchmarks/stack_oracles.py CASE_DIR [CASE_DIR ...] [--modes chain true_both ...]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
from scipy import ndimage

from bench_depth_errors import world_box
from linumpy.intensity import axial
from linumpy.intensity.axial import correct_slice, uncompensated_path
from linumpy.intensity.options import DEFAULT_PERCENTILES
from linumpy.intensity.slice_normalization import normalize_slice
from linumpy.io.zarr import read_omezarr, read_omezarr_info
from linumpy.mosaic.curvature import quadratic_map
from linumpy.qc.records import qc_record_path, read_qc_record
from linumpy.simulate.imaging import focus_profile, speckle, transmission
from linumpy.simulate.scoring import (pearson, phantom_on_stack_grid, scored_volume, speckled_phantom, stack_scores,
                                      stitched_offset)
from linumpy.stack.files import stack_slice_files

MODES = ("chain", "true_focus", "true_atten", "true_both", "noise_free", "fitted_mu")


def slice_truth(case: Path, truth: dict, entry: dict) -> dict[str, np.ndarray]:
    """On a stitched slice's voxels: the true focus ``F`` (z), transmission ``T`` and speckled reflectivity ``RS``."""
    stitched = case / f"slice_z{entry['slice_id']:02d}_stitch_3d.ome.zarr"
    info = read_omezarr_info(stitched)
    shape = tuple(info.levels[0].shape)
    tile_yx = tuple(truth["tile_shape"][1:])
    r, mu, cut = world_box(case / "raw" / "ground_truth", truth, entry, info.attributes, shape)
    present = np.arange(shape[0])[:, None, None] >= cut[None]
    imaging, conditions = truth["imaging"], truth.get("conditions", {})
    offset = stitched_offset(info.attributes, entry)
    world = (entry["world_z_offset_px"] + np.arange(shape[0]),
             np.rint(np.arange(shape[1]) - offset[0] - entry["sample_shift_px"][0]).astype(np.int64),
             np.rint(np.arange(shape[2]) - offset[1] - entry["sample_shift_px"][1]).astype(np.int64))
    index = truth["slice_ids"].index(entry["slice_id"])
    looks = conditions.get("speckle_looks", 2)
    per_slice = index if conditions.get("speckle_per_slice", False) else None
    true = {"F": focus_profile(shape[0], imaging["focus_px"], imaging["focus_sigma_px"],
                               conditions.get("focus_model", "gaussian"))[:, None, None],
            "T": transmission(mu, present, truth["resolution_um"][0]),
            "RS": (r * speckle(truth["seed"], *world, looks, per_slice) * present).astype(np.float32)}
    depth = curvature_depth(case, entry["slice_id"], tile_yx)
    return {k: ndimage.shift(v, (depth, 0, 0), order=1, mode="nearest") if depth else v for k, v in true.items()}


def curvature_depth(case: Path, slice_id: int, tile_yx: tuple[int, int]) -> float:
    """How much deeper the mosaic grid left a slice than the tiles' world depth (voxels).

    The field-curvature correction moves each A-line up by the fitted map less its mean over
    the tile (:meth:`linumpy.mosaic.curvature.Curvature.offset_map`): the mean stays.
    """
    metrics = read_qc_record(qc_record_path(case / f"mosaic_grid_3d_z{slice_id:02d}.ome.zarr"))["metrics"]
    if not metrics["curvature_applied"]:
        return 0.0
    return float(quadratic_map(metrics["curvature_coefficients_px"], tile_yx).mean(dtype=np.float64))


def oracle_block(mode: str, true: dict[str, np.ndarray], original: Callable) -> Callable:
    """``axial.correct_block`` with the compensation of ``mode`` (the chain's flattening, maps and plain)."""

    def correct_block(data, found_px, stats, settings, dz_mm, surface_depth_px, depth_px, origin=(0, 0),
                      inner=None, uncompensated=False, overwrite_data=False):
        inner = inner or (slice(None), slice(None))
        y0, x0 = origin[0] - (inner[0].start or 0), origin[1] - (inner[1].start or 0)
        box = (slice(None), slice(y0, y0 + data.shape[1]), slice(x0, x0 + data.shape[2]))
        raw = np.array(data, np.float32)
        if mode == "true_focus":
            stats = replace(stats, focus_profile=true["F"][:, 0, 0] / true["F"].max())
        flat, mapped, plain = original(data, found_px, stats, settings, dz_mm, surface_depth_px, depth_px,
                                       origin, inner, uncompensated, overwrite_data)
        if mode in ("chain", "true_focus"):
            return flat, mapped, plain
        within = (slice(None), *inner)
        if mode == "noise_free":
            signal = true["RS"][box][within]
        else:
            gain = true["F"] if mode == "true_both" else _estimated_focus(stats, raw.shape[0])
            if mode == "fitted_mu":  # no truth: the chain's own per-A-line decay rate, from the detected surface
                mu = np.asarray(mapped.mu, np.float64)
                mu = np.where(np.isfinite(mu), mu, np.nanmedian(mu) if np.isfinite(mu).any() else 0.0)
                top = np.where(np.isfinite(found_px[inner]), found_px[inner], 0.0)
                below = np.maximum(np.arange(raw.shape[0])[:, None, None] - top[None], 0.0)
                gain = gain * np.exp(-2.0 * dz_mm * mu[None] * below).astype(np.float32)
            else:
                gain = gain * true["T"][box][within]
            values = raw[within] - np.float32(stats.noise_floor)
            signal = np.divide(values, gain, out=np.zeros_like(values), where=gain > 1e-3)
        shift = axial._flatten_shift(found_px[inner], stats, surface_depth_px, origin)
        return axial.surface.flatten_surface(np.ascontiguousarray(signal, np.float32), shift, depth_px), mapped, plain

    return correct_block


def _estimated_focus(stats: axial.SliceStatistics, n_z: int) -> np.ndarray:
    """The chain's focus profile as a ``(z, 1, 1)`` gain (ones without one)."""
    profile = stats.focus_profile if stats.focus_profile is not None else np.ones(n_z, np.float32)
    return np.asarray(profile, np.float32)[:, None, None]


def run_mode(case: Path, mode: str) -> dict:
    """Rerun the axial correction, the normalisation and the stack of ``case`` with ``mode``; its scores."""
    truth = json.loads((case / "raw" / "ground_truth" / "truth.json").read_text())
    out = case / f"oracle_{mode}"
    out.mkdir(exist_ok=True)
    normalized = {}
    original = axial.correct_block
    for entry in truth["slices"]:
        tag = f"z{entry['slice_id']:02d}"
        stitched = case / f"slice_{tag}_stitch_3d.ome.zarr"
        corrected, final = out / f"slice_{tag}_axial_corr.ome.zarr", out / f"slice_{tag}_normalize.ome.zarr"
        true = slice_truth(case, truth, entry) if mode != "chain" else {}
        with mock.patch.object(axial, "correct_block", oracle_block(mode, true, original)):
            correct_slice(stitched, corrected, n_levels=1, overwrite=True)
        normalize_slice(corrected, final, n_levels=2, overwrite=True)
        normalized[entry["slice_id"]] = final
    volume = out / "volume.ome.zarr"
    stack_slice_files(list(normalized.values()), volume, case / "motor_positions.csv",
                      acquisition_json=case / "raw" / "acquisition.json",
                      uncompensated=[uncompensated_path(out / f"slice_z{i:02d}_axial_corr.ome.zarr")
                                     for i in normalized], overwrite=True, progress=False)
    record = json.loads(volume.with_name("volume_shifts.json").read_text())["slices"]
    scores = stack_scores(case / "raw", volume, record, lambda i: normalized[i])
    return {k: scores[k] for k in ("ncc", "ncc_ceiling", "plane_ratio_cv", "max_boundary_step", "max_z_error_px")}


def clip_ceiling(case: Path) -> float:
    """``ncc_ceiling`` with the speckled phantom clipped at the normalisation's percentiles over tissue first."""
    truth = json.loads((case / "raw" / "ground_truth" / "truth.json").read_text())
    volume = case / "volume.ome.zarr"
    record = json.loads(volume.with_name("volume_shifts.json").read_text())["slices"]
    def path(slice_id: int) -> Path:
        return case / f"slice_z{slice_id:02d}_normalize.ome.zarr"

    scored = scored_volume(case / "raw", volume, record, path)
    speckled = speckled_phantom(case / "raw", truth)
    phantom = read_omezarr(case / "raw" / "ground_truth" / "phantom.ome.zarr")[0].compute()
    low, high = np.percentile(speckled[phantom > 0.2], DEFAULT_PERCENTILES)
    clipped = np.clip(speckled, low, high)
    level0_um = read_omezarr_info(volume).levels[0].scale_mm[0] * 1000
    on_grid = phantom_on_stack_grid(case / "raw", truth, path(truth["slice_ids"][0]), record, scored.volume.shape,
                                    scored.resolution_um, level0_um, clipped)
    return round(pearson(on_grid[scored.tissue], scored.reference[scored.tissue]), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", type=Path, nargs="+", help="Matrix case directories (bench_stack.py --matrix).")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    for case in args.cases:
        row = {"case": case.name, "clip_ceiling": clip_ceiling(case)}
        for mode in args.modes:
            row[mode] = run_mode(case, mode)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
