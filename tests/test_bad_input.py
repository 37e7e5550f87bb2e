"""Bad input through the real entry point: one ``error:`` line, exit code 2, earlier results intact.

Table-driven over malformed recipes, unknown names, broken model folders, malformed data files,
malformed predictions files and collaborator lists a method cannot use. Every Lightning case runs
with ``--run_id earlier`` into a run folder that already holds a finished run of the same method
on the same benchmark, so a failure that wrote anything there would show. Cases already in
tests/test_cli.py (unknown benchmark/method/command, ``--data.limit many``, /no/such/model, too few
collaborators, a torn predictions line) are not repeated. Cases marked xfail name the core file
whose fix they wait for; they turn into failures (strict) once it lands.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from moco_lit import methods
from moco_lit.cli import main
from tests.conftest import collaborators_arg

ORACLE = "[callable:tests.scripted.oracle]"
EARLIER = "earlier"


@dataclass
class Inputs:
    """Paths every case may use: a scratch folder, tiny models, a finished run folder."""

    root: Path
    models: list[str]
    other_vocab: str
    run_dir: Path

    def file(self, name: str, text: str | bytes) -> str:
        path = self.root / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return str(path)

    def data(self, name: str, test: list, task_type: str = "exact_match") -> str:
        return self.file(name, json.dumps({"task_type": task_type, "dev": test[:1], "test": test}))

    def model_copy(self, name: str, broken: Callable[[Path], None]) -> str:
        folder = Path(shutil.copytree(self.models[0], self.root / name))
        broken(folder)
        return str(folder)


def _row(i: int) -> dict:
    return {"id": i, "input": f"What is {i} times 2?", "output": str(2 * i)}


def _lightning(
    inputs: Inputs,
    *args: str,
    model: str = "single_model",
    collaborators: str = ORACLE,
    limit: int = 2,
    run_id: str = EARLIER,
) -> list[str]:
    head = ["test", "--model", model] if model else ["test"]
    if collaborators:
        head += ["--model.collaborators", collaborators]
    return [*head, *args, "--data.limit", str(limit), "--run_dir", str(inputs.run_dir), "--run_id", run_id]


def _resume_over(inputs: Inputs, line: str) -> list[str]:
    """Resume a run folder whose second record is ``line`` (the first is a good one)."""
    folder = inputs.run_dir / "quickstart" / "single_model" / "damaged"
    folder.mkdir(parents=True)
    good = {"id": "0", "output": "0", "score": 1.0, "calls": 1, "tokens": 5, "new_tokens": 1}
    (folder / "predictions.jsonl").write_text(json.dumps(good) + "\n" + line + "\n")
    return _lightning(inputs, run_id="damaged")


def _score(inputs: Inputs, predictions: str, *args: str) -> list[str]:
    benchmark = inputs.data("scored.json", [_row(i) for i in (1, 2, 3)])
    return ["score", "--benchmark", benchmark, "--predictions", predictions, *args]


def _zip(path: Path) -> str:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "a zip file, not a checkpoint")
    return str(path)


def _checkpoint_of(inputs: Inputs, class_path: str) -> str:
    """A checkpoint file (a torch zip) whose saved hyperparameters name ``class_path``."""
    path = inputs.root / "other_method.ckpt"
    torch.save({"hyper_parameters": {"_class_path": class_path, "collaborators": [ORACLE]}}, path)
    return str(path)


def _recipe(inputs: Inputs, text: str) -> list[str]:
    return ["test", "-c", inputs.file("recipe.yaml", text), "--run_dir", str(inputs.run_dir)]


RECIPE_HEAD = "model:\n  class_path: moco_lit.methods.single_model.SingleModel\n  init_args:\n"
ORACLE_LINE = "    collaborators: [callable:tests.scripted.oracle]\n"
NO_CUDA = not torch.cuda.is_available()


def _xfail(core_file: str, fix: str):
    return pytest.mark.xfail(strict=True, reason=f"needs a fix in {core_file}: {fix}")


# (name, argv builder, a fragment the error line must contain)
CASES: list = [
    # -- recipes -------------------------------------------------------------------------------
    ("recipe: YAML syntax error", lambda i: _recipe(i, "model: [unclosed\n"), "parsing config"),
    (
        "recipe: unknown init argument",
        lambda i: _recipe(i, RECIPE_HEAD + ORACLE_LINE + "    no_such_knob: 3\n"),
        "no_such_knob",
    ),
    ("recipe: misspelt section", lambda i: _recipe(i, "modle:\n  class_path: x\n"), "modle"),
    (
        "recipe: wrong type",
        lambda i: _recipe(i, RECIPE_HEAD + ORACLE_LINE + "    max_new_tokens: lots\n"),
        "max_new_tokens",
    ),
    (
        "recipe: collaborators not a list",
        lambda i: _recipe(i, RECIPE_HEAD + "    collaborators: callable:tests.scripted.oracle\n"),
        "collaborators",
    ),
    ("recipe: not a mapping", lambda i: _recipe(i, "- just\n- a list\n"), "Unexpected config"),
    ("recipe: missing file", lambda i: ["test", "-c", str(i.root / "nope.yaml")], "nope.yaml"),
    # -- unknown names and values ------------------------------------------------------------------
    (
        "model short name not fetched",
        lambda i: _lightning(i, collaborators="[smollm2-135m-instruct]"),
        "models fetch smollm2-135m-instruct",
    ),
    ("unknown strategy", lambda i: _lightning(i, "--trainer.strategy", "warp"), "warp"),
    ("devices not a number", lambda i: _lightning(i, "--trainer.devices", "many"), "devices"),
    (
        "collaborator callable not importable",
        lambda i: _lightning(i, collaborators="[callable:tests.no_such_module.answer]"),
        "tests.no_such_module",
    ),
    (
        "collaborator dict with an unknown key",
        lambda i: _lightning(i, collaborators="[{path: a, colour: red}]"),
        "colour",
    ),
    # -- model folders -------------------------------------------------------------------------
    (
        "model folder without files",
        lambda i: _lightning(i, collaborators=f"[{i.model_copy('empty', _remove_all)}]"),
        "cannot load model",
    ),
    (
        "model folder without weights",
        lambda i: _lightning(i, collaborators=f"[{i.model_copy('noweights', _remove_weights)}]"),
        "model.safetensors",
    ),
    (
        "model config is not JSON",
        lambda i: _lightning(i, collaborators=f"[{i.model_copy('badconfig', _garble('config.json'))}]"),
        "config",
    ),
    (
        "tokenizer.json is garbage",
        lambda i: _lightning(i, collaborators=f"[{i.model_copy('badtok', _garble('tokenizer.json'))}]"),
        "cannot load model",
    ),
    pytest.param(
        "weights file is garbage",
        lambda i: _lightning(
            i, collaborators=f"[{i.model_copy('badweights', _garble('model.safetensors'))}]"
        ),
        "cannot load model",
    ),
    (
        "adapter folder missing",
        lambda i: _lightning(i, collaborators=f"[{i.models[0]}+{i.root / 'no_adapter'}]"),
        "adapter",
    ),
    # -- data files ----------------------------------------------------------------------------
    (
        "data: record without id",
        lambda i: _lightning(
            i, "--data.benchmark", i.data("noid.json", [_row(1), {"input": "x", "output": "y"}])
        ),
        'missing "id"',
    ),
    (
        "data: duplicate id",
        lambda i: _lightning(i, "--data.benchmark", i.data("dup.json", [_row(1), _row(1)])),
        "duplicate id",
    ),
    (
        "data: task field missing",
        lambda i: _lightning(i, "--data.benchmark", i.data("nofield.json", [{"id": 3, "input": "x"}])),
        "lacks 'output'",
    ),
    (
        "data: task field of the wrong type",
        lambda i: _lightning(
            i, "--data.benchmark", i.data("intinput.json", [{"id": 3, "input": 5, "output": "y"}])
        ),
        "must be a string",
    ),
    (
        "data: unknown task type",
        lambda i: _lightning(i, "--data.benchmark", i.data("task.json", [_row(1)], task_type="telepathy")),
        "telepathy",
    ),
    (
        "data: answer not among the choices",
        lambda i: _lightning(
            i,
            "--data.benchmark",
            i.data(
                "mc.json",
                [{"id": 1, "question": "q", "choices": {"A": "a"}, "answer": "Z"}],
                "multiple_choice",
            ),
        ),
        "not one of the choices",
    ),
    (
        "data: JSONL line without split",
        lambda i: _lightning(i, "--data.benchmark", i.file("nosplit.jsonl", json.dumps(_row(1)) + "\n")),
        '"split"',
    ),
    (
        "data: JSON file not UTF-8",
        lambda i: _lightning(
            i, "--data.benchmark", i.file("latin1.json", '{"task_type": "é"}'.encode("latin-1"))
        ),
        "not UTF-8",
    ),
    (
        "data: JSONL file not UTF-8",
        lambda i: _lightning(i, "--data.benchmark", i.file("latin1.jsonl", b'{"id": "\xe9"}\n')),
        "not UTF-8",
    ),
    ("data: negative num_workers", lambda i: _lightning(i, "--data.num_workers", "-1"), "num_workers"),
    (
        "generation_batch_size 0",
        lambda i: _lightning(i, "--model.generation_batch_size", "0"),
        "generation_batch_size must be >= 1",
    ),
    # -- project commands' files ---------------------------------------------------------------
    (
        "convert: config not UTF-8",
        lambda i: ["convert", i.file("c.json", b"\xff\xfe{}")],
        "cannot read MoCo config",
    ),
    (
        "sweep: file not UTF-8",
        lambda i: ["sweep", "-c", i.file("s.yaml", b"\xff\xfe: x")],
        "cannot read the sweep",
    ),
    (
        "sweep: YAML syntax error",
        lambda i: ["sweep", "-c", i.file("s.yaml", "methods: [unclosed\n")],
        "cannot read the sweep",
    ),
    ("sweep: not a mapping", lambda i: ["sweep", "-c", i.file("s.yaml", "- a\n- b\n")], "is a mapping"),
    # -- predictions files (score) -------------------------------------------------------------
    ("predictions: line without id", lambda i: _score(i, i.file("p.jsonl", '{"output": "2"}\n')), '"id"'),
    ("predictions: line is not an object", lambda i: _score(i, i.file("p.jsonl", "[1, 2]\n")), "object"),
    ("predictions: line without output", lambda i: _score(i, i.file("p.jsonl", '{"id": 1}\n')), '"output"'),
    (
        "predictions: id not in the benchmark",
        lambda i: _score(i, i.file("p.jsonl", '{"id": 99, "output": "2"}\n')),
        "'99'",
    ),
    (
        "predictions: duplicate id",
        lambda i: _score(i, i.file("p.jsonl", '{"id": 1, "output": "2"}\n{"id": 1, "output": "3"}\n')),
        "duplicate id",
    ),
    ("predictions: empty file", lambda i: _score(i, i.file("p.jsonl", "")), "no records"),
    (
        "predictions: not UTF-8",
        lambda i: _score(i, i.file("p.jsonl", b"\xff\xfe\x00garbage\n")),
        "cannot read",
    ),
    pytest.param(
        "predictions: bad --split choice",
        lambda i: _score(i, i.file("p.jsonl", '{"id": 1, "output": "2"}\n'), "--split", "train"),
        "train",
    ),
    # -- run-level options ---------------------------------------------------------------------
    (
        "run_dir below a file",
        lambda i: [*_lightning(i)[:-4], "--run_dir", i.file("plain.txt", "x") + "/runs"],
        "run folder",
    ),
    ("cache_path is a folder", lambda i: _lightning(i, "--cache_path", str(i.root)), "is a folder"),
    (
        "cache_path is some other file",
        lambda i: _lightning(i, "--cache_path", i.file("notes.txt", "not a cache\n" * 50)),
        "is not a generation cache",
    ),
    (
        "ckpt_path is a zip but no checkpoint",
        lambda i: _lightning(i, "--ckpt_path", _zip(i.root / "other.ckpt")),
        "cannot be read as a checkpoint",
    ),
    ("run_id climbs out of run_dir", lambda i: _lightning(i, run_id="../escaped"), "plain folder name"),
    ("run_id is a path", lambda i: _lightning(i, run_id="a/b"), "plain folder name"),
    ("no test examples", lambda i: _lightning(i, limit=0), "no examples"),
    (
        "resume: a NaN score read back",
        lambda i: _resume_over(
            i, '{"id": "1", "output": "2", "score": NaN, "calls": 1, "tokens": 5, "new_tokens": 1}'
        ),
        "line 2",
    ),
    (
        "resume: a record without its counts",
        lambda i: _resume_over(i, '{"id": "1", "output": "2", "score": 1.0}'),
        '"calls"',
    ),
    (
        "resume: a corrupt line before the last",
        lambda i: _resume_over(i, '{"id": "1", "outp\n{"id": "2", "output": "4"}'),
        "line 2 is not valid JSON",
    ),
    pytest.param(
        "ckpt_path does not exist",
        lambda i: _lightning(i, "--ckpt_path", str(i.root / "missing.ckpt")),
        "missing.ckpt",
    ),
    pytest.param(
        "ckpt_path is not a checkpoint",
        lambda i: _lightning(i, "--ckpt_path", i.file("fake.ckpt", "not a checkpoint")),
        "fake.ckpt",
    ),
    (
        "ckpt_path of another method",
        lambda i: _lightning(
            i, "--ckpt_path", _checkpoint_of(i, "moco_lit.methods.text.majority_vote.MajorityVote")
        ),
        "written by a fit of MajorityVote, not SingleModel",
    ),
    pytest.param(
        "accelerator gpu without CUDA",
        lambda i: _lightning(i, "--trainer.accelerator", "gpu"),
        "gpu",
        marks=[
            pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here"),
        ],
    ),
    # -- collaborator lists a method cannot use -------------------------------------------------
    (
        "logit_contrastive over different vocabularies",
        lambda i: _lightning(
            i, model="logit_contrastive", collaborators=collaborators_arg([*i.models[:2], i.other_vocab])
        ),
        "different vocabularies",
    ),
    (
        "greedy_soup over different architectures",
        lambda i: _lightning(
            i, model="greedy_soup", collaborators=collaborators_arg([i.models[0], i.other_vocab])
        ),
        "cannot merge",
    ),
    (
        "logit_fusion over scripted collaborators",
        lambda i: _lightning(
            i,
            model="logit_fusion",
            collaborators="[callable:tests.scripted.oracle, callable:tests.scripted.wrong]",
        ),
        "needs language models",
    ),
    (
        "model_swarms over scripted collaborators",
        lambda i: _lightning(
            i,
            model="model_swarms",
            collaborators="[callable:tests.scripted.oracle, callable:tests.scripted.wrong]",
        ),
        "no weights",
    ),
    (
        "mentor_collab with three models",
        lambda i: _lightning(i, model="mentor_collab", collaborators=collaborators_arg(i.models)),
        "exactly 2",
    ),
]


def _remove_all(folder: Path) -> None:
    for file in folder.iterdir():
        file.unlink()


def _remove_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def _garble(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text("garbage{{ not what it should be")


def _with_ids(cases: list) -> list:
    """Every case as a ``pytest.param`` named by its description (keeping its marks)."""
    return [
        pytest.param(*c.values, marks=c.marks, id=c.values[0])
        if hasattr(c, "values")
        else pytest.param(*c, id=c[0])
        for c in cases
    ]


@pytest.fixture(scope="module")
def truly_other_vocab(tmp_path_factory) -> str:
    """A tiny Llama with 280 tokens (the shared ``other_vocab_model`` ends up with tiny_models' 306)."""
    from moco_lit.quickstart import TinyModelConfig, build_tiny_llama, build_tokenizer, prompt_wording_corpus

    folder = tmp_path_factory.mktemp("vocab280") / "tiny_other"
    tokenizer = build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=280)
    config = TinyModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, max_positions=512)
    build_tiny_llama(tokenizer, config, seed=7).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _earlier_results(run_dir: Path) -> dict[Path, str]:
    """A finished run for every method used here, in the folder ``--run_id earlier`` points at.

    Returns the SHA-256 of every file under ``run_dir`` (config.yaml included)."""
    record = {"id": "0", "output": "8", "score": 1.0, "calls": 1, "tokens": 9, "new_tokens": 1}
    for method in ("single_model", "logit_contrastive", "greedy_soup", "logit_fusion", "model_swarms"):
        for benchmark in ("quickstart", "noid", "dup", "nofield", "intinput", "task", "mc", "nosplit"):
            folder = run_dir / benchmark / method / EARLIER
            folder.mkdir(parents=True)
            (folder / "config.yaml").write_text(f"model: {method}\nrun_id: {EARLIER}\n")
            (folder / "predictions.jsonl").write_text(json.dumps(record) + "\n")
            (folder / "metrics.json").write_text(json.dumps({"score": 1.0, "n": 1}) + "\n")
    return _hashes(run_dir)


