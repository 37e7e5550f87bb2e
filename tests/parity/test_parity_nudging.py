"""nudging against MoCo's ``run_method``: at every step the same base top-1 probability, the same
author (base or nudging model), the same text, and the same final outputs, on the same tiny models.

Both sides decode the same float32 tiny models greedily (MoCo loads bfloat16 onto GPUs; here its
loader and devices are patched to the CPU). The tiny tokenizers have no chat template: MoCo then
feeds the bare question, moco_lit its plain-text chat; MoCo's template call is patched to render
moco_lit's text, so both decode from the same prompt (prompt wording is not what is compared).
MoCo's per-step trace is read from its own debug lines (who holds the pen after each step, and the
base model's top-1 probability).
"""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
import torch

from moco_lit.collaborators import render_plain
from moco_lit.methods.api import nudging as lit_method
from moco_lit.methods.api.nudging_rules import ThresholdSwitch
from tests.conftest import collaborators_arg, run_records
from tests.parity.moco_harness import Task
from tests.parity.steering import Steering, banned_tokens, steer_pool
from tests.test_decoding import lively_models, other_tokenizer_model  # noqa: F401  (fixtures)

QUESTIONS = [
    "Tell me about the river near the old mill",
    "Write one line on the weather",
    "List three colours",
]
DEV_QUESTIONS = ["Name a fruit", "Say where the road goes"]
STEP_LINE = re.compile(r"^Nudging: (True|False), Top-1 base prob: ([0-9.e-]+),")


def _task() -> Task:
    records = [{"id": f"t{i}", "input": q, "output": ""} for i, q in enumerate(QUESTIONS)]
    dev = [{"id": f"d{i}", "input": q, "output": ""} for i, q in enumerate(DEV_QUESTIONS)]
    return Task("nudging_parity", "text_generation", dev, records)


