"""OME-NGFF metadata: one :class:`NgffFormat` per version, units, multiscales.

Version differences live here and nowhere else:

- :class:`FormatV04` -- NGFF 0.4 on Zarr v2: ``.zgroup``/``.zattrs`` at the
  root, ``.zarray`` per level, nested ``/`` chunk keys, the multiscales list
  directly in the root attributes.
- :class:`FormatV05` -- NGFF 0.5 on Zarr v3: ``zarr.json`` everywhere, the OME
  metadata under ``attributes["ome"]``, ``dimension_names`` on every array,
  optional sharding.

Both keep linumpy's own pipeline metadata in the root attribute ``linumpy``.
Scales and translations are written in micrometres; the Python API speaks
millimetres, and reading accepts micrometer / millimeter / nanometer (and
um / mm / nm).
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from linumpy.errors import InputError
from linumpy.io import codecs
from linumpy.io.options import NGFF_VERSIONS

if TYPE_CHECKING:  # zarr is imported when a group is created: scripts start fast
    import zarr

logger = logging.getLogger(__name__)

#: Millimetres per unit, for every spatial unit accepted on read.
MM_PER_UNIT = {
    "millimeter": 1.0,
    "mm": 1.0,
    "micrometer": 1e-3,
    "micron": 1e-3,
    "um": 1e-3,
    "µm": 1e-3,
    "nanometer": 1e-6,
    "nm": 1e-6,
}
#: The unit written in every file.
WRITTEN_UNIT = "micrometer"
SPATIAL_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}
_UM_DECIMALS = 9


def mm_per_unit(unit: str | None, path: str | Path) -> float:
    """Return how many millimetres one ``unit`` is.

    A missing unit is taken as micrometres (the NGFF convention) with a note.

    Raises
    ------
    InputError
        If the unit is not a length linumpy knows.
    """
    if unit is None:
        logger.info("%s: axis without unit, assuming micrometer", path)
        return MM_PER_UNIT[WRITTEN_UNIT]
    try:
        return MM_PER_UNIT[unit.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(MM_PER_UNIT))
        raise InputError(
            f"{path}: unknown axis unit {unit!r}; use one of {known} (rewrite the metadata)"
        ) from None


def to_micrometers(values_mm: Sequence[float]) -> list[float]:
    """Millimetres to micrometres, rounded so that 0.01 mm is written 10.0."""
    return [round(float(v) * 1000.0, _UM_DECIMALS) + 0.0 for v in values_mm]


def check_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` if linumpy stores it (integers, floats), else raise InputError."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as error:
        raise InputError(f"unknown dtype {dtype!r}: {error}") from None
    if dtype.kind not in "uif":
        raise InputError(f"cannot store dtype {dtype} in OME-Zarr; use an integer or float dtype")
    return dtype


@dataclass(frozen=True)
class LevelTransform:
    """One pyramid level: its array path and physical placement (millimetres)."""

    path: str
    scale_mm: tuple[float, ...]
    translation_mm: tuple[float, ...]

    def as_ngff(self) -> dict[str, Any]:
        """The ``datasets`` entry of this level (scale and translation in um)."""
        return {
            "path": self.path,
            "coordinateTransformations": [
                {"type": "scale", "scale": to_micrometers(self.scale_mm)},
                {"type": "translation", "translation": to_micrometers(self.translation_mm)},
            ],
        }


def multiscale(
    name: str,
    levels: Sequence[LevelTransform],
    method: str,
    method_metadata: dict[str, Any],
) -> dict[str, Any]:
    """Build one ``multiscales`` entry (without a version key).

    Parameters
    ----------
    name : str
        Image name, the file stem (``mosaic_grid_3d_z00``).
    levels : sequence of LevelTransform
        Level 0 first.
    method : str
        Downsampling type (``"mean"``, ``"area"``).
    method_metadata : dict
        Parameters of the downsampling (JSON-able, deterministic).
    """
    axis_names = SPATIAL_AXES[len(levels[0].scale_mm)]
    return {
        "name": name,
        "axes": [{"name": a, "type": "space", "unit": WRITTEN_UNIT} for a in axis_names],
        "datasets": [level.as_ngff() for level in levels],
        "type": method,
        "metadata": method_metadata,
    }


def omero_window(sample: np.ndarray, dtype: np.dtype, name: str) -> dict[str, Any] | None:
    """An ``omero`` block whose window spans the 0.5-99.5 percentiles of ``sample``.

    ``sample`` should be small (the coarsest pyramid level). Returns ``None``
    when it holds no finite value.
    """
    values = np.asarray(sample, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    start, end = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        low, high = float(info.min), float(info.max)
    else:
        low, high = float(values.min()), float(values.max())
    return {
        "channels": [
            {
                "label": name,
                "color": "FFFFFF",
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"min": low, "max": high, "start": start, "end": max(end, start)},
            }
        ],
        "rdefs": {"model": "greyscale"},
    }


class NgffFormat(ABC):
    """What differs between NGFF versions: files, attribute layout, arrays."""

    version: str
    zarr_format: int
    #: The group's metadata documents (rewritten with its attributes).
    group_documents: tuple[str, ...]

    @abstractmethod
    def ome_attributes(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """Return the OME part of a root attribute dict as read from disk."""

    @abstractmethod
    def root_attributes(
        self, multiscale_entry: dict[str, Any], omero: dict[str, Any] | None, linumpy_attrs: dict[str, Any]
    ) -> dict[str, Any]:
        """Return the root attributes to write."""

    @abstractmethod
    def array_options(
        self, shape: Sequence[int], chunks: Sequence[int], compression: str, shards: Sequence[int] | None,
        itemsize: int = 4,
    ) -> dict[str, Any]:
        """Keyword arguments of :func:`zarr.create_array` for this version (``itemsize``: bytes per value,
        :func:`linumpy.io.codecs.v2_compressor`)."""

    @abstractmethod
    def chunk_key(self, index: Sequence[int]) -> str:
        """Relative path of chunk ``index`` inside its array directory."""

    def create_group(self, path: Path) -> zarr.Group:
        """Create an empty Zarr group of this version at ``path``."""
        import zarr

        return zarr.open_group(str(path), mode="w", zarr_format=self.zarr_format)

    def create_array(
        self,
        group: zarr.Group,
        name: str,
        shape: Sequence[int],
        chunks: Sequence[int],
        dtype: np.dtype,
        compression: str,
        shards: Sequence[int] | None = None,
    ) -> zarr.Array:
        """Create one level array (filled with zeros) in ``group``."""
        return group.create_array(
            name=name,
            shape=tuple(shape),
            chunks=tuple(chunks),
            dtype=dtype,
            fill_value=0,
            **self.array_options(shape, chunks, compression, shards, np.dtype(dtype).itemsize),
        )


class FormatV04(NgffFormat):
    """NGFF 0.4 on Zarr v2 with nested ``/`` chunk keys (the default)."""

    version = "0.4"
    zarr_format = 2
    group_documents = (".zgroup", ".zattrs")

    def ome_attributes(self, attributes):
        return attributes

    def root_attributes(self, multiscale_entry, omero, linumpy_attrs):
        attributes: dict[str, Any] = {"multiscales": [{"version": self.version, **multiscale_entry}]}
        if omero is not None:
            attributes["omero"] = {"version": self.version, **omero}
        attributes["linumpy"] = linumpy_attrs
        return attributes

    def chunk_key(self, index):
        return "/".join(str(i) for i in index)

    def array_options(self, shape, chunks, compression, shards, itemsize=4):
        if shards is not None:
            raise InputError("sharding needs Zarr v3: pass ngff_version='0.5' (scripts: --ngff_version 0.5)")
        return {
            "compressors": codecs.v2_compressor(compression, itemsize),
            "chunk_key_encoding": {"name": "v2", "separator": "/"},
        }


class FormatV05(NgffFormat):
    """NGFF 0.5 on Zarr v3: ``zarr.json``, ``attributes.ome``, optional sharding."""

    version = "0.5"
    zarr_format = 3
    group_documents = ("zarr.json",)

    def ome_attributes(self, attributes):
        return attributes.get("ome", attributes)

    def root_attributes(self, multiscale_entry, omero, linumpy_attrs):
        ome: dict[str, Any] = {"version": self.version, "multiscales": [multiscale_entry]}
        if omero is not None:
            ome["omero"] = omero
        return {"ome": ome, "linumpy": linumpy_attrs}

    def chunk_key(self, index):
        return "/".join(["c", *(str(i) for i in index)])

    def array_options(self, shape, chunks, compression, shards, itemsize=4):
        return {
            "compressors": codecs.v3_compressors(compression, itemsize),
            "dimension_names": SPATIAL_AXES[len(shape)],
            "shards": None if shards is None else level_shards(shards, chunks, shape),
        }


FORMATS: dict[str, NgffFormat] = {f.version: f for f in (FormatV04(), FormatV05())}


def format_for_version(version: str) -> NgffFormat:
    """Return the format class instance of an NGFF version (``"0.4"`` or ``"0.5"``)."""
    try:
        return FORMATS[str(version)]
    except KeyError:
        raise InputError(f"unsupported NGFF version {version!r}; use one of {', '.join(NGFF_VERSIONS)}") from None


def level_chunks(chunks: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """Chunk shape of a level: the requested chunks capped by the level's shape."""
    return tuple(max(1, min(int(c), int(n))) for c, n in zip(chunks, shape))


