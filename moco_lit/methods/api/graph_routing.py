"""Graph routing: a GNN over queries, tasks and models learns which model should answer a query.

GraphRouter (Feng et al., 2025, "GraphRouter: A Graph-based Router for LLM Selections"): dev
queries (with their task) and the collaborators are nodes of a bipartite graph; each query–model
edge carries the model's dev score and cost. Two message-passing layers let model nodes summarise
the queries they answered; an edge's score is the match between a query's features and a model's
representation, trained to pick the best model under the ``scenario``'s performance/cost weights.
A test query joins the graph without edges and goes to its highest-scoring model. MoCo: ``api_graph_routing``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from moco_lit.dev_table import DevTable, DevTrainedModule, question_text
from moco_lit.errors import UserError
from moco_lit.methods.base import Answer

# weights of (performance, cost) in an edge's value, as in GraphRouter's scenarios
SCENARIOS: dict[str, tuple[float, float]] = {
    "Performance First": (1.0, 0.0),
    "Balance": (0.5, 0.5),
    "Cost First": (0.2, 0.8),
}
EDGE_FEATURES = 3  # score, normalised cost, scenario value


class EdgeConv(nn.Module):
    """Mean of gated messages from a node's in-edges, plus a self connection (plain torch)."""

    def __init__(self, width: int, edge_dim: int) -> None:
        super().__init__()
        self.self_linear = nn.Linear(width, width)
        self.message_linear = nn.Linear(width, width)
        self.edge_linear = nn.Linear(edge_dim, width, bias=False)

    def forward(self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor, edges: torch.Tensor):
        # the nonlinearity lets an edge's score decide how much of its query a model node takes in
        messages = torch.relu(self.message_linear(x[source]) + self.edge_linear(edges))
        total = torch.zeros_like(x).index_add(0, target, messages)
        count = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
        count = count.index_add(0, target, torch.ones(len(target), 1, dtype=x.dtype, device=x.device))
        return self.self_linear(x) + total / count.clamp(min=1.0)


class GraphRouterNet(nn.Module):
    """Query nodes = [task; query] features, model nodes = model features, both in ``2 * hidden``."""

    def __init__(self, feature_dim: int, hidden: int) -> None:
        super().__init__()
        self.task_proj = nn.Linear(feature_dim, hidden)
        self.query_proj = nn.Linear(feature_dim, hidden)
        self.model_proj = nn.Linear(feature_dim, 2 * hidden)
        self.edge_mlp = nn.Linear(EDGE_FEATURES, EDGE_FEATURES)
        self.conv1 = EdgeConv(2 * hidden, EDGE_FEATURES)
        self.conv2 = EdgeConv(2 * hidden, EDGE_FEATURES)
        self.norm1 = nn.LayerNorm(2 * hidden)
        self.norm2 = nn.LayerNorm(2 * hidden)

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


