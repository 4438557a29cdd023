#!/usr/bin/env python3
"""Benchmark of 3D stitching: accuracy and time against m2stitch, throughput, memory.

0. The test matrix (``linumpy.simulate.stitch_matrix.MATRIX``): for every
   condition and seed, a mosaic grid OME-Zarr is drawn (independent speckle,
   vignetting, smooth tissue, stage errors and drift, empty tiles), stitched by
   the library call of ``linum_stitch_3d.py`` (files in, files out), and the
   tile positions are compared with the truth, the stage positions and
   m2stitch. Errors are distances after removing the mean translation over
   the textured tiles; "excess" is the largest amount by which any tile ends
   farther from the truth than its stage position. The column "placeable"
   counts the textured tiles left on the stage whose overlaps could place
   them within 1.5 px by bounds independent of the stitcher
   (:mod:`linumpy.simulate.stitch_bound`: Cramer-Rao bound and expected
   evidence margin of two noisy tiles, from the noise-free content and the
   noise model), with the mean / max error of those tiles. With
   ``--diagnose``, each textured tile left on the stage is listed with the
   position information its overlaps hold (that bound and the stitcher's
   own evidence, :func:`truth_margin`). The column "askable" is linumpy's
   mean / max over the textured tiles without those left on the stage that
   the bound says no method can place (the tiles a stitcher could be asked
   to place within 1.5 px), and the count of tiles so excluded. A seed
   whose stage-placed tiles were moved by a validated stage residual model
   says so under its row.
1. Accuracy and time: for each seed, a simulated slice of ``--preset`` is laid
   out as a mosaic grid; linumpy's position estimation and
   ``m2stitch.stitch_images`` get the same tile projections (AIPs) and the
   same nominal positions; tile position errors are measured against the
   simulator's ground truth after removing the mean translation. Times are
   the best of ``--repeats`` runs of the estimation alone.
2. Throughput: ``bin/linum_stitch_3d.py`` runs on a mosaic grid of
   ``--throughput_preset`` in a subprocess under ``/usr/bin/time -v``;
   reported: wall time, MB/s of (uncompressed) input, peak RSS.

Example::

    python benchmarks/bench_stitching.py --workdir /tmp/bench_stitch
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from linumpy.io.acquisition import open_acquisition
from linumpy.io.zarr import read_omezarr, read_omezarr_info
from linumpy.mosaic.grid import write_mosaic_grid
from linumpy.simulate import get_preset, simulate_acquisition
from linumpy.simulate.stitch_bound import MIN_MARGIN, PLACED_PX, RIVAL_PX, tile_bound
from linumpy.simulate.stitch_matrix import (
    MATRIX,
    aligned_errors,
    excess_over_stage,
    simulate_mosaic,
    write_simulated_mosaic,
)
from linumpy.stitching.estimate import estimate_transform, register_neighbours
from linumpy.stitching.pair_terms import CONFIDENT_SIGNIFICANCE
from linumpy.stitching.pairwise import PEAK_RADIUS_PX
from linumpy.stitching.stitch import mosaic_grid_layout, stitch_mosaic_grid, tile_projections
from linumpy.stitching.tile_search import position_maps
from linumpy.stitching.transform import TileTransform

REPOSITORY = Path(__file__).resolve().parents[1]


def prepare_slice(workdir: Path, preset: str, seed: int) -> tuple[Path, dict]:
    """Simulate one slice (if not done yet) and lay out its mosaic grid; returns (grid, truth)."""
    acquisition = workdir / f"{preset}_seed{seed}"
    if not (acquisition / "ground_truth" / "truth.json").exists():
        simulate_acquisition(acquisition, get_preset(preset, n_slices=1), seed=seed)
    truth = json.loads((acquisition / "ground_truth" / "truth.json").read_text())["slices"][0]
    grid = workdir / f"{preset}_seed{seed}_mosaic_grid_3d_z00.ome.zarr"
    if not grid.exists():
        section = open_acquisition(acquisition).slice(truth["slice_id"])
        write_mosaic_grid(section, grid, workdir / f"{preset}_seed{seed}_aip.ome.zarr", n_levels=0)
    return grid, truth


def position_errors(estimated: dict, truth: dict) -> np.ndarray:
    """Per-tile Euclidean error (pixels) after removing the mean translation."""
    tiles = sorted(truth)
    difference = np.array([np.asarray(estimated[t], float) - truth[t] for t in tiles])
    difference -= difference.mean(axis=0)
    return np.linalg.norm(difference, axis=1)


def best_time(function, repeats: int):
    """Return (result of the last call, best wall time in seconds)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, min(times)


