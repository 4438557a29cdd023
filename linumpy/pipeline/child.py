"""Script processes that never outlive the runner that started them.

On Linux each child asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), so a runner killed by SIGKILL or SIGTERM takes its
running steps with it instead of leaving them writing into the output
directory. Elsewhere the children are only stopped on an orderly exit
(Ctrl-C, SIGTERM once :func:`exit_on_sigterm` is set, a failed slice), by the
runner itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def child_setup() -> Callable[[], None] | None:
    """Return the ``preexec_fn`` tying a child's life to this process (None off Linux).

    The function only makes async-signal-safe system calls (``prctl``,
    ``getppid``, ``kill``), as required between ``fork`` and ``exec`` in a
    threaded program.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def tie_to_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the runner died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return tie_to_parent


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, a batch scheduler) into ``SystemExit(143)`` in the main thread.

    The runner then stops like on Ctrl-C: it terminates its running scripts
    and releases the output directory's lock.
    """
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)

