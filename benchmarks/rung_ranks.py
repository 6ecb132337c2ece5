"""Would early stopping have kept the right trials? Rung ranks read from a finished search that trained every
trial to the end (`--scheduler fifo`): no new training.

    python benchmarks/rung_ranks.py SEARCH_FOLDER [--target de] [--section NAME] [--note TEXT]

For each evaluation round before the last: Spearman's rho between the trials' objective then and at the last
round, with its 95% interval (objective_noise.rho_interval), the rank then of the trial best at the end, and
whether ASHA's rule at that rung (reduction factor 2: a trial below the median of the trials that reached the
rung stops) would have stopped it. Only trials that reached the last round count. The section NAME (default
rung-ranks) of results/BENCHMARKS.md is written with the search's schedule and sampler, read from its run.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import table, write_section
from objective_noise import rho_interval

from pram.results import HISTORY, RUN, SPACE


def by_trial(out: Path, target: str, objective: str = "target_dev_f1") -> dict[int, dict[int, float]]:
    """A search's objective for one target, {Optuna trial: {step: value}}, from its history.parquet."""
    import pyarrow.parquet as pq

    found: dict[int, dict[int, float]] = {}
    for row in pq.read_table(out / HISTORY).to_pylist():
        if row["target"] == target:
            found.setdefault(row["optuna_trial"], {})[row["step"]] = row[objective]
    return found


def rounds_of(out: Path, target: str) -> tuple[list[int], list[list[float]]]:
    """The evaluation steps, and each complete trial's objective at each of them."""
    trials = by_trial(out, target)
    steps = sorted({s for r in trials.values() for s in r})
    return steps, [[r[s] for s in steps] for r in trials.values() if len(r) == len(steps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("search", type=Path, help="a finished search's folder (its history.parquet and run.json)")
    parser.add_argument("--target", default="de")
    parser.add_argument("--section", default="rung-ranks")
    parser.add_argument("--note", default="", help="a paragraph put under the table")
    args = parser.parse_args()
    from scipy.stats import rankdata, spearmanr

    run = json.loads((args.search / RUN).read_text())
    steps, trials = rounds_of(args.search, args.target)
    last = [t[-1] for t in trials]
    best = max(range(len(trials)), key=lambda i: last[i])
    rows = []
    for r, step in enumerate(steps[:-1]):
        then = [t[r] for t in trials]
        rank = rankdata([-v for v in then])[best]  # 1 = highest; ties share their mean rank
        kept = then[best] >= statistics.median(then)
        rows.append([r + 1, step, rho_interval(spearmanr(then, last).statistic, len(trials)),
                     f"{rank:.0f} of {len(trials)}", "kept" if kept else "stopped",
                     f"{statistics.stdev(then):.2f}"])
    rows.append([len(steps), steps[-1], "-", f"1 of {len(trials)}", "-", f"{statistics.stdev(last):.2f}"])
    import yaml

    searched = set(yaml.safe_load((args.search / SPACE).read_text()) or {})
    train = {k: v for k, v in run.get("train", {}).items() if k not in searched}
    train.update(r.split("=", 1) for r in run.get("ranges", []))  # --range NAME=SPEC overrides
    body = table(["round", "step", "Spearman rho with the last round [95% interval]",
                  "rank then of the trial best at the end", "ASHA at this rung (halving) would have",
                  "sd between trials"], rows) + (
        f"\n\nSearch: `{args.search.name}`, target {args.target}, {len(trials)} trials trained to the end "
        f"(sampler {run.get('sampler')}, seed {run.get('seed')}, space {Path(run.get('space', '')).name}: "
        f"{', '.join(sorted(searched))}); the trial's fixed settings beyond its preset's ({run.get('preset')}): "
        f"{', '.join(f'{k}={v}' for k, v in sorted(train.items()))}. The best trial at the end scored "
        f"{last[best]:.2f}.") + (f"\n\n{args.note}" if args.note else "")
    write_section(args.section, f"Rung ranks of a search trained to the end ({steps[-1]} steps)", body, 1)
    print(body)


if __name__ == "__main__":
    main()
