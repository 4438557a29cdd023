"""Tests of the OME-Zarr I/O core: linumpy.io.zarr, ngff, codecs (docs/omezarr.md)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dask.array as da
import numcodecs
import numpy as np
import ome_zarr_models
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from linumpy.errors import InputError, OutputExistsError
from linumpy.io import blosc_items
from linumpy.io.atomic import TEMP_MARKER
from linumpy.io.codecs import COMPRESSIONS
from linumpy.io.zarr import (
    AnalysisOmeZarrWriter,
    OmeZarrWriter,
    open_omezarr_level,
    read_omezarr,
    read_omezarr_info,
    read_omezarr_levels,
    reencode_omezarr,
    save_omezarr,
    strided_sample,
)

ROOT = Path(__file__).resolve().parents[1]
RESOLUTION = (0.0015, 0.010, 0.010)


def oct_like(shape: tuple[int, ...], seed: int = 0, dtype=np.uint16) -> np.ndarray:
    """Tissue decaying with depth, smooth lateral structure and speckle: realistic intensities."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    depth = np.exp(-grids[0] / max(shape[0], 2)) if len(shape) == 3 else 1.0
    lateral = 1 + 0.5 * np.sin(grids[-1] / 7.0) * np.cos(grids[-2] / 11.0)
    values = 3000 * depth * lateral * rng.gamma(4.0, 0.25, shape) + 100
    return values.astype(dtype)


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def assert_valid(path: Path, version: str) -> None:
    """The file validates with ome-zarr-models and ome-zarr-py reads the right scales."""
    model = ome_zarr_models.open_ome_zarr(str(path))
    assert type(model).__module__.endswith(f"v0{version[-1]}.image"), type(model)
    info = read_omezarr_info(path)
    node = next(iter(Reader(parse_url(str(path)))()))
    transforms = node.metadata["coordinateTransformations"]
    assert len(node.data) == len(info.levels)
    for level, level_transforms in zip(info.levels, transforms):
        scale = next(t["scale"] for t in level_transforms if t["type"] == "scale")
        np.testing.assert_allclose(scale, [s * 1000 for s in level.scale_mm], rtol=1e-12)
    for data, level in zip(node.data, info.levels):
        assert tuple(data.shape) == level.shape


# --- the seed's examples ----------------------------------------------------------


