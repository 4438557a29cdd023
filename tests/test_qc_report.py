"""QC records, figures, red flags and the HTML report (checked in a real headless browser)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from PIL import Image

from linumpy.errors import InputError
from linumpy.qc import figures
from linumpy.qc.flags import acquisition_flags, outlier_indices, record_flags, slice_reasons
from linumpy.qc.glossary import advice
from linumpy.qc.metrics import depth_profile, nonzero_fraction, stitching_metrics
from linumpy.qc.records import (
    output_stem,
    qc_figure_path,
    qc_record_path,
    read_qc_record,
    write_qc_record,
)
from linumpy.qc.report import collect_qc, render_report, write_report
from linumpy.viz.chart import BLUE, CHART_WIDTH, RED, SHADE, TITLE_HEIGHT, Panel, Series, line_chart
from linumpy.viz.planes import orthogonal_planes

REPO = Path(__file__).resolve().parents[1]
REPORT_SCRIPT = REPO / "bin" / "linum_report.py"
SLICES = (0, 1, 2, 3, 12)
EMPTY_SLICE, LOW_CONFIDENCE_SLICE, OUTLIER_SLICE, FAILED_SLICE = 2, 1, 3, 7
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# ---------------------------------------------------------------- records


def test_record_names_follow_the_output_stem(tmp_path):
    out = tmp_path / "slice_z03_stitch_3d.ome.zarr"
    assert output_stem(out) == tmp_path / "slice_z03_stitch_3d"
    assert qc_record_path(out) == tmp_path / "slice_z03_stitch_3d_qc.json"
    assert qc_figure_path(out, "residuals") == tmp_path / "slice_z03_stitch_3d_qc_residuals.png"
    assert qc_record_path(tmp_path / "shifts.json") == tmp_path / "shifts_qc.json"


def test_record_round_trip_converts_numpy_and_non_finite_values(tmp_path):
    out = tmp_path / "slice_z103_normalize.ome.zarr"
    metrics = {"p99": np.float32(0.25), "n": np.int64(7), "ok": np.bool_(True), "bad": float("nan"),
               "profile": np.array([1.5, np.inf]), 4: "four"}
    path = write_qc_record(out, "normalize", metrics, flags=["checked by hand"])
    record = read_qc_record(path)
    assert record["slice_id"] == 103
    assert record["step"] == "normalize"
    assert record["output"] == out.name
    assert record["metrics"] == {"p99": 0.25, "n": 7, "ok": True, "bad": None,
                                 "profile": [1.5, None], "4": "four"}
    assert record["flags"] == ["checked by hand"]
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert not list(tmp_path.glob(".*")), "no temporary sibling may remain"


def test_records_and_figures_are_byte_identical_across_runs(tmp_path):
    rng = np.random.default_rng(3)
    aip = rng.random((40, 60))
    for run in ("a", "b"):
        write_qc_record(tmp_path / run / "mosaic_grid_3d_z00.ome.zarr", "mosaic_grid_3d",
                        {"nonzero_fraction": 1.0},
                        {"aip": figures.mosaic_grid_figure(aip, (2, 3)),
                         "thumb": (aip * 255).astype(np.uint8)})
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["mosaic_grid_3d_z00_qc.json", "mosaic_grid_3d_z00_qc_aip.png",
                     "mosaic_grid_3d_z00_qc_thumb.png"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    png = (tmp_path / "a" / "mosaic_grid_3d_z00_qc_aip.png").read_bytes()
    assert b"matplotlib" not in png, "PNG must not carry the Software tag"
    thumb = np.asarray(Image.open(tmp_path / "a" / "mosaic_grid_3d_z00_qc_thumb.png").convert("L"))
    np.testing.assert_array_equal(thumb, (aip * 255).astype(np.uint8))


def test_rewriting_a_record_drops_its_stale_figures(tmp_path):
    out = tmp_path / "slice_z01_axial_corr.ome.zarr"
    image = np.zeros((4, 4, 3), np.uint8)
    write_qc_record(out, "axial_corr", {}, {"old": image, "kept": image})
    write_qc_record(out, "axial_corr", {}, {"kept": image})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "slice_z01_axial_corr_qc.json", "slice_z01_axial_corr_qc_kept.png"]


@pytest.mark.parametrize(
    ("metrics", "figs", "match"),
    [({"x": object()}, None, "cannot be stored in JSON"),
     ({}, {"bad name!": np.zeros((2, 2))}, "figure name"),
     ({}, {"cube": np.zeros((2, 2, 2, 2))}, "2D grey or RGB")],
)
def test_invalid_records_are_refused_without_output(tmp_path, metrics, figs, match):
    out = tmp_path / "slice_z00_stitch_3d.ome.zarr"
    with pytest.raises(InputError, match=match):
        write_qc_record(out, "stitch_3d", metrics, figs)
    assert not qc_record_path(out).exists()


# ---------------------------------------------------------------- figures


def test_mosaic_grid_figure_draws_every_tile_and_crosses_missing_ones():
    aip = np.ones((30, 40))
    figure = np.asarray(figures.mosaic_grid_figure(aip, (3, 4), tiles_present=[(r, c) for r in range(3)
                                                                                 for c in range(4) if (r, c) != (1, 2)]))
    image = figure[TITLE_HEIGHT:]
    assert image.shape[:2] == (450, CHART_WIDTH)  # the AIP's aspect, CHART_WIDTH wide: a tile is 150 px
    yellow = (image == figures.YELLOW).all(axis=2)
    for edge in (0, 149, 150, 299, 300, 449):
        assert yellow[edge, 10:590].mean() > 0.9 and yellow[10:440, edge].mean() > 0.9, edge
    assert not yellow[10:140, 10:140].any(), "inside a tile: the AIP"
    red = np.argwhere((image == RED).all(axis=2))
    assert red.size and np.abs(red.min(axis=0) - [150, 300]).max() <= 1 and np.abs(red.max(axis=0) - [299, 449]).max() <= 1
    rows, columns = red.T
    on_a_diagonal = (np.abs(rows - 150 - (columns - 300)) <= 2) | (np.abs(rows - 150 - (449 - columns)) <= 2)
    assert on_a_diagonal.all(), "the two diagonals of tile (1, 2)"


def test_stitching_figure_marks_fallback_pairs():
    pairs = [((0, 0), (0, 1)), ((0, 1), (1, 1)), ((0, 0), (1, 0))]
    residuals = np.array([[0.5, 0.0], [np.nan, np.nan], [0.0, 2.0]])
    image = np.asarray(figures.stitching_residuals_figure(pairs, residuals, [False, True, False], (2, 2)))
    red = np.argwhere((image == RED).all(axis=2))
    columns = np.unique(red[:, 1])
    assert columns.max() - columns.min() <= 2, "the fallback pair (0, 1)-(1, 1) is vertical"
    rows = np.unique(red[:, 0])
    assert np.diff(rows).max() > 2, "dashed"
    longest = (image == figures.viridis(1.0)).all(axis=2)  # (0, 0)-(1, 0): 2 px, the longest
    shortest = (image == figures.viridis(0.25)).all(axis=2)  # (0, 0)-(0, 1): 0.5 px
    assert np.ptp(np.argwhere(longest[:, : columns.min()])[:, 1]) <= 4, "a vertical edge left of the red one"
    shortest_rows = np.argwhere(shortest[:, : columns.min()])[:, 0]
    assert shortest_rows.size and np.ptp(shortest_rows) <= 4 and shortest_rows.max() < rows.min(), "the top edge"


def test_orthogonal_planes_are_the_central_planes():
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    xy, xz, yz = orthogonal_planes(volume)
    np.testing.assert_array_equal(xy, volume[2])
    np.testing.assert_array_equal(xz, volume[:, 2])
    np.testing.assert_array_equal(yz, volume[:, :, 3])


def test_display_range_ignores_non_finite_values():
    image = np.concatenate([np.linspace(0, 100, 1001), [np.nan, np.inf, -np.inf]])
    low, high = figures.display_range(image)
    assert low == pytest.approx(1.0) and high == pytest.approx(99.5)
    assert figures.display_range(np.full(4, np.nan)) == (0.0, 1.0)


def test_depth_profiles_figure_draws_each_curve_and_the_surface():
    depth = np.arange(20) * 3.5
    image = np.asarray(figures.depth_profiles_figure(depth, {"before": np.exp(-depth / 30), "after": np.ones(20)}, 10.0))
    assert image.shape[1] == CHART_WIDTH
    for colour in (BLUE, figures.ORANGE, figures.GREY):
        assert (image == colour).all(axis=2).sum() > 50, colour
    orange = np.argwhere((image == figures.ORANGE).all(axis=2))
    top = orange[:, 0].min()  # "after", all ones: the top line, from depth 0 to 66.5 um (the legend lies lower)
    first, last = orange[orange[:, 0] == top, 1].min(), orange[orange[:, 0] == top, 1].max()
    grey_columns = np.argwhere((image[top + 10:top + 60] == figures.GREY).all(axis=2))[:, 1]
    assert abs(np.median(grey_columns) - (first + (last - first) * 10.0 / 66.5)) <= 2, "the surface at 10 um"


def test_histogram_figure_draws_counts_on_a_log_axis():
    counts, edges = np.array([1, 10, 100, 1000]), np.arange(5.0)
    image = np.asarray(figures.intensity_histograms_figure({"before": (counts, edges), "after": (counts, edges)},
                                                           {"p_high": 2.5, "outside": 9.0}))
    half = (image.shape[0] - TITLE_HEIGHT) // 2
    blue = (image[TITLE_HEIGHT:TITLE_HEIGHT + half] == BLUE).all(axis=2)
    columns = np.flatnonzero(blue.any(axis=0))
    bar_width = (columns[-1] - columns[0]) / 4
    tops = [np.flatnonzero(blue[:, round(columns[0] + (i + 0.25) * bar_width)])[0] for i in range(4)]
    steps = np.diff(tops)
    assert (steps < 0).all() and np.ptp(steps) <= 1, "each decade the same height"
    red_columns = np.unique(np.argwhere((image[TITLE_HEIGHT:TITLE_HEIGHT + half] == RED).all(axis=2))[:, 1])
    assert abs(red_columns.min() - (columns[0] + 2.5 * bar_width)) <= 2, "p_high's rule at 2.5; 9.0 not drawn"
    assert (image[TITLE_HEIGHT + half:] == BLUE).all(axis=2).sum() == blue.sum(), "both charts alike"


def test_continuity_figure_shades_the_missing_slice_and_breaks_the_line():
    image = np.asarray(figures.continuity_figure([0, 1, 2, 4], [0.0, 12.5, None, 3.0], [None, 0.9, 0.1, 0.8],
                                                 missing_ids=[3]))
    shaded = np.flatnonzero((image == SHADE).all(axis=2).sum(axis=0) > 100)  # whole columns, not the text's grey
    blue = np.unique(np.argwhere((image == BLUE).all(axis=2))[:, 1])
    first, step = blue.min(), (blue.max() - blue.min()) / 4  # slice ids 0 to 4 (within the markers' radius, 3 px)
    assert abs(shaded.min() - (first + 2.5 * step)) <= 3 and abs(shaded.max() - (first + 3.5 * step)) <= 3
    skipped = np.arange(round(first + 1.2 * step), round(first + 3.8 * step))
    assert not np.intersect1d(blue, skipped).size, "no line from slice 1 over the unknown 2 and the missing 3"


# ---------------------------------------------------------------- metrics


def test_stitching_metrics_recover_known_residuals():
    positions = {(0, 0): (0.0, 0.0), (0, 1): (1.0, 90.0), (1, 0): (88.0, -2.0), (1, 1): (90.0, 91.0)}
    pairs = [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((0, 1), (1, 1)), ((1, 0), (1, 1))]
    errors = np.array([[0.5, -1.0], [0.0, 2.0], [3.0, 4.0], [-0.25, 0.0]])
    measured = [np.subtract(positions[b], positions[a]) - e for (a, b), e in zip(pairs, errors)]
    metrics, residuals = stitching_metrics(pairs, measured, [0.9, 0.7, 0.2, 0.8], [True, True, False, True],
                                           positions)
    assert metrics == {"n_pairs": 4, "n_fallback_pairs": 1, "confidence": 0.8, "max_residual_px": 2.0}
    np.testing.assert_allclose(residuals[[0, 1, 3]], errors[[0, 1, 3]])
    assert np.isnan(residuals[2]).all()


def test_volume_metrics_stream_over_dask_chunks():
    volume = np.zeros((4, 6, 6), np.float32)
    volume[1, :3, :] = 2.0
    volume[3] = 1.0
    lazy = da.from_array(volume, chunks=(1, 3, 3))
    assert nonzero_fraction(lazy) == pytest.approx((18 + 36) / volume.size)
    np.testing.assert_allclose(depth_profile(lazy), [0.0, 1.0, 0.0, 1.0])
    assert nonzero_fraction(np.zeros((2, 2))) == 0.0


# ---------------------------------------------------------------- flags


def test_outliers_found_among_noisy_stack_shifts():
    rng = np.random.default_rng(7)
    magnitudes = np.abs(rng.normal(3.0, 0.5, size=40))
    assert outlier_indices(magnitudes) == []
    magnitudes[[5, 31]] = [15.0, 0.0 + 9.5]
    assert outlier_indices(magnitudes) == [5, 31]
    assert outlier_indices([1.0, 1.0, 1.0, 1.5]) == [], "a 0.5 px departure is never an outlier"


def test_record_flags_apply_each_threshold():
    record = {"step": "stitch_3d", "slice_id": 4, "flags": ["own flag"],
              "metrics": {"confidence": 0.2, "n_pairs": 10, "n_fallback_pairs": 3, "nonzero_fraction": 0.0}}
    messages = sorted(flag.message for flag in record_flags(record))
    assert messages == ["3/10 tile pairs fell back to the stage model",
                        "empty: every voxel is zero", "low stitching confidence 0.20 (< 0.5)", "own flag"]
    healthy = {"step": "stitch_3d", "slice_id": 4,
               "metrics": {"confidence": 0.9, "n_pairs": 10, "n_fallback_pairs": 2, "nonzero_fraction": 0.4}}
    assert record_flags(healthy) == []


def test_a_tile_placed_by_overlaps_whose_standard_error_exceeds_the_tile_bar_is_flagged():
    # audit66's A slice 1: tile (2, 2), full tissue, placed along an edge link's ridge, sigma_px 7.16, no flag
    tiles = {"(0, 4)": {"source": "stage", "weak": False, "sigma_px": 5.8},  # the stage's scatter: its own flag
             "(4, 4)": {"source": "pairs", "weak": True, "sigma_px": 2.4},  # weak links only: its own flag
             "(1, 1)": {"source": "pairs", "weak": False, "sigma_px": 1.5},  # at the bar
             "(3, 3)": {"source": "pairs", "weak": False, "sigma_px": None}}
    record = {"step": "stitch_3d", "slice_id": 1, "metrics": {"tiles": tiles}}
    assert record_flags(record) == []
    tiles["(2, 2)"] = {"source": "pairs", "weak": False, "weak_along_ridge": True, "sigma_px": 7.16}
    [flag] = record_flags(record)
    assert (flag.slice_id, flag.step) == (1, "stitch_3d")
    assert flag.message.startswith("1 tile(s) placed by overlaps with a standard error above the 1.5 px tile bar "
                                   "((2, 2) 7.16 px)")
    assert "seams around the named tiles" in advice(flag.message)
    tiles.update({f"(3, {i})": {"source": "pairs", "weak": False, "sigma_px": 2.6} for i in range(7)})
    [flag] = record_flags(record)
    assert flag.message.startswith("8 tile(s)") and "(3, 4) 2.60 px and 2 more)" in flag.message


def test_a_slice_whose_focus_width_is_unlike_the_acquisitions_is_flagged_in_the_report(tmp_path):
    # widths as the matrix's thickness seed 4 read them: slice 4's agarose cells held tissue (10% narrow);
    # another slice fitted the other model and is compared with nobody
    widths = {0: 45.4, 1: 44.9, 2: 44.9, 3: 45.7, 4: 39.8, 5: 44.9, 6: 45.4, 7: 44.9}
    for slice_id, width in widths.items():
        model = "lorentzian" if slice_id == 7 else "gaussian"
        write_qc_record(tmp_path / f"slice_z{slice_id:02d}_axial_corr.ome.zarr", "axial_corr",
                        {"focus_model": model, "focus_model_width_um": 30.0 if slice_id == 7 else width})
    flags = [flag for flag in collect_qc(tmp_path).flags if "focus width" in flag.message]
    assert [(flag.slice_id, flag.step) for flag in flags] == [(4, "axial_corr")]
    assert "11% below the acquisition's gaussian median 44.9" in flags[0].message
    assert "--focus_profile" in advice(flags[0].message)
    spread = [{"step": "axial_corr", "slice_id": i, "metrics": {"focus_model": "gaussian", "focus_model_width_um": w}}
              for i, w in enumerate([45.0, 43.2, 46.8, 44.1, 45.9])]  # +-4%: the spread of good estimates
    assert acquisition_flags(spread) == []
    odd = {**spread[2], "metrics": {"focus_model": "gaussian", "focus_model_width_um": 30.0}}
    assert [flag.slice_id for flag in acquisition_flags(spread[:2] + [odd])] == [2]
    assert acquisition_flags(spread[:1] + [odd]) == [], "two slices: no median to compare with"


def test_a_one_frame_acquisition_is_a_warning_of_the_whole_acquisition_not_a_red_flag(tmp_path):
    # audit66's A (n_repeat 1): volume NCC .9405 with no word in the report; two frames say nothing
    for folder, frames in (("one", {0: 1, 1: 1, 2: 1}), ("two", {0: 2, 1: 2}), ("tiff", {0: None})):
        for slice_id, n in frames.items():
            write_qc_record(tmp_path / folder / f"mosaic_grid_3d_z{slice_id:02d}.ome.zarr", "mosaic_grid_3d",
                            {"n_tiles": 9, "n_frames_averaged": n})
    one = collect_qc(tmp_path / "one")
    assert one.flags == []
    assert [(w.slice_id, w.step) for w in one.warnings] == [(None, "mosaic_grid_3d")]
    assert one.warnings[0].message.startswith("one raw frame per B-scan on slices 0, 1, 2 (n_repeat 1")
    page = render_report(one)
    warnings = page[page.index('<ul id="warnings">'):]
    assert "one raw frame per B-scan" in warnings[:warnings.index("</ul>")]
    assert '<span id="n-warnings">1</span>' in page
    for folder in ("two", "tiff"):
        assert collect_qc(tmp_path / folder).warnings == [], folder


def test_an_assumed_axial_voxel_size_is_one_warning_naming_its_slices(tmp_path):
    # a native acquisition without acquisition.json or the axial_resolution param: depths and attenuation in
    # physical units rest on the lab default (a 2 um system read as 1.5 um: attenuation 25-48 % high)
    for slice_id, source in ((0, "default"), (1, "default"), (2, "argument")):
        write_qc_record(tmp_path / f"mosaic_grid_3d_z{slice_id:02d}.ome.zarr", "mosaic_grid_3d",
                        {"n_tiles": 9, "axial_resolution_um": 1.5, "axial_resolution_source": source})
    qc = collect_qc(tmp_path)
    assert qc.flags == []
    assert [w.message[:62] for w in qc.warnings] == ["axial voxel size not given for slices 0, 1: 1.5 um assumed (th"]
    assert "axial voxel size not given" in render_report(qc)


def test_a_record_the_step_run_again_replaced_raises_no_flag_but_stays_in_the_details(tmp_path):
    # slice 4's focus estimate refused (first run, kept in axial_corr_refused/), then corrected with the
    # acquisition's profile (second run, its final product in axial_corr/)
    refused = "focus correction skipped: none (no distinct background)"
    for folder, mode, flags in (("axial_corr_refused", "none (no distinct background)", [refused]),
                                ("axial_corr", "borrowed (no distinct background; from slices 0, 1)",
                                 ["focus profile borrowed from the acquisition"])):
        write_qc_record(tmp_path / folder / "slice_z04_axial_corr.ome.zarr", "axial_corr", {"focus_mode": mode},
                        flags=flags)
    write_qc_record(tmp_path / "axial_corr" / "slice_z05_axial_corr.ome.zarr", "axial_corr", {"focus_mode": "none"},
                    flags=[refused])
    collection = collect_qc(tmp_path)
    raised = sorted((flag.slice_id, flag.message) for flag in collection.flags)
    assert raised == [(4, "focus profile borrowed from the acquisition"), (5, refused)]
    replaced = [(entry.path, entry.replaced_by) for entry in collection.entries if entry.replaced_by]
    assert replaced == [("axial_corr_refused/slice_z04_axial_corr_qc.json", "axial_corr/slice_z04_axial_corr_qc.json")]
    page = render_report(collection)
    assert "Replaced by axial_corr/slice_z04_axial_corr_qc.json" in page
    assert page.count("none (no distinct background)") >= 1, "the replaced record's metrics stay in the details"


def test_failed_slices_accept_the_three_spellings():
    assert slice_reasons({"3": "no tiles", "1": "crash"}) == [(1, "crash"), (3, "no tiles")]
    assert slice_reasons([4, 2]) == [(2, "no reason given"), (4, "no reason given")]
    assert slice_reasons([{"slice_id": 9, "reason": "excluded by user"}]) == [(9, "excluded by user")]


# ---------------------------------------------------------------- report


def _build_results(root: Path) -> int:
    """Write a synthetic run's QC under ``root``; return the number of figures written."""
    rng = np.random.default_rng(11)
    n_figures = 0
    for slice_id in SLICES:
        tag = f"z{slice_id:02d}"
        aip = rng.random((20, 30))
        write_qc_record(root / "mosaics" / f"mosaic_grid_3d_{tag}.ome.zarr", "mosaic_grid_3d",
                        {"n_tiles": 6, "nonzero_fraction": 1.0},
                        {"aip": (aip * 255).astype(np.uint8)})
        confidence = 0.3 if slice_id == LOW_CONFIDENCE_SLICE else 0.95
        write_qc_record(root / "stitched" / f"slice_{tag}_stitch_3d.ome.zarr", "stitch_3d",
                        {"confidence": confidence, "n_pairs": 7, "n_fallback_pairs": 1,
                         "pairs": [[[0, 0], [0, 1]]]},
                        {"residuals": np.tile(np.linspace(0, 1, 16), (8, 1))})
        nonzero = 0.0 if slice_id == EMPTY_SLICE else 0.6
        write_qc_record(root / "normalized" / f"slice_{tag}_normalize.ome.zarr", "normalize",
                        {"nonzero_fraction": nonzero, "p_high": 1.25})
        n_figures += 2
    ids = list(SLICES)
    shifts = [[0, 0], [1, 0.5], [0.5, 1], [25, -3], [1, 1]]
    write_qc_record(root / "brain.ome.zarr", "stack",
                    {"slice_ids": ids, "shifts_px": shifts, "overlap_ncc": [None, 0.9, 0.8, 0.7, 0.9],
                     "failed_slices": {str(FAILED_SLICE): "no tiles found"}},
                    {"shifts": line_chart(ids, [Panel("shift (px)", [Series("dy", np.array(shifts)[:, 0], BLUE)])],
                                          "slice id", "slice-to-slice shifts")})
    (root / "brain_screenshot.png").write_bytes(  # images no record names: a whole-brain one ...
        (root / "brain_qc_shifts.png").read_bytes())
    (root / "qc").mkdir()
    (root / "qc" / "slice_z12_normalize.png").write_bytes(  # ... and one of slice 12
        (root / "mosaics" / "mosaic_grid_3d_z12_qc_aip.png").read_bytes())
    (root / ".brain_qc.json.partial-99").write_text("{")  # a killed write: must be ignored
    return n_figures + 3


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    n_images = _build_results(root)
    html_path = root.parent / "report.html"
    write_report(root, html_path, title="Synthetic run")
    return root, html_path, n_images


