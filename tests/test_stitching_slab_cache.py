"""Tests of linumpy.stitching.slab_cache: decoded tile slabs kept between the fused blocks that read them."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from linumpy.stitching.slab_cache import SlabCache, slab_uses


def counting_reader():
    """A ``read(key)`` returning a distinct array per key, and the list of keys it was asked for."""
    asked = []

    def read(key):
        asked.append(key)
        return np.full(3, hash(key) % 1000, dtype=np.float32)

    return read, asked


def run_plan(needs, capacity):
    read, asked = counting_reader()
    cache = SlabCache(read, slab_uses(needs), capacity)
    for job, keys in enumerate(needs):
        for key in keys:
            assert np.array_equal(cache.get(key, job), np.full(3, hash(key) % 1000, dtype=np.float32))
    return asked, cache


def test_a_slab_read_again_soonest_is_kept_and_one_never_read_again_is_not():
    # job 0 reads a, b; job 1 reads a, c; job 2 reads b. One place: a (read again by job 1) is kept
    # over b (job 2); c is read by no later job and is not kept, so b is decoded again for job 2 only.
    needs = [["a", "b"], ["a", "c"], ["b"]]
    asked, cache = run_plan(needs, capacity=1)
    assert asked == ["a", "b", "c", "b"]
    assert cache.decoded == 4
    asked, _ = run_plan(needs, capacity=2)
    assert asked == ["a", "b", "c"]
    asked, _ = run_plan(needs, capacity=0)
    assert asked == ["a", "b", "a", "c", "b"]


def test_fewer_decodes_than_reads_on_a_grid_of_blocks():
    # 2 x 2 tiles each read by the 2 x 2 blocks around it (a 3 x 3 grid of blocks, row by row)
    needs = [[(r + i, c + j) for i in (0, 1) for j in (0, 1) if 0 <= r + i - 1 < 2 and 0 <= c + j - 1 < 2]
             for r in range(3) for c in range(3)]
    reads = sum(map(len, needs))
    assert len(run_plan(needs, capacity=0)[0]) == reads == 16
    assert len(run_plan(needs, capacity=4)[0]) == 4  # every tile decoded once


def test_a_slab_being_decoded_is_waited_for_not_decoded_twice():
    started, release = threading.Event(), threading.Event()
    asked = []

    def slow_read(key):
        asked.append(key)
        started.set()
        release.wait(5)
        return np.arange(4)

    cache = SlabCache(slow_read, slab_uses([["a"], ["a"]]), capacity=2)
    results = []
    first = threading.Thread(target=lambda: results.append(cache.get("a", 0)))
    first.start()
    started.wait(5)
    second = threading.Thread(target=lambda: results.append(cache.get("a", 1)))
    second.start()
    time.sleep(0.05)
    release.set()
    first.join(5)
    second.join(5)
    assert asked == ["a"] and len(results) == 2 and results[0] is results[1]


def test_a_failed_read_raises_and_is_not_kept():
    calls = []

    def failing_once(key):
        calls.append(key)
        if len(calls) == 1:
            raise OSError("damaged chunk")
        return np.zeros(2)

    cache = SlabCache(failing_once, slab_uses([["a"], ["a"]]), capacity=2)
    with pytest.raises(OSError, match="damaged"):
        cache.get("a", 0)
    assert np.array_equal(cache.get("a", 1), np.zeros(2))
    assert calls == ["a", "a"]
