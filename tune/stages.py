"""A target's two Tune experiments: the search, and the retraining of its best settings with several seeds
(beside the same runs with `--apc none`, the no-APC baseline, unless the search was told not to).

Each is a new Tuner, or, with --resume, the Tuner restored from its folder (finished trials kept, unfinished
and errored ones continued from their last checkpoint).
"""

from __future__ import annotations

import functools
import json
import logging
import pickletools
import posixpath
import re
import shutil
import sys
from pathlib import Path

from ray import tune
from ray.tune import Callback

from pram.config import SELECTIONS
from tune import study as study_module
from tune.live import LiveView
from tune.settings import Settings
from tune.space import SEARCHED, make_sampler, space_function, trial_sampler
from tune.study import Fifo, MarkPruned, RoundsASHA, RoundsHyperBand, StudyHistory, StudySearch
from tune.trainable import run_trial


def _trainable(s: Settings, name: str, base, data, resources: dict, report_test: bool, runs_to_end: bool,
               trial=run_trial, best_weights: tuple[str, ...] = SELECTIONS):
    """runs_to_end: no scheduler stops the stage's trials, so their checkpoints can wait (`run_trial`)."""
    work = Path(s.out) / "ray" / "work" / name
    trainable = tune.with_parameters(trial, base=base, data=data, work_dir=str(work),
                                     threads=max(1, int(s.cpus_per_trial)), report_test=report_test,
                                     best_weights=best_weights, save_every=checkpoint_seconds(s),
                                     runs_to_end=runs_to_end)
    return tune.with_resources(trainable, resources)


def search_best_weights(s: Settings) -> tuple[str, ...]:
    """The best weights a search trial writes (and hands to Tune, `run_trial`), besides `last` (which a resume
    needs): none when a final stage retrains the best settings (the search's checkpoints are deleted unread);
    without one, the best trial's weights chosen on the objective are the search's model; --keep-checkpoints
    keeps every rule's. Each best-* is as large as the trainable weights (64 MB in the laptop preset, a third
    of `last`), written by the trial and copied again into Tune's storage (search_overhead.py)."""
    if s.keep_checkpoints:
        return SELECTIONS
    return () if s.final_seeds else (s.objective,)


def checkpoint_seconds(s: Settings) -> float:
    """Seconds between a trial's resume checkpoints (`pram.train.train`'s save_every): --checkpoint-every, or 0
    (every evaluation) where something reads them all: HyperBand, which pauses a trial after any evaluation and
    goes on from its checkpoint, and --keep-checkpoints. ASHA and FIFO never go back to a checkpoint; only a
    resume after a kill or a retry after an error does, and those redo at most --checkpoint-every seconds of a
    trial. Weights a run keeps are checkpointed whenever they are written, whatever this says, and handed to
    Tune at once where a scheduler may stop the trial, else with its last report or after these seconds
    (`run_trial`'s runs_to_end). Each checkpoint costs a trial the writing of `last`, and each hand-over Ray's
    copy of the folder (search_overhead.py)."""
    if s.keep_checkpoints or s.scheduler == "hyperband":
        return 0.0
    return s.checkpoint_every


