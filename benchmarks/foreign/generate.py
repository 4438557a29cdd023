"""An independent serial-OCT acquisition generator, written as the lab microscope writes it.

Benchmark-only: shares no code with ``linumpy.simulate`` (numpy / scipy only) and
imports nothing from ``linumpy``, so that the pipeline can be scored on
acquisitions whose statistics it was never tuned on (``benchmarks/README.md``,
"Foreign acquisitions"). What differs from ``linumpy.simulate`` on purpose:

- tissue: band-passed random fields thresholded into irregular regions, each
  with its own reflectivity AND attenuation; an oblique fibre bundle with
  striations; two large smooth low-contrast regions; an ellipsoidal cavity
  (ventricle) crossing the cut faces; a dark tissue region on the high side of
  the tilted cut; the agarose gel around an irregular sample outline (``sample_extent`` shrinks it, and every
  region in it, to leave tiles of gel only: ~30 % of a 6 x 6 grid at 0.75);
- optics: a confocal Gaussian-beam focus ``1 / (1 + ((z - z_f) / z_R)^2)`` with
  its own Rayleigh range, focused below the surface; off-centre vignetting; a
  path-length field curvature in every tile; round-trip Beer-Lambert attenuation;
- noise: per-tile independent speckle, one exponential draw per raw frame
  (``n_repeat`` frames averaged on read: gamma distributed), an additive
  exponential noise floor, and the galvo-return A-lines;
- geometry: stage errors (sub-pixel, uniform), a lateral shift of every slice,
  a tilted and bumpy cut, cut thickness varying per slice, one motor z reading
  off, and a stage y axis that runs against the row index.

The output is the native tile layout (``docs/raw-formats.md``): one folder
``tile_x{col}_y{row}_z{slice}`` per tile with ``info.txt`` and ``image_*.bin``
(float32, Fortran order ``(depth, nx + n_extra, ny * n_repeat)``), no
``acquisition.json`` (the lab microscope writes none), and a
``ground_truth/`` folder (``truth.json`` with every tile's true position and
the fraction of its footprint inside the sample outline, ``reflectivity.npy``,
``labels.npy``, ``surfaces.npy``) that the pipeline never reads.

Usage::

    python benchmarks/foreign/generate.py OUT_DIR --seed 0
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Config:
    """Everything that shapes a generated acquisition (units: planes / lateral pixels unless named)."""

    n_slices: int = 5
    grid: tuple[int, int] = (3, 3)
    tile: tuple[int, int, int] = (100, 96, 96)  # (depth, y, x) of a tile as read
    lateral_um: float = 4.0
    axial_um: float = 1.5  # the lab default: the reader assumes it without acquisition.json
    overlap: float = 0.18
    thickness: float = 44.0  # nominal cut thickness, planes (66 um)
    thickness_jitter: float = 0.06  # each cut's thickness varies by up to this fraction
    surface: float = 18.0  # mean depth of the cut in the tile frame, planes
    tilt: tuple[float, float] = (0.03, -0.02)  # planes per lateral pixel (y, x)
    bump: float = 1.5  # amplitude of the cut's smooth bumps, planes
    curvature: float = 2.0  # path-length field curvature at the tile corners, planes
    focus: float = 45.0  # focal plane, tile depth index
    rayleigh: float = 20.0  # Rayleigh range, planes
    vignetting: float = 0.35  # fall-off at the tile corners
    sample_extent: float = 1.0  # the sample outline (and its regions) scaled about the grid's centre
    stage_error: float = 3.0  # uniform, px, per tile and axis
    slice_shift: float = 5.0  # uniform, px, per slice and axis
    motor_glitch_um: float = 30.0  # one slice's motor z reading is off by this
    n_repeat: int = 2
    n_extra: int = 12
    n_bin_files: int = 3
    top_z: int = 30
    noise_floor: float = 0.004
    scale: float = 2500.0  # detector units of reflectivity 1 at focus
    stage_origin_mm: tuple[float, float, float] = (20.0, 15.0, 5.0)
    regions: list[dict] = field(default_factory=lambda: [
        {"name": "agarose", "reflectivity": 0.06, "attenuation_per_mm": 0.4},
        {"name": "grey_a", "reflectivity": 0.35, "attenuation_per_mm": 3.0},
        {"name": "grey_b", "reflectivity": 0.55, "attenuation_per_mm": 5.0},
        {"name": "grey_c", "reflectivity": 0.75, "attenuation_per_mm": 7.0},
        {"name": "fibres", "reflectivity": 1.0, "attenuation_per_mm": 11.0},
        {"name": "smooth", "reflectivity": 0.45, "attenuation_per_mm": 4.0},
        {"name": "dark", "reflectivity": 0.12, "attenuation_per_mm": 2.0},
        {"name": "cavity", "reflectivity": 0.01, "attenuation_per_mm": 0.1},
    ])

    @property
    def step(self) -> tuple[int, int]:
        """Nominal tile step ``(y, x)``, px."""
        return tuple(int(round(n * (1 - self.overlap))) for n in self.tile[1:])


def _band_passed(rng: np.random.Generator, shape, small: float, large: float, sampling) -> np.ndarray:
    """White noise band-passed between two scales (micrometres), normalised to unit std."""
    noise = rng.standard_normal(shape).astype(np.float32)
    fine = ndimage.gaussian_filter(noise, [small / s for s in sampling])
    coarse = ndimage.gaussian_filter(noise, [large / s for s in sampling])
    field_ = fine - coarse
    return (field_ - field_.mean()) / field_.std()


def build_phantom(cfg: Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """World reflectivity, attenuation (1/mm) and labels on the ``(z, y, x)`` grid of planes x px."""
    rows, cols = cfg.grid
    nz, ny, nx = cfg.tile
    margin = int(cfg.stage_error + cfg.slice_shift) + 4
    shape = (int(cfg.thickness * (1 + cfg.thickness_jitter) * cfg.n_slices + nz + cfg.surface + 20),
             (rows - 1) * cfg.step[0] + ny + 2 * margin, (cols - 1) * cfg.step[1] + nx + 2 * margin)
    sampling = (cfg.axial_um, cfg.lateral_um, cfg.lateral_um)
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float32) * s for n, s in zip(shape, sampling)], indexing="ij")
    cy, cx = y.mean(), x.mean()
    half = min(y.max(), x.max()) / 2 * cfg.sample_extent
    # Irregular sample outline: an ellipse warped by a smooth 2D field (constant through depth: a block).
    outline = _band_passed(rng, shape[1:], 30.0, 150.0, sampling[1:])
    radius = np.hypot((y[0] - cy) / (0.80 * half), (x[0] - cx) / (0.70 * half)) + 0.12 * outline
    sample = np.broadcast_to(radius < 1.0, shape)
    # Three irregular grey classes from a band-passed 3D field (terciles inside the sample).
    grey = _band_passed(rng, shape, 25.0, 120.0, sampling)
    low, high = np.quantile(grey[sample], [1 / 3, 2 / 3])
    labels = np.where(grey < low, 1, np.where(grey < high, 2, 3)).astype(np.uint8)
    # An oblique fibre bundle: a slab along a 3D direction, striated along that direction.
    direction = np.array([0.35, 0.55, 0.76])
    direction /= np.linalg.norm(direction)
    offset = np.stack([z - z.mean(), y - cy, x - cx])
    along = np.tensordot(direction, offset, axes=1)
    across = np.linalg.norm(offset - along[None] * direction[:, None, None, None], axis=0)
    bundle = across < 0.28 * half
    labels[bundle] = 4
    # Two large smooth low-contrast regions.
    for centre in ((0.45, -0.35), (-0.40, 0.30)):
        blob = np.hypot(y - cy - centre[0] * half, x - cx - centre[1] * half) < 0.33 * half
        labels[blob & ~bundle] = 5
    # Dark tissue on the high side of the tilted cut (small y, large x: the cut is shallowest there).
    dark = np.hypot(y - cy + 0.55 * half, x - cx - 0.5 * half) < 0.30 * half
    labels[dark] = 6
    # A ventricle-like cavity crossing several cut faces.
    cavity = (((z - 0.45 * z.max()) / (0.22 * z.max())) ** 2 + ((y - cy - 0.05 * half) / (0.12 * half)) ** 2
              + ((x - cx + 0.1 * half) / (0.28 * half)) ** 2) < 1.0
    labels[cavity] = 7
    labels[~sample] = 0
    reflectivity = np.array([r["reflectivity"] for r in cfg.regions], np.float32)[labels]
    attenuation = np.array([r["attenuation_per_mm"] for r in cfg.regions], np.float32)[labels]
    # Texture inside each region: striations along the fibres, a weak smooth variation elsewhere.
    stripes = 1.0 + 0.35 * np.sin(2 * np.pi * across / 14.0 + 3.0 * _band_passed(rng, shape, 40, 200, sampling))
    fine = 1.0 + 0.18 * _band_passed(rng, shape, 8.0, 40.0, sampling)
    smooth = 1.0 + 0.05 * _band_passed(rng, shape, 60.0, 300.0, sampling)
    texture = np.where(labels == 4, stripes, np.where(labels == 5, smooth, fine))
    texture[labels == 0] = 1.0
    reflectivity = (reflectivity * np.clip(texture, 0.2, None)).astype(np.float32)
    return {"reflectivity": reflectivity, "attenuation": attenuation, "labels": labels, "margin": margin,
            "sample": sample[0]}


def tissue_fraction(sample: np.ndarray, origin: np.ndarray, tile_yx: tuple[int, int]) -> float:
    """Fraction of a tile's footprint (pixel (0, 0) at world ``origin``, y / x) inside the sample outline."""
    y0, x0 = (int(round(v)) for v in origin)
    return float(sample[y0:y0 + tile_yx[0], x0:x0 + tile_yx[1]].mean())


