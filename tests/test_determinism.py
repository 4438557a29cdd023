"""Same input and parameters give the same bytes, whatever the number of worker threads.

The four streaming steps of one slice (mosaic grid, stitch, axial correction,
normalize) run on the ``tiny`` acquisition with one worker and with three;
every file of every OME-Zarr output must be byte-identical. Stitching runs
with small fusion blocks, so that several blocks are fused at once.
"""

from __future__ import annotations

from pathlib import Path

from linumpy.intensity.axial import correct_slice
from linumpy.intensity.slice_normalization import normalize_slice
from linumpy.io.acquisition import open_acquisition
from linumpy.mosaic.grid import write_mosaic_grid
from linumpy.stitching import stitch


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _chain(acquisition: Path, folder: Path, workers: int) -> list[Path]:
    """Run the four steps of slice 0 with ``workers`` threads; return the OME-Zarr outputs."""
    grid = folder / "mosaic_grid_3d_z00.ome.zarr"
    aip = folder / "mosaic_grid_2d_z00.ome.zarr"
    stitched = folder / "slice_z00_stitch_3d.ome.zarr"
    corrected = folder / "slice_z00_axial_corr.ome.zarr"
    normalized = folder / "slice_z00_normalize.ome.zarr"
    write_mosaic_grid(open_acquisition(acquisition).slice(0), grid, aip, n_levels=2, workers=workers)
    stitch.stitch_mosaic_grid(grid, stitched, n_levels=2, workers=workers)
    correct_slice(stitched, corrected, n_levels=2, workers=workers)
    normalize_slice(corrected, normalized, n_levels=2, workers=workers)
    return [grid, aip, stitched, corrected, folder / "slice_z00_axial_corr_surface.ome.zarr", normalized]


def test_chain_bytes_do_not_depend_on_the_workers(tiny_acquisition, tmp_path, monkeypatch):
    monkeypatch.setattr(stitch, "CHUNK_PX", 32)
    monkeypatch.setattr(stitch, "BLOCK_PX", 64)
    serial = _chain(tiny_acquisition, tmp_path / "one", workers=1)
    parallel = _chain(tiny_acquisition, tmp_path / "three", workers=3)
    for one, three in zip(serial, parallel):
        assert _tree_bytes(one) == _tree_bytes(three), one.name
