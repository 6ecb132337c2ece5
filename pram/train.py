"""The PRAM training loop (Algorithm 1): a plain function, config in, metrics and checkpoints out.

It knows nothing of Ray: a search passes `report`, called after every evaluation with the metrics, the
checkpoint written at it (None when that evaluation wrote none: `train`'s save_every) and whether it is the run's
last evaluation. Every step is a pure function of (seed, step) for its batches, dropout and down-sampling, so a
resumed run repeats exactly what an uninterrupted one would have done. What a run measures is in `metrics.py`,
which weights it keeps in `selection.py`, what it prints in `console.py`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console

from pram.averaging import WeightAverage
from pram.batches import batch_at, collate
from pram.checkpoint import load_checkpoint, read_state, restore_last, save_last
from pram.config import SELECTIONS, TrainConfig
from pram.console import TrainingDisplay, final_table
from pram.device import autocast, check_precision, pick_device
from pram.encoder import fingerprint
from pram.errors import UserError
from pram.files import write_json
from pram.inputs import TrainData, prepare_data
from pram.losses import beta_weight
from pram.metrics import bank_stats, collapsed, dev_metrics, test_metrics
from pram.model import TokenClassifier
from pram.objective import Banks, Weights, objective_parts
from pram.selection import empty_best, first_selectable_step, record_best

__all__ = ["build_model", "first_pieces", "first_selectable_step", "lr_at", "pick_device", "step_batches", "train",
           "train_step"]

Report = Callable[[dict, Path | None, bool], None]  # (metrics, checkpoint written, last evaluation)


def step_seed(seed: int, step: int) -> int:
    return seed * 1_000_003 + step


def first_pieces(model, batch: dict, device: str):
    """Forward one batch; return h, logits (fp32, whatever the autocast) and labels of the first pieces of words
    only (§4.2)."""
    h, logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
    first = (batch["word_ids"] >= 0).to(device)
    return h[first].float(), logits[first].float(), batch["labels"].to(device)[first]


def lr_at(config: TrainConfig, step: int) -> float:
    """The learning rate of training step `step` (0-based). `linear` is HuggingFace's
    get_linear_schedule_with_warmup written as a function of the step, so that a resumed run repeats it with no
    scheduler state to save; its warm-up is ceil(warmup * max_steps) steps, as the Trainer's warmup_ratio."""
    if config.lr_schedule == "constant":
        return config.lr
    warm = math.ceil(config.warmup * config.max_steps)
    if step < warm:
        return config.lr * step / max(1, warm)
    return config.lr * max(0.0, (config.max_steps - step) / max(1, config.max_steps - warm))


def build_model(config: TrainConfig, data: TrainData, device: str) -> TokenClassifier:
    torch.manual_seed(config.seed)  # the classifier's initial weights
    model = TokenClassifier.from_config(data.encoder_path, len(data.label_names), config)
    return model.to(device)


def step_batches(config: TrainConfig, data: TrainData, step: int) -> tuple[list[list[int]], list[int]]:
    """The rows training step `step` reads: a batch of each source's training rows, and of the target's (read
    only while the target term is on). A function of the seed, the step and the batch sizes alone, so that the
    trials of a search, which share their seed, train on the same batches wherever their batch sizes agree
    (common random numbers: what differs between two trials is their settings, not their luck)."""
    sizes = config.source_batch_sizes([len(data.source_train[lang]) for lang in config.sources])
    sources = [batch_at(data.source_lengths[lang], size, config.seed + i, step)
               for i, (lang, size) in enumerate(zip(config.sources, sizes))]
    return sources, batch_at(data.target_lengths, config.target_batch, config.seed + 997, step)


def train_step(model, optimizer, banks: Banks, data: TrainData, config: TrainConfig, step: int, device: str,
               measure_gradients: bool = False):
    """One step of Algorithm 1: a labelled batch from every source and, once the target term is on, a target batch.

    measure_gradients: also return the norm of each loss term's gradient on the encoder (`grad_norm_*`).
    """
    torch.manual_seed(step_seed(config.seed, step))  # dropout
    generator = torch.Generator().manual_seed(step_seed(config.seed, step))  # down-sampling
    model.train()
    sources = []
    source_indices, target_indices = step_batches(config, data, step)
    for lang, indices in zip(config.sources, source_indices):
        rows = data.source_train[lang]
        with autocast(config, device):
            sources.append(first_pieces(model, collate([rows[j] for j in indices], data.pad_token_id), device))
    beta = beta_weight(step, config.beta, config.beta_start_step, config.beta_ramp_steps)
    target = None
    if config.apc in ("both", "target") and beta > 0:  # no second pass while the target term is off
        rows = data.target_train
        with autocast(config, device):
            h_t, logits_t, _ = first_pieces(model, collate([rows[j] for j in target_indices], data.pad_token_id),
                                            device)
        target = (h_t, logits_t)
    weights = Weights(config.tau, config.lam, config.alpha, beta, config.gamma, config.apc, config.guidance,
                      config.lam_weights, config.proto_space == "centered")
    parts, terms, banks = objective_parts(sources, target, banks, weights, generator)
    loss = sum(parts.values())
    gradients = gradient_norms(model, parts) if measure_gradients else {}
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for group in optimizer.param_groups:
        group["lr"] = lr_at(config, step)
    optimizer.step()
    return banks, {**terms, "beta": beta}, gradients


