"""One self-contained HTML page summarising a run for the people who read it.

:func:`collect_qc` gathers the ``*_qc.json`` records, their figures, the
screenshots, the run's trace (``pipeline_info/trace.txt``) and the disk used
under a results directory; :func:`render_report` turns them into one HTML
file: a summary (what was reconstructed, its size and resolution, the run's
time, the red flags each with what to do, the warnings the steps logged),
one compact row per slice with a thumbnail and a few plain-language columns
with units, a slice-to-slice continuity plot, every record's metrics and
figures folded per slice, the run's resources and disk footprint, and a
glossary of every metric shown. Images are embedded as small WebP data URIs,
CSS is inline and a Content Security Policy forbids any external resource.
Everything that comes from a record is escaped; figures are read only from
the record's own folder. Same inputs give the same bytes.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from linumpy.errors import InputError
from linumpy.io.atomic import TEMP_MARKER, atomic_output
from linumpy.io.naming import SLICE_STEPS, parse_slice_id
from linumpy.pipeline.trace import TaskTrace, format_duration, format_memory, read_trace
from linumpy.qc.embed import THUMBNAIL_HEIGHT, RefusedImage, image_data_uri, read_figure, read_image
from linumpy.qc.figures import continuity_figure
from linumpy.qc.flags import (
    RedFlag,
    acquisition_flags,
    acquisition_warnings,
    open_loop_warnings,
    record_flags,
    slice_reasons,
)
from linumpy.qc.footprint import folder_sizes, human_bytes
from linumpy.qc.glossary import advice, describe, step_label
from linumpy.qc.records import QC_SUFFIX, read_qc_record, render_png

#: Order of the steps; other steps follow alphabetically.
STEP_ORDER = ("mosaic_grid_3d", *SLICE_STEPS, "stack")
#: Longest JSON text shown for the non-scalar metrics of one record.
MAX_DETAILS_CHARS = 20_000
#: The slice table's columns: (step, metric), shown when some record has them.
HEADLINE_METRICS = (
    ("normalize", "tissue_fraction"),
    ("stitch_3d", "confidence"),
    ("stitch_3d", "n_fallback_pairs"),
    ("axial_corr", "surface_detected_fraction"),
    ("stack", "shift_um"),
    ("stack", "overlap_ncc"),
)
#: Where the run's trace lies under the results directory (both orchestrators).
TRACE_FILE = "pipeline_info/trace.txt"
#: A results folder named ``<folder>`` + this suffix holds records that the records of the same file name in
#: ``<folder>`` replace (``axial_corr_refused/``: a slice's first axial correction, its own focus estimate refused;
#: ``axial_corr/`` holds the one with the acquisition's focus profile).
REPLACED_FOLDER_SUFFIX = "_refused"
#: Top-level folder holding a simulated raw acquisition.
RAW_FOLDER = "acquisition"


@dataclass
class QcEntry:
    """One record as found on disk, with its figures' image bytes."""

    path: str
    record: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    replaced_by: str | None = None

    @property
    def step(self) -> str:
        return str(self.record["step"])

    @property
    def slice_id(self) -> int | None:
        return self.record.get("slice_id")

    @property
    def warnings(self) -> list[str]:
        return [str(w) for w in self.record.get("warnings", [])]


@dataclass
class VolumeSummary:
    """The final volume: level-0 shape (z, y, x) and voxel size (um), and every level's voxel size."""

    name: str
    shape: tuple[int, ...]
    voxel_um: tuple[float, ...]
    level_um: list[float]


