"""Fault injection on the OME-Zarr writers and readers.

Faults: a writer process SIGKILLed mid-write (while writing regions, and while
streaming a pyramid); a full disk, both real (a small tmpfs, when this user may
mount one; also under a script) and simulated (every ``open`` for writing
metered against a capacity, at three fill levels, optionally with writes still
in flight when the disk fills); a corrupted chunk file; a truncated or missing
``.zarray`` and a truncated ``.zattrs``. Expected behaviour: nothing a rerun
would trust is left behind, a rerun gives the bytes of an uninterrupted run
and removes the killed writer's temporary, and errors are one line naming the file.
"""

from __future__ import annotations

import builtins
import errno
import gc
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from linumpy.errors import InputError
from linumpy.io.atomic import atomic_output, remove_stale_temporaries
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
    # The rerun removed the killed writer's temporary (its process is gone).
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def _live_pid() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


@pytest.mark.parametrize("writer_kind", ["save_omezarr", "atomic_output"])
def test_stale_temporaries_of_the_output_only_are_removed(tmp_path, writer_kind):
    """A rerun removes its output's temporaries of dead processes, nothing else."""
    out = tmp_path / "slice_z00_stitch_3d.ome.zarr"
    other = tmp_path / "slice_z01_stitch_3d.ome.zarr"
    live = _live_pid()
    try:
        dead = _dead_pid()
        stale = out.with_name(f".{out.name}.partial-{dead}")
        kept = [
            out.with_name(f".{out.name}.partial-{live.pid}"),  # a concurrent writer of the same output
            other.with_name(f".{other.name}.partial-{dead}"),  # another output's: not this write's business
            out.with_name(f".{out.name}.partial-notapid"),  # not a name linumpy writes
        ]
        for temporary in [stale, *kept]:
            (temporary / "0").mkdir(parents=True)
            (temporary / "0" / "chunk").write_bytes(b"partial")
        if writer_kind == "save_omezarr":
            save_omezarr(_volume(), out, RESOLUTION, chunks=CHUNKS, n_levels=1)
        else:
            with atomic_output(out) as temporary:
                temporary.write_bytes(b"complete")
        assert not stale.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, *(k.name for k in kept)])
        assert all((k / "0" / "chunk").read_bytes() == b"partial" for k in kept)
    finally:
        live.kill()
        live.wait(timeout=30)


def test_stale_temporary_cleanup_finds_only_dead_writers(tmp_path):
    out = tmp_path / "motors.csv"
    dead, mine = _dead_pid(), os.getpid()
    for pid in (dead, mine):
        out.with_name(f".{out.name}.partial-{pid}").write_text("x")
    assert remove_stale_temporaries(out) == [out.with_name(f".{out.name}.partial-{dead}")]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{out.name}.partial-{mine}"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see a zombie")
def test_a_killed_writer_not_yet_reaped_counts_as_gone(tmp_path):
    """A writer killed with its parent stays a zombie until init reaps it; its temporary is stale all the same."""
    out = tmp_path / "mosaic_grid_2d_z01.ome.zarr"
    writer = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{writer.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.01)
    try:
        temporary = out.with_name(f".{out.name}.partial-{writer.pid}")
        temporary.mkdir()
        assert remove_stale_temporaries(out) == [temporary] and not temporary.exists()
    finally:
        writer.wait()


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
    assert errno.ENOSPC in _errnos(raised.value)
    assert not out.exists(), "a failed write must not publish its output"
    assert list(small_disk.iterdir()) == [], "a temporary was left behind"


def _write_mosaic_on(disk: Path) -> subprocess.CompletedProcess:
    """Run linum_create_mosaic_grid_3d.py on a small TIFF acquisition, output on ``disk``."""
    from test_bad_inputs import make_acquisition, run_script

    raw = make_acquisition(disk.parent / "raw")
    return run_script("linum_create_mosaic_grid_3d.py", raw, disk / "mosaic_grid_3d_z00.ome.zarr", "--slice", 0)


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    if not _mount_tmpfs(mount, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_under_a_script_fails_and_leaves_nothing(tiny_disk):
    result = _write_mosaic_on(tiny_disk)
    assert result.returncode != 0
    assert "No space left on device" in result.stderr
    assert list(tiny_disk.iterdir()) == [], "nothing may be left on the full disk"


def test_full_disk_under_a_script_is_a_one_line_error(tiny_disk):
    result = _write_mosaic_on(tiny_disk)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert result.returncode == 2
    # the volume and its projection are written side by side: the file named is whichever met the full disk
    named = "mosaic_grid_3d_z00" in lines[0] or "mosaic_grid_2d_z00" in lines[0]
    assert lines[0].startswith("error: ") and named and "space" in lines[0], lines[0]
    assert ".partial-" not in lines[0], "name the output, not its temporary"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.EROFS, "Read-only file system", "/data/out/.a.ome.zarr.partial-12/0/.zarray"),
         "error: /data/out/a.ome.zarr/0/.zarray: Read-only file system; the file system is read-only; write elsewhere"),
        (PermissionError(errno.EACCES, "Permission denied", "/data/out/a.csv"),
         "error: /data/out/a.csv: Permission denied; check the permissions or write elsewhere"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"),
         "error: linum_fake.py: Disk quota exceeded; free space (disk quota exceeded) or write elsewhere"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/in"), "error: /data/in: Is a directory"),
    ],
    ids=["EROFS-temporary", "EACCES", "EDQUOT-no-filename", "other-with-filename"],
)
def test_script_file_system_errors_are_one_line(capsys, error, expected):
    from linumpy.cli import make_parser, run

    def main(args):
        raise error

    parser = make_parser("fake")
    parser.prog = "linum_fake.py"
    with pytest.raises(SystemExit) as exited:
        run(parser, main, [])
    assert exited.value.code == 2
    assert capsys.readouterr().err == expected + "\n"


