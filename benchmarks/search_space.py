"""Which space finds better settings at the same budget: `--space paper` against `--space wide` (issue 22).

    python benchmarks/search_space.py [--seeds 0,1,2] [--num-samples 12] [--targets de] [--preset laptop]

For each search seed and space (seed by seed, both spaces of a seed before the next seed), the laptop search
(`tune/search.py --dataset conll --mode single --no-baseline`, the same trials, steps and final seeds for both
spaces) runs into runs/search-space/<space>-seed<seed>/; a search that was interrupted is resumed and a finished
one is read again, so the comparison can be built across sessions. After each seed, results/search-space/README.md
is rewritten from the seeds both spaces have finished, with, per space: the best dev F1 over the seeds
(mean ± sd), the test F1 of the setting each search chose (its final stage, whole test set), the wall time, and
fANOVA importance of every setting over the complete trials of all its seeds (with their number).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SPACES = ("paper", "wide")


def run(out: Path, space: str, seed: int, args) -> float:
    """Run (or resume, or read) one search; its wall seconds, summed over the sessions that ran it."""
    clock = out / "wall.json"
    if (out / "summary.md").is_file():
        return json.loads(clock.read_text())["seconds"]
    spent = json.loads(clock.read_text())["seconds"] if clock.is_file() else 0.0
    command = [sys.executable, "tune/search.py", "--dataset", "conll", "--mode", "single", "--targets",
               args.targets, "--preset", args.preset, "--space", space, "--seed", str(seed), "--num-samples",
               str(args.num_samples), "--final-seeds", str(args.final_seeds), "--no-baseline", "--out", str(out)]
    if (out / "run.json").is_file():
        command = [sys.executable, "tune/search.py", "--dataset", "conll", "--mode", "single", "--out", str(out),
                   "--resume"]
    started = time.monotonic()
    try:
        subprocess.run(command, cwd=ROOT, check=True)
    finally:
        out.mkdir(parents=True, exist_ok=True)
        clock.write_text(json.dumps({"seconds": spent + time.monotonic() - started}))
    return spent + time.monotonic() - started


def importances(folders: list[Path], targets: list[str]) -> tuple[dict[str, float], int]:
    """fANOVA over the complete trials of every folder's study (one space: the same distributions)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pooled = optuna.create_study(direction="maximize")
    for folder in folders:
        for target in targets:
            storage = f"sqlite:///{folder / 'optuna.db'}"
            study = optuna.load_study(study_name=f"conll-single-{target}", storage=storage)
            pooled.add_trials([create_trial(params=t.params, distributions=t.distributions, value=t.value)
                               for t in study.get_trials(states=(TrialState.COMPLETE,))])
    n = len(pooled.trials)
    return (dict(get_param_importances(pooled, evaluator=FanovaImportanceEvaluator(seed=0))) if n >= 2 else {}), n


def mean_sd(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else \
        f"{values[0]:.2f}" if values else "-"


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
    walls: dict[tuple[str, int], float] = {}
    for seed in seeds:
        for space in SPACES:
            walls[space, seed] = run(Path(args.runs) / f"{space}-seed{seed}", space, seed, args)
        report(args, [s for s in seeds if s <= seed], walls)


def report(args, seeds: list[int], walls: dict[tuple[str, int], float]) -> None:
    """Write results/search-space/README.md from the searches of these seeds (both spaces finished)."""
    targets = args.targets.split(",")
    rows, notes = [], []
    for space in SPACES:
        folders = [Path(args.runs) / f"{space}-seed{seed}" for seed in seeds]
        best, test = [], []
        for folder in folders:
            trials = pq.read_table(folder / "trials.parquet").to_pylist()
            best.append(max(t["best_objective"] for t in trials if t["best_objective"] is not None))
            final = pq.read_table(folder / "final.parquet").to_pylist()
            test += [r["f1_mean"] for r in final if (r["variant"], r["selection"], r["lang"]) ==
                     ("both", "target-dev", targets[0])]
        found, n = importances(folders, targets)
        ranked = ", ".join(f"{name} {value:.2f}" for name, value in sorted(found.items(), key=lambda kv: -kv[1]))
        rows.append(f"| `{space}` | {', '.join(map(str, seeds))} | {mean_sd(best)} | {mean_sd(test)} | "
                    f"{statistics.fmean(walls[space, s] for s in seeds) / 60:.1f} |")
        notes.append(f"- `{space}`: fANOVA importance over {n} complete trials of its {len(seeds)} searches: "
                     f"{ranked or '-'}")
    command = "python benchmarks/search_space.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "# Which search space: `paper` against `wide` (issue 22)", "",
        f"Command: `{command.strip()}`. Each search: `tune/search.py --dataset conll --mode single --targets "
        f"{args.targets} --preset {args.preset} --num-samples {args.num_samples} --final-seeds {args.final_seeds}"
        " --no-baseline --space SPACE --seed SEED`; the same trials, steps and final seeds for both spaces.", "",
        f"| space | search seeds | best {targets[0]} dev F1 (mean ± sd) | test F1 of the chosen setting "
        "(whole test set; mean ± sd over searches, each the mean of its final seeds) | wall minutes per search |",
        "|---|---|---|---|---|", *rows, "", *notes, ""])
    from pram.files import write_atomically

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    write_atomically(results / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
