"""Search overhead: a search of short trials against the same trials one after another in a plain loop, the
speed-up of 2 concurrent one-thread trials over one, and where the search's extra time goes.

    python benchmarks/search_overhead.py [--trials 8] [--steps 30] [--scheduler fifo]
                                                        (--steps 150: the laptop trial length)

Three arms, each timed as a whole command (imports, data, Ray's start and stop included), on real trials (the
laptop encoder, 400 English and German sentences, batches of 8, an evaluation every steps/3 steps):
1. `tune/search.py` with one trial at a time and one CPU (one torch thread) per trial, its driver under cProfile;
2. a plain Python loop that builds the same configurations (read back from arm 1's trials.parquet) and calls
   `pram.train.train` on each, stopping each where the scheduler stopped it, writing the checkpoints a search trial
   writes, as often (`tune.stages.search_best_weights`, `checkpoint_seconds`), one torch thread;
3. `tune/search.py` with two one-thread trials at a time;
4. two plain loops at once, each over half of arm 1's trials (split to near-equal steps), no Ray: the most two
   one-thread processes train on this machine with this model, the ceiling for arm 3.
Overhead is arm 1 over arm 2; the concurrency speed-up is arm 3's training steps per second over arm 2's. The
breakdown splits arm 1's wall time by what each trial reported (its set-up before the first step, its training and
evaluation, the time inside `tune.report` with the checkpoint's copy) and by the driver's profile (Ray's start
and stop, the data, Optuna's study, Tune's experiment snapshots); a fresh process importing the trainable is
what each new trial actor would pay.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import pstats
import sys
import tempfile
import time
from pathlib import Path

from common import table, timed, timed_together, write_section

ROOT = Path(__file__).resolve().parent.parent


def short(steps: int, scheduler: str) -> list[str]:
    """The search flags of every arm: trials of `steps` steps, evaluated 3 times."""
    return ["--dataset", "conll", "--mode", "single", "--targets", "de", "--preset", "laptop", "--final-seeds", "0",
            "--max-steps", str(steps), "--eval-every", str(steps // 3), "--batch-size", "8",
            "--train-sentences", "400", "--eval-sentences", "100", "--cpus-per-trial", "1", "--seed", "0",
            "--scheduler", scheduler]


# What the driver's profile is split into: (label, file suffix, function names); cumulative seconds of each.
DRIVER_PARTS = [
    ("Ray's start", "ray/_private/worker.py", ("init",)),
    ("Ray's stop", "ray/_private/worker.py", ("shutdown",)),
    ("data: read, tokenise (once)", "pram/inputs.py", ("prepare_data",)),
    ("Optuna: ask, report, tell (SQLite)", "tune/study.py", ("suggest", "on_trial_result", "on_trial_complete")),
    ("Tune's experiment snapshots", "ray/tune/execution/experiment_state.py", ("sync_up_experiment_state",)),
    ("result tables and dashboard", "tune/run.py", ("write_results", "write_report")),
]


class Stop(Exception):
    """ASHA's stop, replayed."""


def halves(steps: list[int]) -> tuple[list[int], list[int]]:
    """Trial indices in two groups of near-equal steps: longest first, each to the group with fewer steps."""
    groups, load = ([], []), [0, 0]
    for i in sorted(range(len(steps)), key=lambda i: -steps[i]):
        k = load.index(min(load))
        groups[k].append(i)
        load[k] += steps[i]
    return groups