def test_seed_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = da.from_array(np.random.default_rng(0).random((100, 512, 512)), chunks=(10, 128, 128))
    resolution = (0.0015, 0.010, 0.010)
    save_omezarr(data, "output.ome.zarr", resolution, chunks=data.chunks)
    image, res = read_omezarr("output.ome.zarr")
    assert image.shape == (100, 512, 512) and res == resolution and image.chunksize == (10, 128, 128)
    assert np.array_equal(image[0:10, 100:200, 100:200].compute(), data[0:10, 100:200, 100:200].compute())
    assert json.loads(Path("output.ome.zarr/.zattrs").read_text())["multiscales"][0]["version"] == "0.4"
    assert (tmp_path / "output.ome.zarr/.zgroup").is_file() and (tmp_path / "output.ome.zarr/0/.zarray").is_file()
    store = zarr.open("output.ome.zarr", mode="r")
    assert store["1"].shape == (100, 256, 256)

    writer = OmeZarrWriter("pyramid.ome.zarr", shape=(100, 512, 512), chunks=(10, 128, 128), dtype=np.float32)
    writer[:] = data[:]
    writer.finalize(resolution, n_levels=5)
    info = read_omezarr_info("pyramid.ome.zarr")
    assert [level.path for level in info.levels] == ["0", "1", "2", "3", "4", "5"]
    for k, level in enumerate(info.levels):
        np.testing.assert_allclose(np.array(level.scale_mm) * 1000, [1.5, 10 * 2**k, 10 * 2**k])
        assert level.shape == (100, 512 // 2**k, 512 // 2**k)
        assert level.chunks == tuple(min(c, n) for c, n in zip((10, 128, 128), level.shape))
    assert info.dtype == np.float32 and info.name == "pyramid" and info.codec == "blosc-lz4"
    assert np.array_equal(read_omezarr("pyramid.ome.zarr")[0].compute(), data.compute().astype(np.float32))
    assert_valid(tmp_path / "pyramid.ome.zarr", "0.4")

    writer = AnalysisOmeZarrWriter("analysis.ome.zarr", shape=(100, 512, 512), chunks=(10, 128, 128), dtype=np.float32)
    writer[:] = data[:]
    writer.finalize(resolution, [10, 25, 50, 100])
    info = read_omezarr_info("analysis.ome.zarr")
    assert [tuple(round(s * 1000, 6) for s in level.scale_mm) for level in info.levels] == [
        (1.5, 10, 10), (10, 10, 10), (25, 25, 25), (50, 50, 50), (100, 100, 100)
    ]
    assert_valid(tmp_path / "analysis.ome.zarr", "0.4")


# --- round trips --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_exact_round_trip(tmp_path, version, compression, dtype):
    data = oct_like((5, 40, 33), seed=1).astype(dtype)
    if dtype in (np.float32, np.float64):
        data = data / 7.0
    path = tmp_path / "x.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(2, 16, 16), n_levels=1, compression=compression, ngff_version=version)
    image, resolution = read_omezarr(path)
    assert image.dtype == dtype and resolution == RESOLUTION
    assert np.array_equal(image.compute(), data)
    info = read_omezarr_info(path)
    assert info.codec == compression and info.ngff_version == version
    assert_valid(path, version)


def test_sharded_v05(tmp_path):
    data = oct_like((12, 70, 50))
    path = tmp_path / "s.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(4, 16, 16), shards=(8, 32, 32), n_levels=3, ngff_version="0.5")
    info = read_omezarr_info(path)
    assert info.levels[0].shards == (8, 32, 32) and info.levels[0].chunks == (4, 16, 16)
    metadata = json.loads((path / "1" / "zarr.json").read_text())
    assert metadata["dimension_names"] == ["z", "y", "x"]
    assert "ome" in json.loads((path / "zarr.json").read_text())["attributes"]
    assert np.array_equal(read_omezarr(path)[0].compute(), data)
    assert_valid(path, "0.5")
    with pytest.raises(InputError, match="ngff_version='0.5'"):
        save_omezarr(data, tmp_path / "bad.ome.zarr", RESOLUTION, shards=(8, 32, 32))
    assert entries(tmp_path) == ["s.ome.zarr"]


def test_2d_image_and_default_chunks(tmp_path):
    data = oct_like((1500, 700), seed=2)
    path = tmp_path / "mosaic_grid_2d_z03.ome.zarr"
    save_omezarr(data, path, (0.010, 0.010), n_levels=2)
    info = read_omezarr_info(path)
    assert info.chunks == (1024, 700) and info.name == "mosaic_grid_2d_z03"
    assert [level.shape for level in info.levels] == [(1500, 700), (750, 350), (375, 175)]
    assert np.array_equal(read_omezarr(path)[0].compute(), data)
    assert_valid(path, "0.4")
    writer = OmeZarrWriter(tmp_path / "three.ome.zarr", (3, 300, 500), dtype=np.uint16)
    assert writer.chunks == (3, 256, 256)
    writer.abort()


def test_pyramid_stops_before_one_pixel(tmp_path, caplog):
    path = tmp_path / "small.ome.zarr"
    with caplog.at_level(logging.INFO, logger="linumpy.io.zarr"):
        save_omezarr(np.ones((2, 8, 5), np.float32), path, RESOLUTION, n_levels=10)
    assert [level.shape for level in read_omezarr_info(path).levels] == [(2, 8, 5), (2, 4, 3), (2, 2, 2), (2, 1, 1)]
    assert "stopping the pyramid at level 3" in caplog.text


def test_levels_preserve_intensity_and_align_centres(tmp_path):
    data = oct_like((16, 200, 168), seed=3)
    path = tmp_path / "i.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(8, 64, 64), n_levels=4, origin=(1.0, 2.0, 3.0))
    info = read_omezarr_info(path)
    mean0 = data.mean(dtype=np.float64)
    for k, level in enumerate(info.levels):
        image, _ = read_omezarr(path, k)
        assert image.compute().mean(dtype=np.float64) == pytest.approx(mean0, rel=0.005)
        # centre of voxel 0 of level k = mean of the level-0 centres it averages
        f = 2**k
        expected = [1.0, 2.0 + 0.5 * (f - 1) * 0.010, 3.0 + 0.5 * (f - 1) * 0.010]
        np.testing.assert_allclose(level.translation_mm, expected, rtol=0, atol=1e-12)
    window = info.omero["channels"][0]["window"]
    assert np.percentile(data, 0.1) <= window["start"] < window["end"] <= np.percentile(data, 99.9)
    # level 1 is the 2x2 lateral block mean of level 0 (rounded)
    level1 = read_omezarr(path, 1)[0].compute().astype(np.float64)
    expected = data[:, :200, :168].reshape(16, 100, 2, 84, 2).mean(axis=(2, 4))
    assert np.abs(level1 - expected).max() <= 0.5


def test_analysis_pyramid_rules(tmp_path, caplog):
    iso25 = oct_like((24, 40, 40), seed=4)
    with caplog.at_level(logging.INFO, logger="linumpy.io.zarr"):
        with AnalysisOmeZarrWriter(tmp_path / "a25.ome.zarr", iso25.shape, (8, 16, 16), np.uint16) as writer:
            writer[:] = iso25
            writer.finalize((0.025,) * 3)
    info = read_omezarr_info(tmp_path / "a25.ome.zarr")
    assert [round(level.scale_mm[0] * 1000, 6) for level in info.levels] == [25, 50, 100]
    assert [level.shape for level in info.levels] == [(24, 40, 40), (12, 20, 20), (6, 10, 10)]
    assert "skipping 10 um" in caplog.text
    np.testing.assert_allclose(info.levels[1].translation_mm, [0.0125] * 3)
    assert_valid(tmp_path / "a25.ome.zarr", "0.4")

    # 24.9 um counts as 25 um (1 %), and an analysis level at 10 um from 10 um data is level 0 itself
    with AnalysisOmeZarrWriter(tmp_path / "a10.ome.zarr", (10, 50, 50), (5, 25, 25), np.float32, ngff_version="0.5") as writer:
        writer[:] = 1.0
        writer.finalize((0.010,) * 3, resolutions_um=(10, 24.9, 50))
    info = read_omezarr_info(tmp_path / "a10.ome.zarr")
    assert [round(level.scale_mm[0] * 1000, 6) for level in info.levels] == [10, 24.9, 50]
    for k in range(3):
        assert np.all(read_omezarr(tmp_path / "a10.ome.zarr", k)[0].compute() == 1.0)
    assert_valid(tmp_path / "a10.ome.zarr", "0.5")

    # 2D: isotropic (r, r) levels
    aip = oct_like((90, 70), seed=11).astype(np.float32)
    with AnalysisOmeZarrWriter(tmp_path / "aip.ome.zarr", aip.shape, dtype=np.float32) as writer:
        writer[:] = aip
        writer.finalize((0.010, 0.010), resolutions_um=(25,))
    info = read_omezarr_info(tmp_path / "aip.ome.zarr")
    assert [level.shape for level in info.levels] == [(90, 70), (36, 28)]
    assert read_omezarr(tmp_path / "aip.ome.zarr", 1)[0].compute().mean() == pytest.approx(aip.mean(), rel=0.005)

    # anisotropic base: every resolution >= its coarsest axis becomes isotropic, intensity kept
    aniso = oct_like((60, 30, 30), seed=5)
    with AnalysisOmeZarrWriter(tmp_path / "an.ome.zarr", aniso.shape, (20, 16, 16), np.uint16) as writer:
        writer[:] = aniso
        writer.finalize((0.0015, 0.010, 0.010), resolutions_um=(5, 10, 25))
    info = read_omezarr_info(tmp_path / "an.ome.zarr")
    assert [tuple(round(s * 1000, 6) for s in level.scale_mm) for level in info.levels] == [
        (1.5, 10, 10), (10, 10, 10), (25, 25, 25)
    ]
    assert info.levels[1].shape == (9, 30, 30)
    level1 = read_omezarr(tmp_path / "an.ome.zarr", 1)[0].compute()
    whole = aniso[: 60 // 20 * 20]  # 60 * 1.5 = 90 um = 9 whole voxels of 10 um
    assert level1.mean(dtype=np.float64) == pytest.approx(whole.mean(dtype=np.float64), rel=0.005)


# --- writers --------------------------------------------------------------------


def test_region_writes_numpy_dask_scalar_and_planes(tmp_path):
    data = oct_like((6, 50, 40), seed=6)
    writer = OmeZarrWriter(tmp_path / "r.ome.zarr", data.shape, (4, 16, 16), np.uint16)
    writer[0:4, :, :] = data[0:4]
    writer[4:6, 0:32, :] = da.from_array(data[4:6, 0:32], chunks=(1, 7, 9))  # unaligned dask blocks
    writer[5, 32:] = data[5, 32:]
    writer[4, 32:, ...] = data[4, 32:]
    np.testing.assert_array_equal(writer.read().compute(), data)
    writer[0, 0:3, 0:3] = 7
    writer.finalize(RESOLUTION, n_levels=0, attributes={"slice_id": np.int64(3), "tile_shape": np.array([6, 50, 40])})
    result = read_omezarr(tmp_path / "r.ome.zarr")[0].compute()
    assert np.all(result[0, :3, :3] == 7) and np.array_equal(result[1:], data[1:])
    assert read_omezarr_info(tmp_path / "r.ome.zarr").attributes == {"slice_id": 3, "tile_shape": [6, 50, 40]}


def _write_slab(writer: OmeZarrWriter, z0: int, block: np.ndarray) -> None:
    """In a worker process: numpy for even slabs, dask (split across chunks) for odd ones."""
    if z0 % 4:
        block = da.from_array(block, chunks=(1, 20, 20))
    writer[z0 : z0 + block.shape[0]] = block


def test_parallel_processes_write_chunk_aligned_regions(tmp_path):
    data = oct_like((8, 64, 64), seed=7)
    writer = OmeZarrWriter(tmp_path / "p.ome.zarr", data.shape, (2, 32, 32), np.uint16)
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_write_slab, [writer] * 4, range(0, 8, 2), [data[z : z + 2] for z in range(0, 8, 2)]))
    writer.finalize(RESOLUTION, n_levels=1)
    assert np.array_equal(read_omezarr(tmp_path / "p.ome.zarr")[0].compute(), data)


