"""Differential tests: run MoCo's ``run_method`` and moco_lit on the same data with the same scripted models.

The pieces, in the order a test uses them:

* :class:`Task`: a tiny MoCo-format task (``{"name", "task_type", "dev", "test"}``) built in the
  test. MoCo reads it through a patched ``eval._load_task_json``; moco_lit reads the same JSON
  file as ``--data.benchmark``.
* :class:`Script`: the scripted models. A *policy* ``(Ask) -> content`` decides what a model says
  from what it is shown: which model it is, which example (found by matching the task's known
  question strings in the prompt), and which earlier replies the prompt quotes (found by matching
  the replies the script itself gave). Template wording is never read, since moco_lit's prompts are
  its own. Each reply is ``content [model xxxxxx]``: the tag names its author and hashes everything
  the policy saw, so a later prompt that quotes it is recognised and two systems that asked the
  same things get byte-identical replies. Every call is logged as a :class:`Call`.
* :func:`run_moco` / :func:`run_moco_lit`: one run of each system with its own fresh
  :class:`Script` over the same policy. MoCo's generation entry points (``distributed_generation``,
  ``batch_generate_text*``, the ``transformers`` classes ``single_model`` loads directly) answer
  from the script; its working directory is a temporary folder, so its log lands there, not in
  site-packages. moco_lit runs through the real ``test`` command with ``callable:`` collaborators
  (:data:`MODELS`) that dispatch to the active script.
* :func:`assert_same_calls`, :func:`assert_same` and :func:`diff`: the comparison, with a readable
  diff on mismatch.

Where MoCo draws at random (a tie, reviewers), the test injects the same draws into both systems
rather than aligning two random streams.

moco_lit's generation engine asks a model once for identical greedy requests within one call (they
share a cache key), where MoCo asks twice: a method that asks the same greedy question twice in
one round would show fewer moco_lit calls. None of the methods tested here does.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import os
import sys
import types
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# every differential test imports this harness (or MoCo itself): without MoCo each test module is
# reported as skipped with this one line
pytest.importorskip(
    "model_collaboration",
    reason="MoCo (modelco==1.1.2) is not installed: differential tests against it skipped",
)

MODELS = ("alpha", "beta", "gamma", "delta", "epsilon")
"""Names of the scripted models; moco_lit names them ``callable:tests.parity.moco_harness.NAME``."""


# -- the task ---------------------------------------------------------------------------------


@dataclass
class Task:
    """A MoCo-format task. Questions must be unique and none a substring of another's."""

    name: str
    task_type: str
    dev: list[dict]
    test: list[dict]

    def __post_init__(self) -> None:
        questions = [self.question(r) for r in self.dev + self.test]
        for q in questions:
            clashes = [other for other in questions if other != q and q in other]
            assert not clashes and questions.count(q) == 1, f"fixture question {q!r} is not unique"

    def question(self, record: dict) -> str:
        return record["question"] if self.task_type == "multiple_choice" else record["input"]

    def as_json(self) -> dict:
        return {"name": self.name, "task_type": self.task_type, "dev": self.dev, "test": self.test}

    def write(self, folder: Path) -> Path:
        path = folder / f"{self.name}.json"
        path.write_text(json.dumps(self.as_json()))
        return path

    def find(self, prompt: str) -> tuple[str, dict]:
        """(split, record) of the one question the prompt contains."""
        found = [(s, r) for s in ("dev", "test") for r in getattr(self, s) if self.question(r) in prompt]
        assert len(found) == 1, f"expected one known question in the prompt, found {len(found)}:\n{prompt}"
        return found[0]


def exact_match_task(
    dev: Sequence[tuple[str, str]], test: Sequence[tuple[str, str]], name: str = "parity"
) -> Task:
    """An exact_match task from (question, answer) pairs; ids are ``d0..`` and ``t0..``."""

    def records(pairs, prefix):
        return [{"id": f"{prefix}{i}", "input": q, "output": a} for i, (q, a) in enumerate(pairs)]

    return Task(name, "exact_match", records(dev, "d"), records(test, "t"))