class GraphRouting(DevTrainedModule):
    """Args:
    embedding_model: encoder of query, task and model texts (mean-pooled hidden states).
    hidden_features: GNN width (nodes carry twice this).
    learning_rate: AdamW learning rate (MoCo: 1e-4 over 500 steps).
    weight_decay: AdamW weight decay.
    lr_schedule: ``constant`` (MoCo's plain AdamW) or ``cosine``.
    scenario: ``Performance First``, ``Balance`` or ``Cost First``: weights of score vs cost.
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
        learning_rate: float = 1e-4,
        weight_decay: float = 1e-4,
        lr_schedule: Literal["cosine", "constant"] = "constant",
        scenario: Literal["Performance First", "Balance", "Cost First"] = "Performance First",
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
        if model_descriptions is not None and len(model_descriptions) != len(collaborators):
            raise UserError(
                f"graph_routing.model_descriptions has {len(model_descriptions)} entries "
                f"for {len(collaborators)} collaborators; give one per collaborator"
            )
        self.net: GraphRouterNet | None = None
        self.embedder = None  # frozen, not a submodule: never in the checkpoint or the optimiser
        self._graph: dict[str, torch.Tensor] | None = None

    def configure_model(self) -> None:
        if self.net is None:
            from moco_lit.evaluation.judges import EmbeddingJudge

            device = self.trainer.strategy.root_device if self._trainer is not None else self.device
            self.embedder = EmbeddingJudge.load(self.hparams.embedding_model, device, batch_size=32)
            width = self.embedder.model.config.hidden_size
            self.net = GraphRouterNet(width, self.hparams.hidden_features).to(self.device)

    def embed(self, texts: list[str]) -> torch.Tensor:
        # the embedder runs in inference mode; clone so the GNN can save its input for backward
        return self.embedder.embed(texts).clone().to(self.device)

    # -- the graph of dev results -------------------------------------------------------------

    def edge_values(self, table: DevTable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores, normalised costs, scenario values), each ``(questions, models)``."""
        scores = torch.nan_to_num(table.score_matrix(), nan=0.0)
        costs = table.cost_matrix()
        costs = costs / costs.max().clamp(min=1.0)
        performance, cost = SCENARIOS[self.hparams.scenario]
        return scores, costs, performance * scores - cost * costs

    def build_graph(self, table: DevTable, benchmark: str) -> dict[str, torch.Tensor]:
        scores, costs, values = self.edge_values(table)
        count, models = values.shape
        task = self.hparams.task_description or benchmark
        names = self.hparams.model_descriptions or self.collaborator_names
        embedded = self.embed([row["question"] for row in table.rows] + [task] + list(names))
        return {
            "queries": embedded[:count],
            "task": embedded[count],
            "models": embedded[count + 1 :],
            "rows": torch.arange(count, device=self.device).repeat_interleave(models),
            "columns": torch.arange(models, device=self.device).repeat(count),
            "edges": torch.stack([scores, costs, values], dim=-1).reshape(-1, EDGE_FEATURES).to(self.device),
        }

    def graph(self) -> dict[str, torch.Tensor]:
        if self._graph is None:
            self._graph = self.build_graph(self.dev_table, self.trainer.datamodule.name)
        return self._graph

    def prepare_training(self, table: DevTable) -> list[int]:
        self._graph = None
        _, _, values = self.edge_values(table)
        return table.best_models(self.dev_ranking(), values)

    def edge_logits(
        self, extra_queries: torch.Tensor | None, keep: torch.Tensor, predict_rows: torch.Tensor
    ) -> torch.Tensor:
        """``(len(predict_rows), models)`` logits; dev edges with ``keep`` false are hidden."""
        graph = self.graph()
        queries = graph["queries"] if extra_queries is None else torch.cat([graph["queries"], extra_queries])
        models = graph["models"].shape[0]
        visible = (graph["rows"][keep], graph["columns"][keep], graph["edges"][keep])
        rows = predict_rows.repeat_interleave(models)
        columns = torch.arange(models, device=self.device).repeat(len(predict_rows))
        task = graph["task"].expand(queries.shape[0], -1)
        dtype = self.net.task_proj.weight.dtype  # DeepSpeed may cast the net to bf16/fp16
        visible = (visible[0], visible[1], visible[2].to(dtype))
        logits = self.net(
            task.to(dtype), queries.to(dtype), graph["models"].to(dtype), visible, (rows, columns)
        )
        return logits.float().reshape(-1, models)

    # -- fit: predict each batch's edges from the rest of the graph ---------------------------

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor:
        rows = torch.tensor(self.dev_rows(batch), device=self.device)
        graph = self.graph()
        keep = ~torch.isin(graph["rows"], rows)  # the batch's own results are what it must predict
        logits = self.edge_logits(None, keep, rows)
        labels = torch.tensor([self.dev_labels[r] for r in rows.tolist()], device=self.device)
        target = nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss

    # -- test: route each question to its highest-scoring model --------------------------------

    @torch.no_grad()
    def route(self, batch: list[dict]) -> torch.Tensor:
        """``(examples, models)`` edge probabilities of the batch's questions."""
        queries = self.embed([question_text(example["prompt"]) for example in batch])
        count = self.graph()["queries"].shape[0]
        keep = torch.ones_like(self.graph()["rows"], dtype=torch.bool)
        rows = torch.arange(count, count + len(batch), device=self.device)
        return torch.sigmoid(self.edge_logits(queries, keep, rows)).cpu()

    def collaborate(self, batch: list[dict]) -> list[Answer]:
        scores = self.route(batch)
        names = self.collaborator_names
        details = [{"edge_scores": {n: round(float(s), 4) for n, s in zip(names, row)}} for row in scores]
        return self.answer_routed(batch, scores.argmax(dim=-1).tolist(), details)
