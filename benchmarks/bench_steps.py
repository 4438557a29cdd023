#!/usr/bin/env python3
"""Each pipeline step against its own I/O floor, measured in the same run.

One slice of a preset (``large`` by default; simulated tile by tile and
reused if the work folder holds it) goes through the chain: mosaic grid,
stitch, axial correction, normalize; optionally the stack of the normalized
slices of a finished local run (``--stack_run RUN --steps stack_slices``
measures the stack alone; the slice is then not simulated). As in the pipelines, the
mosaic grid applies the acquisition's field-curvature decision, estimated once before
the runs (untimed; ``--per_slice_curvature``: the mosaic grid estimates it itself). Each step runs in a child
process (its own peak RSS and CPU time, user and system apart), its earlier outputs removed first (untimed:
a pipeline never overwrites, and the floor writes a new array). Its **floor** runs in
another child: read the step's input at level 0 chunk column by column (raw
``.bin`` files for the mosaic grid) and write an array of the output's shape,
dtype, chunks and codec with zarr-python (the values written are the step's
own output, read back untimed), no computation; the pages of the files it
reads and writes are released as the steps release theirs
(:mod:`linumpy.io.page_cache`, where ``LINUMPY_RELEASE_PAGES`` enables it; the
written chunk files' after its lag, timed), so that step and floor pay the
same price for their pages (``--floor_keeps_pages``: zarr-python keeps them
cached, the floor before session speed63). The same child then writes,
timed apart, every other array the step wrote (its output's pyramid levels,
its side outputs' levels: an AIP, the axial correction's maps and
uncompensated volume): the **full floor** is the floor plus those writes, all
the I/O the step's outputs need.

**Same file-system state.** The floors and the runs of a step are interleaved,
floor / step / floor / ... / floor (``--repeats`` steps, one more floor; a step
whose outputs are missing runs once untimed first: the floor copies its
output), and each run of the step is compared with the mean of the two floors
around it, so a drift of the machine during the runs reaches both alike. Before
every timed run, of a step and of its floor alike: the previous outputs are
deleted, the dirty pages flushed (``os.sync``; ``--no_sync``: not), and, where
the kernel reports free pages to the host (a VM's free page reporting,
``/sys/module/page_reporting``), the benchmark waits until the pages just
freed are reported (``--no_page_wait``: not), so that neither run starts on
the pages the deletion before it freed. The reason: on such a VM a page the
kernel takes for a new file (or a new allocation) costs ~4-8 ms of system CPU
per MB when it was reported to the host, ~0.2 ms when it was freed a moment
before (``benchmarks/README.md``, session axial61), and a step writes GBs.
The wait is best effort: the kernel apparently reports only once about a GB is waiting,
machine-wide, so what a run pays still depends on what every process freed
before it (the axial correction's floors took 11-22 CPU s in one run); that
cost is the VM's, not the step's, and the report states it: the system CPU of
every run apart, the user-CPU ratios that leave it out, and the price of a new
page measured before the runs (``file_system``: CPU ms per MB of new files
written after the wait and right after a deletion, :func:`page_cost`;
erratic for the same reason).

Reported per step (median of the runs): wall and CPU seconds (and system CPU),
cores used (CPU / wall), peak RSS, MB/s of input, the floor's seconds and the
step / floor ratio (each run's, and their spread), the full floor's
(``full_floor_s``, ``step_over_full_floor``, ``cpu_over_full_floor_cpu``,
``written_mb`` uncompressed), every floor's seconds (``floor_s_runs``: their
spread is the noise of the machine), the MB of free pages the VM reported
during each run, the script's start-up time (``--help``) and the load average
when it ran. The machine may be shared: ratios measured in one run are what
matters, absolute times are not. The VM's cost of new pages lands in the
system CPU and moves from run to run (0.2-8 ms a MB in one session);
``user_over_floor_user`` (the step's user CPU over its floor's, each run
against the floors around it) and ``user_over_full_floor_user`` leave it out:
the figure to compare across runs and sessions (the axial correction's read
4.18, 4.05 and 3.97 in three runs whose wall ratios read 1.86, 3.22 and 2.64).

    python benchmarks/bench_steps.py --workdir /tmp/bench_steps [--preset large] [--repeats 3] \
        [--repo DIR] [--json out.json] [--stack_run RESULTS_DIR]

``--repo`` runs the ``bin/`` scripts and library of another checkout (e.g.
an export of an older commit, to compare against a baseline).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parents[1]
#: Run a command in a child and print its children's user and system CPU seconds and peak RSS (KiB).
_MEASURE = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(usage.ru_utime, usage.ru_stime, usage.ru_maxrss); sys.exit(code)"
)
#: KiB of free pages the kernel has reported to the host so far (a VM's free page reporting); absent elsewhere.
REPORTED_KIB = Path("/sys/module/page_reporting/parameters/reported_kib")
#: Waiting for the free pages to be reported: at least this long (the kernel reports 2 s after a free) ...
PAGE_WAIT_MIN_S = 3.0
#: ... until no page has been reported for this long, or at most this long in all (other processes free pages too).
PAGE_WAIT_QUIET_S, PAGE_WAIT_MAX_S = 1.0, 20.0
#: MB of new files written to measure the cost of a new page (:func:`page_cost`), in files of 4 MB.
PAGE_COST_MB = 256


@dataclass
class StepRun:
    """How one step is run: script, inputs, output, extra flags."""

    name: str
    script: str
    inputs: list[Path]
    output: Path
    arguments: list[str] = field(default_factory=list)
    raw_input: bool = False
    products: list[str] = field(default_factory=list)  # more names than the output's stem (glob patterns)

    def remove_outputs(self) -> None:
        """Remove what an earlier run of the step wrote, so that the timed run does not delete it."""
        stem = self.output.name.removesuffix(".ome.zarr")
        for pattern in [f"{stem}*", *self.products]:
            for path in self.output.parent.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()


def measure(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall, CPU (and system CPU) seconds, peak RSS (MB) and MB of pages reported during ``command``, run in a child."""
    load, reported = os.getloadavg()[0], reported_mb()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    user, system, rss_kib = done.stdout.split()[-3:]
    return {"wall_s": wall, "cpu_s": float(user) + float(system), "sys_s": float(system),
            "peak_rss_mb": float(rss_kib) / 1024, "load1": load, "reported_mb": reported_mb() - reported}