@dataclass
class QcCollection:
    """Everything the report shows, gathered from one results directory."""

    entries: list[QcEntry]
    other_images: dict[str, bytes]
    flags: list[RedFlag]
    volume: VolumeSummary | None = None
    trace: list[TaskTrace] = field(default_factory=list)
    footprint: dict[str, int] = field(default_factory=dict)
    notices: list[RedFlag] = field(default_factory=list)

    @property
    def slice_ids(self) -> list[int]:
        ids = {entry.slice_id for entry in self.entries} | {flag.slice_id for flag in self.flags}
        ids |= {_slice_id_of(name) for name in self.other_images}
        return sorted(i for i in ids if i is not None)

    @property
    def warnings(self) -> list[RedFlag]:
        """Warnings the steps logged, as (slice, step, message), of the records no later record replaces, and
        the ``notices`` drawn from the records (:func:`~linumpy.qc.flags.acquisition_warnings`,
        :func:`~linumpy.qc.flags.open_loop_warnings`)."""
        found = {RedFlag(e.slice_id, e.step, w) for e in self.entries if e.replaced_by is None for w in e.warnings}
        return sorted(found | set(self.notices), key=_flag_order)

    def slice_images(self, slice_id: int | None) -> dict[str, bytes]:
        """Images no record names (e.g. screenshots) whose file name carries ``slice_id``."""
        return {name: png for name, png in self.other_images.items() if _slice_id_of(name) == slice_id}


