"""Tokenised batches: word-aligned labels, dynamic padding, and length-grouped batch orders.

A sentence's label goes on the first meaningful piece of each word and -100 everywhere else
(transformers' `run_ner.py` convention); `word_ids` says which word a labelled piece starts, so that
predictions map back to words.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Sequence

import torch

IGNORE = -100
"""Label of pieces that carry none (not a word's first meaningful piece, specials, padding)."""
NO_WORD = -1
"""`word_ids` of pieces that start no word."""
LONE_SPACE = "\u2581"
"""XLM-R SentencePiece often emits this piece alone before a word (`▁`, `北`); it carries no meaning."""
ENCODING_VERSION = 1
"""Part of an encoded dataset's fingerprint: bump it when `align` changes, so no stale cache is read back."""
MEGA_BATCHES = 50
"""Batches per length-sorted group: more means less padding but batches less random in length."""


def _lone_space_id(tokenizer) -> int | None:
    """The id of a lone `▁` piece, or None where the vocabulary has none (word-piece tokenizers)."""
    token_id = tokenizer.convert_tokens_to_ids(LONE_SPACE)
    return None if token_id is None or token_id == tokenizer.unk_token_id else token_id


def align(input_ids: list[int], word_ids: list[int | None], labels: list[int] | None, max_length: int,
          lone_space_id: int | None) -> dict:
    """Cut a sentence's pieces at a word boundary and label each word's first meaningful piece.

    `input_ids` and `word_ids` are the untruncated encoding of one sentence with its special tokens (word
    id None). Words that do not fit whole in `max_length` pieces are dropped, so a label never moves to
    another word; only a first word longer than the whole budget is cut inside.
    """
    head = next((i for i, w in enumerate(word_ids) if w is not None), len(word_ids))  # leading specials
    tail = len(word_ids) - next((i for i, w in enumerate(reversed(word_ids)) if w is not None), 0)
    if len(input_ids) > max_length:
        cut = max(head, max_length - (len(input_ids) - tail))  # end of the content that fits
        start = cut
        while start > head and word_ids[start - 1] == word_ids[start]:  # back to the start of the cut word
            start -= 1
        cut = start if start > head else cut
        input_ids = input_ids[:cut] + input_ids[tail:]
        word_ids = word_ids[:cut] + word_ids[tail:]

    out_labels = [IGNORE] * len(input_ids)
    out_words = [NO_WORD] * len(input_ids)
    seen: set[int] = set()
    for i, w in enumerate(word_ids):
        if w is None or w in seen:
            continue
        # A lone `▁` defers the label to the next piece of the same word; a word that is only `▁` keeps it.
        if input_ids[i] == lone_space_id and i + 1 < len(word_ids) and word_ids[i + 1] == w:
            continue
        seen.add(w)
        out_words[i] = w
        if labels is not None:
            out_labels[i] = labels[w]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": out_labels,
            "word_ids": out_words, "length": len(input_ids), "n_words_kept": len(seen)}


def _encode_batch(tokenizer, sentences: list[list[str]], labels: list[list[int]] | None,
                  max_length: int) -> dict:
    """Columns of `align` for a batch of sentences (one fast-tokenizer call for all of them)."""
    if labels is not None:
        for tokens, tags in zip(sentences, labels, strict=True):
            if len(tokens) != len(tags):
                raise ValueError(f"{len(tokens)} tokens but {len(tags)} labels: {tokens[:5]}")
    # Untruncated on purpose: align cuts at a word boundary. verbose=False: no warning past 512 pieces.
    encoded = tokenizer(sentences, is_split_into_words=True, truncation=False, verbose=False)
    lone_space_id = _lone_space_id(tokenizer)
    columns: dict[str, list] = {k: [] for k in ("input_ids", "attention_mask", "labels", "word_ids",
                                                "length")}
    for i, input_ids in enumerate(encoded["input_ids"]):
        row = align(input_ids, encoded.word_ids(i), labels[i] if labels is not None else None, max_length,
                    lone_space_id)
        for key, column in columns.items():
            column.append(row[key])
    return columns


