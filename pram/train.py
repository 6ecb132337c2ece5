"""The PRAM training loop (Algorithm 1): a plain function, config in, metrics and checkpoints out.

It knows nothing of Ray: a search passes `report`, called after every evaluation with the metrics and the
folder of the latest checkpoint. Every step is a pure function of (seed, step) for its batches, dropout and
down-sampling, so a resumed run repeats exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pram.batches import batch_at, collate
from pram.checkpoint import load_checkpoint, optimizer_tensors, restore_optimizer, save_checkpoint
from pram.config import SELECTIONS, TrainConfig
from pram.errors import UserError
from pram.evaluate import evaluate
from pram.files import write_json
from pram.results import OBJECTIVE_METRICS
from pram.inputs import TrainData, prepare_data
from pram.losses import beta_weight, similarity_distribution
from pram.model import TokenClassifier
from pram.objective import Banks, Weights, objective_parts
from pram.report import eval_table, final_table

Report = Callable[[dict, Path], None]


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def autocast(config: TrainConfig, device: str):
    """bf16 autocast around forward passes with --precision bf16 (matrix products in bf16, softmax and norms in
    fp32, as torch.autocast decides); a no-op with fp32. Parameters and gradients stay fp32, so no loss scaling."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


def step_seed(seed: int, step: int) -> int:
    return seed * 1_000_003 + step


def first_pieces(model, batch: dict, device: str):
    """Forward one batch; return h, logits (fp32, whatever the autocast) and labels of the first pieces of words
    only (§4.2)."""
    h, logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
    first = (batch["word_ids"] >= 0).to(device)
    return h[first].float(), logits[first].float(), batch["labels"].to(device)[first]


def build_model(config: TrainConfig, data: TrainData, device: str) -> TokenClassifier:
    torch.manual_seed(config.seed)  # the classifier's initial weights
    model = TokenClassifier.from_config(data.encoder_path, len(data.label_names), config)
    return model.to(device)


def train_step(model, optimizer, banks: Banks, data: TrainData, config: TrainConfig, step: int, device: str,
               measure_gradients: bool = False):
    """One step of Algorithm 1: a labelled batch from every source and, once the target term is on, a target batch.

    measure_gradients: also return the norm of each loss term's gradient on the encoder (`grad_norm_*`).
    """
    torch.manual_seed(step_seed(config.seed, step))  # dropout
    generator = torch.Generator().manual_seed(step_seed(config.seed, step))  # down-sampling
    model.train()
    sources = []
    sizes = config.source_batch_sizes([len(data.source_train[lang]) for lang in config.sources])
    for i, (lang, size) in enumerate(zip(config.sources, sizes)):
        rows = data.source_train[lang]
        indices = batch_at(data.source_lengths[lang], size, config.seed + i, step)
        with autocast(config, device):
            sources.append(first_pieces(model, collate([rows[j] for j in indices], data.pad_token_id), device))
    beta = beta_weight(step, config.beta, config.beta_start_step, config.beta_ramp_steps)
    target = None
    if config.apc in ("both", "target") and beta > 0:  # no second pass while the target term is off
        rows = data.target_train
        indices = batch_at(data.target_lengths, config.target_batch, config.seed + 997, step)
        with autocast(config, device):
            h_t, logits_t, _ = first_pieces(model, collate([rows[j] for j in indices], data.pad_token_id), device)
        target = (h_t, logits_t)
    weights = Weights(config.tau, config.lam, config.alpha, beta, config.gamma, config.apc, config.guidance,
                      config.lam_weights, config.proto_space == "centered")
    parts, terms, banks = objective_parts(sources, target, banks, weights, generator)
    loss = sum(parts.values())
    gradients = gradient_norms(model, parts) if measure_gradients else {}
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
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


