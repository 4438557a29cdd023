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
#: Mosaic grid attribute holding the applied field-curvature correction's ``[q_uu, q_vv, q_uv]`` (voxels); absent
#: when none was applied. The stitched slice inherits it, and the axial step reads each A-line's applied shift
#: from it (:mod:`linumpy.intensity.focus_shift`).
APPLIED_CURVATURE_ATTRIBUTE = "field_curvature_applied_px"
