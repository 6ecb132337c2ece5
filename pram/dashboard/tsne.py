"""Figure 4 of the paper on this search's models: a t-SNE picture of source and target token representations
per class, for the best PRAM model beside the no-APC baseline trained with the same seed, steps and data.

A few dozen dev tokens per class and side (the paper took 150), so that a page is built in seconds on a CPU.
"""

from __future__ import annotations

import random
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from pram.errors import UserError
from pram.results import VARIANT_NAMES, SearchFolder

SAMPLE_SEED = 0
BATCH = 32
SIDES = {"source": "circle", "target": "triangle-up"}  # the paper's ● and ▲


@dataclass
class Sample:
    """Token representations of one model projected to 2-D, with each token's class and side."""

    xy: np.ndarray  # (N, 2)
    labels: list[str]
    sides: list[str]
    label_names: list[str]


def checkpoint_path(folder: SearchFolder, target: str, variant: str) -> Path | str:
    """The weights the first final seed of a variant kept on the search's objective, or why there is none."""
    row = folder.final_row(target, variant, folder.run.get("objective", "target-dev"), target)
    if row is None:
        return "final.parquet has no run of it"
    location = (row.get("checkpoints") or [None])[0]
    if location is None:
        return "final.parquet lists no checkpoint (the search predates `pram report`)"
    if "://" in location:
        return f"its checkpoint is not on this machine ({location})"
    path = Path(location) if Path(location).is_absolute() else folder.path / location
    if not (path / "model.safetensors").is_file():
        return f"its checkpoint {location} is not here (Ray's files under ray/ stay out of git)"
    return path


def tsne_figure(folder: SearchFolder, target: str, per_class: int, data_dir: str | None,
                threads: int = 1) -> tuple[go.Figure | None, str]:
    """The picture for one target (None where no model is at hand), and a note of what is missing."""
    found = {v: checkpoint_path(folder, target, v) for v in ("none", "both")}
    missing = "; ".join(f"{VARIANT_NAMES[v]}: {p}" for v, p in found.items() if isinstance(p, str))
    paths = {v: p for v, p in found.items() if isinstance(p, Path)}
    if not paths:
        return None, f"No t-SNE picture for target {target}. {missing}."
    try:
        with limited_threads(threads):
            samples = {VARIANT_NAMES[v]: sample_model(p, per_class, data_dir) for v, p in paths.items()}
    except (UserError, OSError) as e:
        return None, f"No t-SNE picture for target {target}: {e}"
    return _figure(target, samples, per_class), (f"Not shown: {missing}." if missing else "")


