"""Run the pipeline on this machine: the same scripts, arguments and output tree as Nextflow.

Slices go through their chain in parallel on a pool of ``workers`` (each
worker drives one script subprocess at a time) up to the axial correction,
written into ``pipeline_info/staging/``; the acquisition's focus profile is
then combined from every slice's (:mod:`linumpy.intensity.acquisition_focus`)
and each first correction is published (:mod:`linumpy.pipeline.publish`):
into ``axial_corr/``, or into ``axial_corr_refused/`` for a slice whose own
focus estimate was refused, which is corrected again with the acquisition's
into ``axial_corr/``. Every slice is then normalized; the stack waits for
every slice. A task is skipped when its outputs exist and its record in
``OUTDIR/pipeline_info/tasks`` holds the same key (command line, linumpy
version, upstream keys): outputs are written atomically, so existing means
complete, and changed parameters rerun the step and everything after it.
Each task's output goes to ``OUTDIR/pipeline_info/logs/<task>.log`` and its
wall time, CPU time and peak memory to ``OUTDIR/pipeline_info/trace.txt``
(Nextflow's trace columns, :mod:`linumpy.pipeline.trace`). The
first failure stops the run, naming the slice, the step and the log, and
leaves ``OUTDIR/pipeline_info/pipeline_qc.json`` listing the failed slice for
the report (slices left out on purpose appear in the stack's own QC record,
as for Nextflow). A run owns its output directory through
``pipeline_info/run.lock`` (:mod:`linumpy.pipeline.lock`), removes only the
temporaries of writers that are gone, and its scripts die with it
(:mod:`linumpy.pipeline.child`).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from linumpy.cli import EXIT_OUT_OF_MEMORY
from linumpy.errors import InputError, LinumpyError
from linumpy.io.atomic import atomic_output, remove_path, remove_stale_temporaries
from linumpy.io.motor_table import read_motor_positions
from linumpy.io.sidecar import SIDECAR_NAME
from linumpy.parallel import WORKERS_ENV, available_cores
from linumpy.pipeline import publish, steps
from linumpy.pipeline.child import child_setup
from linumpy.pipeline.layout import OutputLayout
from linumpy.pipeline.lock import outdir_lock
from linumpy.pipeline.params import PipelineParams
from linumpy.intensity.acquisition_focus import read_borrowers
from linumpy.pipeline.plan import (
    Task, plan_after_focus, plan_field_curvature, plan_focus_combine, plan_motor_positions, plan_simulation,
    plan_slice, plan_volume,
)
from linumpy.pipeline.progress import Progress
from linumpy.pipeline.slice_config import apply_slice_config
from linumpy.pipeline.trace import TaskTrace, write_trace
from linumpy.qc.records import qc_record_path, write_qc_record

LOGGER = logging.getLogger(__name__)
#: Repository ``bin/`` directory, where the scripts live in a source checkout.
DEFAULT_SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "bin"


class PipelineError(LinumpyError):
    """A task failed; the message names the slice, the step and the log file."""


class _Stopped(Exception):
    """A task was interrupted because another one failed."""


@dataclass
class RunSummary:
    """What a run did: the tasks it ran and the ones it found complete."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    slice_ids: list[int] = field(default_factory=list)
    failed_slices: dict[int, str] = field(default_factory=dict)
    trace: list[TaskTrace] = field(default_factory=list)


def find_script(name: str, scripts_dir: Path) -> Path:
    """Return the path of a ``bin/`` script: in ``scripts_dir``, else on ``PATH``."""
    candidate = scripts_dir / name
    if candidate.is_file():
        return candidate
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if directory and (Path(directory) / name).is_file():
            return Path(directory) / name
    raise PipelineError(f"script {name} not found in {scripts_dir} or on PATH; install linumpy's bin/ scripts")


