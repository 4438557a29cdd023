"""The depth-correction test matrix: simulate a condition, run the chain, score it.

Shared by ``bench_intensity.py --matrix`` and ``bench_stack.py --matrix``.
Each case simulates ``tiny`` with one condition of
:data:`linumpy.simulate.conditions.CONDITIONS` and a seed, then runs mosaic
grid, stitch, axial correction, normalization and stacking in this process
with every step's defaults, and scores the result against the truth.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from linumpy.intensity.axial import AxialSettings, correct_slice, output_paths, uncompensated_path
from linumpy.intensity.focus import focus_model
from linumpy.intensity.slice_normalization import normalize_slice
from linumpy.io.acquisition import open_acquisition
from linumpy.io.motor_table import collect_motor_positions, write_motor_positions
from linumpy.io.zarr import read_omezarr, read_omezarr_info
from linumpy.mosaic.curvature import quadratic_map
from linumpy.mosaic.curvature_pool import estimate_acquisition_curvature
from linumpy.mosaic.grid import write_mosaic_grid
from linumpy.qc.records import qc_record_path, read_qc_record
from linumpy.simulate import get_preset, simulate_acquisition
from linumpy.simulate.conditions import condition_preset
from linumpy.simulate.imaging import field_curvature_map
from linumpy.simulate.scoring import stack_scores, stitched_offset
from linumpy.stack.files import stack_slice_files
from linumpy.stitching.options import DEFAULT_FLATFIELD
from linumpy.stitching.stitch import stitch_mosaic_grid

#: Default matrix seeds: the parameters were tuned on seed 0 of ``harsh`` only; 1-5 were measured.
TUNE_SEEDS = (0, 1, 2)
CHECK_SEEDS = (3, 4, 5)


#: Field-curvature modes of :func:`run_case`: one decision for the acquisition (the pipelines' default), each
#: slice deciding alone (the mosaic step run by hand), or none.
CURVATURE_MODES = ("acquisition", "slice", "off")


def run_case(workdir: Path, condition: str, seed: int, n_slices: int = 8, stack: bool = True,
             curvature: str = "acquisition", axial_settings: AxialSettings = AxialSettings(),
             restack: bool = False, stitch_flatfield: str = DEFAULT_FLATFIELD, reaxial: bool = False,
             **fields: Any) -> dict[str, Any]:
    """Simulate one case, run the chain (field curvature decided as ``curvature`` says), return its scores.

    ``axial_settings``: the axial correction's (default: the step's defaults). ``restack``: keep the
    per-slice outputs a previous run left in the case's folder and only stack again (a change to the
    stack measured on the same slices). ``reaxial``: keep the stitched slices a previous run left there and
    run from the axial correction (a change to it measured on the same slices). ``stitch_flatfield``: the
    stitcher's ``--flatfield``. ``fields``: preset fields set on top of the condition (e.g.
    ``slice_rotation_deg``).
    """
    case = workdir / f"{condition}_s{seed}"
    acquisition = case / "raw"
    preset = replace(condition_preset(get_preset("tiny"), condition, n_slices), **fields)
    if not (acquisition / "ground_truth" / "truth.json").exists():
        simulate_acquisition(acquisition, preset, seed=seed, overwrite=True)
    truth = json.loads((acquisition / "ground_truth" / "truth.json").read_text())
    reader = open_acquisition(acquisition)
    stitched_all = all((case / f"slice_z{i:02d}_stitch_3d.ome.zarr").exists() for i in truth["slice_ids"])
    pooled = (estimate_acquisition_curvature(reader).curvature
              if curvature == "acquisition" and not restack and not (reaxial and stitched_all) else None)
    normalized = {}
    scores: dict[str, Any] = {"condition": condition, "seed": seed, "curvature": curvature, "case_dir": str(case),
                              "slices": []}
    for slice_id in truth["slice_ids"]:
        tag = f"z{slice_id:02d}"
        grid, stitched = case / f"mosaic_grid_3d_{tag}.ome.zarr", case / f"slice_{tag}_stitch_3d.ome.zarr"
        axial, final = case / f"slice_{tag}_axial_corr.ome.zarr", case / f"slice_{tag}_normalize.ome.zarr"
        if not (restack and final.exists()):
            if not (reaxial and stitched.exists()):
                write_mosaic_grid(reader.slice(slice_id), grid, case / f"mosaic_grid_2d_{tag}.ome.zarr",
                                  n_levels=1, overwrite=True, fix_field_curvature=curvature != "off",
                                  field_curvature=pooled)
                stitch_mosaic_grid(grid, stitched, flatfield=stitch_flatfield, n_levels=1, overwrite=True)
            correct_slice(stitched, axial, axial_settings, n_levels=1, overwrite=True)
            normalize_slice(axial, final, n_levels=2, overwrite=True)
        normalized[slice_id] = final
        scores["slices"].append(attenuation_scores(acquisition, truth, slice_id, axial)
                                | curvature_scores(preset, read_qc_record(qc_record_path(grid))["metrics"]))
    if stack:
        motors = case / "motor_positions.csv"
        write_motor_positions(collect_motor_positions(reader), motors, overwrite=True)
        out = case / "volume.ome.zarr"
        stack_slice_files(list(normalized.values()), out, motors, acquisition_json=acquisition / "acquisition.json",
                          uncompensated=[uncompensated_path(case / f"slice_z{i:02d}_axial_corr.ome.zarr")
                                         for i in normalized], overwrite=True, progress=False)
        record = json.loads(out.with_name("volume_shifts.json").read_text())["slices"]
        scores.update(stack_scores(acquisition, out, record, lambda i: normalized[i]))
        scores["stack_qc"] = read_qc_record(qc_record_path(out))
        for entry, measured in zip(scores["slices"], scores["stack_qc"]["metrics"]["tissue_attenuation_per_mm"],
                                   strict=True):
            entry["stack_tissue_ratio"] = None if measured is None else round(measured / entry["true_tissue_mean"], 3)
    return scores


def curvature_scores(preset: Any, metrics: dict) -> dict[str, Any]:
    """The mosaic step's curvature decision and the curvature it left (truth minus the applied correction,
    peak to peak over a tile: the depth step at tile borders, voxels)."""
    truth = field_curvature_map(preset)
    applied = quadratic_map(metrics["curvature_coefficients_px"], truth.shape) if metrics["curvature_applied"] else 0
    return {"curvature_status": metrics["curvature_status"],
            "curvature_residual_px": round(float(np.ptp(truth - applied)), 3)}


def attenuation_scores(acquisition: Path, truth: dict, slice_id: int, axial: Path) -> dict[str, Any]:
    """Measured / true attenuation of one slice: reference columns and the tissue mean."""
    entry = next(s for s in truth["slices"] if s["slice_id"] == slice_id)
    qc = read_qc_record(qc_record_path(axial))
    mu_map = read_omezarr(output_paths(axial)[1])[0].compute()
    offset = np.rint(stitched_offset(read_omezarr_info(axial).attributes, entry)).astype(int)
    columns = {}
    for region in entry["homogeneous_regions"]:
        y0, y1, x0, x1 = region["box_px"]
        box = mu_map[max(0, y0 + offset[0]) : y1 + offset[0], max(0, x0 + offset[1]) : x1 + offset[1]]
        columns[region["name"]] = round(float(np.nanmedian(box)) / region["attenuation_per_mm"], 3)
    measured = qc["metrics"]["mean_attenuation_tissue_per_mm"]
    true_mean = true_tissue_attenuation(acquisition, truth, entry)
    return {
        "slice_id": slice_id,
        "column_ratio": columns,
        "tissue_ratio": None if measured is None else round(measured / true_mean, 3),
        "true_tissue_mean": round(true_mean, 4),
        "focus_error": focus_error(truth, entry, qc["metrics"]),
        "focus_mode": qc["metrics"]["focus_mode"],
        "flags": qc["flags"],
    }


def focus_error(truth: dict, entry: dict, metrics: dict) -> float | None:
    """Largest ``|estimated / true - 1|`` of the focus profile below the cut (both scaled at the reference depth)."""
    if "focus_profile" not in metrics:
        return None
    estimated = np.asarray(metrics["focus_profile"])
    imaging = truth["imaging"]
    depth = np.arange(estimated.size)
    true = focus_model(truth.get("conditions", {}).get("focus_model", "gaussian"), depth, 1.0,
                       imaging["focus_px"], imaging["focus_sigma_px"])
    reference = int(round(metrics["focus_reference_depth_um"] / truth["resolution_um"][0]))
    below = depth >= int(np.ceil(entry["surface"]["max_px"]))
    ratio = (estimated / estimated[reference]) / (true / true[reference])
    return round(float(np.abs(ratio[below] - 1).max()), 3)


def true_tissue_attenuation(acquisition: Path, truth: dict, entry: dict) -> float:
    """Mean true attenuation of the tissue voxels (> 1 /mm) imaged below the slice's cut."""
    volume = read_omezarr(acquisition / "ground_truth" / "attenuation.ome.zarr")[0]
    z0 = truth["phantom"]["world_origin_px"][0]
    top = entry["world_z_offset_px"] + int(np.ceil(entry["surface"]["max_px"])) - z0
    bottom = entry["world_z_offset_px"] + truth["tile_shape"][0] - z0
    mu = volume[top:bottom].compute()
    return float(mu[mu > 1.0].mean())


def intensity_row(case: dict[str, Any]) -> dict[str, Any]:
    """Worst per-slice values of one case: focus error, tissue and column attenuation errors, flags."""
    slices = case["slices"]

    def worst(values: list) -> float | None:
        values = [abs(v - 1) for v in values if v is not None and np.isfinite(v)]
        return round(max(values), 3) if values else None

    return {
        "condition": case["condition"], "seed": case["seed"],
        "focus_error": max((s["focus_error"] for s in slices if s["focus_error"] is not None), default=None),
        "tissue_mu_error": worst([s["tissue_ratio"] for s in slices]),
        "median_tissue_mu_error": round(float(np.median([abs(s["tissue_ratio"] - 1) for s in slices
                                                          if s["tissue_ratio"] is not None])), 3),
        "stack_tissue_mu_error": worst([s.get("stack_tissue_ratio") for s in slices]),
        "white_mu_error": worst([s["column_ratio"].get("white_matter") for s in slices]),
        "grey_mu_error": worst([s["column_ratio"].get("grey_matter") for s in slices]),
        "n_flags": sum(len(s["flags"]) for s in slices),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print rows as a Markdown table."""
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