def collect_qc(results_dir: str | os.PathLike) -> QcCollection:
    """Read every QC record, image, the trace and the disk use under ``results_dir``.

    Hidden and temporary files are skipped. A record that cannot be read or
    is ill-typed, a figure it names that is missing or lies outside the
    record's folder, or no record at all, becomes a red flag rather than an
    error, so one broken step does not hide the report of the others.

    Raises
    ------
    InputError
        If ``results_dir`` is not a directory.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise InputError(f"{root} is not a directory; pass the pipeline's results directory")
    files = _visible_files(root)
    record_paths = [p for p in files if p.name.endswith(QC_SUFFIX)]
    entries, flags, used_images = [], [], set()
    if not record_paths:
        flags.append(RedFlag(None, "report", f"no *{QC_SUFFIX} record found; did the steps run?"))
    replacements = replacing_records([p.relative_to(root).as_posix() for p in record_paths])
    for path in record_paths:
        relative = path.relative_to(root).as_posix()
        try:
            record = read_qc_record(path)
        except InputError as error:
            flags.append(RedFlag(None, "report", str(error).replace(str(root) + os.sep, "")))
            continue
        entry = QcEntry(relative, record, replaced_by=replacements.get(relative))
        for name, file_name in sorted(record["figures"].items()):
            try:
                entry.figures[str(name)] = read_figure(path.parent, file_name)
                used_images.add(path.parent / file_name)
            except RefusedImage as error:
                entry.problems.append(str(error))
        entry.problems += _sanitize(record, relative)
        entries.append(entry)
        flags += [RedFlag(entry.slice_id, entry.step, problem) for problem in entry.problems]
        if entry.replaced_by is not None:
            continue
        try:
            flags += record_flags(record)
        except (TypeError, ValueError, KeyError, OverflowError) as error:  # ill-typed metric values
            flags.append(RedFlag(entry.slice_id, entry.step, f"{relative}: metrics not understood ({error})"))
    final_records = [entry.record for entry in entries if entry.replaced_by is None]
    flags += acquisition_flags(final_records)
    other_images = {}
    for path in files:
        if path.suffix.lower() == ".png" and path not in used_images and path.resolve().is_relative_to(root.resolve()):
            try:
                other_images[path.relative_to(root).as_posix()] = read_image(path)
            except (RefusedImage, OSError):
                continue
    trace_path = root / TRACE_FILE
    trace = read_trace(trace_path) if trace_path.is_file() else []
    return QcCollection(entries, other_images, sorted(set(flags), key=_flag_order),
                        _volume_summary(root, entries), trace, folder_sizes(root, exclude_suffixes=(".html",)),
                        acquisition_warnings(final_records) + open_loop_warnings(final_records))


def replacing_records(relative_paths: list[str]) -> dict[str, str]:
    """Map each record that a later record replaces to that record's path.

    A record ``<folder>_refused/<name>`` is replaced by ``<folder>/<name>``:
    the same step of the same slice, run again (with the acquisition's focus
    profile) into the canonical folder. The replaced record stays in the
    report's details; its flags and warnings are not raised, since the record
    that replaced it states the outcome.

    >>> replacing_records(["axial_corr/s_z04_qc.json", "axial_corr_refused/s_z04_qc.json", "axial_corr/s_z05_qc.json"])
    {'axial_corr_refused/s_z04_qc.json': 'axial_corr/s_z04_qc.json'}
    """
    present = set(relative_paths)
    replaced = {}
    for path in relative_paths:
        folder = PurePosixPath(path).parent
        if not folder.name.endswith(REPLACED_FOLDER_SUFFIX):
            continue
        final = folder.parent / folder.name.removesuffix(REPLACED_FOLDER_SUFFIX) / PurePosixPath(path).name
        if final.as_posix() in present:
            replaced[path] = final.as_posix()
    return replaced


def logged_warnings_under(results_dir: str | os.PathLike) -> list[RedFlag]:
    """The warnings stored in the QC records under ``results_dir`` (records only: no image is read)."""
    found = set()
    for path in _visible_files(Path(results_dir)):
        if path.name.endswith(QC_SUFFIX):
            try:
                record = read_qc_record(path)
            except InputError:
                continue
            found |= {RedFlag(record["slice_id"], record["step"], str(w)) for w in record["warnings"]}
    return sorted(found, key=_flag_order)


def render_report(collection: QcCollection, title: str = "linumpy QC report") -> str:
    """Return the HTML page of a :class:`QcCollection`."""
    table = _SliceTable(collection)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>{_text(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_text(title)}</h1>",
        _summary(collection),
        _flags_section(collection.flags),
        _warnings_section(collection.warnings),
        table.html(),
        _continuity_section(collection),
        _details_sections(collection),
        _run_section(collection),
        _glossary_section(table.glossary_names),
        '<p id="render-check" data-images-total="" data-images-decoded="" data-overflow-px="">'
        "figure check needs JavaScript</p>",
        f"<script>{_RENDER_CHECK_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def write_report(
    results_dir: str | os.PathLike,
    out_html: str | os.PathLike,
    title: str = "linumpy QC report",
    overwrite: bool = False,
) -> QcCollection:
    """Collect the QC of ``results_dir`` and write the HTML report atomically.

    Returns
    -------
    QcCollection
        What the report shows (e.g. to count the red flags).
    """
    collection = collect_qc(results_dir)
    page = render_report(collection, title)
    with atomic_output(out_html, overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return collection


# ---------------------------------------------------------------- collecting


def _sanitize(record: dict[str, Any], relative: str) -> list[str]:
    """Drop the metrics the report cannot read (bad slice ids); return one problem per metric dropped."""
    metrics, problems = record["metrics"], []
    for key in ("failed_slices", "excluded_slices"):
        try:
            slice_reasons(metrics.get(key))
        except ValueError as error:
            problems.append(f"{relative}: metric {key} not understood ({error})")
            metrics.pop(key)
    ids = metrics.get("slice_ids")
    if ids is not None and not (isinstance(ids, list) and all(_is_id(i) for i in ids)):
        problems.append(f"{relative}: metric slice_ids not understood (expected a list of whole numbers)")
        metrics.pop("slice_ids")
    record["warnings"] = [w for w in record["warnings"] if isinstance(w, str)]
    return problems


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _volume_summary(root: Path, entries: list[QcEntry]) -> VolumeSummary | None:
    """Describe the stack's output volume from its metadata (None without a readable stack)."""
    from linumpy.io.zarr import read_omezarr_info  # heavy import, only when a stack exists

    for entry in entries:
        output = entry.record.get("output")
        if entry.step != "stack" or not isinstance(output, str) or Path(output).name != output:
            continue
        try:
            info = read_omezarr_info(root / Path(entry.path).parent / output)
        except (InputError, OSError, ValueError, KeyError):
            continue
        level0 = info.levels[0]
        return VolumeSummary(output, tuple(level0.shape), tuple(round(s * 1000, 4) for s in level0.scale_mm),
                             [round(level.scale_mm[-1] * 1000, 4) for level in info.levels])
    return None


