"""Mosaic grids that do not flatter a stitcher: the stitching test matrix.

The acquisition simulator (:func:`linumpy.simulate.simulate_acquisition`)
images one world, so the speckle of an overlap repeats in both tiles and
the stage errors are small and independent. Real tiles differ: speckle is
drawn again at every acquisition, vignetting dims opposite sides of an
overlap, tissue has smooth low-contrast regions and the stage drifts. This
module draws a slice's mosaic grid under such a :class:`MosaicCondition` and
writes it directly as a mosaic grid OME-Zarr (the input of
``linum_stitch_3d.py``), with the true sub-pixel tile positions.

Independent of the presets; used by ``tests/test_stitching_matrix.py`` and
``benchmarks/bench_stitching.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

#: Margin of the drawn scene around the tiles, pixels.
_MARGIN = 24
#: A tile whose tissue covers less than this fraction of it counts as empty.
EMPTY_TISSUE_FRACTION = 0.25
#: Standard deviation (px) of the Gaussian filter that correlates the speckle field.
SPECKLE_GRAIN_PX = 0.7


@dataclass(frozen=True)
class MosaicCondition:
    """Imaging and stage conditions of one simulated mosaic grid.

    Attributes
    ----------
    name : str
        Label of the condition.
    grid : tuple of int
        ``(rows, cols)``.
    tile_px : int
        Lateral size of a (square) tile.
    depth : int
        Depth planes of a tile; the speckle of each plane is drawn anew, so the
        average projection has ``depth`` looks.
    overlap : float
        Nominal overlap of neighbouring tiles, fraction of the tile.
    stage_error_px : float
        Independent stage error per tile and axis, uniform in ``[-e, e]``.
    drift_px : float
        Amplitude of a slow stage drift along the acquisition order.
    backlash_px : float
        Backlash of the x axis: the tiles of a row scanned right to left (the
        odd rows of the serpentine order) sit ``b`` px from those scanned left
        to right, ``b`` drawn per mosaic in ``[2/3, 4/3] * backlash_px``.
    settle_px : float
        Settling error of the first tile of each row (reached by a move along
        y): an extra offset along y, ``settle_px`` times a factor drawn per
        mosaic in ``[0.5, 1]``, plus as much again times one draw per tile in
        ``[-0.25, 0.25]``.
    rotation_deg, step_error : float
        Rotation of the true grid and relative error of its step (what a
        fitted stage model absorbs).
    vignetting : float
        Fractional intensity loss at the tile corners (0: none).
    speckle : bool
        Multiplicative speckle (fully developed, one look per plane).
    speckle_shared : float
        Fraction of the speckle power that belongs to the sample and repeats
        in overlapping tiles (0: drawn independently per tile).
    smooth_fraction : float
        Fraction of the tissue that is smooth and low-contrast (few edges).
    depth_change : float
        Fraction of the tissue texture's power that changes across the
        tile's depth (0: the same lateral scene in every plane). Plane ``z``
        has ``sqrt(1 - f) T + sqrt(f) (cos(a) T1 + sin(a) T2)``, ``a`` going
        from 0 to 90 degrees from the first plane to the last: the first and
        last planes share only ``1 - f`` of the texture, and the average
        projection averages the changing part.
    empty_fraction : float
        Fraction of the tiles that see (nearly) only agarose.
    noise : float
        Standard deviation of the additive noise (tissue intensity ~1).
    """

    name: str
    grid: tuple[int, int] = (4, 4)
    tile_px: int = 128
    depth: int = 6
    overlap: float = 0.2
    stage_error_px: float = 4.0
    drift_px: float = 0.0
    backlash_px: float = 0.0
    settle_px: float = 0.0
    rotation_deg: float = 0.2
    step_error: float = 0.004
    vignetting: float = 0.25
    speckle: bool = True
    speckle_shared: float = 0.0
    smooth_fraction: float = 0.3
    depth_change: float = 0.0
    empty_fraction: float = 0.0
    noise: float = 0.01

    @property
    def tile_step_px(self) -> tuple[float, float]:
        """Nominal ``(y, x)`` step of the stage."""
        step = float(round(self.tile_px * (1 - self.overlap)))
        return (step, step)


@dataclass(frozen=True)
class SimulatedMosaic:
    """A drawn mosaic grid and its truth.

    Attributes
    ----------
    grid : np.ndarray
        ``(depth, rows * tile, cols * tile)`` float32, tiles side by side.
    condition : MosaicCondition
    truth : dict
        ``(row, col) -> array([y, x])`` true origin of each tile.
    stage : dict
        ``(row, col) -> array([y, x])`` position reported by the stage (nominal).
    empty_tiles : tuple of (row, col)
        Tiles with less than :data:`EMPTY_TISSUE_FRACTION` tissue.
    scene : np.ndarray or None
        Noise-free lateral intensity of the sample (no speckle, vignetting
        or noise), averaged over depth (what a tile's average projection
        shows); tile ``t`` sees ``scene`` from ``truth[t] + scene_offset_px``.
    illumination : np.ndarray or None
        ``(tile, tile)`` multiplicative vignetting of every tile.
    scene_offset_px : float
        Origin of the tiles' frame in ``scene``.
    """

    grid: np.ndarray
    condition: MosaicCondition
    truth: dict
    stage: dict
    empty_tiles: tuple = field(default=())
    scene: np.ndarray | None = None
    illumination: np.ndarray | None = None
    scene_offset_px: float = _MARGIN

    def projections(self) -> dict:
        """Average intensity projection of every tile."""
        size = self.condition.tile_px
        return {tile: self.grid[:, tile[0] * size:(tile[0] + 1) * size,
                                tile[1] * size:(tile[1] + 1) * size].mean(axis=0)
                for tile in self.truth}


#: The conditions of the matrix: the rows of issue #10 plus harsher combinations.
MATRIX: tuple[MosaicCondition, ...] = (
    MosaicCondition("control: no speckle, no vignetting", speckle=False, vignetting=0.0),
    MosaicCondition("speckle per tile, vignetting 25%"),
    MosaicCondition("no speckle, vignetting 25%", speckle=False),
    MosaicCondition("stage error +-8 px + drift", stage_error_px=8.0, drift_px=4.0),
    MosaicCondition("overlap 10%", overlap=0.1),
    MosaicCondition("6x6, 30% empty tiles", grid=(6, 6), empty_fraction=0.3),
    MosaicCondition("vignetting 60%", vignetting=0.6),
    MosaicCondition("speckle half shared, smooth 60%", speckle_shared=0.5, smooth_fraction=0.6),
    MosaicCondition("8x8 harsh: overlap 15%, +-8 px + drift, vignetting 40%, 30% empty",
                    grid=(8, 8), overlap=0.15, stage_error_px=8.0, drift_px=4.0,
                    vignetting=0.4, empty_fraction=0.3),
    MosaicCondition("backlash 3 px + row-start settling 2 px, stage +-3 px",
                    stage_error_px=3.0, backlash_px=3.0, settle_px=2.0),
    MosaicCondition("backlash 3 px + row-start settling 2 px, stage +-1.5 px",
                    stage_error_px=1.5, backlash_px=3.0, settle_px=2.0),
    MosaicCondition("tissue changing with depth (60% of the texture)", depth_change=0.6),
)


def get_condition(name: str, **changes) -> MosaicCondition:
    """Return the matrix condition whose name starts with ``name``, with ``changes``."""
    matches = [c for c in MATRIX if c.name.startswith(name)]
    if len(matches) != 1:
        raise KeyError(f"no unique matrix condition starts with {name!r}")
    return replace(matches[0], **changes)


def _natural_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std random field with a 1/f amplitude spectrum (natural images)."""
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.rfftfreq(shape[1]),
                                      indexing="ij"))
    amplitude = 1.0 / np.maximum(frequency, 1.0 / max(shape))
    amplitude[frequency > 0.35] = 0  # no content finer than the optics resolve
    spectrum = amplitude * np.fft.rfft2(rng.standard_normal(shape))
    field_ = np.fft.irfft2(spectrum, s=shape)
    return (field_ - field_.mean()) / field_.std()