def plain_loop(search_out: str, steps: int, scheduler: str, half: int | None = None) -> None:
    """Arm 2: the trials of a finished search, one after another, without Ray (arm 4: one of two halves)."""
    import dataclasses

    import pandas as pd

    from pram.inputs import prepare_data
    from pram.logs import quiet_libraries
    from pram.train import train
    from tune.run import base_config, search_space
    from tune.search import build_parser, settings_from_args
    from tune.space import SEARCHABLE
    from tune.stages import checkpoint_seconds, search_best_weights

    quiet_libraries()
    settings = settings_from_args(build_parser().parse_args([*short(steps, scheduler), "--out", search_out,
                                                             "--resume"]))
    base = dataclasses.replace(base_config(settings, "de"), quiet=True, threads=1)
    data = prepare_data(base)
    trials = pd.read_parquet(Path(search_out) / "trials.parquet")
    if half is not None:
        trials = trials.iloc[sorted(halves(trials["stopped_step"].tolist())[half])]
    # the settings the search's space drew (trials.parquet also holds every other setting, at its default)
    searched = [k for k in search_space(settings)[0] if k in SEARCHABLE]
    with tempfile.TemporaryDirectory() as work:
        for i, trial in enumerate(trials.itertuples()):
            params = {k: getattr(trial, k) for k in searched}
            if "gamma" in params:  # (None, no down-sampling, is NaN in Parquet)
                params["gamma"] = None if pd.isna(params["gamma"]) else params["gamma"]
            config = dataclasses.replace(base, **params, out_dir=f"{work}/{i}")

            def report(metrics, _checkpoint, _last, stop=int(trial.stopped_step), pruned=trial.status == "PRUNED"):
                if pruned and metrics["step"] >= stop:
                    raise Stop

            with contextlib.suppress(Stop):
                # as a search trial: no test sets, the same best weights written, `last` as often
                train(config, data, report=report, score_test=False, best_weights=search_best_weights(settings),
                      save_every=checkpoint_seconds(settings))


def steps_of(out: str) -> int:
    import pandas as pd

    return int(pd.read_parquet(Path(out) / "trials.parquet")["stopped_step"].sum())


def trial_seconds(out: str) -> float:
    """The seconds a search's trials spent in their function, summed over its trials."""
    import pandas as pd

    return float(pd.read_parquet(Path(out) / "trials.parquet")["time_total_s"].sum())


def checkpointed(out: str) -> tuple[int, int]:
    """(reports that carried a checkpoint, reports) of a search: the results Tune recorded with one (their
    `checkpoint_dir_name`, in each trial's result.json)."""
    import json

    carried = reports = 0
    for file in Path(out).glob("ray/experiments/search-*/*/result.json"):
        for line in file.read_text().splitlines():
            reports += 1
            carried += json.loads(line).get("checkpoint_dir_name") is not None
    return carried, reports


def trial_parts(out: str) -> dict[str, float]:
    """Seconds per trial, from what arm 1's trials reported: set-up before the first step, training and
    evaluation, and the time inside `tune.report` (a report cannot time itself: each result holds the reports
    before it, so the last one is counted at the mean of the others); and Tune's time in the trial function."""
    import pandas as pd

    last = pd.read_parquet(Path(out) / "trials.parquet")
    n = len(last)
    rounds = last["stopped_round"].astype(float)
    per_report = (last["report_s"] / (rounds - 1)).where(rounds > 1).mean()
    return {"set-up in the trial (model, optimizer)": last["setup_s"].sum() / n,
            "training and evaluation": (last["elapsed_s"] - last["setup_s"]).sum() / n,
            "tune.report, with the checkpoint's copy when it has one": (last["report_s"].sum() + per_report * n) / n,
            "function": last["time_total_s"].sum() / n, "reports": rounds.mean(), "per_report": per_report}


