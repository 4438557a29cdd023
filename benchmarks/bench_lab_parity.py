#!/usr/bin/env python3
"""The lab-pipeline features scored against simulator ground truth (issue #15).

Sections (``--feature``):

- ``galvo``: simulated 3-slice acquisitions whose galvo-return band moves by a
  random U{-25..25} A-lines per slice (``--galvo_shift 25``) and their
  unshifted twins, over seeds, noise floors (0.01 = the presets'; 0.1 and 0.3
  make the tissue dark against the noise) and conditions (dark tissue, a small
  sample leaving empty tiles, ``harsh``). Per row: slices with a shifted band
  whose crop lands within 1 A-line of the truth, and false fixes on unshifted
  slices.
- ``rotation``: four slices cut from the phantom with speckle
  (:mod:`linumpy.simulate.slices`), slices 1-3 turned by random angles in
  [-5, 5] degrees; per slice the error of the rotation the stack undid, and
  the volume's NCC with the phantom against the same slices unrotated.
- ``rotation_raw``: ``tiny`` acquisitions whose slices the raw-tile
  simulator turned (``--slice_rotation``, U(-4, 4) degrees by default, slice 0
  unturned) through the whole chain (:func:`matrix_chain.run_case`, every
  step's defaults) under each ``--conditions`` (``baseline``, ``harsh``,
  ...): per case the error of every rotation the stack undid, its modes,
  and the volume's NCC with the phantom against the unturned twin.
- ``interpolate``: slice 2 of five removed, its depth filled from its
  neighbours (``interpolate_missing``); NCC with the phantom's true planes at
  10 um and 40 um lateral, and an observed slice's NCC at 10 um for scale.
- ``curvature``: ``tiny``/``small`` single slices with field curvature 0, 1,
  2 and 4 voxels (peak to peak over the tile) under each condition
  (baseline, tilted, dark, harsh, sparse); the residual peak-to-peak (truth -
  applied correction) over the tile, the fit's own error, the decisions.

Tuning: galvo on seeds 0-9, the curvature detector on seeds 0-2 and its
gain gate on seeds 10-12, the interpolation on seeds 0-2 and 10-12; the
tables of ``docs/lab-parity.md`` use the seeds after those.

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

import dask.array as da

from linumpy.io.acquisition import open_acquisition
from linumpy.mosaic.curvature import estimate_slice_curvature
from linumpy.mosaic.galvo import GalvoShift, detect_slice_band
from linumpy.simulate import get_preset, simulate_acquisition
from linumpy.simulate.conditions import CONDITIONS as CONDITION_FIELDS
from linumpy.simulate.conditions import condition_preset
from linumpy.simulate.imaging import field_curvature_map
from linumpy.simulate.presets import Preset
from linumpy.simulate.slices import phantom_slices
from linumpy.stack.refine import normalized_cross_correlation
from linumpy.stack.stacking import SliceVolume, StackParameters, plan_stack, write_stack

SIZE, THICKNESS, DEPTH = 112, 20, 26


def bench_galvo(workdir: Path, seeds: list[int], presets: tuple[str, ...] = ("tiny", "small")) -> None:
    """Print the galvo table: per preset, condition and noise floor, shifted slices fixed and false fixes."""
    print("| preset | condition | noise floor | slices shifted | crop within 1 A-line | unshifted slices | false fixes |")
    print("|---|---|---|---|---|---|---|")
    for preset_name in presets:
        for name in ("baseline", "dark", "sparse", "harsh"):
            for noise in (0.01, 0.1, 0.3) if name == "baseline" else (0.1,):
                hits = shifted = false_fixes = unshifted = 0
                for seed in seeds:
                    for galvo in (25, 0):
                        preset = condition(preset_name, name, 3, noise_floor=noise, galvo_shift_px=galvo)
                        out = simulate_acquisition(workdir / f"g_{preset_name}", preset, seed, overwrite=True)
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
                print(f"| {preset_name} | {name} | {noise} | {shifted} | {hits} ({hits / max(shifted, 1):.1%}) | "
                      f"{unshifted} | {false_fixes} |")
                sys.stdout.flush()


def _stack(slices: dict[int, np.ndarray], parameters: StackParameters):
    volumes = [SliceVolume(k, [(da.from_array(s, chunks=(16, 64, 64)), (10.0,) * 3)], (0, s.shape[0]))
               for k, s in sorted(slices.items())]
    motors = np.array([[k * THICKNESS * 0.01, 0.0, 0.0] for k in sorted(slices)])
    plan = plan_stack(volumes, motors, THICKNESS * 10.0, 10.0, parameters)
    out = np.zeros(plan.shape, np.float32)
    write_stack(plan, out, (32, 64, 64), np.float32, False)
    return plan, out


def _window(out: np.ndarray, plan, planes: tuple[int, int]) -> np.ndarray:
    z0, y0, x0 = plan.record["slices"][0]["origin_voxel"]
    return out[z0 + planes[0] : z0 + planes[1], y0 : y0 + SIZE, x0 : x0 + SIZE]


def _disc_ncc(volume: np.ndarray, truth: np.ndarray) -> float:
    depth, ny, nx = (min(a, b) for a, b in zip(volume.shape, truth.shape))
    yy, xx = np.ogrid[:ny, :nx]
    disc = np.broadcast_to((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (0.4 * SIZE) ** 2, (depth, ny, nx))
    return normalized_cross_correlation(volume[:depth, :ny, :nx][disc], truth[:depth, :ny, :nx][disc])


def bench_rotation(workdir: Path, seeds: list[int]) -> None:
    """Print the rotation table."""
    print("| seed | true angles (deg) | undone (deg) | max abs error (deg) | volume NCC rotated | unrotated | modes |")
    print("|---|---|---|---|---|---|---|")
    for seed in seeds:
        angles = [0.0, *np.round(np.random.default_rng(seed).uniform(-5, 5, 3), 2)]
        cut = phantom_slices(seed, angles, (SIZE, SIZE), THICKNESS, DEPTH, speckle=True)
        plan, out = _stack(dict(enumerate(cut.slices)), StackParameters(max_rotation_deg=5.0))
        plain = phantom_slices(seed, [0.0] * 4, (SIZE, SIZE), THICKNESS, DEPTH, speckle=True)
        plain_plan, plain_out = _stack(dict(enumerate(plain.slices)), StackParameters(max_rotation_deg=5.0))
        rotations = [s["rotation"] for s in plan.record["slices"][1:]]
        undone = [r["angle_deg"] for r in rotations]
        error = max(abs(u + a) for u, a in zip(undone, angles[1:]))
        ncc = _disc_ncc(_window(out, plan, (0, out.shape[0])), cut.world)
        plain_ncc = _disc_ncc(_window(plain_out, plain_plan, (0, plain_out.shape[0])), plain.world)
        modes = "/".join(r["mode"] for r in rotations)
        plain_modes = "/".join(s["rotation"]["mode"] for s in plain_plan.record["slices"][1:])
        print(f"| {seed} | {angles[1:]} | {undone} | {error:.3f} | {ncc:.4f} | {plain_ncc:.4f} | {modes} (unrotated: {plain_modes}) |")
        sys.stdout.flush()


def bench_rotation_raw(workdir: Path, seeds: list[int], conditions: tuple[str, ...] = ("baseline", "harsh"),
                       n_slices: int = 4, max_deg: float = 4.0) -> None:
    """Print the raw-tile rotation table: angles undone by the chain against the simulator's truth."""
    from matrix_chain import run_case

    print("| condition | seed | true angles (deg) | undone (deg) | max abs error (deg) | modes | "
          "volume NCC turned | unturned |")
    print("|---|---|---|---|---|---|---|---|")
    for name in conditions:
        for seed in seeds:
            turned = run_case(workdir / "turned", name, seed, n_slices, slice_rotation_deg=max_deg)
            plain = run_case(workdir / "plain", name, seed, n_slices)
            case = workdir / "turned" / f"{name}_s{seed}"
            truth = json.loads((case / "raw" / "ground_truth" / "truth.json").read_text())["slices"]
            record = json.loads((case / "volume_shifts.json").read_text())["slices"]
            true = [entry["rotation_deg"] for entry in truth[1:]]
            undone = [entry["rotation"]["angle_deg"] for entry in record[1:]]
            error = max(abs(u + t) for u, t in zip(undone, true))
            modes = "/".join(entry["rotation"]["mode"] for entry in record[1:])
            print(f"| {name} | {seed} | {true} | {[round(u, 3) for u in undone]} | {error:.3f} | {modes} | "
                  f"{turned['ncc']:.4f} | {plain['ncc']:.4f} |")
            sys.stdout.flush()


