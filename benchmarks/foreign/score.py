"""Score a ``linum_run_local.py`` output against a foreign acquisition's ground truth.

Reads only the outputs a user gets (``stitch_3d/*_transform.json``, the stitched slices' tile positions,
``stack/volume.ome.zarr`` and its ``volume_shifts.json``, the QC records) and
``ground_truth/`` of ``benchmarks/foreign/generate.py``; no ``linumpy`` import
(zarr and ome-zarr-models only), so that the scorer shares no code with what it
scores (it does read the stack's common tilt and flattening planes, which say
how the pipeline sheared the volume). Scores (see ``benchmarks/README.md``):

- tiles: position error after removing each slice's mean translation, the
  pipeline's transform vs the stage (nominal grid) as the naive baseline;
- volume: the output is matched to the ground-truth reflectivity by a 3D
  translation (sub-voxel, the flattening's common tilt applied to the truth),
  then NCC inside tissue, per-plane mean ratio (CV along z), and the ratio's
  steps at the slab boundaries, on the 10 um level; the same for a naive
  stack (normalised slices at their raw motor z, no refinement or blending);
- slice z placement, two ways: each slice's placed depth against where its
  plane 0 truly lies (``k * thickness`` + its flattening plane), with the raw
  motor z as the naive baseline; and per slab, the residual depth shift
  (level 0) that best matches the truth once the global translation is removed;
- attenuation: per tissue region, the median of the mapped attenuation vs the truth (A-lines whose 40
  planes below the cut are one region; `attenuation_full_range`: the whole range the map is fitted on),
  and vs the texture reference (the truth plus the decay the phantom's texture adds over those planes);
- every ``.ome.zarr`` opened by ome-zarr-models, and every QC flag.

Usage::

    python benchmarks/foreign/score.py ACQUISITION OUTDIR [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import zarr
from scipy import ndimage, optimize

#: Fewest tissue voxels for a plane to count in the per-plane ratios.
MIN_PLANE_VOXELS = 100
#: Output planes averaged on each side of a slab boundary.
BOUNDARY_PLANES = 2


def tile_errors(truth: dict, outdir: Path) -> dict:
    """Per slice, mean / max tile position error (px) of the pipeline and of the stage positions."""
    cfg = truth["config"]
    step = [round(n * (1 - cfg["overlap"])) for n in cfg["tile"][1:]]
    rows = []
    for entry in truth["slices"]:
        k = entry["slice_id"]
        transform = json.loads((outdir / "stitch_3d" / f"slice_z{k:02d}_stitch_3d_transform.json").read_text())
        est = {(r, c): (y, x) for r, c, y, x in transform["tile_positions_px"]}
        true = {(r, c): (y, x) for r, c, y, x in entry["tile_positions_px"]}
        keys = sorted(true)
        t = np.array([true[key] for key in keys])
        e = np.array([est[key] for key in keys])
        s = np.array([[r * step[0], c * step[1]] for r, c in keys], float)

        def err(p: np.ndarray) -> np.ndarray:
            d = p - t
            return np.linalg.norm(d - d.mean(axis=0), axis=1)

        ours, stage = err(e), err(s)
        fallback = [t_["tile"] for t_ in transform.get("tiles", []) if t_.get("source") != "pairs"]
        rows.append({"slice": k, "mean": ours.mean(), "max": ours.max(), "stage_mean": stage.mean(),
                     "stage_max": stage.max(), "worse_than_stage": int(np.sum(ours > stage + 0.5)),
                     "tiles_not_from_pairs": len(fallback)})
    return {"per_slice": rows, "mean": float(np.mean([r["mean"] for r in rows])),
            "max": float(np.max([r["max"] for r in rows])),
            "stage_mean": float(np.mean([r["stage_mean"] for r in rows])),
            "stage_max": float(np.max([r["stage_max"] for r in rows]))}


def _level(volume: Path, target_um: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, scale um, translation um) of the pyramid level closest to ``target_um``."""
    group = zarr.open_group(str(volume), mode="r")
    datasets = group.attrs["multiscales"][0]["datasets"]
    best = min(datasets, key=lambda d: abs(d["coordinateTransformations"][0]["scale"][-1] - target_um))
    scale = np.asarray(best["coordinateTransformations"][0]["scale"], float)
    shift = [t for t in best["coordinateTransformations"] if t["type"] == "translation"]
    translation = np.asarray(shift[0]["translation"], float) if shift else np.zeros(3)
    return np.asarray(group[best["path"]][...], np.float64), scale, translation


