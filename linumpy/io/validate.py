"""Describe an OME-Zarr image and check it against the NGFF models.

Validation uses ``ome-zarr-models`` (the pydantic models of the NGFF
specification) when it is installed; it is part of linumpy's ``test`` extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from linumpy.io.zarr import OmeZarrInfo, read_omezarr_info


def validate_omezarr(path: str | os.PathLike) -> tuple[bool | None, str]:
    """Validate an image with ome-zarr-models.

    Returns
    -------
    valid : bool or None
        ``None`` when ome-zarr-models is not installed.
    message : str
        What was validated, or the first lines of the validation error.
    """
    try:
        import ome_zarr_models
    except ImportError:
        return None, "ome-zarr-models not installed (pip install ome-zarr-models)"
    try:
        model = ome_zarr_models.open_ome_zarr(str(path))
    except Exception as error:  # the models raise several exception types
        detail = " ".join(str(error).split())
        return False, f"invalid: {detail[:300]}"
    return True, f"valid {type(model).__module__.split('.')[1]} {type(model).__name__} (ome-zarr-models {ome_zarr_models.__version__})"


def disk_usage(path: str | os.PathLike) -> int:
    """Total size in bytes of the files under ``path``."""
    return sum(entry.stat().st_size for entry in Path(path).rglob("*") if entry.is_file())


def describe_omezarr(path: str | os.PathLike, validate: bool = True) -> dict[str, Any]:
    """A JSON-able summary of an image: shape, dtype, chunks, levels (um), codec, size, validity."""
    info: OmeZarrInfo = read_omezarr_info(path)
    summary: dict[str, Any] = {
        "path": str(info.path),
        "name": info.name,
        "ngff_version": info.ngff_version,
        "zarr_format": info.zarr_format,
        "shape": list(info.shape),
        "dtype": str(info.dtype),
        "chunks": list(info.chunks),
        "codec": info.codec,
        "downsampling": info.downsampling,
        "levels": [
            {
                "path": level.path,
                "shape": list(level.shape),
                "chunks": list(level.chunks),
                "shards": None if level.shards is None else list(level.shards),
                "resolution_um": [round(s * 1000, 6) for s in level.scale_mm],
                "translation_um": [round(t * 1000, 6) for t in level.translation_mm],
            }
            for level in info.levels
        ],
        "size_bytes": disk_usage(info.path),
        "attributes": info.attributes,
    }
    if validate:
        summary["valid"], summary["validation"] = validate_omezarr(info.path)
    return summary


def _size(n_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{n_bytes} B"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of :func:`describe_omezarr`'s summary."""
    lines = [
        f"{summary['path']}",
        f"  NGFF {summary['ngff_version']} (Zarr v{summary['zarr_format']}), {summary['dtype']}, "
        f"codec {summary['codec']}, {_size(summary['size_bytes'])} on disk",
        f"  shape {tuple(summary['shape'])}, chunks {tuple(summary['chunks'])}",
        f"  levels ({summary['downsampling'] or 'unknown'} downsampling):",
    ]
    for level in summary["levels"]:
        shards = f", shards {tuple(level['shards'])}" if level["shards"] else ""
        resolution = " x ".join(f"{r:g}" for r in level["resolution_um"])
        lines.append(f"    {level['path']}: {tuple(level['shape'])} at {resolution} um{shards}")
    if "valid" in summary:
        lines.append(f"  validation: {summary['validation']}")
    if summary["attributes"]:
        lines.append(f"  linumpy attributes: {', '.join(sorted(summary['attributes']))}")
    return "\n".join(lines)