def test_exception_inside_with_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with OmeZarrWriter(tmp_path / "x.ome.zarr", (4, 32, 32), dtype=np.uint16) as writer:
            writer[0:2] = 1
            raise RuntimeError("boom")
    assert entries(tmp_path) == []
    with pytest.raises(RuntimeError, match="without finalize"):
        with OmeZarrWriter(tmp_path / "y.ome.zarr", (4, 32, 32), dtype=np.uint16) as writer:
            writer[:] = 1
    assert entries(tmp_path) == []


def test_finalize_without_publish_keeps_the_image_aside_until_published(tmp_path):
    data = oct_like((4, 64, 64), seed=3)
    with OmeZarrWriter(tmp_path / "a.ome.zarr", data.shape, (2, 32, 32), np.float32) as writer:
        writer[:] = data
        writer.finalize(RESOLUTION, n_levels=1, publish=False)
        assert not (tmp_path / "a.ome.zarr").exists()
        assert np.array_equal(read_omezarr(writer.stored)[0].compute(), data)  # readable where it is
        writer.publish()
    assert np.array_equal(read_omezarr(tmp_path / "a.ome.zarr")[0].compute(), data)
    with pytest.raises(RuntimeError, match="without finalize"):
        with OmeZarrWriter(tmp_path / "b.ome.zarr", data.shape, (2, 32, 32), np.float32) as writer:
            writer[:] = data
            writer.finalize(RESOLUTION, n_levels=1, publish=False)
    assert entries(tmp_path) == ["a.ome.zarr"]


