#!/usr/bin/env python3
"""The focus estimate's share of the attenuation error: estimated, gel attenuation given, and true focus.

For every slice of a case already run by ``bench_stack.py --matrix`` or
``bench_intensity.py --matrix`` (its stitched slices and axial-correction
outputs: ``estimated``), the axial correction is run again (outputs under
``CASE/focus_oracle``) with

- ``gel``: ``AxialSettings.agarose_attenuation_per_mm`` set to
  ``--agarose_attenuation_per_mm`` (the simulator's agarose has 0.3 /mm):
  the gel's own decay removed from the agarose focus profile;
- ``true``: the simulator's true focus profile given (``focus_profile``).

Each attenuation map is scored as the matrix scores it
(``matrix_chain.attenuation_scores``: measured / true of the grey- and
white-matter reference columns and of the tissue mean). The true profile is
one per tile depth: the truth of every A-line only where the stitched slice
keeps the tiles' depth axis (no field-curvature resampling: ``baseline``,
``dark``); on ``tilted`` and ``harsh`` the curvature correction moves each
A-line, so ``true`` is not an upper bound there.

Usage: python benchmarks/bench_focus_oracle.py CASE_DIR [CASE_DIR ...] [--agarose_attenuation_per_mm 0.3]
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

COLUMNS = ("grey_matter", "white_matter")


def true_focus(truth: dict, n_z: int) -> np.ndarray:
    """The simulator's focus profile over ``n_z`` depths, scaled to its maximum."""
    imaging = truth["imaging"]
    model = truth.get("conditions", {}).get("focus_model", "gaussian")
    profile = focus_model(model, np.arange(n_z), 1.0, imaging["focus_px"], imaging["focus_sigma_px"])
    return profile / profile.max()


def slice_row(case: Path, truth: dict, slice_id: int, gel_per_mm: float) -> list[str]:
    """Cells of one slice: per column and the tissue mean, ``estimated / gel / true`` ratios to the truth."""
    tag = f"z{slice_id:02d}"
    stitched = case / f"slice_{tag}_stitch_3d.ome.zarr"
    n_z = read_omezarr_info(stitched).levels[0].shape[0]
    scores = [attenuation_scores(case / "raw", truth, slice_id, case / f"slice_{tag}_axial_corr.ome.zarr")]
    variants = {"gel": replace(AxialSettings(), agarose_attenuation_per_mm=gel_per_mm),
                "true": replace(AxialSettings(), focus_profile=true_focus(truth, n_z))}
    for name, settings in variants.items():
        out = case / "focus_oracle" / name / f"slice_{tag}_axial_corr.ome.zarr"
        out.parent.mkdir(parents=True, exist_ok=True)
        correct_slice(stitched, out, settings, n_levels=1, overwrite=True)
        scores.append(attenuation_scores(case / "raw", truth, slice_id, out))
    cells = [" / ".join(str(s["column_ratio"].get(column)) for s in scores) for column in COLUMNS]
    return [*cells, " / ".join(str(s["tissue_ratio"]) for s in scores)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", type=Path, nargs="+", help="Matrix case directories (hold raw/ and the chain).")
    parser.add_argument("--agarose_attenuation_per_mm", type=float, default=0.3,
                        help="Gel attenuation of the `gel` variant [%(default)s].")
    args = parser.parse_args()
    print("| case | slice | grey est / gel / true | white est / gel / true | tissue est / gel / true |\n"
          "|---|---|---|---|---|")
    for case in args.cases:
        truth = json.loads((case / "raw" / "ground_truth" / "truth.json").read_text())
        for slice_id in truth["slice_ids"]:
            cells = slice_row(case, truth, slice_id, args.agarose_attenuation_per_mm)
            print(f"| {case.name} | {slice_id} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
