"""Heterogeneous Swarms: search the graph of who-reads-whom among the collaborators on dev.

The collaborators are the nodes of a directed acyclic graph: a node reads the question plus the
outputs of its parents, and the output of the single sink is the answer. A particle swarm searches
the continuous adjacency matrix (``population`` particles, ``max_iterations`` iterations); each
particle is decoded into a DAG (the sink drawn by softmax(1 / out-degree), then nodes attach one by
one to a node already placed, every draw top-p ``graph_top_p`` sampled) and scored on dev. Under
``fit`` one epoch is one search iteration; ``test`` decodes a fresh graph from the best particle
(``test_graph="best_evaluated"`` runs the best graph the search scored instead).
Feng et al., "Heterogeneous Swarms: Jointly Optimizing Model Roles and Weights for Multi-LLM
Systems" (2025). MoCo: ``text_heterogeneous_swarms``.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import torch

from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule, Example, ScoreSums
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
    ratio: share of the dev split each candidate graph is scored on (its first examples; MoCo
        scores on all of dev).
    graph_top_p: top-p of the sampled graph decoding (0 keeps only the most likely choice).
    test_graph: ``resample`` (MoCo): the test graph is decoded afresh from the best particle;
        ``best_evaluated``: the best graph the search scored on dev.
    swarm: the particle swarm's settings (``moco_lit.search.SwarmConfig``, MoCo's defaults), e.g.
        ``swarm: {starting_velocity: zero, repel_term: false}``.
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
        ratio: float = 1.0,
        graph_top_p: float = 0.7,
        test_graph: Literal["resample", "best_evaluated"] = "resample",
        swarm: SwarmConfig = SwarmConfig(),
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if population < 1 or max_iterations < 1:
            raise UserError(
                f"heterogeneous_swarms needs population and max_iterations >= 1, got {population}, {max_iterations}"
            )
        if not 0.0 < ratio <= 1.0:
            raise UserError(f"heterogeneous_swarms.ratio must be in (0, 1], got {ratio}")
        if test_graph not in ("resample", "best_evaluated"):
            raise UserError(
                f"heterogeneous_swarms.test_graph must be one of resample, best_evaluated, got {test_graph!r}"
            )
        self.test_graph = test_graph
        self.automatic_optimization = False  # a search: no gradients, one epoch = one iteration
        self.max_iterations = max_iterations
        self.ratio = ratio
        self.graph_top_p = graph_top_p
        nodes = len(collaborators)
        self.swarm = ParticleSwarm(nodes * nodes, population, seed=self.hparams.seed, config=swarm)
        self.candidate_scores = ScoreSums(population)  # reduced across ranks: every rank decides alike
        self.register_buffer("best_graph", torch.zeros(nodes, nodes, dtype=torch.long))
        self.register_buffer("best_score", torch.tensor(-math.inf, dtype=torch.float64))
        self.register_buffer("search_iterations", torch.tensor(0, dtype=torch.long))
        self._candidates: list[np.ndarray] = []
        self._search_ids: set[str] | None = None
        self._iteration_pending = False
        self._test_graph: tuple[int, np.ndarray] | None = None  # (search iteration, graph)

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

    def graph_rng(self, particle: int | str) -> np.random.Generator:
        return np.random.default_rng(self.seed_of("graph", self.swarm.iteration, particle))

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
        self.note(
            f"heterogeneous_swarms iteration {self.swarm.iteration}: dev scores "
            f"{[round(float(s), 4) for s in scores]}, best so far {float(self.best_score):.4f}"
        )
        if (stop or not self.searching) and self._trainer is not None and self.trainer.state.fn == "fit":
            self.trainer.should_stop = True

    def ensure_calibrated(self) -> None:
        """``test`` on an unsearched module runs the whole search on dev first."""
        if bool(self.calibrated):
            return
        self.note("heterogeneous_swarms: no searched graph yet; searching on the dev split first")
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

    def graph_for_test(self) -> np.ndarray:
        """The graph every test question runs: decoded once from the best particle (MoCo), or the
        best graph the search scored."""
        if self.test_graph == "best_evaluated":
            return self.best_graph.cpu().numpy()
        if self._test_graph is None or self._test_graph[0] != self.swarm.iteration:
            weights = self.swarm.global_best.view(len(self.collaborators), -1).numpy()
            graph = decode_graph(weights, self.graph_top_p, self.graph_rng("test"))
            self._test_graph = (self.swarm.iteration, graph)
        return self._test_graph[1]

    def collaborate(self, batch: Batch) -> list[Answer]:
        graph = self.graph_for_test()
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
        """The sink's output per graph and example."""
        if not self.decoding.greedy:  # each graph draws its own samples, as in MoCo
            return [self.run_graphs_together(batch, [graph])[0] for graph in graphs]
        return self.run_graphs_together(batch, graphs)

    def run_graphs_together(self, batch: list[Example], graphs: list[np.ndarray]) -> list[list[str]]:
        """Graphs advance together, one node depth at a time, so each model is asked once per depth
        for all graphs and an identical prompt only once (right for greedy decoding only)."""
        orders = [topological_order(graph) for graph in graphs]
        outputs: list[dict[int, list[str]]] = [{} for _ in graphs]
        ids = Batch.of(batch).ids
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
    """A DAG (``edges[i, j] = 1``: i feeds j) with one sink, from continuous adjacency weights
    (MoCo's decoding).

    The sink is drawn by softmax(1 / out-degree), favouring the node with the weakest outgoing
    weights; then the remaining nodes are placed one at a time, drawn by softmax(out-degree), each
    feeding one already-placed node drawn by softmax(its edge weights). Every draw keeps the most
    likely options up to a share above ``top_p`` and draws among them by a softmax of their
    probabilities (not by the probabilities renormalised).
    """
    weights = np.array(weights, dtype=np.float64)
    np.fill_diagonal(weights, 0.0)
    out_degree = weights.sum(axis=1)
    nodes = len(weights)
    with np.errstate(divide="ignore"):
        placed = [_draw(list(range(nodes)), 1.0 / out_degree, top_p, rng)]
    edges = np.zeros((nodes, nodes), dtype=np.int64)
    remaining = [n for n in range(nodes) if n != placed[0]]
    while remaining:
        node = _draw(remaining, out_degree[remaining], top_p, rng)
        target = _draw(placed, weights[node, placed], top_p, rng)
        edges[node, target] = 1
        placed.append(node)
        remaining.remove(node)
    return edges


