"""Use a trained checkpoint: score it on a labelled split, or tag a file."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from datasets import Dataset
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pram.batches import encode_dataset
from pram.checkpoint import load_checkpoint
from pram.config import TrainConfig
from pram.data.corpora import load_language
from pram.data.labels import shared_label_set
from pram.data.readers import CONTROL, decode_text, read_bytes, read_file
from pram.device import pick_device
from pram.encoder import fingerprint, load_tokenizer
from pram.errors import UserError, at
from pram.evaluate import evaluate, predict
from pram.files import atomic_output
from pram.model import TokenClassifier


def load_trained(checkpoint: str | Path, device: str = "cpu", encoder: str | None = None, int8: bool = False):
    """(model, tokenizer, run info) of a checkpoint folder written by `pram train`.

    encoder: the base encoder folder to load it onto (default: the one it was trained on, as recorded). A
    checkpoint records its base's fingerprint (`encoder.fingerprint`): another base is refused in one line;
    a checkpoint from before the record loads onto what it names.
    int8: quantise the linear layers for a CPU (`quantize_int8`)."""
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
    model = model.to(device).eval()
    if int8:
        if device != "cpu":
            raise UserError(f"--int8 is for tagging on a CPU; this machine would tag on {device}: leave --int8 off "
                            "(or hide the GPU with CUDA_VISIBLE_DEVICES=)")
        model = quantize_int8(model)
    return model, load_tokenizer(info["encoder_path"]), info


def int8_layers(model: TokenClassifier) -> list[str]:
    """The nn.Linear layers --int8 quantises: the attention projections and the feed-forward input layer of each
    encoder layer. Kept fp32: each feed-forward output layer (`layer.N.output.dense`, which reads the GELU's
    output) and the classifier. Measured on a me5-small checkpoint (Spanish test F1, fp32 62.65): every Linear
    quantised 54.98 (per-channel weights 56.48), the feed-forward outputs alone 57.79, all but them 60.88
    (per-channel weights 61.43)."""
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
            and name != "classifier" and not (name.endswith("output.dense") and "attention" not in name)]


def quantize_int8(model: TokenClassifier) -> TokenClassifier:
    """Dynamic int8 quantisation of `int8_layers`: weights stored as int8 with one scale per output channel,
    activations quantised per batch, on a CPU. It changes the numbers; results/BENCHMARKS.md ("eval-throughput")
    measures the speed and the F1 against fp32."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, not yet gone
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, dict.fromkeys(int8_layers(model), per_channel_dynamic_qconfig),
                                dtype=torch.qint8)


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
                     cache_dir: str | None, as_json: bool, encoder: str | None = None, int8: bool = False) -> int:
    device = pick_device("cpu" if int8 else "auto")
    model, tokenizer, info = load_trained(checkpoint, device, encoder, int8)
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


CHUNK = 2048
"""Sentences tagged and written at a time by `pram predict`: memory stays that of one chunk, whatever the file."""
HEAD = 1 << 20
"""Bytes `pram predict` reads first to tell the file's encoding and kind."""


def _open_input(path: Path) -> tuple[str, bool]:
    """(encoding, is CoNLL) of a file to tag, from its first MiB; an empty, binary or missing file is one line."""
    wanted = "a CoNLL file or a text file with one sentence per line"
    if not path.is_file():
        raise UserError(f"{at(path)}: no such file: give {wanted}")
    try:
        with path.open("rb") as f:
            head = f.read(HEAD)
    except OSError:
        read_bytes(path)  # the same one line as every other reader's
        raise
    complete = head if len(head) < HEAD else head[: head.rfind(b"\n") + 1] or head
    text = decode_text(path, complete, wanted)
    try:
        complete.decode("utf-8-sig")
        encoding = "utf-8-sig"
    except UnicodeDecodeError:
        encoding = "iso-8859-1"
    lines = text.splitlines()
    last = [line.split()[-1] for line in lines if line.strip() and not line.startswith("-DOCSTART-")]
    conll = bool(last) and all(len(line.split()) >= 2 for line in lines if line.strip()) and \
        all(TAG.match(t) for t in last)
    return encoding, conll


