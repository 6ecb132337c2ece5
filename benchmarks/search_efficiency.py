"""Search efficiency: Optuna TPE, with or without early stopping (ASHA, or HyperBand), against random search that
trains every trial to the end, on the same budget of training steps, several search seeds.

    python benchmarks/search_efficiency.py [--seeds 0,1,2,3,4] [--arms random,tpe,tpe+asha,tpe+hyperband]
                                           [--random-trials 12] [--early-trials 24] [--tag NAME]

Every arm is `tune/search.py` on the laptop preset's search schedule (150 steps of 8 sentences, an evaluation
every 50), single-source English -> German, two one-thread trials at a time, then one final run of the setting
it chose (`--final-seeds 1 --no-baseline`, scored on the whole German test set):
- random: `--sampler random --scheduler fifo --num-samples R`, uniform draws from the paper's ranges (what
  Ray's BasicVariantGenerator does), every trial trained to the end; its R x 150 steps are the budget (with
  R = 12, twice TPE's start-up of 6 random trials);
- tpe: `--sampler tpe --scheduler fifo --num-samples R`, the laptop preset's default since 2026-12-04;
- tpe+asha, tpe+hyperband: `--num-samples E` (E > R, because early stopping ends most trials early), counted
  only up to the same budget.

Each evaluation adds the steps since the trial's last one; evaluations of the two concurrent trials are put in
the order they happened (the trial's start in optuna.db plus its elapsed time at the evaluation). Per arm: the
best target-dev F1 seen within the budget (mean ± sd over seeds), the steps it needed to come within 0.5 F1 of
the best dev F1 any arm found with any seed (the best setting known for the problem), the test F1 of the
setting it chose, and the wall time. The rule of issue 18: the default must reach that mark in at most half the
steps of random search, in mean over the seeds.

Each finished search leaves results/search-efficiency/<arm>-seed<seed>.json (committed: its curve, test F1 and
wall time), read instead of running it again; an interrupted one resumes from runs/search-efficiency/. So the
comparison is built across sessions, and the section is rewritten from the searches finished so far. --tag NAME
keeps another comparison apart (results/search-efficiency-NAME/, its own section and figure): the 24-trial
comparison of issue 44 is `--tag 24 --random-trials 24 --arms random,tpe,gp`.

Beside the rule: each arm's expected best dev F1 of a search of n trials drawn from its trials (Dodge et al.
2019, pooled over seeds: mean and sd over seeds of each seed's curve), and the paired difference of best dev F1
and test F1 against the first arm with its 95% interval (pram/stats.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import mean_sd, resumable_search, table, write_section

from pram.results import FINAL

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "results" / "search-efficiency.png"
RECORDS = ROOT / "results" / "search-efficiency"
RUNS = ROOT / "runs" / "search-efficiency"
PLACES = {"figure": FIGURE, "records": RECORDS, "runs": RUNS, "section": "search-efficiency"}  # (--tag moves them)
COMMON = ["--targets", "de", "--preset", "laptop",
          "--final-seeds", "1", "--no-baseline", "--max-concurrent", "2", "--cpus-per-trial", "1"]
ARMS = {"random": ["--sampler", "random", "--scheduler", "fifo"],
        "tpe": ["--sampler", "tpe", "--scheduler", "fifo"],
        "tpe+asha": ["--sampler", "tpe", "--scheduler", "asha"],
        "tpe+hyperband": ["--sampler", "tpe", "--scheduler", "hyperband"],
        "gp": ["--sampler", "gp", "--scheduler", "fifo"]}
NAMES = {"random": "random search, no early stopping", "tpe": "Optuna TPE, no early stopping (the laptop default)",
         "tpe+asha": "Optuna TPE + ASHA", "tpe+hyperband": "Optuna TPE + HyperBand",
         "gp": "Optuna GP sampler, no early stopping"}
CLOSE = 0.5


def record(arm: str, seed: int, trials: int) -> dict:
    """One arm's search with one seed: its curve, the test F1 of the setting it chose and its wall time, kept as
    results/search-efficiency/<arm>-seed<seed>.json (a few kB) so that a later session reads it instead of the
    runs folder, which it does not have."""
    import pyarrow.parquet as pq

    from pram.files import write_atomically

    kept = PLACES["records"] / f"{arm}-seed{seed}.json"
    out = PLACES["runs"] / f"{arm}-seed{seed}"
    if kept.is_file():
        found = json.loads(kept.read_text())
        if "values" not in found and (out / "history.parquet").is_file():  # (a record from before "values")
            found["values"] = trial_values(out)
            write_atomically(kept, json.dumps(found) + "\n")
        return found
    wall = resumable_search(out, "conll", "single", [*COMMON, *ARMS[arm], "--num-samples", str(trials),
                                                     "--seed", str(seed)])
    final = [r["f1_mean"] for r in pq.read_table(out / FINAL).to_pylist()
             if (r["variant"], r["selection"], r["lang"]) == ("both", "target-dev", "de")]
    found = {"arm": arm, "seed": seed, "trials": trials, "startup": startup_of(trials), "wall_s": round(wall, 1),
             "test_f1": final[0],
             "curve": curve(out), "values": trial_values(out)}
    PLACES["records"].mkdir(parents=True, exist_ok=True)
    write_atomically(kept, json.dumps(found) + "\n")
    return found


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


def trial_values(out: Path) -> list[float]:
    """Each trial's dev F1 at its last evaluation (the value Optuna was told), in trial-number order."""
    import pandas as pd

    history = pd.read_parquet(out / "history.parquet").sort_values("step")
    return [float(v) for v in history.groupby("optuna_trial")["target_dev_f1"].last().sort_index()]