def softmax_of_nonzero(scores: np.ndarray) -> np.ndarray:
    """Softmax over the nonzero scores (a zero score means no edge: probability 0). Any +inf
    shares all the mass; -inf and NaN get none; no usable score at all gives uniform."""
    scores = np.asarray(scores, dtype=np.float64)
    probs = np.zeros_like(scores)
    mask = scores != 0
    values = scores[mask]
    if values.size == 0:
        return np.full_like(scores, 1.0 / len(scores))
    if np.isposinf(values).any():
        mass = np.isposinf(values).astype(np.float64)
    else:
        finite = np.isfinite(values)
        mass = np.zeros_like(values)
        if finite.any():
            mass[finite] = np.exp(values[finite] - values[finite].max())
        else:
            mass[:] = 1.0
    probs[mask] = mass / mass.sum()
    return probs


def _draw(options: list[int], scores: np.ndarray, top_p: float, rng: np.random.Generator) -> int:
    probs = softmax_of_nonzero(scores)
    # most likely first, ties to the higher node number; keep options until their share exceeds top_p
    ranked = sorted(range(len(options)), key=lambda k: (probs[k], options[k]), reverse=True)
    kept, share = [], 0.0
    for k in ranked:
        kept.append(k)
        share += probs[k]
        if share > top_p:
            break
    # the draw is always made (one random number per choice, even a forced one)
    chosen = rng.choice([options[k] for k in kept], p=softmax_of_nonzero(probs[kept]))
    return int(chosen)


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
