"""Processes on this machine: how many CPU cores a run may use, and workers tied to their launcher."""

from __future__ import annotations

import os
import sys


def usable_cores() -> int:
    """The cores this process may run on (its affinity), not every core of the machine."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def die_with_parent() -> None:
    """End this process with the one that started it, also when that one is killed (Linux).

    DDP workers call it first: a launcher killed with ``kill -9`` would otherwise leave them
    holding a model copy each, waiting forever on a collective.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the launcher died before the call above
        os._exit(1)
