#!/usr/bin/env python3
"""Where the depth correction's error comes from: each estimate replaced by the truth, one at a time.

For every slice of a case already run by ``bench_stack.py --matrix`` or
``bench_intensity.py --matrix`` (its stitched slices, axial-correction QC
records and simulator truth), the stitched volume minus the noise floor is
corrected in memory (no flattening) in several ways and compared with the
phantom's reflectivity below the true cut:

- ``estimated``: the estimated focus profile and Vermeer's compensation (the chain);
- ``true_focus``: the true focus profile, Vermeer's compensation;
- ``true_atten``: the estimated focus, divided by the true round-trip transmission;
- ``both_true``: the true focus and the true transmission (what remains: speckle, noise, stitching);
- ``vermeer_model``: Vermeer's gain computed on the noise-free ``R * T`` over the imaged range
  (applied with the true focus): the model error of the compensation alone;
- ``vermeer_long``: the same gain with the A-line continued by the truth 150 voxels
  further (no end-of-range extension needed): the part of the model error due to the extension.

With ``--oracles``, the chain's own compensation (edge-aware tail sums, ``chain``) with one of
its estimates replaced by the truth at a time, on the measured signal (estimated focus):

- ``true_tail``: the end-of-range extension replaced by the true unseen tail (each A-line's
  seen sums times the noise-free ``R * T``'s unseen-to-seen ratio, box-averaged like the sums);
- ``no_lateral``: the tail sums of each A-line alone (no lateral average; speckle left in);
- ``label_avg``: the sums box-averaged only over the A-lines of the same true tissue at that
  depth (nearest tissue class of the true attenuation; dark tissue, reflectivity below 0.3 of
  its class's, apart), then extended as the chain does;
- ``label_tail``: ``label_avg`` with the true unseen tail instead of the extension;
- ``true_surface``: the signal above the true cut set to 0 before the edge-aware sums;
- ``model_line_long``: Vermeer's gain per A-line (no lateral average) on the noise-free
  ``R * T`` continued 150 voxels by the truth: what the Vermeer model itself costs
  (backscatter not proportional to attenuation) with every estimate exact.

Scores over the first ``--kept_px`` voxels below the deepest cut (about what the stack keeps of a slice):
NCC with the phantom on ~10 um bins (7 x 3 x 3 voxels of ``tiny``) and the CV along depth of the
per-plane mean ratio to the phantom.

Usage: python benchmarks/bench_depth_errors.py CASE_DIR [--slices 0 1 ...] [--kept_px 42] [--oracles]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from linumpy.intensity import attenuation
from linumpy.io.zarr import read_omezarr, read_omezarr_info
from linumpy.qc.records import qc_record_path, read_qc_record
from linumpy.simulate.imaging import focus_profile, transmission
from linumpy.simulate.scoring import stitched_offset

#: Voxels of ``tiny`` per score bin (about 10 um).
BIN = (7, 3, 3)
#: Extra true depth given to ``vermeer_long``.
LONG_PX = 150
VARIANTS = ("estimated", "true_focus", "true_atten", "both_true", "vermeer_model", "vermeer_long")
ORACLES = ("chain", "true_tail", "no_lateral", "label_avg", "label_tail", "true_surface", "model_line_long",
           "true_atten")
#: Lateral standard deviation of the tail sums' average (A-lines), the chain's default for both forms.
SIGMA_PX = 2.0
#: Reflectivity, relative to its class's, below which tissue counts as dark (a label of its own).
DARK_FRACTION = 0.3


def world_box(acquisition_truth: Path, truth: dict, entry: dict, attributes: dict, shape: tuple[int, int, int],
              extra_px: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflectivity, attenuation and true cut of a stitched slice's voxels (depth extended by ``extra_px``)."""
    reflectivity = read_omezarr(acquisition_truth / "phantom.ome.zarr")[0].compute()
    mu = read_omezarr(acquisition_truth / "attenuation.ome.zarr")[0].compute()
    origin = np.asarray(truth["phantom"]["world_origin_px"])
    offset = stitched_offset(attributes, entry)
    n_z, n_y, n_x = shape
    z = entry["world_z_offset_px"] + np.arange(n_z + extra_px) - origin[0]
    y = np.rint(np.arange(n_y) - offset[0] - entry["sample_shift_px"][0] - origin[1]).astype(int)
    x = np.rint(np.arange(n_x) - offset[1] - entry["sample_shift_px"][1] - origin[2]).astype(int)
    inside = (z >= 0) & (z < reflectivity.shape[0])
    index = np.ix_(np.clip(z, 0, reflectivity.shape[0] - 1), np.clip(y, 0, reflectivity.shape[1] - 1),
                   np.clip(x, 0, reflectivity.shape[2] - 1))
    r, m = reflectivity[index], mu[index]
    r[~inside], m[~inside] = 0.0, 0.0
    surface = read_omezarr(acquisition_truth / entry["surface"]["path"])[0].compute()
    sy = np.clip(np.rint(np.arange(n_y) - offset[0] - entry["surface"]["origin_px"][0]).astype(int), 0,
                 surface.shape[0] - 1)
    sx = np.clip(np.rint(np.arange(n_x) - offset[1] - entry["surface"]["origin_px"][1]).astype(int), 0,
                 surface.shape[1] - 1)
    return r, m, surface[np.ix_(sy, sx)]


