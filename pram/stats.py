"""How sure a comparison is: paired statistics over training seeds and over test sentences.

Two arms (PRAM and `--apc none`, or two settings) trained with the same seeds are compared seed by seed:
- `compare_seeds`: the mean paired difference with its 95% Student-t interval (scipy), the p-value of the paired
  t-test, the almost-stochastic-order score where each side has at least 5 seeds (Dror et al. 2019, the `deepsig`
  package: eps_min below 0.5 says A is stochastically ahead of B), a plain verdict, and the seeds a difference of
  1 F1 would need to be detected with 80% power at the spread measured (the power of the paired t-test, from
  the noncentral t distribution).
- `compare_sentences`: one pair of runs on the same test sentences: the F1 difference with a paired bootstrap
  interval over sentences (Koehn 2004) and an approximate-randomization p-value (Noreen 1989; each sentence's two
  outputs swapped at random, the usual significance test of NER papers). Entity F1 is a ratio of sums over
  sentences (correct, predicted and gold entities, by seqeval's rules), so a resample is a sum of rows.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

import numpy as np

MIN_ASO_SEEDS = 5
"""ASO compares two score distributions: below this many seeds a side it says little (Dror et al. 2019)."""
MIN_VERDICT_PAIRS = 3
"""A verdict needs this many pairs. With two, the spread of the differences rests on one degree of freedom: two
seeds that happen to agree give a narrow interval by luck (a choice of this project, beyond the t-test itself)."""


@dataclass(frozen=True)
class SeedComparison:
    n: int
    """Seeds both arms have."""
    mean: float
    """Mean of A - B over those seeds."""
    low: float
    high: float
    """The 95% Student-t interval of the mean difference (NaN with fewer than 2 pairs)."""
    sd: float
    """Spread of the paired differences."""
    p: float
    """Two-sided p-value of the paired t-test."""
    aso: float | None
    """deepsig's eps_min of A over B where each side has MIN_ASO_SEEDS seeds, else None."""
    seeds_for_1: int | None
    """Seeds that would detect a difference of 1 F1 with 80% power, at the spread measured."""
    verdict: str
    """`ahead`, `behind` or `no difference shown at N seeds`."""

    def to_dict(self) -> dict:
        return asdict(self)

    def interval(self) -> str:
        """`+1.20 [-0.40, +2.80] (n=5)`: the mean difference, its 95% interval and the number of pairs."""
        if self.n < 2:
            return f"{self.mean:+.2f} (n={self.n})"
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] (n={self.n})"


def verdict(low: float, high: float, n: int) -> str:
    """`ahead` or `behind` when the interval excludes 0 and there are MIN_VERDICT_PAIRS pairs, else none."""
    if n >= MIN_VERDICT_PAIRS and low > 0:
        return "ahead"
    if n >= MIN_VERDICT_PAIRS and high < 0:
        return "behind"
    few = f" (a verdict needs {MIN_VERDICT_PAIRS})" if n < MIN_VERDICT_PAIRS else ""
    return f"no difference shown at {n} seed{'s' if n != 1 else ''}{few}"


def seeds_needed(sd: float, delta: float = 1.0, power: float = 0.8, alpha: float = 0.05,
                 most: int = 1000) -> int | None:
    """The fewest pairs with which a two-sided paired t-test at `alpha` detects a true mean difference `delta`
    with probability `power`, when the differences spread by `sd`; None if more than `most`."""
    from scipy import stats

    if not sd > 0:
        return 2
    for n in range(2, most + 1):
        critical = stats.t.ppf(1 - alpha / 2, n - 1)
        shift = delta * math.sqrt(n) / sd
        reached = stats.nct.sf(critical, n - 1, shift) + stats.nct.cdf(-critical, n - 1, shift)
        if reached >= power:
            return n
    return None


