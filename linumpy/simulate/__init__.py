"""Synthetic serial-OCT acquisitions with known ground truth.

:func:`simulate_acquisition` writes raw tiles (native or TIFF layout) and
``ground_truth/`` for a :mod:`preset <linumpy.simulate.presets>`; the model is
described in ``docs/simulator.md``. The writer (numpy, zarr, tifffile) is
loaded on first use of :func:`simulate_acquisition`, so that building a parser
from the presets stays light.
"""

from __future__ import annotations

from typing import Any

from linumpy.simulate.options import LAYOUTS
from linumpy.simulate.presets import PRESETS, Preset, get_preset

__all__ = ["LAYOUTS", "PRESETS", "Preset", "get_preset", "simulate_acquisition"]


def __getattr__(name: str) -> Any:
    if name == "simulate_acquisition":
        from linumpy.simulate.writer import simulate_acquisition

        return simulate_acquisition
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
