"""One search run: for each target, load its data once, search, retrain the best settings with several seeds;
then the results files and a summary. `search.py` turns the command line into the `Settings` this takes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, fields, replace
from pathlib import Path

import optuna
import pyarrow.parquet as pq
from optuna.trial import TrialState
from rich.console import Console

from pram.config import TrainConfig
from pram.errors import UserError
from pram.files import write_atomically, write_json
from pram.results import (
    BEST,
    FINAL,
    HISTORY,
    HISTORY_COLUMNS,
    OPTUNA_FILES,
    RUN,
    SPACE,
    SUMMARY,
    TRIAL_COLUMNS,
    TRIALS,
    open_optuna_storage,
    optuna_dashboard_command,
)
from pram.settings import search_config, targets_of, train_command
from tune import results
from tune.cluster import local_auth_token, ray_running
from tune.preflight import check_before_writing, only_search
from tune.settings import Settings
from tune.space import SEARCHED, describe, search_ranges, space_hash, space_path

TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
FOLDERS = ("out_dir", "data_dir", "cache_dir", "quiet", "threads")  # the machine's, not the setting's
STATUS = {TrialState.COMPLETE: "TERMINATED", TrialState.PRUNED: "PRUNED", TrialState.FAIL: "ERROR"}
RAY_NAMES = {"cpu": "CPU", "gpu": "GPU"}  # Tune's names of a trial's resources -> Ray's


def base_config(s: Settings, target: str) -> TrainConfig:
    """The preset's training config for one target, with the search's overrides (every trial starts here)."""
    targets = targets_of(s.dataset, s.mode, s.data_dir)
    if target not in targets:
        raise UserError(f"--targets: {target!r} is not a target of {s.dataset} in {s.mode}-source mode; "
                        f"choose from {','.join(targets)}")
    return search_config(s.dataset, s.mode, target, s.preset, s.train, s.objective, s.seed, data_dir=s.data_dir,
                         cache_dir=s.cache_dir, out_dir=str(Path(s.out) / "ray" / "work"))


def schedule(config: TrainConfig, ranges: dict) -> tuple[int, int]:
    """(rounds, grace period): ASHA counts evaluations. No trial is stopped before the first evaluation
    after the target term is on (beta_start; the latest start when it is searched): before that, the target
    weight beta, one of the searched settings, has had no effect."""
    rounds = math.ceil(config.max_steps / config.eval_every)
    start = ranges.get("beta_start")
    latest = max(getattr(start, "values", None) or [getattr(start, "high", config.beta_start)])
    grace = round(latest * config.max_steps) // config.eval_every + 1
    return rounds, max(1, min(grace, rounds))


def trial_resources(s: Settings, cluster: dict) -> tuple[dict, int, int]:
    """Resources of one trial, how many run at once, and how many fit on the nodes up now (`cluster`, Ray's
    cluster_resources()): 0 on an autoscaling cluster whose workers have not started yet."""
    gpus = s.gpus_per_trial if s.gpus_per_trial is not None else \
        (1.0 if s.accelerator_type or cluster.get("GPU", 0) >= 1 else 0.0)
    resources = {"cpu": s.cpus_per_trial, "gpu": gpus}
    if s.accelerator_type:
        # What Ray's own `accelerator_type=` option asks for: a sliver of the resource every node of that
        # GPU model carries, so that it takes nothing from other trials.
        resources[f"accelerator_type:{s.accelerator_type}"] = 0.001
    fit = min(math.floor(cluster.get(RAY_NAMES.get(name, name), 0) / amount)
              for name, amount in resources.items() if amount)
    return resources, s.max_concurrent or max(1, fit), fit


def _resources(amounts: dict) -> str:
    shown = [f"{amount:g} {name.upper()}" for name, amount in amounts.items() if amount and ":" not in name]
    return ", ".join(shown) or "nothing"


def run_search(s: Settings, resume: bool, started: float | None = None) -> int:
    """started: time.monotonic() when the driver started (its wall time is printed at the end); None: now."""
    started = time.monotonic() if started is None else started
    out = Path(s.out)
    ranges, space_text = search_space(s)
    bases = {target: base_config(s, target) for target in s.targets}  # bad input fails before Ray starts
    check_before_writing(s)  # the folder, the storage, the cluster: before anything is written
    created = out  # the outermost folder this search creates (None: out was there already)
    while not created.parent.exists():
        created = created.parent
    created = None if out.exists() else created
    out.mkdir(parents=True, exist_ok=True)
    progress = {"trials": False}
    with only_search(out):  # a second search on this folder is refused here, and removes nothing
        try:
            return _search(s, out, ranges, bases, resume, progress, space_text, started)
        except UserError:
            if created and not progress["trials"]:
                shutil.rmtree(created, ignore_errors=True)  # a search that never started a trial leaves no folder
            raise


def search_space(s: Settings) -> tuple[dict, str]:
    """The ranges a search draws from, and its space file's text: the folder's copy (space.yaml) once the search
    has started, which must still be the file its run.json names by hash."""
    copy = Path(s.out) / SPACE
    path = copy if copy.exists() else space_path(s.space, s.dataset)
    text = path.read_text(encoding="utf-8")
    if s.space_sha256 and space_hash(text) != s.space_sha256:
        raise UserError(f"{path} is not the space this search was made with (its sha256 differs from run.json's): "
                        "put the original back, or start a new search with another --out")
    return search_ranges(s.dataset, s.ranges, path), text


def _search(s: Settings, out: Path, ranges: dict, bases: dict, resume: bool, progress: dict, space_text: str,
            started: float) -> int:
    if not s.address:
        local_auth_token(out)
    # (on --resume too: a search resumed where it was moved or copied to names its own folder from now on, and
    # the flags --resume may change are saved as its settings)
    write_json(out / RUN, asdict(s))
    if not (out / SPACE).exists():  # (also when a kill came between run.json and it)
        write_atomically(out / SPACE, space_text)
    # Ctrl+C ends the driver at once (Tune's handler would let it go on to the next stage); --resume goes on.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # The live view replaces Tune's reporter (Ray 2.60's new one prints its banner even with verbose=0), and
    # a snapshot of the experiment after every checkpoint is wanted here: it is what --resume starts from.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = out / OPTUNA_FILES[s.optuna_storage]
    console = Console(stderr=True)
    console.print(f"[bold]search[/bold] {s.dataset} {s.mode}-source, preset {s.preset}, targets "
                  f"{','.join(s.targets)}: {s.num_samples} trials each; {describe(ranges)}")
    console.print(f"watch it: {optuna_dashboard_command(storage)}", soft_wrap=True)
    records, finals, best = [], {}, {}
    with ray_running(out, s.address) as ray:
        resources, concurrency, fit = trial_resources(s, ray.cluster_resources())
        if not fit and not s.address:  # a local Ray has no autoscaler: such a trial would wait for ever
            have = ray.cluster_resources()
            raise UserError(f"a trial asks for {_resources(resources)} and this machine has "
                            f"{have.get('CPU', 0):g} CPU, {have.get('GPU', 0):g} GPU: no trial could start; lower "
                            "--gpus-per-trial or --cpus-per-trial, or search on a cluster (--address)")
        if not fit:
            console.print(f"[yellow]note[/yellow] no node up now has room for a trial ({resources}): trials "
                          "wait until an autoscaler starts one. The defaults of --gpus-per-trial and "
                          f"--max-concurrent come from the nodes up now: {concurrency} trial(s) at a time.")
        # Tune keeps one trial of a custom searcher pending at a time: the next is created only once the last
        # has started, so an autoscaler would start GPU nodes one by one, and short trials never overlap.
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(concurrency))
        import datasets

        datasets.disable_progress_bars()  # the live view is the one display

        progress["trials"] = True  # from here on the folder holds a search's work: an error keeps it
        for target in s.targets:
            target_records, final = _target(s, out, target, bases[target], ranges, storage, resources,
                                            concurrency, resume, best)
            records += target_records
            if final is not None:
                finals[target] = final
    exports = export_best(s, out, finals, console)
    write_results(s, out, records, best, finals, bases, exports)
    write_report(out, console)
    print_end(s, out, best, console, time.monotonic() - started, resume)
    return 0


def _target(s: Settings, out: Path, target: str, base: TrainConfig, ranges: dict, storage: Path, resources: dict,
            concurrency: int, resume: bool, best: dict):
    """One target: its search, its best settings (into best[target] and best.json, before the final stage
    starts), and the records of its trials and its final runs (None without a final stage)."""
    from pram.inputs import prepare_data
    from tune.stages import final_stage, free_disk, search_stage

    data = prepare_data(base) if not s.address else portable(prepare_data(base))
    rounds, grace = schedule(base, ranges)
    study_name = f"{s.dataset}-{s.mode}-{target}"
    searching = 1 if s.deterministic else concurrency  # the final stage's runs do not depend on each other
    if s.warm_start:
        from tune.study import warm_start

        earlier = [(t, best[t]["config"]) for t in s.targets[:s.targets.index(target)] if best.get(t)]
        added = warm_start(study_name, open_optuna_storage(storage), earlier)
        if added:
            Console(stderr=True).print(f"search {target}: its first trial(s) train the best settings of "
                                       f"{', '.join(added)} (--warm-start)")
    grid = search_stage(s, target, base, data, ranges, storage, study_name, resources, searching, rounds, grace,
                        resume)
    study = optuna.load_study(study_name=study_name, storage=open_optuna_storage(storage))
    records = collect(grid, target, study, s.metric, resources["gpu"])
    rescored = rescore(s, target, base, data, study, resources, concurrency, rounds, resume)
    best[target] = best_entry(study, base, s, rescored)
    results.write_best(out / BEST, best)
    retrain = bool(s.final_seeds and best[target])
    if not s.keep_checkpoints:
        # The final stage retrains the best settings; without it, the best trial's weights are the model.
        free_disk(grid, s.storage, keep_trials=() if retrain else (best[target].get("optuna_trial"),))
    if not retrain:
        return records, None
    final_grid = final_stage(s, target, base, data, best[target]["config"], resources, concurrency, rounds, resume)
    check_final(final_grid, target)
    if not s.keep_checkpoints:
        free_disk(final_grid, s.storage, subfolder="last")  # best-target-dev and best-source-dev stay
    return records, final_runs(final_grid, out)


def check_final(grid, target: str) -> None:
    """A final run that failed (for good: after --max-failures retries) stops the search before its result files,
    in one line: a final table without it would compare PRAM and the baseline on different seeds. --resume
    retries it (Tune's resume_errored)."""
    failed = [r for r in grid if r.error is not None]
    if not failed:
        return
    cause = str(failed[0].error).strip().splitlines()[-1][:300] if str(failed[0].error).strip() else \
        type(failed[0].error).__name__
    raise UserError(f"final stage of {target}: {len(failed)} of {len(list(grid))} run(s) failed ({cause}); no "
                    "result file was written: fix the cause (a full disk: free some space) and run the same "
                    "command with --resume")


def final_runs(grid, out: Path) -> list[results.FinalRun]:
    """The final stage's runs that reported test scores, each with the checkpoint folder Tune kept."""
    runs = []
    for r in grid:
        if r.metrics and r.metrics.get("final"):
            config = r.config or {}
            runs.append(results.FinalRun(config.get("apc", "both"), config.get("seed"), r.metrics,
                                         checkpoint_location(r.checkpoint, out)))
    return runs


def checkpoint_location(checkpoint, out: Path) -> str | None:
    """A checkpoint's folder: relative to the results folder when inside it, else a path or URI."""
    if checkpoint is None:
        return None
    scheme = getattr(checkpoint.filesystem, "type_name", "local")
    if scheme != "local":
        return f"{scheme}://{checkpoint.path}"
    path = Path(checkpoint.path)
    return str(path.relative_to(out)) if path.is_relative_to(out) else str(path)


def write_report(out: Path, console: Console) -> None:
    """dashboard.html and paper-tables.md (`pram report`). The results files are written by now: a search
    that ran for hours does not end in a traceback over its page; it says how to try again."""
    from pram.dashboard import build_report

    try:
        build_report(out)
    except Exception as e:
        console.print(f"[red]dashboard not written[/red] ({type(e).__name__}: {e}); `pram report {out}` "
                      "tries again and shows the traceback", soft_wrap=True)


def portable(data):
    """Dev and test sets that pickle with their rows: the Arrow cache files they map are on this machine
    only, and a cluster runs trials elsewhere."""
    def in_memory(splits: dict) -> dict:
        return {lang: split.flatten_indices(keep_in_memory=True) for lang, split in splits.items()}

    return replace(data, dev=in_memory(data.dev), test=in_memory(data.test))


def collect(grid, target: str, study: optuna.Study, metric: str, gpus: float) -> list[results.TrialRecord]:
    """One record per Tune trial; the Optuna study is settled first, so none is left RUNNING."""
    from tune.study import settle

    trials = [(r.config or {}, r.metrics or {}, r.error is not None) for r in grid]
    states = settle(study, trials, metric)
    records = []
    for r in grid:
        history = r.metrics_dataframe.to_dict("records") if r.metrics_dataframe is not None else []
        history = [{k: v for k, v in h.items() if "/" not in k} for h in history]
        number = (r.config or {}).get("optuna_trial")
        status = "ERROR" if r.error is not None else STATUS.get(states.get(number), "ERROR")
        records.append(results.TrialRecord(target, r.config or {}, history, r.metrics or {}, status, gpus))
    return records


def top_trials(study: optuna.Study, k: int) -> list:
    """The k complete trials with the highest objective, best first (a tie: the earlier trial first)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=lambda t: (-t.value, t.number))[:k]


def rescored_best(first: dict[int, float], second: dict[int, float | None]) -> int:
    """The trial --rescore-top keeps: the highest mean of its two seeds' objective (`first`: the search's,
    `second`: the re-scoring run's, None where that run failed); a tie goes to the higher first score, then to
    the earlier trial. A trial without a second score competes only if none has one (then on its first)."""
    both = [n for n in first if second.get(n) is not None]
    if not both:
        return min(first, key=lambda n: (-first[n], n))
    return min(both, key=lambda n: (-(first[n] + second[n]) / 2, -first[n], n))


def rescore(s: Settings, target: str, base: TrainConfig, data, study: optuna.Study, resources: dict, concurrency: int,
            rounds: int, resume: bool) -> dict | None:
    """--rescore-top K: the K best trials trained again with seed + 1 (`tune.stages.rescore_stage`); returns
    {"chosen": the trial kept by `rescored_best`, "scores": {trial: [search score, re-scoring score]}}, or None
    when there is nothing to choose between."""
    from tune.stages import free_disk, rescore_stage

    top = top_trials(study, s.rescore_top) if s.rescore_top > 1 else []
    if len(top) < 2:
        return None
    candidates = [{**{k: v for k, v in t.params.items() if k in TRAIN_FIELDS}, "rescored_trial": t.number}
                  for t in top]
    grid = rescore_stage(s, target, base, data, candidates, resources, concurrency, rounds, resume)
    free_disk(grid, s.storage)  # only the scores are read
    second = {(r.config or {})["candidate"]["rescored_trial"]: (r.metrics or {}).get(s.metric)
              for r in grid if r.error is None}
    first = {t.number: t.value for t in top}
    return {"chosen": rescored_best(first, second),
            "scores": {str(n): [first[n], second.get(n)] for n in first}}


def best_entry(study: optuna.Study, base: TrainConfig, s: Settings, rescored: dict | None = None) -> dict:
    """The best Optuna trial: the one --rescore-top kept (`rescored`), else the best complete one, else the best
    pruned one (its value at the stop)."""
    trials = study.get_trials(deepcopy=False)
    for states in ((TrialState.COMPLETE,), (TrialState.PRUNED,)):
        scored = [t for t in trials if t.state in states and t.value is not None]
        if scored:
            top = max(scored, key=lambda t: t.value)
            if rescored:
                top = next(t for t in scored if t.number == rescored["chosen"])
            trained = replace(base, **{k: v for k, v in top.params.items() if k in TRAIN_FIELDS})
            return {"study": study.study_name, "optuna_trial": top.number, "state": top.state.name,
                    "objective": s.objective, "value": top.value, "config": top.params,
                    **({"rescored": rescored["scores"]} if rescored else {}),
                    "sources": list(base.sources), "preset": s.preset, "encoder": base.encoder,
                    # every setting the trial trained with: `pram train --settings best.json` reads it
                    "train_config": {k: v for k, v in trained.to_dict().items() if k not in FOLDERS},
                    "command": train_command(trained)}
    return {}


def export_best(s: Settings, out: Path, finals: dict, console: Console) -> dict[str, str]:
    """Each target's best PRAM model as a HuggingFace folder, `ray/export-<target>` (`pram export`): of the final
    PRAM runs, the seed whose kept weights scored best on the objective's dev set (never on test). Returns
    target -> folder relative to out. A folder already there (a resumed search) is kept; a failed export is a
    warning, not the end of a search that ran for hours."""
    import statistics

    from pram.export import export
    from pram.logs import quiet_libraries

    quiet_libraries()  # the live view is the one display
    suffix = "_by_" + s.objective.replace("-", "_")
    exports = {}
    for target, runs in finals.items():
        kept = []
        for run in runs:
            folder = out / (run.checkpoint or "") / f"best-{s.objective}"
            if run.variant == "both" and run.checkpoint and "://" not in run.checkpoint and \
                    (folder / "state.json").is_file():
                kept.append((json.loads((folder / "state.json").read_text()).get("score", -1.0), run, folder))
        if not kept:
            continue
        score, best_run, folder = max(kept, key=lambda k: k[0])
        f1 = [r.metrics[f"test_f1_{target}{suffix}"] for _, r, _ in kept if f"test_f1_{target}{suffix}" in r.metrics]
        spread = f" ± {statistics.stdev(f1):.2f}" if len(f1) > 1 else ""
        line = (f"{statistics.fmean(f1):.2f}{spread} over {len(f1)} seed(s) of the search's final stage; this folder "
                f"is seed {best_run.seed}, {s.objective} F1 {score:.2f}") if f1 else None
        dest = out / "ray" / f"export-{target}"
        if not dest.exists():
            try:
                export(folder, dest, command=f"(the final stage of the search in {out})", scores=line)
            except Exception as e:
                console.print(f"[yellow]export of {target} not written[/yellow] ({type(e).__name__}: {e}); "
                              f"`pram export {folder} {dest}` tries again", soft_wrap=True)
                continue
        exports[target] = str(dest.relative_to(out))
    return exports


def write_results(s: Settings, out: Path, records, best, finals, bases, exports: dict | None = None) -> None:
    base_values = {t: {name: getattr(b, name) for name in SEARCHED} for t, b in bases.items()}
    results.write_table(out / TRIALS, results.trial_rows(records, s.metric, base_values),
                        TRIAL_COLUMNS)
    results.write_table(out / HISTORY, results.history_rows(records), HISTORY_COLUMNS)
    roles = {t: {lang: ("target" if lang == t else "source" if lang in b.sources else "zero-shot")
                 for lang in (t, *b.sources, *b.eval_languages)} for t, b in bases.items()}
    final = results.final_rows(s.dataset, s.mode, finals, roles)
    results.write_final(out / FINAL, final)
    counts = {t: Counter(r.status for r in records if r.target == t) for t in s.targets}
    encoder = next(iter(bases.values())).encoder
    run = {**asdict(s), "encoder": encoder}
    write_atomically(out / SUMMARY, results.summary_markdown(run, best, final, counts, exports))


def _scores(trial: int, scores: list) -> str:
    first, second = scores
    return f"trial {trial} ({first:.2f}, then " + ("no score)" if second is None else f"{second:.2f})")


def print_end(s: Settings, out: Path, best: dict, console: Console, wall_s: float, resumed: bool = False) -> None:
    from tune.live import duration, summary_table

    final = pq.read_table(out / FINAL).to_pylist()
    counts = Counter((r["target"], r["status"]) for r in pq.read_table(out / TRIALS).to_pylist())
    by_target = {t: {status: n for (target, status), n in counts.items() if target == t} for t in best}
    console.print(summary_table(best, final, by_target, s.dataset, s.mode, s.objective))
    for target, entry in best.items():
        if entry.get("rescored"):
            scores = {int(n): v for n, v in entry["rescored"].items()}
            top, kept = max(scores, key=lambda n: scores[n][0]), entry["optuna_trial"]
            console.print(f"{target}: the top {len(scores)} trials trained again with seed {s.seed + 1} "
                          f"(--rescore-top): {_scores(kept, scores[kept])} kept"
                          + ("" if kept == top else f"; the search's own best was {_scores(top, scores[top])}"))
    if s.mode == "multi":
        console.print("The paper's multi-source PRAM row (Table 4) is missing from its text.")
    encoder = next((entry["encoder"] for entry in best.values() if entry), "?")
    console.print(f"The encoder is {encoder}, not the paper's mBERT: the numbers are not directly "
                  "comparable.")
    shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
    # soft_wrap: paths and commands stay whole on one line, to be copied
    console.print(f"\n[bold]results[/bold] {shown}/: dashboard.html summary.md paper-tables.md best.json space.yaml "
                  "trials.parquet history.parquet final.parquet", soft_wrap=True)
    console.print(f"dashboards:\n  {optuna_dashboard_command(out / OPTUNA_FILES[s.optuna_storage])}\n"
                  f"  tensorboard --logdir {s.storage} --host 127.0.0.1", soft_wrap=True)
    part = "this resumed part of the search" if resumed else "the search"
    console.print(f"wall time of {part}: {duration(wall_s)} (h:mm:ss, from the driver's start: Ray, data, every "
                  "stage, the result files)")
