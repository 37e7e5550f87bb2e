"""Run model-written Python against a benchmark's tests in a separate, limited process.

The child is ``python -I`` in a fresh temporary directory that is also its HOME and TMPDIR, with
an environment reduced to a few variables, OS limits set before exec (CPU seconds, address
space, file size, open files, processes, no core dumps) and its own process group, which is
killed whole on the wall-clock timeout. A guard script runs first in the child and installs an
audit hook that refuses sockets, new processes and writes outside the temporary directory.

This contains accidents and the usual hostile snippets (infinite loops, fork bombs, huge
allocations, stray files, network calls, an early ``os._exit(0)``, reading or listing the caller's home
directory outside the Python installation). It is best-effort, not a security boundary: code can
still read other world-readable files, and native extensions (ctypes) can bypass the audit hook.
Run untrusted benchmarks in a container when that matters.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SandboxResult", "first_function_name", "build_program", "run_python"]

# Installed before the program runs. Audit hooks cannot be removed by the code that follows, and
# they see the C-level calls too (``_socket``, ``os.fork``), so they outlive monkeypatching.
_GUARD = r"""
import os, sys, runpy

_SANDBOX = os.path.realpath(os.getcwd())
_NEVER = ("socket.", "subprocess.", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn",
          "os.spawn", "os.system", "os.kill", "os.killpg", "pty.")
_MUTATE = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
           "os.symlink", "os.link", "os.truncate", "shutil.rmtree", "shutil.move", "os.utime")


def _under(real, root):
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _inside(path):
    if isinstance(path, int):
        return True
    real = os.path.realpath(os.fsdecode(path))
    return _under(real, _SANDBOX) or real == os.devnull


# The caller's home holds credentials (.netrc, .ssh, tokens); the interpreter and its packages
# may live there too (pyenv, a venv), so those stay readable for imports.
_HOME = os.path.realpath(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else ""
_PYTHON = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path) if p}


def _private(path):
    if not _HOME or _HOME == os.sep or isinstance(path, int):
        return False
    real = os.path.realpath(os.fsdecode(path))
    return _under(real, _HOME) and not _inside(path) and not any(_under(real, p) for p in _PYTHON)


def _writes(mode, flags):
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)


def _guard(event, args):
    if event.startswith(_NEVER):
        raise PermissionError("sandbox: " + event + " is not allowed")
    if event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None and _private(args[0]):
        raise PermissionError("sandbox: reading the user's home directory is not allowed")
    if event == "open" and args and _writes(args[1] if len(args) > 1 else "r",
                                          args[2] if len(args) > 2 else 0):
        if not _inside(args[0]):
            raise PermissionError("sandbox: writing outside the sandbox directory")
    elif event in _MUTATE and args and not isinstance(args[0], int) and not _inside(args[0]):
        raise PermissionError("sandbox: " + event + " outside the sandbox directory")


_DONE = sys.argv[1]
sys.addaudithook(_guard)
sys.argv = ["program.py"]
runpy.run_path("program.py", run_name="__main__")
# Reached only when the program and its checks returned normally; os._exit(0) or sys.exit(0)
# inside the solution exit with status 0 but never get here.
open(_DONE, "w").close()
"""

# Annotations such as ``List[int]`` are evaluated when a function is defined; model answers often
# drop the ``from typing import ...`` line the prompt had, which is not what the test measures.
_PROGRAM_PREAMBLE = "from typing import *  # noqa\n"

_OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one run: ``passed`` when the program exited with status 0."""

    passed: bool
    reason: str


