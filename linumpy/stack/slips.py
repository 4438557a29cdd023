"""Whether a pair's two whole z scans, around the motor step and the thickness, together place it at the thickness.

A motor reading of the last slice off by about half a thickness (a jump no
later step cancels) makes the stack scan the overlap twice, around the motor
step and around the slice thickness (:func:`linumpy.stack.stacking._check_motor_slips`).
Each scan is judged alone by :func:`linumpy.stack.refine.scan_z_offset`,
whose tests refuse a broad peak: on a strip of deep tiles (foreign odd2 292,
1 x 4 tiles, 3 um planes, focus 70 planes deep) the curve around the
thickness peaks at 0.557 but falls only 0.06 to its far edge, six planes
away, and neither scan nor the overlap's blocks were confident: the slice
kept its motor step, 35 um too shallow.

The two scans read the same NCC curve over two windows of offsets, and
together they bracket the peak: the scan around the motor step rises all the
way to its edge toward the thickness (the match improves beyond it), and the
scan around the thickness peaks inside its window, the highest of both, above
every offset of either scan at least
:data:`~linumpy.stack.refine.LOBE_RIVAL_DISTANCE_PX` planes away on each side
(a broad peak's own lobe is not its rival) by the rise a peak must have
(:data:`~linumpy.stack.refine.MIN_PEAK_PROMINENCE` of the ceiling, and
:data:`~linumpy.stack.refine.MIN_PEAK_NOISE_RATIO` times the curve's noise).
On odd2 308 (the same case) the peak rose 0.040 over the motor scan's edge
five planes away, 0.052 over everything six planes or more away.
A lost section (a real step of two thicknesses) does not: its scan around
the thickness climbs on toward the motor step, peaking on its edge.
"""

from __future__ import annotations

import numpy as np

from linumpy.stack.refine import LOBE_RIVAL_DISTANCE_PX, MIN_PEAK_NOISE_RATIO, MIN_PEAK_PROMINENCE, PairEstimate

#: Fewest offsets each scan must have read.
MIN_SCAN_OFFSETS = 3


def climb_to_thickness(motor: PairEstimate | None, thickness: PairEstimate | None) -> dict | None:
    """The two scans' evidence that the slice lies at the thickness, or None when they do not bracket a peak there.

    The scans are read as one curve over the union of their offsets (the
    higher value where both read an offset). The peak must be the
    thickness scan's best, inside its window; the motor scan's best on its
    edge toward the thickness; and the peak must rise above every offset
    :data:`~linumpy.stack.refine.LOBE_RIVAL_DISTANCE_PX` or more away on
    either side (the rivals of a peak on its own lobe in
    :func:`~linumpy.stack.refine.scan_z_offset`) by ``rise_needed``.

    Parameters
    ----------
    motor, thickness : PairEstimate or None
        The whole overlap's registrations around the motor step and around
        the thickness (their ``offsets_scanned`` and ``ncc_curve`` in the
        same frame: the previous slice's useful planes).

    Returns
    -------
    dict or None
        ``motor_edge_ncc`` (the motor scan's highest NCC, on its edge toward
        the thickness), ``thickness_peak_ncc``, ``near_rival_ncc`` and
        ``far_rival_ncc`` (the highest NCC at least the rival distance away,
        toward the motor step and away from it) and ``rise_needed``; None
        when the motor scan's best is not on that edge, the thickness scan's
        peak is on an edge of its window or not the union's highest, or the
        peak does not rise by ``rise_needed`` above the rivals on both sides.

    Examples
    --------
    >>> scan = lambda offsets, curve: PairEstimate(0.0, 0.0, (0.0, 0.0), 0.5, z_ceiling=1.0, z_noise=0.005,
    ...                                            offsets_scanned=list(offsets), ncc_curve=list(curve))
    >>> motor = scan(range(3, 10), [0.36, 0.38, 0.40, 0.42, 0.44, 0.46, 0.48])  # rising to its edge
    >>> climb_to_thickness(motor, scan(range(8, 22), [0.47, 0.48, 0.50, 0.53, 0.55, 0.56, 0.55, 0.54, 0.53, 0.52,
    ...                                               0.51, 0.50, 0.49, 0.48]))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'motor_edge_ncc': 0.48, 'thickness_peak_ncc': 0.56, 'near_rival_ncc': 0.44, 'far_rival_ncc': 0.5,
     'rise_needed': 0.05}
    >>> climb_to_thickness(motor, scan(range(8, 15), [0.47, 0.48, 0.50, 0.52, 0.54, 0.55, 0.56]))  # on its edge
    >>> climb_to_thickness(scan(range(3, 10), [0.36, 0.48, 0.42, 0.40, 0.39, 0.38, 0.37]),  # motor peaks inside
    ...                    scan(range(8, 15), [0.45, 0.48, 0.52, 0.56, 0.54, 0.52, 0.49]))
    """
    if not _scanned(motor) or not _scanned(thickness):
        return None
    toward = np.sign(np.mean(thickness.offsets_scanned) - np.mean(motor.offsets_scanned))
    if toward == 0:
        return None
    motor_curve, curve = np.asarray(motor.ncc_curve), np.asarray(thickness.ncc_curve)
    best = int(np.argmax(curve))
    edge = -1 if toward > 0 else 0  # the motor scan's edge toward the thickness
    if int(np.argmax(motor_curve)) != edge % motor_curve.size or not 0 < best < curve.size - 1:
        return None
    union = dict(zip(motor.offsets_scanned, motor_curve.tolist()))
    for offset, value in zip(thickness.offsets_scanned, curve.tolist()):
        union[offset] = max(value, union.get(offset, -np.inf))
    peak, at = float(curve[best]), thickness.offsets_scanned[best]
    if max(union.values()) > peak:
        return None
    near = [v for o, v in union.items() if toward * (at - o) >= LOBE_RIVAL_DISTANCE_PX]
    far = [v for o, v in union.items() if toward * (o - at) >= LOBE_RIVAL_DISTANCE_PX]
    if not near or not far:
        return None
    noise = max(motor.z_noise or 0.0, thickness.z_noise or 0.0)
    rise = max(MIN_PEAK_PROMINENCE * (thickness.z_ceiling or 1.0), MIN_PEAK_NOISE_RATIO * noise)
    if peak - max(near) < rise or peak - max(far) < rise:
        return None
    return {"motor_edge_ncc": round(float(motor_curve.max()), 4), "thickness_peak_ncc": round(peak, 4),
            "near_rival_ncc": round(max(near), 4), "far_rival_ncc": round(max(far), 4),
            "rise_needed": round(float(rise), 4)}


def _scanned(estimate: PairEstimate | None) -> bool:
    """Whether a registration read a curve over at least :data:`MIN_SCAN_OFFSETS` offsets."""
    return (estimate is not None and len(estimate.offsets_scanned or []) >= MIN_SCAN_OFFSETS
            and len(estimate.ncc_curve or []) == len(estimate.offsets_scanned))
