"""Generate foreign acquisitions, reconstruct each with ``linum_run_local.py`` (defaults), score, tabulate.

Usage::

    python benchmarks/foreign/run.py --seeds 0 1 2 [--workdir /tmp/foreign] [--n_repeat 2] [--table_only]

Per seed: ``WORKDIR/acq_sN`` (raw tiles + ground truth, kept between runs),
``WORKDIR/out_sN`` (the run, replaced) and ``WORKDIR/score_sN.json``
(``score.py``); with ``--n_repeat R`` other than the generator's default (2
frames averaged per B-scan), ``acq_rR_sN``, ``out_rR_sN`` and
``score_rR_sN.json``. The table has one row per seed: tile position error (mean /
max px, after removing each slice's translation) against the stage's, volume
NCC inside tissue (10 um level) against the naive stack's (raw motor z, no
refinement), per-plane mean-ratio CV and largest boundary step (ours / naive),
the largest slice depth error (um; ours, the raw motor's and the volume-based
residual), the slices whose registered depth was used, and the output check.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


#: Frames averaged per B-scan by the generator unless told otherwise (``generate.Config.n_repeat``).
DEFAULT_N_REPEAT = 2


def seed_tag(seed: int, n_repeat: int) -> str:
    """``sN``, or ``rR_sN`` when ``n_repeat`` is not the default: the names of one seed's files."""
    return f"s{seed}" if n_repeat == DEFAULT_N_REPEAT else f"r{n_repeat}_s{seed}"


def run_seed(workdir: Path, seed: int, n_repeat: int = DEFAULT_N_REPEAT) -> dict:
    """Generate (once), reconstruct and score one seed; return its scores."""
    tag = seed_tag(seed, n_repeat)
    acquisition, outdir = workdir / f"acq_{tag}", workdir / f"out_{tag}"
    if not (acquisition / "ground_truth" / "truth.json").exists():
        subprocess.run([sys.executable, str(HERE / "generate.py"), str(acquisition), "--seed", str(seed),
                        "--n_repeat", str(n_repeat)], check=True)
    subprocess.run([sys.executable, str(ROOT / "bin" / "linum_run_local.py"), "--input", str(acquisition),
                    "--outdir", str(outdir), "-q", "-f"], check=True)
    target = workdir / f"score_{tag}.json"
    subprocess.run([sys.executable, str(HERE / "score.py"), str(acquisition), str(outdir), "--json", str(target)],
                   check=True, stdout=subprocess.DEVNULL)
    return json.loads(target.read_text())


def table_row(seed: int, s: dict) -> str:
    """One markdown row of the scores of a seed."""
    t, v, n = s["tiles"], s["volume"], s["naive_volume"]
    z = s["z"]["per_slice"]
    placed = max(abs(r["placed_error_um"]) for r in z)
    motor = max(abs(r["motor_error_um"]) for r in z)
    residual = max(abs(r) for r in v["z_residual_um"])
    used = sum(r["used_registration_z"] for r in z)
    valid = "ok" if not s["validation"]["failures"] else f"{len(s['validation']['failures'])} invalid"
    return (f"| {seed} | {t['mean']:.2f} / {t['max']:.2f} | {t['stage_mean']:.2f} / {t['stage_max']:.2f} "
            f"| {v['ncc']:.3f} | {n['ncc']:.3f} | {v['plane_ratio_cv']:.3f} / {n['plane_ratio_cv']:.3f} "
            f"| {v['max_boundary_step']:.3f} / {n['max_boundary_step']:.3f} "
            f"| {placed:.1f} / {motor:.1f} / {residual:.1f} "
            f"| {used}/{len(z) - 1} | {valid} |")


HEADER = ("| seed | tiles mean / max px | stage mean / max px | NCC | naive NCC | plane CV ours / naive "
          "| boundary step ours / naive | max z error um: placed / raw motor / volume residual "
          "| z registered | outputs |\n|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/foreign"))
    parser.add_argument("--n_repeat", type=int, default=DEFAULT_N_REPEAT,
                        help="Frames averaged per B-scan by the generator (1: fully developed speckle).")
    parser.add_argument("--table_only", action="store_true", help="Tabulate the score files already there.")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        scores = (json.loads((args.workdir / f"score_{seed_tag(seed, args.n_repeat)}.json").read_text())
                  if args.table_only else run_seed(args.workdir, seed, args.n_repeat))
        rows.append(table_row(seed, scores))
    print(HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
