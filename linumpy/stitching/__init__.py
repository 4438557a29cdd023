"""Stitching of a slice's mosaic grid: tile registration, global positions, fusion.

See ``docs/stitching.md``. Entry point for files:
:func:`linumpy.stitching.stitch.stitch_mosaic_grid`; the algorithms take arrays:
:func:`~linumpy.stitching.pairwise.register_pair`,
:func:`~linumpy.stitching.estimate.estimate_transform`,
:func:`~linumpy.stitching.global_solve.solve_positions`,
:func:`~linumpy.stitching.blend.fuse_block`.
"""