def test_failing_source_mid_write_leaves_nothing(tmp_path):
    def explode(block, block_info=None):
        if block_info[0]["chunk-location"] == (1, 0, 0):
            raise OSError("disk vanished")
        return block

    data = da.ones((8, 32, 32), chunks=(2, 32, 32), dtype=np.float32).map_blocks(explode, dtype=np.float32)
    with pytest.raises(OSError, match="disk vanished"):
        save_omezarr(data, tmp_path / "x.ome.zarr", RESOLUTION, chunks=(2, 32, 32))
    assert entries(tmp_path) == []


KILLED_WRITER = """
import sys, time, numpy as np
from linumpy.io.zarr import OmeZarrWriter
writer = OmeZarrWriter(sys.argv[1], (8, 64, 64), (2, 32, 32), np.uint16)
writer[0:4] = 5
print("written", flush=True)
time.sleep(60)
"""


def test_killed_write_leaves_no_complete_looking_output(tmp_path):
    out = tmp_path / "killed.ome.zarr"
    process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "written"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()
    leftovers = entries(tmp_path)
    assert len(leftovers) == 1 and TEMP_MARKER in leftovers[0] and leftovers[0].startswith(".")
    with pytest.raises(InputError, match="does not exist"):
        read_omezarr(out)


def test_overwrite(tmp_path):
    path = tmp_path / "o.ome.zarr"
    save_omezarr(np.zeros((2, 8, 8), np.uint8), path, RESOLUTION, n_levels=0)
    with pytest.raises(OutputExistsError, match=f"{path} already exists.*overwrite"):
        save_omezarr(np.ones((2, 8, 8), np.uint8), path, RESOLUTION, n_levels=0)
    with pytest.raises(OutputExistsError):
        OmeZarrWriter(path, (2, 8, 8))
    assert entries(tmp_path) == ["o.ome.zarr"] and read_omezarr(path)[0].compute().max() == 0
    save_omezarr(np.ones((2, 8, 8), np.uint8), path, RESOLUTION, n_levels=0, overwrite=True)
    assert read_omezarr(path)[0].compute().min() == 1 and entries(tmp_path) == ["o.ome.zarr"]


