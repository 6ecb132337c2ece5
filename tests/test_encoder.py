"""The offline encoder (me5-small) builds, loads and computes meaningful embeddings; tiny encoders build."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoModel, AutoModelForTokenClassification, AutoTokenizer

from pram.encoder import build_tiny_encoder, load_tokenizer, resolve_encoder
from pram.errors import UserError
from pram.me5 import check_encoder_folder, dequantize_q4_0, encoder_build_command, hf_name


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pram-cache")


@pytest.fixture(scope="module")
def me5(cache_dir):
    """The me5-small folder, built once for this module through the path a user takes."""
    return resolve_encoder("me5-small", cache_dir)


@pytest.fixture(scope="module")
def token_classifier(me5):
    return AutoModelForTokenClassification.from_pretrained(me5, num_labels=9, output_loading_info=True)


def test_dequantize_q4_0_by_hand():
    # one block: scale 0.5, byte j = (high nibble 15-j%16, low nibble j%16)
    qs = np.array([(15 - j) << 4 | j for j in range(16)], dtype=np.uint8)
    block = np.concatenate([np.frombuffer(np.float16(0.5).tobytes(), np.uint8), qs])
    weights = dequantize_q4_0(block, 32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert weights.tolist() == expected


def test_tensor_names():
    assert hf_name("emb.word") == "embeddings.word_embeddings.weight"
    assert hf_name("emb.ln.b") == "embeddings.LayerNorm.bias"
    assert hf_name("l0.q.w") == "encoder.layer.0.attention.self.query.weight"
    assert hf_name("l11.aln.w") == "encoder.layer.11.attention.output.LayerNorm.weight"
    assert hf_name("l3.fi.b") == "encoder.layer.3.intermediate.dense.bias"
    assert hf_name("l3.fo.w") == "encoder.layer.3.output.dense.weight"
    assert hf_name("l5.oln.b") == "encoder.layer.5.output.LayerNorm.bias"


def test_me5_folder(me5, cache_dir):
    config = json.loads(Path(me5, "config.json").read_text())
    assert me5 == str(cache_dir / "encoders" / "me5-small")
    assert {k: config[k] for k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers",
                                   "num_attention_heads", "intermediate_size", "max_position_embeddings",
                                   "type_vocab_size", "pad_token_id", "layer_norm_eps", "hidden_act")} == {
        "model_type": "bert", "vocab_size": 250037, "hidden_size": 384, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512,
        "type_vocab_size": 2, "pad_token_id": 1, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}
    # nothing half-written is left next to it, and a second resolve reuses the folder
    assert [p.name for p in (cache_dir / "encoders").iterdir()] == ["me5-small"]
    mtime = (cache_dir / "encoders" / "me5-small" / "model.safetensors").stat().st_mtime
    assert resolve_encoder("me5-small", cache_dir) == me5
    assert (cache_dir / "encoders" / "me5-small" / "model.safetensors").stat().st_mtime == mtime


def test_me5_tokenizer_specials(me5):
    tokenizer = load_tokenizer(me5)
    assert tokenizer.is_fast and type(tokenizer).__name__.startswith("XLMRobertaTokenizer")
    assert (tokenizer.bos_token, tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token) == (
        "<s>", "<pad>", "</s>", "<unk>")
    ids = (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    assert ids == (0, 1, 2, 3)
    assert tokenizer.mask_token == "<mask>" and tokenizer.mask_token_id == 250001


def test_me5_loads_for_token_classification(token_classifier):
    model, info = token_classifier
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.num_labels == 9


def test_me5_loads_as_automodel(me5):
    model, info = AutoModel.from_pretrained(me5, output_loading_info=True)
    assert set(info["missing_keys"]) <= {"pooler.dense.weight", "pooler.dense.bias"}
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith("pooler.")) == 117_505_920


def _embed(model, tokenizer, sentences: list[str]) -> torch.Tensor:
    """e5's sentence embedding: the mean of the last hidden states over real pieces, L2-normalised."""
    enc = tokenizer([f"query: {s}" for s in sentences], padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state  # (B, L, H)
    mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, L, 1)
    return torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)