# General-knowledge multiple-choice questions (question, choices, answer) that differential tests
# slice into dev and test splits
CHOICE_QUESTIONS = [
    ("Which colour is grass?", {"A": "green", "B": "red", "C": "blue", "D": "black"}, "A"),
    ("Which number is even?", {"A": "three", "B": "four", "C": "five", "D": "seven"}, "B"),
    ("Which animal barks?", {"A": "cat", "B": "cow", "C": "dog", "D": "owl"}, "C"),
    ("Which ocean is the largest?", {"A": "Indian", "B": "Arctic", "C": "Atlantic", "D": "Pacific"}, "D"),
    ("Which sense uses the nose?", {"A": "smell", "B": "sight", "C": "touch", "D": "taste"}, "A"),
    ("Which shape has three sides?", {"A": "square", "B": "triangle", "C": "circle", "D": "hexagon"}, "B"),
    ("Which metal is liquid at room temperature?", {"A": "mercury", "B": "iron", "C": "gold", "D": "tin"}, "A"),
    ("Which gas do plants take in?", {"A": "oxygen", "B": "helium", "C": "carbon dioxide", "D": "neon"}, "C"),
    ("Which month has the fewest days?", {"A": "May", "B": "June", "C": "July", "D": "February"}, "D"),
]  # fmt: skip

ADDITIONS = [
    (f"What is {a} plus {b}?", str(a + b))
    for a, b in ((2, 3), (4, 4), (6, 1), (9, 9), (5, 7), (8, 3), (7, 7), (1, 9))
]
"""(question, answer) pairs many exact_match parity tasks take their dev split from (the first N)."""
LARGER_ADDITIONS = [
    (f"What is {a} plus {b}?", str(a + b)) for a, b in ((10, 11), (20, 22), (30, 33), (40, 44))
]
"""Their test split (the first N)."""


def multiple_choice_task(
    dev: Sequence[tuple[str, dict, str]], test: Sequence[tuple[str, dict, str]], name: str = "parity_mc"
) -> Task:
    """A multiple_choice task from (question, choices, answer letter) triples."""

    def records(items, prefix):
        return [
            {"id": f"{prefix}{i}", "question": q, "choices": choices, "answer": answer}
            for i, (q, choices, answer) in enumerate(items)
        ]

    return Task(name, "multiple_choice", records(dev, "d"), records(test, "t"))


# -- the scripted models ----------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """An earlier reply that a prompt quotes: who wrote it, what it said, its tag."""

    author: str
    content: str
    tag: str


@dataclass(frozen=True)
class Ask:
    """What a policy is shown: who is asked, about which example, quoting which replies."""

    model: str
    split: str
    example: str
    record: dict = field(hash=False, compare=False)
    quotes: tuple[Quote, ...]
    """The quoted replies, sorted by tag (the same order whatever order a prompt lists them in)."""
    in_order: tuple[Quote, ...]
    """The same replies in the order the prompt shows them (for "first or second?" judges)."""
    repeat: int
    """How many identical asks came before (0 the first time): a sample index for sampling."""
    prompt: str = field(default="", compare=False, repr=False)
    """The prompt itself: look in it only for strings the test supplied to both systems (model
    descriptions, say), never for template wording."""

    @property
    def quoted_contents(self) -> list[str]:
        return [q.content for q in self.quotes]

    @property
    def own(self) -> list[Quote]:
        return [q for q in self.quotes if q.author == self.model]

    @property
    def others(self) -> list[Quote]:
        return [q for q in self.quotes if q.author != self.model]


@dataclass(frozen=True)
class Call:
    """One logged model call: phase (the split), model, example, and the tags of the quoted replies."""

    split: str
    model: str
    example: str
    quoted: tuple[str, ...]

    def __str__(self) -> str:
        quoted = ", ".join(self.quoted) if self.quoted else "-"
        return f"{self.split:4} {self.model:7} {self.example:4} quotes: {quoted}"


Policy = Callable[[Ask], "str | tuple[str, float]"]
"""What a model says; ``(content, confidence)`` also gives the confidence a scored generation
reports (MoCo's per-step scores, moco_lit's mean token probability), 1.0 when not given."""

TAG_LETTERS = "cdfghjklmnpqrstvwxz"
"""A reply's tag is spelled without digits (routers read numbers), vowels (option texts have one)
or the letters A and B (pairwise judges read them)."""