def test_deterministic_bytes(tmp_path):
    data = oct_like((6, 40, 40), seed=8)
    trees = []
    for name, version in [("a", "0.4"), ("b", "0.4"), ("c", "0.5"), ("d", "0.5")]:
        path = tmp_path / name / "same.ome.zarr"
        save_omezarr(data, path, RESOLUTION, chunks=(2, 16, 16), n_levels=2, ngff_version=version, attributes={"k": 1})
        trees.append({str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1] and trees[2] == trees[3]


def test_reencode_keeps_levels_and_attributes(tmp_path):
    data = oct_like((6, 40, 40), seed=9)
    source = tmp_path / "in.ome.zarr"
    with AnalysisOmeZarrWriter(source, data.shape, (2, 16, 16), np.uint16) as writer:
        writer[:] = data
        writer.finalize((0.010,) * 3, (10, 20), attributes={"slice_id": 4})
    reencode_omezarr(source, tmp_path / "out.ome.zarr", chunks=(3, 8, 8), compression="zstd", ngff_version="0.5", shards=(6, 16, 16))
    before, after = read_omezarr_info(source), read_omezarr_info(tmp_path / "out.ome.zarr")
    assert after.codec == "zstd" and after.chunks == (3, 8, 8) and after.attributes == {"slice_id": 4}
    assert [lv.scale_mm for lv in after.levels] == [lv.scale_mm for lv in before.levels]
    assert after.downsampling == "area"
    for k in range(2):
        assert np.array_equal(read_omezarr(source, k)[0].compute(), read_omezarr(tmp_path / "out.ome.zarr", k)[0].compute())
    assert_valid(tmp_path / "out.ome.zarr", "0.5")


# --- reading other producers' files ------------------------------------------------------


def write_legacy_linumpy(path: Path, data: np.ndarray, unit: str = "millimeter", scale=(0.0015, 0.01, 0.01)) -> None:
    """An image as earlier linumpy releases wrote it: NGFF 0.5, millimetres, a channel axis of size 1."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("0", data=data[None], chunks=(1, *data.shape))
    group.attrs.put(
        {
            "ome": {
                "version": "0.5",
                "multiscales": [
                    {
                        "name": "legacy",
                        "axes": [{"name": "c", "type": "channel"}]
                        + [{"name": a, "type": "space", "unit": unit} for a in "zyx"],
                        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, *scale]}]}],
                    }
                ],
            }
        }
    )


def test_reads_earlier_linumpy_files_and_units(tmp_path):
    data = oct_like((4, 12, 10), seed=10)
    write_legacy_linumpy(tmp_path / "old.ome.zarr", data)
    image, resolution = read_omezarr(tmp_path / "old.ome.zarr")
    assert image.shape == data.shape and np.array_equal(image.compute(), data)
    assert resolution == pytest.approx(RESOLUTION)
    write_legacy_linumpy(tmp_path / "nm.ome.zarr", data, unit="nm", scale=(1500.0, 10000.0, 10000.0))
    assert read_omezarr(tmp_path / "nm.ome.zarr")[1] == pytest.approx(RESOLUTION)
    write_legacy_linumpy(tmp_path / "um.ome.zarr", data, unit="um", scale=(1.5, 10.0, 10.0))
    assert read_omezarr_info(tmp_path / "um.ome.zarr").resolution == pytest.approx(RESOLUTION)


# --- errors users can act on -----------------------------------------------------------


def test_error_missing_metadata(tmp_path):
    path = tmp_path / "x.ome.zarr"
    save_omezarr(np.zeros((2, 8, 8), np.uint8), path, RESOLUTION, n_levels=0)
    (path / ".zattrs").unlink()
    with pytest.raises(InputError, match=r"x.ome.zarr has no .zattrs"):
        read_omezarr(path)
    (tmp_path / "empty.ome.zarr").mkdir()
    with pytest.raises(InputError, match=r"empty.ome.zarr has no .zattrs or zarr.json"):
        read_omezarr_info(tmp_path / "empty.ome.zarr")
    with pytest.raises(InputError, match="does not exist"):
        read_omezarr(tmp_path / "missing.ome.zarr")


def test_error_not_an_omezarr(tmp_path):
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=2).attrs.put({"hello": 1})
    with pytest.raises(InputError, match=r"plain.zarr is not an OME-Zarr image: no 'multiscales'"):
        read_omezarr(tmp_path / "plain.zarr")
    zarr.create_array(str(tmp_path / "array.zarr"), shape=(2, 2), dtype=np.uint8, zarr_format=3)
    with pytest.raises(InputError, match="is a Zarr array"):
        read_omezarr(tmp_path / "array.zarr")


def test_error_wrong_dimensions(tmp_path):
    with pytest.raises(InputError, match=r"3D \(z, y, x\) or 2D \(y, x\)"):
        save_omezarr(np.zeros((2, 2, 8, 8)), tmp_path / "4d.ome.zarr", (1, 1, 1, 1))
    with pytest.raises(InputError, match=r"3D \(z, y, x\) or 2D \(y, x\)"):
        OmeZarrWriter(tmp_path / "1d.ome.zarr", (8,))
    with pytest.raises(InputError, match="3 positive voxel sizes"):
        save_omezarr(np.zeros((2, 8, 8)), tmp_path / "res.ome.zarr", (0.01, 0.01))
    write_legacy_linumpy(tmp_path / "two_channels.ome.zarr", np.zeros((2, 4, 4), np.uint8))
    array = zarr.open_group(str(tmp_path / "two_channels.ome.zarr"), mode="r+")
    del array["0"]
    array.create_array("0", shape=(2, 2, 4, 4), dtype=np.uint8)
    with pytest.raises(InputError, match="non-spatial axes.*split the channels"):
        read_omezarr(tmp_path / "two_channels.ome.zarr")
    path = tmp_path / "axes.ome.zarr"
    save_omezarr(np.zeros((2, 8, 8)), path, RESOLUTION, n_levels=0)
    attrs = json.loads((path / ".zattrs").read_text())
    attrs["multiscales"][0]["axes"][0]["name"] = "t"
    (path / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(InputError, match=r"are not \(z, y, x\) or \(y, x\)"):
        read_omezarr(path)
    assert sorted(entries(tmp_path)) == ["axes.ome.zarr", "two_channels.ome.zarr"]


def test_error_unknown_unit(tmp_path):
    write_legacy_linumpy(tmp_path / "f.ome.zarr", np.zeros((2, 4, 4), np.uint8), unit="furlong")
    with pytest.raises(InputError, match=r"f.ome.zarr: unknown axis unit 'furlong'; use one of"):
        read_omezarr(tmp_path / "f.ome.zarr")


def test_error_missing_level(tmp_path):
    path = tmp_path / "l.ome.zarr"
    save_omezarr(np.zeros((2, 8, 8)), path, RESOLUTION, n_levels=1)
    with pytest.raises(InputError, match=r"l.ome.zarr has no level 5 \(levels 0-1\)"):
        read_omezarr(path, level=5)
    import shutil

    shutil.rmtree(path / "1")
    with pytest.raises(InputError, match="is missing"):
        read_omezarr(path, level=1)


def test_error_dtype_that_cannot_be_cast(tmp_path):
    writer = OmeZarrWriter(tmp_path / "u.ome.zarr", (2, 8, 8), dtype=np.uint16)
    with pytest.raises(InputError, match=r"cannot store float64 data in a uint16 image; convert it first"):
        writer[:] = np.zeros((2, 8, 8))
    with pytest.raises(InputError, match="cannot store float32 data"):
        writer[:] = da.zeros((2, 8, 8), dtype=np.float32)
    writer.abort()
    with pytest.raises(InputError, match="cannot store dtype complex128"):
        save_omezarr(np.zeros((2, 8, 8), complex), tmp_path / "c.ome.zarr", RESOLUTION)
    with pytest.raises(InputError, match="unknown compression 'brotli'"):
        OmeZarrWriter(tmp_path / "b.ome.zarr", (2, 8, 8), compression="brotli")
    assert entries(tmp_path) == []


def test_read_is_lazy_and_chunked_like_storage(tmp_path):
    path = tmp_path / "lazy.ome.zarr"
    save_omezarr(np.zeros((4, 64, 64), np.uint16), path, RESOLUTION, chunks=(2, 32, 16), n_levels=0)
    image, _ = read_omezarr(path)
    assert image.chunks == ((2, 2), (32, 32), (16,) * 4)
    started = time.perf_counter()
    assert image[0, 0, 0].compute() == 0
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_direct_chunk_reads_match_zarr(tmp_path, version, compression):
    """open_omezarr_level decodes chunk files itself; every region equals zarr-python's read."""
    data = oct_like((9, 21, 26), dtype=np.float32)
    data[:, :7, :9] = 0  # a chunk of zeros is not stored: the reader fills it
    path = tmp_path / "a.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(4, 7, 9), n_levels=1, compression=compression,
                 ngff_version=version)
    stored, resolution = open_omezarr_level(path)
    reference = zarr.open_array(str(path / "0"), mode="r")
    assert stored._reader is not None and resolution == RESOLUTION
    for key in [(slice(None),) * 3, (slice(2, 8), slice(5, 20), slice(3, 26)), (3, slice(None), slice(8, 10)),
                (Ellipsis, slice(0, 1)), (slice(None, None, 2),)]:
        np.testing.assert_array_equal(stored[key], reference[key])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_chunk_files_are_the_files_a_read_opens(tmp_path, version, monkeypatch):
    """StoredArray.chunk_files lists the chunk files a read of the same region opens (to announce them ahead)."""
    import builtins

    data = oct_like((9, 21, 26), dtype=np.float32)
    path = tmp_path / "a.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(4, 7, 9), n_levels=0, ngff_version=version)
    stored, _ = open_omezarr_level(path)
    opened, real_open = [], builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, *args, **kwargs: opened.append(Path(file)) or real_open(
        file, *args, **kwargs))
    for key in [(slice(None), slice(7, 14), slice(9, 18)), (slice(2, 9), slice(5, 21), slice(0, 26))]:
        opened.clear()
        stored[key]
        assert sorted(stored.chunk_files(key)) == sorted(opened) and all(p.is_file() for p in opened)


