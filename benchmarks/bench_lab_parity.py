#!/usr/bin/env python3
"""The lab-pipeline features scored against simulator ground truth (issue #15).

Sections (``--feature``):

- ``galvo``: simulated acquisitions whose galvo-return band moves by a random
  U{-25..25} A-lines per slice (``--galvo_shift 25``) and their unshifted twins,
  over seeds and noise floors (0.01 = the presets'; 0.1 and 0.3 make the tissue
  dark against the noise). Per condition: slices with a shifted band whose crop
  lands within 1 A-line of the truth, and false fixes on unshifted slices.
- ``rotation``: slice pairs cut from the phantom, the second rotated by a known
  angle (0-5 degrees) and shifted; rotation error of
  :func:`linumpy.stack.rotation.estimate_rigid` and NCC vs the phantom.
- ``interpolate``: a slice of a phantom stack removed and filled from its
  neighbours (:mod:`linumpy.stack.interpolate`); NCC vs the true slice.

Seeds 10+ are used here; the unit tests were tuned on other seeds.

Usage: python benchmarks/bench_lab_parity.py [--feature all] [--seeds 10 11] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from linumpy.io.acquisition import open_acquisition
from linumpy.mosaic.galvo import detect_slice_band
from linumpy.simulate import get_preset, simulate_acquisition


def bench_galvo(workdir: Path, seeds: list[int]) -> None:
    """Print the galvo table."""
    print("| preset | noise floor | slices shifted | crop within 1 A-line | unshifted slices | false fixes |")
    print("|---|---|---|---|---|---|")
    for preset_name in ("tiny", "small"):
        for noise in (0.01, 0.1, 0.3):
            hits = shifted = false_fixes = unshifted = 0
            for seed in seeds:
                for galvo in (25, 0):
                    preset = replace(get_preset(preset_name, 4, galvo), noise_floor=noise)
                    out = simulate_acquisition(workdir / f"g_{preset_name}_{noise}_{seed}_{galvo}", preset, seed, overwrite=True)
                    truth = json.loads((out / "ground_truth" / "truth.json").read_text())
                    acquisition = open_acquisition(out)
                    for entry in truth["slices"]:
                        estimate = detect_slice_band(acquisition.slice(entry["slice_id"]))
                        applied = estimate.shift if estimate.applied else 0
                        true_shift = entry.get("galvo_shift_px", 0)
                        if true_shift:
                            shifted += 1
                            hits += abs(applied - true_shift) <= 1
                        else:
                            unshifted += 1
                            false_fixes += applied != 0
            print(f"| {preset_name} | {noise} | {shifted} | {hits} ({hits / max(shifted, 1):.1%}) | {unshifted} | {false_fixes} |")
            sys.stdout.flush()


FEATURES = {"galvo": bench_galvo}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature", choices=["all", *FEATURES], default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--workdir", help="Scratch folder (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name, bench in FEATURES.items():
            if args.feature in ("all", name):
                print(f"## {name}")
                bench(workdir, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