class EndSteering(Steering):
    """On both sides: the shared ban (``banned_tokens``) and, with ``end=False``, no end of sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.end = True

    def attach(self, model, tokenizer) -> None:
        banned = banned_tokens(tokenizer)

        def steer(module, args, output):
            output.logits[..., banned] = -1e4
            if not self.end:
                output.logits[..., tokenizer.eos_token_id] = -1e4
            return output

        self.handles.append(model.register_forward_hook(steer))


@pytest.fixture
def steering(lively_models, other_tokenizer_model):  # noqa: F811
    yield from steer_pool(EndSteering(), [*lively_models[:3], other_tokenizer_model])


@pytest.fixture
def moco_nudging(monkeypatch, steering):
    """MoCo's nudging module on the CPU in float32, rendering moco_lit's plain-text chat."""
    module = pytest.importorskip("model_collaboration.method.api_nudging")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    class CpuModels:
        @staticmethod
        def from_pretrained(name, **kwargs):
            model = AutoModelForCausalLM.from_pretrained(name, torch_dtype=torch.float32)
            steering.attach(model, AutoTokenizer.from_pretrained(name))
            return model

    class PlainChatTokenizers:
        @staticmethod
        def from_pretrained(name, **kwargs):
            tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
            tokenizer.apply_chat_template = lambda chat, **options: render_plain(chat)
            return tokenizer

    monkeypatch.setattr(module, "AutoModelForCausalLM", CpuModels)
    monkeypatch.setattr(module, "AutoTokenizer", PlainChatTokenizers)
    init = module.Nudging.__init__

    def on_cpu(self, model_names, model_devices, **kwargs):
        init(self, model_names, ["cpu"] * len(model_names), **kwargs)

    monkeypatch.setattr(module.Nudging, "__init__", on_cpu)
    return module


def moco_run(module, monkeypatch, tmp_path, models, hyperparameters, dev_score=None):
    """MoCo's run_method on the task; its test outputs and, per generated row (dev rows first when
    it searches), the steps: (author, base top-1 probability, text), author 1 = nudging model."""
    from model_collaboration.data import eval as moco_eval

    traces: list[list[tuple]] = []
    generate = module.Nudging.generate

    def traced_generate(self, base_chat_prompts=None, nudging_chat_prompts=None, **kwargs):
        assert len(base_chat_prompts) == 1  # one row per call: the debug lines are that row's
        printed: list[str] = []
        monkeypatch.setattr(
            module, "print", lambda *args: printed.append(" ".join(map(str, args))), raising=False
        )
        outputs = generate(self, base_chat_prompts, nudging_chat_prompts, debug=True, **kwargs)
        monkeypatch.delattr(module, "print")
        steps, before = [], ""
        for line in printed:
            if line.startswith("Decoded output: ") and steps:
                text = line[len("Decoded output: ") :]
                steps[-1], before = (*steps[-1], text[len(before) :]), text
            elif match := STEP_LINE.match(line):
                steps.append((int(match[1] == "True"), float(match[2])))
        assert "".join(step[2] for step in steps) == outputs[0]
        traces.append(steps)
        return outputs

    monkeypatch.setattr(module.Nudging, "generate", traced_generate)
    data = _task().as_json()
    monkeypatch.setattr(moco_eval, "_load_task_json", lambda name: copy.deepcopy(data))
    monkeypatch.setattr(moco_eval, "_ensure_dataset", lambda name: None)
    if dev_score is not None:
        scores = moco_eval.get_scores

        def scripted_scores(task, task_type, split, outputs, ratio=1.0):
            if split == "dev":
                return [dev_score(o) for o in outputs]
            return scores(task, task_type, split, outputs, ratio=ratio)

        monkeypatch.setattr(moco_eval, "get_scores", scripted_scores)
    workdir = tmp_path / "moco"
    (workdir / "model_collaboration" / "logs").mkdir(parents=True)
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(os, "chdir", lambda path: None)  # run_method moves into its package
    module.run_method(
        data["name"], data["task_type"], list(range(len(models))), list(models), hyperparameters
    )
    (log,) = (workdir / "model_collaboration" / "logs").glob("*.json")
    return [entry["output"] for entry in json.loads(log.read_text())["logs"]], traces


def lit_run(run_cli, monkeypatch, tmp_path, models, *args: str, dev_score=None):
    """moco_lit's test command (fit first when it searches); outputs, the same per-row steps
    (the step that ends a row on its end token is left out: MoCo prints none for it), records."""
    traces: list[list[tuple]] = []
    details = ThresholdSwitch.row_details

    def keep_trace(self, row):
        traces.append([(author, top1) for author, top1 in self.trace[row]])
        return details(self, row)

    monkeypatch.setattr(ThresholdSwitch, "row_details", keep_trace)
    if dev_score is not None:
        monkeypatch.setattr(
            lit_method.Nudging, "score", lambda self, texts, batch: [dev_score(t) for t in texts]
        )
    path = _task().write(tmp_path)
    command = "fit" if dev_score is not None else "test"
    code, cli = run_cli(
        command,
        *("--model", "nudging", "--model.collaborators", collaborators_arg(list(models))),
        *("--model.temperature", "0", "--model.generation_batch_size", "1"),
        *args,
        *("--data.benchmark", str(path), "--cache", "false"),
    )
    assert code == 0
    if command == "fit":
        return cli, traces
    records = run_records(cli)
    order = {f"t{i}": i for i in range(len(QUESTIONS))}
    records.sort(key=lambda r: order[r["id"]])
    return [r["output"] for r in records], traces, records


def _same_steps(lit: list[list[tuple]], moco: list[list[tuple]]) -> None:
    assert len(lit) == len(moco)
    for lit_steps, moco_steps in zip(lit, moco):
        assert len(lit_steps) - len(moco_steps) in (0, 1)  # 1: the row ended on its end token
        for (author, top1), (moco_author, moco_top1, _) in zip(lit_steps, moco_steps):
            assert author == moco_author
            assert top1 == pytest.approx(moco_top1, abs=1e-4)


@pytest.mark.parametrize(("pair", "gamma"), [("same_tokenizer", 0.25), ("mixed_tokenizers", 0.2)])
def test_nudging_takes_the_same_steps_as_moco(
    pair,
    gamma,
    lively_models,  # noqa: F811
    other_tokenizer_model,  # noqa: F811
    moco_nudging,
    monkeypatch,
    tmp_path,
    run_cli,
    steering,
):
    steering.end = pair == "same_tokenizer"  # the mixed pair would end its rows within a few steps
    models = lively_models[:2] if pair == "same_tokenizer" else [other_tokenizer_model, lively_models[0]]
    hyper = {
        "batch_size": 1,
        "max_response_length": 24,
        "do_sample": False,
        "temperature": 0.7,
        "gamma": gamma,
    }
    moco_outputs, moco = moco_run(moco_nudging, monkeypatch, tmp_path, models, hyper)
    lit_outputs, lit, records = lit_run(
        run_cli, monkeypatch, tmp_path, models, "--model.max_new_tokens", "24", "--model.gamma", str(gamma)
    )
    _same_steps(lit, moco)
    assert lit_outputs == [output.strip() for output in moco_outputs]
    for record, steps, lit_steps in zip(records, moco, lit):
        written = record["details"]["segments"]
        assert "".join(text for _, text in written) == "".join(text for _, _, text in steps)
        ending = sum(author for author, _ in lit_steps[len(steps) :])  # an end token the helper chose
        assert record["details"]["helper_tokens"] - ending == sum(author for author, _, _ in steps)
    # the comparison saw both authors, and handovers both ways
    steps = [step for trace in moco for step in trace]
    assert {author for author, _, _ in steps} == {0, 1}
    assert any(top1 < gamma for _, top1, _ in steps) and any(top1 >= gamma for _, top1, _ in steps)


def test_whitespace_word_break_hands_back_at_a_newline_where_moco_nudges_on(
    lively_models,  # noqa: F811
    moco_nudging,
    monkeypatch,
    tmp_path,
    run_cli,
):
    """MoCo ends the nudging model's word only at a token holding a space; with
    ``word_break=whitespace`` a newline (or other whitespace) ends it too, and a confident base takes the pen there."""
    models, gamma = lively_models[:2], 0.4
    hyper = {
        "batch_size": 1,
        "max_response_length": 24,
        "do_sample": False,
        "temperature": 0.7,
        "gamma": gamma,
    }
    _, moco = moco_run(moco_nudging, monkeypatch, tmp_path, models, hyper)
    _, lit, _ = lit_run(
        run_cli,
        monkeypatch,
        tmp_path,
        models,
        *("--model.max_new_tokens", "24", "--model.gamma", str(gamma), "--model.word_break", "whitespace"),
    )
    parted = 0
    for lit_steps, moco_steps in zip(lit, moco):
        for index, (moco_author, moco_top1, text) in enumerate(moco_steps):
            author, top1 = lit_steps[index]
            assert top1 == pytest.approx(moco_top1, abs=1e-4)
            nudging = index > 0 and moco_steps[index - 1][0] == 1
            # the nudging model's token holds a newline (or a tab...) but no space
            newline = " " not in text and any(c.isspace() for c in text)
            if nudging and newline and moco_author == 1 and moco_top1 >= gamma:
                assert author == 0  # the base writes instead; MoCo's nudger writes the newline
                parted += 1
                break
            assert author == moco_author
    assert parted >= 1


@pytest.mark.parametrize("rule", ["all_zero", "long_answers"])
def test_dev_search_chooses_the_setting_moco_chooses(
    rule,
    lively_models,  # noqa: F811
    moco_nudging,
    monkeypatch,
    tmp_path,
    run_cli,
):
    """search_gamma and search_nudging over three models: the same grid, the same dev score per
    setting, the same chosen (gamma, nudging model), and the same test steps and outputs. The dev
    score is scripted from each output; ``all_zero`` leaves MoCo on the grid's last setting,
    ``long_answers`` makes several settings tie at the best score."""
    dev_score = {
        "all_zero": lambda text: 0.0,
        "long_answers": lambda text: float(len(text.strip()) >= 25),
    }[rule]
    models = lively_models[:3]
    hyper = {
        "batch_size": 1,
        "max_response_length": 16,
        "do_sample": False,
        "temperature": 0.7,
        "search_gamma": True,
        "search_nudging": True,
    }
    chosen: list[tuple[float, int]] = []
    batch_generate = moco_nudging.Nudging.batch_generate

    def recorded(self, *args, **kwargs):
        chosen.append((kwargs["gamma"], kwargs["nudging_model_id"]))
        return batch_generate(self, *args, **kwargs)

    monkeypatch.setattr(moco_nudging.Nudging, "batch_generate", recorded)
    moco_outputs, moco = moco_run(moco_nudging, monkeypatch, tmp_path, models, hyper, dev_score=dev_score)
    grid, moco_choice = chosen[:-1], chosen[-1]  # the dev search, then the test run
    searched = (
        "--model.search_gamma",
        "true",
        "--model.search_nudging",
        "true",
        "--model.max_new_tokens",
        "16",
    )
    cli, lit_dev = lit_run(run_cli, monkeypatch, tmp_path, models, *searched, dev_score=dev_score)
    model = cli.model
    assert model.candidates == grid  # the same settings in the same order
    # the same dev rows step by step: every setting's dev questions, in grid order (within a
    # setting, rows in either order; the fit's closing validation rows come after the search)
    rows = len(grid) * len(DEV_QUESTIONS)
    assert len(lit_dev) >= rows and len(moco) == rows + len(QUESTIONS)
    for start in range(0, rows, len(DEV_QUESTIONS)):

        def by_first_steps(traces):
            return sorted(traces, key=lambda trace: [round(step[1], 3) for step in trace[:4]])

        chunk = slice(start, start + len(DEV_QUESTIONS))
        _same_steps(by_first_steps(lit_dev[chunk]), by_first_steps(moco[chunk]))
    dev_outputs = [[step[2] for step in trace] for trace in moco[:rows]]
    moco_scores = [
        sum(dev_score("".join(pieces)) for pieces in dev_outputs[i : i + len(DEV_QUESTIONS)])
        / len(DEV_QUESTIONS)
        for i in range(0, len(dev_outputs), len(DEV_QUESTIONS))
    ]
    assert model.search_scores == pytest.approx(moco_scores)
    assert (float(model.gamma), int(model.nudging_model)) == moco_choice
    if rule == "all_zero":
        assert moco_choice == grid[-1]
    else:  # a tie at the best score that the first best in grid order breaks
        assert (
            moco_scores.count(max(moco_scores)) > 1
            and moco_choice == grid[moco_scores.index(max(moco_scores))]
        )
    checkpoint = str(next((tmp_path / "runs").rglob("last.ckpt")))
    lit_outputs, lit_test, _ = lit_run(
        run_cli, monkeypatch, tmp_path, models, *searched, "--ckpt_path", checkpoint
    )
    _same_steps(lit_test[-len(QUESTIONS) :], moco[rows:])
    assert lit_outputs == [output.strip() for output in moco_outputs]


def _inverse_cdf(logits: torch.Tensor, temperature: float, step: int) -> torch.Tensor:
    """The injected draw: at step ``step`` every model takes, per row, the token where the running
    sum of softmax(logits / temperature) (in vocabulary order) first passes a fixed uniform."""
    uniform = (0.137 + 0.618 * step) % 1.0
    cumulative = torch.softmax(logits.float() / temperature, dim=-1).cumsum(dim=-1)
    return (
        torch.searchsorted(cumulative, torch.full((logits.shape[0], 1), uniform))
        .squeeze(1)
        .clamp_max(logits.shape[-1] - 1)
    )


def test_sampled_nudging_takes_the_same_steps_as_moco_on_the_same_draws(
    lively_models,  # noqa: F811
    moco_nudging,
    monkeypatch,
    tmp_path,
    run_cli,
    steering,
):
    """Sampling at temperature 0.7 (MoCo's default): both sides' random streams are replaced by the
    same injected draws (MoCo's ``torch.multinomial`` step, moco_lit's seeded Gumbel sampler), so
    the same tokens must be sampled, steps handed over and outputs written."""
    from moco_lit.decoding import session as decoding_session

    temperature, gamma, models = 0.7, 0.3, lively_models[:2]
    moco_calls = {"count": 0}
    generate = moco_nudging.Nudging.generate

    def fresh_steps(self, *args, **kwargs):
        moco_calls["count"] = 0
        return generate(self, *args, **kwargs)

    def moco_pick(self, logits, temperature_, do_sample):
        assert do_sample and temperature_ == temperature
        step = moco_calls["count"] // 2  # the base model's draw, then the nudging model's
        moco_calls["count"] += 1
        return _inverse_cdf(logits, temperature_, step)

    monkeypatch.setattr(moco_nudging.Nudging, "generate", fresh_steps)
    monkeypatch.setattr(moco_nudging.Nudging, "get_next_token_ids", moco_pick)
    hyper = {
        "batch_size": 1,
        "max_response_length": 24,
        "do_sample": True,
        "temperature": temperature,
        "gamma": gamma,
    }
    moco_outputs, moco = moco_run(moco_nudging, monkeypatch, tmp_path, models, hyper)

    off_argmax = []

    class InjectedPicker:
        def __init__(self, config, seeds) -> None:
            assert not config.greedy and config.temperature == temperature and config.top_p == 1.0
            self.step = 0

        def __call__(self, logits):
            picked = _inverse_cdf(logits, temperature, self.step)
            off_argmax.extend((picked != logits.argmax(dim=-1)).tolist())
            self.step += 1
            return picked

    monkeypatch.setattr(decoding_session, "TokenPicker", InjectedPicker)
    lit_outputs, lit, _ = lit_run(
        run_cli,
        monkeypatch,
        tmp_path,
        models,
        *(
            "--model.max_new_tokens",
            "24",
            "--model.gamma",
            str(gamma),
            "--model.temperature",
            str(temperature),
        ),
    )
    _same_steps(lit, moco)
    assert lit_outputs == [output.strip() for output in moco_outputs]
    assert any(off_argmax)  # the draws took tokens greedy decoding would not have
    steps = [step for trace in moco for step in trace]
    assert {author for author, _, _ in steps} == {0, 1}
