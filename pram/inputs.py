"""Everything a training run reads, loaded and tokenised once: the `TrainData` a trainer (or a search) takes.

Kept apart from the loop so that a search can build it once and hand it to every trial.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pram.batches import encode_dataset
from pram.config import TrainConfig
from pram.data.corpora import LABELS, load_language
from pram.encoder import build_tiny_encoder, default_cache_dir, load_tokenizer, resolve_encoder


@dataclass
class TrainData:
    label_names: list[str]
    encoder_path: str
    pad_token_id: int
    source_train: dict[str, list[dict]]
    """Tokenised labelled training sentences per source language (rows of input_ids, labels, ...)."""
    target_train: list[dict]
    """Tokenised target training sentences, labels removed (all -100)."""
    dev: dict[str, object]
    """Encoded dev sets (datasets.Dataset) of every source and of the target."""
    test: dict[str, object]
    """Encoded test sets of the sources, the target and the extra evaluation languages."""
    source_entity_share: float
    """Share of source first pieces that are entities: the yardstick of the collapse guard."""
    source_lengths: dict[str, tuple[int, ...]] = field(init=False, repr=False)
    target_lengths: tuple[int, ...] = field(init=False, repr=False)
    """Piece counts of the training rows, gathered once: every step's batch_at needs them."""

    def __post_init__(self):
        self.source_lengths = {lang: tuple(r["length"] for r in rows) for lang, rows in self.source_train.items()}
        self.target_lengths = tuple(r["length"] for r in self.target_train)


def _subset(split, n: int | None, seed: int):
    """A seeded random subset of n sentences (all when n is None or larger)."""
    if n is None or n >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(n))


def _first(split, n: int | None):
    return split if n is None or n >= len(split) else split.select(range(n))


def _rows(encoded) -> list[dict]:
    return encoded.select_columns(["input_ids", "attention_mask", "labels", "word_ids", "length"]).to_list()


def _tiny_encoder(config: TrainConfig, corpora: dict) -> str:
    """A random 2-layer BERT whose word-piece vocabulary is the words of the training data (smoke runs)."""
    words = sorted({w for lang in (*config.sources, config.target)
                    for s in _subset(corpora[lang]["train"], config.train_sentences, config.seed)["tokens"]
                    for w in s})
    key = hashlib.sha1("\n".join(words).encode()).hexdigest()[:12]
    out = default_cache_dir(config.cache_dir) / "encoders" / f"tiny-{key}"
    if not out.exists():
        build_tiny_encoder(out, words)
    return str(out)


def prepare_data(config: TrainConfig) -> TrainData:
    """Load, subsample and tokenise every split the run uses."""
    langs = dict.fromkeys((*config.sources, config.target, *config.eval_languages))
    corpora = {lang: load_language(config.dataset, lang, config.data_dir, config.cache_dir) for lang in langs}
    encoder_path = _tiny_encoder(config, corpora) if config.encoder == "tiny" else resolve_encoder(
        config.encoder, Path(config.cache_dir) if config.cache_dir else None)
    tokenizer = load_tokenizer(encoder_path)

    def encode(split, labelled: bool):
        return encode_dataset(split, tokenizer, config.max_length, labelled=labelled)

    source_train = {lang: _rows(encode(_subset(corpora[lang]["train"], config.train_sentences, config.seed), True))
                    for lang in config.sources}
    target_split = corpora[config.target]["train"]
    if "extra" in corpora[config.target]:  # WikiAnn: the paper adds the extra pool to the unlabelled target data
        from datasets import concatenate_datasets
        target_split = concatenate_datasets([target_split, corpora[config.target]["extra"]])
    target_train = _rows(encode(_subset(target_split, config.train_sentences, config.seed), False))
    source_eval = config.eval_sentences if config.source_eval_sentences is None else config.source_eval_sentences
    dev = {lang: encode(_first(corpora[lang]["dev"], source_eval if lang in config.sources else
                               config.eval_sentences), True) for lang in (*config.sources, config.target)}
    tested = langs if config.test_languages == "all" else (config.target,)
    test = {lang: encode(_first(corpora[lang]["test"], config.test_sentences), True) for lang in tested}
    labels = [label for rows in source_train.values() for row in rows for label in row["labels"] if label >= 0]
    share = sum(label != 0 for label in labels) / max(1, len(labels))
    return TrainData(LABELS[config.dataset], encoder_path, tokenizer.pad_token_id, source_train, target_train,
                     dev, test, share)
