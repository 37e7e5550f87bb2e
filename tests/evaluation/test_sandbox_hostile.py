"""Hostile model outputs, by category: each scores 0 and leaves the caller's world untouched.

Every attack is written so that, were it to work, the solution would return the right answer
(or forge a pass), so a pass would show an escape. After each run the test checks what the attack
aimed at outside: the secret files, the folder it tried to write into, the listening sockets, the
scorer itself, and that the next, correct program still passes.
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from moco_lit.evaluation import sandbox
from moco_lit.evaluation.sandbox import run_python

pytestmark = pytest.mark.skipif(
    sandbox.isolation_problem() is not None,
    reason=f"no OS sandbox here ({sandbox.isolation_problem()}); apt-get install bubblewrap",
)

# map() over the candidate: an escaping StopIteration would end the loop as if all checks ran
TEST = "def check(candidate):\n    xs = (2, 5, -1, 7)\n    for x, got in zip(xs, map(candidate, xs)):\n        assert got == 2 * x\n"
GOOD = "def double(x):\n    return 2 * x\n"
OK = "return 2 * x"  # what an attack returns when it worked

CASES = {
    "escape_guard": {
        "frame-walk": f"import sys\nf = sys._getframe()\nwhile f.f_back:\n    f = f.f_back\n    f.f_globals.clear()\nopen('{{secret_file}}').read()\n{OK}",
        "gc-objects": f"import gc\nfor o in gc.get_objects():\n    if isinstance(o, dict) and '_confine' in str(list(o)[:50]):\n        o.clear()\nopen('{{drop}}/gc', 'w').write('x')\n{OK}",
        "ctypes-setuid": f"import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.setuid(0) == 0 and libc.getuid() == 0\n{OK}",
        "ctypes-mount": f"import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.mount(b'/', b'/tmp', None, 4096, None) == 0\n{OK}",
        "ctypes-unshare": f"import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.unshare(0x10000000) == 0\nopen('{{drop}}/userns', 'w')\n{OK}",
        "proc-root": f"import os\nfor pid in os.listdir('/proc'):\n    if pid.isdigit():\n        try:\n            open('/proc/' + pid + '/root{{secret_file}}').read()\n        except OSError:\n            continue\n        {OK}\nraise OSError('no way out')",
    },
    "forge_verdict": {
        "exit-at-import": "import os\nos._exit(0)\ndef double(x):\n    return x + 3",
        "exit-in-call": "def double(x):\n    import os\n    os._exit(0)",
        "sys-exit-in-call": "def double(x):\n    raise SystemExit(0)",
        "stop-iteration": "def double(x):\n    raise StopIteration",
        "always-equal": "class Yes:\n    def __eq__(self, other):\n        return True\ndef double(x):\n    return Yes()",
        "int-subclass": "class Yes(int):\n    __eq__ = lambda self, other: True\ndef double(x):\n    return Yes(x + 3)",
        "print-marker": "import sys\nprint('passed')\nsys.stdout.flush()\ndef double(x):\n    print('passed')\n    return x + 3",
        "write-every-fd": "import os\ndef double(x):\n    for fd in range(64):\n        try:\n            os.write(fd, b'passed\\n{{\"value\": 4}}\\n')\n        except OSError:\n            pass\n    os._exit(0)",
        "patch-the-runner": "import sys\ndef double(x):\n    f = sys._getframe(1)\n    f.f_globals['_encode'] = lambda v: 2 * x + 1\n    return 0",
        "kill-everyone": "import os, signal\ndef double(x):\n    for pid in range(1, 4096):\n        try:\n            os.kill(pid, signal.SIGKILL)\n        except OSError:\n            pass\n    return x + 3",
    },
    "kill_parent": {
        "kill-ppid": f"import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n{OK}",
        "kill-scorer": f"import os, signal\nos.kill({{scorer}}, signal.SIGKILL)\n{OK}",
        "kill-minus-one": f"import os, signal\nos.kill(-1, signal.SIGTERM)\n{OK}",
        "stop-ppid": f"import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n{OK}",
        "killpg-scorer": f"import os, signal\nos.killpg(os.getpgid({{scorer}}), signal.SIGKILL)\n{OK}",
    },
    "spawn": {
        "subprocess": f"import subprocess\nsubprocess.run(['/bin/true'], check=True)\n{OK}",
        "os-system": f"import os\nassert os.system('true') == 0\n{OK}",
        "posix-spawn": f"import os\nos.waitpid(os.posix_spawn('/bin/true', ['true'], {{{{}}}}), 0)\n{OK}",
        "fork": f"import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\n{OK}",
        "multiprocessing": f"import multiprocessing\np = multiprocessing.Process(target=print)\np.start()\np.join()\n{OK}",
        "thread": f"import threading\nt = threading.Thread(target=print)\nt.start()\nt.join()\n{OK}",
        "exec": "import os\nos.execv('/bin/sh', ['sh', '-c', 'exit 0'])",
    },
    "write_outside": {
        "open": f"open('{{drop}}/open', 'w').write('x')\n{OK}",
        "dir-fd": f"import os\nd = os.open('{{drop}}', os.O_RDONLY)\nos.close(os.open('dirfd', os.O_CREAT | os.O_WRONLY, dir_fd=d))\n{OK}",
        "rename": f"import os\nos.rename('/usr/bin/true', '{{drop}}/renamed')\n{OK}",
        "link": f"import os\nos.link('/usr/bin/true', '{{drop}}/linked')\n{OK}",
        "symlink": f"import os\nos.symlink('/etc', '{{drop}}/symlinked')\n{OK}",
        "mkfifo": f"import os\nos.mkfifo('{{drop}}/fifo')\n{OK}",
        "sqlite": f"import sqlite3\nsqlite3.connect('{{drop}}/db.sqlite').execute('create table t (x)')\n{OK}",
        "python-prefix": f"open('{{prefix}}/escaped-{{tag}}', 'w').write('x')\n{OK}",
        "cwd": f"open('{{cwd}}/escaped-{{tag}}', 'w').write('x')\n{OK}",
        "own-tmp": f"open('/tmp/x', 'w').write('x')\n{OK}",
    },
    "read_outside": {
        "tmp-file": f"assert open('{{secret_file}}').read() == '{{secret}}'\n{OK}",
        "home-file": f"assert open('{{home_secret}}').read() == '{{secret}}'\n{OK}",
        "home-listing": f"import os\nassert '.moco_lit_test_secret_{{secret}}' in os.listdir('{{home}}')\n{OK}",
        "shadow": f"open('/etc/shadow').read()\n{OK}",
        "passwd": f"open('/etc/passwd').read()\n{OK}",
        "scorer-cwd": f"open('{{cwd}}/pyproject.toml').read()\n{OK}",
    },
    "read_secrets": {
        "own-environ": f"import os\nassert '{{secret}}' in str(os.environ)\n{OK}",
        "pid1-environ": f"assert b'{{secret}}' in open('/proc/1/environ', 'rb').read()\n{OK}",
        "ppid-environ": f"import os\nassert b'{{secret}}' in open(f'/proc/{{{{os.getppid()}}}}/environ', 'rb').read()\n{OK}",
        "scorer-environ": f"assert b'{{secret}}' in open('/proc/{{scorer}}/environ', 'rb').read()\n{OK}",
        "every-environ": f"import os\nfor pid in os.listdir('/proc'):\n    try:\n        if b'{{secret}}' in open('/proc/' + pid + '/environ', 'rb').read():\n            {OK}\n    except OSError:\n        pass\nraise OSError('not found')",
        "argv": f"import sys\nassert '{{secret}}' in str(sys.argv)\n{OK}",
    },
    "exhaust_cpu": {
        "busy-loop": "def double(x):\n    while True:\n        pass",
        "ignore-sigxcpu": "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\ndef double(x):\n    while True:\n        pass",
        "sleep": "import time\ndef double(x):\n    time.sleep(600)",
        "busy-at-import": "while True:\n    pass\ndef double(x):\n    return 2 * x",
    },
    "exhaust_memory": {
        "bytearray": f"b = bytearray(64 * 1024**3)\n{OK}",
        "grow-list": f"blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))\n{OK}",
        "mmap": f"import mmap\nm = mmap.mmap(-1, 64 * 1024**3)\nm[-1] = 1\n{OK}",
        "deep-recursion": f"import sys\nsys.setrecursionlimit(10**9)\ndef down(n):\n    return down(n + 1)\ndown(0)\n{OK}",
    },
    "exhaust_disk": {
        "big-file": f"with open('/tmp/big', 'wb') as f:\n    while True:\n        f.write(b'x' * 10**6)\n{OK}",
        "many-files": f"for i in range(100000):\n    open(f'/tmp/f{{{{i}}}}', 'w').close()\n{OK}",
        "dev-shm": f"open('/dev/shm/x', 'wb').write(b'x' * 10**6)\n{OK}",
        "home": f"import os\nopen(os.path.expanduser('~/x'), 'w').write('x')\n{OK}",
    },
    "exhaust_processes": {
        "fork-bomb": f"import os\nwhile True:\n    os.fork()\n{OK}",
        "thread-bomb": f"import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()\n{OK}",
    },
    "sockets": {
        "tcp-localhost": f"import socket\nsocket.create_connection(('127.0.0.1', {{port}}), timeout=1)\n{OK}",
        "tcp-internet": f"import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n{OK}",
        "dns": f"import socket\nsocket.getaddrinfo('example.com', 80)\n{OK}",
        "udp-localhost": f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(0.5)\ns.sendto(b'x', ('127.0.0.1', {{port}}))\ns.recv(1)\n{OK}",
        "unix-path": f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('{{unix}}')\n{OK}",
        "unix-abstract": f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0{{abstract}}')\n{OK}",
        "raw-socket": f"import _socket\n_socket.socket(_socket.AF_PACKET, _socket.SOCK_RAW)\n{OK}",
    },
}


def _program(body: str) -> str:
    """A bare attack becomes the body of ``double``; a whole program is taken as it is."""
    if "def double" in body:
        return body
    return "def double(x):\n" + "\n".join("    " + line for line in body.splitlines()) + "\n"


@pytest.fixture
def world(tmp_path, monkeypatch):
    """What an escape would touch: secrets in tmp and home, a folder to write into, listeners."""
    secret = uuid.uuid4().hex
    monkeypatch.setenv("MOCO_LIT_TEST_SECRET", secret)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(secret)
    home_secret = Path.home() / f".moco_lit_test_secret_{secret}"
    home_secret.write_text(secret)
    drop = tmp_path / "drop"
    drop.mkdir(mode=0o777)
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", tcp.getsockname()[1]))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "listen.sock"))
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0moco_lit_{secret}")
    listeners = (tcp, udp, unix, abstract)
    for listener in (tcp, unix, abstract):
        listener.listen()
    for listener in listeners:
        listener.setblocking(False)
    fields = {
        "secret": secret,
        "secret_file": str(secret_file),
        "home_secret": str(home_secret),
        "home": str(Path.home()),
        "drop": str(drop),
        "prefix": sys.prefix,
        "cwd": os.getcwd(),
        "tag": secret,
        "scorer": os.getpid(),
        "port": tcp.getsockname()[1],
        "unix": str(tmp_path / "listen.sock"),
        "abstract": f"moco_lit_{secret}",
    }
    yield fields
    try:
        for listener in listeners:  # nothing ever reached a listener
            with pytest.raises(BlockingIOError):
                listener.recv(1) if listener is udp else listener.accept()
        assert list(drop.iterdir()) == []
        assert secret_file.read_text() == secret and home_secret.read_text() == secret
        for folder in (sys.prefix, os.getcwd()):
            assert not (Path(folder) / f"escaped-{secret}").exists()
    finally:
        home_secret.unlink()
        for folder in (sys.prefix, os.getcwd()):
            (Path(folder) / f"escaped-{secret}").unlink(missing_ok=True)
        for listener in listeners:
            listener.close()


@pytest.mark.parametrize(
    "category, body",
    [pytest.param(c, b, id=f"{c}-{name}") for c, variants in CASES.items() for name, b in variants.items()],
)
def test_hostile_output_scores_zero_and_is_contained(category, body, world):
    timeout_s = 1 if category == "exhaust_cpu" else 2
    started = time.monotonic()
    result = run_python(_program(body.format(**world)), TEST, entry_point="double", timeout_s=timeout_s)
    assert not result.passed, result
    assert time.monotonic() - started < timeout_s + 5  # stopped by the limits, whatever it did


def test_after_the_attacks_a_correct_program_still_passes():
    assert run_python(GOOD, TEST, timeout_s=2).passed


def test_the_checker_gets_plain_data_and_helpers_from_the_solution():
    """Tests may call the prompt's helpers (HumanEval's poly, encode_cyclic) and read its constants."""
    code = (
        "import math\nLIMIT = 3\ndef poly(xs, x):\n    return sum(c * x**i for i, c in enumerate(xs))\n"
        "def find_zero(xs):\n    return -xs[0] / xs[1]\n"
        "def table(n):\n    return {(i, 'k'): [1.5, None, {b'z'}, frozenset({1})] for i in range(n)}\n"
    )
    test = (
        "def check(candidate):\n    assert math.fabs(poly([1, 2], candidate([1, 2]))) < 1e-9\n"
        "    assert table(LIMIT)[(2, 'k')] == [1.5, None, {b'z'}, frozenset({1})]\n"
        "    try:\n        candidate([1, 0])\n    except ZeroDivisionError:\n        pass\n"
        "    else:\n        raise AssertionError('the error did not come through')\n"
    )
    assert run_python(code, test, entry_point="find_zero", timeout_s=5).passed
    assert not run_python(code, test.replace("LIMIT)[(2", "LIMIT)[(3"), entry_point="find_zero").passed


def test_score_command_finishes_a_hostile_batch(tmp_path):
    """End to end: hostile outputs score 0, correct ones 1, and the command finishes."""
    attacks = [
        CASES["forge_verdict"]["exit-in-call"],
        CASES["kill_parent"]["kill-ppid"],
        CASES["exhaust_processes"]["fork-bomb"],
        CASES["forge_verdict"]["always-equal"],
        CASES["read_secrets"]["pid1-environ"],
    ]
    fields = {"secret": "x", "scorer": os.getpid()}
    outputs = [GOOD, *(_program(a.format(**fields)) for a in attacks), GOOD]
    benchmark = tmp_path / "tiny_coding.json"
    records = [
        {"id": str(i), "input": "Write double(x).", "test": TEST, "entry_point": "double"}
        for i in range(len(outputs))
    ]
    benchmark.write_text(json.dumps({"task_type": "coding", "dev": records[:1], "test": records}))
    predictions = tmp_path / "predictions.jsonl"
    lines = [json.dumps({"id": str(i), "output": f"```python\n{o}```"}) for i, o in enumerate(outputs)]
    predictions.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "moco_lit",
            "score",
            "--benchmark",
            str(benchmark),
            "--predictions",
            str(predictions),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["n"] == len(outputs)
    assert summary["mean"] == pytest.approx(2 / len(outputs))