def read_sentences(path: Path, kind: tuple[str, bool] | None = None) -> Iterator[list[str]]:
    """The sentences of a file to tag, one at a time: a CoNLL file (token first, tag last; read whole, as
    labelled files are small) or plain text with one sentence per line, split on white space (streamed). A
    binary line further on is one UserError naming it. kind: what `_open_input` found, if it has been asked."""
    encoding, conll = kind or _open_input(path)
    if conll:
        yield from (list(s.tokens) for s in read_file(path))
        return
    with path.open("rb") as f:  # line by line, each decoded strictly with the encoding of the file's start
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding if number == 1 else encoding.removesuffix("-sig"))  # a BOM: line 1
            except UnicodeDecodeError:
                raise UserError(f"{at(path, number)}: not UTF-8, though the file starts as UTF-8: convert it to "
                                "one encoding (iconv -f latin1 -t utf-8, for instance)") from None
            bad = CONTROL.search(line)
            if bad:
                raise UserError(f"{at(path, number)}: binary content (byte {ord(bad.group()):#04x}), not text: "
                                "give a CoNLL file or a text file with one sentence per line")
            words = line.split()
            if words:
                yield words


def _chunks(sentences: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    chunk = []
    for sentence in sentences:
        chunk.append(sentence)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tag_sentences(model, tokenizer, sentences: list[list[str]], config: TrainConfig, names: list[str],
                  device: str) -> list[list[str]]:
    """The tag of every word of each sentence, in input order (a word cut by truncation: O)."""
    data = Dataset.from_dict({"tokens": sentences})
    encoded = encode_dataset(data, tokenizer, config.max_length, labelled=False)
    predicted = predict(model, encoded, tokenizer.pad_token_id, config.eval_batch_size, device).words
    return [[names[t] if t >= 0 else "O" for t in words] for words in predicted]


def tag_chunk(model, tokenizer, sentences: list[list[str]], config: TrainConfig, names: list[str],
              device: str) -> str:
    """`token<TAB>tag` lines of each sentence, a blank line after each, in input order."""
    tags = tag_sentences(model, tokenizer, sentences, config, names, device)
    return "".join("\n".join(f"{w}\t{t}" for w, t in zip(s, p)) + "\n\n" for s, p in zip(sentences, tags))


def predict_command(checkpoint: str, file: str, out: str | None, encoder: str | None = None,
                    int8: bool = False, chunk: int = CHUNK) -> int:
    """Tag `file` chunk by chunk, writing each chunk's tags as soon as they are ready: to `out` through a
    temporary file renamed at the end (an error leaves no half-written file), or to stdout. A progress bar with
    sentences/s on stderr when it is a terminal, unless the tags go to the same terminal."""
    import datasets

    device = pick_device("cpu" if int8 else "auto")
    path = Path(file)
    kind = _open_input(path)  # a bad file is refused before the model loads
    datasets.disable_progress_bars()  # one bar for the whole file, not one per chunk
    model, tokenizer, info = load_trained(checkpoint, device, encoder, int8)
    config = TrainConfig.from_dict(info["config"])
    console = Console(stderr=True)
    # The bar shares the terminal with the tags when they go to it: then there is none.
    bar = console.is_terminal and (out is not None or not sys.stdout.isatty())
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(atomic_output(Path(out), "w")) if out else sys.stdout
        progress = stack.enter_context(Progress(
            TextColumn("tagging"), BarColumn(), TextColumn("{task.completed:,} sentences"),
            TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), console=console, disable=not bar))
        task = progress.add_task("tag", total=None, speed="")
        started, done = time.monotonic(), 0
        for sentences in _chunks(read_sentences(path, kind), chunk):
            sink.write(tag_chunk(model, tokenizer, sentences, config, info["label_names"], device))
            sink.flush()
            done += len(sentences)
            speed = done / max(time.monotonic() - started, 1e-9)
            progress.update(task, completed=done, speed=f"{speed:,.0f} sentences/s")
        if not done:
            raise UserError(f"{at(path)}: no sentence to tag (only blank lines): give a CoNLL file or a text "
                            "file with one sentence per line")
    return 0