#: m2stitch's NCC thresholds tried in turn: its default, then lower ones, as its error message
#: ("there is no good top pair, (try lowering the ncc_threshold)") tells a user to do.
M2STITCH_NCC_THRESHOLDS = (0.5, 0.3, 0.1, 0.0)


def run_m2stitch(projections: dict, tile_step_px) -> dict:
    """Tile positions from m2stitch, given the nominal positions as initial guess.

    Its NCC threshold is lowered through :data:`M2STITCH_NCC_THRESHOLDS` while it finds no
    pair above it; the error of the lowest is raised if every one fails.
    """
    import m2stitch

    tiles = sorted(projections)
    images = np.stack([projections[t] for t in tiles])
    guess = np.array([[r * tile_step_px[0], c * tile_step_px[1]] for r, c in tiles], float)
    for threshold in M2STITCH_NCC_THRESHOLDS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                grid, _ = m2stitch.stitch_images(
                    images, rows=[t[0] for t in tiles], cols=[t[1] for t in tiles],
                    position_initial_guess=guess, row_col_transpose=False, ncc_threshold=threshold,
                )
            break
        except AssertionError:  # no pair above the threshold: lower it, as its message says
            if threshold == M2STITCH_NCC_THRESHOLDS[-1]:
                raise
    return {t: (grid.loc[i, "y_pos"], grid.loc[i, "x_pos"]) for i, t in enumerate(tiles)}


def compare_with_m2stitch(workdir: Path, preset: str, seeds: list[int], repeats: int) -> None:
    print(f"== accuracy and time vs m2stitch, preset {preset} ==")
    print(f"{'seed':>4} {'empty':>5} | {'ours mean/max px':>17} {'time s':>7} | "
          f"{'m2stitch mean/max px':>21} {'time s':>7} | {'err ratio':>9} {'time ratio':>10}")
    ratios = []
    for seed in seeds:
        grid, truth_slice = prepare_slice(workdir, preset, seed)
        truth = {(r, c): np.array([y, x], float) for r, c, y, x in truth_slice["tile_positions_px"]}
        data, _ = read_omezarr(grid)
        layout = mosaic_grid_layout(read_omezarr_info(grid).attributes, data.shape, str(grid))
        projections = tile_projections(data, layout)
        transform, ours_time = best_time(
            lambda: estimate_transform(projections, layout.tile_step_px), repeats)
        ours = position_errors({t: transform.position(t) for t in truth}, truth)
        row = (f"{seed:>4} {len(truth_slice['empty_tiles']):>5} | "
               f"{ours.mean():8.3f}/{ours.max():<8.3f}{ours_time:7.3f} | ")
        try:
            theirs_positions, theirs_time = best_time(
                lambda: run_m2stitch(projections, layout.tile_step_px), repeats)
            theirs = position_errors(theirs_positions, truth)
        except AssertionError as error:  # m2stitch gives up when no pair passes its NCC threshold
            print(f"{row}m2stitch failed: {error}")
            continue
        error_ratio = ours.mean() / max(theirs.mean(), 1e-9)
        time_ratio = ours_time / theirs_time
        ratios.append((error_ratio, time_ratio))
        print(f"{row}{theirs.mean():12.3f}/{theirs.max():<8.3f}{theirs_time:7.3f} | "
              f"{error_ratio:9.4f} {time_ratio:10.3f}")
    if ratios:
        error_ratio, time_ratio = np.mean(ratios, axis=0)
        print(f"mean ratios (ours / m2stitch): error {error_ratio:.4f}, time {time_ratio:.3f}")


