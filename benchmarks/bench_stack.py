#!/usr/bin/env python3
"""Cost of stacking versus the number of slices (4, 8, 16 of the same size).

Writes synthetic normalised slices (textured, overlapping, with the motor
table), then runs ``linum_stack_slices_motor.py`` once per slice count, each
in a fresh process, and prints wall time, time per slice and peak RSS. The
time per slice should stay flat (linear cost) and so should the peak RSS
(memory independent of the number of slices).

With ``--matrix``, instead: the depth-correction test matrix
(``benchmarks/matrix_chain.py``) through the whole chain (tiny, 8 slices per
case), scored against the truth: volume NCC with the phantom inside tissue,
CV along depth of the per-plane mean-intensity ratio to the truth, largest
step of that ratio at a slab boundary, largest slice depth error (axial
voxels; per step and cumulative, against where each slice's content truly
lies, and against the true cut, which adds the axial correction's surface
plane errors) and largest boundary ratio left in the stack's QC record;
``--curvature`` chooses how the field curvature is decided (one decision for
the acquisition, the pipelines' default; each slice alone; off) and the rows
add the curvature left at tile borders (truth minus the applied correction,
peak to peak, worst slice) and the slices corrected. ``--diagnose`` also
prints, per case, where the volume NCC is lost (``stack_diagnosis.py``:
NCC per plane and per third of the slabs, after oracle per-plane, lateral
and per-slab corrections, after a low-pass, with each slab's best sub-voxel
shift).

Usage: python benchmarks/bench_stack.py [--size 256] [--counts 4 8 16] [--workdir DIR]
       python benchmarks/bench_stack.py --matrix [--conditions harsh ...] [--seeds 0 1 ...] [--workdir DIR]
           [--curvature {acquisition,slice,off}] [--tail_edge_sigma_px 4] [--attenuation_step_log 0] [--restack]
           [--diagnose] [--stitch_flatfield {none,auto}]
"""

from __future__ import annotations

import argparse
import json
import resource
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from linumpy.intensity.options import DEFAULT_STEP_LOG
from linumpy.io.motor_table import MotorPosition, write_motor_positions
from linumpy.io.zarr import save_omezarr
from linumpy.stitching.options import DEFAULT_FLATFIELD, FLATFIELD_MODES

SCRIPT = Path(__file__).resolve().parents[1] / "bin" / "linum_stack_slices_motor.py"
AXIAL_UM, LATERAL_UM = 5.0, 10.0
THICKNESS_PX, DEPTH_PX = 40, 60


def world_plane(z: int, size: int) -> np.ndarray:
    """Plane ``z`` of the synthetic brain: the same wherever a slice images it."""
    rng = np.random.default_rng([7, z])
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), 2.0)
    return (1.0 + 3.0 * texture).astype(np.float32)


def write_slices(directory: Path, count: int, size: int) -> tuple[list[str], Path]:
    """Write ``count`` overlapping slices and their motor table."""
    paths, rows = [], []
    shift_rng = np.random.default_rng(3)
    for k in range(count):
        dy, dx = shift_rng.integers(-3, 4, 2)
        planes = [world_plane(k * THICKNESS_PX + j, size + 8) for j in range(DEPTH_PX)]
        data = np.stack(planes)[:, 4 + dy : 4 + dy + size, 4 + dx : 4 + dx + size]
        path = directory / f"slice_z{k:02d}_normalize.ome.zarr"
        save_omezarr(data, path, (AXIAL_UM / 1000, LATERAL_UM / 1000, LATERAL_UM / 1000),
                     chunks=(32, 128, 128), n_levels=1, overwrite=True)
        paths.append(str(path))
        rows.append(MotorPosition(k, 1.0, 2.0, 3.0 + k * THICKNESS_PX * AXIAL_UM / 1000, 1))
    motors = directory / "motor_positions.csv"
    write_motor_positions(rows, motors, overwrite=True)
    return paths, motors


def child(argv: list[str]) -> None:
    """Run the script in this process; print elapsed seconds and peak RSS (MB) as JSON.

    The heavy imports happen before the clock starts, so the time is the work.
    """
    import linumpy.io.zarr  # noqa: F401
    import linumpy.stack.stacking  # noqa: F401

    start = time.perf_counter()
    cpu_start = time.process_time()
    sys.argv = [str(SCRIPT), *argv]
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    except SystemExit as exit_:
        if exit_.code:
            raise
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "peak_rss_mb": peak_mb}))