class Truth:
    """The ground truth sampled on an output grid, flattened by the common cut tilt."""

    def __init__(self, acquisition: Path, tilt: tuple[float, float]) -> None:
        self.truth = json.loads((acquisition / "ground_truth" / "truth.json").read_text())
        self.cfg = self.truth["config"]
        self.reflectivity = np.load(acquisition / "ground_truth" / "reflectivity.npy")
        labels = np.load(acquisition / "ground_truth" / "labels.npy")
        surfaces = np.load(acquisition / "ground_truth" / "surfaces.npy")
        z = np.arange(labels.shape[0])[:, None, None]
        # Tissue: sample regions other than the cavity, below the first cut.
        self.tissue = ((labels >= 1) & (labels <= 6) & (z >= surfaces[0][None])).astype(np.float32)
        self.tilt = tilt
        self.centre = (np.asarray(labels.shape[1:]) - 1) / 2.0
        self._box = {}

    def sample(self, field: str, scale: np.ndarray, points_um: list[np.ndarray], offset: np.ndarray) -> np.ndarray:
        """``field`` box-averaged over an output voxel of ``scale`` um, at output points (um) + ``offset``.

        ``offset`` is in world planes and pixels ``(z, y, x)``.
        """
        key = (field, tuple(scale))
        if key not in self._box:
            source = self.reflectivity if field == "reflectivity" else self.tissue
            voxel = (self.cfg["axial_um"], self.cfg["lateral_um"], self.cfg["lateral_um"])
            size = [max(1, int(round(s / r))) for s, r in zip(scale, voxel)]
            self._box[key] = ndimage.uniform_filter(source.astype(np.float32), size, mode="nearest")
        y = points_um[1] / self.cfg["lateral_um"] + offset[1]
        x = points_um[2] / self.cfg["lateral_um"] + offset[2]
        plane = self.tilt[0] * (y - self.centre[0]) + self.tilt[1] * (x - self.centre[1])
        z = points_um[0] / self.cfg["axial_um"] + offset[0] + plane
        return ndimage.map_coordinates(self._box[key], [z, y, x], order=1, cval=0.0)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def _grid(shape, scale, translation) -> list[np.ndarray]:
    return list(np.meshgrid(*[translation[a] + scale[a] * np.arange(shape[a]) for a in range(3)], indexing="ij"))


def match_volume(truth: Truth, data: np.ndarray, scale, translation, guess: np.ndarray) -> np.ndarray:
    """The (planes, px, px) offset of the truth that best matches ``data`` (NCC where data > 0)."""
    points = _grid(data.shape, scale, translation)
    inside = data > 0

    def cost(offset: np.ndarray) -> float:
        return -_ncc(data[inside], truth.sample("reflectivity", scale, [p[inside] for p in points], offset))

    # Whole-voxel search first (in output voxels), then a local sub-voxel refinement.
    steps = scale / np.array([truth.cfg["axial_um"], truth.cfg["lateral_um"], truth.cfg["lateral_um"]])
    best = guess
    for span in (4, 1):
        moves = range(-span, span + 1)
        candidates = [best + steps * np.array([dz, dy, dx]) * (1 if span > 1 else 0.5)
                      for dz in moves for dy in moves for dx in moves]
        best = min(candidates, key=cost)
    return optimize.minimize(cost, best, method="Powell", options={"xtol": 0.05, "ftol": 1e-5}).x


