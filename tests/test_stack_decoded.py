"""The stack plan's chunk reads kept a short while (linumpy.stack.decoded): the same bytes, fewer decodes."""

from __future__ import annotations

import hashlib

import numpy as np

from linumpy.io.chunk_writer import ChunkFileReader
from linumpy.io.motor_table import MotorPosition, write_motor_positions
from linumpy.io.zarr import save_omezarr
from linumpy.simulate.slices import phantom_slices
from linumpy.stack import decoded
from linumpy.stack.decoded import DecodedChunks
from linumpy.stack.files import stack_slice_files


class Counted:
    """An array read by index, counting its reads."""

    def __init__(self, values: np.ndarray) -> None:
        self.values, self.reads = values, 0
        self.shape, self.dtype, self.ndim = values.shape, values.dtype, values.ndim

    def __getitem__(self, key):
        self.reads += 1
        return self.values[key].copy()


def test_the_latest_reads_are_kept_in_the_ring_oldest_overwritten_first():
    """A kept read is handed as a copy (the same values, writable, not the ring's); a read that does not fit before
    the ring's end goes to its start and drops the reads it overwrites; one larger than the ring is not kept;
    ``close`` keeps none."""
    source = Counted(np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8))
    cache = DecodedChunks(2 * 8 * 8 * 4)  # two planes
    reads = cache.reads(source)
    planes = [(slice(k, k + 1), slice(0, 8), slice(0, 8)) for k in range(3)]
    first = reads[planes[0]]
    again = reads[planes[0]]
    assert source.reads == 1 and again is not first and again.flags.writeable
    again[...] = -1
    np.testing.assert_array_equal(reads[planes[0]], source.values[:1])
    reads[planes[1]]
    reads[planes[1]]
    assert source.reads == 2
    reads[planes[2]]  # at the ring's start: plane 0 overwritten
    reads[planes[1]]
    assert source.reads == 3
    reads[planes[0]]
    assert source.reads == 4
    np.testing.assert_array_equal(reads[planes[2]], source.values[2:3])
    reads[(slice(0, 3), slice(0, 8), slice(0, 8))]
    reads[(slice(0, 3), slice(0, 8), slice(0, 8))]
    assert source.reads == 6  # larger than the ring
    cache.close()
    reads[planes[2]]
    assert source.reads == 7 and cache._ring is None


def stacked_bytes(tmp_path, name: str) -> tuple[dict[str, str], int]:
    """md5 of every file of a stack of three turned, speckled phantom slices (on disk, chunks smaller than the
    slices, three levels) and the chunk reads it decoded."""
    cut = phantom_slices(7, [0.0, 1.5, -1.0], (64, 64), 20, 26, speckle=True)
    folder = tmp_path / name
    folder.mkdir()
    paths, rows = [], []
    for k, values in enumerate(cut.slices):
        path = folder / f"slice_z{k:02d}_normalize.ome.zarr"
        save_omezarr(values, path, (0.01, 0.01, 0.01), chunks=(8, 32, 32), n_levels=2)
        paths.append(path)
        rows.append(MotorPosition(k, 1.0, 2.0, 3.0 + k * 0.2, 1))
    write_motor_positions(rows, folder / "motor.csv")
    out = folder / "out"
    out.mkdir()
    calls = []
    read = ChunkFileReader.__getitem__

    def counting(self, key):
        calls.append(key)
        return read(self, key)

    ChunkFileReader.__getitem__ = counting
    try:
        stack_slice_files(paths, out / "volume.ome.zarr", folder / "motor.csv", max_rotation_deg=3.0,
                          pyramid_resolutions_um=[10.0], progress=False)
    finally:
        ChunkFileReader.__getitem__ = read
    files = {str(p.relative_to(out)): hashlib.md5(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    return files, len(calls)


def test_a_stack_reading_through_the_cache_writes_the_same_bytes_with_fewer_decodes(tmp_path, monkeypatch):
    """Every output file (volume chunks, QC and shifts JSON, figures) the same with and without kept reads
    (``DECODED_BYTES`` 0), fewer chunk reads decoded."""
    kept, kept_reads = stacked_bytes(tmp_path, "kept")
    monkeypatch.setattr(decoded, "DECODED_BYTES", 0)
    plain, plain_reads = stacked_bytes(tmp_path, "plain")
    assert kept == plain and len(kept) >= 9
    assert kept_reads < plain_reads, (kept_reads, plain_reads)
