"""A slice whose own focus estimate is refused borrows the acquisition's (issue #11, focusacq65).

Synthetic slices (``synthetic_volume`` of tests/test_axial_corr.py: a tissue disc in agarose, a Gaussian focus
35 planes deep, 30 wide): two with agarose estimate the focus, one all tissue (no agarose) is refused and keeps
the focus's rise; with the acquisition's focus (the median of the two) it is corrected like the others.
"""

from __future__ import annotations

import numpy as np
import pytest

from linumpy.errors import InputError
from linumpy.intensity import acquisition_focus, focus
from linumpy.intensity.axial import AxialSettings, correct_slice
from linumpy.io.zarr import read_omezarr
from linumpy.pipeline.slice_config import collect_metrics
from linumpy.qc.records import qc_record_path, read_qc_record, write_qc_record
from test_axial_corr import save_volume, synthetic_volume

FOCUS_PX = (35.0, 30.0)


def _corrected(tmp_path, volume, slice_id, settings=AxialSettings()):
    """Correct ``volume`` as slice ``slice_id``: its output, attributes and QC record."""
    source = save_volume(volume, tmp_path / f"in{slice_id}_{len(list(tmp_path.iterdir()))}.ome.zarr")
    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}" / f"slice_z{slice_id:02d}_axial_corr.ome.zarr"
    attributes = correct_slice(source, out, settings, n_levels=0)
    return read_omezarr(out)[0].compute(), attributes, read_qc_record(qc_record_path(out))


def _depth_spread(corrected: np.ndarray, tissue: np.ndarray) -> float:
    """Largest departure of the tissue's mean depth profile (4-plane means below the cut) from its mean."""
    profile = corrected[6:58, tissue].mean(axis=1).reshape(13, 4).mean(axis=1)
    return float(np.abs(profile / profile.mean() - 1).max())


@pytest.fixture(scope="module")
def donors(tmp_path_factory):
    """The axial QC records of two slices that estimate their own focus."""
    tmp_path = tmp_path_factory.mktemp("donors")
    return [_corrected(tmp_path, synthetic_volume(focus_px=FOCUS_PX, seed=seed)[0], seed)[2] for seed in (0, 1)]


def test_a_refused_slice_borrows_the_acquisitions_focus_and_is_corrected(donors, tmp_path):
    truth = focus.focus_model("gaussian", np.arange(100), 1.0, *FOCUS_PX)
    volume, _, tissue = synthetic_volume(focus_px=FOCUS_PX, agarose_border=-40, seed=2)  # no agarose
    own, own_attributes, own_record = _corrected(tmp_path, volume, 2)
    assert acquisition_focus.is_refused(own_attributes["focus_mode"])
    assert _depth_spread(own, tissue) > 0.25  # the focus's rise through depth kept

    combined = acquisition_focus.combine([*donors, own_record])
    assert combined.donors == (0, 1) and combined.borrowers == [2]
    assert np.abs(combined.profile - truth)[10:90].max() < 0.05
    settings = AxialSettings(acquisition_focus=combined)
    borrowed, attributes, record = _corrected(tmp_path, volume, 2, settings)
    why = acquisition_focus.refusal(own_attributes["focus_mode"])
    assert attributes["focus_mode"] == f"borrowed ({why}; from slices 0, 1)"
    assert record["metrics"]["focus_borrowed_from"] == [0, 1]
    assert any("borrowed from the acquisition" in flag for flag in record["flags"])
    assert _depth_spread(borrowed, tissue) < 0.10  # as a slice given the true profile


def test_a_slice_with_its_own_accepted_focus_is_unchanged(donors, tmp_path):
    volume = synthetic_volume(focus_px=FOCUS_PX, seed=0)[0]
    skewed = acquisition_focus.AcquisitionFocus(np.linspace(0.1, 1.0, 100, dtype=np.float32), (5,), False,
                                                {3: "none (no background A-lines)"})
    own, attributes, _ = _corrected(tmp_path, volume, 0)
    given, given_attributes, _ = _corrected(tmp_path, volume, 0,
                                            AxialSettings(acquisition_focus=skewed))
    assert given_attributes["focus_mode"] == attributes["focus_mode"] == "background"
    assert np.array_equal(own, given)


def _record(slice_id, mode, profile=None):
    metrics = {"focus_mode": mode, **({"focus_profile": list(profile)} if profile is not None else {})}
    return {"step": "axial_corr", "slice_id": slice_id, "metrics": metrics}


def test_the_acquisitions_focus_is_the_median_of_the_accepted_profiles():
    truth = focus.focus_model("lorentzian", np.arange(60), 1.0, 40.0, 12.0)
    records = [_record(i, "background", truth * (1 + 0.02 * i)) for i in range(3)]
    records.append(_record(3, "background", np.ones(60)))  # one slice's estimate far off
    records.append(_record(4, "gaussian", truth))
    records += [_record(5, "none (no background A-lines)"), _record(6, "none"), _record(7, "profile", truth)]
    combined = acquisition_focus.combine(records)
    assert np.abs(combined.profile - truth).max() < 0.02
    assert combined.donors == (0, 1, 2, 3, 4) and combined.borrowers == [5]  # "none" asked for: not refused
    nobody = acquisition_focus.combine([_record(5, "none (no background A-lines)")])
    assert nobody.profile is None and nobody.borrowers == []
    with pytest.raises(InputError, match="depths"):
        acquisition_focus.combine([_record(0, "background", truth), _record(1, "background", truth[:50])])


def test_the_acquisitions_focus_and_its_borrowers_round_trip(tmp_path):
    combined = acquisition_focus.combine([_record(0, "background", [0.5, 1.0, 0.25]),
                                          _record(1, "none (no background A-lines)")])
    acquisition_focus.write(combined, tmp_path / "focus.json")
    acquisition_focus.write_borrowers(combined, tmp_path / "borrowers.csv")
    read = acquisition_focus.read(tmp_path / "focus.json")
    assert read.profile.tolist() == [0.5, 1.0, 0.25] and read.donors == (0,) and read.refused == combined.refused
    assert acquisition_focus.read_borrowers(tmp_path / "borrowers.csv") == [1]


def test_the_slice_table_reads_a_borrowers_final_record(tmp_path):
    for folder, mode in (("axial_corr_refused", "none (no background A-lines)"),
                         ("axial_corr", "borrowed (no background A-lines; from slices 0)")):
        (tmp_path / folder).mkdir()
        write_qc_record(tmp_path / folder / "slice_z02_axial_corr.ome.zarr", "axial_corr", {"focus_mode": mode})
    assert collect_metrics(tmp_path)[2]["focus_mode"] == "borrowed (no background A-lines; from slices 0)"