def volume_scores(truth: Truth, outdir: Path, shifts: dict) -> dict:
    """NCC, per-plane ratio CV, boundary steps (10 um level) and per-slab z residuals (level 0)."""
    data, scale, translation = _level(outdir / "stack" / "volume.ome.zarr", 10.0)
    margin = truth.truth["margin_px"]
    first = truth.truth["slices"][0]
    # Initial guess: slice 0's origin sits at the world mosaic origin; depth at its mean cut.
    guess = np.array([truth.cfg["surface"], margin + first["sample_shift_px"][0], margin + first["sample_shift_px"][1]])
    offset = match_volume(truth, data, scale, translation, guess)
    points = _grid(data.shape, scale, translation)
    ref = truth.sample("reflectivity", scale, points, offset).reshape(data.shape)
    tissue = (truth.sample("tissue", scale, points, offset).reshape(data.shape) > 0.9) & (data > 0)
    boundaries = [(s["origin_um"][0] - translation[0]) / scale[0] for s in shifts["slices"][1:]]
    return {"offset": offset.tolist(), **_intensity_scores(data, ref, tissue, boundaries),
            "z_residual_um": slab_z_residuals(truth, outdir, shifts, offset)}


def _intensity_scores(data: np.ndarray, ref: np.ndarray, tissue: np.ndarray, boundaries: list[float]) -> dict:
    """NCC inside tissue, per-plane mean ratio CV and max/min, and its steps at the slab boundaries (planes)."""
    ratios = np.full(data.shape[0], np.nan)
    for z in range(data.shape[0]):
        if tissue[z].sum() >= MIN_PLANE_VOXELS:
            ratios[z] = data[z][tissue[z]].mean() / ref[z][tissue[z]].mean()
    finite = ratios[np.isfinite(ratios)]
    steps = []
    for b in boundaries:
        b = int(round(b))
        above, below = ratios[max(0, b - BOUNDARY_PLANES):b], ratios[b:b + BOUNDARY_PLANES]
        if np.isfinite(above).any() and np.isfinite(below).any():
            steps.append(float(np.nanmean(below) / np.nanmean(above) - 1.0))
    return {"ncc": _ncc(data[tissue], ref[tissue]), "plane_ratio_cv": float(finite.std() / finite.mean()),
            "plane_ratio_max_min": float(finite.max() / finite.min()), "boundary_steps": steps,
            "max_boundary_step": float(np.max(np.abs(steps))) if steps else None}


def naive_volume_scores(truth: Truth, outdir: Path) -> dict:
    """The naive baseline: normalised slices stacked by the raw motor z (no refinement, no blending).

    Slice k's plane 0 (its surface) goes at its motor z relative to slice 0; it fills the depth
    down to the next slice's plane 0 (the last slice: the median step); lateral origins are the
    stage's (all equal here). Built at the slices' own sampling, box-averaged to 10 um.
    """
    entries = truth.truth["slices"]
    motor_um = np.array([(e["motor_z_mm"] - entries[0]["motor_z_mm"]) * 1000 for e in entries])
    axial = truth.cfg["axial_um"]
    starts = np.rint(motor_um / axial).astype(int)
    ends = np.append(starts[1:], starts[-1] + int(np.median(np.diff(starts))))
    slices = [zarr.open_group(str(outdir / "normalize" / f"slice_z{e['slice_id']:02d}_normalize.ome.zarr"),
                              mode="r")["0"] for e in entries]
    shape_yx = np.max([a.shape[1:] for a in slices], axis=0)
    stack = np.zeros((ends[-1] - starts[0], *shape_yx), np.float32)
    for a, start, end in zip(slices, starts, ends):
        planes = np.asarray(a[: end - start])
        stack[start - starts[0]:start - starts[0] + planes.shape[0], : planes.shape[1], : planes.shape[2]] = planes
    scale = np.array([10.0, 10.0, 10.0])
    factors = scale / np.array([axial, truth.cfg["lateral_um"], truth.cfg["lateral_um"]])
    smooth = ndimage.uniform_filter(stack, [max(1, int(round(f))) for f in factors], mode="constant")
    centres = [np.arange(0.5 * f - 0.5, n, f) for f, n in zip(factors, stack.shape)]
    data = ndimage.map_coordinates(smooth, np.meshgrid(*centres, indexing="ij"), order=1)
    translation = np.array([centres[a][0] * (axial if a == 0 else truth.cfg["lateral_um"]) for a in range(3)])
    margin = truth.truth["margin_px"]
    guess = np.array([truth.cfg["surface"], margin + entries[0]["sample_shift_px"][0],
                      margin + entries[0]["sample_shift_px"][1]])
    offset = match_volume(truth, data, scale, translation, guess)
    points = _grid(data.shape, scale, translation)
    ref = truth.sample("reflectivity", scale, points, offset).reshape(data.shape)
    tissue = (truth.sample("tissue", scale, points, offset).reshape(data.shape) > 0.9) & (data > 0)
    return _intensity_scores(data, ref, tissue, list((starts[1:] - starts[0]) * axial / scale[0]))


