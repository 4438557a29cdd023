"""Open a raw serial-OCT acquisition: native tile folders or TIFF tiles.

Tiles are named ``tile_x{X}_y{Y}_z{Z}`` (``X`` grid column, ``Y`` grid row,
``Z`` slice id; any number of digits), either all side by side in the
acquisition folder or in one sub-folder per slice. Native tiles are folders
(:mod:`linumpy.io.native_tiles`); TIFF tiles are ``.tif`` files described by
``acquisition.json`` (:mod:`linumpy.io.sidecar`). Nothing but the metadata is
read when opening; :meth:`Tile.read` reads pixels, one tile at a time.

Examples
--------
>>> acq = open_acquisition("raw/")  # doctest: +SKIP
>>> section = acq.slice(acq.slice_ids[0])  # doctest: +SKIP
>>> volume = section.tiles[(0, 0)].read()  # float32 (z, y, x)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linumpy.errors import InputError
from linumpy.io.native_tiles import read_info, read_native_tile
from linumpy.io.sidecar import SIDECAR_NAME, AcquisitionSidecar, read_sidecar
from linumpy.io.tiff_tiles import TIFF_SUFFIX, read_tiff_tile, tiff_tile_shape

#: Axial voxel size of the lab's OCT system, used when neither the caller nor
#: ``acquisition.json`` gives one.
DEFAULT_AXIAL_RESOLUTION_UM = 1.5

_TILE_NAME = re.compile(r"^tile_x(\d+)_y(\d+)_z(\d+)$")
_DECIMALS = 6
#: A slice's grid may be mostly empty (tissue-only tiling), but not more than
#: this many times larger than its tile count (and 64 empty cells): beyond,
#: a stray tile index (``tile_x99999_...``) would blow the grid up.
_MAX_GRID_PER_TILE = 4
_MAX_EMPTY_CELLS = 64
#: Smallest nominal step between neighbouring tiles, in pixels: less means the stage did not move.
_MIN_STEP_PX = 1.0

logger = logging.getLogger(__name__)


def tile_name(col: int, row: int, slice_id: int) -> str:
    """Return ``tile_x{col:02d}_y{row:02d}_z{slice_id:02d}``.

    Examples
    --------
    >>> tile_name(1, 0, 100)
    'tile_x01_y00_z100'
    """
    return f"tile_x{col:02d}_y{row:02d}_z{slice_id:02d}"


def parse_tile_name(name: str) -> tuple[int, int, int] | None:
    """Return ``(row, col, slice_id)`` of a tile name (suffix removed), else None.

    Examples
    --------
    >>> parse_tile_name("tile_x02_y01_z103")
    (1, 2, 103)
    """
    match = _TILE_NAME.match(name)
    if match is None:
        return None
    col, row, slice_id = (int(g) for g in match.groups())
    return row, col, slice_id


@dataclass(frozen=True)
class Tile:
    """One raw tile of a slice.

    Attributes
    ----------
    path : Path
        Tile folder (native) or ``.tif`` file.
    row, col : int
        Position in the slice's tile grid.
    stage_position_mm : dict
        Motor position ``{"x", "y", "z"}`` when the tile was acquired.
    """

    path: Path
    row: int
    col: int
    stage_position_mm: dict[str, float]
    _reader: Callable[[np.ndarray | None], np.ndarray] = field(repr=False, compare=False)

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """Return the tile's pixels as float32 ``(z, y, x)``.

        ``out``: an array of that shape a native tile is read into (and
        returned); TIFF tiles return a new array.
        """
        return self._reader(out)


@dataclass(frozen=True)
class SliceAcquisition:
    """The tiles of one physical slice and their common geometry.

    Attributes
    ----------
    slice_id : int
    grid_shape : (int, int)
        ``(rows, cols)``: one more than the largest row and column index.
    tile_shape : (int, int, int)
        ``(z, y, x)`` pixels of every tile.
    resolution_um : (float, float, float)
        ``(z, y, x)`` voxel size, micrometres.
    tile_step_px : (float, float)
        Nominal ``(y, x)`` distance between neighbouring tiles in pixels,
        from the stage positions (from the overlap, or the tile size, along
        an axis with a single tile).
    stage_position_mm : dict
        Motor position ``{"x", "y", "z"}`` of tile (0, 0), extrapolated from
        the first acquired tile with the nominal step if (0, 0) is missing.
    tiles : dict
        ``{(row, col): Tile}`` of the tiles present.
    focus_z_px : int or None
        Depth index of the focal plane in the tiles, when known.
    frames_averaged : int or None
        Raw frames averaged into each B-scan (native tiles' ``n_repeat``), when known: one frame leaves the
        speckle unaveraged (the report warns, ``linumpy.qc.flags.acquisition_warnings``).
    axial_resolution_source : str
        Where ``resolution_um[0]`` came from: ``"argument"``, ``"acquisition.json"`` or ``"default"``
        (:data:`DEFAULT_AXIAL_RESOLUTION_UM` assumed; the report warns).
    """

    slice_id: int
    grid_shape: tuple[int, int]
    tile_shape: tuple[int, int, int]
    resolution_um: tuple[float, float, float]
    tile_step_px: tuple[float, float]
    stage_position_mm: dict[str, float]
    tiles: dict[tuple[int, int], Tile]
    focus_z_px: int | None = None
    frames_averaged: int | None = None
    axial_resolution_source: str = "argument"


class Acquisition:
    """A raw acquisition folder; see :func:`open_acquisition`."""

    def __init__(
        self,
        path: Path,
        layouts: dict[int, str],
        entries: dict[int, dict[tuple[int, int], Path]],
        sidecar: AcquisitionSidecar,
        axial_resolution_um: float,
        axial_resolution_source: str,
    ) -> None:
        self.path = path
        self.layouts = layouts
        self.sidecar = sidecar
        self.axial_resolution_um = axial_resolution_um
        self.axial_resolution_source = axial_resolution_source
        self._entries = entries
        self._slices: dict[int, SliceAcquisition] = {}

    @property
    def layout(self) -> str:
        """``"native"``, ``"tiff"``, or ``"mixed"`` when some slices are native folders and others TIFF."""
        kinds = set(self.layouts.values())
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def slice_ids(self) -> list[int]:
        """Sorted ids of the slices that have at least one tile."""
        return sorted(self._entries)

    @property
    def slice_thickness_um(self) -> float | None:
        """Vibratome cut thickness from ``acquisition.json``, if given."""
        return self.sidecar.slice_thickness_um

    def slice(self, slice_id: int) -> SliceAcquisition:
        """Return the tiles and geometry of one slice (metadata validated here).

        Raises
        ------
        InputError
            If the slice has no tiles (the message lists the available ids),
            or its tiles disagree on shape or resolution.
        """
        if slice_id not in self._entries:
            available = ", ".join(str(i) for i in self.slice_ids)
            raise InputError(f"{self.path}: no tiles for slice {slice_id}; available slice ids: {available}")
        if slice_id not in self._slices:
            build = _native_slice if self.layouts[slice_id] == "native" else _tiff_slice
            self._slices[slice_id] = build(self, slice_id, self._entries[slice_id])
        return self._slices[slice_id]


def open_acquisition(path: str | Path, axial_resolution_um: float | None = None) -> Acquisition:
    """Open a raw acquisition folder (native tile folders or TIFF tiles).

    Parameters
    ----------
    path : path-like
        The acquisition folder.
    axial_resolution_um : float, optional
        Axial voxel size; defaults to ``acquisition.json``'s, else
        :data:`DEFAULT_AXIAL_RESOLUTION_UM` (the lab system's 1.5 um, logged as a warning: the native tiles'
        ``info.txt`` does not give it).

    Returns
    -------
    Acquisition

    Raises
    ------
    InputError
        If the folder holds no tiles, a tile appears twice, or
        ``acquisition.json`` is invalid.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; give the acquisition folder")
    sidecar_path = root / SIDECAR_NAME
    sidecar = read_sidecar(sidecar_path) if sidecar_path.exists() else AcquisitionSidecar()
    native, tiff = _scan(root)
    if not native and not tiff:
        raise InputError(f"{root}: no tile_x*_y*_z* tile folders or .tif tiles found; check the path")
    both = sorted(set(native) & set(tiff))
    if both:
        slice_id = both[0]
        raise InputError(
            f"{next(iter(tiff[slice_id].values()))}: slice {slice_id} has both .tif tiles and native tile "
            f"folders (e.g. {next(iter(native[slice_id].values()))}); keep one format per slice"
        )
    if tiff and not sidecar_path.exists():
        first = tiff[min(tiff)][min(tiff[min(tiff)])]
        raise InputError(f"{sidecar_path}: missing; TIFF tiles (e.g. {first}) need it for the resolution "
                         "and stage positions")
    layouts = {**{i: "native" for i in native}, **{i: "tiff" for i in tiff}}
    entries = dict(sorted({**native, **tiff}.items()))
    if axial_resolution_um is not None and axial_resolution_um <= 0:
        raise InputError(f"axial resolution must be positive, got {axial_resolution_um} um")
    axial, source = _axial_resolution(root, axial_resolution_um, sidecar.axial_resolution_um)
    return Acquisition(root, layouts, entries, sidecar, axial, source)


def _axial_resolution(root: Path, given_um: float | None, sidecar_um: float | None) -> tuple[float, str]:
    """The axial voxel size (um) and where it came from; assuming the lab default is logged as a warning."""
    if given_um is not None:
        return float(given_um), "argument"
    if sidecar_um is not None:
        return float(sidecar_um), SIDECAR_NAME
    logger.warning("%s: axial resolution not given (no %s, no --axial_resolution): the lab system's %s um "
                   "assumed; depths, thicknesses and attenuation (per mm) scale with it", root, SIDECAR_NAME,
                   DEFAULT_AXIAL_RESOLUTION_UM)
    return DEFAULT_AXIAL_RESOLUTION_UM, "default"


def _scan(root: Path) -> tuple[dict, dict]:
    """Find native tile folders and TIFF tiles in ``root`` and its sub-folders."""
    native: dict[int, dict[tuple[int, int], Path]] = {}
    tiff: dict[int, dict[tuple[int, int], Path]] = {}
    candidates = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("tile_"):  # a folder of one slice's tiles
            candidates.extend(sorted(child.iterdir()))
        else:
            candidates.append(child)
    for candidate in candidates:
        if candidate.is_dir():
            target, key = native, parse_tile_name(candidate.name)
        elif candidate.suffix.lower() in (TIFF_SUFFIX, ".tiff"):
            target, key = tiff, parse_tile_name(candidate.stem)
        else:
            continue
        if key is None:
            if candidate.name.startswith("tile_"):
                logger.warning("%s: ignored: not a tile_x<col>_y<row>_z<slice> name (digits only); "
                               "rename it if it is a tile", candidate)
            continue
        row, col, slice_id = key
        tiles = target.setdefault(slice_id, {})
        if (row, col) in tiles:
            raise InputError(f"{candidate}: tile found twice (also {tiles[(row, col)]}); remove one")
        tiles[(row, col)] = candidate
    return native, tiff


def _native_slice(acq: Acquisition, slice_id: int, entries: dict[tuple[int, int], Path]) -> SliceAcquisition:
    infos = {key: read_info(path) for key, path in sorted(entries.items())}
    first_key = next(iter(infos))
    first = infos[first_key]
    for key, info in infos.items():
        for name in ("nx", "ny", "n_extra", "n_repeat", "top_z", "bottom_z", "width", "height"):
            if getattr(info, name) != getattr(first, name):
                raise InputError(
                    f"{entries[key]}: '{name}' is {getattr(info, name)} but {getattr(first, name)} in "
                    f"{entries[first_key]}; all tiles of a slice must share their geometry"
                )
    lateral = acq.sidecar.lateral_resolution_um or (first.height / first.ny, first.width / first.nx)
    positions = {
        key: {"x": info.stage_x_pos_mm, "y": info.stage_y_pos_mm, "z": info.stage_z_pos_mm}
        for key, info in infos.items()
    }
    tiles = {
        key: Tile(entries[key], key[0], key[1], positions[key], _native_reader(entries[key], infos[key]))
        for key in infos
    }
    return _assemble(acq, slice_id, tiles, (first.depth, first.ny, first.nx), lateral, first.focus_z - first.top_z,
                     first.n_repeat)


def _native_reader(path: Path, info) -> Callable[[np.ndarray | None], np.ndarray]:
    return lambda out=None: read_native_tile(path, info, out=out)


def _tiff_reader(path: Path) -> Callable[[np.ndarray | None], np.ndarray]:
    return lambda out=None: read_tiff_tile(path)


def _tiff_slice(acq: Acquisition, slice_id: int, entries: dict[tuple[int, int], Path]) -> SliceAcquisition:
    sidecar_path = acq.path / SIDECAR_NAME
    if acq.sidecar.lateral_resolution_um is None:
        raise InputError(f"{sidecar_path}: field 'lateral_resolution_um' is missing; TIFF tiles need it")
    shapes = {key: tiff_tile_shape(path) for key, path in sorted(entries.items())}
    first_key = next(iter(shapes))
    tiles = {}
    for key, path in sorted(entries.items()):
        if shapes[key] != shapes[first_key]:
            raise InputError(
                f"{path}: shape {shapes[key]} differs from {shapes[first_key]} of {entries[first_key]}; "
                "all tiles of a slice must have the same shape"
            )
        position = acq.sidecar.stage_positions_mm.get(path.stem)
        if position is None:
            raise InputError(f"{sidecar_path}: field 'stage_positions_mm.{path.stem}' is missing; add the tile's position")
        tiles[key] = Tile(path, key[0], key[1], position.model_dump(), _tiff_reader(path))
    return _assemble(acq, slice_id, tiles, shapes[first_key], acq.sidecar.lateral_resolution_um, None)


def _assemble(
    acq: Acquisition,
    slice_id: int,
    tiles: dict[tuple[int, int], Tile],
    tile_shape: tuple[int, int, int],
    lateral_um: tuple[float, float],
    focus_z_px: int | None,
    frames_averaged: int | None = None,
) -> SliceAcquisition:
    rows = max(r for r, _ in tiles) + 1
    cols = max(c for _, c in tiles) + 1
    _check_grid_extent(slice_id, tiles, rows, cols)
    overlap = acq.sidecar.tile_overlap
    step_mm, step_px = {}, []
    for axis, stage_key in enumerate(("y", "x")):
        size, res = tile_shape[1 + axis], lateral_um[axis]
        signed = _signed_step_mm(tiles, axis)
        step_mm[stage_key] = signed or 0.0
        if signed is not None:
            step_px.append(round(abs(signed) * 1000.0 / res, 3))
            if step_px[-1] < _MIN_STEP_PX:
                raise InputError(
                    f"{_neighbours(tiles, axis)}: slice {slice_id}'s neighbouring tiles along {stage_key} are "
                    f"{abs(signed)} mm apart ({step_px[-1]} px): the stage positions do not move between tiles; "
                    "check the stage positions (tile info files, or acquisition.json's stage_positions_mm)"
                )
        else:  # a single row or column: no neighbour to measure
            step_px.append(float(size if overlap is None else round(size * (1 - overlap[axis]), 3)))
    origin = _origin_position(tiles, step_mm)
    return SliceAcquisition(
        slice_id=slice_id,
        grid_shape=(rows, cols),
        tile_shape=tuple(int(n) for n in tile_shape),
        resolution_um=(acq.axial_resolution_um, float(lateral_um[0]), float(lateral_um[1])),
        tile_step_px=(step_px[0], step_px[1]),
        stage_position_mm=origin,
        tiles=dict(sorted(tiles.items())),
        focus_z_px=focus_z_px,
        frames_averaged=frames_averaged,
        axial_resolution_source=acq.axial_resolution_source,
    )


def _check_grid_extent(slice_id: int, tiles: dict[tuple[int, int], Tile], rows: int, cols: int) -> None:
    """Refuse a grid mostly made of empty cells: a stray tile index would make it absurdly large."""
    cells = rows * cols
    if cells <= _MAX_GRID_PER_TILE * len(tiles) or cells - len(tiles) <= _MAX_EMPTY_CELLS:
        return
    row_spread = rows / len({r for r, _ in tiles})
    col_spread = cols / len({c for _, c in tiles})
    axis = 1 if col_spread >= row_spread else 0
    farthest = max(tiles, key=lambda key: key[axis])
    raise InputError(
        f"{tiles[farthest].path}: slice {slice_id}'s tile grid would be {rows} x {cols} tiles for only "
        f"{len(tiles)} tiles present, because of this tile's {'column' if axis else 'row'} index "
        f"{farthest[axis]}; remove or rename the stray tile"
    )


def _neighbours(tiles: dict[tuple[int, int], Tile], axis: int) -> str:
    """``A and B``: the first two grid neighbours along ``axis`` (0: rows/y, 1: columns/x)."""
    for (r, c), tile in tiles.items():
        neighbour = tiles.get((r + 1, c) if axis == 0 else (r, c + 1))
        if neighbour is not None:
            return f"{tile.path} and {neighbour.path}"
    return "tiles"


def _signed_step_mm(tiles: dict[tuple[int, int], Tile], axis: int) -> float | None:
    """Median stage displacement between grid neighbours along ``axis`` (0: rows/y, 1: columns/x)."""
    stage_key = "yx"[axis]
    steps = []
    for (r, c), tile in tiles.items():
        neighbour = tiles.get((r + 1, c) if axis == 0 else (r, c + 1))
        if neighbour is not None:
            steps.append(neighbour.stage_position_mm[stage_key] - tile.stage_position_mm[stage_key])
    return statistics.median(steps) if steps else None


def _origin_position(tiles: dict[tuple[int, int], Tile], step_mm: dict[str, float]) -> dict[str, float]:
    """Stage position of tile (0, 0), extrapolated from the first tile if missing."""
    row, col = min(tiles)
    position = dict(tiles[(row, col)].stage_position_mm)
    position["y"] -= row * step_mm["y"]
    position["x"] -= col * step_mm["x"]
    return {key: round(value, _DECIMALS) for key, value in position.items()}