class _ReportParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.row_ids, self.sources, self.flag_slices, self.links = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-slice-id" in attrs:
            self.row_ids.append(int(attrs["data-slice-id"]))
        if tag == "li" and "data-slice-id" in attrs:
            self.flag_slices.append(attrs["data-slice-id"])
        if "src" in attrs:
            self.sources.append(attrs["src"])
        if "href" in attrs:
            self.links.append(attrs["href"])


def test_report_has_one_row_per_slice_and_embeds_every_image(results):
    root, html_path, n_images = results
    parser = _ReportParser()
    parser.feed(html_path.read_text())
    assert parser.row_ids == sorted([*SLICES, FAILED_SLICE])
    assert len(parser.sources) == n_images + len(SLICES) + 1, "figures, one thumbnail a slice, continuity"
    assert all(src.startswith("data:image/webp;base64,") for src in parser.sources)
    assert all(link.startswith("#") for link in parser.links), "no external resource"
    assert "http://" not in html_path.read_text() and "https://" not in html_path.read_text()


def test_unnamed_images_go_to_their_slice_or_to_other_images(results):
    _, html_path, _ = results
    page = html_path.read_text()
    slice_12 = page[page.index('<details id="slice-12">'):]
    slice_12 = slice_12[:slice_12.index('<details id="slice-', 10) if '<details id="slice-' in slice_12[10:] else None]
    assert 'alt="qc/slice_z12_normalize.png"' in slice_12
    whole = page[page.index('<details id="whole-brain">'):page.index('<details id="slice-')]
    assert 'alt="brain_screenshot.png"' in whole and "slice_z12_normalize.png" not in whole