def slab_z_residuals(truth: Truth, outdir: Path, shifts: dict, offset: np.ndarray) -> list[float]:
    """Per slab (level 0), the depth shift (um) of the truth that best matches it, relative to slab 0's."""
    data, scale, translation = _level(outdir / "stack" / "volume.ome.zarr", 0.0)
    starts = [s["origin_um"][0] for s in shifts["slices"]] + [translation[0] + scale[0] * data.shape[0]]
    residuals = []
    for k in range(len(shifts["slices"])):
        lo, hi = int(np.ceil(starts[k] / scale[0])), int(np.floor(starts[k + 1] / scale[0]))
        block = data[lo:hi]
        points = _grid(block.shape, scale, translation + np.array([lo * scale[0], 0, 0]))
        inside = block > 0
        sub = [p[inside] for p in points]
        grid = np.arange(-4.0, 4.01, 0.25)  # planes

        def score(dz: float) -> float:
            return _ncc(block[inside], truth.sample("reflectivity", scale, sub, offset + np.array([dz, 0, 0])))

        values = np.array([score(dz) for dz in grid])
        best = int(np.argmax(values))
        dz = grid[best]
        if 0 < best < grid.size - 1:
            left, peak, right = values[best - 1:best + 2]
            curvature = left - 2 * peak + right
            if curvature < 0:
                dz += 0.25 * 0.5 * (left - right) / curvature
        residuals.append(dz * truth.cfg["axial_um"])
    return [round(r - residuals[0], 2) for r in residuals]


def motor_z_errors(truth: Truth, shifts: dict) -> dict:
    """Placed and motor-only depth of each slice vs the truth (um, relative to slice 0).

    Compared at one lateral point of the output, slice k's centre: slice k's
    plane 0 images world plane ``k * thickness + F_k(c)`` there (``F_k``: the
    plane the pipeline flattened it by, ``c`` its centre pixel), slice 0's
    plane 0 images ``F_0(c + o_k)`` (``o_k``: slice k's lateral origin in
    slice 0's pixels), so a slice shifted laterally under a tilted surface is
    not charged the tilt times its shift. The placement puts slice k's plane 0
    at ``origin_um[0]``; the raw motor at ``z_k - z_0``.
    """
    cfg = truth.cfg
    rows = []
    slices = shifts["slices"]
    first = slices[0]["flatten_plane"]
    for s, t in zip(slices, truth.truth["slices"]):
        plane = s["flatten_plane"]
        centre = np.array(s["shape_voxel"][1:]) / 2.0
        origin = (np.array(s["origin_um"][1:]) - np.array(slices[0]["origin_um"][1:])) / cfg["lateral_um"]
        here = plane[0] + plane[1] * centre[0] + plane[2] * centre[1]
        there = first[0] + first[1] * (centre[0] + origin[0]) + first[2] * (centre[1] + origin[1])
        true = (t["world_z_offset_px"] + here - there) * cfg["axial_um"]
        motor = (t["motor_z_mm"] - truth.truth["slices"][0]["motor_z_mm"]) * 1000
        rows.append({"slice": s["slice_id"], "placed_error_um": round(float(s["origin_um"][0] - true), 2),
                     "motor_error_um": round(float(motor - true), 2), "used_registration_z": s["used_registration_z"]})
    return {"per_slice": rows}


def placed_origins(stitched: Path) -> dict[tuple[int, int], tuple[int, int]]:
    """Each tile's pixel (0, 0) in a stitched slice's own pixel frame, ``(row, col) -> (y, x)``.

    Read from the stitched OME-Zarr's ``linumpy`` attributes: the fusion translates the transform's
    positions (``*_transform.json``, the solve's frame, which may be negative) so that the smallest
    is 0 and rounds them (the slice and every map of the axial step are in that frame).
    """
    attributes = zarr.open_group(str(stitched), mode="r").attrs["linumpy"]
    return {(int(r), int(c)): (round(y), round(x)) for r, c, y, x in attributes["tile_positions_px"]}


