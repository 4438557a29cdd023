"""QC records of the axial correction and the normalization (see ``docs/qc.md``).

Both steps accumulate small summaries during the passes they already make
(depth profiles, a histogram of surface depths, attenuation sums, intensity
histograms) and write them with :func:`linumpy.qc.records.write_qc_record`
once the output is complete: no extra pass over the slice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from linumpy.intensity.histogram import LogHistogram
from linumpy.qc.records import render_png, write_qc_record

if TYPE_CHECKING:  # the normalize step imports this module: not the attenuation model (scipy, numba)
    from linumpy.intensity.attenuation_map import WindowedAttenuation

#: Resolution of the histogram of surface depths (bins per voxel).
SURFACE_BINS_PER_PX = 10
#: Below this fraction of A-lines with a detected surface, the record flags the slice.
LOW_SURFACE_FRACTION = 0.05
#: Bins of the displayed histograms.
DISPLAY_BINS = 100
#: Above this fraction of the tissue A-lines clamped to 0 or too faint in the attenuation map, the record flags
#: the slice (much of the map is then no measurement; measured 5-10% per slice on the foreign acquisitions,
#: 10-39% on the simulator's matrix, whose thin layers brighten with depth).
MAX_UNRELIABLE_FRACTION = 0.4
#: Share of the imaged A-lines without support (too few detected surfaces of their class around them,
#: ``attenuation_map.surface_support``) above which the record flags the slice: their regions' attenuation
#: is not measured (far above the focus the gel's and dark tissue's cut is under the noise floor; what the
#: map holds there rests on cuts a brighter neighbour's light lifted). Measured (rim67) on the independent
#: generator: 38-44% per slice on harsh B with the focus 90 planes deep (the gel +260-272 %), 15-22% on audit A
#: with the focus 70 planes deep (the gel within 2 %: partly unsupported, read right), <= 0.4% at focus 45.
MAX_SPARSE_FRACTION = 0.3


@dataclass(frozen=True)
class ClassSupport:
    """One block's counts of A-lines behind the attenuation map's support fields (summed block by block).

    Attributes
    ----------
    borrowed : int
        A-lines (any class) mapped from a neighbour's surface.
    lines : int
        Imaged A-lines (pass 1's level above 0: not padding).
    sparse, sparse_mapped : int
        Imaged A-lines (any class) without support (too few detected surfaces of their class around
        them, ``WindowedAttenuation.sparse``), and those of them with a value in the map.
    dim_lines, dim_sparse : int
        Imaged A-lines of the dim class (pass 1's level at most the slice's tissue level: agarose, tissue
        as dim; none without a level split), and those of them without support.
    planed : int
        A-lines mapped from the slice's cut plane (``WindowedAttenuation.planed`` with a value).
    """

    borrowed: int = 0
    lines: int = 0
    sparse: int = 0
    sparse_mapped: int = 0
    dim_lines: int = 0
    dim_sparse: int = 0
    planed: int = 0

    @classmethod
    def of(cls, mapped: WindowedAttenuation, level: np.ndarray, tissue_level: float | None) -> ClassSupport:
        """The counts of a block's map, its A-lines' levels (0: padding) and the slice's tissue level (None: no class)."""
        imaged = level > 0
        dim = imaged & (level <= tissue_level) if tissue_level is not None else np.zeros(level.shape, bool)
        sparse = mapped.sparse & imaged
        return cls(int(np.count_nonzero(mapped.borrowed)), int(np.count_nonzero(imaged)),
                   int(np.count_nonzero(sparse)), int(np.count_nonzero(sparse & np.isfinite(mapped.mu))),
                   int(np.count_nonzero(dim)), int(np.count_nonzero(dim & sparse)),
                   int(np.count_nonzero(mapped.planed & np.isfinite(mapped.mu))))

    def __add__(self, other: ClassSupport) -> ClassSupport:
        return ClassSupport(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


class AxialQc:
    """Summaries of one slice's axial correction, accumulated block by block (in block order).

    Parameters
    ----------
    depth : int
        Input depth (voxels).
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.raw_sums = np.zeros(depth, np.float64)
        self.surface_counts = np.zeros(SURFACE_BINS_PER_PX * depth + 1, np.int64)
        self.n_lines = 0
        self.corrected_sums: np.ndarray | None = None
        self.mu_sum = 0.0
        self.mu_count = 0
        self.window_counts = np.zeros(depth + 1, np.int64)
        self.shortened = 0
        self.clamped = 0
        self.faint = 0
        self.mixed = 0
        self.stepped = 0
        self.support = ClassSupport()
        self.nonzero = 0
        self.floored = 0
        self.compensated = 0
        self.ended = 0

    def add_raw(self, depth_sums: np.ndarray, surface_px: np.ndarray) -> None:
        """Pass 1: the block's intensity summed per depth and its surface map (voxels, NaN for none)."""
        self.raw_sums += depth_sums
        self.n_lines += surface_px.size
        found = surface_px[np.isfinite(surface_px)]
        index = np.clip(np.floor(found * SURFACE_BINS_PER_PX).astype(np.int64), 0, self.surface_counts.size - 1)
        self.surface_counts += np.bincount(index, minlength=self.surface_counts.size)

    def add_corrected(
        self, depth_sums: np.ndarray, tissue: WindowedAttenuation, nonzero: int,
        support: ClassSupport = ClassSupport(),
    ) -> None:
        """Pass 2: the corrected block summed per output depth, the attenuation map of its tissue A-lines.

        ``support``: the block's counts of borrowed surfaces, A-lines unmapped for want of support and the
        dim class's (:class:`ClassSupport`).
        """
        self.corrected_sums = depth_sums.copy() if self.corrected_sums is None else self.corrected_sums + depth_sums
        self.mu_sum += float(tissue.whole.sum(dtype=np.float64))
        self.mu_count += tissue.whole.size
        mapped = np.isfinite(tissue.mu)
        windows = np.clip(np.rint(tissue.window_px[mapped]).astype(np.int64), 0, self.depth)
        self.window_counts += np.bincount(windows, minlength=self.depth + 1)
        self.shortened += int(np.count_nonzero(tissue.shortened))
        self.clamped += int(np.count_nonzero(tissue.clamped))
        self.faint += int(np.count_nonzero(tissue.faint))
        self.mixed += int(np.count_nonzero(tissue.mixed))
        self.stepped += int(np.count_nonzero(tissue.stepped))
        self.support = self.support + support
        self.nonzero += nonzero

    def add_floored(self, raised: int, compensated: int, ended: int = 0) -> None:
        """Pass 2: a block's voxels whose compensation sums were raised to the noise's, of those compensated, and
        its A-lines whose compensation range ended in the noise."""
        self.floored += int(raised)
        self.compensated += int(compensated)
        self.ended += int(ended)

    def attenuation_map_qc(self, dz_um: float) -> tuple[dict[str, Any], list[str]]:
        """The attenuation map's fields over the tissue A-lines (window, shortened, clamped, faint, mixed), its flag."""
        count = max(1, self.mu_count)
        cumulative = np.cumsum(self.window_counts)
        median = int(np.searchsorted(cumulative, cumulative[-1] / 2.0)) if cumulative[-1] else None
        clamped, faint = self.clamped / count, self.faint / count
        metrics = {
            "attenuation_map_window_um": None if median is None else round(median * dz_um, 3),
            "attenuation_map_shortened_fraction": round(self.shortened / count, 6),
            "attenuation_map_clamped_fraction": round(clamped, 6),
            "attenuation_map_faint_fraction": round(faint, 6),
            "attenuation_map_mixed_fraction": round(self.mixed / count, 6),
            "attenuation_map_borrowed_surface_lines": self.support.borrowed,
            "attenuation_step_fraction": round(self.stepped / count, 6),
            **self._support_metrics(),
        }
        flags = self._support_flags()
        if clamped + faint > MAX_UNRELIABLE_FRACTION:
            flags.append(f"attenuation map unreliable on {100 * (clamped + faint):.1f}% of the tissue A-lines: "
                         f"{100 * clamped:.1f}% read a negative decay rate (signal rising with depth: a cavity or a "
                         f"brighter region right below the cut; set to 0), {100 * faint:.1f}% too faint (NaN)")
        return metrics, flags

    def _support_metrics(self) -> dict[str, Any]:
        """The map's support fields: the imaged A-lines without support, of every class and of the dim class."""
        support = self.support
        return {
            "attenuation_map_sparse_fraction": round(support.sparse / max(1, support.lines), 6),
            "attenuation_map_sparse_mapped_lines": support.sparse_mapped,
            "attenuation_map_dim_lines": support.dim_lines,
            "attenuation_map_dim_sparse_fraction": (round(support.dim_sparse / support.dim_lines, 6)
                                                    if support.dim_lines else None),
            "attenuation_map_cut_plane_lines": support.planed,
        }

    def _support_flags(self) -> list[str]:
        """A flag when more than :data:`MAX_SPARSE_FRACTION` of the imaged A-lines are without support."""
        support = self.support
        if support.sparse <= MAX_SPARSE_FRACTION * support.lines:
            return []
        dim = (f", {100 * support.dim_sparse / support.dim_lines:.0f}% of the dim class (agarose, tissue as dim)"
               if support.dim_lines else "")
        lifted = support.sparse_mapped - support.planed
        return [f"attenuation not measured on {100 * support.sparse / support.lines:.1f}% of the imaged A-lines"
                f"{dim}: their region's cut is detected on too few A-lines around them (under the noise floor far "
                f"above the focus); {lifted} values mapped there rest on cuts a brighter neighbour's light lifted "
                f"and read its decay, {support.planed} were fitted from the slice's cut plane (their own signal, "
                f"far from the focus: the decay the focus profile leaves in it; the gel's and dark tissue's "
                f"attenuation: weakly measured)"]

    def tissue_attenuation_per_mm(self) -> float | None:
        """Mean decay-fit attenuation of the tissue A-lines so far (mm^-1, 4 decimals), None without any."""
        return round(self.mu_sum / self.mu_count, 4) if self.mu_count else None

    @property
    def surface_fraction(self) -> float:
        """Fraction of the A-lines with a detected surface."""
        return int(self.surface_counts.sum()) / max(1, self.n_lines)

    def surface_percentile_px(self, percent: float) -> float | None:
        """A percentile of the detected surface depths (voxels, to 1 / SURFACE_BINS_PER_PX), None without surface."""
        cumulative = np.cumsum(self.surface_counts)
        if cumulative[-1] == 0:
            return None
        index = int(np.searchsorted(cumulative, cumulative[-1] * percent / 100.0))
        return (index + 0.5) / SURFACE_BINS_PER_PX

    def record(
        self, attributes: dict[str, Any], dz_um: float, focus_qc: dict[str, Any] | None = None,
        focus_flags: list[str] | None = None, focus_profile: np.ndarray | None = None,
    ) -> tuple[dict[str, Any], dict[str, bytes], list[str]]:
        """The QC record's metrics, depth profile figure (rendered) and flags, once both passes are summed.

        ``attributes``: the output's ``linumpy`` attributes. ``focus_qc`` /
        ``focus_flags`` (from :func:`linumpy.intensity.focus.estimate_focus`)
        join the metrics and flags; ``focus_profile`` (the profile divided by)
        is drawn with the before/after profiles. Returns ``(metrics, figures,
        flags)`` for :func:`linumpy.qc.records.write_qc_record` (step
        ``axial_corr``): the figure is rendered here, so that a step can make
        it on a thread while it publishes its outputs.
        """
        out_depth = int(attributes["useful_depth_px"])
        median_px = self.surface_percentile_px(50.0)
        n_voxels = max(1, self.n_lines * out_depth)
        map_metrics, map_flags = self.attenuation_map_qc(dz_um)
        metrics = {
            "surface_detected_fraction": round(self.surface_fraction, 6),
            "median_surface_depth_um": None if median_px is None else round(median_px * dz_um, 3),
            "mean_attenuation_tissue_per_mm": self.tissue_attenuation_per_mm(),
            "n_tissue_lines": self.mu_count,
            **map_metrics,
            "noise_floor": float(attributes["noise_floor"]),
            "noise_variance": float(attributes["noise_variance"]),
            "useful_depth_um": round(out_depth * dz_um, 3),
            "focus_mode": attributes["focus_mode"],
            "attenuation_mode": attributes["attenuation_mode"],
            "attenuation_tail_average": attributes.get("attenuation_tail_average"),
            "attenuation_step_log": attributes.get("attenuation_step_log"),
            "attenuation_sum_floor": attributes.get("attenuation_sum_floor"),
            "attenuation_floored_fraction": (round(self.floored / self.compensated, 6) if self.compensated
                                             else None),
            "attenuation_noise_end_fraction": (round(self.ended / self.n_lines, 6) if self.compensated and self.n_lines
                                               else None),
            "nonzero_fraction": round(self.nonzero / n_voxels, 6),
            **(focus_qc or {}),
        }
        flags = list(focus_flags or []) + map_flags
        if self.surface_fraction < LOW_SURFACE_FRACTION:
            flags.append(f"tissue surface detected in only {100 * self.surface_fraction:.1f}% of the A-lines")
        if str(attributes["focus_mode"]).startswith("none ("):
            flags.append(f"focus correction skipped: {attributes['focus_mode']}")
        depths, profiles, surface_um = self._profiles(attributes, median_px, dz_um)
        if focus_profile is not None:
            profiles["focus profile (divided by)"] = _scaled(np.asarray(focus_profile, np.float64))
        if focus_qc and "focus_support_lines" in focus_qc:
            profiles["agarose A-lines per depth"] = _scaled(np.asarray(focus_qc["focus_support_lines"], np.float64))
        from linumpy.qc.figures import depth_profiles_figure  # imported while the passes run

        figure = depth_profiles_figure(depths, profiles, surface_um,
                                       title="mean intensity per depth (each scaled to its maximum)")
        return metrics, {"depth_profiles": render_png(figure)}, flags

    def _profiles(
        self, attributes: dict[str, Any], median_px: float | None, dz_um: float
    ) -> tuple[np.ndarray, dict[str, np.ndarray], float | None]:
        """Depths (um from the top of the input), before/after profiles, surface depth.

        The output depth ``j`` is drawn at the input depth where it lay for an
        A-line whose surface is the median surface.
        """
        before = self.raw_sums / max(1, self.n_lines)
        after = np.full(self.depth, np.nan)
        offset = int(round(median_px or 0.0)) - int(attributes["surface_depth_px"])
        if self.corrected_sums is not None:
            corrected = self.corrected_sums / max(1, self.n_lines)
            rows = np.arange(corrected.size) + offset
            keep = (rows >= 0) & (rows < self.depth)
            after[rows[keep]] = corrected[keep]
        profiles = {"before": _scaled(before), "after": _scaled(after)}
        surface_um = None if median_px is None else median_px * dz_um
        return np.arange(self.depth) * dz_um, profiles, surface_um


def write_normalize_qc(
    out_path: str | os.PathLike,
    tissue_values: LogHistogram | None,
    values: tuple[float, float] | None,
    attributes: dict[str, Any],
    nonzero: int,
    n_voxels: int,
    capped_voxels: int = 0,
) -> None:
    """Write the QC record of one slice's normalization.

    Parameters
    ----------
    out_path : path-like
        The normalized output.
    tissue_values : LogHistogram or None
        Histogram of the (flat-fielded) tissue voxels before normalization
        (None for an empty slice). The histogram after normalization is this
        one with its bin edges mapped through the (monotonic) normalization.
    values : (float, float) or None
        ``(p_low, p_high)`` in input units.
    attributes : dict
        The output's ``linumpy`` attributes (tissue fraction, percentiles).
    nonzero, n_voxels : int
        Non-zero output voxels and all output voxels.
    capped_voxels : int
        Voxels lowered by the speckle cap (``attributes["speckle_cap"]``) before the percentile map.
    """
    low, high = values if values is not None else (None, None)
    median_after = None
    figures = {}
    if tissue_values is not None and values is not None and tissue_values.total:
        median_after = float(np.clip((tissue_values.percentile(50.0) - low) / (high - low), 0.0, 1.0))
        from linumpy.qc.figures import intensity_histograms_figure  # imported while the passes run

        before, after = _normalization_histograms(tissue_values, low, high)
        figures["intensity_histograms"] = intensity_histograms_figure(
            {"before (tissue voxels)": before, "after (tissue voxels)": after},
            {"p_low": low, "p_high": high}, title="tissue intensities before and after normalization")
    metrics = {
        "p_low": low,
        "p_high": high,
        "percentiles": list(attributes["normalize_percentiles"]),
        "tissue_fraction": attributes["tissue_fraction"],
        "tissue_median_after": None if median_after is None else round(median_after, 6),
        "nonzero_fraction": round(nonzero / max(1, n_voxels), 6),
        "flatfield": attributes["flatfield"],
        "speckle_cap": attributes.get("speckle_cap", 0.0),
        "speckle_capped_fraction": round(capped_voxels / max(1, n_voxels), 6),
    }
    flags = [] if values is not None else ["empty slice: no positive intensity, written as zeros"]
    write_qc_record(out_path, "normalize", metrics, figures, flags)


def _normalization_histograms(
    histogram: LogHistogram, low: float, high: float
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(counts, edges)`` of the tissue values before (linear bins up to ~p99.9) and after normalization."""
    centers = 10 ** histogram.centers
    top = max(histogram.percentile(99.9), high) * 1.05
    before_edges = np.linspace(0.0, top, DISPLAY_BINS + 1)
    before = np.histogram(np.minimum(centers, top), before_edges, weights=histogram.counts)[0]
    before[0] += histogram.zeros
    after_edges = np.linspace(0.0, 1.0, DISPLAY_BINS + 1)
    normalized = np.clip((np.concatenate([[0.0], centers]) - low) / (high - low), 0.0, 1.0)
    after = np.histogram(normalized, after_edges, weights=np.concatenate([[histogram.zeros], histogram.counts]))[0]
    return (before, before_edges), (after, after_edges)


def _scaled(profile: np.ndarray) -> np.ndarray:
    """A profile divided by its largest finite value (unchanged if that is not positive)."""
    finite = profile[np.isfinite(profile)]
    peak = finite.max() if finite.size else 0.0
    return profile / peak if peak > 0 else profile
