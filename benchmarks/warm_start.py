"""Warm-starting a target's search from the targets searched before it (issue 45, point 4): the laptop
multi-source CoNLL search (targets de, es, nl, in that order) with and without `--warm-start`, several search
seeds.

    python benchmarks/warm_start.py [--seeds 0,1,2]

Each search is README command 1's, `tune/search.py --dataset conll --mode multi` on the laptop preset, with one
final run of each target's chosen setting (`--final-seeds 1 --no-baseline`, scored on the whole test set) in
place of two seeds and the baseline. es and nl are the later targets: with `--warm-start` es's first trial trains
de's best setting and nl's first two train de's and es's. Per later target and arm: the trials and training steps
it needed to come within 0.5 F1 of its best (the best target-dev F1 either arm found for that target with that
seed), its best dev F1 and the test F1 of its chosen setting; then warm minus cold, paired by seed, with its 95%
interval (pram/stats.py). The rule of the issue: later targets reach their best in at most half the trials of a
cold start.

Each finished search leaves results/warm-start/<arm>-seed<seed>.json (committed: per target its trial values in
trial-number order, the steps at each evaluation, its test F1, and the search's wall time), read instead of
running it again; an interrupted one resumes from runs/warm-start/. So the comparison is built across sessions,
and the section "warm-start" of results/BENCHMARKS.md is rewritten from the searches finished so far.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import mean_sd, resumable_search, table, write_section

from pram.results import FINAL, HISTORY

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "results" / "warm-start"
RUNS = ROOT / "runs" / "warm-start"
TARGETS = ("de", "es", "nl")
LATER = TARGETS[1:]
COMMON = ["--targets", ",".join(TARGETS), "--preset", "laptop", "--final-seeds", "1", "--no-baseline",
          "--max-concurrent", "2", "--cpus-per-trial", "1"]
ARMS = {"cold": ["--no-warm-start"], "warm": ["--warm-start"]}
CLOSE = 0.5


def record(arm: str, seed: int) -> dict:
    """One search: per target, each trial's last target-dev F1 and steps (trial-number order) and the test F1
    of its chosen setting, kept as results/warm-start/<arm>-seed<seed>.json."""
    import pyarrow.parquet as pq

    from pram.files import write_atomically

    kept = RECORDS / f"{arm}-seed{seed}.json"
    if kept.is_file():
        return json.loads(kept.read_text())
    out = RUNS / f"{arm}-seed{seed}"
    wall = resumable_search(out, "conll", "multi", [*COMMON, *ARMS[arm], "--seed", str(seed)])
    history = pq.read_table(out / HISTORY).to_pandas().sort_values("step")
    final = pq.read_table(out / FINAL).to_pylist()
    targets = {}
    for target in TARGETS:
        last = history[history["target"] == target].groupby("optuna_trial").last().sort_index()
        test = [r["f1_mean"] for r in final
                if (r["target"], r["variant"], r["selection"], r["lang"]) == (target, "both", "target-dev", target)]
        targets[target] = {"values": [float(v) for v in last["target_dev_f1"]],
                           "steps": [int(v) for v in last["step"]], "test_f1": test[0]}
    found = {"arm": arm, "seed": seed, "wall_s": round(wall, 1), "targets": targets}
    RECORDS.mkdir(parents=True, exist_ok=True)
    write_atomically(kept, json.dumps(found) + "\n")
    return found


def to_mark(values: list[float], steps: list[int], mark: float) -> tuple[int, int] | None:
    """(trials, training steps) a target's search needed, in trial-number order, until a trial reached `mark`."""
    for i, value in enumerate(values):
        if value >= mark:
            return i + 1, sum(steps[: i + 1])
    return None


def report(seeds: list[int], searches: dict) -> None:
    from pram.stats import compare_seeds

    rows, lines = [], []
    needed: dict[tuple[str, str], list[int]] = {}
    for target in LATER:
        for seed in seeds:
            mark = max(max(searches[arm, seed]["targets"][target]["values"]) for arm in ARMS) - CLOSE
            for arm in ARMS:
                t = searches[arm, seed]["targets"][target]
                reached = to_mark(t["values"], t["steps"], mark)
                # (the mark is within 0.5 F1 of the best either arm found, so one arm always reaches it; a search
                # that does not counts all its trials, a lower bound)
                needed.setdefault((target, arm), []).append(reached[0] if reached else len(t["values"]))
                rows.append([target, seed, arm, f"{max(t['values']):.2f}",
                             f"{reached[0]} ({reached[1]} steps)" if reached else "not reached",
                             f"{t['test_f1']:.2f}"])
        trials = {arm: statistics.fmean(needed[target, arm]) for arm in ARMS}
        for name, key in (("best dev F1", lambda t: max(t["values"])), ("test F1", lambda t: t["test_f1"])):
            c = compare_seeds([key(searches["warm", s]["targets"][target]) for s in seeds],
                              [key(searches["cold", s]["targets"][target]) for s in seeds])
            lines.append(f"- {target}, warm minus cold, {name}: {c.interval()}: {c.verdict}")
        lines.append(f"- {target}: trials to within {CLOSE} F1 of the seed's best, warm "
                     f"{mean_sd(needed[target, 'warm'])} against cold {mean_sd(needed[target, 'cold'])} "
                     f"({trials['warm'] / trials['cold']:.2f}x; the issue's rule: at most 0.5x)")
    wall = {arm: statistics.fmean(searches[arm, s]["wall_s"] for s in seeds) / 60 for arm in ARMS}
    body = table(["later target", "seed", "arm", "best dev F1", f"trials (steps) to within {CLOSE} F1 of the "
                  "seed's best", "test F1 of the chosen setting"], rows) + "\n\n" + "\n".join(lines) + (
        f"\n\nSearches: the laptop multi-source CoNLL search (targets {', '.join(TARGETS)} in that order, 4 trials "
        "each, 150 steps a trial, two one-thread trials at a time), `--final-seeds 1 --no-baseline`; mean wall "
        f"{wall['cold']:.0f} min cold, {wall['warm']:.0f} min warm. The first target, de, is searched alike in "
        "both arms. Seeds so far: " + ", ".join(map(str, seeds)) + ".")
    write_section("warm-start", "Warm-starting a target's search from the targets before it", body, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="search seeds, comma-separated")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    searches = {}
    for seed in seeds:
        for arm in ARMS:
            searches[arm, seed] = found = record(arm, seed)
            print(f"seed {seed} {arm}: {found['wall_s'] / 60:.0f} min; test F1 " + ", ".join(
                f"{t} {found['targets'][t]['test_f1']:.2f}" for t in TARGETS), flush=True)
        report([s for s in seeds if s <= seed], searches)


if __name__ == "__main__":
    main()