def _visible_files(root: Path) -> list[Path]:
    files = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not _hidden(d) and not d.endswith(".zarr"))
        files += [Path(directory, n) for n in sorted(names) if not _hidden(n)]
    return sorted(files)


def _slice_id_of(name: str) -> int | None:
    try:
        return parse_slice_id(Path(name).name)
    except ValueError:
        return None


def _hidden(name: str) -> bool:
    return name.startswith(".") or TEMP_MARKER in name


def _flag_order(flag: RedFlag) -> tuple:
    return (flag.slice_id is not None, flag.slice_id or 0, _step_rank(flag.step), flag.message)


def _step_rank(step: str) -> tuple[int, str]:
    return (STEP_ORDER.index(step), "") if step in STEP_ORDER else (len(STEP_ORDER), step)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _per_slice_metrics(entry: QcEntry, voxel_um: float | None) -> dict[int, dict[str, Any]]:
    """Scalar metrics of a slice's record, or the per-slice lists of a whole-brain record.

    A whole-brain record (e.g. the stack's) gives per-slice values as lists
    aligned with its ``slice_ids`` metric; its ``shifts_px`` also gives
    ``shift_um`` (length of the shift) when the voxel size is known.
    """
    metrics = entry.record["metrics"]
    if entry.slice_id is not None:
        return {entry.slice_id: {k: v for k, v in metrics.items() if _is_scalar(v)}}
    ids = metrics.get("slice_ids")
    if not isinstance(ids, list):
        return {}
    aligned = {k: v for k, v in metrics.items()
               if k != "slice_ids" and isinstance(v, list) and len(v) == len(ids)}
    rows = {sid: {k: v[i] for k, v in aligned.items()} for i, sid in enumerate(ids)}
    for row in rows.values():
        shift = row.get("shifts_px")
        if voxel_um and isinstance(shift, list) and all(isinstance(v, (int, float)) for v in shift):
            row["shift_um"] = round(float(np.hypot(*shift[:2])) * voxel_um, 2) if len(shift) >= 2 else None
    return rows


# ---------------------------------------------------------------- summary


def _summary(collection: QcCollection) -> str:
    failed = set()
    for entry in collection.entries:
        for key in ("failed_slices", "excluded_slices"):
            failed |= {sid for sid, _ in slice_reasons(entry.record["metrics"].get(key))}
    ids = collection.slice_ids
    span = f" (z{ids[0]:02d} to z{ids[-1]:02d})" if ids else ""
    lines = [f'<span id="n-slices">{len(ids)}</span> slices{span}']
    volume = collection.volume
    if volume is not None:
        size_mm = " x ".join(f"{n * r / 1000:.2f}" for n, r in zip(volume.shape, volume.voxel_um, strict=False))
        voxel = " x ".join(f"{r:g}" for r in volume.voxel_um)
        lines.append(f"volume <code>{_text(volume.name)}</code>: {' x '.join(map(str, volume.shape))} voxels "
                     f"(z x y x x) of {voxel} µm, {size_mm} mm; pyramid levels at "
                     f"{', '.join(f'{r:g}' for r in volume.level_um)} µm")
    totals = _trace_totals(collection.trace)
    if totals is not None:
        lines.append(f"run time {format_duration(totals['span'])}; {len(collection.trace)} tasks, "
                     f"{format_duration(totals['cpu'])} of CPU, peak memory of one task "
                     f"{format_memory(totals['rss'])}")
    if collection.footprint:
        lines.append(f"disk used {human_bytes(sum(collection.footprint.values()))} (see Run)")
    lines.append(f'<span id="n-flags">{len(collection.flags)}</span> red flags, '
                 f'<span id="n-warnings">{len(collection.warnings)}</span> warning(s), '
                 f'<span id="n-failed">{len(failed)}</span> failed or excluded slices, '
                 f'<span id="n-records">{len(collection.entries)}</span> QC records')
    items = "".join(f"<li>{line}</li>" for line in lines)
    return f'<section id="summary"><h2>Summary</h2><ul class="summary">{items}</ul></section>'