class NoResultFiles(logging.Filter):
    """Tune's "Failed to fetch metrics for N trial(s): - trial: FileNotFoundError(...)" (ExperimentAnalysis,
    when a resumed experiment holds trials that never reported) reads like a failure and spans many lines. It
    becomes one line that says what it means: those trials wrote no result, and nothing of theirs was lost."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        failures = re.findall(r"^- (\S+?): (\w+)\(", message, flags=re.MULTILINE)
        if not message.startswith("Failed to fetch metrics") or not failures or \
                any(error != "FileNotFoundError" for _, error in failures):
            return True  # another cause (a cut result.json, say) is Tune's to tell
        names = [name for name, _ in failures]
        record.msg, record.args = (f"no result file for {', '.join(names) or 'some trials'}: they had not reported "
                                   "an evaluation when the search was interrupted (nothing of theirs was lost)"), ()
        return True


logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(NoResultFiles())


def repair_snapshots(s: Settings, name: str) -> list[str]:
    """Put back Tune snapshot files of experiment `name` that a killed driver left broken in the storage.

    Tune writes its snapshot (experiment_state-*.json, search_gen_state-*.json, searcher-state-*.pkl) into the
    driver's staging folder, under the local Ray's temp folder (<out>/ray/tmp), then copies it to the storage,
    overwriting the last copy in place: a SIGKILL during that copy leaves the storage's file empty or cut, and
    `Tuner.restore` then silently loses the trials it held. The staging copy is whole; it goes back. Returns the
    names of the files put back (a search on a cluster's storage, with no local staging, is left as it is)."""
    folder = Path(s.storage) / name
    if "://" in s.storage or not folder.is_dir():
        return []
    stagings = sorted((Path(s.out) / "ray" / "tmp").glob(f"session_*/artifacts/*/{name}/driver_artifacts"),
                      key=lambda p: p.stat().st_mtime)
    if not stagings:
        return []
    staged = [copy for copy in stagings[-1].iterdir() if copy.is_file()]
    broken = [copy.name for copy in staged if (folder / copy.name).is_file() and not _whole(folder / copy.name)]
    if not broken or not all(_whole(copy) for copy in staged):
        return []
    for copy in staged:  # all of the last session's snapshot together: its files belong to one another
        shutil.copyfile(copy, folder / copy.name)
    return broken


def _whole(path: Path) -> bool:
    """A snapshot file that reads: JSON that parses, or a pickle whose opcodes run to its STOP (read with
    pickletools, which runs nothing). By content, not name: Tune's search_gen_state-*.json is a pickle."""
    data = path.read_bytes()
    try:
        json.loads(data)
        return True
    except ValueError:  # (UnicodeDecodeError is one)
        pass
    try:
        ops = list(pickletools.genops(data))
    except ValueError:
        return False
    return bool(ops) and ops[-1][0].name == "STOP"


def _fit(s: Settings, name: str, trainable, make_tuner, resume: bool):
    path = f"{s.storage.rstrip('/')}/{name}"
    if resume:
        repaired = repair_snapshots(s, name)
        if repaired:
            print(f"search: {name}: Tune's snapshot ({', '.join(repaired)}) was cut short by the kill; put back "
                  "from the driver's staging copy", file=sys.stderr)
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True)
    else:
        tuner = make_tuner()
    grid = tuner.fit()
    # ASHA kills stopped trials before they can delete their working copy of pram's checkpoints.
    shutil.rmtree(Path(s.out) / "ray" / "work" / name, ignore_errors=True)
    return grid


def free_disk(grid, root: str, keep_trials: tuple = (), subfolder: str | None = None) -> None:
    """Delete what a finished stage's checkpoints hold that no result file reads.

    Whole checkpoints of every trial but the Optuna trials `keep_trials`, or only `subfolder` of each (a final
    run's `last/`: the weights and optimizer state that only resuming that run would need). An errored trial
    keeps everything: --resume retries it from there. Local folders and s3:// alike (pyarrow's filesystem).

    Also every checkpoint of a trial folder that no result names: a trial a killed session started and
    checkpointed after Tune's last snapshot, which the resumed session does not know and ran again anew.

    Nothing outside `root` (the search's storage, s.storage) is touched: in a search resumed from a folder it was
    copied to, a result restored from the original's snapshot may still name the original's checkpoints.
    """
    def ours(path: str) -> bool:
        return path.rstrip("/").startswith(root.rstrip("/").removeprefix("file://") + "/") or "://" in root

    from pyarrow.fs import FileSelector, FileType

    results = list(grid)
    named = {result.path for result in results}
    for stage, filesystem in {posixpath.dirname(r.path): r.filesystem for r in results if r.path}.items():
        if not ours(stage):
            continue
        for folder in filesystem.get_file_info(FileSelector(stage)):
            if folder.type != FileType.Directory or folder.path in named:
                continue
            for checkpoint in filesystem.get_file_info(FileSelector(folder.path)):
                if checkpoint.type == FileType.Directory and checkpoint.base_name.startswith("checkpoint_"):
                    filesystem.delete_dir(checkpoint.path)
    for result in results:
        if result.error is not None or (result.config or {}).get("optuna_trial") in keep_trials:
            continue
        kept = [c for c, _ in result.best_checkpoints or []]
        kept += [result.checkpoint] if result.checkpoint else []
        for path, checkpoint in {c.path: c for c in kept}.items():
            target = f"{path}/{subfolder}" if subfolder else path
            if ours(target) and checkpoint.filesystem.get_file_info(target).type == FileType.Directory:
                checkpoint.filesystem.delete_dir(target)


