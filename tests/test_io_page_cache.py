"""Tests of the release of written and read chunk files' page cache pages (linumpy.io.page_cache)."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = mmap.PAGESIZE
#: Writes an image of 40 chunks of 1 MB (more than the release's lag) in a child, then reads it whole.
WRITE_THEN_READ = """
import sys
import numpy as np
from linumpy.io.zarr import OmeZarrWriter, open_omezarr_level

values = np.random.default_rng(0).random((40, 128, 2048), dtype=np.float32)
with OmeZarrWriter(sys.argv[1], values.shape, chunks=(1, 128, 2048), compression="none") as writer:
    writer[:] = values
    writer.finalize((0.0015, 0.01, 0.01), n_levels=0)
if sys.argv[2] == "read":
    volume, _ = open_omezarr_level(sys.argv[1])
    assert np.array_equal(volume[:], values)
"""


def resident_pages(path: Path) -> int:
    """Pages of ``path`` in the page cache (``mincore`` on a mapping of the file)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = -(-size // PAGE)
    with open(path, "rb") as file:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, file.fileno(), 0)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vector = ctypes.create_string_buffer(pages)
            assert libc.mincore(address, size, vector) == 0, os.strerror(ctypes.get_errno())
            return sum(byte & 1 for byte in vector.raw)
        finally:
            libc.munmap(address, size)


@pytest.fixture
def drops_pages(tmp_path: Path) -> None:
    """Skip where the file system keeps a flushed file's pages when told to drop them (e.g. tmpfs)."""
    probe = tmp_path / "probe"
    with open(probe, "wb") as file:
        file.write(np.ones(64 * PAGE, np.uint8).tobytes())
        file.flush()
        os.fdatasync(file.fileno())
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if resident_pages(probe):
        pytest.skip("this file system keeps dropped pages")
    probe.unlink()


def _run(out: Path, setting: str, then: str) -> list[Path]:
    """The image's chunk files after the child wrote (and ``then == "read"``: read) it with ``setting``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LINUMPY_RELEASE_PAGES": setting}
    subprocess.run([sys.executable, "-c", WRITE_THEN_READ, str(out), then], check=True, env=env)
    chunks = sorted(p for p in (out / "0").rglob("*") if p.is_file() and not p.name.startswith((".", "zarr")))
    assert len(chunks) == 40
    return chunks


@pytest.mark.usefixtures("drops_pages")
def test_written_chunk_files_leave_the_page_cache_once_on_disk(tmp_path: Path) -> None:
    kept = _run(tmp_path / "kept.ome.zarr", "off", "write")
    released = _run(tmp_path / "released.ome.zarr", "on", "write")
    # the kernel's default keeps them cached (on a busy machine its reclaim may have taken a few meanwhile)
    assert sum(map(resident_pages, kept)) > 40 * 128 * 2048 * 4 // PAGE // 2
    assert sum(map(resident_pages, released)) == 0  # every chunk, the last ones (within the lag) included
    assert [p.read_bytes() for p in kept] == [p.read_bytes() for p in released]


@pytest.mark.usefixtures("drops_pages")
def test_chunk_files_read_whole_leave_the_page_cache(tmp_path: Path) -> None:
    chunks = _run(tmp_path / "read.ome.zarr", "on", "read")
    assert sum(map(resident_pages, chunks)) == 0


@pytest.mark.parametrize("value", ["yes", "1"])
def test_a_setting_other_than_on_off_auto_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from linumpy.io import page_cache

    monkeypatch.setenv(page_cache.ENV, value)
    page_cache.enabled.cache_clear()
    try:
        with pytest.raises(ValueError, match="on, off or auto"):
            page_cache.enabled()
    finally:
        page_cache.enabled.cache_clear()


def test_an_aborted_write_keeps_no_descriptor_of_its_deleted_chunk_files(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunk files within the release's lag are held open; an aborted write deletes them, and an open descriptor
    # would keep their space (a full disk stays full) and their file system busy (a tmpfs could not be unmounted).
    from linumpy.io import page_cache
    from linumpy.io.zarr import OmeZarrWriter

    monkeypatch.setattr(page_cache, "enabled", lambda: True)
    values = np.ones((4, 32, 32), np.float32)
    with pytest.raises(RuntimeError, match="interrupted"):
        with OmeZarrWriter(tmp_path / "aborted.ome.zarr", values.shape, chunks=(1, 32, 32)) as writer:
            writer[:] = values
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    descriptors = Path("/proc/self/fd")
    if not descriptors.is_dir():
        pytest.skip("no /proc/self/fd to list the open descriptors")
    held = [os.readlink(link) for link in descriptors.iterdir() if link.is_symlink()]
    assert not [target for target in held if str(tmp_path) in target]
