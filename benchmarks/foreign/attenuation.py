"""Re-run the axial correction on a foreign run's stitched slices and score attenuation per region.

Usage::

    python benchmarks/foreign/attenuation.py ACQ RUN OUT [--repo DIR] [-- AXIAL_CORR_OPTIONS...]

``ACQ``: a generated acquisition (``generate.py``); ``RUN``: its ``linum_run_local.py`` output
(only ``stitch_3d`` is read); ``OUT``: where the corrected slices go (``OUT/axial_corr``,
``OUT/stitch_3d`` a link to the run's). ``--repo``: the linumpy checkout whose
``bin/linum_axial_corr.py`` runs (default: this one; e.g. ``/work/main`` for before/after). Prints
one row per purity rule of :func:`score.attenuation_scores` (40 planes below the cut; the whole
fitted range: per region the estimate, its error, the texture reference and the error against it) and
writes ``OUT/attenuation.json``. About 25 s a seed (5 slices).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from score import attenuation_scores

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("acquisition", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--repo", type=Path, default=ROOT)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, options = parser.parse_args(argv[:split]), argv[split + 1:]  # after --: linum_axial_corr.py's options
    (args.out / "axial_corr").mkdir(parents=True, exist_ok=True)
    if not (args.out / "stitch_3d").exists():
        os.symlink((args.run / "stitch_3d").resolve(), args.out / "stitch_3d")
    truth = json.loads((args.acquisition / "ground_truth" / "truth.json").read_text())
    env = dict(os.environ, PYTHONPATH=str(args.repo))
    for entry in truth["slices"]:
        tag = f"slice_z{entry['slice_id']:02d}"
        subprocess.run([sys.executable, str(args.repo / "bin" / "linum_axial_corr.py"),
                        str(args.run / "stitch_3d" / f"{tag}_stitch_3d.ome.zarr"),
                        str(args.out / "axial_corr" / f"{tag}_axial_corr.ome.zarr"), "-f", *options],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scores = {"planes_40": attenuation_scores(args.acquisition, truth, args.out),
              "full_range": attenuation_scores(args.acquisition, truth, args.out, depth=None)}
    (args.out / "attenuation.json").write_text(json.dumps(scores, indent=1))
    for rule, result in scores.items():
        print(rule, " ".join(f"{name} {r['estimated_per_mm']:.2f} ({_percent(r['relative_error'])}; texture "
                             f"{r['texture_reference_per_mm']:.2f}, {_percent(r['error_vs_texture_reference'])})"
                             for name, r in result.items() if name != "cavity"))


def _percent(error: float | None) -> str:
    return "truth 0" if error is None else f"{100 * error:+.0f}%"

if __name__ == "__main__":
    main()
