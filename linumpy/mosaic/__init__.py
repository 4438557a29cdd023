"""Lay a slice's raw tiles side by side on their nominal grid (no stitching).

The grid functions are loaded on first use (module ``__getattr__``), so that
importing :mod:`linumpy.mosaic.options` to build a parser stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GridGeometry", "grid_geometry", "prepare_tile", "write_mosaic_grid"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("linumpy.mosaic.grid"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
