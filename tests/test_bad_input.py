"""Files and checkpoints users hand in: each broken one is one line on stderr naming the file, exit 2, no traceback,
and the file is left as it was; the good ones still work. Built from a real smoke checkpoint and real data."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from searches import file_hashes

from pram.config import preset
from pram.train import train

pytestmark = pytest.mark.slow  # a smoke checkpoint, then the CLI once per case
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(preset("smoke", data_dir=str(data_dir), cache_dir=str(tmp_path_factory.mktemp("cache")),
                 out_dir=str(out), quiet=True, eval_languages=(), max_steps=20))
    return out / "checkpoints" / "best-target-dev"


def _one_line(done: SimpleNamespace, names: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pram: error: ") and names in lines[0], done.stderr


TEXTS = {  # name -> (bytes, what the line must name)
    "empty": (b"", "empty file"),
    "blank lines only": (b"\n \n\t\n", "empty file"),
    "a PNG image": (PNG, ":2: binary content (byte 0x1a)"),  # after the signature's \r\n
    "NUL bytes on line 3": (b"Ein Satz .\nNoch einer .\nund\x00dann\n", ":3: binary content (byte 0x00)"),
    "UTF-16 with its byte-order mark": ("Ein Satz .\n".encode("utf-16"), "UTF-16 text, which pram does not read"),
    "UTF-16 without one": ("Ein Satz .\n".encode("utf-16-le"), "UTF-16 text, which pram does not read"),
}


@pytest.mark.parametrize("case", list(TEXTS))
def test_predict_refuses_a_file_that_is_not_text(pram, checkpoint, tmp_path, case):
    content, message = TEXTS[case]
    given = tmp_path / "input.txt"
    given.write_bytes(content)
    done = pram("predict", str(checkpoint), str(given))
    _one_line(done, f"{given}")
    assert message in done.stderr
    assert given.read_bytes() == content  # nothing the user gave is modified


def test_predict_reads_utf8_and_iso_8859_1_text(pram, checkpoint, tmp_path):
    for encoding in ("utf-8", "iso-8859-1"):
        given = tmp_path / f"{encoding}.txt"
        given.write_bytes("Die Bürger von Köln .\n".encode(encoding))
        done = pram("predict", str(checkpoint), str(given))
        assert done.returncode == 0, done.stderr
        assert [line.split("\t")[0] for line in done.stdout.split("\n") if line] == ["Die", "Bürger", "von",
                                                                                   "Köln", "."]


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:100])


def _garble(file: Path) -> None:
    file.write_text('{"config": {"seed": 0}, "step": ', encoding="utf-8")


def _incompatible(file: Path) -> None:
    file.write_text('{"weights": "elsewhere"}\n', encoding="utf-8")


def _unknown_value(file: Path) -> None:
    import json

    state = json.loads(file.read_text())
    state["config"]["apc"] = "sometimes"
    file.write_text(json.dumps(state))


CHECKPOINTS = {  # name -> (file in the checkpoint, how it is broken, what the line must name)
    "weights truncated": ("model.safetensors", _truncate, "truncated or not a safetensors file"),
    "weights missing": ("model.safetensors", Path.unlink, "not a pram checkpoint"),
    "state not JSON": ("state.json", _garble, "state.json:1: not valid JSON"),
    "state of another program": ("state.json", _incompatible, "incompatible version"),
    "config from another version": ("state.json", _unknown_value, "incompatible version"),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_broken_checkpoint_is_one_line(pram, checkpoint, data_dir, tmp_path, case, command):
    name, breaks, message = CHECKPOINTS[case]
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    breaks(broken / name)
    before = {p.name: p.read_bytes() for p in broken.iterdir()}
    text = tmp_path / "input.txt"
    text.write_text("Angela Merkel besuchte Paris .\n", encoding="utf-8")
    args = ["--lang", "de", "--data-dir", str(data_dir)] if command == "evaluate" else [str(text)]
    done = pram(command, str(broken), *args)
    _one_line(done, str(broken))
    assert message in done.stderr
    assert {p.name: p.read_bytes() for p in broken.iterdir()} == before


def test_the_good_checkpoint_still_works(pram, checkpoint, data_dir):
    done = pram("evaluate", str(checkpoint), "--lang", "de", "--json", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr


def test_predict_streams_in_chunks_in_input_order(checkpoint, data_dir, tmp_path):
    """Tagging chunk by chunk (3 sentences at a time) writes what tagging all at once writes, in input order."""
    from pram.data.readers import read_file
    from pram.predict import predict_command

    sentences = [s.tokens for s in read_file(data_dir / "conll2003" / "de" / "dev.txt")][:11]  # 3 + 3 + 3 + 2
    given = tmp_path / "input.txt"
    given.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    whole, chunked = tmp_path / "whole.tsv", tmp_path / "chunked.tsv"
    assert predict_command(str(checkpoint), str(given), str(whole)) == 0
    assert predict_command(str(checkpoint), str(given), str(chunked), chunk=3) == 0
    assert chunked.read_text() == whole.read_text()
    tagged = [block.splitlines() for block in whole.read_text().strip("\n").split("\n\n")]
    assert [[line.split("\t")[0] for line in block] for block in tagged] == [list(s) for s in sentences]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunked.tsv", "input.txt", "whole.tsv"]  # no temp file


@pytest.mark.parametrize("tail, message", [(b"und\x00dann\n", ":3001: binary content (byte 0x00)"),
                                           (b"K\xf6ln .\n", ":3001: not UTF-8, though the file starts as UTF-8")])
def test_a_bad_line_after_the_first_chunk_leaves_no_output_file(pram, checkpoint, tmp_path, monkeypatch, tail,
                                                                message):
    """The file's start is sniffed (HEAD bytes, cut here to 4 KiB so that the bad line lies beyond it); the first
    chunk of 2,048 sentences is tagged and written before line 3,001 is read."""
    monkeypatch.setattr("pram.predict.HEAD", 4096)
    given = tmp_path / "input.txt"
    given.write_bytes("".join(f"Satz Nummer {i} .\n" for i in range(3000)).encode() + tail)
    out = tmp_path / "tags.tsv"
    done = pram("predict", str(checkpoint), str(given), "--out", str(out))
    _one_line(done, f"{given}{message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.txt"]  # neither the output nor its temp file


def test_int8_tags_almost_every_token_as_fp32_does(checkpoint, data_dir):
    """Dynamic int8 quantisation on the smoke model: the same tag on at least 97 % of the words of the first 300
    German dev sentences, and F1 within 2 points (the smoke model is random-initialised and weak; the benchmark
    measures me5-small on the full test sets)."""
    import torch
    from datasets import Dataset

    from pram.batches import encode_dataset
    from pram.data.readers import read_file
    from pram.evaluate import entity_scores, predict
    from pram.predict import load_trained

    sentences = read_file(data_dir / "conll2003" / "de" / "dev.txt")[:300]
    tags = {}
    for int8 in (False, True):
        model, tokenizer, info = load_trained(checkpoint, "cpu", int8=int8)
        encoded = encode_dataset(Dataset.from_dict({"tokens": [list(s.tokens) for s in sentences]}), tokenizer,
                                 64, labelled=False)
        words = predict(model, encoded, tokenizer.pad_token_id).words
        tags[int8] = [[info["label_names"][t] if t >= 0 else "O" for t in w] for w in words]
    quantised = {name for name, m in model.named_modules()
                 if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")}
    layers = model.encoder.config.num_hidden_layers
    assert layers == 2  # the smoke encoder: a 2-layer BERT
    per_layer = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense")
    # Per layer the four attention projections and the feed-forward input; the feed-forward output (quantised, it
    # alone cost 4.9 F1 on me5-small) and the classifier stay fp32.
    assert quantised == {f"encoder.encoder.layer.{i}.{n}" for i in range(layers) for n in per_layer}
    assert type(model.classifier) is torch.nn.Linear
    pairs = [(a, b) for s, q in zip(tags[False], tags[True]) for a, b in zip(s, q)]
    assert sum(a == b for a, b in pairs) / len(pairs) >= 0.97
    assert sum(t != "O" for s in tags[False] for t in s) > 100  # the model tags entities: agreement is not all O
    gold = [list(s.tags) for s in sentences]
    assert abs(entity_scores(gold, tags[True])["f1"] - entity_scores(gold, tags[False])["f1"]) <= 2.0


@pytest.mark.parametrize("device, message", [
    ("cuda", "--device cuda: torch sees no GPU here"),
    ("cuda:7", "--device cuda:7: "),
    ("tpu7", "--device tpu7: not a device torch knows"),
])
def test_a_device_that_is_not_there_is_one_line_before_any_work(pram, data_dir, tmp_path, device, message):
    import torch

    if torch.cuda.is_available() and device != "tpu7":
        pytest.skip("this machine has a GPU: the refusal is for machines without one")
    out = tmp_path / "run"
    done = pram("train", "--preset", "smoke", "--device", device, "--out", str(out), "--data-dir", str(data_dir))
    _one_line(done, message)
    assert not out.exists()  # refused before anything was written


@pytest.fixture
def finished_run(checkpoint, tmp_path) -> Path:
    """A copy of the module's finished smoke run (trained with max_steps 20, no extra test languages)."""
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent.parent, run)
    return run


