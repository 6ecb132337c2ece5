"""What re-scoring the top trials on a second seed buys (issue 44, point 3), measured on finished searches.

    python benchmarks/rescore_value.py SEARCH_FOLDER [SEARCH_FOLDER ...] [--top 3] [--name NAME]

Each SEARCH_FOLDER is a finished single-source laptop search on CoNLL en -> de whose trials trained to the end
(`--scheduler fifo`), such as the search-efficiency benchmark's TPE searches (runs/search-efficiency-24/tpe-seed*).
For each, what `--rescore-top K` does, done after the fact with `pram experiment` on the search's own trial
(the laptop search's training settings, its run.json's, and each trial's searched settings):
1. the K best trials trained again with the search seed + 1, each scored on the objective at its last evaluation;
2. the choice `tune.run.rescored_best` makes from the two scores (the highest mean);
3. the search's own choice (its best trial) and the re-scored choice each trained with the search seed and scored
   on the whole German test set, the checkpoint kept on target dev: the test F1 a final run of each would give.
Then, over the searches: how often the choice changed, the test F1 of the re-scored choice minus the search's
choice, paired by search, with its 95% interval (pram/stats.py), and the extra training steps (K trials) as a share
of the search's. Runs go to runs/rescore-value[-NAME]/<search>/ (a second call skips finished runs); the section
"rescore-value[-NAME]" of results/BENCHMARKS.md is rewritten.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from common import table, write_section

from pram.flags import config_flags
from pram.results import RUN

ROOT = Path(__file__).resolve().parent.parent
OBJECTIVE = "target_dev_f1"


def run_arms(runs: Path, seed: int, arms: dict[str, dict], fixed: dict) -> dict[str, dict]:
    """`pram experiment` of these arms (name -> the trial's searched settings) with one seed; each arm's
    metrics.json."""
    argv = [sys.executable, "-m", "pram.cli", "experiment", "--preset", "laptop", "--dataset", "conll",
            "--source", "en", "--targets", "de", "--seeds", str(seed), "--variants", ",".join(arms),
            "--parallel", "2", "--threads", "1", "--runs-dir", str(runs), "--results", str(runs / f"results-{seed}"),
            *config_flags(fixed)]
    for name, settings in arms.items():
        argv += ["--arm", f"{name}={' '.join(config_flags(settings))}"]
    subprocess.run(argv, cwd=ROOT, check=True)
    return {name: json.loads((runs / f"conll-en-to-de-{name}-seed{seed}" / "metrics.json").read_text())
            for name in arms}


def test_f1(metrics: dict) -> float:
    return metrics["selected_by"]["target-dev"]["test"]["de"]["f1"]


def one_search(folder: Path, top: int, runs: Path) -> dict:
    import optuna

    from tune.run import rescored_best, top_trials
    from tune.settings import SEARCH_DEFAULTS

    run = json.loads((folder / RUN).read_text())
    seed = run["seed"]
    fixed = {**SEARCH_DEFAULTS["laptop"]["train"], **run.get("train", {})}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="conll-single-de", storage=f"sqlite:///{folder / 'optuna.db'}")
    best = top_trials(study, top)
    settings = {f"t{t.number}": t.params for t in best}
    second = {name: m["history"][-1][OBJECTIVE] for name, m in run_arms(runs, seed + 1, settings, fixed).items()}
    first = {t.number: t.value for t in best}
    chosen = rescored_best(first, {t.number: second[f"t{t.number}"] for t in best})
    own = best[0].number
    finals = run_arms(runs, seed, {f"t{n}": settings[f"t{n}"] for n in dict.fromkeys((own, chosen))}, fixed)
    return {"search": folder.name, "seed": seed, "trials": len(study.trials), "own": own, "chosen": chosen,
            "scores": {n: [first[n], second[f"t{n}"]] for n in first},
            "test_own": test_f1(finals[f"t{own}"]), "test_chosen": test_f1(finals[f"t{chosen}"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("searches", nargs="+", type=Path, help="finished FIFO searches, en -> de, laptop preset")
    parser.add_argument("--top", type=int, default=3, help="K of --rescore-top (default: 3)")
    parser.add_argument("--name", default=None, help="runs/rescore-value-NAME and its own section")
    args = parser.parse_args()
    from pram.stats import compare_seeds

    suffix = f"-{args.name}" if args.name else ""
    found = [one_search(folder.resolve(), args.top, ROOT / "runs" / f"rescore-value{suffix}" / folder.name)
             for folder in args.searches]
    rows = [[f["search"], f["seed"], f"{f['own']} ({f['scores'][f['own']][0]:.2f}, {f['scores'][f['own']][1]:.2f})",
             f"{f['chosen']} ({f['scores'][f['chosen']][0]:.2f}, {f['scores'][f['chosen']][1]:.2f})",
             f"{f['test_own']:.2f}", f"{f['test_chosen']:.2f}"] for f in found]
    c = compare_seeds([f["test_chosen"] for f in found], [f["test_own"] for f in found])
    changed = sum(f["own"] != f["chosen"] for f in found)
    extra = args.top / statistics.fmean(f["trials"] for f in found)
    body = table(["search", "seed", "its best trial (search score, seed + 1 score)",
                  f"kept after re-scoring the top {args.top} (scores)", "test F1, search's choice",
                  "test F1, re-scored choice"], rows) + (
        f"\n\nRe-scoring changed the choice in {changed} of {len(found)} searches; the re-scored choice minus the "
        f"search's, test F1: {c.interval()}: {c.verdict}; for {args.top} more trials, {extra:.0%} of the "
        "searches' trials. Test F1: one run of each choice with the search seed, whole German test set, the "
        "checkpoint kept on target dev.")
    write_section(f"rescore-value{suffix}", f"Re-scoring the top {args.top} trials on a second seed", body, 1)
    print(body)


if __name__ == "__main__":
    main()
