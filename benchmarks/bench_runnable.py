#!/usr/bin/env python3
"""How many threads of a step want a core, sampled while it runs (less distorted by a busy machine than CPU / wall).

On a shared machine the cores a step uses (CPU / wall) measure the other
users: a thread ready to run waits for a core. What the step itself decides
is how many of its threads are *runnable* (state ``R`` in
``/proc/PID/task/*/stat``: running or waiting for a core) rather than
sleeping on a lock, the GIL, a future or the disk. This script runs a
command and samples its threads' states every ``--interval`` seconds;
reported: the mean number of runnable threads capped at the cores
(``--cores``, what the step could use on an idle machine of that size), over
the samples where at least one thread is runnable, and the share of those
samples with each count.

    python benchmarks/bench_runnable.py [--cores 2] -- bin/linum_stitch_3d.py IN OUT -f
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


def runnable_threads(pid: int) -> int | None:
    """Threads of ``pid`` in state R (None once the process is gone)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return None
    count = 0
    for task in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        count += stat[stat.rindex(")") + 2] == "R"  # the state follows the parenthesised name
    return count


def sample(command: list[str], interval: float, cores: int) -> dict[str, float]:
    """Run ``command`` and summarise the runnable-thread counts sampled while it runs."""
    counts: Counter[int] = Counter()
    start = time.perf_counter()
    process = subprocess.Popen(command)
    while process.poll() is None:
        count = runnable_threads(process.pid)
        if count is not None:
            counts[min(count, cores)] += 1
        time.sleep(interval)
    wall = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"{command[0]} failed ({process.returncode})")
    busy = sum(n for k, n in counts.items() if k > 0)
    return {
        "wall_s": round(wall, 2),
        "samples": sum(counts.values()),
        "mean_runnable_capped": round(sum(k * n for k, n in counts.items()) / busy, 3) if busy else 0.0,
        "share_by_count": {str(k): round(n / busy, 3) for k, n in sorted(counts.items()) if k > 0},
        "share_none_runnable": round(counts[0] / max(1, sum(counts.values())), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2, help="Cap on the runnable threads counted [%(default)s].")
    parser.add_argument("--interval", type=float, default=0.01, help="Seconds between samples [%(default)s].")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="The step to run (after --).")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if command[0].endswith(".py"):
        command = [sys.executable, *command]
    print(json.dumps(sample(command, args.interval, args.cores)))


if __name__ == "__main__":
    main()
