"""Quality-control records written beside each step's output.

A step calls :func:`write_qc_record` once its output is complete. The record is
``<out stem>_qc.json`` (``<out stem>`` is the output path without
``.ome.zarr``), and each figure is ``<out stem>_qc_<name>.png`` next to it.
Both are written atomically and byte-for-byte deterministically (sorted keys,
no timestamps, PNG metadata stripped), so a rerun with the same input gives the
same files. ``bin/linum_report.py`` gathers the records into one HTML report.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from linumpy.errors import InputError
from linumpy.io.atomic import atomic_output
from linumpy.io.naming import parse_slice_id
from linumpy.qc.warning_log import logged_warnings

if TYPE_CHECKING:  # Pillow is imported when a figure is rendered: scripts start fast
    from PIL.Image import Image

#: Version of the record layout, stored in every record under ``"schema"``.
QC_SCHEMA = "linumpy-qc/1"
QC_SUFFIX = "_qc.json"
_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_ZARR_SUFFIX = ".ome.zarr"
#: The module that draws the figures (Pillow): the slice steps import it while their workers run
#: (:func:`linumpy.parallel.import_in_background`), not before.
FIGURES_MODULE = "linumpy.qc.figures"

#: A Pillow image, an image array or a figure already rendered (PNG bytes, :func:`render_png`) (a string:
#: Pillow is not imported here).
FigureLike: TypeAlias = "Image | np.ndarray | bytes"


def output_stem(output_path: str | os.PathLike) -> Path:
    """Return the output path without ``.ome.zarr`` (or its last suffix).

    Examples
    --------
    >>> output_stem("out/slice_z03_stitch_3d.ome.zarr").name
    'slice_z03_stitch_3d'
    >>> output_stem("out/shifts.json").name
    'shifts'
    """
    path = Path(output_path)
    if path.name.endswith(_ZARR_SUFFIX):
        return path.with_name(path.name[: -len(_ZARR_SUFFIX)])
    return path.with_suffix("")


def qc_record_path(output_path: str | os.PathLike) -> Path:
    """Return ``<out stem>_qc.json`` for a step's output path."""
    stem = output_stem(output_path)
    return stem.with_name(stem.name + QC_SUFFIX)


def qc_figure_path(output_path: str | os.PathLike, name: str) -> Path:
    """Return ``<out stem>_qc_<name>.png`` for a step's output path."""
    _check_figure_name(name)
    stem = output_stem(output_path)
    return stem.with_name(f"{stem.name}_qc_{name}.png")


def write_qc_record(
    output_path: str | os.PathLike,
    step: str,
    metrics: Mapping[str, Any],
    figures: Mapping[str, FigureLike] | None = None,
    flags: Sequence[str] | None = None,
) -> Path:
    """Write the QC record (and its figures) of one step's output.

    Scalar metrics (numbers, booleans, short strings) become the columns of
    the report's per-slice table; lists and dicts (per tile, per pair, per
    slice) are kept in the record and shown as details. Numpy scalars and
    arrays are converted to JSON; non-finite floats are stored as ``null``.
    An existing record of the same output is replaced, together with its
    figures: the record describes the output it sits beside.

    Parameters
    ----------
    output_path : path-like
        The step's output (it need not exist yet).
    step : str
        Name of the step, e.g. ``"stitch_3d"``.
    metrics : mapping
        Metric name to value; see ``docs/qc.md`` for the names the report
        knows how to flag.
    figures : mapping, optional
        Figure name (letters, digits, ``_``, ``-``) to a Pillow image
        (:mod:`linumpy.qc.figures`), an RGB(A)/grey image array (uint8, or
        float in [0, 1]) or a figure already rendered (PNG bytes).
    flags : sequence of str, optional
        Problems the step noticed itself, one short sentence each.

    The warnings the process logged so far (collected by
    :mod:`linumpy.qc.warning_log`, installed by every script) are stored
    under ``"warnings"``.

    Returns
    -------
    pathlib.Path
        Path of the JSON record.

    Examples
    --------
    >>> write_qc_record("out/slice_z03_stitch_3d.ome.zarr", "stitch_3d",
    ...                 {"confidence": 0.93})  # doctest: +SKIP
    PosixPath('out/slice_z03_stitch_3d_qc.json')
    """
    if not step or not isinstance(step, str):
        raise InputError(f"QC record of {output_path}: step must be a non-empty string")
    figures = dict(figures or {})
    for name in figures:
        _check_figure_name(name)
    record_path = qc_record_path(output_path)
    figure_files = {name: qc_figure_path(output_path, name) for name in sorted(figures)}
    _remove_stale_figures(output_path, set(figure_files.values()))
    for name, path in figure_files.items():
        png = render_png(figures[name])
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_bytes(png)
    record = {
        "schema": QC_SCHEMA,
        "step": step,
        "output": Path(output_path).name,
        "slice_id": _slice_id_or_none(Path(output_path).name),
        "metrics": to_json_value(dict(metrics), where=f"metrics of {record_path}"),
        "flags": [str(flag) for flag in (flags or [])],
        "warnings": logged_warnings(),
        "figures": {name: path.name for name, path in figure_files.items()},
    }
    with atomic_output(record_path, overwrite=True) as tmp:
        tmp.write_text(dump_json(record))
    return record_path


