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


def alignment(banks: Banks, config: TrainConfig, means: torch.Tensor, counts: torch.Tensor,
              label_names: list[str]) -> dict:
    """How far the target's classes line up with the source prototypes (the paper's Figure 4 as numbers).

    For each entity tag k (every tag but O: B-PER, I-PER, ..., each with its prototype) with target dev tokens
    and a prototype: cos(C_k, m_k) between the source prototype C_k and the mean m_k of the target dev tokens
    whose gold label is k, in the space q uses (the bank's center subtracted first with proto_space `centered`);
    with several banks (multi-source), the mean over the banks that know k. `align_cos_target_<label>` per tag
    and `align_cos_target`, their mean.
    The gold labels of target dev serve this diagnostic only: nothing trains on it or selects by it.
    """
    centered = config.proto_space == "centered"
    out = {}
    for k, name in enumerate(label_names):
        if name == "O" or counts[k] == 0:
            continue
        cosines = []
        for i in range(banks.prototypes.shape[0]):
            if not banks.known[i, k]:
                continue
            prototype, mean = banks.prototypes[i, k].cpu(), means[k]
            if centered:
                center = banks.center[i].cpu()
                prototype, mean = prototype - center, mean - center
            cosines.append(float(torch.nn.functional.cosine_similarity(prototype, mean, dim=0)))
        if cosines:
            out[f"align_cos_target_{name}"] = sum(cosines) / len(cosines)
    out["align_cos_target"] = sum(out.values()) / len(out) if out else math.nan
    return out


def dev_metrics(model, data: TrainData, config: TrainConfig, device: str, banks: Banks | None = None) -> dict:
    """Dev scores of every source and the target, the collapse guard (target predictions only) and, given the
    banks, the diagnostics of q: its entropy on source and target tokens, the target-dev F1 of the prototype
    classifier argmax q beside the head's, the mean cosine between prototypes, and on target dev the alignment
    of its classes with the source prototypes (`alignment`), the accuracy of argmax q on its tokens
    (`proto_acc_target`) and JS(p, q) (`js_pq_target`)."""
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
                metrics.update(proto_f1_target=scores["proto_f1"], q_entropy_target=scores["q_entropy"],
                               proto_acc_target=scores["proto_acc"], js_pq_target=scores["js_pq"],
                               **alignment(banks, config, scores["class_means"], scores["class_counts"],
                                           data.label_names))
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
