"""A slice's two lateral steps read on the same part of it: a slice whose mosaic is broken does not move the next.

A slice's lateral step to the next one is the peak of its whole overlap
(:func:`linumpy.stack.refine.fit_lateral_shift`). When the slice's own mosaic
is broken (two of its tiles placed a few pixels apart by its stitch), its
overlap holds two peaks, one per part, and each of its two steps (from the
slice above, to the slice below) may take another: the slice below is then
placed on the other part than the one the slice above placed, and every
later slice inherits the stitch's error (odd2 359: slice 2's middle tiles 4
and 4.5 pixels apart, the step 1 -> 2 took tile 1's peak, the step 2 -> 3
tile 2's, slices 3 and 4 sat 3-4 pixels off slices 0 and 1).

:func:`lateral_blocks` reads each overlap's blocks, each at its own peak;
:func:`anchor_lateral_steps` walks the chain: when a step's confident blocks
disagree, the step is read on the blocks that lie where the step above
placed the slice (its blocks agreeing with it), if those agree; the slice
itself keeps its placement, the slices below follow the part of it already
placed against the slices above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from linumpy.stack.refine import (
    MIN_OVERLAP_FRACTION,
    fit_lateral_shift,
    normalized_cross_correlation,
    null_ncc_spread,
    overlap_views,
)

#: Blocks of about this many registration pixels along each side of an overlap (:func:`lateral_blocks`).
BLOCK_PX = 64
#: At most this many blocks along a side.
MAX_BLOCKS = 8
#: Subpixel precision of a block's peak (1 / this pixel; 4 cost 4x as much: 1.1 s against 0.29 s for 64 blocks of 128 px).
BLOCK_UPSAMPLE = 2
#: A block agrees with a step when its own peak is within this many registration pixels of it.
AGREE_PX = 1.5
#: The overlap's NCC at its peak must beat its NCC where the motors put the slice by this many of its chance
#: scatter (:func:`linumpy.stack.refine.null_ncc_spread`), else the step keeps the motors' lateral position.
MOTOR_MARGIN = 3.0


@dataclass(frozen=True)
class LateralBlock:
    """One block of an overlap at its own peak.

    Attributes
    ----------
    previous_um, current_um : tuple of float
        The block's centre ``(y, x)`` in the previous and the current slice's frames, micrometres.
    half_um : tuple of float
        Half its sides ``(y, x)``, micrometres.
    step_yx_um : tuple of float
        The lateral step from the previous slice its peak says, micrometres.
    confidence : float
        Its peak's NCC relative to its speckle ceiling.
    """

    previous_um: tuple[float, float]
    current_um: tuple[float, float]
    half_um: tuple[float, float]
    step_yx_um: tuple[float, float]
    confidence: float


@dataclass(frozen=True)
class LateralEvidence:
    """What supports a pair's lateral step: its overlap's blocks (:func:`lateral_blocks`), the overlap's NCC at
    its peak and where the motors put the slice (None when too little of it overlaps there, or when the peak is
    on the motors' whole pixel: nothing to choose), and the NCC's chance scatter at the peak
    (:func:`linumpy.stack.refine.null_ncc_spread`)."""

    blocks: list[LateralBlock]
    peak_ncc: float
    motor_ncc: float | None
    noise: float

    def beats_motor(self) -> bool:
        """Whether the peak beats the motors' position by :data:`MOTOR_MARGIN` chance scatters (or the motors'
        position is not measurable).

        Examples
        --------
        >>> LateralEvidence([], 0.41, -0.09, 0.01).beats_motor(), LateralEvidence([], 0.41, 0.40, 0.01).beats_motor()
        (True, False)
        """
        return self.motor_ncc is None or self.peak_ncc - self.motor_ncc > MOTOR_MARGIN * self.noise

    def summary(self) -> dict:
        """The record's ``lateral_support``: the NCCs, the scatter and the verdict."""
        return {"peak_ncc": round(self.peak_ncc, 4),
                "motor_ncc": None if self.motor_ncc is None else round(self.motor_ncc, 4),
                "noise": round(self.noise, 4), "beats_motor": self.beats_motor()}


