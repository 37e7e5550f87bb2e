"""Run model-written Python against a benchmark's tests, isolated by the operating system.

Each example runs as two processes, each in its own bubblewrap (``bwrap``) sandbox:

- the *solution* process executes the model's code and then answers calls to its functions;
- the *checker* process executes the benchmark's test, where ``candidate`` (and any other name
  the test does not define itself) is a stub that sends the call's arguments to the solution
  process and gets back plain data (None, bool, int, float, complex, str, bytes, list, tuple,
  dict, set, frozenset) or the name and message of the exception it raised.

The checker never runs model code and never receives an object from it, only data that it decodes
itself, so a pass is decided by the benchmark's own asserts on plain values: the model's code
cannot forge it by exiting early, printing a marker, patching the test, returning objects whose
``__eq__`` always says yes, or tampering with the checker (it is in another sandbox, under another
user, in another PID namespace). The parent reads the verdict from a pipe only the checker holds.

Each sandbox has no network (its own empty network namespace), its own PID, IPC and UTS
namespaces, a filesystem view of only the read-only system directories and the Python
installation (and virtual environment), a new ``/proc`` and a minimal ``/dev``; the environment
is cleared. The solution can write nowhere; the checker has a small private ``/tmp``. Run as
root, each sandbox runs under a fresh unused uid/gid; run as a normal user, in a user namespace.
OS limits (CPU seconds, address space, file size, open files, processes: one for the solution)
are set before any benchmark or model code runs, and the wall-clock timeout kills the
sandbox with everything in it. Where bubblewrap is unavailable, scoring refuses unless
``allow_unsafe_code_execution(True)`` was called (``--allow_unsafe_code_execution``), which runs
the old best-effort child instead. ``docs/scoring.md`` states the threat model and its limits.
"""

from __future__ import annotations

import ast
import functools
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

from moco_lit.errors import UserError

__all__ = [
    "SandboxResult",
    "allow_unsafe_code_execution",
    "build_program",
    "first_function_name",
    "isolation_problem",
    "require_isolation",
    "run_python",
]

BWRAP = "bwrap"
"""The bubblewrap executable, looked up on PATH."""

_unsafe_allowed = False

# Annotations such as ``List[int]`` are evaluated when a function is defined; model answers often
# drop the ``from typing import ...`` line the prompt had, which is not what the test measures.
_PROGRAM_PREAMBLE = "from typing import *  # noqa\n"

_OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024
_CHECKER_TMP_BYTES = 16 * 1024 * 1024
# The solution may start no process or thread: RLIMIT_NPROC counts its own uid (a fresh one
# under root, the user namespace's otherwise), where its interpreter is already the one.
_SOLUTION_PROCESSES, _CHECKER_PROCESSES = 1, 16
_OPEN_FILES_LIMIT = 64
# Run as root, each sandbox gets uids from here: unused on the host, so RLIMIT_NPROC counts only
# that sandbox's processes and no host file belongs to them.
_UID_BASE, _UID_SPAN = 2_000_000_000, 1_000_000_000
# bwrap's own processes (the sandbox's PID 1 among them) keep the environment they were started
# with, readable in /proc/1/environ: never the caller's (tokens, keys).
_BWRAP_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one run: ``passed`` when the benchmark's checks all held."""

    passed: bool
    reason: str


def allow_unsafe_code_execution(allowed: bool = True) -> None:
    """Without bubblewrap, run model code anyway, in a best-effort child (``--allow_unsafe_code_execution``)."""
    global _unsafe_allowed
    _unsafe_allowed = bool(allowed)


def isolation_problem() -> str | None:
    """Why model code cannot run in an OS sandbox here (None when it can)."""
    found = _isolation(BWRAP)
    return found if isinstance(found, str) else None


def require_isolation() -> None:
    """Raise the one-line refusal when there is no OS sandbox and unsafe execution was not allowed."""
    problem = isolation_problem()
    if problem is not None and not _unsafe_allowed:
        raise UserError(
            f"scoring code runs model-written programs and needs an OS sandbox, but {problem}: "
            "install bubblewrap (apt-get install bubblewrap), or pass --allow_unsafe_code_execution "
            "to run them with best-effort limits only"
        )


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


def _candidate_name(code: str, entry_point: str | None) -> str | None:
    """``entry_point`` (named by the benchmark or the prompt) when the code defines it, else its first function."""
    defined = (
        re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) if entry_point else None
    )
    return entry_point if defined else first_function_name(code)


