"""Word-aligned labels on real sentences of seven languages, padding, and length-grouped batch orders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from pram.batches import (
    IGNORE,
    align,
    batch_at,
    collate,
    encode_dataset,
    encode_sentence,
    eval_batches,
    length_grouped_batches,
)
from pram.encoder import build_tiny_encoder, load_tokenizer
from pram.me5 import write_me5_tokenizer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEV_FILES = {"en": "conll2003/en/dev.txt", "de": "conll2003/de/dev.txt", "es": "conll2002/es/dev.txt",
             "nl": "conll2002/nl/dev.txt", "ar": "wikiann/ar/dev.tsv", "hi": "wikiann/hi/dev.tsv",
             "zh": "wikiann/zh/dev.tsv"}


def first_sentence(path: Path) -> list[str]:
    """The tokens of a file's first sentence (the data README's rules, enough for one sentence)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")
    tokens = []
    for line in text.splitlines():
        if line.startswith("-DOCSTART-"):
            continue
        if not line.strip():
            if tokens:
                return tokens
            continue
        token = line.split("\t")[0].split(":", 1)[1] if path.suffix == ".tsv" else line.split()[0]
        tokens.append(token)
    return tokens


@pytest.fixture(scope="module")
def xlmr(tmp_path_factory):
    """The me5-small tokenizer (XLM-R SentencePiece), without building the weights."""
    return AutoTokenizer.from_pretrained(write_me5_tokenizer(tmp_path_factory.mktemp("me5-tokenizer")))


def pieces(tokenizer, encoded: dict) -> list[str]:
    return tokenizer.convert_ids_to_tokens(encoded["input_ids"])


@pytest.mark.parametrize("lang", DEV_FILES)
def test_real_sentences_have_no_unknown_piece(xlmr, lang):
    tokens = first_sentence(DATA / DEV_FILES[lang])
    assert len(tokens) >= 3
    encoded = encode_sentence(xlmr, tokens, list(range(len(tokens))), max_length=512)
    assert xlmr.unk_token_id not in encoded["input_ids"]
    # every word is labelled once, in order, and never on a lone "▁" unless that is all the word has
    first = [i for i, w in enumerate(encoded["word_ids"]) if w >= 0]
    assert [encoded["word_ids"][i] for i in first] == list(range(len(tokens)))
    assert [encoded["labels"][i] for i in first] == list(range(len(tokens)))
    assert sum(label != IGNORE for label in encoded["labels"]) == len(tokens)
    for i in first:
        assert pieces(xlmr, encoded)[i] != "▁" or encoded["word_ids"][i + 1] != encoded["word_ids"][i]


def test_labels_by_hand(xlmr):
    # CoNLL-style tags: O=0, B-LOC=5, I-LOC=6, B-ORG=3
    encoded = encode_sentence(xlmr, ["北", "京", "EU", "rejects", "LONDON", ","], [5, 6, 3, 0, 5, 0])
    assert pieces(xlmr, encoded) == ["<s>", "▁", "北", "▁", "京", "▁EU", "▁re", "ject", "s",
                                     "▁", "LON", "DON", "▁", ",", "</s>"]
    assert encoded["labels"] == [-100, -100, 5, -100, 6, 3, 0, -100, -100, -100, 5, -100, -100, 0, -100]
    assert encoded["word_ids"] == [-1, -1, 0, -1, 1, 2, 3, -1, -1, -1, 4, -1, -1, 5, -1]
    assert encoded["attention_mask"] == [1] * 15 and encoded["length"] == 15


def test_word_of_only_a_lone_space_and_word_of_no_piece():
    # pure alignment: word 0 is a lone "▁" (id 6) alone, word 1 is "▁" + piece
    out = align([0, 6, 6, 77, 2], [None, 0, 1, 1, None], [4, 7], max_length=16, lone_space_id=6)
    assert out["labels"] == [-100, 4, -100, 7, -100] and out["word_ids"] == [-1, 0, -1, 1, -1]


def test_word_with_no_piece_shifts_nothing(xlmr):
    encoded = encode_sentence(xlmr, ["EU", "\u200b", "rejects"], [3, 1, 0])  # a zero-width space has no piece
    assert pieces(xlmr, encoded) == ["<s>", "▁EU", "▁re", "ject", "s", "</s>"]
    assert encoded["labels"] == [-100, 3, 0, -100, -100, -100]
    assert encoded["word_ids"] == [-1, 0, 2, -1, -1, -1] and encoded["n_words_kept"] == 2


