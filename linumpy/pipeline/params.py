"""Pipeline parameters: the same keys for Nextflow and the local runner.

The keys, types and defaults mirror ``params`` in ``nextflow.config`` and
``nextflow_schema.json`` (a test keeps the three in step). Options of the
steps default to ``None``: the script's own default then applies, because
the orchestrators pass only the flags a user set. Keys marked *Nextflow only*
(resources, SLURM, containers) are accepted and ignored by the local runner,
so one params file serves both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from linumpy.errors import InputError

#: A report title: one line of printable text (no control characters); quotes are fine, they are escaped.
REPORT_TITLE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
#: Keys the local runner accepts but only Nextflow uses.
NEXTFLOW_ONLY = frozenset({
    "publish_dir_mode", "max_cpus", "max_memory", "max_time", "container",
    "slurm_queue", "slurm_cluster_options", "slurm_queue_size", "slurm_submit_rate_limit",
})


def parse_slice_ids(value: Any) -> list[int] | None:
    """Read slice ids given as a list, one number, or ``"1,2,5"`` text.

    Examples
    --------
    >>> parse_slice_ids("1, 2,5"), parse_slice_ids(3), parse_slice_ids(None)
    ([1, 2, 5], [3], None)
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("slice ids must be integers")
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    ids = []
    for item in value:
        if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
            raise ValueError(f"slice id {item!r} is not an integer")
        ids.append(int(item))
    return ids


