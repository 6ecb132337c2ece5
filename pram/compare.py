"""`pram compare A B`: two systems on the same labelled sentences, their F1s, and how sure the difference is.

A side is a `pram predict` output (token<TAB>tag lines), a checkpoint folder, or a run folder (its kept
checkpoint, `checkpoints/best-<selection>`). Checkpoints tag the gold sentences here. The gold sentences come from
`--gold FILE` (a labelled CoNLL or WikiAnn file), or a corpus split (`--dataset --lang --split`, by default the
target's test set of a run folder given as a side). The difference gets a paired bootstrap interval and an
approximate-randomization p-value over sentences (pram/stats.py), overall and per entity type.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pram.errors import UserError, at
from pram.stats import SentenceComparison, compare_sentences, sentence_counts


def _gold(gold_file: str | None, dataset: str | None, lang: str | None, split: str, data_dir: str | None,
          runs: list[dict]) -> tuple[str, list[list[str]], list[list[str]]]:
    """(what the gold sentences are, their tokens, their tags)."""
    if gold_file:
        from pram.data.readers import read_file

        sentences = read_file(gold_file)
        return gold_file, [list(s.tokens) for s in sentences], [list(s.tags) for s in sentences]
    if runs and (dataset is None or lang is None):
        dataset, lang = dataset or runs[0]["dataset"], lang or runs[0]["target"]
    if dataset is None or lang is None:
        raise UserError("no gold sentences: give --gold FILE (the labelled file both sides tagged), or --dataset "
                        "and --lang")
    from pram.data.corpora import load_language

    corpus = load_language(dataset, lang, data_dir)
    if split not in corpus:
        raise UserError(f"{dataset}/{lang} has no split {split!r}: choose one of {sorted(corpus)}")
    names = corpus[split].features["ner_tags"].feature.names
    return (f"{dataset}/{lang} {split}", list(corpus[split]["tokens"]),
            [[names[t] for t in tags] for tags in corpus[split]["ner_tags"]])


def _checkpoint_of(path: Path) -> tuple[Path, dict | None]:
    """A side's checkpoint folder and, for a run folder, its config; (path, None) for a checkpoint."""
    if (path / "state.json").is_file():
        return path, None
    config_file = path / "config.json"
    if (path / "checkpoints").is_dir() and config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))["config"]
        return path / "checkpoints" / f"best-{config['selection']}", config
    raise UserError(f"{at(path)}: neither a `pram predict` output, a checkpoint folder nor a run folder")


def _tag(checkpoint: Path, tokens: list[list[str]]) -> list[list[str]]:
    from pram.config import TrainConfig
    from pram.device import pick_device
    from pram.predict import load_trained, tag_sentences

    device = pick_device("auto")
    model, tokenizer, info = load_trained(checkpoint, device)
    return tag_sentences(model, tokenizer, tokens, TrainConfig.from_dict(info["config"]), info["label_names"], device)


def _predictions(path: Path, tokens: list[list[str]], gold_name: str) -> list[list[str]]:
    """A `pram predict` output's tags, once its sentences are shown to be the gold ones."""
    from pram.data.readers import read_file

    sentences = read_file(path)
    if len(sentences) != len(tokens):
        raise UserError(f"{at(path)}: {len(sentences)} sentences against {len(tokens)} in {gold_name}: the two do "
                        "not cover the same sentences; compare outputs of the same labelled file")
    for number, (sentence, words) in enumerate(zip(sentences, tokens), 1):
        if list(sentence.tokens) != words:
            raise UserError(f"{at(path, sentence.line)}: sentence {number} is not sentence {number} of {gold_name} "
                            f"({' '.join(sentence.tokens[:6])} ... against {' '.join(words[:6])} ...): the two do "
                            "not cover the same sentences")
    return [list(s.tags) for s in sentences]


def compare_command(a: str, b: str, gold_file: str | None, dataset: str | None, lang: str | None, split: str,
                    data_dir: str | None, as_json: bool, iterations: int = 2000, seed: int = 0) -> int:
    sides = [Path(a), Path(b)]
    for side in sides:
        if not side.exists():
            raise UserError(f"{at(side)}: no such file or folder: give a `pram predict` output, a checkpoint "
                            "folder or a run folder")
    found = {side: (None, None) if side.is_file() else _checkpoint_of(side) for side in sides}
    runs = [config for _, config in found.values() if config is not None]
    gold_name, tokens, gold = _gold(gold_file, dataset, lang, split, data_dir, runs)
    preds = [_predictions(side, tokens, gold_name) if side.is_file() else _tag(found[side][0], tokens)
             for side in sides]
    overall = compare_sentences(sentence_counts(gold, preds[0]), sentence_counts(gold, preds[1]), iterations, seed)
    types = sorted({tag[2:] for tags in gold for tag in tags if tag != "O"})
    per_type = {t: compare_sentences(sentence_counts(gold, preds[0], t), sentence_counts(gold, preds[1], t),
                                     iterations, seed) for t in types}
    if as_json:
        print(json.dumps({"a": a, "b": b, "gold": gold_name, **overall.to_dict(),
                          "per_type": {t: c.to_dict() for t, c in per_type.items()}}))
        return 0
    _print(a, b, gold_name, overall, per_type)
    return 0


def _print(a: str, b: str, gold_name: str, overall: SentenceComparison,
           per_type: dict[str, SentenceComparison]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{gold_name}: {overall.sentences} sentences; A = {a}, B = {b}", title_justify="left")
    for name in ("entities", "F1 A", "F1 B", "A - B", "95% interval (paired bootstrap)", "p (randomization)"):
        table.add_column(name, justify="left" if name == "entities" else "right")
    for name, c in [("all", overall), *per_type.items()]:
        table.add_row(name, f"{c.f1_a:.2f}", f"{c.f1_b:.2f}", f"{c.diff:+.2f}", f"[{c.low:+.2f}, {c.high:+.2f}]",
                      f"{c.p:.4f}")
    console = Console()
    console.print(table)
    if overall.low > 0 or overall.high < 0:
        ahead, behind = ("A", "B") if overall.diff > 0 else ("B", "A")
        console.print(f"{ahead} is ahead of {behind} on these sentences (p = {overall.p:.4f}); one pair of runs says "
                      "nothing of seed-to-seed spread: compare several seeds for a claim about a method")
    else:
        console.print(f"no difference shown on these sentences (p = {overall.p:.4f})")
    sys.stdout.flush()
