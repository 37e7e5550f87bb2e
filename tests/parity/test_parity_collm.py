"""collm against MoCo's ``run_method`` on the same tiny models: the same training rows, deferral
labels and mentor scores reach the same training steps, with the same training settings, and the
same deferral weights then write the same test outputs with the same hand-overs to the mentor.

MoCo's training steps are recorded instead of run (both trainings would take minutes): its
deferral-token search and its two Trainer runs hand over their data; moco_lit's initialisation
and training steps likewise. Both then decode with one injected deferral vector and the untrained
generator. MoCo's own code does everything else: loading the training split (its dataset loader
patched to the fixture below), writing, tokenising and scoring the rows (float32 on the CPU), the
init-"a" labels, adding the deferral token and its output row, and decoding. The tiny models get
a ChatML chat template (MoCo applies the generator's template at test) and MoCo's system prompt is
replaced by moco_lit's (prompt text is not what is compared).
"""

from __future__ import annotations

import copy
import inspect
import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM as REAL_MODELS

from moco_lit.methods.api import collm as lit_collm
from tests.conftest import collaborators_arg, run_records
from tests.parity.moco_harness import Task
from tests.test_decoding import lively_models  # noqa: F401  (fixture)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAINING = [
    {"problem": "What is 2 + 3?", "solution": "2 + 3 = 5, so the answer is 5.", "level": "1", "subject": "a"},
    {"problem": " Find x if x - 4 = 1. ", "solution": "Add 4: x = 5.", "level": "2", "subject": "b"},
    {"problem": "How many sides has a hexagon?", "solution": "A hexagon has 6 sides.", "level": "1"},
    {"problem": "Name a colour.", "solution": "Blue is a colour. " * 6, "subject": "c"},
    {"problem": "Halve 10.", "solution": "10 / 2 = 5."},
]
QUESTIONS = [
    "Tell me about the river near the old mill",
    "Write one line on the weather",
    "List three colours",
]
NEW_TOKENS = 12
SEQ_LENGTH = 220  # the fourth row (246 tokens) is cut at the end


def _task() -> Task:
    test = [{"id": f"t{i}", "input": q, "output": ""} for i, q in enumerate(QUESTIONS)]
    return Task(
        "collm_parity", "text_generation", [{"id": "d0", "input": "Name a fruit", "output": ""}], test
    )


@pytest.fixture(scope="module")
def chat_models(lively_models, tmp_path_factory):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = []
    for i, source in enumerate(lively_models[:2]):
        folder = tmp_path_factory.mktemp("collm_chat") / f"model{i}"
        tokenizer = AutoTokenizer.from_pretrained(source)
        tokenizer.chat_template = CHATML
        tokenizer.save_pretrained(folder)
        AutoModelForCausalLM.from_pretrained(source).save_pretrained(folder)
        paths.append(str(folder))
    return paths


@pytest.fixture(scope="module")
def training_set(chat_models) -> list[dict]:
    """The fixture rows, the third solution written greedily by the mentor: there the mentor's top
    token is the gold one and the generator's mostly not, so both kinds of deferral label occur."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_models[1])
    mentor = AutoModelForCausalLM.from_pretrained(chat_models[1])
    rows = copy.deepcopy(TRAINING)
    prefix = (
        f"<|im_start|>system\n{lit_collm.SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\nProblem: {rows[2]['problem'].strip()}<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tokenizer(prefix, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        written = mentor.generate(
            ids, max_new_tokens=30, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    rows[2]["solution"] = tokenizer.decode(written[0, ids.shape[1] :], skip_special_tokens=True)
    return rows


def _deferral_vector(path: str) -> torch.Tensor:
    """The injected "trained" deferral vector: a scaled output row of a frequent token, so some
    steps hand over and some do not."""
    from transformers import AutoModelForCausalLM

    weight = AutoModelForCausalLM.from_pretrained(path).get_output_embeddings().weight.detach()
    return (weight[40] * 1.5 - weight.mean(0)).unsqueeze(0).float()


class _Float32Models:
    """``AutoModelForCausalLM`` for MoCo's loaders: float32 on the CPU, whatever they ask."""

    @staticmethod
    def from_pretrained(name, *args, **kwargs):
        return REAL_MODELS.from_pretrained(name, torch_dtype=torch.float32)


