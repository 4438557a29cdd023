"""Where a stacked volume's NCC with the phantom is lost (``bench_stack.py --matrix --diagnose``).

On the arrays the matrix scores (:func:`linumpy.simulate.scoring.scored_volume`: the stack's 10 um level, the
phantom and the speckled phantom on its grid, the tissue mask), the volume's NCC inside tissue is
recomputed

- per plane and per third of each slab (top, middle, bottom of the planes between a slice's origin and the
  next one's), the slabs with a slice below apart from the last slab;
- after **oracle** corrections that use the truth: each plane scaled to its true mean (``plane``); each
  plane divided by its smoothed ratio to the truth (a lateral field, Gaussian sigma 1 / 2 / 4 voxels,
  ``lateral_s*``; ``lateral_s2_only_last`` / ``_only_inner``: the sigma-2 field removed from the last slab
  only / from the other slabs only); the whole volume divided by one lateral map (a flat field:
  ``volume_map``); each slab divided by one lateral map (its ratio to the truth summed over the slab's
  planes, sigma 2: ``slab_map``) or by a map that changes linearly with depth within the slab (a
  least-squares line in depth per A-line of the smoothed log ratio: ``slab_ramp``);
- after a low-pass (Gaussian sigma 1 voxel, normalised over tissue) of both the volume and the phantom
  (``lowpass_s1``; ``ceiling_lowpass_s1``: the speckled phantom alike): a loss that stays after it is a
  smooth intensity field, one that goes is speckle and noise;
- with each slab's phantom moved by its best sub-voxel shift (``placement``: per axis, -0.5 to +0.5 voxel,
  linear interpolation; the shift found, ``placement_shift_vox``).

Usage: ``python benchmarks/bench_stack.py --matrix --diagnose ...`` prints one JSON line per case.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from linumpy.simulate.scoring import ScoredVolume, pearson

#: Fewest tissue voxels for a plane's or a band's NCC.
MIN_VOXELS = 200
#: Lateral sigmas (voxels) of the oracle fields.
FIELD_SIGMAS = (1.0, 2.0, 4.0)
#: Sigma (voxels) of the slab maps and of the low-pass.
MAP_SIGMA, LOWPASS_SIGMA = 2.0, 1.0
#: Sub-voxel shifts of the placement search.
SHIFTS = (-0.5, -0.25, 0.0, 0.25, 0.5)


def slab_layout(starts: list[int], depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Per plane: its slab (the last slice origin at or above it) and its relative depth in the slab (0-1).

    The last slab's depth runs to the last plane.

    Examples
    --------
    >>> slab, t = slab_layout([0, 4], 8)
    >>> slab.tolist(), t.round(2).tolist()
    ([0, 0, 0, 0, 1, 1, 1, 1], [0.0, 0.25, 0.5, 0.75, 0.0, 0.25, 0.5, 0.75])
    """
    z = np.arange(depth)
    slab = np.clip(np.searchsorted(starts, z, side="right") - 1, 0, len(starts) - 1)
    ends = np.array([*starts[1:], depth])
    begin = np.asarray(starts)[slab]
    return slab, (z - begin) / np.maximum(1, ends[slab] - begin)


def _smooth(values: np.ndarray, weight: np.ndarray, sigma: tuple[float, ...]) -> np.ndarray:
    """Gaussian of ``values`` normalised over ``weight`` (NaN where the weight is below 0.1)."""
    num = ndimage.gaussian_filter(values * weight, sigma, mode="constant")
    den = ndimage.gaussian_filter(weight.astype(np.float64), sigma, mode="constant")
    return np.where(den > 0.1, num / np.maximum(den, 1e-12), np.nan)


def _ratio_field(volume: np.ndarray, reference: np.ndarray, tissue: np.ndarray,
                 sigma: tuple[float, ...]) -> np.ndarray:
    """Smoothed volume over smoothed phantom, over their ratio on the whole tissue (1 where unsupported)."""
    ratio = _smooth(volume, tissue, sigma) / _smooth(reference, tissue, sigma) / (volume[tissue].sum()
                                                                              / reference[tissue].sum())
    return np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)


def _score(volume: np.ndarray, reference: np.ndarray, tissue: np.ndarray) -> float:
    return round(pearson(volume[tissue], reference[tissue]), 4) if tissue.sum() >= MIN_VOXELS else float("nan")


