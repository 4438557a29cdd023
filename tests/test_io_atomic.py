"""The scratch directory of a step: deleted at the block's end, or on an executor the caller waits for."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from linumpy.io import atomic


def test_a_scratch_directory_handed_to_a_remover_is_deleted_on_its_thread(tmp_path, monkeypatch):
    remove_path, threads = atomic.remove_path, []

    def recorded(path):
        threads.append(threading.current_thread().name)
        remove_path(path)

    monkeypatch.setattr(atomic, "remove_path", recorded)
    with ThreadPoolExecutor(1, thread_name_prefix="remover") as remover:
        with atomic.scratch_directory(tmp_path / "out.ome.zarr", remover) as scratch:
            (scratch / "map").mkdir()
            (scratch / "map" / "0").write_bytes(b"chunk")
            threads.clear()  # the removals of a previous scratch before the block
    assert not scratch.exists() and threads and all(name.startswith("remover") for name in threads)
    with atomic.scratch_directory(tmp_path / "out.ome.zarr") as scratch:
        threads.clear()
    assert not scratch.exists() and threads == [threading.current_thread().name]


def test_a_scratch_directory_not_removed_is_said(tmp_path, monkeypatch, caplog):
    def refused(path):
        if atomic.SCRATCH_INFIX in path.name and path.exists():
            raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(atomic, "remove_path", refused)
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(1) as remover:
        with atomic.scratch_directory(tmp_path / "out.ome.zarr", remover) as scratch:
            pass
    assert scratch.exists() and "scratch directory not removed" in caplog.text and str(scratch) in caplog.text
