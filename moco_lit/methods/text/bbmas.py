"""BBMAS: agents take turns writing to a shared blackboard until enough of them want to finish.

The dev split first picks the collaborator with the best dev score; every agent (one per listed
collaborator) speaks with that model. Each iteration ``max_num_agents_to_act`` agents, drawn at
random (seeded per question), read the question and the blackboard, choose one action (propose a
strategy, carry out a step, critique earlier entries, or finish) and write their choice and the
chosen contribution as one new entry. When at least ``min_num_agents_to_stop`` agents of an
iteration chose to finish, or after ``max_iterations``, the conclusions of the last iteration are
collected and, if there are several, every agent votes for one; the most voted conclusion is the
answer. ``agent_models="own"`` gives each agent its own model instead. MoCo: ``text_bbmas``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule, Example
from moco_lit.methods.text.discussion import question_of

BOARD_PROMPT = """You are one of several agents solving a problem together on a shared blackboard. \
Refer to earlier work as "Entry #<number>".

Problem:
{problem}

Blackboard:
{board}
"""

SELECT_PROMPT = """Look at what is on the blackboard: what has been done, what is missing, and \
whether anything is wrong. Then choose the ONE action that helps most now:
- propose: propose a strategy for solving the problem
- execute: carry out the next step of the solution
- critique: point out and correct mistakes in earlier entries
- terminate: the solution is complete; write the final answer

Think briefly, then end with one line of the form "Action: <propose|execute|critique|terminate>"."""

ACTION_PROMPTS = {
    "propose": "Your choice: propose a strategy. Your reasoning was:\n{thinking}\n\nOutline a plan "
    "(what kind of problem, which ideas to use, the main steps, pitfalls) without solving it yet.",
    "execute": "Your choice: carry out a step. Your reasoning was:\n{thinking}\n\nCarry out the next "
    "step of the solution, showing the work.",
    "critique": "Your choice: critique. Your reasoning was:\n{thinking}\n\nName the entries you check, "
    "the mistakes or gaps in them, and how to fix them.",
    "terminate": "Your choice: finish. Your reasoning was:\n{thinking}\n\nWrite the complete solution, "
    "drawing on the useful entries, as\nFINAL:\n<solution, ending with the final answer>",
}

VOTE_PROMPT = """The agents reached these conclusions:

{conclusions}

Decide which conclusion is most likely correct. End with "I vote for Conclusion #<number>"."""

CONTRIBUTION_HEADER = "\n\n--- contribution ---\n\n"
"""Joins an agent's choice (its reasoning) and its contribution into one entry: both go on the board."""

INVALID_ACTION = "INVALID ACTION"
FINAL_MARKER = "FINAL:"


@dataclass
class Entry:
    number: int
    author: int
    iteration: int
    text: str
    action: str | None


@dataclass
class Board:
    """One question's blackboard and where its discussion stands."""

    entries: list[Entry] = field(default_factory=list)
    iterations: int = 0
    stopped: bool = False

    def render(self) -> str:
        if not self.entries:
            return "(empty)"
        return "\n\n".join(
            f"Entry #{e.number} (agent {e.author + 1}, iteration {e.iteration}):\n{e.text}"
            for e in self.entries
        )


