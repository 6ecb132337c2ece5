"""The Ray Tune function trainable: `pram.train.train` with one report per evaluation, and a checkpoint with the
reports whose evaluation wrote one, or, where the stage's scheduler never stops a trial, with the first report
after --checkpoint-every's seconds and with the last (`run_trial`).

Test-only fault injection: with PRAM_TUNE_FAIL_AT_STEP=N in the environment, a trial that started from
scratch raises right after reporting step N; its retry starts from that report's checkpoint (with
--checkpoint-every 0, as the tests run it, every report hands one) and does not raise again.
PRAM_TUNE_FAIL_TRIAL=K limits the fault to Optuna trial K (with --max-failures 0 it then ends in ERROR).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import fields, replace
from pathlib import Path

import ray
from ray import tune

from pram.config import SELECTIONS, TrainConfig
from pram.inputs import TrainData
from pram.train import train

FAIL_AT_STEP = "PRAM_TUNE_FAIL_AT_STEP"
FAIL_TRIAL = "PRAM_TUNE_FAIL_TRIAL"
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


class InjectedFault(RuntimeError):
    """Raised by the test-only fault injection hook."""


def run_trial(config: dict, base: TrainConfig, data: TrainData, work_dir: str, threads: int,
              report_test: bool = False, best_weights: tuple[str, ...] = SELECTIONS, save_every: float = 0.0,
              runs_to_end: bool = False) -> None:
    """One trial: `config` holds the sampled settings (and, for a final run, its seed).

    base and data come through `tune.with_parameters`: data is loaded and tokenised once by the driver.
    work_dir/<trial id> is pram's out_dir; what Tune keeps is the copy of its `checkpoints/` folder that every
    report hands over, so the working copy is deleted when the trial ends. That folder holds `last` and the
    best weights of the selection rules in best_weights (`pram.train.train`): all of them in a final run, which
    scores them on test; in a search trial only what the search keeps (`tune.stages.search_best_weights`).
    save_every: `pram.train.train`'s; a report hands Tune a checkpoint only when its evaluation wrote `last`.
    runs_to_end: the stage's scheduler never stops a trial (FIFO, the final stage), so the checkpoints written
    beside new best weights can wait: Tune gets the latest one with the first report after save_every seconds
    and with the trial's last report, and one copy of the folder into Tune's storage (a second or so for the
    laptop preset's 244 MB) replaces one per improvement. Where a scheduler may stop a trial after any report
    (ASHA, HyperBand), each is handed at once, since the kept weights of a stopped trial must be Tune's.
    """
    out_dir = Path(work_dir) / tune.get_context().get_trial_id()
    settings = {k: v for k, v in config.items() if k in TRAIN_FIELDS}
    train_config = replace(base, **settings, out_dir=str(out_dir), quiet=True, threads=threads)
    meta = _restore(out_dir)
    started_cpu = time.process_time()
    fail_at = _fault_step(config)
    where = _placement()
    reporting = {"report_s": 0.0}  # this attempt's seconds inside tune.report, the checkpoint's copy included
    # the newest checkpoint Tune does not have yet (its step and CPU seconds), and when Tune last got one
    unsent, handed = {}, {"at": time.time()}

    def report(metrics: dict, last_checkpoint_dir: Path | None, last_evaluation: bool) -> None:
        cpu_s = meta["cpu_s"] + time.process_time() - started_cpu
        if last_checkpoint_dir is not None:
            unsent.update(folder=Path(last_checkpoint_dir).parent, step=metrics["step"], cpu_s=cpu_s)
        checkpoint = None
        if unsent and (not runs_to_end or last_evaluation or time.time() - handed["at"] >= save_every):
            # The whole checkpoints/ folder: pram's final test scores need best-* too after a resume elsewhere.
            # (Until the next write it is what it was at unsent's step: train writes nothing else there.)
            checkpoint = tune.Checkpoint.from_directory(str(unsent["folder"]))
            checkpoint.set_metadata({"cpu_s": unsent["cpu_s"], "step": unsent["step"], "starts": meta["starts"]})
            unsent.clear()
        began = time.perf_counter()
        # (report_s holds the reports before this one: a report cannot time itself)
        tune.report({**_scalars(metrics), "cpu_s": cpu_s, "starts": meta["starts"], **reporting, **where},
                    checkpoint=checkpoint)
        reporting["report_s"] += time.perf_counter() - began
        if checkpoint is not None:
            handed["at"] = time.time()
        if fail_at and metrics["step"] == fail_at and meta["step"] < fail_at:
            raise InjectedFault(f"{FAIL_AT_STEP}={fail_at}: injected fault after step {fail_at}")

    try:
        final = train(train_config, data, report=report, resume=meta["step"] > 0, score_test=report_test,
                      best_weights=best_weights, save_every=save_every)
        if report_test:
            tune.report({"final": True, **_test_scalars(final), "cpu_s": meta["cpu_s"] +
                         time.process_time() - started_cpu, "starts": meta["starts"], **where})
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        _release_gpu_memory()


def _restore(out_dir: Path, checkpoint: tune.Checkpoint | None = None) -> dict:
    """Copy Tune's latest checkpoint (if any) into out_dir/checkpoints; return what it says about the past.

    An empty checkpoint (KeepLatestCheckpoints empties the spent ones, and keeps whole what Tune's last two
    snapshots name, so only an older snapshot leads here) says nothing: the trial starts again from its first
    step, and Tune's round count runs ahead of it."""
    checkpoint = checkpoint or tune.get_checkpoint()
    if checkpoint is None:
        return {"cpu_s": 0.0, "step": 0, "starts": 1}
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    with checkpoint.as_directory() as folder:
        shutil.copytree(folder, out_dir / "checkpoints", ignore=shutil.ignore_patterns(".metadata.json"))
    meta = checkpoint.get_metadata()
    return {"cpu_s": meta.get("cpu_s", 0.0), "step": meta.get("step", 0), "starts": meta.get("starts", 1) + 1}


def _placement() -> dict:
    """Where Ray put this attempt of the trial: its node (Tune adds the node's IP itself, but several nodes
    can share one machine and IP) and the GPUs of that node it was given ("" for none)."""
    return {"node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": ",".join(str(i) for i in ray.get_gpu_ids())}


def _fault_step(config: dict) -> int:
    """The step after which this trial raises (the test-only hook of the module's docstring); 0: never."""
    only = os.environ.get(FAIL_TRIAL)
    if only is not None and str(config.get("optuna_trial")) != only:
        return 0
    return int(os.environ.get(FAIL_AT_STEP, "0"))


def _scalars(metrics: dict) -> dict:
    """Tune keeps numbers; booleans become 0/1 so that progress.csv and Parquet hold one type per column."""
    return {k: (int(v) if isinstance(v, bool) else v) for k, v in metrics.items()
            if isinstance(v, (int, float))}


def _test_scalars(final: dict) -> dict:
    """Test scores of the weights the run's selection rule keeps (`test_f1_de`), and of those each rule keeps
    (`test_f1_de_by_source_dev`): what choosing the checkpoint on the other dev set would have given."""
    out = {"selected_step": final["selected_by"][final["selection"]]["step"], "test_s": final["test_s"]}
    for lang, scores in final["test"].items():
        for name in ("f1", "precision", "recall"):
            out[f"test_{name}_{lang}"] = scores[name]
    for selection, kept in final["selected_by"].items():
        suffix = "_by_" + selection.replace("-", "_")
        out["selected_step" + suffix] = kept["step"]
        for lang, scores in kept["test"].items():
            for name in ("f1", "precision", "recall"):
                out[f"test_{name}_{lang}{suffix}"] = scores[name]
            out[f"test_sentences_{lang}{suffix}"] = scores.get("sentences")
    return out


def _release_gpu_memory() -> None:
    """Each trial runs in its own actor, whose exit frees the GPU; this frees it too if an actor is reused."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