def lateral_evidence(
    reference: np.ndarray, moving: np.ndarray, shift_px: Sequence[float], motor_px: Sequence[float],
    blocks: list[LateralBlock],
) -> LateralEvidence:
    """The evidence for the peak ``shift_px`` of two overlap images against the motors' position ``motor_px``
    (both relative to the images' alignment, pixels), with the overlap's ``blocks``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = rng.random((80, 140))
    >>> evidence = lateral_evidence(image[2:66, 3:131], image[:64, :128], (-2, -3), (0, 0), [])
    >>> round(evidence.peak_ncc, 3), evidence.beats_motor()
    (1.0, True)
    >>> lateral_evidence(image[:64, :128], image[:64, :128], (0.2, 0), (0, 0), []).motor_ncc is None
    True
    """
    peak = overlap_views(reference, moving, np.rint(shift_px))
    motor = overlap_views(reference, moving, np.rint(motor_px))
    measurable = (motor[0].size >= MIN_OVERLAP_FRACTION * reference.size and min(motor[0].shape) >= 4
                  and np.any(np.rint(shift_px) != np.rint(motor_px)))
    return LateralEvidence(blocks, normalized_cross_correlation(*peak),
                           normalized_cross_correlation(*motor) if measurable else None, null_ncc_spread(*peak))


def _edges(size: int) -> np.ndarray:
    """Block edges along a side of ``size`` pixels (:data:`BLOCK_PX`, at most :data:`MAX_BLOCKS`)."""
    count = int(np.clip(round(size / BLOCK_PX), 1, MAX_BLOCKS))
    return np.linspace(0, size, count + 1).round().astype(int)


