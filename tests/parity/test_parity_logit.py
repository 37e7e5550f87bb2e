"""Logit methods against MoCo's ``LogitArithmetic``: at every step, the distribution the next
token is drawn from is the same, for the same prefix.

Both sides decode the same tiny models (one vocabulary) from the same prompt ids. The token drawn
at each step is scripted and given to both (MoCo draws with ``torch.multinomial``, moco_lit with
a seeded Gumbel-max sampler, two streams that cannot be aligned), so the prefixes stay equal and
each step's distribution is compared: MoCo's ``softmax(fused / T)`` as handed to
``torch.multinomial``, moco_lit's ``softmax(fused / T)`` from the logits its sampler receives.
MoCo loads in bfloat16; here both sides run the same float32 models.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

logit_arithmetic = pytest.importorskip(
    "model_collaboration.utils.logit_arithmetic",
    reason="MoCo (modelco==1.1.2) is not installed: parity tests skipped",
)

from moco_lit.decoding import ModelStream, TokenPicker  # noqa: E402
from moco_lit.methods.logit.logit_contrastive import LogitContrastive  # noqa: E402
from moco_lit.methods.logit.logit_fusion import LogitFusion  # noqa: E402

LogitArithmetic = logit_arithmetic.LogitArithmetic  # before a test swaps it for a recorder
SCRIPTED_TOKENS = [40, 7, 123, 55, 201, 19]  # drawn at steps 1..6 on both sides (none is EOS)
PROMPT = "Question: what is 2 + 3? Answer:"


def lit_steps(module, monkeypatch) -> tuple[list[int], list[torch.Tensor]]:
    """Decode PROMPT with ``module`` drawing SCRIPTED_TOKENS; return the prompt ids and the
    distribution each token was drawn from."""
    streams: list[ModelStream] = []
    init = ModelStream.__init__

    def remember(self, *args, **kwargs):
        init(self, *args, **kwargs)
        streams.append(self)

    distributions: list[torch.Tensor] = []

    def scripted_pick(self, logits):
        decoding = self.sampler.decoding  # the method samples: its temperature, no nucleus cut
        assert decoding.top_p == 1.0
        distributions.append(torch.softmax(logits.float() / decoding.temperature, dim=-1)[0])
        return torch.tensor([SCRIPTED_TOKENS[len(distributions) - 1]])

    monkeypatch.setattr(ModelStream, "__init__", remember)
    monkeypatch.setattr(TokenPicker, "__call__", scripted_pick)
    module.collaborate([{"id": "0", "prompt": PROMPT, "record": {}}])
    stream = streams[0]
    return stream.ids[0][: stream.prompt_lengths[0]], distributions


def moco_steps(paths: list[str], prompt_ids: list[int], arithmetic, temperature: float, monkeypatch):
    """MoCo's token loop over ``paths`` (in MoCo's order) from ``prompt_ids``, drawing the same
    scripted tokens; the distributions handed to ``torch.multinomial``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fused = LogitArithmetic.__new__(LogitArithmetic)  # its own loader casts to bfloat16
    fused.models = [AutoModelForCausalLM.from_pretrained(p, torch_dtype=torch.float32).eval() for p in paths]
    fused.model_devices = ["cpu"] * len(paths)
    fused.tokenizer = AutoTokenizer.from_pretrained(paths[0])
    fused.tokenizer.pad_token = fused.tokenizer.eos_token
    distributions: list[torch.Tensor] = []

    def multinomial(probs, num_samples=1):
        distributions.append(probs[0].clone())
        return torch.tensor([[SCRIPTED_TOKENS[len(distributions) - 1]]])

    monkeypatch.setattr(torch, "multinomial", multinomial)
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = fused.generate(
            arithmetic_func=arithmetic,
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=len(SCRIPTED_TOKENS),
            do_sample=True,
            temprature=temperature,
        )
    assert out[0, len(prompt_ids) :].tolist() == SCRIPTED_TOKENS
    return distributions


