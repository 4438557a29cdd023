"""Choices and defaults of the intensity steps' parameters.

Kept free of heavy imports so that a script can build its parser (``--help``,
argument errors) without loading numpy, dask or zarr.
"""

FOCUS_MODES = ("background", "gaussian", "none")
ATTENUATION_MODES = ("vermeer", "none")
#: Stored dtypes of the corrected volume (float16: compact intermediates, relative rounding 2**-11).
AXIAL_DTYPES = ("float32", "float16")
#: Stored dtypes of the normalised volume: [0, 1] floats or 0..65535.
NORMALIZE_DTYPES = ("float32", "uint16")
#: Percentiles of the tissue voxels mapped to 0 and 1 by the normalisation.
DEFAULT_PERCENTILES = (1.0, 95.0)
#: Cap on each voxel's compensated attenuation: this multiple of the larger of the tissue's median fitted decay
#: rate around it and the signal's own decay around the voxel (``AxialSettings.attenuation_cap_factor``;
#: docs/intensity.md, *A cap relative to the tissue's decay*); None: no cap.
DEFAULT_ATTENUATION_CAP_FACTOR: float | None = 2.0
#: Voxels of each of the two windows whose sums give the signal's own decay around a voxel (12 um at 1.5 um).
DEFAULT_ATTENUATION_CAP_WINDOW_PX = 8
