"""Synthetic serial-OCT acquisitions with known ground truth.

:func:`simulate_acquisition` writes raw tiles (native or TIFF layout) and
``ground_truth/`` for a :mod:`preset <linumpy.simulate.presets>`; the model is
described in ``docs/simulator.md``.
"""

from linumpy.simulate.presets import PRESETS, Preset, get_preset
from linumpy.simulate.writer import LAYOUTS, simulate_acquisition

__all__ = ["LAYOUTS", "PRESETS", "Preset", "get_preset", "simulate_acquisition"]
