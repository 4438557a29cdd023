"""Intensity normalization: histograms, tissue mask, flat-field, the script.

The accuracy test runs the axial correction and the normalization on every
slice of the simulator's ``tiny`` acquisition (its mosaic grids) and checks
that the tissue medians of the normalized slices agree within 5%.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.v04.image import Image
from scipy import ndimage

from linumpy.errors import InputError
from linumpy.intensity import normalize
from linumpy.intensity.axial import correct_slice
from linumpy.intensity.flatfield import FlatFieldEstimator, flatfield_map
from linumpy.intensity.histogram import LogHistogram
from linumpy.intensity.slice_normalization import NormalizeSettings, normalize_slice
from linumpy.io.acquisition import open_acquisition
from linumpy.io.zarr import read_omezarr, read_omezarr_info, save_omezarr
from linumpy.mosaic.grid import write_mosaic_grid
from linumpy.qc.records import qc_record_path, read_qc_record

SCRIPT = Path(__file__).resolve().parents[1] / "bin" / "linum_normalize.py"
RESOLUTION = (0.0015, 0.003, 0.003)


def test_histogram_percentiles_match_numpy_within_a_bin():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.zeros(500), rng.lognormal(0.0, 1.5, 20000)])
    histogram = LogHistogram()
    for part in np.array_split(values, 7):  # block by block
        histogram.add(part)
    for q in (1, 5, 50, 95, 99.5):
        expected = np.percentile(values, q)
        assert histogram.percentile(q) == pytest.approx(expected, rel=0.012, abs=1e-12)
    assert histogram.zeros == 500 and histogram.total == values.size


def test_otsu_threshold_separates_two_populations():
    rng = np.random.default_rng(1)
    histogram = LogHistogram()
    histogram.add(np.concatenate([rng.lognormal(np.log(0.02), 0.3, 5000), rng.lognormal(np.log(1.0), 0.3, 5000)]))
    assert 0.05 < normalize.tissue_threshold(histogram) < 0.5
    assert normalize.tissue_threshold(LogHistogram()) is None


def test_output_dtypes():
    values = normalize.normalize_values(np.array([-1.0, 0.0, 0.5, 1.0, 3.0]), 0.0, 1.0)
    assert values.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert normalize.to_dtype(values, "uint16").tolist() == [0, 0, 32768, 65535, 65535]


def vignetted_tiles(n_tiles: int, tile: int = 48, seed: int = 2):
    """An n x n mosaic of tiles: smooth random anatomy times a known vignetting."""
    rng = np.random.default_rng(seed)
    size = n_tiles * tile
    anatomy = ndimage.gaussian_filter(rng.normal(size=(size, size)), 10)
    anatomy = np.exp(0.3 * anatomy / anatomy.std())
    u, v = np.meshgrid(np.linspace(-1, 1, tile), np.linspace(-1, 1, tile), indexing="ij")
    field = 1.0 - 0.15 * (u**2 + v**2) + 0.05 * u
    image = anatomy * np.tile(field, (n_tiles, n_tiles)) * rng.gamma(8.0, 1 / 8.0, (size, size))
    return image, field / field.mean()


def test_flatfield_is_recovered_from_many_tiles():
    image, truth = vignetted_tiles(10)
    estimator = FlatFieldEstimator(truth.shape)
    tile = truth.shape[0]
    for row in range(10):
        for col in range(10):
            part = image[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile]
            estimator.add(part, np.ones(part.shape, bool))
    field = estimator.estimate()
    assert np.sqrt(np.mean((field / truth - 1) ** 2)) < 0.02  # measured ~1%
    assert np.abs(field / truth - 1).max() < 0.06
    gain = flatfield_map(field, [(r * tile, c * tile) for r in range(10) for c in range(10)], (0, 0), image.shape)
    corrected = image / gain
    # the mean tile, smoothed past the speckle and anatomy left after averaging 100 tiles
    tile_means = ndimage.gaussian_filter(corrected.reshape(10, tile, 10, tile).mean(axis=(0, 2)), 4)
    raw_means = ndimage.gaussian_filter(image.reshape(10, tile, 10, tile).mean(axis=(0, 2)), 4)
    assert np.std(tile_means) < 0.3 * np.std(raw_means)


def test_flatfield_needs_tissue():
    estimator = FlatFieldEstimator((8, 8))
    estimator.add(np.ones((8, 8)), np.zeros((8, 8), bool))
    assert estimator.estimate() is None and estimator.n_tiles == 0


# --- whole slices --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_axial(tiny_acquisition, tmp_path_factory) -> dict[int, Path]:
    """Axially corrected mosaic grids of every slice of the tiny acquisition."""
    folder = tmp_path_factory.mktemp("normalize_inputs")
    acquisition = open_acquisition(tiny_acquisition)
    out = {}
    for slice_id in acquisition.slice_ids:
        grid = folder / f"mosaic_grid_3d_z{slice_id:02d}.ome.zarr"
        write_mosaic_grid(acquisition.slice(slice_id), grid, folder / f"aip_z{slice_id:02d}.ome.zarr", n_levels=0)
        out[slice_id] = folder / f"slice_z{slice_id:02d}_axial_corr.ome.zarr"
        correct_slice(grid, out[slice_id], n_levels=0)
    return out


def tissue_median(path: Path, source: Path) -> float:
    """Median of the normalized voxels inside the tissue mask the normalization used."""
    threshold = read_omezarr_info(path).attributes["tissue_threshold"]
    source_volume = read_omezarr(source)[0].compute()
    mask = normalize.smooth_aip(source_volume.mean(axis=0)) > threshold
    return float(np.median(read_omezarr(path)[0].compute()[:, mask]))


@pytest.mark.parametrize("flatfield", [False, True])
def test_tissue_medians_of_all_slices_agree(tiny_axial, tmp_path, flatfield):
    medians = []
    for slice_id, source in tiny_axial.items():
        out = tmp_path / f"slice_z{slice_id:02d}_normalize.ome.zarr"
        attributes = normalize_slice(source, out, NormalizeSettings(flatfield=flatfield), n_levels=1)
        assert attributes["flatfield"] is flatfield
        assert 0.3 < attributes["tissue_fraction"] < 0.95
        normalized = read_omezarr(out)[0]
        assert float(normalized.min()) >= 0.0 and float(normalized.max()) == 1.0
        medians.append(tissue_median(out, source))
    medians = np.array(medians)
    assert (medians.max() - medians.min()) / medians.mean() < 0.05, medians  # measured 4.0% / 2.9%


def test_normalization_removes_a_slice_gain(tiny_axial, tmp_path):
    source = tiny_axial[0]
    volume, resolution = read_omezarr(source)
    attributes = read_omezarr_info(source).attributes
    save_omezarr(volume * np.float32(3.7), tmp_path / "bright.ome.zarr", resolution, n_levels=0,
                 attributes=attributes)
    normalize_slice(source, tmp_path / "a.ome.zarr", n_levels=0)
    normalize_slice(tmp_path / "bright.ome.zarr", tmp_path / "b.ome.zarr", n_levels=0)
    a, b = (read_omezarr(tmp_path / name)[0].compute() for name in ("a.ome.zarr", "b.ome.zarr"))
    assert np.abs(a - b).max() < 0.02  # histogram bins of 1.2% set the precision


def test_uint16_output_validates_and_keeps_attributes(tiny_axial, tmp_path):
    out = tmp_path / "slice_z00_normalize.ome.zarr"
    normalize_slice(tiny_axial[0], out, NormalizeSettings(dtype="uint16", percentiles=(0.5, 99.5)), n_levels=1)
    Image.from_zarr(zarr.open_group(str(out), mode="r"))
    info = read_omezarr_info(out)
    assert info.dtype == np.uint16 and info.shape == read_omezarr_info(tiny_axial[0]).shape
    assert info.attributes["normalize_percentiles"] == [0.5, 99.5]
    assert info.attributes["slice_id"] == 0 and info.attributes["focus_mode"] == "background"
    data = read_omezarr(out)[0].compute()
    assert data.max() == 65535 and data.min() == 0


def test_qc_record_of_the_normalization(tiny_axial, tmp_path):
    source, out = tiny_axial[0], tmp_path / "slice_z00_normalize.ome.zarr"
    attributes = normalize_slice(source, out, n_levels=0)
    record = read_qc_record(qc_record_path(out))
    metrics = record["metrics"]
    assert record["step"] == "normalize" and record["slice_id"] == 0 and record["flags"] == []
    assert [metrics["p_low"], metrics["p_high"]] == attributes["normalize_values"]
    assert metrics["tissue_fraction"] == attributes["tissue_fraction"]
    normalized = read_omezarr(out)[0].compute()
    assert metrics["nonzero_fraction"] == pytest.approx(np.count_nonzero(normalized) / normalized.size, abs=1e-6)
    # the median read from the histogram: exact to a bin (1.2%) before normalization
    assert metrics["tissue_median_after"] == pytest.approx(tissue_median(out, source), abs=0.02)
    figure = out.parent / record["figures"]["intensity_histograms"]
    before = [qc_record_path(out).read_bytes(), figure.read_bytes()]
    normalize_slice(source, out, n_levels=0, overwrite=True)
    assert [qc_record_path(out).read_bytes(), figure.read_bytes()] == before


# --- bad input -----------------------------------------------------------------------------


def test_empty_slice_gives_zeros(tmp_path, caplog):
    save_omezarr(np.zeros((10, 16, 16), np.float32), tmp_path / "in.ome.zarr", RESOLUTION, n_levels=0)
    with caplog.at_level(logging.WARNING):
        attributes = normalize_slice(tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr", n_levels=0)
    assert "empty slice" in caplog.text and attributes["normalize_values"] is None
    assert not read_omezarr(tmp_path / "out.ome.zarr")[0].compute().any()
    record = read_qc_record(qc_record_path(tmp_path / "out.ome.zarr"))
    assert record["metrics"]["nonzero_fraction"] == 0 and record["metrics"]["p_high"] is None
    assert record["flags"] and record["figures"] == {}


def test_bad_inputs_raise_input_errors(tmp_path):
    volume = np.ones((10, 16, 16), np.float32)
    volume[3, 4, 5] = np.nan
    save_omezarr(volume, tmp_path / "nan.ome.zarr", RESOLUTION, n_levels=0)
    with pytest.raises(InputError, match="NaN"):
        normalize_slice(tmp_path / "nan.ome.zarr", tmp_path / "out.ome.zarr")
    assert not list(tmp_path.glob("*out*")) and not list(tmp_path.glob(".normalize-aip-*"))
    save_omezarr(np.ones((16, 16), np.float32), tmp_path / "flat.ome.zarr", RESOLUTION[1:], n_levels=0)
    with pytest.raises(InputError, match="\\(z, y, x\\) volume"):
        normalize_slice(tmp_path / "flat.ome.zarr", tmp_path / "out.ome.zarr")
    save_omezarr(np.ones((10, 16, 16), np.float32), tmp_path / "plain.ome.zarr", RESOLUTION, n_levels=0)
    with pytest.raises(InputError, match="tile_shape"):
        normalize_slice(tmp_path / "plain.ome.zarr", tmp_path / "out.ome.zarr", NormalizeSettings(flatfield=True))
    with pytest.raises(InputError, match="LOW < HIGH"):
        normalize_slice(tmp_path / "plain.ome.zarr", tmp_path / "out.ome.zarr", NormalizeSettings(percentiles=(99, 1)))


def test_script_exit_codes(tmp_path):
    volume = np.random.default_rng(0).gamma(2.0, 0.5, (10, 16, 16)).astype(np.float32)
    save_omezarr(volume, tmp_path / "in.ome.zarr", RESOLUTION, n_levels=0)
    command = [sys.executable, str(SCRIPT), str(tmp_path / "in.ome.zarr"), str(tmp_path / "out.ome.zarr"),
               "-q", "--n_levels", "0", "--dtype", "uint16"]
    assert subprocess.run(command, capture_output=True).returncode == 0
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 2 and "already exists" in refused.stderr
    bad = subprocess.run([*command, "-f", "--flatfield"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize(("sigma_px", "shape"), [(2.0, (70, 45)), (2.3, (70, 45)), (0.7, (70, 45)), (2.0, (12, 45))])
def test_smoothed_aip_chunk_by_chunk_is_the_whole_map_smoothed(tmp_path, monkeypatch, sigma_px, shape):
    """The scratch map smoothed chunk by chunk with a halo (on two threads) has the bits of the whole map smoothed
    at once, and its histogram the counts of the whole map's. Every block is written as whole chunks, also where
    the map is narrower than a chunk (chunks (12, 16): blocks of 12 shared chunks, written part by part by two
    threads at once, losing writes: the tissue mask of a 96-A-line-high slice changed from run to run)."""
    from linumpy.intensity.histogram import LogHistogram
    from linumpy.intensity.slice_normalization import _scratch_map, _store_smoothed
    from linumpy.io.zarr import OmeZarrWriter

    rng = np.random.default_rng(3)
    aip = rng.gamma(2.0, 1.0, shape).astype(np.float32)  # chunks of 16: partial chunks at both far edges
    writer = _scratch_map(tmp_path / "aip.ome.zarr", aip.shape, (16, 16))
    writer[:] = aip

    def refused(self, reason):
        raise AssertionError(f"a block written in part of a chunk: {reason}")

    monkeypatch.setattr(OmeZarrWriter, "_stop_pyramid", refused)
    smoothed, histogram = _store_smoothed(writer.stored_level0(), tmp_path / "smoothed.ome.zarr", sigma_px, 2)
    whole = normalize.smooth_aip(aip, sigma_px)
    assert smoothed[:, :].tobytes() == whole.tobytes()
    expected = LogHistogram()
    expected.add(whole)
    assert np.array_equal(histogram.counts, expected.counts) and histogram.zeros == expected.zeros


def test_the_scratch_maps_are_removed_on_their_own_thread_while_the_output_is_written(tmp_path, monkeypatch):
    """The scratch directory (the AIP and its smoothed map) is deleted on the cleanup thread, and that deletion
    has started before the output's first block is written; none is left, and the output is the one written with
    the deletion on the calling thread."""
    import threading

    from linumpy.intensity import slice_normalization
    from linumpy.io import atomic

    volume = np.random.default_rng(5).gamma(2.0, 0.5, (12, 40, 40)).astype(np.float32)
    # the scratch maps are those of the flat field's passes (without it, one read and no scratch map)
    save_omezarr(volume, tmp_path / "in.ome.zarr", RESOLUTION, n_levels=0,
                 attributes={"tile_shape": [12, 20, 20], "grid_shape": [2, 2]})
    settings = NormalizeSettings(flatfield=True)
    normalize_slice(tmp_path / "in.ome.zarr", tmp_path / "plain.ome.zarr", settings, n_levels=1, workers=2)
    events = []
    removed = threading.Event()
    remove_path, apply = atomic.remove_path, slice_normalization.normalize.normalize_values

    def recorded_removal(path):
        existed = Path(path).exists()
        remove_path(path)
        if atomic.SCRATCH_INFIX in Path(path).name and existed:
            events.append(("removed", threading.current_thread().name))
            removed.set()

    def first_block_waits(*args):
        assert removed.wait(10), "the scratch maps were not removed while the blocks were written"
        events.append(("block", threading.current_thread().name))
        return apply(*args)

    monkeypatch.setattr(atomic, "remove_path", recorded_removal)
    monkeypatch.setattr(slice_normalization.normalize, "normalize_values", first_block_waits)
    normalize_slice(tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr", settings, n_levels=1, workers=2)
    scratch_removals = [name for kind, name in events if kind == "removed"]
    assert scratch_removals and all(name.startswith("normalize-cleanup") for name in scratch_removals)
    assert events[0][0] == "removed" and any(kind == "block" for kind, _ in events)
    assert not list(tmp_path.glob(f"*{atomic.SCRATCH_INFIX}*"))
    for level in ("0", "1"):
        assert np.array_equal(zarr.open_array(str(tmp_path / "out.ome.zarr" / level))[...],
                              zarr.open_array(str(tmp_path / "plain.ome.zarr" / level))[...])


def test_the_normalization_imports_scipy_beside_its_first_pass_not_before_it():
    """Importing the step's module leaves scipy out (its image filters are imported on a thread of their own while
    the first pass runs): a fresh interpreter that imports it has not imported scipy."""
    code = ("import sys, linumpy.intensity.slice_normalization, linumpy.intensity.qc_summary; "
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'scipy'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_value_bins_are_the_bins_values_are_counted_in():
    """``value_bins`` puts every positive value in the bin ``add`` counts it in (edges, clamped ends, float32
    rounding), the non-positive ones apart."""
    rng = np.random.default_rng(11)
    histogram = LogHistogram()
    edges = (10 ** histogram.edges[::37]).astype(np.float32)
    values = np.concatenate([rng.lognormal(0, 3, 5000), edges, np.nextafter(edges, 0), np.nextafter(edges, 10),
                             [0.0, -2.0, 1e-30, 1e-40, 1e30, np.finfo(np.float32).tiny]]).astype(np.float32)
    bins = histogram.value_bins(values.reshape(1, -1))
    assert bins.dtype == np.uint16 and bins.shape == (1, values.size)
    for value, index in zip(values, bins[0]):
        expected = LogHistogram()
        expected.add(np.array([value]))
        if value <= 0:
            assert index == histogram.counts.size and expected.zeros == 1
        else:
            assert expected.counts[index] == 1
    with pytest.raises(ValueError, match="value_bins needs a range"):
        LogHistogram(-40.0, 0.0).value_bins(values)


def test_keyed_histogram_above_a_key_is_the_histogram_of_those_columns():
    """Merged block by block in any order, the counts of the columns above a key are those of a histogram of
    exactly those columns' values."""
    from linumpy.intensity.histogram import KeyedLogHistogram

    rng = np.random.default_rng(12)
    template = LogHistogram()
    blocks = []
    for offset in (0, 40, 7):
        values = rng.gamma(1.5, 1.0, (6, 50)).astype(np.float32) * 10.0 ** rng.integers(-3, 3)
        values[values < 0.05] = 0
        blocks.append((offset + rng.integers(0, 30, 50), values))
    blocks.append((rng.integers(0, 60, 50), np.zeros((6, 50), np.float32)))  # no positive value at all
    merged = KeyedLogHistogram(template)
    for keys, values in reversed(blocks):
        merged.merge(KeyedLogHistogram.of_block(keys, template.value_bins(values), template))
    assert merged.counts.dtype == np.int32
    merged._total = np.iinfo(np.int32).max  # as if 2**31 values had been counted: the next merge widens the counts
    keys, values = blocks[0]
    merged.merge(KeyedLogHistogram.of_block(keys, template.value_bins(values), template))
    assert merged.counts.dtype == np.int64
    blocks.append(blocks[0])
    for key in (-1, 0, 15, 40, 69, 200):
        expected = LogHistogram()
        columns = 0
        for keys, values in blocks:
            expected.add(values[:, keys > key])
            columns += int(np.count_nonzero(keys > key))
        above, n_columns = merged.above(key)
        assert np.array_equal(above.counts, expected.counts) and above.zeros == expected.zeros
        assert n_columns == columns


