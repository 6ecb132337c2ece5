"""Encoders: load any encoder by name or folder (the offline `me5-small` is built on first use, pram/me5.py),
build tiny random ones for smoke runs and tests, and fingerprint the one a checkpoint was trained on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from pram.errors import UserError
from pram.files import publish_folder
from pram.me5 import ME5_SMALL, build_me5_small
from pram.paths import default_cache_dir

_OFFLINE_HELP = "use --encoder me5-small (offline) or a local HuggingFace folder"


# ----------------------------------------------------------------------------------------------------------
# Tiny random encoders (smoke runs and tests)

def build_tiny_encoder(out_dir: Path, vocab_words: list[str], hidden: int = 32, layers: int = 2,
                       heads: int = 2, seed: int = 0) -> Path:
    """A random-initialised BERT folder with a cased word-piece tokenizer over `vocab_words`.

    The vocabulary is [PAD]=0, [UNK], [CLS], [SEP], [MASK], the words, then every character seen and its
    `##` form, so that any word made of those characters tokenises without [UNK].
    """
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel

    out_dir = Path(out_dir)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in vocab_words for c in w if not c.isspace()})
    pieces = list(dict.fromkeys([*specials, *vocab_words, *chars, *(f"##{c}" for c in chars)]))
    vocab = {piece: i for i, piece in enumerate(pieces)}

    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                      strip_accents=False, lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])

    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=512,
                        pad_token_id=0, architectures=["BertModel"], tokenizer_class="BertTokenizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors",
                  metadata={"format": "pt"})
        config.save_pretrained(tmp)
        tokenizer.save(str(tmp / "tokenizer.json"))
        (tmp / "vocab.txt").write_text("".join(f"{p}\n" for p in pieces))
        tokenizer_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": False,
                            "strip_accents": False, "tokenize_chinese_chars": True, "model_max_length": 512,
                            "unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                            "sep_token": "[SEP]", "mask_token": "[MASK]"}
        (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
        publish_folder(tmp, out_dir, replace=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# ----------------------------------------------------------------------------------------------------------
# Loading by name

def fingerprint(name_or_path: str) -> str | None:
    """A checkpoint's record of the base encoder it applies to: sha256 of the folder's config.json, the
    weights file's size, its safetensors header and 16 evenly spaced 64 KiB samples of its data, so that another
    model of the same shape differs (milliseconds, where a full hash of 470 MB takes seconds). None for an
    encoder that is not a local folder (a hub name: the name is the record)."""
    folder = Path(name_or_path)
    weights = folder / "model.safetensors"
    if not folder.is_dir() or not weights.is_file() or not (folder / "config.json").is_file():
        return None
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    size = weights.stat().st_size
    digest.update(str(size).encode())
    with open(weights, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
        digest.update(f.read(min(header, size)))
        for i in range(16):
            f.seek(i * max(0, size - 65536) // 15)
            digest.update(f.read(65536))
    return digest.hexdigest()


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~"))


def resolve_encoder(name_or_path: str, cache_dir: Path | None = None) -> str:
    """`me5-small` -> its built folder (built on first use); a local folder -> itself; else a hub name."""
    if name_or_path == ME5_SMALL:
        folder = default_cache_dir(cache_dir) / "encoders" / ME5_SMALL
        if not (folder / "model.safetensors").is_file():
            build_me5_small(folder, replace=False)
        return str(folder)
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UserError(f"{local}: encoder folder has no config.json; give a HuggingFace model folder "
                            f"or --encoder {ME5_SMALL}")
        return str(local)
    if _looks_like_path(name_or_path):
        raise UserError(f"{local}: encoder folder does not exist; give a HuggingFace model folder "
                        f"or --encoder {ME5_SMALL}")
    return name_or_path


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        with socket.create_connection((url.hostname, port), timeout):
            return True
    except OSError:
        return False


def _from_pretrained(loader, name_or_path: str, cache_dir: Path | None, **kwargs):
    """loader.from_pretrained on the resolved name; a hub name not cached fails fast, in one line, offline."""
    resolved = resolve_encoder(name_or_path, cache_dir)
    if Path(resolved).is_dir():
        return loader.from_pretrained(resolved, **kwargs)
    try:  # the local HuggingFace cache first: no network, no retries
        return loader.from_pretrained(resolved, local_files_only=True, **kwargs)
    except OSError as e:
        if "Repo id must" in str(e):
            raise UserError(f"encoder '{name_or_path}' is neither a local folder nor a model hub name: "
                            f"{_OFFLINE_HELP}") from None
    if not _hub_reachable():
        raise UserError(f"encoder '{name_or_path}' is not a local folder and the model hub could not be "
                        f"reached: {_OFFLINE_HELP}") from None
    try:
        return loader.from_pretrained(resolved, **kwargs)
    except OSError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"encoder '{name_or_path}' could not be loaded from the model hub ({reason}): "
                        f"{_OFFLINE_HELP}") from None


def encoder_config(name_or_path: str, cache_dir: Path | None = None):
    """The encoder's `transformers` config."""
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig, name_or_path, cache_dir)


def load_tokenizer(name_or_path: str, cache_dir: Path | None = None):
    """The encoder's fast tokenizer (word alignment needs `word_ids()`)."""
    from transformers import AutoTokenizer

    resolved = Path(resolve_encoder(name_or_path, cache_dir))
    if resolved.is_dir():
        check_tokenizer_files(resolved)
    tokenizer = _from_pretrained(AutoTokenizer, name_or_path, cache_dir)
    if not tokenizer.is_fast:
        raise UserError(f"encoder '{name_or_path}' has no fast tokenizer (tokenizer.json), which word "
                        f"alignment needs: {_OFFLINE_HELP}")
    if resolved.is_dir():
        expected = encoder_config(str(resolved)).vocab_size
        if len(tokenizer) < 0.9 * expected:  # an empty or foreign vocabulary would tag every word unknown
            raise UserError(f"{resolved}: its tokenizer knows {len(tokenizer)} pieces where its config.json and "
                            f"weights have {expected}: the tokenizer files are not this encoder's; copy the "
                            "folder again whole")
    return tokenizer


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "vocab.json")
"""Files one of which holds a HuggingFace tokenizer's vocabulary."""


def check_tokenizer_files(folder: Path) -> None:
    """An encoder folder without its vocabulary loads in transformers 5 as an empty tokenizer that tags every
    word as unknown: refused in one line naming what is missing."""
    if (folder / "config.json").is_file() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{folder}: no tokenizer files (none of {', '.join(TOKENIZER_FILES)}): the encoder folder "
                        "is incomplete; copy it again whole, or `pram encoder build --force` for the offline one")


def load_encoder(name_or_path: str, cache_dir: Path | None = None, **kwargs):
    """The encoder as a `transformers.AutoModel`; kwargs go to from_pretrained (add_pooling_layer=False)."""
    from transformers import AutoModel

    return _from_pretrained(AutoModel, name_or_path, cache_dir, **kwargs)
