"""Heterogeneous Swarms: search the graph of who-reads-whom among the collaborators on dev.

The collaborators are the nodes of a directed acyclic graph: a node reads the question plus the
outputs of its parents, and the output of the single sink is the answer. A particle swarm searches
the continuous adjacency matrix (``population`` particles, ``max_iterations`` iterations); each
particle is decoded into a DAG (sink = weakest outgoing weights, then nodes attach one by one to a
node already placed, sampled with top-p ``graph_top_p``) and scored on a ``ratio`` share of dev.
Under ``fit`` one epoch is one search iteration; the best graph found is what ``test`` runs.
Feng et al., "Heterogeneous Swarms: Jointly Optimizing Model Roles and Weights for Multi-LLM
Systems" (2025). MoCo: ``text_heterogeneous_swarms``.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from moco_lit.errors import UserError
from moco_lit.generation import example_seed
from moco_lit.methods.base import Answer, CollaborationModule, Example, ScoreSums
from moco_lit.methods.text.discussion import question_of
from moco_lit.search import ParticleSwarm, SwarmConfig

log = logging.getLogger(__name__)

SOURCE_PROMPT = "Answer the following question.\n\n{question}"

INNER_PROMPT = """Answer the following question. Other assistants have answered it before you; use \
their answers where they help and ignore them where they are wrong.

{previous}