def test_direct_read_names_a_corrupted_chunk(tmp_path):
    path = tmp_path / "a.ome.zarr"
    save_omezarr(oct_like((8, 16, 16), dtype=np.float32), path, RESOLUTION, chunks=(4, 8, 8), n_levels=0)
    (path / "0" / "1" / "0" / "1").write_bytes(b"not a blosc frame")
    stored, _ = open_omezarr_level(path)
    with pytest.raises(InputError, match=r"0/1/0/1: corrupted chunk"):
        stored[4:8, 0:8, 8:16]
    np.testing.assert_array_equal(stored[0:4], zarr.open_array(str(path / "0"), mode="r")[0:4])


def _open_recording_in_place_decodes(path: Path, monkeypatch) -> tuple:
    """Open level 0 of ``path``; the list returned fills with the chunk index of each in-place decode."""
    stored, _ = open_omezarr_level(path)
    in_place = []
    decode_into = type(stored._reader)._decode_into
    monkeypatch.setattr(type(stored._reader), "_decode_into",
                        lambda self, index, out: in_place.append(index) or decode_into(self, index, out))
    return stored, in_place


def test_whole_chunks_decoded_in_place_match_and_check_their_size(tmp_path, monkeypatch):
    """Chunks a read holds whole are decoded straight into the result; a chunk of the wrong size is named."""
    data = oct_like((8, 16, 24), dtype=np.float32)
    data[4:8, 8:16, 16:24] = 0  # not stored: filled
    path = tmp_path / "a.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(4, 8, 8), n_levels=0)
    stored, in_place = _open_recording_in_place_decodes(path, monkeypatch)
    for key in [np.s_[:], np.s_[4:8, 8:16], np.s_[:, 8:16, 16:24], np.s_[:, 0:8, 8:16], np.s_[0:4, 0:16, 0:8]]:
        np.testing.assert_array_equal(stored[key], data[key])
    assert in_place == [(0, 1, 2), (1, 1, 2), (0, 0, 1), (1, 0, 1)]  # the chunk columns, the unstored one too
    chunk = path / "0" / "1" / "0" / "1"
    chunk.write_bytes(numcodecs.Blosc(cname="lz4").encode(data[4:8, 0:8, 8:12].copy()))  # half a chunk
    with pytest.raises(InputError, match=r"0/1/0/1: corrupted chunk.*decoded size"):
        stored[4:8, 0:8, 8:16]


def test_the_padded_last_chunk_of_the_first_axis_is_decoded_in_place(tmp_path, monkeypatch):
    """Reads that reach the end of the first axis (10 planes, chunks of 4: the last one padded) decode that chunk
    straight into the result too when they hold it whole along the other axes; the values are those stored."""
    data = oct_like((10, 16, 24), dtype=np.float32)
    path = tmp_path / "a.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(4, 8, 8), n_levels=0)
    stored, in_place = _open_recording_in_place_decodes(path, monkeypatch)
    for key in [np.s_[:, 0:8, 8:16], np.s_[8:10, 8:16, 16:24], np.s_[9, 0:8, 0:8], np.s_[5:, 8:16, 0:8],
                np.s_[:, 0:16, 0:8], np.s_[6:9, 0:8, 0:8]]:
        values = stored[key]
        np.testing.assert_array_equal(values, data[key])
        assert values.shape == data[key].shape and values.flags.c_contiguous
    # a whole column, the padded chunk alone or after a part of a chunk; a read from inside the padded chunk,
    # one over two chunks along y and one short of the end are decoded in part (blosc_getitem) or copied
    assert in_place == [(0, 0, 1), (1, 0, 1), (2, 0, 1), (2, 1, 2), (2, 1, 0)]


