"""prompt_routing: end to end on tiny models; the router's choice is followed, nonsense falls back."""

from __future__ import annotations

from tests.conftest import collaborators_arg, run_records
from tests.scripted import oracle


def dispatcher(rendered: str) -> str:
    """Routes products to model 1 and reversals to "Model 2"; answers nonsense to anything else.
    Asked a question directly it answers like the oracle (so it is the dev-best model)."""
    if "Reply with the model's number" not in rendered:
        return oracle(rendered)
    if "times" in rendered:
        return "1"
    if "Reverse" in rendered:
        return "Model 2 fits best."
    return "I cannot tell."


def test_prompt_routing_runs_on_tiny_models(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "prompt_routing",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.max_new_tokens",
        "4",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "6",
        "--data.dev_limit",
        "3",
    )
    assert code == 0 and bool(cli.model.calibrated)
    records = run_records(cli)
    names = cli.model.collaborator_names
    assert len(records) == 6
    for record in records:
        assert record["calls"] == 2  # one routing call, one answer
        assert record["details"]["router"] == names[cli.model.dev_best]
        assert record["answered_by"] == record["details"]["route"]
        if record["details"]["fallback"]:
            assert record["answered_by"] == names[cli.model.dev_best]


def test_the_router_choice_is_followed_and_nonsense_falls_back_to_dev_best(run_cli):
    scripted = collaborators_arg(
        [
            "callable:tests.scripted.multiplier",
            "callable:tests.scripted.reverser",
            "callable:tests.methods.test_prompt_routing.dispatcher",
        ]
    )
    code, cli = run_cli(
        "test",
        "--model",
        "prompt_routing",
        "--model.collaborators",
        scripted,
        "--model.model_descriptions",
        "[good at multiplication, good at reversing words, good at everything]",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "9",
        "--data.dev_limit",
        "6",
    )
    assert cli.model.dev_best == 2
    expected = {
        "multiply": ("multiplier", False),
        "reverse": ("reverser", False),
        "next_letter": ("dispatcher", True),
    }
    records = run_records(cli)
    assert len(records) == 9
    for record in records:
        name, fallback = expected[record["id"].split("-")[0]]
        assert record["answered_by"] == name and record["details"]["fallback"] is fallback
        assert record["score"] == 1.0


def test_route_parsing_first_number_or_moco_s_highest_substring():
    from moco_lit.collaborators import load_collaborator
    from moco_lit.methods.api.prompt_routing import PromptRouting

    specs = [
        "callable:tests.scripted.oracle",
        "callable:tests.scripted.wrong",
        "callable:tests.scripted.multiplier",
    ]
    first, moco = PromptRouting(specs), PromptRouting(specs, route_parsing="highest_substring")
    for model in (first, moco):
        model.collaborators = [load_collaborator(spec) for spec in specs]
    assert first.parse_route("1, not 3") == 0 and moco.parse_route("1, not 3") == 2
    assert first.parse_route("12") is None and moco.parse_route("12") == 1
    assert first.parse_route("none") is None and moco.parse_route("none") is None
