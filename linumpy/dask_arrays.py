"""dask imported on first use.

The streaming steps read and write chunk files directly (:class:`~linumpy.io.zarr.StoredArray`,
the direct chunk writer, the streamed pyramid) and need dask only for lazy inputs, pyramids built
from a stored level 0 and ``save_omezarr``. Its import (dask.array pulls in parts of scipy) is about
0.3-0.9 CPU s of a step's serial start-up, so the modules on those paths import it inside the
functions that use it, and test for dask arrays with :func:`is_dask_array`.
"""

from __future__ import annotations

import sys


def is_dask_array(value: object) -> bool:
    """Whether ``value`` is a dask array; False without importing dask when nothing imported it yet.

    Examples
    --------
    >>> import numpy as np
    >>> is_dask_array(np.zeros(3))
    False
    """
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(value, module.Array)
