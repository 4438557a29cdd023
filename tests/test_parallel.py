"""The worker-thread plumbing of the streaming steps (linumpy.parallel, --workers, read-ahead)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from linumpy import parallel
from linumpy.cli import add_workers_argument, make_parser, run
from linumpy.io import prefetch


def test_ordered_map_keeps_order_and_bounds_jobs_in_flight():
    running, peak, lock = 0, 0, threading.Lock()
    started: list[int] = []

    def job(item: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            started.append(item)
        time.sleep(0.01 * (item % 3))  # finish out of order
        with lock:
            running -= 1
        return item * item

    results = []
    for value in parallel.ordered_map(job, range(20), workers=3, ahead=4):
        results.append(value)
        assert len(started) <= len(results) + 4  # never more than `ahead` submitted and not yet yielded
    assert results == [i * i for i in range(20)]
    assert 1 < peak <= 3


def test_ordered_map_raises_the_first_failure_and_stops():
    def job(item: int) -> int:
        if item == 2:
            raise ValueError("bad block")
        return item

    with pytest.raises(ValueError, match="bad block"):
        list(parallel.ordered_map(job, range(100), workers=2))


def test_run_jobs_runs_every_job_without_waiting_for_a_slow_one():
    release, lock = threading.Event(), threading.Lock()
    running, peak, done = 0, 0, []

    def job(item: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if item == 0:
            assert release.wait(5)  # the first job waits until every other job has run
        with lock:
            running -= 1
            done.append(item)
            if len(done) == 19:
                release.set()

    finished = sum(1 for _ in parallel.run_jobs(job, range(20), workers=2, ahead=3))
    assert finished == 20 and sorted(done) == list(range(20)) and done[-1] == 0
    assert peak == 2


def test_run_jobs_raises_a_failure_and_stops():
    started = []

    def job(item: int) -> None:
        started.append(item)
        if item == 2:
            raise ValueError("bad tile")

    with pytest.raises(ValueError, match="bad tile"):
        list(parallel.run_jobs(job, range(100), workers=2))
    assert len(started) < 100
    with pytest.raises(ValueError, match="bad tile"):
        list(parallel.run_jobs(job, range(5), workers=1))


def test_import_in_background_loads_the_module_and_ignores_failures(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    parallel.import_in_background("colorsys").join()
    assert "colorsys" in sys.modules
    parallel.import_in_background("linumpy.no_such_module", "json").join()  # the step's own import raises


def test_default_workers_from_environment(monkeypatch, caplog):
    monkeypatch.setenv(parallel.WORKERS_ENV, "3")
    assert parallel.default_workers() == 3
    monkeypatch.setenv(parallel.WORKERS_ENV, "zero")
    assert parallel.default_workers() == parallel.available_cores()
    assert "not a positive integer" in caplog.text
    monkeypatch.delenv(parallel.WORKERS_ENV)
    assert parallel.default_workers() == parallel.available_cores() >= 1


def test_workers_flag_sets_the_process_default(monkeypatch):
    monkeypatch.delenv(parallel.WORKERS_ENV, raising=False)
    parser = make_parser("test")
    add_workers_argument(parser)
    seen = []
    run(parser, lambda args: seen.append(parallel.default_workers()), ["--workers", "5"])
    assert seen == [5]
    with pytest.raises(SystemExit):
        run(parser, lambda args: None, ["--workers", "0"])


def test_prefetched_announces_each_item_as_it_is_taken(tmp_path, monkeypatch):
    tile = tmp_path / "tile_x00_y00_z00"
    tile.mkdir()
    for name in ("image_2.bin", "image_1.bin", "info.txt"):
        (tile / name).write_bytes(b"\0" * 16)
    tiff = tmp_path / "tile.tif"
    assert prefetch.tile_files(tile) == [tile / "image_1.bin", tile / "image_2.bin"]
    assert prefetch.tile_files(tiff) == [tiff]
    announced = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: announced.append(advice))
    items = prefetch.prefetched([tile, tmp_path / "missing", tile], prefetch.tile_files)
    assert next(items) == tile and announced == [os.POSIX_FADV_WILLNEED] * 2
    assert list(items) == [tmp_path / "missing", tile] and len(announced) == 4  # a missing file is skipped


def test_prefetched_announces_the_items_ahead_before_they_are_taken(monkeypatch):
    announced = []
    monkeypatch.setattr(prefetch, "prefetch_files", lambda paths: announced.extend(paths))
    items = prefetch.prefetched(range(5), lambda item: [item], ahead=2)
    assert next(items) == 0 and announced == [0, 1, 2]
    assert next(items) == 1 and announced == [0, 1, 2, 3]
    assert list(items) == [2, 3, 4] and announced == [0, 1, 2, 3, 4]
    assert list(prefetch.prefetched([7], lambda item: [item], ahead=3)) == [7]


#: Threads allocate 40 MB arrays (a chunk column of the `large` slice is 42 MB) that another thread frees;
#: prints each round's minor page faults (a fresh interpreter: the allocator settings are process-wide).
_FAULTS_CHILD = """
import resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from linumpy.malloc import reuse_freed_memory_across_threads
if sys.argv[1] == "shared" and not reuse_freed_memory_across_threads():
    print("unsupported"); sys.exit()
def column(value):
    out = np.empty(10 * 2**20, np.float32)
    out.fill(value)
    return out
counts, arrays = [], []
with ThreadPoolExecutor(3) as pool:
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        arrays = None  # the last round's arrays, freed by this thread
        arrays = list(pool.map(column, range(4)))
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*counts)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_arrays_freed_by_other_threads_are_reused_without_page_faults():
    """With the axial correction's allocator settings, an array freed is the next one's memory (no fresh pages)."""
    rounds = {}
    for mode in ("default", "shared"):
        done = subprocess.run([sys.executable, "-c", _FAULTS_CHILD, mode], capture_output=True, text=True,
                              check=True)
        if done.stdout.strip() == "unsupported":
            pytest.skip("not glibc")
        rounds[mode] = [int(n) for n in done.stdout.split()]
    # by default every 40 MB array is a new mapping (at least one fault each: 4 a round); shared, none is
    assert min(rounds["default"][2:]) >= 4 > max(rounds["shared"][2:]), rounds