def _flags_section(flags: list[RedFlag]) -> str:
    if not flags:
        return '<h2>Red flags</h2><p class="ok">None: no check failed.</p>'
    items = "".join(
        f'<li class="flag" data-slice-id="{"" if f.slice_id is None else f.slice_id}">'
        f"<b>{_where(f)}</b>: {_text(f.message)}<br><span class=\"action\">What to do: "
        f"{_text(advice(f.message))}</span></li>"
        for f in flags
    )
    return f'<h2>Red flags ({len(flags)})</h2><ul id="red-flags">{items}</ul>'


def _warnings_section(warnings: list[RedFlag]) -> str:
    if not warnings:
        return ""
    items = "".join(
        f'<li class="warning" data-slice-id="{"" if w.slice_id is None else w.slice_id}">'
        f"<b>{_where(w)}</b>: {_text(w.message)}</li>"
        for w in warnings
    )
    return (f'<h2>Warnings ({len(warnings)})</h2><p class="note">Logged by the steps while they ran, or read '
            f'from their records (the acquisition\'s settings); worth a look, not necessarily a problem.</p>'
            f'<ul id="warnings">{items}</ul>')


def _where(flag: RedFlag) -> str:
    place = "whole run" if flag.slice_id is None else f"slice {_slice_label(flag.slice_id)}"
    return f"{place}, {_text(step_label(flag.step))}"


# ---------------------------------------------------------------- slice table


