"""Tell a dask array from other arrays without importing dask.

dask (about 0.3-0.6 CPU s to import) is needed only where a dask array is
made or computed; the streaming steps, which read and write numpy blocks,
never need it. A value can only be a dask array once ``dask.array`` has
been imported, so the test looks for the module first.
"""

from __future__ import annotations

import sys
from typing import Any


def is_dask_array(value: Any) -> bool:
    """Whether ``value`` is a ``dask.array.Array``; never imports dask.

    Examples
    --------
    >>> import numpy as np
    >>> is_dask_array(np.zeros(3))
    False
    """
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(value, module.Array)