def vermeer_gain(signal: np.ndarray, n_z: int | None = None) -> np.ndarray:
    """``T[0] / T[k]`` of Vermeer's compensation (tail sums as the chain takes them), first ``n_z`` depths."""
    return gain_of(attenuation.tail_sums(signal, None, SIGMA_PX), n_z or signal.shape[0])


def edge_tails(signal: np.ndarray) -> np.ndarray:
    """The chain's edge-aware tail sums of a ``(z, y, x)`` slice (one block, default settings)."""
    grid = attenuation.BinGrid.of(signal.shape[1:])
    return attenuation.edge_aware_tails(signal, attenuation.binned_tail_sums(signal, grid), grid, SIGMA_PX)


def seen_sums(tails: np.ndarray) -> np.ndarray:
    """Tail sums without their end-of-range extension (``T[z]`` is the extension alone)."""
    return tails - tails[-1:]


def true_tail_sums(seen: np.ndarray, noise_free: np.ndarray, n_z: int) -> np.ndarray:
    """``seen`` continued by the true unseen tail: ``seen[0]`` times the noise-free unseen-to-seen ratio."""
    box = attenuation.box_width(SIGMA_PX)
    seen_true = ndimage.uniform_filter(noise_free[:n_z].sum(axis=0), box, mode="nearest")
    unseen_true = ndimage.uniform_filter(noise_free[n_z:].sum(axis=0), box, mode="nearest")
    ratio = np.divide(unseen_true, seen_true, out=np.zeros_like(seen_true), where=seen_true > 0)
    return seen + (seen[0] * ratio)[None]


def tissue_labels(r: np.ndarray, mu: np.ndarray, classes: list[dict]) -> np.ndarray:
    """Nearest tissue class of the true attenuation, dark tissue a label of its own (``2 * class + dark``)."""
    log_mu = np.log([c["attenuation_per_mm"] for c in classes])
    nearest = np.abs(np.log(np.maximum(mu, 1e-3))[..., None] - log_mu).argmin(axis=-1)
    reflectivity = np.asarray([c["reflectivity"] for c in classes])[nearest]
    return 2 * nearest + (r < DARK_FRACTION * reflectivity)