def bank_stats(banks: Banks, sources: tuple[str, ...]) -> dict:
    """How often each bank was updated, and the mean cosine distance between two banks' shared prototypes."""
    stats = {f"bank_updates_{lang}": int(banks.updates[i]) for i, lang in enumerate(sources)}
    normed = torch.nn.functional.normalize(banks.prototypes, dim=-1)
    for a in range(len(sources)):
        for b in range(a + 1, len(sources)):
            both = banks.known[a] & banks.known[b]
            cos = (normed[a][both] * normed[b][both]).sum(-1)
            stats[f"bank_distance_{sources[a]}_{sources[b]}"] = float((1 - cos).mean()) if both.any() else math.nan
    return stats


def similarity_fn(banks: Banks, config: TrainConfig, bank: int | None = None):
    """q (Eq. 6-7) of first-piece representations under the current banks: bank i's, or (bank None, for target
    tokens in multi-source mode) the mean of every bank's q. A bank that knows no class yet gives uniform q."""
    centered = config.proto_space == "centered"
    banks_used = range(banks.prototypes.shape[0]) if bank is None else [bank]

    def q(z: torch.Tensor) -> torch.Tensor:
        qs = []
        for i in banks_used:
            known = banks.known[i] if banks.known[i].any() else torch.ones_like(banks.known[i])
            qs.append(similarity_distribution(z, banks.prototypes[i], config.tau, known, banks.centers(i, centered)))
        return torch.stack(qs).mean(dim=0)  # (N, K)
    return q


def prototype_cosine(banks: Banks, config: TrainConfig) -> float:
    """Mean pairwise cosine of the known prototypes of each bank, in the space q uses, averaged over banks:
    close to 1 on an anisotropic encoder, where q cannot tell the classes apart."""
    values = []
    for i in range(banks.prototypes.shape[0]):
        c = banks.prototypes[i][banks.known[i]]  # (K_known, H)
        if config.proto_space == "centered":
            c = c - banks.center[i]
        if len(c) < 2:
            continue
        c = torch.nn.functional.normalize(c, dim=-1)
        cos = c @ c.T  # (K, K)
        off = ~torch.eye(len(c), dtype=torch.bool, device=c.device)
        values.append(float(cos[off].mean()))
    return sum(values) / len(values) if values else math.nan


def dev_metrics(model, data: TrainData, config: TrainConfig, device: str, banks: Banks | None = None) -> dict:
    """Dev scores of every source and the target, the collapse guard (target predictions only) and, given the
    banks, the diagnostics of q: its entropy on source and target tokens, the target-dev F1 of the prototype
    classifier argmax q beside the head's, and the mean cosine between prototypes."""
    metrics = {}
    q_entropy_source = []
    for lang, split in data.dev.items():
        similarity = None
        if banks is not None:
            similarity = similarity_fn(banks, config, config.sources.index(lang) if lang in config.sources else None)
        with autocast(config, device):
            scores = evaluate(model, split, data.label_names, data.pad_token_id, config.eval_batch_size, device,
                              similarity=similarity)
        metrics[f"dev_f1_{lang}"] = scores["f1"]
        if lang == config.target:
            metrics.update(target_dev_f1=scores["f1"], target_dev_precision=scores["precision"],
                           target_dev_recall=scores["recall"], target_deviation=scores["deviation"],
                           target_entity_share=scores["entity_share"], target_entropy=scores["entropy"])
            if banks is not None:
                metrics.update(proto_f1_target=scores["proto_f1"], q_entropy_target=scores["q_entropy"])
        elif banks is not None:
            q_entropy_source.append(scores["q_entropy"])
            metrics[f"proto_f1_{lang}"] = scores["proto_f1"]
    metrics["source_dev_f1"] = sum(metrics[f"dev_f1_{lang}"] for lang in config.sources) / len(config.sources)
    metrics["source_entity_share"] = data.source_entity_share
    if banks is not None:
        metrics["q_entropy_source"] = sum(q_entropy_source) / len(q_entropy_source)
        metrics["proto_cos_mean"] = prototype_cosine(banks, config)
    return metrics


def collapsed(metrics: dict, config: TrainConfig) -> bool:
    """The collapse guard: with the target term on, target entity predictions have all but vanished.

    It reads only what the model predicts on target text, never the target labels. Before the target term is
    on, a model that tags nothing yet is just untrained, not collapsed.
    """
    share = metrics["target_entity_share"] < config.collapse_ratio * metrics["source_entity_share"]
    return bool(share and metrics["beta"] > 0 and config.apc in ("both", "target"))