def encode_sentence(tokenizer, tokens: list[str], labels: list[int] | None, max_length: int = 128) -> dict:
    """One pre-split sentence: input_ids, attention_mask, labels (-100 but on each word's first meaningful
    piece; all -100 without labels), word_ids (-1 but there), length and n_words_kept.

    `tokenizer` must be a fast one (word alignment uses its `word_ids()`).
    """
    encoded = tokenizer(tokens, is_split_into_words=True, truncation=False, verbose=False)
    return align(encoded["input_ids"], encoded.word_ids(), labels, max_length, _lone_space_id(tokenizer))


def _map_batch(batch: dict, tokenizer, max_length: int, labelled: bool) -> dict:
    return _encode_batch(tokenizer, batch["tokens"], batch["ner_tags"] if labelled else None, max_length)


def _fingerprint(dataset, tokenizer, max_length: int, labelled: bool) -> str:
    """What the encoding depends on. (`datasets` would pickle the tokenizer to find out: 1 s for XLM-R.)"""
    key = json.dumps([ENCODING_VERSION, dataset._fingerprint, max_length, labelled])
    return hashlib.sha256((key + tokenizer.backend_tokenizer.to_str()).encode()).hexdigest()[:32]


def encode_dataset(dataset, tokenizer, max_length: int, labelled: bool):
    """Add input_ids, attention_mask, labels, word_ids and length to a `datasets.Dataset` of tokens
    (and ner_tags).

    `labelled=False` gives all -100 labels (unlabelled target data, or text to tag). For a dataset loaded from
    disk, `datasets` keeps the result in its cache and a second call with the same inputs reads it back.
    """
    return dataset.map(_map_batch, batched=True, batch_size=1000, desc="tokenising",
                       fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "labelled": labelled},
                       new_fingerprint=_fingerprint(dataset, tokenizer, max_length, labelled))


def collate(features: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad encoded sentences to the longest: (B, L) tensors input_ids, attention_mask, labels, word_ids."""
    pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE, "word_ids": NO_WORD}
    width = max(len(f["input_ids"]) for f in features)
    batch = {}
    for key, pad in pad_values.items():
        if key not in features[0]:
            continue
        column = torch.full((len(features), width), pad, dtype=torch.long)  # (B, L)
        for row, f in enumerate(features):
            column[row, : len(f[key])] = torch.as_tensor(f[key], dtype=torch.long)
        batch[key] = column
    return batch


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                           mega_batches: int = MEGA_BATCHES) -> list[list[int]]:
    """One epoch of batches of similar lengths, in random order; the same for the same (seed, epoch).

    Shuffle, cut into mega-batches of `mega_batches * batch_size`, sort each by length, cut it into
    batches and shuffle the batches: little padding, yet every batch is a random draw. Every index
    appears exactly once; only the last batch may be short.
    """
    return [list(b) for b in _grouped(tuple(int(n) for n in lengths), batch_size, seed, epoch, mega_batches)]


@functools.lru_cache(maxsize=8)  # batch_at asks for the same epoch at every step
def _grouped(lengths: tuple[int, ...], batch_size: int, seed: int, epoch: int,
             mega_batches: int) -> tuple[tuple[int, ...], ...]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    mega = mega_batches * batch_size
    batches = []
    for start in range(0, len(order), mega):
        group = sorted(order[start: start + mega], key=lambda i: lengths[i], reverse=True)
        batches += [tuple(group[i: i + batch_size]) for i in range(0, len(group), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return tuple(batches[i] for i in shuffled)


def batch_at(lengths: Sequence[int], batch_size: int, seed: int, step: int) -> list[int]:
    """The indices of the batch for global training step `step`: batch step % n of epoch step // n.

    A pure function of its arguments, so a resumed run continues the same order with no sampler state.
    """
    if len(lengths) == 0:
        raise ValueError("batch_at needs at least one sentence")
    epoch, index = divmod(step, math.ceil(len(lengths) / batch_size))
    return list(_grouped(tuple(int(n) for n in lengths), batch_size, seed, epoch, MEGA_BATCHES)[index])


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Every index once, longest first (the memory peak comes at once), in batches of similar length."""
    lengths = list(lengths)  # a `datasets` Column reads Arrow on every index
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