class KeepLatestCheckpoints(Callback):
    """A search trial's checkpoints in Tune's storage: each is emptied once it is neither the trial's latest nor
    named by one of Tune's last two snapshots of the experiment.

    In place of Tune's `CheckpointConfig(num_to_keep=N)`, which forces a snapshot of the whole experiment every N
    checkpoints of a trial (so that a snapshot never names a checkpoint Tune deleted): a cost per checkpoint that
    grows with the trials (benchmarks/search_scale.py: 0.10 driver CPU s a trial at 100 trials and 0.24 at 400,
    against 0.044 and 0.050 without). Snapshots then come on Tune's clock (every 10 s or more), and a resumed
    search restores each trial from the checkpoint its snapshot names, with the round count of that checkpoint:
    so what the snapshot names stays whole until a later snapshot names a later one. Tune asks its callbacks for
    their state (`get_state`) as it writes each snapshot, which tells this one when and what. The last two
    snapshots are kept, since a kill can cut the latest one's copy to the storage short. A spent checkpoint is
    emptied, not deleted, since Tune refuses to restore a trial from a folder that is gone. What a stage's trials
    still hold when it ends, `free_disk` deletes.

    A trial that raised is retried, and Tune then reads its result files back from the storage, which without
    the forced snapshot may be older than the driver's copy (the rounds since the last snapshot would be lost):
    the driver's copy goes up first."""

    def __init__(self, snapshots: int = 2):
        self.snapshots = snapshots
        self._held: dict[str, list] = {}  # per trial, its checkpoints not yet emptied, oldest first
        self._named: list[set[str]] = []  # per snapshot, oldest first: the checkpoints it names

    def __getstate__(self):  # (Tune pickles callbacks with its snapshot; a resumed search starts a new list)
        return {"snapshots": self.snapshots}

    def __setstate__(self, state):
        self.__init__(**state)

    def get_state(self) -> None:
        """Called as Tune writes a snapshot, which names each trial's latest checkpoint; nothing to save."""
        self._named = [*self._named, {held[-1].path for held in self._held.values() if held}][-self.snapshots:]
        for held in self._held.values():
            self._empty_spent(held)
        return None

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        held = self._held.setdefault(trial.trial_id, [])
        held.append(checkpoint)
        self._empty_spent(held)

    def _empty_spent(self, held: list) -> None:
        named = set().union(*self._named)
        for spent in [c for c in held[:-1] if c.path not in named]:
            spent.filesystem.delete_dir_contents(spent.path, missing_dir_ok=True)
            held.remove(spent)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._held.pop(trial.trial_id, None)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        import pyarrow.fs

        pyarrow.fs.copy_files(trial.local_path, trial.storage.trial_fs_path,
                              destination_filesystem=trial.storage.storage_filesystem)


VARIANT_DIRS = {"both": "pram", "none": "no-apc"}