def best_within(points: list[tuple[int, float]], budget: int) -> float:
    return max((f1 for used, f1 in points if used <= budget), default=float("nan"))


def steps_to(points: list[tuple[int, float]], level: float, budget: int) -> int | None:
    return next((used for used, f1 in points if f1 >= level and used <= budget), None)


def draw(curves: dict, budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"random": "tab:gray", "tpe": "tab:green", "tpe+asha": "tab:blue", "tpe+hyperband": "tab:orange",
              "gp": "tab:purple"}
    for (arm, seed), points in sorted(curves.items()):
        within = [(u, f) for u, f in points if u <= budget]
        if not within:
            continue
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
    fig.savefig(PLACES["figure"], dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2,3,4", help="search seeds (sampler and trials), comma-separated")
    parser.add_argument("--arms", default="random,tpe,tpe+asha,tpe+hyperband",
                        help=f"comma-separated, of {', '.join(ARMS)}; the first is the baseline of the rule")
    parser.add_argument("--random-trials", type=int, default=12, help="trials of the random arm: the budget")
    parser.add_argument("--early-trials", type=int, default=24, help="trials an early-stopping arm may start")
    parser.add_argument("--tag", default=None, help="another comparison, kept apart: results/search-efficiency-TAG/")
    args = parser.parse_args()
    if args.tag:
        PLACES.update(figure=FIGURE.with_name(f"search-efficiency-{args.tag}.png"),
                      records=RECORDS.with_name(f"search-efficiency-{args.tag}"),
                      runs=RUNS.with_name(f"search-efficiency-{args.tag}"), section=f"search-efficiency-{args.tag}")
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",")
    budget = args.random_trials * 150
    searches: dict[tuple[str, int], dict] = {}
    for seed in seeds:
        for arm in arms:
            stops_early = "fifo" not in ARMS[arm]
            found = record(arm, seed, args.early_trials if stops_early else args.random_trials)
            searches[arm, seed] = found
            print(f"seed {seed} {arm}: {found['wall_s']:.0f} s, best within budget "
                  f"{best_within(found['curve'], budget):.2f}, test F1 {found['test_f1']:.2f}", flush=True)
        report(args, arms, [s for s in seeds if s <= seed], searches, budget)


