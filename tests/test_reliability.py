"""Fault injection on the OME-Zarr writers and readers.

Faults: a writer process SIGKILLed mid-write (while writing regions, and while
streaming a pyramid), a full disk (a real 256 KiB tmpfs when mountable, and a
store write monkeypatched to raise ENOSPC), a corrupted chunk file, and a
truncated or missing ``.zarray``/``zarr.json``. Expected behaviour: nothing a
rerun would trust is left behind, a rerun gives the bytes of an uninterrupted
run, and damaged inputs are reported as one-line InputErrors naming the file.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from linumpy.errors import InputError
from linumpy.io.zarr import OmeZarrWriter, read_omezarr, read_omezarr_info, save_omezarr

RESOLUTION = (0.0035, 0.01, 0.01)
SHAPE, CHUNKS = (8, 48, 48), (2, 16, 16)


def _volume(seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).random(SHAPE).astype(np.float32)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# The child writes slowly and says how far it got, so the parent kills it at
# a known point: after some chunks are on disk, before the image is complete.
_CHILD = textwrap.dedent(
    """
    import sys, time
    import dask.array as da, numpy as np
    from linumpy.io.zarr import OmeZarrWriter, save_omezarr
    mode, out = sys.argv[1], sys.argv[2]
    data = np.random.default_rng(5).random({shape}).astype(np.float32)
    if mode == "regions":
        writer = OmeZarrWriter(out, data.shape, {chunks}, np.float32)
        for z in range(0, data.shape[0], 2):
            writer[z:z + 2] = data[z:z + 2]
            print(z, flush=True)
            time.sleep(0.3)
        writer.finalize({resolution}, n_levels=2)
    else:
        def slow(block):
            time.sleep(0.05)
            return block
        source = da.from_array(data, chunks={chunks}).map_blocks(slow, dtype=data.dtype)
        print("start", flush=True)
        save_omezarr(source, out, {resolution}, chunks={chunks}, n_levels=2)
    print("done", flush=True)
    """
).format(shape=SHAPE, chunks=CHUNKS, resolution=RESOLUTION)


def _kill_mid_write(mode: str, out: Path) -> int:
    """Run a writer child and SIGKILL it once chunks exist but before it finishes; return its pid."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, mode, str(out)], stdout=subprocess.PIPE, text=True)
    temporary = out.with_name(f".{out.name}.partial-{child.pid}")
    if mode == "regions":
        while child.stdout.readline().strip() != "2":  # two slabs (of four) written
            assert child.poll() is None, "writer child exited early"
    else:
        deadline = time.monotonic() + 60
        while not any((temporary / "0").rglob("[0-9]")):
            assert child.poll() is None and time.monotonic() < deadline, "child never wrote a chunk"
            time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return child.pid


@pytest.mark.parametrize("mode", ["regions", "pyramid"])
def test_killed_write_leaves_nothing_trusted_and_rerun_matches(tmp_path, mode):
    out = tmp_path / "run" / "slice_z00_stitch_3d.ome.zarr"
    pid = _kill_mid_write(mode, out)
    assert not out.exists(), "a killed write must not publish its output"
    leftovers = sorted(p.name for p in out.parent.iterdir())
    assert leftovers == [f".{out.name}.partial-{pid}"], leftovers
    with pytest.raises(InputError, match="does not exist"):
        read_omezarr(out)

    save_omezarr(_volume(), out, RESOLUTION, chunks=CHUNKS, n_levels=2)  # the rerun
    reference = tmp_path / "reference" / out.name
    save_omezarr(_volume(), reference, RESOLUTION, chunks=CHUNKS, n_levels=2)
    assert _tree_bytes(out) == _tree_bytes(reference)
    # The stale temporary is ignored (hidden, never read), not cleaned.
    assert (out.parent / leftovers[0]).exists()


# ---------------------------------------------------------------- full disk


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    if not _mount_tmpfs(mount, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the monkeypatched ENOSPC test covers this")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_raises_enospc_and_leaves_disk_clean(small_disk):
    out = small_disk / "slice_z00_normalize.ome.zarr"
    incompressible = np.random.default_rng(0).random((8, 96, 96)).astype(np.float32)  # ~290 KiB
    with pytest.raises(OSError) as raised:
        save_omezarr(incompressible, out, RESOLUTION, chunks=(2, 32, 32), n_levels=1)
    assert raised.value.errno == errno.ENOSPC
    assert list(small_disk.iterdir()) == [], "the partial output must be removed"
    statvfs = os.statvfs(small_disk)
    assert statvfs.f_bfree == statvfs.f_blocks, "disk space must be given back"


@pytest.mark.parametrize("writer_kind", ["save_omezarr", "OmeZarrWriter"])
def test_store_write_failing_with_enospc_aborts_cleanly(tmp_path, monkeypatch, writer_kind):
    import zarr.storage._local as local_store

    real_put, calls = local_store._put, []

    def put_until_full(path, value, *args, **kwargs):
        calls.append(path)
        if len(calls) > 6:  # metadata and a few chunks fit, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_put(path, value, *args, **kwargs)

    monkeypatch.setattr(local_store, "_put", put_until_full)
    out = tmp_path / "slice_z00_axial_corr.ome.zarr"
    with pytest.raises(OSError) as raised:
        if writer_kind == "save_omezarr":
            save_omezarr(_volume(), out, RESOLUTION, chunks=CHUNKS, n_levels=2)
        else:
            with OmeZarrWriter(out, SHAPE, CHUNKS, np.float32) as writer:
                writer[:] = _volume()
                writer.finalize(RESOLUTION, n_levels=2)
    assert raised.value.errno == errno.ENOSPC
    assert "No space left" in str(raised.value)
    assert list(tmp_path.iterdir()) == [], "neither the output nor its temporary may remain"


# ---------------------------------------------------------------- damaged inputs


@pytest.fixture
def written(tmp_path):
    out = tmp_path / f"damaged_{uuid.uuid4().hex[:6]}.ome.zarr"
    save_omezarr(_volume(), out, RESOLUTION, chunks=CHUNKS, n_levels=1)
    return out


def test_corrupted_chunk_is_reported_with_its_path(written):
    chunk = written / "0" / "1" / "1" / "1"
    assert chunk.is_file()
    chunk.write_bytes(b"\x00not a blosc frame" * 4)
    image, _ = read_omezarr(written)
    np.testing.assert_array_equal(image[:2, :16, :16].compute(), _volume()[:2, :16, :16])  # intact chunk
    with pytest.raises(InputError, match=r"0/1/1/1"):
        image.compute()


@pytest.mark.parametrize("damage", ["truncate", "delete"])
@pytest.mark.parametrize("reader", [read_omezarr, read_omezarr_info])
def test_damaged_array_metadata_is_reported_with_its_path(written, damage, reader):
    zarray = written / "0" / ".zarray"
    if damage == "truncate":
        zarray.write_text(zarray.read_text()[:25])
    else:
        zarray.unlink()
    with pytest.raises(InputError, match=rf"{written.name}/0"):
        reader(written)


def test_truncated_root_metadata_is_reported_with_its_path(written):
    zattrs = written / ".zattrs"
    zattrs.write_text(zattrs.read_text()[:40])
    with pytest.raises(InputError, match=rf"{written.name}/\.zattrs: unreadable metadata"):
        read_omezarr(written)