def _block4(volume: np.ndarray) -> np.ndarray:
    z, y, x = volume.shape
    return volume[:, : y // 4 * 4, : x // 4 * 4].reshape(z, y // 4, 4, x // 4, 4).mean(axis=(2, 4))


def bench_interpolate(workdir: Path, seeds: list[int]) -> None:
    """Print the interpolation table."""
    print("| seed | NCC filled vs true, 10 um | 40 um | observed slice vs true, 10 um |")
    print("|---|---|---|---|")
    missing = 2
    for seed in seeds:
        cut = phantom_slices(seed, [0.0] * 5, (SIZE, SIZE), THICKNESS, DEPTH, speckle=True)
        slices = {k: s for k, s in enumerate(cut.slices) if k != missing}
        plan, out = _stack(slices, StackParameters(interpolate_missing=True))
        planes = (missing * THICKNESS + THICKNESS // 10, (missing + 1) * THICKNESS)
        filled = _window(out, plan, planes)
        truth = cut.world[planes[0] : planes[1], : filled.shape[1], : filled.shape[2]]
        observed = cut.slices[3][THICKNESS // 10 : THICKNESS]
        observed_truth = cut.world[3 * THICKNESS + THICKNESS // 10 : 4 * THICKNESS]
        print(f"| {seed} | {normalized_cross_correlation(filled, truth):.4f} | "
              f"{normalized_cross_correlation(_block4(filled), _block4(truth)):.4f} | "
              f"{normalized_cross_correlation(observed, observed_truth):.4f} |")
        sys.stdout.flush()


#: Acquisition conditions of the galvo and curvature matrices: test-matrix conditions
#: (:mod:`linumpy.simulate.conditions`) and ``sparse``, a small sample that leaves tiles empty.
CONDITIONS = {"baseline": {}, "tilted": {}, "dark": {}, "harsh": {}, "sparse": {"sample_radius": 0.22}}


def condition(preset_name: str, name: str, n_slices: int, **fields) -> Preset:
    """A preset under one condition of :data:`CONDITIONS`, with some fields replaced."""
    base = get_preset(preset_name, n_slices)
    preset = condition_preset(base, name) if name in CONDITION_FIELDS else replace(base, **CONDITIONS[name])
    return replace(preset, **fields)


def bench_curvature(workdir: Path, seeds: list[int], presets: tuple[str, ...] = ("tiny", "small"),
                    conditions: tuple[str, ...] = tuple(CONDITIONS),
                    amplitudes: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)) -> None:
    """Print the curvature table: one row per preset, condition and curvature, over the seeds."""
    print("| preset | condition | curvature (voxels, p2p) | applied | residual p2p after (voxels, max over seeds) | "
          "fit error p2p | statuses | border mismatch before / after (held out, mean) |")
    print("|---|---|---|---|---|---|---|---|")
    for preset_name in presets:
        for name in conditions:
            for amplitude in amplitudes:
                residuals, errors, statuses, before, after = [], [], [], [], []
                for seed in seeds:
                    preset = condition(preset_name, name, 1, field_curvature_px=amplitude)
                    out = simulate_acquisition(workdir / f"c_{preset_name}", preset, seed, overwrite=True)
                    estimate = estimate_slice_curvature(open_acquisition(out).slice(0), GalvoShift())
                    truth = field_curvature_map(preset)
                    fitted = estimate.offset_map(truth.shape)
                    residuals.append(np.ptp(truth - (fitted if estimate.applied else 0.0)))
                    errors.append(np.ptp(truth - fitted))
                    statuses.append(estimate.status)
                    before.append(estimate.mismatch_before_px or np.nan)
                    after.append(estimate.mismatch_after_px or np.nan)
                applied = sum(status == "applied" for status in statuses)
                print(f"| {preset_name} | {name} | {amplitude} | {applied}/{len(seeds)} | {max(residuals):.2f} | "
                      f"{max(errors):.2f} | {'/'.join(statuses)} | {np.nanmean(before):.3f} / {np.nanmean(after):.3f} |")
                sys.stdout.flush()


FEATURES = {"galvo": bench_galvo, "rotation": bench_rotation, "rotation_raw": bench_rotation_raw,
            "interpolate": bench_interpolate, "curvature": bench_curvature}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature", choices=["all", *FEATURES], default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], help="galvo and curvature: presets.")
    parser.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=None,
                        help="curvature: conditions [all]; rotation_raw (not sparse): [baseline harsh].")
    parser.add_argument("--amplitudes", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0],
                        help="curvature: field curvatures, voxels peak to peak over the tile.")
    parser.add_argument("--slice_rotation", type=float, default=4.0, metavar="MAX_DEG",
                        help="rotation_raw: slices turned by U(-MAX, MAX) degrees [%(default)s].")
    parser.add_argument("--workdir", help="Scratch folder (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name, bench in FEATURES.items():
            if args.feature in ("all", name):
                print(f"## {name}")
                extra = {"presets": tuple(args.presets)} if name in ("galvo", "curvature") else {}
                if name == "curvature":
                    extra.update(conditions=tuple(args.conditions or CONDITIONS), amplitudes=tuple(args.amplitudes))
                if name == "rotation_raw":
                    extra.update(max_deg=args.slice_rotation)
                    if args.conditions:
                        extra.update(conditions=tuple(args.conditions))
                bench(workdir, args.seeds, **extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