def read_qc_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check one ``*_qc.json`` record.

    Raises
    ------
    InputError
        If the file is not valid JSON or lacks the record's keys.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable QC record ({error}); rerun the step that wrote it")
    expected = {"step": str, "metrics": dict, "flags": list, "figures": dict, "warnings": list}
    record = record if isinstance(record, dict) else {}
    for key, empty in (("flags", []), ("figures", {}), ("warnings", [])):
        record.setdefault(key, empty)
    wrong = [key for key, kind in expected.items() if not isinstance(record.get(key), kind)]
    if wrong:
        raise InputError(f"{path}: not a QC record (missing or ill-typed {', '.join(wrong)}); "
                         "remove it or rerun the step")
    slice_id = record.get("slice_id")
    record["slice_id"] = slice_id if isinstance(slice_id, int) else _slice_id_or_none(path.name)
    return record


def dump_json(value: Any) -> str:
    """Serialise to JSON deterministically: sorted keys, fixed indent, strict floats."""
    return json.dumps(value, sort_keys=True, indent=2, allow_nan=False) + "\n"


def to_json_value(value: Any, where: str = "QC metrics") -> Any:
    """Convert numpy values (recursively) to plain JSON types.

    Non-finite floats become ``None``; tuples and arrays become lists; dict
    keys become strings.

    Examples
    --------
    >>> to_json_value({"a": np.float32(0.5), 1: np.array([1, 2])})
    {'a': 0.5, '1': [1, 2]}
    """
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item, where) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist(), where)
    if isinstance(value, (list, tuple)):
        return [to_json_value(item, where) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise InputError(f"{where}: {type(value).__name__} value {value!r} cannot be stored in JSON")


def render_png(figure: FigureLike) -> bytes:
    """Render a Pillow image or an image array to deterministic PNG bytes (PNG bytes are returned as they are).

    The PNG is written without metadata, so the bytes depend only on the
    content (and on Pillow's encoder). A grey array is written as RGB.
    """
    if isinstance(figure, bytes):
        return figure
    from PIL import Image

    if not isinstance(figure, Image.Image):
        image = np.asarray(figure)
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise InputError(f"QC figure must be a 2D grey or RGB(A) image, got shape {image.shape}")
        if image.dtype != np.uint8:
            image = (np.clip(np.nan_to_num(image.astype(np.float64)), 0, 1) * 255).round().astype(np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        figure = Image.fromarray(image)
    buffer = io.BytesIO()
    figure.save(buffer, format="png")
    return buffer.getvalue()


def _check_figure_name(name: str) -> None:
    if not isinstance(name, str) or not _FIGURE_NAME.match(name):
        raise InputError(
            f"QC figure name {name!r}: use letters, digits, '_' or '-' (it becomes part of a file name)"
        )


def _remove_stale_figures(output_path: str | os.PathLike, keep: set[Path]) -> None:
    stem = output_stem(output_path)
    if not stem.parent.is_dir():
        return
    for path in stem.parent.glob(f"{glob.escape(stem.name)}_qc_*.png"):
        if path not in keep and _FIGURE_NAME.match(path.name[len(stem.name) + 4 : -4]):
            path.unlink()


def _slice_id_or_none(name: str) -> int | None:
    try:
        return parse_slice_id(name)
    except ValueError:
        return None
