"""Write a simulated acquisition: raw tiles (native or TIFF) and its ground truth.

Memory stays bounded by a few tiles whatever the preset: tiles are simulated
and written one at a time, and the ground-truth volumes are evaluated and
written chunk by chunk.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from linumpy.io.acquisition import tile_name
from linumpy.io.atomic import atomic_output
from linumpy.io.native_tiles import INFO_NAME, NativeTileInfo, format_info_text, write_native_frames
from linumpy.io.naming import slice_tag
from linumpy.io.sidecar import SIDECAR_NAME, AcquisitionSidecar, StagePosition, write_sidecar
from linumpy.io.tiff_tiles import write_tiff_tile
from linumpy.io.zarr import OmeZarrWriter, save_omezarr
from linumpy.simulate.geometry import AcquisitionGeometry
from linumpy.simulate.imaging import raw_frames, tile_noise_rng, tile_signal
from linumpy.simulate.phantom import Phantom
from linumpy.simulate.options import LAYOUTS
from linumpy.simulate.presets import Preset
from linumpy.simulate.truth import build_truth

GROUND_TRUTH_DIR = "ground_truth"
_TRUTH_CHUNKS = (32, 256, 256)
_TRUTH_LEVELS = 2


def simulate_acquisition(
    outdir: str | Path,
    preset: Preset,
    seed: int = 0,
    layout: str = "native",
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Simulate a serial-OCT acquisition into ``outdir`` (atomically).

    Parameters
    ----------
    outdir : path-like
        Output folder: the raw tiles, ``acquisition.json`` and
        ``ground_truth/`` (see ``docs/simulator.md``).
    preset : Preset
        Sizes and imaging parameters (:func:`linumpy.simulate.presets.get_preset`).
    seed : int
        Same seed, same bytes.
    layout : {"native", "tiff"}
        The lab's tile folders (info.txt + .bin) or TIFF tiles.
    overwrite : bool
        Replace an existing ``outdir``.
    progress : bool
        Show a progress bar over the tiles.

    Returns
    -------
    Path
        ``outdir``.

    Examples
    --------
    >>> from linumpy.simulate.presets import get_preset
    >>> simulate_acquisition("raw_tiny", get_preset("tiny"), seed=1)  # doctest: +SKIP
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    outdir = Path(outdir)
    geometry = AcquisitionGeometry(preset, seed)
    phantom = Phantom(seed, preset, geometry.mosaic_shape)
    rows, cols = preset.grid_shape
    with atomic_output(outdir, overwrite) as tmp:
        tmp.mkdir(parents=True)
        keys = [(k, r, c) for k in range(preset.n_slices) for r in range(rows) for c in range(cols)]
        for index, row, col in tqdm(keys, desc="simulating tiles", unit="tile", disable=not progress):
            signal = tile_signal(phantom, geometry, seed, index, row, col)
            galvo = geometry.slices[index].galvo_shift_px
            frames = raw_frames(signal, preset, tile_noise_rng(seed, index, row, col), galvo)
            name = tile_name(col, row, geometry.slices[index].slice_id)
            position = geometry.motor_position_mm(index, row, col)
            if layout == "native":
                _write_native_tile(tmp / name, frames, preset, position)
            else:
                write_tiff_tile(tmp / f"{name}.tif", _average_repeats(frames, preset))
        write_sidecar(_sidecar(geometry, layout), tmp / SIDECAR_NAME)
        _write_ground_truth(tmp / GROUND_TRUTH_DIR, phantom, geometry, seed, layout, progress)
    return outdir


def _write_native_tile(tile_dir: Path, frames: np.ndarray, preset: Preset, position: dict[str, float]) -> None:
    nz, ny, nx = preset.tile_shape
    lateral = preset.lateral_resolution_um
    info = NativeTileInfo(
        nx=nx, ny=ny, n_repeat=preset.n_repeat, width=nx * lateral, height=ny * lateral,
        n_extra=preset.n_extra, top_z=preset.top_z, bottom_z=preset.top_z + nz - 1,
        focus_z=preset.top_z + round(preset.focus_px),
        stage_x_pos_mm=position["x"], stage_y_pos_mm=position["y"], stage_z_pos_mm=position["z"],
    )
    tile_dir.mkdir()
    (tile_dir / INFO_NAME).write_text(format_info_text(info))
    write_native_frames(tile_dir, frames, preset.n_bin_files)


def _average_repeats(frames: np.ndarray, preset: Preset) -> np.ndarray:
    """The tile a reader returns from ``frames``: repeats averaged, extra A-lines cropped, (z, y, x)."""
    nz, ny, nx = preset.tile_shape
    grouped = frames.reshape(ny, preset.n_repeat, nx + preset.n_extra, nz)[:, :, :nx, :]
    return (grouped.sum(axis=1, dtype=np.float32) / np.float32(preset.n_repeat)).transpose(2, 0, 1)


def _sidecar(geometry: AcquisitionGeometry, layout: str) -> AcquisitionSidecar:
    preset = geometry.preset
    fields = {
        "axial_resolution_um": preset.axial_resolution_um,
        "slice_thickness_um": preset.slice_thickness_px * preset.axial_resolution_um,
        "tile_overlap": (preset.overlap, preset.overlap),
    }
    if layout == "tiff":
        rows, cols = preset.grid_shape
        fields["lateral_resolution_um"] = (preset.lateral_resolution_um, preset.lateral_resolution_um)
        fields["stage_positions_mm"] = {
            tile_name(c, r, s.slice_id): StagePosition(**geometry.motor_position_mm(k, r, c))
            for k, s in enumerate(geometry.slices)
            for r in range(rows)
            for c in range(cols)
        }
    return AcquisitionSidecar(**fields)


def _write_ground_truth(
    folder: Path, phantom: Phantom, geometry: AcquisitionGeometry, seed: int, layout: str, progress: bool
) -> None:
    preset = geometry.preset
    folder.mkdir()
    truth = build_truth(phantom, geometry, seed, layout)
    (folder / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    lateral_mm = preset.lateral_resolution_um / 1000.0
    origin_px = geometry.surface_origin_px
    for index, slice_geometry in enumerate(geometry.slices):
        save_omezarr(
            geometry.surface_in_mosaic(index),
            folder / f"surface_{slice_tag(slice_geometry.slice_id)}.ome.zarr",
            (lateral_mm, lateral_mm),
            n_levels=_TRUTH_LEVELS,
            attributes={"slice_id": slice_geometry.slice_id, "units": "tile depth samples", "origin_px": list(origin_px)},
            origin=tuple(o * lateral_mm for o in origin_px),
        )
    _write_phantom_volumes(folder, phantom, geometry, progress)


def _write_phantom_volumes(folder: Path, phantom: Phantom, geometry: AcquisitionGeometry, progress: bool) -> None:
    """Sample the phantom on the world box of all tiles, chunk by chunk."""
    preset = geometry.preset
    step = preset.truth_step
    (z0, z1), (y0, y1), (x0, x1) = geometry.world_extent()
    axes = (np.arange(z0, z1), np.arange(y0, y1, step), np.arange(x0, x1, step))
    shape = tuple(len(a) for a in axes)
    axial_mm, lateral_mm = preset.axial_resolution_um / 1000.0, preset.lateral_resolution_um / 1000.0
    resolution = (axial_mm, lateral_mm * step, lateral_mm * step)
    origin = (z0 * axial_mm, y0 * lateral_mm, x0 * lateral_mm)
    chunks = tuple(min(c, n) for c, n in zip(_TRUTH_CHUNKS, shape))
    corners = itertools.product(*(range(0, n, c) for n, c in zip(shape, chunks)))
    blocks = [tuple(slice(s, min(s + c, n)) for s, c, n in zip(corner, chunks, shape)) for corner in corners]
    with (
        OmeZarrWriter(folder / "phantom.ome.zarr", shape, chunks) as reflectivity,
        OmeZarrWriter(folder / "attenuation.ome.zarr", shape, chunks) as attenuation,
    ):
        for block in tqdm(blocks, desc="ground truth", unit="chunk", disable=not progress):
            box = phantom.evaluate(*(a[s] for a, s in zip(axes, block)))
            reflectivity[block] = box.reflectivity
            attenuation[block] = box.attenuation_per_mm
        attributes = {"world_origin_px": [z0, y0, x0], "step_px": [1, step, step]}
        reflectivity.finalize(resolution, _TRUTH_LEVELS, attributes | {"quantity": "reflectivity"}, origin=origin)
        attenuation.finalize(resolution, _TRUTH_LEVELS, attributes | {"quantity": "attenuation_per_mm"}, origin=origin)
