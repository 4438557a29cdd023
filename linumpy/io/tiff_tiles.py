"""Generic 3D TIFF tiles: ``tile_x{X}_y{Y}_z{Z}.tif``, one ``(z, y, x)`` stack each.

For microscopes other than the lab's; the metadata (resolution, overlap,
stage positions) lives in ``acquisition.json`` (:mod:`linumpy.io.sidecar`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from linumpy.errors import InputError
from linumpy.io.atomic import naming_file

TIFF_SUFFIX = ".tif"


def tiff_tile_shape(path: str | Path) -> tuple[int, int, int]:
    """Return the ``(z, y, x)`` shape of a TIFF tile without reading its pixels.

    Raises
    ------
    InputError
        If the file is not a readable TIFF, not a 3D stack, or not of a real
        (integer or float) dtype: complex tiles are refused, not truncated.
    """
    import tifffile  # here, not at module level: native acquisitions never load it

    try:
        with tifffile.TiffFile(path) as tif:
            shape, dtype = tuple(tif.series[0].shape), np.dtype(tif.series[0].dtype)
    except (OSError, tifffile.TiffFileError, IndexError) as error:
        raise InputError(f"{path}: not a readable TIFF ({error}); replace the file") from None
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D (z, y, x) stack, found shape {shape}")
    if dtype.kind not in "uif":
        raise InputError(
            f"{path}: dtype {dtype} is not a real intensity; convert the tile to an integer or float type"
        )
    return shape


def read_tiff_tile(path: str | Path) -> np.ndarray:
    """Read a TIFF tile as float32 ``(z, y, x)``.

    Raises
    ------
    InputError
        If the file is not a readable 3D TIFF.
    """
    import tifffile

    tiff_tile_shape(path)
    return tifffile.imread(path).astype(np.float32, copy=False)


def write_tiff_tile(path: str | Path, volume: np.ndarray) -> None:
    """Write a float32 ``(z, y, x)`` tile (no timestamp: same data, same bytes)."""
    import tifffile

    with naming_file(path):
        tifffile.imwrite(path, np.asarray(volume, np.float32), photometric="minisblack", metadata=None)
