"""Lay a slice's raw tiles side by side on their nominal grid (no stitching)."""

from linumpy.mosaic.grid import GridGeometry, grid_geometry, prepare_tile, write_mosaic_grid

__all__ = ["GridGeometry", "grid_geometry", "prepare_tile", "write_mosaic_grid"]