def _checks(test: str) -> str:
    calls_check = re.search(r"^check\s*\(", test, flags=re.MULTILINE)
    return test if calls_check else test + "\n\ncheck(candidate)"


def build_program(code: str, test: str, entry_point: str | None = None) -> str | None:
    """Solution + ``candidate`` alias + test + ``check(candidate)`` as one program; None when nothing to test.

    This single program is what the unsafe fallback runs; the sandbox runs the solution and the
    checks in separate processes.
    """
    name = _candidate_name(code, entry_point)
    if name is None:
        return None
    return "\n\n".join([_PROGRAM_PREAMBLE + code, f"candidate = {name}", _checks(test)]) + "\n"


def run_python(
    code: str,
    test: str,
    *,
    entry_point: str | None = None,
    timeout_s: float = 10,
    memory_mb: int = 1024,
) -> SandboxResult:
    """Run ``test`` + ``check(candidate)`` against ``code``, the model's program.

    ``code`` is the program already extracted from the model output (see
    ``extraction.extract_code``). Passed means the checks ran to their end without an error within
    ``timeout_s`` seconds of CPU time (``timeout_s`` + 2 of wall-clock time). Raises ``UserError``
    when there is no OS sandbox and unsafe execution was not allowed.
    """
    if not test.strip():
        return SandboxResult(False, "the example has no test")
    name = _candidate_name(code, entry_point)
    if name is None:
        return SandboxResult(False, "no function defined in the code")
    require_isolation()
    isolation = _isolation(BWRAP)
    try:
        if isinstance(isolation, str):
            return _execute_unsafe(build_program(code, test, entry_point) or "", timeout_s, memory_mb)
        return _execute_isolated(isolation, code, test, name, timeout_s, memory_mb)
    except OSError as error:  # e.g. the caller itself is out of processes or file handles
        return SandboxResult(False, f"could not start the sandbox: {error}")


# ---------------------------------------------------------------------------------------------
# The two programs that run inside the sandboxes. Both confine themselves first (uid, limits),
# then read their source from a file descriptor the parent filled.
# ---------------------------------------------------------------------------------------------

_CONFINE = r"""
import os, sys, resource
_uid, _cpu, _memory, _fsize, _nproc, _nofile = (int(v) for v in sys.argv[1:7])
if _uid >= 0 and os.getuid() == 0:
    os.setgroups([])
    os.setgid(_uid)
    os.setuid(_uid)
for _limit, _soft, _hard in (
    (resource.RLIMIT_CPU, _cpu, _cpu + 1),
    (resource.RLIMIT_AS, _memory, _memory),
    (resource.RLIMIT_FSIZE, _fsize, _fsize),
    (resource.RLIMIT_NPROC, _nproc, _nproc),
    (resource.RLIMIT_NOFILE, _nofile, _nofile),
    (resource.RLIMIT_CORE, 0, 0),
):
    resource.setrlimit(_limit, (_soft, _hard))
os.umask(0o077)
_fds = [int(v) for v in sys.argv[7].split(",")]
with os.fdopen(_fds[0], "r", encoding="utf-8") as _stream:
    _source = _stream.read()
"""

