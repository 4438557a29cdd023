"""The test matrix: conditions real acquisitions have and the standard presets do not.

Each condition is a set of :class:`~linumpy.simulate.presets.Preset` fields
at the harsh end of its range (see ``docs/simulator.md``); ``harsh`` combines
them all. Benchmarks and tests run the depth correction and the stacking on
every condition and several seeds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from linumpy.errors import InputError
from linumpy.simulate.presets import Preset

_TILTED = {"surface_tilt": (0.05, -0.06), "surface_bump_px": 2.5, "field_curvature_px": 3.0,
           "surface_offset_px": 14.0}
_DARK = {"dark_fraction": 0.3, "dark_gain": 0.12}
_CAVITY = {"cavity_radius_um": 60.0}
_THICKNESS = {"thickness_jitter": 0.06}
_DEEP_FOCUS = {"focus_model": "lorentzian", "focus_offset_px": 30.0, "focus_sigma_px": 18.0}
_ATTENUATION = {"attenuation_variation": 0.35}
# one look, drawn anew by every slice: consecutive slices' overlaps share the tissue, not its speckle
_SPECKLE = {"speckle_looks": 1, "speckle_per_slice": True}
_NOISY = {"noise_floor": 0.02}  # 2x the presets' floor: deep grey matter near it (not part of harsh)

#: Condition name -> preset fields (``focus_offset_px``: focal plane this far below the surface).
CONDITIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "tilted": _TILTED,
    "dark": _DARK,
    "cavity": _CAVITY,
    "thickness": _THICKNESS,
    "deep_focus": _DEEP_FOCUS,
    "attenuation": _ATTENUATION,
    "speckle": _SPECKLE,
    "harsh": {**_TILTED, **_DARK, **_CAVITY, **_THICKNESS, **_DEEP_FOCUS, **_ATTENUATION},
    "noisy": _NOISY,
}


def condition_preset(base: Preset, condition: str, n_slices: int | None = None) -> Preset:
    """Return ``base`` with the fields of one test-matrix condition.

    Examples
    --------
    >>> from linumpy.simulate.presets import get_preset
    >>> condition_preset(get_preset("tiny"), "deep_focus").focus_model
    'lorentzian'
    """
    if condition not in CONDITIONS:
        raise InputError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    fields = dict(CONDITIONS[condition])
    offset = fields.pop("focus_offset_px", None)
    preset = replace(base, **fields)
    if offset is not None:
        preset = replace(preset, focus_px=preset.surface_offset_px + offset)
    if n_slices is not None:
        preset = replace(preset, n_slices=n_slices)
    return replace(preset, name=f"{base.name}-{condition}")
