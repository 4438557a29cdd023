"""Per-slice motor positions table (CSV).

One row per slice, columns ``slice_id,x_mm,y_mm,z_mm,n_tiles``: the stage
position of the slice's tile (0, 0) (see
:attr:`linumpy.io.acquisition.SliceAcquisition.stage_position_mm`) and the
number of tiles acquired. Rows are sorted by slice id.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from linumpy.errors import InputError
from linumpy.io.atomic import atomic_output

COLUMNS = ("slice_id", "x_mm", "y_mm", "z_mm", "n_tiles")


@dataclass(frozen=True)
class MotorPosition:
    """Stage position of one slice (tile (0, 0)), millimetres."""

    slice_id: int
    x_mm: float
    y_mm: float
    z_mm: float
    n_tiles: int


def write_motor_positions(rows: list[MotorPosition], path: str | Path, overwrite: bool = False) -> None:
    """Write the table atomically, sorted by slice id.

    Examples
    --------
    >>> write_motor_positions([MotorPosition(0, 1.0, 2.0, 3.0, 4)], "m.csv")  # doctest: +SKIP
    """
    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in sorted(rows, key=lambda r: r.slice_id):
                coordinates = (repr(float(value)) for value in (row.x_mm, row.y_mm, row.z_mm))
                writer.writerow([int(row.slice_id), *coordinates, int(row.n_tiles)])


def read_motor_positions(path: str | Path) -> dict[int, MotorPosition]:
    """Read the table into ``{slice_id: MotorPosition}``.

    Raises
    ------
    InputError
        If the file is missing, lacks a column, or a value does not parse
        (the message names the file, the line and the column).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError:
        raise InputError(f"{path}: missing; create it with linum_collect_motor_positions.py") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: column(s) {', '.join(missing)} missing; expected {','.join(COLUMNS)}")
    table = {}
    for line, record in enumerate(reader, start=2):
        try:
            row = MotorPosition(
                int(record["slice_id"]), float(record["x_mm"]), float(record["y_mm"]),
                float(record["z_mm"]), int(record["n_tiles"]),
            )
        except (TypeError, ValueError):
            raise InputError(f"{path}: line {line} has a value that is not a number: {record}") from None
        if row.slice_id in table:
            raise InputError(f"{path}: line {line}: slice {row.slice_id} appears twice")
        table[row.slice_id] = row
    return table


def collect_motor_positions(acquisition, slice_ids: list[int] | None = None) -> list[MotorPosition]:
    """One :class:`MotorPosition` per slice of an opened acquisition.

    Parameters
    ----------
    acquisition : linumpy.io.acquisition.Acquisition
    slice_ids : list of int, optional
        Slices to include (default: all); an unknown id raises InputError.
    """
    rows = []
    for slice_id in acquisition.slice_ids if slice_ids is None else slice_ids:
        section = acquisition.slice(slice_id)
        position = section.stage_position_mm
        rows.append(MotorPosition(slice_id, position["x"], position["y"], position["z"], len(section.tiles)))
    return rows
