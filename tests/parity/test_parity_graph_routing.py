"""graph_routing against MoCo's ``api_graph_routing``: the dev calls, the router's labels, every
training step's masked edges, the validation F1 of each step, the kept weights, the test routes,
outputs and score.

MoCo's graph layers come from torch_geometric and its encoder from sentence_transformers, neither
of them installed here: the test puts in stand-ins (``GeneralConv`` written from PyG's definition,
the real one is used when importable; an encoder that gives each question, description and task a
fixed random vector on both sides). MoCo's model and graph go to the CPU instead of ``cuda:0``.
The two sides draw from different streams, so moco_lit's initial weights and its edge-mask draws
are given to MoCo (its ``torch.rand`` answers from the recorded draws).
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from moco_lit.methods.api import graph_routing
from tests.parity.moco_harness import (
    Ask,
    Script,
    assert_same,
    assert_same_calls,
    boxed,
    collaborators,
    exact_match_task,
    fit_then_test,
    run_moco,
)

TASK = exact_match_task(
    dev=[(f"What is {a} plus {a + 7}?", str(2 * a + 7)) for a in range(20, 40)],
    test=[(f"What is {a} minus 3?", str(a - 3)) for a in range(50, 56)],
)
MODELS = ["alpha", "beta", "gamma"]
DESCRIPTIONS = ["a careful adder", "a quick guesser", "a model that knows even numbers"]
WIDTH = 12  # the stand-in encoder's


def right(model: str, record: dict) -> bool:
    a = int(record["input"].split()[2])
    if model == "alpha":
        return a % 3 != 0
    if model == "beta":
        return a % 4 == 1
    return a % 2 == 0


def policy(ask: Ask) -> str:
    return boxed(ask.record["output"] if right(ask.model, ask.record) else "0")


# -- stand-ins for what MoCo imports -------------------------------------------------------------


def vector(text: str) -> torch.Tensor:
    """A fixed random vector per question found in ``text`` (each side words prompts its own way),
    else per text."""
    found = [r["id"] for r in TASK.dev + TASK.test if TASK.question(r) in text]
    key = found[0] if len(found) == 1 else text
    seed = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)
    return torch.randn(WIDTH, generator=torch.Generator().manual_seed(seed))


class StandInEncoder:
    """MoCo's ``SentenceTransformer`` and moco_lit's ``EmbeddingJudge``, both."""

    model = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=WIDTH))

    def __init__(self, *args, **kwargs) -> None:
        pass

    def encode(self, texts: list[str]):
        return torch.stack([vector(t) for t in texts]).numpy()

    def embed(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([vector(t) for t in texts])


class GeneralConv(torch.nn.Module):
    """PyG's ``GeneralConv`` with its defaults (one head, directed messages, sum aggregation, no
    attention): ``x_i + sum_j (lin_msg(x_j) + lin_edge(e_ji))``; the self map is the identity when
    the widths agree."""

    def __init__(self, in_channels: int, out_channels: int, in_edge_channels: int) -> None:
        super().__init__()
        assert in_channels == out_channels
        self.lin_msg = torch.nn.Linear(in_channels, out_channels)
        self.lin_edge = torch.nn.Linear(in_edge_channels, out_channels)

    def forward(self, x, edge_index, edge_attr):
        messages = self.lin_msg(x[edge_index[0]]) + self.lin_edge(edge_attr)
        index = edge_index[1].unsqueeze(-1).expand_as(messages)
        return x.new_zeros(x.shape).scatter_add_(0, index, messages) + x


def stand_in_modules(monkeypatch) -> None:
    try:
        import torch_geometric.data  # noqa: F401
        import torch_geometric.nn  # noqa: F401
    except ImportError:
        for name, attrs in {
            "torch_geometric": {},
            "torch_geometric.nn": {"GeneralConv": GeneralConv},
            "torch_geometric.data": {"Data": types.SimpleNamespace},
        }.items():
            monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    if "sentence_transformers" not in sys.modules:
        monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace())
    monkeypatch.setattr(
        sys.modules["sentence_transformers"], "SentenceTransformer", StandInEncoder, raising=False
    )


# moco_lit's layer -> MoCo's
LAYERS = {
    "task_proj": "model_align.task_transform",
    "query_proj": "model_align.query_transform",
    "model_proj": "model_align.llm_transform",
    "conv1.message": "encoder_conv_1.lin_msg",
    "conv1.edge": "encoder_conv_1.lin_edge",
    "conv2.message": "encoder_conv_2.lin_msg",
    "conv2.edge": "encoder_conv_2.lin_edge",
    "edge_mlp": "edge_mlp",
    "norm1": "bn1",
    "norm2": "bn2",
}


def as_moco(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in weights.items():
        layer, _, field = key.rpartition(".")
        renamed[f"{LAYERS[layer]}.{field}"] = value
    return renamed


def edges(index: torch.Tensor, count: int) -> list[tuple[int, int]]:
    """(query, model) pairs of MoCo's edge index (model nodes numbered after the queries)."""
    return [(int(q), int(m) - count) for q, m in index.t()]


