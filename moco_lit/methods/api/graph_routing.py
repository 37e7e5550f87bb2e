"""Graph routing: a GNN over queries, tasks and models learns which model should answer a query.

GraphRouter (Feng et al., 2025, "GraphRouter: A Graph-based Router for LLM Selections"): dev
queries (with their task) and the collaborators are nodes of a bipartite graph; each query–model
edge carries the model's dev score and a cost. The dev questions are split in order into train,
validation and held-out parts. Each training step hides a random share of the train edges, lets two
message-passing layers (sum of messages plus the node itself, batch-normalised) summarise the
visible ones into the model nodes, and predicts the hidden ones; the weights with the best
validation macro-F1 are kept. A test split becomes a graph of its own (every query linked to every
model by a neutral edge) and each query goes to its highest-scoring model. MoCo: ``api_graph_routing``.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

from moco_lit.dev_table import DevTable, question_text
from moco_lit.errors import UserError
from moco_lit.evaluation.judges import EmbeddingJudge
from moco_lit.methods.core.dev_trained import DevTrainedModule
from moco_lit.methods.core.module import Answer, Batch

log = logging.getLogger(__name__)

# weights of (performance, cost) in an edge's value, as in GraphRouter's scenarios
SCENARIOS: dict[str, tuple[float, float]] = {
    "Performance First": (1.0, 0.0),
    "Balance": (0.5, 0.5),
    "Cost First": (0.2, 0.8),
}
EDGE_FEATURES = 3  # score, cost, score again (constant cost) or scenario value (token cost)


class EdgeConv(nn.Module):
    """A node plus the sum, over its in-edges, of a linear map of the source and of the edge
    (GeneralConv's default form: directed messages, sum aggregation, identity self connection)."""

    def __init__(self, width: int, edge_dim: int) -> None:
        super().__init__()
        self.message = nn.Linear(width, width)
        self.edge = nn.Linear(edge_dim, width)

    def forward(self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor, edges: torch.Tensor):
        messages = self.message(x[source]) + self.edge(edges)
        return torch.zeros_like(x).index_add(0, target, messages) + x


class GraphRouterNet(nn.Module):
    """Query nodes = [task; query] features, model nodes = model features, both in ``2 * hidden``."""

    def __init__(self, feature_dim: int, hidden: int, edge_dim: int = EDGE_FEATURES) -> None:
        super().__init__()
        self.task_proj = nn.Linear(feature_dim, hidden)
        self.query_proj = nn.Linear(feature_dim, hidden)
        self.model_proj = nn.Linear(feature_dim, 2 * hidden)
        self.conv1 = EdgeConv(2 * hidden, edge_dim)
        self.conv2 = EdgeConv(2 * hidden, edge_dim)
        self.edge_mlp = nn.Linear(edge_dim, edge_dim)
        self.norm1 = nn.BatchNorm1d(2 * hidden)
        self.norm2 = nn.BatchNorm1d(2 * hidden)

    def forward(
        self,
        task: torch.Tensor,
        queries: torch.Tensor,
        models: torch.Tensor,
        visible: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        predict: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Logits of the ``predict`` edges (query rows, model columns) given the ``visible`` edges
        (query rows, model columns, edge features)."""
        count = queries.shape[0]
        start = torch.cat(
            [torch.cat([self.task_proj(task), self.query_proj(queries)], dim=1), self.model_proj(models)]
        )
        source, target, features = visible[0], visible[1] + count, torch.relu(self.edge_mlp(visible[2]))
        x = torch.relu(self.norm1(self.conv1(start, source, target, features)))
        x = self.norm2(self.conv2(x, source, target, features))
        return (start[predict[0]] * x[predict[1] + count]).mean(dim=-1)


def first_best(values: torch.Tensor) -> list[int]:
    """Per row, the first column holding the row's highest value (NumPy's argmax)."""
    return [row.index(max(row)) for row in values.tolist()]


def macro_f1(truth: list[int], predicted: list[int]) -> float:
    """Macro-averaged F1 over the classes present in either list (scikit-learn's ``macro``)."""
    scores = []
    for label in sorted(set(truth) | set(predicted)):
        hits = sum(t == p == label for t, p in zip(truth, predicted))
        wrong = sum((t == label) != (p == label) for t, p in zip(truth, predicted))
        scores.append(2 * hits / (2 * hits + wrong))
    return sum(scores) / len(scores)


class GraphRouting(DevTrainedModule):
    """Args:
    embedding_model: encoder of query, task and model texts (mean-pooled hidden states).
    hidden_features: GNN width (nodes carry twice this).
    in_edges: features per edge (MoCo's 3: score, cost, score).
    learning_rate: AdamW learning rate (MoCo's 1e-4).
    weight_decay: AdamW weight decay.
    lr_schedule: ``constant`` (MoCo's plain AdamW) or ``cosine``.
    train_epochs: optimizer steps (MoCo's name); they replace ``trainer.max_epochs``.
    masks_per_step: random edge masks whose mean loss makes one step (MoCo's ``batch_size``).
    train_mask_rate: share of the train edges a mask shows; the router predicts the others.
    split_ratio: train and validation shares of dev, in dev order; the rest is held out.
    scenario: ``Performance First``, ``Balance`` or ``Cost First``: weights of score vs cost.
    edge_cost: ``constant`` (MoCo's cost of 1 per answer, so the scenario changes no label) or
        ``tokens`` (the answer's prompt + generated tokens over the largest; edges then carry the
        scenario value as their third feature).
    test_graph: ``new`` (MoCo's: the whole test split as a graph of its own, neutral edges) or
        ``dev`` (each test question joins the dev graph without edges, so model nodes keep what
        they learnt from dev results).
    model_descriptions: text of each model node (default: the collaborator names).
    task_description: text of the task node (default: the benchmark name).
    """

    method_name = "graph_routing"
    level = "api"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2",
        hidden_features: int = 8,
        in_edges: int = EDGE_FEATURES,
        learning_rate: float = 1e-4,
        weight_decay: float = 1e-4,
        lr_schedule: Literal["cosine", "constant"] = "constant",
        train_epochs: int = 500,
        masks_per_step: int = 32,
        train_mask_rate: float = 0.5,
        split_ratio: tuple[float, ...] = (0.8, 0.1, 0.1),
        scenario: Literal["Performance First", "Balance", "Cost First"] = "Performance First",
        edge_cost: Literal["constant", "tokens"] = "constant",
        test_graph: Literal["new", "dev"] = "new",
        model_descriptions: list[str] | None = None,
        task_description: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            collaborators,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule,
            **kwargs,
        )
        if scenario not in SCENARIOS:
            raise UserError(f"graph_routing.scenario must be one of {list(SCENARIOS)}, got {scenario!r}")
        if in_edges != EDGE_FEATURES:
            raise UserError(
                f"graph_routing.in_edges must be {EDGE_FEATURES} (score, cost, score), got {in_edges}"
            )
        if edge_cost not in ("constant", "tokens") or test_graph not in ("new", "dev"):
            raise UserError(
                f"graph_routing: edge_cost is constant or tokens (got {edge_cost!r}), "
                f"test_graph is new or dev (got {test_graph!r})"
            )
        if train_epochs < 1 or masks_per_step < 1 or not 0.0 < train_mask_rate < 1.0:
            raise UserError(
                "graph_routing: train_epochs and masks_per_step must be >= 1 and train_mask_rate "
                f"in (0, 1); got {train_epochs}, {masks_per_step}, {train_mask_rate}"
            )
        split_ratio = [float(share) for share in split_ratio]
        if len(split_ratio) < 2 or min(split_ratio[:2]) < 0 or sum(split_ratio[:2]) > 1.0 + 1e-9:
            raise UserError(
                f"graph_routing.split_ratio must start with train and validation shares of dev "
                f"summing to at most 1, got {split_ratio}"
            )
        if model_descriptions is not None and len(model_descriptions) != len(collaborators):
            raise UserError(
                f"graph_routing.model_descriptions has {len(model_descriptions)} entries "
                f"for {len(collaborators)} collaborators; give one per collaborator"
            )
        self.hparams.split_ratio = split_ratio
        self.net: GraphRouterNet | None = None
        self.embedder = None  # frozen, not a submodule: never in the checkpoint or the optimiser
        self._graph: dict[str, torch.Tensor] | None = None
        self._best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (val F1, step, weights)
        self._routes: dict[str, list[float]] = {}  # test graph "new": example id -> edge scores
        self.val_labels: list[int] = []
        self.best_step: int | None = None  # the step whose weights were kept

    def configure_model(self) -> None:
        if self.net is None:
            device = self.trainer.strategy.root_device if self._trainer is not None else self.device
            self.embedder = EmbeddingJudge.load(self.hparams.embedding_model, device, batch_size=32)
            width = self.embedder.model.config.hidden_size
            self.net = GraphRouterNet(width, self.hparams.hidden_features).to(self.device)

    def embed(self, texts: list[str]) -> torch.Tensor:
        # the embedder runs in inference mode; clone so the GNN can save its input for backward
        return self.embedder.embed(texts).clone().to(self.device)

    # -- the graph of dev results -------------------------------------------------------------

    def edge_values(self, table: DevTable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores, costs, scenario values), each ``(questions, models)``, in float64."""
        scores = torch.nan_to_num(table.score_matrix().double(), nan=0.0)
        if self.hparams.edge_cost == "constant":
            costs = torch.ones_like(scores)
        else:
            costs = table.cost_matrix().double()
            costs = costs / costs.max().clamp(min=1.0)
        performance, cost = SCENARIOS[self.hparams.scenario]
        return scores, costs, performance * scores - cost * costs

    def split_sizes(self, count: int) -> tuple[int, int]:
        """(train, validation) question counts: the first ``int(count * share)`` of each, in order."""
        train_share, val_share = self.hparams.split_ratio[:2]
        return int(count * train_share), int(count * val_share)

    def build_graph(self, table: DevTable, benchmark: str) -> dict[str, torch.Tensor]:
        scores, costs, values = self.edge_values(table)
        count, models = values.shape
        third = scores if self.hparams.edge_cost == "constant" else values
        task = self.hparams.task_description or benchmark
        names = self.hparams.model_descriptions or self.collaborator_names
        embedded = self.embed([row["question"] for row in table.rows] + [task] + list(names))
        train, val = self.split_sizes(count)
        question = torch.arange(count, device=self.device).repeat_interleave(models)
        edges = torch.stack([scores, costs, third], dim=-1).reshape(-1, EDGE_FEATURES).float()
        labels = nn.functional.one_hot(torch.tensor(first_best(values)), models).reshape(-1).float()
        return {
            "queries": embedded[:count],
            "task": embedded[count],
            "models": embedded[count + 1 :],
            "rows": question,
            "columns": torch.arange(models, device=self.device).repeat(count),
            "edges": edges.to(self.device),
            "train": question < train,
            "val": (question >= train) & (question < train + val),
            "labels": labels.to(self.device),
        }

    def graph(self) -> dict[str, torch.Tensor]:
        if self._graph is None:
            self._graph = self.build_graph(self.dev_table, self.trainer.datamodule.name)
        return self._graph

    def prepare_training(self, table: DevTable) -> list[int]:
        self._graph = None
        if self.trainer.ckpt_path is None:  # a resumed fit keeps its checkpoint's best weights
            self._best = None
        train, val = self.split_sizes(len(table))
        if train == 0:
            raise UserError(
                f"graph_routing: split_ratio {self.hparams.split_ratio} leaves no training question "
                f"out of {len(table)} dev questions; raise data.dev_limit or the train share"
            )
        if val == 0:
            log.warning(
                "graph_routing: split_ratio %s leaves no validation question out of %d; the last "
                "step's weights are kept (MoCo stops with an error here)",
                self.hparams.split_ratio,
                len(table),
            )
        # a step trains on the whole graph, whatever its batch: one step per epoch, so the
        # checkpoint written after every epoch holds every step's state
        self.trainer.limit_train_batches = 1
        loop = self.trainer.fit_loop
        loop.max_epochs = self.hparams.train_epochs
        scores, _, values = self.edge_values(table)
        labels = first_best(values)
        self.val_labels = first_best(scores) if self.hparams.edge_cost == "constant" else labels
        return labels

    def edge_logits(
        self, task: torch.Tensor, queries: torch.Tensor, visible: tuple, predict: tuple
    ) -> torch.Tensor:
        """Logits of the ``predict`` edges, the net run in its own dtype (DeepSpeed may cast it)."""
        dtype = self.net.task_proj.weight.dtype
        task = task.expand(queries.shape[0], -1).to(dtype)
        visible = (visible[0], visible[1], visible[2].to(dtype))
        return self.net(task, queries.to(dtype), self.graph()["models"].to(dtype), visible, predict).float()

    def dev_logits(self, visible: torch.Tensor, predict: torch.Tensor) -> torch.Tensor:
        """Logits of the dev edges in the ``predict`` mask given those in the ``visible`` mask."""
        graph = self.graph()
        seen = (graph["rows"][visible], graph["columns"][visible], graph["edges"][visible])
        return self.edge_logits(
            graph["task"], graph["queries"], seen, (graph["rows"][predict], graph["columns"][predict])
        )

    # -- fit: each step predicts randomly hidden train edges from the visible ones ------------

    def mask_draws(self, step: int) -> torch.Tensor:
        """``(masks_per_step, edges)`` uniform draws; an edge is shown where its draw is below the rate."""
        generator = torch.Generator().manual_seed(self.seed_of(self.method_name, "masks", step))
        return torch.rand(self.hparams.masks_per_step, len(self.graph()["rows"]), generator=generator)

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor:
        graph = self.graph()
        draws = self.mask_draws(self.global_step).to(self.device)
        loss = torch.zeros((), device=self.device)
        for shown in draws < self.hparams.train_mask_rate:
            predict, visible = graph["train"] & ~shown, graph["train"] & shown
            probabilities = torch.sigmoid(self.dev_logits(visible, predict))
            loss = loss + nn.functional.binary_cross_entropy(probabilities, graph["labels"][predict])
        loss = loss / len(draws)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch: list[dict], batch_idx: int) -> None:
        """Score the step on validation, keep the best weights, and restore them after the last step."""
        graph = self.graph()
        if bool(graph["val"].any()):
            self.net.eval()
            with torch.no_grad():
                probabilities = torch.sigmoid(self.dev_logits(graph["train"], graph["val"]))
            self.net.train()
            predicted = first_best(probabilities.reshape(-1, len(graph["models"])))
            rows = sorted(set(graph["rows"][graph["val"]].tolist()))
            f1 = macro_f1([self.val_labels[r] for r in rows], predicted)
            self.log("val/f1", f1, batch_size=len(rows))
            if self._best is None or f1 > self._best[0]:
                weights = {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()}
                self._best = (f1, self.global_step, weights)
        if self.global_step >= self.hparams.train_epochs and self._best is not None:
            self.net.load_state_dict(self._best[2])
            self.best_step = self._best[1]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._best is not None:
            f1, step, weights = self._best
            checkpoint["graph_routing_best"] = {"val_f1": f1, "step": step, "weights": weights}
        checkpoint["graph_routing_best_step"] = self.best_step

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        best = checkpoint.get("graph_routing_best")
        if best is not None:
            self._best = (best["val_f1"], best["step"], best["weights"])
        self.best_step = checkpoint.get("graph_routing_best_step", self.best_step)

    # -- test: route each question to its highest-scoring model --------------------------------

    @torch.no_grad()
    def route(self, batch: list[dict]) -> torch.Tensor:
        """``(examples, models)`` edge probabilities of the batch's questions."""
        self.net.eval()
        if self.hparams.test_graph == "new":
            return self.route_new_graph([question_text(example["prompt"]) for example in batch])
        graph = self.graph()
        queries = torch.cat([graph["queries"], self.embed([question_text(e["prompt"]) for e in batch])])
        count, models = graph["queries"].shape[0], graph["models"].shape[0]
        visible = (graph["rows"], graph["columns"], graph["edges"])
        rows = torch.arange(count, count + len(batch), device=self.device).repeat_interleave(models)
        columns = torch.arange(models, device=self.device).repeat(len(batch))
        logits = self.edge_logits(graph["task"], queries, visible, (rows, columns))
        return torch.sigmoid(logits).reshape(-1, models).cpu()

    def route_new_graph(self, questions: list[str]) -> torch.Tensor:
        """Probabilities on a graph of these questions alone, every edge carrying ones."""
        graph = self.graph()
        models = graph["models"].shape[0]
        rows = torch.arange(len(questions), device=self.device).repeat_interleave(models)
        columns = torch.arange(models, device=self.device).repeat(len(questions))
        edges = torch.ones(len(rows), EDGE_FEATURES, device=self.device)
        logits = self.edge_logits(
            graph["task"], self.embed(questions), (rows, columns, edges), (rows, columns)
        )
        return torch.sigmoid(logits).reshape(-1, models).cpu()

    def split_routes(self, batch: list[dict]) -> dict[str, list[float]]:
        """Test graph ``new``: the graph holds the batch's whole split (the sum over a model's
        edges depends on every question in it), routed once."""
        ids = Batch.of(batch).ids
        if not all(i in self._routes for i in ids):
            datamodule = self.trainer.datamodule
            split = next(
                (
                    examples
                    for examples in (datamodule.examples(s) for s in ("test", "dev"))
                    if set(ids) <= {e["id"] for e in examples}
                ),
                batch,
            )
            self.net.eval()
            with torch.no_grad():
                scores = self.route_new_graph([question_text(e["prompt"]) for e in split])
            self._routes.update({e["id"]: row for e, row in zip(split, scores.tolist())})
        return {i: self._routes[i] for i in ids}

    def collaborate(self, batch: Batch) -> list[Answer]:
        if self.hparams.test_graph == "new":
            routes = self.split_routes(batch)
            scores = torch.tensor([routes[example["id"]] for example in batch])
        else:
            scores = self.route(batch)
        names = self.collaborator_names
        details = [{"edge_scores": {n: round(float(s), 4) for n, s in zip(names, row)}} for row in scores]
        return self.answer_routed(batch, first_best(scores), details)
