"""The search space: a YAML file of Optuna-like distributions (tune/spaces/), `--range` overrides, and the
define-by-run function.

A space file maps settings of TrainConfig to what a trial draws:

    tau: {low: 0.02, high: 0.3, log: true}     # a float range (optional `log: true` or `step: 0.05`)
    frozen_layers: {low: 0, high: 6}           # an int range, for an int setting
    gamma: [1.0, 1.5, 2.0, none]               # a choice (none: the setting's None)
    proto_space: [hidden, centered, projection]
    proto_dim: {low: 32, high: 256, log: true, when: {proto_space: projection}}   # only when ... is chosen
    beta_start: 0.5                            # fixed

`--space paper` and `--space wide` are tune/spaces/<name>-<dataset>.yaml. The define-by-run function only asks
Optuna for values; it does no computation (Ray Tune times it).
"""

from __future__ import annotations

import functools
import hashlib
import math
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import yaml

from pram.config import CATEGORICAL, INTEGER, SEARCHABLE, TrainConfig
from pram.errors import UserError

SPACES = Path(__file__).parent / "spaces"
SHIPPED = ("paper", "wide")
"""`--space NAME`: tune/spaces/NAME-<dataset>.yaml."""

Condition = tuple[str, tuple]
"""(a choice's name, the values of it under which a setting is drawn)."""


@dataclass(frozen=True)
class Interval:
    """A number drawn from [low, high]: uniformly, on a log scale, or on a grid of `step`; whole numbers for an
    INTEGER setting."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False
    when: Condition | None = None

    def __str__(self) -> str:
        return f"{self.low:g}:{self.high:g}" + (":log" if self.log else f":{self.step:g}" if self.step else "")


@dataclass(frozen=True)
class Choice:
    """One of a few values (None: the setting is off, e.g. no non-entity down-sampling; strings for the
    settings that are names, e.g. proto_space)."""

    values: tuple[float | int | str | None, ...]
    when: Condition | None = None

    def __str__(self) -> str:
        return ",".join("none" if v is None else v if isinstance(v, str) else f"{v:g}" for v in self.values)


Range = Interval | Choice

# Settings a space may name, in the order a trial suggests them (so that a seed repeats): the paper's five,
# the target-term schedule, the optimisation and model settings, the representation choices.
SEARCHED = SEARCHABLE + CATEGORICAL
# The search sets these through its space (`--range tau=0.2` fixes one); the others are also flags.
PAPER_SETTINGS = ("tau", "lam", "alpha", "beta", "gamma", "beta_start", "beta_ramp")
_TYPES = typing.get_type_hints(TrainConfig)
NULLABLE = tuple(name for name in SEARCHED if type(None) in typing.get_args(_TYPES[name]))
"""Settings whose None means something (gamma: no down-sampling); a choice may hold `none` for them."""


def space_path(space: str, dataset: str) -> Path:
    """The file `--space` names: a shipped space's name or a path."""
    if space in SHIPPED:
        return SPACES / f"{space}-{dataset}.yaml"
    path = Path(space)
    if not path.is_file():
        raise UserError(f"--space {space}: no such file; give a YAML file or one of {', '.join(SHIPPED)} "
                        f"(tune/spaces/)")
    return path