# -- the two runs --------------------------------------------------------------------------------


def run_lit(run_cli, tmp_path: Path, monkeypatch, options: list[str]):
    from moco_lit.evaluation.judges import EmbeddingJudge

    record = types.SimpleNamespace(initial=None, draws=[], forwards=[], predictions=[], f1=[])
    monkeypatch.setattr(EmbeddingJudge, "load", classmethod(lambda cls, *a, **k: StandInEncoder()))

    configure, draw, forward, f1 = (
        graph_routing.GraphRouting.configure_model,
        graph_routing.GraphRouting.mask_draws,
        graph_routing.GraphRouterNet.forward,
        graph_routing.macro_f1,
    )

    def configure_model(self):
        configure(self)
        if record.initial is None:
            record.initial = {k: v.clone() for k, v in self.net.state_dict().items()}

    def mask_draws(self, step):
        draws = draw(self, step)
        record.draws.append(draws)
        return draws

    def recorded_forward(self, task, queries, models, visible, predict):
        if self.training:
            record.forwards.append(
                (
                    sorted(zip(visible[0].tolist(), visible[1].tolist())),
                    sorted(zip(predict[0].tolist(), predict[1].tolist())),
                    visible[2].tolist(),
                )
            )
        logits = forward(self, task, queries, models, visible, predict)
        if self.training:
            record.predictions.append(torch.sigmoid(logits).detach().clone())
        return logits

    def macro_f1(truth, predicted):
        record.f1.append(f1(truth, predicted))
        return record.f1[-1]

    monkeypatch.setattr(graph_routing.GraphRouting, "configure_model", configure_model)
    monkeypatch.setattr(graph_routing.GraphRouting, "mask_draws", mask_draws)
    monkeypatch.setattr(graph_routing.GraphRouterNet, "forward", recorded_forward)
    monkeypatch.setattr(graph_routing, "macro_f1", macro_f1)
    script = Script(TASK, policy)
    common = ["--model", "graph_routing", "--model.collaborators", collaborators(MODELS), *options]
    common += ["--model.embedding_model", "stand-in", "--model.temperature", "0", "--model.top_p", "1.0"]
    common += ["--data.benchmark", str(TASK.write(tmp_path)), "--data.batch_size", "8"]
    common += ["--cache", "false", "--wandb", "false", "--run_dir", str(tmp_path / "lit_runs")]
    run = fit_then_test(run_cli, TASK, script, common)
    fitted, tested, records = run.fitted, run.tested, run.records
    return record, script, fitted.model, tested.model, records