def attenuation_scores(acquisition: Path, truth: dict, outdir: Path, depth: int | None = 40) -> dict:
    """Per tissue region, the median attenuation the axial correction mapped (1/mm) vs the truth.

    An A-line counts for a region when the ``depth`` planes below its cut are all that region
    (slice pixels mapped to world pixels through the stitched tile positions in the stitched slice's
    own frame, :func:`placed_origins`); ``depth=None``:
    every plane from the cut to the bottom of the tile (less the 2-plane field curvature), the
    longest range the map is fitted on (it stops an A-line's range at its first change, a region
    of another reflectivity below: the 40-plane rule scores the tissue just below the cut, the
    full range the A-lines that never change). Returns, per region name, the true value, the
    median estimate over all slices, its relative error, and the texture reference: the region's
    attenuation plus the decay its reflectivity's texture adds over the scored planes of the same
    A-lines (:func:`texture_decay`), what a fit of the noise-free true signal over them reads, and
    the estimate's error against it (the rest is the map's, not the phantom's realization). Each slice's
    map is its final axial correction's, in ``axial_corr/`` (a borrower's: with the acquisition's focus).
    """
    cfg = truth["config"]
    labels = np.load(acquisition / "ground_truth" / "labels.npy")
    surfaces = np.load(acquisition / "ground_truth" / "surfaces.npy")
    reflectivity = np.load(acquisition / "ground_truth" / "reflectivity.npy", mmap_mode="r")
    estimates: dict[int, list[np.ndarray]] = {}
    textures: dict[int, list[np.ndarray]] = {}
    for k, entry in enumerate(truth["slices"]):
        est = placed_origins(outdir / "stitch_3d" / f"slice_z{entry['slice_id']:02d}_stitch_3d.ome.zarr")
        offset = np.mean([np.subtract((y, x), est[(r, c)]) for r, c, y, x in entry["tile_positions_px"]], axis=0)
        offset += truth["margin_px"] + np.asarray(entry["sample_shift_px"])
        name = f"slice_z{entry['slice_id']:02d}_axial_corr_attenuation.ome.zarr"
        group = zarr.open_group(str(outdir / "axial_corr" / name), mode="r")
        mapped = np.asarray(group["0"][...], np.float64)
        y, x = np.indices(mapped.shape)
        wy = np.clip(np.rint(y + offset[0]).astype(int), 0, labels.shape[1] - 1)
        wx = np.clip(np.rint(x + offset[1]).astype(int), 0, labels.shape[2] - 1)
        cut = np.ceil(surfaces[k][wy, wx]).astype(int)
        planes = depth or int(k * cfg["thickness"] + cfg["tile"][0] - 1 - cfg["curvature"] - cut.min())
        bottom = int(k * cfg["thickness"] + cfg["tile"][0] - 1 - cfg["curvature"])
        column = np.stack([labels[np.clip(np.minimum(cut + d, bottom), 0, labels.shape[0] - 1), wy, wx]
                           for d in range(planes)])
        pure = (column == column[0]).all(axis=0) & np.isfinite(mapped)
        texture = texture_decay(reflectivity, cut[pure], wy[pure], wx[pure],
                                np.minimum(planes, bottom + 1 - cut[pure]), cfg["axial_um"] / 1000)
        for label in np.unique(column[0][pure]):
            estimates.setdefault(int(label), []).append(mapped[pure & (column[0] == label)])
            textures.setdefault(int(label), []).append(texture[column[0][pure] == label])
    result = {}
    for label, values in sorted(estimates.items()):
        region = cfg["regions"][label]
        median = float(np.median(np.concatenate(values)))
        true = region["attenuation_per_mm"]
        reference = true + float(np.nanmedian(np.concatenate(textures[label])))
        result[region["name"]] = {"true_per_mm": true, "estimated_per_mm": round(median, 3),
                                  "relative_error": round(median / true - 1, 3) if true else None,
                                  "n_alines": int(sum(v.size for v in values)),
                                  "texture_reference_per_mm": round(reference, 3),
                                  "error_vs_texture_reference": round(median / reference - 1, 3) if reference > 0
                                  else None}
    return result


