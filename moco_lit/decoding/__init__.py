"""Token-level joint decoding over several models (one-model decoding is `generation/`'s).

Every collaborator taking part keeps its **own KV cache** for the whole batch (a
:class:`ModelStream`), so a decoding step feeds each model only the tokens that are new to it: the
cost of a step stays flat instead of growing with the length (MoCo re-runs the whole sequence
through every model at every step). Rows are left-padded; each stream keeps its attention mask and
explicit position ids, so rows of different lengths, finished rows and rolled-back tokens (masked
out in place) never disturb each other.

How methods use it
------------------
``JointDecoder(collaborators, decoding, cache=...).generate(prompts, rule, seeds)`` returns one
:class:`JointGeneration` per prompt (through the generation cache: the key holds every model's
fingerprint, every rendered prompt, the rule's ``key`` and the decoding parameters, so reruns are
free). ``usage`` on each result says how many tokens each model read, for cost accounting
(``CollaborationModule.ask_joint`` does the bookkeeping for a method). The ``rule`` says who decides
the next token:

- a :class:`FuseRule` maps the models' next-token logits (same vocabulary, one id space) to one
  set of logits: :func:`identity`, :func:`average`, :func:`weighted_sum`, :func:`contrast`
  (top-k minus bottom-k); rules that read hidden states or the step override ``fuse`` (Co-LLM's
  ``Deferral`` and ``DeferralHead``, in ``methods/api/collm_rules.py``). The chosen id is
  appended to every model's cache. Different vocabularies raise a ``UserError`` naming both
  tokenizers (:func:`check_same_vocabulary`).
- a :class:`SwitchRule` picks, per row and step, which model writes the next token
  (nudging's ``ThresholdSwitch``, in ``methods/api/nudging_rules.py``). Models then exchange **text**: the author's token is
  appended to its own cache; a model with the same vocabulary receives the ids; any other model
  re-tokenises the joint text and only the tokens that changed at the end are rebuilt (rolled back
  by masking, then fed again), so mixed tokenizer families work.

Patch-level methods (mentor_collab, switch_generation) drive a :class:`DecodingSession` by hand::

    session = decoder.open(prompts, seeds)           # one batch; prefills every model
    while not session.finished():
        rows = session.active_rows()
        patch_a = session.write_patch(0, rows, 16)   # model 0 alone writes up to 16 tokens
        patch_b = session.write_patch(1, rows, 16)   # model 1 writes from the same joint prefix
        keep = my_chooser(patch_a, patch_b)          # any decision (a judge, an MLP, ...)
        session.commit(rows, [p.text for p in kept], author=..., ended=[p.ended for p in kept])
    results = session.results()

A :class:`PatchRule` packages such a loop (``run(session)``) so that ``generate`` / ``ask_joint``
run it through the generation cache and cost accounting like any other rule.
``write_patch`` advances only the writer's cache (one size or one per row; ``Patch.logprob`` is
the writer's log-probability of it); ``commit`` appends the kept text to the joint
text and brings every other stream in line (a stream whose own patch was rejected rolls it back).
``session.streams[m].logits`` / ``hidden`` give a model's next-token logits / last hidden state at
the joint prefix after a ``sync(m)``, for choosers that look at them. Sampling is reproducible per
row: each row (and each model proposing in it) has its own seeded Gumbel-max generator
(``generation.SeededSampler``), so a row's output does not depend on the rest of its batch.

Modules: ``rules`` (the generic rules), ``vocab`` (one id space or not), ``stream`` (one model's KV
cache over a batch), ``session`` (one batch decoded jointly), ``joint`` (the cached entry point).
"""

from moco_lit.decoding.joint import ENGINE_VERSION, JointDecoder
from moco_lit.decoding.rules import (
    FuseRule,
    PatchRule,
    StepView,
    SwitchRule,
    average,
    contrast,
    identity,
    module_fingerprint,
    weighted_sum,
)
from moco_lit.decoding.session import FUSED, DecodingSession, JointGeneration, Patch
from moco_lit.decoding.stream import ModelStream, TokenPicker
from moco_lit.decoding.vocab import check_same_vocabulary, same_vocabulary

__all__ = [
    "ENGINE_VERSION",
    "FUSED",
    "DecodingSession",
    "FuseRule",
    "JointDecoder",
    "JointGeneration",
    "ModelStream",
    "Patch",
    "PatchRule",
    "StepView",
    "SwitchRule",
    "TokenPicker",
    "average",
    "check_same_vocabulary",
    "contrast",
    "identity",
    "module_fingerprint",
    "same_vocabulary",
    "weighted_sum",
]
