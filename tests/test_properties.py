"""Property-based tests of the OME-Zarr metadata reader, the writers' pyramids and resampling.

Hypothesis draws random valid NGFF 0.4/0.5 metadata (units, axes, scales,
translations, global transforms, a leading channel axis, linumpy attributes)
and checks the reader returns exactly what was written; random damage to a
valid image must be rejected with an InputError and nothing else. Pyramids and
resampling are checked over random shapes, chunkings and dtypes against a
plain numpy reference.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from linumpy.errors import InputError
from linumpy.io.ngff import MM_PER_UNIT
from linumpy.io.zarr import read_omezarr, read_omezarr_info, save_omezarr
from linumpy.resample import block_mean, resample_to_resolution, resampled_shape

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = ("uint8", "uint16", "int16", "float32", "float64")

json_leaf = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8) | \
    st.floats(allow_nan=False, allow_infinity=False, width=32)
json_values = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
attributes = st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=4)
positive = st.floats(1e-3, 1e3, allow_nan=False)


# ---------------------------------------------------------------- random valid metadata


@st.composite
def ngff_images(draw):
    """A random valid OME-Zarr description: version, axes, levels, transforms, attributes."""
    ndim = draw(st.sampled_from([2, 3]))
    channel = draw(st.booleans())
    unit = draw(st.sampled_from([None, *sorted(MM_PER_UNIT), "Micrometer", " mm "]))
    n_axes = ndim + channel
    base_shape = draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim))
    levels = []
    for index in range(draw(st.integers(1, 3))):
        shape = [max(1, n >> index) for n in base_shape]
        levels.append({
            "shape": [1] * channel + shape,
            "chunks": [1] * channel + [draw(st.integers(1, n)) for n in shape],
            "scale": [1.0] * channel + draw(st.lists(positive, min_size=ndim, max_size=ndim)),
            "translation": draw(st.none() | st.lists(st.floats(-1e3, 1e3), min_size=n_axes, max_size=n_axes)),
        })
    return {
        "version": draw(st.sampled_from(["0.4", "0.5"])),
        "ndim": ndim, "channel": channel, "unit": unit, "levels": levels,
        "global_scale": draw(st.none() | st.lists(positive, min_size=n_axes, max_size=n_axes)),
        "dtype": draw(st.sampled_from(DTYPES)),
        "linumpy": draw(attributes),
    }


def _write_image(root: Path, image: dict) -> Path:
    """Write ``image`` with zarr directly (not with linumpy's writer)."""
    path = root / "image.ome.zarr"
    v2 = image["version"] == "0.4"
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if v2 else 3)
    names = ["c"] * image["channel"] + list("zyx"[3 - image["ndim"]:])
    axes = [{"name": n, "type": "channel" if n == "c" else "space"} for n in names]
    for axis in axes:
        if axis["type"] == "space" and image["unit"] is not None:
            axis["unit"] = image["unit"]
    datasets = []
    for index, level in enumerate(image["levels"]):
        options = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if v2 else {}
        array = group.create_array(str(index), shape=level["shape"], chunks=level["chunks"],
                                   dtype=image["dtype"], fill_value=0, **options)
        array[...] = np.arange(array.size).reshape(array.shape) % 100
        transforms = [{"type": "scale", "scale": level["scale"]}]
        if level["translation"] is not None:
            transforms.append({"type": "translation", "translation": level["translation"]})
        datasets.append({"path": str(index), "coordinateTransformations": transforms})
    multiscale = {"name": "random", "axes": axes, "datasets": datasets}
    if image["global_scale"] is not None:
        multiscale["coordinateTransformations"] = [{"type": "scale", "scale": image["global_scale"]}]
    if v2:
        group.attrs.put({"multiscales": [{"version": "0.4", **multiscale}], "linumpy": image["linumpy"]})
    else:
        group.attrs.put({"ome": {"version": "0.5", "multiscales": [multiscale]}, "linumpy": image["linumpy"]})
    return path


def _expected_mm(image: dict, level: dict, key: str) -> np.ndarray:
    spatial = slice(image["channel"], None)
    to_mm = MM_PER_UNIT[(image["unit"] or "micrometer").strip().lower()]
    global_scale = np.asarray(image["global_scale"] or [1.0] * len(level["scale"]))
    if key == "scale":
        values = np.asarray(level["scale"]) * global_scale
    else:
        values = np.asarray(level["translation"] or [0.0] * len(level["scale"])) * global_scale
    return values[spatial] * to_mm


