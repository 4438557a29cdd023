"""Stack normalised slices into one brain volume (see ``docs/stacking.md``).

- :mod:`~linumpy.stack.placement`: motor positions to slice origins, encoder glitches.
- :mod:`~linumpy.stack.refine`: z overlap and lateral shift between consecutive slices.
- :mod:`~linumpy.stack.depths`: slice depths from the registered steps and each slice's motor + surface depth.
- :mod:`~linumpy.stack.assemble`: chunk-by-chunk blending into the output grid.
- :mod:`~linumpy.stack.stacking`: the three together.
"""