def idle_slots(out: str, began: float, ended: float, slots: int = 2) -> dict[str, float]:
    """Slot-seconds in which a search's `slots` held no trial, from the start of its command to its end, split
    into: before its first trial started, between trials (a trial ended and the next had not begun, while trials
    were still to start), the end (after the last trial started, once a slot had nothing left to run), and after
    its last trial ended. Each trial runs from its last result's timestamp less its time_total_s to that
    timestamp (Tune's result.json; whole seconds)."""
    import json

    spans = []
    for file in Path(out).glob("ray/experiments/search-*/*/result.json"):
        lines = file.read_text().splitlines()
        if not lines:
            continue  # (a trial that never reported)
        last = json.loads(lines[-1])
        spans.append((last["timestamp"] - last["time_total_s"], float(last["timestamp"])))
    first, last_start, last_end = min(s for s, _ in spans), max(s for s, _ in spans), max(e for _, e in spans)
    marks = sorted({t for span in spans for t in span})  # (first, last_start and last_end among them)
    between = end = 0.0
    for a, b in itertools.pairwise(marks):
        running = sum(1 for s, e in spans if s < b and e > a)
        idle = max(0, slots - running) * (b - a)
        if b <= last_start:
            between += idle
        else:
            end += idle
    return {"before the first trial": slots * (first - began), "between trials": between,
            "the end (a slot with nothing left to run)": end, "after the last trial": slots * (ended - last_end)}


def driver_parts(profile: Path) -> dict[str, float]:
    """Cumulative seconds of the driver's profile in each of DRIVER_PARTS."""
    stats = pstats.Stats(str(profile)).stats
    parts = {}
    for label, suffix, names in DRIVER_PARTS:
        parts[label] = sum(entry[3] for (file, _, name), entry in stats.items()
                           if file.endswith(suffix) and name in names)
    return parts