def startup_of(trials: int) -> int:
    """The random start-up of the model-based samplers at this budget (tune.space.make_sampler's rule)."""
    return max(2, min(10, trials // 3))


def expected_lines(arms: list[str], seeds: list[int], searches: dict) -> list[str]:
    """Each arm's expected best dev F1 of n trials (Dodge et al. 2019), mean ± sd over seeds, at a few n."""
    from pram.stats import expected_best

    lines = []
    for arm in arms:
        if any("values" not in searches[arm, s] for s in seeds):
            continue
        n_max = min(len(searches[arm, s]["values"]) for s in seeds)
        marks = sorted({1, 3, 6, 12, n_max} & set(range(1, n_max + 1)))
        cells = [f"{n}: {mean_sd([expected_best(searches[arm, s]['values'], n)[0] for s in seeds])}" for n in marks]
        lines.append(f"- expected best dev F1 of n trials, {NAMES[arm]}: " + "; ".join(cells))
    return lines


def paired_lines(arms: list[str], seeds: list[int], searches: dict, budget: int) -> list[str]:
    """Best dev F1 within the budget and test F1 of the chosen setting, each arm minus the first, by seed."""
    from pram.stats import compare_seeds

    lines = []
    for arm in arms[1:]:
        for name, key in (("best dev F1", lambda f: best_within(f["curve"], budget)),
                          ("test F1 of the chosen setting", lambda f: f["test_f1"])):
            c = compare_seeds([key(searches[arm, s]) for s in seeds], [key(searches[arms[0], s]) for s in seeds])
            lines.append(f"- {NAMES[arm]} minus {NAMES[arms[0]]}, {name}: {c.interval()}: {c.verdict}")
    return lines


def learned(arms: list[str], seeds: list[int], searches: dict, startup: int) -> list[str]:
    """Whether TPE learns: the mean value of the trials after its random start-up (trial numbers `startup` on;
    the first of them may still be a random draw, when its ask came before the start-up trials had all
    ended), against random search's trials of the same numbers, paired by seed. Trials of the same number
    before that are the same seeded draws in both arms."""
    fifo = [arm for arm in arms if "fifo" in ARMS[arm]]
    if len(fifo) < 2 or any("values" not in searches[arm, s] for arm in fifo for s in seeds):
        return []
    later = {arm: [statistics.fmean(searches[arm, s]["values"][startup:]) for s in seeds] for arm in fifo}
    base = fifo[0]
    return [f"- whether TPE learns: the mean dev F1 of trials {startup}-{len(searches[arm, seeds[0]]['values']) - 1}"
            f" (after TPE's start-up) is {mean_sd(later[arm])} for {NAMES[arm]} against {mean_sd(later[base])} "
            f"for {NAMES[base]}; paired by seed, "
            f"{mean_sd([a - b for a, b in zip(later[arm], later[base], strict=True)])}" for arm in fifo[1:]]


def report(args, arms: list[str], seeds: list[int], searches: dict, budget: int) -> None:
    """The section from the searches of these seeds (every arm finished)."""
    curves = {key: found["curve"] for key, found in searches.items() if key[1] in seeds}
    known = max(best_within(points, budget) for points in curves.values())
    rows, summary, steps_needed, steps_seed = [], [], {}, {}
    for seed in seeds:
        # the seed's own mark too: the best known is one seed's luck as much as a setting's worth
        seed_best = max(best_within(curves[arm, seed], budget) for arm in arms)
        for arm in arms:
            found = searches[arm, seed]
            needed = steps_to(found["curve"], known - CLOSE, budget)
            steps_needed.setdefault(arm, []).append(needed)
            steps_seed.setdefault(arm, []).append(steps_to(found["curve"], seed_best - CLOSE, budget))
            rows.append([seed, NAMES[arm], f"{best_within(found['curve'], budget):.2f}",
                         "not within the budget" if needed is None else needed,
                         "not within the budget" if steps_seed[arm][-1] is None else steps_seed[arm][-1],
                         f"{found['test_f1']:.2f}", f"{found['wall_s'] / 60:.1f}"])
    # a seed that never reached the mark counts as the whole budget: a lower bound on its steps
    means = {arm: statistics.fmean(n if n is not None else budget for n in steps_needed[arm]) for arm in arms}
    seed_means = {arm: statistics.fmean(n if n is not None else budget for n in steps_seed[arm]) for arm in arms}
    for arm in arms:
        best = [best_within(searches[arm, s]["curve"], budget) for s in seeds]
        test = [searches[arm, s]["test_f1"] for s in seeds]
        reached = sum(n is not None for n in steps_needed[arm])
        wall = statistics.fmean(searches[arm, s]["wall_s"] for s in seeds) / 60
        summary.append(f"- {NAMES[arm]}: best dev F1 {mean_sd(best)}; test F1 of its chosen setting "
                       f"{mean_sd(test)}; within {CLOSE} F1 of the best known ({known:.2f}) in {reached} of "
                       f"{len(seeds)} seeds, after {means[arm]:.0f} steps in mean (a seed that did not get there "
                       f"counts {budget}); wall {wall:.1f} min")
    summary += [f"- the rule, {NAMES[arm]}: its mean steps to the mark are {means[arm] / means[arms[0]]:.2f}x "
                f"those of {NAMES[arms[0]]} (at most 0.5x to pass): "
                f"{'met' if means[arm] <= 0.5 * means[arms[0]] else 'not met'}; to within {CLOSE} F1 of the best "
                f"either arm found with the same seed, {seed_means[arm]:.0f} steps against {seed_means[arms[0]]:.0f} "
                f"in mean ({seed_means[arm] / seed_means[arms[0]]:.2f}x)" for arm in arms[1:]]
    first = searches[arms[0], seeds[0]]  # (records from before "startup": half the trials, the rule then)
    summary += learned(arms, seeds, searches, first.get("startup", first["trials"] // 2))
    summary += expected_lines(arms, seeds, searches) + paired_lines(arms, seeds, searches, budget)
    header = ["seed", "arm", f"best dev F1 within {budget} steps",
              f"steps to within {CLOSE} F1 of the best known", f"steps to within {CLOSE} F1 of the seed's best",
              "test F1 of the chosen setting", "wall min"]
    draw(curves, budget)
    body = table(header, rows) + "\n\n" + "\n".join(summary) + (
        f"\n\nBudget: {args.random_trials} random trials x 150 steps = {budget} steps; an early-stopping arm could "
        f"start {args.early_trials} trials and is counted up to the same budget. Dev F1 is measured on the laptop "
        "search's dev sample (its noise: the objective-noise and end-of-trial sections). The test F1 is one "
        "final run (seed = the search seed) of the chosen setting, on the whole German test set; the "
        "wall time includes it. Seeds so far: " + ", ".join(map(str, seeds)) +
        f". Curves: [{PLACES['figure'].name}]({PLACES['figure'].name}).")
    title = "Search efficiency: Optuna TPE, with or without early stopping, against random search" + \
        (f" ({args.random_trials} trials)" if args.tag else "")
    write_section(PLACES["section"], title, body, 1)


if __name__ == "__main__":
    main()
