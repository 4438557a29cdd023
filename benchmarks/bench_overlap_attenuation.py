#!/usr/bin/env python3
"""Tissue attenuation from the overlap of consecutive slices, against the truth, on matrix cases.

Runs on the cases a ``bench_stack.py --matrix --workdir W`` run left in
``W/acquisition/<condition>_s<seed>`` (stitched slices, axial QC, the
stack's placement record). Per slice, the axial correction is re-run without
attenuation compensation (cached in ``<case>/uncompensated``), and the overlap
with the next slice, placed as the stack placed it, gives the slab's
attenuation (:func:`linumpy.intensity.transmission.overlap_attenuation`); the
slice's estimate is taken over the depth it images, its own slab's and, below
the next cut, the next slab's, as the stack does
(:func:`linumpy.stack.attenuation.imaged_range_attenuation`). The
last slice keeps the axial step's decay-fit tissue mean (source ``decay fit``).
Prints, per case, the relative error of each slice's estimate against the
true mean attenuation of the tissue voxels below its cut (the score of
``matrix_chain.attenuation_scores``), the decay fit's beside it, and their
worst / median over the slices; the own slab's estimate alone against the
same truth; and the own slab's against the true mean of the slab it measures
(from its cut to the next cut).

Without ``W`` the chain is run first (``matrix_chain.run_case``, 4 slices, seed 0 unless
``--seeds`` says otherwise) in a temporary directory.

Usage: python benchmarks/bench_overlap_attenuation.py [W] [--conditions harsh] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from matrix_chain import run_case, true_tissue_attenuation

from linumpy.intensity.axial import AxialSettings, correct_slice, output_paths
from linumpy.intensity.surface import plane_values
from linumpy.intensity.transmission import overlap_attenuation
from linumpy.io.zarr import read_omezarr, read_omezarr_info
from linumpy.qc.records import qc_record_path, read_qc_record
from linumpy.stack.attenuation import imaged_range_attenuation

#: Overlap planes of the next slice used (below its top ``SKIP``: the cut face), as the stack's gains.
SKIP, PLANES = 2, 8


def uncompensated(case: Path, slice_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slice corrected for focus but not attenuation (cached), its tissue top below the flattened cut
    (voxels) and its voxel size (um)."""
    stitched = case / f"slice_z{slice_id:02d}_stitch_3d.ome.zarr"
    out = case / "uncompensated" / f"slice_z{slice_id:02d}.ome.zarr"
    if not out.exists():
        correct_slice(stitched, out, AxialSettings(attenuation="none"), n_levels=1, overwrite=True)
    info = read_omezarr_info(out)
    voxel_um = np.asarray(info.resolution) * 1000
    found = read_omezarr(output_paths(out)[0])[0].compute() / voxel_um[0]
    plane = info.attributes["surface_plane_px"]
    used = plane_values(np.asarray(plane), found.shape) if plane is not None else found
    top = found - np.rint(used) + info.attributes.get("surface_depth_px", 0)
    return read_omezarr(out)[0].compute(), top, voxel_um


def true_slab_attenuation(acquisition: Path, truth: dict, entry: dict, following: dict) -> float:
    """Mean true attenuation of the tissue voxels (> 1 /mm) between this slice's cut and the next one's
    (each at its deepest surface point, as :func:`matrix_chain.true_tissue_attenuation`): the slab the
    overlap measures."""
    volume = read_omezarr(acquisition / "ground_truth" / "attenuation.ome.zarr")[0]
    z0 = truth["phantom"]["world_origin_px"][0]
    top, bottom = (s["world_z_offset_px"] + int(np.ceil(s["surface"]["max_px"])) - z0 for s in (entry, following))
    mu = volume[top:bottom].compute()
    return float(mu[mu > 1.0].mean())


