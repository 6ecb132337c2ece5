"""Search overhead: a search of 8 short trials against the same 8 trials one after another in a plain loop,
and the speed-up of 2 concurrent one-thread trials over one.

    python benchmarks/search_overhead.py [--trials 8]

Three arms, each timed as a whole command (imports, data, Ray's start and stop included), on short real trials
(the laptop encoder, 400 English and German sentences, 30 steps of 8 sentences, an evaluation every 10 steps):
1. `tune/search.py` with one trial at a time and one CPU (one torch thread) per trial;
2. a plain Python loop that builds the same configurations (read back from arm 1's trials.parquet) and calls
   `pram.train.train` on each, stopping each where ASHA stopped it, one torch thread;
3. `tune/search.py` with two one-thread trials at a time.
Overhead is arm 1 over arm 2; the concurrency speed-up is arm 3's training steps per second over arm 1's.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from common import table, timed, write_section

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["--dataset", "conll", "--mode", "single", "--targets", "de", "--preset", "laptop", "--final-seeds", "0",
         "--max-steps", "30", "--eval-every", "10", "--batch-size", "8", "--train-sentences", "400",
         "--eval-sentences", "100", "--cpus-per-trial", "1", "--seed", "0"]


class Stop(Exception):
    """ASHA's stop, replayed."""


def plain_loop(search_out: str) -> None:
    """Arm 2: the trials of a finished search, one after another, without Ray."""
    import dataclasses

    import pandas as pd

    from pram.inputs import prepare_data
    from pram.logs import quiet_libraries
    from pram.train import train
    from tune.run import base_config
    from tune.search import build_parser, settings_from_args
    from tune.space import SEARCHABLE

    quiet_libraries()
    settings = settings_from_args(build_parser().parse_args([*SHORT, "--out", search_out, "--resume"]))
    base = dataclasses.replace(base_config(settings, "de"), quiet=True, threads=1)
    data = prepare_data(base)
    trials = pd.read_parquet(Path(search_out) / "trials.parquet")
    with tempfile.TemporaryDirectory() as work:
        for i, trial in enumerate(trials.itertuples()):
            params = {k: getattr(trial, k) for k in SEARCHABLE if hasattr(trial, k)}
            params["gamma"] = None if pd.isna(params.get("gamma")) else params.get("gamma")
            config = dataclasses.replace(base, **params, out_dir=f"{work}/{i}")

            def report(metrics, _checkpoint, stop=int(trial.stopped_step), pruned=trial.status == "PRUNED"):
                if pruned and metrics["step"] >= stop:
                    raise Stop

            with contextlib.suppress(Stop):
                train(config, data, report=report)


def steps_of(out: str) -> int:
    import pandas as pd

    return int(pd.read_parquet(Path(out) / "trials.parquet")["stopped_step"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--loop", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        plain_loop(args.loop)
        return
    search = [sys.executable, str(ROOT / "tune" / "search.py"), *SHORT, "--num-samples", str(args.trials)]
    with tempfile.TemporaryDirectory() as tmp:
        one_at_a_time, two_at_a_time = f"{tmp}/c1", f"{tmp}/c2"
        wall = {"search1": timed([*search, "--max-concurrent", "1", "--out", one_at_a_time], ROOT)}
        print("search, 1 at a time:", wall["search1"], flush=True)
        wall["loop"] = timed([sys.executable, __file__, "--loop", one_at_a_time], ROOT)
        print("plain loop:", wall["loop"], flush=True)
        wall["search2"] = timed([*search, "--max-concurrent", "2", "--out", two_at_a_time], ROOT)
        print("search, 2 at a time:", wall["search2"], flush=True)
        steps = {"search1": steps_of(one_at_a_time), "loop": steps_of(one_at_a_time),
                 "search2": steps_of(two_at_a_time)}
    names = {"search1": "`tune/search.py`, 1 trial at a time", "loop": "plain loop over the same trials",
             "search2": "`tune/search.py`, 2 one-thread trials at a time"}
    rows = [[names[k], f"{wall[k]:.0f}", steps[k], f"{steps[k] / wall[k]:.2f}"] for k in ("loop", "search1", "search2")]
    body = table(["arm", "wall s", "training steps (after ASHA)", "steps/s"], rows)
    overhead = wall["search1"] / wall["loop"]
    speedup = (steps["search2"] / wall["search2"]) / (steps["search1"] / wall["search1"])
    body += (f"\n\n{args.trials} trials of at most 30 steps. The search takes **{overhead:.2f}x** the plain loop's "
             f"wall time for the same trials (Ray's start, the driver's data handed to the trials, a checkpoint per "
             f"evaluation, Optuna's SQLite study). Two one-thread trials at a time train **{speedup:.2f}x** as many "
             f"steps per second as one. Short trials make the fixed costs weigh most; a laptop trial of 150 steps "
             f"runs minutes, against Ray's start of seconds.")
    write_section("search-overhead", "Search overhead and concurrency", body, 1)


if __name__ == "__main__":
    main()
