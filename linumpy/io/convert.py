"""Conversions between TIFF stacks and OME-Zarr, and OME-Zarr re-encoding.

TIFF is read lazily through tifffile's Zarr interface and written plane by
plane, so neither direction loads the whole volume. TIFF voxel sizes come from
ImageJ metadata (``spacing``, ``XResolution``/``YResolution`` in microns) or
from an explicit resolution.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
import zarr

from linumpy.errors import InputError
from linumpy.io import atomic, codecs
from linumpy.io.zarr import DEFAULT_N_LEVELS, read_omezarr, read_omezarr_info, reencode_omezarr, save_omezarr

TIFF_SUFFIXES = (".tif", ".tiff")
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
_MICRON_UNITS = ("um", "micron", "microns", "µm", "\\u00B5m", "micrometer")


def is_tiff(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a TIFF file (by its suffix)."""
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def expand_resolution_um(values: Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    """One value (isotropic) or one per axis, in micrometres, to millimetres per axis."""
    if values is None:
        return None
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        values = values * ndim
    if len(values) != ndim or min(values) <= 0:
        raise InputError(f"--voxel_size_um needs 1 or {ndim} positive values in micrometres, got {values}")
    return tuple(v / 1000.0 for v in values)


def tiff_resolution_mm(tiff: tifffile.TiffFile) -> tuple[float, ...] | None:
    """Voxel size stored in an ImageJ TIFF, millimetres, or None if absent."""
    metadata = tiff.imagej_metadata or {}
    page = tiff.pages[0]
    if str(metadata.get("unit", "")).lower() not in _MICRON_UNITS or "XResolution" not in page.tags:
        return None
    numerator, denominator = page.tags["XResolution"].value
    numerator_y, denominator_y = page.tags["YResolution"].value
    lateral = (denominator / numerator / 1000.0, denominator_y / numerator_y / 1000.0)
    ndim = len(tiff.series[0].shape)
    if ndim == 2:
        return (lateral[1], lateral[0])
    return (float(metadata.get("spacing", 1.0)) / 1000.0, lateral[1], lateral[0])


def read_tiff(path: str | os.PathLike) -> tuple[da.Array, tuple[float, ...] | None]:
    """Open a 2D or 3D TIFF lazily; return it and its voxel size (mm) if stored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; check the path")
    try:
        with tifffile.TiffFile(path) as tiff:
            resolution = tiff_resolution_mm(tiff)
    except (tifffile.TiffFileError, ValueError) as error:
        raise InputError(f"{path} is not a readable TIFF ({error})") from None
    array = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    data = da.from_array(array, chunks=array.chunks, name=False, lock=False)
    if data.ndim not in (2, 3):
        raise InputError(f"{path} has shape {data.shape}; convert 3D (z, y, x) or 2D (y, x) TIFFs only")
    return data, resolution


def tiff_to_omezarr(
    source: str | os.PathLike, path: str | os.PathLike, resolution_mm: Sequence[float] | None = None, **options: Any
) -> None:
    """Write a TIFF stack as an OME-Zarr image with its pyramid.

    Parameters
    ----------
    source, path : path-like
        Input TIFF and output ``.ome.zarr``.
    resolution_mm : sequence of float, optional
        Voxel size; default: the TIFF's ImageJ metadata.
    **options
        ``chunks``, ``n_levels``, ``compression``, ``overwrite``,
        ``ngff_version``, ``shards`` of :func:`~linumpy.io.zarr.save_omezarr`.
    """
    data, stored = read_tiff(source)
    resolution = resolution_mm or stored
    if resolution is None:
        raise InputError(f"{source} stores no voxel size (ImageJ metadata in microns); pass --voxel_size_um UM")
    save_omezarr(data, path, resolution, **options)


def _planes(data: da.Array) -> Iterator[np.ndarray]:
    """Yield the z planes of a 3D array, one storage slab computed at a time."""
    step = data.chunks[0][0]
    for z0 in range(0, data.shape[0], step):
        yield from data[z0 : z0 + step].compute(scheduler="threads")


def omezarr_to_tiff(source: str | os.PathLike, path: str | os.PathLike, level: int = 0, overwrite: bool = False) -> None:
    """Write one level of an OME-Zarr image as an (ImageJ when possible) TIFF, plane by plane."""
    data, resolution = read_omezarr(source, level)
    um = [r * 1000.0 for r in resolution]
    imagej = data.dtype in _IMAGEJ_DTYPES
    metadata = {"axes": "ZYX"[-data.ndim :]}
    if imagej:
        metadata.update(unit="um", **({"spacing": um[0]} if data.ndim == 3 else {}))
    with atomic.atomic_output(path, overwrite) as temporary:
        tifffile.imwrite(
            temporary,
            data=_planes(data) if data.ndim == 3 else data.compute(),
            shape=data.shape,
            dtype=data.dtype,
            imagej=imagej,
            bigtiff=data.nbytes > 2**31 and not imagej,
            resolution=(1.0 / um[-1], 1.0 / um[-2]),
            metadata=metadata,
        )


def convert(
    source: str | os.PathLike,
    path: str | os.PathLike,
    resolution_um: Sequence[float] | None = None,
    chunks: Sequence[int] | None = None,
    compression: str = codecs.DEFAULT_COMPRESSION,
    n_levels: int | None = None,
    ngff_version: str = "0.4",
    shards: Sequence[int] | None = None,
    overwrite: bool = False,
) -> None:
    """Convert TIFF -> OME-Zarr, OME-Zarr -> TIFF, or re-encode OME-Zarr -> OME-Zarr.

    Re-encoding copies every level as it is, unless ``n_levels`` is given:
    then the 2x lateral pyramid is rebuilt from level 0.
    """
    source, path = Path(source), Path(path)
    if is_tiff(path):
        if is_tiff(source):
            raise InputError(f"{source}: TIFF to TIFF is not a conversion; write an .ome.zarr instead")
        omezarr_to_tiff(source, path, overwrite=overwrite)
        return
    options = dict(chunks=chunks, compression=compression, overwrite=overwrite, ngff_version=ngff_version, shards=shards)
    if is_tiff(source):
        data, _ = read_tiff(source)
        tiff_to_omezarr(
            source, path, expand_resolution_um(resolution_um, data.ndim),
            n_levels=DEFAULT_N_LEVELS if n_levels is None else n_levels, **options,
        )
        return
    if n_levels is None:
        data, _ = read_omezarr(source)
        reencode_omezarr(source, path, resolution=expand_resolution_um(resolution_um, data.ndim), **options)
        return
    data, stored = read_omezarr(source)
    resolution = expand_resolution_um(resolution_um, data.ndim) or stored
    attributes = read_omezarr_info(source).attributes
    save_omezarr(data, path, resolution, n_levels=n_levels, attributes=attributes, **options)