@SETTINGS
@given(image=ngff_images())
def test_random_valid_metadata_reads_back_exactly(image):
    with tempfile.TemporaryDirectory() as root:
        path = _write_image(Path(root), image)
        info = read_omezarr_info(path)
        assert info.ngff_version == image["version"]
        assert info.attributes == image["linumpy"]
        assert info.dtype == np.dtype(image["dtype"])
        assert len(info.levels) == len(image["levels"])
        for level_info, level in zip(info.levels, image["levels"]):
            assert list(level_info.shape) == level["shape"][image["channel"]:]
            assert list(level_info.chunks) == level["chunks"][image["channel"]:]
            np.testing.assert_allclose(level_info.scale_mm, _expected_mm(image, level, "scale"), rtol=1e-12)
            np.testing.assert_allclose(level_info.translation_mm, _expected_mm(image, level, "translation"),
                                       rtol=1e-12, atol=1e-300)
        last = len(image["levels"]) - 1
        data, resolution = read_omezarr(path, level=last)
        shape = image["levels"][last]["shape"]
        assert data.shape == tuple(shape[image["channel"]:])
        expected = np.arange(math.prod(shape)).reshape(shape)[(0,) * image["channel"]] % 100
        np.testing.assert_array_equal(data.compute(), expected.astype(image["dtype"]))
        np.testing.assert_allclose(resolution, _expected_mm(image, image["levels"][last], "scale"), rtol=1e-12)


# ---------------------------------------------------------------- random invalid metadata

#: Damage the reader rejects cleanly today.
_STRUCTURAL_DAMAGE = (
    "unknown_unit", "bad_axis_names", "no_datasets", "no_multiscales", "no_axes",
    "missing_level_array", "junk_root_json",
)
#: Damage that currently escapes as AttributeError/TypeError/KeyError/ValueError, or is accepted
#: (a 1-element scale list is broadcast to every axis).
_TYPE_DAMAGE = ("scale_length", "non_object_root_json", "wrong_typed_multiscales")


def _mutate(path: Path, version: str, mutation: str, data) -> None:
    meta_file = path / (".zattrs" if version == "0.4" else "zarr.json")
    document = json.loads(meta_file.read_text())
    attrs = document if version == "0.4" else document["attributes"]
    ome = attrs if version == "0.4" else attrs["ome"]
    entry = ome["multiscales"][0]
    if mutation == "unknown_unit":
        unit = data.draw(st.text(min_size=1, max_size=10).filter(lambda u: u.strip().lower() not in MM_PER_UNIT))
        entry["axes"][-1]["unit"] = unit
    elif mutation == "bad_axis_names":
        names = data.draw(st.lists(st.sampled_from(["x", "y", "z", "t", "q", ""]), min_size=1, max_size=4)
                          .filter(lambda n: tuple(n) not in (("z", "y", "x"), ("y", "x"))))
        entry["axes"] = [{"name": n, "type": "space", "unit": "micrometer"} for n in names]
    elif mutation == "scale_length":
        n = data.draw(st.integers(1, 5).filter(lambda k: k != len(entry["axes"])))
        entry["datasets"][0]["coordinateTransformations"][0]["scale"] = [1.0] * n
    elif mutation == "no_datasets":
        entry["datasets"] = []
    elif mutation == "no_multiscales":
        ome.pop("multiscales")
    elif mutation == "no_axes":
        entry.pop("axes")
    elif mutation == "missing_level_array":
        entry["datasets"][0]["path"] = data.draw(st.sampled_from(["7", "missing", "0/0"]))
    elif mutation == "wrong_typed_multiscales":
        ome["multiscales"] = data.draw(st.sampled_from(["abc", 3, {"axes": []}, [3], [[]]]))
    if mutation == "junk_root_json":
        meta_file.write_text(data.draw(st.text(max_size=30).filter(_not_json)))
    elif mutation == "non_object_root_json":
        meta_file.write_text(json.dumps(data.draw(st.sampled_from([[], 3, "text", None, [{"multiscales": []}]]))))
    else:
        meta_file.write_text(json.dumps(document))


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


@SETTINGS
@given(version=st.sampled_from(["0.4", "0.5"]), mutation=st.sampled_from(_STRUCTURAL_DAMAGE), data=st.data())
def test_random_invalid_metadata_is_rejected_with_an_input_error(version, mutation, data):
    _check_rejected(version, mutation, data)


