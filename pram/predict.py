"""Use a trained checkpoint: score it on a labelled split, or tag a file."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
from datasets import Dataset
from rich.console import Console
from rich.table import Table

from pram.batches import encode_dataset
from pram.checkpoint import load_checkpoint
from pram.config import TrainConfig
from pram.data.corpora import load_language
from pram.data.labels import shared_label_set
from pram.data.readers import decode_text, read_bytes, read_file
from pram.device import pick_device
from pram.encoder import fingerprint, load_tokenizer
from pram.errors import UserError, at
from pram.evaluate import evaluate, predict
from pram.model import TokenClassifier


def load_trained(checkpoint: str | Path, device: str = "cpu", encoder: str | None = None):
    """(model, tokenizer, run info) of a checkpoint folder written by `pram train`.

    encoder: the base encoder folder to load it onto (default: the one it was trained on, as recorded). A
    checkpoint records its base's fingerprint (`encoder.fingerprint`): another base is refused in one line;
    a checkpoint from before the record loads onto what it names."""
    path = Path(checkpoint)
    if not (path / "state.json").is_file() or not (path / "model.safetensors").is_file():
        raise UserError(f"{at(path)}: not a pram checkpoint (no state.json and model.safetensors): "
                        "pass a folder under <run>/checkpoints/, e.g. best-target-dev")
    weights, info, _ = load_checkpoint(path)
    try:
        config = TrainConfig.from_dict(info["config"])
    except (ValueError, TypeError) as e:
        raise UserError(f"{at(path / 'state.json')}: its config is not one this pram reads ({e}): a checkpoint "
                        "from an incompatible version") from None
    base = encoder or info["encoder_path"]
    check_base(path, info, base)
    info = {**info, "encoder_path": base}
    model = TokenClassifier.from_config(base, len(info["label_names"]), config)
    missing = set(weights) - set(model.state_dict())
    if missing:
        raise UserError(f"{at(path)}: weights {sorted(missing)[:3]} do not fit encoder {info['encoder_path']}")
    model.load_state_dict(weights, strict=False)
    return model.to(device).eval(), load_tokenizer(info["encoder_path"]), info


def check_base(checkpoint: Path, info: dict, base: str) -> None:
    """Refuse a base encoder other than the one the checkpoint was trained on, in one line."""
    recorded = (info.get("encoder") or {}).get("fingerprint")
    if recorded is None:
        return
    name = info["encoder"].get("name") or info["encoder_path"]
    found = fingerprint(base)
    if found != recorded:
        where = f"{base} is another encoder" if found else f"{base} is not an encoder folder"
        raise UserError(f"{at(checkpoint)}: trained on base encoder {name} (fingerprint {recorded[:12]}), but "
                        f"{where}: pass --encoder with the folder it was trained on ({info['encoder_path']})")


def evaluate_command(checkpoint: str, dataset: str, lang: str, split: str, data_dir: str | None,
                     cache_dir: str | None, as_json: bool, encoder: str | None = None) -> int:
    device = pick_device("auto")
    model, tokenizer, info = load_trained(checkpoint, device, encoder)
    corpus = load_language(dataset, lang, data_dir, cache_dir)
    if split not in corpus:
        raise UserError(f"{dataset}/{lang} has no split {split!r}: choose one of {sorted(corpus)}")
    config = TrainConfig.from_dict(info["config"])
    encoded = encode_dataset(corpus[split], tokenizer, config.max_length, labelled=True)
    gold_names = corpus[split].features["ner_tags"].feature.names
    _, explanation = shared_label_set(info["label_names"], gold_names, info["config"]["dataset"], dataset)
    if explanation:
        print(f"pram: note: {explanation}; only the shared entity types are scored", file=sys.stderr)
    scores = evaluate(model, encoded, info["label_names"], tokenizer.pad_token_id, config.eval_batch_size, device,
                      gold_names=gold_names)
    scores = {"dataset": dataset, "lang": lang, "split": split, "sentences": len(encoded), **scores}
    if as_json:
        print(json.dumps(scores))
        return 0
    table = Table(title=f"{dataset}/{lang} {split}: {len(encoded)} sentences", title_justify="left")
    for name in ("precision", "recall", "f1", *scores["per_type"]):
        table.add_column(name, justify="right")
    table.add_row(*(f"{scores[k]:.2f}" for k in ("precision", "recall", "f1")),
                  *(f"{v:.2f}" for v in scores["per_type"].values()))
    Console().print(table)
    return 0


TAG = re.compile(r"^(O|[BI]-[A-Za-z][A-Za-z0-9_]*)$")


def _read_sentences(path: Path) -> list[list[str]]:
    """A CoNLL file (token first, tag last) or plain text with one sentence per line, split on white space."""
    wanted = "a CoNLL file or a text file with one sentence per line"
    if not path.is_file():
        raise UserError(f"{at(path)}: no such file: give {wanted}")
    lines = decode_text(path, read_bytes(path), wanted).splitlines()
    last = [line.split()[-1] for line in lines if line.strip() and not line.startswith("-DOCSTART-")]
    if last and all(len(line.split()) >= 2 for line in lines if line.strip()) and all(TAG.match(t) for t in last):
        return [list(s.tokens) for s in read_file(path)]
    return [line.split() for line in lines if line.strip()]


def predict_command(checkpoint: str, file: str, out: str | None, encoder: str | None = None) -> int:
    device = pick_device("auto")
    model, tokenizer, info = load_trained(checkpoint, device, encoder)
    sentences = _read_sentences(Path(file))
    config = TrainConfig.from_dict(info["config"])
    data = Dataset.from_dict({"tokens": sentences})
    encoded = encode_dataset(data, tokenizer, config.max_length, labelled=False)
    with torch.no_grad():
        predicted = predict(model, encoded, tokenizer.pad_token_id, config.eval_batch_size, device).words
    names = info["label_names"]
    text = "\n\n".join("\n".join(f"{w}\t{names[t] if t >= 0 else 'O'}" for w, t in zip(s, p))
                       for s, p in zip(sentences, predicted)) + "\n"
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