def space_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load_space(path: Path) -> dict[str, Range]:
    """The ranges of a space file; any mistake in it is one UserError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the space file ({e})") from None
    return parse_space(text, str(path))


def parse_space(text: str, where: str) -> dict[str, Range]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{where}{line}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if root is None or (isinstance(root, yaml.MappingNode) and not root.value):
        raise UserError(f"{where}:1: the space is empty; name at least one setting (see tune/spaces/)")
    if not isinstance(root, yaml.MappingNode):
        raise UserError(f"{where}:{root.start_mark.line + 1}: a space is a mapping of settings to ranges, "
                        "e.g. `tau: {low: 0.1, high: 0.3}`")
    loader = yaml.SafeLoader("")
    ranges, lines = {}, {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        name = str(key_node.value).replace("-", "_")
        try:
            if name in ranges:
                raise ValueError("named twice")
            ranges[name] = to_range(name, loader.construct_object(value_node, deep=True))
        except ValueError as e:
            raise UserError(f"{where}:{line}: {name}: {e}") from None
        lines[name] = line
    check_conditions(ranges, lambda name: f"{where}:{lines[name]}")
    return ranges


def to_range(name: str, spec) -> Range:
    """A setting's range from its YAML (or --range) value; ValueError says what is wrong with it."""
    if name not in SEARCHED:
        what = "is a setting the search does not vary" if name in _TYPES else "is not a setting of TrainConfig"
        raise ValueError(f"{what}; a space may name {', '.join(SEARCHED)}")
    when = None
    if isinstance(spec, dict):
        spec = dict(spec)
        if "when" in spec:
            when = _condition(spec.pop("when"))
        if not spec:  # only `when:`
            raise ValueError("give low and high, a list of choices, or a value")
    if isinstance(spec, dict) and set(spec) == {"choices"}:  # a choice with a condition: {choices: [...], when: ...}
        spec = spec["choices"]
        if not isinstance(spec, list):
            raise ValueError("choices: give a list")
    if isinstance(spec, dict):
        found = _interval(name, spec, when)
    elif isinstance(spec, list):
        if not spec:
            raise ValueError("an empty list of choices")
        found = Choice(tuple(_value(name, v) for v in spec), when)
    else:
        found = Choice((_value(name, spec),), when)
    for value in (found.low, found.high) if isinstance(found, Interval) else found.values:
        try:
            replace(TrainConfig(), **{name: value})
        except ValueError as e:
            raise ValueError(f"{value!r}: {e}") from None
    return found


def _interval(name: str, spec: dict, when: Condition | None) -> Interval:
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(str, sorted(unknown)))}; a range has low, high and "
                         "optionally log or step (and when); a conditional choice is {choices: [...], when: ...}")
    if "low" not in spec or "high" not in spec:
        raise ValueError("a range needs both low and high")
    if name in CATEGORICAL:
        raise ValueError(f"is a name, not a number: give a list of choices, e.g. [{_default(name)}]")
    integer = name in INTEGER
    low, high = (_number(name, spec[k], k) for k in ("low", "high"))
    step = _number(name, spec["step"], "step") if spec.get("step") is not None else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"log: {log!r} is not true or false")
    if not low < high:
        raise ValueError(f"low {low:g} is not below high {high:g}")
    if log and low <= 0:
        raise ValueError(f"log: true needs a positive low (got {low:g})")
    if log and step is not None:
        raise ValueError("log and step cannot be used together (Optuna samples one or the other)")
    if step is not None and step <= 0:
        raise ValueError(f"step {step:g} must be positive")
    return Interval(low, high, log, step, integer, when)


def _number(name: str, value, key: str) -> float | int:
    if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{key}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key}: {value!r} is not a finite number")
    if name in INTEGER:
        if value != int(value):
            raise ValueError(f"{key}: {value!r} is not a whole number ({name} is an int setting)")
        return int(value)
    return float(value)


def _value(name: str, value):
    """One choice (or a fixed value) for `name`, of the setting's type. A named setting's `none` is a name
    (`average: [none, ema]`); a number's is None, where the setting allows it."""
    if name in CATEGORICAL and isinstance(value, str):
        return value
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        if name not in NULLABLE:
            raise ValueError(f"none is not a value of {name} (only {', '.join(NULLABLE)} can be none)")
        return None
    if name in CATEGORICAL:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a name (e.g. {_default(name)})")
        return value
    return _number(name, value, "value")


def _default(name: str):
    return getattr(TrainConfig(), name)


