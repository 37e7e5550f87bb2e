"""BBMAS: agents take turns writing to a shared blackboard until enough of them want to finish.

Each collaborator is an agent. Every iteration ``max_num_agents_to_act`` agents (drawn at random,
seeded per question) read the question and the blackboard, choose one action (propose a strategy,
carry out a step, critique earlier entries, or finish) and then write the chosen contribution as a
new entry. When at least ``min_num_agents_to_stop`` agents of an iteration chose to finish, or after
``max_iterations``, the conclusions of the last iteration are collected and, if there are several,
every agent votes for one; the most voted conclusion is the answer. Each agent speaks with its own
model (MoCo runs every agent on the dev-best model). MoCo: ``text_bbmas``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

from moco_lit.collaborators import Prompt
from moco_lit.errors import UserError
from moco_lit.generation import example_seed
from moco_lit.methods.base import Answer, CollaborationModule, Example
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
    max_num_retries: attempts to get a readable action choice (retries only help when sampling).
    """

    method_name = "bbmas"
    level = "text"

    def __init__(
        self,
        collaborators: list[str | dict],
        max_num_agents_to_act: int = 1,
        min_num_agents_to_stop: int = 1,
        max_iterations: int = 50,
        max_num_retries: int = 3,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        for name, value in (
            ("max_num_agents_to_act", max_num_agents_to_act),
            ("min_num_agents_to_stop", min_num_agents_to_stop),
            ("max_iterations", max_iterations),
            ("max_num_retries", max_num_retries),
        ):
            if value < 1:
                raise UserError(f"bbmas.{name} must be >= 1, got {value}")
        self.max_num_agents_to_act = max_num_agents_to_act
        self.min_num_agents_to_stop = min_num_agents_to_stop
        self.max_iterations = max_iterations
        self.max_num_retries = max_num_retries

    def collaborate(self, batch: list[Example]) -> list[Answer]:
        boards = [Board() for _ in batch]
        for iteration in range(1, self.max_iterations + 1):
            active = [i for i, board in enumerate(boards) if not board.stopped]
            if not active:
                break
            self.run_iteration(batch, boards, active, iteration)
        return self.conclude(batch, boards)

    # -- one iteration: choose actions, carry them out, check for the stop ---------------------

    def run_iteration(
        self, batch: list[Example], boards: list[Board], active: list[int], iteration: int
    ) -> None:
        turns = [(i, agent) for i in active for agent in self.acting_agents(batch[i], iteration)]
        contexts = {
            i: BOARD_PROMPT.format(problem=question_of(batch[i]), board=boards[i].render()) for i in active
        }
        choices: dict[int, tuple[str, str]] = {}  # turn -> (action, selection text)
        pending = list(range(len(turns)))
        attempts = 1 if self.decoding.greedy else self.max_num_retries  # a greedy retry repeats itself
        for attempt in range(attempts):
            step = f"select{iteration}" + (f".retry{attempt}" if attempt else "")
            prompts = [contexts[turns[t][0]] + "\n" + SELECT_PROMPT for t in pending]
            replies = self.ask_turns(batch, [turns[t] for t in pending], prompts, step)
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
        stops: Counter[int] = Counter()
        for t, (i, agent) in enumerate(turns):
            action, text = (choices[t][0], contributions[t]) if t in choices else (None, INVALID_ACTION)
            boards[i].entries.append(Entry(len(boards[i].entries) + 1, agent, iteration, text, action))
            stops[i] += int(action == "terminate")
        for i in active:
            boards[i].iterations = iteration
            boards[i].stopped = stops[i] >= self.min_num_agents_to_stop

    def acting_agents(self, example: Example, iteration: int) -> list[int]:
        rng = random.Random(example_seed(self.hparams.seed, example["id"], "agents", iteration))
        count = min(self.max_num_agents_to_act, len(self.collaborators))
        return sorted(rng.sample(range(len(self.collaborators)), count))

    def ask_turns(
        self, batch: list[Example], turns: list[tuple[int, int]], prompts: list[Prompt], step: str
    ) -> list[str]:
        """Each (example, agent) turn's reply, with one batched call per agent model."""
        replies: list[str] = [""] * len(turns)
        for agent in sorted({agent for _, agent in turns}):
            slots = [k for k, (_, a) in enumerate(turns) if a == agent]
            outputs = self.ask(
                agent, [prompts[k] for k in slots], [batch[turns[k][0]]["id"] for k in slots], step=step
            )
            for k, output in zip(slots, outputs):
                replies[k] = output.text
        return replies

    # -- the end: conclusions of the last iteration, then a vote if there are several ----------

    def conclude(self, batch: list[Example], boards: list[Board]) -> list[Answer]:
        conclusions = [self.conclusions(board) for board in boards]
        contested = [i for i, found in enumerate(conclusions) if len(found) > 1]
        votes: dict[int, list[int | None]] = {i: [] for i in contested}
        if contested:
            for agent in range(len(self.collaborators)):
                prompts = [
                    BOARD_PROMPT.format(problem=question_of(batch[i]), board=boards[i].render())
                    + "\n"
                    + VOTE_PROMPT.format(
                        conclusions="\n\n".join(
                            f"Conclusion #{k}: {text}" for k, (_, text) in enumerate(conclusions[i], 1)
                        )
                    )
                    for i in contested
                ]
                outputs = self.ask(agent, prompts, [batch[i]["id"] for i in contested], step="vote")
                for i, output in zip(contested, outputs):
                    votes[i].append(parse_vote(output.text, len(conclusions[i])))
        answers = []
        for i, board in enumerate(boards):
            counts = Counter(v for v in votes.get(i, []) if v is not None)
            # most votes wins; ties and no valid vote go to the earliest conclusion
            winner = min(counts, key=lambda k: (-counts[k], k)) if counts else 1
            author, text = conclusions[i][winner - 1]
            answers.append(
                Answer(
                    text,
                    by=self.collaborator_names[author] if author is not None else None,
                    details={
                        "iterations": board.iterations,
                        "stopped_by_agents": board.stopped,
                        "actions": [e.action for e in board.entries],
                        "conclusions": len(conclusions[i]),
                        "votes": {str(k): c for k, c in sorted(counts.items())},
                        "winner": winner,
                    },
                )
            )
        return answers

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


def parse_vote(reply: str, count: int) -> int | None:
    """The conclusion number a vote names (the last "Conclusion #k"), None if none is valid."""
    numbers = [int(k) for k in re.findall(r"conclusion\s*#\s*(\d+)", reply, flags=re.IGNORECASE)]
    valid = [k for k in numbers if 1 <= k <= count]
    return valid[-1] if valid else None