def test_truncation_drops_whole_words(xlmr):
    tokens, tags = ["EU", "rejects", "LONDON", "call"], [3, 0, 5, 0]
    full = encode_sentence(xlmr, tokens, tags)
    # <s> ▁EU ▁re ject s ▁ LON DON ▁call </s>: 8 pieces fit "rejects" whole but cut into "LONDON"
    for max_length, kept in [(8, 2), (9, 3), (10, 4), (4, 1), (3, 1)]:
        cut = encode_sentence(xlmr, tokens, tags, max_length=max_length)
        assert cut["length"] <= max_length and cut["n_words_kept"] == kept
        assert cut["input_ids"][-1] == xlmr.eos_token_id
        n = cut["length"] - 1
        assert cut["input_ids"][:n] == full["input_ids"][:n]
        assert cut["labels"][:n] == full["labels"][:n] and cut["word_ids"][:n] == full["word_ids"][:n]
    cut = encode_sentence(xlmr, tokens, tags, max_length=8)
    assert pieces(xlmr, cut) == ["<s>", "▁EU", "▁re", "ject", "s", "</s>"]
    assert cut["labels"] == [-100, 3, 0, -100, -100, -100] and cut["word_ids"] == [-1, 0, 1, -1, -1, -1]


def test_unlabelled_sentences(xlmr):
    tokens = ["北", "京", "EU", "rejects"]
    labelled = encode_sentence(xlmr, tokens, [5, 6, 3, 0])
    unlabelled = encode_sentence(xlmr, tokens, None)
    assert set(unlabelled["labels"]) == {IGNORE}
    assert unlabelled["word_ids"] == labelled["word_ids"] and unlabelled["input_ids"] == labelled["input_ids"]


def test_wordpiece_tokenizer_alignment(tmp_path):
    tokenizer = load_tokenizer(str(build_tiny_encoder(tmp_path / "tiny", ["Paris", "is", "nice", "EU"])))
    encoded = encode_sentence(tokenizer, ["Parisian", "EU", "is", "nice"], [5, 3, 0, 0])
    assert pieces(tokenizer, encoded) == ["[CLS]", "Paris", "##i", "##a", "##n", "EU", "is", "nice", "[SEP]"]
    assert encoded["labels"] == [-100, 5, -100, -100, -100, 3, 0, 0, -100]
    assert encoded["word_ids"] == [-1, 0, -1, -1, -1, 1, 2, 3, -1]
    cut = encode_sentence(tokenizer, ["Parisian", "EU", "is", "nice"], [5, 3, 0, 0], max_length=8)
    assert pieces(tokenizer, cut) == ["[CLS]", "Paris", "##i", "##a", "##n", "EU", "is", "[SEP]"]


def test_encode_dataset(xlmr):
    data = Dataset.from_dict({"tokens": [["EU", "rejects"], ["北", "京", "LONDON"]],
                              "ner_tags": [[3, 0], [5, 6, 5]]})
    encoded = encode_dataset(data, xlmr, max_length=128, labelled=True)
    assert {"tokens", "ner_tags", "input_ids", "attention_mask", "labels", "word_ids", "length"} <= set(
        encoded.column_names)
    for row, tokens, tags in zip(encoded, data["tokens"], data["ner_tags"], strict=True):
        expected = encode_sentence(xlmr, tokens, tags)
        assert {k: row[k] for k in ("input_ids", "attention_mask", "labels", "word_ids", "length")} == {
            k: expected[k] for k in ("input_ids", "attention_mask", "labels", "word_ids", "length")}
    assert encoded["length"] == [6, 9]
    unlabelled = encode_dataset(data, xlmr, max_length=128, labelled=False)
    assert all(set(labels) == {IGNORE} for labels in unlabelled["labels"])
    assert unlabelled["word_ids"] == encoded["word_ids"]
    text_only = encode_dataset(data.remove_columns("ner_tags"), xlmr, max_length=128, labelled=False)
    assert text_only["input_ids"] == encoded["input_ids"]


def test_encode_dataset_reuses_the_cache(xlmr, tmp_path):
    Dataset.from_dict({"tokens": [["EU", "rejects"]] * 3, "ner_tags": [[3, 0]] * 3}).save_to_disk(
        tmp_path / "d")
    data = Dataset.load_from_disk(tmp_path / "d")
    encoded = encode_dataset(data, xlmr, 128, labelled=True)
    again = encode_dataset(data, xlmr, 128, labelled=True)
    assert encoded.cache_files and again.cache_files == encoded.cache_files
    assert encode_dataset(data, xlmr, 64, labelled=True).cache_files != encoded.cache_files
    assert encode_dataset(data, xlmr, 128, labelled=False).cache_files != encoded.cache_files


def test_collate_pads_to_the_longest():
    features = [
        {"input_ids": [0, 10, 11, 2], "attention_mask": [1, 1, 1, 1], "labels": [-100, 3, 0, -100],
         "word_ids": [-1, 0, 1, -1], "length": 4},
        {"input_ids": [0, 12, 2], "attention_mask": [1, 1, 1], "labels": [-100, 5, -100],
         "word_ids": [-1, 0, -1], "length": 3},
    ]
    batch = collate(features, pad_token_id=1)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "word_ids"}
    assert batch["input_ids"].tolist() == [[0, 10, 11, 2], [0, 12, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 3, 0, -100], [-100, 5, -100, -100]]
    assert batch["word_ids"].tolist() == [[-1, 0, 1, -1], [-1, 0, -1, -1]]
    assert all(t.dtype == torch.long for t in batch.values())


