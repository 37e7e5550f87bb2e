"""The typed batch every ``collaborate`` receives, and the module's per-example randomness."""

from __future__ import annotations

import random

from moco_lit.generation import example_seed
from moco_lit.methods import Batch, CollaborationModule


def _examples(count: int) -> list[dict]:
    return [
        {"id": f"q{i}", "prompt": f"question {i}", "record": {"answer": str(i)}, "task_type": "qa"}
        for i in range(count)
    ]


class Echo(CollaborationModule):
    method_name = "echo_for_test"

    def collaborate(self, batch: Batch) -> list[str]:
        self.seen = batch
        return [f"{type(batch).__name__}:{example_id}" for example_id in batch.ids]


def test_batch_reads_ids_prompts_records_and_task_type_in_order():
    batch = Batch(_examples(3))
    assert batch.ids == ["q0", "q1", "q2"]
    assert batch.prompts == ["question 0", "question 1", "question 2"]
    assert batch.records == [{"answer": "0"}, {"answer": "1"}, {"answer": "2"}]
    assert batch.task_type == "qa"
    assert Batch().task_type is None
    # still the list of example dicts it always was
    assert batch == _examples(3) and batch[1]["id"] == "q1" and len(batch) == 3


def test_slices_and_picks_stay_batches_and_of_does_not_copy():
    batch = Batch(_examples(4))
    assert isinstance(batch[1:3], Batch) and batch[1:3].ids == ["q1", "q2"]
    assert batch.pick([3, 0]).ids == ["q3", "q0"]
    assert Batch.of(batch) is batch
    assert isinstance(Batch.of(_examples(1)), Batch)


def test_every_caller_of_collaborate_hands_it_a_batch():
    module = Echo(collaborators=["any"])
    assert module.collaborate(_examples(2)) == ["Batch:q0", "Batch:q1"]  # a plain list comes in
    assert isinstance(module.seen, Batch)
    assert module.on_after_batch_transfer(_examples(2), 0).ids == ["q0", "q1"]
    assert module.on_after_batch_transfer({"input_ids": 1}, 0) == {"input_ids": 1}


def test_rng_and_seed_of_are_the_run_seed_per_example_and_step():
    module = Echo(collaborators=["any"], seed=7)
    example = _examples(1)[0]
    assert module.seed_of("q0", "tie") == example_seed(7, "q0", "tie")
    expected = random.Random(example_seed(7, "q0", "tie")).random()
    assert module.rng(example, "tie").random() == expected
    assert module.rng("q0", "tie").random() == expected  # an id works as well as the example
    assert module.rng(example, "other").random() != expected
    assert Echo(collaborators=["any"], seed=8).rng(example, "tie").random() != expected