@settings(SETTINGS, phases=(Phase.explicit, Phase.generate), report_multiple_bugs=False)
@given(version=st.sampled_from(["0.4", "0.5"]), mutation=st.sampled_from(_TYPE_DAMAGE), data=st.data())
def test_wrongly_typed_metadata_is_rejected_with_an_input_error(version, mutation, data):
    _check_rejected(version, mutation, data)


def _check_rejected(version: str, mutation: str, data) -> None:
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "damaged.ome.zarr"
        save_omezarr(np.ones((2, 4, 4), np.uint8), path, (0.001, 0.01, 0.01), n_levels=1, ngff_version=version)
        _mutate(path, version, mutation, data)
        for reader in (read_omezarr, read_omezarr_info):
            with pytest.raises(InputError) as raised:
                reader(path)
            message = str(raised.value)
            assert "\n" not in message and "damaged.ome.zarr" in message, message


# ---------------------------------------------------------------- pyramids and resampling


def _reference_block_mean(values: np.ndarray, factors) -> np.ndarray:
    """Block means by explicit loops; integer means rounded half up."""
    out_shape = tuple(math.ceil(n / f) for n, f in zip(values.shape, factors))
    result = np.empty(out_shape, np.float64)
    for index in np.ndindex(out_shape):
        block = values[tuple(slice(i * f, (i + 1) * f) for i, f in zip(index, factors))]
        if np.issubdtype(values.dtype, np.integer):
            total, count = int(block.astype(np.int64).sum()), block.size
            result[index] = (2 * total + count) // (2 * count)
        else:
            result[index] = block.astype(np.float64).mean()
    return result.astype(values.dtype)


@st.composite
def arrays_and_chunks(draw, max_dims=3, max_side=14):
    ndim = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=ndim, max_size=ndim)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype.kind == "f":
        values = rng.normal(50, 30, shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype)
    chunkings = [tuple(draw(st.integers(1, n)) for n in shape) for _ in range(2)]
    return values, chunkings


@SETTINGS
@given(case=arrays_and_chunks(), factors_seed=st.lists(st.integers(1, 4), min_size=3, max_size=3))
def test_block_mean_matches_reference_for_any_chunking(case, factors_seed):
    values, (chunks_a, chunks_b) = case
    factors = tuple(factors_seed[: values.ndim])
    a = block_mean(da.from_array(values, chunks=chunks_a), factors).compute()
    b = block_mean(da.from_array(values, chunks=chunks_b), factors).compute()
    assert a.shape == tuple(math.ceil(n / f) for n, f in zip(values.shape, factors))
    assert a.dtype == values.dtype
    np.testing.assert_array_equal(a, b)  # no seams: chunking never changes a value
    reference = _reference_block_mean(values, factors)
    if values.dtype.kind == "f":
        np.testing.assert_allclose(a, reference, rtol=1e-6)
        counts = np.ones(a.shape)  # voxels per block, to check the total intensity
        for axis, (n, f) in enumerate(zip(values.shape, factors)):
            axis_counts = np.full(a.shape[axis], f)
            axis_counts[-1] = n - f * (a.shape[axis] - 1)
            counts = counts * axis_counts.reshape([-1 if i == axis else 1 for i in range(a.ndim)])
        np.testing.assert_allclose((a.astype(np.float64) * counts).sum(), values.astype(np.float64).sum(),
                                   rtol=1e-5, atol=1e-3)
    else:
        np.testing.assert_array_equal(a, reference)