class _SliceTable:
    """One compact row per slice: thumbnail, the headline metrics present, a status."""

    def __init__(self, collection: QcCollection) -> None:
        self.collection = collection
        voxel_um = collection.volume.voxel_um[-1] if collection.volume else None
        self.cells: dict[tuple[int, str], dict[str, Any]] = {}
        for entry in (e for e in collection.entries if e.replaced_by is None):
            for slice_id, metrics in _per_slice_metrics(entry, voxel_um).items():
                if _is_id(slice_id):
                    self.cells.setdefault((slice_id, entry.step), {}).update(metrics)
        present = {(step, name) for (_, step), metrics in self.cells.items() for name in metrics}
        self.columns = [column for column in HEADLINE_METRICS if column in present]
        self.glossary_names = sorted({name for _, name in self.columns}
                                     | {name for entry in collection.entries for name in entry.record["metrics"]})

    def html(self) -> str:
        collection = self.collection
        flagged: dict[int, int] = {}
        for flag in collection.flags:
            if flag.slice_id is not None:
                flagged[flag.slice_id] = flagged.get(flag.slice_id, 0) + 1
        warned: dict[int, int] = {}
        for warning in collection.warnings:
            if warning.slice_id is not None:
                warned[warning.slice_id] = warned.get(warning.slice_id, 0) + 1
        header = "".join(
            f'<th title="{_text(describe(name).meaning)}">{_text(describe(name).label)}'
            f"<br><small>{_text(describe(name).unit)}</small></th>"
            for _, name in self.columns
        )
        rows = []
        for slice_id in collection.slice_ids:
            values = "".join(
                f"<td>{_format_unit(self.cells.get((slice_id, step), {}).get(name), describe(name).unit)}</td>"
                for step, name in self.columns
            )
            status = _status(flagged.get(slice_id, 0), warned.get(slice_id, 0))
            css = ' class="flagged"' if slice_id in flagged else ""
            rows.append(
                f'<tr data-slice-id="{slice_id}"{css}><th><a href="#slice-{slice_id}">'
                f"{_slice_label(slice_id)}</a></th><td>{self._thumbnail(slice_id)}</td>{values}"
                f"<td>{status}</td></tr>"
            )
        return (
            '<h2>Slices</h2><p class="note">One row per slice; hover a column name for its meaning '
            '(also in the Glossary), click a slice for all its metrics and figures.</p>'
            '<table id="slice-table"><thead><tr><th>slice</th><th>view</th>'
            f'{header}<th>status</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        )

    def _thumbnail(self, slice_id: int) -> str:
        candidates = list(self.collection.slice_images(slice_id).values())
        for entry in sorted(self.collection.entries, key=lambda e: (_step_rank(e.step), e.path)):
            if entry.slice_id == slice_id:
                candidates += entry.figures.values()
        for image in candidates:
            try:
                uri = image_data_uri(image, height=THUMBNAIL_HEIGHT)
            except RefusedImage:
                continue
            return f'<img class="thumb" src="{uri}" alt="slice {_slice_label(slice_id)}">'
        return "&ndash;"


def _status(n_flags: int, n_warnings: int) -> str:
    if n_flags:
        return f'<span class="bad">{n_flags} red flag{"s" * (n_flags > 1)}</span>'
    if n_warnings:
        return f'<span class="warn">{n_warnings} warning{"s" * (n_warnings > 1)}</span>'
    return '<span class="ok">ok</span>'


# ---------------------------------------------------------------- continuity, details


def _continuity_section(collection: QcCollection) -> str:
    voxel_um = collection.volume.voxel_um[-1] if collection.volume else None
    for entry in collection.entries:
        rows = _per_slice_metrics(entry, voxel_um) if entry.step == "stack" else {}
        if len(rows) < 2:
            continue
        ids = sorted(i for i in rows if _is_id(i))
        if voxel_um:
            shift, label = [rows[i].get("shift_um") for i in ids], "um"
        else:
            shift, label = [_shift_px(rows[i].get("shifts_px")) for i in ids], "px"
        ncc = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
               for v in (rows[i].get("overlap_ncc") for i in ids)]
        span_is_sane = ids[-1] - ids[0] <= 10 * len(ids) + 1000  # a hostile record cannot blow up the page
        missing = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids)) if span_is_sane else []
        figure = continuity_figure(ids, shift, ncc, missing, shift_unit=label)
        uri = image_data_uri(render_png(figure))
        return (
            '<section id="continuity"><h2>Slice-to-slice continuity</h2><p class="note">Top: how far each '
            "slice had to be moved sideways to match the previous one, beyond the stage motion. Bottom: how "
            "well its overlap matches the previous slice (1 = identical). A spike or a dip marks a slice to "
            f'check.</p><figure><img src="{uri}" alt="slice-to-slice continuity"></figure></section>'
        )
    return ""


def _shift_px(shift: Any) -> float | None:
    if isinstance(shift, list) and len(shift) >= 2 and all(isinstance(v, (int, float)) for v in shift):
        return float(np.hypot(shift[0], shift[1]))
    return None


def _details_sections(collection: QcCollection) -> str:
    by_slice: dict[int | None, list[QcEntry]] = {}
    for entry in collection.entries:
        by_slice.setdefault(entry.slice_id, []).append(entry)
    sections = []
    for slice_id in [None, *collection.slice_ids]:
        entries = sorted(by_slice.get(slice_id, []), key=lambda e: (_step_rank(e.step), e.path))
        images = collection.slice_images(slice_id)
        if not entries and not images:
            continue
        anchor = "whole-brain" if slice_id is None else f"slice-{slice_id}"
        heading = "Whole brain and run" if slice_id is None else f"Slice {_slice_label(slice_id)}"
        body = "".join(_entry_html(entry) for entry in entries)
        if images:
            figures = "".join(_figure_html(name, png) for name, png in images.items())
            title = "Other images" if slice_id is None else "Screenshots"
            body += f'<div class="record"><h4>{title}</h4><div class="figures">{figures}</div></div>'
        sections.append(f'<details id="{anchor}"><summary>{heading}</summary>{body}</details>')
    return '<h2>Details</h2>' + "\n".join(sections) if sections else ""


