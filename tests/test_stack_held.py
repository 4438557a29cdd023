"""A turned slice's blocks kept from one phase of the stack for the next (linumpy.stack.held): the same bytes."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from linumpy.simulate.slices import phantom_slices
from linumpy.stack import held, rotation
from linumpy.stack.held import HeldBlocks
from linumpy.stack.rotation import rotate_lazily, rotate_slice
from linumpy.stack.stacking import SliceVolume, StackParameters, plan_stack, write_stack

SIZE, THICKNESS, DEPTH = 112, 20, 26


def counted_turns(monkeypatch) -> list[int]:
    """Planes turned by :func:`linumpy.stack.rotation._turn_planes` from now on, one entry per call."""
    calls: list[int] = []
    turn = rotation._turn_planes

    def counting(window, *args):
        calls.append(len(window))
        return turn(window, *args)

    monkeypatch.setattr(rotation, "_turn_planes", counting)
    return calls


def test_a_level_and_its_run_read_copy_share_their_turned_blocks(monkeypatch):
    """A block turned through the run-read copy while collecting is the level's block too (not turned again, the
    same bytes as turned alone); after ``keep_only`` the blocks of the planes kept are handed once more, the others
    dropped; nothing is kept beyond ``HELD_BYTES``."""
    rng = np.random.default_rng(1)
    values = rng.random((24, 40, 36)).astype(np.float32)
    volume = SliceVolume(0, [(da.from_array(values, chunks=(24, 20, 36)), (1.0, 1.0, 1.0))], (0, 24),
                         read_levels=[(da.from_array(values, chunks=(4, 20, 36)), (1.0, 1.0, 1.0))])
    expected = rotate_lazily(da.from_array(values, chunks=(24, 20, 36)), 2.0, (19.5, 17.5)).compute()
    turned = rotate_slice(volume, 2.0)
    calls = counted_turns(monkeypatch)
    turned.held_blocks[0].collect()
    np.testing.assert_array_equal(turned.planes_level(0)[0][:16].compute(), expected[:16])
    assert sum(calls) == 2 * 16  # two depth blocks of 8 planes, two lateral chunks
    np.testing.assert_array_equal(turned.levels[0][0].compute(), expected)
    assert sum(calls) == 2 * 24  # the third depth block only
    turned.held_blocks[0].keep_only((0, 8))
    for _ in range(2):
        np.testing.assert_array_equal(turned.levels[0][0][:8].compute(), expected[:8])
    assert sum(calls) == 2 * 24 + 2 * 8  # handed once, then turned again
    monkeypatch.setattr(held, "HELD_BYTES", 8 * 20 * 36 * 4)  # one block
    again = rotate_slice(volume, 2.0)
    again.held_blocks[0].collect()
    again.levels[0][0].compute()
    assert len(again.held_blocks[0]._blocks) == 1


def test_idle_held_blocks_keep_nothing():
    """Before ``collect`` (or after ``keep_only``) a computed block is not kept: the next computation runs."""
    blocks = HeldBlocks()
    turn = blocks.wrap(lambda values, region, bounds: values + 1)
    region = ((0, 1), (0, 1), (0, 1))
    assert turn(np.zeros((1, 1, 1)), region, region).item() == 1
    assert turn(np.ones((1, 1, 1)), region, region).item() == 2


def stacked(slices: list[np.ndarray]):
    """The slices stacked with their rotations searched (run-read copies in blocks of 4 planes): plan and volume."""
    volumes = [SliceVolume(k, [(da.from_array(s, chunks=(16, 64, 64)), (10.0, 10.0, 10.0))], (0, s.shape[0]),
                           read_levels=[(da.from_array(s, chunks=(4, 64, 64)), (10.0, 10.0, 10.0))])
               for k, s in enumerate(slices)]
    motors = np.array([[k * THICKNESS * 0.01, 0.0, 0.0] for k in range(len(slices))])
    plan = plan_stack(volumes, motors, THICKNESS * 10.0, 10.0, StackParameters(max_rotation_deg=5.0))
    out = np.zeros(plan.shape, np.float32)
    write_stack(plan, out, (32, 64, 64), np.float32, False)
    return plan, out


@pytest.mark.parametrize("seed", [100])
def test_a_stack_of_turned_slices_turns_fewer_planes_for_the_same_bytes(monkeypatch, seed):
    """Two turned slices stacked with their blocks kept between the phases and without (``HELD_BYTES`` 0): the same
    record and the same volume bytes, fewer planes turned."""
    angles = [0.0, *np.round(np.random.default_rng(seed).uniform(-5, 5, 2), 2)]
    cut = phantom_slices(seed, angles, (SIZE, SIZE), THICKNESS, DEPTH, speckle=True)
    calls = counted_turns(monkeypatch)
    plan, out = stacked(cut.slices)
    kept = sum(calls)
    monkeypatch.setattr(held, "HELD_BYTES", 0)
    plain_plan, plain_out = stacked(cut.slices)
    assert all(entry["rotation"]["angle_deg"] for entry in plan.record["slices"][1:])
    assert plan.record == plain_plan.record
    np.testing.assert_array_equal(out.view(np.uint32), plain_out.view(np.uint32))
    assert 0 < kept < sum(calls) - kept
