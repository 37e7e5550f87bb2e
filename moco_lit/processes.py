"""Processes on this machine: how many CPU cores and torch threads a run may use, and workers tied to
their launcher."""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Mapping

import torch

from moco_lit.errors import UserError

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (its affinity), not every core of the machine."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


THREADS_ENV = "MOCO_LIT_THREADS"
"""Environment variable that fixes torch's thread count (``OMP_NUM_THREADS`` is honoured too)."""


def choose_threads(cores: int, others_load: float, environ: Mapping[str, str]) -> int | None:
    """Torch intra-op threads for a process that may use ``cores`` cores while other processes
    keep ``others_load`` cores busy (the load average less this process's own share).

    None when the user chose (``MOCO_LIT_THREADS``, else ``OMP_NUM_THREADS``, which torch already
    read): their number stands. Otherwise one thread per core nobody else is using, at least one:
    an OpenMP thread without a core of its own makes every parallel region wait for it (and its
    siblings spin meanwhile), which is how torch's default of one thread per core turns a busy
    2-core machine 7-20x slower, while one thread too few costs at most its share.
    """
    if environ.get(THREADS_ENV, "").strip():
        try:
            wanted = int(environ[THREADS_ENV])
        except ValueError as err:
            raise UserError(
                f"{THREADS_ENV}={environ[THREADS_ENV]!r}: expected a number of threads >= 1"
            ) from err
        if wanted < 1:
            raise UserError(f"{THREADS_ENV}={wanted}: expected a number of threads >= 1")
        return wanted
    if environ.get("OMP_NUM_THREADS", "").strip():
        return None
    free = cores - max(others_load, 0.0)
    # a core counts as free when at most a quarter of it is taken
    return max(1, min(cores, math.floor(free + 0.25)))


_IMPORTED = (time.monotonic(), time.process_time())


class ThreadGovernor:
    """Sets torch's thread count from the machine's load, again before each batch of work.

    The 1-minute load average counts this process's own running threads as well; its share is
    estimated from its own CPU time over the interval since the last check (at first, since this
    module was imported) and taken off.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.cores = usable_cores()
        # first sample: this process's CPU time since this module was imported (model loading...)
        self._last: tuple[float, float] | None = _IMPORTED

    def others_load(self) -> float:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        wall, cpu = time.monotonic(), time.process_time()
        own = 0.0
        if self._last is not None and wall - self._last[0] > 0.5:
            own = (cpu - self._last[1]) / (wall - self._last[0])
        self._last = (wall, cpu)
        return max(0.0, load - own)

    def apply(self) -> int:
        """Set (when the user did not) and return the thread count for the next batch."""
        threads = choose_threads(self.cores, self.others_load(), self.environ)
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            log.debug("torch threads: %d", threads)
        return torch.get_num_threads()


def die_with_parent() -> None:
    """End this process with the one that started it, also when that one is killed (Linux).

    DDP workers call it first: a launcher killed with ``kill -9`` would otherwise leave them
    holding a model copy each, waiting forever on a collective.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the launcher died before the call above
        os._exit(1)