class Script:
    """Scripted models for one run of one system: answers by ``policy``, logs every call."""

    def __init__(self, task: Task, policy: Policy) -> None:
        self.task = task
        self.policy = policy
        self.calls: list[Call] = []
        self.replies: dict[str, Quote] = {}  # reply text -> what it was
        self.scored_budgets: list[int | None] = []  # MoCo: max_response_length of scored calls
        self._seen: Counter = Counter()

    def __call__(self, model: str, prompt: str) -> str:
        return self.respond(model, prompt)[0]

    def respond(self, model: str, prompt: str) -> tuple[str, float | None]:
        """The reply and the confidence the policy gave with it (None when it gave none)."""
        split, record = self.task.find(prompt)
        # longest first, so a reply that contains another is not also counted as that one
        found, rest = [], prompt
        for text in sorted(self.replies, key=len, reverse=True):
            if text in rest:
                found.append((prompt.index(text), self.replies[text]))
                rest = rest.replace(text, "")
        in_order = tuple(quote for _, quote in sorted(found, key=lambda f: f[0]))
        quotes = sorted(in_order, key=lambda q: q.tag)
        key = (model, split, record["id"], tuple(q.tag for q in quotes))
        repeat = self._seen[key]
        self._seen[key] += 1
        ask = Ask(model, split, record["id"], record, tuple(quotes), in_order, repeat, prompt)
        content = self.policy(ask)
        content, confidence = content if isinstance(content, tuple) else (content, None)
        digest = int(hashlib.sha256(repr((key, repeat, content)).encode()).hexdigest(), 16)
        tag = f"{model} " + "".join(
            TAG_LETTERS[digest // len(TAG_LETTERS) ** k % len(TAG_LETTERS)] for k in range(6)
        )
        reply = f"{content} [{tag}]"
        self.replies[reply] = Quote(model, content, tag)
        self.calls.append(Call(split, model, record["id"], key[3]))
        return reply, confidence


_ACTIVE: list[Script] = []


def _dispatch(model: str) -> Callable[[str], str]:
    def respond(rendered: str) -> str | tuple[str, float]:
        assert _ACTIVE, "no scripted run is active"
        reply, confidence = _ACTIVE[-1].respond(model, rendered)
        return reply if confidence is None else (reply, confidence)

    respond.__name__ = model
    return respond


alpha, beta, gamma, delta, epsilon = (_dispatch(name) for name in MODELS)


def collaborators(models: Sequence[str]) -> str:
    """moco_lit's ``--model.collaborators`` value for these scripted models."""
    return "[" + ", ".join(f"callable:tests.parity.moco_harness.{m}" for m in models) + "]"


# -- running MoCo -----------------------------------------------------------------------------


@dataclass
class MocoRun:
    log: dict
    calls: list[Call]
    script: Script

    @property
    def outputs(self) -> list:
        return [entry["output"] for entry in self.log["logs"]]

    @property
    def score(self) -> float:
        return self.log["avg_test_score"]


def _fake_generation(script: Script) -> dict[str, Callable]:
    def batch(model_name, gpu_id, input_list, *args, **kwargs):
        return [script(model_name, prompt) for prompt in input_list]

    def distributed(list_of_model_name, list_of_input_list, list_of_gpu_id, *args, **kwargs):
        return [batch(m, None, inputs) for m, inputs in zip(list_of_model_name, list_of_input_list)]

    def with_score(model_name, gpu_id, input_list, *args, **kwargs):
        script.scored_budgets.append(kwargs.get("max_response_length", args[0] if args else None))
        replies = [script.respond(model_name, prompt) for prompt in input_list]
        # one step whose score is the confidence: MoCo's mean over steps is then that confidence
        return [text for text, _ in replies], [[1.0 if c is None else c] for _, c in replies]

    return {
        "distributed_generation": distributed,
        "distributed_generation_adapter_aware": distributed,
        "batch_generate_text": batch,
        "batch_generate_text_adapter_aware": batch,
        "batch_generate_text_with_score": with_score,
    }


class _FakeTokenizer:
    """Stands in for ``AutoTokenizer`` where MoCo loads a model itself: ids index a text table."""

    eos_token = "</s>"
    eos_token_id = 0

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def apply_chat_template(self, *args, **kwargs):
        raise ValueError("no chat template: MoCo falls back to the raw prompt")

    def __call__(self, prompts, **kwargs):
        import torch

        ids = []
        for prompt in prompts:
            self.texts.append(prompt)
            ids.append([len(self.texts) - 1])
        return _Encoding(input_ids=torch.tensor(ids))

    def batch_decode(self, ids, **kwargs) -> list[str]:
        return [self.texts[int(row[0])] for row in ids]


class _Encoding(dict):
    def __getattr__(self, name):
        return self[name]

    def to(self, device):
        return self


class _FakeModel:
    device = "cpu"

    def __init__(self, name: str, texts: list[str], script: Script) -> None:
        self.name, self.texts, self.script = name, texts, script

    def generate(self, input_ids, **kwargs):
        import torch

        replies = []
        for row in input_ids:
            self.texts.append(self.script(self.name, self.texts[int(row[0])]))
            replies.append([len(self.texts) - 1])
        return torch.cat([input_ids, torch.tensor(replies)], dim=1)


def _fake_transformers(script: Script) -> tuple[Any, Any]:
    texts: list[str] = []

    class Models:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            return _FakeModel(name, texts, script)

    class Tokenizers:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            return _FakeTokenizer(texts)

    return Models, Tokenizers


TRAINING_ONLY = ("trl",)
"""Packages MoCo's method modules import at the top but use only to train; the inference paths
under test never touch them, so a stub stands in when one is not installed."""


def _import_moco_method(monkeypatch: pytest.MonkeyPatch, method: str) -> Any:
    for name in TRAINING_ONLY:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.__getattr__ = lambda attr, name=name: _unavailable(name, attr)
            monkeypatch.setitem(sys.modules, name, stub)
    return importlib.import_module(f"model_collaboration.method.{method}")


def _unavailable(package: str, attr: str) -> Any:
    if attr.startswith("__"):
        raise AttributeError(attr)

    def fail(*args, **kwargs):
        raise RuntimeError(f"{package}.{attr} is not installed: this differential test must not train")

    return fail


def run_moco(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    method: str,
    task: Task,
    models: Sequence[str],
    policy: Policy,
    hyperparameters: dict | None = None,
    patches: dict[str, Any] | None = None,
) -> MocoRun:
    """MoCo's ``model_collaboration.method.<method>.run_method`` on ``task`` with scripted models.

    ``patches`` maps ``attribute`` of the method module to a replacement (injected draws).
    """
    from model_collaboration.data import eval as moco_eval
    from model_collaboration.method import distributed_generation

    module = _import_moco_method(monkeypatch, method)
    script = Script(task, policy)
    data = task.as_json()
    monkeypatch.setattr(moco_eval, "_load_task_json", lambda name: copy.deepcopy(data))
    monkeypatch.setattr(moco_eval, "_ensure_dataset", lambda name: None)
    for name, fake in _fake_generation(script).items():
        monkeypatch.setattr(distributed_generation, name, fake)
        if callable(getattr(module, name, None)):  # a method that imported the function itself
            monkeypatch.setattr(module, name, fake)
    if hasattr(module, "AutoModelForCausalLM"):
        fake_models, fake_tokenizers = _fake_transformers(script)
        monkeypatch.setattr(module, "AutoModelForCausalLM", fake_models)
        monkeypatch.setattr(module, "AutoTokenizer", fake_tokenizers)
    for name, value in (patches or {}).items():
        monkeypatch.setattr(module, name, value)
    workdir = tmp_path / "moco"
    (workdir / "model_collaboration" / "logs").mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(workdir)
    real_chdir = os.chdir
    # run_method changes into its package's parent folder and writes logs/ there: keep it in tmp
    monkeypatch.setattr(os, "chdir", lambda path: real_chdir(workdir))
    hyperparameters = {"ratio": 1.0, **(hyperparameters or {})}
    module.run_method(task.name, task.task_type, [0], list(models), hyperparameters)
    monkeypatch.setattr(os, "chdir", real_chdir)
    logs = sorted((workdir / "model_collaboration" / "logs").glob("*.json"), key=os.path.getmtime)
    assert logs, f"MoCo's {method} wrote no log"
    log = json.loads(logs[-1].read_text())
    for path in logs:
        path.unlink()
    return MocoRun(log, list(script.calls), script)


# -- running moco_lit -------------------------------------------------------------------------


@dataclass
class LitRun:
    records: list[dict]
    metrics: dict
    calls: list[Call]
    script: Script
    module: Any

    @property
    def outputs(self) -> list[str]:
        return [r["output"] for r in self.records]

    @property
    def score(self) -> float:
        return self.metrics["score"]


def run_moco_lit(
    run_cli,
    tmp_path: Path,
    method: str,
    task: Task,
    models: Sequence[str],
    policy: Policy,
    *args: str,
) -> LitRun:
    """moco_lit's ``test`` command for ``method`` on ``task`` with the scripted models (greedy, no cache)."""
    script = Script(task, policy)
    path = task.write(tmp_path)
    _ACTIVE.append(script)
    try:
        code, cli = run_cli(
            "test",
            "--model",
            method,
            "--model.collaborators",
            collaborators(models),
            "--model.temperature",
            "0",
            "--model.top_p",
            "1.0",
            *args,
            "--data.benchmark",
            str(path),
            "--cache",
            "false",
            "--wandb",
            "false",
            "--run_dir",
            str(tmp_path / "lit_runs"),
        )
    finally:
        _ACTIVE.remove(script)
    assert code == 0
    folder = cli.model.runtime.run_folder.path
    metrics = json.loads((folder / "metrics.json").read_text())
    return LitRun(read_records(folder, task), metrics, list(script.calls), script, cli.model)


def read_records(folder: Path, task: Task) -> list[dict]:
    """A finished run folder's test records, in the order of the task's test split (MoCo's order)."""
    records = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    order = {r["id"]: i for i, r in enumerate(task.test)}
    return sorted(records, key=lambda r: order[r["id"]])


@dataclass
class FitTestRun:
    fitted: Any
    tested: Any
    records: list[dict]
    folder: Path


def fit_then_test(run_cli, task: Task, script: Script, common: Sequence[str], *fit_args: str) -> FitTestRun:
    """moco_lit's ``fit`` then ``test`` from its checkpoint with ``script`` answering, as a trained
    method runs; ``common`` are both commands' arguments, ``fit_args`` the fit's own."""
    _ACTIVE.append(script)
    try:
        _, fitted = run_cli("fit", *common, *fit_args)
        checkpoint = fitted.trainer.checkpoint_callback.best_model_path
        _, tested = run_cli("test", *common, "--ckpt_path", checkpoint)
    finally:
        _ACTIVE.remove(script)
    folder = tested.model.runtime.run_folder.path
    return FitTestRun(fitted, tested, read_records(folder, task), folder)


# -- comparing --------------------------------------------------------------------------------


MAX_DIFF_LINES = 30


def diff(title: str, moco: Sequence, lit: Sequence) -> str:
    """A readable side-by-side of two sequences (only the differing lines, with their index)."""
    lines = [f"{title}: MoCo has {len(moco)}, moco_lit has {len(lit)}"]
    for i in range(max(len(moco), len(lit))):
        left = moco[i] if i < len(moco) else "—"
        right = lit[i] if i < len(lit) else "—"
        if left != right:
            lines.append(f"  [{i}] MoCo:     {left}\n  [{i}] moco_lit: {right}")
    return "\n".join(lines)


def assert_same_calls(moco: Sequence[Call], lit: Sequence[Call]) -> None:
    """Same multiset of calls: which model, about which example, in which phase, quoting what, how often."""
    moco_counts, lit_counts = Counter(moco), Counter(lit)
    if moco_counts == lit_counts:
        return
    differing = [
        c for c in sorted(set(moco_counts) | set(lit_counts), key=str) if moco_counts[c] != lit_counts[c]
    ]
    lines = [f"the two systems made different model calls ({len(differing)} differ; count: call)"]
    lines += [f"  MoCo {moco_counts[c]} / moco_lit {lit_counts[c]}: {c}" for c in differing[:MAX_DIFF_LINES]]
    raise AssertionError("\n".join(lines))


def assert_same(title: str, moco: Sequence, lit: Sequence) -> None:
    assert list(moco) == list(lit), diff(title, list(moco), list(lit))


def boxed(answer: str) -> str:
    return f"\\boxed{{{answer}}}"