def test_report_raises_the_expected_red_flags(results):
    root, _, _ = results
    flags = {(f.slice_id, f.message.split(" ")[0]) for f in collect_qc(root).flags}
    assert flags == {(LOW_CONFIDENCE_SLICE, "low"), (EMPTY_SLICE, "empty:"),
                     (OUTLIER_SLICE, "outlier"), (FAILED_SLICE, "failed:")}


def test_report_is_deterministic_and_independent_of_location(results, tmp_path):
    root, html_path, _ = results
    copy = tmp_path / "elsewhere"
    shutil.copytree(root, copy)
    assert render_report(collect_qc(copy), "Synthetic run") == html_path.read_text()


def test_text_from_records_is_escaped(tmp_path):
    write_qc_record(tmp_path / "slice_z00_normalize.ome.zarr", "normalize",
                    {"<b>name</b>": "<script>alert(1)</script>"}, flags=["a & b < c"])
    page = render_report(collect_qc(tmp_path), title="<i>T</i>")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;name&lt;/b&gt;" in page and "a &amp; b &lt; c" in page and "<i>T</i>" not in page


def test_unreadable_record_becomes_a_red_flag(tmp_path):
    write_qc_record(tmp_path / "slice_z00_normalize.ome.zarr", "normalize", {"nonzero_fraction": 0.5})
    (tmp_path / "slice_z01_normalize_qc.json").write_text("{truncated")
    (tmp_path / "slice_z03_normalize_qc.json").write_text("[1, 2]")
    (tmp_path / "slice_z04_normalize_qc.json").write_text('{"step": "normalize", "metrics": [1]}')
    write_qc_record(tmp_path / "pipeline", "pipeline", {"failed_slices": ["seven"]})
    (tmp_path / "slice_z02_stitch_3d_qc.json").write_text(json.dumps({"step": "stitch_3d", "metrics": {},
                                                                      "figures": {"gone": "gone.png"}}))
    flags = collect_qc(tmp_path).flags
    assert [(f.slice_id, f.step) for f in flags] == [(None, "pipeline")] + [(None, "report")] * 3 + [(2, "stitch_3d")]
    assert flags.pop(0).message == ("pipeline_qc.json: metric failed_slices not understood "
                                    "('seven' is not a slice id (a whole number))")
    assert "slice_z01_normalize_qc.json: unreadable QC record" in flags[0].message
    assert "slice_z03_normalize_qc.json: not a QC record (missing or ill-typed step, metrics)" in flags[1].message
    assert "slice_z04_normalize_qc.json: not a QC record (missing or ill-typed metrics)" in flags[2].message
    assert flags[3].message == "figure gone.png is missing"


