"""The volume NCC a perfect pipeline reaches on a foreign acquisition: its speckle and noise only.

Reruns ``generate.generate`` for the acquisition's seed and configuration (the same draws: the
phantom is checked equal to the one on disk) with the tile writer replaced: each tile's raw
signal is inverted exactly instead (``(raw / scale - noise floor) / (transmission * focus *
vignette)``, the true forward model) and placed in the world at its true position, so what is
left is the generator's own speckle (``reflectivity * speckle``, variant ``speckle``) and, with
the noise floor, the exact inverse of the raw data (variant ``inverse``). Two placements:

- ``nearest``: every tile voxel goes to the world voxel nearest to its true position (the
  whole-pixel placement of the pipeline's fusion, no interpolation);
- ``linear``: the tiles are interpolated (trilinearly) at the world voxels, which also averages
  the generator's independent per-voxel speckle of neighbouring voxels.

And two assemblies in depth: ``own`` (each world voxel from the slice whose cut lies right above
it, the last slice down to its tile bottom: the pipeline's slabs with their blend overlap left
out) and ``all`` (every slice imaging the voxel, averaged: the tissue below a cut is imaged twice).
Overlapping tiles of a slice are averaged. Each volume is resampled to 10 um as the stack's
pyramid is (``linumpy.resample.resample_to_resolution``, whole 10 um voxels only) and scored by
``score.py``'s matching and NCC inside tissue.

Usage::

    python benchmarks/foreign/ceiling.py ACQUISITION [--placement nearest linear] [--json OUT.json]

ACQUISITION is a folder written by ``generate.py`` (its ``ground_truth/truth.json`` gives the
seed and configuration). Costs about one generation plus a tile signal per tile (minutes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

import generate
import score
from linumpy.resample import centre_shift_mm, resample_to_resolution

VARIANTS = ("speckle_own", "inverse_own", "speckle_all", "inverse_all")


class IdealVolumes:
    """World-grid sums of the ideal tiles, per variant, filled while ``generate.generate`` runs."""

    def __init__(self, cfg: generate.Config, order: int) -> None:
        self.cfg, self.order = cfg, order
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.surfaces: np.ndarray | None = None
        self.ones: dict | None = None
        self.tile: tuple | None = None

    def tile_signal(self, cfg, phantom, surface, k, origin, rng):
        """The generator's tile signal; also its signal for reflectivity 1 (the forward model's gain)."""
        if self.ones is None:
            self.ones = dict(phantom, reflectivity=np.ones_like(phantom["reflectivity"]))
            for name in VARIANTS:
                self.sums[name] = np.zeros(phantom["reflectivity"].shape, np.float32)
            for name in ("own", "all"):
                self.counts[name] = np.zeros(phantom["reflectivity"].shape, np.float32)
        signal = ORIGINAL["tile_signal"](cfg, phantom, surface, k, origin, rng)
        gain = ORIGINAL["tile_signal"](cfg, self.ones, surface, k, origin, rng)
        self.tile = (k, np.asarray(origin, float), signal, gain)
        return signal

    def cut_surfaces(self, cfg, shape_yx, rng):
        """The generator's cuts, kept for the slabs."""
        surfaces, offsets = ORIGINAL["cut_surfaces"](cfg, shape_yx, rng)
        self.surfaces = surfaces
        return surfaces, offsets

    def raw_frames(self, cfg, signal, rng):
        """The same draws as the generator's frames; the ideal tiles are accumulated instead of written."""
        speckle = np.zeros(signal.shape, np.float32)
        noise = np.zeros(signal.shape, np.float32)
        for _ in range(cfg.n_repeat):
            speckle += rng.exponential(1.0, signal.shape).astype(np.float32) / cfg.n_repeat
            noise += rng.exponential(cfg.noise_floor, signal.shape).astype(np.float32) / cfg.n_repeat
        k, origin, signal, gain = self.tile
        present = gain > 0
        safe = np.where(present, gain, 1.0)
        reflectivity = np.where(present, signal / safe, 0.0)
        inverse = np.where(present, (signal * speckle + noise - cfg.noise_floor) / safe, 0.0)
        self._accumulate(k, origin, {"speckle": reflectivity * speckle, "inverse": inverse}, present)
        return np.zeros((1, 1, 1), np.float32)

    def _accumulate(self, k: int, origin: np.ndarray, tiles: dict[str, np.ndarray], present: np.ndarray) -> None:
        cfg = self.cfg
        nz, ny, nx = cfg.tile
        depth = self.counts["own"].shape[0]
        y0, y1 = int(np.ceil(origin[0])), int(np.floor(origin[0] + ny - 1))
        x0, x1 = int(np.ceil(origin[1])), int(np.floor(origin[1] + nx - 1))
        wy, wx = np.meshgrid(np.arange(y0, y1 + 1), np.arange(x0, x1 + 1), indexing="ij")
        ty, tx = wy - origin[0], wx - origin[1]
        r2 = ((ty - (ny - 1) / 2) ** 2 + (tx - (nx - 1) / 2) ** 2) / (((ny - 1) / 2) ** 2 + ((nx - 1) / 2) ** 2)
        z0 = max(int(np.floor(k * cfg.thickness - cfg.curvature)) - 1, 0)
        z1 = min(int(np.ceil(k * cfg.thickness + nz - 1)) + 1, depth - 1)
        wz = np.arange(z0, z1 + 1)[:, None, None]
        tz = wz - k * cfg.thickness + cfg.curvature * r2[None]  # the generator's field curvature
        coords = np.stack(np.broadcast_arrays(tz, ty[None], tx[None])).astype(np.float32)
        valid = (tz >= 0) & (tz <= nz - 1)
        valid &= ndimage.map_coordinates(present.astype(np.float32), coords, order=self.order, mode="nearest") > 0.999
        own = valid & (wz >= self.surfaces[k][y0:y1 + 1, x0:x1 + 1][None])
        if k + 1 < len(self.surfaces):
            own &= wz < self.surfaces[k + 1][y0:y1 + 1, x0:x1 + 1][None]
        box = (slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1))
        for kind, tile in tiles.items():
            values = ndimage.map_coordinates(tile, coords, order=self.order, mode="nearest")
            self.sums[f"{kind}_own"][box] += np.where(own, values, 0)
            self.sums[f"{kind}_all"][box] += np.where(valid, values, 0)
        self.counts["own"][box] += own
        self.counts["all"][box] += valid