def reported_mb() -> float:
    """MB of free pages the kernel has reported to the host since it started (NaN without free page reporting)."""
    try:
        return int(REPORTED_KIB.read_text()) / 1024
    except (OSError, ValueError):
        return float("nan")


def wait_for_reporting() -> float:
    """Wait until the pages freed just before are reported to the host (none to wait for without reporting).

    At least :data:`PAGE_WAIT_MIN_S`, then until no page was reported for :data:`PAGE_WAIT_QUIET_S`,
    at most :data:`PAGE_WAIT_MAX_S`. Returns the MB reported meanwhile.
    """
    first = last = reported_mb()
    if first != first:  # NaN: no free page reporting, a freed page is reused as cheaply later as now
        return 0.0
    start = changed = time.perf_counter()
    while (now := time.perf_counter()) - start < PAGE_WAIT_MAX_S:
        if now - start >= PAGE_WAIT_MIN_S and now - changed >= PAGE_WAIT_QUIET_S:
            break
        time.sleep(0.2)
        if (current := reported_mb()) != last:
            last, changed = current, time.perf_counter()
    return last - first


def _settle(sync: bool, page_wait: bool) -> dict[str, float]:
    """Put the machine in the state every timed run starts from (untimed).

    Flush the file system's dirty pages so that a run does not pay for the writeback of the one before, and
    (``page_wait``) wait until the pages freed by deleting the previous outputs are reported to the host, so
    that every run takes new pages at their full price (:func:`wait_for_reporting`). Returns the MB still
    dirty or under writeback right after (``/proc/meminfo``; NaN where there is none) and the MB reported
    while waiting.
    """
    if sync:
        os.sync()
    waited = wait_for_reporting() if page_wait else 0.0
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {"dirty_mb": float("nan"), "waited_reported_mb": waited}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    dirty = sum(float(fields.get(name, "0 kB").split()[0]) for name in ("Dirty", "Writeback")) / 1024
    return {"dirty_mb": dirty, "waited_reported_mb": waited}


