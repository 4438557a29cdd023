"""Run the pipeline on this machine: the same scripts, arguments and output tree as Nextflow.

Slices go through their chain in parallel on a pool of ``workers`` (each
worker drives one script subprocess at a time); the stack waits for every
slice. A task is skipped when its outputs exist and its record in
``OUTDIR/pipeline_info/tasks`` holds the same key (command line, linumpy
version, upstream keys): outputs are written atomically, so existing means
complete, and changed parameters rerun the step and everything after it.
Each task's output goes to ``OUTDIR/pipeline_info/logs/<task>.log``. The
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
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from linumpy.cli import EXIT_OUT_OF_MEMORY
from linumpy.errors import InputError, LinumpyError
from linumpy.io.atomic import atomic_output, remove_path, remove_stale_temporaries
from linumpy.io.motor_table import read_motor_positions
from linumpy.io.sidecar import SIDECAR_NAME
from linumpy.pipeline import steps
from linumpy.pipeline.child import child_setup
from linumpy.pipeline.layout import OutputLayout
from linumpy.pipeline.lock import outdir_lock
from linumpy.pipeline.params import PipelineParams
from linumpy.pipeline.plan import (
    Task, plan_motor_positions, plan_simulation, plan_slice, plan_volume,
)
from linumpy.pipeline.slice_config import apply_slice_config
from linumpy.qc.records import qc_record_path, write_qc_record

LOGGER = logging.getLogger(__name__)
#: Repository ``bin/`` directory, where the scripts live in a source checkout.
DEFAULT_SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "bin"
#: Progress bars of the scripts write one line every 30 s into the task logs.
TASK_ENVIRONMENT = {"TQDM_MININTERVAL": "30"}


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
        Show one progress bar per step.
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
        self.progress = progress
        self.overwrite = overwrite
        self.summary = RunSummary()
        self._bars: dict[str, tqdm] = {}
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopping = threading.Event()

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
        with outdir_lock(layout.run_lock):
            return self._run_locked(acquisition, upstream)

    def _run_locked(self, acquisition: Path, upstream: tuple[Task, ...]) -> RunSummary:
        params, layout = self.params, self.layout
        remove_path(qc_record_path(self._qc_output))
        try:
            motor_positions = plan_motor_positions(params, layout, acquisition, upstream)
            self._run_serial([*upstream, motor_positions])
            slice_ids = params.selected(sorted(read_motor_positions(layout.motor_positions)))
            if not slice_ids:
                raise InputError(f"{layout.motor_positions}: no slice left to reconstruct; "
                                 "check slices/exclude_slices")
            _check_no_gaps(slice_ids, params.stack_allows_gaps)
            self.summary.slice_ids = slice_ids
            for step in steps.SLICE_CHAIN:
                self._new_bar(step.name, len(slice_ids))
            self._new_bar(steps.SCREENSHOT.name, len(slice_ids) + 1)  # and the volume's
            chains = {i: plan_slice(params, layout, acquisition, i, upstream) for i in slice_ids}
            self._run_slices(chains)
            normalized = {i: chain[len(steps.SLICE_CHAIN) - 1] for i, chain in chains.items()}
            sidecar = acquisition / SIDECAR_NAME
            self._run_serial(plan_volume(params, layout, slice_ids, motor_positions, normalized,
                                         sidecar if sidecar.is_file() else None))
        finally:
            for bar in self._bars.values():
                bar.close()
            if self.summary.failed_slices:
                self._write_failures()
        return self.summary

    @property
    def _qc_output(self) -> Path:
        """Stands for the run in QC: its record is ``pipeline_info/pipeline_qc.json``."""
        return self.layout.run_qc_output

    def _write_failures(self) -> None:
        """Record the failed slices, so that ``linum_report.py OUTDIR`` flags them."""
        failed = {str(i): why for i, why in sorted(self.summary.failed_slices.items())}
        write_qc_record(self._qc_output, "pipeline", {"failed_slices": failed})

    # -- scheduling ---------------------------------------------------------

    def _new_bar(self, name: str, total: int) -> None:
        self._bars[name] = tqdm(total=total, desc=f"{name:<24}", unit="task",
                                position=len(self._bars), disable=not self.progress)

    def _advance(self, task: Task) -> None:
        """Count a finished (or skipped) task on its step's progress bar."""
        with self._lock:
            if task.step.name not in self._bars:
                self._new_bar(task.step.name, 1)
            self._bars[task.step.name].update()

    def _run_serial(self, tasks: list[Task]) -> None:
        for task in tasks:
            self._run_task(task)
            self._advance(task)

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

    def _record_path(self, task: Task) -> Path:
        return self.layout.task_records / f"{task.id}.json"

    def _is_complete(self, task: Task) -> bool:
        if self.overwrite or not all(path.exists() for path in task.outputs):
            return False
        try:
            return json.loads(self._record_path(task).read_text())["key"] == task.key
        except (OSError, ValueError, KeyError):
            return False

    def _run_task(self, task: Task) -> None:
        if self._stopping.is_set():
            raise _Stopped(task.id)
        if self._is_complete(task):
            self.summary.skipped.append(task.id)
            return
        record = self._record_path(task)
        remove_path(record)
        for output in task.outputs:  # only temporaries whose writer is gone: never a live run's
            remove_stale_temporaries(output)
        argv = [sys.executable, str(self.scripts[task.argv[0]]), *task.argv[1:]]
        if any(path.exists() for path in task.outputs):
            argv.append("--overwrite")
        log = self.layout.logs / f"{task.id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        LOGGER.debug("running %s", shlex.join(argv))
        with open(log, "w") as handle:
            handle.write(f"$ {shlex.join(argv)}\n")
            handle.flush()
            status = self._call(argv, handle)
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
            tmp.write_text(json.dumps({"key": task.key, "argv": list(task.argv)}, indent=1) + "\n")
        with self._lock:
            self.summary.ran.append(task.id)

    def _call(self, argv: list[str], log) -> int:
        with self._lock:
            if self._stopping.is_set():
                return -1
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **TASK_ENVIRONMENT}, preexec_fn=child_setup())
            self._running.add(process)
        try:
            return process.wait()
        except BaseException:
            process.terminate()
            process.wait()
            raise
        finally:
            with self._lock:
                self._running.discard(process)


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