def compare_seeds(a: list[float], b: list[float], aso_seed: int = 0) -> SeedComparison:
    """A against B, paired by position (the same seed at the same place)."""
    from scipy import stats

    if len(a) != len(b):
        raise ValueError(f"paired scores need as many of each: {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    if n < 2:
        return SeedComparison(n, mean, math.nan, math.nan, math.nan, math.nan, None, None, verdict(0, 0, n))
    sd = statistics.stdev(diffs)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    p = float(stats.ttest_rel(a, b).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
    aso = None
    if n >= MIN_ASO_SEEDS:
        from deepsig import aso as deepsig_aso

        aso = float(deepsig_aso(a, b, seed=aso_seed, show_progress=False))
    low, high = float(mean - half), float(mean + half)
    return SeedComparison(n, mean, low, high, sd, p, aso, seeds_needed(sd), verdict(low, high, n))


def sentence_counts(gold: list[list[str]], pred: list[list[str]], entity_type: str | None = None) -> np.ndarray:
    """(correct, predicted, gold) entities of each sentence, by seqeval's rules (conlleval's chunks), of every
    type or of `entity_type` only: rows that sum to the counts behind seqeval's micro F1 of any set of them."""
    from seqeval.metrics.sequence_labeling import get_entities

    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences against {len(pred)} predicted")
    rows = []
    for g, p in zip(gold, pred):
        true, found = set(get_entities(g)), set(get_entities(p))
        if entity_type is not None:
            true, found = {e for e in true if e[0] == entity_type}, {e for e in found if e[0] == entity_type}
        rows.append((len(true & found), len(found), len(true)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def f1(counts: np.ndarray) -> np.ndarray | float:
    """Entity F1 in % from summed (correct, predicted, gold) counts; the last axis holds the three."""
    counts = np.asarray(counts, dtype=float)
    denominator = counts[..., 1] + counts[..., 2]
    return np.where(denominator > 0, 200 * counts[..., 0] / np.maximum(denominator, 1), 0.0)


@dataclass(frozen=True)
class SentenceComparison:
    sentences: int
    f1_a: float
    f1_b: float
    diff: float
    low: float
    high: float
    """The 95% paired-bootstrap interval of F1(A) - F1(B) over sentences."""
    p: float
    """Two-sided approximate-randomization p-value."""

    def to_dict(self) -> dict:
        return asdict(self)


def compare_sentences(counts_a: np.ndarray, counts_b: np.ndarray, iterations: int = 2000,
                      seed: int = 0) -> SentenceComparison:
    """Two systems' outputs on the same sentences (rows of `sentence_counts`, in the same order)."""
    counts_a, counts_b = np.asarray(counts_a), np.asarray(counts_b)
    if counts_a.shape != counts_b.shape:
        raise ValueError(f"{len(counts_a)} sentences against {len(counts_b)}: not the same sentences")
    rng = np.random.default_rng(seed)
    n = len(counts_a)
    f1_a, f1_b = float(f1(counts_a.sum(0))), float(f1(counts_b.sum(0)))
    # paired bootstrap: the same resampled sentences for both
    picks = rng.integers(0, n, size=(iterations, n))
    boot = f1(counts_a[picks].sum(1)) - f1(counts_b[picks].sum(1))
    low, high = np.percentile(boot, [2.5, 97.5])
    return SentenceComparison(n, f1_a, f1_b, f1_a - f1_b, float(low), float(high),
                              randomization_p(counts_a, counts_b, iterations, rng))


def randomization_p(counts_a: np.ndarray, counts_b: np.ndarray, iterations: int = 2000,
                    rng: np.random.Generator | None = None) -> float:
    """Approximate randomization: the share of random swaps of the two outputs of each sentence whose |F1
    difference| reaches the observed one, with the add-one correction ((r + 1) / (R + 1))."""
    rng = rng or np.random.default_rng(0)
    observed = abs(float(f1(counts_a.sum(0)) - f1(counts_b.sum(0))))
    swap = rng.integers(0, 2, size=(iterations, len(counts_a), 1)).astype(bool)
    a = np.where(swap, counts_b, counts_a).sum(1)
    b = np.where(swap, counts_a, counts_b).sum(1)
    reached = int((np.abs(f1(a) - f1(b)) >= observed - 1e-9).sum())
    return (reached + 1) / (iterations + 1)


def expected_best(values: list[float], trials: int) -> tuple[float, float]:
    """Expected maximum, and its standard deviation, of `trials` draws with replacement from the scores of a
    search's trials (Dodge et al. 2019, "Show your work": expected validation performance against the number of
    trials). With the scores sorted v_1 <= ... <= v_N, the maximum of n draws is v_i with probability
    (i/N)^n - ((i-1)/N)^n."""
    v = np.sort(np.asarray(values, dtype=float))
    if len(v) == 0:
        return math.nan, math.nan
    i = np.arange(1, len(v) + 1)
    p = (i / len(v)) ** trials - ((i - 1) / len(v)) ** trials
    mean = float((p * v).sum())
    return mean, float(math.sqrt(max(0.0, (p * (v - mean) ** 2).sum())))
