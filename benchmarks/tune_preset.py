"""Tune the laptop preset with the project's own search, confirm the winner against the preset, then re-run the
APC verdict on whichever preset stands (issue 45). Every step resumes where an earlier session stopped.

    python benchmarks/tune_preset.py search  [--trials 24] [--searches en-de,multi-de]  # one after the other
    python benchmarks/tune_preset.py confirm [--seeds 0,1,2,3,4] # the best setting against the preset
    python benchmarks/tune_preset.py verdict                     # PRAM against --apc none on the standing preset

search: `tune/search.py --space tune/spaces/tuning-conll.yaml` at the laptop preset's own schedule (400 steps,
an evaluation every 100, whole training sets, 128 pieces a sentence, the target term from step 200), German
target, single-source from English and multi-source from the other three; no final stage. Each finished search
is kept as results/tune-preset/search-<name>.json (its best settings, every complete trial's value and its
target-dev F1 at each evaluation), to commit.

confirm: the single-source search's best settings (every searched setting but the APC weights, which the verdict
leaves to the paper's values) against the preset as it is, `pram experiment` on de, es and nl with the same
seeds, whole test sets; results/tune-preset/confirm/. The table says the paired difference per target with its
interval; a setting is adopted only where it wins by more than its interval (the README then says so).

verdict: `pram experiment --variants both,none` on de, es, nl (5 seeds) and ar, hi, zh (3 seeds) with the
preset's settings (or the adopted ones, --adopted), beside results/apc-geometry and results/apc-distant:
results/tune-preset/verdict-{conll,wikiann}/. With --adopted, PRAM's de/es/nl runs are the confirmation's `tuned`
runs themselves (same settings, seeds and runs folder), so only their --apc none twins are trained.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import resumable_search, table

from pram.files import write_atomically
from pram.flags import config_flags
from pram.results import BEST, HISTORY, OPTUNA_DB
from pram.results import RUNS as RUNS_TABLE

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "tune-preset"
RESULTS = ROOT / "results" / "tune-preset"
SPACE = "tune/spaces/tuning-conll.yaml"
# The laptop preset's schedule, in place of the laptop search's shorter one (tune/settings.py): the settings
# found must be the preset's. Dev samples as the search has them (1,000 target sentences, 200 a source).
PRESET_SCHEDULE = ["--max-steps", "400", "--eval-every", "100", "--train-sentences", "none", "--max-length", "128",
                   "--range", "beta_start=0.5"]
SEARCHES = {"en-de": ["--mode", "single", "--targets", "de"], "multi-de": ["--mode", "multi", "--targets", "de"]}
APC_WEIGHTS = {"tau", "lam", "alpha", "beta", "gamma"}


def search(trials: int, names: list[str]) -> None:
    for name in names:
        where = SEARCHES[name]
        kept = RESULTS / f"search-{name}.json"
        out = RUNS / name
        if kept.is_file():
            found = json.loads(kept.read_text())
            if "rounds" not in found and (out / HISTORY).is_file():  # (a record from before "rounds")
                write_atomically(kept, json.dumps({**found, "rounds": rounds(out)}, indent=1) + "\n")
            continue
        mode = where[1]
        wall = resumable_search(out, "conll", mode, [
            *where[2:], "--space", SPACE, "--num-samples", str(trials), "--final-seeds", "0", "--seed", "0",
            *PRESET_SCHEDULE], capture=False)
        best = json.loads((out / BEST).read_text())["de"]
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=f"conll-{mode}-de", storage=f"sqlite:///{out / OPTUNA_DB}")
        found = {"search": name, "wall_s": round(wall, 1), "best": best["config"], "best_value": best["value"],
                 "trials": [{"value": t.value, "params": t.params} for t in study.trials if t.value is not None],
                 "rounds": rounds(out)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        write_atomically(kept, json.dumps(found, indent=1) + "\n")
        print(f"{name}: best target dev F1 {best['value']:.2f} with {best['config']}")
    write_readme()


def write_readme() -> None:
    """results/tune-preset/README.md from what has finished: each search's best settings and its five best trials,
    then the confirmation's table if it has run."""
    parts = ["# Tuning the laptop preset with the project's own search (issue 45)",
             "Made by `python benchmarks/tune_preset.py search|confirm|verdict` (each stage resumes; this page is "
             "rewritten after each). The searches: `tune/search.py --space tune/spaces/tuning-conll.yaml` at the "
             f"laptop preset's schedule (`{' '.join(PRESET_SCHEDULE)}`), German target, Optuna TPE (seed 0; a "
             "third of the trials random, then proposed), every trial trained to the end, scored on 1,000 German "
             "dev sentences at its last evaluation."]
    for name in SEARCHES:
        kept = RESULTS / f"search-{name}.json"
        if not kept.is_file():
            parts.append(f"## Search {name}\n\nNot finished yet.")
            continue
        found = json.loads(kept.read_text())
        names = sorted({k for t in found["trials"] for k in t["params"]})
        top = sorted(found["trials"], key=lambda t: -t["value"])[:5]
        rows = [[f"{t['value']:.2f}", *(_cell(t["params"].get(k)) for k in names)] for t in top]
        values = [t["value"] for t in found["trials"]]
        parts.append(f"## Search {name}\n\n{len(values)} trials in {found['wall_s'] / 3600:.1f} h; target dev F1 "
                     f"from {min(values):.2f} to {max(values):.2f} (median {sorted(values)[len(values) // 2]:.2f}). "
                     f"The five best (`{kept.name}` holds every trial and its score at each evaluation):\n\n"
                     + table(["dev F1", *names], rows))
    confirmed = RESULTS / "confirm" / "README.md"
    if confirmed.is_file():
        parts.append("## Confirmation\n\n" + confirmed.read_text().split("\n", 1)[1].strip())
    write_atomically(RESULTS / "README.md", "\n\n".join(parts) + "\n")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def rounds(out: Path) -> dict[str, dict[str, float]]:
    """Each trial's target-dev F1 at each evaluation, {trial number: {step: F1}}: what ASHA's rungs would have
    seen (benchmarks/rung_ranks.py reads them from the search's folder)."""
    from rung_ranks import by_trial

    return {str(n): {str(step): f1 for step, f1 in steps.items()} for n, steps in by_trial(out, "de").items()}


