"""One-dimensional depth profiles stored as ``.npy`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from linumpy.errors import InputError


def read_depth_profile(path: str | Path) -> np.ndarray:
    """Read a 1D profile (one value per depth sample) from a ``.npy`` file.

    Raises
    ------
    InputError
        If the file cannot be read or does not hold a 1D array.
    """
    try:
        profile = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the depth profile {path} ({error}); give a .npy file") from error
    if profile.ndim != 1:
        raise InputError(f"{path} holds a {profile.ndim}D array; a depth profile must be 1D")
    return profile