#: Planes below the cut left out of :func:`texture_decay`'s fit (the map's own margin).
TEXTURE_MARGIN = 3


def texture_decay(reflectivity: np.ndarray, cut: np.ndarray, wy: np.ndarray, wx: np.ndarray,
                  planes: np.ndarray | int, dz_mm: float) -> np.ndarray:
    """Per A-line, the decay rate (1/mm) the reflectivity's texture adds over ``[cut + 3, cut + planes)``.

    ``-slope(log R) / (2 dz)`` of the world column's true reflectivity, a least-squares line: within one
    region the transmission decays at the region's attenuation exactly, so the noise-free signal
    ``R * T`` fitted over those planes reads the attenuation plus this. NaN with fewer than 8 planes.
    """
    depth = np.arange(TEXTURE_MARGIN, int(np.max(planes, initial=TEXTURE_MARGIN)))[:, None]
    use = depth < np.broadcast_to(planes, cut.shape)[None]
    z = np.clip(cut[None] + depth, 0, reflectivity.shape[0] - 1)
    log = np.log(np.maximum(np.asarray(reflectivity[z, wy[None], wx[None]], np.float64), 1e-6))
    n = use.sum(axis=0)
    mean_k = np.where(use, depth, 0).sum(axis=0) / np.maximum(n, 1)
    dk = np.where(use, depth - mean_k, 0.0)
    slope = (dk * log).sum(axis=0) / np.maximum((dk * dk).sum(axis=0), 1e-12)
    return np.where(n >= 8, -slope / (2 * dz_mm), np.nan)


def validate_outputs(outdir: Path) -> dict:
    """Every ``.ome.zarr`` under ``outdir`` opened by ome-zarr-models: count and failures."""
    import ome_zarr_models

    paths = sorted(outdir.rglob("*.ome.zarr"))
    failures = []
    for path in paths:
        try:
            ome_zarr_models.open_ome_zarr(str(path))
        except Exception as error:  # noqa: BLE001 (any failure is a finding)
            failures.append(f"{path.relative_to(outdir)}: {type(error).__name__}: {str(error)[:120]}")
    return {"n_checked": len(paths), "failures": failures}


def qc_flags(outdir: Path) -> list[str]:
    """Every red flag written by the steps' QC records, but a borrower's refused first axial correction's
    (``axial_corr_refused/``: replaced by its final record in ``axial_corr/``, as the report reads it)."""
    flags = []
    for path in sorted(outdir.rglob("*_qc.json")):
        if path.parent.name == "axial_corr_refused" and (outdir / "axial_corr" / path.name).exists():
            continue
        record = json.loads(path.read_text())
        flags += [f"{record.get('step')} {record.get('slice_id')}: {f}" for f in record.get("flags", [])]
    return flags


def score(acquisition: Path, outdir: Path) -> dict:
    """Every score of one run (see the module docstring)."""
    shifts = json.loads((outdir / "stack" / "volume_shifts.json").read_text())
    qc = json.loads((outdir / "stack" / "volume_qc.json").read_text())
    tilt = qc["metrics"].get("common_tilt") or [0.0, 0.0]
    truth = Truth(acquisition, tuple(tilt))
    return {"tiles": tile_errors(truth.truth, outdir), "volume": volume_scores(truth, outdir, shifts),
            "naive_volume": naive_volume_scores(truth, outdir), "z": motor_z_errors(truth, shifts),
            "attenuation": attenuation_scores(acquisition, truth.truth, outdir),
            "attenuation_full_range": attenuation_scores(acquisition, truth.truth, outdir, depth=None),
            "validation": validate_outputs(outdir), "flags": qc_flags(outdir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("acquisition", type=Path)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--json", type=Path, help="Write the scores here too.")
    args = parser.parse_args()
    result = score(args.acquisition, args.outdir)
    text = json.dumps(result, indent=1, default=float)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