def import_seconds() -> float:
    """What a new trial actor pays before it runs: a fresh Python importing the trainable (torch, transformers,
    Ray Tune, pram)."""
    return timed([sys.executable, "-c", "import tune.trainable"], ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="steps of a trial, a multiple of 3 (default: 30)")
    parser.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo",
                        help="the search's scheduler (default: fifo, the laptop preset's; asha stops trials at "
                             "its rungs, as the laptop preset did until 2026-12-04)")
    parser.add_argument("--loop", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--half", type=int, choices=(0, 1), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps % 3:
        parser.error("--steps: a multiple of 3 (each trial evaluates 3 times)")
    if args.loop:
        plain_loop(args.loop, args.steps, args.scheduler, args.half)
        return
    search = [str(ROOT / "tune" / "search.py"), *short(args.steps, args.scheduler), "--num-samples", str(args.trials)]
    with tempfile.TemporaryDirectory() as tmp:
        one_at_a_time, two_at_a_time, profile = f"{tmp}/c1", f"{tmp}/c2", Path(tmp) / "driver.prof"
        wall = {"search1": timed([sys.executable, "-m", "cProfile", "-o", str(profile), *search,
                                  "--max-concurrent", "1", "--out", one_at_a_time], ROOT)}
        print("search, 1 at a time:", wall["search1"], flush=True)
        loop = [sys.executable, __file__, "--loop", one_at_a_time, "--steps", str(args.steps), "--scheduler",
                args.scheduler]
        wall["loop"] = timed(loop, ROOT)
        print("plain loop:", wall["loop"], flush=True)
        began = time.time()
        wall["search2"] = timed([sys.executable, *search, "--max-concurrent", "2", "--out", two_at_a_time], ROOT)
        idle = idle_slots(two_at_a_time, began, began + wall["search2"])
        print("search, 2 at a time:", wall["search2"], flush=True)
        wall["loops2"] = timed_together([[*loop, "--half", "0"], [*loop, "--half", "1"]], ROOT)
        print("two plain loops at once:", wall["loops2"], flush=True)
        steps = {"search1": steps_of(one_at_a_time), "loop": steps_of(one_at_a_time),
                 "search2": steps_of(two_at_a_time), "loops2": steps_of(one_at_a_time)}
        inside, driver = trial_parts(one_at_a_time), driver_parts(profile)
        carried, reports = checkpointed(one_at_a_time)
        busy = trial_seconds(two_at_a_time)
    imports = import_seconds()
    names = {"search1": "`tune/search.py`, 1 trial at a time", "loop": "plain loop over the same trials",
             "search2": "`tune/search.py`, 2 one-thread trials at a time",
             "loops2": "two plain loops at once, half the trials each (no Ray)"}
    rows = [[names[k], f"{wall[k]:.0f}", steps[k], f"{steps[k] / wall[k]:.2f}"]
            for k in ("loop", "search1", "search2", "loops2")]
    body = table(["arm", "wall s", "training steps (after early stopping)", "steps/s"], rows)
    overhead = wall["search1"] / wall["loop"]
    per_report = ("- (no trial reported twice: ASHA stopped each at its first evaluation)"
                  if math.isnan(inside["per_report"]) else f"{inside['per_report']:.2f} s")
    rate = {k: steps[k] / wall[k] for k in wall}
    speedup, ceiling = rate["search2"] / rate["loop"], rate["loops2"] / rate["loop"]
    n = args.trials
    outside = wall["search1"] / n - inside["function"]
    parts = [[label, "-", "-"] if math.isnan(inside[label]) else  # (no trial reported twice)
             [label, f"{inside[label]:.2f}", f"{100 * inside[label] * n / wall['search1']:.1f}%"]
             for label in ("training and evaluation", "set-up in the trial (model, optimizer)",
                           "tune.report, with the checkpoint's copy when it has one")]
    parts.append(["outside the trial function (the rest of the search's wall time)", f"{outside:.2f}",
                  f"{100 * outside * n / wall['search1']:.1f}%"])
    parts += [[f"- of which in the driver: {label}", f"{seconds / n:.2f}", f"{100 * seconds / wall['search1']:.1f}%"]
              for label, seconds in driver.items()]
    body += "\n\n" + table(["where arm 1's time goes", "s per trial", "share of its wall"], parts)
    empty = ", ".join(f"{where} {seconds:.0f}" for where, seconds in idle.items())
    body += (f"\n\n{n} trials of at most {args.steps} steps, {inside['reports']:.1f} reports each on average. The "
             f"search one trial at a time takes **{overhead:.2f}x** the plain loop's wall time for the same trials; "
             f"two one-thread trials at a time train **{speedup:.2f}x** the plain loop's steps per second, and two "
             f"plain loops at once, without Ray, **{ceiling:.2f}x**: the search at two reaches "
             f"{speedup / ceiling:.0%} of what two one-thread processes train here. Arm 3's trials filled "
             f"{busy / (2 * wall['search2']):.0%} of its two slots over its wall time ({busy:.0f} trial-seconds of "
             f"{2 * wall['search2']:.0f}; the slot-seconds with no trial: {empty}); counted over the trials' own "
             f"time, its steps per second are "
             f"{steps['search2'] / (busy / 2) / rate['loop']:.2f}x the loop's. A report takes {per_report} on "
             f"average: the result handed to the driver, and for the {carried} of arm 1's {reports} reports that "
             f"carried a checkpoint (Tune's record; with FIFO a trial's kept weights go to Tune with its last "
             f"report, with ASHA with each evaluation that wrote new ones, and no trial ran for "
             f"--checkpoint-every's 300 s) Ray's copy of the checkpoint folder into Tune's storage. Tune takes a "
             f"report's time before that copy, so the copy of a trial's last report (with FIFO, every copy) falls "
             f"outside the trial function's time, and outside arm 3's trial-seconds. "
             f"A fresh Python importing the trainable takes {imports:.1f} s: what each trial would pay if it started "
             f"a new actor (trials that ask for no GPU reuse their actor). Arm 1's driver ran under cProfile, which "
             f"the wall time includes.")
    name = "search-overhead" + (f"-{args.steps}" if args.steps != 30 else "") + \
        ("-asha" if args.scheduler == "asha" else "")
    write_section(name, f"Search overhead and concurrency, trials of {args.steps} steps"
                  + (", ASHA" if args.scheduler == "asha" else ""), body, 1)


if __name__ == "__main__":
    main()