def _slab_maps(volume: np.ndarray, reference: np.ndarray, tissue: np.ndarray, slab: np.ndarray,
               t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The volume divided by each slab's oracle lateral map (constant in depth) and by its depth ramp."""
    sigma = (0.0, MAP_SIGMA, MAP_SIGMA)
    num = ndimage.gaussian_filter(volume * tissue, sigma, mode="constant")
    den = ndimage.gaussian_filter(reference * tissue, sigma, mode="constant")
    weight = ndimage.gaussian_filter(tissue.astype(np.float64), sigma, mode="constant")
    constant, ramp = volume.copy(), volume.copy()
    for k in np.unique(slab):
        planes = slab == k
        total = num[planes].sum(axis=0) / np.maximum(den[planes].sum(axis=0), 1e-12)
        constant[planes] /= np.where(total > 0, total, 1.0)[None]
        ok = (num[planes] > 0) & (den[planes] > 0) & (weight[planes] > 0.1)
        log = np.where(ok, np.log(np.where(ok, num[planes], 1) / np.where(ok, den[planes], 1)), 0.0)
        w = np.where(ok, weight[planes], 0.0)
        tt = t[planes][:, None, None]
        s0, s1, s2 = w.sum(0), (w * tt).sum(0), (w * tt**2).sum(0)
        b0, b1 = (w * log).sum(0), (w * tt * log).sum(0)
        det = s0 * s2 - s1**2
        safe = det > 1e-9 * np.maximum(s0, 1e-12) ** 2
        slope = np.where(safe, (s0 * b1 - s1 * b0) / np.where(safe, det, 1), 0.0)
        level = np.where(s0 > 0, (b0 - slope * s1) / np.maximum(s0, 1e-12), 0.0)
        ramp[planes] /= np.exp(level[None] + slope[None] * tt)
    return constant, ramp


def _placement(volume: np.ndarray, reference: np.ndarray, tissue: np.ndarray,
               slab: np.ndarray) -> tuple[np.ndarray, list[list[float]]]:
    """The phantom with each slab's planes taken from the phantom shifted by the slab's best sub-voxel shift."""
    moved, found = reference.copy(), []
    for k in np.unique(slab):
        planes = slab == k
        inside = tissue & planes[:, None, None]
        best = [0.0, 0.0, 0.0]
        for axis in range(3):
            scores = []
            for shift in SHIFTS:
                vector = [0.0, 0.0, 0.0]
                vector[axis] = shift
                shifted = ndimage.shift(reference, vector, order=1, mode="nearest")
                scores.append(_score(volume, shifted, inside))
            best[axis] = SHIFTS[int(np.nanargmax(scores))] if np.isfinite(scores).any() else 0.0
        moved[planes] = ndimage.shift(reference, best, order=1, mode="nearest")[planes]
        found.append(best)
    return moved, found


def diagnose(scored: ScoredVolume) -> dict[str, Any]:
    """NCC of the volume with the phantom, decomposed (see the module docstring)."""
    volume = scored.volume.astype(np.float64)
    reference, speckled, tissue = scored.reference.astype(np.float64), scored.speckled, scored.tissue
    slab, t = slab_layout(scored.slab_starts, volume.shape[0])
    last = slab == slab.max()
    out: dict[str, Any] = {"ncc": _score(volume, reference, tissue),
                           "ceiling": _score(speckled, reference, tissue)}
    plane_ncc = [_score(volume[z], reference[z], tissue[z]) for z in range(volume.shape[0])]
    out["plane_ncc"] = [None if not np.isfinite(v) else v for v in plane_ncc]
    for name, region in (("inner", ~last), ("last", last)):
        for band, (lo, hi) in zip(("top", "middle", "bottom"), ((0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.01))):
            planes = region & (t >= lo) & (t < hi)
            out[f"{name}_{band}"] = _score(volume, reference, tissue & planes[:, None, None])
    means = np.array([volume[z][tissue[z]].mean() / reference[z][tissue[z]].mean()
                      if tissue[z].sum() >= MIN_VOXELS else np.nan for z in range(volume.shape[0])])
    out["plane"] = _score(volume / np.where(np.isfinite(means), means, 1.0)[:, None, None], reference, tissue)
    for sigma in FIELD_SIGMAS:
        field = _ratio_field(volume, reference, tissue, (0.0, sigma, sigma))
        out[f"lateral_s{sigma:g}"] = _score(volume / field, reference, tissue)
        out[f"lateral_s{sigma:g}_last"] = _score(volume / field, reference, tissue & last[:, None, None])
        if sigma == MAP_SIGMA:  # the field removed from the last slab only, then from the others only
            only_last = np.where(last[:, None, None], field, 1.0)
            out["lateral_s2_only_last"] = _score(volume / only_last, reference, tissue)
            out["lateral_s2_only_inner"] = _score(volume * only_last / field, reference, tissue)
    constant, _ = _slab_maps(volume, reference, tissue, np.zeros_like(slab), t)
    out["volume_map"] = _score(constant, reference, tissue)
    constant, ramp = _slab_maps(volume, reference, tissue, slab, t)
    out["slab_map"], out["slab_ramp"] = _score(constant, reference, tissue), _score(ramp, reference, tissue)
    out["slab_ramp_inner"] = _score(ramp, reference, tissue & ~last[:, None, None])
    sigma3 = (LOWPASS_SIGMA,) * 3
    low_reference = np.nan_to_num(_smooth(reference, tissue, sigma3))
    out["lowpass_s1"] = _score(np.nan_to_num(_smooth(volume, tissue, sigma3)), low_reference, tissue)
    out["ceiling_lowpass_s1"] = _score(np.nan_to_num(_smooth(speckled, tissue, sigma3)), low_reference, tissue)
    moved, shifts = _placement(volume, reference, tissue, slab)
    out["placement"], out["placement_shift_vox"] = _score(volume, moved, tissue), shifts
    profile = []
    for k in range(int(slab.max()) + 1):
        thirds = [np.nanmean(means[(slab == k) & (t >= lo) & (t < hi)]) if ((slab == k) & (t >= lo) & (t < hi)
                  & np.isfinite(means)).any() else np.nan for lo, hi in ((0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.01))]
        profile.append([None if not np.isfinite(v) else round(float(v), 3) for v in thirds])
    out["slab_ratio_thirds"] = profile
    return out