def page_cost(folder: Path) -> dict[str, float]:
    """CPU ms per MB of writing new files after the wait for the reporting, and right after a deletion.

    :data:`PAGE_COST_MB` of incompressible 4 MB files are written, flushed and deleted; after the wait
    for the reporting (:func:`wait_for_reporting`) as many are written again (``after_wait_ms_per_mb``:
    into pages reported to the host, when the kernel reported them), deleted, and at once written a
    third time (``just_freed_ms_per_mb``: the pages of the deleted files, when not reported yet). Thread
    CPU of the writes, system time included.
    """
    import numpy as np

    chunk = np.random.default_rng(0).random(1 << 20, dtype=np.float32).tobytes()
    count = PAGE_COST_MB * (1 << 20) // len(chunk)

    def write(name: str) -> float:
        target = folder / name
        target.mkdir(parents=True)
        start = time.thread_time()
        for index in range(count):
            (target / str(index)).write_bytes(chunk)
        spent = time.thread_time() - start
        os.sync()
        return spent * 1e3 / PAGE_COST_MB

    try:
        write("first")
        shutil.rmtree(folder / "first")
        wait_for_reporting()
        reported = write("second")
        shutil.rmtree(folder / "second")
        freed = write("third")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"after_wait_ms_per_mb": round(reported, 3), "just_freed_ms_per_mb": round(freed, 3),
            "page_reporting": REPORTED_KIB.exists()}


def level0(path: Path) -> Path:
    """The level-0 array directory of an OME-Zarr image."""
    from linumpy.io.zarr import read_omezarr_info

    return path / read_omezarr_info(path).levels[0].path


def input_bytes(step: StepRun) -> int:
    """Uncompressed bytes of the step's level-0 input(s)."""
    if step.raw_input:
        return sum(p.stat().st_size for p in raw_files(step.inputs[0]))
    import zarr

    return sum(zarr.open_array(str(level0(p)), mode="r").nbytes for p in step.inputs)


def raw_files(acquisition: Path) -> list[Path]:
    """The raw ``.bin`` files of slice 0."""
    return sorted(acquisition.glob("tile_*_z00/image_*.bin"))


def _columns(shape: tuple[int, ...], chunks: tuple[int, ...]):
    """Chunk-column regions ``(:, y, x)`` of an array, row-major."""
    for y in range(0, shape[-2], chunks[-2]):
        for x in range(0, shape[-1], chunks[-1]):
            yield (Ellipsis, slice(y, y + chunks[-2]), slice(x, x + chunks[-1]))


