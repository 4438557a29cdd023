"""The ``acquisition.json`` sidecar: metadata a raw acquisition does not carry.

The lab microscope's ``info.txt`` files say nothing about the axial
resolution or the slice thickness, and TIFF tiles from other microscopes carry
no metadata at all. ``acquisition.json``, at the root of an acquisition
folder, fills these gaps (see ``docs/raw-formats.md``)::

    {
      "format_version": 1,
      "axial_resolution_um": 1.5,
      "lateral_resolution_um": [3.0, 3.0],
      "slice_thickness_um": 67.5,
      "tile_overlap": [0.2, 0.2],
      "stage_positions_mm": {"tile_x00_y00_z00": {"x": 0.0, "y": 0.0, "z": 0.0}}
    }

Every field is optional for native acquisitions; TIFF acquisitions need
``lateral_resolution_um`` and a stage position for every tile.
"""

from __future__ import annotations

import json
from pathlib import Path

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError

from linumpy.errors import InputError

SIDECAR_NAME = "acquisition.json"

Fraction = Annotated[float, Field(ge=0, lt=1)]


class StagePosition(BaseModel):
    """Motor position of one tile, millimetres."""

    model_config = ConfigDict(extra="forbid")

    x: float
    y: float
    z: float


class AcquisitionSidecar(BaseModel):
    """Contents of ``acquisition.json``.

    Attributes
    ----------
    format_version : int
        Version of this schema (1).
    axial_resolution_um : float, optional
        Voxel size along depth, micrometres.
    lateral_resolution_um : (float, float), optional
        Voxel size ``(y, x)`` in micrometres; required for TIFF tiles, and
        overrides ``height/ny`` and ``width/nx`` of native tiles.
    slice_thickness_um : float, optional
        Thickness of the vibratome cut, micrometres.
    tile_overlap : (float, float), optional
        Nominal overlap fraction ``(y, x)`` of neighbouring tiles, in [0, 1);
        gives the tile step of a grid with a single row or column.
    stage_positions_mm : dict, optional
        Motor position of each tile, keyed by tile name
        (``tile_x{X}_y{Y}_z{Z}``).
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = Field(1, ge=1, le=1)
    axial_resolution_um: float | None = Field(None, gt=0)
    lateral_resolution_um: tuple[PositiveFloat, PositiveFloat] | None = None
    slice_thickness_um: float | None = Field(None, gt=0)
    tile_overlap: tuple[Fraction, Fraction] | None = None
    stage_positions_mm: dict[str, StagePosition] = Field(default_factory=dict)


def first_error(path: Path, error: ValidationError) -> InputError:
    """Turn a pydantic error into a one-line InputError naming the file and field."""
    detail = error.errors()[0]
    field = ".".join(str(part) for part in detail["loc"]) or "(root)"
    if detail["type"] == "missing":
        return InputError(f"{path}: field '{field}' is missing; add it")
    value = detail.get("input")
    return InputError(f"{path}: field '{field}' is invalid ({detail['msg']}, got {value!r}); fix it")


def read_sidecar(path: str | Path) -> AcquisitionSidecar:
    """Read and validate an ``acquisition.json``.

    Raises
    ------
    InputError
        If the file is not JSON or a field is missing or ill-typed; the
        message names the file and the field.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable JSON file ({error}); fix or remove it") from None
    try:
        return AcquisitionSidecar.model_validate(raw)
    except ValidationError as error:
        raise first_error(path, error) from None


def write_sidecar(sidecar: AcquisitionSidecar, path: str | Path) -> None:
    """Write ``sidecar`` as indented JSON with sorted keys (deterministic)."""
    data = sidecar.model_dump(exclude_none=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
