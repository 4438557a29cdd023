"""The estimated stitching transform and its JSON file.

A :class:`TileTransform` holds what stitching estimated for one slice: the
position of every tile and the stage model that places tiles it did not see.
Saved next to the stitched output, it can be applied unchanged to another
channel or slice acquired with the same grid (``linum_stitch_3d.py
--transform``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linumpy.errors import InputError
from linumpy.io.atomic import atomic_output
from linumpy.stitching.global_solve import StageModel, TileIndex

FORMAT_NAME = "linumpy-tile-transform"
FORMAT_VERSION = 1
_DECIMALS = 4


@dataclass(frozen=True)
class PairRecord:
    """Diagnostics of one registered pair of neighbouring tiles."""

    a: TileIndex
    b: TileIndex
    offset: tuple[float, float]
    ncc: float
    accepted: bool


@dataclass(frozen=True)
class TileTransform:
    """Lateral position of every tile of a mosaic grid, in pixels.

    Attributes
    ----------
    tile_shape : tuple of int
        ``(y, x)`` shape of one tile.
    tile_step_px : tuple of float
        Nominal ``(y, x)`` step of the grid.
    positions : dict
        ``(row, col) -> (y, x)`` estimated origin of each tile, in the stage
        model's frame (any global translation).
    stage_model : StageModel
        Places tiles missing from ``positions``.
    ncc_threshold : float or None
        Acceptance threshold used for the pairs (diagnostic).
    pairs : tuple of PairRecord
        Every registered pair (diagnostic).
    """

    tile_shape: tuple[int, int]
    tile_step_px: tuple[float, float]
    positions: dict[TileIndex, tuple[float, float]]
    stage_model: StageModel
    ncc_threshold: float | None = None
    pairs: tuple[PairRecord, ...] = field(default=())

    def position(self, tile: TileIndex) -> np.ndarray:
        """Return the ``(y, x)`` position of ``tile`` (stage model if not estimated)."""
        if tile in self.positions:
            return np.asarray(self.positions[tile], dtype=float)
        return self.stage_model.position(tile)


def _rounded(values) -> list[float]:
    return [round(float(v), _DECIMALS) for v in values]


def transform_to_dict(transform: TileTransform) -> dict:
    """Return the JSON-serialisable form of a transform."""
    model = transform.stage_model
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tile_shape": [int(v) for v in transform.tile_shape],
        "tile_step_px": _rounded(transform.tile_step_px),
        "stage_model": {
            "origin": _rounded(model.origin),
            "row_step": _rounded(model.row_step),
            "col_step": _rounded(model.col_step),
        },
        "tile_positions_px": [
            [int(r), int(c), *_rounded(transform.positions[(r, c)])]
            for r, c in sorted(transform.positions)
        ],
        "ncc_threshold": None if transform.ncc_threshold is None
        else round(float(transform.ncc_threshold), _DECIMALS),
        "pairs": [
            {"a": list(p.a), "b": list(p.b), "offset": _rounded(p.offset),
             "ncc": round(float(p.ncc), _DECIMALS), "accepted": bool(p.accepted)}
            for p in transform.pairs
        ],
    }


def transform_from_dict(data: dict, source: str = "transform") -> TileTransform:
    """Build a transform from :func:`transform_to_dict` output.

    Raises
    ------
    InputError
        If ``data`` is not a linumpy tile transform.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise InputError(f"{source} is not a {FORMAT_NAME} JSON file; "
                         "pass a file written by linum_stitch_3d.py --transform_out")
    if data.get("version") != FORMAT_VERSION:
        raise InputError(f"{source} has version {data.get('version')}; "
                         f"this linumpy reads version {FORMAT_VERSION}")
    try:
        model = data["stage_model"]
        return TileTransform(
            tile_shape=tuple(int(v) for v in data["tile_shape"]),
            tile_step_px=tuple(float(v) for v in data["tile_step_px"]),
            positions={(int(r), int(c)): (float(y), float(x))
                       for r, c, y, x in data["tile_positions_px"]},
            stage_model=StageModel(
                origin=tuple(float(v) for v in model["origin"]),
                row_step=tuple(float(v) for v in model["row_step"]),
                col_step=tuple(float(v) for v in model["col_step"]),
            ),
            ncc_threshold=data.get("ncc_threshold"),
            pairs=tuple(
                PairRecord(a=tuple(p["a"]), b=tuple(p["b"]), offset=tuple(p["offset"]),
                           ncc=float(p["ncc"]), accepted=bool(p["accepted"]))
                for p in data.get("pairs", [])
            ),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{source} is a malformed tile transform ({error!r}); "
                         "regenerate it with linum_stitch_3d.py") from error


def save_transform(transform: TileTransform, path: str | os.PathLike,
                   overwrite: bool = False) -> None:
    """Write a transform to a JSON file atomically."""
    text = json.dumps(transform_to_dict(transform), indent=1) + "\n"
    with atomic_output(path, overwrite) as temporary:
        Path(temporary).write_text(text)


def load_transform(path: str | os.PathLike) -> TileTransform:
    """Read a transform written by :func:`save_transform`.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or not a tile transform.
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise InputError(f"transform file {path} does not exist; check --transform") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not valid JSON ({error}); pass a transform JSON file") from error
    return transform_from_dict(data, source=str(path))