def _smooth_mask(shape: tuple[int, int], fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Soft mask covering about ``fraction`` of the image in large smooth blobs."""
    if fraction <= 0:
        return np.zeros(shape)
    blobs = ndimage.gaussian_filter(rng.standard_normal(shape), 40)
    threshold = np.quantile(blobs, 1 - fraction)
    return ndimage.gaussian_filter((blobs > threshold).astype(float), 3)


def _true_positions(condition: MosaicCondition, rng: np.random.Generator) -> dict:
    """True tile origins: rotated, rescaled grid + uniform error + slow drift + backlash + settling."""
    rows, cols = condition.grid
    step = np.asarray(condition.tile_step_px) * (1 + condition.step_error)
    angle = np.deg2rad(condition.rotation_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    phase = rng.uniform(0, 2 * np.pi, 2)
    positions = {}
    for r in range(rows):
        for c in range(cols):
            order = r * cols + (c if r % 2 == 0 else cols - 1 - c)  # serpentine acquisition
            drift = condition.drift_px * np.sin(np.pi * order / (rows * cols) + phase)
            error = rng.uniform(-condition.stage_error_px, condition.stage_error_px, 2)
            positions[(r, c)] = rotation @ (np.array([r, c]) * step) + error + drift + _MARGIN
    return _systematic_errors(positions, condition, rng)


def _systematic_errors(positions: dict, condition: MosaicCondition, rng: np.random.Generator) -> dict:
    """Add the backlash of the x axis and the settling of each row's first tile (serpentine order).

    Draws nothing when both are 0, so the other conditions keep their tiles.
    """
    if condition.backlash_px <= 0 and condition.settle_px <= 0:
        return positions
    backlash = condition.backlash_px * rng.uniform(2 / 3, 4 / 3)
    settle = condition.settle_px * rng.uniform(0.5, 1.0)
    cols = condition.grid[1]
    moved = {}
    for (r, c), position in sorted(positions.items()):
        travel = 1 if r % 2 == 0 else -1  # direction of the x moves in this row
        offset = np.array([0.0, -travel * backlash / 2])
        if r > 0 and c == (0 if travel > 0 else cols - 1):  # first tile after the move along y
            offset[0] += settle + condition.settle_px * rng.uniform(-0.25, 0.25)
        moved[(r, c)] = position + offset
    return moved


def _empty_tiles(condition: MosaicCondition, rng: np.random.Generator) -> set:
    """Tiles far from a random tissue centre, ``empty_fraction`` of them."""
    rows, cols = condition.grid
    n_empty = int(round(condition.empty_fraction * rows * cols))
    centre = np.array([rows - 1, cols - 1]) / 2 + rng.uniform(-0.5, 0.5, 2)
    tiles = sorted(((r, c) for r in range(rows) for c in range(cols)),
                   key=lambda t: -np.hypot(*(np.array(t) - centre)))
    return set(tiles[:n_empty])


def _tissue_mask(shape, positions: dict, empty: set, tile_px: int) -> np.ndarray:
    """Tissue where the nearest tile centre belongs to a non-empty tile, soft edges."""
    tiles = sorted(positions)
    centres = np.array([positions[t] + tile_px / 2 for t in tiles])
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    distances = np.stack([np.hypot(yy - cy, xx - cx) for cy, cx in centres])
    nearest = np.argmin(distances, axis=0)
    is_tissue = np.array([t not in empty for t in tiles])[nearest]
    return ndimage.gaussian_filter(is_tissue.astype(float), 3)


def _scene(condition: MosaicCondition, positions: dict, empty: set, rng) -> np.ndarray:
    """Lateral intensity of the sample (tissue in agarose) before imaging, ``(planes, y, x)``.

    One plane for every depth, or a single one when the tissue does not
    change with depth (``depth_change`` 0: nothing more is drawn, so the
    other conditions keep their scenes).
    """
    rows, cols = condition.grid
    extent = np.max(np.array(list(positions.values())), axis=0) + condition.tile_px + _MARGIN
    shape = tuple(int(v) + 1 for v in extent)
    texture = _natural_texture(shape, rng)
    smooth = ndimage.gaussian_filter(_natural_texture(shape, rng), 12)
    smooth /= smooth.std()
    smooth_weight = _smooth_mask(shape, condition.smooth_fraction, rng)
    tissue_mask = _tissue_mask(shape, positions, empty, condition.tile_px)
    agarose_texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2)
    agarose = 0.15 * (1 + 0.03 * agarose_texture / agarose_texture.std())
    textures = [texture]
    if condition.depth_change > 0:
        first, last = _natural_texture(shape, rng), _natural_texture(shape, rng)
        angles = np.linspace(0, np.pi / 2, condition.depth)
        textures = [np.sqrt(1 - condition.depth_change) * texture
                    + np.sqrt(condition.depth_change) * (np.cos(a) * first + np.sin(a) * last) for a in angles]
    planes = []
    for plane_texture in textures:
        tissue = 1.0 + (1 - smooth_weight) * 0.35 * plane_texture + smooth_weight * 0.05 * smooth
        planes.append(np.clip(tissue_mask * tissue + (1 - tissue_mask) * agarose, 0.01, None))
    return np.stack(planes)


def _vignetting(condition: MosaicCondition, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative illumination of a tile: 1 at its (off-centre) centre, radial fall-off."""
    size = condition.tile_px
    centre = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    yy, xx = np.mgrid[:size, :size]
    radius2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * (size / 2) ** 2)
    return 1 - condition.vignetting * radius2


