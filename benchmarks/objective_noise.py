"""Can the search's objective tell trials apart, and can ASHA's rungs? (issue 18, point 3)

    python benchmarks/objective_noise.py [--seeds 0,1,2] [--trials 16] [--search-seed 0] [--name NAME]
        [--set KEY=VALUE ...]

Both parts use the laptop search's trial (`tune/search.py`'s SEARCH_DEFAULTS["laptop"]: 150 steps of 8
sentences, an evaluation every 50 steps, so 3 rounds; single-source English -> German), two one-thread runs at a
time:
1. Noise: one setting (TrainConfig's defaults, the paper's values) trained with each of --seeds by
   `pram experiment`, scored at every round on the search's objective (the first 200 German dev sentences)
   and, in a second run of the same seeds, on the whole German dev set. Evaluation draws no random numbers, so
   both runs of a seed train the same weights: their difference is what the 200-sentence sample adds.
2. Ranks: a random search whose every trial trains to the end (`--sampler random --scheduler fifo`, the paper's
   ranges), --trials trials. For each ASHA rung (round 1 and 2; the laptop search's grace period is 1 and its
   reduction factor 2): Spearman's rho between the trials' scores at that round and at the last, and where the
   trial best at the end ranked then.
From the two: the spread between trials against the spread between seeds of one setting at each round, and the
share of trial pairs whose order at the end the seed noise alone would flip (a pair d F1 apart is flipped with
probability Phi(-|d| / (sqrt 2 * seed sd))).

--set KEY=VALUE changes a training setting of the search's trial in both parts (`--set max_steps=300`,
`--set average=tail`): the figures then describe that trial. Each Spearman rho has its 95% interval (Fisher's z
with the standard error 1.06 / sqrt(n - 3) of Fieller et al. 1957 for Spearman's rho).

Runs go to runs/objective-noise[-NAME]/ (kept: a second call skips the finished seeds and resumes the search).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

from common import mean_sd, resumable_search, table, timed, write_section

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "objective-noise"
SETTINGS: dict[str, str] = {}  # --set: the trial's settings that differ from the laptop search's
ALL_DEV = 100_000  # more than any dev split: `--eval-sentences` then keeps all of it
OBJECTIVE = "target_dev_f1"


def trial_flags() -> list[str]:
    """The laptop search's training settings, with --set's, as flags of `pram experiment` and the search."""
    from pram.flags import config_flags
    from tune.settings import SEARCH_DEFAULTS

    return config_flags({**SEARCH_DEFAULTS["laptop"]["train"], **SETTINGS})


def set_flags() -> list[str]:
    """--set's settings alone, as flags (the search applies the laptop search's own)."""
    from pram.flags import config_flags

    return config_flags(SETTINGS)


def setting(name: str) -> int:
    flags = trial_flags()
    return int(flags[flags.index(f"--{name.replace('_', '-')}") + 1])


def rho_interval(rho: float, n: int) -> str:
    """`0.16 [-0.36, 0.60]`: Spearman's rho with its 95% interval (Fisher's z, se 1.06 / sqrt(n - 3))."""
    if n < 4 or abs(rho) >= 1:
        return f"{rho:.2f}"
    half = 1.96 * 1.06 / math.sqrt(n - 3)
    return f"{rho:.2f} [{math.tanh(math.atanh(rho) - half):.2f}, {math.tanh(math.atanh(rho) + half):.2f}]"


def noise_runs(seeds: list[int], dev: str, root: Path) -> dict[int, list[tuple[float, float]]]:
    """seed -> (the objective, the training loss) at each round, for one setting trained with each seed, scored
    on `dev`."""
    runs = root / f"noise-{dev}"
    flags = trial_flags()
    if dev == "all":
        flags += ["--eval-sentences", str(ALL_DEV)]
    timed([sys.executable, "-m", "pram.cli", "experiment", "--preset", "laptop", "--dataset", "conll", "--source",
         "en", "--targets", "de", "--variants", "both", "--seeds", ",".join(map(str, seeds)), *flags,
         "--eval-languages", "", "--test-sentences", "200", "--parallel", "2", "--threads", "1",
         "--runs-dir", str(runs), "--results", str(runs / "results")], ROOT)
    found = {}
    for seed in seeds:
        history = json.loads((runs / f"conll-en-to-de-both-seed{seed}" / "metrics.json").read_text())["history"]
        found[seed] = [(h[OBJECTIVE], h["loss"]) for h in history]
    return found


def search_runs(trials: int, seed: int, root: Path) -> list[list[float]]:
    """The objective at each round of every trial of a random search trained without early stopping."""
    import pyarrow.parquet as pq

    out = root / f"random-fifo-seed{seed}"
    if not (out / "trials.parquet").is_file():
        resumable_search(out, "conll", "single", [
            "--targets", "de", "--preset", "laptop", "--sampler", "random", "--scheduler", "fifo", "--num-samples",
            str(trials), "--seed", str(seed), "--final-seeds", "0", "--max-concurrent", "2", "--cpus-per-trial", "1",
            *set_flags()])
    by_trial: dict[int, dict[int, float]] = {}
    for row in pq.read_table(out / "history.parquet").to_pylist():
        by_trial.setdefault(row["optuna_trial"], {})[row["round"]] = row[OBJECTIVE]
    rounds = max(len(r) for r in by_trial.values())
    return [[r[k] for k in sorted(r)] for r in by_trial.values() if len(r) == rounds]


def flipped_share(finals: list[float], seed_sd: float) -> float:
    """Mean over trial pairs of the chance that seed noise alone orders the pair the other way."""
    pairs = list(itertools.combinations(finals, 2))
    if seed_sd == 0:
        return 0.0
    normal = statistics.NormalDist()
    return statistics.fmean(normal.cdf(-abs(a - b) / (math.sqrt(2) * seed_sd)) for a, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="training seeds of the one setting, comma-separated")
    parser.add_argument("--trials", type=int, default=16, help="trials of the random search")
    parser.add_argument("--search-seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training setting of the trial, in both parts (repeatable)")
    parser.add_argument("--name", default=None, help="runs go to runs/objective-noise-NAME (default: the --set's)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    for item in args.set:
        key, _, value = item.partition("=")
        SETTINGS[key.strip().replace("-", "_")] = value.strip()
    name = args.name or "-".join(f"{k}-{v}" for k, v in SETTINGS.items())
    root = RUNS.with_name(f"objective-noise-{name}") if name else RUNS

    started = time.perf_counter()
    n = setting("eval_sentences")
    runs = {dev: noise_runs(seeds, dev, root) for dev in (str(n), "all")}
    noise = {dev: {s: [f1 for f1, _ in found[s]] for s in seeds} for dev, found in runs.items()}
    noise["sample"] = noise.pop(str(n))
    same_weights = all([loss for _, loss in runs[str(n)][s]] == [loss for _, loss in runs["all"][s]] for s in seeds)
    weights = ("logged the same training loss at every round (the same weights)" if same_weights else
               "logged different training losses: they did not train the same weights, so the sample column "
               "mixes in seed noise")
    trials = search_runs(args.trials, args.search_seed, root)
    minutes = (time.perf_counter() - started) / 60
    rounds = len(trials[0])

    from scipy.stats import rankdata, spearmanr

    last = [t[-1] for t in trials]
    best_at_end = max(range(len(trials)), key=lambda i: last[i])
    rows = []
    for r in range(rounds):
        seed_200 = [noise["sample"][s][r] for s in seeds]
        seed_all = [noise["all"][s][r] for s in seeds]
        sample = [noise["sample"][s][r] - noise["all"][s][r] for s in seeds]
        between = [t[r] for t in trials]
        spread = statistics.stdev(between)
        rank_then = rankdata([-f1 for f1 in between])[best_at_end]  # 1 = highest; ties share their mean rank
        rows.append([r + 1, (r + 1) * setting("eval_every"), mean_sd(seed_200), f"{statistics.stdev(seed_all):.2f}",
                     mean_sd(sample), f"{spread:.2f}", f"{spread / statistics.stdev(seed_200):.2f}",
                     rho_interval(spearmanr(between, last).statistic, len(trials)) if r < rounds - 1 else "-",
                     f"{rank_then:.0f} of {len(trials)}"])
    header = ["round", "step", f"one setting, {len(seeds)} seeds: dev F1 on {n} sentences (mean ± sd)",
              "sd on the whole dev set", f"{n}-sentence F1 minus whole-dev F1 (mean ± sd)",
              f"sd between {len(trials)} random trials ({n} sentences)", "between-trial sd / seed sd",
              "Spearman rho with the last round [95% interval]", "rank then of the trial best at the end"]
    flipped = flipped_share(last, statistics.stdev([noise["sample"][s][-1] for s in seeds]))
    body = table(header, rows) + (
        f"\n\nAt the last round, seed noise alone would reverse the order of **{flipped:.0%}** of the "
        f"{len(trials) * (len(trials) - 1) // 2} pairs of random trials (0% would be a perfect objective, 50% "
        f"one that cannot tell trials apart). Runs: {len(seeds)} seeds x 2 dev sets of the default setting and "
        f"{len(trials)} random-search trials (`--sampler random --scheduler fifo --seed {args.search_seed}`), "
        f"{minutes:.0f} minutes in all. The whole German dev set has {_dev_sentences()} sentences. The two "
        f"runs of each seed {weights}." + (f" The trial's settings beyond the laptop search's: "
                                           f"{', '.join(f'{k}={v}' for k, v in SETTINGS.items())}." if SETTINGS
                                           else ""))
    suffix = f"-{name}" if name else ""
    write_section(f"objective-noise{suffix}", "The search's objective: seed noise, sample noise and rung ranks"
                  + (f" ({', '.join(f'{k}={v}' for k, v in SETTINGS.items())})" if SETTINGS else ""), body, 1)


def _dev_sentences() -> int:
    from pram.data.corpora import load_language

    return len(load_language("conll", "de")["dev"])


if __name__ == "__main__":
    main()
