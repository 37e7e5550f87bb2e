"""Collaborator loading: once per process, adapters, chat templates, clear errors."""

from __future__ import annotations

import pytest

from moco_lit.collaborators import load_collaborator, parse_spec
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig, GenerationEngine


def test_loaded_once_per_process(tiny_models):
    assert load_collaborator(tiny_models[0]) is load_collaborator(tiny_models[0])
    assert load_collaborator(tiny_models[0]).tokenizer.padding_side == "left"


def test_lora_adapter_on_a_base(tiny_models, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_models[0])
    adapted = get_peft_model(
        base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    adapted.save_pretrained(tmp_path / "adapter")
    collaborator = load_collaborator(f"{tiny_models[0]}+{tmp_path / 'adapter'}")
    assert collaborator.name == "tiny0+adapter"
    assert type(collaborator.model).__name__.startswith("Peft")
    plain = load_collaborator(tiny_models[0])
    assert collaborator.fingerprint != plain.fingerprint
    decoding = DecodingConfig(max_new_tokens=6)
    engine = GenerationEngine()
    prompts = ["What is 3 times 4?", "Hello there"]
    assert engine.generate(collaborator, prompts, decoding) != engine.generate(plain, prompts, decoding)


def test_chat_template_is_used_when_present(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models[1])
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    )
    tokenizer.save_pretrained(tmp_path / "chat")
    AutoModelForCausalLM.from_pretrained(tiny_models[1]).save_pretrained(tmp_path / "chat")
    collaborator = load_collaborator(str(tmp_path / "chat"))
    assert collaborator.render("Hi") == "<user>Hi<assistant>"


def test_bad_specs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="expected keys"):
        parse_spec({"adapter": "x"})
    with pytest.raises(UserError, match="empty"):
        parse_spec("  ")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot load model"):
        load_collaborator(str(broken))
    with pytest.raises(UserError, match="cannot import"):
        load_collaborator("callable:tests.scripted.no_such_function")


def test_a_system_prompt_comes_before_every_prompt_the_model_reads(tiny_models):
    from moco_lit.collaborators import load_collaborator, parse_spec

    plain = load_collaborator(tiny_models[0])
    told = load_collaborator({"path": tiny_models[0], "system_prompt": "Answer in one word."})
    assert told.spec == parse_spec({"path": tiny_models[0], "system_prompt": "Answer in one word."})
    rendered = told.render("Hi")
    assert rendered.startswith("Answer in one word.") and rendered.endswith(plain.render("Hi"))
    assert "Answer in one word." not in plain.render("Hi")
    # a conversation that has its own system message keeps it
    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    assert "Answer in one word." not in told.render(chat) and "Be terse." in told.render(chat)
    with pytest.raises(UserError, match="system_prompt"):
        parse_spec({"path": tiny_models[0], "system": "x"})
