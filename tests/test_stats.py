"""pram/stats.py against cases worked out by hand or by an independent route."""

import itertools
import math

import numpy as np
import pytest
from seqeval.metrics import f1_score

from pram.stats import (
    compare_seeds,
    compare_sentences,
    expected_best,
    f1,
    randomization_p,
    seeds_needed,
    sentence_counts,
    verdict,
)


def test_the_paired_t_interval_by_hand():
    # differences 2, 3, 0: mean 5/3, sd sqrt(42/18); t(0.975, 2 df) = 4.302653 (a printed t table)
    c = compare_seeds([3.0, 5.0, 4.0], [1.0, 2.0, 4.0])
    half = 4.302653 * math.sqrt(42 / 18) / math.sqrt(3)
    assert (c.n, c.mean, c.sd) == (3, pytest.approx(5 / 3), pytest.approx(math.sqrt(42 / 18)))
    assert (c.low, c.high) == (pytest.approx(5 / 3 - half, abs=1e-5), pytest.approx(5 / 3 + half, abs=1e-5))
    assert c.verdict == "no difference shown at 3 seeds" and c.aso is None  # ASO needs 5 seeds a side
    assert c.interval() == f"+1.67 [{5 / 3 - half:+.2f}, {5 / 3 + half:+.2f}] (n=3)"


def test_verdicts_and_asos_direction():
    assert verdict(0.1, 2.0, 5) == "ahead" and verdict(-2.0, -0.1, 5) == "behind"
    assert verdict(-0.5, 2.0, 3) == "no difference shown at 3 seeds"
    # two seeds that happen to agree give a narrow interval by luck: no verdict from two
    assert verdict(3.77, 6.19, 2) == "no difference shown at 2 seeds (a verdict needs 3)"
    ahead = compare_seeds([62.0, 63.1, 61.7, 62.8, 63.5], [58.2, 59.0, 58.8, 57.9, 59.4])
    assert ahead.verdict == "ahead" and ahead.aso < 0.2  # A stochastically dominates: eps_min near 0
    behind = compare_seeds([58.2, 59.0, 58.8, 57.9, 59.4], [62.0, 63.1, 61.7, 62.8, 63.5])
    assert behind.verdict == "behind" and behind.aso > 0.8


def test_seeds_needed_matches_the_published_power_of_the_paired_t_test():
    # G*Power, paired t-test, two-sided alpha 0.05, power 0.8: effect size 1 needs 10 pairs, 0.5 needs 34
    assert seeds_needed(sd=1.0, delta=1.0) == 10
    assert seeds_needed(sd=2.0, delta=1.0) == 34


def test_sentence_counts_sum_to_seqevals_f1():
    gold = [["B-PER", "I-PER", "O"], ["B-LOC", "O", "B-ORG"], ["O"]]
    pred = [["B-PER", "I-PER", "O"], ["B-LOC", "O", "B-PER"], ["B-MISC"]]
    counts = sentence_counts(gold, pred)
    assert counts.tolist() == [[1, 1, 1], [1, 2, 2], [0, 1, 0]]
    # correct 2, predicted 4, gold 3: F1 = 2 * 2 / (4 + 3) = 57.14%
    assert float(f1(counts.sum(0))) == pytest.approx(400 / 7) == pytest.approx(100 * f1_score(gold, pred))


def test_randomization_p_approaches_the_exhaustive_permutation_on_six_sentences():
    a = np.array([[2, 2, 2], [1, 1, 2], [0, 1, 1], [3, 3, 3], [1, 2, 1], [2, 2, 2]])
    b = np.array([[1, 2, 2], [1, 1, 2], [0, 2, 1], [2, 3, 3], [0, 1, 1], [1, 2, 2]])
    observed = abs(float(f1(a.sum(0)) - f1(b.sum(0))))
    reached = 0
    for swaps in itertools.product([False, True], repeat=6):  # all 64 ways to swap the two outputs
        s = np.array(swaps)[:, None]
        x, y = np.where(s, b, a).sum(0), np.where(s, a, b).sum(0)
        reached += abs(float(f1(x) - f1(y))) >= observed - 1e-9
    exact = reached / 64
    assert randomization_p(a, b, iterations=20000) == pytest.approx(exact, abs=0.01)


def test_the_bootstrap_interval_of_identical_and_of_uniform_sentences():
    same = np.array([[1, 2, 2], [0, 1, 1], [2, 2, 3]])
    c = compare_sentences(same, same, iterations=200)
    assert (c.diff, c.low, c.high, c.p) == (0.0, 0.0, 0.0, 1.0)
    # every sentence the same pair of outputs: every resample has the same F1s, 100 and 0
    c = compare_sentences(np.array([[1, 1, 1]] * 8), np.array([[0, 1, 1]] * 8), iterations=200)
    assert (c.f1_a, c.f1_b, c.low, c.high) == (100.0, 0.0, 100.0, 100.0)
    with pytest.raises(ValueError, match="not the same sentences"):
        compare_sentences(same, same[:2])


def test_expected_best_of_n_trials_by_hand():
    # scores 1, 2, 3; the best of 2 draws is 1 with probability 1/9, 2 with 3/9, 3 with 5/9
    mean, sd = expected_best([3.0, 1.0, 2.0], 2)
    assert mean == pytest.approx(22 / 9) and sd == pytest.approx(math.sqrt(38) / 9)
    assert expected_best([3.0, 1.0, 2.0], 1) == (pytest.approx(2.0), pytest.approx(math.sqrt(2 / 3)))
