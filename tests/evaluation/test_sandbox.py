"""The code sandbox: hostile programs fail quickly and cleanly, and the next run still works.

Tests without a fixture run in the OS sandbox (bubblewrap); where it is missing they run in the
best-effort fallback. Tests marked with ``unsafe_fallback`` check that fallback's own guard.
``test_sandbox_hostile.py`` holds the hostile programs the OS sandbox must contain.
"""

import os
import time
import uuid
from pathlib import Path

import pytest

from moco_lit.errors import UserError
from moco_lit.evaluation import sandbox
from moco_lit.evaluation.sandbox import build_program, first_function_name, run_python

TEST = "def check(candidate):\n    assert candidate(2) == 4\n"
GOOD = "def double(x):\n    return x * 2\n"
FAST = {"timeout_s": 2}


@pytest.fixture(autouse=True)
def _fallback_without_bubblewrap(monkeypatch):
    if sandbox.isolation_problem() is not None:
        monkeypatch.setattr(sandbox, "_unsafe_allowed", True)


@pytest.fixture
def unsafe_fallback(monkeypatch):
    """No bubblewrap, and unsafe execution allowed: the single guarded child process."""
    monkeypatch.setattr(sandbox, "BWRAP", "/nonexistent/bwrap")
    monkeypatch.setattr(sandbox, "_unsafe_allowed", True)


def test_without_bubblewrap_scoring_refuses_in_one_line(monkeypatch):
    from moco_lit.evaluation import Scorer

    monkeypatch.setattr(sandbox, "BWRAP", "/nonexistent/bwrap")
    monkeypatch.setattr(sandbox, "_unsafe_allowed", False)
    for attempt in (lambda: run_python(GOOD, TEST), lambda: Scorer.for_task("coding")):
        with pytest.raises(UserError) as refused:
            attempt()
        message = str(refused.value)
        assert "\n" not in message and "/nonexistent/bwrap" in message
        assert "apt-get install bubblewrap" in message and "--allow_unsafe_code_execution" in message
    sandbox.allow_unsafe_code_execution(True)
    try:
        assert run_python(GOOD, TEST, **FAST).passed
    finally:
        sandbox.allow_unsafe_code_execution(False)


def assert_still_works():
    assert run_python(GOOD, TEST, **FAST).passed


def test_correct_and_wrong_solutions():
    assert run_python(GOOD, TEST, **FAST).passed
    wrong = run_python("def double(x):\n    return x + 3\n", TEST, **FAST)
    assert not wrong.passed and "AssertionError" in wrong.reason


def test_entry_point_beats_first_function_and_typing_is_available():
    code = "def helper(v):\n    return v\n\ndef double(xs: List[int]):\n    return helper(xs) * 2\n"
    assert first_function_name(code) == "helper"
    assert run_python(code, TEST, entry_point="double", **FAST).passed
    assert not run_python(code, TEST, **FAST).passed  # helper(2) == 2


def test_no_function_or_no_test_fails_without_running():
    assert run_python("x = 1", TEST).reason == "no function defined in the code"
    assert not run_python(GOOD, "  ").passed
    assert build_program(GOOD, "def check(c):\n    pass\ncheck(candidate)\n").count("check(candidate)") == 1


@pytest.mark.parametrize(
    "body, why",
    [
        # a busy loop hits the CPU limit, or the wall clock first when other processes hold the cores
        ("    while True:\n        pass\n", ("CPU time limit", "timeout")),
        ("    import time\n    time.sleep(60)\n", ("timeout",)),
    ],
)
def test_endless_programs_are_stopped(body, why):
    started = time.monotonic()
    result = run_python(f"def double(x):\n{body}", TEST, **FAST)
    assert not result.passed and any(reason in result.reason for reason in why)
    assert time.monotonic() - started < 6
    assert_still_works()


@pytest.mark.parametrize(
    "body",
    [
        "    import os\n    while True:\n        os.fork()\n",
        "    import multiprocessing\n    p = multiprocessing.Process(target=print)\n    p.start()\n    p.join()\n    return 4\n",
        "    import subprocess\n    subprocess.run(['true'])\n    return 4\n",
        "    import os\n    os.system('true')\n    return 4\n",
    ],
    ids=["fork-bomb", "multiprocessing", "subprocess", "os.system"],
)
def test_no_new_processes(body, unsafe_fallback):
    result = run_python(f"def double(x):\n{body}", TEST, **FAST)
    assert not result.passed and "not allowed" in result.reason
    assert_still_works()


def test_huge_allocation_fails_fast():
    started = time.monotonic()
    result = run_python(
        "def double(x):\n    block = bytearray(10 * 1024**3)\n    return 4\n", TEST, memory_mb=512
    )
    assert not result.passed and "MemoryError" in result.reason
    assert time.monotonic() - started < 5
    assert_still_works()


