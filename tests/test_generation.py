"""The generation engine: equals model.generate, reproducible sampling, think stripping, cache."""

from __future__ import annotations

import torch

from moco_lit.cache import GenerationCache
from moco_lit.collaborators import load_collaborator, render_plain
from moco_lit.generation import DecodingConfig, GenerationEngine, strip_thinking, top_p_filter

PROMPTS = ["What is 3 times 4?", "Reverse the letters abcd.", "Which letter comes after q?", "Hi"]


def test_greedy_equals_model_generate_with_padding(tiny_models):
    collaborator = load_collaborator(tiny_models[0])
    outputs = GenerationEngine(batch_size=4).generate(collaborator, PROMPTS, DecodingConfig(max_new_tokens=6))
    tokenizer, model = collaborator.tokenizer, collaborator.model
    for prompt, output in zip(PROMPTS, outputs):
        ids = tokenizer(collaborator.render(prompt), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            expected = model.generate(
                **ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        new = expected[0, ids["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        assert output.raw_text == tokenizer.decode(new, skip_special_tokens=True)
        assert output.new_tokens == len(new)


def test_samples_do_not_depend_on_batch_neighbours(tiny_models):
    collaborator = load_collaborator(tiny_models[1])
    sampling = DecodingConfig(max_new_tokens=8, temperature=1.0)
    engine = GenerationEngine(batch_size=8)
    together = engine.generate(collaborator, PROMPTS, sampling, seeds=[11, 12, 13, 14])
    alone = [
        engine.generate(collaborator, [p], sampling, seeds=[s])[0] for p, s in zip(PROMPTS, [11, 12, 13, 14])
    ]
    assert [o.raw_text for o in together] == [o.raw_text for o in alone]
    reseeded = engine.generate(collaborator, PROMPTS, sampling, seeds=[21, 22, 23, 24])
    assert [o.raw_text for o in reseeded] != [o.raw_text for o in together]


def test_sample_gives_k_distinct_draws(tiny_models):
    collaborator = load_collaborator(tiny_models[2])
    draws = GenerationEngine().sample(
        collaborator, PROMPTS[:2], DecodingConfig(8, temperature=1.5), 4, seeds=[1, 2]
    )
    assert [len(d) for d in draws] == [4, 4]
    assert len({d.raw_text for d in draws[0]}) > 1


def test_cache_makes_a_rerun_free(tiny_models, tmp_path):
    collaborator = load_collaborator(tiny_models[0])
    first = GenerationEngine(cache=GenerationCache(tmp_path / "c.sqlite"))
    outputs = first.generate(collaborator, PROMPTS, DecodingConfig(max_new_tokens=5))
    second = GenerationEngine(cache=GenerationCache(tmp_path / "c.sqlite"))
    again = second.generate(collaborator, PROMPTS, DecodingConfig(max_new_tokens=5))
    assert second.stats.generated == 0 and second.stats.cache_hits == len(PROMPTS)
    assert [o.raw_text for o in again] == [o.raw_text for o in outputs]
    assert all(o.cached for o in again)
    # other decoding parameters are other cache entries
    second.generate(collaborator, PROMPTS, DecodingConfig(max_new_tokens=3))
    assert second.stats.generated == len(PROMPTS)


def test_thinking_is_stripped_and_plain_chat_fallback():
    assert strip_thinking("<think>let me see 7</think> The answer is 8") == "The answer is 8"
    assert strip_thinking("a</think>b</think> c") == "c"
    assert strip_thinking("no thinking") == "no thinking"
    rendered = render_plain([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    assert rendered == "User: Hi\n\nAssistant: Yo\n\nAssistant:"


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.01)).sum() == 1


def test_seeded_sampler_draws_from_the_tempered_distribution():
    from moco_lit.generation import SeededSampler

    probabilities = torch.tensor([0.6, 0.3, 0.1])
    sampler = SeededSampler(list(range(3000)), DecodingConfig(temperature=1.0))
    scores = torch.log(probabilities).repeat(3000, 1)
    choices = sampler(torch.zeros(3000, 1, dtype=torch.long), scores).argmax(dim=-1)
    frequencies = torch.bincount(choices, minlength=3).float() / 3000
    assert torch.allclose(frequencies, probabilities, atol=0.03)


def test_plain_text_answers_end_where_the_model_starts_the_next_turn(tiny_models, monkeypatch):
    from moco_lit.collaborators import PLAIN_TURN_STARTS, Collaborator
    from moco_lit.generation import cut_at_stop

    assert cut_at_stop("B\n\nUser: and now?\nAssistant: C", PLAIN_TURN_STARTS) == "B\n"
    assert cut_at_stop("no turn here", PLAIN_TURN_STARTS) == "no turn here"
    collaborator = load_collaborator(tiny_models[0])
    assert not collaborator.has_chat_template and collaborator.stop_strings == PLAIN_TURN_STARTS
    decoding = DecodingConfig(max_new_tokens=24, temperature=1.0)  # seeded: varied, reproducible

    def generate():
        return GenerationEngine(cache=None, progress=False).generate(
            collaborator, PROMPTS[:1], decoding, [3]
        )[0]

    free = generate()
    # a random model never writes "User:": make a piece of its own answer the next turn instead
    # (one that cannot run on from the prompt's closing "Assistant:")
    piece = free.raw_text[8:11]
    assert len(set(free.raw_text)) > 5 and ":" not in piece
    monkeypatch.setattr(Collaborator, "stop_strings", property(lambda self: (piece,)))
    cut = generate()
    assert cut.raw_text == free.raw_text[: free.raw_text.index(piece)]
    assert cut.new_tokens < free.new_tokens  # generation stopped there, not only the text


def test_stop_strings_are_part_of_the_cache_key(tiny_models, tmp_path, monkeypatch):
    from moco_lit.collaborators import Collaborator

    collaborator = load_collaborator(tiny_models[0])
    engine = GenerationEngine(cache=GenerationCache(tmp_path / "cache.sqlite"), progress=False)
    engine.generate(collaborator, PROMPTS[:2], DecodingConfig(max_new_tokens=4))
    monkeypatch.setattr(Collaborator, "stop_strings", property(lambda self: ()))
    again = engine.generate(collaborator, PROMPTS[:2], DecodingConfig(max_new_tokens=4))
    assert not any(output.cached for output in again)  # other stop strings, other outputs


def test_a_reduced_precision_is_part_of_the_cache_key(tiny_models, tmp_path):
    """The same weights in bfloat16 answer otherwise: their outputs never answer a float32 request,
    and float32 keys are those of before (no dtype field)."""
    from moco_lit.collaborators import CollaboratorSpec, load_collaborator

    engine = GenerationEngine(cache=GenerationCache(tmp_path / "cache.sqlite"), progress=False)
    full = load_collaborator(tiny_models[0])
    half = load_collaborator(CollaboratorSpec(path=tiny_models[0], name="tiny0-bf16", dtype="bfloat16"))
    assert full.fingerprint == half.fingerprint  # the same weights on disk
    engine.generate(full, PROMPTS[:2], DecodingConfig(max_new_tokens=4))
    first = engine.generate(half, PROMPTS[:2], DecodingConfig(max_new_tokens=4))
    assert not any(output.cached for output in first)
    assert all(
        output.cached for output in engine.generate(half, PROMPTS[:2], DecodingConfig(max_new_tokens=4))
    )
    assert all(
        output.cached for output in engine.generate(full, PROMPTS[:2], DecodingConfig(max_new_tokens=4))
    )


def test_auto_batch_size_halves_on_out_of_memory_and_keeps_what_fits(tiny_models, monkeypatch):
    import pytest
    import torch

    from moco_lit.collaborators import load_collaborator
    from moco_lit.errors import UserError
    from moco_lit.generation import AUTO_BATCH_SIZE, DecodingConfig, GenerationEngine

    collaborator = load_collaborator(tiny_models[0])
    prompts = [f"What is {i} times 3?" for i in range(40)]
    expected = GenerationEngine(cache=None, batch_size=8, progress=False).generate(
        collaborator, prompts, DecodingConfig(max_new_tokens=3)
    )
    engine = GenerationEngine(cache=None, batch_size="auto", progress=False)
    assert engine.batch_size == AUTO_BATCH_SIZE
    sizes = []
    real = GenerationEngine._generate_batch

    def limited(self, collaborator, batch, decoding):
        sizes.append(len(batch))
        if len(batch) > 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, collaborator, batch, decoding)

    monkeypatch.setattr(GenerationEngine, "_generate_batch", limited)
    outputs = engine.generate(collaborator, prompts, DecodingConfig(max_new_tokens=3))
    assert sizes == [40, 32, 16, 16, 8] and engine.batch_size == 16
    assert [o.raw_text for o in outputs] == [o.raw_text for o in expected]
    # a fixed batch size never retries
    fixed = GenerationEngine(cache=None, batch_size=32, progress=False)
    with pytest.raises(torch.OutOfMemoryError):
        fixed.generate(collaborator, prompts, DecodingConfig(max_new_tokens=3))
    with pytest.raises(UserError, match="or auto"):
        GenerationEngine(batch_size=0)
