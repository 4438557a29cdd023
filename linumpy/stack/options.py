"""Choices and defaults of the stacking step's parameters.

Kept free of heavy imports so that a script can build its parser without
loading numpy, scipy, scikit-image or dask.
"""

DEFAULT_PYRAMID_RESOLUTIONS_UM = (10.0, 25.0, 50.0, 100.0)
#: The stack's default: no rotation search (opt-in). On the ``tiny`` preset (seed 0, no
#: rotation simulated) the gate accepted a false 1.19 degree turn of slice 2 (NCC gain 0.016
#: over identity 0.658), halving its overlap NCC; until the gate tells such gains from the
#: small ones of true turns, the search is asked for explicitly (e.g. ``--max_rotation_deg 5``).
STACK_MAX_ROTATION_DEG = 0.0
