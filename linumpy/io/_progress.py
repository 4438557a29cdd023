"""A tqdm progress bar for dask computations, shown when INFO logging is on and stderr is a terminal.

Scripts run through :func:`linumpy.cli.run` log at INFO unless ``--quiet``, so
``--quiet`` hides these bars; library users see none unless they enable INFO.
Redirected to a file (nohup, SLURM, the runners' task logs) there is no bar,
so logs hold no carriage returns.
"""

from __future__ import annotations

import logging
import sys

from dask.callbacks import Callback
from tqdm.auto import tqdm


class DaskProgress(Callback):
    """Count finished dask tasks on a tqdm bar (a no-op when ``enabled`` is false)."""

    def __init__(self, description: str, logger: logging.Logger):
        super().__init__()
        self._description = description
        self._enabled = logger.isEnabledFor(logging.INFO) and sys.stderr.isatty()
        self._bar: tqdm | None = None

    def _start_state(self, dsk, state):
        if self._enabled:
            total = sum(len(state[key]) for key in ("ready", "waiting", "running", "finished"))
            self._bar = tqdm(total=total, desc=self._description, unit="task", leave=False)

    def _posttask(self, key, result, dsk, state, worker_id):
        if self._bar is not None:
            self._bar.update(1)

    def _finish(self, dsk, state, errored):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
