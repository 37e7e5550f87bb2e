"""Structure: collaborators discuss over a fixed communication graph; each reads only its neighbours.

Every collaborator answers alone, then for ``num_rounds`` − 1 rounds each rewrites its answer after
reading its neighbours' previous answers on the graph ``structure_type`` (a node nobody talks to
keeps its answer). The final answer of the collaborator with the best dev score is the output.
Topologies as in multi-agent graph studies (e.g. "Exchange-of-Thought", Yin et al. 2023; Zhuge et al.
2024 GPTSwarm). MoCo: ``text_structure``.
"""

from __future__ import annotations

import logging
from typing import Literal

from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule
from moco_lit.methods.text.discussion import (
    Example,
    Texts,
    ask_each,
    check_template,
    first_round,
    numbered_list,
    question_of,
    transcript,
)

log = logging.getLogger(__name__)

UPDATE_TEMPLATE = (
    "Question: {question}\n\n"
    "You answered this question before; some other assistants answered it too. Reconsider your "
    "answer in the light of theirs.\n\n"
    "Your previous answer: {own}\n\n"
    "Answers of other assistants:\n{neighbours}\n\n"
    "Think it over and write your updated answer."
)

StructureType = Literal["chain", "tree", "star", "hub", "circle", "complete", "other"]


def neighbours_of(structure_type: str, count: int, matrix: list[list[int]] | None = None) -> list[list[int]]:
    """``result[i]``: the nodes whose answers node ``i`` reads, in index order.

    Built-in graphs are undirected (as in MoCo). ``chain``: i-1 and i+1; ``circle``: the chain
    closed into a ring; ``tree``: the binary heap order (parent (i-1)//2, children 2i+1, 2i+2);
    ``star``: MoCo's star, node 0 joined to everyone and the other nodes in a ring 1—2—…—(n-1)—1;
    ``hub``: node 0 joined to everyone and nothing else; ``complete``: everyone. ``other``:
    ``matrix[j][i]`` = 1 means node i reads node j (rows send, columns receive; the diagonal is
    ignored). With two models MoCo's star also has node 1 read its own answer as a neighbour's;
    here it is the single edge 0—1.
    """
    nodes = range(count)
    if structure_type == "other":
        return [[j for j in nodes if j != i and matrix[j][i]] for i in nodes]
    edges: set[tuple[int, int]] = set()
    if structure_type == "complete":
        edges = {(i, j) for i in nodes for j in nodes}
    elif structure_type == "chain":
        edges = {(i, i + 1) for i in range(count - 1)}
    elif structure_type == "circle":
        edges = {(i, (i + 1) % count) for i in nodes}
    elif structure_type == "tree":
        edges = {((child - 1) // 2, child) for child in range(1, count)}
    elif structure_type in ("star", "hub"):
        edges = {(0, i) for i in range(1, count)}
        if structure_type == "star" and count > 2:
            edges |= {(i, i % (count - 1) + 1) for i in range(1, count)}
    else:
        raise UserError(
            f"structure.structure_type {structure_type!r}: expected chain, tree, star, hub, circle, complete or other"
        )
    undirected = edges | {(j, i) for i, j in edges}
    return [sorted(j for j in nodes if j != i and (j, i) in undirected) for i in nodes]


def check_matrix(matrix: list[list[int]] | None, count: int) -> list[list[int]]:
    if matrix is None:
        raise UserError(
            "structure.structure_type 'other' needs structure_matrix (a 0/1 matrix, one row per model)"
        )
    square = len(matrix) == count and all(len(row) == count for row in matrix)
    if not square or any(value not in (0, 1) for row in matrix for value in row):
        raise UserError(
            f"structure.structure_matrix must be a {count}x{count} matrix of 0/1 "
            f"(matrix[j][i] = 1: model i reads model j), got {matrix!r}"
        )
    return [list(row) for row in matrix]


class Structure(CollaborationModule):
    """Args:
    structure_type: the graph: chain, tree, star (MoCo's: hub and ring), hub, circle, complete, or
        other (give the matrix).
    num_rounds: rounds of answering, the first one included.
    structure_matrix: for ``other``, ``matrix[j][i] = 1`` when model i reads model j's answers.
    update_template: a node's prompt in later rounds; fields ``{question}``, ``{own}``, ``{neighbours}``.
    """

    method_name = "structure"
    report_label_args = ("structure_type",)
    level = "text"
    needs_calibration = True
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        structure_type: StructureType,
        num_rounds: int = 3,
        structure_matrix: list[list[int]] | None = None,
        update_template: str = UPDATE_TEMPLATE,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if num_rounds < 1:
            raise UserError(f"structure.num_rounds must be >= 1, got {num_rounds}")
        if structure_type == "other":
            structure_matrix = check_matrix(structure_matrix, len(collaborators))
        elif structure_matrix is not None:
            log.warning("structure: structure_matrix is ignored unless structure_type is 'other'")
        check_template(
            self.method_name, "update_template", update_template, {"question", "own", "neighbours"}
        )
        self.structure_type = structure_type
        self.num_rounds = num_rounds
        self.neighbours = neighbours_of(structure_type, len(collaborators), structure_matrix)
        self.update_template = update_template

    def collaborate(self, batch: Batch) -> list[Answer]:
        rounds = [first_round(self, batch)]
        for number in range(2, self.num_rounds + 1):
            rounds.append(self.update(batch, rounds[-1], step=f"round{number}"))
        final = self.dev_best
        names = self.collaborator_names
        seen = {names[i]: [names[j] for j in reads] for i, reads in enumerate(self.neighbours)}
        return [
            Answer(
                rounds[-1][final][i],
                by=names[final],
                details={**entry, "neighbours": seen, "final_node": names[final]},
            )
            for i, entry in enumerate(transcript(self, rounds, batch))
        ]

    def update(self, batch: list[Example], previous: Texts, step: str) -> Texts:
        """Nodes with neighbours rewrite their answers (one call per model); the others keep theirs."""
        ids = Batch.of(batch).ids
        prompts = [
            [
                self.update_template.format(
                    question=question_of(example),
                    own=previous[m][i],
                    neighbours=numbered_list([previous[j][i] for j in reads]),
                )
                for i, example in enumerate(batch)
            ]
            if reads
            else []
            for m, reads in enumerate(self.neighbours)
        ]
        updated = ask_each(self, prompts, [ids] * len(prompts), step)
        return [
            texts if reads else previous[m] for m, (texts, reads) in enumerate(zip(updated, self.neighbours))
        ]
