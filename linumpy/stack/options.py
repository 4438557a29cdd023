"""Choices and defaults of the stacking step's parameters.

Kept free of heavy imports so that a script can build its parser without
loading numpy, scipy, scikit-image or dask.
"""

DEFAULT_PYRAMID_RESOLUTIONS_UM = (10.0, 25.0, 50.0, 100.0)
#: The stack's default: rotations about z up to 5 degrees searched, as the lab's pipeline does
#: (``--max_rotation_deg 0``: translation only). On slices through the whole chain (``tiny``,
#: held-out ``harsh``/``tilted`` seeds 3-4) the search recovers 27 of 28 turns within 0.2 degree and
#: turns none of 28 unrotated pairs (docs/lab-parity.md); it costs 2-6 s per slice pair.
STACK_MAX_ROTATION_DEG = 5.0