def _entry_html(entry: QcEntry) -> str:
    metrics = entry.record["metrics"]
    images = "".join(_figure_html(f"{step_label(entry.step)}: {name}", png) for name, png in entry.figures.items())
    scalars = "".join(
        f'<tr><th title="{_text(k)}">{_text(describe(k).label)} <small>({_text(describe(k).unit)})</small></th>'
        f"<td>{_format_unit(v, describe(k).unit)}</td></tr>"
        for k, v in sorted(metrics.items()) if _is_scalar(v)
    )
    details = {k: v for k, v in sorted(metrics.items()) if not _is_scalar(v)}
    details_html = ""
    if details:
        text = json.dumps(details, sort_keys=True, indent=1)
        if len(text) > MAX_DETAILS_CHARS:
            text = text[:MAX_DETAILS_CHARS] + f"\n... ({len(text) - MAX_DETAILS_CHARS} more characters in the record)"
        details_html = f"<details><summary>per-item values</summary><pre>{_text(text)}</pre></details>"
    warnings = "".join(f"<li>{_text(w)}</li>" for w in entry.warnings)
    warnings_html = f'<p class="warn">Warnings logged:</p><ul>{warnings}</ul>' if warnings else ""
    if entry.replaced_by is not None:
        warnings_html = (f'<p class="note">Replaced by {_text(entry.replaced_by)} (the step run again): '
                         f"this record's flags and warnings are not raised.</p>{warnings_html}")
    return (
        f'<div class="record"><h4>{_text(step_label(entry.step))} <small>{_text(entry.path)}</small></h4>'
        f'{warnings_html}<table class="metrics">{scalars}</table>{details_html}'
        f'<div class="figures">{images}</div></div>'
    )


def _figure_html(caption: str, image: bytes) -> str:
    try:
        uri = image_data_uri(image)
    except RefusedImage as error:
        return f'<p class="bad">{_text(caption)}: {_text(str(error))}</p>'
    return f'<figure><img src="{uri}" alt="{_text(caption)}"><figcaption>{_text(caption)}</figcaption></figure>'


# ---------------------------------------------------------------- run, glossary


def _trace_totals(trace: list[TaskTrace]) -> dict[str, float] | None:
    timed = [t for t in trace if t.submit is not None and t.realtime_s is not None]
    if not timed:
        return None
    start = min(t.submit.timestamp() for t in timed)
    end = max(t.submit.timestamp() + t.realtime_s for t in timed)
    return {"span": end - start, "cpu": sum(t.cpu_s or 0.0 for t in trace),
            "rss": max((t.peak_rss or 0 for t in trace), default=0)}