def test_script_os_error_naming_no_file_is_a_bug_with_traceback():
    from linumpy.cli import make_parser, run

    def main(args):  # (EPIPE is a closed output pipe: a quiet exit, see test_adversarial.py)
        raise OSError(errno.EINVAL, "Invalid argument")

    with pytest.raises(OSError, match="Invalid argument"):
        run(make_parser("fake"), main, [])


def test_script_freezes_the_objects_at_exit():
    """The interpreter's exit leaves the libraries' objects out of its collections (``gc.freeze`` at exit)."""
    program = textwrap.dedent("""
        import atexit, gc
        atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))  # runs after run()'s
        from linumpy.cli import make_parser, run
        print("frozen before:", gc.get_freeze_count() > 0)
        run(make_parser("fake"), lambda args: None, [])
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    assert done.stdout.split("\n")[:2] == ["frozen before: False", "frozen at exit: True"]


def test_frozen_imports_collect_nothing_inside_and_leave_what_they_made_out_of_later_collections():
    """Inside ``frozen_imports`` allocations trigger no collection; after it, its objects are frozen and the
    collector is back on (the stack's imports: ~450 collections, 0.4-0.5 CPU s, without it)."""
    from linumpy.cli import frozen_imports

    started: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(count)
    try:
        before = gc.get_freeze_count()
        with frozen_imports():
            made = [[i] for i in range(20 * gc.get_threshold()[0])]  # twenty young generations' worth
            inside, enabled_inside = list(started), gc.isenabled()
        assert (inside, enabled_inside, gc.isenabled()) == ([], False, True)
        assert gc.get_freeze_count() >= before + len(made)
        scanned = {id(item) for item in gc.get_objects()}  # the generations a collection scans
        assert id(made) not in scanned and id(made[0]) not in scanned
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()


def _errnos(error: BaseException | None) -> list[int]:
    """Error numbers along an exception's context chain."""
    found = []
    while error is not None:
        found.append(getattr(error, "errno", None))
        error = error.__context__
    return found


class _LimitedDisk:
    """Make every file opened for writing under ``root`` share ``capacity`` bytes, then raise ENOSPC.

    Patches ``builtins.open`` and ``io.open`` (which ``Path.open`` uses), so it
    catches chunk and metadata writes whatever library does them. With
    ``straggle_s``, writes (and directory creations) that start after the disk
    filled up wait that long first, as writes already in flight on a slow disk
    would, then succeed.
    """

    def __init__(self, root: Path, capacity: int, straggle_s: float = 0.0):
        self.root, self.capacity, self.straggle_s = str(root), capacity, straggle_s
        self.used, self.full, self.lock = 0, False, threading.Lock()
        self.straggler_waiting, self.straggled = threading.Event(), threading.local()
        self.real_open, self.real_mkdir = builtins.open, Path.mkdir

    def _straggle(self) -> None:
        """A write starting once the disk is full: let the failing one raise first, then go on."""
        if self.full and self.straggle_s and not getattr(self.straggled, "done", False):
            self.straggled.done = True  # once per thread
            self.straggler_waiting.set()
            time.sleep(self.straggle_s)

    def mkdir(self, path: Path, *args, **kwargs):
        if os.fspath(path).startswith(self.root):
            self._straggle()
        return self.real_mkdir(path, *args, **kwargs)

    def open(self, file, mode="r", *args, **kwargs):
        if not (any(c in mode for c in "wax+") and os.fspath(file).startswith(self.root)):
            return self.real_open(file, mode, *args, **kwargs)
        self._straggle()
        return _MeteredFile(self.real_open(file, mode, *args, **kwargs), self)

    def charge(self, n_bytes: int, name: str) -> None:
        with self.lock:
            was_full = self.full
            if not was_full and self.used + n_bytes <= self.capacity:
                self.used += n_bytes
                return
            self.full = True
        if was_full and self.straggle_s:
            return  # an in-flight write (delayed in open/mkdir) lands after all
        if self.straggle_s:  # raise only once another write is under way
            self.straggler_waiting.wait(timeout=2.0)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)


class _MeteredFile:
    def __init__(self, handle, disk: _LimitedDisk):
        self._handle, self._disk = handle, disk

    def write(self, data):
        self._disk.charge(memoryview(data).nbytes, self._handle.name)
        return self._handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._handle, name)