def label_averaged(sums: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each plane of per-A-line ``sums`` (z + 1 planes) box-averaged over the A-lines of its own label."""
    box = attenuation.box_width(SIGMA_PX)
    out = sums.copy()
    for k in range(labels.shape[0]):
        for label in np.unique(labels[k]):
            member = (labels[k] == label).astype(np.float32)
            total = ndimage.uniform_filter(sums[k] * member, box, mode="nearest")
            count = ndimage.uniform_filter(member, box, mode="nearest")
            out[k] = np.where(member > 0, np.divide(total, count, out=sums[k].copy(), where=count > 0), out[k])
    return out


def gain_of(tails: np.ndarray, n_z: int) -> np.ndarray:
    """Vermeer's gain ``T[0] / T[k]`` of the first ``n_z`` depths (0 where ``T[k]`` is 0)."""
    return np.divide(tails[0][None], tails[:n_z], out=np.zeros((n_z,) + tails.shape[1:], np.float32),
                     where=tails[:n_z] > 0)


def oracle_corrections(signal: np.ndarray, noise_free: np.ndarray, present: np.ndarray, labels: np.ndarray,
                       true_t: np.ndarray) -> dict[str, np.ndarray]:
    """The chain's compensation of the focus-corrected ``signal`` with one estimate replaced by the truth at a time.

    ``noise_free``, ``present`` and ``true_t`` cover the imaged depth and :data:`LONG_PX` more; ``labels``
    the imaged depth.
    """
    n_z = signal.shape[0]
    chain = edge_tails(signal)
    line = seen_sums(attenuation.tail_sums(signal))
    labelled = label_averaged(line, labels)
    extended = attenuation.binned_box_tails(labelled, 0.0)  # a box of 1: the extension alone
    above_cut = np.where(present[:n_z], signal, 0.0).astype(np.float32)
    long_line = attenuation.tail_sums(noise_free)
    return {
        "chain": signal * gain_of(chain, n_z),
        "true_tail": signal * gain_of(true_tail_sums(seen_sums(chain), noise_free, n_z), n_z),
        "no_lateral": signal * gain_of(attenuation.tail_sums(signal), n_z),
        "label_avg": signal * gain_of(extended, n_z),
        "label_tail": signal * gain_of(true_tail_sums(labelled, noise_free, n_z), n_z),
        "true_surface": above_cut * gain_of(edge_tails(above_cut), n_z),
        "model_line_long": signal * gain_of(long_line - long_line[-1:], n_z),
        "true_atten": signal / true_t[:n_z],
    }


def slice_scores(case: Path, truth: dict, entry: dict, kept_px: int,
                 oracles: bool = False) -> dict[str, tuple[float, float]]:
    """``{variant: (ncc, plane-ratio CV)}`` of one slice."""
    tag = f"z{entry['slice_id']:02d}"
    stitched = case / f"slice_{tag}_stitch_3d.ome.zarr"
    axial = case / f"slice_{tag}_axial_corr.ome.zarr"
    volume = read_omezarr(stitched)[0].compute().astype(np.float32)
    metrics = read_qc_record(qc_record_path(axial))["metrics"]
    noise = read_omezarr_info(axial).attributes["noise_floor"]
    n_z = volume.shape[0]
    r, mu, cut = world_box(case / "raw" / "ground_truth", truth, entry, read_omezarr_info(stitched).attributes, volume.shape, LONG_PX)
    depth = np.arange(n_z + LONG_PX)[:, None, None]
    present = depth >= cut[None]
    true_t = transmission(mu, present, truth["resolution_um"][0])
    imaging = truth["imaging"]
    model = truth.get("conditions", {}).get("focus_model", "gaussian")
    f_true = focus_profile(n_z, imaging["focus_px"], imaging["focus_sigma_px"], model)[:, None, None]
    f_est = np.asarray(metrics.get("focus_profile", np.ones(n_z)), np.float32)[:, None, None]
    signal = np.maximum(volume - noise, 0.0)
    noise_free = (r * true_t * present).astype(np.float32)
    if oracles:
        labels = tissue_labels(r[:n_z], mu[:n_z], truth["tissue_classes"])
        corrected = oracle_corrections(signal / f_est, noise_free, present, labels, true_t)
    else:
        corrected = {
            "estimated": signal / f_est * vermeer_gain(signal / f_est),
            "true_focus": signal / f_true * vermeer_gain(signal / f_true),
            "true_atten": signal / f_est / true_t[:n_z],
            "both_true": signal / f_true / true_t[:n_z],
            "vermeer_model": signal / f_true * vermeer_gain(noise_free[:n_z]),
            "vermeer_long": signal / f_true * vermeer_gain(noise_free, n_z),
        }
    top = int(np.ceil(cut.max())) + 2
    kept = slice(top, min(n_z, top + kept_px))
    reference = (r * present)[:n_z]
    tissue = present[:n_z] & (reference > 0.2)
    binned_tissue = _bin(tissue[kept].astype(np.float32)) > 0.9
    binned_reference = _bin(reference[kept])[binned_tissue]
    scores = {}
    for name, values in corrected.items():
        ncc = _ncc(_bin(values[kept])[binned_tissue], binned_reference)
        ratios = [values[z][tissue[z]].mean() / reference[z][tissue[z]].mean()
                  for z in range(kept.start, kept.stop) if tissue[z].sum() >= 200]
        scores[name] = (ncc, float(np.std(ratios) / np.mean(ratios)))
    return scores


def _bin(volume: np.ndarray) -> np.ndarray:
    shape = [n // b * b for n, b in zip(volume.shape, BIN)]
    cropped = volume[: shape[0], : shape[1], : shape[2]]
    return cropped.reshape(shape[0] // BIN[0], BIN[0], shape[1] // BIN[1], BIN[1], shape[2] // BIN[2],
                           BIN[2]).mean(axis=(1, 3, 5))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", type=Path, help="A matrix case directory (holds raw/ and the chain's outputs).")
    parser.add_argument("--slices", type=int, nargs="+", help="Slice ids [all].")
    parser.add_argument("--kept_px", type=int, default=42, help="Depth scored below the cut [%(default)s].")
    parser.add_argument("--oracles", action="store_true",
                        help="Score the chain's edge-aware compensation with one estimate true at a time instead.")
    args = parser.parse_args()
    truth = json.loads((args.case / "raw" / "ground_truth" / "truth.json").read_text())
    names = ORACLES if args.oracles else VARIANTS
    print("| slice | " + " | ".join(f"{v} NCC / CV" for v in names) + " |\n|---|" + "---|" * len(names))
    for entry in truth["slices"]:
        if args.slices and entry["slice_id"] not in args.slices:
            continue
        scores = slice_scores(args.case, truth, entry, args.kept_px, args.oracles)
        print(f"| {entry['slice_id']} | " + " | ".join(f"{scores[v][0]:.3f} / {scores[v][1]:.3f}" for v in names)
              + " |", flush=True)


if __name__ == "__main__":
    main()
