"""A trained checkpoint in users' hands: `pram export` to a HuggingFace folder that `pipeline` loads offline, and
checkpoints that know the base encoder they apply to."""

import json
import shutil
from pathlib import Path

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from pram.config import preset
from pram.data.readers import read_file
from pram.encoder import build_tiny_encoder
from pram.train import train

pytestmark = pytest.mark.slow  # each test reads a trained smoke checkpoint


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    config = preset("smoke", data_dir=str(data_dir), cache_dir=str(tmp_path_factory.mktemp("cache")),
                    out_dir=str(out), quiet=True, eval_languages=())
    train(config)
    return out / "checkpoints" / "best-target-dev"


def test_the_exported_folder_tags_like_pram_predict_in_the_pipeline(pram, checkpoint, data_dir, tmp_path):
    from transformers import pipeline

    out = tmp_path / "hf"
    done = pram("export", str(checkpoint), str(out))
    assert done.returncode == 0, done.stderr
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["1"] == "B-PER" and config["label2id"]["I-MISC"] == 8
    card = (out / "README.md").read_text()
    assert "trained without de labels" in card and "pram train --dataset conll --source en --target de" in card

    # Sentences of at most 15 words: pram cuts a sentence at the run's max_length pieces (64 in the smoke preset,
    # the words past it tagged O), where the pipeline reads up to the encoder's 512.
    sentences = [list(s.tokens) for s in read_file(data_dir / "conll2003" / "de" / "test.txt")
                 if 4 <= len(s.tokens) <= 15][:12]
    text = tmp_path / "de.txt"
    text.write_text("\n".join(" ".join(s) for s in sentences) + "\n", encoding="utf-8")
    tagged = pram("predict", str(checkpoint), str(text))
    assert tagged.returncode == 0, tagged.stderr
    ours = [[line.split("\t")[1] for line in block.splitlines()] for block in tagged.stdout.strip().split("\n\n")]

    tagger = pipeline("token-classification", model=str(out), aggregation_strategy="first", device="cpu")
    found_any = 0
    for words, tags in zip(sentences, ours):
        starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]  # character offset of each word
        theirs = {(e["entity_group"], starts.index(e["start"]), e["end"]) for e in tagger(" ".join(words))}
        mine = {(kind, first, starts[last] + len(words[last])) for kind, first, last in get_entities(tags)}
        assert theirs == mine, " ".join(words)
        found_any += len(mine)
    assert found_any > 0  # the comparison saw entities, not only empty sets


def test_a_checkpoint_refuses_another_base_encoder_in_one_line(pram, checkpoint, data_dir, tmp_path):
    state = json.loads((checkpoint / "state.json").read_text())
    assert len(state["encoder"]["fingerprint"]) == 64
    base = Path(state["encoder_path"])
    other = tmp_path / "other-tiny"
    build_tiny_encoder(other, ["Ein", "anderes", "Vokabular"])
    env_args = ["--data-dir", str(data_dir), "--lang", "de", "--json"]
    wrong = pram("evaluate", str(checkpoint), "--encoder", str(other), env_args=env_args)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    assert "trained on base encoder tiny" in wrong.stderr and str(base) in wrong.stderr
    right = pram("evaluate", str(checkpoint), "--encoder", str(base), env_args=env_args)
    default = pram("evaluate", str(checkpoint), env_args=env_args)
    assert right.returncode == default.returncode == 0, right.stderr
    assert json.loads(right.stdout)["f1"] == json.loads(default.stdout)["f1"]


def test_a_checkpoint_from_before_the_record_still_loads(pram, checkpoint, data_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(checkpoint, old)
    state = json.loads((old / "state.json").read_text())
    del state["encoder"]
    (old / "state.json").write_text(json.dumps(state))
    scored = pram("evaluate", str(old), "--lang", "de", "--json", env_args=["--data-dir", str(data_dir)])
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["sentences"] == 3005
