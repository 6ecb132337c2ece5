"""The search driver at scale, by simulation: the real driver of `tune/search.py` (Optuna TPE with its SQLite
storage, ASHA, the live view, the Parquet tables) over a trainable that sleeps and reports as a PRAM trial
does, on a local multi-node Ray cluster (`ray.cluster_utils.Cluster`: nodes of 8 CPUs and 4 declared GPUs,
each trial 1 CPU and 0.5 GPU, as `--gpus-per-trial 0.5` would ask).

    python benchmarks/search_scale.py [--rows 100:8,100:16,100:32,1000:8,1000:32,5000:32] [--sleep 0.5]
    python benchmarks/search_scale.py --rows 100:8:journal,1000:8:journal   (the driver on Optuna's journal file)
    python benchmarks/search_scale.py --rows 100:8:journal:random,5000:8:journal:random   (random search's draws)

Each row (trials:concurrent) runs in a fresh process, so that its memory and CPU are its own. Per row: the
driver's CPU seconds and peak memory per trial, Optuna's suggest latency over the first and the last tenth
of the trials, the trials per minute the driver sustained, and its use of the trial slots: the seconds the
trials slept, over concurrent x wall (1.0: the driver never kept a slot waiting). A simulated trial reports
3 evaluations (the laptop preset's), sleeping --sleep seconds before each; its score is a smooth function of
the searched settings plus noise, so that TPE and ASHA have something to act on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import table, write_section

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3
CPUS_PER_NODE, GPUS_PER_NODE = 8, 4
OPTUNA_KINDS = ("sqlite", "journal")


def sleeping_trial(config: dict, base, data, work_dir: str, threads: int, report_test: bool = False,
                   best_weights: tuple = (), save_every: float = 0.0, runs_to_end: bool = False, sleep: float = 0.5,
                   metric: str = "target_dev_f1") -> None:
    """Reports like `tune.trainable.run_trial`: once per evaluation, with a small checkpoint folder."""
    import random

    from ray import tune

    rng = random.Random(config.get("optuna_trial", 0))
    quality = 50 - 2000 * (config.get("tau", 0.2) - 0.2) ** 2 - 10 * (config.get("alpha", 1.0) - 1.0) ** 2
    for round_ in range(1, ROUNDS + 1):
        time.sleep(sleep)
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "state.json").write_text(json.dumps({"step": 50 * round_}))
            tune.report({metric: quality * round_ / ROUNDS + rng.gauss(0, 2), "step": 50 * round_,
                         "collapse": 0}, checkpoint=tune.Checkpoint.from_directory(folder))


def one_row(trials: int, concurrent: int, sleep: float, out: Path, optuna_storage: str = "sqlite",
            sampler: str = "tpe") -> dict:
    """One search of `trials` trials, `concurrent` at a time, on a cluster just large enough, its Optuna studies
    on `optuna_storage` (sqlite or journal, as --optuna-storage) drawn by `sampler` (as --sampler); its figures."""
    import functools

    import optuna
    import ray
    from ray.cluster_utils import Cluster

    import tune.stages as stages
    from pram.config import TrainConfig
    from pram.results import HISTORY_COLUMNS, OPTUNA_FILES, TRIAL_COLUMNS, open_optuna_storage
    from tune import results
    from tune.run import collect, schedule
    from tune.search import build_parser, settings_from_args
    from tune.space import SEARCHED, search_ranges, space_path

    latencies: list[tuple[int, float]] = []

    class TimedSearch(stages.StudySearch):
        def suggest(self, trial_id):
            started = time.perf_counter()
            params = super().suggest(trial_id)
            if params is not None:
                latencies.append((len(latencies), time.perf_counter() - started))
            return params

    stages.StudySearch = TimedSearch
    s = settings_from_args(build_parser().parse_args(
        ["--dataset", "conll", "--mode", "single", "--targets", "de", "--out", str(out), "--num-samples",
         str(trials), "--max-concurrent", str(concurrent), "--cpus-per-trial", "1", "--gpus-per-trial", "0.5",
         "--final-seeds", "0", "--optuna-storage", optuna_storage, "--sampler", sampler,
         "--scheduler", "asha"]))  # (a cluster's long trials; what it measured before the laptop default was fifo)
    ranges = search_ranges("conll", {}, space_path("paper", "conll"))
    base = TrainConfig(max_steps=50 * ROUNDS, eval_every=50)
    rounds, grace = schedule(base, ranges)
    nodes = math.ceil(concurrent / CPUS_PER_NODE)
    os.environ.update(TUNE_DISABLE_SIGINT_HANDLER="1", RAY_AIR_NEW_OUTPUT="0",
                      TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S="0",
                      TUNE_MAX_PENDING_TRIALS_PG=str(concurrent))
    # Ray's files (and the Cluster's address file) under a temp folder of this row, not /tmp/ray: a short path,
    # as Ray's socket names are limited
    temp = Path(tempfile.mkdtemp(prefix="pram-scale-"))
    (temp / "ray").mkdir()
    os.environ["RAY_TMPDIR"] = str(temp)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(nodes):
        cluster.add_node(num_cpus=CPUS_PER_NODE, num_gpus=GPUS_PER_NODE)
    ray.init(address=cluster.address, log_to_driver=False, include_dashboard=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    storage_file = out / OPTUNA_FILES[s.optuna_storage]
    trial = functools.partial(sleeping_trial, sleep=sleep, metric=s.metric)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        grid = stages.search_stage(s, "de", base, None, ranges, storage_file, "scale", {"cpu": 1, "gpu": 0.5},
                                   concurrent, rounds, grace, resume=False, trial=trial, reuse_actors=True)
        wall = time.perf_counter() - wall0
        study = optuna.load_study(study_name="scale", storage=open_optuna_storage(storage_file))
        records = collect(grid, "de", study, s.metric, 0.5)
        defaults = {"de": {name: getattr(base, name) for name in SEARCHED}}
        results.write_table(out / "trials.parquet", results.trial_rows(records, s.metric, defaults), TRIAL_COLUMNS)
        results.write_table(out / "history.parquet", results.history_rows(records), HISTORY_COLUMNS)
        cpu = time.process_time() - cpu0
        slept = sleep * sum(len(r.history) for r in records)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    tenth = max(1, len(latencies) // 10)
    return {"trials": trials, "concurrent": concurrent, "optuna_storage": optuna_storage, "sampler": sampler,
            "nodes": nodes,
            "wall_s": wall, "driver_cpu_s": cpu,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "suggest_first_ms": 1000 * statistics.median(t for _, t in latencies[:tenth]),
            "suggest_last_ms": 1000 * statistics.median(t for _, t in latencies[-tenth:]),
            "tune_trials": len(records), "optuna_trials": len(study.trials),
            "running_left": sum(t.state.name == "RUNNING" for t in study.trials), "slept_s": slept}


def storage_row(kind: str, trials: int, folder: Path) -> dict:
    """Optuna alone, as the driver drives it: the search's TPE sampler on the paper space, each trial asked,
    given 3 intermediate values and told; ms per ask+tell over the first and the last tenth of the trials."""
    import optuna

    from tune.space import make_sampler, search_ranges, space_function, space_path

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if kind == "sqlite":
        storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'optuna.db'}")
    else:
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "journal.log")))
    study = optuna.create_study(storage=storage, direction="maximize", sampler=make_sampler(0, trials))
    define = space_function(search_ranges("conll", {}, space_path("paper", "conll")))
    seconds = []
    for number in range(trials):
        started = time.perf_counter()
        trial = study.ask()
        params = define(trial) or trial.params
        for round_ in range(1, ROUNDS + 1):
            trial.report(50 - 2000 * (params["tau"] - 0.2) ** 2 + number % 7, round_)
        study.tell(trial, 50 - 2000 * (params["tau"] - 0.2) ** 2)
        seconds.append(time.perf_counter() - started)
    tenth = max(1, trials // 10)
    return {"storage": kind, "trials": trials, "first_ms": 1000 * statistics.median(seconds[:tenth]),
            "last_ms": 1000 * statistics.median(seconds[-tenth:]), "total_s": sum(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100:8,100:16,100:32,1000:8,1000:32,5000:32",
                        help="trials:concurrent[:storage[:sampler]], comma-separated; storage sqlite (default) or "
                             "journal, sampler one of --sampler's choices of tune/search.py (default tpe)")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds a simulated trial sleeps per evaluation")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # trials:concurrent:storage:sampler:folder, here
    parser.add_argument("--storage-trials", type=int, default=2000,
                        help="trials of the Optuna-only comparison of SQLite and the journal file (0: skip it)")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    parser.add_argument("--render", metavar="LOG", help="make the section from the JSON lines a run printed")
    args = parser.parse_args()
    from tune.space import SAMPLERS

    if args.one:
        trials, concurrent, kind, sampler, folder = args.one.split(":", 4)
        print(json.dumps(one_row(int(trials), int(concurrent), args.sleep, Path(folder), kind, sampler)))
        return
    if args.render:  # the JSON lines a run printed, made into the section again
        lines = [json.loads(line) for line in Path(args.render).read_text().splitlines() if line.startswith("{")]
        rows, storages = [r for r in lines if "concurrent" in r], [r for r in lines if "storage" in r]
    else:
        rows, storages = [], []
        for spec in args.rows.split(","):
            parts = spec.split(":")
            if not 2 <= len(parts) <= 4:
                parser.error(f"--rows {spec}: write trials:concurrent[:storage[:sampler]]")
            trials, concurrent, kind, sampler = [*parts, *("sqlite", "tpe")[len(parts) - 2:]]
            if kind not in OPTUNA_KINDS:
                parser.error(f"--rows {spec}: the storage is one of {', '.join(OPTUNA_KINDS)}")
            if sampler not in SAMPLERS:
                parser.error(f"--rows {spec}: the sampler is one of {', '.join(SAMPLERS)}")
            with tempfile.TemporaryDirectory(dir=ROOT / "runs" if (ROOT / "runs").is_dir() else None) as folder:
                done = subprocess.run([sys.executable, __file__, "--one",
                                       f"{trials}:{concurrent}:{kind}:{sampler}:{folder}/search",
                                       "--sleep", str(args.sleep)], check=True, capture_output=True, text=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
        for kind in ("sqlite", "journal") if args.storage_trials else ():
            with tempfile.TemporaryDirectory() as folder:
                storages.append(storage_row(kind, args.storage_trials, Path(folder)))
            print(json.dumps(storages[-1]), flush=True)
    body = render(rows, storages, args.sleep)
    print(body)
    if not args.no_write:
        write_section("search-scale", "Search driver at scale (simulated trials, local multi-node Ray)", body)


def render(rows: list[dict], storages: list[dict], sleep: float) -> str:
    for r in rows:
        r.setdefault("optuna_storage", "sqlite")  # rows printed before the driver had --optuna-storage
        r.setdefault("sampler", "tpe")  # and before the rows had a sampler
    cells = [[r["trials"], r["concurrent"], r["optuna_storage"], r["sampler"], r["nodes"], f"{r['wall_s']:.0f}",
              f"{60 * r['trials'] / r['wall_s']:.0f}",
              f"{r['slept_s'] / (r['concurrent'] * r['wall_s']):.2f}", f"{r['driver_cpu_s'] / r['trials']:.3f}",
              f"{r['peak_rss_mib']:.0f}", f"{r['suggest_first_ms']:.0f}", f"{r['suggest_last_ms']:.0f}",
              f"{r['tune_trials']}/{r['optuna_trials']}/{r['running_left']}"] for r in rows]
    body = table(["trials", "concurrent", "--optuna-storage", "--sampler", "worker nodes", "wall (s)", "trials/min",
                  "slot use",
                  "driver CPU s/trial", "driver peak RSS (MiB)", "suggest ms, first tenth", "suggest ms, last tenth",
                  "Tune/Optuna trials/RUNNING left"], cells)
    if storages:
        body += "\n\n" + table(["Optuna storage (TPE, the paper space)", "trials",
                                "ms per ask+report+tell, first tenth", "last tenth", "total (s)"],
                               [[r["storage"], r["trials"], f"{r['first_ms']:.1f}", f"{r['last_ms']:.1f}",
                                 f"{r['total_s']:.0f}"] for r in storages])
    body += (f"\n\nEach simulated trial reports {ROUNDS} evaluations, {sleep} s apart, and hands a checkpoint "
             f"with each, as a PRAM trial does; ASHA, with the laptop search's grace period, stops the weak early. "
             f"*Slot use* is the seconds the trials slept over concurrent x wall: 1.0 when the driver never keeps a "
             f"trial slot waiting. The driver is one process: Tune's loop, the Optuna searcher on its storage, ASHA, "
             f"the live view, the Parquet tables.")
    per_trial = {(r["trials"], r["concurrent"], (r["optuna_storage"], r["sampler"])): r["driver_cpu_s"] / r["trials"]
                 for r in rows}
    for kind in dict.fromkeys((r["optuna_storage"], r["sampler"]) for r in rows):
        mine = {(n, c): v for (n, c, k), v in per_trial.items() if k == kind}
        small, large = min(n for n, _ in mine), max(n for n, _ in mine)
        worst = max(mine.values())
        body += f" On {kind[0]} with {kind[1]}, the driver costs up to **{worst:.2f} CPU s per trial**"
        growth = [mine[(large, c)] / mine[(small, c)] for (n, c) in mine if n == large and (small, c) in mine]
        if growth and large > small:
            body += (f"; from {small:,} to {large:,} trials its CPU per trial grows {max(growth):.2f}x at the same "
                     f"concurrency (target: within 2x)")
        body += (f": one driver core sustains about {1 / worst:.1f} trials/s, so a cluster of 128 concurrent trials "
                 f"keeps its slots busy only if a trial lasts at least 128 x {worst:.2f} = **{128 * worst:.0f} s** "
                 f"(a laptop-preset PRAM trial on a GPU lasts minutes, on a CPU tens of minutes).")
        memory = {r["trials"]: r["peak_rss_mib"] for r in rows if (r["optuna_storage"], r["sampler"]) == kind}
        if large > small:
            body += (f" Its peak memory at {large:,} trials is {memory[large] / memory[small]:.2f}x that at "
                     f"{small:,} (each running trial is a process of its own on its node, not in the driver).")
    body += " "
    by_kind = {r["storage"]: r for r in storages}
    if {"sqlite", "journal"} <= set(by_kind):
        sq, jr = by_kind["sqlite"], by_kind["journal"]
        body += (f"Optuna alone, as the driver drives it (second table): each trial on SQLite costs "
                 f"{sq['first_ms']:.0f} ms at the start and {sq['last_ms']:.0f} ms after {sq['trials']:,} trials "
                 f"(TPE reads every past trial at each ask), on Optuna's journal file {jr['first_ms']:.0f} and "
                 f"{jr['last_ms']:.0f} ms: {sq['total_s'] / jr['total_s']:.1f}x less in all. ")
    body += ("Every node, the driver and the sleeping trials share this machine's 2 cores; on a cluster the "
             "driver has the head node's cores to itself.")
    return body


if __name__ == "__main__":
    main()
