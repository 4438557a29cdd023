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
#: Least log change of the signal read as a reflectivity step by the axial correction (``AxialSettings.
#: attenuation_step_log``; 0 = off; docs/intensity.md, *Reflectivity steps*). Off by default: the steps
#: help on the simulator's dark tissue but lower the volume NCC on every acquisition of the independent
#: generator tried (oblique fibres read as steps); 0.5 is the value measured when asked for.
DEFAULT_STEP_LOG = 0.0
#: Percentiles of the tissue voxels mapped to 0 and 1 by the normalisation.
DEFAULT_PERCENTILES = (1.0, 95.0)
#: Voxels above this multiple of the mean of the box around them are set to it before the normalisation's
#: percentile map (``NormalizeSettings.speckle_cap``; 0 = off; docs/intensity.md, *A speckle cap relative to
#: the local level*): the speckle's tail trimmed alike in every tissue, not only in the brightest one.
DEFAULT_SPECKLE_CAP = 2.0