def tuned_flags(name: str = "en-de") -> list[str]:
    """The flags of a search's best settings, the APC weights left out."""
    best = json.loads((RESULTS / f"search-{name}.json").read_text())["best"]
    return config_flags({k: v for k, v in best.items() if k not in APC_WEIGHTS})


def experiment(results: Path, dataset: str, targets: str, seeds: str, variants: list[str], flags: list[str],
               arms: list[str] = (), runs: str | None = None) -> None:
    argv = [sys.executable, "-m", "pram.cli", "experiment", "--dataset", dataset, "--targets", targets,
            "--seeds", seeds, "--variants", ",".join(variants), "--parallel", "2", "--threads", "1",
            "--runs-dir", str(RUNS / (runs or results.name)), "--results", str(results), *flags]
    for arm in arms:
        argv += ["--arm", arm]
    subprocess.run(argv, cwd=ROOT, check=True)


def confirm(seeds: str) -> None:
    import pyarrow.parquet as pq
    from verdicts import target_f1

    from pram.stats import compare_seeds

    flags = tuned_flags()
    results = RESULTS / "confirm"
    experiment(results, "conll", "de,es,nl", seeds, ["both", "tuned"], [], [f"tuned={' '.join(flags)}"])
    runs = pq.read_table(results / RUNS_TABLE).to_pylist()
    rows = []
    for target in ("de", "es", "nl"):
        f1 = target_f1(runs, target, "target-dev")
        paired = sorted(s for v, s in f1 if v == "tuned" and ("both", s) in f1)
        c = compare_seeds([f1["tuned", s] for s in paired], [f1["both", s] for s in paired])
        rows.append([target, c.interval(), c.verdict])
    text = "\n\n".join(["# The tuned setting against the laptop preset (issue 45)",
                        f"Tuned flags (from search-en-de.json, APC weights left at the paper's): `{' '.join(flags)}`",
                        table(["target", "tuned minus preset, test F1 [95% interval] (pairs)", "verdict"], rows)])
    write_atomically(results / "README.md", text + "\n")
    write_readme()
    print(text)


def verdict(adopted: bool) -> None:
    flags = tuned_flags() if adopted else []
    if adopted:
        # PRAM on the tuned settings is the confirmation's `tuned` arm, the same runs (the same configuration,
        # in the same runs folder under the same name): only the --apc none arm is trained here.
        experiment(RESULTS / "verdict-conll", "conll", "de,es,nl", "0,1,2,3,4", ["tuned", "none"], flags,
                   [f"tuned={' '.join(flags)}"], runs="confirm")
    else:
        experiment(RESULTS / "verdict-conll", "conll", "de,es,nl", "0,1,2,3,4", ["both", "none"], flags)
    experiment(RESULTS / "verdict-wikiann", "wikiann", "ar,hi,zh", "0,1,2", ["both", "none"], flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("search", "confirm", "verdict"))
    parser.add_argument("--trials", type=int, default=24, help="trials of each search (default: 24)")
    parser.add_argument("--searches", default=",".join(SEARCHES),
                        help=f"which searches, in order (default: {','.join(SEARCHES)})")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="seeds of the confirmation (default: 0-4)")
    parser.add_argument("--adopted", action="store_true", help="the verdict on the tuned settings")
    args = parser.parse_args()
    {"search": lambda: search(args.trials, args.searches.split(",")), "confirm": lambda: confirm(args.seeds),
     "verdict": lambda: verdict(args.adopted)}[args.stage]()


if __name__ == "__main__":
    main()