# The checker runs the benchmark's test. Names the test does not define resolve, through the
# builtins mapping, to what the solution defines: functions become call stubs, data is copied.
_CHECKER = (
    _CONFINE
    + r"""
import builtins, importlib, json, pickle, struct
_calls, _replies, _verdict = _fds[1], os.fdopen(_fds[2], "rb"), _fds[3]


class _Opaque:
    __slots__ = ("kind", "text")

    def __init__(self, kind, text):
        self.kind, self.text = kind, text

    def __repr__(self):
        return f"<{self.kind} from the solution: {self.text}>"


_SCALARS = (type(None), bool, int, float, str)
_MALFORMED = "the solution's process sent a malformed answer"


def _decode(value):
    if type(value) in _SCALARS:
        return value
    if type(value) is not dict or len(value) != 1:
        raise ValueError(_MALFORMED)
    ((tag, payload),) = value.items()
    if tag == "bytes" and type(payload) is str:
        return bytes.fromhex(payload)
    if type(payload) is not list:
        raise ValueError(_MALFORMED)
    if tag == "complex" and len(payload) == 2 and all(type(p) in (int, float) for p in payload):
        return complex(*payload)
    if tag == "opaque" and len(payload) == 2 and all(type(p) is str for p in payload):
        return _Opaque(*payload)
    if tag == "dict":
        if not all(type(pair) is list and len(pair) == 2 for pair in payload):
            raise ValueError(_MALFORMED)
        return {_decode(k): _decode(v) for k, v in payload}
    kinds = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}
    if tag not in kinds:
        raise ValueError(_MALFORMED)
    return kinds[tag](_decode(v) for v in payload)


def _exception(payload):
    if type(payload) is list and len(payload) == 2 and all(type(p) is str for p in payload):
        name, text = payload
        kind = getattr(builtins, name, None)
        # Only ordinary errors: never SystemExit, and never StopIteration, which would end a
        # loop over map(candidate, ...) in the test as if all its checks had run.
        stops = (StopIteration, StopAsyncIteration)
        if isinstance(kind, type) and issubclass(kind, Exception) and not issubclass(kind, stops):
            try:
                return kind(text)
            except Exception:
                pass
        return RuntimeError(f"{name}: {text}")
    return RuntimeError(_MALFORMED)


def _ask(op, name, args=(), kwargs=None):
    data = pickle.dumps((op, name, args, kwargs or {}), protocol=4)
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(_calls, view):]
    line = _replies.readline()
    if not line.endswith(b"\n"):
        raise RuntimeError("the solution's process ended before it answered")
    answer = json.loads(line)
    if type(answer) is not dict or len(answer) != 1:
        raise ValueError(_MALFORMED)
    return next(iter(answer.items()))


class _Remote:
    def __init__(self, name):
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        kind, payload = _ask("call", self.__name__, args, kwargs)
        if kind == "value":
            return _decode(payload)
        raise _exception(payload if kind == "raise" else None)

    def __repr__(self):
        return f"<function {self.__name__} of the solution>"


class _Builtins(dict):
    def __missing__(self, name):
        kind, payload = _ask("get", name)
        if kind == "function":
            value = _Remote(name)
        elif kind == "value":
            value = _decode(payload)
        elif kind == "module" and type(payload) is str:
            value = importlib.import_module(payload)
        else:
            raise KeyError(name)
        self[name] = value
        return value


_kind, _payload = _ask("ready", "")
if _kind != "ready":
    sys.stderr.write((_payload if type(_payload) is str else _MALFORMED)[:1000] + "\n")
    sys.exit(1)
_namespace = {"__name__": "__main__", "__builtins__": _Builtins(builtins.__dict__)}
_namespace["candidate"] = _Remote(sys.argv[8])
exec(compile(_source, "test.py", "exec"), _namespace)
os.write(_verdict, b"passed\n")
"""
)

# The solution runs the model's code, then answers the checker. What it sends is only ever
# decoded as data; nothing it does in here can change how the checker reads it.
_SOLUTION = (
    _CONFINE
    + r"""
import builtins, json, numbers, pickle, struct, types
_requests, _replies = os.fdopen(_fds[1], "rb"), _fds[2]


def _send(message):
    view = memoryview((json.dumps(message) + "\n").encode())
    while view:
        view = view[os.write(_replies, view):]


def _encode(value):
    if value is None or type(value) in (bool, int, float, str):
        return value
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, numbers.Complex):
        return {"complex": [complex(value).real, complex(value).imag]}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).hex()}
    for tag, kind in (("list", list), ("tuple", tuple), ("set", set), ("frozenset", frozenset)):
        if isinstance(value, kind):
            return {tag: [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    return {"opaque": [type(value).__name__, repr(value)[:200]]}


def _answer(op, name, args, kwargs):
    if op == "get":
        if name not in _namespace:
            return {"missing": None}
        value = _namespace[name]
        if isinstance(value, types.ModuleType):
            return {"module": value.__name__}
        return {"function": None} if callable(value) else {"value": _encode(value)}
    try:
        return {"value": _encode(_namespace[name](*args, **kwargs))}
    except BaseException as error:
        return {"raise": [type(error).__name__, str(error)[:1000]]}


_namespace = {"__name__": "__main__", "__builtins__": builtins}
sys.argv = ["solution.py"]
try:
    exec(compile(_source, "solution.py", "exec"), _namespace)
    _ready = {"ready": None}
except BaseException as error:
    _ready = {"error": f"{type(error).__name__}: {error}"}
while True:
    _head = _requests.read(8)
    if len(_head) < 8:
        os._exit(0)
    _op, _name, _args, _kwargs = pickle.loads(_requests.read(struct.unpack("<Q", _head)[0]))
    if _op == "ready":
        _send(_ready)
        if "error" in _ready:
            os._exit(1)
        continue
    try:
        _reply = _answer(_op, _name, _args, _kwargs)
        _send(_reply)
    except Exception as error:
        _send({"raise": ["RuntimeError", f"the answer could not be sent: {type(error).__name__}"]})
"""
)