def test_writes_outside_the_sandbox_are_refused(unsafe_fallback):
    name = f"moco_lit_escape_{uuid.uuid4().hex}.txt"
    code = f"def double(x):\n    open('../../{name}', 'w').write('x')\n    return 4\n"
    result = run_python(code, TEST, **FAST)
    assert not result.passed and "outside the sandbox" in result.reason
    leaked = [p / name for p in (Path("/tmp"), Path("/"), Path.cwd(), Path.cwd().parent)]
    assert not any(p.exists() for p in leaked)
    # Writing inside its own directory is fine.
    assert run_python(
        "def double(x):\n    open('note.txt', 'w').write('ok')\n    return 4\n", TEST, **FAST
    ).passed


def test_home_is_an_empty_temporary_directory():
    from moco_lit.evaluation.sandbox import _python_prefixes

    # an interpreter or virtual environment installed under /tmp is bound there, read-only
    bound = sorted({Path(p).parts[2] for p in _python_prefixes() if p.startswith("/tmp/")})
    code = (
        "import os\n"
        "def double(x):\n"
        "    home = os.path.expanduser('~')\n"
        f"    assert home != {os.path.expanduser('~')!r}\n"
        f"    assert sorted(os.listdir(home)) == {bound!r}\n"
        "    assert 'PYTHONPATH' not in os.environ and set(os.environ) >= {'HOME', 'PATH'}\n"
        "    return 4\n"
    )
    assert run_python(code, TEST, **FAST).passed


def test_sockets_are_blocked(unsafe_fallback):
    for module in ("socket", "_socket"):
        result = run_python(
            f"import {module}\ndef double(x):\n    {module}.socket()\n    return 4\n", TEST, **FAST
        )
        assert not result.passed and "socket" in result.reason


def test_early_clean_exit_is_not_a_pass():
    for exit_call in ("import os\nos._exit(0)", "import sys\nsys.exit(0)"):
        assert not run_python(f"{exit_call}\n{GOOD}", TEST, **FAST).passed


def test_early_clean_exit_in_the_fallback(unsafe_fallback):
    for exit_call in ("import os\nos._exit(0)", "import sys\nsys.exit(0)"):
        result = run_python(f"{exit_call}\n{GOOD}", TEST, **FAST)
        assert not result.passed and result.reason == "exited before the checks finished"


def test_endless_output_is_capped():
    result = run_python("def double(x):\n    while True:\n        print('x' * 100000)\n", TEST, **FAST)
    assert not result.passed
    assert_still_works()


def test_the_callers_home_files_cannot_be_read_or_listed(tmp_path, monkeypatch, unsafe_fallback):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".netrc").write_text("machine api.example.com password hunter2\n")
    monkeypatch.setenv("HOME", str(home))
    attempts = {
        "read": f"open({str(home / '.netrc')!r}).read()",
        "list": f"os.listdir({str(home)!r})",
        "scan": f"list(os.scandir({str(home / '.ssh')!r}))",
    }
    for how, call in attempts.items():
        result = run_python(f"import os\ndef double(x):\n    {call}\n    return 4\n", TEST, **FAST)
        assert not result.passed and "home directory" in result.reason, (how, result)
    assert_still_works()  # imports from an interpreter that lives under a home still work


def test_a_batch_with_hostile_answers_is_scored_to_the_end():
    """One coding batch: the hostile answers score 0, the good ones 1, in order."""
    from moco_lit.evaluation import Scorer

    hostile = [
        "def double(x):\n    while True:\n        pass\n",
        "def double(x):\n    import socket\n    socket.create_connection(('example.com', 80))\n    return 4\n",
        "def double(x):\n    block = bytearray(10 * 1024**3)\n    return 4\n",
    ]
    outputs = [f"```python\n{code}```" for code in [GOOD, *hostile, GOOD]]
    record = {"input": "Write double(x).", "test": TEST, "entry_point": "double"}
    scorer = Scorer.for_task("coding", coding_timeout_s=2)
    assert scorer.score(outputs, [record] * len(outputs)) == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_score_command_refuses_without_bubblewrap_unless_told(tmp_path):
    import json
    import subprocess
    import sys

    records = [{"id": "0", "input": "Write double(x).", "test": TEST, "entry_point": "double"}]
    benchmark = tmp_path / "tiny_coding.json"
    benchmark.write_text(json.dumps({"task_type": "coding", "dev": records, "test": records}))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(json.dumps({"id": "0", "output": f"```python\n{GOOD}```"}) + "\n")
    command = [sys.executable, "-m", "moco_lit", "score", "--benchmark", str(benchmark)]
    command += ["--predictions", str(predictions), "--json"]
    no_bwrap = {**os.environ, "PATH": str(tmp_path), "OMP_NUM_THREADS": "1"}  # bwrap is not found
    refused = subprocess.run(command, capture_output=True, text=True, env=no_bwrap, timeout=120)
    assert refused.returncode == 2 and "--allow_unsafe_code_execution" in refused.stderr
    # one error line (an INFO line saying the Hub is unreachable may come first, offline)
    lines = [line for line in refused.stderr.strip().splitlines() if not line.startswith("INFO ")]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    allowed = subprocess.run(
        [*command, "--allow_unsafe_code_execution"], capture_output=True, text=True, env=no_bwrap, timeout=120
    )
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert json.loads(allowed.stdout.strip().splitlines()[-1])["mean"] == 1.0