def test_metrics(model, data: TrainData, config: TrainConfig, device: str) -> dict:
    out = {}
    for lang, split in data.test.items():
        with autocast(config, device):
            scores = evaluate(model, split, data.label_names, data.pad_token_id, config.eval_batch_size, device)
        out[lang] = {**{k: scores[k] for k in ("precision", "recall", "f1", "per_type", "deviation")},
                     "sentences": len(split)}
    return out


def _selection_score(metrics: dict, selection: str) -> float:
    return metrics[OBJECTIVE_METRICS[selection]]


def first_selectable_step(config: TrainConfig) -> int:
    """Selection rule (beyond the paper): a checkpoint may be chosen only once every enabled loss term has been
    on. With the target term held back until `beta_start_step`, an evaluation at step s (steps 0..s-1 trained)
    is selectable when s > beta_start_step; before that it scores a model that never saw the target term, which
    is not a PRAM result. Without a target term (apc none or source, beta 0) every evaluation is selectable."""
    target_on = config.apc in ("both", "target") and config.beta > 0 and config.beta_start_step < config.max_steps
    return config.beta_start_step + 1 if target_on else 0


def train(config: TrainConfig, data: TrainData | None = None, report: Report | None = None,
          resume: bool = False, score_test: bool = True) -> dict:
    """Train PRAM; write checkpoints and metrics.json under config.out_dir; return the final metrics.

    resume: continue from `out_dir/checkpoints/last` if it exists (the same result as an uninterrupted run).
    score_test: score the kept weights on the test sets at the end (a search's trials do not).
    """
    console = Console(quiet=config.quiet)
    out = Path(config.out_dir)
    ckpt_dir = out / "checkpoints"
    device = pick_device(config.device)
    if config.precision == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported(False):
        raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16 arithmetic (it needs "
                        "an A100, H100, L4, A10G or newer); use --precision fp32")
    if config.precision == "bf16" and device == "cpu":
        console.print("[yellow]--precision bf16 on a CPU: without native bf16 units (AMX, AVX-512 BF16) it is "
                      "far slower than fp32 (14x on an AVX2 CPU, results/BENCHMARKS.md)[/yellow]")
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.time()
    data = data or prepare_data(config)
    model = build_model(config, data, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    banks = Banks.empty(len(config.sources), len(data.label_names), model.proto_size, device)
    state = {"step": 0, "history": [], "best": {s: {"score": -1.0, "step": None} for s in SELECTIONS},
             "stale": 0, "elapsed": 0.0}
    if resume and (ckpt_dir / "last").exists():
        weights, state, tensors = load_checkpoint(ckpt_dir / "last")
        model.load_state_dict(weights, strict=False)
        restore_optimizer(optimizer, tensors, state.pop("optimizer"))
        banks = Banks.from_tensors(tensors, device)
        console.print(f"resumed from {ckpt_dir / 'last'} at step {state['step']}")
    out.mkdir(parents=True, exist_ok=True)
    run_info = {"config": config.to_dict(), "encoder_path": data.encoder_path, "label_names": data.label_names}
    write_json(out / "config.json", run_info)
    if config.selection == "target-dev":
        console.print("[yellow]model selection on target dev: this uses target labels (the paper's protocol); "
                      "--selection source-dev is strictly zero-resource[/yellow]")

    running: dict[str, float] = {}
    elapsed_before = state["elapsed"]
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=config.quiet) as bar:
        task = bar.add_task("train", total=config.max_steps, completed=state["step"], info="")
        while state["step"] < config.max_steps:
            evaluates_next = (state["step"] + 1) % config.eval_every == 0 or state["step"] + 1 == config.max_steps
            banks, terms, gradients = train_step(model, optimizer, banks, data, config, state["step"], device,
                                                 measure_gradients=evaluates_next)
            state["step"] += 1
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + v
            bar.update(task, advance=1, info=f"loss {terms['loss']:.3f}")
            if state["step"] % config.eval_every and state["step"] < config.max_steps:
                continue
            n = config.eval_every if state["step"] % config.eval_every == 0 else state["step"] % config.eval_every
            metrics = {"step": state["step"], **{k: v / n for k, v in running.items()}, **gradients}
            running = {}
            metrics.update(dev_metrics(model, data, config, device, banks))
            metrics.update(bank_stats(banks, config.sources))
            metrics["collapse"] = collapsed(metrics, config)
            state["elapsed"] = elapsed_before + time.time() - started
            metrics["elapsed_s"] = state["elapsed"]
            improved = _record(state, metrics, config, model, ckpt_dir, run_info)
            state["history"].append(metrics)
            _save_last(ckpt_dir, model, optimizer, banks, state, run_info)
            write_json(out / "metrics.json", {"history": state["history"]})
            bar.console.print(eval_table(metrics, config, improved))
            if metrics["collapse"]:
                bar.console.print(f"[red]collapse: the model tags {100 * metrics['target_entity_share']:.1f}% "
                                  f"of {config.target} tokens as entities, against "
                                  f"{100 * data.source_entity_share:.1f}% of source tokens[/red]")
            if report is not None:
                report(metrics, ckpt_dir / "last")
            if config.patience is not None and state["stale"] >= config.patience:
                bar.console.print(f"early stop: no better {config.selection} F1 in {config.patience} evaluations")
                break
    return _finish(config, data, model, ckpt_dir, state, device, console, out, score_test)


