"""Where the last slab's lateral field comes from: per-slab NCC and the tail sums' end-of-range model.

Usage::

    python benchmarks/foreign/last_slab.py ACQUISITION OUTDIR [--score SCORE_JSON] [--json OUT.json]

On a scored foreign run (``score.py``; ``--score`` reuses its volume offset,
else the volume is matched again) it prints, per slab of the stacked volume
(10 um level, inside tissue), the NCC against the truth and, per output plane,
the NCC and the spread (std) of the lateral field: ``ln`` of the data's and
the truth's Gaussian-smoothed planes (sigma :data:`FIELD_SIGMA` voxels) less
their median. For the last slab it then predicts that field from the truth
alone, as the axial correction's attenuation compensation
(``C[k] = I[k] T[0] / T[k]``, ``T`` the tail sums) would make it on the
noise-free signal ``reflectivity * transmission`` of the slice's tile range,
two ways: ``extension`` (the sums end at the tile's last plane and carry the
correction's end-of-range extension ``W1 q / (1 - q)``, ``q`` the ratio of the
last two windows of a quarter of the range) and ``true tail`` (the sums run
on through the world below the tile, its bottom plane's tissue continuing below the world: what a
perfect extension would give).
The correlation and slope of the measured field on each prediction, plane by
plane, say which one the last slab carries. No ``linumpy`` import (as ``score.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from score import Truth, _grid, _level, _ncc, match_volume

#: Lateral Gaussian (10 um voxels) of the planes whose log ratio is the field.
FIELD_SIGMA = 2.0
#: Fewest tissue voxels for a plane's field.
MIN_FIELD_VOXELS = 200
#: Largest end-of-range ratio ``q`` (``linumpy.intensity.attenuation.MAX_TAIL_RATIO``).
MAX_TAIL_RATIO = 0.95


def smooth_log(plane: np.ndarray, mask: np.ndarray, sigma: float = FIELD_SIGMA) -> np.ndarray:
    """``ln`` of ``plane`` averaged over ``mask`` by a Gaussian (NaN where the mask is thin)."""
    weight = ndimage.gaussian_filter(mask.astype(float), sigma)
    value = ndimage.gaussian_filter(plane * mask, sigma)
    out = np.full(plane.shape, np.nan)
    ok = (weight > 0.3) & (value > 0)
    out[ok] = np.log(value[ok] / weight[ok])
    return out


def plane_field(data: np.ndarray, ref: np.ndarray, tissue: np.ndarray, sigma: float = FIELD_SIGMA) -> np.ndarray:
    """Lateral log field of ``data`` over ``ref`` on one plane's tissue, less its median (0 outside)."""
    field = smooth_log(data, tissue, sigma) - smooth_log(ref, tissue, sigma)
    return np.nan_to_num(field - np.nanmedian(field[tissue]))


