"""W&B run naming (id, job type, method variant) and the provenance every run records."""

from __future__ import annotations

import inspect
import json
import re

import pytest

from moco_lit import methods, provenance
from moco_lit.tracking import JOB_TYPE_LIMIT, job_type, method_arguments, wandb_run_id


def _configured_defaults(method_class: type) -> dict:
    """A method's defaults as a parsed config holds them (JSON values: tuples are lists)."""
    defaults = {}
    for klass in method_class.__mro__:  # the method's own arguments first, as jsonargparse lists them
        if "__init__" in vars(klass):
            for name, parameter in inspect.signature(klass.__init__).parameters.items():
                if parameter.default is not inspect.Parameter.empty:
                    defaults.setdefault(name, parameter.default)
    return json.loads(json.dumps(defaults, default=str))


@pytest.mark.parametrize("name", methods.names())
def test_a_method_with_its_defaults_is_no_variant(name):
    method_class = methods.get(name)
    configured = {"collaborators": ["a", "b"], **_configured_defaults(method_class)}
    assert method_arguments(method_class, configured) == {}


def test_the_variant_is_the_changed_arguments_in_order_seed_and_pool_aside():
    majority_vote = methods.get("majority_vote")
    # in the order a parsed config lists them: the method's own arguments, then the shared ones
    configured = {"collaborators": ["a"], **_configured_defaults(majority_vote), "tie": "dev-based"}
    configured |= {"max_new_tokens": 64, "seed": 7, "generation_batch_size": 4}
    arguments = method_arguments(majority_vote, configured)
    assert arguments == {"tie": "dev-based", "max_new_tokens": 64}
    assert (
        job_type("test", "majority_vote", arguments) == "test/majority_vote[tie=dev-based,max_new_tokens=64]"
    )
    assert job_type("fit", "majority_vote", {}) == "fit/majority_vote"


def test_a_long_job_type_is_cut_to_the_limit_and_stays_distinct():
    long = {"prompt_template": "x" * 80}
    first, second = job_type("test", "moa", long), job_type("test", "moa", {"prompt_template": "x" * 81})
    assert len(first) == len(second) == JOB_TYPE_LIMIT and first != second
    assert first.startswith("test/moa[prompt_template=xxx") and first.endswith("]")


def test_the_wandb_id_follows_the_run_folder(tmp_path):
    folder = tmp_path / "runs" / "quickstart" / "majority_vote" / "0f2b79a507-fit"
    assert wandb_run_id(folder) == wandb_run_id(
        tmp_path / "runs/quickstart/../quickstart/majority_vote/0f2b79a507-fit"
    )
    assert wandb_run_id(folder).startswith("0f2b79a507-fit-")
    other = tmp_path / "elsewhere" / "quickstart" / "majority_vote" / "0f2b79a507-fit"
    assert wandb_run_id(other) != wandb_run_id(folder)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", wandb_run_id(tmp_path / "a+b=c.d"))


def test_outside_a_git_checkout_the_commit_is_null_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CODE_ROOT", tmp_path)  # an installed package
    provenance.code_commit.cache_clear()
    try:
        assert provenance.code_commit() == {"git_commit": None, "git_dirty": None}
        (tmp_path / ".git").mkdir()  # a broken repository: git fails, the run does not
        provenance.code_commit.cache_clear()
        assert provenance.code_commit()["git_commit"] is None
    finally:
        provenance.code_commit.cache_clear()
    assert provenance.versions()["python"].count(".") == 2