def lateral_blocks(
    reference: np.ndarray, moving: np.ndarray, offset_px: Sequence[float], previous_start_px: Sequence[int],
    current_start_px: Sequence[int], pixel_um: Sequence[float],
) -> list[LateralBlock]:
    """Each block of two aligned overlap images at its own peak.

    Parameters
    ----------
    reference, moving : numpy.ndarray
        The previous and the current slice's overlap images ``(y, x)``, of the same shape, aligned at ``offset_px``.
    offset_px : sequence of float
        The current slice's origin in the previous slice's frame at which the images were cut, pixels.
    previous_start_px, current_start_px : sequence of int
        The images' first pixel in each slice's frame, pixels.
    pixel_um : sequence of float
        The pixel size ``(y, x)``, micrometres.

    Returns
    -------
    list of LateralBlock

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = rng.random((80, 140))
    >>> blocks = lateral_blocks(image[2:66, 3:131], image[:64, :128], (0, 0), (0, 0), (0, 0), (5.0, 5.0))
    >>> len(blocks), sorted({b.step_yx_um for b in blocks})
    (2, [(-10.0, -15.0)])
    """
    pixel = np.asarray(pixel_um, dtype=float)
    offset = np.asarray(offset_px, dtype=float)
    rows, columns = _edges(reference.shape[0]), _edges(reference.shape[1])
    blocks = []
    for y0, y1 in zip(rows[:-1], rows[1:], strict=True):
        for x0, x1 in zip(columns[:-1], columns[1:], strict=True):
            fit = fit_lateral_shift(reference[y0:y1, x0:x1], moving[y0:y1, x0:x1], BLOCK_UPSAMPLE)
            centre = np.array([(y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2])
            blocks.append(LateralBlock(
                tuple(float(v) for v in (np.asarray(previous_start_px) + centre) * pixel),
                tuple(float(v) for v in (np.asarray(current_start_px) + centre) * pixel),
                (float((y1 - y0) / 2 * pixel[0]), float((x1 - x0) / 2 * pixel[1])),
                tuple(float(v) for v in (offset + np.asarray(fit.shift_yx_px)) * pixel), fit.lateral_confidence))
    return blocks


def _agreeing(blocks: Sequence[LateralBlock], step_yx_um: np.ndarray, tolerance_um: np.ndarray) -> list[LateralBlock]:
    """The blocks whose peak is within ``tolerance_um`` of ``step_yx_um`` on both axes."""
    return [b for b in blocks if np.all(np.abs(np.asarray(b.step_yx_um) - step_yx_um) <= tolerance_um)]


def _under(blocks: Sequence[LateralBlock], anchors: Sequence[LateralBlock]) -> list[LateralBlock]:
    """The ``blocks`` whose centre (previous slice's frame) lies inside an anchor block (current slice's frame)."""
    return [b for b in blocks if any(np.all(np.abs(np.subtract(b.previous_um, a.current_um)) <= a.half_um)
                                     for a in anchors)]


def anchored_step(
    above: Sequence[LateralBlock], above_step_um: np.ndarray, blocks: Sequence[LateralBlock], step_um: np.ndarray,
    min_confidence: float, pixel_um: Sequence[float],
) -> tuple[np.ndarray | None, dict]:
    """The lateral step read where the step above placed the slice, when the overlap's blocks disagree.

    Parameters
    ----------
    above : sequence of LateralBlock
        The blocks of the step above (the previous slice against its own previous one).
    above_step_um : numpy.ndarray
        The lateral step ``(y, x)`` the step above keeps, micrometres.
    blocks : sequence of LateralBlock
        This step's blocks.
    step_um : numpy.ndarray
        This step's lateral step ``(y, x)`` (its whole overlap's peak), micrometres.
    min_confidence : float
        Blocks less confident than this are left out.
    pixel_um : sequence of float
        This step's pixel size ``(y, x)`` (:data:`AGREE_PX` is in these pixels).

    Returns
    -------
    step : numpy.ndarray or None
        The anchored lateral step, or None when the step stays.
    record : dict
        ``blocks`` (confident), ``agreeing`` (with the step), ``anchor_blocks`` (the step above's blocks agreeing
        with it), ``under_anchor`` (this step's confident blocks inside them), ``anchored`` and ``reason``.

    Examples
    --------
    >>> def block(previous, current, step):
    ...     return LateralBlock(previous, current, (50.0, 50.0), step, 0.8)
    >>> above = [block((50, 50), (50, 50), (0.0, 0.0)), block((50, 150), (50, 150), (0.0, 0.0))]
    >>> broken = [block((50, 50), (50, 50), (10.0, 0.0)), block((50, 150), (50, 150), (-10.0, 0.0))]
    >>> step, record = anchored_step(above[:1], np.zeros(2), broken, np.array([-10.0, 0.0]), 0.3, (5.0, 5.0))
    >>> step.tolist(), record["anchored"]
    ([10.0, 0.0], True)
    """
    tolerance = AGREE_PX * np.asarray(pixel_um, dtype=float)
    confident = [b for b in blocks if b.confidence >= min_confidence]
    anchors = _agreeing([b for b in above if b.confidence >= min_confidence], above_step_um, tolerance)
    under = _under(confident, anchors)
    record = {"blocks": len(confident), "agreeing": len(_agreeing(confident, step_um, tolerance)),
              "anchor_blocks": len(anchors), "under_anchor": len(under), "anchored": False, "reason": None}
    if record["agreeing"] == len(confident):
        record["reason"] = "the overlap's blocks agree with its peak"
        return None, record
    if not under:
        record["reason"] = "no confident block where the step above placed the slice"
        return None, record
    candidate = np.median([b.step_yx_um for b in under], axis=0)
    if len(_agreeing(under, candidate, tolerance)) < len(under):
        record["reason"] = "the blocks where the step above placed the slice disagree"
        return None, record
    if np.all(np.abs(candidate - step_um) <= tolerance):
        record["reason"] = "the blocks where the step above placed the slice agree with the peak"
        return None, record
    record["anchored"] = True
    record["reason"] = "read where the step above placed the slice (the overlap's blocks disagree)"
    return candidate, record


def anchor_lateral_steps(
    steps_um: list[np.ndarray | None], blocks: Sequence[list[LateralBlock] | None],
    lateral_confidences: Sequence[float], pixels_um: Sequence[Sequence[float] | None], min_confidence: float,
) -> list[dict | None]:
    """Anchor each step on the step above it (:func:`anchored_step`), in order down the chain; ``steps_um``
    updated in place.

    Step ``k`` (slice ``k - 1`` to ``k``) is anchored when step ``k - 1`` and
    step ``k`` both have blocks and both overlaps place laterally
    (``lateral_confidences`` at least ``min_confidence``); the record of each
    step examined, None for the others.
    """
    records: list[dict | None] = [None] * len(steps_um)
    for k in range(2, len(steps_um)):
        if (blocks[k] is None or blocks[k - 1] is None or steps_um[k] is None or steps_um[k - 1] is None
                or min(lateral_confidences[k], lateral_confidences[k - 1]) < min_confidence):
            continue
        step, records[k] = anchored_step(blocks[k - 1], steps_um[k - 1][1:], blocks[k], steps_um[k][1:],
                                         min_confidence, pixels_um[k])
        if step is not None:
            records[k]["peak_step_yx_um"] = [round(float(v), 4) for v in steps_um[k][1:]]
            steps_um[k] = np.concatenate([steps_um[k][:1], step])
    return records