class _Tokenizers:
    @staticmethod
    def from_pretrained(name, *args, **kwargs):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)  # the tiny models have a fast tokenizer only


def _row(example: dict, third: str) -> dict:
    """One row of MoCo's training dataset (its labels slot carries the labels and the reference)."""
    labels, reference = example["labels"]
    return {
        "input_ids": [int(t) for t in example["input_ids"]],
        "labels": [int(t) for t in labels],
        third: [float(v) for v in reference],
    }


def run_moco(monkeypatch, tmp_path, models: list[str], vector: torch.Tensor, training: list[dict]) -> dict:
    """MoCo's run_method; what each training step was given, the training settings, the outputs
    and the mentor's forward passes per test example."""
    import datasets
    import transformers
    from model_collaboration.data import eval as moco_eval
    from model_collaboration.method import api_collm
    from model_collaboration.utils import collm_scoring, collm_trainer, collm_training

    seen: dict = {"phases": [], "dataset": [], "mentor_calls": []}
    data = _task().as_json()
    monkeypatch.setattr(moco_eval, "_load_task_json", lambda name: copy.deepcopy(data))
    monkeypatch.setattr(moco_eval, "_ensure_dataset", lambda name: None)
    monkeypatch.setattr(api_collm, "SYSTEM_PROMPT", lit_collm.SYSTEM_PROMPT)

    def load_dataset(name, split):
        seen["dataset"].append((name, split))
        return datasets.Dataset.from_list([{"level": "?", "subject": "?", **r} for r in training])

    monkeypatch.setattr(api_collm, "load_dataset", load_dataset)
    monkeypatch.setattr(collm_scoring, "AutoModelForCausalLM", _Float32Models)
    monkeypatch.setattr(collm_scoring, "AutoTokenizer", _Tokenizers)
    monkeypatch.setattr(collm_training, "AutoModelForCausalLM", _Float32Models)
    monkeypatch.setattr(collm_training, "AutoTokenizer", _Tokenizers)
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", _Float32Models)
    encode = collm_scoring.CoLLMScorer.encode_dataset
    monkeypatch.setattr(
        collm_scoring.CoLLMScorer,
        "encode_dataset",
        lambda self, raw, use_completion_format=False, preprocessing_num_workers=None, overwrite_cache=False: (
            encode(self, raw, use_completion_format, None, True)  # in-process: 16 workers on 2 cores
        ),
    )

    def search(model, data_module, batch_size=8, max_steps=None, deferral_weight=None):
        rows = [
            _row(data_module["train_dataset"][i], "deferral_labels")
            for i in range(len(data_module["train_dataset"]))
        ]
        seen["init"] = {"rows": rows, "batch_size": batch_size, "positive_weight": deferral_weight}
        return vector.clone()

    monkeypatch.setitem(collm_trainer.ALL_INITIALIZATION_SEARCH, "v1", search)

    class RecordingTrainer:
        """MoCo's ModelTrainer with its settings kept and its ``trainer.train()`` not run: MoCo's
        CoLLMTrainer.setup builds the data, the deferral token and its row, then saves the model."""

        def __init__(self, **kwargs) -> None:
            self.kwargs = kwargs

        def run(self):
            kwargs = dict(self.kwargs)
            settings = {k: kwargs.pop(k) for k in list(kwargs) if k in TRAINING_SETTINGS}
            args = transformers.TrainingArguments(output_dir=kwargs["output_dir"], report_to=[], use_cpu=True)
            for key in ("torch_dtype", "use_fast_tokenizer", "preprocessing_num_workers"):
                kwargs.pop(key, None)
            extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in CO_LLM_TRAINER_ARGS}
            trainer = collm_training.CoLLMTrainer(torch_dtype="float32", training_args=args, **kwargs)
            trainer.setup()
            dataset = trainer.data_module["train_dataset"]
            rows = [_row(dataset[i], "mentor_logps") for i in range(len(dataset))]
            seen["phases"].append(
                {"settings": {**settings, **extra}, "rows": rows, "model": kwargs["model_name_or_path"]}
            )
            trainer.trainer.save_model()

    monkeypatch.setattr(api_collm, "ModelTrainer", RecordingTrainer)

    load_models = api_collm.CoLLMInference._load_models

    def counted_load(self):
        self.device_base = self.device_ref = "cpu"
        load_models(self)
        self.model_ref.register_forward_hook(
            lambda *a: seen["mentor_calls"].__setitem__(-1, seen["mentor_calls"][-1] + 1)
        )

    generate = api_collm.CoLLMInference.generate

    def counted_generate(self, prompt, verbose=False):
        seen["mentor_calls"].append(0)
        return generate(self, prompt, verbose)

    monkeypatch.setattr(api_collm.CoLLMInference, "_load_models", counted_load)
    monkeypatch.setattr(api_collm.CoLLMInference, "generate", counted_generate)

    workdir = tmp_path / "moco"
    (workdir / "model_collaboration" / "logs").mkdir(parents=True)
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(os, "chdir", lambda path: None)
    hyper = {"training_num": 4, "max_sequence_length": SEQ_LENGTH, "max_response_length": NEW_TOKENS}
    api_collm.run_method(data["name"], data["task_type"], [0, 1], list(models), hyper)
    (log,) = (workdir / "model_collaboration" / "logs").glob("*.json")
    seen["outputs"] = [entry["output"] for entry in json.loads(log.read_text())["logs"]]
    return seen


