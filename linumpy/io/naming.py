"""File names of the pipeline's products.

Slice ids are printed with at least two digits (``z00``, ``z07``) and as many
as they need beyond that (``z100``), so brains of more than 100 slices never
collide and names still sort as the original tool wrote them.
"""

from __future__ import annotations

import re

SLICE_STEPS = ("stitch_3d", "axial_corr", "normalize")
_SLICE_ID = re.compile(r"_z(\d{2,})(?=[_.]|$)")


def slice_tag(slice_id: int) -> str:
    """Return ``zNN`` for a slice id (two digits or more).

    Examples
    --------
    >>> slice_tag(3), slice_tag(100)
    ('z03', 'z100')
    """
    if slice_id < 0:
        raise ValueError(f"slice id must be >= 0, got {slice_id}")
    return f"z{slice_id:02d}"


def mosaic_grid_name(slice_id: int, dims: int = 3) -> str:
    """Return ``mosaic_grid_3d_zNN.ome.zarr`` (or the 2D AIP's name)."""
    return f"mosaic_grid_{dims}d_{slice_tag(slice_id)}.ome.zarr"


def slice_step_name(slice_id: int, step: str) -> str:
    """Return ``slice_zNN_<step>.ome.zarr`` for one of :data:`SLICE_STEPS`."""
    if step not in SLICE_STEPS:
        raise ValueError(f"unknown step {step!r}; expected one of {SLICE_STEPS}")
    return f"slice_{slice_tag(slice_id)}_{step}.ome.zarr"


def parse_slice_id(name: str) -> int:
    """Return the slice id written in a product's file name.

    Examples
    --------
    >>> parse_slice_id("slice_z103_normalize.ome.zarr")
    103
    """
    match = _SLICE_ID.search(name)
    if match is None:
        raise ValueError(f"no slice id (_zNN) in file name {name!r}")
    return int(match.group(1))
