"""The chain of steps, as data shared by the local runner and the contract tests.

Each :class:`Step` names the ``bin/`` script it runs and the :class:`Option`
flags it takes from the parameters. ``conf/modules.config`` builds the same
flags for Nextflow (``ext.args``); ``tests/test_orchestrators_agree.py``
checks that both build the same command lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from linumpy.pipeline.params import PipelineParams


@dataclass(frozen=True)
class Option:
    """A script flag set from one parameter.

    ``kind`` says how the value becomes arguments: ``"value"`` (``--flag V``),
    ``"list"`` (``--flag V1 V2 ...``) or ``"switch"`` (``--flag`` when true).
    """

    param: str
    flag: str
    kind: Literal["value", "list", "switch"] = "value"

    def arguments(self, params: PipelineParams) -> list[str]:
        """Return the arguments for this option, or none when the parameter is unset.

        Examples
        --------
        >>> Option("percentiles", "--percentiles", "list").arguments(PipelineParams(percentiles=[1, 99]))
        ['--percentiles', '1', '99']
        """
        value = getattr(params, self.param)
        if self.kind == "switch":
            return [self.flag] if value else []
        if value is None:
            return []
        if self.kind == "list":
            return [self.flag, *(str(item) for item in value)]
        return [self.flag, str(value)]


@dataclass(frozen=True)
class Step:
    """One script of the chain and the options the parameters control.

    ``process`` is the Nextflow process running it (``modules/local/<name>.nf``). A step without a
    ``script`` runs no ``bin/`` script: it publishes files another step made (:data:`PUBLISH_AXIAL_CORR`).
    """

    name: str
    process: str
    script: str | None
    options: tuple[Option, ...] = ()

    def option_arguments(self, params: PipelineParams) -> list[str]:
        """Return the flags set from ``params``, in the order of :attr:`options`."""
        return [argument for option in self.options for argument in option.arguments(params)]

    def command(self, positional: Sequence[str], fixed: Sequence[str], params: PipelineParams) -> list[str]:
        """Return ``script positional... fixed... options...``, the order Nextflow uses too (``name`` for
        a step without a script)."""
        return [self.script or self.name, *positional, *fixed, *self.option_arguments(params)]


_ZARR_OUTPUT = (Option("n_levels", "--n_levels"), Option("compression", "--compression"))

SIMULATE = Step("simulate_acquisition", "SIMULATE_ACQUISITION", "linum_simulate_acquisition.py", (
    Option("simulate_seed", "--seed"),
    Option("simulate_layout", "--layout"),
    Option("simulate_n_slices", "--n_slices"),
))
COLLECT_MOTOR_POSITIONS = Step(
    "collect_motor_positions", "COLLECT_MOTOR_POSITIONS", "linum_collect_motor_positions.py"
)
ESTIMATE_FIELD_CURVATURE = Step(
    "estimate_field_curvature", "ESTIMATE_FIELD_CURVATURE", "linum_estimate_field_curvature.py", (
        Option("field_curvature_slices", "--max_slices"),
        Option("axial_resolution", "--axial_resolution"),
        Option("no_fix_field_curvature", "--no_fix_field_curvature", "switch"),
        Option("no_fix_galvo_shift", "--no_fix_galvo_shift", "switch"),
        Option("galvo_confidence", "--galvo_confidence"),
    ),
)
CREATE_MOSAIC_GRID = Step("create_mosaic_grid", "CREATE_MOSAIC_GRID", "linum_create_mosaic_grid_3d.py", (
    Option("resolution", "--resolution"),
    Option("axial_resolution", "--axial_resolution"),
    Option("z_range", "--z_range", "list"),
    Option("mosaic_dtype", "--dtype"),
    Option("no_fix_galvo_shift", "--no_fix_galvo_shift", "switch"),
    Option("galvo_confidence", "--galvo_confidence"),
    *_ZARR_OUTPUT,
))
STITCH_3D = Step("stitch_3d", "STITCH_3D", "linum_stitch_3d.py", (
    Option("blend", "--blend"),
    Option("max_shift_px", "--max_shift_px"),
    Option("stitch_flatfield", "--flatfield"),
    *_ZARR_OUTPUT,
))
AXIAL_CORR = Step("axial_corr", "AXIAL_CORR", "linum_axial_corr.py", (
    Option("surface_depth_um", "--surface_depth_um"),
    Option("useful_depth_um", "--useful_depth_um"),
    Option("focus", "--focus"),
    Option("attenuation", "--attenuation"),
    Option("agarose_attenuation_per_mm", "--agarose_attenuation_per_mm"),
    Option("attenuation_edge_sigma_px", "--attenuation_edge_sigma_px"),
    Option("attenuation_step_log", "--attenuation_step_log"),
    Option("axial_dtype", "--dtype"),
    *_ZARR_OUTPUT,
))
COMBINE_FOCUS = Step("combine_focus", "COMBINE_FOCUS", "linum_combine_focus.py")
#: A slice's first axial correction, published once COMBINE_FOCUS has decided whether the slice borrows.
PUBLISH_AXIAL_CORR = Step("publish_axial_corr", "PUBLISH_AXIAL_CORR", None)
NORMALIZE = Step("normalize", "NORMALIZE", "linum_normalize.py", (
    Option("percentiles", "--percentiles", "list"),
    Option("flatfield", "--flatfield", "switch"),
    Option("normalize_dtype", "--dtype"),
    *_ZARR_OUTPUT,
))
STACK_SLICES = Step("stack_slices", "STACK_SLICES", "linum_stack_slices_motor.py", (
    Option("slice_thickness", "--slice_thickness_um"),
    Option("blend_overlap_um", "--blend_overlap_um"),
    Option("max_rotation_deg", "--max_rotation_deg"),
    Option("interpolate_missing", "--interpolate_missing", "switch"),
    Option("stack_resolution", "--resolution"),
    Option("pyramid_resolutions", "--pyramid_resolutions", "list"),
    Option("stack_chunks", "--chunks", "list"),
    Option("compression", "--compression"),
))
SCREENSHOT = Step("screenshot", "SCREENSHOT", "linum_screenshot_omezarr.py", (
    Option("screenshot_z", "--z"),
    Option("screenshot_level", "--level"),
))
SLICE_CONFIG = Step("slice_config", "SLICE_CONFIG", "linum_slice_config.py")
REPORT = Step("report", "REPORT", "linum_report.py", (Option("report_title", "--title"),))

#: Every script step, in the order a slice (then the whole brain) goes through them.
STEPS: tuple[Step, ...] = (
    SIMULATE, COLLECT_MOTOR_POSITIONS, ESTIMATE_FIELD_CURVATURE, CREATE_MOSAIC_GRID, STITCH_3D, AXIAL_CORR,
    COMBINE_FOCUS, NORMALIZE, STACK_SLICES, SCREENSHOT, SLICE_CONFIG, REPORT,
)
#: The steps each slice runs, in order, independently of the other slices.
SLICE_CHAIN: tuple[Step, ...] = (CREATE_MOSAIC_GRID, STITCH_3D, AXIAL_CORR, NORMALIZE)