def trial_dirname(trial) -> str:
    """`trial-003-<id>` in a search, `pram-seed-1-<id>` or `no-apc-seed-1-<id>` in a final run (instead of
    every setting in the name)."""
    if "optuna_trial" in trial.config:
        return f"trial-{trial.config['optuna_trial']:03d}-{trial.trial_id}"
    if "candidate" in trial.config:
        return f"rescore-trial-{trial.config['candidate']['rescored_trial']:03d}-{trial.trial_id}"
    variant = trial.config.get("apc", "both")
    return f"{VARIANT_DIRS.get(variant, variant)}-seed-{trial.config.get('seed')}-{trial.trial_id}"


def _run_config(s: Settings, name: str, callbacks: list, checkpoint: tune.CheckpointConfig) -> tune.RunConfig:
    return tune.RunConfig(name=name, storage_path=s.storage, verbose=0, callbacks=callbacks,
                          failure_config=tune.FailureConfig(max_failures=s.max_failures),
                          checkpoint_config=checkpoint)


def reuses_actors(resources: dict) -> bool:
    """Whether a stage's trials run one after another in the same Ray actor: on CPUs, where a new actor per trial
    costs a Python start and the imports of torch, transformers and Ray Tune (seconds: search_overhead.py); not on
    a GPU, where a trial's exit is what frees its GPU memory for the next."""
    return not resources.get("gpu")


def search_stage(s: Settings, target: str, base, data, ranges: dict, storage_file: Path, study_name: str,
                 resources: dict, concurrency: int, rounds: int, grace: int, resume: bool, trial=run_trial,
                 reuse_actors: bool | None = None):
    """Optuna TPE (or another of its samplers) proposes, ASHA stops the weak early (or HyperBand does, or FIFO
    trains every trial to the end); one trial reports once per evaluation.

    storage_file: the Optuna studies' file (optuna.db or optuna.journal, pram.results.OPTUNA_FILES).

    trial: the function each trial runs (`run_trial`; benchmarks/search_scale.py gives one that sleeps).
    reuse_actors: None, `reuses_actors(resources)`; the simulation of a GPU cluster on this machine's CPUs
    (search_scale.py) reuses them, since a cluster starts its actors on the worker nodes, not the driver's."""
    from pram.results import open_optuna_storage

    name = f"search-{target}"
    storage = open_optuna_storage(storage_file)
    study_module.STORAGE_NOW[:] = [str(storage_file)]  # a restored searcher and scheduler use this file
    trainable = _trainable(s, name, base, data, resources, report_test=False, runs_to_end=s.scheduler == "fifo",
                           trial=trial, best_weights=search_best_weights(s))

    # Each target's study gets its own seed (seed + its place in --targets): with one seed for all, every
    # target's search would start from the very same configurations.
    study_seed = s.seed + list(s.targets).index(target)

    def make_tuner():
        sampler = make_sampler(study_seed, s.num_samples, s.sampler)
        # --deterministic: one trial at a time (concurrency 1, set by the caller), each proposed by a sampler
        # seeded by its trial number, so that a kill and --resume change nothing
        sampler_for = functools.partial(trial_sampler, study_seed, s.num_samples, s.sampler) \
            if s.deterministic else None
        # HyperBand's PAUSED trials still count as proposed-and-not-finished for the searcher: a limit there
        # would leave a bracket unfilled for good; the trials' resources alone then bound how many run at once.
        searcher = StudySearch(space_function(ranges), metric=s.metric, mode="max", sampler=sampler,
                               study_name=study_name, storage=storage,
                               max_concurrent=s.num_samples if s.scheduler == "hyperband" else concurrency,
                               sampler_for=sampler_for, max_rounds=rounds)
        if s.scheduler == "fifo":
            scheduler = Fifo()
        elif s.scheduler == "hyperband":
            scheduler = RoundsHyperBand(max_rounds=rounds, grace_period=grace, prune_collapsed=s.prune_collapsed)
        else:  # reduction factor 2, not ASHA's 4: a search of a few trials still halves at each rung
            scheduler = RoundsASHA(max_rounds=rounds, grace_period=grace, prune_collapsed=s.prune_collapsed,
                                   history=StudyHistory(str(storage_file), study_name), reduction_factor=2)
        params = [p for p in SEARCHED if p in ranges]
        view = LiveView(f"search {target} ({study_name})", s.num_samples, rounds, s.metric, params)
        # Tune keeps every checkpoint and snapshots on its own clock; KeepLatestCheckpoints empties the spent
        # ones. (Each checkpoint holds the best weights written so far, if any: the latest is also the best.)
        checkpoint = tune.CheckpointConfig(num_to_keep=None)
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric=s.metric, mode="max", search_alg=searcher, scheduler=scheduler,
                                        num_samples=s.num_samples,
                                        reuse_actors=reuses_actors(resources) if reuse_actors is None else reuse_actors,
                                        trial_dirname_creator=trial_dirname),
            run_config=_run_config(s, name, [MarkPruned(rounds), view, KeepLatestCheckpoints()], checkpoint))

    return _fit(s, name, trainable, make_tuner, resume)


