"""Evaluation: tag sentences with a model, score entities with seqeval, and the statistics of §4.6.

Scoring functions are small and pure; `predict` is the only one that runs the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from seqeval.metrics import classification_report

from pram.batches import collate, eval_batches
from pram.data.labels import entity_types, restrict_tags, shared_label_set
from pram.losses import js_divergence


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Entity-level micro precision, recall and F1 (in %, conlleval's rules) and F1 per entity type."""
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    per_type = {k: round(100 * v["f1-score"], 2) for k, v in report.items() if not k.endswith(" avg")}
    return {
        "precision": 100 * micro["precision"],
        "recall": 100 * micro["recall"],
        "f1": 100 * micro["f1-score"],
        "per_type": per_type,
    }


def prediction_deviation(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over tokens of the squared error between p and the one-hot label (§4.6). probs (N, K), labels (N,)."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[-1]).to(probs.dtype)
    return float(((onehot - probs) ** 2).sum(dim=-1).mean())


def prediction_stats(probs: torch.Tensor, outside: int = 0) -> dict:
    """Share of tokens predicted as entities and mean entropy of the predictions (nats): the collapse signals."""
    if probs.numel() == 0:
        return {"entity_share": 0.0, "entropy": 0.0}
    entropy = -torch.special.xlogy(probs, probs).sum(dim=-1).mean()
    return {"entity_share": float((probs.argmax(-1) != outside).float().mean()), "entropy": float(entropy)}


@dataclass
class Predictions:
    """What `predict` returns for an encoded dataset (first pieces in dataset order)."""

    words: list[list[int]]
    """Predicted label id per word of each sentence; -1 for words cut by truncation."""
    probs: torch.Tensor
    """p of the first pieces (N, K)."""
    labels: torch.Tensor
    """Gold label ids of those pieces (N,), -100 where the split has none."""
    proto_words: list[list[int]] | None = None
    """argmax q per word (the prototype classifier), when a similarity function was given."""
    q: torch.Tensor | None = None
    """q of the first pieces (N, K), when a similarity function was given."""
    class_sums: torch.Tensor | None = None
    """Sum of the prototype representations z of the first pieces of each gold class (K, D), and their number
    (class_counts, (K,)), when a similarity function was given: the class means the alignment diagnostic reads."""
    class_counts: torch.Tensor | None = None


Similarity = Callable[[torch.Tensor], torch.Tensor]
"""A function from first-piece prototype representations (N, D) to q (N, K) (see metrics.similarity_fn)."""


@torch.inference_mode()
def predict(model, encoded, pad_token_id: int, batch_size: int = 64, device: str = "cpu",
            similarity: Similarity | None = None) -> Predictions:
    """Word-level predictions and first-piece probabilities of a model on an encoded dataset.

    With `similarity`, the prototype classifier (argmax q, Eq. 6-7) tags the same words from the same forward
    pass: the diagnostics of training read it.
    """
    model.eval()
    lengths = encoded["length"]
    n_words = [len(t) for t in encoded["tokens"]] if "tokens" in encoded.column_names else None
    columns = encoded.select_columns(["input_ids", "attention_mask", "labels", "word_ids"])
    n = len(encoded)
    predicted: list[list[int] | None] = [None] * n
    proto: list[list[int] | None] = [None] * n
    probs_out: list[torch.Tensor | None] = [None] * n
    q_out: list[torch.Tensor | None] = [None] * n
    labels_out: list[torch.Tensor | None] = [None] * n
    k = model.classifier.out_features
    sums, counts = None, torch.zeros(k)
    for indices in eval_batches(lengths, batch_size):
        batch = collate([columns[i] for i in indices], pad_token_id)
        z, logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        probs = logits.float().softmax(-1).cpu()  # (B, L, K)
        for row, i in enumerate(indices):
            word_ids = batch["word_ids"][row]
            first = word_ids >= 0
            size = n_words[i] if n_words else int(first.sum())
            predicted[i] = _words(word_ids[first].tolist(), probs[row][first].argmax(-1).tolist(), size)
            probs_out[i] = probs[row][first]
            labels_out[i] = batch["labels"][row][first]
            if similarity is not None:
                z_first = z[row][first.to(z.device)].float()
                q = similarity(z_first).cpu()  # (n_first, K)
                q_out[i] = q
                proto[i] = _words(word_ids[first].tolist(), q.argmax(-1).tolist(), size)
                keep = labels_out[i] >= 0
                onehot = torch.nn.functional.one_hot(labels_out[i][keep], k).float()  # (n_labelled, K)
                part = onehot.T @ z_first.cpu()[keep]  # (K, D)
                sums = part if sums is None else sums + part
                counts += onehot.sum(0)
    probs_all = torch.cat(probs_out) if probs_out else torch.empty(0, k)
    labels_all = torch.cat(labels_out) if labels_out else torch.empty(0, dtype=torch.long)
    if similarity is None:
        return Predictions(predicted, probs_all, labels_all)
    q_all = torch.cat(q_out) if q_out else torch.empty(0, k)
    return Predictions(predicted, probs_all, labels_all, proto, q_all, sums, counts)


def _words(word_ids: list[int], labels: list[int], size: int) -> list[int]:
    words = [-1] * size
    for w, label in zip(word_ids, labels):
        words[w] = label
    return words


def evaluate(model, encoded, label_names: list[str], pad_token_id: int, batch_size: int = 64,
             device: str = "cpu", gold_names: list[str] | None = None,
             similarity: Similarity | None = None) -> dict:
    """Entity scores, prediction deviation and collapse signals of a model on one labelled split.

    gold_names: the split's own label names, where its corpus is not the model's (CoNLL has MISC, WikiAnn not):
    then only the entity types both share are scored, the others read as O on both sides.
    similarity: also score the prototype classifier argmax q (`proto_f1`, and `proto_acc`, its accuracy on the
    labelled first pieces), the mean entropy of q (`q_entropy`, nats) and the mean JS(p, q) (`js_pq`, nats) on
    the same tokens, and return the mean prototype representation of each gold class (`class_means` (K, D),
    zero where a class has no token, with `class_counts` (K,)): diagnostics, never a training signal.
    """
    out = predict(model, encoded, pad_token_id, batch_size, device, similarity)
    gold = [[(gold_names or label_names)[t] for t in tags] for tags in encoded["ner_tags"]]
    scores = _entity_scores_of(gold, out.words, label_names, gold_names)
    labelled = out.labels >= 0
    scores["deviation"] = prediction_deviation(out.probs[labelled], out.labels[labelled]) if labelled.any() \
        else math.nan
    scores.update(prediction_stats(out.probs))
    if similarity is not None:
        scores["proto_f1"] = _entity_scores_of(gold, out.proto_words, label_names, gold_names)["f1"]
        scores["q_entropy"] = prediction_stats(out.q)["entropy"]
        scores["proto_acc"] = float((out.q[labelled].argmax(-1) == out.labels[labelled]).float().mean()) \
            if labelled.any() else math.nan
        scores["js_pq"] = float(js_divergence(out.probs, out.q).mean()) if len(out.q) else math.nan
        if out.class_sums is not None:
            scores["class_means"] = out.class_sums / out.class_counts.clamp(min=1).unsqueeze(-1)
            scores["class_counts"] = out.class_counts
    return scores


def _entity_scores_of(gold: list[list[str]], words: list[list[int]], label_names: list[str],
                      gold_names: list[str] | None) -> dict:
    # A word cut off by truncation was never seen: it counts as tagged O, so its entity is a miss.
    pred = [[label_names[t] if t >= 0 else "O" for t in tags] for tags in words]
    if gold_names is not None and gold_names != label_names:
        shared = entity_types(shared_label_set(label_names, gold_names)[0])
        gold = [restrict_tags(tags, shared) for tags in gold]
        pred = [restrict_tags(tags, shared) for tags in pred]
    return entity_scores(gold, pred)