def cut_surfaces(cfg: Config, shape_yx, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per slice, the world depth (planes) of the cut that slice k images from, and the cut offsets."""
    jitter = rng.uniform(-cfg.thickness_jitter, cfg.thickness_jitter, cfg.n_slices) * cfg.thickness
    jitter[0] = 0.0
    offsets = np.cumsum(jitter)  # true cut k minus nominal k * thickness
    y, x = np.indices(shape_yx, dtype=np.float32)
    plane = cfg.tilt[0] * (y - y.mean()) + cfg.tilt[1] * (x - x.mean())
    surfaces = []
    for k in range(cfg.n_slices):
        bumps = ndimage.gaussian_filter(rng.standard_normal(shape_yx).astype(np.float32), 18.0)
        bumps *= cfg.bump / np.abs(bumps).max()
        surfaces.append(k * cfg.thickness + cfg.surface + offsets[k] + plane + bumps)
    return np.stack(surfaces), offsets


def tile_signal(cfg: Config, phantom: dict, surface: np.ndarray, k: int, origin: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """The detected ``(z, y, x)`` intensity of one tile whose pixel (0, 0) sits at world ``origin`` (y, x)."""
    nz, ny, nx = cfg.tile
    yy, xx = np.meshgrid(np.arange(ny, dtype=np.float32), np.arange(nx, dtype=np.float32), indexing="ij")
    r2 = ((yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2) / (((ny - 1) / 2) ** 2 + ((nx - 1) / 2) ** 2)
    curvature = cfg.curvature * r2  # path length grows off-axis: content appears deeper
    wy, wx = yy + origin[0], xx + origin[1]
    depth = np.arange(nz, dtype=np.float32)[:, None, None]
    world_z = k * cfg.thickness + depth - curvature[None]
    coords = np.stack(np.broadcast_arrays(world_z, wy[None], wx[None]))
    reflectivity = ndimage.map_coordinates(phantom["reflectivity"], coords, order=1, mode="nearest")
    attenuation = ndimage.map_coordinates(phantom["attenuation"], coords, order=1, mode="nearest")
    cut = ndimage.map_coordinates(surface, [wy, wx], order=1, mode="nearest")
    present = world_z >= cut[None]
    reflectivity = np.where(present, reflectivity, 0.0)
    attenuation = np.where(present, attenuation, 0.0)
    transmission = np.exp(-2.0 * np.cumsum(attenuation, axis=0) * cfg.axial_um / 1000.0)
    focus = 1.0 / (1.0 + ((depth - cfg.focus) / cfg.rayleigh) ** 2)
    centre = np.array([(ny - 1) / 2 + 6.0, (nx - 1) / 2 - 9.0])
    d2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (((ny - 1) / 2) ** 2 + ((nx - 1) / 2) ** 2)
    vignette = np.clip(1.0 - cfg.vignetting * d2, 0.3, None)
    return (reflectivity * transmission * focus * vignette[None]).astype(np.float32)


def raw_frames(cfg: Config, signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The frames written to disk, Fortran order ``(depth, nx + n_extra, ny * n_repeat)``."""
    nz, ny, nx = signal.shape
    frames = np.empty((nz, nx + cfg.n_extra, ny, cfg.n_repeat), np.float32)
    for f in range(cfg.n_repeat):
        speckle = rng.exponential(1.0, signal.shape).astype(np.float32)
        noise = rng.exponential(cfg.noise_floor, signal.shape).astype(np.float32)
        image = cfg.scale * (signal * speckle + noise)  # (z, y, x)
        frames[:, :nx, :, f] = image.transpose(0, 2, 1)
        # Galvo return: a dim, smeared, reversed copy of the last A-lines.
        ret = image[:, :, ::-1][:, :, : cfg.n_extra].transpose(0, 2, 1)
        frames[:, nx:, :, f] = 0.2 * ndimage.uniform_filter1d(ret, 5, axis=1)
    return frames.reshape(nz, nx + cfg.n_extra, ny * cfg.n_repeat)


def write_tile(folder: Path, cfg: Config, frames: np.ndarray, stage_mm: tuple[float, float, float]) -> None:
    """Write one native tile folder (``info.txt`` + ``image_*.bin``)."""
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = cfg.tile
    info = {
        "nx": nx, "ny": ny, "n_repeat": cfg.n_repeat, "width": nx * cfg.lateral_um, "height": ny * cfg.lateral_um,
        "n_extra": cfg.n_extra, "top_z": cfg.top_z, "bottom_z": cfg.top_z + nz - 1,
        "focus_z": cfg.top_z + int(round(cfg.focus)),
        "stage_x_pos_mm": f"{stage_mm[0]:.6f}", "stage_y_pos_mm": f"{stage_mm[1]:.6f}",
        "stage_z_pos_mm": f"{stage_mm[2]:.6f}",
    }
    text = "# OCT acquisition\n" + "".join(f"{key}: {value}\n" for key, value in info.items())
    (folder / "info.txt").write_text(text + "laser_power_mw: 12.0\n")
    frame_count = frames.shape[2]
    bounds = np.linspace(0, frame_count, cfg.n_bin_files + 1).astype(int)
    for i in range(cfg.n_bin_files):
        part = np.asfortranarray(frames[:, :, bounds[i]:bounds[i + 1]])
        (folder / f"image_{i + 1}.bin").write_bytes(part.astype("<f4").tobytes(order="F"))


def generate(out: Path, seed: int, cfg: Config | None = None) -> dict:
    """Write an acquisition to ``out`` and return its truth (also written to ``out/ground_truth/truth.json``)."""
    cfg = cfg or Config()
    rng = np.random.default_rng([seed, 2027])
    phantom = build_phantom(cfg, rng)
    surfaces, cut_offsets = cut_surfaces(cfg, phantom["reflectivity"].shape[1:], rng)
    rows, cols = cfg.grid
    margin = phantom["margin"]
    glitch = int(rng.integers(1, cfg.n_slices)) if cfg.n_slices > 1 else None
    res_mm = cfg.lateral_um / 1000
    slices = []
    for k in range(cfg.n_slices):
        shift = rng.uniform(-cfg.slice_shift, cfg.slice_shift, 2)
        motor_z = cfg.stage_origin_mm[2] + k * cfg.thickness * cfg.axial_um / 1000
        if k == glitch:
            motor_z += cfg.motor_glitch_um / 1000
        positions, fractions = [], []
        for r in range(rows):
            for c in range(cols):
                nominal = np.array([r * cfg.step[0], c * cfg.step[1]], float)
                true = nominal + rng.uniform(-cfg.stage_error, cfg.stage_error, 2)
                origin = true + margin + shift  # world position of the tile's pixel (0, 0)
                signal = tile_signal(cfg, phantom, surfaces[k], k, origin, rng)
                stage = (cfg.stage_origin_mm[0] + nominal[1] * res_mm, cfg.stage_origin_mm[1] - nominal[0] * res_mm,
                         motor_z)
                write_tile(out / f"tile_x{c:02d}_y{r:02d}_z{k:02d}", cfg, raw_frames(cfg, signal, rng), stage)
                positions.append([r, c, round(float(true[0]), 4), round(float(true[1]), 4)])
                fractions.append([r, c, round(tissue_fraction(phantom["sample"], origin, cfg.tile[1:]), 4)])
        slices.append({"slice_id": k, "sample_shift_px": [round(float(v), 4) for v in shift],
                       "tile_positions_px": positions, "tile_tissue_fraction": fractions, "motor_z_mm": round(motor_z, 6),
                       "cut_offset_px": round(float(cut_offsets[k]), 4),
                       "world_z_offset_px": k * cfg.thickness})
    truth_dir = out / "ground_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    np.save(truth_dir / "reflectivity.npy", phantom["reflectivity"])
    np.save(truth_dir / "labels.npy", phantom["labels"])
    np.save(truth_dir / "surfaces.npy", surfaces.astype(np.float32))
    truth = {"seed": seed, "config": asdict(cfg), "margin_px": margin, "glitch_slice": glitch,
             "world_shape": list(phantom["reflectivity"].shape), "slices": slices}
    (truth_dir / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="Acquisition folder to write.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_slices", type=int, default=Config.n_slices)
    parser.add_argument("--n_repeat", type=int, default=Config.n_repeat,
                        help="Frames averaged per B-scan (1: fully developed speckle) [%(default)s].")
    parser.add_argument("--grid", type=int, nargs=2, default=Config.grid, metavar=("ROWS", "COLS"))
    parser.add_argument("--sample_extent", type=float, default=Config.sample_extent,
                        help="Sample outline scaled about the grid's centre (0.75: ~30 %% of a 6 x 6 grid's tiles "
                             "see gel only) [%(default)s].")
    args = parser.parse_args()
    generate(args.out, args.seed, Config(n_slices=args.n_slices, n_repeat=args.n_repeat, grid=tuple(args.grid),
                                         sample_extent=args.sample_extent))


if __name__ == "__main__":
    main()