def _report_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT_SCRIPT), *args], capture_output=True, text=True)


def test_cli_writes_refuses_and_reports_errors(results, tmp_path):
    root, html_path, _ = results
    out = tmp_path / "r é port.html"
    assert _report_cli(str(root), str(out), "--title", "Synthetic run", "-q").returncode == 0
    assert out.read_bytes() == html_path.read_bytes()
    refused = _report_cli(str(root), str(out))
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "already exists" in refused.stderr
    missing = _report_cli(str(tmp_path / "nowhere"), str(tmp_path / "x.html"))
    assert missing.returncode == 2 and "nowhere is not a directory" in missing.stderr
    assert not (tmp_path / "x.html").exists()
    (tmp_path / "empty").mkdir()
    empty = _report_cli(str(tmp_path / "empty"), str(tmp_path / "x.html"))
    assert empty.returncode == 0, "a run without QC records still gets a report ..."
    assert "no *_qc.json record found" in (tmp_path / "x.html").read_text(), "... that says so"


# ---------------------------------------------------------------- real browser


def _chromium(html_path: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *extra, html_path.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_fits_1280_px_and_every_image_decodes_in_headless_chromium(results, tmp_path):
    _, html_path, n_images = results
    n_total = n_images + len(SLICES) + 1
    dom = _chromium(html_path, tmp_path / "profile", "--dump-dom", "--window-size=1280,900")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _ReportParser()
    parser.feed(dom.stdout)
    assert parser.row_ids == sorted([*SLICES, FAILED_SLICE])
    check = dom.stdout[dom.stdout.index('id="render-check"'):].split(">", 1)[0]
    assert f'data-images-total="{n_total}"' in check
    assert f'data-images-decoded="{n_total}"' in check, "some embedded image failed to decode"
    assert 'data-overflow-px="0"' in check, f"page wider than a 1280 px window: {check}"

    shot_path = tmp_path / "shot.png"
    shot = _chromium(html_path, tmp_path / "profile", f"--screenshot={shot_path}", "--window-size=1280,1000")
    assert shot.returncode == 0 and shot_path.is_file(), shot.stderr[-2000:]
    pixels = np.asarray(Image.open(shot_path).convert("RGB"), dtype=np.int16)
    flagged_rows = np.all(np.abs(pixels - [0xFD, 0xE2, 0xE2]) <= 2, axis=-1)
    assert pixels.std() > 10, "screenshot is blank"
    assert flagged_rows.sum() > 1000, "flagged slice rows must be highlighted"


# ---------------------------------------------------------------- hostile records (issue 12, items 5 and 7)

SECRET = b"root:SECRET-HASH-8d1f:19000:0:99999:7:::\n"


def _page_leaks(page: str, secret: bytes) -> bool:
    """Whether ``secret`` appears in ``page`` as text or base64 (at any of the 3 alignments)."""
    import base64
    if secret.decode() in page:
        return True
    return any(base64.b64encode(secret[shift:])[4:-4].decode() in page for shift in range(3))


@pytest.mark.parametrize("figure_path", ["ABSOLUTE", "../secret.png", "sub/../../secret.png", "link.png",
                                         "not_an_image.png"])
def test_figures_outside_the_record_folder_are_refused(tmp_path, figure_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"\x89PNG\r\n\x1a\n" + SECRET)  # looks like a PNG: refused for its place
    results = tmp_path / "results"
    write_qc_record(results / "slice_z00_stitch_3d.ome.zarr", "stitch_3d", {"confidence": 0.9})
    (results / "link.png").symlink_to(outside)
    (results / "not_an_image.png").write_bytes(SECRET)
    record_path = results / "slice_z00_stitch_3d_qc.json"
    record = json.loads(record_path.read_text())
    record["figures"] = {"residuals": str(outside) if figure_path == "ABSOLUTE" else figure_path}
    record_path.write_text(json.dumps(record))
    collection = collect_qc(results)
    assert collection.entries[0].figures == {}
    refused = [f for f in collection.flags if "refused" in f.message]
    assert [(f.slice_id, f.step) for f in refused] == [(0, "stitch_3d")]
    page = render_report(collection)
    assert not _page_leaks(page, SECRET), "a file outside the record's folder reached the report"
    assert "refused" in page


def test_stray_images_that_are_not_images_or_link_out_are_not_embedded(tmp_path):
    (tmp_path / "secret.txt").write_bytes(SECRET)
    results = tmp_path / "results"
    write_qc_record(results / "slice_z00_normalize.ome.zarr", "normalize", {"nonzero_fraction": 0.5})
    (results / "qc").mkdir()
    (results / "qc" / "slice_z00_normalize.png").symlink_to(tmp_path / "secret.txt")
    (results / "qc" / "volume.png").write_bytes(SECRET)
    collection = collect_qc(results)
    assert collection.other_images == {}
    assert not _page_leaks(render_report(collection), SECRET)


@pytest.mark.parametrize(
    ("metrics", "bad"),
    [({"failed_slices": {"abc": "x"}}, "failed_slices"),
     ({"slice_ids": ["x"], "shifts_px": [[0, 0]], "overlap_ncc": [0.1]}, "slice_ids"),
     ({"excluded_slices": [{"reason": "r"}]}, "excluded_slices"),
     ({"failed_slices": [1e400]}, "failed_slices"),
     ({"failed_slices": 7}, "failed_slices"),
     ({"slice_ids": [0, 10**12], "shifts_px": [[0, 0], [1, 1]], "failed_slices": {"x": 1}}, "failed_slices"),
     ({"slice_ids": [True, 2.5]}, "slice_ids")],
)
def test_ill_typed_records_become_red_flags_not_crashes(tmp_path, metrics, bad):
    results = tmp_path / "results"
    results.mkdir()
    write_qc_record(results / "slice_z01_normalize.ome.zarr", "normalize", {"nonzero_fraction": 0.5})
    text = json.dumps({"schema": "linumpy-qc/1", "step": "stack", "metrics": metrics, "flags": [],
                       "figures": {}}).replace("1e+400", "1e400")
    (results / "volume_qc.json").write_text(text)
    collection = collect_qc(results)
    assert any(f.step == "stack" and f"metric {bad} not understood" in f.message for f in collection.flags)
    assert f"metric {bad} not understood" in render_report(collection)
    if bad == "failed_slices" and "abc" in text:  # once through the script: no traceback, exit 0
        out = tmp_path / "report.html"
        done = _report_cli(str(results), str(out))
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert f"metric {bad} not understood" in out.read_text()


def test_everything_a_record_says_is_escaped(tmp_path):
    evil = '<img src=x onerror="alert(1)">'
    out = tmp_path / "slice_z00_normalize.ome.zarr"
    write_qc_record(out, "normalize", {evil: evil, "nested": {evil: [evil]}}, flags=[evil])
    record_path = qc_record_path(out)
    record = json.loads(record_path.read_text())
    record["step"] = evil
    record["warnings"] = [evil]
    record["figures"] = {evil: evil}
    record_path.write_text(json.dumps(record))
    page = render_report(collect_qc(tmp_path), title=evil)
    parser = _ReportParser()
    parser.feed(page)
    assert all(src.startswith("data:image/webp;base64,") for src in parser.sources), "a record injected a tag"
    assert "<img src=x" not in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") >= 5


# ---------------------------------------------------------------- warnings reach the report


def test_warnings_a_step_logs_reach_its_record_and_the_report(tmp_path):
    import logging

    from linumpy.cli import make_parser, run
    from linumpy.qc import warning_log

    out = tmp_path / "stitch_3d" / "slice_z04_stitch_3d.ome.zarr"

    def main(args):
        logging.getLogger("linumpy.stitching").warning("fitted row step %.2f px differs from %.2f px", 107.74, 109.0)
        logging.getLogger("linumpy.stitching").info("not a warning")
        write_qc_record(out, "stitch_3d", {"confidence": 0.9})

    warning_log.reset()
    try:
        run(make_parser("test"), main, ["-q"])
    finally:
        logging.getLogger().removeHandler(warning_log._LOG)
        warning_log.reset()
    assert read_qc_record(qc_record_path(out))["warnings"] == ["fitted row step 107.74 px differs from 109.00 px"]
    collection = collect_qc(tmp_path)
    assert [(w.slice_id, w.step, w.message) for w in collection.warnings] == [
        (4, "stitch_3d", "fitted row step 107.74 px differs from 109.00 px")]
    page = render_report(collection)
    warnings = page[page.index('<ul id="warnings">'):]
    assert "fitted row step 107.74 px differs from 109.00 px" in warnings[:warnings.index("</ul>")]
    assert '<span class="warn">1 warning</span>' in page, "the slice's row says it has a warning"


def test_every_metric_shown_has_a_label_a_unit_and_a_glossary_entry(results):
    from linumpy.qc.glossary import describe

    _, html_path, _ = results
    page = html_path.read_text()
    glossary = page[page.index('<section id="glossary">'):]
    table = page[page.index('<table id="slice-table">'):page.index("</thead>", page.index('<table id="slice-table">'))]
    headers = table.split("<th")[4:-1]  # after thead, slice and view; before status
    assert len(headers) >= 3
    assert all("<small>" in h for h in headers), "every metric column has a unit"
    for name in ("confidence", "n_fallback_pairs", "overlap_ncc", "p_high", "pairs"):
        assert f"<code>{name}</code>" in glossary
    assert describe("some_new_metric_um").unit == "µm", "unknown metrics get a unit from their suffix"


def test_orthogonal_planes_cut_through_tissue_not_through_a_gap():
    volume = np.zeros((9, 10, 12))
    volume[:4, 2:8, 3:9] = 1.0
    volume[5:, 2:8, 3:9] = 1.0  # slice 4 (the centre) is an excluded slice's gap
    xy, xz, yz = orthogonal_planes(da.from_array(volume, chunks=3))
    assert xy.sum() == 36, "the xy view must show tissue, not the gap"
    assert xz.sum() == 8 * 6 and yz.sum() == 8 * 6


def test_mosaic_grid_figure_scale_bar_in_micrometres():
    image = np.asarray(figures.mosaic_grid_figure(np.zeros((30, 40)), (3, 4), pixel_um=2.5).convert("L"))
    # 40 px of 2.5 um drawn 600 px wide: 1/6 um a pixel; a quarter of the width is 25 um: a 20 um bar, 120 px
    white = image[TITLE_HEIGHT:] == 255
    runs = [np.diff(np.flatnonzero(np.diff(np.r_[0, row, 0]))) for row in white.astype(np.int8)]
    assert max(max(run[::2], default=0) for run in runs) == 121
