"""How many torch threads a training process uses: the thread policy.

OpenMP threads wait for each other at the end of every parallel region. When a machine has
more runnable threads than cores (two training processes with torch's default of one thread
per core each, or one training process next to another busy job) those waits turn into lost
time slices, and a step can take 10x longer than with one thread (docs/benchmarks.md). The
policy therefore gives each process

- the threads asked for (``threads > 0`` in the config, or ``OMP_NUM_THREADS`` set by hand);
- otherwise ("auto", 0): the cores this process may run on (its CPU affinity, which Slurm and
  containers set), divided by the processes of the job on this node, less the cores other
  processes keep busy right now (sampled from ``/proc/stat`` for a fraction of a second),
  and at least one.
"""

from __future__ import annotations

import logging
import math
import os
import time

__all__ = ["auto_threads", "busy_cores_elsewhere", "choose_threads", "set_threads", "usable_cores"]

from fmpretrain.machine import busy_share, cpu_times, usable_cores

logger = logging.getLogger(__name__)

#: Seconds of /proc/stat sampling behind the "cores busy elsewhere" estimate.
SAMPLE_SECONDS = 0.3
#: A core counts as busy elsewhere from this share of its time on.
BUSY_THRESHOLD = 0.6


def busy_cores_elsewhere(seconds: float = SAMPLE_SECONDS) -> float:
    """Cores kept busy by other processes over a short sample (0.0 where it cannot tell)."""
    first = cpu_times()
    if first is None:
        return 0.0
    own_start = time.process_time()
    wall_start = time.monotonic()
    time.sleep(seconds)
    share = busy_share(first, cpu_times())  # of all cores
    wall = time.monotonic() - wall_start
    if math.isnan(share) or wall <= 0:
        return 0.0
    cores = os.cpu_count() or 1
    own = (time.process_time() - own_start) / wall  # in cores
    return max(0.0, share * cores - own)


def auto_threads(cores: int, local_processes: int, busy_elsewhere: float) -> int:
    """The "auto" rule: this process's share of the cores, no more than the cores not busy
    elsewhere (a core counts as busy from ``BUSY_THRESHOLD`` of its time), at least one."""
    share = cores // max(1, local_processes)
    free = cores - int(busy_elsewhere + (1 - BUSY_THRESHOLD))
    return max(1, min(share, free))


def choose_threads(requested: int = 0, local_processes: int = 1) -> tuple[int, str]:
    """The thread count of the policy above and the reason, in words."""
    if requested < 0:
        raise ValueError(f"threads must be 0 (auto) or positive, got {requested}")
    if requested > 0:
        return requested, "set in the configuration"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    cores = usable_cores()
    elsewhere = busy_cores_elsewhere()
    threads = auto_threads(cores, local_processes, elsewhere)
    reason = (
        f"auto: {cores} usable core(s), {local_processes} process(es) on this node, "
        f"{elsewhere:.1f} core(s) busy elsewhere"
    )
    return threads, reason


def set_threads(requested: int = 0, local_processes: int = 1) -> int:
    """Apply :func:`choose_threads` to torch and log it; returns the thread count."""
    import torch

    threads, reason = choose_threads(requested, local_processes)
    torch.set_num_threads(threads)
    logger.info("torch threads: %d (%s)", threads, reason)
    return threads