def _cpu() -> tuple[float, float]:
    """User and system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _spent(since: tuple[float, float]) -> tuple[float, float]:
    """CPU and system CPU seconds since ``since`` (:func:`_cpu`)."""
    user, system = _cpu()
    return user - since[0] + system - since[1], system - since[1]


def run_floor(inputs: list[Path], output: Path, raw: bool, written: list[Path] = (),
              release: bool = True) -> dict[str, float]:
    """Time the floor: read the inputs column by column, write an array like the output.

    ``written``: the step's other OME-Zarr outputs; every array the step wrote besides the output's level 0
    (its pyramid levels, the side outputs' levels) is then written too, timed apart (``written_s``).
    ``release``: the pages of the files read and written are handed back as the steps' are
    (:mod:`linumpy.io.page_cache`, when it is enabled): read files' at once, written chunk files' after
    its lag; False: zarr-python's reads and writes keep them cached (the floor before session speed63).
    """
    import numpy as np
    import zarr

    from linumpy.io import page_cache
    from linumpy.io.zarr import read_omezarr_info

    t0, c0 = time.perf_counter(), _cpu()
    if raw:
        for path in raw_files(inputs[0]):
            with open(path, "rb") as file:
                np.fromfile(file, dtype="<f4").sum(dtype=np.float32)
                if release:
                    page_cache.read(file)
    else:
        for path in inputs:
            array = zarr.open_array(str(level0(path)), mode="r")
            for region in _columns(array.shape, array.chunks):
                array[region]
                if release:
                    _release_chunks(array, level0(path), region, page_cache.read)
    wall, (cpu_s, sys_s) = time.perf_counter() - t0, _spent(c0)
    others = [image / level.path for image in [output, *written]
              for level in read_omezarr_info(image).levels][1:]
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".floor-") as scratch:
        first = _timed_copy(level0(output), Path(scratch) / "0", release)
        times = [_timed_copy(path, Path(scratch) / str(index + 1), release) for index, path in enumerate(others)]
    mb = sum(zarr.open_array(str(path), mode="r").nbytes for path in [level0(output), *others]) / 1e6
    return {"floor_s": wall + first[0], "floor_cpu_s": cpu_s + first[1], "floor_sys_s": sys_s + first[2],
            "written_s": sum(t[0] for t in times), "written_cpu_s": sum(t[1] for t in times),
            "written_sys_s": sum(t[2] for t in times), "written_mb": mb}


def _timed_copy(path: Path, store: Path, release: bool) -> tuple[float, float, float]:
    """Wall, CPU and system CPU seconds of writing the array at ``path`` again, column by column, as a new array at
    ``store`` with its shape, dtype, chunks and codec (the values read untimed).

    ``release``: the written chunk files' pages are released as the steps' chunk writer does
    (:func:`linumpy.io.page_cache.written`, then :func:`~linumpy.io.page_cache.release_written` at the end), timed.
    """
    import zarr

    from linumpy.io import page_cache

    source = zarr.open_array(str(path), mode="r")
    options = {"shape": source.shape, "chunks": source.chunks, "dtype": source.dtype,
               "zarr_format": source.metadata.zarr_format, "fill_value": 0}
    options["compressors"] = source.compressors or None
    target = zarr.create_array(store=str(store), **options)
    wall = cpu_s = sys_s = 0.0
    for region in _columns(source.shape, source.chunks):
        values = source[region]
        t0, c0 = time.perf_counter(), _cpu()
        target[region] = values
        if release:
            _release_chunks(target, store, region, page_cache.written)
        cpu, system = _spent(c0)
        wall, cpu_s, sys_s = wall + time.perf_counter() - t0, cpu_s + cpu, sys_s + system
    t0, c0 = time.perf_counter(), _cpu()
    if release:
        page_cache.release_written()  # the last files within the lag, as a writer's publish does
    cpu, system = _spent(c0)
    return wall + time.perf_counter() - t0, cpu_s + cpu, sys_s + system


def _release_chunks(array: Any, directory: Path, region: tuple[Any, ...], release: Callable[[BinaryIO], None]) -> None:
    """Call ``release`` (:func:`linumpy.io.page_cache.read` or ``written``) on every stored chunk file of ``region``.

    ``region``: a chunk column of ``array`` (:func:`_columns`), stored in ``directory``; chunks holding only the fill
    value have no file.
    """
    starts = [0] * (array.ndim - 2) + [part.start for part in region[-2:]]
    counts = list(array.cdata_shape[:-2]) + [1, 1]
    for offsets in itertools.product(*(range(n) for n in counts)):
        index = tuple(s // c + o for s, c, o in zip(starts, array.chunks, offsets))
        try:
            with open(directory / array.metadata.encode_chunk_key(index), "rb") as file:
                release(file)
        except FileNotFoundError:
            continue


def run_floor_child(step: StepRun, sync: bool, page_wait: bool, release: bool = True) -> dict[str, float]:
    """The step's floor (:func:`run_floor`) in a child process, from the settled state (:func:`_settle`)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--floor", "raw" if step.raw_input else "zarr",
               str(step.output), *map(str, step.inputs), "--floor_written", *map(str, written_images(step)),
               *([] if release else ["--floor_keeps_pages"])]
    settled = _settle(sync, page_wait)
    load, reported = os.getloadavg()[0], reported_mb()
    done = subprocess.run(command, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True, capture_output=True,
                          text=True)
    return {**json.loads(done.stdout), **settled, "load1": load, "reported_mb": reported_mb() - reported}


def written_images(step: StepRun) -> list[Path]:
    """The OME-Zarr images the step wrote besides its output (pyramids of side outputs, e.g. an AIP or maps)."""
    stem = step.output.name.removesuffix(".ome.zarr")
    found = {path for pattern in [f"{stem}*", *step.products] for path in step.output.parent.glob(pattern)
             if path.name.endswith(".ome.zarr") and path.is_dir()}
    return sorted(found - {step.output})


