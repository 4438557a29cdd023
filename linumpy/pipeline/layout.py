"""Where each product goes in the output directory (both orchestrators).

::

    OUTDIR/
      acquisition/                 simulated raw acquisition (--simulate only)
      motor_positions.csv
      mosaic_grids/                field_curvature.json, mosaic_grid_3d_zNN.ome.zarr, mosaic_grid_2d_zNN.ome.zarr
      stitch_3d/                   slice_zNN_stitch_3d.ome.zarr, slice_zNN_stitch_3d_transform.json
      axial_corr/                  slice_zNN_axial_corr.ome.zarr, ..._surface / _attenuation / _uncompensated.ome.zarr:
                                   every slice's final axial correction (a borrower's: the one with the acquisition's
                                   focus profile); focus_acquisition.json, focus_borrowers.csv (that profile, and
                                   the slices that borrow it)
      axial_corr_refused/          a borrower's first correction, its own focus estimate refused (kept for audit,
                                   the same file names; its QC record is shown as replaced)
      normalize/                   slice_zNN_normalize.ome.zarr
      stack/                       volume.ome.zarr, volume_shifts.json
      qc/                          slice_zNN_normalize.png, volume.png
      report.html
      pipeline_info/               run logs (Nextflow: trace, timeline; local runner: logs/, tasks/, and
                                   staging/ while a first axial correction waits for the focus decision)

Each step's QC record (``<out stem>_qc.json`` and figures) sits beside its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from linumpy.io.naming import mosaic_grid_name, slice_step_name

VOLUME_NAME = "volume"
#: Where a borrower's first axial correction (its own focus estimate refused) is published.
REFUSED_AXIAL_FOLDER = "axial_corr_refused"


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

    def staged_axial(self, slice_id: int) -> Path:
        """``pipeline_info/staging/axial_corr/slice_zNN_axial_corr.ome.zarr``: a slice's first axial correction
        until the acquisition's focus decides where it is published (the local runner's counterpart of
        Nextflow's task directory)."""
        return self.staging / "axial_corr" / slice_step_name(slice_id, "axial_corr")

    def refused_axial(self, slice_id: int) -> Path:
        """``axial_corr_refused/slice_zNN_axial_corr.ome.zarr``: a borrower's first axial correction, kept for
        audit (its final one, with the acquisition's focus profile, is :meth:`slice_product`)."""
        return self.root / REFUSED_AXIAL_FOLDER / slice_step_name(slice_id, "axial_corr")

    @property
    def staging(self) -> Path:
        """Where the local runner keeps products it publishes once a later step has decided where."""
        return self.root / "pipeline_info" / "staging"

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