def final_stage(s: Settings, target: str, base, data, config: dict, resources: dict, concurrency: int, rounds: int,
                resume: bool):
    """The best settings retrained with --final-seeds seeds, in parallel, and with `--apc none` on the same
    seeds, steps and data (the no-APC baseline) unless s.baseline is off; each run reports test scores last.
    Tune keeps each run's last checkpoint: its best-target-dev and best-source-dev weights."""
    name = f"final-{target}"
    trainable = _trainable(s, name, base, data, resources, report_test=True, runs_to_end=True)
    seeds = [s.seed + i for i in range(s.final_seeds)]
    variants = ["both", "none"] if s.baseline else ["both"]

    def make_tuner():
        view = LiveView(f"final {target}: best settings, {len(seeds)} seed(s)"
                        + (", and the no-APC baseline" if s.baseline else ""), len(seeds) * len(variants),
                        rounds, s.metric, ["apc", "seed"])
        space = {**config, "apc": tune.grid_search(variants), "seed": tune.grid_search(seeds)}
        return tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency,
                                        reuse_actors=reuses_actors(resources),
                                        trial_dirname_creator=trial_dirname),
            run_config=_run_config(s, name, [view], tune.CheckpointConfig(num_to_keep=1)))

    return _fit(s, name, trainable, make_tuner, resume)


def rescore_trial(config: dict, **kwargs) -> None:
    """A re-scoring run (`rescore_stage`): the candidate trial's settings, with the re-scoring seed."""
    run_trial({k: v for k, v in config["candidate"].items() if k != "rescored_trial"}, **kwargs)


def rescore_stage(s: Settings, target: str, base, data, candidates: list[dict], resources: dict, concurrency: int,
                  rounds: int, resume: bool):
    """The top trials of a search (--rescore-top) trained again with seed + 1 on the same steps and data, so
    that the best is chosen on two seeds. candidates: each trial's settings with `rescored_trial` (its Optuna
    number). Nothing is kept but the scores: these runs write no best weights."""
    name = f"rescore-{target}"
    trainable = _trainable(s, name, base, data, resources, report_test=False, runs_to_end=True,
                           trial=rescore_trial, best_weights=())
    seed = s.seed + 1

    def make_tuner():
        view = LiveView(f"rescore {target}: the top {len(candidates)} trials again, seed {seed}", len(candidates),
                        rounds, s.metric, [])
        space = {"candidate": tune.grid_search([{**c, "seed": seed} for c in candidates])}
        return tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=reuses_actors(resources),
                                        trial_dirname_creator=trial_dirname),
            run_config=_run_config(s, name, [view], tune.CheckpointConfig(num_to_keep=1)))

    return _fit(s, name, trainable, make_tuner, resume)
