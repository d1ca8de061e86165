"""How busy the CPU is when `ens predict` starts, and whether torch's OpenMP threads should spin.

Idle OpenMP (libgomp) threads spin for a while before they sleep: on free cores that saves the
wake-up, but beside another busy process they take its cores and the compute threads wait for
each other (test_resnet on 2 cores beside one CPU-bound process: 80 ms a batch spinning, 36 ms
passive; idle: 19 ms spinning, 25 ms passive). The thread count itself is kept, because CPU
kernels may round differently with another count and the numbers must not depend on the load.
Torch-free: the policy is read once, when torch loads libgomp, so it is chosen before.
"""

from __future__ import annotations

import os
import statistics
import time

PASSIVE = "PASSIVE"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def others_running(samples: int = 5, interval: float = 0.005, stat: str = "/proc/stat") -> float:
    """Runnable tasks of other processes right now (median of a few samples; 0 where unknown).

    `procs_running` in /proc/stat counts every runnable task of the machine, this one included;
    where the affinity mask holds only part of the machine, the count is scaled to that part.
    """
    counts = []
    for i in range(samples):
        try:
            with open(stat, encoding="ascii") as f:
                line = next((s for s in f if s.startswith("procs_running ")), None)
        except OSError:
            return 0.0
        if line is None:
            return 0.0
        counts.append(max(0, int(line.split()[1]) - 1))
        if i + 1 < samples:
            time.sleep(interval)
    share = usable_cores() / max(1, os.cpu_count() or 1)
    return statistics.median(counts) * min(1.0, share)


def wait_policy(cores: int, others: float, threads: int | None = None) -> str | None:
    """PASSIVE when the compute threads and the other busy processes oversubscribe the cores, else None.

    Args:
        cores: usable cores.
        others: runnable tasks of other processes (`others_running`).
        threads: compute threads when fixed (OMP_NUM_THREADS), else torch's default, at most `cores`.
    """
    if threads == 1:  # one compute thread: OpenMP starts no workers, so none can spin or sleep
        return None
    return PASSIVE if (threads or cores) + others > cores else None


def choose_wait_policy() -> str | None:
    """`wait_policy` for this machine now, honouring OMP_NUM_THREADS."""
    fixed = os.environ.get("OMP_NUM_THREADS", "")
    return wait_policy(usable_cores(), others_running(), int(fixed) if fixed.isdigit() else None)