def tail_field(acquisition: Path, k: int, extension: bool) -> np.ndarray:
    """World ``(z, y, x)`` log field ``ln(tau[k] T[0] / T[k])`` of slice ``k``'s noise-free compensation (0 elsewhere)."""
    truth = json.loads((acquisition / "ground_truth" / "truth.json").read_text())
    cfg = truth["config"]
    labels = np.load(acquisition / "ground_truth" / "labels.npy")
    reflectivity = np.load(acquisition / "ground_truth" / "reflectivity.npy")
    surface = np.load(acquisition / "ground_truth" / "surfaces.npy")[k]
    mu = np.array([r["attenuation_per_mm"] for r in cfg["regions"]], np.float32)[labels]
    present = np.arange(labels.shape[0])[:, None, None] >= surface[None]
    transmission = np.exp(-2 * cfg["axial_um"] / 1000 * np.cumsum(np.where(present, mu, 0.0), axis=0))
    signal = np.where(present, reflectivity, 0.0) * transmission
    top = int(round(k * cfg["thickness"]))
    n_z = cfg["tile"][0]
    sums = np.cumsum(signal[top:][::-1], axis=0, dtype=np.float64)[::-1]  # down to the world's bottom ...
    q = np.exp(-2 * cfg["axial_um"] / 1000 * mu[-1])
    sums += signal[-1] * q / (1 - q)  # ... and on below it, the bottom plane's tissue continuing
    if extension:
        sums = sums[:n_z] - sums[n_z]  # the tile's range only ...
        window = n_z // 4
        last, before = sums[n_z - window], sums[n_z - 2 * window] - sums[n_z - window]
        q = np.clip(np.divide(last, before, out=np.zeros_like(last), where=before > 0), 0.0, MAX_TAIL_RATIO)
        sums = sums + last * q / (1 - q)  # ... and its end-of-range extension
    sums = sums[:n_z]
    field = np.zeros(labels.shape, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = transmission[top:top + n_z] * sums[0] / sums
    field[top:top + n_z] = np.where(present[top:top + n_z] & (sums > 0), np.log(ratio), 0.0)
    return field


def analyse(acquisition: Path, outdir: Path, offset: np.ndarray | None = None) -> dict:
    """Per-slab NCC and plane fields, and the last slab's fields against both tail predictions."""
    shifts = json.loads((outdir / "stack" / "volume_shifts.json").read_text())
    qc = json.loads((outdir / "stack" / "volume_qc.json").read_text())
    truth = Truth(acquisition, tuple(qc["metrics"].get("common_tilt") or [0.0, 0.0]))
    data, scale, translation = _level(outdir / "stack" / "volume.ome.zarr", 10.0)
    if offset is None:
        first, margin = truth.truth["slices"][0], truth.truth["margin_px"]
        guess = np.array([truth.cfg["surface"], margin + first["sample_shift_px"][0],
                          margin + first["sample_shift_px"][1]])
        offset = match_volume(truth, data, scale, translation, guess)
    points = _grid(data.shape, scale, translation)
    ref = truth.sample("reflectivity", scale, points, offset).reshape(data.shape)
    tissue = (truth.sample("tissue", scale, points, offset).reshape(data.shape) > 0.9) & (data > 0)
    bounds = [max(0, int(round((s["origin_um"][0] - translation[0]) / scale[0]))) for s in shifts["slices"]]
    bounds.append(data.shape[0])
    result = {"ncc": _ncc(data[tissue], ref[tissue]), "slabs": []}
    last = len(bounds) - 2
    world = _world_points(truth, points, offset)
    predictions = {name: _sampled(tail_field(acquisition, last, name == "extension"), world)
                   for name in ("extension", "true tail")}
    for k in range(len(bounds) - 1):
        z0, z1 = bounds[k], bounds[k + 1]
        slab = {"ncc": _ncc(data[z0:z1][tissue[z0:z1]], ref[z0:z1][tissue[z0:z1]]), "planes": []}
        for z in range(z0, z1):
            mask = tissue[z]
            if mask.sum() < MIN_FIELD_VOXELS:
                continue
            field = plane_field(data[z], ref[z], mask)
            entry = {"plane": z - z0, "ncc": _ncc(data[z][mask], ref[z][mask]), "field_std": float(field[mask].std())}
            if k == last:
                for name, predicted in predictions.items():
                    model = plane_field(ref[z] * np.exp(predicted[z]), ref[z], mask)
                    x, y = field[mask], model[mask]
                    entry[name] = {"std": float(y.std()), "corr": float(np.corrcoef(x, y)[0, 1]),
                                   "slope": float(np.polyfit(y, x, 1)[0])}
            slab["planes"].append(entry)
        result["slabs"].append(slab)
    return result


def _world_points(truth: Truth, points: list[np.ndarray], offset: np.ndarray) -> list[np.ndarray]:
    """World ``(z, y, x)`` (planes, pixels) of the output points, as :meth:`Truth.sample` maps them."""
    y = points[1] / truth.cfg["lateral_um"] + offset[1]
    x = points[2] / truth.cfg["lateral_um"] + offset[2]
    plane = truth.tilt[0] * (y - truth.centre[0]) + truth.tilt[1] * (x - truth.centre[1])
    return [points[0] / truth.cfg["axial_um"] + offset[0] + plane, y, x]


def _sampled(field: np.ndarray, world: list[np.ndarray]) -> np.ndarray:
    """``field`` box-averaged over a 10 um voxel's depth and a 8 um square, at the world points."""
    return ndimage.map_coordinates(ndimage.uniform_filter(field, [7, 2, 2], mode="nearest"), world, order=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("acquisition", type=Path)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--score", type=Path, help="score.py's JSON of this run: reuse its volume offset.")
    parser.add_argument("--json", type=Path, help="Write the result here too.")
    args = parser.parse_args()
    offset = None if args.score is None else np.asarray(json.loads(args.score.read_text())["volume"]["offset"])
    result = analyse(args.acquisition, args.outdir, offset)
    print(f"volume NCC {result['ncc']:.4f}")
    for k, slab in enumerate(result["slabs"]):
        planes = " ".join(f"{p['ncc']:.3f}/{p['field_std']:.2f}" for p in slab["planes"])
        print(f"slab {k}: NCC {slab['ncc']:.3f}; per plane NCC / field std: {planes}")
    for p in result["slabs"][-1]["planes"]:
        print(f"last slab plane {p['plane']}: field std {p['field_std']:.3f}; " + "; ".join(
            f"{name}: std {p[name]['std']:.3f} corr {p[name]['corr']:.2f} slope {p[name]['slope']:.2f}"
            for name in ("extension", "true tail")))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