def _condition(when) -> Condition:
    if not isinstance(when, dict) or len(when) != 1:
        raise ValueError("when: give one choice and its value(s), e.g. `when: {proto_space: projection}`")
    [(choice, values)] = when.items()
    values = tuple(values) if isinstance(values, list) else (values,)
    if not values:
        raise ValueError("when: give at least one value of the choice")
    return str(choice).replace("-", "_"), values


def check_conditions(ranges: dict[str, Range], where: Callable[[str], str]) -> None:
    """Every `when:` of a space, its values made the choice's own (`none` -> None, "1.5" -> 1.5) in place; a
    wrong one is a UserError at where(setting)."""
    for name, found in list(ranges.items()):
        try:
            if found.when is not None:
                ranges[name] = replace(found, when=(found.when[0], check_condition(found, ranges)))
        except ValueError as e:
            raise UserError(f"{where(name)}: {name}: {e}") from None


def check_condition(found: Range, ranges: dict[str, Range]) -> tuple:
    """A `when:` names a choice of the same space, drawn unconditionally, and values among its choices; returns
    those values as the choice holds them."""
    choice, values = found.when
    parent = ranges.get(choice)
    if not isinstance(parent, Choice):
        raise ValueError(f"when: {choice} is not a choice of this space (a `when:` depends on a list of choices)")
    if parent.when is not None:
        raise ValueError(f"when: {choice} is itself conditional; a condition must name a choice drawn always")
    wanted = tuple(_value(choice, v) for v in values)
    unknown = [v for v in wanted if v not in parent.values]
    if unknown:
        raise ValueError(f"when: {choice} has no choice {', '.join(map(str, unknown))} "
                         f"(its choices: {parent})")
    return wanted


def parse_range(text: str) -> tuple[str, Range]:
    """`tau=0.1:0.3` (an interval), `lr=1e-5:1e-3:log` (on a log scale), `gamma=1.0,2.0` (a choice),
    `beta_start=0.5` (fixed)."""
    name, sep, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not spec.strip():
        raise UserError(f"--range {text}: write NAME=LOW:HIGH, NAME=LOW:HIGH:log or NAME=A,B,C "
                        "(e.g. tau=0.1:0.3, lr=1e-5:1e-3:log, gamma=1.0,2.0)")
    parts = [v.strip() for v in spec.split(":")]
    try:
        if len(parts) == 1:
            values = [v.strip() for v in spec.split(",")]
            found = to_range(name, values if len(values) > 1 else values[0])
        elif len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "log"):
            found = to_range(name, {"low": parts[0], "high": parts[1], "log": len(parts) == 3})
        else:
            raise ValueError(f"{spec!r} is not LOW:HIGH, LOW:HIGH:log or a comma-separated list")
    except ValueError as e:
        raise UserError(f"--range {text}: {e}") from None
    return name, found


def search_ranges(dataset: str, overrides: list[str] = (), space: Path | None = None) -> dict[str, Range]:
    """The ranges of `space` (default: the paper's for `dataset`), with each `--range NAME=...` replacing or
    adding one. A replaced setting keeps the file's `when:`; a conditional setting whose choice --range fixed to
    another value is dropped (it would never be drawn)."""
    ranges = dict(load_space(space or space_path("paper", dataset)))
    for text in overrides:
        name, found = parse_range(text)
        old = ranges.get(name)
        # a --range replaces a setting's values, not its condition in the file
        ranges[name] = replace(found, when=old.when) if old is not None and found.when is None else found
    for name, found in list(ranges.items()):  # a choice fixed by --range can leave a condition that never holds
        if found.when is not None and isinstance(ranges.get(found.when[0]), Choice) and \
                not set(found.when[1]) & set(ranges[found.when[0]].values):
            del ranges[name]
    check_conditions(ranges, lambda name: "--range")
    return ranges


def suggest_order(ranges: dict[str, Range]) -> list[str]:
    """Settings drawn always come first, then conditional ones, each group in SEARCHED's order."""
    return sorted(ranges, key=lambda name: (ranges[name].when is not None, SEARCHED.index(name)))