def first_function_name(code: str) -> str | None:
    """The first top-level ``def`` of ``code`` (the first ``def`` anywhere if it does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        match = re.search(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", code, flags=re.MULTILINE)
        return match.group(1) if match else None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node.name
    return None


def build_program(code: str, test: str, entry_point: str | None = None) -> str | None:
    """Solution + ``candidate`` alias + test + ``check(candidate)``; None when nothing to test.

    ``entry_point`` (named by the benchmark or the prompt) wins when the code defines it;
    otherwise the first top-level function is the candidate.
    """
    defined = (
        re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) if entry_point else None
    )
    name = entry_point if defined else first_function_name(code)
    if name is None:
        return None
    calls_check = re.search(r"^check\s*\(", test, flags=re.MULTILINE)
    parts = [_PROGRAM_PREAMBLE + code, f"candidate = {name}", test]
    if not calls_check:
        parts.append("check(candidate)")
    return "\n\n".join(parts) + "\n"


def _limits(timeout_s: float, memory_mb: int) -> Callable[[], None]:
    """The ``preexec_fn``: OS limits for the child, set after fork and before exec."""

    def apply() -> None:
        import resource

        cpu = max(1, int(timeout_s))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        memory = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (_OUTPUT_LIMIT_BYTES, _OUTPUT_LIMIT_BYTES))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        # Root ignores RLIMIT_NPROC; the guard's audit hook blocks fork for it too.
        resource.setrlimit(resource.RLIMIT_NPROC, (8, 8))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.umask(0o077)
        for sig in (signal.SIGXCPU, signal.SIGXFSZ, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)

    return apply


def _environment(root: Path) -> dict[str, str]:
    threads = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    home, tmp = root / "home", root / "tmp"
    home.mkdir()
    tmp.mkdir()
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8", **threads}


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _failure_reason(returncode: int, stderr_path: Path) -> str:
    if returncode < 0:
        names = {
            signal.SIGXCPU: "CPU time limit",
            signal.SIGKILL: "killed",
            signal.SIGXFSZ: "file size limit",
        }
        return names.get(-returncode, f"killed by signal {-returncode}")
    try:
        with open(stderr_path, "rb") as stream:
            stream.seek(max(0, stderr_path.stat().st_size - 4096))
            tail = stream.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        tail = []
    return tail[-1][:300] if tail else f"exit status {returncode}"


def _execute(program: str, timeout_s: float, memory_mb: int) -> SandboxResult:
    workdir = tempfile.mkdtemp(prefix="moco_lit_sandbox_")
    try:
        root = Path(workdir)
        (root / "program.py").write_text(program, encoding="utf-8")
        (root / "guard.py").write_text(_GUARD, encoding="utf-8")
        done = f"done-{secrets.token_hex(8)}"
        # Output goes to files (capped by RLIMIT_FSIZE), never pipes, so a program printing
        # forever cannot fill the caller's memory.
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-I", "-B", "guard.py", done, os.path.expanduser("~")],
                cwd=workdir,
                env=_environment(root),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                close_fds=True,
                start_new_session=True,
                preexec_fn=_limits(timeout_s, memory_mb),
            )
            started = time.monotonic()
            try:
                returncode = process.wait(timeout=timeout_s + 1.0)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.wait()
                return SandboxResult(False, f"timeout after {time.monotonic() - started:.1f} s")
            finally:
                _kill_group(process)  # whatever it left behind in its group
        if returncode == 0 and (root / done).exists():
            return SandboxResult(True, "passed")
        if returncode == 0:
            return SandboxResult(False, "exited before the checks finished")
        return SandboxResult(False, _failure_reason(returncode, root / "stderr"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_python(
    code: str,
    test: str,
    *,
    entry_point: str | None = None,
    timeout_s: float = 10,
    memory_mb: int = 1024,
) -> SandboxResult:
    """Run ``code`` + ``test`` + ``check(candidate)`` in a limited child process.

    ``code`` is the program already extracted from the model output (see
    ``extraction.extract_code``). Passed means the child exited with status 0 within
    ``timeout_s`` seconds of CPU and wall-clock time.
    """
    if not test.strip():
        return SandboxResult(False, "the example has no test")
    program = build_program(code, test, entry_point)
    if program is None:
        return SandboxResult(False, "no function defined in the code")
    try:
        return _execute(program, timeout_s, memory_mb)
    except OSError as error:  # e.g. the caller itself is out of processes or file handles
        return SandboxResult(False, f"could not start the sandbox: {error}")