@pytest.fixture(scope="module")
def lengths():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(3, 120, (1003,), generator=generator).tolist()


def test_length_grouped_batches_cover_every_index_once(lengths):
    batches = length_grouped_batches(lengths, batch_size=16, seed=3, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    sizes = [len(b) for b in batches]
    assert len(batches) == 63 and sizes.count(16) == 62 and sizes.count(1003 - 62 * 16) == 1


def test_length_grouped_batches_are_deterministic_and_vary_by_epoch(lengths):
    a = length_grouped_batches(lengths, 16, seed=3, epoch=0)
    assert a == length_grouped_batches(lengths, 16, seed=3, epoch=0)
    assert a != length_grouped_batches(lengths, 16, seed=3, epoch=1)
    assert a != length_grouped_batches(lengths, 16, seed=4, epoch=0)


def test_length_grouped_batches_have_little_padding(lengths):
    def mean_spread(batches):
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    grouped = length_grouped_batches(lengths, 16, seed=3, epoch=0)
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1)).tolist()
    random = [order[i: i + 16] for i in range(0, len(order), 16)]
    assert mean_spread(grouped) < 10 < 80 < mean_spread(random)  # lengths are uniform on 3..119


def test_batch_at_agrees_with_the_epochs(lengths):
    per_epoch = 63
    for step in [0, 1, 62, 63, 64, 200]:
        epoch, index = divmod(step, per_epoch)
        expected = length_grouped_batches(lengths, 16, seed=3, epoch=epoch)[index]
        assert batch_at(lengths, 16, seed=3, step=step) == expected


def test_eval_batches(lengths):
    batches = eval_batches(lengths, 100)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths))) and [len(b) for b in batches] == [100] * 10 + [3]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def blank_line_blocks(path: Path) -> int:
    """Sentences of a WikiAnn tsv file, counted as the blank lines that end them (not with the project's reader)."""
    return sum(1 for line in path.open(encoding="utf-8") if not line.strip())


@pytest.mark.parametrize("target", ["zh", pytest.param("ar", marks=pytest.mark.slow)])  # ar: 105k sentences, 28 s
def test_wikiann_target_text_as_a_run_reads_it(tmp_path, data_dir, target):
    """prepare_data for WikiAnn en -> zh and en -> ar with the me5-small tokenizer: the unlabelled target text is
    the train split plus the extra pool where there is one (zh has none; ar 20,000 + 84,824), no label of
    it is read, and on real Chinese (every character its own word, each after a lone "▁" piece) every word gets
    one first piece, never the lone "▁"; target dev keeps its gold labels on the same pieces (up to 512 pieces)."""
    from dataclasses import replace

    from pram.config import preset
    from pram.inputs import prepare_data

    folder = write_me5_tokenizer(tmp_path / "encoder")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))  # all prepare_data reads of it
    config = replace(preset("smoke", data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), quiet=True),
                     dataset="wikiann", sources=("en",), target=target, eval_languages=(), encoder=str(folder),
                     train_sentences=None if target == "ar" else 300, eval_sentences=300, max_length=512)
    data = prepare_data(config)
    files = [data_dir / "wikiann" / target / name for name in ("train.tsv", "extra.tsv")]
    pool = sum(blank_line_blocks(f) for f in files if f.is_file())
    assert len(data.target_train) == (pool if target == "ar" else 300) and pool == {"ar": 104824, "zh": 20000}[target]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lone = tokenizer.convert_tokens_to_ids("▁")
    for row in data.target_train[:300]:  # what train_step draws its target batches from: no label, no tag
        assert set(row["labels"]) == {IGNORE} and set(row) == {"input_ids", "attention_mask", "labels", "word_ids",
                                                                "length"}
        firsts = [i for i, w in enumerate(row["word_ids"]) if w >= 0]
        assert [row["word_ids"][i] for i in firsts] == list(range(len(firsts)))  # one first piece per word
        assert lone not in [row["input_ids"][i] for i in firsts]
    if target == "zh":  # the quirk is there: most Chinese words (characters) come after a lone "▁" piece
        rows = data.target_train[:300]
        pieces_lone = sum(row["input_ids"].count(lone) for row in rows)
        words = sum(sum(w >= 0 for w in row["word_ids"]) for row in rows)
        assert pieces_lone > 0.5 * words
    dev = data.dev[target]
    tags = dev["ner_tags"]
    cut = 0
    for row, gold in zip(dev.select_columns(["labels", "length"]), tags):
        labelled = [label for label in row["labels"] if label != IGNORE]
        assert labelled == list(gold[:len(labelled)])  # a sentence past 512 pieces is cut at a word boundary
        cut += len(labelled) < len(gold)
        assert len(labelled) == len(gold) or row["length"] > 512 - 4
    assert cut <= 3  # of 300 dev sentences: zh has one of 402 characters (804 pieces)
    if target == "zh":
        chars = [t for s in dev["tokens"][:300] for t in s]
        assert all(len(t) == 1 for t in chars[:200])  # character-split text, as offline-encoder.md says