@pytest.fixture
def limited_disk(tmp_path, monkeypatch):
    def install(capacity: int, straggle_s: float = 0.0) -> _LimitedDisk:
        disk = _LimitedDisk(tmp_path, capacity, straggle_s)
        monkeypatch.setattr(builtins, "open", disk.open)
        monkeypatch.setattr(io, "open", disk.open)
        monkeypatch.setattr(Path, "mkdir", lambda path, *args, **kwargs: disk.mkdir(path, *args, **kwargs))
        return disk
    return install


def _full_size() -> int:
    """Bytes of a complete write of the test volume (measured, so the test follows the writer)."""
    with tempfile.TemporaryDirectory() as root:
        save_omezarr(_volume(), Path(root) / "x.ome.zarr", RESOLUTION, chunks=CHUNKS, n_levels=2)
        return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


@pytest.mark.parametrize("fill", [0.02, 0.5, 0.9], ids=["metadata", "level0", "pyramid"])
@pytest.mark.parametrize("writer_kind", ["save_omezarr", "OmeZarrWriter"])
def test_write_failing_with_enospc_aborts_cleanly(tmp_path, limited_disk, writer_kind, fill):
    disk = limited_disk(int(fill * _full_size()))
    out = tmp_path / "slice_z00_axial_corr.ome.zarr"
    with pytest.raises(OSError) as raised:
        if writer_kind == "save_omezarr":
            save_omezarr(_volume(), out, RESOLUTION, chunks=CHUNKS, n_levels=2)
        else:
            with OmeZarrWriter(out, SHAPE, CHUNKS, np.float32) as writer:
                writer[:] = _volume()
                writer.finalize(RESOLUTION, n_levels=2)
    assert disk.full
    assert errno.ENOSPC in _errnos(raised.value)
    assert not out.exists(), "a failed write must not publish its output"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a temporary was left behind"
    # With writes still in flight when the disk fills: see
    # test_chunk_writes_still_running_at_abort_leave_nothing.


@pytest.mark.parametrize("capacity", [1, None], ids=["group-metadata", "chunks"])
def test_writes_still_running_at_abort_leave_nothing(tmp_path, limited_disk, capacity):
    # zarr writes a group's metadata files, and the chunks of one region, concurrently: the
    # first to meet the full disk fails the call while the others are still running
    limited_disk(capacity or int(0.5 * _full_size()), straggle_s=0.3)
    out = tmp_path / "slice_z00_axial_corr.ome.zarr"
    with pytest.raises(OSError) as raised:
        save_omezarr(_volume(), out, RESOLUTION, chunks=CHUNKS, n_levels=2)
    assert raised.value.errno == errno.ENOSPC, f"ENOSPC masked by {raised.value!r}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a temporary was left behind"
    time.sleep(0.5)  # a straggling write that outlived the abort would land now
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a write in flight recreated the temporary"


def test_removing_a_tree_tolerates_files_renamed_meanwhile(tmp_path, monkeypatch):
    import shutil

    from linumpy.io import atomic

    tree = tmp_path / ".out.ome.zarr.partial-1"
    (tree / "0").mkdir(parents=True)
    (tree / ".zgroup").write_text("{}")
    real_rmtree, calls = shutil.rmtree, []

    def rmtree_meeting_a_vanished_file(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:  # as when zarr renames ".zattrs.<hex>.partial" during the walk
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", ".zattrs.1f2e.partial")
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree_meeting_a_vanished_file)
    atomic.remove_path(tree)
    assert not tree.exists() and len(calls) == 2


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
    with pytest.raises(InputError, match=rf"{written.name}/0/1/1/1: corrupted chunk") as raised:
        image.compute()
    assert "\n" not in str(raised.value)
    with pytest.raises(InputError, match=r"0/1/1/1: corrupted chunk"):
        image[2:4, 16:32, 16:32].compute()  # exactly the damaged chunk


@pytest.mark.parametrize("damage", ["truncate", "delete", "no_shape", "not_an_object"])
@pytest.mark.parametrize("reader", [read_omezarr, read_omezarr_info])
def test_damaged_array_metadata_is_reported_with_its_path(written, damage, reader):
    zarray = written / "0" / ".zarray"
    if damage == "truncate":
        zarray.write_text(zarray.read_text()[:25])
    elif damage == "no_shape":
        metadata = json.loads(zarray.read_text())
        del metadata["shape"]
        zarray.write_text(json.dumps(metadata))
    elif damage == "not_an_object":
        zarray.write_text("[2, 3]")
    else:
        zarray.unlink()
    with pytest.raises(InputError, match=rf"{written.name}/0"):
        reader(written)


def test_truncated_root_metadata_is_reported_with_its_path(written):
    zattrs = written / ".zattrs"
    zattrs.write_text(zattrs.read_text()[:40])
    with pytest.raises(InputError, match=rf"{written.name}/\.zattrs: unreadable metadata"):
        read_omezarr(written)

