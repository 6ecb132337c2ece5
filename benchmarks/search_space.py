"""Which space finds better settings at the same budget: `--space paper` against `--space wide` (issue 22).

    python benchmarks/search_space.py [--seeds 0,1,2] [--num-samples 12] [--targets de] [--preset laptop]

For each search seed and space (seed by seed, both spaces of a seed before the next seed), the laptop search
(`tune/search.py --dataset conll --mode single --no-baseline`, the same trials, steps and final seeds for both
spaces) runs into runs/search-space/<space>-seed<seed>/; a search that was interrupted is resumed and a finished
one leaves results/search-space/searches/<space>-seed<seed>.json (committed), read instead of running it again,
so the comparison is built across sessions. After each seed, results/search-space/README.md
is rewritten from the seeds both spaces have finished, with, per space: the best dev F1 over the seeds
(mean ± sd), the test F1 of the setting each search chose (its final stage, whole test set), the wall time, and
fANOVA importance of every setting over the complete trials of all its seeds (with their number).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pyarrow.parquet as pq
from common import mean_sd, resumable_search

from pram.results import FINAL, SUMMARY

ROOT = Path(__file__).resolve().parents[1]
SPACES = ("paper", "wide")


def run(out: Path, space: str, seed: int, args) -> float:
    """Run (or resume) one search; its wall seconds, summed over the sessions that ran it."""
    if (out / SUMMARY).is_file():
        return json.loads((out / "wall.json").read_text())["seconds"]
    return resumable_search(out, "conll", "single", [
        "--targets", args.targets, "--preset", args.preset, "--space", space, "--seed", str(seed),
        "--num-samples", str(args.num_samples), "--final-seeds", str(args.final_seeds), "--no-baseline",
        "--scheduler", "asha"],  # (the laptop preset's default when these searches ran)
        capture=False)  # (the live view shows)


def record(out: Path, space: str, seed: int, args) -> dict:
    """What the comparison needs from one finished search, kept as results/search-space/searches/<name>.json
    (a few kB, committed) so that a later session reads it instead of the runs folder, which it does not have:
    the wall time, the best dev F1, the test F1 of the chosen setting, and every complete Optuna trial."""
    import optuna
    from optuna.distributions import distribution_to_json
    from optuna.trial import TrialState

    from pram.files import write_atomically

    kept = Path(args.results) / "searches" / f"{space}-seed{seed}.json"
    if kept.is_file():
        return json.loads(kept.read_text())
    wall = run(out, space, seed, args)
    targets = args.targets.split(",")
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    final = pq.read_table(out / FINAL).to_pylist()
    found = {"space": space, "seed": seed, "wall_s": round(wall, 1), "trials_run": len(trials),
             "best_dev_f1": max(t["best_objective"] for t in trials if t["best_objective"] is not None),
             "test_f1": [r["f1_mean"] for r in final if (r["variant"], r["selection"], r["lang"]) ==
                         ("both", "target-dev", targets[0])], "complete": []}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for target in targets:
        study = optuna.load_study(study_name=f"conll-single-{target}", storage=f"sqlite:///{out / 'optuna.db'}")
        found["complete"] += [{"value": t.value, "params": t.params,
                               "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()}}
                              for t in study.get_trials(states=(TrialState.COMPLETE,))]
    kept.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(kept, json.dumps(found, indent=1) + "\n")
    return found


def chosen(search: dict) -> str:
    """The settings of a search's best complete trial, briefly."""
    best = max(search["complete"], key=lambda t: t["value"])["params"]
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items())


