"""Where each product goes in the output directory (both orchestrators).

::

    OUTDIR/
      acquisition/                 simulated raw acquisition (--simulate only)
      motor_positions.csv
      mosaic_grids/                field_curvature.json, mosaic_grid_3d_zNN.ome.zarr, mosaic_grid_2d_zNN.ome.zarr
      stitch_3d/                   slice_zNN_stitch_3d.ome.zarr, slice_zNN_stitch_3d_transform.json
      axial_corr/                  slice_zNN_axial_corr.ome.zarr, ..._surface / _attenuation / _uncompensated.ome.zarr,
                                   focus_acquisition.json, focus_borrowers.csv (the acquisition's focus profile)
      axial_corr_borrowed/         the same products, of the slices whose own focus estimate was refused,
                                   corrected again with the acquisition's focus profile
      normalize/                   slice_zNN_normalize.ome.zarr
      stack/                       volume.ome.zarr, volume_shifts.json
      qc/                          slice_zNN_normalize.png, volume.png
      report.html
      pipeline_info/               run logs (Nextflow: trace, timeline; local runner: logs/, tasks/)

Each step's QC record (``<out stem>_qc.json`` and figures) sits beside its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from linumpy.io.naming import mosaic_grid_name, slice_step_name

VOLUME_NAME = "volume"


@dataclass(frozen=True)
class OutputLayout:
    """Paths of the pipeline's products under ``root``."""

    root: Path

    @property
    def acquisition(self) -> Path:
        return self.root / "acquisition"

    @property
    def motor_positions(self) -> Path:
        return self.root / "motor_positions.csv"

    @property
    def field_curvature(self) -> Path:
        """The acquisition's field-curvature decision, read by every mosaic grid."""
        return self.root / "mosaic_grids" / "field_curvature.json"

    def mosaic_grid(self, slice_id: int, dims: int = 3) -> Path:
        return self.root / "mosaic_grids" / mosaic_grid_name(slice_id, dims)

    def slice_product(self, slice_id: int, step: str) -> Path:
        """``<step>/slice_zNN_<step>.ome.zarr`` for ``stitch_3d``, ``axial_corr``, ``normalize``."""
        return self.root / step / slice_step_name(slice_id, step)

    def borrowed_axial(self, slice_id: int) -> Path:
        """``axial_corr_borrowed/slice_zNN_axial_corr.ome.zarr``: a slice corrected with the acquisition's focus."""
        return self.root / "axial_corr_borrowed" / slice_step_name(slice_id, "axial_corr")

    @property
    def acquisition_focus(self) -> Path:
        """The acquisition's focus profile (``linum_combine_focus.py``)."""
        return self.root / "axial_corr" / "focus_acquisition.json"

    @property
    def focus_borrowers(self) -> Path:
        """The slices that borrow the acquisition's focus profile (CSV)."""
        return self.root / "axial_corr" / "focus_borrowers.csv"

    def beside(self, product: Path, suffix: str) -> Path:
        """``<out stem><suffix>`` next to an ``.ome.zarr`` product (its transform, maps ...)."""
        return product.with_name(product.name.removesuffix(".ome.zarr") + suffix)

    @property
    def volume(self) -> Path:
        return self.root / "stack" / f"{VOLUME_NAME}.ome.zarr"

    @property
    def volume_shifts(self) -> Path:
        return self.beside(self.volume, "_shifts.json")

    def screenshot(self, name: str) -> Path:
        return self.root / "qc" / f"{name}.png"

    @property
    def slice_config(self) -> Path:
        return self.root / "slice_config.csv"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def logs(self) -> Path:
        return self.root / "pipeline_info" / "logs"

    @property
    def run_qc_output(self) -> Path:
        """Stands for the run in QC: its record is ``pipeline_info/pipeline_qc.json``."""
        return self.root / "pipeline_info" / "pipeline.json"

    @property
    def run_lock(self) -> Path:
        """The local runner's lock on the output directory (see :mod:`linumpy.pipeline.lock`)."""
        return self.root / "pipeline_info" / "run.lock"

    @property
    def task_records(self) -> Path:
        return self.root / "pipeline_info" / "tasks"