RESUMES = {  # name -> (flags beside --out, what the one line must name)
    "a changed tau": (["--resume", "--tau", "0.1"], "--tau 0.1 (trained with 0.2)"),
    "a changed target": (["--resume", "--target", "es"], "--target es (trained with de)"),
    "a changed proto space": (["--resume", "--proto-space", "projection"],
                              "--proto-space projection (trained with hidden)"),
    "no checkpoint to resume": (["--resume"], "no checkpoint to resume from"),
    "a finished run, neither --resume nor --overwrite": ([], "already holds a run"),
    "both --resume and --overwrite": (["--resume", "--overwrite"], "choose one"),
}


@pytest.mark.parametrize("case", list(RESUMES))
def test_train_refuses_what_would_make_its_records_lie(pram, data_dir, finished_run, case):
    flags, message = RESUMES[case]
    if case == "no checkpoint to resume":
        shutil.rmtree(finished_run / "checkpoints")
    before = file_hashes(finished_run, links=True)
    done = pram("train", "--preset", "smoke", "--max-steps", "20", "--eval-languages", "", "--out", str(finished_run),
                "--data-dir", str(data_dir), *flags)
    _one_line(done, message)
    assert file_hashes(finished_run, links=True) == before  # nothing was written


def test_train_resumes_with_a_longer_budget_and_starts_anew_with_overwrite(pram, data_dir, finished_run):
    import json

    done = pram("train", "--preset", "smoke", "--max-steps", "40", "--eval-languages", "", "--out",
                str(finished_run), "--data-dir", str(data_dir), "--resume")
    assert done.returncode == 0, done.stderr
    history = json.loads((finished_run / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [20, 40]  # the first 20 steps were not trained again
    done = pram("train", "--preset", "smoke", "--max-steps", "20", "--eval-languages", "", "--out",
                str(finished_run), "--data-dir", str(data_dir), "--overwrite", "--tau", "0.1")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [20] and metrics["config"]["tau"] == 0.1


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_an_encoder_folder_without_its_tokenizer_is_refused(pram, checkpoint, data_dir, tmp_path, command):
    import json

    base = Path(json.loads((checkpoint / "state.json").read_text())["encoder_path"])
    broken = tmp_path / "encoder"
    shutil.copytree(base, broken)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (broken / name).unlink(missing_ok=True)
    text = tmp_path / "sentences.txt"
    text.write_text("Angela Merkel besuchte Paris .\n", encoding="utf-8")
    args = {"evaluate": ["--lang", "de", "--data-dir", str(data_dir)], "predict": [str(text)],
            "export": [str(tmp_path / "exported")]}[command]
    done = pram(command, str(checkpoint), *args, "--encoder", str(broken))
    _one_line(done, f"{broken}: no tokenizer files")
    assert not (tmp_path / "exported").exists()


def _mount_tmpfs(where: Path, size_kib: int, read_only: bool = False) -> None:
    """A small filesystem of the test's own (as root, where the machine allows it), else the test is skipped."""
    import subprocess

    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                          check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode(errors='replace').strip()})")