def compare_outputs(workdir: Path, other: Path, names: list[str]) -> dict[str, dict[str, float]]:
    """Level-0 differences between the same outputs in two work folders (e.g. against a baseline)."""
    import numpy as np
    import zarr

    differences = {}
    for name in names:
        mine, theirs = workdir / name, other / name
        if not (mine.exists() and theirs.exists()):
            continue
        a, b = (zarr.open_array(str(level0(p)), mode="r") for p in (mine, theirs))
        if a.shape != b.shape:
            differences[name] = {"shape": list(a.shape), "other_shape": list(b.shape)}
            continue
        worst, peak, changed = 0.0, 0.0, 0
        for region in _columns(a.shape, a.chunks):
            x, y = a[region].astype(np.float64), b[region].astype(np.float64)
            worst = max(worst, float(np.nanmax(np.abs(x - y), initial=0.0)))
            peak = max(peak, float(np.nanmax(np.abs(y), initial=0.0)))
            changed += int(np.count_nonzero((x != y) & ~(np.isnan(x) & np.isnan(y))))
        differences[name] = {"max_abs_difference": worst, "max_abs_value": peak,
                             "max_difference_over_max_value": worst / peak if peak else 0.0,
                             "voxels_changed": changed, "voxels": int(np.prod(a.shape))}
    return differences


def chain(workdir: Path, raw: Path, stack_run: Path | None, curvature: Path | None = None,
          stitch_aip: bool = True) -> list[StepRun]:
    """The steps of one slice (and the stack of a finished run), in order.

    ``curvature``: the acquisition's field-curvature decision, which the pipelines give every mosaic grid.
    ``stitch_aip``: the stitch reads the tiles' summaries from the mosaic grid's AIP (``--aip``), as the
    pipelines do (False for a checkout whose stitch has no such option).
    """
    grid = workdir / "mosaic_grid_3d_z00.ome.zarr"
    stitched = workdir / "slice_z00_stitch_3d.ome.zarr"
    axial = workdir / "slice_z00_axial_corr.ome.zarr"
    normalized = workdir / "slice_z00_normalize.ome.zarr"
    steps = [
        StepRun("mosaic_grid", "linum_create_mosaic_grid_3d.py", [raw], grid,
                ["--slice", "0", *(["--field_curvature_json", str(curvature)] if curvature else [])], raw_input=True,
                products=["mosaic_grid_2d_z00*"]),
        StepRun("stitch_3d", "linum_stitch_3d.py", [grid], stitched,
                ["--aip", str(workdir / "mosaic_grid_2d_z00.ome.zarr")] if stitch_aip else []),
        StepRun("axial_corr", "linum_axial_corr.py", [stitched], axial),
        StepRun("normalize", "linum_normalize.py", [axial], normalized),
    ]
    if stack_run is not None:
        slices = sorted(stack_run.glob("slices/*/slice_z*_normalize.ome.zarr")) or sorted(
            stack_run.rglob("slice_z*_normalize.ome.zarr"))
        motor = next(stack_run.rglob("motor_positions.csv"))
        steps.append(StepRun("stack_slices", "linum_stack_slices_motor.py", slices, workdir / "volume.ome.zarr",
                             ["--motor_positions", str(motor)]))
    return steps


def field_curvature(repo: Path, raw: Path, path: Path, env: dict[str, str]) -> Path | None:
    """The acquisition's field-curvature decision, estimated once (untimed) as the pipelines do.

    None when the checkout has no such step (older code estimates it in each mosaic grid).
    """
    script = repo / "bin" / "linum_estimate_field_curvature.py"
    if not script.exists():
        return None
    if not path.exists():
        subprocess.run([sys.executable, str(script), str(raw), str(path), "-q"], env=env, check=True,
                       capture_output=True)
    return path