ORIGINAL = {"tile_signal": generate.tile_signal, "cut_surfaces": generate.cut_surfaces}


def ideal_volumes(acquisition: Path, order: int, scratch: Path) -> tuple[IdealVolumes, generate.Config]:
    """Rerun the acquisition's generation with the ideal tiles accumulated (``order``: 0 nearest, 1 linear)."""
    truth = json.loads((acquisition / "ground_truth" / "truth.json").read_text())
    fields = dict(truth["config"])
    fields.update({key: tuple(fields[key]) for key in ("grid", "tile", "tilt", "stage_origin_mm")})
    cfg = generate.Config(**fields)
    ideal = IdealVolumes(cfg, order)
    patched = {"tile_signal": ideal.tile_signal, "cut_surfaces": ideal.cut_surfaces, "raw_frames": ideal.raw_frames,
               "write_tile": lambda *args, **kwargs: None}
    saved = {name: getattr(generate, name) for name in patched}
    try:
        for name, function in patched.items():
            setattr(generate, name, function)
        generate.generate(scratch, truth["seed"], cfg)
    finally:
        for name, function in saved.items():
            setattr(generate, name, function)
    same = np.array_equal(np.load(scratch / "ground_truth" / "reflectivity.npy"),
                          np.load(acquisition / "ground_truth" / "reflectivity.npy"))
    if not same:
        raise RuntimeError(f"the regenerated phantom differs from {acquisition}'s: not the same generator")
    return ideal, cfg


def score_volume(truth: score.Truth, volume: np.ndarray, count: np.ndarray, cfg: generate.Config) -> dict:
    """NCC inside tissue (10 um) of a world-grid volume, matched to the truth as ``score.py`` matches."""
    native = (cfg.axial_um / 1000, cfg.lateral_um / 1000, cfg.lateral_um / 1000)
    target = (0.01, 0.01, 0.01)
    data = np.asarray(resample_to_resolution(volume, native, target).compute(), np.float64)
    cover = np.asarray(resample_to_resolution((count > 0).astype(np.float32), native, target).compute())
    data = np.where(cover > 0.999, data, 0.0)
    scale = np.array([10.0, 10.0, 10.0])
    translation = np.array(centre_shift_mm(native, target)) * 1000
    offset = score.match_volume(truth, data, scale, translation, np.zeros(3))
    points = score._grid(data.shape, scale, translation)
    ref = truth.sample("reflectivity", scale, points, offset).reshape(data.shape)
    tissue = (truth.sample("tissue", scale, points, offset).reshape(data.shape) > 0.9) & (data > 0)
    return {"ncc": round(score._ncc(data[tissue], ref[tissue]), 4), "n_voxels": int(tissue.sum()),
            "offset": np.round(offset, 3).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("acquisition", type=Path)
    parser.add_argument("--placement", nargs="+", choices=("nearest", "linear"), default=["nearest", "linear"])
    parser.add_argument("--scratch", type=Path,
                        help="Where the regenerated ground truth goes [ACQUISITION/../ceiling_scratch].")
    parser.add_argument("--json", type=Path, help="Write the scores here too.")
    args = parser.parse_args()
    scratch = args.scratch or args.acquisition.parent / "ceiling_scratch"
    truth = score.Truth(args.acquisition, (0.0, 0.0))
    result = {}
    for placement in args.placement:
        ideal, cfg = ideal_volumes(args.acquisition, {"nearest": 0, "linear": 1}[placement], scratch)
        for name in VARIANTS:
            count = ideal.counts[name.split("_")[1]]
            volume = np.where(count > 0, ideal.sums[name] / np.maximum(count, 1), 0).astype(np.float32)
            result[f"{placement}_{name}"] = score_volume(truth, volume, count, cfg)
            print(placement, name, result[f"{placement}_{name}"], flush=True)
        del ideal
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