def level_shards(shards: Sequence[int], chunks: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """Shard shape of a level: a whole number of chunks, no larger than needed.

    An axis held by a single chunk gets a single-chunk shard.
    """
    if len(shards) != len(chunks):
        raise InputError(f"shards {tuple(shards)} need one value per axis of chunks {tuple(chunks)}")
    result = []
    for s, c, n in zip(shards, chunks, shape):
        if c >= n:
            result.append(int(c))
            continue
        if s < c or s % c:
            raise InputError(f"shard shape {tuple(shards)} must be a multiple of the chunk shape {tuple(chunks)}")
        result.append(min(int(s), math.ceil(n / c) * c))
    return tuple(result)


# --- reading -----------------------------------------------------------------


@dataclass(frozen=True)
class ParsedImage:
    """The metadata of an OME-Zarr image as found on disk (units converted to mm)."""

    path: Path
    format: NgffFormat
    version: str
    name: str
    axes: tuple[dict[str, Any], ...]
    levels: tuple[LevelTransform, ...]
    method: str | None
    method_metadata: dict[str, Any]
    linumpy_attrs: dict[str, Any]
    omero: dict[str, Any] | None

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        """Positions of the spatial axes among all axes of the stored arrays."""
        return tuple(i for i, axis in enumerate(self.axes) if axis.get("type", "space") == "space")


def read_json_object(path: Path) -> dict[str, Any]:
    """Return the JSON object stored in ``path``; InputError naming the file otherwise."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable metadata ({error}); the file may be incomplete, rewrite it") from None
    return _expect(document, dict, path, "the document")


_KIND_NAMES = {dict: "an object", list: "a list", str: "a string"}


def _expect(value: Any, kind: type, path: Path, field_name: str) -> Any:
    """Return ``value`` if it is a ``kind`` (JSON object, list or string), else raise InputError."""
    if not isinstance(value, kind):
        raise InputError(
            f"{path}: metadata field '{field_name}' must be {_KIND_NAMES[kind]}, "
            f"found {type(value).__name__} {str(value)[:40]!r}; rewrite the metadata"
        )
    return value


def read_root_attributes(path: Path) -> tuple[NgffFormat, dict[str, Any]]:
    """Find the Zarr version of the group at ``path`` and return its attributes.

    Raises
    ------
    InputError
        If ``path`` is missing, or is not a Zarr group, or its metadata is not a JSON object.
    """
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path")
    if (path / "zarr.json").is_file():
        metadata = read_json_object(path / "zarr.json")
        if metadata.get("node_type") != "group":
            raise InputError(f"{path} is a Zarr array, not an OME-Zarr image group; pass the .ome.zarr directory")
        return FORMATS["0.5"], _expect(metadata.get("attributes", {}), dict, path / "zarr.json", "attributes")
    if (path / ".zattrs").is_file():
        return FORMATS["0.4"], read_json_object(path / ".zattrs")
    if (path / ".zgroup").is_file() or (path / ".zarray").is_file():
        raise InputError(
            f"{path} has no .zattrs: not an OME-Zarr image (metadata missing, the write may have been cut short); rewrite it"
        )
    raise InputError(
        f"{path} has no .zattrs or zarr.json: not a Zarr/OME-Zarr directory; pass an .ome.zarr image"
    )


def _axes(entry: dict[str, Any], path: Path) -> tuple[dict[str, Any], ...]:
    axes = entry.get("axes")
    if not axes:
        raise InputError(f"{path}: multiscales has no axes; add them to its metadata (NGFF 0.4 or later)")
    _expect(axes, list, path, "multiscales[0].axes")
    axes = tuple({"name": a, "type": "space" if a in ("z", "y", "x") else "channel"} if isinstance(a, str) else a for a in axes)
    for i, axis in enumerate(axes):
        _expect(axis, dict, path, f"multiscales[0].axes[{i}]")
        if axis.get("unit") is not None:
            _expect(axis["unit"], str, path, f"multiscales[0].axes[{i}].unit")
    names = tuple(a.get("name") for a in axes if a.get("type", "space") == "space")
    if names not in SPATIAL_AXES.values():
        raise InputError(
            f"{path}: spatial axes {list(names)} are not (z, y, x) or (y, x); linumpy reads 3D zyx or 2D yx images only"
        )
    return axes


def _vector(values: Any, n_axes: int, path: Path, field_name: str) -> np.ndarray:
    """``values`` as ``n_axes`` finite floats, else InputError naming the field."""
    try:
        vector = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        vector = None
    if vector is None or vector.shape != (n_axes,) or not np.isfinite(vector).all():
        raise InputError(
            f"{path}: metadata field '{field_name}' must list {n_axes} finite numbers (one per axis), "
            f"found {str(values)[:40]!r}; rewrite the metadata"
        )
    return vector


def _transforms(transforms: Any, n_axes: int, path: Path, field_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Combined scale and translation of a ``coordinateTransformations`` list."""
    scale, translation = np.ones(n_axes), np.zeros(n_axes)
    for i, transform in enumerate(_expect(transforms or [], list, path, field_name)):
        where = f"{field_name}[{i}]"
        kind = _expect(transform, dict, path, where).get("type")
        if kind == "scale":
            values = _vector(transform.get("scale"), n_axes, path, f"{where}.scale")
            if (values <= 0).any():
                raise InputError(f"{path}: metadata field '{where}.scale' must be positive, found {values.tolist()}")
            scale = scale * values
        elif kind == "translation":
            translation = translation + _vector(transform.get("translation"), n_axes, path, f"{where}.translation")
    return scale, translation


def _check_inside(root: Path, resolved_root: Path, relative: str, field: str) -> None:
    """Refuse a path from the metadata that leads outside the image (absolute, ``..``, a symlink out).

    ``resolved_root``: ``root.resolve()``, resolved once for all of an image's levels.
    """
    target = (root / relative).resolve()
    if Path(relative).is_absolute() or not target.is_relative_to(resolved_root) or target == resolved_root:
        raise InputError(f"{root}: metadata field '{field}' is {relative!r}, outside the image; "
                         "a level must be an array inside the image folder; rewrite the metadata")


def parse_image(path: str | Path) -> ParsedImage:
    """Read and check the OME metadata of the image at ``path``.

    Raises
    ------
    InputError
        Missing metadata, not an OME-Zarr image, unsupported axes or units.
    """
    path = Path(path)
    fmt, attributes = read_root_attributes(path)
    ome = _expect(fmt.ome_attributes(attributes), dict, path, "ome")
    entries = ome.get("multiscales")
    if not entries:
        raise InputError(f"{path} is not an OME-Zarr image: no 'multiscales' in its attributes")
    entry = _expect(_expect(entries, list, path, "multiscales")[0], dict, path, "multiscales[0]")
    axes = _axes(entry, path)
    spatial = [i for i, a in enumerate(axes) if a.get("type", "space") == "space"]
    to_mm = np.array([mm_per_unit(axes[i].get("unit"), path) for i in spatial])
    global_scale, global_shift = _transforms(
        entry.get("coordinateTransformations"), len(axes), path, "multiscales[0].coordinateTransformations"
    )
    levels = []
    resolved = path.resolve()
    for i, dataset in enumerate(_expect(entry.get("datasets") or [], list, path, "multiscales[0].datasets")):
        where = f"multiscales[0].datasets[{i}]"
        _expect(dataset, dict, path, where)
        level_path = dataset.get("path")
        if not isinstance(level_path, (str, int)) or isinstance(level_path, bool):
            raise InputError(f"{path}: metadata field '{where}.path' must name the level's array; rewrite the metadata")
        _check_inside(path, resolved, str(level_path), f"{where}.path")
        scale, translation = _transforms(
            dataset.get("coordinateTransformations"), len(axes), path, f"{where}.coordinateTransformations"
        )
        scale, translation = scale * global_scale, translation * global_scale + global_shift
        levels.append(
            LevelTransform(
                path=str(level_path),
                scale_mm=tuple(float(v) for v in scale[spatial] * to_mm),
                translation_mm=tuple(float(v) for v in translation[spatial] * to_mm),
            )
        )
    if not levels:
        raise InputError(f"{path}: multiscales lists no datasets; rewrite the file")
    version = str(ome.get("version", entry.get("version", fmt.version)))
    return ParsedImage(
        path=path,
        format=fmt,
        version=version,
        name=str(entry.get("name", path.name)),
        axes=axes,
        levels=tuple(levels),
        method=entry.get("type"),
        method_metadata=dict(_expect(entry.get("metadata") or {}, dict, path, "multiscales[0].metadata")),
        linumpy_attrs=dict(_expect(attributes.get("linumpy", {}), dict, path, "linumpy")),
        omero=None if ome.get("omero") is None else _expect(ome["omero"], dict, path, "omero"),
    )
