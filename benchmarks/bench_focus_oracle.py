#!/usr/bin/env python3
"""What a perfect focus estimate would do to the attenuation map: estimated versus true focus profile.

For every slice of a case already run by ``bench_stack.py --matrix`` or
``bench_intensity.py --matrix`` (its stitched slices and axial-correction
outputs), the axial correction is run again with the simulator's true focus
profile given (``AxialSettings.focus_profile``; output under ``CASE/oracle``)
and both attenuation maps are scored as the matrix scores them
(``matrix_chain.attenuation_scores``: measured / true of the grey- and
white-matter reference columns and of the tissue mean).

The true profile is the simulator's, one per tile depth: valid where the
stitched slice keeps the tiles' depth axis (no field-curvature resampling:
``baseline``, ``dark``, ``attenuation``); on ``tilted`` and ``harsh`` the
curvature correction shifts each A-line, so the profile is no longer the
truth of every A-line.

Usage: python benchmarks/bench_focus_oracle.py CASE_DIR [CASE_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from matrix_chain import attenuation_scores

from linumpy.intensity.axial import AxialSettings, correct_slice
from linumpy.intensity.focus import focus_model
from linumpy.io.zarr import read_omezarr_info


def true_focus(truth: dict, n_z: int) -> np.ndarray:
    """The simulator's focus profile over ``n_z`` depths, scaled to its maximum."""
    imaging = truth["imaging"]
    model = truth.get("conditions", {}).get("focus_model", "gaussian")
    profile = focus_model(model, np.arange(n_z), 1.0, imaging["focus_px"], imaging["focus_sigma_px"])
    return profile / profile.max()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", type=Path, nargs="+", help="Matrix case directories (hold raw/ and the chain).")
    args = parser.parse_args()
    print("| case | slice | grey est -> true focus | white est -> true focus | tissue est -> true focus |\n"
          "|---|---|---|---|---|")
    for case in args.cases:
        truth = json.loads((case / "raw" / "ground_truth" / "truth.json").read_text())
        for slice_id in truth["slice_ids"]:
            tag = f"z{slice_id:02d}"
            stitched = case / f"slice_{tag}_stitch_3d.ome.zarr"
            oracle = case / "oracle" / f"slice_{tag}_axial_corr.ome.zarr"
            oracle.parent.mkdir(exist_ok=True)
            settings = replace(AxialSettings(), focus_profile=true_focus(truth, read_omezarr_info(stitched).levels[0].shape[0]))
            correct_slice(stitched, oracle, settings, n_levels=1, overwrite=True)
            estimated = attenuation_scores(case / "raw", truth, slice_id, case / f"slice_{tag}_axial_corr.ome.zarr")
            perfect = attenuation_scores(case / "raw", truth, slice_id, oracle)
            cells = [f"{estimated['column_ratio'].get(name)} -> {perfect['column_ratio'].get(name)}"
                     for name in ("grey_matter", "white_matter")]
            print(f"| {case.name} | {slice_id} | {cells[0]} | {cells[1]} | "
                  f"{estimated['tissue_ratio']} -> {perfect['tissue_ratio']} |", flush=True)


if __name__ == "__main__":
    main()