class Bbmas(CollaborationModule):
    """Args:
    max_num_agents_to_act: agents that write per iteration.
    min_num_agents_to_stop: finishing agents in one iteration that end the discussion.
    max_iterations: the discussion ends after this many iterations in any case.
    max_num_retries: attempts to get a readable action choice or vote (retries only when sampling).
    agent_models: ``dev_best`` (MoCo): every agent speaks with the dev-best collaborator; ``own``:
        agent k speaks with collaborator k and no dev split is needed.
    vote_reading: ``first`` (MoCo): a vote is the first "Conclusion #k" in the reply, k >= 1, and an
        unreadable vote counts for conclusion 1; ``last_valid``: the last in-range one, and an
        unreadable vote abstains.
    max_new_tokens, temperature, top_p: MoCo's BBMAS generates up to 8192 tokens at temperature 1.0.
    """

    method_name = "bbmas"
    level = "text"
    needs_calibration = True

    def __init__(
        self,
        collaborators: list[str | dict],
        max_num_agents_to_act: int = 1,
        min_num_agents_to_stop: int = 1,
        max_iterations: int = 10,
        max_num_retries: int = 3,
        agent_models: Literal["dev_best", "own"] = "dev_best",
        vote_reading: Literal["first", "last_valid"] = "first",
        max_new_tokens: int = 8192,
        temperature: float = 1.0,
        top_p: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(
            collaborators, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, **kwargs
        )
        for name, value in (
            ("max_num_agents_to_act", max_num_agents_to_act),
            ("min_num_agents_to_stop", min_num_agents_to_stop),
            ("max_iterations", max_iterations),
            ("max_num_retries", max_num_retries),
        ):
            if value < 1:
                raise UserError(f"bbmas.{name} must be >= 1, got {value}")
        for name, value, allowed in (
            ("agent_models", agent_models, ("dev_best", "own")),
            ("vote_reading", vote_reading, ("first", "last_valid")),
        ):
            if value not in allowed:
                raise UserError(f"bbmas.{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.max_num_agents_to_act = max_num_agents_to_act
        self.min_num_agents_to_stop = min_num_agents_to_stop
        self.max_iterations = max_iterations
        self.max_num_retries = max_num_retries
        self.agent_models = agent_models
        self.vote_reading = vote_reading
        self.needs_calibration = agent_models == "dev_best"

    @property
    def agents(self) -> range:
        return range(len(self.collaborators))

    def model_of(self, agent: int) -> int:
        return self.dev_best if self.agent_models == "dev_best" else agent

    @property
    def attempts(self) -> int:
        return 1 if self.decoding.greedy else self.max_num_retries  # a greedy retry repeats itself

    def collaborate(self, batch: Batch) -> list[Answer]:
        boards = [Board() for _ in batch]
        for iteration in range(1, self.max_iterations + 1):
            active = [i for i, board in enumerate(boards) if not board.stopped]
            if not active:
                break
            self.run_iteration(batch, boards, active, iteration)
        return self.conclude(batch, boards)

    # -- one iteration: each acting agent chooses and writes; then the stop check --------------

    def run_iteration(
        self, batch: list[Example], boards: list[Board], active: list[int], iteration: int
    ) -> None:
        acting = {i: self.acting_agents(batch[i], iteration) for i in active}
        # every agent of an iteration sees the board as it was when the iteration began
        contexts = {
            i: BOARD_PROMPT.format(problem=question_of(batch[i]), board=boards[i].render()) for i in active
        }
        written: dict[int, list[tuple[int, str | None, str]]] = {i: [] for i in active}
        for slot in range(max(len(agents) for agents in acting.values())):
            turns = [(i, acting[i][slot]) for i in active if slot < len(acting[i])]
            for (i, agent), (action, text) in zip(turns, self.take_turns(batch, turns, contexts, iteration)):
                written[i].append((agent, action, text))
        for i in active:
            board = boards[i]
            for agent, action, text in written[i]:
                board.entries.append(Entry(len(board.entries) + 1, agent, iteration, text, action))
            board.iterations = iteration
            finishers = sum(action == "terminate" for _, action, _ in written[i])
            board.stopped = finishers >= self.min_num_agents_to_stop

    def acting_agents(self, example: Example, iteration: int) -> list[int]:
        """The agents that write this iteration, in the order they act."""
        # drawn through this module's `random` (not self.rng) so differential tests can script it
        rng = random.Random(self.seed_of(example["id"], "agents", iteration))
        return rng.sample(list(self.agents), min(self.max_num_agents_to_act, len(self.collaborators)))

    def take_turns(
        self, batch: list[Example], turns: list[tuple[int, int]], contexts: dict[int, str], iteration: int
    ) -> list[tuple[str | None, str]]:
        """(action, entry text) of each (example, agent) turn: choose (retrying unreadable
        choices), then write the chosen contribution."""
        choices: dict[int, tuple[str, str]] = {}  # turn -> (action, choice text)
        pending = list(range(len(turns)))
        for attempt in range(self.attempts):
            prompts = [contexts[turns[t][0]] + "\n" + SELECT_PROMPT for t in pending]
            replies = self.ask_turns(
                batch, [turns[t] for t in pending], prompts, f"select{iteration}.try{attempt}"
            )
            for t, reply in zip(pending, replies):
                action = parse_action(reply)
                if action is not None:
                    choices[t] = (action, reply)
            pending = [t for t in pending if t not in choices]
            if not pending:
                break
        chosen = sorted(choices)
        prompts = [
            contexts[turns[t][0]]
            + "\n"
            + ACTION_PROMPTS[choices[t][0]].format(thinking=choices[t][1].strip())
            for t in chosen
        ]
        contributions = dict(
            zip(chosen, self.ask_turns(batch, [turns[t] for t in chosen], prompts, f"act{iteration}"))
        )
        return [
            (choices[t][0], choices[t][1] + CONTRIBUTION_HEADER + contributions[t])
            if t in choices
            else (None, INVALID_ACTION)
            for t in range(len(turns))
        ]

    def ask_turns(
        self, batch: list[Example], turns: list[tuple[int, int]], prompts: list[str], step: str
    ) -> list[str]:
        """Each (example, agent) turn's reply: one batched call per model and agent (the agent is
        part of the sampling seed, so agents sharing a model still draw their own samples)."""
        replies: list[str] = [""] * len(turns)
        for agent in sorted({agent for _, agent in turns}):
            slots = [k for k, (_, a) in enumerate(turns) if a == agent]
            outputs = self.ask(
                self.model_of(agent),
                [prompts[k] for k in slots],
                [batch[turns[k][0]]["id"] for k in slots],
                step=f"{step}.agent{agent}",
            )
            for k, output in zip(slots, outputs):
                replies[k] = output.text
        return replies

    # -- the end: conclusions of the last iteration, then a vote if there are several ----------

    def conclude(self, batch: list[Example], boards: list[Board]) -> list[Answer]:
        conclusions = [self.conclusions(board) for board in boards]
        contested = [i for i, found in enumerate(conclusions) if len(found) > 1]
        votes = self.vote(batch, boards, conclusions, contested) if contested else {}
        answers = []
        for i, board in enumerate(boards):
            valid = [v for v in votes.get(i, []) if v is not None and 1 <= v <= len(conclusions[i])]
            counts = Counter(valid)
            # most votes wins; a tie goes to the conclusion voted for first; no valid vote: #1
            winner = max(counts, key=lambda k: (counts[k], -valid.index(k))) if counts else 1
            author, text = conclusions[i][winner - 1]
            answers.append(
                Answer(
                    text,
                    by=self.collaborator_names[self.model_of(author)] if author is not None else None,
                    details={
                        "iterations": board.iterations,
                        "stopped_by_agents": board.stopped,
                        "actions": [e.action for e in board.entries],
                        "agents": [e.author for e in board.entries],
                        "conclusions": len(conclusions[i]),
                        "votes": {str(k): c for k, c in sorted(counts.items())},
                        "winner": winner,
                    },
                )
            )
        return answers

    def vote(
        self,
        batch: list[Example],
        boards: list[Board],
        conclusions: list[list[tuple[int | None, str]]],
        contested: list[int],
    ) -> dict[int, list[int | None]]:
        """Every agent's vote on each contested question, in agent order."""
        prompts = {
            i: BOARD_PROMPT.format(problem=question_of(batch[i]), board=boards[i].render())
            + "\n"
            + VOTE_PROMPT.format(
                conclusions="\n\n".join(
                    f"Conclusion #{k}: {text}" for k, (_, text) in enumerate(conclusions[i], 1)
                )
            )
            for i in contested
        }
        votes: dict[int, list[int | None]] = {i: [] for i in contested}
        for agent in self.agents:
            found: dict[int, int] = {}
            pending = list(contested)
            for attempt in range(self.attempts):
                outputs = self.ask(
                    self.model_of(agent),
                    [prompts[i] for i in pending],
                    [batch[i]["id"] for i in pending],
                    step=f"vote.try{attempt}.agent{agent}",
                )
                for i, output in zip(pending, outputs):
                    choice = parse_vote(output.text, len(conclusions[i]), self.vote_reading)
                    if choice is not None:
                        found[i] = choice
                pending = [i for i in pending if i not in found]
                if not pending:
                    break
            for i in contested:
                votes[i].append(found.get(i, 1 if self.vote_reading == "first" else None))
        return votes

    def conclusions(self, board: Board) -> list[tuple[int | None, str]]:
        """(author, text) of the last iteration's final solutions, else of all its entries."""
        if not board.entries:
            return [(None, "No conclusion.")]
        last = [e for e in board.entries if e.iteration == board.entries[-1].iteration]
        finals = [(e.author, e.text.split(FINAL_MARKER)[-1].strip()) for e in last if FINAL_MARKER in e.text]
        return finals or [(e.author, e.text.strip()) for e in last]


def parse_action(reply: str) -> str | None:
    """The action an agent chose: its "Action: X" line, else the one action name it mentions."""
    names = list(ACTION_PROMPTS)
    stated = re.findall(r"action\s*:\s*\**\s*(" + "|".join(names) + r")", reply, flags=re.IGNORECASE)
    if stated:
        return stated[-1].lower()
    mentioned = [name for name in names if re.search(rf"\b{name}\b", reply, flags=re.IGNORECASE)]
    return mentioned[0] if len(mentioned) == 1 else None


def parse_vote(reply: str, count: int, reading: str = "first") -> int | None:
    """The conclusion number a vote names, None if it names none.

    ``first``: the first "Conclusion #k", if k >= 1, in range or not (an out-of-range vote is
    read, then not counted). ``last_valid``: the last one with 1 <= k <= ``count``.
    """
    numbers = [int(k) for k in re.findall(r"conclusion\s*#\s*(\d+)", reply, flags=re.IGNORECASE)]
    if reading == "first":
        return numbers[0] if numbers and numbers[0] >= 1 else None
    valid = [k for k in numbers if 1 <= k <= count]
    return valid[-1] if valid else None
