"""Files and checkpoints users hand in: each broken one is one line on stderr naming the file, exit 2, no traceback,
and the file is left as it was; the good ones still work. Built from a real smoke checkpoint and real data."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

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