def _record(state: dict, metrics: dict, config: TrainConfig, model, ckpt_dir: Path, run_info: dict) -> bool:
    """Keep the best weights by each selection metric; return whether the configured one improved.

    Only evaluations from `first_selectable_step` on compete; the ones before it neither win nor count
    toward patience."""
    metrics["selectable"] = metrics["step"] >= first_selectable_step(config)
    if not metrics["selectable"]:
        return False
    improved = False
    for selection in SELECTIONS:
        score = _selection_score(metrics, selection)
        best = state["best"][selection]
        if score > best["score"]:
            state["best"][selection] = {"score": score, "step": metrics["step"]}
            save_checkpoint(ckpt_dir / f"best-{selection}", model.trainable_state_dict(),
                            {**run_info, "step": metrics["step"], "selection": selection, "score": score})
            improved |= selection == config.selection
    state["stale"] = 0 if improved else state["stale"] + 1
    return improved


def _save_last(ckpt_dir: Path, model, optimizer, banks: Banks, state: dict, run_info: dict) -> None:
    tensors, optim_meta = optimizer_tensors(optimizer)
    tensors.update(banks.tensors())
    save_checkpoint(ckpt_dir / "last", model.trainable_state_dict(),
                    {**run_info, **state, "optimizer": optim_meta}, tensors)


def _finish(config, data, model, ckpt_dir, state, device, console, out, score_test: bool = True) -> dict:
    """Test scores of the weights each selection rule would keep; the configured one is `test`.

    Two rules that kept the same step share one scoring. score_test False (a search trial) skips the test sets.
    """
    selected = {}
    for selection in SELECTIONS:
        weights, info, _ = load_checkpoint(ckpt_dir / f"best-{selection}")
        same = next((kept for kept in selected.values() if kept["step"] == info["step"]), None)
        if same is not None or not score_test:
            scores = same["test"] if same is not None else {}
        else:
            model.load_state_dict(weights, strict=False)
            scores = test_metrics(model, data, config, device)
        selected[selection] = {"step": info["step"], "dev_score": info["score"], "test": scores}
    final = {"config": config.to_dict(), "steps": state["step"], "elapsed_s": state["elapsed"],
             "selection": config.selection, "test": selected[config.selection]["test"],
             "selected_by": selected, "history": state["history"],
             "collapsed": bool(state["history"] and state["history"][-1]["collapse"])}
    write_json(out / "metrics.json", final)
    console.print(final_table(final, config))
    console.print(f"metrics: {out / 'metrics.json'}   checkpoint: {ckpt_dir / ('best-' + config.selection)}")
    return final
