"""A pair whose own peak lies on the border of its scored window carries no evidence of its own (issue #10;
``linumpy.stitching.estimate._refused_on_border``).

Foreign c185 seed 215 slice 4: (0, 1)-(0, 2), own significance 3.40, its peak on the last scored column between
tiles that do not overlap, 17.3 px off; kept, it put 7 tiles farther from the truth than their stage positions
(6.41 / 11.53 px, the stage 6.72 / 10.49); refused, 3.37 / 4.37 px with 1 (coordinator, stop 60).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from test_stitching_stage_departure import ERRORS, STEP, TILES, WRONG, _estimate, _registrations

import linumpy.stitching.estimate as estimate
from linumpy.stitching.transform import BORDER_PEAK_REFUSED

#: A strong peak on the border of its map, 9 px from the truth along x, 4 px beyond the stage's error.
BORDER = ((1, 2), (2, 2))
BORDER_BY = (0.0, 9.0)
#: The other overlap of (2, 2): below the significance of a candidate, its map's peak at the truth.
FAINT = ((2, 1), (2, 2))


def _with_border_peak() -> dict:
    """Harsh 60 slice 3's registrations with every best peak at the truth (:data:`WRONG`'s second peak taken),
    :data:`FAINT` not significant, and :data:`BORDER`'s best peak :data:`BORDER_BY` off, on its map's border."""
    registrations = _registrations()
    nominal = np.multiply(np.subtract(*WRONG[::-1]), STEP)
    registrations[WRONG] = replace(registrations[WRONG], offset=tuple(
        float(v) for v in nominal + np.subtract(ERRORS[WRONG[1]], ERRORS[WRONG[0]])))
    registrations[FAINT] = replace(registrations[FAINT], significance=0.3)
    border = registrations[BORDER]
    registrations[BORDER] = replace(border, offset=tuple(np.add(border.offset, BORDER_BY)), significance=3.4,
                                    scores=(), border_peak=True)
    return registrations


def _errors(transform: estimate.TileTransform) -> dict:
    """Each tile's distance from the truth, the frame set by (0, 0)."""
    truth = {t: np.multiply(t, STEP) + ERRORS[t] for t in TILES}
    origin = np.subtract(transform.position((0, 0)), truth[(0, 0)])
    return {t: float(np.hypot(*(np.subtract(transform.position(t), origin) - truth[t]))) for t in TILES}


def test_a_strong_border_peak_is_refused_and_its_tile_placed_by_its_other_overlap(monkeypatch):
    """The border peak is refused (status, ``border_peak``); (2, 2) is placed by the joint search of its faint
    other overlap, at the truth, as is every other tile."""
    transform = _estimate(monkeypatch, _with_border_peak())
    record = next(r for r in transform.pairs if (r.a, r.b) == BORDER)
    assert not record.accepted and record.border_peak and record.status == BORDER_PEAK_REFUSED
    assert max(_errors(transform).values()) < 0.05


def test_taken_as_evidence_the_border_peak_places_its_tile_worse_than_the_stage(monkeypatch):
    """The case is the refusal's: with the border peak taken as evidence (the identity in the refusal's place),
    (2, 2) lands near the wrong peak, farther from the truth than its stage position (5 px)."""
    monkeypatch.setattr(estimate, "_refused_on_border", lambda registration: registration)
    transform = _estimate(monkeypatch, _with_border_peak())
    assert _errors(transform)[(2, 2)] > np.hypot(*ERRORS[(2, 2)]) + 2.0
