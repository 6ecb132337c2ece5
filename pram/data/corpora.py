"""Corpora by name: the language folders of a data directory, read into `datasets` Arrow and cached on disk.

Layout of the data directory (`--data-dir`, `$PRAM_DATA_DIR`, `./data` or `../shared/data`):

    conll2003/{en,de}/{train,dev,test}.txt      conll2002/{es,nl}/{train,dev,test}.txt
    wikiann/<lang>/{train,dev,test}.tsv  (+ extra.tsv, the unlabelled pool of the paper)

Any other language folder in that layout works too. A language missing on disk is tried on the HuggingFace
hub.
`datasets` is imported only when a corpus is loaded, so that `pram data check` and the CLI start fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pram.data.readers import Sentence, read_file
from pram.errors import UserError, at
from pram.paths import default_cache_dir

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

LABELS = {
    "conll": ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"],
    "wikiann": ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"],
}
"""Label names of each corpus, in the order of the HuggingFace copies (so a hub copy reads the same)."""

READER_VERSION = 1
"""Part of every cache key: bump it when the reader's output changes, so that old Arrow caches go unused."""

SPLITS = ("train", "dev", "test")
OPTIONAL_SPLITS = ("extra",)
SUFFIX = {"conll": ".txt", "wikiann": ".tsv"}
CONLL_FOLDERS = ("conll2003", "conll2002")
CONLL_FOLDER_OF = {"en": "conll2003", "de": "conll2003", "es": "conll2002", "nl": "conll2002"}
# Public copies on the hub: (dataset, config). German CoNLL-2003 has none.
HUB_COPIES = {("conll", "en"): ("conll2003", None), ("conll", "es"): ("conll2002", "es"),
              ("conll", "nl"): ("conll2002", "nl")}
HUB_CHECK_SECONDS = 3.0


def _check_corpus(corpus: str) -> None:
    if corpus not in LABELS:
        raise UserError(f"unknown corpus {corpus!r}: choose one of {', '.join(LABELS)}")