def check_number(value: Any) -> Any:
    """Refuse booleans (YAML ``true`` is not 1) and infinite or NaN numbers (YAML ``.inf``, ``.nan``).

    Examples
    --------
    >>> check_number(2.5)
    2.5
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


SliceIds = Annotated[list[Annotated[int, Field(ge=0)]] | None, BeforeValidator(parse_slice_ids)]
Integer = Annotated[int, BeforeValidator(check_number)]
Number = Annotated[int | float, BeforeValidator(check_number)]
Positive = Annotated[Number, Field(gt=0)]
Percentile = Annotated[Number, Field(ge=0, le=100)]


class PipelineParams(BaseModel):
    """Every parameter of the pipeline, validated (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Input / output
    input: str | None = None
    outdir: str = "results"
    publish_dir_mode: Literal["copy", "copyNoFollow", "link", "rellink", "symlink", "move"] = "copy"
    slices: SliceIds = None
    exclude_slices: SliceIds = None
    slice_config: str | None = None

    # Simulated acquisition
    simulate: Literal["tiny", "small", "large"] | None = None
    simulate_seed: Annotated[Integer, Field(ge=0)] | None = None
    simulate_layout: Literal["native", "tiff"] | None = None
    simulate_n_slices: Annotated[Integer, Field(ge=1)] | None = None

    # Shared by the steps that write OME-Zarr
    n_levels: Annotated[Integer, Field(ge=0)] | None = None
    compression: Literal["blosc-lz4", "zstd", "lz4", "gzip", "none"] | None = None

    # Mosaic grids
    resolution: Positive | None = None
    axial_resolution: Positive | None = None
    z_range: Annotated[list[Annotated[Integer, Field(ge=0)]], Field(min_length=2, max_length=2)] | None = None
    mosaic_dtype: Literal["float32", "float16", "uint16"] | None = None
    no_fix_galvo_shift: bool = False
    galvo_confidence: Annotated[Number, Field(ge=0, le=1)] | None = None
    no_fix_field_curvature: bool = False
    field_curvature_slices: Annotated[Integer, Field(ge=1)] | None = None

    # Stitching
    blend: Literal["feather", "average", "max"] | None = None
    max_shift_px: Annotated[Number, Field(ge=0)] | None = None
    stitch_flatfield: Literal["none", "auto"] | None = None

    # Axial correction
    surface_depth_um: Annotated[Number, Field(ge=0)] | None = None
    useful_depth_um: Positive | None = None
    focus: Literal["background", "gaussian", "none"] | None = None
    attenuation: Literal["vermeer", "none"] | None = None
    agarose_attenuation_per_mm: Annotated[Number, Field(ge=0)] | None = None
    attenuation_edge_sigma_px: Annotated[Number, Field(ge=0)] | None = None
    attenuation_step_log: Annotated[Number, Field(ge=0)] | None = None
    axial_dtype: Literal["float32", "float16"] | None = None

    # Normalization
    percentiles: Annotated[list[Percentile], Field(min_length=2, max_length=2)] | None = None
    flatfield: bool = False
    normalize_dtype: Literal["float32", "uint16"] | None = None

    # Stacking
    slice_thickness: Positive | None = None
    blend_overlap_um: Annotated[Number, Field(ge=0)] | None = None
    max_rotation_deg: Annotated[Number, Field(ge=0, le=20)] | None = None
    interpolate_missing: bool = False
    stack_resolution: Positive | None = None
    pyramid_resolutions: Annotated[list[Positive], Field(min_length=1)] | None = [10, 25, 50, 100]
    allow_gaps: bool = False
    stack_chunks: Annotated[list[Annotated[Integer, Field(ge=1)]], Field(min_length=3, max_length=3)] | None = None

    # Quality control and report
    screenshot_z: Annotated[Integer, Field(ge=0)] | None = None
    screenshot_level: Annotated[Integer, Field(ge=0)] | None = None
    report_title: Annotated[str, Field(pattern=REPORT_TITLE_PATTERN)] | None = None

    # Compute resources (Nextflow only)
    max_cpus: Annotated[Integer, Field(ge=1)] = 8
    max_memory: str = "32.GB"
    max_time: str = "24.h"
    container: str = "linumpy:0.1.0"
    slurm_queue: str | None = None
    slurm_cluster_options: str | None = None
    slurm_queue_size: Annotated[Integer, Field(ge=1)] = 50
    slurm_submit_rate_limit: str = "10/1min"

    def selected(self, slice_ids: list[int]) -> list[int]:
        """Return the slice ids to reconstruct, in order: the subset minus the exclusions.

        Examples
        --------
        >>> PipelineParams(slices=[1, 2, 3], exclude_slices=[2]).selected([0, 1, 2, 3])
        [1, 3]
        """
        wanted = set(self.slices) if self.slices is not None else set(slice_ids)
        excluded = set(self.exclude_slices or ())
        return sorted(i for i in slice_ids if i in wanted and i not in excluded)

    @property
    def stack_allows_gaps(self) -> bool:
        """Whether the stack may skip slice ids: asked for, or slices were excluded."""
        return self.allow_gaps or bool(self.exclude_slices)


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Read a params file (YAML or JSON, as for ``nextflow run -params-file``).

    Raises
    ------
    InputError
        If the file is missing, does not parse, or is not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise InputError(f"{path}: cannot read the params file ({error.strerror})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise InputError(f"{path}{_error_place(error)}: not valid {kind}: {_error_reason(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of parameter names to values")
    return data


def _error_place(error: Exception) -> str:
    """``:LINE:COLUMN`` (1-based) of a JSON or YAML parse error, when known."""
    if isinstance(error, json.JSONDecodeError):
        return f":{error.lineno}:{error.colno}"
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


def _error_reason(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return error.msg
    problem = getattr(error, "problem", None)
    return problem or str(error).splitlines()[0]


def load_params(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> PipelineParams:
    """Return validated parameters from a params file, then ``overrides`` (``None`` values ignored).

    Examples
    --------
    >>> load_params(None, {"simulate": "tiny", "outdir": "demo"}).outdir
    'demo'

    Raises
    ------
    InputError
        Naming the file (if any) and every offending key.
    """
    values = read_params_file(path) if path is not None else {}
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return PipelineParams(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or 'params'}: {issue['msg']}"
            for issue in error.errors()
        )
        source = f"{path}: " if path is not None else ""
        raise InputError(f"{source}invalid parameters: {problems}") from None