def _run_section(collection: QcCollection) -> str:
    parts = []
    if collection.trace:
        steps: dict[str, list[TaskTrace]] = {}
        for task in collection.trace:
            steps.setdefault(task.step, []).append(task)
        rows = "".join(
            f"<tr><th>{_text(step)}</th><td>{len(tasks)}</td>"
            f"<td>{format_duration(sum(t.realtime_s or 0.0 for t in tasks))}</td>"
            f"<td>{format_duration(sum(t.cpu_s or 0.0 for t in tasks))}</td>"
            f"<td>{format_memory(max((t.peak_rss or 0 for t in tasks), default=0))}</td></tr>"
            for step, tasks in sorted(steps.items())
        )
        parts.append(
            f'<h3>Time and memory per step</h3><p class="note">From <code>{TRACE_FILE}</code>.</p>'
            '<table id="trace-table"><thead><tr><th>step</th><th>tasks</th><th>wall time (sum)</th>'
            f"<th>CPU time (sum)</th><th>peak memory (largest task)</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    if collection.footprint:
        raw = collection.footprint.get(RAW_FOLDER, 0)
        rows = "".join(
            f"<tr><th>{_text(name)}</th><td>{human_bytes(size)}</td>"
            f"<td>{f'{size / raw:.2f}' if raw else '&ndash;'}</td></tr>"
            for name, size in sorted(collection.footprint.items(), key=lambda item: (-item[1], item[0]))
        )
        total = sum(collection.footprint.values())
        parts.append(
            '<h3>Disk used</h3><p class="note">Size of the files in each output folder (HTML reports '
            'excluded); per GB of raw data when the raw acquisition is in the output folder.</p>'
            '<table id="footprint-table"><thead><tr><th>folder</th><th>size</th><th>per raw GB</th></tr></thead>'
            f"<tbody>{rows}<tr><th>total</th><td>{human_bytes(total)}</td>"
            f"<td>{f'{total / raw:.2f}' if raw else '&ndash;'}</td></tr></tbody></table>"
        )
    return f'<section id="run"><h2>Run</h2>{"".join(parts)}</section>' if parts else ""


def _glossary_section(names: list[str]) -> str:
    if not names:
        return ""
    items = "".join(
        f"<dt>{_text(describe(n).label)} <small>({_text(describe(n).unit)}; <code>{_text(n)}</code>)</small></dt>"
        f"<dd>{_text(describe(n).meaning)}</dd>"
        for n in names
    )
    return f'<section id="glossary"><h2>Glossary</h2><dl>{items}</dl></section>'


# ---------------------------------------------------------------- formatting


def _format_unit(value: Any, unit: str) -> str:
    if unit == "%" and isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return f"{100 * value:.1f}"
    return _format(value)


def _format(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else _text(str(value))
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return "(" + ", ".join(_format(v) for v in value) + ")"
    return _text(str(value))


def _slice_label(slice_id: int | None) -> str:
    return "all" if slice_id is None else f"z{slice_id:02d}"


def _text(value: str) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1em auto;padding:0 1em;max-width:1180px;color:#222;line-height:1.35}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.4em;border-bottom:1px solid #ddd}
h4{margin:0.6em 0 0.3em}
li,td,dd,p{overflow-wrap:anywhere}
#slice-table thead th{min-width:4.5em}
table{border-collapse:collapse;margin:0.5em 0;max-width:100%}
th,td{border:1px solid #ccc;padding:2px 6px;font-size:0.9em;text-align:right;vertical-align:middle}
thead th{background:#eee;text-align:center;font-weight:600}
tbody th{text-align:left;font-weight:600}
tr.flagged{background:#fde2e2}
img.thumb{height:72px;width:auto;display:block}
.summary li{margin:0.2em 0}
#red-flags li{color:#a00;margin:0.3em 0}
.action{color:#333;font-size:0.9em}
#warnings li{color:#8a5a00}
.ok{color:#070}.bad{color:#a00;font-weight:600}.warn{color:#8a5a00}
.note{color:#555;font-size:0.9em}
details{border:1px solid #ddd;border-radius:4px;margin:0.4em 0;padding:0.2em 0.6em}
summary{cursor:pointer;font-weight:600}
.figures{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #ccc}
figcaption{font-size:0.85em;color:#555}
.record{border-top:1px solid #eee;margin-top:0.6em}
pre{max-height:20em;max-width:100%;overflow:auto;background:#f6f6f6;font-size:0.8em}
dt{font-weight:600;margin-top:0.4em}dd{margin-left:1.5em}
""".strip()

_RENDER_CHECK_JS = """
window.addEventListener("load", function () {
  var images = document.images, decoded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { decoded++; }
  }
  var check = document.getElementById("render-check");
  var page = document.documentElement;
  check.setAttribute("data-images-total", String(images.length));
  check.setAttribute("data-images-decoded", String(decoded));
  check.setAttribute("data-overflow-px", String(Math.max(0, page.scrollWidth - page.clientWidth)));
  check.textContent = decoded + " of " + images.length + " figures rendered";
});
""".strip()
