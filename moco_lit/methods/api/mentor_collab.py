"""MentorCollab: a small generator writes, and at some steps a mentor offers a different continuation.

The generator writes word by word (greedy). Before each word an integer in 1..100 is drawn per
example; below ``decision_proportion`` (25) the mentor's next word is computed too, and where the
two words differ each model writes a ``patch_size`` (16) token continuation from the shared text
and one is kept: ``mode: free`` lets the generator continue the text with a choice between the
two, ``mode: train`` lets a small MLP on hidden states decide. Models hand over text, so they may
come from different families. Wang et al. 2025, "MentorCollab"; MoCo: ``mentor_collab``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

import huggingface_hub
import torch
from torch import nn

from moco_lit.collaborators import RawText, parse_spec
from moco_lit.decoding import DecodingSession, JointDecoder, Patch, PatchRule, module_fingerprint
from moco_lit.dev_table import question_text
from moco_lit.errors import UserError
from moco_lit.generation import example_seed
from moco_lit.methods.core.dev_trained import DevTrainedModule
from moco_lit.methods.core.module import Answer, Batch

log = logging.getLogger(__name__)

# judge: continue, the generator reads its own text followed by this and writes "A" or "B"; the
# MLP reads the generator's last hidden state before CHOICE_CUE
CHOICE_QUESTION = "\n\nTwo ways to go on from here. (A): {option_a} (B): {option_b}. "
CHOICE_CUE = "The one that leads to the right answer is ("

# judge: ask, a separate request to the generator
JUDGE_PROMPT = (
    "Question:\n{question}\n\nAnswer written so far:\n{so_far}\n\n"
    "Two ways to continue it:\n(A) {option_a}\n(B) {option_b}\n\n"
    "Which continuation is more likely to lead to a correct answer? Reply with A or B only."
)

GENERATOR, MENTOR = 0, 1

# MoCo's pretrained branch MLPs (``mlp: moco``): one per supported generator and task domain
MOCO_MLP_REPO = "SeanWang0027/MentorCollab-MLP"
MOCO_MLP_FOLDERS = {
    "Qwen/Qwen3-1.7B": "Qwen3_1.7B",
    "Qwen/Qwen3-8B-Base": "qwen3_8B_base",
    "meta-llama/Llama-3.1-8B": "llama3_1_8B",
    "meta-llama/Llama-3.2-3B-Instruct": "llama3_2_3B",
    "google/gemma-3-4b-it": "gemma3_4b_it",
    "google/gemma-3-4b-pt": "gemma3_4b_pt",
}
WORD_TOKENS = 11  # a word is at most its first token and ten more (MoCo's limit)


def tokens_agree(a: str, b: str) -> bool:
    """Two next tokens agree when their texts match or one starts the other (tokenizers of different
    families split the same word differently); an end of sequence ("") agrees only with itself."""
    return a == b or bool(a and b and (a.startswith(b) or b.startswith(a)))


class MentorRule(PatchRule):
    """The generator writes step by step (``steps``: a word, or a token); at drawn steps where the
    two models' next steps differ, both write a patch and ``choose(session, rows,
    generator_patches, mentor_patches, features)`` says, per row, whether the mentor's is kept.
    ``features`` are the generator's last hidden state at the branch point and each model's after
    its own patch, concatenated (what the MLP trained here reads). ``trace`` keeps every step."""

    def __init__(
        self,
        proportion: float,
        patch_size: int,
        choose: Callable[[DecodingSession, list[int], list[Patch], list[Patch], torch.Tensor], list[bool]],
        key: str,
        collect: bool = False,
        steps: Literal["word", "token"] = "word",
    ) -> None:
        self.proportion, self.patch_size, self.choose, self.key, self.collect = (
            proportion,
            patch_size,
            choose,
            key,
            collect,
        )
        self.steps = steps
        self.trace: list[list[dict]] = []
        self.decisions: list[dict] = []  # with ``collect``: every branch point, for training

    def reset(self, batch_size: int) -> None:
        self.trace = [[] for _ in range(batch_size)]
        self.decisions = []

    def run(self, session: DecodingSession) -> None:
        if self.steps == "word":
            self._run_words(session)
        else:
            self._run_tokens(session)

    def _run_words(self, session: DecodingSession) -> None:
        """MoCo's loop: the generator's next word; below the drawn share, the mentor's too, and a
        branch where the two words differ as strings. The budget counts the generator's tokens of
        the text written so far, checked before each step (the last step may overshoot it)."""
        draws = [random.Random(example_seed(seed, "decisions")) for seed in session.seeds]
        while not session.finished():
            rows = session.writing_rows()
            own = dict(zip(rows, session.write_word(GENERATOR, rows, WORD_TOKENS)))
            consulted = [row for row in rows if draws[row].randint(1, 100) < self.proportion]
            mentor = (
                dict(zip(consulted, session.write_word(MENTOR, consulted, WORD_TOKENS))) if consulted else {}
            )
            differing = [row for row in consulted if mentor[row].text != own[row].text]
            for row in rows:
                step = {"at_token": session.new_tokens[row], "word": own[row].text}
                if row in mentor:
                    step["mentor_word"] = mentor[row].text
                self.trace[row].append(step)
            alone = [row for row in rows if row not in set(differing)]
            if alone:
                self._commit_text(session, alone, [own[row] for row in alone], [GENERATOR] * len(alone))
            if differing:
                self._branch(session, differing)

    def _commit_text(
        self, session: DecodingSession, rows: list[int], pieces: Sequence[Patch], authors: list[int]
    ) -> None:
        """Commit text that every model re-reads as text; the count is the generator's tokens of the
        whole text written so far. A step that adds nothing and does not end the row ends it."""
        tokenizer = session.streams[GENERATOR].tokenizer
        totals = tokenizer(
            [session.texts[row] + p.text for row, p in zip(rows, pieces)], add_special_tokens=False
        )
        session.commit(
            rows,
            [p.text for p in pieces],
            authors,
            ended=[p.ended or not p.text for p in pieces],
            tokens=[len(ids) - session.new_tokens[row] for row, ids in zip(rows, totals["input_ids"])],
            author_holds_text=False,
        )

    def _run_tokens(self, session: DecodingSession) -> None:
        draws = [random.Random(example_seed(seed, "decisions")) for seed in session.seeds]
        while not session.finished():
            rows = session.writing_rows()
            deciding = [row for row in rows if draws[row].random() * 100 < self.proportion]
            differing: list[int] = []
            if deciding:
                own = session.next_token_texts(GENERATOR, deciding)
                mentor = session.next_token_texts(MENTOR, deciding)
                differing = [row for row, a, b in zip(deciding, own, mentor) if not tokens_agree(a, b)]
            alone = [row for row in rows if row not in set(differing)]
            if alone:
                patches = session.write_patch(GENERATOR, alone, 1)
                _commit(session, alone, patches, [GENERATOR] * len(alone))
            if differing:
                self._branch(session, differing)

    def _branch(self, session: DecodingSession, rows: list[int]) -> None:
        session.sync(GENERATOR)  # back at the joint text (a word step leaves its word in the cache)
        index = torch.tensor(rows, device=session.streams[GENERATOR].hidden.device)
        at_branch = session.streams[GENERATOR].hidden[index].clone()
        words = self.steps == "word"
        sizes = [self.patch_size if words else min(self.patch_size, session.remaining(row)) for row in rows]
        own = session.write_patch(GENERATOR, rows, sizes)
        own_end = session.streams[GENERATOR].hidden[index].clone()
        mentor = session.write_patch(MENTOR, rows, sizes)
        mentor_end = session.streams[MENTOR].hidden[index.to(session.streams[MENTOR].hidden.device)].clone()
        features = torch.cat([at_branch, own_end, mentor_end.to(at_branch.device)], dim=-1)
        take_mentor = self.choose(session, rows, own, mentor, features)
        for i, row in enumerate(rows):
            if not words:
                self.trace[row].append({"at_token": session.new_tokens[row]})
            self.trace[row][-1].update(patches=[own[i].text, mentor[i].text], mentor=take_mentor[i])
            if self.collect:
                self.decisions.append(
                    {
                        "row": row,
                        "prefix": session.texts[row],
                        "tokens": session.new_tokens[row],
                        "patches": (own[i], mentor[i]),
                        "features": features[i],
                    }
                )
        kept = [mentor[i] if take else own[i] for i, take in enumerate(take_mentor)]
        authors = [MENTOR if take else GENERATOR for take in take_mentor]
        (self._commit_text if words else _commit)(session, rows, kept, authors)

    def row_details(self, row: int) -> dict:
        steps = [step for step in (self.trace[row] if row < len(self.trace) else []) if "mentor" in step]
        return {"decisions": len(steps), "mentor_patches": sum(1 for step in steps if step["mentor"])}


def _commit(session: DecodingSession, rows: list[int], patches: Sequence[Patch], authors: list[int]) -> None:
    session.commit(
        rows,
        [p.text for p in patches],
        authors,
        ended=[p.ended for p in patches],
        tokens=[p.tokens for p in patches],
    )


class PretrainedBranchMLP(nn.Module):
    """The layout of MoCo's pretrained MLPs, so their weights load: the generator's last hidden
    state at the choice question, through widths 2h, h (each with batch norm, ReLU and dropout)
    and h/2, to one logit of the probability that the generator's continuation is better."""

    def __init__(self, width: int, dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = width
        for out in (2 * width, width):
            layers += [nn.Linear(size, out), nn.BatchNorm1d(out), nn.ReLU(), nn.Dropout(dropout)]
            size = out
        self.mlp = nn.Sequential(*layers, nn.Linear(size, width // 2), nn.Dropout(dropout))
        self.linear = nn.Linear(width // 2, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(self.mlp(hidden)).squeeze(-1)


class BranchMLP(nn.Module):
    """Probability that the generator's continuation is the better one (what MoCo's MLP outputs),
    from branch-point features."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features).squeeze(-1)  # a logit; sigmoid gives the probability


class MentorCollab(DevTrainedModule):
    """Args:
    mode: ``free`` (the generator judges the two continuations) or ``train`` (an MLP trained in
        ``fit`` on dev decisions judges).
    decision_proportion: the mentor is consulted where an integer drawn in 1..100 is below it, so
        at ``decision_proportion - 1`` percent of steps (MoCo's rule and its default, 25).
    patch_size: tokens each model writes at a branch point (the last one may pass the budget).
    steps: ``word`` (MoCo): the models step by whole words, each token read from the re-tokenised
        text, and agree when their words are the same string; ``token``: single tokens through
        the KV caches, agreeing when one token's text starts the other's (fewer forward passes,
        and a tokenizer's split of a word does not count as disagreement).
    judge: ``continue`` (MoCo): the generator reads the text so far followed by the two options
        and writes "A" or "B"; ``ask``: the generator answers a separate request naming the
        question, the text so far and the options (read through its chat template).
    prompt: ``chat`` renders the prompt with each model's chat template; ``raw`` (MoCo) feeds
        the bare prompt text, with only the start token the tokenizer adds itself.
    mlp: ``moco`` (MoCo): ``mode: train`` uses MoCo's pretrained MLP for the generator (one of
        six hub models) and ``mlp_task``, reading the generator's last hidden state after the
        text so far and the choice question; ``trained``: an MLP trained here in ``fit`` on dev
        decisions (any generator), reading hidden states at and after the branch.
    mlp_task: the domain of MoCo's pretrained MLP, ``General`` or ``Math`` (MoCo's ``task``).
    mlp_threshold: ``train`` keeps the generator's continuation when the MLP's probability that
        it is the better one exceeds this, the mentor's otherwise (MoCo's rule).
    mlp_hidden: hidden width of the MLP.
    learning_rate: AdamW learning rate of the MLP.
    lr_schedule: ``constant`` or ``cosine`` (the MLP is trained here only: MoCo ships it trained).

    Training labels (``fit``, ``mode: train``): dev questions are decoded with a seeded coin at each
    branch point (so both kinds of branch are visited); each branch is then finished by the
    generator alone and scored with the task metric. The label is 1 (generator) when the
    generator's branch scores higher, 0 when the mentor's does; on a tie, the branch the
    generator finishes more fluently (higher mean token log-probability) wins. MoCo instead ships
    MLPs pre-trained for six generators (reading the generator's hidden state at its choice
    question), which this does not use.

    Decoding is greedy (MoCo's loop ignores the run's temperature); a row ends at an end of
    sequence, where MoCo writes the end token's text and goes on to its budget.
    """

    method_name = "mentor_collab"
    report_label_args = ("mode",)
    level = "api"
    min_collaborators = 2
    max_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        mode: Literal["free", "train"] = "free",
        decision_proportion: float = 25,
        patch_size: int = 16,
        steps: Literal["word", "token"] = "word",
        judge: Literal["continue", "ask"] = "continue",
        prompt: Literal["chat", "raw"] = "chat",
        mlp: Literal["moco", "trained"] = "moco",
        mlp_task: Literal["General", "Math"] = "General",
        mlp_threshold: float = 0.5,
        mlp_hidden: int = 64,
        learning_rate: float = 1e-3,
        lr_schedule: Literal["cosine", "constant"] = "constant",
        temperature: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(
            collaborators,
            learning_rate=learning_rate,
            lr_schedule=lr_schedule,
            temperature=temperature,
            **kwargs,
        )
        for name, value, allowed in (
            ("mode", mode, ("free", "train")),
            ("steps", steps, ("word", "token")),
            ("judge", judge, ("continue", "ask")),
            ("prompt", prompt, ("chat", "raw")),
            ("mlp", mlp, ("moco", "trained")),
            ("mlp_task", mlp_task, ("General", "Math")),
        ):
            if value not in allowed:
                raise UserError(f"mentor_collab.{name} must be {' or '.join(allowed)}, got {value!r}")
        if not 0 <= decision_proportion <= 100:
            raise UserError(f"mentor_collab.decision_proportion is a percentage, got {decision_proportion}")
        if patch_size < 1:
            raise UserError(f"mentor_collab.patch_size must be at least 1, got {patch_size}")
        self.mode = mode
        self.trains = mode == "train" and mlp == "trained"  # only then is there anything to fit
        self.needs_calibration = self.trains
        self.mlp: BranchMLP | PretrainedBranchMLP | None = None
        self._features = torch.empty(0)
        self._labels = torch.empty(0)

    # -- the MLP -------------------------------------------------------------------------------

    def configure_model(self) -> None:
        if self.mode != "train" or self.mlp is not None:
            return
        widths = [c.model.get_output_embeddings().weight.shape[1] for c in self.collaborators]
        if self.trains:
            self.mlp = BranchMLP(2 * widths[GENERATOR] + widths[MENTOR], self.hparams.mlp_hidden)
        else:
            self.mlp = self.load_pretrained_mlp(widths[GENERATOR])
        self.mlp.to(self.device)

    def load_pretrained_mlp(self, width: int) -> PretrainedBranchMLP:
        """MoCo's pretrained MLP for the generator and ``mlp_task``, from the hub."""
        generator = parse_spec(self.collaborator_specs[GENERATOR]).path
        folder = MOCO_MLP_FOLDERS.get(generator)
        if folder is None:
            raise UserError(
                f"mentor_collab.mlp moco has pretrained MLPs only for the generators "
                f"{', '.join(MOCO_MLP_FOLDERS)}, got {generator!r}; use --model.mlp trained (fit trains one)"
            )
        path = huggingface_hub.hf_hub_download(
            MOCO_MLP_REPO, "branch_mlp.pth", subfolder=f"{folder}/{self.hparams.mlp_task}"
        )
        mlp = PretrainedBranchMLP(width)
        mlp.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return mlp.eval()

    def generator_probability(self, features: torch.Tensor) -> torch.Tensor:
        weight = next(self.mlp.parameters())
        return torch.sigmoid(self.mlp(features.to(weight.device, weight.dtype)).float())

    # -- decoding ------------------------------------------------------------------------------

    def rule(self, ids_by_prompt: dict[str, str], collect: bool = False) -> MentorRule:
        hp = self.hparams
        free = self._continue_choice if hp.judge == "continue" else self._ask_generator
        choose = self._coin if collect else free if self.mode == "free" else self._ask_mlp
        wording = CHOICE_QUESTION + CHOICE_CUE + JUDGE_PROMPT
        judge = hashlib.sha256(wording.encode()).hexdigest()[:8]
        head = module_fingerprint(self.mlp) if self.mode == "train" else f"{hp.judge}:{judge}"
        key = (
            f"mentor_collab(mode={self.mode},p={hp.decision_proportion},patch={hp.patch_size},"
            f"steps={hp.steps},judge={head},threshold={hp.mlp_threshold},mlp={hp.mlp}:generator)"
        )
        self._ids_by_prompt = ids_by_prompt
        return MentorRule(hp.decision_proportion, hp.patch_size, choose, key, collect, hp.steps)

    def prompts_of(self, batch: list[dict]) -> list:
        return [RawText(e["prompt"]) if self.hparams.prompt == "raw" else e["prompt"] for e in batch]

    def _continue_choice(
        self,
        session: DecodingSession,
        rows: list[int],
        own: list[Patch],
        mentor: list[Patch],
        _: torch.Tensor,
    ) -> list[bool]:
        """The generator's greedy next token after the text so far and the choice: "B" keeps the
        mentor's continuation (exactly that token, as MoCo reads it)."""
        suffixes = [
            CHOICE_QUESTION.format(option_a=a.text, option_b=b.text) + CHOICE_CUE for a, b in zip(own, mentor)
        ]
        return [text == "B" for _, text in session.next_tokens_after(GENERATOR, rows, suffixes)]

    def _ask_generator(
        self,
        session: DecodingSession,
        rows: list[int],
        own: list[Patch],
        mentor: list[Patch],
        _: torch.Tensor,
    ) -> list[bool]:
        prompts = [
            JUDGE_PROMPT.format(
                question=question_text(session.prompts[row]),
                so_far=session.texts[row],
                option_a=a.text,
                option_b=b.text,
            )
            for row, a, b in zip(rows, own, mentor)
        ]
        ids = [self._ids_by_prompt[repr(session.prompts[row])] for row in rows]
        # a one-letter greedy answer whatever the method's own sampling settings (MoCo's generator
        # decodes greedily); thinking stays off, as it always has for this call
        judge = replace(self.decoding, max_new_tokens=2, temperature=0.0, top_p=1.0, enable_thinking=False)
        replies = self.ask(GENERATOR, prompts, ids, step="judge", decoding=judge)
        return [reply.text.strip()[:1].upper() == "B" for reply in replies]

    def _ask_mlp(
        self,
        session: DecodingSession,
        rows: list[int],
        own: list[Patch],
        mentor: list[Patch],
        features: torch.Tensor,
    ) -> list[bool]:
        if not self.trains:  # MoCo's MLP reads the generator after the text and the question
            questions = [
                CHOICE_QUESTION.format(option_a=a.text, option_b=b.text) for a, b in zip(own, mentor)
            ]
            session.next_tokens_after(GENERATOR, rows, questions)
            stream = session.streams[GENERATOR]
            features = stream.hidden[torch.tensor(rows, device=stream.hidden.device)]
            self.mlp.eval()
        with torch.no_grad():
            return (self.generator_probability(features) <= self.hparams.mlp_threshold).tolist()

    def _coin(
        self,
        session: DecodingSession,
        rows: list[int],
        own: list[Patch],
        mentor: list[Patch],
        _: torch.Tensor,
    ) -> list[bool]:
        return [
            random.Random(example_seed(session.seeds[row], "explore", session.new_tokens[row])).random() < 0.5
            for row in rows
        ]

    def collaborate(self, batch: Batch) -> list[Answer]:
        ids = batch.ids
        prompts = self.prompts_of(batch)
        rule = self.rule({repr(p): i for p, i in zip(prompts, ids)})
        outputs = self.ask_joint([GENERATOR, MENTOR], prompts, ids, rule, step="mentor_collab")
        names = self.collaborator_names
        answers = []
        for output in outputs:
            details = {
                "mode": self.mode,
                "decisions": output.details.get("decisions"),
                "mentor_patches": output.details.get("mentor_patches"),
                "segments": [[names[m], text] for m, text in output.details.get("segments", [])],
            }
            answers.append(Answer(output.text, by=names, details=details))
        return answers

    # -- fit: dev decisions, their labels, the MLP's epochs -------------------------------------

    def ensure_calibrated(self) -> None:
        if self.trains:
            super().ensure_calibrated()

    def on_fit_start(self) -> None:
        self.calibrated.fill_(True)
        if not self.trains:
            log.info("mentor_collab: nothing to train (mode free, or MoCo's pretrained MLP)")
            return
        features, labels = [], []
        datamodule = self.trainer.datamodule
        for batch in datamodule.train_dataloader():
            batch_features, batch_labels = self.label_dev_decisions(batch)
            features += batch_features
            labels += batch_labels
        self._example_cost.clear()
        if not features:
            raise UserError(
                "mentor_collab found no dev step where the two models' next tokens differ; "
                "raise decision_proportion or use more dev questions (data.dev_limit)"
            )
        self._features = torch.stack(features).float()
        self._labels = torch.tensor(labels, dtype=torch.float32)
        log.info("mentor_collab: %d dev decisions, %d labelled generator", len(labels), sum(labels))

    def label_dev_decisions(self, batch: list[dict]) -> tuple[list[torch.Tensor], list[int]]:
        """Decode a dev batch exploring branches at random, then label each branch point."""
        decoder = JointDecoder(self.collaborators, self.decoding, batch_size=self.generation_batch)
        prompts = self.prompts_of(batch)
        seeds = [self.seed_of(example_id, "dev") for example_id in Batch.of(batch).ids]
        rule = self.rule({repr(p): e["id"] for p, e in zip(prompts, batch)}, collect=True)
        decoder.run_batch(prompts, rule, seeds)
        if not rule.decisions:
            return [], []
        # each branch finished by the generator alone, both branches of all decisions in one session
        rows = [d["row"] for d in rule.decisions for _ in range(2)]
        session = decoder.open([prompts[row] for row in rows], [seeds[row] for row in rows])
        branches = [(d, patch) for d in rule.decisions for patch in d["patches"]]
        everything = list(range(len(branches)))
        session.commit(
            everything,
            [d["prefix"] + patch.text for d, patch in branches],
            GENERATOR,
            ended=[patch.ended for _, patch in branches],
            tokens=[d["tokens"] + patch.tokens for d, patch in branches],
            author_holds_text=False,
        )
        going = session.writing_rows()
        endings = dict(
            zip(going, session.write_patch(GENERATOR, going, [session.remaining(r) for r in going]))
        )
        texts = [session.texts[i] + (endings[i].text if i in endings else "") for i in everything]
        scores = self.score(texts, [batch[row] for row in rows])
        labels = []
        for i in range(len(rule.decisions)):
            own, mentor = (_number(scores[2 * i]), _number(scores[2 * i + 1]))
            if own == mentor:  # tie: the branch the generator carries on more fluently
                own, mentor = (_fluency(endings.get(2 * i)), _fluency(endings.get(2 * i + 1)))
            labels.append(int(own >= mentor))  # 1: the generator's branch is as good or better
        return [d["features"] for d in rule.decisions], labels

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor | None:
        if not self.trains:
            return None
        chunk = _chunk(len(self._labels), batch_idx, self.trainer.num_training_batches)
        if len(chunk) == 0:
            return None
        logits = self.mlp(self._features[chunk].to(self.mlp.layers[1].weight))
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits.float(), self._labels[chunk].to(logits.device)
        )
        self.log("train/loss", loss, batch_size=len(chunk), prog_bar=True)
        return loss

    def configure_optimizers(self):
        return super().configure_optimizers() if self.trains else None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["mentor_collab"] = {
            "decisions": len(self._labels),
            "generator_labels": int(self._labels.sum()) if len(self._labels) else 0,
        }


def _chunk(size: int, index: int, count: int) -> torch.Tensor:
    """Positions of the ``index``-th of ``count`` near-equal slices of ``range(size)``."""
    per = math.ceil(size / max(count, 1))
    return torch.arange(index * per, min((index + 1) * per, size))


def _number(score: float | None) -> float:
    return -math.inf if score is None else float(score)


def _fluency(ending: Patch | None) -> float:
    return ending.logprob / ending.tokens if ending is not None and ending.tokens else -math.inf