def measure(paths: list[str], motors: Path, out: Path) -> dict:
    argv = [*paths, str(out), "--motor_positions", str(motors), "--slice_thickness_um",
            str(THICKNESS_PX * AXIAL_UM), "--resolution", "10", "-q", "-f"]
    result = subprocess.run([sys.executable, __file__, "--child", *argv],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="Lateral size of a slice, pixels.")
    parser.add_argument("--counts", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--workdir", type=Path, help="Keep the data here (default: a temporary directory).")
    parser.add_argument("--matrix", action="store_true", help="Run the depth-correction test matrix instead.")
    parser.add_argument("--conditions", nargs="+", default=None, help="Matrix conditions [all].")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Matrix seeds [tune + check seeds].")
    parser.add_argument("--n_slices", type=int, default=8, help="Matrix slices per case [%(default)s].")
    parser.add_argument("--curvature", choices=("acquisition", "slice", "off"), default="acquisition",
                        help="Matrix field-curvature decision [%(default)s].")
    parser.add_argument("--tail_edge_sigma_px", type=float, default=2.0,
                        help="Matrix: the axial correction's edge-aware tail sums (AxialSettings' default; "
                             "0 = the box) [%(default)s].")
    parser.add_argument("--attenuation_step_log", type=float, default=DEFAULT_STEP_LOG,
                        help="Matrix: the axial correction's reflectivity steps (AxialSettings; 0 = off) "
                             "[%(default)s].")
    parser.add_argument("--restack", action="store_true",
                        help="Matrix: reuse the normalised slices a previous run left in --workdir; stack only.")
    parser.add_argument("--reaxial", action="store_true",
                        help="Matrix: reuse the stitched slices a previous run left in --workdir; run from the "
                             "axial correction.")
    parser.add_argument("--stitch_flatfield", choices=FLATFIELD_MODES, default=DEFAULT_FLATFIELD,
                        help="Matrix: the stitcher's --flatfield [%(default)s].")
    parser.add_argument("--diagnose", action="store_true",
                        help="Matrix: also print where each case's volume NCC is lost (stack_diagnosis.py).")
    args = parser.parse_args()
    if args.matrix:
        run_matrix(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        paths, motors = write_slices(workdir, max(args.counts), args.size)
        mb = DEPTH_PX * args.size**2 * 4 / 1e6
        print(f"slices: {DEPTH_PX}x{args.size}x{args.size} float32 ({mb:.1f} MB each), "
              f"{THICKNESS_PX * AXIAL_UM:.0f} um apart, output 10 um isotropic")
        print(f"{'slices':>6} {'wall s':>8} {'wall/slice':>10} {'cpu s':>8} {'cpu/slice':>10} {'peak RSS MB':>12}")
        rows = []
        for count in args.counts:
            f = measure(paths[:count], motors, workdir / f"stack_{count}.ome.zarr")
            rows.append((count, f["seconds"] / count, f["cpu_seconds"] / count, f["peak_rss_mb"]))
            print(f"{count:>6} {f['seconds']:>8.2f} {rows[-1][1]:>10.3f} {f['cpu_seconds']:>8.2f} "
                  f"{rows[-1][2]:>10.3f} {f['peak_rss_mb']:>12.0f}")
        first, last = rows[0], rows[-1]
        print(f"per-slice time ratio {last[0]} vs {first[0]} slices: wall {last[1] / first[1]:.2f}, "
              f"cpu {last[2] / first[2]:.2f} (1.0 = linear); peak RSS ratio {last[3] / first[3]:.2f} (1.0 = flat)")


def run_matrix(args: argparse.Namespace) -> None:
    """The depth-correction matrix through the stack: one row of scores per condition and seed."""
    from matrix_chain import CHECK_SEEDS, TUNE_SEEDS, intensity_row, print_table, run_case

    from linumpy.intensity.axial import AxialSettings
    from linumpy.simulate.conditions import CONDITIONS

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_matrix_"))
    rows = []
    for condition in args.conditions or list(CONDITIONS):
        for seed in args.seeds or [*TUNE_SEEDS, *CHECK_SEEDS]:
            case = run_case(workdir / args.curvature, condition, seed, args.n_slices, curvature=args.curvature,
                            axial_settings=AxialSettings(tail_edge_sigma_px=args.tail_edge_sigma_px,
                                                          attenuation_step_log=args.attenuation_step_log),
                            restack=args.restack, reaxial=args.reaxial, stitch_flatfield=args.stitch_flatfield)
            ratios = [r for r in case["stack_qc"]["metrics"]["boundary_ratio"] if r is not None]
            steps, motor_steps = np.diff(case["z_error_px"]), np.diff(case["motor_z_error_px"])
            rows.append({"condition": condition, "seed": seed, "ncc": case["ncc"], "ncc_ceiling": case["ncc_ceiling"],
                         "plane_ratio_cv": case["plane_ratio_cv"], "max_boundary_step": case["max_boundary_step"],
                         "max_step_z_error_px": round(float(np.abs(steps).max()), 3) if steps.size else 0.0,
                         "max_z_error_px": case["max_z_error_px"],
                         "motor_max_step_z_error_px": round(float(np.abs(motor_steps).max()), 3),
                         "motor_max_z_error_px": round(float(np.abs(case["motor_z_error_px"]).max()), 3),
                         "cut_max_step_z_error_px": round(float(np.abs(np.diff(case["cut_z_error_px"])).max()), 3),
                         "cut_max_z_error_px": round(float(np.abs(case["cut_z_error_px"]).max()), 3),
                         "worst_qc_boundary_ratio": round(max((abs(r - 1) for r in ratios), default=0.0), 4),
                         "n_motor_fallback": case["stack_qc"]["metrics"]["n_motor_fallback"],
                         "curvature": args.curvature,
                         "max_curvature_residual_px": max(s["curvature_residual_px"] for s in case["slices"]),
                         "n_curvature_applied": sum(s["curvature_status"] == "applied" for s in case["slices"]),
                         **{k: v for k, v in intensity_row(case).items() if k.endswith("mu_error")}})
            print(json.dumps(rows[-1]), flush=True)
            if args.diagnose:
                diagnosis = diagnose_case(Path(case["case_dir"]))
                print(json.dumps({"condition": condition, "seed": seed, "diagnosis": diagnosis}), flush=True)
    print_table(rows)


def diagnose_case(case_dir: Path) -> dict:
    """:func:`stack_diagnosis.diagnose` of a case :func:`matrix_chain.run_case` stacked."""
    from stack_diagnosis import diagnose

    from linumpy.simulate.scoring import scored_volume

    record = json.loads((case_dir / "volume_shifts.json").read_text())["slices"]
    return diagnose(scored_volume(case_dir / "raw", case_dir / "volume.ome.zarr", record,
                                  lambda i: case_dir / f"slice_z{i:02d}_normalize.ome.zarr"))


if __name__ == "__main__":
    main()