class LocalRunner:
    """Execute the planned tasks of one run.

    Parameters
    ----------
    params : PipelineParams
        Validated parameters (``input`` or ``simulate`` must be set).
    workers : int
        Slices processed at the same time.
    scripts_dir : Path
        Where the ``bin/`` scripts are.
    progress : bool
        Show the run's progress on stderr (:class:`~linumpy.pipeline.progress.Progress`).
    overwrite : bool
        Rerun every task even if its outputs are complete.
    """

    def __init__(self, params: PipelineParams, workers: int = 1, scripts_dir: Path = DEFAULT_SCRIPTS_DIR,
                 progress: bool = True, overwrite: bool = False) -> None:
        if params.input is None and params.simulate is None:
            raise InputError("no acquisition: give --input DIR or --simulate PRESET "
                             "(input:/simulate: in the params file)")
        if workers < 1:
            raise InputError(f"--workers must be at least 1, got {workers}")
        self.scripts = {step.script: find_script(step.script, scripts_dir) for step in steps.STEPS}
        self.params = apply_slice_config(params)
        self.layout = OutputLayout(Path(params.outdir).resolve())
        self.workers = workers
        self.overwrite = overwrite
        self.summary = RunSummary()
        self._progress = Progress(workers, progress)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopping = threading.Event()
        #: Ids of the first axial corrections whose staged outputs were published (moved) by a complete task.
        self._published: set[str] = set()

    def run(self) -> RunSummary:
        """Run every task not already complete; raise :class:`PipelineError` on the first failure.

        Raises
        ------
        OutdirLockedError
            If another run holds the output directory's lock.
        """
        params, layout = self.params, self.layout
        upstream: tuple[Task, ...] = ()
        if params.input is not None:
            acquisition = Path(params.input).resolve()
            if not acquisition.is_dir():
                raise InputError(f"{params.input}: no such acquisition directory; check input/--input")
        else:
            acquisition, upstream = layout.acquisition, (plan_simulation(params, layout),)
        try:
            with outdir_lock(layout.run_lock):
                return self._run_locked(acquisition, upstream)
        finally:
            self._progress.close()

    def _run_locked(self, acquisition: Path, upstream: tuple[Task, ...]) -> RunSummary:
        params, layout = self.params, self.layout
        remove_path(qc_record_path(self._qc_output))
        self._progress.add(len(upstream) + 2)
        try:
            motor_positions = plan_motor_positions(params, layout, acquisition, upstream)
            self._run_serial([*upstream, motor_positions])
            slice_ids = params.selected(sorted(read_motor_positions(layout.motor_positions)))
            if not slice_ids:
                raise InputError(f"{layout.motor_positions}: no slice left to reconstruct; "
                                 "check slices/exclude_slices")
            _check_no_gaps(slice_ids, params.stack_allows_gaps)
            self.summary.slice_ids = slice_ids
            curvature = plan_field_curvature(params, layout, acquisition, upstream)
            self._run_serial([curvature])
            # every slice up to its first axial correction (staged), then the acquisition's focus, which decides
            # where each is published and which slices are corrected again with it
            chains = {i: plan_slice(params, layout, acquisition, i, upstream, curvature) for i in slice_ids}
            combined = plan_focus_combine(params, layout, {i: chain[-1] for i, chain in chains.items()})
            self._published = self._published_first_passes(chains, combined)
            self._progress.add(sum(len(chain) for chain in chains.values()) + 1)
            self._run_slices(chains)
            self._run_serial([combined])
            borrowers = set(read_borrowers(layout.focus_borrowers))
            ends = {i: plan_after_focus(params, layout, chain, combined, i in borrowers) for i, chain in chains.items()}
            normalized = {i: end[-2] for i, end in ends.items()}
            sidecar = acquisition / SIDECAR_NAME
            volume_tasks = plan_volume(params, layout, slice_ids, motor_positions, normalized,
                                       sidecar if sidecar.is_file() else None)
            self._progress.add(sum(len(end) for end in ends.values()) + len(volume_tasks))
            self._run_slices(ends)
            self._run_serial(volume_tasks)
        finally:
            self._progress.close()
            if self.summary.failed_slices:
                self._write_failures()
        return self.summary

    def _published_first_passes(self, chains: dict[int, list[Task]], combined: Task) -> set[str]:
        """The first axial corrections already published where ``combined``'s complete decision put them.

        Their staged outputs are gone (moved), yet they need not run again: their publication is
        complete (:meth:`_is_complete`). Without a complete decision, none is.
        """
        if not self._is_complete(combined):
            return set()
        borrowers = set(read_borrowers(self.layout.focus_borrowers))
        return {chain[-1].id for i, chain in chains.items()
                if self._is_complete(plan_after_focus(self.params, self.layout, chain, combined, i in borrowers)[0])}

    @property
    def _qc_output(self) -> Path:
        """Stands for the run in QC: its record is ``pipeline_info/pipeline_qc.json``."""
        return self.layout.run_qc_output

    def _write_failures(self) -> None:
        """Record the failed slices, so that ``linum_report.py OUTDIR`` flags them."""
        failed = {str(i): why for i, why in sorted(self.summary.failed_slices.items())}
        write_qc_record(self._qc_output, "pipeline", {"failed_slices": failed})

    # -- scheduling ---------------------------------------------------------

    def _run_serial(self, tasks: list[Task]) -> None:
        for task in tasks:
            self._run_task(task)

    def _run_slices(self, chains: dict[int, list[Task]]) -> None:
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="slice") as pool:
            futures = [pool.submit(self._run_serial, chain) for chain in chains.values()]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:
                self._stop(pool)
                raise
            failures = [f.exception() for f in done if f.exception() is not None]
            if failures:
                self._stop(pool)
                raise next((e for e in failures if not isinstance(e, _Stopped)), failures[0])

    def _stop(self, pool: ThreadPoolExecutor) -> None:
        """Stop the other slices: cancel queued chains, terminate running scripts."""
        self._stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for process in self._running:
                process.terminate()

    # -- one task -----------------------------------------------------------

    def _worker_environment(self) -> dict[str, str]:
        """Share the cores among the slices running at once (a script's ``--workers`` default)."""
        if WORKERS_ENV in os.environ:
            return {}
        return {WORKERS_ENV: str(max(1, available_cores() // self.workers))}

    def _record_path(self, task: Task) -> Path:
        return self.layout.task_records / f"{task.id}.json"

    def _is_complete(self, task: Task) -> bool:
        if self.overwrite:
            return False
        if not all(path.exists() for path in task.outputs) and task.id not in self._published:
            return False
        if task.step is steps.PUBLISH_AXIAL_CORR and publish.entries(Path(task.argv[1])):
            return False  # staged files left: a publication interrupted, or a first pass run again
        try:
            return json.loads(self._record_path(task).read_text())["key"] == task.key
        except (OSError, ValueError, KeyError):
            return False

    def _run_task(self, task: Task) -> None:
        if self._stopping.is_set():
            raise _Stopped(task.id)
        if self._is_complete(task):
            self.summary.skipped.append(task.id)
            self._trace_task(task, "CACHED", self._previous_trace(task))
            self._progress.finished(task.id, skipped=True)
            return
        record = self._record_path(task)
        remove_path(record)
        for output in task.outputs:  # only temporaries whose writer is gone: never a live run's
            remove_stale_temporaries(output)
        argv = list(task.argv)
        if task.step.script is not None:
            argv = [sys.executable, str(self.scripts[task.argv[0]]), *task.argv[1:]]
            if any(path.exists() for path in task.outputs):
                argv.append("--overwrite")
        log = self.layout.logs / f"{task.id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        LOGGER.debug("running %s", shlex.join(argv))
        self._progress.started(task.id)
        submit, began = datetime.now(), time.monotonic()
        with open(log, "w") as handle:
            handle.write(f"$ {shlex.join(argv)}\n")
            handle.flush()
            status, usage = self._call(argv, handle) if task.step.script is not None else self._publish(task, handle)
        measured = {"submit": submit, "exit": status, "realtime_s": time.monotonic() - began, **usage}
        self._trace_task(task, "COMPLETED" if status == 0 else "FAILED", measured)
        self._progress.finished(task.id, failed=status != 0)
        if status != 0:
            if self._stopping.is_set():
                raise _Stopped(task.id)
            message = _failure_message(task, status, log)
            if task.slice_id is not None:
                with self._lock:
                    self.summary.failed_slices[task.slice_id] = message
            raise PipelineError(message)
        missing = [str(path) for path in task.outputs if not path.exists()]
        if missing:
            raise PipelineError(f"{_where(task)}: {task.argv[0]} exited 0 but did not write "
                                f"{', '.join(missing)}; see {log}")
        with atomic_output(record, overwrite=True) as tmp:
            tmp.write_text(json.dumps({"key": task.key, "argv": list(task.argv),
                                       "trace": _jsonable(measured)}, indent=1) + "\n")
        with self._lock:
            self.summary.ran.append(task.id)

    def _previous_trace(self, task: Task) -> dict:
        """What the complete task measured when it ran (from its record), for a CACHED trace row."""
        try:
            measured = json.loads(self._record_path(task).read_text()).get("trace") or {}
            submit = measured.get("submit")
            return {**measured, "submit": datetime.fromisoformat(submit) if submit else None}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def _trace_task(self, task: Task, status: str, measured: dict) -> None:
        """Add a task's row to ``pipeline_info/trace.txt`` (rewritten after every task)."""
        with self._lock:
            known = {k: measured.get(k) for k in ("exit", "native_id", "submit", "realtime_s", "cpu_s", "peak_rss")}
            row = TaskTrace(task_id=len(self.summary.trace) + 1, hash=_short_hash(task.key), name=_trace_name(task),
                            status=status, **known)
            self.summary.trace.append(row)
            write_trace(self.layout.root / "pipeline_info" / "trace.txt", self.summary.trace)

    def _publish(self, task: Task, log) -> tuple[int, dict]:
        """Run a :data:`~linumpy.pipeline.steps.PUBLISH_AXIAL_CORR` task in this process (moves only)."""
        staged, destination, stale = Path(task.argv[1]), Path(task.argv[2]), Path(task.argv[4])
        for path in publish.publish(staged, destination, stale):
            log.write(f"{path}\n")
        return 0, {}

    def _call(self, argv: list[str], log) -> tuple[int, dict]:
        """Run a script; return its exit status and its resource use (``native_id``, ``cpu_s``, ``peak_rss``)."""
        with self._lock:
            if self._stopping.is_set():
                return -1, {}
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **self._worker_environment()},
                                       preexec_fn=child_setup())
            self._running.add(process)
        try:
            return _wait_with_usage(process)
        except BaseException:
            process.terminate()
            process.wait()
            raise
        finally:
            with self._lock:
                self._running.discard(process)


def _wait_with_usage(process: subprocess.Popen) -> tuple[int, dict]:
    """Wait for ``process``; return its exit status and its CPU time and peak resident memory."""
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except ChildProcessError:  # reaped by a concurrent terminate(): no resource figures then
        return process.wait(), {"native_id": process.pid}
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, {"native_id": process.pid, "cpu_s": usage.ru_utime + usage.ru_stime,
                                "peak_rss": usage.ru_maxrss * 1024}


def _short_hash(key: str) -> str:
    """Nextflow-style task hash ``ab/cdef12`` from a task key."""
    return f"{key[:2]}/{key[2:8]}"


def _trace_name(task: Task) -> str:
    """Nextflow-style process name with its tag: ``stitch_3d (z03)``, ``screenshot (volume)``."""
    tag = task.id.removeprefix(task.step.name).strip("_")
    return f"{task.step.name} ({tag})" if tag else task.step.name


def _jsonable(measured: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in measured.items()}


def _check_no_gaps(slice_ids: list[int], allow_gaps: bool) -> None:
    """Refuse, before any work, a selection the stack would refuse for its missing ids."""
    missing = sorted(set(range(slice_ids[0], slice_ids[-1] + 1)) - set(slice_ids))
    if missing and not allow_gaps:
        raise InputError(
            f"slices {missing} lie between the selected slices {slice_ids[0]} and {slice_ids[-1]} but are not "
            "reconstructed, so the stack would have gaps; pass --allow_gaps (allow_gaps: true in the params "
            "file) to stack with gaps, or select consecutive slices")


def _where(task: Task) -> str:
    if task.slice_id is None:
        return f"step {task.step.name}"
    return f"slice {task.slice_id} failed at step {task.step.name}"


#: What the scripts print (linumpy.cli) when the disk or the quota is full.
_DISK_FULL = ("No space left on device", "Disk quota exceeded")


def _failure_message(task: Task, status: int, log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    cause = (errors or lines[-1:] or ["no output"])[-1][:300]
    hint = "; out of memory: rerun with fewer --workers" if status == EXIT_OUT_OF_MEMORY else ""
    message = f"{_where(task)} (exit status {status}{hint}): {cause} -- full log: {log}"
    if any(marker in cause for marker in _DISK_FULL):  # the slice is fine: the disk is not
        return message + "; free space (or use another --outdir) and rerun: completed steps are kept"
    if task.slice_id is not None:
        message += (f"; to leave this slice out, add {task.slice_id} to exclude_slices "
                    f"(--exclude_slices {task.slice_id})")
    return message


def run_pipeline(params: PipelineParams, workers: int = 1, scripts_dir: Path = DEFAULT_SCRIPTS_DIR,
                 progress: bool = True, overwrite: bool = False) -> RunSummary:
    """Reconstruct an acquisition with the local runner; see :class:`LocalRunner`.

    Examples
    --------
    >>> from linumpy.pipeline.params import load_params
    >>> run_pipeline(load_params(None, {"simulate": "tiny", "outdir": "demo"}), workers=2)  # doctest: +SKIP
    """
    return LocalRunner(params, workers, scripts_dir, progress, overwrite).run()
