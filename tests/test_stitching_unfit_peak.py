"""A strong own peak that the sub-pixel fit did not refine is refused as evidence and leaves the searches (issue #10;
``linumpy.stitching.estimate.refused_unfit``).

Foreign c185 470 slice 2: (2, 3)-(3, 3), own significance 3.47, 14.8 px off on a 1 px true overlap, its fit leaving
its box; kept, a joint search placed (2, 3) at that peak 17.1 px off; refused, on the stage model, 6.9 px (session
sliver10).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pair_flags import assert_pair_flag_round_trips
from test_stitching_border_peak_refused import BORDER, BORDER_BY, _errors, _with_border_peak
from test_stitching_stage_departure import ERRORS, STEP, _estimate, _registrations

import linumpy.stitching.estimate as estimate
from linumpy.stitching.pairwise import PairRegistration
from linumpy.stitching.transform import UNFIT_PEAK_REFUSED, PairRecord


def _with_unfit_peak() -> dict:
    """:func:`_with_border_peak`'s registrations, :data:`BORDER`'s strong peak :data:`BORDER_BY` off no border peak
    but a whole pixel the fit left at its standard error of 1 px, its map (peaking at the truth) kept."""
    registrations = _with_border_peak()
    registrations[BORDER] = replace(registrations[BORDER], border_peak=False, sigma_px=(1.0, 1.0),
                                    scores=_registrations()[BORDER].scores)
    return registrations


def test_a_strong_unfit_peak_is_refused_its_tile_placed_by_its_other_overlap(monkeypatch):
    """The unfit peak is refused (status, ``unfit_peak``); (2, 2) is placed by the joint search of its faint other
    overlap, at the truth, as is every other tile. Taken as evidence (the identity in the refusal's place), the
    peak puts (2, 2) farther from the truth than its stage position (5 px)."""
    transform = _estimate(monkeypatch, _with_unfit_peak())
    record = next(r for r in transform.pairs if (r.a, r.b) == BORDER)
    assert not record.accepted and record.unfit_peak and record.status == UNFIT_PEAK_REFUSED
    assert sum(r.unfit_peak for r in transform.pairs) == 1
    assert max(_errors(transform).values()) < 0.05
    monkeypatch.setattr(estimate, "refused_unfit", lambda registration: registration)
    assert _errors(_estimate(monkeypatch, _with_unfit_peak()))[(2, 2)] > np.hypot(*ERRORS[(2, 2)]) + 2.0


def test_only_a_strong_peak_left_unrefined_is_refused():
    """A confident peak (below strong, left to the depth check), a refined strong one and a narrow overlap's fit
    (1 px standard error at a refined offset) keep their evidence and maps."""
    strong = PairRegistration((96.0, -3.0), 0.8, 3.5, scores=("map",))
    assert estimate.refused_unfit(strong).unfit_peak
    for kept in (replace(strong, significance=2.9), replace(strong, sigma_px=(0.1, 0.2)),
                 replace(strong, offset=(95.6, -3.2))):
        assert estimate.refused_unfit(kept) == kept and estimate.refused_unfit(kept).scores == ("map",)


def test_unfit_peak_survives_the_transform_json():
    """``unfit_peak`` is written with each pair and read back (missing in older files: False)."""
    records = (PairRecord((0, 0), (1, 0), (86.0, 0.0), 0.6, False, unfit_peak=True),
               PairRecord((0, 0), (0, 1), (0.0, 84.0), 0.9, True))
    assert_pair_flag_round_trips(records, "unfit_peak", {(0, 0): (0.0, 0.0), (1, 0): (86.0, 0.0),
                                                         (0, 1): (0.0, 84.0)}, STEP, (96, 96))