def assert_same_distributions(moco: list[torch.Tensor], lit: list[torch.Tensor]) -> None:
    assert len(moco) == len(lit) == len(SCRIPTED_TOKENS)
    for step, (a, b) in enumerate(zip(moco, lit)):
        assert_close(b, a.float(), rtol=1e-4, atol=1e-6, msg=f"step {step + 1}")
    # the steps differ from each other: the comparison sees the prefix grow
    assert not torch.allclose(moco[0], moco[-1])


def test_logit_fusion_draws_from_moco_average_distribution(tiny_models, monkeypatch):
    module = LogitFusion(tiny_models[:2], max_new_tokens=len(SCRIPTED_TOKENS))
    assert (module.decoding.temperature, module.decoding.top_p) == (0.7, 1.0)  # MoCo's defaults
    module.setup("test")
    prompt_ids, lit = lit_steps(module, monkeypatch)
    moco = moco_steps(tiny_models[:2], prompt_ids, logit_arithmetic.average_logits, 0.7, monkeypatch)
    assert_same_distributions(moco, lit)


def _moco_contrastive_choice(tiny_models, dev_scores, k, tmp_path, monkeypatch):
    """Run MoCo's logit_contrastive with scripted dev scores: the models it decodes with, in
    its order (top-k then bottom-k), its logit operation and its decoding arguments."""
    import os

    method = pytest.importorskip("model_collaboration.method.logit_logit_contrastive")
    eval_module = pytest.importorskip("model_collaboration.data.eval")
    generation = pytest.importorskip("model_collaboration.method.distributed_generation")
    (tmp_path / "model_collaboration" / "logs").mkdir(parents=True)  # where MoCo writes its log
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "chdir", lambda path: None)  # run_method moves into its package
    monkeypatch.setattr(eval_module, "prepare_inputs", lambda task, task_type, split, ratio=1.0: [split])
    by_path = dict(zip(tiny_models, dev_scores))
    monkeypatch.setattr(
        generation, "distributed_generation", lambda names, inputs, gpus: [[repr(by_path[n])] for n in names]
    )
    monkeypatch.setattr(
        eval_module, "get_scores", lambda t, tt, split, outputs, ratio=1.0: [float(o) for o in outputs]
    )
    chosen = {}

    class Recorder:
        def __init__(self, model_names, model_devices, tokenizer, **kwargs):
            chosen["models"], self.tokenizer = list(model_names), tokenizer

        def batch_generate(self, prompts, tokenizer, arithmetic_func, **kwargs):
            chosen["operation"], chosen["decoding"] = arithmetic_func, kwargs
            return ["0"] * len(prompts)

    monkeypatch.setattr(method.logit_arithmetic, "LogitArithmetic", Recorder)
    hyperparameters = {"k": k, "lambda_": 0.2, "temperature": 0.7, "batch_size": 1, "max_response_length": 6}
    method.run_method("parity", "exact_match", [0], list(tiny_models), hyperparameters)
    return chosen["models"], chosen["operation"], chosen["decoding"]


@pytest.mark.parametrize(
    "dev_scores",
    [[0.2, 0.9, 0.5], [0.5, 0.9, 0.5], [0.7, 0.7, 0.7]],
    ids=["distinct", "tied-bottom", "all-tied"],
)
def test_logit_contrastive_ranks_and_draws_as_moco(tiny_models, tmp_path, monkeypatch, dev_scores):
    models, operation, decoding = _moco_contrastive_choice(tiny_models, dev_scores, 1, tmp_path, monkeypatch)
    assert decoding["do_sample"] is True and decoding["temprature"] == 0.7  # multinomial, no top-p
    module = LogitContrastive(tiny_models, k=1, max_new_tokens=len(SCRIPTED_TOKENS))
    module.setup("test")
    module.dev_scores.copy_(torch.tensor(dev_scores, dtype=torch.float64))
    module.calibrated.fill_(True)
    top, bottom = module.contrast_models()
    assert [tiny_models[m] for m in top + bottom] == models  # the same top-k and bottom-k
    prompt_ids, lit = lit_steps(module, monkeypatch)
    moco = moco_steps(models, prompt_ids, operation, 0.7, monkeypatch)
    assert_same_distributions(moco, lit)