@pytest.mark.parametrize("compression", ["blosc-lz4", "zstd", "lz4"])
def test_some_planes_of_a_chunk_decode_only_their_blosc_blocks(tmp_path, monkeypatch, compression):
    """A read holding some planes of a chunk (first axis) decodes them alone (blosc_getitem on the Blosc blocks
    holding them, read from the file alone): the values stored, whole chunks still decoded in place."""
    data = oct_like((37, 70, 64), dtype=np.float32)
    data[16:32, 32:64, 0:32] = 0  # a chunk not stored: filled
    path = tmp_path / "a.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(16, 32, 32), n_levels=0, compression=compression)
    stored, _ = open_omezarr_level(path)
    assert blosc_items.available() and stored._reader._decodes_planes
    calls = {"planes": [], "in_place": [], "whole": []}
    reader = type(stored._reader)
    originals = {name: getattr(reader, name) for name in ("_decode_planes", "_decode_into", "_chunk")}
    monkeypatch.setattr(reader, "_decode_planes", lambda self, index, *rest: calls["planes"].append(index)
                        or originals["_decode_planes"](self, index, *rest))
    monkeypatch.setattr(reader, "_decode_into", lambda self, index, out: calls["in_place"].append(index)
                        or originals["_decode_into"](self, index, out))
    monkeypatch.setattr(reader, "_chunk", lambda self, index: calls["whole"].append(index)
                        or originals["_chunk"](self, index))
    for key in [np.s_[3:9], np.s_[20:30, 40:70, 5:40], np.s_[33], np.s_[30:37, 0:32, 32:64], np.s_[0:16, 0:32, 0:32]]:
        values = stored[key]
        np.testing.assert_array_equal(values, data[key])
        assert values.shape == data[key].shape
    # planes 3-8 of every chunk of the first row, the partial chunks of the other reads; whole chunks in place,
    # the padded last one too when the read reaches the end
    assert calls["planes"][:6] == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 2, 0), (0, 2, 1)]
    assert len(calls["planes"]) == 6 + 4 + 6 + 1 and calls["in_place"] == [(2, 0, 1), (0, 0, 0)]
    assert not calls["whole"]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("dtype", [np.float16, np.uint16])
def test_16_bit_data_is_bit_shuffled_smaller_and_the_same_values(tmp_path, version, dtype):
    """The default codec bit-shuffles 16-bit data (the compact intermediates): speckle is stored in fewer bytes
    than byte shuffle stores it, and reads back the same, whole chunks and a few planes decoded on their own."""
    data = oct_like((32, 64, 64), dtype=dtype) if dtype == np.uint16 else (oct_like((32, 64, 64)) / 1000).astype(dtype)
    path = tmp_path / "a.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(16, 64, 64), n_levels=0, ngff_version=version)
    stored, _ = open_omezarr_level(path)
    for key in [np.s_[:], np.s_[3:9], np.s_[20:30, 40:64, 5:40]]:
        np.testing.assert_array_equal(stored[key], data[key])
    files = [f for f in (path / "0").rglob("*") if f.is_file() and not f.name.startswith((".z", "zarr"))]
    byte_shuffled = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    assert sum(f.stat().st_size for f in files) < 0.95 * sum(len(byte_shuffled.encode(data[z : z + 16]))
                                                               for z in (0, 16))


def test_without_blosc_getitem_some_planes_decode_their_whole_chunks(tmp_path, monkeypatch):
    """Where numcodecs' extension does not export ``blosc_getitem``, a read of some planes decodes whole chunks:
    the same values, no partial decode attempted."""
    data = oct_like((37, 70, 64), dtype=np.float32)
    path = tmp_path / "a.ome.zarr"
    save_omezarr(data, path, RESOLUTION, chunks=(16, 32, 32), n_levels=0)
    monkeypatch.setattr(blosc_items, "available", lambda: False)
    stored, _ = open_omezarr_level(path)
    assert not stored._reader._decodes_planes
    monkeypatch.setattr(blosc_items, "decode_items", lambda *args: pytest.fail("partial decode without the symbol"))
    for key in [np.s_[3:9], np.s_[20:30, 40:70, 5:40], np.s_[33]]:
        np.testing.assert_array_equal(stored[key], data[key])


