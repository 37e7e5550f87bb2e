"""The thread count the generation engine picks from the cores, the load and the environment."""

from __future__ import annotations

import pytest
import torch

from moco_lit.errors import UserError
from moco_lit.generation import GenerationEngine
from moco_lit.processes import THREADS_ENV, ThreadGovernor, choose_threads


@pytest.mark.parametrize(
    "cores, load, expected",
    [
        (2, 0.0, 2),  # idle: every core
        (2, 0.2, 2),  # a little background work still leaves both cores
        (2, 0.8, 1),  # one core mostly taken: one thread, not two that wait on each other
        (2, 1.5, 1),
        (2, 7.9, 1),  # overloaded: never fewer than one
        (16, 4.0, 12),
        (16, 0.0, 16),
        (1, 0.0, 1),
        (4, -1.0, 4),  # a negative estimate (own share over-counted) is no load
    ],
)
def test_one_thread_per_core_nobody_else_uses(cores: int, load: float, expected: int):
    assert choose_threads(cores, load, {}) == expected


def test_the_users_choice_stands():
    assert choose_threads(2, 0.0, {THREADS_ENV: "1"}) == 1
    assert choose_threads(2, 5.0, {THREADS_ENV: "2"}) == 2  # even on a busy machine
    assert choose_threads(2, 5.0, {"OMP_NUM_THREADS": "2"}) is None  # torch read it already
    assert choose_threads(2, 0.0, {THREADS_ENV: "3", "OMP_NUM_THREADS": "1"}) == 3
    assert choose_threads(2, 0.0, {THREADS_ENV: " ", "OMP_NUM_THREADS": ""}) == 2


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_bad_thread_count_is_one_clear_error(value: str):
    with pytest.raises(UserError, match=THREADS_ENV):
        choose_threads(2, 0.0, {THREADS_ENV: value})


def test_the_governor_sets_torch_and_takes_its_own_share_off(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr("moco_lit.processes.usable_cores", lambda: 2)
        monkeypatch.setattr("os.getloadavg", lambda: (1.9, 1.0, 1.0))
        governor = ThreadGovernor({})
        governor._last = None  # no earlier sample of this process: the whole load is others'
        assert governor.apply() == 1
        # then this process alone ran two busy threads for 10 s: the load is its own
        clock = {"wall": 100.0, "cpu": 0.0}
        monkeypatch.setattr("time.monotonic", lambda: clock["wall"])
        monkeypatch.setattr("time.process_time", lambda: clock["cpu"])
        governor._last = None
        governor.apply()
        clock.update(wall=110.0, cpu=20.0)
        threads = governor.apply()
        assert threads == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_engine_leaves_threads_alone_unless_asked():
    assert GenerationEngine()._governor is None
    assert GenerationEngine(threads="auto")._governor is not None
    assert GenerationEngine(threads=1)._governor.environ == {THREADS_ENV: "1"}
    with pytest.raises(UserError, match="threads"):
        GenerationEngine(threads=0)