@pytest.mark.parametrize(("shape", "sigma_px", "block"),
                         [((12, 70, 45), 2.0, 16), ((9, 33, 100), 2.3, 16), ((5, 64, 64), 0.7, 32),
                          ((7, 50, 70), 9.0, 16), ((6, 40, 40), 2.0, 256)])
def test_one_read_statistics_are_those_of_the_two_passes(tmp_path, monkeypatch, shape, sigma_px, block):
    """Without a flat field the threshold, the tissue voxels' histogram and the tissue A-lines counted in one read
    (blocks waiting for their neighbours' AIPs, a halo over one or several blocks) are those of the AIP pass and
    the histogram pass over its scratch maps."""
    from linumpy.intensity import slice_normalization
    from linumpy.io.zarr import open_omezarr_level

    rng = np.random.default_rng(sum(shape))
    volume = rng.gamma(2.0, 0.5, shape).astype(np.float32)
    volume[:, : shape[1] // 3] *= 0.01  # background A-lines
    volume[volume < 0.002] = 0
    volume[0, 3, 3] = -1.0
    save_omezarr(volume, tmp_path / "in.ome.zarr", RESOLUTION, n_levels=0)
    stored, _ = open_omezarr_level(tmp_path / "in.ome.zarr")
    monkeypatch.setattr(slice_normalization, "lateral_block_size", lambda depth: block)
    settings = NormalizeSettings(mask_sigma_px=sigma_px)
    (tmp_path / "scratch").mkdir()
    threshold, field, values, n_tissue = slice_normalization._tissue_statistics(
        stored, tmp_path / "scratch", settings, None, {}, "in", False, 2)
    one_read = slice_normalization._one_read_statistics(stored, settings, "in", False, 2)
    assert field is None and 0 < n_tissue < shape[1] * shape[2]
    assert one_read[0] == threshold and one_read[2] == n_tissue
    assert np.array_equal(one_read[1].counts, values.counts) and one_read[1].zeros == values.zeros > 0
