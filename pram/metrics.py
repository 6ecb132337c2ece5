"""What a run measures at each evaluation and at its end: dev and test scores, the collapse guard, and the
diagnostics of q (its entropy, the prototype classifier, the prototypes' spread, the banks' agreement)."""

from __future__ import annotations

import math

import torch

from pram.config import TrainConfig
from pram.device import autocast
from pram.evaluate import evaluate
from pram.inputs import TrainData
from pram.losses import similarity_distribution
from pram.objective import Banks


def gradient_ratios(metrics: dict) -> dict:
    """The APC terms' gradient norms on the encoder as fractions of L_sup's (`grad_ratio_source`,
    `grad_ratio_target`); NaN where an evaluation has no norms."""
    sup = metrics.get("grad_norm_sup") or math.nan
    return {"grad_ratio_source": metrics.get("grad_norm_apc_source", math.nan) / sup,
            "grad_ratio_target": metrics.get("grad_norm_apc_target", math.nan) / sup}


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