Question:
{question}"""

SINK_PROMPT = INNER_PROMPT + "\n\nEnd with a clear final answer."

PREVIOUS_LINE = "Answer of assistant {node}:\n{text}"


class HeterogeneousSwarms(CollaborationModule):
    """Args:
    population: particles (candidate graphs) per iteration.
    max_iterations: search iterations (one ``fit`` epoch each; the recipe sets ``trainer.max_epochs``).
    ratio: share of the dev split each candidate graph is scored on (its first examples).
    graph_top_p: top-p of the sampled graph decoding (0 decodes greedily).
    inertia, cognitive_coeff, social_coeff, repel_coeff, step_length, step_length_factor,
    minimum_step_length, patience, restart_patience: the particle swarm (``moco_lit.search``).
    """

    method_name = "heterogeneous_swarms"
    level = "text"
    needs_calibration = True
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        population: int = 5,
        max_iterations: int = 5,
        ratio: float = 0.25,
        graph_top_p: float = 0.7,
        inertia: float = 0.2,
        cognitive_coeff: float = 0.3,
        social_coeff: float = 0.4,
        repel_coeff: float = 0.05,
        step_length: float = 0.5,
        step_length_factor: float = 0.95,
        minimum_step_length: float = 0.1,
        patience: int = 5,
        restart_patience: int = 3,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if population < 1 or max_iterations < 1:
            raise UserError(
                f"heterogeneous_swarms needs population and max_iterations >= 1, got {population}, {max_iterations}"
            )
        if not 0.0 < ratio <= 1.0:
            raise UserError(f"heterogeneous_swarms.ratio must be in (0, 1], got {ratio}")
        self.automatic_optimization = False  # a search: no gradients, one epoch = one iteration
        self.max_iterations = max_iterations
        self.ratio = ratio
        self.graph_top_p = graph_top_p
        nodes = len(collaborators)
        config = SwarmConfig(
            inertia=inertia,
            cognitive=cognitive_coeff,
            social=social_coeff,
            repel=repel_coeff,
            step_length=step_length,
            step_length_factor=step_length_factor,
            minimum_step_length=minimum_step_length,
            patience=patience,
            restart_patience=restart_patience,
        )
        self.swarm = ParticleSwarm(nodes * nodes, population, seed=self.hparams.seed, config=config)
        self.candidate_scores = ScoreSums(population)  # reduced across ranks: every rank decides alike
        self.register_buffer("best_graph", torch.zeros(nodes, nodes, dtype=torch.long))
        self.register_buffer("best_score", torch.tensor(-math.inf, dtype=torch.float64))
        self.register_buffer("search_iterations", torch.tensor(0, dtype=torch.long))
        self._candidates: list[np.ndarray] = []
        self._search_ids: set[str] | None = None
        self._iteration_pending = False

    # -- the search: one epoch over (a share of) dev per iteration -----------------------------

    def on_fit_start(self) -> None:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs != self.max_iterations:
            log.warning(
                "heterogeneous_swarms: trainer.max_epochs=%s but max_iterations=%s; the search stops "
                "at whichever comes first (set trainer.max_epochs to max_iterations)",
                self.trainer.max_epochs,
                self.max_iterations,
            )

    @property
    def searching(self) -> bool:
        return not self.swarm.stopped and self.swarm.iteration < self.max_iterations

    def on_train_epoch_start(self) -> None:
        self.begin_iteration()

    def begin_iteration(self) -> None:
        if self._search_ids is None:
            dev = self.trainer.datamodule.examples("dev")
            self._search_ids = {e["id"] for e in dev[: max(1, math.ceil(self.ratio * len(dev)))]}
        if not self.searching:
            return
        # every rank decodes the same graphs: the swarm and the decoding seeds are shared
        self._candidates = [
            decode_graph(
                position.view(len(self.collaborators), -1).numpy(), self.graph_top_p, self.graph_rng(p)
            )
            for p, position in enumerate(self.swarm.ask())
        ]
        self._iteration_pending = True

    def graph_rng(self, particle: int) -> np.random.Generator:
        return np.random.default_rng(example_seed(self.hparams.seed, "graph", self.swarm.iteration, particle))

    def training_step(self, batch: list[Example], batch_idx: int) -> None:
        if batch_idx == 0:
            # one no-op optimiser step per iteration: ModelCheckpoint saves nothing while
            # Lightning's step count stays 0, and it counts only optimiser steps
            self.optimizers().step()
        self.search_step(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.ddp_anchor], lr=0.0)

    def search_step(self, batch: list[Example]) -> None:
        batch = [example for example in batch if example["id"] in (self._search_ids or ())]
        if not self._iteration_pending or not batch:
            return
        for particle, texts in enumerate(self.run_graphs(batch, self._candidates)):
            self.candidate_scores.update(particle, self.score(texts, batch))

    def on_train_epoch_end(self) -> None:
        self.finish_iteration()

    def on_validation_start(self) -> None:
        # in fit Lightning validates (and checkpoints) before `on_train_epoch_end`: close the iteration first
        if self.trainer.sanity_checking:
            return
        if self.trainer.state.fn == "fit":
            self.finish_iteration()
        else:
            self.ensure_calibrated()

    def finish_iteration(self) -> None:
        if not self._iteration_pending:
            return
        self._iteration_pending = False
        scores = self.candidate_scores.compute().nan_to_num(nan=-math.inf)
        self.candidate_scores.reset()
        best = int(scores.argmax())
        if scores[best] > self.best_score:
            self.best_score.fill_(float(scores[best]))
            self.best_graph.copy_(torch.as_tensor(self._candidates[best]))
        stop = self.swarm.tell(scores)
        self.search_iterations.fill_(self.swarm.iteration)
        self.calibrated.fill_(True)
        self._example_cost.clear()
        self.print(
            f"heterogeneous_swarms iteration {self.swarm.iteration}: dev scores "
            f"{[round(float(s), 4) for s in scores]}, best so far {float(self.best_score):.4f}"
        )
        if (stop or not self.searching) and self._trainer is not None and self.trainer.state.fn == "fit":
            self.trainer.should_stop = True

    def ensure_calibrated(self) -> None:
        """``test`` on an unsearched module runs the whole search on dev first."""
        if bool(self.calibrated):
            return
        self.print("heterogeneous_swarms: no searched graph yet; searching on the dev split first")
        while self.searching:
            self.begin_iteration()
            for batch in self.trainer.datamodule.train_dataloader():
                self.search_step(batch)
            self.finish_iteration()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["swarm"] = self.swarm.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "swarm" in checkpoint:
            self.swarm.load_state_dict(checkpoint["swarm"])

    # -- running graphs ---------------------------------------------------------------------

    def collaborate(self, batch: list[Example]) -> list[Answer]:
        graph = self.best_graph.cpu().numpy()
        order = topological_order(graph)
        texts = self.run_graphs(batch, [graph])[0]
        names = self.collaborator_names
        details = {
            "edges": [[names[i], names[j]] for i, j in zip(*np.nonzero(graph))],
            "order": [names[node] for node in order],
            "dev_score": round(float(self.best_score), 6),
        }
        return [Answer(text, by=names[order[-1]], details=details) for text in texts]

    def run_graphs(self, batch: list[Example], graphs: list[np.ndarray]) -> list[list[str]]:
        """The sink's output per graph and example. Graphs advance together, one node depth at a
        time, so each model is asked once per depth for all graphs (identical prompts once)."""
        orders = [topological_order(graph) for graph in graphs]
        outputs: list[dict[int, list[str]]] = [{} for _ in graphs]
        ids = [example["id"] for example in batch]
        for depth in range(len(self.collaborators)):
            for model in range(len(self.collaborators)):
                users = [g for g, order in enumerate(orders) if order[depth] == model]
                if not users:
                    continue
                prompts = {
                    g: [
                        self.node_prompt(example, graphs[g], model, outputs[g], i, orders[g])
                        for i, example in enumerate(batch)
                    ]
                    for g in users
                }
                unique = list(dict.fromkeys((ids[i], p) for g in users for i, p in enumerate(prompts[g])))
                answers = self.ask(model, [p for _, p in unique], [i for i, _ in unique], step="graph")
                found = {key: output.text for key, output in zip(unique, answers)}
                for g in users:
                    outputs[g][model] = [found[(ids[i], p)] for i, p in enumerate(prompts[g])]
        return [outputs[g][orders[g][-1]] for g in range(len(graphs))]

    def node_prompt(
        self,
        example: Example,
        graph: np.ndarray,
        node: int,
        done: dict[int, list[str]],
        row: int,
        order: list[int],
    ) -> str:
        question = question_of(example)
        parents = [j for j in range(len(graph)) if graph[j, node]]
        if not parents:
            return SOURCE_PROMPT.format(question=question)
        previous = "\n\n".join(PREVIOUS_LINE.format(node=j + 1, text=done[j][row].strip()) for j in parents)
        template = SINK_PROMPT if node == order[-1] else INNER_PROMPT
        return template.format(previous=previous, question=question)


def decode_graph(weights: np.ndarray, top_p: float, rng: np.random.Generator) -> np.ndarray:
    """A DAG (``edges[i, j] = 1``: i feeds j) with one sink, from continuous adjacency weights.

    The sink is drawn favouring the node with the weakest outgoing weights; then the remaining nodes
    are placed one at a time, strongest outgoing weights first, each feeding one already-placed node
    drawn by its edge weights. Every draw keeps the top-p share of a softmax (top_p 0 = argmax).
    """
    weights = np.array(weights, dtype=np.float64)
    np.fill_diagonal(weights, 0.0)
    strength = weights.sum(axis=1)
    nodes = len(weights)
    placed = [_draw(list(range(nodes)), -strength, top_p, rng)]
    edges = np.zeros((nodes, nodes), dtype=np.int64)
    remaining = [n for n in range(nodes) if n != placed[0]]
    while remaining:
        node = _draw(remaining, strength[remaining], top_p, rng)
        target = _draw(placed, weights[node, placed], top_p, rng)
        edges[node, target] = 1
        placed.append(node)
        remaining.remove(node)
    return edges


def _draw(options: list[int], scores: np.ndarray, top_p: float, rng: np.random.Generator) -> int:
    scores = np.asarray(scores, dtype=np.float64)
    if top_p <= 0 or len(options) == 1:
        return options[int(np.argmax(scores))]
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    ranked = np.argsort(-probs, kind="stable")
    keep = ranked[: int(np.searchsorted(np.cumsum(probs[ranked]), top_p) + 1)]
    chosen = rng.choice(keep, p=probs[keep] / probs[keep].sum())
    return options[int(chosen)]


def topological_order(edges: np.ndarray) -> list[int]:
    """Nodes so that every node comes after its parents (ties by index); the sink comes last."""
    indegree = edges.sum(axis=0).astype(int).tolist()
    ready = [n for n in range(len(edges)) if indegree[n] == 0]
    order: list[int] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in np.nonzero(edges[node])[0].tolist():
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
                ready.sort()
    if len(order) != len(edges):
        raise ValueError("the graph has a cycle")
    return order