def _speckle_field(shape, rng: np.random.Generator) -> np.ndarray:
    """Complex circular Gaussian field, spatially correlated over ~1 px, unit power.

    Filtered periodically (``mode="wrap"``): its power is the same at the
    field's border as inside. The default ``reflect`` averages mirrored
    samples there, which made every tile's outer rows and columns 57 %
    brighter and gave neighbouring tiles mirrored edge profiles (issue #10).
    """
    field_ = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    field_ = (ndimage.gaussian_filter(field_.real, SPECKLE_GRAIN_PX, mode="wrap")
              + 1j * ndimage.gaussian_filter(field_.imag, SPECKLE_GRAIN_PX, mode="wrap"))
    return field_ / np.sqrt(np.mean(np.abs(field_) ** 2))


def sample_tile(image: np.ndarray, origin: np.ndarray, size: int) -> np.ndarray:
    """``image`` at ``origin + (i, j)`` for a ``size`` x ``size`` tile (cubic interpolation)."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    return ndimage.map_coordinates(image, [yy + origin[0], xx + origin[1]], order=3, mode="nearest")


def simulate_mosaic(condition: MosaicCondition, seed: int) -> SimulatedMosaic:
    """Draw a mosaic grid under ``condition``.

    Parameters
    ----------
    condition : MosaicCondition
    seed : int
        Seed of every random draw (deterministic).

    Returns
    -------
    SimulatedMosaic
    """
    rng = np.random.default_rng(seed)
    rows, cols = condition.grid
    size, depth = condition.tile_px, condition.depth
    positions = _true_positions(condition, rng)
    empty = _empty_tiles(condition, rng)
    scenes = _scene(condition, positions, empty, rng)
    tissue = _tissue_mask(scenes.shape[1:], positions, empty, size)
    shared = [_speckle_field(scenes.shape[1:], rng) for _ in range(depth)] if condition.speckle else []
    illumination = _vignetting(condition, rng)
    grid = np.zeros((depth, rows * size, cols * size), dtype=np.float32)
    empty_tiles = []
    for tile, origin in sorted(positions.items()):
        sampled = [sample_tile(plane, origin, size) * illumination for plane in scenes]
        planes = np.stack([sampled[min(z, len(sampled) - 1)] for z in range(depth)])
        if condition.speckle:
            for z in range(depth):
                own = _speckle_field((size, size), rng)
                sample_part = (sample_tile(shared[z].real, origin, size)
                               + 1j * sample_tile(shared[z].imag, origin, size))
                amplitude = (np.sqrt(condition.speckle_shared) * sample_part
                             + np.sqrt(1 - condition.speckle_shared) * own)
                planes[z] *= np.abs(amplitude) ** 2
        planes += condition.noise * rng.standard_normal(planes.shape)
        grid[:, tile[0] * size:(tile[0] + 1) * size, tile[1] * size:(tile[1] + 1) * size] = planes
        if sample_tile(tissue, origin, size).mean() < EMPTY_TISSUE_FRACTION:
            empty_tiles.append(tile)
    stage = {t: np.array(t, float) * condition.tile_step_px for t in positions}
    truth = {t: p - _MARGIN for t, p in positions.items()}
    return SimulatedMosaic(grid=grid, condition=condition, truth=truth, stage=stage,
                           empty_tiles=tuple(empty_tiles), scene=scenes.mean(axis=0),
                           illumination=illumination)


def write_simulated_mosaic(mosaic: SimulatedMosaic, path: str | os.PathLike,
                           resolution_mm: float = 0.003, overwrite: bool = False) -> None:
    """Write a drawn mosaic as a mosaic grid OME-Zarr (input of ``linum_stitch_3d.py``)."""
    from linumpy.io.zarr import save_omezarr

    condition = mosaic.condition
    size = condition.tile_px
    attributes = {
        "tile_shape": [condition.depth, size, size],
        "grid_shape": list(condition.grid),
        "tile_step_px": list(condition.tile_step_px),
        "tiles_present": [list(t) for t in sorted(mosaic.truth)],
        "tile_positions_truth_px": [[r, c, *map(float, p)] for (r, c), p in sorted(mosaic.truth.items())],
    }
    save_omezarr(mosaic.grid, path, (resolution_mm / 2, resolution_mm, resolution_mm),
                 chunks=(condition.depth, size, size), n_levels=0, attributes=attributes,
                 overwrite=overwrite)


def aligned_errors(estimated: dict, truth: dict, reference: list | None = None,
                   frame: dict | None = None) -> dict:
    """Per-tile distance (pixels) to the truth after removing the global translation.

    Parameters
    ----------
    estimated, truth : dict
        ``(row, col) -> (y, x)``.
    reference : list of (row, col), optional
        Tiles whose mean difference defines the translation (default: all).
    frame : dict, optional
        ``(row, col) -> (y, x)`` positions whose translation is removed
        (default: ``estimated``'s own). Comparing two sets of positions tile
        by tile needs one frame for both: each aligned on its own, a tile
        placed exactly where the stage put it can differ from its stage
        error by the difference of the two translations.

    Returns
    -------
    dict
        ``(row, col) -> error`` for every tile of ``truth``.
    """
    reference = sorted(truth) if reference is None else reference
    frame = estimated if frame is None else frame
    translation = np.mean([np.asarray(frame[t], float) - truth[t] for t in reference], axis=0)
    return {t: float(np.linalg.norm(np.asarray(estimated[t], float) - translation - truth[t]))
            for t in truth}


def excess_over_stage(estimated: dict, stage: dict, truth: dict, reference: list | None = None) -> dict:
    """Per tile, how much farther from the truth ``estimated`` puts it than ``stage`` (pixels).

    Both are measured in the frame of ``estimated`` (its mean translation
    over ``reference`` removed from both, see :func:`aligned_errors`): a tile
    left exactly at its stage position scores 0, whatever the others do.
    """
    ours = aligned_errors(estimated, truth, reference)
    theirs = aligned_errors(stage, truth, reference, frame=estimated)
    return {t: ours[t] - theirs[t] for t in truth}
