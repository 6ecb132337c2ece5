"""Search efficiency: Optuna TPE with ASHA early stopping against random search that trains every trial to the
end, on the same budget of training steps, several seeds.

    python benchmarks/search_efficiency.py [--seeds 0,1,2] [--random-trials 6] [--asha-trials 12]

Both arms are `tune/search.py` on the laptop preset's search schedule (150 steps of 8 sentences, an evaluation
every 50), single-source English -> German, no final stage, two one-thread trials at a time:
- random: `--sampler random --scheduler fifo --num-samples R`, uniform draws from the paper's ranges (what
  Ray's BasicVariantGenerator does), every trial trained to the end; its R x 150 steps are the budget;
- TPE + ASHA: `--num-samples A` (A > R, because ASHA stops most trials early), counted only up to the same
  budget.

Each evaluation adds the steps since the trial's last one; evaluations of the two concurrent trials are put in
the order they happened (the trial's start in optuna.db plus its elapsed time at the evaluation). The score is
the best target-dev F1 seen within the budget, and the steps each arm needed to come within 0.5 F1 of the best
either arm found with that seed. The curves are drawn to results/search-efficiency.png.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import mean_sd, table, write_section

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "results" / "search-efficiency.png"
COMMON = ["--dataset", "conll", "--mode", "single", "--targets", "de", "--preset", "laptop",
          "--final-seeds", "0", "--max-concurrent", "2", "--cpus-per-trial", "1"]
ARMS = {"random": ["--sampler", "random", "--scheduler", "fifo"],
        "tpe+asha": ["--sampler", "tpe", "--scheduler", "asha"]}
NAMES = {"random": "random search, no early stopping", "tpe+asha": "Optuna TPE + ASHA (the default)"}
CLOSE = 0.5


def run_arm(arm: str, seed: int, trials: int, out: Path) -> float:
    argv = [sys.executable, str(ROOT / "tune" / "search.py"), *COMMON, *ARMS[arm],
            "--num-samples", str(trials), "--seed", str(seed), "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def curve(out: Path) -> list[tuple[int, float]]:
    """(training steps used so far, best target-dev F1 so far) after each evaluation, in the order they
    happened across concurrent trials."""
    import optuna
    import pandas as pd

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="conll-single-de", storage=f"sqlite:///{out / 'optuna.db'}")
    start = {t.number: t.datetime_start.timestamp() for t in study.trials}
    history = pd.read_parquet(out / "history.parquet").sort_values(["optuna_trial", "step"])
    history["new_steps"] = history.groupby("optuna_trial")["step"].diff().fillna(history["step"])
    history["at"] = history["optuna_trial"].map(start) + history["time_total_s"]
    points, used, best = [], 0, float("-inf")
    for row in history.sort_values("at").itertuples():
        used += int(row.new_steps)
        best = max(best, row.target_dev_f1)
        points.append((used, best))
    return points


def best_within(points: list[tuple[int, float]], budget: int) -> float:
    return max((f1 for used, f1 in points if used <= budget), default=float("nan"))


def steps_to(points: list[tuple[int, float]], level: float, budget: int) -> int | None:
    return next((used for used, f1 in points if f1 >= level and used <= budget), None)


def draw(curves: dict, budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"random": "tab:gray", "tpe+asha": "tab:blue"}
    for (arm, seed), points in sorted(curves.items()):
        within = [(u, f) for u, f in points if u <= budget]
        xs = [u for u, _ in within] + [budget]  # the best so far holds until the budget is spent
        ys = [f for _, f in within] + [within[-1][1]]
        ax.step(xs, ys, where="post", color=colors[arm], alpha=0.8,
                label=NAMES[arm] if seed == min(s for a, s in curves if a == arm) else None)
    ax.axvline(budget, color="black", lw=0.8, ls="--")
    ax.set_xlabel("training steps used by the search (all trials)")
    ax.set_ylabel("best German dev F1 so far (%)")
    ax.set_title("Search efficiency, en -> de, laptop schedule (one line per seed)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="search seeds (sampler and trials), comma-separated")
    parser.add_argument("--random-trials", type=int, default=6, help="trials of the random arm: the budget")
    parser.add_argument("--asha-trials", type=int, default=12, help="trials TPE + ASHA may start")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    budget = args.random_trials * 150
    curves, wall = {}, {}
    with tempfile.TemporaryDirectory(prefix="pram-search-efficiency-") as tmp:
        for seed in seeds:
            for arm, trials in (("random", args.random_trials), ("tpe+asha", args.asha_trials)):
                out = Path(tmp) / f"{arm}-{seed}"
                wall[arm, seed] = run_arm(arm, seed, trials, out)
                curves[arm, seed] = curve(out)
                print(f"seed {seed} {arm}: {wall[arm, seed]:.0f} s, best within budget "
                      f"{best_within(curves[arm, seed], budget):.2f}", flush=True)
    rows, reached = [], {arm: [] for arm in ARMS}
    for seed in seeds:
        top = max(best_within(curves[arm, seed], budget) for arm in ARMS)
        for arm in ARMS:
            points = curves[arm, seed]
            needed = steps_to(points, top - CLOSE, budget)
            reached[arm].append(needed)
            rows.append([seed, NAMES[arm], f"{best_within(points, budget):.2f}",
                         "not within the budget" if needed is None else needed,
                         min(points[-1][0], budget) if points else 0, f"{wall[arm, seed] / 60:.1f}"])
    header = ["seed", "arm", f"best dev F1 within {budget} steps",
              f"steps to within {CLOSE} F1 of the seed's best", "steps used", "wall min"]
    body = table(header, rows)
    means = {arm: [best_within(curves[arm, s], budget) for s in seeds] for arm in ARMS}
    summary = [f"- {NAMES[arm]}: best dev F1 {mean_sd(v)}; reached within {CLOSE} F1 of the seed's best in "
               f"{sum(n is not None for n in reached[arm])} of {len(seeds)} seeds" for arm, v in means.items()]
    draw(curves, budget)
    body += ("\n\n" + "\n".join(summary)
             + f"\n\nBudget: {args.random_trials} random trials x 150 steps = {budget} steps; TPE + ASHA could "
             f"start {args.asha_trials} trials and is counted up to the same budget. Dev F1 is measured on 200 "
             "German dev sentences (the laptop search's setting), so differences of a point or two are within "
             "noise. Curves: [search-efficiency.png](search-efficiency.png).")
    write_section("search-efficiency", "Search efficiency: TPE + ASHA against random search", body, 1)


if __name__ == "__main__":
    main()
