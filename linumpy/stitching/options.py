"""Choices and defaults of the stitching step's parameters, and the index of a tile.

Kept free of heavy imports so that a script can build its parser without
loading numpy, scipy or dask, and the stitch can read its tiles while the
registration's modules (scipy) are imported.
"""

#: ``(row, col)`` of a tile in the mosaic grid.
TileIndex = tuple[int, int]

BLEND_MODES = ("feather", "average", "max")
#: Default largest correction of the nominal offset, pixels (stage uncertainty).
DEFAULT_MAX_SHIFT_PX = 20.0
#: Flat field divided out of the tiles at fusion: ``none``, or ``auto`` (when well supported).
FLATFIELD_MODES = ("none", "auto")
DEFAULT_FLATFIELD = "auto"
