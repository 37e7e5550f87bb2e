"""Offline detection, load errors that say what to do offline, and one log line per event."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from moco_lit import network
from moco_lit.cli import OncePerEvent, main
from moco_lit.errors import load_failure


@pytest.fixture
def online_environment(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", *network.PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", False)
    return constants


def test_an_unreachable_hub_switches_the_libraries_offline(online_environment, monkeypatch, caplog):
    monkeypatch.setattr(network, "hub_reachable", lambda *a, **k: False)
    with caplog.at_level(logging.INFO, logger="moco_lit"):
        assert network.detect_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert online_environment.HF_HUB_OFFLINE is True
    assert [r.getMessage() for r in caplog.records if r.name == "moco_lit.network"] == [
        "no network route to the Hugging Face Hub: offline mode (models and data from local caches)"
    ]


@pytest.mark.parametrize("preset", [("HF_HUB_OFFLINE", "0"), ("HTTPS_PROXY", "http://proxy:3128")])
def test_a_user_choice_or_a_proxy_is_left_alone(online_environment, monkeypatch, preset):
    monkeypatch.setenv(*preset)
    monkeypatch.setattr(network, "hub_reachable", lambda *a, **k: pytest.fail("no lookup expected"))
    assert not network.detect_offline()
    assert online_environment.HF_HUB_OFFLINE is False and "HF_DATASETS_OFFLINE" not in os.environ


def test_a_reachable_hub_changes_nothing(online_environment, monkeypatch):
    monkeypatch.setattr(network, "hub_reachable", lambda *a, **k: True)
    assert not network.detect_offline()
    assert "HF_HUB_OFFLINE" not in os.environ


def test_hub_reachable_resolves_the_configured_endpoint(monkeypatch):
    asked = []

    def resolve(host, port, **kwargs):
        asked.append((host, port))
        raise OSError("no such host")

    monkeypatch.setattr(network.socket, "getaddrinfo", resolve)
    assert not network.hub_reachable("https://hub.example.org/mirror")
    assert asked == [("hub.example.org", 443)]


def test_offline_a_missing_hub_model_fails_at_once_in_one_line(
    online_environment, monkeypatch, run_cli, capsys
):
    monkeypatch.setattr(network, "hub_reachable", lambda *a, **k: False)
    code = main(
        ["test", "--model", "single_model", "--model.collaborators", "[someone/not-cached-model-xyz]",
         "--data.benchmark", "quickstart", "--data.limit", "2", "--wandb", "false", "--progress", "false"]
    )  # fmt: skip
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert error == (
        "error: cannot load model 'someone/not-cached-model-xyz': not a local folder, and not in the "
        "Hugging Face cache (offline); give a local folder, or a short name from `python -m moco_lit models list`"
    )


def test_load_failure_keeps_other_errors_to_their_first_line(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert load_failure(OSError("bad header\nmore detail")) == "bad header"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_failure(ValueError("config.json is not valid JSON")) == "config.json is not valid JSON"


def test_a_library_record_is_printed_once(capsys):
    """A library logger with its own handler that also propagates prints each record once."""
    library = logging.getLogger("some_library_with_a_handler")
    own = logging.StreamHandler(sys.stderr)
    library.addHandler(own)
    root_handler = logging.StreamHandler(sys.stderr)
    root_handler.addFilter(OncePerEvent())
    logging.root.addHandler(root_handler)
    try:
        library.warning("careful")
        logging.getLogger("plain_library.child").warning("plain")
    finally:
        library.removeHandler(own)
        logging.root.removeHandler(root_handler)
    err = capsys.readouterr().err
    assert err.count("careful") == 1 and err.count("plain") == 1


def test_every_collaborator_is_found_before_the_first_loads(
    online_environment, monkeypatch, tiny_models, capsys
):
    from moco_lit import collaborators

    monkeypatch.setattr(network, "hub_reachable", lambda *a, **k: False)
    loaded = []
    real_load = collaborators._load
    monkeypatch.setattr(
        collaborators, "_load", lambda spec, device: loaded.append(spec.path) or real_load(spec, device)
    )
    fresh = str(tiny_models[0]) + "/"  # a spelling not pooled by earlier tests: it would load
    code = main(
        ["test", "--model", "majority_vote", "--model.collaborators", f"[{fresh}, someorg/missing-model-xyz]",
         "--data.benchmark", "quickstart", "--data.limit", "2", "--wandb", "false", "--progress", "false"]
    )  # fmt: skip
    assert code == 2 and loaded == []
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith("error: cannot load model 'someorg/missing-model-xyz': not a local folder")
    )
