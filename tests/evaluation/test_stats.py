"""Intervals and paired tests against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from moco_lit.errors import UserError
from moco_lit.evaluation.stats import (
    bootstrap_interval,
    mcnemar_p,
    paired_comparison,
    score_interval,
    sign_flip_p,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # z = 1.959964: centre (k + z²/2) / (n + z²), half z / (n + z²) · sqrt(k(n-k)/n + z²/4)
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (20, 20, 0.8389, 1.0),
        (1, 20, 0.0089, 0.2361),
    ],
)
def test_wilson_interval_matches_the_hand_computed_bounds(successes, n, low, high):
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_narrows_with_lower_confidence():
    # 90%: z = 1.644854, z² = 2.705544; 7 of 10 → centre 8.352772 / 12.705544 = 0.65741,
    # half 0.129460 · sqrt(2.1 + 0.676386) = 0.21571
    assert wilson_interval(7, 10, confidence=0.90) == pytest.approx((0.4417, 0.8731), abs=5e-4)


@pytest.mark.parametrize(
    ("a_better", "b_better", "p"),
    [
        (0, 0, 1.0),
        (0, 5, 2 / 32),  # 2 · C(5,0) / 2⁵
        (1, 9, 2 * 11 / 1024),  # 2 · (C(10,0) + C(10,1)) / 2¹⁰
        (6, 0, 2 / 64),
        (3, 3, 1.0),  # 2 · 42/64 > 1 is capped
        (2, 8, 2 * 56 / 1024),  # 2 · (1 + 10 + 45) / 2¹⁰
    ],
)
def test_mcnemar_exact_p_for_known_discordant_counts(a_better, b_better, p):
    assert mcnemar_p(a_better, b_better) == pytest.approx(p)


def test_score_interval_uses_wilson_for_right_wrong_scores_and_bootstrap_otherwise():
    binary = score_interval([1.0, 0.0] * 5 + [None])
    assert (binary.method, binary.n, binary.confidence) == ("wilson", 10, 0.95)
    assert (binary.low, binary.high) == pytest.approx((0.2366, 0.7634), abs=5e-5)
    assert score_interval([None, None]) is None
    constant = score_interval([0.5] * 8)
    assert constant.method == "bootstrap" and (constant.low, constant.high) == pytest.approx((0.5, 0.5))


def test_bootstrap_interval_is_seeded_and_matches_the_exact_resampling_distribution():
    # 40 values, half 0.2 and half 0.8: a resample's mean is 0.2 + 0.6 · K/40 with K ~ Binomial(40, ½),
    # whose 2.5% and 97.5% quantiles are 14 and 26: the interval is about [0.41, 0.59]
    values = [0.2, 0.8] * 20
    low, high = bootstrap_interval(values)
    assert bootstrap_interval(values) == (low, high)  # the same seed, the same interval
    assert low == pytest.approx(0.2 + 0.6 * 14 / 40, abs=0.016)
    assert high == pytest.approx(0.2 + 0.6 * 26 / 40, abs=0.016)
    spread = [0.13, 0.57, 0.91, 0.02, 0.66]
    assert bootstrap_interval(spread, seed=1) != bootstrap_interval(spread)


def test_paired_interval_excludes_zero_where_the_unpaired_intervals_overlap():
    # 40 questions: the collaboration solves 30, the best single model 24, all of them among the 30.
    ids = [str(i) for i in range(40)]
    collaboration = {key: float(i < 30) for i, key in enumerate(ids)}
    single = {key: float(i < 24) for i, key in enumerate(ids)}
    mine, theirs = score_interval(list(collaboration.values())), score_interval(list(single.values()))
    # Wilson: 30/40 → centre 31.920729 / 43.841459, half 0.044706 · sqrt(7.5 + 0.960365);
    # 24/40 → centre 25.920729 / 43.841459, half 0.044706 · sqrt(9.6 + 0.960365)
    assert (mine.low, mine.high) == pytest.approx((0.5981, 0.8581), abs=5e-4)
    assert (theirs.low, theirs.high) == pytest.approx((0.4460, 0.7365), abs=5e-4)
    assert mine.low < theirs.high  # unpaired, the two intervals overlap
    paired = paired_comparison(collaboration, single)
    assert (paired.n, paired.a_better, paired.b_better) == (40, 6, 0)
    assert paired.difference == pytest.approx(0.15)
    # the differences are 6 ones among 40: a resample's mean is K/40 with K ~ Binomial(40, 0.15),
    # whose 2.5% and 97.5% quantiles are 2 and 11
    assert paired.low == pytest.approx(2 / 40, abs=0.026) and paired.high == pytest.approx(11 / 40, abs=0.026)
    assert paired.low > 0 and paired.excludes_zero
    assert paired.test == "mcnemar_exact" and paired.p_value == pytest.approx(2 / 64)


def test_better_needs_the_interval_above_zero_and_the_exact_test_to_agree():
    ids = [str(i) for i in range(20)]
    nothing = {key: 0.0 for key in ids}
    # 4 of 20 against none: the resamples with no +1 are (16/20)²⁰ = 1.2% < 2.5%, so the percentile
    # interval starts above zero, yet McNemar's exact p = 2 / 2⁴ = 0.125
    four = paired_comparison({key: float(i < 4) for i, key in enumerate(ids)}, nothing)
    assert four.low > 0 and four.excludes_zero and four.p_value == pytest.approx(0.125)
    assert not four.better
    # 6 of 20 against none: p = 2 / 2⁶ = 0.031 and (14/20)²⁰ ≈ 0.08% of resamples have no +1
    six = paired_comparison({key: float(i < 6) for i, key in enumerate(ids)}, nothing)
    assert six.low > 0 and six.p_value == pytest.approx(2 / 64) and six.better
    assert not paired_comparison(nothing, {key: float(i < 6) for i, key in enumerate(ids)}).better


def test_paired_comparison_matches_by_id_and_needs_common_examples():
    a = {"x": 1.0, "y": 0.0, "z": 1.0, "w": None}
    b = {"z": 0.0, "y": 0.0, "x": 1.0, "w": 1.0, "v": 0.0}
    paired = paired_comparison(a, b)
    assert paired.n == 3 and paired.difference == pytest.approx(1 / 3)
    assert (paired.a_better, paired.b_better) == (1, 0) and not paired.excludes_zero
    with pytest.raises(UserError, match="share no scored example id"):
        paired_comparison({"a": 1.0}, {"b": 1.0})


def test_sign_flip_p_for_scores_between_zero_and_one():
    # three differences of 0.5: of the 8 sign patterns, only all-plus and all-minus reach |sum| 1.5
    assert sign_flip_p([0.5, 0.5, 0.5, 0.0]) == pytest.approx(2 / 8)
    # 0.5, -0.25: patterns (+,+) 0.25, (+,-) 0.75, (-,+) -0.75, (-,-) -0.25; |sum| >= 0.25 for all 4
    assert sign_flip_p([0.5, -0.25]) == 1.0
    paired = paired_comparison({"a": 0.9, "b": 0.7, "c": 0.6}, {"a": 0.4, "b": 0.2, "c": 0.1})
    assert paired.test == "sign_flip" and paired.p_value == pytest.approx(2 / 8)
    # more than 16 differences: random patterns, (1 + extreme) / (1 + n); 20 equal signs are rare
    assert sign_flip_p([0.3] * 20) == pytest.approx(1 / 2001)


def test_confidence_outside_zero_one_is_refused():
    with pytest.raises(UserError, match="confidence"):
        score_interval([1.0], confidence=95)
    assert not math.isnan(wilson_interval(1, 1, confidence=0.5)[0])