@contextmanager
def limited_threads(threads: int):
    """torch's and OpenMP's threads (the t-SNE's) held to `threads`: the work is small, and on a machine whose
    cores are busy more threads only contend (measured here: 46 s with the defaults, 12 s with one)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def sample_model(checkpoint: Path, per_class: int, data_dir: str | None) -> Sample:
    """Last-layer representations of up to per_class dev words of each class on each side, in 2-D."""
    import transformers

    from pram.config import TrainConfig
    from pram.predict import load_trained

    transformers.utils.logging.disable_progress_bar()  # the page is the output, not a bar per model load
    model, tokenizer, info = load_trained(checkpoint)
    config = TrainConfig.from_dict(info["config"])
    vectors, labels, sides = [], [], []
    for side, langs in (("source", config.sources), ("target", (config.target,))):
        sentences = dev_sentences(config, langs, data_dir)
        picks = sample_words(sentences, per_class)
        found, tags = word_vectors(model, tokenizer, config.max_length, sentences, picks)
        vectors += found
        labels += [info["label_names"][t] for t in tags]
        sides += [side] * len(found)
    del model
    if len(vectors) < 5:
        raise UserError(f"{checkpoint}: only {len(vectors)} dev tokens found for the t-SNE picture")
    return Sample(embed(np.stack(vectors)), labels, sides, info["label_names"])


def dev_sentences(config, langs, data_dir: str | None) -> list[tuple[list[str], list[int]]]:
    """The dev sentences of some languages (tokens, tags), shuffled with a fixed seed."""
    from pram.data.corpora import load_language

    root = data_dir or (config.data_dir if config.data_dir and Path(config.data_dir).is_dir() else None)
    found = []
    for lang in langs:
        dev = load_language(config.dataset, lang, root, config.cache_dir)["dev"]
        found += list(zip(dev["tokens"], dev["ner_tags"]))
    random.Random(SAMPLE_SEED).shuffle(found)
    return found


def sample_words(sentences: list[tuple[list[str], list[int]]], per_class: int) -> dict[int, list[int]]:
    """Up to per_class words of each tag, taken in sentence order: {sentence index: word indices}."""
    counts: Counter = Counter()
    picks: dict[int, list[int]] = {}
    for i, (_, tags) in enumerate(sentences):
        for w, tag in enumerate(tags):
            if counts[tag] < per_class:
                counts[tag] += 1
                picks.setdefault(i, []).append(w)
    return picks


@torch.no_grad()
def word_vectors(model, tokenizer, max_length: int, sentences, picks: dict[int, list[int]]):
    """The representation (h of Eq. 1) of each picked word's first piece, and the word's tag."""
    from pram.batches import collate, encode_sentence

    vectors, tags = [], []
    items = list(picks.items())
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        rows = [encode_sentence(tokenizer, sentences[i][0], sentences[i][1], max_length) for i, _ in chunk]
        batch = collate(rows, tokenizer.pad_token_id)
        h, _ = model(batch["input_ids"], batch["attention_mask"])  # (B, L, H)
        for b, (i, words) in enumerate(chunk):
            piece = {w: p for p, w in enumerate(rows[b]["word_ids"]) if w >= 0}
            for w in (w for w in words if w in piece):  # a word cut off at max_length has no piece
                vectors.append(h[b, piece[w]].float().numpy())
                tags.append(sentences[i][1][w])
    return vectors, tags


def embed(vectors: np.ndarray) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = max(1.0, min(30.0, (len(vectors) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=SAMPLE_SEED)
    return tsne.fit_transform(vectors)


def _figure(target: str, samples: dict[str, Sample], per_class: int) -> go.Figure:
    fig = make_subplots(rows=1, cols=len(samples), subplot_titles=list(samples), horizontal_spacing=0.08)
    palette = qualitative.D3 + qualitative.Pastel
    for col, sample in enumerate(samples.values(), start=1):
        for k, name in enumerate(sample.label_names):
            for side, symbol in SIDES.items():
                idx = [i for i, key in enumerate(zip(sample.labels, sample.sides)) if key == (name, side)]
                if idx:
                    fig.add_trace(go.Scatter(
                        x=sample.xy[idx, 0], y=sample.xy[idx, 1], mode="markers", name=f"{name} ({side})",
                        legendgroup=f"{name}-{side}", showlegend=col == 1,
                        marker={"color": palette[k % len(palette)], "symbol": symbol, "size": 7,
                                "opacity": 0.8}),
                        row=1, col=col)
        fig.update_xaxes(title_text="t-SNE 1", row=1, col=col)
        fig.update_yaxes(title_text="t-SNE 2", row=1, col=col)
    fig.update_layout(title={"text": f"Token representations, target {target}: t-SNE of up to {per_class} "
                                     "dev tokens per class and side (● source, ▲ target)"},
                      height=540, template="plotly_white", margin={"t": 90})
    return fig


def tsne_command(specs: list[str], out: str, per_class: int, data_dir: str | None, threads: int) -> int:
    """`pram tsne NAME=CHECKPOINT ... --out FILE.png`: Figure 4 for checkpoints of one target, side by side."""
    from pram.experiment_figures import tsne_figure_png

    paths = {}
    for spec in specs:
        name, sep, location = spec.rpartition("=")
        path = Path(location)
        if not sep or not name:
            raise UserError(f"{spec}: write NAME=CHECKPOINT, e.g. PRAM=runs/<run>/checkpoints/best-target-dev")
        if not (path / "state.json").is_file() or not (path / "model.safetensors").is_file():
            raise UserError(f"{spec}: {path} is not a pram checkpoint (no state.json and model.safetensors): "
                            "pass a folder under <run>/checkpoints/, e.g. best-target-dev")
        paths[name] = path
    targets = {_target_of(path) for path in paths.values()}
    if len(targets) != 1:
        raise UserError(f"the checkpoints have different targets ({', '.join(sorted(targets))}): one at a time")
    with limited_threads(threads):
        samples = {name: sample_model(path, per_class, data_dir) for name, path in paths.items()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tsne_figure_png(samples, targets.pop(), per_class, Path(out))
    counts = ", ".join(f"{name}: {len(s.labels)} tokens" for name, s in samples.items())
    print(f"wrote {out} ({counts})")
    return 0


def _target_of(checkpoint: Path) -> str:
    import json

    return json.loads((checkpoint / "state.json").read_text())["config"]["target"]