def startup_seconds(repo: Path, script: str, env: dict[str, str]) -> float:
    """Wall time of ``script --help`` (imports and argument parsing), best of 3."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(repo / "bin" / script), "--help"], env=env, check=True,
                       capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def bracketed(runs: list[dict[str, float]], floors: list[dict[str, float]]) -> list[dict[str, float]]:
    """Each run of a step with the mean of the two floors measured around it (``floors``: one more than ``runs``)."""
    paired = []
    for index, run in enumerate(runs):
        around = floors[index:index + 2]
        paired.append({**run, **{key: statistics.fmean(floor[key] for floor in around) for key in around[0]
                                 if key.startswith(("floor_", "written_"))}})
    return paired


def summarize(runs: list[dict[str, float]], floors: list[dict[str, float]], megabytes: float,
              startup: float) -> dict[str, float]:
    """Medians over the runs of one step, each against the floors around it (:func:`bracketed`)."""
    runs = bracketed(runs, floors)
    med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    ratios = [run["wall_s"] / run["floor_s"] for run in runs]
    cores = [run["cpu_s"] / run["wall_s"] for run in runs]
    work = [(run["wall_s"] - startup) / run["floor_s"] for run in runs]
    return {
        "input_mb": round(megabytes, 1),
        "wall_s": round(med["wall_s"], 2),
        "cpu_s": round(med["cpu_s"], 2),
        "cores_used": round(statistics.median(cores), 2),
        "peak_rss_mb": round(max(run["peak_rss_mb"] for run in runs), 1),
        "mb_per_s": round(megabytes / med["wall_s"], 1),
        "floor_s": round(med["floor_s"], 2),
        "floor_cpu_s": round(med["floor_cpu_s"], 2),
        "cpu_over_floor_cpu": round(statistics.median(run["cpu_s"] / run["floor_cpu_s"] for run in runs), 2),
        "step_over_floor": round(statistics.median(ratios), 2),
        "step_over_floor_runs": [round(r, 2) for r in ratios],
        "step_over_floor_spread": round(max(ratios) - min(ratios), 2),
        "sys_s": round(med["sys_s"], 2),
        "floor_sys_s": round(med["floor_sys_s"], 2),
        "user_over_floor_user": round(statistics.median(_user(run, "cpu_s", "sys_s") / _floor_user(run)
                                                        for run in runs), 2),
        "user_over_full_floor_user": round(statistics.median(
            _user(run, "cpu_s", "sys_s") / (_floor_user(run) + _user(run, "written_cpu_s", "written_sys_s"))
            for run in runs), 2),
        "floor_s_runs": [round(floor["floor_s"], 2) for floor in floors],
        "floor_cpu_s_runs": [round(floor["floor_cpu_s"], 2) for floor in floors],
        "floor_spread": round(max(f["floor_s"] for f in floors) / min(f["floor_s"] for f in floors), 2),
        "work_over_floor": round(statistics.median(work), 2),
        "written_mb": round(statistics.median(run["written_mb"] for run in runs), 1),
        "full_floor_s": round(statistics.median(run["floor_s"] + run["written_s"] for run in runs), 2),
        "step_over_full_floor": round(statistics.median(run["wall_s"] / (run["floor_s"] + run["written_s"])
                                                        for run in runs), 2),
        "cpu_over_full_floor_cpu": round(statistics.median(run["cpu_s"] / (run["floor_cpu_s"] + run["written_cpu_s"])
                                                           for run in runs), 2),
        "startup_s": round(startup, 3),
        "load1": [round(run["load1"], 2) for run in runs],
        "floor_load1": [round(floor["load1"], 2) for floor in floors],
        "dirty_mb_at_start": [round(run["dirty_mb"], 1) for run in runs],
        "floor_dirty_mb_at_start": [round(floor["dirty_mb"], 1) for floor in floors],
        "reported_mb": [round(run["reported_mb"], 1) for run in runs],
        "floor_reported_mb": [round(floor["reported_mb"], 1) for floor in floors],
    }


def _user(run: dict[str, float], cpu: str, system: str) -> float:
    """User CPU seconds of a run: its CPU less its system CPU (where the VM's cost of new pages lands)."""
    return run[cpu] - run[system]


def _floor_user(run: dict[str, float]) -> float:
    """User CPU seconds of the floor(s) paired with a run."""
    return _user(run, "floor_cpu_s", "floor_sys_s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench_steps"), help="Scratch folder [%(default)s].")
    parser.add_argument("--preset", default="large", help="Simulated preset of the slice [%(default)s].")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="Runs per step; medians are reported [%(default)s].")
    parser.add_argument("--repo", type=Path, default=ROOT, help="Checkout whose scripts run [this one].")
    parser.add_argument("--steps", nargs="+", help="Only these steps (their inputs must exist).")
    parser.add_argument("--stack_run", type=Path, help="A finished local run whose normalized slices to stack.")
    parser.add_argument("--script_args", nargs="*", default=[],
                        help="Extra flags for every step, each written --script_args=FLAG=VALUE "
                        "(e.g. --script_args=--workers=1).")
    parser.add_argument("--per_slice_curvature", action="store_true",
                        help="Let the mosaic grid estimate the field curvature itself (the pipelines give it the "
                        "acquisition's decision, estimated once, untimed, into WORKDIR/field_curvature.json).")
    parser.add_argument("--no_sync", dest="sync", action="store_false",
                        help="Do not flush the dirty pages (os.sync) before each timed run of a step and of its floor.")
    parser.add_argument("--no_page_wait", dest="page_wait", action="store_false",
                        help="Do not wait before each timed run until the freed pages are reported to the host "
                        "(a VM's free page reporting): the runs then pay new pages at prices that vary.")
    parser.add_argument("--floor_keeps_pages", dest="floor_releases", action="store_false",
                        help="The floor's reads and writes keep their pages cached (zarr-python's default, the floor "
                        "before session speed63) instead of releasing them as the steps do (linumpy.io.page_cache, "
                        "when LINUMPY_RELEASE_PAGES enables it).")
    parser.add_argument("--json", type=Path, help="Write the report here too.")
    parser.add_argument("--compare", type=Path, metavar="WORKDIR",
                        help="Only compare the outputs of --workdir with those of another work folder.")
    parser.add_argument("--floor", nargs="+", help=argparse.SUPPRESS)  # internal: RAW|ZARR OUTPUT INPUT...
    parser.add_argument("--floor_written", nargs="*", default=[], help=argparse.SUPPRESS)  # internal: side outputs
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.floor:
        kind, output, *inputs = args.floor
        print(json.dumps(run_floor([Path(p) for p in inputs], Path(output), kind == "raw",
                                   [Path(p) for p in args.floor_written], args.floor_releases)))
        return
    if args.compare:
        names = [s.output.name for s in chain(args.workdir, args.workdir, None)]
        names += [n.replace(".ome.zarr", suffix) for n in names[2:3] for suffix in
                  ("_surface.ome.zarr", "_attenuation.ome.zarr")] + ["mosaic_grid_2d_z00.ome.zarr"]
        print(json.dumps(compare_outputs(args.workdir, args.compare, names), indent=2))
        return
    repo = args.repo.resolve()
    env = dict(os.environ, PYTHONPATH=str(repo))
    args.workdir.mkdir(parents=True, exist_ok=True)
    raw = args.workdir / f"raw_{args.preset}_seed{args.seed}"
    if not raw.exists() and (not args.steps or "mosaic_grid" in args.steps):
        from linumpy.simulate import get_preset, simulate_acquisition

        simulate_acquisition(raw, get_preset(args.preset, n_slices=1), args.seed, progress=True)
    curvature = None
    if not args.per_slice_curvature and (not args.steps or "mosaic_grid" in args.steps):
        curvature = field_curvature(repo, raw, args.workdir / "field_curvature.json", env)
    stitch_aip = "--aip" in (repo / "bin" / "linum_stitch_3d.py").read_text()
    steps = [s for s in chain(args.workdir, raw, args.stack_run, curvature, stitch_aip)
             if not args.steps or s.name in args.steps]
    from linumpy.io import page_cache

    report = {"repo": str(repo), "preset": args.preset, "cpu_count": os.cpu_count(), "sync": args.sync,
              "page_wait": args.page_wait, "floor_releases_pages": args.floor_releases and page_cache.enabled(),
              "file_system": page_cost(args.workdir / ".page-cost"), "steps": {}}
    for step in steps:
        command = [sys.executable, str(repo / "bin" / step.script), *map(str, step.inputs), str(step.output),
                   *step.arguments, *args.script_args, "-f", "-q"]
        if not step.output.exists():  # the floor copies the step's output
            subprocess.run(command, env=env, check=True, capture_output=True)
        floors = [run_floor_child(step, args.sync, args.page_wait, args.floor_releases)]
        runs = []
        for _ in range(args.repeats):
            step.remove_outputs()
            settled = _settle(args.sync, args.page_wait)
            runs.append({**measure(command, env), **settled})
            floors.append(run_floor_child(step, args.sync, args.page_wait, args.floor_releases))
            print(f"{step.name}: {runs[-1]['wall_s']:.1f} s, CPU {runs[-1]['cpu_s']:.1f} s, floors "
                  f"{floors[-2]['floor_s']:.1f} / {floors[-1]['floor_s']:.1f} s, load {runs[-1]['load1']:.1f}",
                  file=sys.stderr)
        megabytes = input_bytes(step) / 1e6
        startup = startup_seconds(repo, step.script, env)
        report["steps"][step.name] = summarize(runs, floors, megabytes, startup)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