def importances(searches: list[dict]) -> tuple[dict[str, float], int]:
    """fANOVA over the complete trials of a space's searches (one space: the same distributions)."""
    import optuna
    from optuna.distributions import json_to_distribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pooled = optuna.create_study(direction="maximize")
    pooled.add_trials([create_trial(params=t["params"], value=t["value"], distributions={
        k: json_to_distribution(d) for k, d in t["distributions"].items()}) for s in searches for t in s["complete"]])
    n = len(pooled.trials)
    return (dict(get_param_importances(pooled, evaluator=FanovaImportanceEvaluator(seed=0))) if n >= 2 else {}), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--num-samples", type=int, default=12)
    parser.add_argument("--final-seeds", type=int, default=1)
    parser.add_argument("--targets", default="de")
    parser.add_argument("--preset", default="laptop")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "search-space"))
    parser.add_argument("--results", default=str(ROOT / "results" / "search-space"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    searches: dict[tuple[str, int], dict] = {}
    for seed in seeds:
        for space in SPACES:
            searches[space, seed] = record(Path(args.runs) / f"{space}-seed{seed}", space, seed, args)
        report(args, [s for s in seeds if s <= seed], searches)


def report(args, seeds: list[int], searches: dict[tuple[str, int], dict]) -> None:
    """Write results/search-space/README.md from the searches of these seeds (both spaces finished)."""
    targets = args.targets.split(",")
    rows, notes = [], []
    for space in SPACES:
        done = [searches[space, seed] for seed in seeds]
        best = [s["best_dev_f1"] for s in done]
        test = [f for s in done for f in s["test_f1"]]
        found, n = importances(done)
        ranked = ", ".join(f"{name} {value:.2f}" for name, value in sorted(found.items(), key=lambda kv: -kv[1]))
        rows.append(f"| `{space}` | {', '.join(map(str, seeds))} | {mean_sd(best)} | {mean_sd(test)} | "
                    f"{statistics.fmean(s['wall_s'] for s in done) / 60:.1f} |")
        notes.append(f"- `{space}`: fANOVA importance over {n} complete trials of its {len(seeds)} searches: "
                     f"{ranked or '-'}")
    per_seed, gaps = [], []
    for seed in seeds:
        paper, wide = searches["paper", seed], searches["wide", seed]
        gap = statistics.fmean(wide["test_f1"]) - statistics.fmean(paper["test_f1"])
        gaps.append(gap)
        per_seed.append(f"| {seed} | {paper['best_dev_f1']:.2f} | {statistics.fmean(paper['test_f1']):.2f} | "
                        f"{wide['best_dev_f1']:.2f} | {statistics.fmean(wide['test_f1']):.2f} | {gap:+.2f} | "
                        f"{chosen(wide)} |")
    from pram.stats import compare_seeds

    paired = compare_seeds([statistics.fmean(searches["wide", seed]["test_f1"]) for seed in seeds],
                           [statistics.fmean(searches["paper", seed]["test_f1"]) for seed in seeds])
    command = "python benchmarks/search_space.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "# Which search space: `paper` against `wide` (issue 22)", "",
        f"Command: `{command.strip()}`. Each search: `tune/search.py --dataset conll --mode single --targets "
        f"{args.targets} --preset {args.preset} --num-samples {args.num_samples} --final-seeds {args.final_seeds}"
        " --no-baseline --scheduler asha --space SPACE --seed SEED`; the same trials, steps and final seeds for "
        "both spaces.", "",
        f"| space | search seeds | best {targets[0]} dev F1 (mean ± sd) | test F1 of the chosen setting "
        "(whole test set; mean ± sd over searches, each the mean of its final seeds) | wall minutes per search |",
        "|---|---|---|---|---|", *rows, "",
        "Per search seed:", "",
        f"| search seed | `paper` best {targets[0]} dev F1 | `paper` test F1 | `wide` best dev F1 | `wide` test F1 | "
        "wide - paper, test | the setting `wide` chose |", "|---|---|---|---|---|---|---|", *per_seed, "",
        f"`wide` minus `paper` on test, paired by search seed (mean [95% interval]): {paired.interval()}: "
        f"{paired.verdict}; `wide` ahead in {sum(g > 0 for g in gaps)} of {len(gaps)}. fANOVA below 20 complete "
        "trials (the dashboard's threshold) says little.", "",
        *notes, ""])
    from pram.files import write_atomically

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    write_atomically(results / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
