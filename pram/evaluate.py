"""Evaluation: tag sentences with a model, score entities with seqeval, and the statistics of §4.6.

Scoring functions are small and pure; `predict` is the only one that runs the model.
"""

from __future__ import annotations

import math

import torch
from seqeval.metrics import classification_report

from pram.batches import collate, eval_batches
from pram.data.labels import entity_types, restrict_tags, shared_label_set


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


@torch.no_grad()
def predict(model, encoded, pad_token_id: int, batch_size: int = 64, device: str = "cpu"):
    """Word-level predicted label ids and first-piece probabilities for an encoded dataset.

    Returns (predicted ids per sentence, one list per sentence with -1 for words cut by truncation,
    probabilities (N, K) of the first pieces in dataset order, gold labels (N,) of those pieces or None).
    """
    model.eval()
    lengths = encoded["length"]
    n_words = [len(t) for t in encoded["tokens"]] if "tokens" in encoded.column_names else None
    columns = encoded.select_columns(["input_ids", "attention_mask", "labels", "word_ids"])
    predicted: list[list[int] | None] = [None] * len(encoded)
    probs_out: list[torch.Tensor | None] = [None] * len(encoded)
    labels_out: list[torch.Tensor | None] = [None] * len(encoded)
    for indices in eval_batches(lengths, batch_size):
        batch = collate([columns[i] for i in indices], pad_token_id)
        _, logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        probs = logits.float().softmax(-1).cpu()  # (B, L, K)
        for row, i in enumerate(indices):
            word_ids = batch["word_ids"][row]
            first = word_ids >= 0
            words = [-1] * (n_words[i] if n_words else int(first.sum()))
            for w, label in zip(word_ids[first].tolist(), probs[row][first].argmax(-1).tolist()):
                words[w] = label
            predicted[i] = words
            probs_out[i] = probs[row][first]
            labels_out[i] = batch["labels"][row][first]
    k = model.classifier.out_features
    probs_all = torch.cat(probs_out) if probs_out else torch.empty(0, k)
    labels_all = torch.cat(labels_out) if labels_out else torch.empty(0, dtype=torch.long)
    return predicted, probs_all, labels_all


def evaluate(model, encoded, label_names: list[str], pad_token_id: int, batch_size: int = 64,
             device: str = "cpu", gold_names: list[str] | None = None) -> dict:
    """Entity scores, prediction deviation and collapse signals of a model on one labelled split.

    gold_names: the split's own label names, where its corpus is not the model's (CoNLL has MISC, WikiAnn not):
    then only the entity types both share are scored, the others read as O on both sides.
    """
    predicted, probs, labels = predict(model, encoded, pad_token_id, batch_size, device)
    gold = [[(gold_names or label_names)[t] for t in tags] for tags in encoded["ner_tags"]]
    # A word cut off by truncation was never seen: it counts as tagged O, so its entity is a miss.
    pred = [[label_names[t] if t >= 0 else "O" for t in words] for words in predicted]
    if gold_names is not None and gold_names != label_names:
        shared = entity_types(shared_label_set(label_names, gold_names)[0])
        gold = [restrict_tags(tags, shared) for tags in gold]
        pred = [restrict_tags(tags, shared) for tags in pred]
    scores = entity_scores(gold, pred)
    labelled = labels >= 0
    scores["deviation"] = prediction_deviation(probs[labelled], labels[labelled]) if labelled.any() else math.nan
    scores.update(prediction_stats(probs))
    return scores