def test_me5_forward_is_finite_and_meaningful(me5, token_classifier):
    model, _ = token_classifier
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(me5)
    enc = tokenizer(["EU rejects German call to boycott British lamb ."], return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], 9) and torch.isfinite(logits).all()

    e = _embed(model.bert, tokenizer, ["The cat is sitting on the mat.", "A cat sits on the rug.",
                                       "Stock markets fell sharply after the interest rate decision.",
                                       "Der Hund schläft im Garten.", "The dog is sleeping in the garden."])
    sim = e @ e.T
    # Seen: paraphrase 0.93 vs unrelated 0.70; German-English translation 0.86 vs 0.71.
    assert sim[0, 1] > sim[0, 2] + 0.15 and sim[0, 1] > sim[1, 2] + 0.15
    assert sim[3, 4] > sim[3, 2] + 0.1


def test_check_catches_a_config_that_does_not_fit(me5, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    config = json.loads(Path(me5, "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 13, "hidden_size": 768}))
    (broken / "model.safetensors").symlink_to(Path(me5, "model.safetensors"))
    with pytest.raises(UserError, match=r"do not fit config\.json"):
        check_encoder_folder(broken)


def test_build_command_reports(me5, cache_dir, capsys):
    assert encoder_build_command("me5-small", str(cache_dir)) == 0
    out = capsys.readouterr().out
    assert me5 in out.replace("\n", "") and "117,505,920 parameters" in out and "round trip" in out
    with pytest.raises(UserError, match="only 'me5-small'"):
        encoder_build_command("xlm-roberta-base", str(cache_dir))


def test_resolve_names_and_folders(tmp_path):
    assert resolve_encoder("bert-base-multilingual-cased") == "bert-base-multilingual-cased"
    with pytest.raises(UserError, match="does not exist"):
        resolve_encoder(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match=r"no config\.json"):
        resolve_encoder(str(tmp_path))


def test_unreachable_hub_name_fails_fast_in_one_line(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # as on a machine with no network
    start = time.perf_counter()
    with pytest.raises(UserError) as error:
        load_tokenizer("pram-tests/no-such-encoder")
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert "\n" not in message and "'pram-tests/no-such-encoder'" in message
    assert "--encoder me5-small" in message


def test_tiny_encoder(tmp_path):
    words = ["EU", "rejects", "German", "call", "Paris", "北", "京", "Straßburg"]
    build_tiny_encoder(tmp_path / "warm-up", words)  # first call pays the imports
    start = time.perf_counter()
    folder = build_tiny_encoder(tmp_path / "tiny", words, seed=1)
    assert time.perf_counter() - start < 1.0

    tokenizer = load_tokenizer(str(folder))
    assert tokenizer.is_fast and tokenizer.pad_token_id == 0
    for word in [*words, "Parisrejects", "Grebs", "京北"]:  # vocabulary words, new words of seen characters
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert ids and tokenizer.unk_token_id not in ids
    assert tokenizer.tokenize("Paris") == ["Paris"] and tokenizer.tokenize("Parise") == ["Paris", "##e"]

    model, info = AutoModelForTokenClassification.from_pretrained(folder, num_labels=9,
                                                                  output_loading_info=True)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    enc = tokenizer([["EU", "rejects", "Paris"]], is_split_into_words=True, return_tensors="pt")
    assert torch.isfinite(model(**enc).logits).all()

    same = load_file(build_tiny_encoder(tmp_path / "same", words, seed=1) / "model.safetensors")
    other = load_file(build_tiny_encoder(tmp_path / "other", words, seed=2) / "model.safetensors")
    weights = load_file(folder / "model.safetensors")
    key = "encoder.layer.0.attention.self.query.weight"
    assert np.array_equal(weights[key], same[key]) and not np.array_equal(weights[key], other[key])