def _hashes(run_dir: Path) -> dict[Path, str]:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in run_dir.rglob("*")
        if p.is_file() and EARLIER in p.parts
    }


@pytest.mark.parametrize("name, build, fragment", _with_ids(CASES))
def test_bad_input_gives_one_error_line_and_keeps_earlier_results(
    name, build, fragment, tmp_path, tiny_models, truly_other_vocab, capsys
):
    if "mentor_collab" in name and "mentor_collab" not in methods.names():
        pytest.skip("mentor_collab is not in this tree yet")
    inputs = Inputs(tmp_path / "inputs", tiny_models, truly_other_vocab, tmp_path / "runs")
    inputs.root.mkdir()
    earlier = _earlier_results(inputs.run_dir)
    argv = build(inputs)
    predictions = Path(argv[argv.index("--predictions") + 1]) if "--predictions" in argv else None
    before = predictions.read_bytes() if predictions else b""
    scores_file = predictions.with_name("p.scores.jsonl") if predictions else None
    if scores_file:
        scores_file.write_text('{"id": "1", "score": 1.0}\n')  # an earlier `score` run's output

    try:
        code = main([*argv, "--wandb", "false", "--progress", "false"] if argv[0] == "test" else argv)
    except SystemExit as exit_info:  # argparse exits instead of returning
        code = exit_info.code
    err = capsys.readouterr().err

    errors = [line.rstrip() for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    # model loading may log "loaded ..." lines first; the error is the one and last line
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err[-2000:]
    assert fragment in errors[0], errors[0]
    assert _hashes(inputs.run_dir) == earlier  # no file of the earlier run changed, none added
    if predictions:
        assert predictions.read_bytes() == before
        assert scores_file.read_text() == '{"id": "1", "score": 1.0}\n'


def test_a_reader_that_closes_the_pipe_early_is_not_an_error(monkeypatch, capsys):
    """``python -m moco_lit models list | head -1``: no traceback, exit code 0, stdout silenced."""
    import io
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone

    class ClosedPipe(io.TextIOBase):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            return write

    for command in (["models", "list"], ["data", "list"]):
        monkeypatch.setattr("sys.stdout", ClosedPipe())
        assert main(command) == 0
        assert capsys.readouterr().err == ""
        assert os.write(write, b"x") == 1  # the final flush at exit now goes to /dev/null
    os.close(write)