# ---------------------------------------------------------------------------------------------
# bubblewrap
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Isolation:
    bwrap: str
    privileged: bool  # run as root: no user namespace, the sandbox drops to its own uid
    options: frozenset[str]  # the optional bwrap flags this version knows

    def command(self, uid: int, tmp_bytes: int) -> list[str]:
        argv = [self.bwrap, "--die-with-parent", "--new-session", "--clearenv"]
        if self.privileged:
            argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
            argv += ["--unshare-cgroup-try", "--cap-drop", "ALL"]
            argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            argv += ["--unshare-all", "--uid", "65534", "--gid", "65534"]
            argv += ["--disable-userns"] if "--disable-userns" in self.options else []
        environment = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
        environment.update({k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
        for name, value in environment.items():
            argv += ["--setenv", name, value]
        argv += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        # the private /tmp first, so an interpreter or virtual environment under /tmp is bound on top
        if tmp_bytes:
            argv += ["--size", str(tmp_bytes)] if "--size" in self.options else []
            argv += ["--tmpfs", "/tmp"]
        else:
            argv += ["--dir", "/tmp"]
        prefixes = _python_prefixes()
        for prefix in prefixes:
            argv += ["--ro-bind", prefix, prefix]
        # bwrap creates the folders above a bind with the host's modes (/root is 0700)
        for folder in sorted({str(p) for prefix in prefixes for p in Path(prefix).parents} - {"/", "/tmp"}):
            argv += ["--chmod", "0755", folder]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        if tmp_bytes:
            argv += ["--chmod", "1777", "/tmp"]
        else:  # nothing writable at all: no disk to fill, no inodes to exhaust
            argv += ["--remount-ro", "/"]
        argv += ["--chdir", "/tmp"]
        return argv + ["--", sys.executable, "-I", "-B"]


def _python_prefixes() -> list[str]:
    """The interpreter's installation and virtual environment, outside /usr; nothing else of the home."""
    prefixes = {
        os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix)
    }
    prefixes.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    kept = sorted(p for p in prefixes if p != "/" and not (p + "/").startswith("/usr/"))
    return [p for p in kept if not any(p.startswith(q + "/") for q in kept if q != p)]


def _fresh_uid() -> int:
    return _UID_BASE + 2 * secrets.randbelow(_UID_SPAN // 2)


@functools.cache
def _isolation(bwrap: str) -> _Isolation | str:
    """The working bubblewrap setup, probed once per process; a reason string when there is none."""
    path = shutil.which(bwrap)
    if path is None:
        return f"{bwrap} (bubblewrap) is not installed"
    try:
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return f"{path} does not run ({error})"
    options = frozenset(o for o in ("--size", "--disable-userns") if o in usage)
    probe = "import os, sys; os.getuid() == 0 and (os.setgid(int(sys.argv[1])), os.setuid(int(sys.argv[1]))); print('ok')"
    problem = f"{path} cannot create a sandbox"
    for privileged in (True, False) if os.geteuid() == 0 else (False,):
        setup = _Isolation(path, privileged, options)
        uid = _fresh_uid() if privileged else -1
        try:
            done = subprocess.run(
                [*setup.command(uid, 1024 * 1024), "-c", probe, str(uid)],
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
                env=_BWRAP_ENVIRONMENT,
            )
        except (OSError, subprocess.SubprocessError) as error:
            problem = f"{path} cannot create a sandbox ({error})"
            continue
        if done.returncode == 0 and done.stdout.strip() == "ok":
            return setup
        lines = done.stderr.strip().splitlines()
        problem = (
            f"{path} cannot create a sandbox ({lines[-1] if lines else f'exit status {done.returncode}'})"
        )
    return problem


def _memfd(text: str) -> int:
    fd = os.memfd_create("program")
    data = memoryview(text.encode("utf-8"))
    while data:
        data = data[os.write(fd, data) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _signal_name(returncode: int) -> str | None:
    """bwrap reports a child killed by signal N as exit status 128 + N."""
    if returncode < 0:
        number = -returncode
    elif returncode > 128:
        number = returncode - 128
    else:
        return None
    names = {signal.SIGXCPU: "CPU time limit", signal.SIGKILL: "killed", signal.SIGXFSZ: "file size limit"}
    return names.get(number, f"killed by signal {number}")


def _kill(process: subprocess.Popen) -> None:
    # Killing bwrap kills the sandbox's PID 1 (--die-with-parent), which takes the whole PID
    # namespace with it.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _execute_isolated(
    isolation: _Isolation, code: str, test: str, name: str, timeout_s: float, memory_mb: int
) -> SandboxResult:
    uid = _fresh_uid() if isolation.privileged else -1
    checker_uid = uid
    solution_uid = uid + 1 if isolation.privileged else -1
    cpu = max(1, int(timeout_s))
    memory = memory_mb * 1024 * 1024

    def limits(processes: int) -> list[str]:
        return [str(cpu), str(memory), str(_OUTPUT_LIMIT_BYTES), str(processes), str(_OPEN_FILES_LIMIT)]

    calls_read, calls_write = os.pipe()
    replies_read, replies_write = os.pipe()
    verdict_read, verdict_write = os.pipe()
    test_fd = _memfd(_PROGRAM_PREAMBLE + _checks(test) + "\n")
    code_fd = _memfd(_PROGRAM_PREAMBLE + code + "\n")
    theirs = [calls_read, calls_write, replies_read, replies_write, verdict_write, test_fd, code_fd]
    processes: list[subprocess.Popen] = []
    try:
        solution_fds = (code_fd, calls_read, replies_write)
        processes.append(
            subprocess.Popen(
                [*isolation.command(solution_uid, 0), "-c", _SOLUTION]
                + [str(solution_uid), *limits(_SOLUTION_PROCESSES), ",".join(map(str, solution_fds))],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_BWRAP_ENVIRONMENT,
                pass_fds=solution_fds,
                start_new_session=True,
            )
        )
        checker_fds = (test_fd, calls_write, replies_read, verdict_write)
        with tempfile.TemporaryFile() as errors:
            processes.append(
                subprocess.Popen(
                    [*isolation.command(checker_uid, _CHECKER_TMP_BYTES), "-c", _CHECKER]
                    + [str(checker_uid), *limits(_CHECKER_PROCESSES), ",".join(map(str, checker_fds)), name],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    env=_BWRAP_ENVIRONMENT,
                    pass_fds=checker_fds,
                    start_new_session=True,
                )
            )
            for fd in theirs:  # from here on, a closed pipe means the other side has ended
                os.close(fd)
            theirs = []
            solution, checker = processes
            started = time.monotonic()
            deadline = started + timeout_s + 2.0
            try:
                checker.wait(timeout=max(0.0, deadline - time.monotonic()))
                solution.wait(timeout=max(0.5, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return SandboxResult(False, f"timeout after {time.monotonic() - started:.1f} s")
            verdict = os.read(verdict_read, 64)
            if checker.returncode == 0 and verdict == b"passed\n":
                return SandboxResult(True, "passed")
            limit = _signal_name(solution.returncode) or _signal_name(checker.returncode)
            return SandboxResult(False, limit or _last_line(errors, checker.returncode))
    finally:
        for process in processes:
            _kill(process)
            process.wait()
        for fd in [*theirs, verdict_read]:
            os.close(fd)


def _last_line(stream, returncode: int) -> str:
    stream.seek(0, os.SEEK_END)
    stream.seek(max(0, stream.tell() - 4096))
    tail = stream.read().decode("utf-8", "replace").strip().splitlines()
    return tail[-1][:300] if tail else f"exit status {returncode}"


# ---------------------------------------------------------------------------------------------
# The unsafe fallback: one child process, OS limits and an audit hook, no isolation
# ---------------------------------------------------------------------------------------------

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
        return _signal_name(returncode) or ""
    try:
        with open(stderr_path, "rb") as stream:
            stream.seek(max(0, stderr_path.stat().st_size - 4096))
            tail = stream.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        tail = []
    return tail[-1][:300] if tail else f"exit status {returncode}"


def _execute_unsafe(program: str, timeout_s: float, memory_mb: int) -> SandboxResult:
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
