"""Smoke test of the benchmark-only foreign acquisition generator (``benchmarks/foreign/generate.py``).

The full run (generate, reconstruct, score) is in ``benchmarks/foreign/run.py``;
here a tiny acquisition is written and read back as a user's would be.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from linumpy.io.acquisition import open_acquisition

GENERATOR = Path(__file__).resolve().parents[1] / "benchmarks" / "foreign" / "generate.py"


def _generator():
    spec = importlib.util.spec_from_file_location("foreign_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_tiny_foreign_acquisition_reads_back_with_its_geometry(tmp_path):
    generate = _generator()
    config = generate.Config(n_slices=2, grid=(2, 2), tile=(40, 24, 24), thickness=12.0, surface=6.0,
                             focus=15.0, rayleigh=8.0, stage_error=1.0, slice_shift=1.0, motor_glitch_um=0.0)
    truth = generate.generate(tmp_path, seed=0, cfg=config)
    acquisition = open_acquisition(tmp_path)
    assert acquisition.slice_ids == [0, 1]
    first = acquisition.slice(0)
    assert first.grid_shape == (2, 2) and first.tile_shape == (40, 24, 24)
    np.testing.assert_allclose(first.tile_step_px, config.step)  # stage y runs against the rows
    np.testing.assert_allclose(first.resolution_um, (config.axial_um, config.lateral_um, config.lateral_um))
    tile = first.tiles[(1, 1)].read()
    assert tile.shape == (40, 24, 24) and np.isfinite(tile).all()
    # dark above the cut (water), tissue or agarose below it
    assert tile[:3].mean() < 0.2 * tile[8:20].mean()
    motor = [acquisition.slice(k).stage_position_mm["z"] for k in (0, 1)]
    assert np.isclose(motor[1] - motor[0], config.thickness * config.axial_um / 1000)
    assert len(truth["slices"][1]["tile_positions_px"]) == 4


def test_a_smaller_sample_leaves_a_third_of_a_6x6_grid_in_the_gel(tmp_path):
    """``sample_extent`` 0.75 shrinks the outline ellipse so that ~30 % of a 6 x 6 grid's tiles see gel only
    (issue #10's "6x6 with ~30 % empty tiles"): those tiles are dim and hold no sample in the truth's labels."""
    generate = _generator()
    config = generate.Config(n_slices=1, grid=(6, 6), tile=(10, 16, 16), thickness=4.0, surface=2.0, focus=5.0,
                             rayleigh=4.0, stage_error=1.0, slice_shift=1.0, motor_glitch_um=0.0, overlap=0.12,
                             sample_extent=0.75)
    truth = generate.generate(tmp_path, seed=1, cfg=config)
    fraction = {(r, c): f for r, c, f in truth["slices"][0]["tile_tissue_fraction"]}
    gel = [tile for tile, f in fraction.items() if f == 0]
    assert 0.25 <= len(gel) / len(fraction) <= 0.5
    assert (0, 0) in gel and fraction[(2, 3)] == 1.0  # corners in the gel, the centre in the sample
    labels = np.load(tmp_path / "ground_truth" / "labels.npy")
    margin = truth["margin_px"]
    shift = truth["slices"][0]["sample_shift_px"]
    acquisition = open_acquisition(tmp_path).slice(0)
    mean = {}
    for r, c, y, x in truth["slices"][0]["tile_positions_px"]:
        y0, x0 = (int(round(v + margin + s)) for v, s in zip((y, x), shift, strict=True))
        assert (labels[:, y0:y0 + 16, x0:x0 + 16].max() == 0) == ((r, c) in gel)
        mean[(r, c)] = acquisition.tiles[(r, c)].read()[4:].mean()
    assert max(mean[t] for t in gel) < 0.5 * np.median([mean[t] for t, f in fraction.items() if f == 1.0])


def test_every_named_kind_is_a_valid_configuration():
    """``benchmarks/foreign/kinds.py``: each kind the README names builds a generator configuration; the kinds
    whose axial voxel differs from the lab default are those that state it in an ``acquisition.json``."""
    spec = importlib.util.spec_from_file_location("foreign_kinds", GENERATOR.with_name("kinds.py"))
    kinds = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = kinds
    spec.loader.exec_module(kinds)
    configs = {name: kinds.Config(**fields) for name, fields in kinds.KINDS.items()}
    assert configs["c185"].grid == (4, 4) and configs["c185"].stage_error == 8.0
    assert configs["b90"].focus == 90 and configs["hb"].focus == 60
    assert max(r["attenuation_per_mm"] for r in configs["wm"].regions) == 20.0
    assert {name for name, c in configs.items() if c.axial_um == 3.0} == kinds.AXIAL_SIDECAR
