"""Choices and defaults of the stacking step's parameters.

Kept free of heavy imports so that a script can build its parser without
loading numpy, scipy, scikit-image or dask.
"""

DEFAULT_PYRAMID_RESOLUTIONS_UM = (10.0, 25.0, 50.0, 100.0)
#: The stack's default: no rotation search (opt-in, ``--max_rotation_deg 5``). The gate no longer
#: accepts false turns (0 of 84 unrotated matrix pairs), but on the ``tiny`` chain slices (166 x 115
#: pixels) the fit's standard error is 0.17-0.4 degree, so turns under ~1 degree are skipped and
#: accepted ones err by up to 0.9 degree: short of the 0.2 degree target (docs/lab-parity.md).
STACK_MAX_ROTATION_DEG = 0.0