@SETTINGS
@given(case=arrays_and_chunks(max_side=16), data=st.data())
def test_area_resampling_preserves_total_intensity_and_is_seam_free(case, data):
    values, (chunks_a, chunks_b) = case
    in_res = tuple(data.draw(st.floats(0.001, 0.05)) for _ in values.shape)
    n_out = tuple(data.draw(st.integers(1, n)) for n in values.shape)
    out_res = tuple(r * n / m for r, n, m in zip(in_res, values.shape, n_out))  # same extent
    a = resample_to_resolution(da.from_array(values, chunks=chunks_a), in_res, out_res).compute()
    b = resample_to_resolution(da.from_array(values, chunks=chunks_b), in_res, out_res).compute()
    assert a.shape == n_out == resampled_shape(values.shape, in_res, out_res)
    assert a.dtype == values.dtype
    np.testing.assert_array_equal(a, b)
    low, high = values.min(), values.max()
    assert a.min() >= low and a.max() <= high, "a weighted mean stays within the input's range"
    in_total = values.astype(np.float64).sum() * math.prod(in_res)
    out_total = a.astype(np.float64).sum() * math.prod(out_res)
    if values.dtype.kind == "f":
        np.testing.assert_allclose(out_total, in_total, rtol=1e-5, atol=1e-6 * math.prod(in_res))
    else:  # each output voxel is rounded: at most half a unit per voxel
        assert abs(out_total - in_total) <= 0.5 * a.size * math.prod(out_res) + 1e-9 * abs(in_total)


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 20), min_size=2, max_size=3).map(tuple),
    dtype=st.sampled_from(DTYPES),
    n_levels=st.integers(0, 4),
    version=st.sampled_from(["0.4", "0.5"]),
    resolution_um=st.lists(st.floats(0.5, 50), min_size=3, max_size=3),
    linumpy_attrs=attributes,
    seed=st.integers(0, 1000),
)
def test_saved_pyramid_levels_are_lateral_block_means(shape, dtype, n_levels, version, resolution_um,
                                                      linumpy_attrs, seed):
    rng = np.random.default_rng(seed)
    values = (rng.random(shape) * 200).astype(dtype)
    resolution = tuple(r / 1000 for r in resolution_um[: len(shape)])
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "pyramid.ome.zarr"
        save_omezarr(values, path, resolution, chunks=(3,) * len(shape), n_levels=n_levels,
                     ngff_version=version, attributes=linumpy_attrs)
        info = read_omezarr_info(path)
        assert info.attributes == json.loads(json.dumps(linumpy_attrs))
        expected_levels = 1 + min(n_levels, _levels_until_one_pixel(shape[-2:]))
        assert len(info.levels) == expected_levels
        for level in range(expected_levels):
            data, level_resolution = read_omezarr(path, level)
            factor = 2**level
            lateral = (1,) * (len(shape) - 2) + (factor, factor)
            np.testing.assert_allclose(level_resolution, [r * f for r, f in zip(resolution, lateral)], rtol=1e-9)
            stored = data.compute()
            if level == 0:
                np.testing.assert_array_equal(stored, values)
            else:  # the block mean of level 0, border blocks included (integers: one rounding per level)
                expected = _reference_block_mean(values.astype(np.float64), lateral)
                tolerance = 0.5 * level if np.issubdtype(dtype, np.integer) else 1e-6 * np.abs(expected).max()
                np.testing.assert_allclose(stored.astype(np.float64), expected, rtol=1e-6, atol=tolerance)


def _levels_until_one_pixel(lateral_shape) -> int:
    """How many 2x levels fit before y or x would drop below 2 pixels to halve."""
    count, (ny, nx) = 0, lateral_shape
    while min(ny, nx) >= 2:
        ny, nx, count = math.ceil(ny / 2), math.ceil(nx / 2), count + 1
    return count


# ---------------------------------------------------------------- QC records

numpy_leaf = st.one_of(
    json_leaf,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-1000, 1000).map(np.int32),
    st.floats(-1e6, 1e6, width=32).map(np.float32),
    st.booleans().map(np.bool_),
)
metrics_values = st.recursive(numpy_leaf, lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)


def _as_json(value):
    """What a metric value reads back as: plain JSON, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@SETTINGS
@given(metrics=st.dictionaries(st.text(min_size=1, max_size=10), metrics_values, max_size=6),
       flags=st.lists(st.text(max_size=20), max_size=3), slice_id=st.integers(0, 250))
def test_qc_records_round_trip_and_are_deterministic(metrics, flags, slice_id):
    from linumpy.qc.records import read_qc_record, write_qc_record

    with tempfile.TemporaryDirectory() as root:
        texts = []
        for run in ("a", "b"):
            out = Path(root) / run / f"slice_z{slice_id:02d}_normalize.ome.zarr"
            path = write_qc_record(out, "normalize", metrics, flags=flags)
            texts.append(path.read_bytes())
        record = read_qc_record(path)
        assert texts[0] == texts[1]
        assert record["metrics"] == _as_json(metrics)
        assert record["flags"] == flags and record["slice_id"] == slice_id
