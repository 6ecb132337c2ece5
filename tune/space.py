"""The search space: the paper's ranges per corpus, `--range` overrides, and the define-by-run function.

The define-by-run function only asks Optuna for values; it does no computation (Ray Tune times it).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import optuna

from pram.config import CATEGORICAL, SEARCHABLE, TrainConfig
from pram.errors import UserError


@dataclass(frozen=True)
class Interval:
    """A float drawn uniformly from [low, high]."""

    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.low:g}:{self.high:g}"


@dataclass(frozen=True)
class Choice:
    """One of a few values (None: the setting is off, e.g. no non-entity down-sampling; strings for the
    representation settings, e.g. proto_space)."""

    values: tuple[float | str | None, ...]

    def __str__(self) -> str:
        return ",".join("none" if v is None else v if isinstance(v, str) else f"{v:g}" for v in self.values)


Range = Interval | Choice

# The paper's ranges (Appendix A): tau, lam and gamma are shared; alpha and beta depend on the corpus.
PAPER_RANGES: dict[str, dict[str, Range]] = {
    "conll": {"tau": Interval(0.15, 0.25), "lam": Interval(0.8, 0.99), "alpha": Interval(0.5, 1.5),
              "beta": Interval(0.5, 1.5), "gamma": Choice((1.0, 1.5, 2.0))},
    "wikiann": {"tau": Interval(0.15, 0.25), "lam": Interval(0.8, 0.99), "alpha": Interval(1.0, 3.0),
                "beta": Interval(1.0, 3.0), "gamma": Choice((1.0, 1.5, 2.0))},
}

# Numeric settings a --range may name (SEARCHABLE): the paper's five, and the target-term schedule (a choice
# beyond the paper); a wider temperature than the paper's is one --range away: tau=0.02:0.3. Settings of the
# representation q is computed on (CATEGORICAL, beyond the paper) are searched as a choice of names:
# --range proto_space=hidden,centered,projection.
SEARCHED = SEARCHABLE + CATEGORICAL


def parse_range(text: str) -> tuple[str, Range]:
    """`tau=0.1:0.3` (an interval), `gamma=1.0,2.0` (a choice), `beta_start=0.5` (fixed)."""
    name, sep, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not spec.strip():
        raise UserError(f"--range {text}: write NAME=LOW:HIGH or NAME=A,B,C "
                        "(e.g. tau=0.1:0.3, gamma=1.0,2.0)")
    if name not in SEARCHED:
        raise UserError(f"--range {text}: {name!r} cannot be searched; choose from {', '.join(SEARCHED)}")
    try:
        if name in CATEGORICAL:
            found: Range = Choice(tuple(v.strip() for v in spec.split(",")))
        elif ":" in spec:
            low, high = (float(v) for v in spec.split(":"))
            found: Range = Interval(low, high)
        else:
            found = Choice(tuple(None if v.strip().lower() == "none" else float(v) for v in spec.split(",")))
    except ValueError:
        raise UserError(f"--range {text}: {spec!r} is not LOW:HIGH or a comma-separated list of numbers") \
            from None
    if None in _ends(found) and name != "gamma":
        raise UserError(f"--range {text}: only gamma can be none (no non-entity down-sampling)")
    if any(isinstance(value, float) and not math.isfinite(value) for value in _ends(found)):
        raise UserError(f"--range {text}: every value must be a finite number")
    if isinstance(found, Interval) and not found.low < found.high:
        raise UserError(f"--range {text}: the low end must be below the high end")
    for value in _ends(found):
        try:
            replace(TrainConfig(), **{name: value})
        except ValueError as e:
            raise UserError(f"--range {text}: {e}") from None
    return name, found


def _ends(found: Range) -> tuple:
    return (found.low, found.high) if isinstance(found, Interval) else found.values


def search_ranges(dataset: str, overrides: list[str] = ()) -> dict[str, Range]:
    """The paper's ranges for `dataset`, with each `--range NAME=...` replacing or adding one."""
    ranges = dict(PAPER_RANGES[dataset])
    for text in overrides:
        name, found = parse_range(text)
        ranges[name] = found
    return ranges


def suggest(trial: optuna.Trial, ranges: dict[str, Range]) -> None:
    """Define-by-run: one Optuna suggestion per searched setting, in a fixed order (so a seed repeats)."""
    for name in SEARCHED:
        found = ranges.get(name)
        if isinstance(found, Interval):
            trial.suggest_float(name, found.low, found.high)
        elif isinstance(found, Choice):
            trial.suggest_categorical(name, list(found.values))


def space_function(ranges: dict[str, Range]):
    """The define-by-run function for OptunaSearch (picklable: Tune saves it with the searcher)."""
    return functools.partial(suggest, ranges=ranges)


SAMPLERS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo")


def make_sampler(seed: int, num_samples: int, kind: str = "tpe") -> optuna.samplers.BaseSampler:
    """Seeded TPE, or seeded uniform random draws (`random`: what Ray's BasicVariantGenerator does with
    tune.uniform and tune.choice, kept in the Optuna study so that every result file is the same).

    TPE's random start is shortened to half the budget (at least 2, at most Optuna's 10) so that a small
    search still gets some guided trials; constant_liar keeps parallel trials apart."""
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(2, min(10, num_samples // 2))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def describe(ranges: dict[str, Range]) -> str:
    return "  ".join(f"{name}={ranges[name]}" for name in SEARCHED if name in ranges)
