"""Tiny local judge models (reward model, verifier, encoder) built in-process for the tests."""

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

WORDS = "the a is of what capital france paris london answer yes no final decision question reference".split()


def save_tokenizer(folder: Path, first_word: str = "yes") -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer whose id 0 is ``first_word`` (see ``constant_lm``)."""
    words = [first_word] + [w for w in WORDS if w != first_word]
    vocab = {w: i for i, w in enumerate(words + ["[UNK]", "[PAD]", "[BOS]", "[EOS]"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]"
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def llama_config(vocab_size: int, **extra) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        **extra,
    )


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("reward")
    tokenizer = save_tokenizer(folder)
    torch.manual_seed(0)
    config = llama_config(len(tokenizer), num_labels=1, pad_token_id=tokenizer.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


def constant_lm(tmp_path_factory, first_word: str) -> str:
    """A causal LM that always emits token 0 (``first_word``): its final norm is zeroed, so every
    logit is 0 and greedy decoding picks the lowest id."""
    folder = tmp_path_factory.mktemp(f"verifier_{first_word}")
    tokenizer = save_tokenizer(folder, first_word)
    config = llama_config(
        len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def yes_verifier(tmp_path_factory) -> str:
    return constant_lm(tmp_path_factory, "yes")


@pytest.fixture(scope="session")
def no_verifier(tmp_path_factory) -> str:
    return constant_lm(tmp_path_factory, "no")


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("encoder")
    tokenizer = save_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).save_pretrained(folder)
    return str(folder)
