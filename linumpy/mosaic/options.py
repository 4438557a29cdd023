"""Choices and defaults of the mosaic grid step's parameters.

Kept free of heavy imports so that a script can build its parser without
loading numpy, scipy or zarr.
"""

#: Output dtypes; integers are rounded and clipped to their range, not rescaled.
DTYPES = ("float32", "float16", "uint16")
#: Default confidence above which the detected galvo-return band is moved.
DEFAULT_CONFIDENCE = 0.3
#: Slices sampled by the acquisition-wide field-curvature estimate, spread through the acquisition.
CURVATURE_MAX_SLICES = 8
