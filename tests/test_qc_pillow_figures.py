"""The QC figures drawn with Pillow (the stack's and the slice steps'): values where they belong, and no
matplotlib import."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
from PIL import Image

from linumpy.stack.quality import QC_VIEW_PX, views_png
from linumpy.viz.chart import BLUE, RED, Panel, Series, line_chart
from linumpy.viz.planes import orthogonal_planes


def _frame(image: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the first panel's black frame: the only long black runs."""
    black = (image == 0).all(axis=2)
    rows = np.flatnonzero(black.sum(axis=1) > image.shape[1] // 2)
    columns = np.flatnonzero(black.sum(axis=0) > 100)
    return int(columns[0]), int(rows[0]), int(columns[-1]), int(rows[1])


def test_line_chart_puts_each_value_at_its_pixel_and_breaks_the_line_at_nan():
    x, values = [0, 1, 2, 3, 4], np.array([0.0, 4.0, np.nan, 2.0, 2.0])
    chart = np.asarray(line_chart(x, [Panel("shift (px)", [Series("dy", values, BLUE)], ylim=(-1.0, 5.0),
                                              circled=[(3, 2.0)], circled_label="outlier")], "slice id", "title"))
    left, top, right, bottom = _frame(chart)

    def pixel(a: float, b: float) -> tuple[int, int]:  # x padded by 5 % of its span, y on the given limits
        return round(top + (5.0 - b) / 6.0 * (bottom - top)), round(left + (a + 0.2) / 4.4 * (right - left))

    blue = (chart == BLUE).all(axis=2)
    for a, b in zip(x, values, strict=True):
        if np.isfinite(b):
            row, column = pixel(a, b)
            assert blue[row - 1:row + 2, column - 1:column + 2].all(), (a, b)
    gap = slice(pixel(1, 0)[1] + 5, pixel(3, 0)[1] - 5)
    assert not blue[top + 1:bottom, gap].any(), "no line across the NaN"
    assert blue[top + 1:bottom, pixel(3, 0)[1] + 5:pixel(4, 0)[1] - 5].any(), "a line between finite values"
    row, column = pixel(3, 2.0)
    red = (chart == RED).all(axis=2)
    assert red[row - 10:row + 11, column - 10:column + 11].any() and not red[row - 4:row + 5, column - 4:column + 5].any()


def test_views_png_lays_the_planes_out_at_their_physical_size():
    volume = np.zeros((20, 64, 80), np.float32)
    volume[5:15, 20:40, 30:50] = 1.0  # a bright box, the tissue
    image = np.asarray(Image.open(io.BytesIO(views_png(orthogonal_planes(volume), (0.01, 0.01, 0.01)))))
    scale = QC_VIEW_PX / 80  # XY's long side drawn at QC_VIEW_PX
    height, width = round(64 * scale), QC_VIEW_PX
    assert image.shape == (height + 6 + round(20 * scale), width + 6 + round(20 * scale))
    xy, xz, yz = image[:height, :width], image[height + 6:, :width], image[:height, width + 6:]
    inside = (slice(round(22 * scale), round(38 * scale)), slice(round(32 * scale), round(48 * scale)))
    assert xy[inside].min() == 255 and xy[round(50 * scale), round(20 * scale)] == 0
    assert xz[round(10 * scale), round(40 * scale)] == 255 and xz[round(17 * scale), round(40 * scale)] == 0
    assert yz[round(30 * scale), round(10 * scale)] == 255 and yz[round(30 * scale), round(2 * scale)] == 0


def test_the_stack_qc_figures_do_not_import_matplotlib():
    code = """
import sys
import numpy as np
import linumpy.stack.files
from linumpy.stack.quality import shifts_png, views_png
slices = [{"slice_id": i, "motor_origin_um": [100.0 * i, 0, 0], "origin_um": [100.0 * i, 3.0 * i, 0],
           "registration": None if i == 0 else {"lateral_confidence": 0.9, "z_confidence": 0.8},
           "glitch_corrected": [], "used_registration_z": True, "used_registration_lateral": True,
           "drift_clamped": False} for i in range(4)]
shifts_png({"slice_thickness_um": 100.0, "slices": slices}, 10.0)
views_png((np.ones((8, 9)), np.ones((4, 9)), np.ones((4, 8))), (0.01, 0.01, 0.01))
print("matplotlib" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_line_chart_legend_leaves_the_data_visible():
    values = np.array([0.0, 0.0, 0.0, 0.0, 5.0])  # the last point in the top right corner, where the legend goes first
    chart = np.asarray(line_chart([0, 1, 2, 3, 4], [Panel("shift (px)", [Series("dy", values, BLUE),
                                                                      Series("dx", values * 0, BLUE, "s")],
                                                          ylim=(-1.0, 6.0))], "slice id", "title"))
    left, top, right, bottom = _frame(chart)
    row, column = round(top + (6.0 - 5.0) / 7.0 * (bottom - top)), round(left + 4.2 / 4.4 * (right - left))
    assert (chart[row, column] == BLUE).all()


def test_the_slice_steps_qc_figures_do_not_import_matplotlib():
    code = """
import sys
import numpy as np
from linumpy.qc import figures
from linumpy.qc.records import render_png
depth = np.arange(10.0)
for figure in (figures.mosaic_grid_figure(np.ones((20, 30)), (2, 3), [(0, 0)], pixel_um=3.0),
               figures.stitching_residuals_figure([((0, 0), (0, 1))], np.ones((1, 2)), [False], (1, 2)),
               figures.depth_profiles_figure(depth, {"before": depth}, 2.0),
               figures.intensity_histograms_figure({"h": np.histogram(depth)}, {"p": 5.0}),
               figures.continuity_figure([0, 1, 3], [0.0, 1.0, 2.0], [None, 0.5, 0.9], [2])):
    render_png(figure)
print("matplotlib" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