def test_decoding_items_refuses_damaged_frames_and_reads_only_their_blocks(tmp_path, monkeypatch):
    """decode_items: the items of a frame whatever its typesize, damaged frames refused (named by the reader)."""
    values = np.arange(64 * 1024, dtype=np.float32).reshape(64, 1024)
    frame = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE).encode(values)  # 32 KiB blocks
    path = tmp_path / "chunk"
    path.write_bytes(frame)
    out = np.empty((5, 1024), np.float32)
    read = []
    original = blosc_items._read_into
    monkeypatch.setattr(blosc_items, "_read_into", lambda file, buffer, begin, end: read.append(end - begin)
                        or original(file, buffer, begin, end))
    blosc_items.decode_items(path, 10 * 1024, out, values.nbytes)
    np.testing.assert_array_equal(out, values[10:15])
    assert len(read) == 2 and read[0] == 4 * 8 and read[1] < len(frame) / 4  # the block starts, blocks 1 of 8
    stored = numcodecs.Blosc(cname="lz4", clevel=0).encode(values)  # a copy, no blocks: its bytes read alone
    assert stored[2] & blosc_items.MEMCPYED
    path.write_bytes(stored)
    read.clear()
    blosc_items.decode_items(path, 10 * 1024, out, values.nbytes)
    np.testing.assert_array_equal(out, values[10:15])
    assert read == [out.nbytes]
    as_bytes = numcodecs.Blosc(cname="lz4").encode(values.view(np.uint8))  # typesize 1: any item decodes
    path.write_bytes(as_bytes)
    blosc_items.decode_items(path, 10 * 1024, out, values.nbytes)
    np.testing.assert_array_equal(out, values[10:15])
    with pytest.raises(ValueError, match="decoded size"):
        blosc_items.decode_items(path, 0, out, values.nbytes // 2)
    path.write_bytes(frame[:-10])
    with pytest.raises(ValueError, match="file of"):
        blosc_items.decode_items(path, 0, out, values.nbytes)
@pytest.mark.parametrize(("shape", "chunks", "stride"), [((13, 50, 37), (4, 16, 16), 3), ((5, 64, 64), (5, 64, 64), 7),
                                                           ((9, 33, 20), (2, 8, 8), 1), ((40, 30), (16, 16), 5)])
def test_strided_sample_reads_the_strided_voxels_chunk_by_chunk(tmp_path, shape, chunks, stride):
    """The OMERO window's sample of a streamed pyramid (no dask): exactly ``array[::stride, ...]``."""
    data = oct_like(shape, seed=5)
    path = tmp_path / "s.ome.zarr"
    save_omezarr(data, path, RESOLUTION[-len(shape):], chunks=chunks, n_levels=0)
    stored, _ = open_omezarr_level(path)
    np.testing.assert_array_equal(strided_sample(stored, stride), data[(slice(None, None, stride),) * len(shape)])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_the_group_documents_are_written_at_finalize_only(tmp_path, version):
    """The group's metadata documents made with it are removed at once (replaced or removed at finalize, they
    would wait for their writeback behind the output's), and finalize writes them anew with the attributes."""
    path = tmp_path / "a.ome.zarr"
    documents = {"0.4": [".zgroup", ".zattrs"], "0.5": ["zarr.json"]}[version]
    with OmeZarrWriter(path, (4, 16, 16), (2, 8, 8), np.float32, ngff_version=version, n_levels=1) as writer:
        assert not any((writer.temporary / name).exists() for name in documents)
        writer[:] = oct_like((4, 16, 16), dtype=np.float32)
        writer.finalize(RESOLUTION, n_levels=1, attributes={"slice_id": 3})
    assert all((path / name).is_file() for name in documents)
    assert read_omezarr_info(path).attributes["slice_id"] == 3
    assert read_omezarr_info(path).levels  # the multiscales are readable


def test_streamed_writes_and_their_window_need_no_dask(tmp_path):
    """A writer whose pyramid is streamed, and its finalize, do not import dask (a step's start-up cost)."""
    script = f"""
import sys
import numpy as np
from linumpy.io.zarr import OmeZarrWriter, open_omezarr_level
with OmeZarrWriter({str(tmp_path / 'w.ome.zarr')!r}, (4, 64, 64), chunks=(4, 32, 32), dtype=np.float32,
                   n_levels=2) as writer:
    for y in (0, 32):
        for x in (0, 32):
            writer[:, y:y + 32, x:x + 32] = np.full((4, 32, 32), 1.0 + y + x, np.float32)
    writer.finalize((0.01, 0.01, 0.01), n_levels=2)
assert "dask" not in sys.modules, "dask was imported"
"""
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    info = read_omezarr_info(tmp_path / "w.ome.zarr")
    window = info.omero["channels"][0]["window"]
    assert (window["start"], window["end"]) == pytest.approx((1.0, 65.0), abs=1e-6)


def test_is_dask_array_tells_dask_arrays_apart():
    from linumpy.dask_arrays import is_dask_array

    assert is_dask_array(da.zeros((3, 4), chunks=2))
    assert not is_dask_array(np.zeros((3, 4))) and not is_dask_array([1, 2]) and not is_dask_array(None)


def test_runs_of_a_few_planes_take_the_blosc_block_where_it_is_deeper(tmp_path):
    """A chunk whose Blosc blocks hold 11 planes (98 x 128 float32 rows, odd2's) read in runs of 8 planes comes in
    runs of 11 (each run decodes one block, not the chunk's 64 planes); the same values as read whole."""
    values = np.random.default_rng(0).random((70, 98, 128)).astype(np.float32)
    save_omezarr(values, tmp_path / "a.ome.zarr", (0.003, 0.005, 0.005), chunks=(64, 98, 128), n_levels=1)
    runs = read_omezarr_levels(tmp_path / "a.ome.zarr", 8)[0][0]
    whole = read_omezarr_levels(tmp_path / "a.ome.zarr")[0][0]
    assert runs.chunks[0] == (11, 11, 11, 11, 11, 9, 6) and whole.chunks[0] == (64, 6)
    np.testing.assert_array_equal(runs[20:40].compute(), values[20:40])
