"""What produced a result: library versions and the git commit of moco_lit's own code.

Recorded in every run's ``metrics.json`` and W&B config, so a number can be traced to the code that
made it. The commit is read from the checkout moco_lit is imported from (not the working
directory); an installed package, a missing ``git`` or any git error gives ``None``, never a
failed run.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

PACKAGES = ("torch", "transformers", "lightning", "moco_lit")
CODE_ROOT = Path(__file__).resolve().parent.parent


def versions() -> dict[str, str | None]:
    """``python`` and each package of ``PACKAGES`` (``None`` for one not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = _module_version(name)
    return found


def _module_version(name: str) -> str | None:
    try:
        module = __import__(name)
    except ImportError:
        return None
    version = getattr(module, "__version__", None)
    return str(version) if version is not None else None


@functools.cache
def code_commit() -> dict[str, str | bool | None]:
    """``git_commit`` (the checkout's HEAD) and ``git_dirty`` (tracked files changed since).

    Both ``None`` when moco_lit does not run from a git checkout.
    """
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    changes = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if changes is None else bool(changes)}


def _git(*args: str) -> str | None:
    if not (CODE_ROOT / ".git").exists():
        return None  # an installed package: a git repository around it is someone else's
    try:
        done = subprocess.run(
            ["git", "-C", str(CODE_ROOT), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance() -> dict:
    """The keys every run records: ``versions``, ``git_commit``, ``git_dirty``."""
    return {"versions": versions(), **code_commit()}