TRAINING_SETTINGS = (
    "num_train_epochs",
    "learning_rate",
    "lr_scheduler_type",
    "weight_decay",
    "warmup_ratio",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
)
CO_LLM_TRAINER_ARGS = {
    "model_name_or_path",
    "output_dir",
    "dataset_name",
    "tokenizer_name",
    "max_seq_length",
    "use_flash_attn",
    "no_deferral_initialization_search",
    "deferral_initialization_search_max_steps",
    "deferral_initialization_weight_balance",
    "deferral_trainer_version",
    "deferral_initialization_search_version",
    "deferral_initialization_path",
}


def run_lit(
    run_cli, monkeypatch, tmp_path, models: list[str], vector: torch.Tensor, training_rows: list[dict]
) -> dict:
    """moco_lit's fit then test; the same records as :func:`run_moco`."""
    seen: dict = {"steps": []}
    training = tmp_path / "math_train.json"
    training.write_text(json.dumps(training_rows))

    def initialise(self):
        size = self.hparams.init_batch_size
        seen["init"] = {
            "rows": [
                {
                    "input_ids": r["input_ids"].tolist(),
                    "labels": r["labels"].tolist(),
                    "deferral_labels": r["deferral_labels"].tolist(),
                }
                for r in self.rows
            ],
            "batch_size": size,
            "positive_weight": self.hparams.init_positive_weight,
        }
        with torch.no_grad():
            self.head.weight.copy_(vector)

    def step(self, batch, batch_idx):
        per = -(-len(self.rows) // max(self.trainer.num_training_batches, 1))
        rows = self.rows[batch_idx * per : (batch_idx + 1) * per]
        seen["steps"].append(
            [
                {
                    "input_ids": r["input_ids"].tolist(),
                    "labels": r["labels"].tolist(),
                    "mentor_logps": r["mentor_logps"].tolist(),
                }
                for r in rows
            ]
        )
        return None

    monkeypatch.setattr(lit_collm.CoLLM, "initialise_head", initialise)
    monkeypatch.setattr(lit_collm.CoLLM, "training_step", step)
    path = _task().write(tmp_path)
    template = tmp_path / "question_template.yaml"
    template.write_text('question_template: "Problem: {question}"\n')
    common = [
        "--model",
        "collm",
        "--model.collaborators",
        collaborators_arg(models),
        "--model",
        str(template),  # from a file: on the command line "Problem: {question}" reads as a mapping
        "--model.training_data",
        str(training),
        "--model.training_num",
        "4",
        "--model.max_seq_length",
        str(SEQ_LENGTH),
        "--model.max_new_tokens",
        str(NEW_TOKENS),
        "--model.temperature",
        "0",
        "--model.top_p",
        "1.0",
        "--data.benchmark",
        str(path),
        "--cache",
        "false",
    ]
    code, fitted = run_cli("fit", *common, "--trainer.max_epochs", "2")
    assert code == 0
    seen["hparams"] = dict(fitted.model.hparams)
    seen["epochs"] = fitted.trainer.max_epochs
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    code, tested = run_cli("test", *common, "--ckpt_path", checkpoint)
    assert code == 0
    records = run_records(tested)
    order = {f"t{i}": i for i in range(len(QUESTIONS))}
    records.sort(key=lambda r: order[r["id"]])
    seen["outputs"] = [r["output"] for r in records]
    seen["deferred"] = [r["details"]["deferred_tokens"] for r in records]
    return seen


def _close(moco_rows: list[dict], lit_rows: list[dict], key: str) -> None:
    assert [(r["input_ids"], r["labels"]) for r in moco_rows] == [
        (r["input_ids"], r["labels"]) for r in lit_rows
    ]
    for moco, lit in zip(moco_rows, lit_rows):
        torch.testing.assert_close(torch.tensor(lit[key]), torch.tensor(moco[key]), atol=1e-4, rtol=1e-4)


def test_collm_trains_on_the_same_data_and_decodes_like_moco(
    chat_models, training_set, run_cli, monkeypatch, tmp_path
):
    vector = _deferral_vector(chat_models[0])
    moco = run_moco(monkeypatch, tmp_path, chat_models, vector, training_set)
    monkeypatch.undo()
    lit = run_lit(run_cli, monkeypatch, tmp_path, chat_models, vector, training_set)

    # the training set: MoCo's default dataset, its first training_num rows, in the same token rows
    assert moco["dataset"] == [(lit_collm.MATH_TRAIN, "train")]
    defaults = inspect.signature(lit_collm.CoLLM).parameters
    assert defaults["training_data"].default == lit_collm.MATH_TRAIN
    assert defaults["max_seq_length"].default == 2048 and defaults["training_num"].default == 10000
    # the initialisation: same rows, labels, batch size and positive weight
    assert moco["init"]["batch_size"] == lit["init"]["batch_size"] == 8
    assert moco["init"]["positive_weight"] == lit["init"]["positive_weight"] == 8
    assert [r["deferral_labels"] for r in moco["init"]["rows"]] == [
        r["deferral_labels"] for r in lit["init"]["rows"]
    ]
    assert [r["input_ids"] for r in moco["init"]["rows"]] == [r["input_ids"] for r in lit["init"]["rows"]]
    labels = [v for r in lit["init"]["rows"] for v in r["deferral_labels"] if v != -100]
    assert 0 < sum(labels) < len(labels)  # both kinds of label occur
    assert len(lit["init"]["rows"]) == 4 and len(lit["init"]["rows"][3]["input_ids"]) == SEQ_LENGTH
    # MoCo's first Trainer run trains a model it never uses (only the searched vector is kept);
    # the second is the fine-tuning moco_lit runs: the same generator, rows and settings
    init_phase, final_phase = moco["phases"]
    assert final_phase["model"] == chat_models[0]
    assert len(lit["steps"]) == 2  # one step per epoch here (the dev split has one batch)
    for rows in lit["steps"]:
        _close(final_phase["rows"], rows, "mentor_logps")
    settings = final_phase["settings"]
    assert settings["num_train_epochs"] == lit["epochs"] == 2
    assert settings["learning_rate"] == lit["hparams"]["learning_rate"] == 2e-5
    assert settings["lr_scheduler_type"] == lit["hparams"]["lr_schedule"] == "linear"
    assert settings["weight_decay"] == lit["hparams"]["weight_decay"] == 0
    assert lit["hparams"]["train_generator"] is True
    # the test outputs and the hand-overs: MoCo asks the mentor exactly where it defers
    assert lit["deferred"] == moco["mentor_calls"]
    assert 0 < sum(lit["deferred"]) < len(QUESTIONS) * NEW_TOKENS
    assert lit["outputs"] == [output.strip() for output in moco["outputs"]]