def gradient_norms(model, parts: dict[str, torch.Tensor]) -> dict[str, float]:
    """L2 norm of each weighted term's gradient (`sup`, `apc_source`, `apc_target` of objective_parts) on the
    encoder's trainable weights: how much each term moves the representations. A diagnostic: it does not touch
    the gradients the step applies."""
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    norms = {}
    for name, part in parts.items():
        grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True) \
            if params and part.requires_grad else []
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        norms[f"grad_norm_{name}"] = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
    return norms


def train(config: TrainConfig, data: TrainData | None = None, report: Report | None = None,
          resume: bool = False, score_test: bool = True, best_weights: tuple[str, ...] = SELECTIONS,
          save_every: float = 0.0) -> dict:
    """Train PRAM; write checkpoints and metrics.json under config.out_dir; return the final metrics.

    resume: continue from `out_dir/checkpoints/last` if it exists (the same result as an uninterrupted run).
    score_test: score the kept weights on the test sets at the end (a search's trials do not).
    best_weights: the selection rules whose best weights are written (`checkpoints/best-<rule>`); every rule's
    best step and score are tracked all the same. A search trial writes only what its search reads back:
    scoring them on test needs every rule's weights, so score_test needs them all.
    save_every: seconds between writes of `last` (weights, optimizer and banks: the resume point); 0, at every
    evaluation. Whenever best weights are written, `last` is written beside them, so that a checkpoint's best
    weights never come from past its resume point. `report` gets `checkpoints/last` when this evaluation wrote
    it, else None, and whether no evaluation follows (the last step, or patience spent): a search hands Tune a
    checkpoint only from those (`tune.trainable.run_trial`).
    """
    if score_test and set(best_weights) != set(SELECTIONS):
        raise ValueError(f"score_test scores the weights of every selection rule: best_weights must be {SELECTIONS}")
    console = Console(quiet=config.quiet)
    out, device = Path(config.out_dir), pick_device(config.device)
    ckpt_dir = out / "checkpoints"
    if resume and (ckpt_dir / "last").exists():  # before any work: the run's own settings, or a refusal
        check_resume(read_state(ckpt_dir / "last").get("config", {}), config, ckpt_dir / "last")
    check_precision(config, device, console)
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.time()
    data = data or prepare_data(config)
    model = build_model(config, data, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    banks = Banks.empty(len(config.sources), len(data.label_names), model.proto_size, device)
    average = WeightAverage(config, model)
    state = {"step": 0, "history": [], "best": empty_best(), "stale": 0, "elapsed": 0.0}
    if resume and (ckpt_dir / "last").exists():
        state, banks = restore_last(ckpt_dir, model, optimizer, device, average)
        console.print(f"resumed from {ckpt_dir / 'last'} at step {state['step']}")
    out.mkdir(parents=True, exist_ok=True)
    run_info = {"config": config.to_dict(), "encoder_path": data.encoder_path, "label_names": data.label_names,
                "encoder": {"name": config.encoder, "fingerprint": fingerprint(data.encoder_path)}}
    write_json(out / "config.json", run_info)
    elapsed_before, running = state["elapsed"], {}
    setup_s = time.time() - started  # data, model, optimizer and any restore: what precedes the first step
    saved_at = time.time()  # of `last`, or of this attempt's first step
    with TrainingDisplay(config, console, state["step"]) as display:
        while state["step"] < config.max_steps:
            # Algorithm 1: a labelled batch per source, an unlabelled target batch, the banks, one update.
            banks, terms, gradients = train_step(model, optimizer, banks, data, config, state["step"], device,
                                                 measure_gradients=_evaluates_after(state["step"], config))
            state["step"] += 1
            average.update(model, state["step"])
            running = {k: running.get(k, 0.0) + v for k, v in terms.items()}
            display.step(terms)
            if not _evaluates_after(state["step"] - 1, config):
                continue
            n = (state["step"] - 1) % config.eval_every + 1  # steps since the last evaluation
            metrics = {"step": state["step"], "lr": lr_at(config, state["step"] - 1),
                       **{k: v / n for k, v in running.items()}, **gradients}
            with average.applied(model):  # the averaged weights are what is scored and kept
                scoring = time.perf_counter()
                metrics.update(**dev_metrics(model, data, config, device, banks), **bank_stats(banks, config.sources))
                metrics["eval_s"] = time.perf_counter() - scoring  # the tagging of the dev sets, on their own
                metrics["collapse"] = collapsed(metrics, config)
                running, state["elapsed"] = {}, elapsed_before + time.time() - started
                metrics["elapsed_s"], metrics["setup_s"] = state["elapsed"], setup_s
                improved, wrote_best = record_best(state, metrics, config, model, ckpt_dir, run_info,
                                                   write=best_weights)
            state["history"].append(metrics)
            saved = save_every <= 0 or wrote_best or time.time() - saved_at >= save_every
            if saved:
                save_last(ckpt_dir, model, optimizer, banks, state, run_info, average)
                saved_at = time.time()
            write_json(out / "metrics.json", {"history": state["history"]})
            display.evaluation(metrics, improved, data.source_entity_share)
            patience_spent = config.patience is not None and state["stale"] >= config.patience
            if report is not None:
                report(metrics, ckpt_dir / "last" if saved else None,
                       patience_spent or state["step"] >= config.max_steps)
            if patience_spent:
                display.early_stop()
                break
    return _finish(config, data, model, ckpt_dir, state, device, console, out, score_test)


RESUMABLE = frozenset({"max_steps", "eval_every", "patience", "threads", "out_dir", "quiet", "data_dir", "cache_dir",
                       "device", "eval_batch_size"})
"""Settings a resumed run may change: the step budget, the evaluation cadence, where it runs and where it
writes. Any other change would make one run of two trainings, and its records would claim the new value."""


def check_resume(saved: dict, config: TrainConfig, checkpoint: Path) -> None:
    """Refuse, in one line naming each, the settings that differ from those the checkpoint was trained with."""
    now = config.to_dict()
    changed = [name for name, value in now.items() if name not in RESUMABLE and name in saved
               and json_value(saved[name]) != json_value(value)]
    if changed:
        what = ", ".join(f"--{n.replace('_', '-')} {json_value(now[n])} (trained with {json_value(saved[n])})"
                         for n in changed)
        raise UserError(f"{checkpoint}: --resume with other settings than the run's: {what}; resume with the run's "
                        "settings, or start a new run with another --out")


def json_value(value):
    """A setting as its JSON round trip gives it back (tuples as lists), for comparing."""
    return list(value) if isinstance(value, tuple) else value


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """`pram train`'s --out: --resume needs a checkpoint there; a folder that holds a run needs --resume or
    --overwrite (which deletes its checkpoints and records first)."""
    last = out / "checkpoints" / "last"
    if resume and overwrite:
        raise UserError("--resume and --overwrite: choose one (continue the run, or start it anew)")
    if resume and not last.is_dir():
        raise UserError(f"{last}: no checkpoint to resume from: drop --resume to start a new run there")
    held = [name for name in ("checkpoints", "metrics.json", "config.json") if (out / name).exists()]
    if held and not resume and not overwrite:
        raise UserError(f"{out}: already holds a run ({', '.join(held)}): pass --resume to continue it, "
                        "--overwrite to start it anew, or another --out")
    if overwrite:
        import shutil

        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        for name in ("metrics.json", "config.json"):
            (out / name).unlink(missing_ok=True)


def _evaluates_after(step: int, config: TrainConfig) -> bool:
    """Whether the run evaluates once training step `step` (0-based) is done: every eval_every, and at the end."""
    return (step + 1) % config.eval_every == 0 or step + 1 == config.max_steps


def _finish(config, data, model, ckpt_dir, state, device, console, out, score_test: bool = True) -> dict:
    """Test scores of the weights each selection rule would keep; the configured one is `test`.

    Two rules that kept the same step share one scoring. score_test False (a search trial) skips the test sets
    and reads no weights: each rule's step and dev score are in the run's state.
    """
    selected, began = {}, time.perf_counter()
    for selection in SELECTIONS:
        if not score_test:
            kept = state["best"][selection]
            selected[selection] = {"step": kept["step"], "dev_score": kept["score"], "test": {}}
            continue
        weights, info, _ = load_checkpoint(ckpt_dir / f"best-{selection}")
        same = next((kept for kept in selected.values() if kept["step"] == info["step"]), None)
        if same is not None:
            scores = same["test"]
        else:
            model.load_state_dict(weights, strict=False)
            scores = test_metrics(model, data, config, device)
        selected[selection] = {"step": info["step"], "dev_score": info["score"], "test": scores}
    final = {"config": config.to_dict(), "steps": state["step"], "elapsed_s": state["elapsed"],
             "test_s": time.perf_counter() - began if score_test else 0.0,
             "selection": config.selection, "test": selected[config.selection]["test"],
             "selected_by": selected, "history": state["history"],
             "collapsed": bool(state["history"] and state["history"][-1]["collapse"])}
    write_json(out / "metrics.json", final)
    console.print(final_table(final, config))
    console.print(f"metrics: {out / 'metrics.json'}   checkpoint: {ckpt_dir / ('best-' + config.selection)}")
    return final