@pytest.fixture
def mounts():
    import subprocess

    made: list[Path] = []
    yield lambda where, size_kib, read_only=False: (_mount_tmpfs(where, size_kib, read_only), made.append(where))
    for where in reversed(made):
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_predict_into_a_folder_that_is_not_there_is_one_line(pram, checkpoint, tmp_path):
    text = tmp_path / "sentences.txt"
    text.write_text("Angela Merkel besuchte Paris .\n", encoding="utf-8")
    missing = tmp_path / "no" / "such"
    done = pram("predict", str(checkpoint), str(text), "--out", str(missing / "tags.tsv"))
    _one_line(done, str(missing))
    assert "no such file or folder: create the folder first" in done.stderr


def test_predict_onto_a_read_only_filesystem_is_one_line(pram, checkpoint, tmp_path, mounts):
    text = tmp_path / "sentences.txt"
    text.write_text("Angela Merkel besuchte Paris .\n", encoding="utf-8")
    mounts(tmp_path / "ro", 64, read_only=True)
    done = pram("predict", str(checkpoint), str(text), "--out", str(tmp_path / "ro" / "tags.tsv"))
    _one_line(done, str(tmp_path / "ro"))
    assert "the file system is read-only" in done.stderr


def test_training_on_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(pram, data_dir, finished_run, mounts,
                                                                           tmp_path):
    size = sum(p.stat().st_size for p in finished_run.rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    mounts(disk, size // 1024 + 64)  # the run and 64 KiB more: not a second checkpoint
    shutil.copytree(finished_run, disk / "run")
    before = file_hashes(disk / "run", links=True)
    done = pram("train", "--preset", "smoke", "--max-steps", "40", "--eval-languages", "", "--out", str(disk / "run"),
                "--data-dir", str(data_dir), "--resume")
    _one_line(done, str(disk / "run"))
    assert "the disk is full: free some space and run the same command again, with --resume" in done.stderr
    after = file_hashes(disk / "run", links=True)
    # the checkpoints and metrics are as they were (config.json names the new budget the resume was asked for),
    # and nothing half-written lies beside them
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != "config.json"} == {k: v for k, v in before.items()
                                                                        if k != "config.json"}