def run_moco_routing(monkeypatch, tmp_path: Path, hyperparameters: dict, lit):
    stand_in_modules(monkeypatch)
    from tests.parity.moco_harness import _import_moco_method

    module = _import_moco_method(monkeypatch, "api_graph_routing")
    record = types.SimpleNamespace(labels=None, forwards=[], predictions=[], f1=[])
    queue = [row for draws in lit.draws for row in draws]

    def recorded(net):
        forward = net.forward

        def recorded_forward(*args, **kwargs):
            if net.training:
                count = kwargs["query_features"].shape[0]
                index = kwargs["edge_index"]
                visible, predict = kwargs["edge_can_see"], kwargs["edge_mask"]
                record.forwards.append(
                    (
                        sorted(edges(index[:, visible], count)),
                        sorted(edges(index[:, predict], count)),
                        kwargs["edge_weight"][visible].tolist(),
                    )
                )
            probabilities = forward(*args, **kwargs)
            if net.training:
                record.predictions.append(probabilities.detach().clone())
            return probabilities

        net.forward = recorded_forward

    def gnn_prediction(*args, device, **kwargs):
        gnn = real_gnn(*args, device="cpu", **kwargs)
        gnn.model.load_state_dict(as_moco(lit.initial))  # the same starting weights
        recorded(gnn.model)
        return gnn

    class Draws:  # MoCo's torch, whose rand answers with moco_lit's draws
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def rand(size):
            row = queue.pop(0)
            assert tuple(row.shape) == tuple(size)
            return row

    real_form_data, real_gnn = module.form_data, module.GNN_prediction

    class FormData(real_form_data):
        def __init__(self, device):
            super().__init__("cpu")

        def formulation(self, **kwargs):
            if record.labels is None:
                record.labels = list(kwargs["label"])
            return super().formulation(**kwargs)

    def f1_score(truth, predicted, average):
        from sklearn.metrics import f1_score as real

        record.f1.append(float(real(truth, predicted, average=average)))
        return record.f1[-1]

    moco = run_moco(
        monkeypatch, tmp_path, "api_graph_routing", TASK, MODELS, policy, hyperparameters,
        patches={
            "torch": Draws(),
            "form_data": FormData,
            "GNN_prediction": gnn_prediction,
            "f1_score": f1_score,
        },
    )  # fmt: skip
    weights = torch.load(
        tmp_path / "moco" / "model_collaboration" / "logs" / f"graph_router_parity_{len(MODELS)}.pt"
    )
    assert not queue, "MoCo drew fewer masks than moco_lit"
    return moco, record, weights


CASES = {
    "defaults": {},
    "cost-first-split": {
        "scenario": "Cost First",
        "split_ratio": [0.5, 0.4, 0.1],
        "train_mask_rate": 0.3,
        "learning_rate": 0.01,
    },
}
BEST_STEP = {"defaults": 1, "cost-first-split": 7}  # the second keeps a later step's weights


@pytest.mark.parametrize("case", list(CASES))
def test_graph_routing_matches_moco(run_cli, tmp_path, monkeypatch, case):
    settings = {"train_epochs": 12, "batch_size": 3, "hidden_features": 4, "learning_rate": 0.05}
    settings |= CASES[case]
    options = [
        f"--model.{'masks_per_step' if k == 'batch_size' else k}={v if isinstance(v, str) else json.dumps(v)}"
        for k, v in settings.items()
    ]
    options += [f"--model.model_descriptions={json.dumps(DESCRIPTIONS)}", "--model.task_description=sums"]
    lit, script, fitted, tested, records = run_lit(run_cli, tmp_path, monkeypatch, options)
    hyperparameters = {**settings, "model_descriptions": DESCRIPTIONS, "task_description": "sums"}
    moco, theirs, moco_weights = run_moco_routing(monkeypatch, tmp_path, hyperparameters, lit)

    # every model answers every dev question, then each test question goes to its routed model
    assert_same_calls(moco.calls, script.calls)
    # the router's labels: the first best model per dev question
    labels = torch.tensor(theirs.labels).reshape(-1, len(MODELS)).argmax(dim=1).tolist()
    assert_same("dev labels", labels, fitted.dev_labels)
    assert len(set(labels)) == len(MODELS)
    # each training forward: the edges shown (and their features) and the edges to predict
    assert len(lit.forwards) == settings["train_epochs"] * settings["batch_size"]
    assert_same("training forwards", theirs.forwards, lit.forwards)
    # what the router predicted in each of them (the weights along the whole training run)
    for step, (moco_step, lit_step) in enumerate(zip(theirs.predictions, lit.predictions)):
        torch.testing.assert_close(lit_step, moco_step, rtol=1e-5, atol=1e-6, msg=f"forward {step}")
    # validation F1 after every step, and the weights kept: those of the first best step
    assert theirs.f1 == pytest.approx(lit.f1, abs=1e-9) and len(lit.f1) == settings["train_epochs"]
    assert fitted.best_step == 1 + lit.f1.index(max(lit.f1)) == BEST_STEP[case]
    kept = as_moco(tested.net.state_dict())
    assert kept.keys() == moco_weights.keys()
    for key, value in moco_weights.items():
        torch.testing.assert_close(kept[key], value, rtol=1e-5, atol=1e-6, msg=key)
    # the test routes, outputs and score
    routes = [entry["selected_model"] for entry in moco.log["logs"]]
    assert_same("test routes", routes, [r["answered_by"] for r in records])
    assert_same("test outputs", moco.outputs, [r["output"] for r in records])
    assert moco.score == pytest.approx(sum(r["score"] for r in records) / len(records))