def suggest(trial: optuna.Trial, ranges: dict[str, Range]) -> None:
    """Define-by-run: one Optuna suggestion per searched setting, in a fixed order (so a seed repeats); a
    conditional setting only when its choice took one of its values."""
    for name in suggest_order(ranges):
        found = ranges[name]
        if found.when is not None and trial.params.get(found.when[0]) not in found.when[1]:
            continue
        if isinstance(found, Choice):
            trial.suggest_categorical(name, list(found.values))
        elif found.integer:
            trial.suggest_int(name, int(found.low), int(found.high), step=int(found.step or 1), log=found.log)
        else:
            trial.suggest_float(name, found.low, found.high, step=found.step, log=found.log)


def space_function(ranges: dict[str, Range]):
    """The define-by-run function for OptunaSearch (picklable: Tune saves it with the searcher)."""
    return functools.partial(suggest, ranges=ranges)


SAMPLERS = ("tpe", "random", "qmc", "gp", "cmaes")
SCHEDULERS = ("asha", "hyperband", "fifo")


def make_sampler(seed: int, num_samples: int, kind: str = "tpe") -> optuna.samplers.BaseSampler:
    """Seeded TPE, or seeded uniform random draws (`random`: what Ray's BasicVariantGenerator does with
    tune.uniform and tune.choice, kept in the Optuna study so that every result file is the same), or Optuna's
    scrambled Sobol sequence (`qmc`: spreads a small budget more evenly than random draws), or its Gaussian
    process sampler (`gp`: fits the objective's noise; its cost grows with the cube of the trials, so it suits
    budgets of tens to a few hundred trials), or CMA-ES (`cmaes`: a population of about 4 + 3 ln(settings)
    trials per generation, so it needs budgets of hundreds; trials ASHA stopped count with their last value, or
    under early stopping a generation would rarely fill).

    The model-based samplers' random start is a third of the budget (at least 2, at most Optuna's 10), so that a
    search of 24 trials proposes 16 of them from what it has seen (issue 44: with half, a 12-trial search never
    left its start-up); TPE models the settings jointly (multivariate, grouped so that conditional settings such
    as proto_dim are modelled where they exist) and constant_liar keeps parallel trials apart: Optuna 5's
    defaults, set here so that they do not move with its version. Settings that QMC and GP cannot model jointly
    (the conditional ones) are drawn by Optuna's seeded random fallback."""
    with warnings.catch_warnings():  # what Optuna says of these arguments is for its developers, not ours:
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # group, constant_liar
        warnings.filterwarnings("ignore", "`warn_independent_sampling`", FutureWarning)  # deprecated in 4.9
        return _sampler(seed, num_samples, kind)


def _sampler(seed: int, num_samples: int, kind: str) -> optuna.samplers.BaseSampler:
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                          warn_independent_sampling=False)
    startup = max(2, min(10, num_samples // 3))
    if kind == "cmaes":  # (integers and choices it cannot model: the seeded random fallback)
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, with_margin=True,
                                            consider_pruned_trials=True, warn_independent_sampling=False)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, deterministic_objective=False,
                                         warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True,
                                      constant_liar=True, warn_independent_sampling=False)


def trial_sampler(seed: int, num_samples: int, kind: str, number: int) -> optuna.samplers.BaseSampler:
    """The sampler that proposes Optuna trial `number` in the reproducible mode (--deterministic)."""
    return make_sampler(seed * 1_000_003 + number, num_samples, kind)


def describe(ranges: dict[str, Range]) -> str:
    def one(name):
        found = ranges[name]
        when = f" (when {found.when[0]}={','.join(map(str, found.when[1]))})" if found.when else ""
        return f"{name}={found}{when}"
    return "  ".join(one(name) for name in suggest_order(ranges))


PAPER_RANGES: dict[str, dict[str, Range]] = {dataset: load_space(space_path("paper", dataset))
                                             for dataset in ("conll", "wikiann")}
"""The paper's ranges (Appendix A), from tune/spaces/paper-<dataset>.yaml."""