def case_rows(case: Path) -> list[dict]:
    """Per slice: the overlap estimate, the decay fit and the truth."""
    acquisition = case / "raw"
    truth = json.loads((acquisition / "ground_truth" / "truth.json").read_text())
    record = {s["slice_id"]: s for s in json.loads((case / "volume_shifts.json").read_text())["slices"]}
    dz_mm = truth["resolution_um"][0] / 1000
    rows = []
    ids = truth["slice_ids"]
    for index, entry in enumerate(truth["slices"]):
        slice_id = entry["slice_id"]
        decay_fit = read_qc_record(qc_record_path(case / f"slice_z{slice_id:02d}_axial_corr.ome.zarr"))["metrics"]
        true_mu = true_tissue_attenuation(acquisition, truth, entry)
        row = {"slice_id": slice_id, "true": round(true_mu, 3),
               "decay_fit": round(decay_fit["mean_attenuation_tissue_per_mm"] / true_mu, 3)}
        if index + 1 < len(ids) and ids[index + 1] in record:
            following_record = record[ids[index + 1]]
            step = np.subtract(following_record["origin_um"], record[slice_id]["origin_um"])
            previous, top, voxel_um = uncompensated(case, slice_id)
            following, _, _ = uncompensated(case, ids[index + 1])
            step_px = step[0] / voxel_um[0]
            offset = np.rint(step[1:] / voxel_um[1:]).astype(int)
            start = int(round(step_px)) + SKIP
            depth = min(PLANES, previous.shape[0] - start, following.shape[0] - SKIP)
            lo = np.maximum(0, offset)
            hi = np.minimum(previous.shape[1:], offset + np.asarray(following.shape[1:]))
            window = tuple(slice(a, b) for a, b in zip(lo, hi))
            shifted = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offset))
            estimate = overlap_attenuation(previous[(slice(start, start + depth), *window)],
                                           following[(slice(SKIP, SKIP + depth), *shifted)],
                                           step_px, dz_mm, top[window])
            slab = true_slab_attenuation(acquisition, truth, entry, truth["slices"][index + 1])
            row.update(source="overlap", **estimate.qc(), flags=estimate.flags,
                       below_um=previous.shape[0] * voxel_um[0] - step[0],
                       slab_ratio=None if estimate.tissue_mean_per_mm is None
                       else round(estimate.tissue_mean_per_mm / slab, 3),
                       own_slab_ratio=None if estimate.tissue_mean_per_mm is None
                       else round(estimate.tissue_mean_per_mm / true_mu, 3))
        else:
            row.update(source="decay fit", ratio=row["decay_fit"], flags=["no slice below: decay fit kept"])
        rows.append(row)
    for row, deeper in zip(rows, [*rows[1:], None]):
        if row["source"] == "overlap":
            value, weight = imaged_range_attenuation(row["overlap_attenuation_per_mm"],
                                                     row["overlap_attenuation_path_um"], row.pop("below_um"),
                                                     None if deeper is None else deeper.get("overlap_attenuation_per_mm"))
            row.update(next_slab_weight=round(weight, 3),
                       ratio=None if value is None else round(value / row["true"], 3))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path, nargs="?",
                        help="The --workdir of a bench_stack.py --matrix run [run the chain in a temporary directory].")
    parser.add_argument("--conditions", nargs="+", default=["harsh"])
    parser.add_argument("--seeds", type=int, nargs="+", help="[0 1 2 3 4 5 with W, else 0]")
    parser.add_argument("--curvature", default="acquisition", help="The matrix run's --curvature [%(default)s].")
    args = parser.parse_args()
    seeds = args.seeds or ([0, 1, 2, 3, 4, 5] if args.workdir else [0])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_overlap_"))
    if args.workdir is None:
        for condition in args.conditions:
            for seed in seeds:
                run_case(workdir / args.curvature, condition, seed, n_slices=4, curvature=args.curvature)
    print("| case | decay fit, worst / median | overlap over the imaged depth (last slice: decay fit), worst / "
          "median | overlap slices only, worst / median | own slab alone, worst / median | own slab vs its slab's "
          "truth, worst |")
    print("|---|---|---|---|---|---|")
    for condition in args.conditions:
        for seed in seeds:
            case = workdir / args.curvature / f"{condition}_s{seed}"
            rows = case_rows(case)
            for row in rows:
                print(json.dumps(row), flush=True)
            fit = [abs(r["decay_fit"] - 1) for r in rows]
            mixed = [abs(r["ratio"] - 1) for r in rows if r["ratio"] is not None]
            overlap = [abs(r["ratio"] - 1) for r in rows if r["source"] == "overlap" and r["ratio"] is not None]
            own = [abs(r["own_slab_ratio"] - 1) for r in rows if r.get("own_slab_ratio") is not None]
            slab = [abs(r["slab_ratio"] - 1) for r in rows if r.get("slab_ratio") is not None]
            print(f"| {condition} {seed} | {max(fit):.3f} / {np.median(fit):.3f} | {max(mixed):.3f} / "
                  f"{np.median(mixed):.3f} | {_worst_median(overlap)} | {_worst_median(own)} | "
                  f"{max(slab, default=float('nan')):.3f} |", flush=True)


def _worst_median(errors: list[float]) -> str:
    """``worst / median`` of relative errors, ``-`` for none."""
    return f"{max(errors):.3f} / {np.median(errors):.3f}" if errors else "-"


if __name__ == "__main__":
    main()