def _summary(errors: list[dict], tiles: list[list]) -> str:
    """``mean / max`` over the given tiles of every seed (mean of all, max of all)."""
    values = [e[t] for e, chosen in zip(errors, tiles) for t in chosen]
    return f"{np.mean(values):5.2f} / {np.max(values):5.2f}" if values else "    - /     -"


def truth_margin(tile, links: list, truth: dict, piece: list | None = None) -> float:
    """Joint evidence of ``tile``'s pairs at its true position minus the best rival, standard errors.

    Every other tile of ``links`` (``((a, b), PairRegistration)``) is put at
    its true position (rounded), the pairs' evidence maps are summed over the
    tile's position as the joint search does (divided by ``sqrt(k)``), and the
    best value within 1 px of the truth is compared with the best value
    farther than the peak radius, at the speckle scale where that is largest.
    Below the joint search's threshold (2), not even perfectly placed
    neighbours could place the tile; below 0, a wrong position wins. With
    ``piece`` (tiles including ``tile``), the piece moves as one, its tiles at
    their true positions relative to ``tile``, and ``links`` are its pairs
    with tiles outside it.
    """
    best = -np.inf
    members = {t: np.rint(truth[t] - truth[tile]).astype(int) for t in piece or [tile]}
    anchors = {other: np.rint(truth[other]).astype(int) for pair, _ in links for other in pair
               if other not in members}
    for scale in sorted({m.speckle_px for _, r in links for m in r.scores}):
        chosen = [(pair, m) for pair, r in links for m in r.scores if m.speckle_px == scale]
        centre, maps = position_maps(tile, chosen, anchors, members)
        joint = np.sum(maps, axis=0) / np.sqrt(len(maps))
        offsets = np.indices(joint.shape).transpose(1, 2, 0) - (joint.shape[0] - 1) // 2 + centre
        distance = np.linalg.norm(offsets - truth[tile], axis=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
            margin = np.nanmax(np.where(distance <= 1, joint, np.nan)) - np.nanmax(
                np.where(distance > PEAK_RADIUS_PX, joint, np.nan))
        if np.isfinite(margin):
            best = max(best, float(margin))
    return best


def stage_tile_bounds(mosaic, transform: TileTransform) -> dict:
    """``tile -> TileBound`` for every textured tile left on the stage."""
    return {t: tile_bound(mosaic, t) for t in transform.stage_fallback_tiles() if t not in mosaic.empty_tiles}


def stage_piece(tile, transform: TileTransform) -> list:
    """The tiles left on the stage that pairs of own significance >= ``CONFIDENT_SIGNIFICANCE`` join to ``tile``.

    What the stitcher can see of the piece ``tile`` would move with: its
    pairs' peaks single out its tiles' relative positions.
    """
    left = set(transform.stage_fallback_tiles())
    piece, frontier = {tile}, [tile]
    while frontier:
        current = frontier.pop()
        for p in transform.pairs:
            other = p.b if p.a == current else p.a if p.b == current else None
            if other in left and other not in piece and p.significance >= CONFIDENT_SIGNIFICANCE:
                piece.add(other)
                frontier.append(other)
    return sorted(piece)


def diagnose_stage_tiles(mosaic, transform: TileTransform, errors: dict, bounds: dict) -> list[str]:
    """One line per textured tile left on the stage: its error, its bound and :func:`truth_margin`.

    The margin is given twice: with all its neighbours, and with only the
    neighbours placed by pairs (those the joint search can use); and, for a
    tile that confident pairs join to other tiles left on the stage
    (:func:`stage_piece`), a third time for that piece moved as one against
    its placed neighbours (what a search of the piece could use).
    """
    stage = sorted(bounds)
    if not stage:
        return []
    _, registrations = register_neighbours(mosaic.projections(), mosaic.condition.tile_step_px)
    placed = {t for t, record in transform.tiles.items() if record.source == "pairs"}
    lines = []
    for tile in stage:
        links = [(pair, r) for pair, r in registrations.items() if tile in pair and r.scores]
        linked = [(pair, r) for pair, r in links if (pair[0] if pair[1] == tile else pair[1]) in placed]
        margins = [truth_margin(tile, chosen, mosaic.truth) if chosen else -np.inf for chosen in (links, linked)]
        shown = [f"{m:+.2f}" if np.isfinite(m) else "-" for m in margins]
        piece = stage_piece(tile, transform)
        if len(piece) > 1:
            out = [(pair, r) for pair, r in registrations.items()
                   if r.scores and (pair[0] in piece) != (pair[1] in piece) and set(pair) & placed]
            margin = truth_margin(tile, out, mosaic.truth, piece) if out else -np.inf
            shown.append(f", {margin:+.2f} (its piece of {len(piece)} stage tiles joined by confident pairs, "
                         f"{len(out)} links to placed tiles)" if np.isfinite(margin) else
                         f", - (its piece of {len(piece)} stage tiles, no link to a placed tile)")
        lines.append(f"    tile {tile} on the stage, error {errors[tile]:.2f} px: evidence margin at the truth "
                     f"{shown[0]} (all {len(links)} neighbours at their true positions), "
                     f"{shown[1]} ({len(linked)} placed neighbours){''.join(shown[2:])}; "
                     f"bound: {bounds[tile].describe()}")
    return lines


def run_matrix(workdir: Path, seeds: list[int], names: list[str] | None, diagnose: bool = False) -> None:
    """Stitch every condition of the matrix for ``seeds``; print one table row per condition."""
    print("== test matrix: textured tiles mean / max px (over seeds), empty tiles max px ==")
    print(f"placeable: textured tiles on the stage whose overlaps could place them within {PLACED_PX:g} px "
          f"(Cramer-Rao <= {PLACED_PX / 3:g} px, expected margin of two noisy tiles over rivals beyond "
          f"{RIVAL_PX} px >= {MIN_MARGIN:g}), count over seeds and their mean / max error; 'sure': "
          f"those whose expected margin is >= {2 * MIN_MARGIN:g} (noise peaks lower a realised margin by ~1-3)")
    print("askable: linumpy's textured tiles without those on the stage that are not placeable, mean / max, "
          "and how many were excluded")
    print(f"{'condition':<62} | {'linumpy':>13} {'empty':>5} {'excess':>6} {'own':>6} {'stage':>4} | "
          f"{'askable':>17} | {'placeable':>19} {'sure':>4} | {'stage pos':>13} {'empty':>5} | {'m2stitch':>13}")
    for condition in MATRIX:
        if names and not any(condition.name.startswith(n) for n in names):
            continue
        ours, stage, theirs, textured, empty, fallback, excess, crashed = [], [], [], [], [], [], [], 0
        diagnosis, placeable, askable, sure = [], [], [], 0
        for seed in seeds:
            mosaic = simulate_mosaic(condition, seed)
            grid = workdir / f"matrix_seed{seed}.ome.zarr"
            write_simulated_mosaic(mosaic, grid, overwrite=True)
            transform = stitch_mosaic_grid(grid, workdir / f"matrix_seed{seed}_stitched.ome.zarr",
                                           n_levels=0, overwrite=True)
            chosen = [t for t in mosaic.truth if t not in mosaic.empty_tiles]
            textured.append(chosen)
            empty.append(list(mosaic.empty_tiles))
            fallback.append(len(transform.stage_fallback_tiles()))
            estimated = {t: transform.position(t) for t in mosaic.truth}
            ours.append(aligned_errors(estimated, mosaic.truth, chosen))
            bounds = stage_tile_bounds(mosaic, transform)
            placeable.append([t for t, bound in bounds.items() if bound.placeable])
            askable.append([t for t in chosen if t not in bounds or bounds[t].placeable])
            sure += sum(bounds[t].expected_margin >= 2 * MIN_MARGIN for t in placeable[-1])
            lines = diagnose_stage_tiles(mosaic, transform, ours[-1], bounds) if diagnose else []
            if transform.stage_residuals.used:
                lines.append(f"    stage residual model: {transform.stage_residuals.describe()}, "
                             f"{len(transform.stage_residuals.corrections)} tiles moved")
            diagnosis += [f"  seed {seed}:"] + lines if lines else []
            excess.append(max(excess_over_stage(estimated, mosaic.stage, mosaic.truth, chosen).values()))
            stage.append(aligned_errors(mosaic.stage, mosaic.truth, chosen))
            try:
                theirs.append(aligned_errors(run_m2stitch(mosaic.projections(), condition.tile_step_px),
                                             mosaic.truth, chosen))
            except Exception:  # noqa: BLE001 -- m2stitch raises various errors on hard input
                crashed += 1
                theirs.append({})
        own_excess = max(o[t] - s[t] for o, s in zip(ours, stage) for t in o)
        ran = [(errors, chosen) for errors, chosen in zip(theirs, textured) if errors]
        m2 = _summary(*map(list, zip(*ran))) if ran else "crashes"
        m2 += f" ({crashed} crashed)" if crashed and ran else ""
        print(f"{condition.name[:62]:<62} | {_summary(ours, textured)} {_summary(ours, empty)[-5:]} "
              f"{max(excess):+6.2f} {own_excess:+6.2f} {np.mean(fallback):4.1f} | "
              f"{_summary(ours, askable)} {sum(map(len, textured)) - sum(map(len, askable)):3d} | "
              f"{sum(map(len, placeable)):3d} {_summary(ours, placeable)} {sure:4d} | {_summary(stage, textured)} "
              f"{_summary(stage, empty)[-5:]} | {m2:>13}", flush=True)
        for line in diagnosis:
            print(line, flush=True)


def measure_throughput(workdir: Path, preset: str) -> None:
    print(f"== whole script, preset {preset} ==")
    grid, _ = prepare_slice(workdir, preset, seed=0)
    info = read_omezarr_info(grid)
    input_mb = np.prod(info.shape) * info.dtype.itemsize / 1e6
    out = workdir / f"{preset}_slice_z00_stitch_3d.ome.zarr"
    command = ["/usr/bin/time", "-v", sys.executable, str(REPOSITORY / "bin" / "linum_stitch_3d.py"),
               str(grid), str(out), "--overwrite", "--quiet"]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr).group(1))
    print(f"input {info.shape} {info.dtype}: {input_mb:.0f} MB; wall {wall:.1f} s; "
          f"throughput {input_mb / wall:.1f} MB/s; peak RSS {peak_kb / 1024:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench_stitching_work"),
                        help="Where simulated data are kept between runs [%(default)s].")
    parser.add_argument("--matrix_seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                        help="Seeds of the test matrix (none: skip it).")
    parser.add_argument("--conditions", nargs="*",
                        help="Matrix conditions to run (name prefixes; default all).")
    parser.add_argument("--diagnose", action="store_true",
                        help="List each textured tile left on the stage with the position "
                             "information its overlaps hold (evidence margin at the truth).")
    parser.add_argument("--preset", default="small",
                        help="Preset of the accuracy comparison ('none' to skip).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="Timing repeats (best kept).")
    parser.add_argument("--throughput_preset", default="large",
                        help="Preset of the whole-script run ('none' to skip).")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.matrix_seeds:
        run_matrix(args.workdir, args.matrix_seeds, args.conditions, args.diagnose)
    if args.preset != "none":
        compare_with_m2stitch(args.workdir, args.preset, args.seeds, args.repeats)
    if args.throughput_preset != "none":
        measure_throughput(args.workdir, args.throughput_preset)


if __name__ == "__main__":
    main()