def resolve_data_dir(flag: str | Path | None = None) -> Path:
    """The data directory: the flag, else $PRAM_DATA_DIR, else the first of ./data and ../shared/data."""
    for value, origin in ((flag, "--data-dir"), (os.environ.get("PRAM_DATA_DIR"), "PRAM_DATA_DIR")):
        if value:
            if not Path(value).is_dir():
                raise UserError(f"{value}: no such folder (given by {origin}): pass the folder that holds "
                                "conll2003/, conll2002/ or wikiann/")
            return Path(value)
    for candidate in (Path("data"), Path("..") / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    raise UserError("no data folder found (neither ./data nor ../shared/data exists): "
                    "pass --data-dir or set PRAM_DATA_DIR")


def language_dir(corpus: str, lang: str, data_dir: str | Path) -> Path:
    """A language's folder: conll2003/<lang> or conll2002/<lang> (whichever exists), or wikiann/<lang>."""
    _check_corpus(corpus)
    data_dir = Path(data_dir)
    if corpus == "wikiann":
        return data_dir / "wikiann" / lang
    for folder in CONLL_FOLDERS:  # a CoNLL language a user adds may sit in either folder
        if (data_dir / folder / lang).is_dir():
            return data_dir / folder / lang
    return data_dir / CONLL_FOLDER_OF.get(lang, "conll2003") / lang


def available_languages(corpus: str, data_dir: str | Path) -> list[str]:
    """Languages on disk: the folders of the corpus that hold a training file, sorted."""
    _check_corpus(corpus)
    roots = CONLL_FOLDERS if corpus == "conll" else ("wikiann",)
    return sorted({d.name for root in roots if (Path(data_dir) / root).is_dir()
                   for d in (Path(data_dir) / root).iterdir() if (d / f"train{SUFFIX[corpus]}").is_file()})


def split_files(folder: str | Path, suffixes: tuple[str, ...] = (".txt", ".tsv")) -> dict[str, Path]:
    """The split files of a folder among train, dev, test and extra, each with the first suffix found."""
    found = {}
    for split in (*SPLITS, *OPTIONAL_SPLITS):
        for suffix in suffixes:
            # exists(), not is_file(): the reader says what is wrong with a folder in the place of a file
            if (Path(folder) / f"{split}{suffix}").exists():
                found[split] = Path(folder) / f"{split}{suffix}"
                break
    return found


def cache_key(path: Path, corpus: str, lang: str) -> str:
    """Changes whenever the file (path, size, mtime), the reader or the corpus label set changes."""
    stat = path.stat()
    parts = [str(path.resolve()), stat.st_size, stat.st_mtime_ns, READER_VERSION, corpus, lang,
             LABELS[corpus]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def load_language(corpus: str, lang: str, data_dir: str | Path | None = None,
                  cache_dir: str | Path | None = None) -> DatasetDict:
    """Splits train/dev/test (and extra where present) of one language, with columns tokens, ner_tags, lang.

    Each split is read once and then served from the Arrow cache. Every split is read and checked before any
    is cached, so that bad input leaves no cache entry behind.
    """
    from datasets import DatasetDict

    _check_corpus(corpus)
    root = resolve_data_dir(data_dir)
    folder = language_dir(corpus, lang, root)
    if not folder.is_dir():
        return _load_from_hub(corpus, lang, root)
    files = split_files(folder, (SUFFIX[corpus],))
    for split in SPLITS:
        if split not in files:
            raise UserError(f"{at(folder / (split + SUFFIX[corpus]))}: missing split file: a {corpus} "
                            f"language folder needs train, dev and test{SUFFIX[corpus]}")
    arrow = default_cache_dir(cache_dir) / "arrow"
    entries = {split: arrow / f"{corpus}-{lang}-{split}-{cache_key(path, corpus, lang)}"
               for split, path in files.items()}
    splits = {split: _load_cached(entry) for split, entry in entries.items()}
    fresh = {split: sentences_to_dataset(read_file(files[split]), files[split], corpus, lang)
             for split, dataset in splits.items() if dataset is None}
    for split, dataset in fresh.items():
        _save_atomically(dataset, entries[split])
        # Served from the entry like any later load: memory-mapped, and `datasets` keeps what is computed from
        # it (the tokenised split) beside it, so the first run's tokenisation is cached as well.
        splits[split] = _load_cached(entries[split]) or dataset
    return DatasetDict(splits)


def features(corpus: str):
    """The columns of every split: tokens, ner_tags as a ClassLabel of the corpus labels, and the language."""
    from datasets import ClassLabel, Features, Sequence, Value

    return Features({"tokens": Sequence(Value("string")),
                     "ner_tags": Sequence(ClassLabel(names=LABELS[corpus])),
                     "lang": Value("string")})


def sentences_to_dataset(sentences: list[Sentence], path: Path, corpus: str, lang: str) -> Dataset:
    """The sentences as Arrow; a tag of a type the corpus does not have is a UserError at its line."""
    from datasets import Dataset

    index = {name: i for i, name in enumerate(LABELS[corpus])}
    ner_tags = []
    for sentence in sentences:
        for i, tag in enumerate(sentence.tags):
            if tag not in index:
                types = ", ".join(dict.fromkeys(name[2:] for name in LABELS[corpus][1:]))
                raise UserError(f"{at(path, sentence.line + i)}: tag {tag} has type {tag[2:]}, which "
                                f"{corpus} does not have ({types}): fix the tag or use the corpus whose "
                                "types the file uses")
        ner_tags.append([index[tag] for tag in sentence.tags])
    columns = {"tokens": [list(s.tokens) for s in sentences], "ner_tags": ner_tags,
               "lang": [lang] * len(sentences)}
    return Dataset.from_dict(columns, features=features(corpus))


def _load_cached(entry: Path) -> Dataset | None:
    from datasets import load_from_disk

    if not entry.is_dir():
        return None
    try:
        return load_from_disk(str(entry))
    except Exception:  # damaged by hand (entries are written atomically): drop it and read the file again
        shutil.rmtree(entry, ignore_errors=True)
        return None


def _save_atomically(dataset: Dataset, entry: Path) -> None:
    """save_to_disk into a temporary folder beside the entry, then rename it: an entry is whole or absent."""
    import datasets

    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))
    bars = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a bar per split for a write of milliseconds is noise on stderr
    try:
        dataset.save_to_disk(str(tmp))
        os.replace(tmp, entry)
    except OSError:
        if not entry.is_dir():  # a concurrent run that wrote the same entry first is fine; all else is not
            raise
    finally:  # also on Ctrl-C
        shutil.rmtree(tmp, ignore_errors=True)
        if bars:
            datasets.enable_progress_bars()


def _load_from_hub(corpus: str, lang: str, root: Path) -> DatasetDict:
    """The public hub copy of a language that is not on disk, or a one-line UserError that says why not."""
    try:
        return _hub_copy(corpus, lang)
    except Exception as e:  # whatever the hub's failure, the fix is to give the data: say so in one line
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:160]
    raise UserError(f"{corpus}/{lang} not found under {root} and the hub copy could not be loaded "
                    f"({reason}): pass --data-dir or set PRAM_DATA_DIR")


def _hub_copy(corpus: str, lang: str) -> DatasetDict:
    from datasets import DatasetDict, load_dataset

    name, config = HUB_COPIES.get((corpus, lang), ("wikiann", lang) if corpus == "wikiann" else (None, None))
    if name is None:
        raise LookupError(f"no public copy of {corpus}/{lang}")
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
                  for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    # Offline, the datasets library fails fast from its own cache; online it may wait for minutes.
    if not offline:
        _check_hub_reachable()
    loaded = load_dataset(name, config)
    splits = {"dev" if split == "validation" else split: data for split, data in loaded.items()}
    return DatasetDict({split: data.select_columns(["tokens", "ner_tags"])
                        .add_column("lang", [lang] * len(data)).cast(features(corpus))
                        for split, data in splits.items()})


def _check_hub_reachable(seconds: float = HUB_CHECK_SECONDS) -> None:
    """A TCP connection to the hub within seconds, in a thread because name resolution has no timeout."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=seconds).close()
        except OSError as e:
            failure.append(e)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive() or failure:
        detail = f": {failure[0]}" if failure else f" within {seconds:.0f} s"
        raise ConnectionError(f"{url.hostname} unreachable{detail}")
